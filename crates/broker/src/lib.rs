//! The Sluice broker.
//!
//! Maps topics to partitions and partitions to [`sluice_storage::Log`]s, and
//! gives produce and fetch their semantics: Kafka's default partitioner,
//! server-side timestamps, per-record size limits, long-poll fetches woken by
//! appends, idempotent producers (Kafka's deduplication, fencing and sequence checks),
//! topic metadata that survives restarts, and the periodic flushing,
//! checkpointing and retention the logs need.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//!
//! use sluice_broker::{Broker, BrokerConfig, NewRecord};
//!
//! # async fn example() -> Result<(), sluice_broker::BrokerError> {
//! let broker = Broker::open(BrokerConfig::new("sluice-data"))?;
//! broker.start_background();
//! broker.create_topic("orders", 3, &BTreeMap::new()).await?;
//! let appended = broker
//!     .produce("orders", None, [NewRecord::new("hello").with_key("customer-7")])
//!     .await?;
//! let (partition, offset) = (appended[0].partition, appended[0].base_offset);
//! let fetched = broker
//!     .fetch("orders", partition, offset, 0, Duration::from_secs(1))
//!     .await?;
//! for record in fetched.records() {
//!     let record = record?;
//!     println!("{}: {:?}", record.offset, record.value);
//! }
//! broker.shutdown().await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod alter_config;
mod append_queue;
mod background;
mod broker;
mod cluster;
pub mod config;
mod error;
mod fetch;
mod fetch_many;
mod fetch_range;
mod follow;
mod groups;
mod in_flight;
mod journal;
mod lifecycle;
mod lookup;
mod metadata;
mod name;
mod produce;
mod producers;
mod queues;
mod raw_batch;
mod reservations;
mod routing;
pub mod security;
mod share;
mod subscriptions;
mod topic;

pub use alter_config::{ConfigChange, ConfigUpdate};
pub use broker::{Broker, PendingProduce};
pub use cluster::NODE_ID;
pub use config::{BrokerConfig, FlushMode, Limits, TopicConfig};
pub use error::{BrokerError, CorruptSource, ErrorKind};
pub use fetch::{Fetched, OffsetSpec, Position};
pub use fetch_many::{FetchMany, PartitionFetch, PartitionFetched};
pub use follow::{Delivery, Subscribe, Subscription};
pub use groups::{
    ClassicCommit, ClassicGroupDescription, ClassicJoin, ClassicJoined, ClassicMemberDescription,
    ClassicSync, ClassicSynced, Committed, CommittedOffset, GroupConfig, GroupDescription,
    GroupKind, GroupMember, GroupSession, GroupState, GroupSummary, JoinGroup, JoinedMember,
    Keepalive, LeavingMember, MAX_GROUP_NAME_LEN, MIN_OFFSETS_COMPACTION_BYTES,
    MIN_OFFSETS_COMPACTION_RATIO, MemberAssignment, MemberDescription, OffsetReset, PartitionLag,
    ResetTo, SessionAssignment, SessionEvent, SessionHandle, TopicPartition, validate_group_name,
};
pub use lifecycle::Draining;
pub use name::validate_topic_name;
pub use produce::{NewRecord, ProduceRecord};
pub use producers::{ProducerConfig, ProducerIdentity};
pub use queues::QueueStatus;
pub use routing::{BindingSpec, ExchangeKind, ExchangeSpec, QueueSpec};
pub use share::{
    Ack, AckKind, AcquiredRecord, DLQ_DELIVERY_COUNT_HEADER, DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER, DLQ_REASON_HEADER, DLQ_TOPIC_HEADER, ShareConfig, ShareGroupDescription,
    ShareGroupSettings, ShareGroupSummary, ShareJoin, ShareMember, ShareMemberDescription,
    ShareOffsetReset, SharePartitionState,
};
pub use sluice_partitioner::{murmur2, partition_for_key};
pub use sluice_storage::TimestampType;
pub use sluice_storage::batch::{Compression, RecordView};
pub use sluice_storage::io::observe_syncs;
pub use topic::{
    PartitionAppend, PartitionFault, PartitionInfo, PartitionTraffic, TopicInfo, TopicSummary,
};
