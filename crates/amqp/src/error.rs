//! Errors of the AMQP front end.

use std::net::SocketAddr;

/// Why the AMQP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The listen address could not be bound.
    #[error("cannot listen for AMQP clients on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The settings break a rule.
    #[error("invalid AMQP setting: {0}")]
    Config(String),
}
