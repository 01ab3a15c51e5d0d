//! Share groups (Kafka's KIP-932): members taking records of the same partitions one at a
//! time, under a lock, each record acknowledged on its own.

mod member;
mod operations;
mod settings;
mod types;

pub use member::ShareMember;
pub use settings::{ShareConfig, ShareGroupSettings, ShareOffsetReset};
pub use types::{
    Ack, AckKind, AcquiredRecord, ShareGroupDescription, ShareGroupSummary, ShareJoin,
    ShareMemberDescription, SharePartitionState,
};
