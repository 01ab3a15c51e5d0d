//! TLS on every listener: the `sluice` CLI over https, plaintext clients refused on TLS
//! ports (and served on a listener kept plaintext), client certificates as principals
//! (mTLS), certificates reloaded on SIGHUP while connections stay, and real Kafka
//! (librdkafka) and AMQP (pika) clients over TLS. Certificates are made in each test.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{Client as KafkaClient, Outgoing};
use common::security::{add_acl, sluice, sluice_ok};
use common::tls::{Ca, server_certificate, strs, write};
use serde_json::json;

/// Sends a Kafka ApiVersions v0 request (correlation id 7) over plain TCP to `addr`;
/// whether a Kafka answer to it (a frame with correlation id 7) came back.
fn kafka_answers_plaintext(addr: &str) -> Result<bool> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(&[0, 0, 0, 11, 0, 18, 0, 0, 0, 0, 0, 7, 0, 1, b't'])?;
    let mut answer = Vec::new();
    let mut chunk = [0; 256];
    while answer.len() < 8 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(answer.len() >= 8 && answer[4..8] == [0, 0, 0, 7])
}

#[test]
fn the_cli_produces_and_consumes_over_https_and_plaintext_clients_get_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = tempfile::tempdir()?;
    let ca = Ca::new("sluice test CA")?;
    let ca_file = write(certs.path(), "ca.pem", &ca.pem)?;
    let server = Server::start(dir.path(), &strs(&server_certificate(&ca, certs.path())?))?;
    let url = server.https_url();
    let tls = ["--server", &url, "--ca-cert", &ca_file];
    // Clients that connect and never start their handshakes hold up no one else.
    let kafka = server.kafka_addr().context("kafka listener")?;
    let metrics = server.metrics_addr().context("metrics endpoint")?;
    let _silent: Vec<TcpStream> = [server.addr.as_str(), kafka, metrics]
        .into_iter()
        .map(TcpStream::connect)
        .collect::<Result<_, _>>()?;
    let started = Instant::now();

    sluice_ok(
        &[
            &["topic", "create", "secure", "--partitions", "1"][..],
            &tls,
        ]
        .concat(),
        &[],
        "",
    )?;
    sluice_ok(
        &[&["produce", "secure"][..], &tls].concat(),
        &[],
        "one\ntwo\n",
    )?;
    let consumed = sluice_ok(
        &[
            &[
                "consume",
                "secure",
                "--from-beginning",
                "--max-messages",
                "2",
            ][..],
            &tls,
        ]
        .concat(),
        &[],
        "",
    )?;
    ensure!(
        consumed.lines().collect::<Vec<_>>() == ["one", "two"],
        "{consumed:?}"
    );
    // SLUICE_CA_CERT does what --ca-cert does; a bare host:port then means https.
    let listed = sluice_ok(
        &["topic", "list", "--server", &server.addr],
        &[("SLUICE_CA_CERT", &ca_file)],
        "",
    )?;
    ensure!(listed.contains("secure"), "{listed}");
    // (A handshake waits up to 10 s for a silent client.)
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "slow: {:?}",
        started.elapsed()
    );

    // Plaintext gRPC, and a plaintext Kafka request, get no answer.
    let plain = sluice(&["topic", "list", "--server", &server.url()], &[], "")?;
    ensure!(!plain.ok && !plain.stdout.contains("secure"), "{plain:?}");
    ensure!(
        !kafka_answers_plaintext(kafka)?,
        "a Kafka answer in plaintext"
    );
    // Without the CA the server's certificate is not trusted.
    let untrusted = sluice(&["topic", "list", "--server", &url], &[], "")?;
    ensure!(!untrusted.ok, "{untrusted:?}");

    // The metrics endpoint serves https too.
    let port = metrics.rsplit(':').next().context("port")?;
    let curl = Command::new("curl")
        .args(["--silent", "--show-error", "--cacert", &ca_file])
        .arg(format!("https://localhost:{port}/healthz"))
        .output()?;
    ensure!(
        curl.status.success() && String::from_utf8_lossy(&curl.stdout) == "ok\n",
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    Ok(())
}

#[test]
fn a_listener_switched_to_plaintext_serves_beside_tls_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = tempfile::tempdir()?;
    let ca = Ca::new("sluice test CA")?;
    let ca_file = write(certs.path(), "ca.pem", &ca.pem)?;
    let server = Server::start_with_env(
        dir.path(),
        &[("SLUICE_TLS_KAFKA", "false")],
        &strs(&server_certificate(&ca, certs.path())?),
    )?;
    let kafka = server.kafka_addr().context("kafka listener")?;
    ensure!(kafka_answers_plaintext(kafka)?, "no plaintext Kafka answer");
    let url = server.https_url();
    sluice_ok(
        &["topic", "list", "--server", &url, "--ca-cert", &ca_file],
        &[],
        "",
    )?;
    Ok(())
}

