//! Rust client for Sluice, a partitioned, append-only log server.
//!
//! - [`Client`]: a connection to a server, shared by everything made from it.
//! - [`Admin`]: create, delete, list and describe topics; list, describe, reset and
//!   delete consumer groups; list, describe, alter and delete share groups; look up
//!   offsets.
//! - [`Producer`]: sends records, batched per partition and pipelined over one stream;
//!   each [`send`](Producer::send) resolves to the partition and offset the record was
//!   written at. Retries while the server is unavailable, keeping the order of every
//!   partition.
//! - [`Consumer`]: reads a partition or a whole topic from an offset, the earliest or
//!   latest record or a timestamp, then follows new records live; survives server restarts
//!   without skipping or repeating records.
//! - [`GroupConsumer`]: a member of a consumer group; the server shares the partitions
//!   among the members and each resumes at the group's committed offsets.
//! - [`ShareConsumer`]: a member of a share group (a queue): records are shared one by
//!   one among any number of members, each accepted, released or rejected on its own.
//!
//! ```no_run
//! use sluice_client::{Client, NewTopic, Position, ProducerRecord};
//!
//! # async fn example() -> sluice_client::Result<()> {
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! client.admin().create_topic(NewTopic::new("orders", 3)).await?;
//!
//! let producer = client.producer().build()?;
//! let written = producer
//!     .send(ProducerRecord::new("orders", "42 widgets").key("customer-7"))
//!     .await?;
//!
//! let mut consumer = client
//!     .consumer("orders")
//!     .partition(written.partition)
//!     .start(Position::Offset(written.offset))
//!     .build();
//! let record = consumer.next().await?;
//! assert_eq!(record.value, "42 widgets");
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod admin;
mod backoff;
mod client;
mod consumer;
mod credentials;
mod error;
mod group_consumer;
mod producer;
mod record;
mod share_consumer;

pub use admin::{Admin, NewTopic, TopicConfigChanges};
pub use client::{Client, ClientBuilder};
pub use consumer::{Consumer, ConsumerBuilder};
pub use credentials::Transport;
pub use error::{Error, Refusal, Result};
pub use group_consumer::{
    GroupConsumer, GroupConsumerBuilder, GroupEvent, OffsetReset, TopicPartition,
};
pub use producer::{Producer, ProducerBuilder, SendFuture};
pub use record::{ConsumerRecord, Position, ProducerRecord, RecordMetadata};
pub use share_consumer::{AckKind, ShareConsumer, ShareConsumerBuilder, ShareRecord};
pub use sluice_proto::v1::{
    CommittedOffset, DescribeGroupResponse, DescribeShareGroupResponse, GroupState, GroupSummary,
    Header, MemberDescription, PartitionDescription, PartitionLag, PartitionOffset,
    ShareGroupSettings, ShareGroupSummary, ShareMemberDescription, SharePartitionState,
    TopicDescription, TopicPartitions, TopicSummary,
};
pub use tonic::Code;
