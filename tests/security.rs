//! Authentication, ACLs, quotas and the audit log over gRPC and the metrics endpoint,
//! against the real server with `--auth`: users and ACLs made with the `sluice` CLI, before
//! the first start (`--data-dir`) and on the running server as a superuser.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use common::Server;
use common::kafka::Program;
use common::security::{Run, add_acl, add_user, as_user, basic_header, sluice, sluice_ok};

const ADMIN: (&str, &str) = ("admin", "admin-secret-1");
const ALICE: (&str, &str) = ("alice", "alice-secret-2");
const BOB: (&str, &str) = ("bob", "bob-secret-3");

/// A server with `--auth`, superuser `admin`, users alice and bob and the ACLs of
/// `acls` (each the arguments of one `sluice acl add`), set up before it starts.
fn secured_server(dir: &Path, acls: &[&[&str]]) -> Result<Server> {
    for (user, password) in [ADMIN, ALICE, BOB] {
        add_user(dir, user, password)?;
    }
    for acl in acls {
        add_acl(dir, acl)?;
    }
    Server::start_capturing_stderr(dir, &["--auth", "--superusers", "admin"])
}

/// Runs `sluice ARGS --server URL` as `user`.
fn run_as(
    server: &Server,
    (user, password): (&str, &str),
    args: &[&str],
    stdin: &str,
) -> Result<Run> {
    let url = server.url();
    let mut all = args.to_vec();
    all.extend(["--server", &url]);
    sluice(&all, &as_user(user, password), stdin)
}

/// Like [`run_as`], for a command that must succeed; gives its standard output.
fn ok_as(server: &Server, user: (&str, &str), args: &[&str], stdin: &str) -> Result<String> {
    let run = run_as(server, user, args, stdin)?;
    ensure!(
        run.ok,
        "sluice {args:?} as {} failed: {}",
        user.0,
        run.stderr
    );
    Ok(run.stdout)
}

/// Like [`run_as`], for a command that must fail; gives its standard error.
fn refused_as(server: &Server, user: (&str, &str), args: &[&str], stdin: &str) -> Result<String> {
    let run = run_as(server, user, args, stdin)?;
    ensure!(
        !run.ok,
        "sluice {args:?} as {} succeeded: {}",
        user.0,
        run.stdout
    );
    Ok(run.stderr)
}

fn basic((user, password): (&str, &str)) -> String {
    basic_header(user, password)
}

#[test]
fn calls_without_valid_credentials_are_refused_logged_and_counted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(dir.path(), &[])?;
    let url = server.url();

    let anonymous = sluice(&["topic", "list", "--server", &url], &[], "")?;
    ensure!(
        !anonymous.ok,
        "an anonymous call was served: {}",
        anonymous.stdout
    );
    ensure!(
        anonymous.stderr.contains("requires authentication"),
        "unclear refusal: {}",
        anonymous.stderr
    );
    let wrong = refused_as(
        &server,
        ("alice", "not-her-password"),
        &["topic", "list"],
        "",
    )?;
    ensure!(
        wrong.contains("invalid user name or password"),
        "unclear refusal: {wrong}"
    );
    let unknown = refused_as(&server, ("mallory", "guess"), &["topic", "list"], "")?;
    ensure!(
        unknown.contains("invalid user name or password"),
        "an unknown user is told apart from a wrong password: {unknown}"
    );
    let who = ok_as(&server, ALICE, &["whoami"], "")?;
    ensure!(who.starts_with("User:alice"), "whoami: {who}");

    // Health probes stay open; /metrics needs a user with describe on the cluster.
    ensure!(server.metrics_get("/healthz")?.0 == 200);
    let (status, _) = server.metrics_get("/metrics")?;
    ensure!(
        status == 401,
        "/metrics without credentials answered {status}"
    );
    let (status, _) = server.metrics_get_with("/metrics", &[&basic(ALICE)])?;
    ensure!(
        status == 403,
        "/metrics as alice (no ACL) answered {status}"
    );
    let (status, text) = server.metrics_get_with("/metrics", &[&basic(ADMIN)])?;
    ensure!(status == 200, "/metrics as admin answered {status}: {text}");
    let failures = common::metric(
        &text,
        "sluice_authentication_failures_total",
        &[("protocol", "grpc")],
    )
    .unwrap_or(0.0);
    ensure!(failures >= 3.0, "{failures} failed gRPC logins counted");
    let denied = common::metric(
        &text,
        "sluice_authorization_denied_total",
        &[
            ("protocol", "metrics"),
            ("resource_type", "cluster"),
            ("operation", "describe"),
        ],
    )
    .unwrap_or(0.0);
    ensure!(denied >= 1.0, "{denied} denied scrapes counted");

    let log = server.stderr();
    ensure!(
        log.contains("authentication failed") && log.contains("user=\"mallory\""),
        "the audit log misses the failed logins: {log}"
    );
    for (_, password) in [ADMIN, ALICE, BOB, ("", "not-her-password"), ("", "guess")] {
        ensure!(!log.contains(password), "a password is in the server log");
    }
    Ok(())
}

