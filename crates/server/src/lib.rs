//! The Sluice server host.
//!
//! Gathers the settings ([`ServerConfig::load`]: command line > environment > config file >
//! defaults), opens the [`sluice_broker::Broker`] and starts each enabled front end on it:
//! the gRPC services of `sluice-grpc` on the main listener, with `grpc.health.v1.Health`
//! and gRPC reflection (v1) so tools like grpcurl work without the `.proto` files, and the
//! metrics endpoint (Prometheus `/metrics`, `/healthz`, `/readyz`). [`run`] serves until a
//! shutdown signal, then drains the broker and closes the logs cleanly.
#![warn(missing_docs)]

mod cli;
mod config;
mod error;
mod health;
mod logging;
mod metrics;
mod reservations;
mod server;

pub use cli::{ServeArgs, key_value};
pub use config::{
    AmqpSettings, AuthSettings, DEFAULT_AMQP_LISTEN, DEFAULT_DATA_DIR, DEFAULT_KAFKA_LISTEN,
    DEFAULT_LISTEN, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_STREAMS_PER_CONNECTION,
    DEFAULT_MAX_SUBSCRIBE_BYTES, DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_METRICS_LISTEN, GroupSettings,
    KafkaSettings, LimitSettings, ListenAddr, LogFormat, ServerConfig, Settings, TlsConfig,
    TlsSettings,
};
pub use error::ServerError;

pub use logging::init_logging;
pub use server::{Server, run};
