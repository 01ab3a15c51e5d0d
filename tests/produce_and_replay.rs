//! Keyed produce into a 4-partition topic, then replay from the start, the middle and a
//! timestamp, also across a restart.
mod common;

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use common::*;
use sluice_proto::v1::{self as pb, offset_spec::Kind};

const KEYS: usize = 100;
const PER_KEY: usize = 100;

async fn produce_keyed(server: &Server, topic: &str) -> Result<()> {
    let mut log = server.log().await?;
    // 10,000 records in requests of 500, keys interleaved; key k's n-th record has value "k:n".
    let all: Vec<(usize, usize)> = (0..PER_KEY)
        .flat_map(|n| (0..KEYS).map(move |k| (k, n)))
        .collect();
    for chunk in all.chunks(500) {
        let records = chunk
            .iter()
            .map(|(k, n)| record(Some(&format!("key-{k}")), &format!("{k}:{n}"), 0))
            .collect();
        let resp = log
            .produce(pb::ProduceRequest {
                topic: topic.into(),
                partition: None,
                records,
                request_id: 0,
                ..Default::default()
            })
            .await?
            .into_inner();
        let written: u32 = resp.partitions.iter().map(|p| p.record_count).sum();
        assert_eq!(written as usize, chunk.len());
    }
    Ok(())
}

/// Reads every partition and checks per-key order and that each key stays on one partition.
async fn check_all(server: &Server, topic: &str) -> Result<Vec<Vec<pb::FetchedRecord>>> {
    let mut log = server.log().await?;
    let mut key_partition: HashMap<String, u32> = HashMap::new();
    let mut next_n: HashMap<String, usize> = HashMap::new();
    let mut parts = Vec::new();
    let mut total = 0;
    for p in 0..4u32 {
        let records = fetch_all(&mut log, topic, p, 0).await?;
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "dense offsets from 0 in partition {p}");
            let key = String::from_utf8(r.key.clone().unwrap().to_vec())?;
            assert_eq!(
                *key_partition.entry(key.clone()).or_insert(p),
                p,
                "{key} moved partitions"
            );
            let v = value_str(r);
            let n: usize = v.split(':').nth(1).unwrap().parse()?;
            let want = next_n.entry(key.clone()).or_insert(0);
            assert_eq!(n, *want, "{key} out of order in partition {p}");
            *want += 1;
            assert!(r.timestamp_ms > 0, "server stamps timestamp 0");
        }
        total += records.len();
        parts.push(records);
    }
    assert_eq!(total, KEYS * PER_KEY);
    assert!(next_n.values().all(|&n| n == PER_KEY));
    assert!(
        parts.iter().filter(|p| !p.is_empty()).count() > 1,
        "keys spread over partitions"
    );
    Ok(parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_keep_order_and_replay_from_anywhere_across_restarts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "orders", 4, &[]).await?;
    produce_keyed(&server, "orders").await?;
    let parts = check_all(&server, "orders").await?;

    // Replay from a middle offset of the largest partition.
    let (p, records) = parts
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| r.len())
        .unwrap();
    let mid = records.len() as u64 / 2;
    let mut log = server.log().await?;
    let tail = fetch_all(&mut log, "orders", p as u32, mid).await?;
    assert_eq!(tail.first().unwrap().offset, mid);
    assert_eq!(tail.len(), records.len() - mid as usize);
    assert_eq!(value_str(&tail[0]), value_str(&records[mid as usize]));

    // Replay from a timestamp: the first offset whose timestamp is >= it.
    let ts = records[mid as usize].timestamp_ms;
    let resp = log
        .list_offsets(pb::ListOffsetsRequest {
            topic: "orders".into(),
            partitions: vec![p as u32],
            spec: Some(pb::OffsetSpec {
                kind: Some(Kind::TimestampMs(ts)),
            }),
        })
        .await?
        .into_inner();
    let first = resp.offsets[0].offset.unwrap();
    let want = records.iter().position(|r| r.timestamp_ms >= ts).unwrap() as u64;
    assert_eq!(first, want);

    // Restart and replay again: everything is still there, in the same place.
    assert!(server.stop()?.success(), "clean exit on SIGTERM");
    let server = Server::start(dir.path(), &[])?;
    let again = check_all(&server, "orders").await?;
    let before: BTreeMap<_, _> = parts
        .iter()
        .flatten()
        .map(|r| ((r.offset, value_str(r)), ()))
        .collect();
    let after: BTreeMap<_, _> = again
        .iter()
        .flatten()
        .map(|r| ((r.offset, value_str(r)), ()))
        .collect();
    assert_eq!(before.len(), after.len());
    assert_eq!(
        parts.iter().map(Vec::len).collect::<Vec<_>>(),
        again.iter().map(Vec::len).collect::<Vec<_>>()
    );
    Ok(())
}