#[test]
fn acls_decide_who_writes_reads_and_sees_each_topic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(
        dir.path(),
        &[
            // alice may only write to orders (which lets her describe it, as in Kafka).
            &[
                "--principal",
                "User:alice",
                "--operation",
                "write",
                "--topic",
                "orders",
            ],
            // bob may read every topic whose name starts with "ord", in group "billing".
            &[
                "--principal",
                "User:bob",
                "--operation",
                "read",
                "--topic",
                "ord",
                "--prefixed",
            ],
            &[
                "--principal",
                "User:bob",
                "--operation",
                "read",
                "--group",
                "billing",
            ],
        ],
    )?;
    for topic in ["orders", "secrets"] {
        ok_as(
            &server,
            ADMIN,
            &["topic", "create", topic, "--partitions", "1"],
            "",
        )?;
    }
    let denied = refused_as(
        &server,
        ALICE,
        &["topic", "create", "mine", "--partitions", "1"],
        "",
    )?;
    ensure!(
        denied.contains("User:alice is not authorized to create topic \"mine\""),
        "create: {denied}"
    );

    ok_as(&server, ALICE, &["produce", "orders"], "first\nsecond\n")?;
    let denied = refused_as(&server, BOB, &["produce", "orders"], "bob's\n")?;
    ensure!(
        denied.contains("User:bob is not authorized to write topic \"orders\""),
        "produce: {denied}"
    );
    let denied = refused_as(&server, ALICE, &["produce", "secrets"], "x\n")?;
    ensure!(
        // (The CLI producer describes the topic first: that is what it is refused.)
        denied.contains("User:alice is not authorized to") && denied.contains("topic \"secrets\""),
        "{denied}"
    );

    // Write-only cannot read.
    let consume = [
        "consume",
        "orders",
        "--from-beginning",
        "--max-messages",
        "2",
    ];
    let denied = refused_as(&server, ALICE, &consume, "")?;
    ensure!(
        denied.contains("User:alice is not authorized to read topic \"orders\""),
        "consume: {denied}"
    );
    let read = ok_as(&server, BOB, &consume, "")?;
    ensure!(
        read.lines().collect::<Vec<_>>() == ["first", "second"],
        "bob read {read:?}"
    );

    // A group consumer needs read on the group too.
    let in_group = |group: &str| {
        let mut args = consume.to_vec();
        args.extend(["--group", group]);
        run_as(&server, BOB, &args, "")
    };
    ensure!(
        in_group("billing")?.ok,
        "bob could not consume in group billing"
    );
    let other = in_group("shipping")?;
    ensure!(
        !other.ok
            && other
                .stderr
                .contains("not authorized to read group \"shipping\""),
        "group shipping: {}",
        other.stderr
    );

    // Lists show only what the caller may describe.
    let topics = |user| -> Result<Vec<String>> {
        let out = ok_as(&server, user, &["topic", "list"], "")?;
        Ok(out
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    };
    ensure!(
        topics(ALICE)? == ["orders"],
        "alice sees {:?}",
        topics(ALICE)?
    );
    ensure!(
        topics(ADMIN)? == ["orders", "secrets"],
        "admin sees {:?}",
        topics(ADMIN)?
    );
    let denied = refused_as(&server, ALICE, &["topic", "describe", "secrets"], "")?;
    ensure!(denied.contains("describe topic \"secrets\""), "{denied}");

    // ACLs change on the running server, by a superuser only; a deny wins.
    let grant = [
        "acl",
        "add",
        "--principal",
        "User:alice",
        "--operation",
        "read",
        "--topic",
        "orders",
    ];
    let denied = refused_as(&server, ALICE, &grant, "")?;
    ensure!(
        denied.contains("not authorized to alter cluster"),
        "{denied}"
    );
    ok_as(&server, ADMIN, &grant, "")?;
    ok_as(&server, ALICE, &consume, "")?;
    ok_as(
        &server,
        ADMIN,
        &[
            "acl",
            "add",
            "--principal",
            "User:*",
            "--operation",
            "read",
            "--topic",
            "orders",
            "--deny",
        ],
        "",
    )?;
    refused_as(&server, ALICE, &consume, "")?;
    refused_as(&server, BOB, &consume, "")?;
    let listed = ok_as(
        &server,
        ADMIN,
        &["acl", "list", "--topic", "orders", "--output", "json"],
        "",
    )?;
    ensure!(listed.lines().count() == 3, "ACLs of orders: {listed}");
    let removed = ok_as(
        &server,
        ADMIN,
        &["acl", "remove", "--permission", "deny"],
        "",
    )?;
    ensure!(removed.contains("removed 1 binding"), "{removed}");
    ok_as(&server, BOB, &consume, "")?;
    Ok(())
}

