//! Who a connection is and what it may do: the login of connection.start-ok, the ACL
//! check before each operation (the mapping onto topics, groups and the cluster is the
//! broker's, [`QueueAccess`]), and the byte-rate quotas on what it publishes and is
//! delivered.
//!
//! Without `--auth` the only login is RabbitMQ's default one, guest/guest from loopback,
//! and the connection is anonymous. With it, PLAIN and AMQPLAIN are checked against the
//! broker's users, and a connection with a client-certificate principal may also log in
//! with EXTERNAL (RabbitMQ's `rabbitmq_auth_mechanism_ssl`) as that principal; "guest"
//! is a user like any other.

use std::net::SocketAddr;

use sluice_broker::BrokerError;
use sluice_broker::security::{Caller, Grant, Principal, QueueAccess, QuotaKind};

use crate::connection::Shared;
use crate::reply::{ACCESS_REFUSED, Failure};

/// The protocol name of AMQP callers (audit log, metrics).
const PROTOCOL: &str = "amqp";
/// The mechanisms offered to every client.
const PASSWORD_MECHANISMS: [&str; 2] = ["PLAIN", "AMQPLAIN"];

/// The mechanisms connection.start offers: EXTERNAL too when logins are checked and the
/// connection carries a client-certificate principal.
pub(crate) fn mechanisms(shared: &Shared, certificate: Option<&Principal>) -> Vec<&'static str> {
    let external = shared.broker.security().auth_required() && certificate.is_some();
    external
        .then_some("EXTERNAL")
        .into_iter()
        .chain(PASSWORD_MECHANISMS)
        .collect()
}

/// Logs the client in with `mechanism` and its `response`: the caller the connection
/// acts as, or the connection.close refusing it (403, never naming the password).
pub(crate) async fn login(
    shared: &Shared,
    peer: SocketAddr,
    certificate: Option<&Principal>,
    mechanism: &str,
    response: &[u8],
) -> Result<Caller, Failure> {
    let security = shared.broker.security();
    let host = peer.ip();
    let refused = |why: String| Failure::connection(ACCESS_REFUSED, why).on(10, 11);
    if security.auth_required()
        && mechanism == "EXTERNAL"
        && let Some(principal) = certificate
    {
        tracing::debug!(target: "sluice::audit", %host, protocol = PROTOCOL, user = principal.name(), mechanism, "authenticated");
        return Ok(Caller::new(principal.clone(), host, PROTOCOL));
    }
    let Some((user, password)) = credentials(mechanism, response) else {
        let offered = mechanisms(shared, certificate).join(", ");
        if security.auth_required() {
            security
                .refuse_login(
                    host,
                    PROTOCOL,
                    mechanism,
                    "mechanism not offered, or a malformed response",
                )
                .await;
        }
        return Err(refused(format!(
            "authentication mechanism {mechanism:?} is not offered ({offered}), or its response is malformed"
        )));
    };
    if security.auth_required() {
        return match security.login_plain(host, PROTOCOL, &user, &password).await {
            Ok(principal) => Ok(Caller::new(principal, host, PROTOCOL)),
            // The broker logged why (the audit log); the client is told no more than
            // RabbitMQ tells it.
            Err(_) => Err(refused(format!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ))),
        };
    }
    // Without users, the only login is RabbitMQ's default one, and only from loopback.
    if user != "guest" || password != "guest" {
        return Err(refused(format!(
            "Login was refused using authentication mechanism {mechanism}: only guest/guest is known"
        )));
    }
    if !host.is_loopback() {
        return Err(refused(
            "user 'guest' can only connect via localhost".to_owned(),
        ));
    }
    Ok(Caller::new(Principal::anonymous(), host, PROTOCOL))
}

/// The user and password of a start-ok response, for PLAIN and AMQPLAIN.
fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let password = parts.next()?;
            Some((
                String::from_utf8_lossy(user).into_owned(),
                String::from_utf8_lossy(password).into_owned(),
            ))
        }
        "AMQPLAIN" => {
            // A field table without its length prefix.
            let mut table = (response.len() as u32).to_be_bytes().to_vec();
            table.extend_from_slice(response);
            let (_, table) = amq_protocol::types::parsing::parse_field_table(&table[..]).ok()?;
            let field = |name: &str| {
                table
                    .inner()
                    .get(name)
                    .and_then(crate::properties::value_text)
            };
            Some((field("LOGIN")?, field("PASSWORD")?))
        }
        _ => None,
    }
}

/// Fails with 403 ACCESS_REFUSED on the channel, in RabbitMQ's words plus what `method`
/// needed, unless `caller` may do `access` (the broker logs and counts the denial).
pub(crate) fn authorize(
    shared: &Shared,
    caller: &Caller,
    method: &str,
    access: QueueAccess<'_>,
) -> Result<(), Failure> {
    shared
        .broker
        .security()
        .authorize_queue(caller, access)
        .map_err(|err| refusal(caller, method, access, err))
}

/// Authorizes a consumer of `queue` as [`authorize`] does, giving the grant its deliveries
/// are held to.
pub(crate) fn consumer_grant(
    shared: &Shared,
    caller: &Caller,
    method: &str,
    queue: &str,
) -> Result<Grant, Failure> {
    shared
        .broker
        .security()
        .grant_consumer(caller, queue)
        .map_err(|err| refusal(caller, method, QueueAccess::ConsumeQueue(queue), err))
}

