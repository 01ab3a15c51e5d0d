//! End-to-end latency: producers stamp every record with its intended send time while
//! consumers tail the topic and measure receipt time minus that stamp.
//!
//! The stamp is the first [`STAMP_BYTES`] bytes of the value: microseconds since the start of
//! the run, big-endian (producers and consumers share one process and one monotonic clock).
//! Values shorter than that carry only the record timestamp, which has 1 ms resolution.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use sluice_client::{Client, Position, TopicDescription};
use tokio::task::JoinHandle;

use super::stats::{Clock, Stats};
use super::{BenchArgs, produce};

/// How long consumers may take to receive the last records once producing ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the drain checks whether every record arrived.
const DRAIN_POLL: Duration = Duration::from_millis(1);
/// Length of the send-time stamp at the start of a value.
const STAMP_BYTES: usize = 8;

/// `payload` with its first [`STAMP_BYTES`] bytes replaced by `since_start` in microseconds;
/// shorter payloads are returned as they are.
pub(super) fn stamp(payload: &Bytes, since_start: Duration) -> Bytes {
    if payload.len() < STAMP_BYTES {
        return payload.clone();
    }
    let micros = u64::try_from(since_start.as_micros()).unwrap_or(u64::MAX);
    let mut stamped = payload.to_vec();
    stamped[..STAMP_BYTES].copy_from_slice(&micros.to_be_bytes());
    Bytes::from(stamped)
}

/// The send time stamped on `value` by [`stamp`], as time since the start of the run.
fn stamped(value: &[u8]) -> Option<Duration> {
    let bytes = value.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(Duration::from_micros(u64::from_be_bytes(bytes)))
}

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
    let outcome = produce_and_drain(args, topic, clock, deadline, stats, &consumers).await;
    for consumer in &consumers {
        consumer.abort();
    }
    outcome
}

async fn produce_and_drain(
    args: &BenchArgs,
    topic: &TopicDescription,
    clock: &Clock,
    deadline: Option<Instant>,
    stats: &Stats,
    consumers: &[JoinHandle<anyhow::Result<()>>],
) -> anyhow::Result<Instant> {
    let produced = Stats::new()?;
    produce::run_all(args, topic, clock, deadline, &produced).await?;
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

/// Starts the consumers: each reads its share of the partitions from the high watermark
/// described before the run (explicit offsets: a timestamp start could skip records
/// appended while the server resolves it).
fn spawn_consumers(
    client: &Client,
    args: &BenchArgs,
    topic: &TopicDescription,
    clock: &Clock,
    stats: &Arc<Stats>,
) -> Vec<JoinHandle<anyhow::Result<()>>> {
    (0..args.consumers())
        .filter_map(|index| {
            let starts: Vec<(u32, u64)> = topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(n, _)| *n as u64 % u64::from(args.consumers()) == u64::from(index))
                .map(|(_, p)| (p.id, p.high_watermark))
                .collect();
            if starts.is_empty() {
                return None;
            }
            let mut consumer = client
                .consumer(topic.name.as_str())
                .partitions(starts.iter().map(|&(id, _)| id))
                .start(Position::Latest)
                .build();
            let (stats, clock) = (Arc::clone(stats), *clock);
            Some(tokio::spawn(async move {
                for (partition, offset) in starts {
                    consumer
                        .seek(partition, offset)
                        .await
                        .context("consumer failed")?;
                }
                loop {
                    let record = consumer.next().await.context("consumer failed")?;
                    let now = Instant::now();
                    match stamped(&record.value) {
                        Some(sent) => {
                            stats.latency(now.saturating_duration_since(clock.start + sent))
                        }
                        None => {
                            let sent_us = record.timestamp_ms.saturating_mul(1000);
                            let latency = clock.epoch_us(now).saturating_sub(sent_us);
                            stats.latency_us(u64::try_from(latency).unwrap_or(0));
                        }
                    }
                    stats.add(1, record.value.len() as u64);
                }
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_short_values_keep_their_bytes() {
        let payload = Bytes::from(vec![7u8; 20]);
        let value = stamp(&payload, Duration::from_micros(1_234_567));
        assert_eq!(value.len(), 20);
        assert_eq!(&value[STAMP_BYTES..], &payload[STAMP_BYTES..]);
        assert_eq!(stamped(&value), Some(Duration::from_micros(1_234_567)));
        let short = Bytes::from_static(b"1234567");
        assert_eq!(stamp(&short, Duration::from_secs(1)), short);
        assert_eq!(stamped(&short), None);
    }
}
