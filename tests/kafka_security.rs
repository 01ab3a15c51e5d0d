//! The Kafka listener under `--auth`, driven by librdkafka (confluent-kafka) and
//! kafka-python: over TLS (SASL_SSL) SASL PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512 logins, a wrong password and a client without SASL
//! refused (logged and counted), client certificates as principals (mTLS), ACLs enforced per
//! operation (no ACL, write-only, read-only), Kafka's admin API managing ACLs, and a produce
//! quota throttling a producer.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::kafka::{Client, Delivery, Outgoing, parse_lines};
use common::security::{add_acl, add_user, as_user, scrape_as, set_quota, sluice_ok};
use common::tls::{Ca, server_certificate, strs, write};
use common::{Server, metric};
use serde_json::Value;

const ADMIN: (&str, &str) = ("admin", "admin-secret-1");
const ALICE: (&str, &str) = ("alice", "alice-secret-2");
const BOB: (&str, &str) = ("bob", "bob-secret-3");
const CAROL: (&str, &str) = ("carol", "carol-secret-4");
const DAVE: (&str, &str) = ("dave", "dave-secret-5");
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// A server with `--auth`, superuser admin and `extra` arguments; alice may read and write
/// `orders` (and use any group), carol may only write it, dave may only read it, bob has no
/// ACL.
fn secured_server(dir: &Path, extra: &[&str]) -> Result<Server> {
    secured_server_with_env(dir, &[], extra)
}

/// [`secured_server`] with environment variables `env` set.
fn secured_server_with_env(dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Result<Server> {
    for (user, password) in [ADMIN, ALICE, BOB, CAROL, DAVE] {
        add_user(dir, user, password)?;
    }
    let acls: [&[&str]; 4] = [
        &[
            "--principal",
            "User:dave",
            "--operation",
            "read",
            "--topic",
            "orders",
        ],
        &[
            "--principal",
            "User:alice",
            "--operation",
            "read,write",
            "--topic",
            "orders",
        ],
        &[
            "--principal",
            "User:alice",
            "--operation",
            "read",
            "--group",
            "*",
        ],
        &[
            "--principal",
            "User:carol",
            "--operation",
            "write",
            "--topic",
            "orders",
        ],
    ];
    for acl in acls {
        add_acl(dir, acl)?;
    }
    let mut args = vec!["--auth", "--superusers", "admin"];
    args.extend_from_slice(extra);
    Server::start_with_env(dir, env, &args)
}

/// A [`secured_server`] whose listeners serve TLS with a certificate of `ca` made in
/// `certs` (the metrics endpoint stays plaintext for the test to read).
fn tls_server(dir: &Path, ca: &Ca, certs: &Path, extra: &[&str]) -> Result<Server> {
    let mut args = server_certificate(ca, certs)?;
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    secured_server_with_env(dir, &[("SLUICE_TLS_METRICS", "false")], &strs(&args))
}

/// librdkafka settings that log in as `user` with `mechanism` over plaintext; failures
/// show within seconds.
fn sasl<'a>(mechanism: &'a str, (user, password): (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    vec![
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", mechanism),
        ("sasl.username", user),
        ("sasl.password", password),
        ("message.timeout.ms", "5000"),
    ]
}

/// The metrics page, read as admin.
fn scrape(server: &Server) -> Result<String> {
    scrape_as(server, ADMIN.0, ADMIN.1)
}

/// [`sasl`] over TLS, trusting the CA in file `ca`.
fn sasl_ssl<'a>(
    mechanism: &'a str,
    user: (&'a str, &'a str),
    ca: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut settings = sasl(mechanism, user);
    settings[0] = ("security.protocol", "SASL_SSL");
    settings.push(("ssl.ca.location", ca));
    settings
}

fn values(prefix: &str, count: usize) -> Vec<Outgoing> {
    (0..count)
        .map(|i| Outgoing::value(format!("{prefix}-{i}")))
        .collect()
}

/// Creates topic `orders` with the admin's client `settings`.
fn create_orders(bootstrap: &str, settings: &[(&str, &str)]) -> Result<()> {
    Client::Rdkafka
        .start(
            "create-topic",
            bootstrap,
            "orders",
            settings,
            &["--partitions", "1"],
        )?
        .finish(Client::TIMEOUT)?;
    Ok(())
}

