//! AMQP clients against a server with `--auth`: pika logs in as a Sluice user (a wrong
//! password, an unknown user and guest/guest are refused with 403 ACCESS_REFUSED), every
//! queue, exchange and basic operation is authorized with the same ACLs as gRPC and Kafka
//! (a denial closes the channel with 403, naming the operation and the resource, and is in
//! the audit log and the metrics; an ACL change applies to open connections), and quotas
//! slow a publisher and a consumer. Users and ACLs are made with the `sluice` CLI before
//! the server starts (or on it, as the superuser). The steps are those of
//! `tests/amqp/secured.py`.
mod common;

use std::path::Path;

use anyhow::{Context, Result, ensure};
use common::Server;
use common::amqp::{self, TIMEOUT, run_as};
use common::security::{add_acl, add_user, as_user, scrape_as, set_quota, sluice_ok};
use common::tls::{Ca, server_certificate, strs, write};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("admin", "admin-secret-1");
const ALICE: (&str, &str) = ("alice", "alice-secret-2");
const BOB: (&str, &str) = ("bob", "bob-secret-3");
const WALLY: (&str, &str) = ("wally", "wally-secret-4");

/// A server with `--auth`, superuser `admin`, users alice, bob and wally and the ACLs of
/// `acls` (each the arguments of one `sluice acl add`), set up before it starts.
fn secured_server(dir: &Path, acls: &[&[&str]]) -> Result<Server> {
    for (user, password) in [ADMIN, ALICE, BOB, WALLY] {
        add_user(dir, user, password)?;
    }
    for acl in acls {
        add_acl(dir, acl)?;
    }
    Server::start_capturing_stderr(dir, &["--auth", "--superusers", "admin"])
}

/// Runs `secured.py STEPS` as `user`; the lines it printed after `connected`.
fn steps(server: &Server, user: (&str, &str), steps: &[&str]) -> Result<Vec<Value>> {
    let lines = run_as(amqp::addr(server)?, user, "secured.py", steps)?;
    let (first, rest) = lines.split_first().context("secured.py printed nothing")?;
    ensure!(
        first["event"] == "connected",
        "{} could not log in: {first}",
        user.0
    );
    Ok(rest.to_vec())
}

/// The line `secured.py` prints for a step the server refused with channel.close.
fn closed(step: &str, text: &str) -> Value {
    json!({"event": "closed", "step": step, "code": 403, "text": format!("ACCESS_REFUSED - {text}")})
}

/// `/metrics` as the superuser.
fn scrape(server: &Server) -> Result<String> {
    scrape_as(server, ADMIN.0, ADMIN.1)
}

#[test]
fn only_sluice_users_log_in_and_failures_are_logged_and_counted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(dir.path(), &[])?;
    let addr = amqp::addr(&server)?;

    for (user, password) in [
        ("alice", "not-her-password"),
        ("mallory", "guess"),
        ("guest", "guest"),
    ] {
        let lines = run_as(addr, (user, password), "secured.py", &["declare:q"])?;
        ensure!(lines.len() == 1, "{user} was let in: {lines:?}");
        ensure!(
            lines[0]["event"] == "refused" && lines[0]["error"] == "ProbableAuthenticationError",
            "{user}'s refusal: {}",
            lines[0]
        );
        let text = lines[0]["text"].as_str().unwrap_or_default();
        ensure!(
            text.contains("403")
                && text.contains(
                    "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. \
                     For details see the broker logfile."
                ),
            "{user}'s refusal: {text}"
        );
        ensure!(!text.contains(password), "the refusal shows the password");
    }
    // The right password works; with no ACL the user may log in but do nothing.
    let done = steps(&server, ALICE, &[])?;
    ensure!(done.is_empty(), "{done:?}");

    let failures = common::metric(
        &scrape(&server)?,
        "sluice_authentication_failures_total",
        &[("protocol", "amqp")],
    )
    .unwrap_or(0.0);
    ensure!(failures >= 3.0, "{failures} failed AMQP logins counted");
    let log = server.stderr();
    for user in ["alice", "mallory", "guest"] {
        ensure!(
            log.lines().any(|l| l.contains("sluice::audit")
                && l.contains("authentication failed")
                && l.contains("protocol=\"amqp\"")
                && l.contains(&format!("user=\"{user}\""))),
            "the audit log misses {user}'s failed login: {log}"
        );
    }
    for password in [ALICE.1, "not-her-password", "guess"] {
        ensure!(!log.contains(password), "a password is in the server log");
    }
    Ok(())
}

