//! Errors of starting, running and stopping the server.
//!
//! Errors of individual requests are reported to the client as gRPC statuses instead.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_broker::BrokerError;

/// Everything that can stop the server from starting or make it exit with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ConfigRead {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The config file is not valid TOML or has unknown or mistyped settings.
    #[error("invalid config file {}: {source}", path.display())]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A listener on an address beyond loopback while clients need not authenticate.
    #[error(
        "refusing to serve the {listener} listener on {addr} without authentication: anyone who can reach it could read, write and delete every topic; pass --auth (and create users with `sluice user add`), bind it to a loopback address, or pass --insecure to serve it openly anyway"
    )]
    Unauthenticated {
        /// Which listener.
        listener: String,
        /// Its address.
        addr: std::net::SocketAddr,
    },
    /// A setting has a value it cannot take.
    #[error("invalid setting {key} = {value:?}: {reason}")]
    InvalidSetting {
        /// The setting (or environment variable) name.
        key: String,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A `[topic_defaults]` entry was rejected by the topic config parser.
    #[error("invalid [topic_defaults]: {0}")]
    TopicDefaults(#[source] BrokerError),
    /// A `[groups]` setting is out of range.
    #[error("invalid [groups]: {0}")]
    Groups(#[source] BrokerError),
    /// A `[share]` setting is out of range.
    #[error("invalid [share]: {0}")]
    Share(#[source] BrokerError),
    /// A `[producers]` setting is out of range.
    #[error("invalid [producers]: {0}")]
    Producers(#[source] BrokerError),
    /// The log filter does not parse.
    #[error("invalid log filter {filter:?}: {source}")]
    LogFilter {
        /// The filter.
        filter: String,
        /// The parse error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The log subscriber could not be installed (one is already set).
    #[error("cannot set up logging: {0}")]
    Logging(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The Kafka listener could not start (its message names `kafka.listen`).
    #[error("{0} (set kafka.listen to another address, or to off)")]
    Kafka(#[from] sluice_kafka::KafkaError),
    /// The AMQP listener could not start (its message names the address or setting).
    #[error("{0} (set amqp.listen to another address, or to off)")]
    Amqp(#[from] sluice_amqp::AmqpError),
    /// The metrics endpoint's address could not be bound.
    #[error(
        "cannot listen on {addr} for the metrics endpoint (set metrics_listen to another \
         address, or to off): {source}"
    )]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The TLS certificate, key or client CA could not be loaded (the message names the
    /// file).
    #[error("cannot load TLS certificates (tls.cert, tls.key, tls.client_ca): {0}")]
    Tls(#[from] sluice_tls::TlsError),
    /// The SIGHUP handler (certificate reloads) could not be installed.
    #[error("cannot listen for SIGHUP to reload TLS certificates: {0}")]
    Signal(#[source] io::Error),
    /// The broker failed to open its data directory.
    #[error("cannot open the broker: {0}")]
    OpenBroker(#[source] BrokerError),
    /// The task opening the broker panicked or was cancelled.
    #[error("broker open task failed: {0}")]
    OpenTask(#[source] tokio::task::JoinError),
    /// The reflection service could not load the file descriptor sets.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    /// Closing the broker's logs at shutdown failed.
    #[error("broker shutdown failed: {0}")]
    Shutdown(#[source] BrokerError),
}