/// Owned settings as the pairs a client takes.
fn borrowed(owned: &[(String, String)]) -> Vec<(&str, &str)> {
    owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The errors of the deliveries that failed.
fn failures(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Failed { error, .. } => Some(error.as_str()),
            Delivery::Delivered { .. } => None,
        })
        .collect()
}

#[test]
fn each_sasl_mechanism_logs_in_over_tls_and_wrong_or_missing_credentials_are_refused() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let certs = tempfile::tempdir()?;
    let ca = Ca::new("kafka test CA")?;
    let ca_file = write(certs.path(), "ca.pem", &ca.pem)?;
    let server = tls_server(dir.path(), &ca, certs.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    let sasl = |mechanism, user| sasl_ssl(mechanism, user, &ca_file);
    create_orders(bootstrap, &sasl("SCRAM-SHA-512", ADMIN))?;

    let mut sent = 0;
    for mechanism in MECHANISMS {
        let records = values(mechanism, 5);
        Client::Rdkafka.produce_acknowledged(
            bootstrap,
            "orders",
            &sasl(mechanism, ALICE),
            &records,
        )?;
        sent += records.len();
        let consumed =
            Client::Rdkafka.consume(bootstrap, "orders", &sasl(mechanism, ALICE), None)?;
        ensure!(
            consumed.len() == sent,
            "{mechanism}: consumed {} of {sent}",
            consumed.len()
        );
    }

    // kafka-python speaks the same SASL exchanges.
    for mechanism in MECHANISMS {
        let settings = [
            ("security_protocol", "SASL_SSL"),
            ("ssl_cafile", &ca_file),
            ("sasl_mechanism", mechanism),
            ("sasl_plain_username", ALICE.0),
            ("sasl_plain_password", ALICE.1),
        ];
        let records = values(&format!("kafka-python-{mechanism}"), 3);
        Client::KafkaPython.produce_acknowledged(bootstrap, "orders", &settings, &records)?;
        sent += records.len();
        let consumed = Client::KafkaPython.consume(bootstrap, "orders", &settings, None)?;
        ensure!(
            consumed.len() == sent,
            "kafka-python {mechanism}: consumed {} of {sent}",
            consumed.len()
        );
    }

    let wrong = (ALICE.0, "not-her-password");
    for mechanism in MECHANISMS {
        let deliveries = Client::Rdkafka.produce(
            bootstrap,
            "orders",
            &sasl(mechanism, wrong),
            &values("x", 2),
        )?;
        ensure!(
            failures(&deliveries).len() == 2,
            "{mechanism} with a wrong password delivered: {deliveries:?}"
        );
    }
    // TLS but no SASL: the connection is closed after ApiVersions.
    let plaintext = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", &ca_file),
        ("message.timeout.ms", "5000"),
    ];
    let deliveries = Client::Rdkafka.produce(bootstrap, "orders", &plaintext, &values("y", 2))?;
    ensure!(
        failures(&deliveries).len() == 2,
        "a client without SASL delivered: {deliveries:?}"
    );

    let logged = server.stderr();
    ensure!(
        logged.contains("authentication failed") && logged.contains("user=\"alice\""),
        "no audit line for the failed logins: {logged}"
    );
    ensure!(
        !logged.contains("not-her-password"),
        "the password was logged"
    );
    let failed = metric(
        &scrape(&server)?,
        "sluice_authentication_failures_total",
        &[("protocol", "kafka")],
    )
    .unwrap_or(0.0);
    ensure!(
        failed >= 4.0,
        "{failed} Kafka authentication failures counted"
    );
    // What the SASL logins stored: the consumer read them back through the same topic.
    let consumed = Client::Rdkafka.consume(bootstrap, "orders", &sasl("PLAIN", ALICE), None)?;
    ensure!(
        consumed.len() == sent,
        "consumed {} of {sent}",
        consumed.len()
    );
    Ok(())
}

