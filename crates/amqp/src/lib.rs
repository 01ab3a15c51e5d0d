//! Sluice's AMQP 0-9-1 front end.
//!
//! RabbitMQ clients (pika, the RabbitMQ tutorials, lapin) connect to an [`AmqpListener`]
//! and work unchanged. Frames are decoded and encoded with the `amq-protocol` crate. The
//! model is the broker's: a queue is a topic (one partition) read by the share group of the
//! same name, so its messages are stored, replayed and measured like any other topic and
//! seen by gRPC and Kafka readers; exchanges and bindings are the broker's routing
//! definitions; a consumer is a share group member; acknowledgements are the share group's.
//!
//! `docs/amqp.md` lists the methods served and what differs from RabbitMQ.
#![warn(missing_docs)]

mod access;
mod channel;
mod codec;
mod config;
mod connection;
mod deliver;
mod error;
mod expiry;
mod listener;
mod properties;
mod publish;
mod registry;
mod reply;

pub use config::{
    AmqpConfig, DEFAULT_CHANNEL_MAX, DEFAULT_FRAME_MAX, DEFAULT_HEARTBEAT,
    DEFAULT_MAX_MESSAGE_BYTES,
};
pub use error::AmqpError;
pub use listener::AmqpListener;
