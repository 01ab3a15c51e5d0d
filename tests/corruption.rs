//! Damaged files at start-up, one kind of damage per partition of one topic, next to an
//! undamaged topic. The server starts whatever it finds, and:
//! - a bad batch in a sealed segment makes reads across it answer DATA_LOSS naming the file
//!   and the batch's byte position, while the partition's later segments still serve;
//! - an active segment cut mid-batch (a torn write) is truncated to its last whole batch,
//!   reported in the log, and takes new records right after the cut;
//! - a deleted offset index and a garbled time index are rebuilt: lookups by offset and by
//!   timestamp still answer right;
//! - stray temporary files are removed;
//! - a partition whose log cannot be opened answers UNAVAILABLE naming it;
//!
//! and every other partition and topic keeps serving reads and writes.
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::*;
use sluice_proto::v1 as pb;
use sluice_storage::batch::BatchHeader;

const TOPIC: &str = "d";
const OTHER: &str = "other";
const REQUESTS: usize = 60;
const PER_REQUEST: usize = 5;
const RECORDS: usize = REQUESTS * PER_REQUEST;
/// Record `i` of every partition is stamped `BASE_TS + 10 * i`.
const BASE_TS: i64 = 1_700_000_000_000;

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// The file position of the batch that holds byte `at` of a segment file.
fn batch_start(segment: &[u8], at: usize) -> Result<usize> {
    let mut pos = 0;
    while pos < segment.len() {
        let end = pos + BatchHeader::parse(&segment[pos..])?.total_len();
        if at < end {
            return Ok(pos);
        }
        pos = end;
    }
    bail!("byte {at} is past the last batch")
}

