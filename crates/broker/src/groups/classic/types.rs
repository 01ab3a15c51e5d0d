//! The values the client-assigned group operations take and return. Each maps field for
//! field onto one of Kafka's classic group requests or responses.

use std::time::Duration;

use bytes::Bytes;

use crate::groups::{GroupKind, GroupState, TopicPartition};

/// A member joining a client-assigned group (Kafka's JoinGroup request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoin {
    /// The group.
    pub group: String,
    /// The member's id; empty for a member joining for the first time.
    pub member_id: String,
    /// A stable id for static membership (Kafka's `group.instance.id`, KIP-345).
    pub instance_id: Option<String>,
    /// The client's id, the prefix of a new member's id.
    pub client_id: String,
    /// Where the member connects from, for descriptions.
    pub client_host: String,
    /// How long the member may go unheard before it is removed; `None` = the broker's
    /// default.
    pub session_timeout: Option<Duration>,
    /// How long the group waits for the member to rejoin once a rebalance begins; `None` =
    /// the broker's default.
    pub rebalance_timeout: Option<Duration>,
    /// The kind of protocol every member of the group must share (Kafka's consumers say
    /// `consumer`).
    pub protocol_type: String,
    /// The protocols (assignors) the member supports, most preferred first, each with the
    /// member's metadata for it. The broker never reads the metadata; it hands it to the
    /// leader.
    pub protocols: Vec<(String, Bytes)>,
    /// A member joining for the first time is first given its id and asked to join again
    /// with it ([`crate::BrokerError::MemberIdRequired`], Kafka's JoinGroup v4 and later,
    /// KIP-394). Static members never are.
    pub require_known_member_id: bool,
    /// The topics the member consumes, when the front end knows them (a Kafka consumer
    /// names them in its metadata). Only descriptions use them: their partitions are listed
    /// with their lag by [`crate::Broker::describe_group`] even before a commit.
    pub topics: Vec<String>,
}

impl ClassicJoin {
    /// A new dynamic member of `group` speaking `protocol_type` with `protocols`, with the
    /// broker's default timeouts and no known member id required.
    pub fn new(
        group: impl Into<String>,
        protocol_type: impl Into<String>,
        protocols: Vec<(String, Bytes)>,
    ) -> ClassicJoin {
        ClassicJoin {
            group: group.into(),
            member_id: String::new(),
            instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            session_timeout: None,
            rebalance_timeout: None,
            protocol_type: protocol_type.into(),
            protocols,
            require_known_member_id: false,
            topics: Vec::new(),
        }
    }
}

/// A member's view of the generation it joined (Kafka's JoinGroup response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicJoined {
    /// The group's generation, which sync, heartbeat and commit requests carry.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: String,
    /// The protocol chosen for the generation: one every member supports, by vote.
    pub protocol: String,
    /// The id of the leader, which computes the assignment.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// `true` when this member is the leader and the group's assignment still holds (a
    /// static leader rejoined without a rebalance): it must not compute a new one (Kafka's
    /// `skip_assignment`, JoinGroup v9).
    pub skip_assignment: bool,
    /// Every member with its metadata for the chosen protocol, sorted by id; only the
    /// leader is told, the others get none.
    pub members: Vec<JoinedMember>,
}

/// A member of a generation, as its leader is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member's id.
    pub member_id: String,
    /// Its static membership id, if any.
    pub instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A member asking for its assignment (Kafka's SyncGroup request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicSync {
    /// The group.
    pub group: String,
    /// The generation the member joined.
    pub generation: i32,
    /// The member's id.
    pub member_id: String,
    /// Its static membership id, if any.
    pub instance_id: Option<String>,
    /// The protocol type the member expects, when it says (SyncGroup v5).
    pub protocol_type: Option<String>,
    /// The protocol the member expects, when it says (SyncGroup v5).
    pub protocol: Option<String>,
    /// From the leader: every member's assignment. Others send none. A member the leader
    /// leaves out gets an empty assignment; ids that are not members are ignored.
    pub assignments: Vec<(String, Bytes)>,
}

/// A member's assignment (Kafka's SyncGroup response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicSynced {
    /// The group's protocol type.
    pub protocol_type: String,
    /// The generation's protocol.
    pub protocol: String,
    /// The assignment the leader computed for the member, as the leader sent it.
    pub assignment: Bytes,
}

/// A member leaving, or being removed from, a group (one member of Kafka's LeaveGroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// The member's id; may be empty when `instance_id` names a static member.
    pub member_id: String,
    /// Its static membership id, if any.
    pub instance_id: Option<String>,
}

/// An offset commit of a client-assigned group member or of a consumer outside any
/// membership (Kafka's OffsetCommit request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicCommit {
    /// The group.
    pub group: String,
    /// The member's generation; -1 (any negative value) for a consumer outside any
    /// membership (Kafka's `assign()` without `subscribe()`).
    pub generation: i32,
    /// The member's id; empty outside any membership.
    pub member_id: String,
    /// Its static membership id, if any.
    pub instance_id: Option<String>,
    /// The offsets: each the offset of the next record to consume, at most the
    /// partition's high watermark. Kafka's commit metadata strings are not kept.
    pub offsets: Vec<(TopicPartition, u64)>,
}

/// A group as Kafka's DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicGroupDescription {
    /// The group's name.
    pub name: String,
    /// Its state ([`GroupState::PreparingRebalance`] and
    /// [`GroupState::CompletingRebalance`] while client-assigned members rebalance).
    pub state: GroupState,
    /// Which kind of members it has; `None` when it has none.
    pub kind: Option<GroupKind>,
    /// The protocol type of its client-assigned members; empty otherwise.
    pub protocol_type: String,
    /// The protocol of its current generation; empty outside a client-assigned
    /// generation.
    pub protocol: String,
    /// Its members, sorted by id.
    pub members: Vec<ClassicMemberDescription>,
}

/// A member as Kafka's DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberDescription {
    /// The member's id.
    pub member_id: String,
    /// Its static membership id, if any.
    pub instance_id: Option<String>,
    /// The client's id (empty for a server-assigned member).
    pub client_id: String,
    /// Where it connected from.
    pub client_host: String,
    /// Its metadata for the generation's protocol (empty for a server-assigned member).
    pub metadata: Bytes,
    /// The assignment its leader gave it (empty for a server-assigned member, and until the
    /// leader syncs).
    pub assignment: Bytes,
}
