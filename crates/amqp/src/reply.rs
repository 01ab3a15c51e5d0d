//! AMQP reply codes, and the failures that close a channel or the connection with one.

use sluice_broker::{BrokerError, ErrorKind};

/// 311: a message too large (returned, not closing).
pub(crate) const CONTENT_TOO_LARGE: u16 = 311;
/// 312: a mandatory message no queue takes (basic.return).
pub(crate) const NO_ROUTE: u16 = 312;
/// 320: the server closes the connection (shutting down).
pub(crate) const CONNECTION_FORCED: u16 = 320;
/// 403: not allowed (a reserved name, a refused login).
pub(crate) const ACCESS_REFUSED: u16 = 403;
/// 404: no such exchange or queue.
pub(crate) const NOT_FOUND: u16 = 404;
/// 405: an exclusive queue of another connection.
pub(crate) const RESOURCE_LOCKED: u16 = 405;
/// 406: the request conflicts with the state or breaks a limit.
pub(crate) const PRECONDITION_FAILED: u16 = 406;
/// 501: a malformed or oversized frame.
pub(crate) const FRAME_ERROR: u16 = 501;
/// 502: a frame whose fields do not parse.
pub(crate) const SYNTAX_ERROR: u16 = 502;
/// 503: a method not allowed here.
pub(crate) const COMMAND_INVALID: u16 = 503;
/// 504: a channel used wrongly (not open, opened twice, beyond channel_max).
pub(crate) const CHANNEL_ERROR: u16 = 504;
/// 505: a frame that does not fit the content being sent.
pub(crate) const UNEXPECTED_FRAME: u16 = 505;
/// 506: the server ran short of a resource.
pub(crate) const RESOURCE_ERROR: u16 = 506;
/// 530: not allowed (an unknown vhost).
pub(crate) const NOT_ALLOWED: u16 = 530;
/// 540: a method Sluice does not implement.
pub(crate) const NOT_IMPLEMENTED: u16 = 540;
/// 541: a server fault.
pub(crate) const INTERNAL_ERROR: u16 = 541;

/// RabbitMQ's name of a reply code, which starts its reply texts.
fn name(code: u16) -> &'static str {
    match code {
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// What a method's failure closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Only the channel it came on.
    Channel,
    /// The whole connection.
    Connection,
}

/// A failure answered with channel.close or connection.close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What it closes.
    pub(crate) scope: Scope,
    /// The reply code.
    pub(crate) code: u16,
    /// The reply text, `NAME - why` as RabbitMQ writes it.
    pub(crate) text: String,
    /// The class of the method that failed (0 when none).
    pub(crate) class_id: u16,
    /// The method that failed (0 when none).
    pub(crate) method_id: u16,
}

impl Failure {
    /// A failure closing the channel.
    pub(crate) fn channel(code: u16, why: impl AsRef<str>) -> Failure {
        Failure::new(Scope::Channel, code, why.as_ref())
    }

    /// A failure closing the connection.
    pub(crate) fn connection(code: u16, why: impl AsRef<str>) -> Failure {
        Failure::new(Scope::Connection, code, why.as_ref())
    }

    fn new(scope: Scope, code: u16, why: &str) -> Failure {
        let mut text = format!("{} - {why}", name(code));
        // A short string holds at most 255 bytes.
        if text.len() > 255 {
            let mut end = 255;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Failure {
            scope,
            code,
            text,
            class_id: 0,
            method_id: 0,
        }
    }

    /// The same failure, naming the method it answers.
    pub(crate) fn on(mut self, class_id: u16, method_id: u16) -> Failure {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }
}

impl From<BrokerError> for Failure {
    /// A broker error closes the channel, with the code RabbitMQ gives that kind of failure.
    fn from(err: BrokerError) -> Failure {
        let code = match err.kind() {
            ErrorKind::NotFound => NOT_FOUND,
            ErrorKind::AlreadyExists
            | ErrorKind::InvalidArgument
            | ErrorKind::OutOfRange
            | ErrorKind::TooLarge
            | ErrorKind::FailedPrecondition
            | ErrorKind::Conflict
            | ErrorKind::Fenced
            | ErrorKind::RebalanceInProgress => PRECONDITION_FAILED,
            ErrorKind::ResourceExhausted => RESOURCE_ERROR,
            ErrorKind::PermissionDenied | ErrorKind::Unauthenticated => ACCESS_REFUSED,
            ErrorKind::Unsupported => NOT_IMPLEMENTED,
            ErrorKind::Unavailable => RESOURCE_ERROR,
            _ => INTERNAL_ERROR,
        };
        match code {
            // Hard errors in AMQP 0-9-1: they close the connection.
            RESOURCE_ERROR | INTERNAL_ERROR => Failure::connection(code, err.to_string()),
            _ => Failure::channel(code, err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_start_with_the_code_name_and_fit_a_short_string() {
        let f = Failure::channel(NOT_FOUND, "no queue 'q' in vhost '/'").on(50, 10);
        assert_eq!(f.text, "NOT_FOUND - no queue 'q' in vhost '/'");
        assert_eq!((f.scope, f.class_id, f.method_id), (Scope::Channel, 50, 10));
        let long = Failure::connection(FRAME_ERROR, "é".repeat(300));
        assert!(long.text.len() <= 255 && long.text.starts_with("FRAME_ERROR - "));
    }
}
