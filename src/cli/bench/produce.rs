//! Producers that drive `Log.ProduceStream` directly: requests of `--batch-size` records,
//! at most `--in-flight` unanswered per producer, closed-loop or at a fixed rate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use sluice_client::{TopicDescription, Transport};
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::{self as pb, produce_stream_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::stats::{Clock, Stats};
use super::{
    ANSWER_TIMEOUT, BenchArgs, Encoding, Mode, e2e, encoded_batch, finish_all, log_service,
    random_payload, seed, share,
};

/// Waits longer than this start on tokio's timer, whose 1 ms ticks would make every request
/// up to 1 ms late; the rest is slept on a blocking thread.
const COARSE_WAIT: Duration = Duration::from_millis(2);
/// The last part of a wait, spent yielding rather than sleeping: a sleeping thread wakes tens
/// of microseconds late, and handing its wake-up back to the task costs as much again.
const SPIN_WAIT: Duration = Duration::from_micros(150);

/// Returns at `due` (at once if it has passed), to within a few microseconds: lateness would
/// count as latency in an open-loop run, and tokio's 1 ms timer alone would cap a closed-loop
/// run at one request per millisecond.
async fn sleep_until(due: Instant) {
    let early = due.checked_sub(COARSE_WAIT);
    if let Some(early) = early.filter(|&early| Instant::now() < early) {
        tokio::time::sleep_until(early.into()).await;
    }
    let rest = due.saturating_duration_since(Instant::now());
    if let Some(sleep) = rest.checked_sub(SPIN_WAIT).filter(|sleep| !sleep.is_zero()) {
        // A wait abandoned by `select!` leaves its thread sleeping out the rest, harmlessly.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(sleep)).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// What one producer sends.
#[derive(Debug)]
struct Plan {
    topic: String,
    /// Records to send; `u64::MAX` when only the deadline ends the run.
    records: u64,
    batch: u64,
    /// Most requests sent and not yet answered.
    window: usize,
    /// Records per second for this producer; `None`: as fast as the window allows.
    rate: Option<f64>,
    deadline: Option<Instant>,
    payload: Bytes,
    /// Whether every payload starts with its due time ([`e2e::stamp`]).
    stamp: bool,
    /// How a request carries its records.
    encoding: Encoding,
    /// Partitions of the topic: a request of [`Encoding::Batch`] names one, round-robin from
    /// `first_partition` (the server places requests of records itself).
    partitions: u32,
    first_partition: u32,
    clock: Clock,
}

impl Plan {
    /// The value of every record of a request due at `due`.
    fn value(&self, due: Instant) -> Bytes {
        if self.stamp {
            e2e::stamp(
                &self.payload,
                due.saturating_duration_since(self.clock.start),
            )
        } else {
            self.payload.clone()
        }
    }

    /// When the request starting at record `sent` and holding `count` records is due: when
    /// its last record is due at the producer's rate, or now without a rate.
    fn due(&self, sent: u64, count: u64) -> Instant {
        match self.rate {
            Some(rate) => {
                let at = Duration::from_secs_f64((sent + count) as f64 / rate);
                self.clock.start + at
            }
            None => Instant::now(),
        }
    }
}

/// Runs `--producers` producers to completion; returns when the last acknowledgement
/// arrived. Records and bytes acknowledged and per-request latencies go to `stats`.
pub(super) async fn run_all(
    args: &BenchArgs,
    topic: &TopicDescription,
    clock: &Clock,
    deadline: Option<Instant>,
    stats: &Arc<Stats>,
) -> anyhow::Result<Instant> {
    let partitions = u32::try_from(topic.partitions.len()).unwrap_or(1).max(1);
    let mut producers = Vec::new();
    for index in 0..args.producers {
        let plan = Plan {
            topic: args.topic.clone(),
            records: args
                .records
                .map_or(u64::MAX, |total| share(total, args.producers, index)),
            batch: u64::from(args.batch_size),
            window: args.in_flight as usize,
            rate: args
                .rate
                .map(|rate| rate as f64 / f64::from(args.producers)),
            deadline,
            payload: random_payload(args.record_size, seed(clock.start, index)),
            stamp: args.mode == Mode::E2e,
            encoding: args.encoding,
            partitions,
            first_partition: index % partitions,
            clock: *clock,
        };
        let log = log_service(&args.connect).await?;
        producers.push(tokio::spawn(produce(log, plan, Arc::clone(stats))));
    }
    finish_all(producers, "producer").await
}

/// One producer: sends the plan's records over one stream and waits for every answer.
async fn produce(
    mut log: LogClient<Transport>,
    plan: Plan,
    stats: Arc<Stats>,
) -> anyhow::Result<()> {
    let (requests, outgoing) = mpsc::channel(plan.window);
    let mut answers = log
        .produce_stream(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    let record_size = plan.payload.len() as u64;
    // Request id -> (when it was due, how many records it holds).
    let mut in_flight: HashMap<u64, (Instant, u64)> = HashMap::with_capacity(plan.window);
    let (mut sent, mut next_id) = (0u64, 0u64);
    // The batch of `--encoding batch` requests and its record count, once built.
    let mut encoded: Option<(u64, Bytes)> = None;
    loop {
        let more = sent < plan.records && plan.deadline.is_none_or(|d| Instant::now() < d);
        if !more && in_flight.is_empty() {
            return Ok(());
        }
        let count = plan.batch.min(plan.records - sent);
        let due = plan.due(sent, count);
        tokio::select! {
            biased;
            answer = tokio::time::timeout(ANSWER_TIMEOUT, answers.message()), if !in_flight.is_empty() => {
                let answer = answer
                    .with_context(|| format!("no acknowledgement within {ANSWER_TIMEOUT:?}"))??
                    .context("the server ended the produce stream")?;
                let Some((due, count)) = in_flight.remove(&answer.request_id) else {
                    bail!("answer to unknown request {}", answer.request_id);
                };
                match answer.result {
                    Some(produce_stream_response::Result::Produced(_)) => {}
                    Some(produce_stream_response::Result::Error(error)) => {
                        bail!("produce failed (code {}): {}", error.code, error.message)
                    }
                    None => bail!("the answer to request {} has no result", answer.request_id),
                }
                stats.latency(due.elapsed());
                stats.add(count, count * record_size);
            }
            () = sleep_until(due), if more && in_flight.len() < plan.window => {
                let timestamp_ms = plan.clock.epoch_us(due) / 1000;
                let value = plan.value(due);
                let mut request = pb::ProduceRequest {
                    topic: plan.topic.clone(),
                    partition: None,
                    request_id: next_id,
                    ..Default::default()
                };
                match plan.encoding {
                    Encoding::Records => {
                        request.records = (0..count)
                            .map(|_| pb::Record {
                                key: None,
                                value: value.clone(),
                                headers: Vec::new(),
                                timestamp_ms,
                            })
                            .collect();
                    }
                    Encoding::Batch => {
                        let turn = u32::try_from(next_id % u64::from(plan.partitions))?;
                        request.partition = Some((plan.first_partition + turn) % plan.partitions);
                        request.record_batches = match &encoded {
                            Some((records, batch)) if *records == count => batch.clone(),
                            _ => {
                                let batch = encoded_batch(&value, count, timestamp_ms)?;
                                // Unstamped values are all alike: the batch is built once.
                                if !plan.stamp {
                                    encoded = Some((count, batch.clone()));
                                }
                                batch
                            }
                        };
                    }
                }
                if requests.send(request).await.is_err() {
                    bail!("the server ended the produce stream");
                }
                in_flight.insert(next_id, (due, count));
                next_id += 1;
                sent += count;
            }
        }
    }
}
