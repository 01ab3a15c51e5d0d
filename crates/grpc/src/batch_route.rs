//! `Log.SubscribeBatches` served without re-encoding the batches it streams.
//!
//! A tonic codec can only write a message by copying it into tonic's output buffer, and a
//! SubscribeBatches message is almost all stored record batches. This route answers the call
//! itself: each message goes out as two HTTP/2 data chunks, a few bytes of gRPC frame header
//! and protobuf fields (partition, high watermark, next offset, and the length prefix of
//! `record_batches`), then the batches as the broker read them, slices of the segment's
//! memory map that hyper writes to the socket with a vectored write. Protobuf allows fields
//! in any order, so the batches can come last.
//!
//! Calls this route does not take (any other path, or a request compressed with
//! `grpc-encoding`) go to the generated service. Answers are sent uncompressed, which gRPC
//! allows whatever the client accepts: stored batches carry their own compression.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use sluice_broker::Broker;
use sluice_proto::v1::{SubscribeBatchesResponse, SubscribeRequest};
use tokio_stream::Stream;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

use crate::auth::caller_of;
use crate::request_limit::request_error;
use crate::subscribe::{BatchSubscriptionStream, subscribe_batches};

/// The path of the call this route answers.
const PATH: &str = "/sluice.v1.Log/SubscribeBatches";
/// The field number of `SubscribeBatchesResponse.record_batches`.
const RECORD_BATCHES_FIELD: u32 = 2;
/// A gRPC message's frame header: the compressed flag and the message length.
const FRAME_HEADER_LEN: usize = 5;

/// Wraps the generated `sluice.v1.Log` service, answering SubscribeBatches itself.
#[derive(Debug, Clone)]
pub(crate) struct BatchRoute<S> {
    inner: S,
    broker: Arc<Broker>,
    max_request_bytes: usize,
}

impl<S> BatchRoute<S> {
    /// `inner`, with SubscribeBatches answered from `broker`; the request message may hold
    /// up to `max_request_bytes`.
    pub(crate) fn new(inner: S, broker: Arc<Broker>, max_request_bytes: usize) -> Self {
        BatchRoute {
            inner,
            broker,
            max_request_bytes,
        }
    }
}

impl<S> Service<http::Request<Body>> for BatchRoute<S>
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
        let identity = request
            .headers()
            .get("grpc-encoding")
            .is_none_or(|encoding| encoding == "identity");
        if request.uri().path() != PATH || !identity {
            return Box::pin(self.inner.call(request));
        }
        let broker = Arc::clone(&self.broker);
        let limit = self.max_request_bytes;
        Box::pin(async move {
            Ok(match answer(&broker, limit, request).await {
                Ok(stream) => streaming(stream),
                Err(status) => status.into_http(),
            })
        })
    }
}

impl<S: NamedService> NamedService for BatchRoute<S> {
    const NAME: &'static str = S::NAME;
}

/// Reads the request message and starts the subscription it asks for.
async fn answer(
    broker: &Arc<Broker>,
    limit: usize,
    request: http::Request<Body>,
) -> Result<BatchSubscriptionStream, Status> {
    let (parts, body) = request.into_parts();
    let too_large = || {
        Status::resource_exhausted(format!(
            "request message exceeds max_request_bytes = {limit}"
        ))
    };
    let mut body = Limited::new(body, limit.saturating_add(FRAME_HEADER_LEN))
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                Status::cancelled(format!("reading the request failed: {e}"))
            }
        })?
        .to_bytes();
    if body.len() < FRAME_HEADER_LEN {
        return Err(Status::invalid_argument(
            "malformed request message: no gRPC message in the request body",
        ));
    }
    let compressed = body.get_u8();
    let len = body.get_u32() as usize;
    if compressed != 0 {
        return Err(Status::internal(
            "a compressed request message without grpc-encoding",
        ));
    }
    if len > limit {
        return Err(too_large());
    }
    if len != body.len() {
        return Err(Status::invalid_argument(format!(
            "malformed request message: SubscribeBatches takes one message of {len} bytes, \
             the body holds {} after its header",
            body.len()
        )));
    }
    let request = SubscribeRequest::decode(body).map_err(|e| {
        request_error(
            Status::internal(format!("failed to decode Protobuf message: {e}")),
            limit,
        )
    })?;
    subscribe_batches(broker, caller_of(&parts.extensions), request).await
}

