//! `message.timestamp.type=LogAppendTime`, set by CreateTopics over Kafka: records a Kafka
//! client sends with old timestamps (compressed or not) are read back, over Kafka and over
//! gRPC, stamped with the time the server appended them, and Kafka consumers see the
//! LogAppendTime type. A topic on the default (CreateTime) keeps the client's timestamps.
mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{Client, Outgoing, check_consumed, fetch_over_grpc, stored_batches};

/// A time long before the test runs.
const OLD: i64 = 1_000_000_000_000;

fn now_ms() -> Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

#[test]
fn log_append_time_topics_stamp_records_with_the_append_time() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    for (topic, config) in [
        ("stamped", Some("message.timestamp.type=LogAppendTime")),
        ("as-sent", None),
    ] {
        let mut args = vec!["--partitions", "1"];
        if let Some(config) = config {
            args.extend(["--topic-config", config]);
        }
        Client::Rdkafka.run("create-topic", &bootstrap, topic, &args)?;
    }

    let records: Vec<Outgoing> = (0..20)
        .map(|i| Outgoing {
            timestamp: Some(OLD + i),
            ..Outgoing::value(format!("record {i}"))
        })
        .collect();
    let before = now_ms()?;
    let mut as_sent_acks = Vec::new();
    // Uncompressed, then compressed: the server stamps both kinds of batch.
    for (part, codec) in records.chunks(10).zip(["none", "lz4"]) {
        let producer = [
            ("acks", "all"),
            ("compression.type", codec),
            ("linger.ms", "20"),
            ("message.timeout.ms", "10000"),
        ];
        Client::Rdkafka.produce_acknowledged(&bootstrap, "stamped", &producer, part)?;
        as_sent_acks
            .extend(Client::Rdkafka.produce_acknowledged(&bootstrap, "as-sent", &producer, part)?);
    }
    let after = now_ms()?;

    let consumed = Client::Rdkafka.consume(&bootstrap, "stamped", &[], Some(records.len()))?;
    let over_grpc = runtime.block_on(fetch_over_grpc(&server, "stamped"))?;
    ensure!(consumed.len() == records.len() && over_grpc.len() == records.len());
    for (kafka, grpc) in consumed.iter().zip(&over_grpc) {
        ensure!(
            kafka.timestamp_type.as_deref() == Some("log_append"),
            "not LogAppendTime: {kafka:?}"
        );
        ensure!(
            (before..=after).contains(&kafka.timestamp),
            "timestamp {} is not the append time ({before}..={after}): {kafka:?}",
            kafka.timestamp
        );
        ensure!(
            grpc.timestamp == kafka.timestamp && grpc.offset == kafka.offset,
            "gRPC read {grpc:?}, Kafka read {kafka:?}"
        );
    }
    let batches = runtime.block_on(stored_batches(&server, "stamped", 0))?;
    ensure!(
        batches
            .iter()
            .all(|b| b.attributes & 0x8 != 0 && (before..=after).contains(&b.max_timestamp)),
        "stored batches without the LogAppendTime flag and time: {batches:?}"
    );

    // The CreateTime topic returns what the client sent.
    let as_sent = Client::Rdkafka.consume(&bootstrap, "as-sent", &[], Some(records.len()))?;
    check_consumed("as-sent", &records, &as_sent_acks, &as_sent)
}
