//! Sluice's gRPC server.
//!
//! Serves the `sluice.v1.Admin`, `sluice.v1.Log` and `sluice.v1.Groups` services over a
//! [`sluice_broker::Broker`], plus `grpc.health.v1.Health` and gRPC reflection (v1) so
//! tools like grpcurl work without the `.proto` files. [`ServerConfig::load`] gathers
//! the settings (command line > environment > config file > defaults) and [`run`]
//! serves until a shutdown signal, then drains and closes the logs cleanly.
#![warn(missing_docs)]

mod admin;
mod cli;
mod config;
mod convert;
mod error;
mod groups;
mod health;
mod log_service;
mod logging;
mod lookup;
mod metrics;
mod produce;
mod request_limit;
mod server;
mod shutdown;
mod status;
mod subscribe;
mod subscriptions;

pub use cli::{ServeArgs, key_value};
pub use config::{
    DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_STREAMS_PER_CONNECTION, DEFAULT_MAX_SUBSCRIBE_BYTES, DEFAULT_MAX_SUBSCRIPTIONS,
    DEFAULT_METRICS_LISTEN, GroupSettings, LimitSettings, LogFormat, MetricsListen, ServerConfig,
    Settings,
};
pub use error::ServerError;

/// The checks the services run on request messages before they reach the broker, callable
/// without a server (the fuzz targets drive them with arbitrary messages).
pub mod validation {
    pub use crate::convert::{Position, position};
    pub use crate::groups::wire::join_request;
    pub use crate::status::require_topic;
}
pub use logging::init_logging;
pub use server::{Server, run};
