//! Errors of the Kafka front end: what ends a connection.

use std::io;
use std::net::SocketAddr;

/// Why a Kafka connection (or the listener) stopped.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The listen address could not be bound.
    #[error("cannot listen for Kafka clients on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading from or writing to the client failed.
    #[error("connection I/O failed: {0}")]
    Io(#[from] io::Error),
    /// A request frame declared a size outside `1..=socket.request.max.bytes`.
    #[error(
        "request frame of {size} bytes refused: the limit is {limit} bytes (kafka.max_request_bytes, Kafka's socket.request.max.bytes; before a login under --auth, kafka.max_login_request_bytes)"
    )]
    FrameSize {
        /// The size the frame declared.
        size: i64,
        /// `kafka.max_request_bytes`, or `kafka.max_login_request_bytes` before a login.
        limit: usize,
    },
    /// A request whose header or body does not decode.
    #[error("malformed {api} request (version {version}): {reason}")]
    Malformed {
        /// The API named by the header, or its numeric key.
        api: String,
        /// The version named by the header.
        version: i16,
        /// What the decoder said.
        reason: String,
    },
    /// An API key this server does not serve (Kafka closes the connection too).
    #[error("unsupported API key {key} (version {version})")]
    UnsupportedApi {
        /// The API key.
        key: i16,
        /// The version asked for.
        version: i16,
    },
    /// A served API asked for in a version outside the served range.
    #[error("unsupported version {version} of {api}: this server serves {min} to {max}")]
    UnsupportedVersion {
        /// The API.
        api: String,
        /// The version asked for.
        version: i16,
        /// Oldest version served.
        min: i16,
        /// Newest version served.
        max: i16,
    },
    /// A response that could not be encoded (a bug, or a value the version cannot hold).
    #[error("cannot encode the {api} response (version {version}): {reason}")]
    Encode {
        /// The API.
        api: String,
        /// The version.
        version: i16,
        /// What the encoder said.
        reason: String,
    },
    /// A produce request with `acks=0` failed: Kafka closes the connection so the client
    /// notices, since there is no response to carry the error.
    #[error("produce with acks=0 failed: {0}")]
    UnacknowledgedProduce(String),
    /// A request other than ApiVersions, SaslHandshake and SaslAuthenticate before the
    /// client authenticated on a server that asks for it (Kafka closes the connection too).
    #[error(
        "{api} request before authenticating: this server requires SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) or a client certificate"
    )]
    Unauthenticated {
        /// The API asked for.
        api: String,
    },
    /// A SASL login failed; its answer was sent, and Kafka closes the connection after it.
    #[error("SASL authentication failed: {0}")]
    AuthenticationFailed(String),
}
