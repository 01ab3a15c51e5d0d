//! One set of data: records produced over Kafka (librdkafka) and records produced over gRPC
//! to the same topic are read back over both protocols, each the same, with their keys,
//! headers and timestamps, at the offsets their producers were told.
mod common;

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use common::kafka::{Client, Consumed, Outgoing, check_consumed, fetch_over_grpc, sample_records};
use common::{Server, create_topic};
use sluice_partitioner::partition_for_key;
use sluice_proto::v1 as pb;

const PARTITIONS: u32 = 3;

#[test]
fn records_produced_over_kafka_and_grpc_read_the_same_over_both() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        create_topic(&mut server.admin().await?, "shared", PARTITIONS, &[]).await
    })?;

    let over_kafka = sample_records(30, 1_600_000_000_000);
    let producer = [("acks", "all"), ("partitioner", "murmur2_random")];
    let mut acks =
        Client::Rdkafka.produce_acknowledged(&bootstrap, "shared", &producer, &over_kafka)?;

    let over_grpc = sample_records(30, 1_600_100_000_000);
    acks.extend(runtime.block_on(produce_over_grpc(&server, "shared", &over_grpc))?);
    let records = [over_kafka, over_grpc].concat();

    let mut read_over_grpc = runtime.block_on(fetch_over_grpc(&server, "shared"))?;
    check_consumed("shared", &records, &acks, &read_over_grpc)?;
    let mut read_over_kafka =
        Client::KafkaPython.consume(&bootstrap, "shared", &[], Some(records.len()))?;
    check_consumed("shared", &records, &acks, &read_over_kafka)?;

    // Both protocols report the same records, whoever produced them.
    let at = |r: &Consumed| (r.partition, r.offset);
    read_over_grpc.sort_by_key(at);
    read_over_kafka.sort_by_key(at);
    for (grpc, kafka) in read_over_grpc.iter().zip(&read_over_kafka) {
        let kafka = Consumed {
            timestamp_type: None,
            ..kafka.clone()
        };
        ensure!(*grpc == kafka, "gRPC read {grpc:?}, Kafka read {kafka:?}");
    }
    Ok(())
}

/// Produces `records` in one gRPC request, partitioned by the server from their keys; the
/// partition and offset of each.
async fn produce_over_grpc(
    server: &Server,
    topic: &str,
    records: &[Outgoing],
) -> Result<Vec<(i32, i64)>> {
    let bytes = |text: &str| bytes::Bytes::copy_from_slice(text.as_bytes());
    let produced = server
        .log()
        .await?
        .produce(pb::ProduceRequest {
            topic: topic.into(),
            partition: None,
            records: records
                .iter()
                .map(|r| pb::Record {
                    key: r.key.as_deref().map(bytes),
                    value: bytes(&r.value),
                    headers: r
                        .headers
                        .iter()
                        .map(|(key, value)| pb::Header {
                            key: key.clone(),
                            value: bytes(value),
                        })
                        .collect(),
                    timestamp_ms: r.timestamp.unwrap_or(0),
                })
                .collect(),
            ..Default::default()
        })
        .await?
        .into_inner();
    // The n-th record of the request that went to a partition is at its base offset + n.
    let mut next: BTreeMap<u32, u64> = produced
        .partitions
        .iter()
        .map(|p| (p.partition, p.base_offset))
        .collect();
    let mut acks = Vec::with_capacity(records.len());
    for record in records {
        let key = record.key.as_deref().unwrap_or_default();
        let partition = partition_for_key(key.as_bytes(), PARTITIONS);
        let offset = next
            .get_mut(&partition)
            .with_context(|| format!("key {key:?} (partition {partition}) was not produced"))?;
        acks.push((i32::try_from(partition)?, i64::try_from(*offset)?));
        *offset += 1;
    }
    for p in &produced.partitions {
        let counted = acks
            .iter()
            .filter(|(partition, _)| u32::try_from(*partition) == Ok(p.partition))
            .count();
        ensure!(
            usize::try_from(p.record_count)? == counted,
            "partition {} took {} records, murmur2 sends it {counted}",
            p.partition,
            p.record_count
        );
    }
    Ok(acks)
}
