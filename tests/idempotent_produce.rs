//! Raw-batch produce of an idempotent producer against the real server: retries are stored
//! once, also after the server is killed; sequence gaps and older epochs get their codes.
mod common;

use anyhow::{Context, Result};
use common::*;
use sluice_proto::v1 as pb;
use sluice_storage::batch::RecordBatchBuilder;
use tonic::Code;
use tonic::transport::Channel;

/// A batch of `values` from producer `id` at `epoch`, its first record at sequence `seq`.
fn batch(id: i64, epoch: i16, seq: i32, values: &[&str]) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new().with_producer(id, epoch, seq);
    for value in values {
        builder
            .push(1_000, None, Some(value.as_bytes()), std::iter::empty())
            .expect("push");
    }
    builder.finish().expect("a batch").to_vec()
}

/// The base offset the server answers a raw-batch produce with.
async fn produce(
    log: &mut pb::log_client::LogClient<Channel>,
    bytes: Vec<u8>,
) -> Result<u64, tonic::Status> {
    let response = log
        .produce(pb::ProduceRequest {
            topic: "t".into(),
            partition: Some(0),
            record_batches: bytes.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(response
        .partitions
        .first()
        .map_or(u64::MAX, |p| p.base_offset))
}

fn expect_code(result: Result<u64, tonic::Status>, code: Code, needle: &str) {
    match result {
        Ok(offset) => panic!("expected {code:?}, got offset {offset}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(status.message().contains(needle), "{}", status.message());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_raw_batches_are_stored_once_across_a_kill() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "t", 1, &[]).await?;
    let mut log = server.log().await?;
    assert_eq!(produce(&mut log, batch(7, 0, 0, &["a", "b"])).await?, 0);
    assert_eq!(produce(&mut log, batch(7, 0, 0, &["a", "b"])).await?, 0);
    expect_code(
        produce(&mut log, batch(7, 0, 5, &["gap"])).await,
        Code::Aborted,
        "2 was expected",
    );
    assert_eq!(produce(&mut log, batch(7, 1, 0, &["c"])).await?, 2);
    expect_code(
        produce(&mut log, batch(7, 0, 2, &["zombie"])).await,
        Code::FailedPrecondition,
        "fenced",
    );
    server.kill()?;

    let server = Server::start(dir.path(), &[])?;
    let mut log = server.log().await?;
    assert_eq!(produce(&mut log, batch(7, 1, 0, &["c"])).await?, 2);
    assert_eq!(produce(&mut log, batch(7, 1, 1, &["d"])).await?, 3);
    let values: Vec<String> = fetch_all(&mut log, "t", 0, 0)
        .await?
        .iter()
        .map(value_str)
        .collect();
    assert_eq!(values, ["a", "b", "c", "d"]);
    let metrics = server.scrape().context("scrape")?;
    assert_eq!(
        metric(&metrics, "sluice_produce_duplicates_total", &[]),
        Some(1.0)
    );
    Ok(())
}