/// 300 records in 60 requests, with increasing timestamps, into one partition.
async fn fill(server: &Server, topic: &str, partition: u32) -> Result<()> {
    let mut log = server.log().await?;
    for i in 0..REQUESTS {
        let records = (0..PER_REQUEST)
            .map(|j| {
                let n = i * PER_REQUEST + j;
                let value = format!("{partition}-{i}-{j}-{}", "x".repeat(100));
                record(None, &value, BASE_TS + 10 * n as i64)
            })
            .collect();
        log.produce(pb::ProduceRequest {
            topic: topic.into(),
            partition: Some(partition),
            records,
            request_id: 0,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// Checks that `records` are the first `count` records [`fill`] wrote to `partition`.
fn check_intact(records: &[pb::FetchedRecord], partition: u32, count: usize) {
    assert_eq!(records.len(), count, "records of partition {partition}");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        let prefix = format!("{partition}-{}-{}-", i / PER_REQUEST, i % PER_REQUEST);
        assert!(value_str(r).starts_with(&prefix), "{}", value_str(r));
        assert_eq!(r.timestamp_ms, BASE_TS + 10 * i as i64);
    }
}

/// The status a fetch of `partition` from `offset` fails with.
async fn fetch_error(server: &Server, partition: u32, offset: u64) -> Result<tonic::Status> {
    let mut log = server.log().await?;
    let err = fetch_all(&mut log, TOPIC, partition, offset)
        .await
        .err()
        .context("the fetch should have failed")?;
    Ok(err
        .downcast_ref::<tonic::Status>()
        .context("a gRPC status")?
        .clone())
}

async fn offset_for_timestamp(server: &Server, partition: u32, ts: i64) -> Result<Option<u64>> {
    let resp = server
        .log()
        .await?
        .list_offsets(pb::ListOffsetsRequest {
            topic: TOPIC.into(),
            partitions: vec![partition],
            spec: Some(pb::OffsetSpec {
                kind: Some(pb::offset_spec::Kind::TimestampMs(ts)),
            }),
        })
        .await?
        .into_inner();
    Ok(resp.offsets[0].offset)
}

/// Polls the server's captured stderr until it holds every needle.
async fn wait_for_log(server: &Server, needles: &[&str]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = server.stderr();
        if needles.iter().all(|n| text.contains(n)) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the server log lacks one of {needles:?}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_repaired_or_reported_never_served() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    create_topic(&mut admin, TOPIC, 4, &[("segment.bytes", "16384")]).await?;
    create_topic(&mut admin, OTHER, 1, &[("segment.bytes", "16384")]).await?;
    for p in 0..4 {
        fill(&server, TOPIC, p).await?;
    }
    fill(&server, OTHER, 0).await?;
    assert!(server.stop()?.success());

    let partition = |p: u32| dir.path().join(format!("topics/{TOPIC}/{p}"));
    let first_segment = format!("{:020}.log", 0);

    // Partition 0: flip a byte in the middle of its first (sealed) segment.
    let sealed = segments(&partition(0))[0].clone();
    let mut bytes = std::fs::read(&sealed)?;
    let bad_batch = batch_start(&bytes, 5_000)?;
    bytes[5_000] ^= 0x55;
    std::fs::write(&sealed, &bytes)?;

    // Partition 1: tear the active segment mid-batch, as a crash during a write would.
    std::fs::remove_file(partition(1).join("clean-shutdown"))?;
    let active = segments(&partition(1)).pop().context("an active segment")?;
    let len = std::fs::metadata(&active)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&active)?
        .set_len(len - 10)?;

    // Partition 2: delete the offset index and garble the time index of its first segment,
    // and leave temporary files of interrupted work behind.
    let p2 = partition(2);
    std::fs::remove_file(p2.join(format!("{:020}.index", 0)))?;
    let time_index = p2.join(format!("{:020}.timeindex", 0));
    let time_len = std::fs::metadata(&time_index)?.len() as usize;
    assert!(time_len >= 24, "the time index has entries to garble");
    std::fs::write(&time_index, vec![0xff; time_len])?;
    let strays = [
        p2.join("recovery-point.tmp"),
        p2.join(format!("{:020}.log.deleted", 0)),
        dir.path().join(format!("topics/{TOPIC}/topic.json.tmp")),
    ];
    for stray in &strays {
        std::fs::write(stray, b"half-written")?;
    }

    // Partition 3: its first segment file becomes a directory, which no log can open.
    let p3_segment = partition(3).join(&first_segment);
    std::fs::remove_file(&p3_segment)?;
    std::fs::create_dir(&p3_segment)?;

    let server = Server::start_capturing_stderr(dir.path(), &[])?;

    // Partition 0: reading across the bad batch is DATA_LOSS naming file and position...
    let status = fetch_error(&server, 0, 0).await?;
    assert_eq!(status.code(), tonic::Code::DataLoss, "{}", status.message());
    let file = format!("{TOPIC}/0/{first_segment}");
    for needle in [file.as_str(), &format!("at byte {bad_batch}")] {
        assert!(status.message().contains(needle), "{}", status.message());
    }
    // ...while its later segments still serve.
    let last = fetch_all(&mut server.log().await?, TOPIC, 0, RECORDS as u64 - 1).await?;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].offset, RECORDS as u64 - 1);

    // Partition 1: the torn last batch is gone, everything before it is intact and dense...
    let records = fetch_all(&mut server.log().await?, TOPIC, 1, 0).await?;
    check_intact(&records, 1, RECORDS - PER_REQUEST);
    let torn = active
        .file_name()
        .and_then(|n| n.to_str())
        .context("name")?;
    wait_for_log(&server, &["truncating torn tail", torn]).await?;
    // ...and it takes new records right after the cut.
    assert_eq!(
        produce_one(&server, TOPIC, 1, "after the restart").await?,
        (RECORDS - PER_REQUEST) as u64
    );

    // Partition 2: indexes rebuilt, every lookup right, temporary files gone.
    wait_for_log(&server, &["index inconsistent with its log; rebuilding"]).await?;
    let records = fetch_all(&mut server.log().await?, TOPIC, 2, 0).await?;
    check_intact(&records, 2, RECORDS);
    for offset in (0..RECORDS as u64).step_by(13) {
        let from = fetch_all(&mut server.log().await?, TOPIC, 2, offset).await?;
        assert_eq!(from.first().map(|r| r.offset), Some(offset));
        assert_eq!(from.len(), RECORDS - offset as usize);
    }
    for n in (0..RECORDS as i64).step_by(11) {
        let at = BASE_TS + 10 * n;
        assert_eq!(offset_for_timestamp(&server, 2, at).await?, Some(n as u64));
        assert_eq!(
            offset_for_timestamp(&server, 2, at - 5).await?,
            Some(n as u64)
        );
    }
    let after_all = BASE_TS + 10 * RECORDS as i64;
    assert_eq!(offset_for_timestamp(&server, 2, after_all).await?, None);
    assert!(std::fs::metadata(p2.join(format!("{:020}.index", 0)))?.len() > 0);
    for stray in &strays {
        assert!(!stray.exists(), "{} was not removed", stray.display());
    }
    assert_eq!(
        produce_one(&server, TOPIC, 2, "after the restart").await?,
        RECORDS as u64
    );

    // Partition 3: UNAVAILABLE, naming the partition and the file, for reads and writes.
    let status = fetch_error(&server, 3, 0).await?;
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{}",
        status.message()
    );
    for needle in ["partition 3 of topic \"d\"", first_segment.as_str()] {
        assert!(status.message().contains(needle), "{}", status.message());
    }
    let status = produce_one(&server, TOPIC, 3, "after the restart")
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{}",
        status.message()
    );

    // The undamaged topic serves as before.
    let records = fetch_all(&mut server.log().await?, OTHER, 0, 0).await?;
    check_intact(&records, 0, RECORDS);
    assert_eq!(
        produce_one(&server, OTHER, 0, "after the restart").await?,
        RECORDS as u64
    );
    Ok(())
}
