//! Serving: bind the listeners, open the broker, serve the front ends and shut down
//! cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_amqp::AmqpListener;
use sluice_broker::Broker;
use sluice_grpc::{Accept, Authenticate, ObserveCalls};
use sluice_kafka::KafkaListener;
use sluice_tls::{ALPN_H2, ALPN_HTTP1, Reloadable};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{ServerConfig, TlsConfig};
use crate::error::ServerError;
use crate::health::{Health, RejectWhileRecovering};
use crate::metrics::MetricsEndpoint;

/// HTTP/2 flow-control window per stream: lets a large fetch or produce flow without
/// waiting for window updates.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// HTTP/2 flow-control window per connection, shared by its streams.
const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;
/// Largest HTTP/2 frame clients may send: a produce request of a megabyte arrives in a few
/// frames, read with a few large socket reads, rather than in 64 frames of the default 16 KiB.
const MAX_FRAME_BYTES: u32 = 1 << 20;
/// How long shutdown waits for open calls to finish before closing the logs anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A bound, opened server that has not started serving yet.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    listener: Arc<TcpListener>,
    local_addr: SocketAddr,
    broker: Arc<Broker>,
    health: Arc<Health>,
    /// The metrics endpoint's address and task, unless it is off.
    metrics: Option<(SocketAddr, AbortOnDrop)>,
    /// The Kafka listener, unless it is off.
    kafka: Option<KafkaListener>,
    /// The AMQP listener, unless it is off.
    amqp: Option<AmqpListener>,
    /// The gRPC listener's TLS, unless it is plaintext.
    grpc_tls: Option<Arc<Reloadable>>,
    /// Reloads every listener's certificates on SIGHUP, when any serves TLS.
    _reload: Option<AbortOnDrop>,
}

impl Server {
    /// Binds the metrics endpoint (unless it is off) and the listen address, answers
    /// health checks with NOT_SERVING while it opens the broker (on a blocking thread: it
    /// recovers the logs).
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        for name in &config.unknown_env {
            tracing::warn!(variable = %name, "ignoring environment variable: it names no setting");
        }
        let health = Health::recovering().await;
        // A listener's TLS, when it is on and serves TLS.
        let tls =
            |listens: bool, serves: fn(&TlsConfig) -> bool, alpn: &[&'static [u8]]| match &config
                .tls
            {
                Some(tls) if listens && serves(tls) => Reloadable::new(tls.files.clone(), alpn)
                    .map(|tls| Some(Arc::new(tls)))
                    .map_err(ServerError::Tls),
                _ => Ok(None),
            };
        let grpc_tls = tls(true, |tls| tls.grpc, &[ALPN_H2])?;
        let metrics_tls = tls(
            config.metrics_listen.is_some(),
            |tls| tls.metrics,
            &[ALPN_HTTP1],
        )?;
        let kafka_tls = tls(config.kafka_listen.is_some(), |tls| tls.kafka, &[])?;
        let amqp_tls = tls(config.amqp_listen.is_some(), |tls| tls.amqp, &[])?;
        let reloadable: Vec<Arc<Reloadable>> = [&grpc_tls, &metrics_tls, &kafka_tls, &amqp_tls]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let reload = if reloadable.is_empty() {
            None
        } else {
            Some(AbortOnDrop(reload_on_hangup(reloadable)?))
        };
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let endpoint = MetricsEndpoint::bind(addr).await?;
                let addr = endpoint.local_addr();
                let task = crate::metrics::serve(
                    endpoint,
                    crate::metrics::install(),
                    Arc::clone(&health),
                    config.broker.security.auth,
                    metrics_tls,
                );
                Some((addr, AbortOnDrop(task)))
            }
            None => None,
        };
        let bind_error = |source| ServerError::Bind {
            addr: config.listen,
            source,
        };
        let kafka = match config.kafka_listen {
            Some(addr) => {
                crate::reservations::warn_for_kafka();
                let listener = KafkaListener::bind(addr, config.kafka.clone()).await?;
                Some(match kafka_tls {
                    Some(tls) => listener.with_tls(tls),
                    None => listener,
                })
            }
            None => None,
        };
        let amqp = match config.amqp_listen {
            Some(addr) => {
                let listener = AmqpListener::bind(addr, config.amqp.clone()).await?;
                Some(match amqp_tls {
                    Some(tls) => listener.with_tls(tls),
                    None => listener,
                })
            }
            None => None,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let listener = Arc::new(listener);
        let recovery = Recovery::serve(Arc::clone(&listener), grpc_tls.clone(), &health);
        let broker_config = config.broker.clone();
        let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config))
            .await
            .map_err(ServerError::OpenTask)?
            .map_err(ServerError::OpenBroker)?;
        // Until serve() takes over, connections wait in the listen backlog.
        recovery.finish();
        Ok(Server {
            config,
            listener,
            local_addr,
            broker,
            health,
            metrics,
            kafka,
            amqp,
            grpc_tls,
            _reload: reload,
        })
    }

    /// The address the server is bound to (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics endpoint (with the real port when port 0 was asked for),
    /// or `None` when it is off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    /// The address of the Kafka listener (with the real port when port 0 was asked for), or
    /// `None` when it is off.
    pub fn kafka_addr(&self) -> Option<SocketAddr> {
        self.kafka.as_ref().map(KafkaListener::local_addr)
    }

    /// The address of the AMQP listener (with the real port when port 0 was asked for), or
    /// `None` when it is off.
    pub fn amqp_addr(&self) -> Option<SocketAddr> {
        self.amqp.as_ref().map(AmqpListener::local_addr)
    }

    /// Serves until `shutdown` resolves. Then stops accepting connections, reports
    /// NOT_SERVING, ends long-running calls, lets in-flight requests finish (for up to
    /// 10 s) and closes the broker's logs cleanly.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Server {
            config,
            listener,
            local_addr,
            broker,
            health,
            metrics: _metrics,
            kafka,
            amqp,
            grpc_tls,
            _reload,
        } = self;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sluice_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(ServerError::Reflection)?;
        broker.start_background();
        health.serving(Arc::clone(&broker)).await;
        // Ends by itself once the broker drains.
        let kafka = kafka.map(|listener| tokio::spawn(listener.serve(Arc::clone(&broker))));
        let amqp = amqp.map(|listener| tokio::spawn(listener.serve(Arc::clone(&broker))));

        let routes = sluice_grpc::routes(&broker, config.max_request_bytes)
            .add_service(health.service())
            .add_service(reflection);

        let incoming = Accept::new(listener).with_tls(grpc_tls);
        let signal = async {
            shutdown.await;
            tracing::info!("shutting down");
            health.shutting_down().await;
            broker.begin_drain();
        };
        tracing::info!(addr = %local_addr, data_dir = %config.broker.data_dir.display(), "serving");
        let serving = tonic::transport::Server::builder()
            .layer(ObserveCalls)
            .layer(Authenticate::new(Arc::clone(&broker)))
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .max_frame_size(MAX_FRAME_BYTES)
            // Announced to clients, which queue calls beyond it (a client that does not is
            // refused the extra streams by the HTTP/2 layer).
            .max_concurrent_streams(config.max_streams_per_connection)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal);
        let served = tokio::select! {
            served = serving => served.map_err(ServerError::Serve),
            () = async {
                broker.draining().wait().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "calls still open after the shutdown grace period; closing anyway");
                Ok(())
            }
        };
        if let Some(kafka) = kafka {
            // Its connections end once their current request is answered; the grace
            // period above bounds how long those take.
            kafka.abort();
        }
        if let Some(amqp) = amqp {
            amqp.abort();
        }
        let closed = broker.shutdown().await.map_err(ServerError::Shutdown);
        match (served, closed) {
            (Err(serve_error), Err(close_error)) => {
                tracing::error!(error = %close_error, "closing the logs failed as well");
                Err(serve_error)
            }
            (served, closed) => served.and(closed),
        }
    }
}