#[test]
fn acls_decide_what_each_user_declares_publishes_and_consumes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(
        dir.path(),
        &[
            // alice creates, writes and reads `shared` (reading a queue is reading its
            // topic and its share group).
            &[
                "--principal",
                "User:alice",
                "--operation",
                "create,write,read",
                "--topic",
                "shared",
            ],
            &[
                "--principal",
                "User:alice",
                "--operation",
                "read",
                "--group",
                "shared",
            ],
            // wally may only write to `drop` (declared by the admin).
            &[
                "--principal",
                "User:wally",
                "--operation",
                "write",
                "--topic",
                "drop",
            ],
            // He may read its group, not its topic: consuming still needs both.
            &[
                "--principal",
                "User:wally",
                "--operation",
                "read",
                "--group",
                "drop",
            ],
        ],
    )?;

    let admin = steps(&server, ADMIN, &["declare:drop"])?;
    ensure!(
        admin == [json!({"event": "declared", "queue": "drop", "messages": 0})],
        "{admin:?}"
    );
    let alice = steps(
        &server,
        ALICE,
        &[
            "declare:shared",
            "publish:shared:one",
            "publish:shared:two",
            "get:shared",
            "consume:shared:1",
        ],
    )?;
    ensure!(
        alice
            == [
                json!({"event": "declared", "queue": "shared", "messages": 0}),
                json!({"event": "published", "queue": "shared", "body": "one"}),
                json!({"event": "published", "queue": "shared", "body": "two"}),
                json!({"event": "got", "queue": "shared", "body": "one"}),
                json!({"event": "consumed", "queue": "shared", "bodies": ["two"]}),
            ],
        "alice: {alice:?}"
    );

    let bob = steps(
        &server,
        BOB,
        &[
            "declare:bobs",
            "passive:shared",
            "publish:shared:sneaky",
            "get:shared",
            "exchange:logs",
        ],
    )?;
    let refused = |what: &str| format!("access to {what} in vhost '/' refused for user 'bob'");
    ensure!(
        bob == [
            closed(
                "declare:bobs",
                &format!(
                    "{}: queue.declare needs create on topic 'bobs' (or on the cluster)",
                    refused("queue 'bobs'")
                )
            ),
            closed(
                "passive:shared",
                &format!(
                    "{}: queue.declare needs describe on topic 'shared'",
                    refused("queue 'shared'")
                )
            ),
            closed(
                "publish:shared:sneaky",
                &format!(
                    "{}: basic.publish needs write on topic 'shared'",
                    refused("queue 'shared'")
                )
            ),
            closed(
                "get:shared",
                &format!(
                    "{}: basic.get needs read on group 'shared'",
                    refused("queue 'shared'")
                )
            ),
            closed(
                "exchange:logs",
                &format!(
                    "{}: exchange.declare needs create on cluster 'kafka-cluster'",
                    refused("exchange 'logs'")
                )
            ),
        ],
        "bob: {bob:#?}"
    );

    // Write-only: wally declares (write implies describe) and publishes, but may not take.
    let wally = steps(
        &server,
        WALLY,
        &[
            "declare:drop",
            "publish:drop:kept",
            "get:drop",
            "consume:drop:1",
            "bind:drop:amq.fanout",
            "purge:drop",
            "delete:drop",
        ],
    )?;
    let needs = |method: &str, what: &str| {
        format!(
            "access to queue 'drop' in vhost '/' refused for user 'wally': {method} needs {what} on topic 'drop'"
        )
    };
    ensure!(
        wally
            == [
                json!({"event": "declared", "queue": "drop", "messages": 0}),
                json!({"event": "published", "queue": "drop", "body": "kept"}),
                closed("get:drop", &needs("basic.get", "read")),
                closed("consume:drop:1", &needs("basic.consume", "read")),
                closed("bind:drop:amq.fanout", &needs("queue.bind", "alter")),
                closed("purge:drop", &needs("queue.purge", "delete")),
                closed("delete:drop", &needs("queue.delete", "delete")),
            ],
        "wally: {wally:#?}"
    );
    let kept = steps(
        &server,
        ADMIN,
        &[
            "passive:drop",
            "get:drop",
            "bind:drop:amq.fanout",
            "delete:drop",
        ],
    )?;
    ensure!(
        kept == [
            json!({"event": "declared", "queue": "drop", "messages": 1}),
            json!({"event": "got", "queue": "drop", "body": "kept"}),
            json!({"event": "bound", "queue": "drop", "exchange": "amq.fanout"}),
            json!({"event": "deleted", "queue": "drop", "messages": 0}),
        ],
        "what wally published, and what the admin may do with it: {kept:?}"
    );
    let nothing = steps(&server, ALICE, &["passive:shared"])?;
    ensure!(
        nothing == [json!({"event": "declared", "queue": "shared", "messages": 0})],
        "bob's publish was stored: {nothing:?}"
    );

    // Each denial is in the audit log and counted.
    let log = server.stderr();
    for (principal, kind, resource, operation) in [
        ("User:bob", "topic", "bobs", "create"),
        ("User:bob", "topic", "shared", "write"),
        ("User:bob", "cluster", "kafka-cluster", "create"),
        ("User:wally", "topic", "drop", "read"),
        ("User:wally", "topic", "drop", "alter"),
        ("User:wally", "topic", "drop", "delete"),
    ] {
        ensure!(
            log.lines().any(|l| l.contains("sluice::audit")
                && l.contains("denied")
                && l.contains(&format!("principal={principal}"))
                && l.contains("protocol=\"amqp\"")
                && l.contains(&format!("resource_type=\"{kind}\""))
                && l.contains(&format!("resource=\"{resource}\""))
                && l.contains(&format!("operation=\"{operation}\""))),
            "no audit line for {principal} {operation} on {kind} {resource}: {log}"
        );
    }
    let metrics = scrape(&server)?;
    for (kind, operation, at_least) in [
        ("topic", "create", 1.0),
        ("topic", "describe", 1.0),
        ("topic", "write", 1.0),
        ("group", "read", 1.0),
        ("topic", "read", 2.0),
        ("cluster", "create", 1.0),
        ("topic", "alter", 1.0),
        ("topic", "delete", 2.0),
    ] {
        let denied = common::metric(
            &metrics,
            "sluice_authorization_denied_total",
            &[
                ("protocol", "amqp"),
                ("resource_type", kind),
                ("operation", operation),
            ],
        )
        .unwrap_or(0.0);
        ensure!(
            denied >= at_least,
            "{denied} AMQP denials of {operation} on {kind} counted"
        );
    }
    Ok(())
}

