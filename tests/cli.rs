//! The `sluice` command-line client against a real server: topic administration, producing
//! from standard input, consuming as text and JSON, consumer groups, and error reporting.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use common::Server;
use serde_json::Value;

/// What a finished `sluice` run printed.
#[derive(Debug)]
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `sluice ARGS --server URL` with `stdin` as standard input.
fn sluice(server: &Server, args: &[&str], stdin: &str) -> Result<Run> {
    run_with(&server.url(), args, stdin)
}

fn run_with(url: &str, args: &[&str], stdin: &str) -> Result<Run> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--server", url])
        .env_remove("SLUICE_SERVER")
        .env("SLUICE_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn sluice")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let output = child.wait_with_output()?;
    Ok(Run {
        ok: output.status.success(),
        stdout: String::from_utf8(output.stdout)?,
        stderr: String::from_utf8(output.stderr)?,
    })
}

/// Runs a command that must succeed and returns its standard output.
fn ok(server: &Server, args: &[&str], stdin: &str) -> Result<String> {
    let run = sluice(server, args, stdin)?;
    ensure!(run.ok, "sluice {args:?} failed: {}", run.stderr);
    Ok(run.stdout)
}

/// Runs a command that must fail with one `error: ` line, and returns that line.
fn fails(server: &Server, args: &[&str], stdin: &str) -> Result<String> {
    let run = sluice(server, args, stdin)?;
    one_error_line(&run, args)
}

fn one_error_line(run: &Run, args: &[&str]) -> Result<String> {
    ensure!(!run.ok, "sluice {args:?} succeeded");
    let lines: Vec<&str> = run.stderr.lines().collect();
    ensure!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "sluice {args:?} printed {:?}",
        run.stderr
    );
    Ok(lines[0].to_owned())
}

fn json(text: &str) -> Result<Value> {
    Ok(serde_json::from_str(text)?)
}

/// Each line of `text` parsed as JSON.
fn json_lines(text: &str) -> Result<Vec<Value>> {
    text.lines().map(json).collect()
}

#[test]
fn topic_alter_sets_and_drops_overrides_while_the_topic_serves() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let create = [
        "topic",
        "create",
        "orders",
        "--partitions",
        "1",
        "--config",
        "retention.ms=86400000",
        "--config",
        "segment.bytes=4096",
    ];
    ok(&server, &create, "")?;
    let overrides = |server: &Server| -> Result<serde_json::Value> {
        let described = ok(
            server,
            &["topic", "describe", "orders", "--output", "json"],
            "",
        )?;
        Ok(json(&described)?["overrides"].clone())
    };

    let checked = ok(
        &server,
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "max.message.bytes=2048",
            "--validate-only",
        ],
        "",
    )?;
    assert!(checked.contains("would be"), "{checked}");
    assert!(checked.contains("max.message.bytes=2048"), "{checked}");
    assert_eq!(
        overrides(&server)?,
        serde_json::json!({"retention.ms": "86400000", "segment.bytes": "4096"})
    );

    let altered = ok(
        &server,
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "max.message.bytes=2048",
            "--config",
            "retention.ms=60000",
            "--delete-config",
            "segment.bytes",
        ],
        "",
    )?;
    assert_eq!(
        altered,
        "Overrides of topic 'orders' are now: max.message.bytes=2048, retention.ms=60000.\n"
    );
    assert_eq!(
        overrides(&server)?,
        serde_json::json!({"max.message.bytes": "2048", "retention.ms": "60000"})
    );

    let refused = fails(
        &server,
        &["topic", "alter", "orders", "--config", "segment.bytes=12"],
        "",
    )?;
    assert!(refused.contains("segment.bytes"), "{refused}");
    assert!(refused.contains("1024..=2147483647"), "{refused}");
    let missing = fails(
        &server,
        &["topic", "alter", "nope", "--delete-config", "retention.ms"],
        "",
    )?;
    assert!(missing.contains("nope"), "{missing}");
    Ok(())
}