/// The streaming response carrying `stream`'s messages.
fn streaming(stream: BatchSubscriptionStream) -> http::Response<Body> {
    let body = BatchBody {
        stream,
        batches: None,
        ended: false,
    };
    let mut response = http::Response::new(Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The body of a SubscribeBatches answer: each message's head, then its batches, then the
/// trailers with the stream's status.
struct BatchBody {
    stream: BatchSubscriptionStream,
    /// The batches of the message whose head went out last.
    batches: Option<Bytes>,
    /// Whether the trailers went out.
    ended: bool,
}

impl http_body::Body for BatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if let Some(batches) = this.batches.take() {
            return Poll::Ready(Some(Ok(Frame::data(batches))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut this.stream).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(mut message))) => {
                let batches = std::mem::take(&mut message.record_batches);
                let head = head(&message, batches.len());
                this.batches = (!batches.is_empty()).then_some(batches);
                Frame::data(head)
            }
            Poll::Ready(Some(Err(status))) => {
                this.ended = true;
                Frame::trailers(trailers(&status))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Frame::trailers(trailers(&Status::ok("")))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.batches.is_none()
    }
}

/// The gRPC frame header and every field of `message` (whose `record_batches` is empty)
/// followed by the key and length of a `record_batches` field of `batches_len` bytes.
fn head(message: &SubscribeBatchesResponse, batches_len: usize) -> Bytes {
    let fields = message.encoded_len();
    let batches_field = if batches_len == 0 {
        0
    } else {
        1 + encoded_len_varint(batches_len as u64) + batches_len
    };
    let message_len = fields + batches_field;
    let mut head = BytesMut::with_capacity(FRAME_HEADER_LEN + message_len - batches_len);
    head.put_u8(0);
    // A message of more than 4 GiB cannot be framed; the broker's subscribe limits keep
    // messages to megabytes.
    head.put_u32(u32::try_from(message_len).unwrap_or(u32::MAX));
    message.encode_raw(&mut head);
    if batches_len > 0 {
        encode_key(RECORD_BATCHES_FIELD, WireType::LengthDelimited, &mut head);
        encode_varint(batches_len as u64, &mut head);
    }
    head.freeze()
}

/// The trailers reporting `status`.
fn trailers(status: &Status) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        // Only a status whose details do not encode fails; its code still goes out.
        let _ = Status::new(status.code(), "").add_header(&mut trailers);
    }
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_batches_decode_as_the_whole_message() {
        let batches = Bytes::from(vec![7u8; 300]);
        let message = SubscribeBatchesResponse {
            partition: 3,
            record_batches: Bytes::new(),
            high_watermark: 1 << 40,
            next_offset: 12345,
        };
        let head = head(&message, batches.len());
        let mut framed = BytesMut::new();
        framed.extend_from_slice(&head);
        framed.extend_from_slice(&batches);
        let mut framed = framed.freeze();
        assert_eq!(framed.get_u8(), 0);
        assert_eq!(framed.get_u32() as usize, framed.len());
        let decoded = SubscribeBatchesResponse::decode(framed).expect("decodes");
        assert_eq!(
            decoded,
            SubscribeBatchesResponse {
                record_batches: batches,
                ..message
            }
        );
    }

    #[test]
    fn a_message_without_batches_is_its_head_alone() {
        let message = SubscribeBatchesResponse {
            partition: 0,
            record_batches: Bytes::new(),
            high_watermark: 9,
            next_offset: 9,
        };
        let mut head = head(&message, 0);
        assert_eq!(head.get_u8(), 0);
        assert_eq!(head.get_u32() as usize, head.len());
        assert_eq!(
            SubscribeBatchesResponse::decode(head).expect("decodes"),
            message
        );
    }
}
