//! A Kafka consumer group (kafka-python: subscribe(), a group.id, enable.auto.commit off,
//! a commit after each processed record) of three members on a six-partition topic: the
//! members share the partitions, one leaves (close(), LeaveGroup), the other two rebalance
//! and take its partitions over. No committed record is lost, none is delivered again after
//! its commit, and the committed offsets show in `sluice group describe` with their lag.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::kafka::{Member, MemberEvent, committed_offsets};
use common::{Server, create_topic, produce_values};
use serde_json::Value;

const TOPIC: &str = "work";
const GROUP: &str = "workers";
const PARTITIONS: u32 = 6;
/// Records per partition before the member leaves, and after.
const BEFORE: u32 = 30;
const AFTER: u32 = 10;
/// Records produced to partition 0 once the group is gone: its lag.
const LAG: u32 = 5;

fn records_processed(events: &[MemberEvent]) -> usize {
    events.iter().filter(|e| e.event == "record").count()
}

#[test]
fn a_three_member_group_rebalances_when_one_leaves_without_losing_committed_records() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    // Members that start within a second of the first join its first generation (Kafka's
    // group.initial.rebalance.delay.ms, 3 s by default).
    let server = Server::start_with_env(
        dir.path(),
        &[("SLUICE_GROUPS_INITIAL_REBALANCE_DELAY_MS", "1000")],
        &[],
    )?;
    let bootstrap = server.kafka_addr().context("no Kafka listener")?.to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    let produce = |count: u32, from: u32, partitions: std::ops::Range<u32>| {
        runtime.block_on(async {
            let mut log = server.log().await?;
            for p in partitions {
                let values = (from..from + count).map(|i| format!("p{p} record {i}"));
                produce_values(&mut log, TOPIC, p, values).await?;
            }
            anyhow::Ok(())
        })
    };
    runtime.block_on(async {
        create_topic(&mut server.admin().await?, TOPIC, PARTITIONS, &[]).await
    })?;
    produce(BEFORE, 0, 0..PARTITIONS)?;

    let members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|name| Member::start(&bootstrap, TOPIC, GROUP, name, 10))
        .collect::<Result<_>>()?;
    // All three get partitions and process records of them.
    wait_for_assignments(&members, "three members")?;
    for member in &members {
        member.wait("processing records", |events| {
            records_processed(events) >= 3
        })?;
    }

    let mut members = members;
    let leaver = members.pop().context("three members")?;
    let left_with = leaver.assigned()?;
    let mut events = leaver.leave()?;
    // The other two rebalance: each is assigned anew, and together they own everything.
    wait_for_assignments(&members, "the two members left")?;
    let now_owned: BTreeSet<u32> = members
        .iter()
        .map(Member::assigned)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    ensure!(
        left_with.is_subset(&now_owned),
        "the partitions {left_with:?} of the member that left were not taken over: {now_owned:?}"
    );

    produce(AFTER, BEFORE, 0..PARTITIONS)?;
    let end = u64::from(BEFORE + AFTER);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = events.clone();
        for member in &members {
            all.extend(member.events()?);
        }
        let committed = committed_offsets(&all);
        if (0..PARTITIONS).all(|p| committed.get(&p) == Some(&end)) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the group did not commit every record within 20 s: {committed:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for member in members {
        events.extend(member.leave()?);
    }
    check_deliveries(&events, end)?;
    let count = |kind: &str| events.iter().filter(|e| e.event == kind).count();
    eprintln!(
        "{} records processed for {} produced, {} commits, {} refused, {} assignments",
        count("record"),
        u64::from(PARTITIONS) * end,
        count("committed"),
        count("commit_failed"),
        count("assigned")
    );

    // The committed offsets, and the lag of records that came after, as the CLI shows them.
    produce(LAG, BEFORE + AFTER, 0..1)?;
    let described = group_describe(&server)?;
    let partitions = described["partitions"]
        .as_array()
        .context("no partitions")?;
    ensure!(partitions.len() == 6, "{described}");
    for p in partitions {
        let partition = p["partition"].as_u64().context("partition")?;
        let lag = if partition == 0 { u64::from(LAG) } else { 0 };
        ensure!(
            p["topic"] == TOPIC && p["committed_offset"] == end && p["lag"] == lag,
            "partition {partition}: {p} (expected committed {end}, lag {lag})"
        );
    }
    Ok(())
}

/// Waits until each of `members` has an assignment, those are disjoint, and they cover
/// every partition.
fn wait_for_assignments(members: &[Member], who: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let assigned: Vec<BTreeSet<u32>> = members
            .iter()
            .map(Member::assigned)
            .collect::<Result<_>>()?;
        let all: BTreeSet<u32> = assigned.iter().flatten().copied().collect();
        let total: usize = assigned.iter().map(BTreeSet::len).sum();
        if assigned.iter().all(|a| !a.is_empty())
            && total == all.len()
            && all == (0..PARTITIONS).collect()
        {
            return Ok(());
        }
        if let Some(gone) = members.iter().find(|m| m.ended()) {
            anyhow::bail!(
                "member {} exited while {who} should share the partitions:\n{}",
                gone.name,
                gone.stderr()
            );
        }
        ensure!(
            Instant::now() < deadline,
            "{who} did not share the {PARTITIONS} partitions within 20 s: {assigned:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that every record below `end` of every partition was processed, that the
/// commits reached `end`, and that no record was processed again after a commit past it.
fn check_deliveries(events: &[MemberEvent], end: u64) -> Result<()> {
    let committed = committed_offsets(events);
    ensure!(
        (0..PARTITIONS).all(|p| committed.get(&p) == Some(&end)),
        "{committed:?}"
    );
    let commits: Vec<&MemberEvent> = events.iter().filter(|e| e.event == "committed").collect();
    let mut processed: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for record in events.iter().filter(|e| e.event == "record") {
        let (Some(p), Some(offset)) = (record.partition, record.offset) else {
            continue;
        };
        processed.entry(p).or_default().insert(offset);
        if let Some(commit) = commits
            .iter()
            .find(|c| c.partition == Some(p) && c.offset > Some(offset) && c.t < record.t)
        {
            anyhow::bail!(
                "record {offset} of partition {p} was delivered to {} after {} committed offset {:?}",
                record.member,
                commit.member,
                commit.offset
            );
        }
    }
    for p in 0..PARTITIONS {
        let missing: Vec<u64> = (0..end)
            .filter(|o| !processed.get(&p).is_some_and(|seen| seen.contains(o)))
            .collect();
        ensure!(
            missing.is_empty(),
            "partition {p}: never delivered {missing:?}"
        );
    }
    Ok(())
}

/// `sluice group describe GROUP --output json`, run as the CLI.
fn group_describe(server: &Server) -> Result<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["group", "describe", GROUP, "--output", "json"])
        .args(["--server", &server.url()])
        .env_remove("SLUICE_SERVER")
        .output()
        .context("run sluice group describe")?;
    ensure!(
        output.status.success(),
        "sluice group describe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}