#[test]
fn users_are_managed_online_and_passwords_never_stored_in_clear() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(dir.path(), &[])?;
    ok_as(
        &server,
        ADMIN,
        &["user", "add", "carol", "--password-stdin"],
        "carol-secret-4\n",
    )?;
    let carol = ("carol", "carol-secret-4");
    ensure!(ok_as(&server, carol, &["whoami"], "")?.starts_with("User:carol"));
    let denied = refused_as(
        &server,
        ALICE,
        &["user", "add", "dave", "--password-stdin"],
        "x\n",
    )?;
    ensure!(
        denied.contains("not authorized to alter cluster"),
        "{denied}"
    );
    let users = ok_as(&server, ADMIN, &["user", "list"], "")?;
    for name in ["admin", "alice", "bob", "carol"] {
        ensure!(users.contains(name), "user list: {users}");
    }
    ensure!(users.contains("SCRAM-SHA-256,SCRAM-SHA-512"), "{users}");

    // A user changes their own password; the old one stops working.
    ok_as(
        &server,
        carol,
        &["user", "passwd", "carol", "--password-stdin"],
        "carol-new-5\n",
    )?;
    refused_as(&server, carol, &["whoami"], "")?;
    ok_as(&server, ("carol", "carol-new-5"), &["whoami"], "")?;
    ok_as(&server, ADMIN, &["user", "delete", "carol"], "")?;
    refused_as(&server, ("carol", "carol-new-5"), &["whoami"], "")?;

    server.stop()?;
    let passwords = [ADMIN.1, ALICE.1, BOB.1, "carol-secret-4", "carol-new-5"];
    for entry in walk(dir.path())? {
        let bytes = std::fs::read(&entry)?;
        for password in passwords {
            ensure!(
                !bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "{} holds a password in clear",
                entry.display()
            );
        }
    }
    Ok(())
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

