//! The metrics port: `/metrics` (Prometheus text format), `/healthz` (the process is up)
//! and `/readyz` (the server serves and every partition can). With `--auth`, `/metrics`
//! takes HTTP basic credentials of a user with Describe on the cluster (Prometheus's
//! `basic_auth`); the probes stay open, as they tell nothing about the data.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_broker::security::{Caller, Operation, Resource};
use sluice_tls::{Reloadable, Transport};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ServerError;
use crate::health::{Health, Readiness};

/// The protocol name scrapes carry in the audit log.
const PROTOCOL: &str = "metrics";
/// Content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The bound metrics port, not yet serving.
#[derive(Debug)]
pub(crate) struct MetricsEndpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsEndpoint {
    /// Binds `addr` (port 0 picks a free port).
    pub(crate) async fn bind(addr: SocketAddr) -> Result<MetricsEndpoint, ServerError> {
        let bind_error = |source| ServerError::MetricsBind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(MetricsEndpoint { listener, addr })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What the handlers read.
#[derive(Debug)]
struct Scrape {
    handle: PrometheusHandle,
    health: Arc<Health>,
    /// Whether `/metrics` needs credentials.
    auth_required: bool,
}

/// Serves the metrics port (over TLS with `tls`, if set) and keeps the recorder's
/// histograms folded, until the task is aborted.
pub(crate) fn serve(
    endpoint: MetricsEndpoint,
    handle: PrometheusHandle,
    health: Arc<Health>,
    auth_required: bool,
    tls: Option<Arc<Reloadable>>,
) -> JoinHandle<()> {
    let upkeep = super::upkeep(handle.clone());
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(Scrape {
            handle,
            health,
            auth_required,
        }));
    let app = app.into_make_service_with_connect_info::<Peer>();
    tokio::spawn(async move {
        let addr = endpoint.addr;
        let served = match tls {
            None => axum::serve(endpoint.listener, app).into_future(),
            Some(tls) => axum::serve(Handshaken::start(endpoint, tls), app).into_future(),
        };
        tokio::select! {
            served = served => {
                if let Err(e) = served {
                    tracing::error!(error = %e, %addr, "metrics endpoint failed");
                }
            }
            () = upkeep => {}
        }
    })
}

/// The metrics port's connections after their TLS handshakes, which run on tasks of their
/// own so a slow client holds up no other.
#[derive(Debug)]
struct Handshaken {
    addr: SocketAddr,
    connections: mpsc::Receiver<(Transport<TcpStream>, SocketAddr)>,
}

impl Handshaken {
    /// Accepts on `endpoint` (until this is dropped) and runs each handshake with `tls`.
    fn start(endpoint: MetricsEndpoint, tls: Arc<Reloadable>) -> Handshaken {
        let (done, connections) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = endpoint.listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors or similar: keep the listener, slow down.
                            tracing::warn!(error = %e, "cannot accept a metrics connection");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = done.closed() => return,
                };
                let tls = Arc::clone(&tls);
                let done = done.clone();
                tokio::spawn(async move {
                    match sluice_tls::accept(Some(&tls), stream).await {
                        Ok((stream, _)) => {
                            let _ = done.send((stream, peer)).await;
                        }
                        Err(e) => tracing::info!(%peer, error = %e, "metrics connection refused"),
                    }
                });
            }
        });
        Handshaken {
            addr: endpoint.addr,
            connections,
        }
    }
}

/// The address a scrape comes from, over plaintext or TLS.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, Handshaken>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Handshaken>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl axum::serve::Listener for Handshaken {
    type Io = Transport<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accepting task ended: nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

async fn metrics(
    State(scrape): State<Arc<Scrape>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    if scrape.auth_required
        && let Err(refusal) = authenticate(&scrape, peer, &headers).await
    {
        return refusal;
    }
    // Group delays read the logs: off the async threads.
    let rendered = tokio::task::spawn_blocking(move || {
        let mut text = scrape.handle.render();
        if let Some(broker) = scrape.health.broker() {
            super::state::render(broker, &mut text);
        }
        text
    })
    .await;
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Checks a scrape's credentials: a user with Describe on the cluster.
async fn authenticate(
    scrape: &Scrape,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let unauthorized = |text: String| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"sluice\"")],
            text,
        )
            .into_response()
    };
    let Some(broker) = scrape.health.broker() else {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is starting; /metrics answers authenticated scrapes once it serves\n",
        )
            .into_response());
    };
    let security = broker.security();
    let Some((user, password)) = headers
        .get(header::AUTHORIZATION)
        .and_then(sluice_grpc::basic_credentials)
    else {
        security
            .refuse_login(peer.ip(), PROTOCOL, "none", "no credentials")
            .await;
        return Err(unauthorized(
            "/metrics requires HTTP basic credentials of a user with describe on the cluster\n"
                .to_owned(),
        ));
    };
    let principal = security
        .login_plain(peer.ip(), PROTOCOL, &user, &password)
        .await
        .map_err(|e| unauthorized(format!("{e}\n")))?;
    security
        .authorize(
            &Caller::new(principal, peer.ip(), PROTOCOL),
            Operation::Describe,
            &Resource::cluster(),
        )
        .map_err(|e| (StatusCode::FORBIDDEN, format!("{e}\n")).into_response())
}

async fn readyz(State(scrape): State<Arc<Scrape>>) -> Response {
    let readiness = scrape.health.readiness();
    let code = match readiness {
        Readiness::Serving => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, readiness.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_metrics_address_names_the_setting() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("address");
        let err = MetricsEndpoint::bind(addr)
            .await
            .expect_err("address in use");
        let text = err.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(text.contains("metrics_listen"), "{text}");
    }
}
