//! Who calls: every gRPC call is tied to a [`Caller`] before it reaches a service, from
//! HTTP basic credentials (`authorization: Basic base64(user:password)`, checked by the
//! broker), else the connection's client-certificate principal, else anonymous. With
//! `--auth`, a call with neither credentials nor a certificate principal fails with
//! UNAUTHENTICATED; health checks are always answered (probes carry no credentials).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sluice_broker::Broker;
use sluice_broker::security::{Caller, Grant, Need, Operation, Principal, Resource};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Request, Status};

use crate::observe::PeerInfo;
use crate::status::to_status;

/// The protocol name callers of this front end carry.
const PROTOCOL: &str = "grpc";
/// Path prefix of the health service, served without credentials.
const HEALTH_PATH: &str = "/grpc.health.v1.Health/";

/// Layer tying each call to its [`Caller`]; see the module docs.
#[derive(Debug, Clone)]
pub struct Authenticate {
    broker: Arc<Broker>,
}

impl Authenticate {
    /// Authenticates against `broker`'s users.
    pub fn new(broker: Arc<Broker>) -> Authenticate {
        Authenticate { broker }
    }
}

impl<S> tower_layer::Layer<S> for Authenticate {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            broker: Arc::clone(&self.broker),
        }
    }
}

/// A service whose calls carry their [`Caller`]; see [`Authenticate`].
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    broker: Arc<Broker>,
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<http::Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was not polled ready stays behind; the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let broker = Arc::clone(&self.broker);
        let (host, certificate) = transport_identity(request.extensions());
        let asked = Asked {
            host,
            certificate,
            authorization: request.headers().get(http::header::AUTHORIZATION).cloned(),
            health: request.uri().path().starts_with(HEALTH_PATH),
        };
        Box::pin(async move {
            match identify(&broker, asked).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// What a call says of who makes it.
#[derive(Debug)]
struct Asked {
    /// The client's address.
    host: IpAddr,
    /// The connection's client-certificate principal.
    certificate: Option<Principal>,
    /// The `authorization` header.
    authorization: Option<http::HeaderValue>,
    /// Whether it is a health check.
    health: bool,
}

/// The caller of a call, or the status refusing it.
async fn identify(broker: &Broker, asked: Asked) -> Result<Caller, Status> {
    let Asked {
        host,
        certificate,
        authorization,
        health,
    } = asked;
    let security = broker.security();
    if let Some(header) = authorization {
        let (user, password) = basic_credentials(&header).ok_or_else(|| {
            Status::unauthenticated(
                "authorization: expected HTTP basic credentials, `Basic base64(user:password)`",
            )
        })?;
        let principal = security
            .login_plain(host, PROTOCOL, &user, &password)
            .await
            .map_err(to_status)?;
        return Ok(Caller::new(principal, host, PROTOCOL));
    }
    if let Some(principal) = certificate {
        return Ok(Caller::new(principal, host, PROTOCOL));
    }
    if security.auth_required() && !health {
        security
            .refuse_login(host, PROTOCOL, "none", "no credentials")
            .await;
        return Err(Status::unauthenticated(
            "this server requires authentication: send HTTP basic credentials \
             (authorization: Basic base64(user:password), e.g. SLUICE_USER and SLUICE_PASSWORD \
             for the sluice CLI) or a client certificate",
        ));
    }
    Ok(Caller::new(Principal::anonymous(), host, PROTOCOL))
}

/// The client's address and, on an mTLS connection, its certificate's principal.
fn transport_identity(extensions: &http::Extensions) -> (IpAddr, Option<Principal>) {
    match extensions.get::<PeerInfo>() {
        Some(peer) => (peer.remote_addr.ip(), peer.certificate.clone()),
        None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), None),
    }
}

/// User and password of an `authorization: Basic ...` header (gRPC calls and the
/// metrics endpoint take the same credentials).
pub fn basic_credentials(header: &http::HeaderValue) -> Option<(String, String)> {
    let encoded = header.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(B64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Fails with PERMISSION_DENIED, naming the operation and the resource, unless `caller`
/// may do `operation` on `resource` (the broker logs and counts the denial).
pub(crate) fn authorize(
    broker: &Broker,
    caller: &Caller,
    operation: Operation,
    resource: &Resource<'_>,
) -> Result<(), Status> {
    broker
        .security()
        .authorize(caller, operation, resource)
        .map_err(to_status)
}

/// Fails with PERMISSION_DENIED unless `caller` may read group `group` and each of
/// `topics` (what joining a consumer or share group to consume them takes, as in Kafka);
/// gives the grant a session's stream is held to.
pub(crate) fn authorize_group_read<'a>(
    broker: &Broker,
    caller: &Caller,
    group: &str,
    topics: impl IntoIterator<Item = &'a String>,
) -> Result<Grant, Status> {
    let mut needs = vec![Need::group(Operation::Read, group)];
    needs.extend(topics.into_iter().map(|t| Need::topic(Operation::Read, t)));
    broker.security().grant(caller, needs).map_err(to_status)
}

/// The caller a call was tied to (anonymous for a call that did not pass through
/// [`Authenticate`], as in-process tests make).
pub(crate) fn caller<T>(request: &Request<T>) -> Caller {
    caller_of(request.extensions())
}

/// The caller [`Authenticated`] put in a request's extensions (an anonymous one if none).
pub(crate) fn caller_of(extensions: &http::Extensions) -> Caller {
    extensions.get::<Caller>().cloned().unwrap_or_else(|| {
        Caller::new(
            Principal::anonymous(),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            PROTOCOL,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_and_malformed_ones_are_not() {
        let header = |text: &str| http::HeaderValue::from_str(text).unwrap();
        let encoded = B64.encode("alice:pa:ss");
        assert_eq!(
            basic_credentials(&header(&format!("Basic {encoded}"))),
            Some(("alice".to_owned(), "pa:ss".to_owned()))
        );
        assert_eq!(basic_credentials(&header("Bearer abc")), None);
        assert_eq!(basic_credentials(&header("Basic !!!")), None);
        let no_colon = B64.encode("alice");
        assert_eq!(
            basic_credentials(&header(&format!("Basic {no_colon}"))),
            None
        );
    }
}
