//! End-to-end latency: producers stamp every record with its intended send time while
//! consumers tail the topic and measure receipt time minus that timestamp.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sluice_client::{Client, Position, TopicDescription};
use tokio::task::JoinHandle;

use super::stats::{Clock, Stats};
use super::{BenchArgs, produce};

/// How long consumers may take to receive the last records once producing ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the drain checks whether every record arrived.
const DRAIN_POLL: Duration = Duration::from_millis(1);

/// Produces with `--producers` producers while `--consumers` consumers, splitting the
/// partitions, tail the topic; `stats` counts the records consumed and their latencies.
/// Returns when the last produced record was received.
pub(super) async fn run(
    client: &Client,
    args: &BenchArgs,
    topic: &TopicDescription,
    clock: &Clock,
    deadline: Option<Instant>,
    stats: &Arc<Stats>,
) -> anyhow::Result<Instant> {
    let consumers = spawn_consumers(client, args, topic, clock, stats);
    let outcome = produce_and_drain(client, args, clock, deadline, stats, &consumers).await;
    for consumer in &consumers {
        consumer.abort();
    }
    outcome
}

async fn produce_and_drain(
    client: &Client,
    args: &BenchArgs,
    clock: &Clock,
    deadline: Option<Instant>,
    stats: &Stats,
    consumers: &[JoinHandle<anyhow::Result<()>>],
) -> anyhow::Result<Instant> {
    let produced = Stats::new()?;
    produce::run_all(client, args, clock, deadline, &produced).await?;
    let expected = produced.records();
    let give_up = Instant::now() + DRAIN_TIMEOUT;
    loop {
        if stats.records() >= expected {
            return Ok(Instant::now());
        }
        if consumers.iter().any(JoinHandle::is_finished) {
            bail!("a consumer stopped before receiving every record");
        }
        if Instant::now() > give_up {
            bail!(
                "consumers received {} of {expected} records within {DRAIN_TIMEOUT:?} after producing ended",
                stats.records()
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Starts the consumers: each reads its share of the partitions from the first record
/// stamped at or after the start of the run.
fn spawn_consumers(
    client: &Client,
    args: &BenchArgs,
    topic: &TopicDescription,
    clock: &Clock,
    stats: &Arc<Stats>,
) -> Vec<JoinHandle<anyhow::Result<()>>> {
    let start_ms = clock.epoch_us(clock.start) / 1000;
    (0..args.consumers)
        .filter_map(|index| {
            let partitions: Vec<u32> = topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(n, _)| *n as u64 % u64::from(args.consumers) == u64::from(index))
                .map(|(_, p)| p.id)
                .collect();
            if partitions.is_empty() {
                return None;
            }
            let mut consumer = client
                .consumer(topic.name.as_str())
                .partitions(partitions)
                .start(Position::Timestamp(start_ms))
                .build();
            let (stats, clock) = (Arc::clone(stats), *clock);
            Some(tokio::spawn(async move {
                loop {
                    let record = consumer.next().await.context("consumer failed")?;
                    let received_us = clock.epoch_us(Instant::now());
                    let sent_us = record.timestamp_ms.saturating_mul(1000);
                    let latency = u64::try_from(received_us.saturating_sub(sent_us)).unwrap_or(0);
                    stats.latency_us(latency);
                    stats.add(1, record.value.len() as u64);
                }
            }))
        })
        .collect()
}