#[test]
fn where_dead_letters_go_is_authorized_when_the_queue_is_declared() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(
        dir.path(),
        &[&[
            "--principal",
            "User:alice",
            "--operation",
            "create,write",
            "--topic",
            "trap",
        ]],
    )?;
    steps(&server, ADMIN, &["declare:victim"])?;
    // Alice may not write to `victim`, so neither may her queue's dead letters.
    let alice = steps(
        &server,
        ALICE,
        &["deadletter:trap:victim", "deadletter:trap:trap"],
    )?;
    ensure!(
        alice
            == [
                closed(
                    "deadletter:trap:victim",
                    "access to queue 'victim' in vhost '/' refused for user 'alice': queue.declare needs write on topic 'victim'"
                ),
                json!({"event": "declared", "queue": "trap", "messages": 0}),
            ],
        "alice: {alice:?}"
    );
    Ok(())
}

fn seconds(lines: &[Value], index: usize) -> Result<f64> {
    lines
        .get(index)
        .and_then(|line| line["seconds"].as_f64())
        .with_context(|| format!("no timing at line {index}: {lines:?}"))
}

#[test]
fn acl_changes_apply_to_open_connections() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(dir.path(), &[])?;
    let url = server.url();
    let admin = as_user(ADMIN.0, ADMIN.1);
    steps(&server, ADMIN, &["declare:late"])?;
    let acl = |action: &str| {
        sluice_ok(
            &[
                "acl",
                action,
                "--principal",
                "User:bob",
                "--operation",
                "write",
                "--topic",
                "late",
                "--server",
                &url,
            ],
            &admin,
            "",
        )
    };
    let mut bob = amqp::start_as(
        amqp::addr(&server)?,
        BOB,
        "secured.py",
        &[
            "publish:late:early",
            "wait",
            "publish:late:granted",
            "wait",
            "publish:late:revoked",
        ],
    )?;
    amqp::wait_for(&bob, "waiting", 1)?;
    acl("add")?;
    bob.write("\n")?;
    amqp::wait_for(&bob, "waiting", 2)?;
    acl("remove")?;
    bob.write("\n")?;
    let lines: Vec<Value> = common::kafka::parse_lines(&bob.finish(TIMEOUT)?)?;
    let refused = |step: &str| {
        closed(
            step,
            "access to queue 'late' in vhost '/' refused for user 'bob': basic.publish needs write on topic 'late'",
        )
    };
    ensure!(
        lines
            == [
                json!({"event": "connected"}),
                refused("publish:late:early"),
                json!({"event": "waiting"}),
                json!({"event": "published", "queue": "late", "body": "granted"}),
                json!({"event": "waiting"}),
                refused("publish:late:revoked"),
            ],
        "bob: {lines:#?}"
    );
    let stored = steps(&server, ADMIN, &["passive:late"])?;
    ensure!(
        stored == [json!({"event": "declared", "queue": "late", "messages": 1})],
        "{stored:?}"
    );
    Ok(())
}

