//! Compressed batches from a Kafka client: librdkafka compresses with each codec (none,
//! gzip, snappy, lz4, zstd); the batches are stored as they came (their codec bits intact),
//! a Kafka consumer reads the records back, and gRPC serves them decompressed.
//! `max.message.bytes` applies to a batch as stored, compressed, as in Kafka.
mod common;

use anyhow::{Context, Result, ensure};
use common::kafka::{
    Client, Delivery, Outgoing, check_consumed, fetch_over_grpc, sample_records, stored_batches,
};
use common::{Server, create_topic};

/// librdkafka's `compression.type` names and the codec ids of the batch attributes.
const CODECS: [(&str, i16); 5] = [
    ("none", 0),
    ("gzip", 1),
    ("snappy", 2),
    ("lz4", 3),
    ("zstd", 4),
];

/// Records whose values compress well (librdkafka sends a batch uncompressed when
/// compressing does not make it smaller).
fn compressible(count: usize) -> Vec<Outgoing> {
    sample_records(count, 1_700_000_000_000)
        .into_iter()
        .map(|r| Outgoing {
            value: format!("{} {}", r.value, "compressible text ".repeat(20)),
            ..r
        })
        .collect()
}

#[test]
fn librdkafka_batches_in_each_codec_are_stored_as_sent_and_read_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    for (codec, id) in CODECS {
        let topic = format!("codec-{codec}");
        runtime
            .block_on(async { create_topic(&mut server.admin().await?, &topic, 2, &[]).await })?;
        let records = compressible(40);
        let producer = [
            ("acks", "all"),
            ("compression.type", codec),
            ("linger.ms", "50"),
            ("partitioner", "murmur2_random"),
            // A refused batch fails within the test's time instead of being retried on.
            ("message.timeout.ms", "10000"),
        ];
        let acks = Client::Rdkafka
            .produce_acknowledged(&bootstrap, &topic, &producer, &records)
            .with_context(|| format!("produce with {codec}"))?;

        let consumed = Client::Rdkafka.consume(&bootstrap, &topic, &[], Some(records.len()))?;
        check_consumed(&topic, &records, &acks, &consumed)
            .with_context(|| format!("{codec} read over Kafka"))?;
        let over_grpc = runtime.block_on(fetch_over_grpc(&server, &topic))?;
        check_consumed(&topic, &records, &acks, &over_grpc)
            .with_context(|| format!("{codec} read over gRPC"))?;

        for partition in 0..2 {
            let batches = runtime.block_on(stored_batches(&server, &topic, partition))?;
            ensure!(
                batches.iter().all(|b| b.codec() == id),
                "{codec} ({id}): stored batches of partition {partition}: {batches:?}"
            );
            ensure!(
                batches.iter().any(|b| b.record_count > 1),
                "{codec}: no batch of partition {partition} holds several records: {batches:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn max_message_bytes_applies_to_the_compressed_batch() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut admin = server.admin().await?;
        create_topic(&mut admin, "small", 1, &[("max.message.bytes", "4096")]).await
    })?;
    let producer = [
        ("acks", "all"),
        ("compression.type", "zstd"),
        ("linger.ms", "100"),
        ("message.timeout.ms", "10000"),
    ];

    // Twenty records of 1000 bytes: 20 KB in one batch before compression, far less after.
    let records: Vec<Outgoing> = (0..20)
        .map(|i| Outgoing::value(format!("{i:04} {}", "z".repeat(995))))
        .collect();
    let acks = Client::Rdkafka.produce_acknowledged(&bootstrap, "small", &producer, &records)?;
    let consumed = Client::Rdkafka.consume(&bootstrap, "small", &[], Some(records.len()))?;
    check_consumed("small", &records, &acks, &consumed)?;

    // A record that does not compress below the limit is refused, as Kafka refuses it.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: String = (0..16_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'!' + u8::try_from(state % 90).unwrap_or(0))
        })
        .collect();
    let refused =
        Client::Rdkafka.produce(&bootstrap, "small", &producer, &[Outgoing::value(noise)])?;
    match &refused[..] {
        [Delivery::Failed { error, .. }] if error.to_lowercase().contains("too large") => Ok(()),
        other => anyhow::bail!("an incompressible 16 KB record over a 4 KiB limit: {other:?}"),
    }
}
