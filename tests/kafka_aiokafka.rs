//! aiokafka: a producer (`acks='all'`) writes keyed records with headers and timestamps to a
//! topic that it creates by using it (with the server's `kafka.num_partitions`), its
//! murmur2 partitioner agreeing with `sluice_partitioner::partition_for_key`; an aiokafka
//! consumer without a group reads every record back once, in order, from the beginning.
mod common;

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{Client, check_consumed, sample_records};
use sluice_partitioner::partition_for_key;

#[test]
fn aiokafka_producer_and_consumer_round_trip_on_an_auto_created_topic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with_env(dir.path(), &[("SLUICE_KAFKA_NUM_PARTITIONS", "3")], &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?;

    let records = sample_records(45, 1_650_000_000_000);
    let acks =
        Client::Aiokafka.produce_acknowledged(bootstrap, "events", &[("acks", "all")], &records)?;
    for (record, (partition, _)) in records.iter().zip(&acks) {
        let key = record.key.as_deref().unwrap_or_default();
        let expected = partition_for_key(key.as_bytes(), 3);
        ensure!(
            u32::try_from(*partition) == Ok(expected),
            "key {key:?} went to partition {partition}, murmur2 over 3 partitions says {expected}"
        );
    }

    let consumed = Client::Aiokafka.consume(bootstrap, "events", &[], Some(records.len()))?;
    check_consumed("events", &records, &acks, &consumed)
}
