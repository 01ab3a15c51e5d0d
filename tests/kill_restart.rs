//! SIGKILL under load: after every restart each acknowledged record is present exactly once
//! at the offset it was acknowledged with, offsets are dense, and an unacknowledged request's
//! records are there whole or not at all. Under `fsync` that holds for a power loss too; the
//! `none` case shows a process crash alone loses nothing acknowledged (the page cache
//! survives it).
mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Result;
use common::*;
use sluice_proto::v1 as pb;

const PARTITIONS: u32 = 3;
const ROUNDS: u64 = 5;

/// What one acknowledged request wrote: (partition, offset) -> value.
type Acked = BTreeMap<(u32, u64), String>;

async fn produce_until_killed(server: &Server, producer: u32, round: u64) -> Acked {
    let mut acked = Acked::new();
    let Ok(mut log) = server.log().await else {
        return acked;
    };
    for seq in 0.. {
        let values: Vec<String> = (0..20)
            .map(|i| format!("r{round}-p{producer}-s{seq}-{i}"))
            .collect();
        let records = values
            .iter()
            .map(|v| record(Some(&format!("key{producer}")), v, 0))
            .collect();
        let req = pb::ProduceRequest {
            topic: "durable".into(),
            partition: None,
            records,
            request_id: 0,
        };
        let Ok(resp) = log.produce(req).await else {
            break;
        };
        let part = &resp.into_inner().partitions[0];
        for (i, v) in values.into_iter().enumerate() {
            acked.insert((part.partition, part.base_offset + i as u64), v);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_sigkill_under_fsync() -> Result<()> {
    kill_rounds("fsync").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_sigkill_under_none() -> Result<()> {
    kill_rounds("none").await
}

async fn kill_rounds(flush_policy: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut all_acked = Acked::new();
    {
        let server = Server::start(dir.path(), &[])?;
        create_topic(
            &mut server.admin().await?,
            "durable",
            PARTITIONS,
            &[("flush.policy", flush_policy)],
        )
        .await?;
        server.stop()?;
    }
    for round in 0..ROUNDS {
        let server = Server::start(dir.path(), &[])?;
        let producers: Vec<_> = (0..3u32)
            .map(|p| {
                let url = server.url();
                tokio::spawn(
                    async move { produce_until_killed(&Server::attach(&url), p, round).await },
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150 + 97 * round)).await;
        server.kill()?;
        for p in producers {
            all_acked.extend(p.await?);
        }

        let server = Server::start(dir.path(), &[])?;
        let mut log = server.log().await?;
        for partition in 0..PARTITIONS {
            let stored = fetch_all(&mut log, "durable", partition, 0).await?;
            let mut requests_seen: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, r) in stored.iter().enumerate() {
                assert_eq!(r.offset, i as u64, "dense offsets in partition {partition}");
                let v = value_str(r);
                let (request, index) = v.rsplit_once('-').unwrap();
                requests_seen
                    .entry(request.to_string())
                    .or_default()
                    .push(index.parse()?);
            }
            for (request, indexes) in requests_seen {
                assert_eq!(
                    indexes,
                    (0..20).collect::<Vec<_>>(),
                    "request {request} whole and once"
                );
            }
            for ((p, offset), value) in all_acked.range((partition, 0)..(partition, u64::MAX)) {
                assert_eq!(*p, partition);
                let got = stored.get(*offset as usize).map(value_str);
                assert_eq!(
                    got.as_deref(),
                    Some(value.as_str()),
                    "acknowledged record at {p}/{offset}"
                );
            }
        }
        server.stop()?;
    }
    assert!(
        all_acked.len() > 100,
        "the test must acknowledge records before the kills"
    );
    Ok(())
}
