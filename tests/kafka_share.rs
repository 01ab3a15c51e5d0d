//! Share groups (KIP-932) on the Kafka listener, driven by librdkafka's ShareConsumer
//! (confluent-kafka 2.16, `tests/kafka/share_consumer.py`): two consumers split a topic's
//! records, each accepted once; a released record comes back with delivery count 2; a
//! record past the delivery limit, or rejected, is not delivered again; a consumer killed
//! while holding records loses them to another once its heartbeats stop.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{Client, Outgoing, Program, parse_lines};
use serde::Deserialize;

/// One line of `share_consumer.py` (the fields the tests look at).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    Joined,
    Record {
        value: String,
        delivery_count: i32,
        ack: String,
    },
    AckFailed {
        partition: i32,
        error: String,
    },
    Error {
        error: String,
    },
    Timeout,
    Done,
}

/// A record as one consumer got it: value, delivery count, what it answered.
type Got = (String, i32, String);

/// The records of a consumer's output, failing on an error or a failed acknowledgement.
fn records(lines: &[String]) -> Result<Vec<Got>> {
    let mut got = Vec::new();
    for event in parse_lines::<Event>(lines)? {
        match event {
            Event::Record {
                value,
                delivery_count,
                ack,
                ..
            } => got.push((value, delivery_count, ack)),
            Event::AckFailed { partition, error } => {
                anyhow::bail!("acknowledgement failed in partition {partition}: {error}")
            }
            Event::Error { error } => anyhow::bail!("consumer error: {error}"),
            _ => {}
        }
    }
    Ok(got)
}

/// Starts a share consumer of `group` on `topic`.
fn consumer(bootstrap: &str, topic: &str, group: &str, args: &[&str]) -> Result<Program> {
    let mut all = vec![
        "consume",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
    ];
    all.extend_from_slice(args);
    Program::python("share_consumer.py", &all)
}

/// A server whose share groups start at the log start (so records produced before a
/// consumer joins are read) and whose members hold at most 20 records each.
fn server(dir: &std::path::Path, env: &[(&str, &str)]) -> Result<Server> {
    let mut all = vec![
        ("SLUICE_SHARE_AUTO_OFFSET_RESET", "earliest"),
        ("SLUICE_SHARE_MAX_PREFETCH", "20"),
    ];
    all.extend_from_slice(env);
    Server::start_with_env(dir, &all, &[])
}

/// Creates `topic` and produces `values` to it.
fn produce(bootstrap: &str, topic: &str, partitions: u32, values: &[String]) -> Result<()> {
    let partitions = partitions.to_string();
    Client::Rdkafka.run(
        "create-topic",
        bootstrap,
        topic,
        &["--partitions", &partitions],
    )?;
    let records: Vec<Outgoing> = values.iter().map(Outgoing::value).collect();
    Client::Rdkafka.produce_acknowledged(bootstrap, topic, &[], &records)?;
    Ok(())
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Runs a consumer until it stops on its own (idle), returning what it got.
fn drain(bootstrap: &str, topic: &str, group: &str, args: &[&str]) -> Result<Vec<Got>> {
    let lines = consumer(bootstrap, topic, group, args)?.finish(Duration::from_secs(60))?;
    records(&lines)
}

#[test]
fn two_share_consumers_split_the_records_and_each_is_accepted_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    let sent = values("job-", 300);
    produce(bootstrap, "jobs", 3, &sent)?;

    // Each takes 10 ms a record and holds at most 20: neither can take them all alone.
    let args = ["--pace-ms", "10", "--idle", "4", "--timeout", "50"];
    let a = consumer(bootstrap, "jobs", "workers", &args)?;
    let b = consumer(bootstrap, "jobs", "workers", &args)?;
    let a = records(&a.finish(Duration::from_secs(60))?)?;
    let b = records(&b.finish(Duration::from_secs(60))?)?;
    ensure!(
        !a.is_empty() && !b.is_empty(),
        "one consumer got nothing: {} and {}",
        a.len(),
        b.len()
    );
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for (value, count, ack) in a.iter().chain(&b) {
        ensure!(
            *count == 1 && ack == "accept",
            "{value}: delivery {count}, {ack}"
        );
        *times.entry(value.as_str()).or_default() += 1;
    }
    let once: Vec<&str> = sent.iter().map(String::as_str).collect();
    ensure!(
        times.keys().copied().collect::<Vec<_>>().len() == once.len()
            && times.values().all(|&n| n == 1),
        "each record must be delivered once: {} of {} distinct, repeated: {:?}",
        times.len(),
        once.len(),
        times.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    for value in &once {
        ensure!(times.contains_key(value), "{value} was never delivered");
    }
    // Everything is accepted: a new member of the group gets nothing.
    let late = drain(bootstrap, "jobs", "workers", &["--idle", "3"])?;
    ensure!(
        late.is_empty(),
        "accepted records delivered again: {late:?}"
    );
    // Another group reads the topic on its own.
    let other = drain(
        bootstrap,
        "jobs",
        "auditors",
        &["--count", "300", "--idle", "10"],
    )?;
    ensure!(
        other.len() == 300,
        "another group got {} records",
        other.len()
    );
    server.stop()?;
    Ok(())
}

#[test]
fn a_released_record_comes_back_with_delivery_count_2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    let sent = values("task-", 20);
    produce(bootstrap, "tasks", 2, &sent)?;

    let got = drain(
        bootstrap,
        "tasks",
        "g",
        &["--ack", "release-first", "--count", "40"],
    )?;
    for value in &sent {
        let seen: Vec<(i32, &str)> = got
            .iter()
            .filter(|(v, _, _)| v == value)
            .map(|(_, count, ack)| (*count, ack.as_str()))
            .collect();
        ensure!(
            seen == vec![(1, "release"), (2, "accept")],
            "{value}: deliveries {seen:?}"
        );
    }
    let late = drain(bootstrap, "tasks", "g", &["--idle", "3"])?;
    ensure!(
        late.is_empty(),
        "accepted records delivered again: {late:?}"
    );
    server.stop()?;
    Ok(())
}

