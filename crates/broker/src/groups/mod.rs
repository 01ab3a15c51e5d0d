//! Consumer groups: members sharing the partitions of their topics, cooperative sticky
//! rebalancing, and durable committed offsets.
//!
//! Groups come in two kinds ([`GroupKind`]): server-assigned, described here, and
//! client-assigned (Kafka's classic group protocol, [`classic`]), whose leader assigns the
//! partitions. One registry holds both, so a group name is one group whichever protocol
//! uses it; a group takes members of one kind at a time, and the committed offsets are
//! shared.
//!
//! A server-assigned member joins with [`Broker::join_group`](crate::Broker::join_group) and holds a
//! [`GroupMember`] for as long as its stream is open. The coordinator assigns the
//! partitions of the subscribed topics to the members, balanced and sticky; when the
//! members change it revokes only the partitions that move, and hands each one over only
//! once its previous owner released it ([`GroupMember::release`]), left, or ran out of time.
//! Commits are fenced by member and generation and acknowledged once durable, appended to
//! one offsets journal for every group under `data_dir/groups` (`crate::journal`), compacted
//! in the background.
//!
//! The state machine and the guarantees are described in `docs/consumer-groups.md`.

mod assignment;
mod classic;
mod config;
pub(crate) mod coordinator;
mod member;
mod offsets_file;
mod offsets_log;
mod offsets_record;
pub(crate) mod offsets_state;
mod operations;
mod session;
mod state;
mod types;

pub use classic::{
    ClassicCommit, ClassicGroupDescription, ClassicJoin, ClassicJoined, ClassicMemberDescription,
    ClassicSync, ClassicSynced, JoinedMember, LeavingMember,
};
pub use config::{GroupConfig, MIN_OFFSETS_COMPACTION_BYTES, MIN_OFFSETS_COMPACTION_RATIO};
pub use member::{GroupMember, Keepalive};
pub use session::{GroupSession, SessionAssignment, SessionEvent, SessionHandle};
pub use types::{
    Committed, CommittedOffset, GroupDescription, GroupKind, GroupState, GroupSummary, JoinGroup,
    MemberAssignment, MemberDescription, OffsetReset, PartitionLag, ResetTo, TopicPartition,
};

use crate::{BrokerError, validate_topic_name};

/// Longest group name (earlier versions named a file `<group>.offsets.tmp` after it, which had
/// to fit in 255 bytes).
pub const MAX_GROUP_NAME_LEN: usize = 240;

/// Checks a group name (or static member instance id): 1 to [`MAX_GROUP_NAME_LEN`]
/// characters from `[a-zA-Z0-9._-]`, and neither `.` nor `..` (the topic name rules).
pub fn validate_group_name(name: &str) -> Result<(), BrokerError> {
    let invalid = |reason: String| BrokerError::InvalidGroupName {
        name: name.to_owned(),
        reason,
    };
    if name.len() > MAX_GROUP_NAME_LEN {
        return Err(invalid(format!(
            "{} characters exceed the limit of {MAX_GROUP_NAME_LEN}",
            name.len()
        )));
    }
    validate_topic_name(name, usize::MAX).map_err(|e| match e {
        BrokerError::InvalidTopicName { reason, .. } => invalid(reason),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_topic_rules_with_their_own_length_limit() {
        assert!(validate_group_name("orders-consumers.v2").is_ok());
        assert!(validate_group_name(&"g".repeat(MAX_GROUP_NAME_LEN)).is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            &"g".repeat(MAX_GROUP_NAME_LEN + 1),
        ] {
            assert!(
                matches!(validate_group_name(bad), Err(BrokerError::InvalidGroupName { ref name, .. }) if name == bad),
                "{bad:?} accepted"
            );
        }
    }
}