#[test]
fn removing_an_acl_cancels_the_consumers_it_allowed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(
        dir.path(),
        &[
            &[
                "--principal",
                "User:alice",
                "--operation",
                "read",
                "--topic",
                "late",
            ],
            &[
                "--principal",
                "User:alice",
                "--operation",
                "read",
                "--group",
                "late",
            ],
        ],
    )?;
    steps(&server, ADMIN, &["declare:late", "publish:late:first"])?;
    let alice = amqp::start_as(amqp::addr(&server)?, ALICE, "secured.py", &["follow:late"])?;
    amqp::wait_for(&alice, "delivered", 1)?;
    sluice_ok(
        &[
            "acl",
            "remove",
            "--principal",
            "User:alice",
            "--operation",
            "read",
            "--group",
            "late",
            "--server",
            &server.url(),
        ],
        &as_user(ADMIN.0, ADMIN.1),
        "",
    )?;
    // The consumer's next delivery finds its grant gone: basic.cancel, and the message
    // stays in the queue.
    steps(&server, ADMIN, &["publish:late:second"])?;
    let lines: Vec<Value> = common::kafka::parse_lines(&alice.finish(TIMEOUT)?)?;
    ensure!(
        lines
            == [
                json!({"event": "connected"}),
                json!({"event": "delivered", "queue": "late", "body": "first"}),
                json!({"event": "cancelled", "queue": "late"}),
            ],
        "alice: {lines:#?}"
    );
    let stored = steps(&server, ADMIN, &["passive:late"])?;
    ensure!(
        stored == [json!({"event": "declared", "queue": "late", "messages": 1})],
        "{stored:?}"
    );
    Ok(())
}

#[test]
fn a_client_certificate_logs_in_with_external_as_its_common_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = tempfile::tempdir()?;
    let ca = Ca::new("amqp mTLS CA")?;
    let ca_file = write(certs.path(), "ca.pem", &ca.pem)?;
    add_acl(
        dir.path(),
        &[
            "--principal",
            "User:alice",
            "--operation",
            "create,write,read",
            "--topic",
            "certs",
        ],
    )?;
    add_acl(
        dir.path(),
        &[
            "--principal",
            "User:alice",
            "--operation",
            "read",
            "--group",
            "certs",
        ],
    )?;
    let mut args = server_certificate(&ca, certs.path())?;
    args.extend(["--auth", "--tls-client-ca", &ca_file].map(str::to_owned));
    let server =
        Server::start_with_env(dir.path(), &[("SLUICE_TLS_METRICS", "false")], &strs(&args))?;
    let addr = amqp::addr(&server)?;
    // pika over TLS with the certificate of `cn`, logging in with EXTERNAL.
    let as_holder = |cn: &str, steps: &[&str]| -> Result<Vec<Value>> {
        let (cert, key) = ca.issue(cn)?;
        let cert = write(certs.path(), &format!("{cn}.pem"), &cert)?;
        let key = write(certs.path(), &format!("{cn}.key"), &key)?;
        let mut command = common::kafka::python_command("tests/amqp", "secured.py", steps)?;
        command
            .env("AMQP_ADDR", addr)
            .env("AMQP_CA_CERT", &ca_file)
            .env("AMQP_CLIENT_CERT", &cert)
            .env("AMQP_CLIENT_KEY", &key);
        let lines = common::kafka::Program::spawn("secured.py", command)?.finish(TIMEOUT)?;
        common::kafka::parse_lines(&lines)
    };
    let alice = as_holder(
        "alice",
        &["declare:certs", "publish:certs:signed", "get:certs"],
    )?;
    ensure!(
        alice
            == [
                json!({"event": "connected"}),
                json!({"event": "declared", "queue": "certs", "messages": 0}),
                json!({"event": "published", "queue": "certs", "body": "signed"}),
                json!({"event": "got", "queue": "certs", "body": "signed"}),
            ],
        "alice: {alice:#?}"
    );
    // CN=bob logs in as bob, who has no ACL.
    let bob = as_holder("bob", &["passive:certs"])?;
    ensure!(
        bob == [
            json!({"event": "connected"}),
            closed(
                "passive:certs",
                "access to queue 'certs' in vhost '/' refused for user 'bob': queue.declare needs describe on topic 'certs'"
            ),
        ],
        "bob: {bob:#?}"
    );
    Ok(())
}

