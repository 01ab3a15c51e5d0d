//! Fetch answers that carry hundreds of kilobytes per partition (sent as pieces, the stored
//! batches beside the encoded answer) are read whole and intact by every Kafka client, in
//! the Fetch version each one speaks.
mod common;

use anyhow::{Context, Result};
use common::kafka::{Client, check_consumed, sample_records};
use common::{Server, create_topic};

#[test]
fn every_client_reads_large_fetch_answers_intact() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    tokio::runtime::Runtime::new()?
        .block_on(async { create_topic(&mut server.admin().await?, "large", 3, &[]).await })?;

    // About 2.5 MB in batches of up to 1 MB: each fetch answer holds far more than the size
    // below which batches are copied into the encoded answer.
    let mut records = sample_records(600, 1_600_000_000_000);
    for (i, record) in records.iter_mut().enumerate() {
        record.value = format!("{i:05} {}", "abcdefghij".repeat(400));
    }
    let producer = [("acks", "all"), ("linger.ms", "50")];
    let acks = Client::Rdkafka.produce_acknowledged(&bootstrap, "large", &producer, &records)?;

    for client in [Client::Rdkafka, Client::KafkaPython, Client::Aiokafka] {
        let consumed = client.consume(&bootstrap, "large", &[], Some(records.len()))?;
        check_consumed("large", &records, &acks, &consumed)
            .with_context(|| format!("read with {client:?}"))?;
    }
    Ok(())
}
