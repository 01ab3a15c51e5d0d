//! Share groups (Kafka's KIP-932): members taking the records of the same partitions one at a
//! time, each under a lock, each acknowledged on its own (accepted, released or rejected),
//! redelivered with a delivery count, archived past a delivery limit and dead-lettered.
//!
//! Per group and partition a share-partition (`partition.rs`) holds the start offset and the
//! in-flight window; the group (`group.rs`) holds its members and settings; every change that
//! must survive a crash goes to one journal under `data_dir/share` (`state_record.rs`,
//! `state_log.rs`, over `crate::journal`), compacted in the background. How far the groups
//! are done with a topic's partitions decides what `share.reclaim.enable` may delete
//! (`reclaim.rs`). The guarantees are described in `docs/share-groups.md`.

pub(crate) mod coordinator;
mod dead_letter;
mod group;
mod member;
mod operations;
mod partition;
mod reader;
mod reclaim;
mod settings;
mod state_log;
mod state_record;
mod types;

pub use dead_letter::{
    DLQ_DELIVERY_COUNT_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
};
pub use member::ShareMember;
pub use settings::{ShareConfig, ShareGroupSettings, ShareOffsetReset};
pub use types::{
    Ack, AckKind, AcquiredRecord, ShareGroupDescription, ShareGroupSummary, ShareJoin,
    ShareMemberDescription, SharePartitionState,
};
