//! SIGKILL while Kafka clients write: a librdkafka producer with `acks=all` writes to a
//! topic created over Kafka with `flush.policy=fsync`, and a consumer group member
//! (kafka-python) reads along, committing after each record. The server is killed while
//! records are still on their way, restarted on the same data directory, and then a Kafka
//! consumer reads every acknowledged record back exactly once, at its acknowledged offset,
//! in order (a record not acknowledged, in flight at the kill, may be there too, at most
//! once), and the group's committed offsets (OffsetFetch) are those of its last
//! acknowledged commits, or of a commit in flight at the kill.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{
    Client, Consumed, Delivery, Member, MemberEvent, Outgoing, committed_offsets, parse_lines,
};
use serde::Deserialize;

const TOPIC: &str = "durable";
const GROUP: &str = "durable-readers";
const PARTITIONS: u32 = 3;
/// The group member's first join goes through at once.
const SETTINGS: [(&str, &str); 1] = [("SLUICE_GROUPS_INITIAL_REBALANCE_DELAY_MS", "0")];
/// Records the producer is given; the server is killed once `KILL_AFTER` are acknowledged.
const RECORDS: usize = 2000;
const KILL_AFTER: usize = 400;

#[test]
fn every_acknowledged_record_and_committed_offset_survives_sigkill() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(dir.path(), &SETTINGS, &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    create_fsync_topic(&server, &bootstrap)?;
    let member = Member::start(&bootstrap, TOPIC, GROUP, "reader", 0)?;
    member.wait("its assignment", |events| {
        events
            .iter()
            .any(|e| e.event == "assigned" && e.partitions.len() == 3)
    })?;

    let records: Vec<Outgoing> = (0..RECORDS)
        .map(|i| Outgoing {
            key: Some(format!("key-{}", i % 11)),
            ..Outgoing::value(format!("record {i}"))
        })
        .collect();
    let (reports, member_events) = produce_until_killed(server, &bootstrap, &records, member)?;
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

    let server = Server::start_with_env(dir.path(), &SETTINGS, &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;
    let consumed = Client::Rdkafka.consume(bootstrap, TOPIC, &[], None)?;
    eprintln!(
        "{} of {RECORDS} records acknowledged before the kill; {} read after the restart; \
         commits acknowledged up to {:?}",
        acked.len(),
        consumed.len(),
        committed_offsets(&member_events)
    );
    check_after_restart(&records, &acked, &consumed)?;
    check_committed_after_restart(bootstrap, &member_events, &consumed)
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
/// server once `KILL_AFTER` are acknowledged and `member` committed some, then the member;
/// returns every record's report once the producer has given up on the rest, and the
/// member's events.
fn produce_until_killed(
    server: Server,
    bootstrap: &str,
    records: &[Outgoing],
    member: Member,
) -> Result<(Vec<Delivery>, Vec<MemberEvent>)> {
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
    member.wait("20 commits", |events| {
        events.iter().filter(|e| e.event == "committed").count() >= 20
    })?;
    server.kill()?;
    let member_events = member.kill()?;
    let status = producer.exit_within(Duration::from_secs(20))?;
    ensure!(
        status.success(),
        "the producer failed: {}",
        producer.stderr()
    );
    let reports = Delivery::in_order(parse_lines(&producer.stdout())?, records.len())?;
    Ok((reports, member_events))
}

/// What `kafka_python_client.py committed` prints.
#[derive(Debug, Deserialize)]
struct Committed {
    offsets: BTreeMap<u32, Option<u64>>,
}

/// Checks the group's committed offsets after the restart, read over Kafka: for each
/// partition at least the member's last acknowledged commit, at most the offset after the
/// last record it processed (a commit in flight at the kill may have become durable), and
/// within the records the partition holds.
fn check_committed_after_restart(
    bootstrap: &str,
    events: &[MemberEvent],
    consumed: &[Consumed],
) -> Result<()> {
    let acknowledged = committed_offsets(events);
    let mut attempted: BTreeMap<u32, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.event == "record") {
        if let (Some(p), Some(offset)) = (e.partition, e.offset) {
            let at = attempted.entry(p).or_insert(0);
            *at = (offset + 1).max(*at);
        }
    }
    let lines = Client::KafkaPython.run("committed", bootstrap, TOPIC, &["--group", GROUP])?;
    let answers: Vec<Committed> = parse_lines(&lines)?;
    let [answer] = answers.as_slice() else {
        anyhow::bail!("expected one answer, got {lines:?}");
    };
    ensure!(
        !acknowledged.is_empty(),
        "no commit was acknowledged before the kill"
    );
    for p in 0..PARTITIONS {
        let stored = answer.offsets.get(&p).copied().flatten();
        let acked = acknowledged.get(&p).copied();
        let highest = attempted.get(&p).copied();
        let end = consumed
            .iter()
            .filter(|r| u32::try_from(r.partition) == Ok(p))
            .count();
        let end = u64::try_from(end)?;
        ensure!(
            stored >= acked && stored <= highest && stored.is_none_or(|s| s <= end),
            "partition {p}: committed {stored:?} after the restart; acknowledged {acked:?}, \
             attempted up to {highest:?}, {end} records"
        );
    }
    Ok(())
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
