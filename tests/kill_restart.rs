//! SIGKILL under load, many times in a row on one data directory.
//!
//! Three producers (each on its own connection: one keyed, one keyless, one mixed, so requests
//! span partitions) and a consumer group member committing its positions run against the
//! server until it is killed at a random moment; then it is restarted on the same data
//! directory and checked:
//! - every acknowledged record is present exactly once, at the offset it was acknowledged
//!   with, and offsets are dense from 0 to the high watermark;
//! - every stored batch passes its CRC check and decodes, and every record is intact (its key
//!   is the one its unique value was sent with);
//! - a request's records in each partition are all there, in order and adjacent, or none are;
//! - the group's committed offsets are those of its last acknowledged commit (or of the one
//!   commit in flight at the kill, which may have become durable without its answer arriving).
//!
//! Under `fsync` this is what a power loss would leave too; the `none` case shows a process
//! crash alone loses nothing acknowledged (the page cache survives it). The number of rounds
//! is `SLUICE_KILL_ROUNDS` (default 20).
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use sluice_partitioner::partition_for_key;
use sluice_proto::v1 as pb;
use sluice_storage::batch;
use tokio::sync::mpsc;

const TOPIC: &str = "durable";
const GROUP: &str = "durable-readers";
const PARTITIONS: u32 = 3;
const RECORDS_PER_REQUEST: usize = 12;
const PRODUCERS: u32 = 3;

/// Acknowledged records: (partition, offset) -> value.
type Acked = BTreeMap<(u32, u64), String>;

/// Identifies one produce request: (round, producer, sequence number).
type RequestId = (u64, u32, u64);

/// The key of record `index` of a request. Producer 0 sends keyed records, producer 1 keyless
/// ones, producer 2 both; the keys spread each request over several partitions.
fn key_of(producer: u32, seq: u64, index: usize) -> Option<String> {
    match producer {
        0 => Some(format!("k{}", (seq as usize * 5 + index) % 23)),
        1 => None,
        _ if index.is_multiple_of(3) => None,
        _ => Some(format!("m{}", (seq as usize + index) % 17)),
    }
}

/// The unique value of record `index` of request `id`.
fn value_of((round, producer, seq): RequestId, index: usize) -> String {
    format!("{round}.{producer}.{seq}.{index}")
}

fn parse_value(value: &str) -> Option<(RequestId, usize)> {
    let mut parts = value.split('.').map(str::parse::<u64>);
    let mut next = || parts.next()?.ok();
    let id = (next()?, u32::try_from(next()?).ok()?, next()?);
    let index = usize::try_from(next()?).ok()?;
    Some((id, index))
}

/// Where the records of a request go: the record indexes per partition of its keyed records,
/// and the indexes of its keyless records (which all go to one partition, chosen by the
/// broker).
fn routes(producer: u32, seq: u64) -> (BTreeMap<u32, BTreeSet<usize>>, BTreeSet<usize>) {
    let mut keyed: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    let mut keyless = BTreeSet::new();
    for index in 0..RECORDS_PER_REQUEST {
        match key_of(producer, seq, index) {
            Some(key) => {
                keyed
                    .entry(partition_for_key(key.as_bytes(), PARTITIONS))
                    .or_default()
                    .insert(index);
            }
            None => {
                keyless.insert(index);
            }
        }
    }
    (keyed, keyless)
}

/// Sends requests one after the other until the server goes away; returns what was
/// acknowledged.
async fn produce_until_killed(url: String, producer: u32, round: u64) -> Acked {
    let mut acked = Acked::new();
    let Ok(mut log) = Server::attach(&url).log().await else {
        return acked;
    };
    let mut seq = 0u64;
    loop {
        let id = (round, producer, seq);
        let records = (0..RECORDS_PER_REQUEST)
            .map(|i| record(key_of(producer, seq, i).as_deref(), &value_of(id, i), 0))
            .collect();
        let req = pb::ProduceRequest {
            topic: TOPIC.into(),
            partition: None,
            records,
            request_id: 0,
            ..Default::default()
        };
        let Ok(resp) = log.produce(req).await else {
            return acked;
        };
        let (keyed, keyless) = routes(producer, seq);
        for part in resp.into_inner().partitions {
            let mut indexes = keyed.get(&part.partition).cloned().unwrap_or_default();
            // The partition that got more records than its keyed ones is the keyless one.
            if part.record_count as usize > indexes.len() {
                indexes.extend(&keyless);
            }
            assert_eq!(indexes.len(), part.record_count as usize, "{part:?}");
            for (j, index) in indexes.into_iter().enumerate() {
                acked.insert(
                    (part.partition, part.base_offset + j as u64),
                    value_of(id, index),
                );
            }
        }
        seq += 1;
    }
}

