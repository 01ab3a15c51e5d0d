//! Health: what `grpc.health.v1.Health` and `/readyz` report.
//!
//! The server is ready only while it serves and no partition is faulted. While the
//! broker recovers its logs, while a partition cannot serve
//! ([`Broker::partition_faults`], polled every second) and once shutdown starts, every
//! service reports NOT_SERVING and `/readyz` answers 503 saying why.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_broker::{Broker, PartitionFault};
use sluice_proto::v1::{
    admin_server, groups_server, log_server, security_server, share_groups_server,
};
use tokio::sync::{Mutex, watch};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

/// How often partition faults are checked while serving.
const FAULT_POLL: Duration = Duration::from_secs(1);

/// Where the server is in its life, as far as health is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// The broker is opening and recovering the partition logs.
    Recovering,
    /// Serving, every partition healthy.
    Serving,
    /// Serving, but these partitions cannot.
    Faulted(Vec<PartitionFault>),
    /// Shutting down.
    ShuttingDown,
}

impl Readiness {
    fn status(&self) -> ServingStatus {
        match self {
            Readiness::Serving => ServingStatus::Serving,
            _ => ServingStatus::NotServing,
        }
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Recovering => writeln!(f, "not ready: recovering the partition logs"),
            Readiness::Serving => writeln!(f, "ready"),
            Readiness::ShuttingDown => writeln!(f, "not ready: shutting down"),
            Readiness::Faulted(faults) => {
                writeln!(f, "not ready: {} partition(s) failed", faults.len())?;
                for fault in faults {
                    writeln!(
                        f,
                        "partition {}/{} failed: {}",
                        fault.topic, fault.partition, fault.reason
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// The server's health: the gRPC health reporter and the readiness behind it.
#[derive(Debug)]
pub(crate) struct Health {
    reporter: HealthReporter,
    readiness: watch::Sender<Readiness>,
    /// Held across a change of readiness, so that a change racing shutdown cannot report
    /// SERVING after it.
    changing: Mutex<()>,
    /// Set once the broker has opened.
    broker: OnceLock<Arc<Broker>>,
}

impl Health {
    /// Health of a server that is recovering; every service reports NOT_SERVING.
    pub(crate) async fn recovering() -> Arc<Health> {
        let health = Health {
            reporter: HealthReporter::new(),
            readiness: watch::Sender::new(Readiness::Recovering),
            changing: Mutex::new(()),
            broker: OnceLock::new(),
        };
        health.report(&Readiness::Recovering).await;
        Arc::new(health)
    }

    /// The `grpc.health.v1.Health` service reporting this health.
    pub(crate) fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }

    /// The current readiness.
    pub(crate) fn readiness(&self) -> Readiness {
        self.readiness.borrow().clone()
    }

    /// The broker, once it has opened.
    pub(crate) fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.get()
    }

    /// The broker has opened and the server serves: reports SERVING (or NOT_SERVING while
    /// a partition is faulted) and follows the partition faults until shutdown.
    pub(crate) async fn serving(self: &Arc<Self>, broker: Arc<Broker>) {
        let _ = self.broker.set(Arc::clone(&broker));
        self.set(faults_readiness(&broker)).await;
        let health = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(FAULT_POLL);
            loop {
                ticker.tick().await;
                if health.readiness() == Readiness::ShuttingDown {
                    return;
                }
                let now = faults_readiness(&broker);
                if now != health.readiness() {
                    health.set(now).await;
                }
            }
        });
    }

    /// Shutdown has started: reports NOT_SERVING from now on.
    pub(crate) async fn shutting_down(&self) {
        self.set(Readiness::ShuttingDown).await;
    }

    async fn set(&self, readiness: Readiness) {
        let _changing = self.changing.lock().await;
        if self.readiness() == Readiness::ShuttingDown {
            return;
        }
        match &readiness {
            Readiness::Faulted(faults) => {
                tracing::warn!(
                    partitions = faults.len(),
                    "partitions failed; reporting NOT_SERVING"
                );
            }
            Readiness::Serving => tracing::info!("reporting SERVING"),
            Readiness::Recovering | Readiness::ShuttingDown => {}
        }
        self.report(&readiness).await;
        self.readiness.send_replace(readiness);
    }

    /// Sets the overall status and that of every Sluice service.
    async fn report(&self, readiness: &Readiness) {
        let status = readiness.status();
        for service in [
            "",
            admin_server::SERVICE_NAME,
            log_server::SERVICE_NAME,
            groups_server::SERVICE_NAME,
            share_groups_server::SERVICE_NAME,
            security_server::SERVICE_NAME,
        ] {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

/// Layer answering every call but health checks with UNAVAILABLE (which clients retry)
/// while the broker recovers its logs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RejectWhileRecovering;

impl<S> tower_layer::Layer<S> for RejectWhileRecovering {
    type Service = Recovering<S>;

    fn layer(&self, inner: S) -> Recovering<S> {
        Recovering { inner }
    }
}

/// See [`RejectWhileRecovering`].
#[derive(Debug, Clone)]
pub(crate) struct Recovering<S> {
    inner: S,
}

/// Path prefix of the health service's calls.
const HEALTH_PATH: &str = "/grpc.health.v1.Health/";

impl<S> Service<http::Request<Body>> for Recovering<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<http::Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path().starts_with(HEALTH_PATH) {
            return Box::pin(self.inner.call(request));
        }
        let refused = Status::unavailable("the server is recovering its logs; retry shortly");
        Box::pin(std::future::ready(Ok(refused.into_http())))
    }
}

/// Serving, or faulted with the broker's partition faults.
fn faults_readiness(broker: &Broker) -> Readiness {
    let faults = broker.partition_faults();
    if faults.is_empty() {
        Readiness::Serving
    } else {
        Readiness::Faulted(faults)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;

    use tower_layer::Layer as _;

    use super::*;

    /// Answers every call with an empty 200 response.
    #[derive(Debug, Clone)]
    struct Answer;

    impl Service<http::Request<Body>> for Answer {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Ready<Result<http::Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(Body::empty())))
        }
    }

    async fn status_of(path: &str) -> Option<Status> {
        let request = http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("valid request");
        let response = RejectWhileRecovering
            .layer(Answer)
            .call(request)
            .await
            .expect("infallible");
        Status::from_header_map(response.headers())
    }

    #[tokio::test]
    async fn only_health_checks_pass_while_recovering() {
        assert!(status_of("/grpc.health.v1.Health/Check").await.is_none());
        let refused = status_of("/sluice.v1.Log/Produce").await.expect("a status");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert!(refused.message().contains("recovering"), "{refused:?}");
    }

    #[test]
    fn readiness_text_names_failed_partitions() {
        let faulted = Readiness::Faulted(vec![PartitionFault {
            topic: "orders".into(),
            partition: 2,
            reason: "segment is a directory".into(),
        }]);
        assert_eq!(faulted.status(), ServingStatus::NotServing);
        let text = faulted.to_string();
        assert!(
            text.contains("partition orders/2 failed: segment is a directory"),
            "{text}"
        );
        assert_eq!(Readiness::Serving.status(), ServingStatus::Serving);
        assert_eq!(Readiness::Recovering.status(), ServingStatus::NotServing);
    }
}
