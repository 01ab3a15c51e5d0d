//! Share consumption: `--consumers` members of one share group take the records of a
//! pre-filled topic and accept every one explicitly, in batches, until all are accepted.
//!
//! Each member is a client [`ShareConsumer`] on a connection of its own, in a fresh group
//! that starts at the earliest record (deleted at the end). A member's loop is a worker's:
//! poll up to `--ack-every` records, accept each, poll again: the client's poll asks for the
//! next records, sends the acceptances and returns once they are durable. With `--ack-every`
//! below `--prefetch` (by default half of it), the next records are on their way while the
//! acceptances are. A record counts once its acceptance is durable; its latency runs from the
//! poll that returned it to the end of the poll (or final commit) that made its acceptance
//! durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use sluice_client::{Client, OffsetReset, ShareConsumer, TopicDescription};

use super::stats::{Clock, Stats};
use super::{ANSWER_TIMEOUT, BenchArgs, finish_all, produce};

/// How long one poll waits for records before the member looks at the run's progress again.
const POLL_WAIT: Duration = Duration::from_millis(10);

/// The records a run takes: those of `topic` between each partition's log start and high
/// watermark.
fn records_in(topic: &TopicDescription) -> u64 {
    topic
        .partitions
        .iter()
        .map(|p| p.high_watermark.saturating_sub(p.log_start_offset))
        .sum()
}

/// Fills the topic before the measured part: with `--records`, produces that many records
/// (as `produce` would, not measured); then describes it again. Fails when the topic holds no
/// record.
pub(super) async fn prefill(
    client: &Client,
    args: &BenchArgs,
    topic: TopicDescription,
) -> anyhow::Result<TopicDescription> {
    let topic = if args.records.is_some() {
        eprintln!(
            "producing {} records first",
            args.records.unwrap_or_default()
        );
        produce::run_all(args, &topic, &Clock::start(), None, &Stats::new()?).await?;
        client.admin().describe_topic(&topic.name).await?
    } else {
        topic
    };
    if records_in(&topic) == 0 {
        bail!(
            "topic '{}' holds no record: give --records to fill it first",
            topic.name
        );
    }
    Ok(topic)
}

/// Runs `--consumers` members of a fresh share group over `topic` until every record it
/// held at the start is accepted (or the deadline passed); returns when the last acceptance
/// was durable. Deletes the group at the end.
pub(super) async fn run(
    client: &Client,
    args: &BenchArgs,
    topic: &TopicDescription,
    deadline: Option<Instant>,
    stats: &Arc<Stats>,
) -> anyhow::Result<Instant> {
    let progress = Arc::new(Progress {
        target: records_in(topic),
        queued: AtomicU64::new(0),
        stats: Arc::clone(stats),
    });
    let group = group_name();
    let mut members = Vec::new();
    for _ in 0..args.consumers() {
        // A connection per member, as separate workers would have.
        let connection = Client::connect(client.url()).await?;
        let consumer = connection
            .share_consumer(group.as_str())
            .topic(topic.name.as_str())
            .prefetch(args.prefetch)
            .offset_reset(OffsetReset::Earliest)
            .build();
        let progress = Arc::clone(&progress);
        let batch = args.ack_every();
        members.push(tokio::spawn(async move {
            work(consumer, batch, deadline, &progress).await
        }));
    }
    let finished = finish_all(members, "share group member").await;
    if let Err(err) = client.admin().delete_share_group(&group).await {
        eprintln!("cannot delete share group '{group}': {err}");
    }
    finished
}

/// A share group name no earlier run used.
fn group_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("sluice-bench-share-{nanos}")
}

/// How far the members of a run are, together.
#[derive(Debug)]
struct Progress {
    /// Records to accept.
    target: u64,
    /// Records accepted by a member and not yet sent (they go with its next poll).
    queued: AtomicU64,
    /// Records whose acceptance is durable, with their latencies.
    stats: Arc<Stats>,
}

impl Progress {
    /// Whether every record is accepted or queued for acceptance.
    fn all_taken(&self) -> bool {
        self.stats.records() + self.queued.load(Ordering::Relaxed) >= self.target
    }
}

/// Acceptances queued by one member and not yet durable.
#[derive(Debug, Clone, Copy)]
struct Queued {
    /// When the poll that returned them came back.
    polled: Instant,
    records: u64,
    bytes: u64,
}

impl Queued {
    /// Counts them as accepted, durably, now.
    fn done(self, progress: &Progress) {
        progress.queued.fetch_sub(self.records, Ordering::Relaxed);
        let stats = &progress.stats;
        stats.latency_n(self.polled.elapsed(), self.records);
        stats.add(self.records, self.bytes);
    }
}

/// One member, as a worker would run: polls up to `batch` records, accepts each, polls
/// again (which sends the acceptances and returns once they are durable, the next records
/// having been asked for first), until every record is accepted or queued by some member or
/// `deadline` passed; then commits what it queued and leaves the group.
async fn work(
    mut consumer: ShareConsumer,
    batch: u32,
    deadline: Option<Instant>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let mut queued: Option<Queued> = None;
    let mut idle_since = Instant::now();
    let mut seen = progress.stats.records();
    while !progress.all_taken() && deadline.is_none_or(|d| Instant::now() < d) {
        let records = consumer.poll(batch, POLL_WAIT).await?;
        let polled = Instant::now();
        if let Some(done) = queued.take() {
            done.done(progress);
        }
        if records.is_empty() {
            // Other members may hold the last records; fail only if nobody progresses.
            let now_seen = progress.stats.records();
            if now_seen != seen {
                (seen, idle_since) = (now_seen, polled);
            } else if idle_since.elapsed() > ANSWER_TIMEOUT {
                bail!(
                    "no record accepted within {ANSWER_TIMEOUT:?} ({now_seen} of {} accepted)",
                    progress.target
                );
            }
            continue;
        }
        let mut bytes = 0u64;
        for record in &records {
            bytes += record.record.value.len() as u64;
            consumer.accept(record)?;
        }
        let count = records.len() as u64;
        progress.queued.fetch_add(count, Ordering::Relaxed);
        queued = Some(Queued {
            polled,
            records: count,
            bytes,
        });
        idle_since = polled;
    }
    consumer
        .commit()
        .await
        .context("the acceptances were not stored")?;
    if let Some(done) = queued {
        done.done(progress);
    }
    consumer
        .close()
        .await
        .context("cannot leave the share group")
}

#[cfg(test)]
mod tests {
    use sluice_client::PartitionDescription;

    use super::*;

    fn partition(id: u32, log_start_offset: u64, high_watermark: u64) -> PartitionDescription {
        PartitionDescription {
            id,
            log_start_offset,
            high_watermark,
            ..Default::default()
        }
    }

    #[test]
    fn a_run_takes_the_records_between_log_start_and_high_watermark() {
        let topic = TopicDescription {
            name: "t".into(),
            partitions: vec![partition(0, 0, 10), partition(1, 5, 7), partition(2, 3, 3)],
            ..Default::default()
        };
        assert_eq!(records_in(&topic), 12);
        assert_eq!(records_in(&TopicDescription::default()), 0);
    }

    #[test]
    fn group_names_differ_between_runs() {
        assert_ne!(group_name(), group_name());
    }
}