/// What a group member's commits did: the offsets of its last acknowledged commit, and those
/// of a commit still unanswered when the server died.
#[derive(Debug, Default, Clone)]
struct Commits {
    acked: BTreeMap<u32, u64>,
    in_flight: Option<BTreeMap<u32, u64>>,
}

/// A group member that consumes the topic and commits its positions every few milliseconds,
/// one commit at a time, until the server goes away.
async fn commit_until_killed(url: String, mut commits: Commits) -> Commits {
    use pb::consume_request::Kind as Req;
    use pb::consume_response::Kind as Resp;
    let Ok(channel) = Server::attach(&url).channel().await else {
        return commits;
    };
    let mut client = pb::groups_client::GroupsClient::new(channel);
    let (tx, rx) = mpsc::unbounded_channel();
    let send = |kind| tx.send(pb::ConsumeRequest { kind: Some(kind) }).is_ok();
    send(Req::Join(pb::JoinGroup {
        group: GROUP.into(),
        topics: vec![TOPIC.into()],
        instance_id: None,
        auto_offset_reset: pb::OffsetReset::Earliest.into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 0,
        max_bytes: 16 << 10,
    }));
    let stream = client
        .consume(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await;
    let Ok(mut stream) = stream.map(tonic::Response::into_inner) else {
        return commits;
    };
    let mut generation = None;
    let mut positions = commits.acked.clone();
    let mut next_id = 1u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            message = stream.message() => {
                let Ok(Some(pb::ConsumeResponse { kind: Some(kind) })) = message else {
                    return commits;
                };
                match kind {
                    Resp::Assignment(a) => generation = Some(a.generation),
                    Resp::Records(r) => {
                        if let Some(last) = r.records.last() {
                            positions.insert(r.partition, last.offset + 1);
                        }
                    }
                    Resp::CommitAck(ack) => {
                        assert_eq!(ack.commit_id, next_id - 1, "acks answer the commit in flight");
                        let offsets = commits.in_flight.take().expect("a commit in flight");
                        assert!(ack.error.is_none(), "commit refused: {:?}", ack.error);
                        commits.acked = offsets;
                    }
                    Resp::HeartbeatRequest(_) => {
                        send(Req::Heartbeat(pb::Heartbeat {}));
                    }
                }
            }
            _ = ticker.tick() => {
                let Some(generation) = generation else { continue };
                if commits.in_flight.is_some() || positions == commits.acked {
                    continue;
                }
                let offsets = positions
                    .iter()
                    .map(|(&partition, &offset)| pb::OffsetCommit {
                        topic: TOPIC.into(),
                        partition,
                        offset,
                    })
                    .collect();
                commits.in_flight = Some(positions.clone());
                send(Req::Commit(pb::CommitRequest { commit_id: next_id, generation, offsets }));
                next_id += 1;
            }
        }
    }
}

/// Every record stored in a partition, read as stored batches (each CRC-checked and decoded
/// with the storage codec): (offset, key, value).
async fn stored_records(
    server: &Server,
    partition: u32,
) -> Result<Vec<(u64, Option<String>, String)>> {
    let mut log = server.log().await?;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let resp = log
            .fetch_batches(pb::FetchRequest {
                topic: TOPIC.into(),
                partition,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            })
            .await?
            .into_inner();
        for stored in batch::batches(resp.record_batches) {
            let (header, bytes) = stored.context("batch framing")?;
            batch::verify_crc(&bytes)
                .with_context(|| format!("CRC of the batch at offset {}", header.base_offset))?;
            for record in batch::records(bytes)? {
                let record = record?;
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let value = record.value.as_deref().map(text).unwrap_or_default();
                out.push((record.offset, record.key.as_deref().map(text), value));
            }
        }
        if resp.next_offset >= resp.high_watermark {
            return Ok(out);
        }
        ensure!(
            resp.next_offset > offset,
            "no progress at offset {offset} of partition {partition}"
        );
        offset = resp.next_offset;
    }
}