#[test]
fn client_certificates_name_the_principal() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = tempfile::tempdir()?;
    let server_ca = Ca::new("server CA")?;
    let client_ca = Ca::new("client CA")?;
    let ca_file = write(certs.path(), "ca.pem", &server_ca.pem)?;
    let mut args = server_certificate(&server_ca, certs.path())?;
    args.extend([
        "--tls-client-ca".into(),
        write(certs.path(), "clients.pem", &client_ca.pem)?,
        "--auth".into(),
        "--superusers".into(),
        "admin".into(),
    ]);
    add_acl(
        dir.path(),
        &[
            "--principal",
            "User:alice",
            "--operation",
            "write",
            "--topic",
            "orders",
        ],
    )?;
    let server = Server::start(dir.path(), &strs(&args))?;
    let url = server.https_url();
    let mut users = Vec::new();
    for name in ["admin", "alice", "bob"] {
        let (cert, key) = client_ca.issue(name)?;
        users.push((
            write(certs.path(), &format!("{name}.pem"), &cert)?,
            write(certs.path(), &format!("{name}.key"), &key)?,
        ));
    }
    let run_as = |user: usize, args: &[&str], stdin: &str| {
        let (cert, key) = &users[user];
        let tls = [
            "--server",
            &url,
            "--ca-cert",
            &ca_file,
            "--client-cert",
            cert,
            "--client-key",
            key,
        ];
        sluice(&[args, &tls].concat(), &[], stdin)
    };
    let created = run_as(0, &["topic", "create", "orders", "--partitions", "1"], "")?;
    ensure!(created.ok, "admin: {}", created.stderr);
    let produced = run_as(1, &["produce", "orders"], "from alice\n")?;
    ensure!(produced.ok, "alice: {}", produced.stderr);
    let denied = run_as(2, &["produce", "orders"], "from bob\n")?;
    ensure!(
        !denied.ok && denied.stderr.contains("User:bob is not authorized to"),
        "bob: {denied:?}"
    );
    let whoami = run_as(1, &["whoami"], "")?;
    ensure!(whoami.ok && whoami.stdout.contains("alice"), "{whoami:?}");
    // Without a client certificate the handshake is refused.
    let anonymous = sluice(
        &["topic", "list", "--server", &url, "--ca-cert", &ca_file],
        &[],
        "",
    )?;
    ensure!(!anonymous.ok, "{anonymous:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_certificates_and_open_connections_stay() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = tempfile::tempdir()?;
    let old_ca = Ca::new("old CA")?;
    let new_ca = Ca::new("new CA")?;
    let old_ca_file = write(certs.path(), "old-ca.pem", &old_ca.pem)?;
    let new_ca_file = write(certs.path(), "new-ca.pem", &new_ca.pem)?;
    let server = Server::start_with_env(
        dir.path(),
        &[("SLUICE_LOG", "info")],
        &strs(&server_certificate(&old_ca, certs.path())?),
    )?;
    let url = server.https_url();
    let open = sluice_client::Client::builder(url.clone())
        .ca_certificate(old_ca.pem.clone())
        .connect()
        .await?;
    open.admin().list_topics().await?;

    server_certificate(&new_ca, certs.path())?;
    let pid = server.pid().context("pid")?;
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("reloaded TLS certificates") {
        ensure!(
            Instant::now() < deadline,
            "no reload logged: {}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let list = |ca: String| {
        sluice(
            &["topic", "list", "--server", &url, "--ca-cert", &ca],
            &[],
            "",
        )
    };
    let fresh = list(new_ca_file)?;
    ensure!(fresh.ok, "new CA: {}", fresh.stderr);
    let stale = list(old_ca_file)?;
    ensure!(!stale.ok, "the old CA still verifies new connections");
    // The connection opened before the reload (it could not be opened again with the old
    // CA) still serves calls.
    open.admin().list_topics().await?;

    // A reload that fails keeps the certificates being served.
    std::fs::write(certs.path().join("server.pem"), "not a certificate")?;
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .stderr()
        .contains("reloading TLS certificates failed")
    {
        ensure!(
            Instant::now() < deadline,
            "no failure logged: {}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still = sluice(
        &[
            "topic",
            "list",
            "--server",
            &url,
            "--ca-cert",
            &write(certs.path(), "again.pem", &new_ca.pem)?,
        ],
        &[],
        "",
    )?;
    ensure!(still.ok, "after a failed reload: {}", still.stderr);
    Ok(())
}

#[test]
fn kafka_and_amqp_clients_speak_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = tempfile::tempdir()?;
    let ca = Ca::new("sluice test CA")?;
    let ca_file = write(certs.path(), "ca.pem", &ca.pem)?;
    let server = Server::start(dir.path(), &strs(&server_certificate(&ca, certs.path())?))?;
    let url = server.https_url();
    sluice_ok(
        &[
            "topic",
            "create",
            "kafka-tls",
            "--partitions",
            "1",
            "--server",
            &url,
            "--ca-cert",
            &ca_file,
        ],
        &[],
        "",
    )?;

    let kafka = server.kafka_addr().context("kafka listener")?;
    let ssl = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca_file.as_str()),
    ];
    let records = [Outgoing::value("first"), Outgoing::value("second")];
    let acknowledged =
        KafkaClient::Rdkafka.produce_acknowledged(kafka, "kafka-tls", &ssl, &records)?;
    ensure!(acknowledged == [(0, 0), (0, 1)], "{acknowledged:?}");
    let consumed = KafkaClient::Rdkafka.consume(kafka, "kafka-tls", &ssl, Some(2))?;
    let values: Vec<&str> = consumed.iter().map(|c| c.value.as_str()).collect();
    ensure!(values == ["first", "second"], "{consumed:?}");

    let amqp = server.amqp_addr().context("amqp listener")?;
    let mut command = common::kafka::python_command("tests/amqp", "basics.py", &["get"])?;
    command.env("AMQP_ADDR", amqp).env("AMQP_CA_CERT", &ca_file);
    let lines =
        common::kafka::Program::spawn("basics.py", command)?.finish(common::amqp::TIMEOUT)?;
    let events = common::kafka::parse_lines::<serde_json::Value>(&lines)?;
    let bodies: Vec<_> = events
        .iter()
        .map(|e| (e["event"].clone(), e["body"].clone()))
        .collect();
    ensure!(
        bodies
            == [
                (json!("got"), json!("one")),
                (json!("got"), json!("two")),
                (json!("got"), json!("three")),
                (json!("empty"), json!(null)),
            ],
        "{events:?}"
    );
    Ok(())
}
