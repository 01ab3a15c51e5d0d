//! A subscription replays history and then tails live records: every record exactly once, in
//! order, per partition.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use common::*;
use sluice_proto::v1::{self as pb, offset_spec::Kind};
use tokio_stream::StreamExt;

fn start(kind: Kind) -> Option<pb::OffsetSpec> {
    Some(pb::OffsetSpec { kind: Some(kind) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_before_producing_receives_everything_once_in_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "live", 3, &[]).await?;

    let mut log = server.log().await?;
    let mut stream = log
        .subscribe(pb::SubscribeRequest {
            topic: "live".into(),
            partitions: vec![],
            start: start(Kind::Earliest(pb::Earliest {})),
            max_bytes: 64 * 1024,
        })
        .await?
        .into_inner();

    let total = 3_000;
    let producer = {
        let mut log = server.log().await?;
        tokio::spawn(async move {
            for chunk in 0..30 {
                let records = (0..100)
                    .map(|i| {
                        let n = chunk * 100 + i;
                        record(Some(&format!("k{}", n % 17)), &n.to_string(), 0)
                    })
                    .collect();
                log.produce(pb::ProduceRequest {
                    topic: "live".into(),
                    partition: None,
                    records,
                    request_id: 0,
                    ..Default::default()
                })
                .await
                .expect("produce");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut next_offset: HashMap<u32, u64> = HashMap::new();
    let mut seen = vec![false; total];
    let mut count = 0;
    while count < total {
        let msg = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await?
            .expect("stream ended early")?;
        for r in msg.records {
            let want = next_offset.entry(msg.partition).or_insert(0);
            assert_eq!(
                r.offset, *want,
                "partition {} in order, no gaps, no repeats",
                msg.partition
            );
            *want += 1;
            let n: usize = value_str(&r).parse()?;
            assert!(!seen[n], "record {n} delivered twice");
            seen[n] = true;
            count += 1;
        }
    }
    producer.await?;
    assert!(seen.iter().all(|s| *s));
    // Nothing more arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_from_latest_sees_only_new_records_and_from_offset_replays() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "t", 1, &[]).await?;
    let mut log = server.log().await?;
    let old = (0..10)
        .map(|i| record(None, &format!("old{i}"), 0))
        .collect();
    log.produce(pb::ProduceRequest {
        topic: "t".into(),
        partition: Some(0),
        records: old,
        request_id: 0,
        ..Default::default()
    })
    .await?;

    let mut latest = log
        .subscribe(pb::SubscribeRequest {
            topic: "t".into(),
            partitions: vec![0],
            start: start(Kind::Latest(pb::Latest {})),
            max_bytes: 0,
        })
        .await?
        .into_inner();
    let mut from_7 = log
        .subscribe(pb::SubscribeRequest {
            topic: "t".into(),
            partitions: vec![0],
            start: start(Kind::Offset(7)),
            max_bytes: 0,
        })
        .await?
        .into_inner();
    // Give the subscriptions time to be in place before the new record.
    tokio::time::sleep(Duration::from_millis(200)).await;
    log.produce(pb::ProduceRequest {
        topic: "t".into(),
        partition: Some(0),
        records: vec![record(None, "new", 0)],
        request_id: 0,
        ..Default::default()
    })
    .await?;

    let msg = tokio::time::timeout(Duration::from_secs(10), latest.next())
        .await?
        .unwrap()?;
    assert_eq!(msg.records.len(), 1);
    assert_eq!(
        (msg.records[0].offset, value_str(&msg.records[0])),
        (10, "new".to_string())
    );

    let mut got = Vec::new();
    while got.len() < 4 {
        let msg = tokio::time::timeout(Duration::from_secs(10), from_7.next())
            .await?
            .unwrap()?;
        got.extend(msg.records.iter().map(|r| (r.offset, value_str(r))));
    }
    assert_eq!(
        got,
        vec![
            (7, "old7".into()),
            (8, "old8".into()),
            (9, "old9".into()),
            (10, "new".into())
        ]
    );
    Ok(())
}
