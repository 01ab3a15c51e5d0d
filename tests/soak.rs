//! Soak: 100 concurrent clients on loopback for `SLUICE_SOAK_SECS` seconds (default 15;
//! `scripts/soak.sh` runs 60) against the real server: 40 producers, 30 subscribers and 30
//! consumer group members that keep joining and leaving. No call may fail, every
//! acknowledged record must reach every subscriber and each group, at the offset it was
//! acknowledged with, and the server's memory must stay flat.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use sluice_proto::v1::{self as pb, offset_spec::Kind};
use tokio::task::JoinSet;

const PRODUCERS: usize = 40;
const SUBSCRIBERS: usize = 30;
const GROUPS: usize = 3;
const MEMBERS_PER_GROUP: usize = 10;
const PARTITIONS: u32 = 8;
const RECORDS_PER_REQUEST: usize = 3;
/// Pause between a producer's requests: about 2,000 records a second in all.
const PRODUCE_INTERVAL: Duration = Duration::from_millis(60);
const MIB: u64 = 1 << 20;

/// Acknowledged records: (partition, offset) -> value.
type Acked = Arc<Mutex<BTreeMap<(u32, u64), String>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn soak_duration() -> Duration {
    let secs = std::env::var("SLUICE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    Duration::from_secs(secs)
}

/// Produces until `until`, recording what each acknowledgement says went where.
async fn produce(server: &Server, id: usize, until: Instant, acked: Acked) -> Result<usize> {
    let mut log = server.log().await?;
    let mut requests = 0;
    while Instant::now() < until {
        let partition = ((id + requests) % PARTITIONS as usize) as u32;
        let values: Vec<String> = (0..RECORDS_PER_REQUEST)
            .map(|i| format!("p{id}-r{requests}-{i}"))
            .collect();
        let response = log
            .produce(pb::ProduceRequest {
                topic: "soak".into(),
                partition: Some(partition),
                records: values.iter().map(|v| record(None, v, 0)).collect(),
                request_id: 0,
                ..Default::default()
            })
            .await
            .with_context(|| format!("producer {id} request {requests}"))?
            .into_inner();
        let produced = &response.partitions[0];
        ensure!(produced.partition == partition);
        ensure!(produced.record_count as usize == RECORDS_PER_REQUEST);
        {
            let mut acked = lock(&acked);
            for (i, value) in values.into_iter().enumerate() {
                let previous = acked.insert((partition, produced.base_offset + i as u64), value);
                ensure!(previous.is_none(), "offset acknowledged twice");
            }
        }
        requests += 1;
        tokio::time::sleep(PRODUCE_INTERVAL).await;
    }
    Ok(requests)
}

/// What one subscriber received: per partition, the values from offset 0 on.
type Received = Arc<Mutex<BTreeMap<u32, Vec<String>>>>;

/// Follows every partition from the start until `stop` fires, checking offsets are dense.
async fn subscribe(
    server: &Server,
    received: Received,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut log = server.log().await?;
    let mut stream = log
        .subscribe(pb::SubscribeRequest {
            max_bytes: 64 * 1024,
            ..subscribe_request("soak", Kind::Earliest(pb::Earliest {}))
        })
        .await?
        .into_inner();
    let mut stop = stop;
    loop {
        let message = tokio::select! {
            message = stream.message() => message?.context("the subscription ended")?,
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        let mut received = lock(&received);
        let values = received.entry(message.partition).or_default();
        for r in message.records {
            ensure!(
                r.offset == values.len() as u64,
                "partition {}: offset {} after {} records",
                message.partition,
                r.offset,
                values.len()
            );
            values.push(value_str(&r));
        }
    }
}

/// Everything the members of one group received: (partition, offset) -> value.
type GroupReceived = Arc<Mutex<BTreeMap<(u32, u64), String>>>;

/// Joins `group`, consumes for a while, commits what it received and leaves; again and
/// again until `until`. Returns how many times it joined.
async fn churn(
    server: &Server,
    group: String,
    seed: u64,
    until: Instant,
    received: GroupReceived,
) -> Result<usize> {
    let mut joins = 0;
    let mut rng = seed;
    while Instant::now() < until {
        let member = GroupConsumer::join(server, MemberOptions::new(&group, "soak"))
            .await
            .with_context(|| format!("{group}: join {joins}"))?;
        joins += 1;
        // A stay of 0.5 to 3 s (xorshift, seeded per member).
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let stay = Duration::from_millis(500 + rng % 2500);
        tokio::time::sleep(stay.min(until.saturating_duration_since(Instant::now()))).await;
        leave(member, &received).await?;
    }
    Ok(joins)
}

/// Collects what a member received, commits its positions and closes its stream.
async fn leave(member: GroupConsumer, received: &GroupReceived) -> Result<()> {
    let (positions, records, violations, ended) = {
        let state = member.state();
        (
            state.positions.clone(),
            state.records.clone(),
            state.violations.clone(),
            state.ended.clone(),
        )
    };
    ensure!(violations.is_empty(), "member saw {violations:?}");
    if let Some(status) = ended {
        bail!("member stream ended: {status:?}");
    }
    {
        let mut received = lock(received);
        for r in records {
            received.insert((r.tp.1, r.offset), r.value);
        }
    }
    let offsets: Vec<(&str, u32, u64)> = positions
        .iter()
        .map(|((_, partition), offset)| ("soak", *partition, *offset))
        .collect();
    if !offsets.is_empty() {
        // A commit for a partition that moved away in a rebalance is refused
        // (FAILED_PRECONDITION); its records are then delivered again, never lost.
        if let Some(error) = member.commit(&offsets).await? {
            ensure!(
                error.code == tonic::Code::FailedPrecondition as i32,
                "commit failed: {error:?}"
            );
        }
    }
    member.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_lose_nothing_and_memory_stays_flat() -> Result<()> {
    let duration = soak_duration();
    let dir = tempfile::tempdir()?;
    let server = Server::start_capturing_stderr(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "soak", PARTITIONS, &[]).await?;
    let server = Arc::new(server);
    let started = Instant::now();
    let until = started + duration;

    let acked: Acked = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut producers = JoinSet::new();
    for id in 0..PRODUCERS {
        let (server, acked) = (Arc::clone(&server), Arc::clone(&acked));
        producers.spawn(async move { produce(&server, id, until, acked).await });
    }
    let mut subscribers = JoinSet::new();
    let mut subscriptions = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let received = Received::default();
        subscriptions.push(Arc::clone(&received));
        let (server, stop) = (Arc::clone(&server), stop_rx.clone());
        subscribers.spawn(async move { subscribe(&server, received, stop).await });
    }
    let mut members = JoinSet::new();
    let mut groups = Vec::new();
    for g in 0..GROUPS {
        let received = GroupReceived::default();
        groups.push((format!("soak-group-{g}"), Arc::clone(&received)));
        for m in 0..MEMBERS_PER_GROUP {
            let (server, received) = (Arc::clone(&server), Arc::clone(&received));
            let group = format!("soak-group-{g}");
            let seed = 0x9e37_79b9_7f4a_7c15 ^ ((g * MEMBERS_PER_GROUP + m) as u64 + 1);
            members.spawn(async move { churn(&server, group, seed, until, received).await });
        }
    }

    // Sample memory once a second; the level after warm-up (a quarter of the run, at least
    // 10 s: connections, subscriptions catching up, allocator pools) is the reference.
    let mut samples = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((started.elapsed(), server.anon_rss_bytes()?));
    }
    let mut requests = 0;
    while let Some(result) = producers.join_next().await {
        requests += result??;
    }
    let mut joins = 0;
    while let Some(result) = members.join_next().await {
        joins += result??;
    }
    let after_load = server.anon_rss_bytes()?;

    // Every subscriber catches up with every acknowledged record.
    let acked = lock(&acked).clone();
    let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
    for (partition, offset) in acked.keys() {
        let end = ends.entry(*partition).or_default();
        *end = (*end).max(offset + 1);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, received) in subscriptions.iter().enumerate() {
        loop {
            let caught_up = {
                let received = lock(received);
                ends.iter().all(|(p, end)| {
                    received
                        .get(p)
                        .is_some_and(|values| values.len() as u64 >= *end)
                })
            };
            if caught_up {
                break;
            }
            ensure!(Instant::now() < deadline, "subscriber {i} did not catch up");
            if let Some(result) = subscribers.try_join_next() {
                result??;
                bail!("a subscriber stopped early");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let received = lock(received);
        for ((partition, offset), value) in &acked {
            ensure!(
                received[partition].get(*offset as usize) == Some(value),
                "subscriber {i}: partition {partition} offset {offset} is not {value:?}"
            );
        }
    }
    stop_tx.send(true)?;
    while let Some(result) = subscribers.join_next().await {
        result??;
    }

    // Each group, drained by one last member, has received every acknowledged record:
    // below its committed offsets through earlier members, above them through this one.
    let mut admin = groups_client(&server).await?;
    for (group, received) in &groups {
        let committed: BTreeMap<u32, u64> = admin
            .fetch_offsets(pb::FetchOffsetsRequest {
                group: group.clone(),
                topic: "soak".into(),
            })
            .await?
            .into_inner()
            .offsets
            .into_iter()
            .filter_map(|c| Some((c.partition, c.offset?)))
            .collect();
        let member = GroupConsumer::join(&server, MemberOptions::new(group, "soak")).await?;
        member
            .wait_until(
                "the last member to drain the group",
                Duration::from_secs(60),
                |state| {
                    ends.iter().all(|(p, end)| {
                        let position = state.positions.get(&("soak".to_string(), *p));
                        let committed = committed.get(p);
                        position.max(committed).is_some_and(|at| at >= end)
                    })
                },
            )
            .await?;
        leave(member, received).await?;
        let received = lock(received);
        let missing: BTreeSet<&(u32, u64)> = acked
            .keys()
            .filter(|key| !received.contains_key(key))
            .collect();
        ensure!(
            missing.is_empty(),
            "{group}: {} acknowledged records never delivered, e.g. {:?}",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        for (key, value) in received.iter() {
            ensure!(
                acked.get(key) == Some(value),
                "{group}: {key:?} holds {value:?}"
            );
        }
    }

    // Memory: flat after warm-up.
    let warm = samples
        .iter()
        .find(|(at, _)| *at >= (duration / 4).max(Duration::from_secs(10)))
        .map_or(after_load, |(_, rss)| *rss);
    let peak = samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0);
    eprintln!(
        "soak {duration:?}: {} records in {requests} requests, {joins} group joins; anonymous RSS after warm-up {} MiB, peak {} MiB, at the end of the load {} MiB",
        acked.len(),
        warm / MIB,
        peak / MIB,
        after_load / MIB
    );
    // The load is steady, so the heap should be too: allow 32 MiB or a quarter over the
    // warm level (allocator pools, HTTP/2 buffers of the 100 connections), no more.
    let bound = warm + (warm / 4).max(32 * MIB);
    ensure!(
        after_load <= bound,
        "memory grew under steady load: {} MiB after warm-up, {} MiB at the end",
        warm / MIB,
        after_load / MIB
    );
    let mut server = Arc::into_inner(server).context("server still shared")?;
    ensure!(server.is_running(), "the server exited");
    let stderr = server.stderr();
    ensure!(
        !stderr.contains("panicked"),
        "the server panicked:\n{stderr}"
    );
    Ok(())
}