/// Checks everything the server holds after a restart against what was acknowledged.
async fn check_log(server: &Server, acked: &Acked) -> Result<usize> {
    let mut seen: HashMap<RequestId, BTreeMap<u32, Vec<(usize, u64)>>> = HashMap::new();
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let stored = stored_records(server, partition).await?;
        total += stored.len();
        for (i, (offset, key, value)) in stored.iter().enumerate() {
            ensure!(
                *offset == i as u64,
                "partition {partition}: offset {offset} at position {i}: offsets are not dense"
            );
            let (id, index) =
                parse_value(value).with_context(|| format!("garbled value {value:?}"))?;
            ensure!(
                *key == key_of(id.1, id.2, index),
                "partition {partition} offset {offset}: key {key:?} does not belong to {value}"
            );
            seen.entry(id)
                .or_default()
                .entry(partition)
                .or_default()
                .push((index, *offset));
        }
        for ((_, offset), value) in acked.range((partition, 0)..=(partition, u64::MAX)) {
            let got = stored.get(*offset as usize).map(|r| r.2.as_str());
            ensure!(
                got == Some(value.as_str()),
                "acknowledged record {value} at {partition}/{offset}: found {got:?}"
            );
        }
    }
    for (id, partitions) in &seen {
        let (keyed, keyless) = routes(id.1, id.2);
        let mut keyless_in = 0;
        for (partition, records) in partitions {
            let indexes: BTreeSet<usize> = records.iter().map(|r| r.0).collect();
            ensure!(
                indexes.len() == records.len(),
                "request {id:?}: a record stored twice in partition {partition}: {records:?}"
            );
            let mine = keyed.get(partition).cloned().unwrap_or_default();
            let with_keyless: BTreeSet<usize> = mine.union(&keyless).copied().collect();
            if indexes == with_keyless && !keyless.is_empty() {
                keyless_in += 1;
            } else if indexes != mine {
                bail!(
                    "request {id:?} in partition {partition}: records {indexes:?} are neither \
                     {mine:?} nor {with_keyless:?}: a torn request"
                );
            }
            // In request order, at adjacent offsets.
            for pair in records.windows(2) {
                ensure!(
                    pair[1].0 > pair[0].0 && pair[1].1 == pair[0].1 + 1,
                    "request {id:?} in partition {partition}: not whole and in order: {records:?}"
                );
            }
        }
        ensure!(
            keyless_in <= 1,
            "request {id:?}: keyless records in {keyless_in} partitions"
        );
    }
    Ok(total)
}

/// Checks the group's committed offsets after a restart; returns them as the new baseline.
async fn check_commits(server: &Server, commits: &Commits) -> Result<BTreeMap<u32, u64>> {
    let committed = groups_client(server)
        .await?
        .fetch_offsets(pb::FetchOffsetsRequest {
            group: GROUP.into(),
            topic: TOPIC.into(),
        })
        .await?
        .into_inner()
        .offsets;
    let committed: BTreeMap<u32, u64> = committed
        .iter()
        .filter_map(|c| c.offset.map(|o| (c.partition, o)))
        .collect();
    let in_flight = commits.in_flight.as_ref();
    ensure!(
        committed == commits.acked || Some(&committed) == in_flight,
        "committed offsets {committed:?}: the last acknowledged commit was {:?}, the one in \
         flight {in_flight:?}",
        commits.acked
    );
    Ok(committed)
}

fn rounds() -> u64 {
    std::env::var("SLUICE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A small xorshift generator: the kill moments, reproducible from the printed seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
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
    let seed = std::env::var("SLUICE_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let mut random = seed;
    eprintln!("flush.policy={flush_policy}: kill moments from SLUICE_KILL_SEED={seed}");

    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path(), &[])?;
    // Small segments, so that kills also land on segment rolls.
    create_topic(
        &mut server.admin().await?,
        TOPIC,
        PARTITIONS,
        &[("flush.policy", flush_policy), ("segment.bytes", "65536")],
    )
    .await?;
    let mut acked = Acked::new();
    let mut commits = Commits::default();
    for round in 0..rounds() {
        let member = tokio::spawn(commit_until_killed(server.url(), commits.clone()));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| tokio::spawn(produce_until_killed(server.url(), p, round)))
            .collect();
        let delay = 50 + next_random(&mut random) % 351;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill()?;
        for p in producers {
            acked.extend(p.await?);
        }
        commits = tokio::time::timeout(Duration::from_secs(30), member)
            .await
            .context("the member did not notice the kill")??;

        server = Server::start(dir.path(), &[])?;
        let stored = check_log(&server, &acked)
            .await
            .with_context(|| format!("after kill {round} ({delay} ms into the load)"))?;
        commits = Commits {
            acked: check_commits(&server, &commits)
                .await
                .with_context(|| format!("after kill {round}"))?,
            in_flight: None,
        };
        eprintln!(
            "kill {round} after {delay} ms: {} acknowledged, {stored} stored, committed {:?}",
            acked.len(),
            commits.acked
        );
    }
    assert!(server.stop()?.success());
    assert!(
        acked.len() > 100,
        "the test must acknowledge records before the kills"
    );
    Ok(())
}