#[test]
fn topics_are_created_listed_described_and_deleted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let created = ok(
        &server,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=86400000",
        ],
        "",
    )?;
    assert!(created.contains("orders"), "{created}");
    ok(&server, &["topic", "create", "a", "--partitions", "1"], "")?;

    let table = ok(&server, &["topic", "list"], "")?;
    assert_eq!(table, "NAME    PARTITIONS\na       1\norders  3\n");
    let listed = json(&ok(&server, &["topic", "list", "--output", "json"], "")?)?;
    assert_eq!(
        listed,
        serde_json::json!([{"name": "a", "partitions": 1}, {"name": "orders", "partitions": 3}])
    );

    let described = ok(&server, &["topic", "describe", "orders"], "")?;
    let header = described
        .lines()
        .find(|line| line.starts_with("PARTITION"))
        .context("no partition table")?;
    let column = header
        .find("HIGH-WATERMARK")
        .context("no watermark column")?;
    let rows: Vec<&str> = described
        .lines()
        .skip_while(|line| !line.starts_with("PARTITION"))
        .skip(1)
        .take_while(|line| !line.is_empty())
        .collect();
    assert_eq!(rows.len(), 3);
    for (id, row) in rows.iter().enumerate() {
        assert!(row.starts_with(&id.to_string()), "{row}");
        // Columns line up under their titles.
        assert_eq!(row.get(column..column + 1), Some("0"), "{described}");
    }
    assert!(
        described.lines().any(|line| line.split_whitespace().eq([
            "retention.ms",
            "86400000",
            "topic"
        ])),
        "{described}"
    );
    assert!(
        described.lines().any(|line| line.split_whitespace().eq([
            "segment.bytes",
            "1073741824",
            "default"
        ])),
        "{described}"
    );
    let described = json(&ok(
        &server,
        &["topic", "describe", "orders", "--output", "json"],
        "",
    )?)?;
    assert_eq!(described["name"], "orders");
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(3));
    assert_eq!(described["partitions"][2]["partition"], 2);
    assert_eq!(described["config"]["retention.ms"], "86400000");
    assert_eq!(
        described["overrides"],
        serde_json::json!({"retention.ms": "86400000"})
    );

    ok(&server, &["topic", "delete", "orders"], "")?;
    let listed = json(&ok(&server, &["topic", "list", "--output", "json"], "")?)?;
    assert_eq!(listed, serde_json::json!([{"name": "a", "partitions": 1}]));
    Ok(())
}

#[test]
fn lines_are_produced_with_keys_and_consumed_as_text_and_json() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    ok(
        &server,
        &["topic", "create", "events", "--partitions", "4"],
        "",
    )?;
    let input: String = (0..20)
        .map(|i| format!("user-{}=event {i}\n", i % 5))
        .collect();
    let acks = ok(
        &server,
        &["produce", "events", "--key-separator", "=", "--verbose"],
        &input,
    )?;
    // One partition@offset per line, in input order.
    let acks: Vec<(u32, u64)> = acks
        .lines()
        .map(|line| {
            let (partition, offset) = line.split_once('@').context("no @")?;
            Ok((partition.parse()?, offset.parse()?))
        })
        .collect::<Result<_>>()?;
    assert_eq!(acks.len(), 20);

    let text = ok(
        &server,
        &[
            "consume",
            "events",
            "--from-beginning",
            "--max-messages",
            "20",
        ],
        "",
    )?;
    let values: BTreeSet<&str> = text.lines().collect();
    let expected: BTreeSet<String> = (0..20).map(|i| format!("event {i}")).collect();
    assert_eq!(
        values,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );

    let records = json_lines(&ok(
        &server,
        &[
            "consume",
            "events",
            "--from-beginning",
            "--max-messages",
            "20",
            "--format",
            "json",
        ],
        "",
    )?)?;
    assert_eq!(records.len(), 20);
    let mut partition_of_key: BTreeMap<String, u64> = BTreeMap::new();
    for record in &records {
        let value = record["value"].as_str().context("value")?;
        let i: usize = value.trim_start_matches("event ").parse()?;
        let key = record["key"].as_str().context("key")?;
        assert_eq!(key, format!("user-{}", i % 5));
        let at = (
            u32::try_from(record["partition"].as_u64().context("partition")?)?,
            record["offset"].as_u64().context("offset")?,
        );
        assert_eq!(at, acks[i], "record {i} is where produce said");
        assert!(record["timestamp"].as_i64().is_some_and(|ts| ts > 0));
        assert_eq!(record["headers"], serde_json::json!([]));
        let partition = *partition_of_key
            .entry(key.to_owned())
            .or_insert(u64::from(at.0));
        assert_eq!(partition, u64::from(at.0), "key {key} in one partition");
    }

    // Explicit partition and start offset.
    ok(
        &server,
        &["produce", "events", "--partition", "3"],
        "p3-a\np3-b\n\n",
    )?;
    let p3_count = acks.iter().filter(|(p, _)| *p == 3).count();
    let tail = json_lines(&ok(
        &server,
        &[
            "consume",
            "events",
            "--partition",
            "3",
            "--offset",
            &p3_count.to_string(),
            "--max-messages",
            "3",
            "--format",
            "json",
        ],
        "",
    )?)?;
    let tail: Vec<(&str, Value)> = tail
        .iter()
        .map(|r| (r["value"].as_str().unwrap_or("?"), r["key"].clone()))
        .collect();
    assert_eq!(
        tail,
        [
            ("p3-a", Value::Null),
            ("p3-b", Value::Null),
            ("", Value::Null)
        ]
    );
    Ok(())
}

