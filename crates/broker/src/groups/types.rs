//! The values consumer group operations take and return.

use std::fmt;
use std::time::Duration;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition id.
    pub partition: u32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Where a member starts reading a partition the group has no usable committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset: everything still stored.
    Earliest,
    /// The high watermark: only records produced from now on (Kafka's default).
    #[default]
    Latest,
}

/// What a consumer asks for when it joins a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// The group.
    pub group: String,
    /// The topics to consume; each must exist.
    pub topics: Vec<String>,
    /// A stable id for static membership: the member keeps its partitions for its session
    /// timeout after it disconnects, and a new member with the same id takes them over.
    pub instance_id: Option<String>,
    /// Where to start without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// How long the member may go unheard before it loses its partitions; `None` = the
    /// broker's default.
    pub session_timeout: Option<Duration>,
    /// How long the member may take to release a revoked partition; `None` = the broker's
    /// default.
    pub rebalance_timeout: Option<Duration>,
    /// Where the member connects from, for descriptions.
    pub client_host: String,
}

impl JoinGroup {
    /// A dynamic member of `group` consuming `topics`, with default settings.
    pub fn new<T: Into<String>>(
        group: impl Into<String>,
        topics: impl IntoIterator<Item = T>,
    ) -> JoinGroup {
        JoinGroup {
            group: group.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            instance_id: None,
            auto_offset_reset: OffsetReset::default(),
            session_timeout: None,
            rebalance_timeout: None,
            client_host: String::new(),
        }
    }
}

/// A member's partitions, as last published to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberAssignment {
    /// The group's generation when this was published; commits carry it.
    pub generation: u64,
    /// Partitions to consume, sorted.
    pub partitions: Vec<TopicPartition>,
    /// Partitions being taken away: the member must stop reading them, commit their
    /// progress and release them. Sorted.
    pub revoking: Vec<TopicPartition>,
}

/// A committed offset and when it was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The offset of the next record to consume.
    pub offset: u64,
    /// Commit time, milliseconds since the Unix epoch.
    pub commit_ms: i64,
}

/// A partition and the offset a group committed for it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The partition.
    pub partition: TopicPartition,
    /// Its committed offset; `None` when the group committed none.
    pub committed: Option<Committed>,
}

/// Where [`crate::Broker::reset_offsets`] sets a group's offsets.
pub type ResetTo = crate::Position;

/// Which kind of members a group has: who assigns its partitions. A group has members of
/// one kind at a time; a member of the other kind is refused
/// ([`crate::BrokerError::GroupKindMismatch`]) until they have all left. Committed offsets
/// belong to the group whatever the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// The broker assigns the partitions and hands them over between members
    /// ([`crate::Broker::join_group`], the gRPC `Groups.Consume` call).
    ServerAssigned,
    /// The group's leader assigns them and the broker passes the assignment on, unread
    /// (Kafka's classic group protocol, [`crate::Broker::join_classic`]).
    ClientAssigned,
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupKind::ServerAssigned => "server-assigned",
            GroupKind::ClientAssigned => "client-assigned (Kafka classic)",
        })
    }
}

/// The state of a group. Kafka's `Dead` is a group that does not exist
/// ([`crate::BrokerError::GroupNotFound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; only committed offsets (Kafka's `Empty`).
    Empty,
    /// Server-assigned: every partition is owned by the member the assignment targets.
    /// Client-assigned: every member has its assignment (Kafka's `Stable`).
    Stable,
    /// Server-assigned: partitions are being handed over between members.
    Rebalancing,
    /// Client-assigned: waiting for the members to rejoin (Kafka's `PreparingRebalance`).
    PreparingRebalance,
    /// Client-assigned: waiting for the leader's assignment (Kafka's
    /// `CompletingRebalance`).
    CompletingRebalance,
}

/// A group, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// The group's name.
    pub name: String,
    /// Its state.
    pub state: GroupState,
    /// How many members it has.
    pub members: usize,
    /// Which kind of members it has; `None` when it has none.
    pub kind: Option<GroupKind>,
    /// The protocol type of its client-assigned members (Kafka's consumers say
    /// `consumer`); empty otherwise.
    pub protocol_type: String,
}

/// A group's members and consumption state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group's name.
    pub name: String,
    /// Its state.
    pub state: GroupState,
    /// Which kind of members it has; `None` when it has none.
    pub kind: Option<GroupKind>,
    /// Its current generation.
    pub generation: u64,
    /// Its members, sorted by id.
    pub members: Vec<MemberDescription>,
    /// The partitions of the subscribed topics (for client-assigned members, those they
    /// named: [`crate::ClassicJoin::topics`]) and those with a committed offset, sorted.
    pub partitions: Vec<PartitionLag>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// Its static membership id, if any.
    pub instance_id: Option<String>,
    /// Where it connected from.
    pub client_host: String,
    /// The topics it consumes, sorted (for a client-assigned member, those it named).
    pub topics: Vec<String>,
    /// The partitions it owns and consumes, sorted; empty for a client-assigned member,
    /// whose assignment only its protocol can read.
    pub assigned: Vec<TopicPartition>,
    /// The partitions it owns but is asked to release, sorted.
    pub revoking: Vec<TopicPartition>,
    /// `false` for a server-assigned static member whose stream closed and that may still
    /// come back.
    pub connected: bool,
    /// Its session timeout.
    pub session_timeout: Duration,
}

/// A partition's consumption state in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The group's committed offset, if any.
    pub committed: Option<Committed>,
    /// The partition's log start offset.
    pub log_start_offset: u64,
    /// The partition's high watermark.
    pub high_watermark: u64,
    /// Records the group has not committed past:
    /// `high_watermark - max(committed, log_start_offset)`, or
    /// `high_watermark - log_start_offset` when nothing is committed.
    pub lag: u64,
    /// How long the oldest record the group has not committed past has waited: now minus
    /// the timestamp of the record at `max(committed, log_start_offset)` (its create time,
    /// else its append time). Zero when `lag` is 0.
    pub delay: Duration,
    /// The member owning the partition, if any.
    pub owner: Option<String>,
}

impl PartitionLag {
    /// The lag of a partition with these offsets (see [`PartitionLag::lag`]).
    pub fn lag_of(committed: Option<u64>, log_start_offset: u64, high_watermark: u64) -> u64 {
        let from = committed.map_or(log_start_offset, |c| c.max(log_start_offset));
        high_watermark.saturating_sub(from)
    }
}
