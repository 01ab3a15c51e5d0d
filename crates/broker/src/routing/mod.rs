//! Routing metadata, protocol-neutral: exchanges (RabbitMQ's direct, fanout, topic and
//! headers kinds), queue definitions and the bindings between them, and the decision which
//! queues a published message goes to. A queue's records are the topic of its name, read by
//! the share group of its name; this module holds only its definition.
//!
//! The live state is in memory (`state.rs`, behind `store.rs`); durable exchanges, durable
//! queue definitions and bindings between durable ends are journaled under
//! `data_dir/routing` (`record.rs`, over `crate::journal`) and reloaded when the broker
//! opens; the rest is gone after a restart. Matching lives in `topic.rs` and `headers.rs`,
//! the naming rules and the built-in exchanges in `names.rs`, the broker's operations in
//! `operations.rs`.

mod headers;
mod names;
mod operations;
mod record;
mod state;
pub(crate) mod store;
mod topic;
mod types;

pub use types::{BindingSpec, ExchangeKind, ExchangeSpec, QueueSpec};
