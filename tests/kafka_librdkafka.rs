//! librdkafka (through confluent-kafka): a topic made with CreateTopics, a producer with
//! `acks=all` and the Java client's murmur2 partitioner whose keyed records land in the
//! partition `sluice_partitioner::partition_for_key` names, and a consumer `assign()`ed to
//! every partition from the beginning that reads each record back once, in order, with its
//! key, headers and timestamp.
mod common;

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{Client, check_consumed, parse_lines, sample_records};
use serde_json::Value;
use sluice_partitioner::partition_for_key;

const PARTITIONS: u32 = 4;

#[test]
fn librdkafka_keys_land_by_murmur2_and_read_back_with_headers_and_timestamps() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;

    let partitions = PARTITIONS.to_string();
    let created = Client::Rdkafka.run(
        "create-topic",
        bootstrap,
        "orders",
        &["--partitions", &partitions],
    )?;
    let created: Vec<Value> = parse_lines(&created)?;
    ensure!(
        created.len() == 1 && created[0]["topic"] == "orders",
        "{created:?}"
    );

    let records = sample_records(60, 1_700_000_000_000);
    let producer = [
        ("acks", "all"),
        ("partitioner", "murmur2_random"),
        ("linger.ms", "5"),
    ];
    let acks = Client::Rdkafka.produce_acknowledged(bootstrap, "orders", &producer, &records)?;
    for (record, (partition, _)) in records.iter().zip(&acks) {
        let key = record.key.as_deref().unwrap_or_default();
        let expected = partition_for_key(key.as_bytes(), PARTITIONS);
        ensure!(
            u32::try_from(*partition) == Ok(expected),
            "key {key:?} went to partition {partition}, murmur2 says {expected}"
        );
    }
    // Offsets of a partition follow the order the records were sent in.
    for p in 0..i32::try_from(PARTITIONS)? {
        let offsets: Vec<i64> = acks
            .iter()
            .filter(|(partition, _)| *partition == p)
            .map(|(_, offset)| *offset)
            .collect();
        let dense: Vec<i64> = (0..i64::try_from(offsets.len())?).collect();
        ensure!(
            offsets == dense,
            "partition {p} offsets in send order: {offsets:?}"
        );
    }

    let consumed = Client::Rdkafka.consume(bootstrap, "orders", &[], Some(records.len()))?;
    check_consumed("orders", &records, &acks, &consumed)
}
