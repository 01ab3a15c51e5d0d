//! SIGKILL while a Kafka producer writes: a librdkafka producer with `acks=all` writes to a
//! topic created over Kafka with `flush.policy=fsync`; the server is killed while records
//! are still on their way, restarted on the same data directory, and a Kafka consumer reads
//! every acknowledged record back exactly once, at its acknowledged offset, in order. A
//! record not acknowledged (in flight at the kill) may be there too, at most once.
//!
//! The test runs in steps (write until killed, restart, check) so that a step committing a
//! group's offsets before the kill, and checking them after the restart, fits in between.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{Client, Consumed, Delivery, Outgoing, parse_lines};

const TOPIC: &str = "durable";
const PARTITIONS: u32 = 3;
/// Records the producer is given; the server is killed once `KILL_AFTER` are acknowledged.
const RECORDS: usize = 2000;
const KILL_AFTER: usize = 400;

#[test]
fn every_acknowledged_kafka_record_survives_sigkill_once_and_in_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    create_fsync_topic(&server, &bootstrap)?;

    let records: Vec<Outgoing> = (0..RECORDS)
        .map(|i| Outgoing {
            key: Some(format!("key-{}", i % 11)),
            ..Outgoing::value(format!("record {i}"))
        })
        .collect();
    let reports = produce_until_killed(server, &bootstrap, &records)?;
    let acked: BTreeMap<(i32, i64), usize> = reports
        .iter()
        .filter_map(|report| match report {
            Delivery::Delivered {
                index,
                partition,
                offset,
            } => Some(((*partition, *offset), *index)),
            Delivery::Failed { .. } => None,
        })
        .collect();
    ensure!(
        acked.len() >= KILL_AFTER && acked.len() < RECORDS,
        "{} of {RECORDS} records acknowledged: the kill did not land mid-stream",
        acked.len()
    );

    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    let consumed = Client::Rdkafka.consume(bootstrap, TOPIC, &[], None)?;
    eprintln!(
        "{} of {RECORDS} records acknowledged before the kill; {} read after the restart",
        acked.len(),
        consumed.len()
    );
    check_after_restart(&records, &acked, &consumed)
}

/// Creates the topic over Kafka (CreateTopics) with `flush.policy=fsync`, and checks the
/// server took the setting.
fn create_fsync_topic(server: &Server, bootstrap: &str) -> Result<()> {
    let partitions = PARTITIONS.to_string();
    Client::Rdkafka.run(
        "create-topic",
        bootstrap,
        TOPIC,
        &[
            "--partitions",
            &partitions,
            "--topic-config",
            "flush.policy=fsync",
        ],
    )?;
    let config = tokio::runtime::Runtime::new()?.block_on(async {
        let described = server
            .admin()
            .await?
            .describe_topic(sluice_proto::v1::DescribeTopicRequest { name: TOPIC.into() })
            .await?
            .into_inner();
        anyhow::Ok(described.topic.context("no topic")?.config)
    })?;
    ensure!(
        config.get("flush.policy").map(String::as_str) == Some("fsync"),
        "{config:?}"
    );
    Ok(())
}

/// Starts producing `records` (paced, so the stream lasts well past the kill), SIGKILLs the
/// server once `KILL_AFTER` are acknowledged, and returns every record's report once the
/// producer has given up on the rest.
fn produce_until_killed(
    server: Server,
    bootstrap: &str,
    records: &[Outgoing],
) -> Result<Vec<Delivery>> {
    let settings = [
        ("acks", "all"),
        ("linger.ms", "2"),
        ("partitioner", "murmur2_random"),
        // Unacknowledged records fail soon after the kill instead of waiting for a server.
        ("message.timeout.ms", "3000"),
        ("reconnect.backoff.max.ms", "200"),
    ];
    let mut producer =
        Client::Rdkafka.start("produce", bootstrap, TOPIC, &settings, &["--pace-ms", "1"])?;
    producer.write(&Outgoing::lines(records)?)?;
    producer.close_stdin();
    producer.wait_for_stdout(
        &format!("{KILL_AFTER} acknowledgements"),
        Duration::from_secs(15),
        |lines| lines.len() >= KILL_AFTER,
    )?;
    server.kill()?;
    let status = producer.exit_within(Duration::from_secs(20))?;
    ensure!(
        status.success(),
        "the producer failed: {}",
        producer.stderr()
    );
    Delivery::in_order(parse_lines(&producer.stdout())?, records.len())
}

/// Checks what a consumer read after the restart: every acknowledged record exactly once
/// at its offset, records of a partition in the order they were sent, offsets dense from
/// 0, and nothing but records that were sent, each at most once.
fn check_after_restart(
    records: &[Outgoing],
    acked: &BTreeMap<(i32, i64), usize>,
    consumed: &[Consumed],
) -> Result<()> {
    let index_of: BTreeMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.value.as_str(), i))
        .collect();
    let mut seen = BTreeSet::new();
    let mut by_partition: BTreeMap<i32, Vec<(i64, usize)>> = BTreeMap::new();
    for record in consumed {
        let index = *index_of
            .get(record.value.as_str())
            .with_context(|| format!("a record that was never sent: {record:?}"))?;
        ensure!(seen.insert(index), "read twice: {record:?}");
        ensure!(
            record.key == records[index].key,
            "wrong key: {record:?}, sent {:?}",
            records[index]
        );
        if let Some(&acked_index) = acked.get(&(record.partition, record.offset)) {
            ensure!(
                acked_index == index,
                "offset {} of partition {} holds record {index}, record {acked_index} was acknowledged there",
                record.offset,
                record.partition
            );
        }
        by_partition
            .entry(record.partition)
            .or_default()
            .push((record.offset, index));
    }
    for (at, index) in acked {
        ensure!(
            seen.contains(index),
            "record {index}, acknowledged at {at:?}, was lost"
        );
    }
    for (partition, mut read) in by_partition {
        read.sort_unstable();
        let offsets: Vec<i64> = read.iter().map(|(offset, _)| *offset).collect();
        let dense: Vec<i64> = (0..i64::try_from(offsets.len())?).collect();
        ensure!(
            offsets == dense,
            "partition {partition} offsets not dense: {offsets:?}"
        );
        ensure!(
            read.windows(2).all(|w| w[0].1 < w[1].1),
            "partition {partition} holds records out of the order they were sent in"
        );
    }
    Ok(())
}