#[test]
fn acls_decide_who_writes_and_who_reads() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    create_orders(bootstrap, &sasl("SCRAM-SHA-512", ADMIN))?;

    // Bob has no ACL: his producer and consumer are told the topic is not theirs to see
    // (librdkafka stops at the metadata answer).
    let deliveries =
        Client::Rdkafka.produce(bootstrap, "orders", &sasl("PLAIN", BOB), &values("b", 2))?;
    let refused = failures(&deliveries);
    ensure!(
        refused.len() == 2 && refused.iter().all(|e| e.contains("authorization")),
        "bob's produce: {deliveries:?}"
    );
    let consumed = Client::Rdkafka.consume(bootstrap, "orders", &sasl("PLAIN", BOB), None);
    ensure!(
        consumed
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("TOPIC_AUTHORIZATION_FAILED")),
        "bob consumed: {consumed:?}"
    );

    // Carol may write but not read.
    Client::Rdkafka.produce_acknowledged(
        bootstrap,
        "orders",
        &sasl("SCRAM-SHA-256", CAROL),
        &values("c", 3),
    )?;
    let consumed =
        Client::Rdkafka.consume(bootstrap, "orders", &sasl("SCRAM-SHA-256", CAROL), None);
    ensure!(
        consumed
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("AUTHORIZATION_FAILED")),
        "write-only carol consumed: {consumed:?}"
    );
    // Dave may read but not write: his produce reaches the broker and is refused there.
    let deliveries =
        Client::Rdkafka.produce(bootstrap, "orders", &sasl("PLAIN", DAVE), &values("d", 2))?;
    let refused = failures(&deliveries);
    ensure!(
        refused.len() == 2 && refused.iter().all(|e| e.contains("authorization")),
        "read-only dave's produce: {deliveries:?}"
    );
    ensure!(
        server
            .stderr()
            .contains("principal=User:dave host=127.0.0.1 protocol=\"kafka\" resource_type=\"topic\" resource=\"orders\" operation=\"write\""),
        "no audit line for dave's denied write"
    );
    // What carol wrote is there for alice.
    let consumed = Client::Rdkafka.consume(bootstrap, "orders", &sasl("PLAIN", ALICE), None)?;
    ensure!(consumed.len() == 3, "alice consumed {}", consumed.len());

    let logged = server.stderr();
    ensure!(
        logged.contains("denied")
            && logged.contains("principal=User:bob")
            && logged.contains("resource=\"orders\" operation=\"describe\""),
        "no audit line for bob's denied describe: {logged}"
    );
    let denied = metric(
        &scrape(&server)?,
        "sluice_authorization_denied_total",
        &[
            ("protocol", "kafka"),
            ("resource_type", "topic"),
            ("operation", "describe"),
        ],
    )
    .unwrap_or(0.0);
    ensure!(denied >= 1.0, "{denied} denied Kafka describes counted");
    Ok(())
}

#[test]
fn kafka_admin_clients_manage_acls_that_take_effect_at_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    create_orders(bootstrap, &sasl("SCRAM-SHA-512", ADMIN))?;

    // Bob may not manage ACLs.
    let refused = Client::Rdkafka
        .start(
            "acls",
            bootstrap,
            "audit",
            &sasl("PLAIN", BOB),
            &["--principal", "User:bob", "--operation", "read"],
        )?
        .finish(Client::TIMEOUT);
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("CLUSTER_AUTHORIZATION_FAILED")),
        "bob created ACLs: {refused:?}"
    );

    // Admin creates, describes and deletes bob's read and write on the prefix `audit`.
    let steps = Client::Rdkafka
        .start(
            "acls",
            bootstrap,
            "audit",
            &sasl("SCRAM-SHA-512", ADMIN),
            &[
                "--principal",
                "User:bob",
                "--operation",
                "read",
                "--operation",
                "write",
            ],
        )?
        .finish(Client::TIMEOUT)?;
    let steps: Vec<Value> = parse_lines(&steps)?;
    let count = |event: &str| steps.iter().filter(|s| s["event"] == event).count();
    ensure!(
        count("created") == 2 && count("described") == 2 && count("deleted") == 2,
        "{steps:?}"
    );
    ensure!(
        steps
            .iter()
            .filter(|s| s["event"] == "described")
            .all(|s| s["pattern"] == "PREFIXED"
                && s["principal"] == "User:bob"
                && s["name"] == "audit"),
        "{steps:?}"
    );
    // Deleted: bob is refused again; created again through the CLI, he may write.
    let deliveries =
        Client::Rdkafka.produce(bootstrap, "orders", &sasl("PLAIN", BOB), &values("b", 1))?;
    ensure!(failures(&deliveries).len() == 1, "{deliveries:?}");
    let url = server.url();
    sluice_ok(
        &[
            "acl",
            "add",
            "--principal",
            "User:bob",
            "--operation",
            "write",
            "--topic",
            "orders",
            "--server",
            &url,
        ],
        &as_user(ADMIN.0, ADMIN.1),
        "",
    )?;
    Client::Rdkafka.produce_acknowledged(
        bootstrap,
        "orders",
        &sasl("PLAIN", BOB),
        &values("b", 1),
    )?;
    Ok(())
}

