//! Reports request messages over `max_request_bytes` as RESOURCE_EXHAUSTED naming the
//! limit.
//!
//! tonic refuses an oversized request message with OUT_OF_RANGE before any handler runs;
//! Sluice reports every request over a limit as RESOURCE_EXHAUSTED (as gRPC's own
//! implementations do for oversized messages), and keeps OUT_OF_RANGE for offsets.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};

/// How tonic's message for an oversized request starts.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// `status` turned into RESOURCE_EXHAUSTED naming `max_request_bytes = limit` when it is
/// tonic's refusal of an oversized request message; any other status unchanged.
pub(crate) fn oversized_request(status: Status, limit: usize) -> Status {
    if status.code() == Code::OutOfRange && status.message().starts_with(TOO_LARGE) {
        Status::resource_exhausted(format!(
            "request message exceeds max_request_bytes = {limit} ({})",
            status.message()
        ))
    } else {
        status
    }
}

/// Wraps a generated gRPC service, rewriting its immediate error responses with
/// [`oversized_request`].
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
            let out_of_range = response
                .headers()
                .get(Status::GRPC_STATUS)
                .is_some_and(|code| code.as_bytes() == b"11");
            if out_of_range && let Some(status) = Status::from_header_map(response.headers()) {
                let rewritten = oversized_request(status, limit);
                if rewritten.code() != Code::OutOfRange {
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
    fn only_oversized_request_errors_are_rewritten() {
        let tonic_refusal = Status::out_of_range(
            "Error, decoded message length too large: found 2000 bytes, the limit is: 1024 bytes",
        );
        let status = oversized_request(tonic_refusal, 1024);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("max_request_bytes = 1024"));
        assert!(status.message().contains("found 2000 bytes"));

        let offset = Status::out_of_range("offset 9 is out of range: valid offsets are 0..=3");
        let status = oversized_request(offset, 1024);
        assert_eq!(status.code(), Code::OutOfRange);
        assert!(status.message().starts_with("offset 9"));
    }
}
