//! Idempotent producers (librdkafka, `enable.idempotence=true`): with each codec (none,
//! gzip, snappy, lz4, zstd) every record is stored exactly once, read back by a Kafka
//! consumer and over gRPC (decompressed), in the batches the client wrote (its producer
//! id and sequences kept). And a producer whose server is SIGKILLed mid-stream retries its
//! unanswered batches after the restart without any being stored twice: the producer
//! state survives the crash.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::kafka::{
    Client, Delivery, Outgoing, check_consumed, fetch_over_grpc, parse_lines, sample_records,
    stored_batches,
};
use common::{Server, create_topic};

const PARTITIONS: u32 = 3;

/// librdkafka settings of an idempotent producer.
const IDEMPOTENT: [(&str, &str); 4] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "20"),
    ("partitioner", "murmur2_random"),
];

/// The producer ids of every stored batch of `topic`; checks each batch is idempotent and
/// that a partition's sequences run on from batch to batch (or start at 0 under a newer
/// epoch).
fn producer_ids(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    topic: &str,
) -> Result<BTreeSet<i64>> {
    let mut ids = BTreeSet::new();
    for partition in 0..PARTITIONS {
        let batches = runtime.block_on(stored_batches(server, topic, partition))?;
        for pair in batches.windows(2) {
            let [before, after] = pair else { continue };
            let runs_on = (after.producer_id, after.producer_epoch)
                == (before.producer_id, before.producer_epoch)
                && after.base_sequence == before.base_sequence + before.record_count;
            let new_epoch = after.producer_id == before.producer_id
                && after.producer_epoch > before.producer_epoch
                && after.base_sequence == 0;
            ensure!(
                runs_on || new_epoch,
                "partition {partition}: sequences do not run on: {before:?} then {after:?}"
            );
        }
        for batch in &batches {
            ensure!(
                batch.producer_id >= 0,
                "a batch without a producer id: {batch:?}"
            );
            ids.insert(batch.producer_id);
        }
    }
    Ok(ids)
}

#[test]
fn an_idempotent_producer_with_each_codec_writes_every_record_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    let mut all_ids = BTreeSet::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("idempotent-{codec}");
        runtime.block_on(async {
            create_topic(&mut server.admin().await?, &topic, PARTITIONS, &[]).await
        })?;
        let records: Vec<Outgoing> = sample_records(60, 1_700_000_000_000)
            .into_iter()
            .map(|r| Outgoing {
                value: format!("{} {}", r.value, "text that compresses ".repeat(10)),
                ..r
            })
            .collect();
        let mut producer = IDEMPOTENT.to_vec();
        producer.extend([("compression.type", codec), ("message.timeout.ms", "10000")]);
        let acks = Client::Rdkafka
            .produce_acknowledged(&bootstrap, &topic, &producer, &records)
            .with_context(|| format!("idempotent produce with {codec}"))?;

        let consumed = Client::Rdkafka.consume(&bootstrap, &topic, &[], Some(records.len()))?;
        check_consumed(&topic, &records, &acks, &consumed)
            .with_context(|| format!("{codec} read over Kafka"))?;
        let over_grpc = runtime.block_on(fetch_over_grpc(&server, &topic))?;
        check_consumed(&topic, &records, &acks, &over_grpc)
            .with_context(|| format!("{codec} read over gRPC"))?;
        let ids = producer_ids(&runtime, &server, &topic)?;
        ensure!(ids.len() == 1, "{codec}: one producer wrote, ids {ids:?}");
        all_ids.extend(ids);
    }
    ensure!(
        all_ids.len() == 5,
        "each producer got an id of its own: {all_ids:?}"
    );
    Ok(())
}

#[test]
fn an_idempotent_producer_retrying_across_a_sigkill_stores_each_record_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        create_topic(&mut server.admin().await?, "retried", PARTITIONS, &[]).await
    })?;

    let records: Vec<Outgoing> = (0..1500)
        .map(|i| Outgoing {
            key: Some(format!("key-{}", i % 13)),
            ..Outgoing::value(format!("record {i}"))
        })
        .collect();
    let mut settings = IDEMPOTENT.to_vec();
    // Long enough to outlast the restart, so that every record is retried until stored.
    settings.extend([
        ("message.timeout.ms", "30000"),
        ("reconnect.backoff.max.ms", "100"),
    ]);
    let mut producer = Client::Rdkafka.start(
        "produce",
        &bootstrap,
        "retried",
        &settings,
        &["--pace-ms", "1"],
    )?;
    producer.write(&Outgoing::lines(&records)?)?;
    producer.close_stdin();
    producer.wait_for_stdout("300 acknowledgements", Duration::from_secs(15), |lines| {
        lines.len() >= 300
    })?;
    server.kill()?;
    // The same Kafka address, so the producer reconnects to the restarted server.
    let server = Server::start(dir.path(), &["--kafka-listen", &bootstrap])?;
    let status = producer.exit_within(Duration::from_secs(40))?;
    ensure!(
        status.success(),
        "the producer failed: {}",
        producer.stderr()
    );
    let reports = Delivery::in_order(parse_lines(&producer.stdout())?, records.len())?;
    let acks: Vec<(i32, i64)> = reports
        .iter()
        .map(Delivery::acknowledged)
        .collect::<Result<_>>()?;

    // Up to the end, so that a record stored twice would show.
    let consumed = Client::Rdkafka.consume(&bootstrap, "retried", &[], None)?;
    check_consumed("retried", &records, &acks, &consumed)?;
    let over_grpc = runtime.block_on(fetch_over_grpc(&server, "retried"))?;
    check_consumed("retried", &records, &acks, &over_grpc)?;
    let ids = producer_ids(&runtime, &server, "retried")?;
    ensure!(ids.len() == 1, "one producer wrote, ids {ids:?}");
    Ok(())
}
