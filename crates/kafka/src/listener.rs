//! The Kafka listener: accepts clients and serves each connection on its own task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_broker::Broker;
use sluice_broker::security::Principal;
use sluice_tls::Reloadable;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::api::Context;
use crate::api::share::Shares;
use crate::{KafkaConfig, KafkaError, connection};

/// A bound Kafka listener, not yet serving.
#[derive(Debug)]
pub struct KafkaListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: Arc<KafkaConfig>,
    /// Share group members and sessions, shared by every connection.
    shares: Arc<Shares>,
    /// TLS for every connection, unless it serves plaintext.
    tls: Option<Arc<Reloadable>>,
}

impl KafkaListener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, config: KafkaConfig) -> Result<KafkaListener, KafkaError> {
        let bind_error = |source| KafkaError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(KafkaListener {
            listener,
            local_addr,
            config: Arc::new(config),
            shares: Arc::default(),
            tls: None,
        })
    }

    /// Serves TLS (Kafka's `SSL` security protocol) with `tls`'s current certificates.
    pub fn with_tls(self, tls: Arc<Reloadable>) -> KafkaListener {
        KafkaListener {
            tls: Some(tls),
            ..self
        }
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves clients until the broker starts draining; then stops accepting, and ends each
    /// connection once its current request is answered (waiting requests get their answers
    /// first).
    pub async fn serve(self, broker: Arc<Broker>) {
        let draining = broker.draining();
        let mut connections = JoinSet::new();
        // Share group members not heard from within the session timeout leave.
        let timeout = self.config.share_session_timeout;
        let mut sweep = tokio::time::interval((timeout / 4).max(Duration::from_millis(100)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(addr = %self.local_addr, "serving Kafka clients");
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = draining.wait() => break,
                _ = sweep.tick() => {
                    self.shares.expire(timeout);
                    continue;
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let local_addr = stream.local_addr().unwrap_or(self.local_addr);
                    let ctx = Context::new(
                        Arc::clone(&broker),
                        Arc::clone(&self.config),
                        Arc::clone(&self.shares),
                        local_addr,
                        peer,
                    );
                    let tls = self.tls.clone();
                    connections.spawn(async move {
                        match sluice_tls::accept(tls.as_deref(), stream).await {
                            Ok((stream, certificate)) => {
                                let ctx = ctx
                                    .with_certificate(certificate.as_deref().map(Principal::user));
                                connection::serve(stream, peer, ctx).await;
                            }
                            Err(err) => {
                                tracing::info!(%peer, error = %err, "Kafka connection refused")
                            }
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors or similar: keep the listener, slow down.
                    tracing::warn!(error = %err, "cannot accept a Kafka connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        drop(self.listener);
        while connections.join_next().await.is_some() {}
    }
}
