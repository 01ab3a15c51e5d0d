//! Timestamp lookups racing segment rolls never hang the server.
//!
//! The reported hang: a topic with `segment.bytes=65536` and `index.interval.bytes=1024`, one
//! client producing 8 KiB requests with rising explicit timestamps (a roll every eight
//! requests), and four clients calling `ListOffsets` with a timestamp just behind the newest.
//! A lookup held a segment's time index lock while taking its offset index lock, a roll took
//! them the other way round, and the partition's locks deadlocked within seconds.
//!
//! This runs that load against the real binary for `SLUICE_LOCK_ORDER_SECS` seconds (default
//! 60). Every call must answer within [`CALL_BOUND`]; afterwards every partition of every
//! topic must still answer a lookup, a fetch and a produce, and the server must exit on
//! SIGTERM within the 30 s that `Server::stop` allows.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use sluice_proto::v1::{self as pb, offset_spec::Kind};
use tokio::time::timeout;

const TOPIC: &str = "lock-order";
const PARTITIONS: u32 = 2;
/// How long the load runs unless `SLUICE_LOCK_ORDER_SECS` says otherwise.
const DEFAULT_SECS: u64 = 60;
/// Records per produce request, and the size of each value: 8 KiB a request.
const RECORDS_PER_REQUEST: usize = 8;
const VALUE_BYTES: usize = 1024;
/// Clients calling `ListOffsets` while the producer rolls segments.
const LOOKUP_CLIENTS: usize = 4;
/// The longest any single call may take; a hung partition shows up here.
const CALL_BOUND: Duration = Duration::from_secs(10);

fn load_duration() -> Result<Duration> {
    match std::env::var("SLUICE_LOCK_ORDER_SECS") {
        Ok(secs) => Ok(Duration::from_secs(secs.parse().with_context(|| {
            format!("SLUICE_LOCK_ORDER_SECS={secs:?} is not a number")
        })?)),
        Err(_) => Ok(Duration::from_secs(DEFAULT_SECS)),
    }
}

/// `ListOffsets` of every partition of `topic`, bounded by [`CALL_BOUND`].
async fn list_offsets(
    log: &mut pb::log_client::LogClient<tonic::transport::Channel>,
    topic: &str,
    kind: Kind,
) -> Result<Vec<pb::PartitionOffset>> {
    let request = pb::ListOffsetsRequest {
        topic: topic.into(),
        partitions: vec![],
        spec: Some(pb::OffsetSpec { kind: Some(kind) }),
    };
    let answer = timeout(CALL_BOUND, log.list_offsets(request))
        .await
        .with_context(|| format!("ListOffsets of {topic} did not answer within {CALL_BOUND:?}"))?
        .with_context(|| format!("ListOffsets of {topic}"))?;
    Ok(answer.into_inner().offsets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_lookups_racing_segment_rolls_never_hang_the_server() -> Result<()> {
    let run_for = load_duration()?;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(
        &mut server.admin().await?,
        TOPIC,
        PARTITIONS,
        &[("segment.bytes", "65536"), ("index.interval.bytes", "1024")],
    )
    .await?;

    let newest = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));

    let producer = {
        let (mut log, newest, stop) = (server.log().await?, newest.clone(), stop.clone());
        tokio::spawn(async move {
            let value = "v".repeat(VALUE_BYTES);
            let mut ts = 1_700_000_000_000i64;
            let mut requests = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let records = (0..RECORDS_PER_REQUEST)
                    .map(|_| {
                        ts += 1;
                        record(None, &value, ts)
                    })
                    .collect();
                let request = pb::ProduceRequest {
                    topic: TOPIC.into(),
                    partition: None,
                    records,
                    request_id: 0,
                    ..Default::default()
                };
                timeout(CALL_BOUND, log.produce(request))
                    .await
                    .with_context(|| {
                        format!("Produce {requests} did not answer within {CALL_BOUND:?}")
                    })?
                    .with_context(|| format!("Produce {requests}"))?;
                newest.store(ts, Ordering::Release);
                requests += 1;
            }
            anyhow::Ok(requests)
        })
    };
    let mut lookup_clients = Vec::new();
    for _ in 0..LOOKUP_CLIENTS {
        let (mut log, newest, stop, lookups) = (
            server.log().await?,
            newest.clone(),
            stop.clone(),
            lookups.clone(),
        );
        lookup_clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let behind_newest = newest.load(Ordering::Acquire) - 1;
                list_offsets(&mut log, TOPIC, Kind::TimestampMs(behind_newest)).await?;
                lookups.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }

    let started = Instant::now();
    while started.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if producer.is_finished() || lookup_clients.iter().any(|c| c.is_finished()) {
            break; // one failed: its error is reported below
        }
    }
    stop.store(true, Ordering::Relaxed);
    let requests = producer.await??;
    for client in lookup_clients {
        client.await??;
    }
    let lookups = lookups.load(Ordering::Relaxed);
    eprintln!("{requests} produce requests and {lookups} lookups in {run_for:?}");
    ensure!(requests > 0 && lookups > 0, "the load did not run");

    // Every partition of every topic still answers.
    let mut log = server.log().await?;
    let topics = timeout(
        CALL_BOUND,
        server.admin().await?.list_topics(pb::ListTopicsRequest {}),
    )
    .await
    .context("ListTopics did not answer")??
    .into_inner()
    .topics;
    ensure!(!topics.is_empty(), "no topics listed");
    for topic in topics {
        let latest = list_offsets(&mut log, &topic.name, Kind::Latest(pb::Latest {})).await?;
        ensure!(
            latest.len() == topic.partitions as usize,
            "{}: {} of {} partitions answered",
            topic.name,
            latest.len(),
            topic.partitions
        );
        for p in latest {
            let high_watermark = p.offset.context("no latest offset")?;
            if high_watermark > 0 {
                let fetched = timeout(
                    CALL_BOUND,
                    fetch_all(&mut log, &topic.name, p.partition, high_watermark - 1),
                )
                .await
                .with_context(|| format!("fetch of {}/{} hung", topic.name, p.partition))??;
                ensure!(
                    !fetched.is_empty(),
                    "{}/{}: no record",
                    topic.name,
                    p.partition
                );
            }
            let offset = timeout(
                CALL_BOUND,
                produce_one(&server, &topic.name, p.partition, "after"),
            )
            .await
            .with_context(|| format!("produce to {}/{} hung", topic.name, p.partition))??;
            ensure!(
                offset == high_watermark,
                "{}/{}: produced at {offset}, expected {high_watermark}",
                topic.name,
                p.partition
            );
        }
    }

    let stopping = Instant::now();
    let status = server.stop()?;
    if !status.success() {
        bail!("the server exited with {status} after SIGTERM");
    }
    eprintln!("stopped in {:?}", stopping.elapsed());
    Ok(())
}