/// The gRPC health service alone, answering NOT_SERVING on the listener while the broker
/// recovers (other calls get UNAVAILABLE, which clients retry). Its open calls (health
/// watches) go on after [`Recovery::finish`] until their clients end them.
#[derive(Debug)]
struct Recovery {
    done: Arc<AtomicBool>,
    stop: oneshot::Sender<()>,
}

impl Recovery {
    fn serve(
        listener: Arc<TcpListener>,
        tls: Option<Arc<Reloadable>>,
        health: &Health,
    ) -> Recovery {
        let done = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tonic::transport::Server::builder()
            .layer(RejectWhileRecovering)
            .add_service(health.service())
            .serve_with_incoming_shutdown(
                Accept::until(listener, Arc::clone(&done)).with_tls(tls),
                async {
                    let _ = stopped.await;
                },
            );
        tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "health service during recovery failed");
            }
        });
        Recovery { done, stop }
    }

    /// Stops accepting connections, so the full server can take the listener over.
    fn finish(self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.stop.send(());
    }
}

/// Reloads `listeners`' certificates on each SIGHUP (new connections get the new ones,
/// open connections keep theirs), logging `reloaded TLS certificates` or why not.
fn reload_on_hangup(listeners: Vec<Arc<Reloadable>>) -> Result<JoinHandle<()>, ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(ServerError::Signal)?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match Reloadable::reload_all(listeners.iter().map(Arc::as_ref)) {
                Ok(()) => tracing::info!("reloaded TLS certificates"),
                Err(err) => tracing::error!(
                    error = %err,
                    "reloading TLS certificates failed; serving the previous ones"
                ),
            }
        }
    }))
}

/// A background task, aborted when this is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the server from `config`, prints `sluice metrics on ADDR` (unless the metrics
/// endpoint is off) and `sluice listening on ADDR` to stdout once it accepts connections,
/// and serves until `shutdown` resolves (see [`Server::serve`]).
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let server = Server::start(config).await?;
    if let Some(addr) = server.metrics_addr() {
        println!("sluice metrics on {addr}");
    }
    if let Some(addr) = server.amqp_addr() {
        println!("sluice amqp on {addr}");
    }
    if let Some(addr) = server.kafka_addr() {
        println!("sluice kafka on {addr}");
    }
    println!("sluice listening on {}", server.local_addr());
    server.serve(shutdown).await
}
