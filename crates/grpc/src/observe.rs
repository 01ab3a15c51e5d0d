//! gRPC traffic: open connections, open calls and finished calls by status code.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use metrics::{Gauge, counter, gauge};
use sluice_broker::security::Principal;
use sluice_tls::{Reloadable, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::server::Connected;
use tonic::{Code, Status};

/// The connections of a listener that several serving phases share, one after the other:
/// a stream of accepted connections, each counted in `sluice_grpc_connections` while open.
/// With TLS, handshakes run on tasks of their own, so a slow client holds up no other; a
/// failed handshake is logged and the connection dropped.
#[derive(Debug)]
pub struct Accept {
    listener: Arc<TcpListener>,
    /// Once set, the stream ends without accepting anything more.
    done: Option<Arc<AtomicBool>>,
    /// TLS for every connection, unless it serves plaintext.
    tls: Option<Arc<Reloadable>>,
    /// TLS handshakes under way.
    handshakes: JoinSet<Option<Connection>>,
}

impl Accept {
    /// Every connection `listener` accepts.
    pub fn new(listener: Arc<TcpListener>) -> Accept {
        Accept {
            listener,
            done: None,
            tls: None,
            handshakes: JoinSet::new(),
        }
    }

    /// The connections `listener` accepts until `done` is set (checked before each accept,
    /// so a later phase can take over the listener without losing a connection).
    pub fn until(listener: Arc<TcpListener>, done: Arc<AtomicBool>) -> Accept {
        Accept {
            done: Some(done),
            ..Accept::new(listener)
        }
    }

    /// The same connections after a TLS handshake with `tls`'s current certificates, if
    /// `tls` is set.
    pub fn with_tls(self, tls: Option<Arc<Reloadable>>) -> Accept {
        Accept { tls, ..self }
    }
}

impl Stream for Accept {
    type Item = io::Result<Connection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done.as_ref().is_some_and(|d| d.load(Ordering::SeqCst)) {
            return Poll::Ready(None);
        }
        while let Poll::Ready(accepted) = this.listener.poll_accept(cx) {
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => return Poll::Ready(Some(Err(e))),
            };
            if let Err(e) = stream.set_nodelay(true) {
                return Poll::Ready(Some(Err(e)));
            }
            let Some(tls) = this.tls.clone() else {
                return Poll::Ready(Some(Ok(Connection::new(
                    Transport::Plain(stream),
                    peer,
                    None,
                ))));
            };
            this.handshakes.spawn(async move {
                match tls.accept(stream).await {
                    Ok((stream, certificate)) => Some(Connection::new(
                        Transport::Tls(Box::new(stream)),
                        peer,
                        certificate.as_deref().map(Principal::user),
                    )),
                    Err(err) => {
                        tracing::info!(%peer, error = %err, "gRPC connection refused");
                        None
                    }
                }
            });
        }
        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(connection)))) => {
                    return Poll::Ready(Some(Ok(connection)));
                }
                Poll::Ready(Some(_)) => {}
                // The listener woke us or will.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Who is at the other end of a gRPC connection; in each call's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The principal of the client's certificate (mutual TLS).
    pub certificate: Option<Principal>,
}

/// An accepted client connection, counted while open.
#[derive(Debug)]
pub struct Connection {
    stream: Transport<TcpStream>,
    peer: PeerInfo,
}

impl Connection {
    fn new(
        stream: Transport<TcpStream>,
        remote_addr: SocketAddr,
        certificate: Option<Principal>,
    ) -> Connection {
        gauge!("sluice_grpc_connections").increment(1.0);
        Connection {
            stream,
            peer: PeerInfo {
                remote_addr,
                certificate,
            },
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        gauge!("sluice_grpc_connections").decrement(1.0);
    }
}

impl Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
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