#[test]
fn a_produce_quota_slows_the_publisher_to_its_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(
        dir.path(),
        &[&[
            "--principal",
            "User:alice",
            "--operation",
            "create,write",
            "--topic",
            "metered",
        ]],
    )?;
    let url = server.url();
    set_quota(&url, ADMIN, "alice", &["--produce", "100000"])?;
    // 500 kB at 100 kB/s: 5 s, less the one-second burst the quota lets through at once
    // and the last publish's delay, which comes after its confirm: at least 3.
    let flood = ["declare:metered", "flood:metered:500:1000"];
    let took = seconds(&steps(&server, ALICE, &flood)?, 1)?;
    ensure!(took >= 3.0, "500 kB at 100 kB/s took {took} s");
    let throttled = common::metric(
        &scrape(&server)?,
        "sluice_quota_throttle_ms_total",
        &[("user", "alice"), ("quota", "producer_byte_rate")],
    )
    .unwrap_or(0.0);
    ensure!(throttled > 0.0, "no throttling counted");
    // The admin has no quota: the same load is counted, never held back (his time
    // depends on the disk's confirms, so the counters tell rather than a clock).
    steps(&server, ADMIN, &flood)?;
    let metrics = scrape(&server)?;
    let quota = [("user", "admin"), ("quota", "producer_byte_rate")];
    let counted = common::metric(&metrics, "sluice_quota_bytes_total", &quota).unwrap_or(0.0);
    ensure!(counted >= 500_000.0, "{counted} bytes of the admin counted");
    let held = common::metric(&metrics, "sluice_quota_throttle_ms_total", &quota);
    ensure!(held.is_none(), "the admin was held back {held:?} ms");
    Ok(())
}

#[test]
fn a_fetch_quota_slows_the_consumer_to_its_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(
        dir.path(),
        &[
            &[
                "--principal",
                "User:alice",
                "--operation",
                "read",
                "--topic",
                "metered",
            ],
            &[
                "--principal",
                "User:alice",
                "--operation",
                "read",
                "--group",
                "metered",
            ],
        ],
    )?;
    let url = server.url();
    set_quota(&url, ADMIN, "alice", &["--fetch", "100000"])?;
    let filled = steps(
        &server,
        ADMIN,
        &["declare:metered", "flood:metered:500:1000"],
    )?;
    ensure!(filled.len() == 2, "{filled:?}");
    // 500 kB delivered at 100 kB/s: as for publishing, at least 3 s.
    let drained = steps(&server, ALICE, &["drain:metered:500"])?;
    ensure!(drained[0]["messages"] == 500, "{drained:?}");
    let took = seconds(&drained, 0)?;
    ensure!(took >= 3.0, "500 kB at 100 kB/s took {took} s");
    let throttled = common::metric(
        &scrape(&server)?,
        "sluice_quota_throttle_ms_total",
        &[("user", "alice"), ("quota", "consumer_byte_rate")],
    )
    .unwrap_or(0.0);
    ensure!(throttled > 0.0, "no throttling counted");
    Ok(())
}