/// The channel failure a refused `access` is answered with.
fn refusal(caller: &Caller, method: &str, access: QueueAccess<'_>, err: BrokerError) -> Failure {
    let BrokerError::NotAuthorized {
        operation,
        resource_type,
        resource,
        ..
    } = err
    else {
        return Failure::from(err);
    };
    // Create on the cluster would have done too.
    let or_cluster = match access {
        QueueAccess::CreateQueue(_) => " (or on the cluster)",
        _ => "",
    };
    Failure::channel(
        ACCESS_REFUSED,
        format!(
            "access to {} '{}' in vhost '/' refused for user '{}': {method} needs {operation} on {resource_type} '{resource}'{or_cluster}",
            access.object_kind(),
            access.object_name(),
            caller.principal.name(),
        ),
    )
}

/// Counts `bytes` of `kind` traffic by `caller` against its quota and waits as long as
/// the quota asks (AMQP has no throttle field: the connection or consumer pauses, as
/// Kafka mutes a channel). Measures nothing while no quota is set.
pub(crate) async fn hold_back(shared: &Shared, caller: &Caller, kind: QuotaKind, bytes: usize) {
    let security = shared.broker.security();
    if !security.quotas_in_force() {
        return;
    }
    let delay = security.throttle(caller, kind, u64::try_from(bytes).unwrap_or(u64::MAX));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sluice_broker::{Broker, BrokerConfig};

    use super::*;
    use crate::AmqpConfig;
    use crate::reply::Scope;

    /// A listener's shared state over a broker in `dir`, with `--auth` or without.
    fn shared(dir: &tempfile::TempDir, auth: bool) -> Shared {
        let mut config = BrokerConfig::new(dir.path());
        config.security.auth = auth;
        config.security.failed_login_delay = Duration::from_millis(1);
        Shared {
            broker: Broker::open(config).expect("broker"),
            config: AmqpConfig::default(),
            registry: Default::default(),
        }
    }

    const LOOPBACK: &str = "127.0.0.1:40000";

    fn plain(user: &str, password: &str) -> Vec<u8> {
        format!("\0{user}\0{password}").into_bytes()
    }

    #[tokio::test]
    async fn under_auth_users_log_in_and_a_certificate_offers_external() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = shared(&dir, true);
        shared
            .broker
            .security()
            .add_user(&Caller::internal(), "alice", "alice-secret")
            .await
            .expect("user");
        let peer = LOOPBACK.parse().expect("addr");
        let cert = Principal::user("app.example.com");
        assert_eq!(mechanisms(&shared, None), ["PLAIN", "AMQPLAIN"]);
        assert_eq!(
            mechanisms(&shared, Some(&cert)),
            ["EXTERNAL", "PLAIN", "AMQPLAIN"]
        );
        let external = login(&shared, peer, Some(&cert), "EXTERNAL", b"").await;
        assert_eq!(external.map(|c| c.principal), Ok(cert.clone()));
        let alice = login(
            &shared,
            peer,
            Some(&cert),
            "PLAIN",
            &plain("alice", "alice-secret"),
        )
        .await;
        assert_eq!(alice.map(|c| c.principal), Ok(Principal::user("alice")));

        let no_cert = login(&shared, peer, None, "EXTERNAL", b"")
            .await
            .unwrap_err();
        assert_eq!(
            (no_cert.scope, no_cert.code),
            (Scope::Connection, ACCESS_REFUSED)
        );
        assert!(
            no_cert.text.contains("(PLAIN, AMQPLAIN)"),
            "{}",
            no_cert.text
        );
        for (user, password) in [("alice", "wrong"), ("guest", "guest")] {
            let refused = login(&shared, peer, None, "PLAIN", &plain(user, password))
                .await
                .unwrap_err();
            assert_eq!(
                refused.text,
                "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
            );
            assert_eq!((refused.class_id, refused.method_id), (10, 11));
        }
    }

    #[tokio::test]
    async fn without_auth_only_guest_from_loopback_logs_in_and_is_anonymous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = shared(&dir, false);
        let cert = Principal::user("app.example.com");
        assert_eq!(mechanisms(&shared, Some(&cert)), ["PLAIN", "AMQPLAIN"]);
        let loopback = LOOPBACK.parse().expect("addr");
        let guest = login(&shared, loopback, None, "PLAIN", &plain("guest", "guest")).await;
        assert_eq!(guest.map(|c| c.principal), Ok(Principal::anonymous()));
        let remote = "10.1.2.3:40000".parse().expect("addr");
        let far = login(&shared, remote, None, "PLAIN", &plain("guest", "guest"))
            .await
            .unwrap_err();
        assert!(
            far.text.contains("only connect via localhost"),
            "{}",
            far.text
        );
        let other = login(&shared, loopback, Some(&cert), "EXTERNAL", b"")
            .await
            .unwrap_err();
        assert_eq!(other.code, ACCESS_REFUSED);
    }

    #[test]
    fn plain_and_amqplain_responses_are_read_and_malformed_ones_are_not() {
        assert_eq!(
            credentials("PLAIN", b"\0alice\0pa\0ss"),
            Some(("alice".to_owned(), "pa".to_owned()))
        );
        assert_eq!(credentials("PLAIN", b"\0alice"), None);
        assert_eq!(credentials("EXTERNAL", b""), None);
        // LOGIN: "bob", PASSWORD: "pw", as pika's AMQPLAIN encodes them.
        let mut table = Vec::new();
        for (key, value) in [("LOGIN", "bob"), ("PASSWORD", "pw")] {
            table.push(key.len() as u8);
            table.extend_from_slice(key.as_bytes());
            table.push(b'S');
            table.extend_from_slice(&(value.len() as u32).to_be_bytes());
            table.extend_from_slice(value.as_bytes());
        }
        assert_eq!(
            credentials("AMQPLAIN", &table),
            Some(("bob".to_owned(), "pw".to_owned()))
        );
        assert_eq!(credentials("AMQPLAIN", b"\x05LOGIN"), None);
    }
}
