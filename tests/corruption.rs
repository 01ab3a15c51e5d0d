//! Damaged files at start-up: a torn tail is repaired, a garbled index is rebuilt, a stray
//! temporary file is removed, and a bad batch in a sealed segment is answered with DATA_LOSS
//! naming the file and position, while the rest keeps serving.
mod common;

use std::path::Path;

use anyhow::Result;
use common::*;
use sluice_proto::v1 as pb;

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_repaired_or_reported_never_served() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(
        &mut server.admin().await?,
        "d",
        2,
        &[("segment.bytes", "16384")],
    )
    .await?;
    let mut log = server.log().await?;
    for p in 0..2 {
        for i in 0..60 {
            let records = (0..5)
                .map(|j| record(None, &format!("{p}-{i}-{j}-{}", "x".repeat(100)), 0))
                .collect();
            log.produce(pb::ProduceRequest {
                topic: "d".into(),
                partition: Some(p),
                records,
                request_id: 0,
            })
            .await?;
        }
    }
    assert!(server.stop()?.success());

    let p0 = dir.path().join("topics/d/0");
    let p1 = dir.path().join("topics/d/1");
    // Partition 0: flip a byte in the middle of its first (sealed) segment.
    let first = segments(&p0)[0].clone();
    let mut bytes = std::fs::read(&first)?;
    bytes[5_000] ^= 0x55;
    std::fs::write(&first, &bytes)?;
    // Partition 1: garble an index, leave a stray temporary file, and tear the active tail.
    std::fs::write(p1.join(format!("{:020}.index", 0)), b"garbage!")?;
    std::fs::write(p1.join("recovery-point.tmp"), b"half-written")?;
    std::fs::remove_file(p1.join("clean-shutdown"))?;
    let active = segments(&p1).pop().unwrap();
    let len = std::fs::metadata(&active)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&active)?
        .set_len(len - 10)?;

    let server = Server::start(dir.path(), &[])?;
    let mut log = server.log().await?;

    // Partition 0: reading across the bad batch is DATA_LOSS with file and position...
    let err = fetch_all(&mut log, "d", 0, 0).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{}", status.message());
    assert!(
        status.message().contains("00000000000000000000.log"),
        "{}",
        status.message()
    );
    // ...while its later segments still serve.
    let hw = log
        .fetch(pb::FetchRequest {
            topic: "d".into(),
            partition: 0,
            offset: 299,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await?
        .into_inner();
    assert_eq!(hw.records.len(), 1);

    // Partition 1: the torn last batch is gone, everything before it is intact and dense.
    let records = fetch_all(&mut log, "d", 1, 0).await?;
    assert_eq!(records.len(), 295);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert!(value_str(r).starts_with(&format!("1-{}-{}-", i / 5, i % 5)));
    }
    assert!(!p1.join("recovery-point.tmp").exists());
    // And it takes new records right after the cut.
    let resp = log
        .produce(pb::ProduceRequest {
            topic: "d".into(),
            partition: Some(1),
            records: vec![record(None, "new", 0)],
            request_id: 0,
        })
        .await?
        .into_inner();
    assert_eq!(resp.partitions[0].base_offset, 295);
    Ok(())
}
