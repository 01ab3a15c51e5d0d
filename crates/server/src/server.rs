//! Serving: bind the listener, open the broker, serve the gRPC services and shut down
//! cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_broker::Broker;
use sluice_proto::v1::admin_server::AdminServer;
use sluice_proto::v1::groups_server::GroupsServer;
use sluice_proto::v1::log_server::LogServer;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::AdminService;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::groups::GroupsService;
use crate::log_service::LogService;
use crate::request_limit::RequestLimit;
use crate::shutdown::shutdown_signal;
use crate::subscribe::SubscribeLimits;
use crate::subscriptions::SubscriptionSlots;

/// HTTP/2 flow-control window per stream: lets a large fetch or produce flow without
/// waiting for window updates.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// HTTP/2 flow-control window per connection, shared by its streams.
const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;
/// How long shutdown waits for open calls to finish before closing the logs anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A bound, opened server that has not started serving yet.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    listener: TcpListener,
    local_addr: SocketAddr,
    broker: Arc<Broker>,
}

impl Server {
    /// Binds the listen address, then opens the broker (on a blocking thread: it recovers
    /// the logs).
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        for name in &config.unknown_env {
            tracing::warn!(variable = %name, "ignoring environment variable: it names no setting");
        }
        let bind_error = |source| ServerError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let broker_config = config.broker.clone();
        let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config))
            .await
            .map_err(ServerError::OpenTask)?
            .map_err(ServerError::OpenBroker)?;
        Ok(Server {
            config,
            listener,
            local_addr,
            broker,
        })
    }

    /// The address the server is bound to (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        } = self;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sluice_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(ServerError::Reflection)?;
        broker.start_background();
        let (health, health_service) = tonic_health::server::health_reporter();
        set_status(&health, ServingStatus::Serving).await;

        let (trigger, stopping) = shutdown_signal();
        let subscribe_limits = SubscribeLimits {
            max_bytes: config.max_subscribe_bytes,
            wait: config.broker.limits.max_wait,
        };
        let max_request_bytes = config.max_request_bytes;
        let slots = SubscriptionSlots::new(config.max_subscriptions);
        let admin = AdminServer::new(AdminService::new(Arc::clone(&broker)))
            .max_decoding_message_size(max_request_bytes);
        let groups = GroupsServer::new(GroupsService::new(
            Arc::clone(&broker),
            subscribe_limits,
            max_request_bytes,
            slots.clone(),
            stopping.clone(),
        ))
        .max_decoding_message_size(max_request_bytes)
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
        let log = LogServer::new(LogService::new(
            Arc::clone(&broker),
            subscribe_limits,
            max_request_bytes,
            slots,
            stopping.clone(),
        ))
        .max_decoding_message_size(max_request_bytes)
        // Responses are bounded by the fetch limits; never refuse to send one.
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);

        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let signal = async {
            shutdown.await;
            tracing::info!("shutting down");
            set_status(&health, ServingStatus::NotServing).await;
            trigger.fire();
        };
        tracing::info!(addr = %local_addr, data_dir = %config.broker.data_dir.display(), "serving");
        let serving = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            // Announced to clients, which queue calls beyond it (a client that does not is
            // refused the extra streams by the HTTP/2 layer).
            .max_concurrent_streams(config.max_streams_per_connection)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(RequestLimit::new(admin, max_request_bytes))
            .add_service(RequestLimit::new(log, max_request_bytes))
            .add_service(RequestLimit::new(groups, max_request_bytes))
            .serve_with_incoming_shutdown(incoming, signal);
        let served = tokio::select! {
            served = serving => served.map_err(ServerError::Serve),
            () = async {
                stopping.wait().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "calls still open after the shutdown grace period; closing anyway");
                Ok(())
            }
        };
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

/// Sets the overall status and that of every Sluice service.
async fn set_status(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health
        .set_service_status(
            <AdminServer<AdminService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    health
        .set_service_status(
            <LogServer<LogService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    health
        .set_service_status(
            <GroupsServer<GroupsService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Starts the server from `config`, prints `sluice listening on ADDR` to stdout once it
/// accepts connections, and serves until `shutdown` resolves (see [`Server::serve`]).
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let server = Server::start(config).await?;
    println!("sluice listening on {}", server.local_addr());
    server.serve(shutdown).await
}