#[test]
fn a_produce_quota_throttles_a_kafka_producer() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    create_orders(bootstrap, &sasl("SCRAM-SHA-512", ADMIN))?;
    let url = server.url();
    set_quota(&url, ADMIN, "alice", &["--produce", "100000"])?;

    // 40 records of 10 kB: 400 kB at 100 kB/s takes about 3 s beyond the first burst.
    let records: Vec<Outgoing> = (0..40)
        .map(|i| Outgoing::value(format!("{i:010}").repeat(1000)))
        .collect();
    let settings = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", ALICE.0),
        ("sasl.password", ALICE.1),
        ("linger.ms", "0"),
        ("batch.size", "10500"),
    ];
    let started = Instant::now();
    Client::Rdkafka.produce_acknowledged(bootstrap, "orders", &settings, &records)?;
    let took = started.elapsed();
    ensure!(
        took >= Duration::from_secs(2),
        "400 kB at 100 kB/s took {took:?}"
    );
    let throttled = metric(
        &scrape(&server)?,
        "sluice_quota_throttle_ms_total",
        &[("user", "alice"), ("quota", "producer_byte_rate")],
    )
    .unwrap_or(0.0);
    ensure!(throttled > 0.0, "no produce throttle counted for alice");
    Ok(())
}

#[test]
fn a_client_certificate_is_the_principal_acls_are_checked_against() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = tempfile::tempdir()?;
    let ca = Ca::new("kafka mTLS CA")?;
    let ca_file = write(certs.path(), "ca.pem", &ca.pem)?;
    let server = tls_server(
        dir.path(),
        &ca,
        certs.path(),
        &["--tls-client-ca", &ca_file],
    )?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    // The certificate files of `cn`: librdkafka settings that present them.
    let holder = |cn: &str| -> Result<(String, String)> {
        let (cert, key) = ca.issue(cn)?;
        Ok((
            write(certs.path(), &format!("{cn}.pem"), &cert)?,
            write(certs.path(), &format!("{cn}.key"), &key)?,
        ))
    };
    let settings = |(cert, key): &(String, String)| -> Vec<(String, String)> {
        [
            ("security.protocol", "SSL"),
            ("ssl.ca.location", ca_file.as_str()),
            ("ssl.certificate.location", cert.as_str()),
            ("ssl.key.location", key.as_str()),
            ("message.timeout.ms", "5000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let admin = settings(&holder("admin")?);
    let alice = settings(&holder("alice")?);
    let bob = settings(&holder("bob")?);

    create_orders(bootstrap, &borrowed(&admin))?;
    // CN=alice is User:alice, whose ACLs allow reading and writing `orders`.
    let records = values("cert", 4);
    Client::Rdkafka.produce_acknowledged(bootstrap, "orders", &borrowed(&alice), &records)?;
    let consumed = Client::Rdkafka.consume(bootstrap, "orders", &borrowed(&alice), None)?;
    ensure!(consumed.len() == 4, "alice consumed {}", consumed.len());
    // CN=bob has no ACL.
    let deliveries =
        Client::Rdkafka.produce(bootstrap, "orders", &borrowed(&bob), &values("b", 1))?;
    ensure!(
        failures(&deliveries).len() == 1,
        "bob's certificate delivered: {deliveries:?}"
    );
    ensure!(
        server.stderr().contains("denied principal=User:bob"),
        "no audit line for bob's certificate"
    );
    // Without a certificate the handshake fails: nothing is delivered.
    let anonymous = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca_file.as_str()),
        ("message.timeout.ms", "5000"),
    ];
    let deliveries = Client::Rdkafka.produce(bootstrap, "orders", &anonymous, &values("n", 1))?;
    ensure!(
        failures(&deliveries).len() == 1,
        "a client without a certificate delivered: {deliveries:?}"
    );
    Ok(())
}
