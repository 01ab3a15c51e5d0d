//! Committed-offsets throughput and latency with up to 10,000 committed partitions.
//!
//! Each scenario runs on a fresh broker in a new temporary directory (under
//! `SLUICE_BENCH_DIR` when set, else the system's temporary directory; it must be a real disk
//! for the fsyncs to count). Every group first commits all its partitions once; then
//! `committers` concurrent committers each commit one partition at a time, each going round
//! robin over its own share of the (group, partition) pairs, for `SLUICE_BENCH_SECS` seconds
//! (default 5). It prints commits per second and the p50/p99 latency of one commit.
//!
//! - `1 group x 5000 partitions, 1 committer`: the largest single group the machine's limit
//!   of 20,000 open files allows (a partition holds three); rewriting a group's whole state
//!   per commit costs the most here.
//! - `10 groups x 1000 partitions, 1 committer` and `..., 100 committers`: 10,000 committed
//!   offsets, one commit at a time, then 100 at once (concurrent commits share writes).
//! - `100 groups x 100 partitions, 100 committers`: 10,000 committed offsets in many small
//!   groups, one committer per group.
//!
//! Run with `cargo bench -p sluice-broker --bench offsets_commit [NAME FILTER]`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sluice_broker::{Broker, BrokerConfig, TopicPartition};
use tempfile::TempDir;

/// Partitions per topic (within the default partition limit).
const TOPIC_PARTITIONS: u32 = 1000;

/// One scenario: `groups` groups of `partitions` partitions each, `committers` committers.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    groups: usize,
    partitions: u32,
    committers: usize,
}

impl Scenario {
    fn name(&self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "{} group{} x {} partitions, {} committer{}",
            self.groups,
            plural(self.groups),
            self.partitions,
            self.committers,
            plural(self.committers),
        )
    }

    /// The partitions of each group: as many topics of [`TOPIC_PARTITIONS`] as needed.
    fn topic_partitions(&self) -> Vec<TopicPartition> {
        (0..self.partitions)
            .map(|i| {
                TopicPartition::new(format!("t{}", i / TOPIC_PARTITIONS), i % TOPIC_PARTITIONS)
            })
            .collect()
    }

    /// Committer `c`'s (group, partition) pairs, alternating between groups.
    fn share(&self, c: usize, partitions: &[TopicPartition]) -> Vec<(String, TopicPartition)> {
        let keys = partitions
            .iter()
            .flat_map(|tp| (0..self.groups).map(move |g| (format!("g{g}"), tp.clone())));
        keys.skip(c).step_by(self.committers).collect()
    }
}

fn bench_dir() -> TempDir {
    match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)),
        None => tempfile::tempdir(),
    }
    .expect("create the benchmark directory")
}

async fn run(scenario: Scenario, duration: Duration) {
    let dir = bench_dir();
    let broker = Broker::open(BrokerConfig::new(dir.path())).expect("open broker");
    let partitions = scenario.topic_partitions();
    let mut remaining = scenario.partitions;
    for t in 0.. {
        if remaining == 0 {
            break;
        }
        let count = remaining.min(TOPIC_PARTITIONS);
        remaining -= count;
        broker
            .create_topic(&format!("t{t}"), count, &Default::default())
            .await
            .expect("create topic");
    }
    let all: Vec<(TopicPartition, u64)> = partitions.iter().map(|tp| (tp.clone(), 0)).collect();
    for g in 0..scenario.groups {
        broker
            .commit_offsets(&format!("g{g}"), 0, "", &all)
            .await
            .expect("initial commit");
    }

    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..scenario.committers)
        .map(|c| {
            let broker = Arc::clone(&broker);
            let mine = scenario.share(c, &partitions);
            tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new(3).expect("histogram");
                for (group, tp) in mine.iter().cycle() {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let begun = Instant::now();
                    broker
                        .commit_offsets(group, 0, "", &[(tp.clone(), 0)])
                        .await
                        .expect("commit");
                    let micros = u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latencies.record(micros).expect("record latency");
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Histogram::<u64>::new(3).expect("histogram");
    for task in tasks {
        latencies
            .add(task.await.expect("committer"))
            .expect("merge");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let commits = latencies.len();
    println!(
        "{:<44} {:>8.0} commits/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({commits} commits in {elapsed:.1} s)",
        scenario.name(),
        commits as f64 / elapsed,
        latencies.value_at_quantile(0.50) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
    );
    broker.shutdown().await.expect("shutdown");
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, selects scenarios by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let secs: u64 = std::env::var("SLUICE_BENCH_SECS")
        .ok()
        .map(|s| s.parse().expect("SLUICE_BENCH_SECS: a number of seconds"))
        .unwrap_or(5);
    let scenario = |groups, partitions, committers| Scenario {
        groups,
        partitions,
        committers,
    };
    let scenarios = [
        scenario(1, 5000, 1),
        scenario(10, 1000, 1),
        scenario(10, 1000, 100),
        scenario(100, 100, 100),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for scenario in scenarios {
        if filter
            .as_ref()
            .is_some_and(|f| !scenario.name().contains(f.as_str()))
        {
            continue;
        }
        runtime.block_on(run(scenario, Duration::from_secs(secs)));
    }
}
