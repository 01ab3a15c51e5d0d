//! gRPC traffic: open connections, open calls and finished calls by status code.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use metrics::{Gauge, counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Code, Status};

/// The connections of a listener that several serving phases share, one after the other:
/// a stream of accepted connections, each counted in `sluice_grpc_connections` while open.
#[derive(Debug)]
pub struct Accept {
    listener: Arc<TcpListener>,
    /// Once set, the stream ends without accepting anything more.
    done: Option<Arc<AtomicBool>>,
}

impl Accept {
    /// Every connection `listener` accepts.
    pub fn new(listener: Arc<TcpListener>) -> Accept {
        Accept {
            listener,
            done: None,
        }
    }

    /// The connections `listener` accepts until `done` is set (checked before each accept,
    /// so a later phase can take over the listener without losing a connection).
    pub fn until(listener: Arc<TcpListener>, done: Arc<AtomicBool>) -> Accept {
        Accept {
            listener,
            done: Some(done),
        }
    }
}

impl Stream for Accept {
    type Item = io::Result<Connection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done.as_ref().is_some_and(|d| d.load(Ordering::SeqCst)) {
            return Poll::Ready(None);
        }
        self.listener.poll_accept(cx).map(|accepted| {
            Some(accepted.and_then(|(stream, _)| {
                stream.set_nodelay(true)?;
                Ok(Connection::new(stream))
            }))
        })
    }
}

/// An accepted client connection, counted while open.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        gauge!("sluice_grpc_connections").increment(1.0);
        Connection { stream }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        gauge!("sluice_grpc_connections").decrement(1.0);
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Layer counting every gRPC call: `sluice_grpc_open_calls{rpc}` while its response is
/// open, then `sluice_grpc_responses_total{rpc, code}` with the status it ended with.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveCalls;

impl<S> tower_layer::Layer<S> for ObserveCalls {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed { inner }
    }
}

/// A service whose calls are counted; see [`ObserveCalls`].
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for Observed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<http::Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let rpc = rpc_name(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // A status in the headers is a trailers-only response: the call is over.
            if let Some(status) = Status::from_header_map(response.headers()) {
                let rpc = if status.code() == Code::Unimplemented {
                    // Unknown methods must not mint label values.
                    "unknown".to_owned()
                } else {
                    rpc
                };
                count_response(rpc, status.code());
                return Ok(response);
            }
            let call = OpenCall::new(rpc);
            Ok(response.map(|body| Body::new(CountedBody { body, call })))
        })
    }
}

/// The method name of a gRPC request path (`/sluice.v1.Log/Produce` -> `Produce`).
fn rpc_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

fn count_response(rpc: String, code: Code) {
    counter!("sluice_grpc_responses_total", "rpc" => rpc, "code" => format!("{code:?}"))
        .increment(1);
}

/// A call whose response is open: counted in `sluice_grpc_open_calls` until it ends.
#[derive(Debug)]
struct OpenCall {
    rpc: String,
    /// Its `sluice_grpc_open_calls` series, looked up once.
    open: Gauge,
    /// The status code it ended with, once seen in the trailers.
    ended: Option<Code>,
}

impl OpenCall {
    fn new(rpc: String) -> OpenCall {
        let open = gauge!("sluice_grpc_open_calls", "rpc" => rpc.clone());
        open.increment(1.0);
        OpenCall {
            rpc,
            open,
            ended: None,
        }
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.open.decrement(1.0);
        // A body dropped before its trailers: the client went away.
        count_response(
            std::mem::take(&mut self.rpc),
            self.ended.unwrap_or(Code::Cancelled),
        );
    }
}

/// A response body that notes the status in its trailers.
#[derive(Debug)]
struct CountedBody {
    body: Body,
    call: OpenCall,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(Status::from_header_map) {
                    self.call.ended = Some(status.code());
                }
            }
            Poll::Ready(Some(Err(status))) => self.call.ended = Some(status.code()),
            Poll::Ready(None) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
