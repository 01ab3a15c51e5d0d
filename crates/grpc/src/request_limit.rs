//! Reports request messages over `max_request_bytes` as RESOURCE_EXHAUSTED naming the
//! limit, and request messages that do not decode as INVALID_ARGUMENT.
//!
//! tonic refuses an oversized request message with OUT_OF_RANGE before any handler runs;
//! Sluice reports every request over a limit as RESOURCE_EXHAUSTED (as gRPC's own
//! implementations do for oversized messages), and keeps OUT_OF_RANGE for offsets. tonic
//! reports a request that is not valid protobuf (for example a `string` field holding
//! bytes that are not UTF-8) as INTERNAL; the fault is the client's, so Sluice answers
//! INVALID_ARGUMENT, keeping INTERNAL for failures of the server itself.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};

/// How tonic's message for an oversized request starts.
const TOO_LARGE: &str = "Error, decoded message length too large";
/// How tonic's message for a request that is not valid protobuf starts.
const UNDECODABLE: &str = "failed to decode Protobuf message";

/// `status` turned into RESOURCE_EXHAUSTED naming `max_request_bytes = limit` when it is
/// tonic's refusal of an oversized request message, or into INVALID_ARGUMENT when it is
/// tonic's report of a request message that does not decode; any other status unchanged.
pub(crate) fn request_error(status: Status, limit: usize) -> Status {
    match status.code() {
        Code::OutOfRange if status.message().starts_with(TOO_LARGE) => {
            Status::resource_exhausted(format!(
                "request message exceeds max_request_bytes = {limit} ({})",
                status.message()
            ))
        }
        Code::Internal if status.message().starts_with(UNDECODABLE) => {
            Status::invalid_argument(format!("malformed request message: {}", status.message()))
        }
        _ => status,
    }
}

/// Wraps a generated gRPC service, rewriting its immediate error responses with
/// [`request_error`].
#[derive(Debug, Clone)]
pub(crate) struct RequestLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> RequestLimit<S> {
    /// `inner`, whose decoding limit is `limit` bytes.
    pub(crate) fn new(inner: S, limit: usize) -> Self {
        RequestLimit { inner, limit }
    }
}

impl<S> Service<http::Request<Body>> for RequestLimit<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limit = self.limit;
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            // Errors raised before the handler runs travel in the response headers.
            let rewritable = response
                .headers()
                .get(Status::GRPC_STATUS)
                .is_some_and(|code| matches!(code.as_bytes(), b"11" | b"13"));
            if rewritable && let Some(status) = Status::from_header_map(response.headers()) {
                let code = status.code();
                let rewritten = request_error(status, limit);
                if rewritten.code() != code {
                    // Encoding a status we built from plain text cannot fail; if it ever
                    // did, the original status stays in place.
                    let _ = rewritten.add_header(response.headers_mut());
                }
            }
            Ok(response)
        })
    }
}

impl<S: NamedService> NamedService for RequestLimit<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_oversized_and_undecodable_requests_are_rewritten() {
        let tonic_refusal = Status::out_of_range(
            "Error, decoded message length too large: found 2000 bytes, the limit is: 1024 bytes",
        );
        let status = request_error(tonic_refusal, 1024);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("max_request_bytes = 1024"));
        assert!(status.message().contains("found 2000 bytes"));

        let offset = Status::out_of_range("offset 9 is out of range: valid offsets are 0..=3");
        let status = request_error(offset, 1024);
        assert_eq!(status.code(), Code::OutOfRange);
        assert!(status.message().starts_with("offset 9"));

        let undecodable = Status::internal(
            "failed to decode Protobuf message: ProduceRequest.topic: invalid string value: \
             data is not UTF-8 encoded",
        );
        let status = request_error(undecodable, 1024);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("ProduceRequest.topic"));

        let internal = Status::internal("offset lookup task failed");
        assert_eq!(request_error(internal, 1024).code(), Code::Internal);
    }
}