#[test]
fn a_produce_quota_slows_the_producer_to_its_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(
        dir.path(),
        &[&[
            "--principal",
            "User:alice",
            "--operation",
            "write",
            "--topic",
            "metered",
        ]],
    )?;
    ok_as(
        &server,
        ADMIN,
        &["topic", "create", "metered", "--partitions", "1"],
        "",
    )?;
    ok_as(
        &server,
        ADMIN,
        &["quota", "set", "alice", "--produce", "100000"],
        "",
    )?;
    let listed = ok_as(&server, ADMIN, &["quota", "list"], "")?;
    ensure!(
        listed.contains("alice") && listed.contains("100000"),
        "{listed}"
    );

    // 400 kB at 100 kB/s: about 4 s (the first request is never held back, so at least 3).
    let line = "x".repeat(999);
    let input: String = (0..400).map(|_| format!("{line}\n")).collect();
    let started = Instant::now();
    ok_as(&server, ALICE, &["produce", "metered"], &input)?;
    let took = started.elapsed();
    ensure!(
        took >= Duration::from_secs(3),
        "400 kB at 100 kB/s took {took:?}"
    );

    let (_, text) = server.metrics_get_with("/metrics", &[&basic(ADMIN)])?;
    let throttled = common::metric(
        &text,
        "sluice_quota_throttle_ms_total",
        &[("user", "alice"), ("quota", "producer_byte_rate")],
    )
    .unwrap_or(0.0);
    ensure!(throttled > 0.0, "no throttling counted: {text}");
    // The admin has no quota: the same load is not held back.
    let started = Instant::now();
    ok_as(&server, ADMIN, &["produce", "metered"], &input)?;
    ensure!(
        started.elapsed() < took / 2,
        "the unmetered user was slowed too"
    );
    Ok(())
}

#[test]
fn a_listener_beyond_loopback_needs_auth_or_insecure() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_str().unwrap_or_default();
    let refused = sluice(
        &[
            "serve",
            "--data-dir",
            data,
            "--listen",
            "0.0.0.0:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--amqp-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
        "",
    )?;
    ensure!(!refused.ok, "the server listened openly");
    ensure!(
        refused.stderr.contains("--auth") && refused.stderr.contains("--insecure"),
        "the refusal does not say what to do: {}",
        refused.stderr
    );
    let server = Server::start_on(dir.path(), "0.0.0.0:0", &["--insecure"])?;
    let port = server
        .addr
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    sluice_ok(
        &["topic", "list", "--server", &format!("127.0.0.1:{port}")],
        &[],
        "",
    )?;
    Ok(())
}

#[test]
fn removing_an_acl_ends_the_subscriptions_it_allowed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = secured_server(
        dir.path(),
        &[&[
            "--principal",
            "User:alice",
            "--operation",
            "read",
            "--topic",
            "orders",
        ]],
    )?;
    let url = server.url();
    ok_as(
        &server,
        ADMIN,
        &["topic", "create", "orders", "--partitions", "1"],
        "",
    )?;
    ok_as(&server, ADMIN, &["produce", "orders"], "first\n")?;

    // Alice tails the topic.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["consume", "orders", "--from-beginning", "--server", &url])
        .env_remove("SLUICE_SERVER")
        .envs(as_user(ALICE.0, ALICE.1));
    let mut tail = Program::spawn("sluice consume", command)?;
    tail.wait_for_stdout("the first record", Duration::from_secs(10), |lines| {
        lines.iter().any(|l| l == "first")
    })?;

    ok_as(
        &server,
        ADMIN,
        &[
            "acl",
            "remove",
            "--principal",
            "User:alice",
            "--operation",
            "read",
            "--topic",
            "orders",
        ],
        "",
    )?;
    // The next delivery finds the grant gone: the stream ends with PERMISSION_DENIED.
    ok_as(&server, ADMIN, &["produce", "orders"], "second\n")?;
    let status = tail.exit_within(Duration::from_secs(10))?;
    ensure!(
        !status.success(),
        "the subscription went on: {:?}",
        tail.stdout()
    );
    ensure!(
        !tail.stdout().iter().any(|l| l == "second"),
        "a record was delivered after the ACL was removed"
    );
    ensure!(
        tail.stderr().contains("not authorized") || tail.stderr().contains("PERMISSION_DENIED"),
        "{}",
        tail.stderr()
    );
    Ok(())
}
