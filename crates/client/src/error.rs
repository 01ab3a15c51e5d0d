//! The client's error type.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;

/// Everything a client operation can fail with.
///
/// Errors are cheap to clone: a failed batch hands the same error to every record in it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL is not a valid URI.
    #[error("invalid server URL '{url}'")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it was rejected.
        #[source]
        source: Arc<tonic::transport::Error>,
    },
    /// The TLS settings (CA or client certificate) are not usable.
    #[error("invalid TLS settings for {url}")]
    Tls {
        /// The server URL.
        url: String,
        /// Why they were rejected.
        #[source]
        source: Arc<tonic::transport::Error>,
    },
    /// No connection could be made to the server.
    #[error("cannot connect to {url}")]
    Connect {
        /// The server URL.
        url: String,
        /// The connection failure.
        #[source]
        source: Arc<tonic::transport::Error>,
    },
    /// The server failed or rejected a call, or the connection to it broke.
    #[error("{message}")]
    Server {
        /// The gRPC status code.
        code: Code,
        /// The server's explanation (for connection failures, the transport's).
        message: String,
    },
    /// The server refused some acknowledgements or lock renewals of a share consumer; the
    /// others were applied. Usually the lock of a record expired (it was held longer than
    /// the group's lock duration) and the record was given to another member.
    #[error("{}", refusals_text(.0))]
    Refused(Vec<Refusal>),
    /// The caller asked for something the client refuses to send.
    #[error("{0}")]
    InvalidArgument(String),
    /// The server answered something the protocol does not allow.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A record was not acknowledged within the producer's delivery timeout.
    #[error("record not acknowledged within {after:?}")]
    DeliveryTimeout {
        /// The delivery timeout.
        after: Duration,
        /// The last failure of the batch holding the record, if it was ever sent.
        #[source]
        last: Option<Box<Error>>,
    },
    /// The producer's background task is gone (the runtime is shutting down).
    #[error("the producer is closed")]
    ProducerClosed,
    /// A producer was built outside a Tokio runtime.
    #[error("a producer must be built inside a Tokio runtime")]
    NoRuntime,
}

impl Error {
    /// The gRPC status code of a server error, `None` for errors of other kinds.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a request that failed with this error is worth sending again: the server is
    /// unavailable (restarting, or its partition log refuses writes until a restart).
    pub(crate) fn is_retriable(&self) -> bool {
        self.code() == Some(Code::Unavailable)
    }

    /// Whether a stream that ended with this error broke for reasons of the connection rather
    /// than of the request, so that opening it again may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            Some(Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted)
        )
    }
}

impl From<tonic::Status> for Error {
    /// Keeps the code and the message; the message of a transport failure is extended with
    /// its causes so it says what went wrong ("connection refused").
    fn from(status: tonic::Status) -> Self {
        let mut message = status.message().to_owned();
        let mut cause = status.source();
        while let Some(err) = cause {
            let text = err.to_string();
            if !message.contains(&text) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&text);
            }
            cause = err.source();
        }
        if message.is_empty() {
            message = status.code().description().to_owned();
        }
        Error::Server {
            code: status.code(),
            message,
        }
    }
}

/// Why the server refused the acknowledgement or renewal of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The record's topic.
    pub topic: std::sync::Arc<str>,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// The gRPC status code (`FAILED_PRECONDITION` when the member no longer holds it).
    pub code: Code,
    /// The server's explanation.
    pub message: String,
}

/// `2 record(s) refused; the first, offset 7 of partition 0 of 'jobs': ...`.
fn refusals_text(refusals: &[Refusal]) -> String {
    match refusals.first() {
        Some(first) => format!(
            "{} record(s) refused; the first, offset {} of partition {} of '{}': {}",
            refusals.len(),
            first.offset,
            first.partition,
            first.topic,
            first.message
        ),
        None => "no record refused".to_owned(),
    }
}

/// The result type of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_keeps_its_code_and_message() {
        let err = Error::from(tonic::Status::not_found("topic \"x\" does not exist"));
        assert_eq!(err.code(), Some(Code::NotFound));
        assert_eq!(err.to_string(), "topic \"x\" does not exist");
        assert!(!err.is_retriable());
        assert!(!err.is_transient());
    }

    #[test]
    fn an_empty_message_is_replaced_by_the_code() {
        let err = Error::from(tonic::Status::unavailable(""));
        assert_eq!(err.to_string(), Code::Unavailable.description());
        assert!(err.is_retriable());
        assert!(err.is_transient());
    }

    #[test]
    fn only_connection_trouble_is_transient() {
        let unknown = Error::from(tonic::Status::unknown("connection reset"));
        assert!(unknown.is_transient());
        assert!(!unknown.is_retriable());
        let too_big = Error::from(tonic::Status::resource_exhausted("request too large"));
        assert!(!too_big.is_transient());
    }
}
