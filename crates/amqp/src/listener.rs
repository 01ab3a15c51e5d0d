//! The AMQP listener: accepts clients and serves each connection on its own task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice_broker::Broker;
use sluice_broker::security::Principal;
use sluice_tls::Reloadable;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::connection::{self, Shared};
use crate::registry::Registry;
use crate::{AmqpConfig, AmqpError};

/// A bound AMQP listener, not yet serving.
#[derive(Debug)]
pub struct AmqpListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: AmqpConfig,
    /// TLS for every connection, unless it serves plaintext.
    tls: Option<Arc<Reloadable>>,
}

impl AmqpListener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, config: AmqpConfig) -> Result<AmqpListener, AmqpError> {
        config.validate().map_err(AmqpError::Config)?;
        let bind_error = |source| AmqpError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(AmqpListener {
            listener,
            local_addr,
            config,
            tls: None,
        })
    }

    /// Serves AMQPS (TLS) with `tls`'s current certificates.
    pub fn with_tls(self, tls: Arc<Reloadable>) -> AmqpListener {
        AmqpListener {
            tls: Some(tls),
            ..self
        }
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves clients until the broker starts draining; then stops accepting and closes
    /// each connection with 320 CONNECTION_FORCED, what it holds unacknowledged delivered
    /// again after the restart.
    pub async fn serve(self, broker: Arc<Broker>) {
        let draining = broker.draining();
        let shared = Arc::new(Shared {
            broker,
            config: self.config,
            registry: Registry::default(),
        });
        // Ends by itself once the broker drains.
        tokio::spawn(crate::expiry::run(Arc::clone(&shared)));
        let next_id = AtomicU64::new(0);
        let mut connections = JoinSet::new();
        tracing::info!(addr = %self.local_addr, "serving AMQP clients");
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = draining.wait() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let tls = self.tls.clone();
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        match sluice_tls::accept(tls.as_deref(), stream).await {
                            Ok((stream, certificate)) => {
                                let certificate = certificate.as_deref().map(Principal::user);
                                connection::serve(stream, peer, certificate, shared, id).await;
                            }
                            Err(err) => {
                                tracing::info!(%peer, error = %err, "AMQP connection refused")
                            }
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors or similar: keep the listener, slow down.
                    tracing::warn!(error = %err, "cannot accept an AMQP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        drop(self.listener);
        while connections.join_next().await.is_some() {}
    }
}