#[test]
fn rejected_records_and_records_past_the_delivery_limit_are_not_delivered_again() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server(dir.path(), &[("SLUICE_SHARE_DELIVERY_ATTEMPT_LIMIT", "2")])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;

    // Rejected: gone at once (no dead-letter topic: the group has none by default).
    let sent = values("mixed-", 10);
    produce(bootstrap, "mixed", 1, &sent)?;
    let got = drain(
        bootstrap,
        "mixed",
        "g",
        &["--ack", "reject-odd", "--count", "10"],
    )?;
    ensure!(got.len() == 10, "{got:?}");
    let late = drain(bootstrap, "mixed", "g", &["--idle", "3"])?;
    ensure!(
        late.is_empty(),
        "rejected or accepted records delivered again: {late:?}"
    );

    // Released every time: delivered twice (the limit), then never again.
    let sent = values("poison-", 5);
    produce(bootstrap, "poison", 1, &sent)?;
    let got = drain(
        bootstrap,
        "poison",
        "g",
        &["--ack", "release", "--idle", "4"],
    )?;
    for value in &sent {
        let counts: Vec<i32> = got
            .iter()
            .filter(|(v, _, _)| v == value)
            .map(|(_, count, _)| *count)
            .collect();
        ensure!(counts == vec![1, 2], "{value}: delivery counts {counts:?}");
    }
    server.stop()?;
    Ok(())
}

#[test]
fn a_killed_consumer_loses_its_records_to_another_once_its_heartbeats_stop() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Locks last 30 s (the default); the member's session ends after 2 s without a heartbeat.
    let server = server(
        dir.path(),
        &[
            ("SLUICE_KAFKA_SHARE_SESSION_TIMEOUT_MS", "2000"),
            ("SLUICE_KAFKA_SHARE_HEARTBEAT_INTERVAL_MS", "500"),
        ],
    )?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    let sent = values("held-", 10);
    produce(bootstrap, "held", 1, &sent)?;

    let mut holder = consumer(
        bootstrap,
        "held",
        "g",
        &["--ack", "hold", "--timeout", "50"],
    )?;
    holder.wait_for_stdout("a record", Duration::from_secs(30), |lines| {
        lines.iter().any(|l| l.contains("\"record\""))
    })?;
    let held = records(&holder.stdout())?;
    holder.kill();
    let killed = Instant::now();

    let got = drain(bootstrap, "held", "g", &["--count", "10", "--idle", "20"])?;
    let took = killed.elapsed();
    ensure!(
        got.len() == 10,
        "{} records after the kill: {got:?}",
        got.len()
    );
    // What the holder was handed comes back for a second delivery; the rest it may have
    // acquired too (the client fetches ahead of what one poll returns), or not.
    for (value, count, _) in &got {
        let was_held = held.iter().any(|(v, _, _)| v == value);
        ensure!(
            *count == 2 || (!was_held && *count == 1),
            "{value}: delivery {count}, handed to the killed consumer: {was_held}"
        );
    }
    ensure!(
        took < Duration::from_secs(25),
        "the held records came back after {took:?}: by lock expiry (30 s), not the session timeout"
    );
    server.stop()?;
    Ok(())
}
