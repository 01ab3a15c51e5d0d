//! Sluice's Kafka wire-protocol front end.
//!
//! Kafka clients (librdkafka and its bindings, kafka-python, aiokafka, the Java client, kcat)
//! connect to a [`KafkaListener`] and speak to the broker unchanged: each request is decoded
//! with the `kafka-protocol` crate, mapped onto one [`sluice_broker::Broker`] call and answered
//! in the client's version. Produced batches are appended as the client encoded them
//! (raw-batch produce) and fetches are answered with the stored batch bytes, so nothing is
//! decoded or re-encoded on either path.
//!
//! The APIs and versions served are listed in [`api::SUPPORTED`] (what ApiVersions answers);
//! `docs/kafka.md` says what differs from a Kafka cluster.
#![warn(missing_docs)]

pub mod api;
mod config;
mod connection;
mod error;
mod errors;
mod frame;
mod listener;

pub use api::{Request, decode_request};
pub use config::{
    Advertised, DEFAULT_MAX_IN_FLIGHT_REQUESTS, DEFAULT_MAX_LOGIN_REQUEST_BYTES,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_SHARE_HEARTBEAT_INTERVAL, DEFAULT_SHARE_SESSION_TIMEOUT,
    KafkaConfig,
};
pub use error::KafkaError;
pub use frame::read_frame;
pub use listener::KafkaListener;