#[test]
fn consuming_from_a_time_skips_older_records() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    ok(
        &server,
        &["topic", "create", "clock", "--partitions", "1"],
        "",
    )?;
    ok(&server, &["produce", "clock"], "old\n")?;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let records = json_lines(&ok(
        &server,
        &[
            "consume",
            "clock",
            "--from-beginning",
            "--max-messages",
            "1",
            "--format",
            "json",
        ],
        "",
    )?)?;
    let stamp = records[0]["timestamp"].as_i64().context("timestamp")? + 1;
    ok(&server, &["produce", "clock"], "new\n")?;
    let seconds = stamp.div_euclid(1000);
    let millis = stamp.rem_euclid(1000);
    let time = time_of(seconds, millis)?;
    let from_time = ok(
        &server,
        &[
            "consume",
            "clock",
            "--from-time",
            &time,
            "--max-messages",
            "1",
        ],
        "",
    )?;
    assert_eq!(from_time, "new\n");
    // A bad time is a usage error.
    let run = sluice(
        &server,
        &["consume", "clock", "--from-time", "yesterday"],
        "",
    )?;
    assert!(!run.ok);
    assert!(run.stderr.contains("RFC 3339"), "{}", run.stderr);
    Ok(())
}

/// `seconds.millis` since the epoch as RFC 3339, computed with `date` to stay independent
/// of the parser under test.
fn time_of(seconds: i64, millis: i64) -> Result<String> {
    let output = Command::new("date")
        .args(["-u", "-d", &format!("@{seconds}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()?;
    ensure!(output.status.success(), "date failed");
    let base = String::from_utf8(output.stdout)?;
    Ok(format!("{}.{millis:03}Z", base.trim()))
}

#[test]
fn errors_are_one_line_with_a_failing_exit_code() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let line = fails(&server, &["topic", "describe", "nope"], "")?;
    assert!(
        line.contains("nope") && line.contains("does not exist"),
        "{line}"
    );
    let line = fails(&server, &["consume", "nope", "--max-messages", "1"], "")?;
    assert!(line.contains("nope"), "{line}");
    let line = fails(&server, &["produce", "nope"], "x\n")?;
    assert!(line.contains("nope"), "{line}");

    ok(&server, &["topic", "create", "t", "--partitions", "1"], "")?;
    let line = fails(&server, &["topic", "create", "t", "--partitions", "1"], "")?;
    assert!(line.contains("already exists"), "{line}");
    let line = fails(
        &server,
        &["topic", "create", "bad/name", "--partitions", "1"],
        "",
    )?;
    assert!(line.contains("bad/name"), "{line}");
    let line = fails(
        &server,
        &["produce", "t", "--key-separator", ":"],
        "k:v\nno-key\n",
    )?;
    assert!(line.contains("line 2"), "{line}");
    // The line before the bad one was produced.
    let out = ok(
        &server,
        &["consume", "t", "--from-beginning", "--max-messages", "1"],
        "",
    )?;
    assert_eq!(out, "v\n");

    // No server: one line naming the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let url = format!("http://{closed}");
    let run = run_with(&url, &["topic", "list"], "")?;
    let line = one_error_line(&run, &["topic", "list"])?;
    assert!(line.contains(&url), "{line}");
    Ok(())
}

#[test]
fn group_commands_show_reset_and_delete_committed_offsets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    ok(
        &server,
        &["topic", "create", "jobs", "--partitions", "2"],
        "",
    )?;
    let input: String = (0..10).map(|i| format!("job {i}\n")).collect();
    ok(&server, &["produce", "jobs"], &input)?;

    // A group member reads 6 records from the beginning and commits them on exit.
    let first = ok(
        &server,
        &[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--from-beginning",
            "--max-messages",
            "6",
        ],
        "",
    )?;
    assert_eq!(first.lines().count(), 6);

    let list = ok(&server, &["group", "list"], "")?;
    assert_eq!(list, "GROUP    STATE  MEMBERS\nworkers  empty  0\n");
    let listed = json(&ok(&server, &["group", "list", "--output", "json"], "")?)?;
    assert_eq!(
        listed,
        serde_json::json!([{"group": "workers", "state": "empty", "members": 0}])
    );
    let described = json(&ok(
        &server,
        &["group", "describe", "workers", "--output", "json"],
        "",
    )?)?;
    let partitions = described["partitions"].as_array().context("partitions")?;
    let committed: u64 = partitions
        .iter()
        .map(|p| p["committed_offset"].as_u64().unwrap_or(0))
        .sum();
    let lag: u64 = partitions
        .iter()
        .map(|p| p["lag"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(committed, 6, "{described}");
    assert_eq!(lag, 10 - committed, "{described}");
    let table = ok(&server, &["group", "describe", "workers"], "")?;
    assert!(
        table.lines().any(|l| l.split_whitespace().eq([
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG-END",
            "LAG",
            "DELAY",
            "MEMBER"
        ])),
        "{table}"
    );

    // The next member resumes after the committed records.
    let rest = ok(
        &server,
        &[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--max-messages",
            "4",
        ],
        "",
    )?;
    let mut all: Vec<&str> = first.lines().chain(rest.lines()).collect();
    all.sort_unstable();
    let mut expected: Vec<String> = (0..10).map(|i| format!("job {i}")).collect();
    expected.sort_unstable();
    assert_eq!(all, expected);

    // Reset to the beginning: everything is read again.
    let reset = json(&ok(
        &server,
        &[
            "group",
            "reset",
            "workers",
            "--topic",
            "jobs",
            "--to-earliest",
            "--output",
            "json",
        ],
        "",
    )?)?;
    assert_eq!(
        reset,
        serde_json::json!([
            {"topic": "jobs", "partition": 0, "offset": 0},
            {"topic": "jobs", "partition": 1, "offset": 0}
        ])
    );
    let again = ok(
        &server,
        &[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--max-messages",
            "10",
        ],
        "",
    )?;
    assert_eq!(again.lines().count(), 10);
    let run = sluice(
        &server,
        &["group", "reset", "workers", "--topic", "jobs"],
        "",
    )?;
    assert!(!run.ok);
    assert!(run.stderr.contains("--to-earliest"), "{}", run.stderr);

    let deleted = ok(&server, &["group", "delete", "workers"], "")?;
    assert!(deleted.contains("workers"));
    let line = fails(&server, &["group", "describe", "workers"], "")?;
    assert!(line.contains("workers"), "{line}");
    Ok(())
}

#[test]
fn share_consume_accepts_releases_and_rejects_what_it_prints() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    ok(
        &server,
        &["topic", "create", "tasks", "--partitions", "2"],
        "",
    )?;
    ok(
        &server,
        &["topic", "create", "tasks.dlq", "--partitions", "1"],
        "",
    )?;
    let input: String = (0..6).map(|i| format!("task {i}\n")).collect();
    ok(&server, &["produce", "tasks"], &input)?;

    // A new group starts at the earliest record; each run accepts what it printed, so the
    // second run prints the rest and nothing twice.
    let consume = |extra: &[&str]| -> Result<String> {
        let mut args = vec!["share", "consume", "tasks", "--group", "workers"];
        args.extend_from_slice(extra);
        ok(&server, &args, "")
    };
    let first = consume(&[
        "--from-beginning",
        "--delivery-attempt-limit",
        "2",
        "--dead-letter-topic",
        "tasks.dlq",
        "--max",
        "4",
    ])?;
    assert_eq!(first.lines().count(), 4, "{first}");
    let rest = consume(&["--timeout", "1"])?;
    let mut all: Vec<&str> = first.lines().chain(rest.lines()).collect();
    all.sort_unstable();
    let expected: Vec<String> = (0..6).map(|i| format!("task {i}")).collect();
    assert_eq!(all, expected, "first {first:?}, rest {rest:?}");
    assert_eq!(consume(&["--timeout", "1"])?, "");

    let described = json(&ok(
        &server,
        &["share", "describe", "workers", "--output", "json"],
        "",
    )?)?;
    let sum = |field: &str| -> u64 {
        described["partitions"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p[field].as_u64()).sum())
            .unwrap_or_default()
    };
    assert_eq!(
        (sum("accepted"), sum("waiting"), sum("in_flight")),
        (6, 0, 0)
    );
    assert_eq!(described["settings"]["delivery_attempt_limit"], 2);
    assert_eq!(described["settings"]["dead_letter_topic"], "tasks.dlq");

    // Released, a record comes back with its delivery count grown; past the limit of 2 it
    // goes to the dead-letter topic. A rejected one goes there at once.
    ok(&server, &["produce", "tasks"], "flaky\nbroken\n")?;
    let released = json_lines(&consume(&["--release", "--max", "1", "--format", "json"])?)?;
    assert_eq!(released[0]["delivery_count"], 1);
    let flaky = released[0]["value"].clone();
    let again = json_lines(&consume(&[
        "--release",
        "--max",
        "2",
        "--timeout",
        "1",
        "--format",
        "json",
    ])?)?;
    let counts: BTreeMap<String, u64> = again
        .iter()
        .map(|r| {
            (
                r["value"].to_string(),
                r["delivery_count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(counts.get(&flaky.to_string()), Some(&2), "{again:?}");
    // The other record, released once, is rejected.
    let rejected = consume(&["--reject", "--timeout", "1"])?;
    assert_eq!(rejected.lines().count(), 1, "{rejected}");
    let broken = rejected.trim_end();
    let dead = json_lines(&ok(
        &server,
        &[
            "consume",
            "tasks.dlq",
            "--from-beginning",
            "--max-messages",
            "2",
            "--format",
            "json",
        ],
        "",
    )?)?;
    let reasons: BTreeMap<String, String> = dead
        .iter()
        .map(|r| {
            let reason = r["headers"]
                .as_array()
                .and_then(|hs| hs.iter().find(|h| h["key"] == "sluice.dlq.reason"))
                .map(|h| h["value"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            (r["value"].as_str().unwrap_or_default().to_owned(), reason)
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{dead:?}");
    assert_eq!(
        reasons.get(broken).map(String::as_str),
        Some("rejected"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .get(flaky.as_str().unwrap_or_default())
            .map(String::as_str),
        Some("delivery-limit"),
        "{reasons:?}"
    );

    let list = ok(&server, &["share", "list"], "")?;
    assert_eq!(list, "GROUP    TOPICS  MEMBERS\nworkers  tasks   0\n");
    let table = ok(&server, &["share", "describe", "workers"], "")?;
    assert!(table.contains("DEAD-LETTERED"), "{table}");
    ok(&server, &["share", "delete", "workers"], "")?;
    let gone = fails(&server, &["share", "describe", "workers"], "")?;
    assert!(gone.contains("\"workers\" does not exist"), "{gone}");
    Ok(())
}
