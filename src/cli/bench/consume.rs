//! Replaying a topic with `Log.SubscribeBatches`, counting records from the batch headers.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use sluice_client::TopicDescription;
use sluice_proto::v1::{self as pb};
use sluice_storage::batch;

use super::stats::Stats;
use super::{ANSWER_TIMEOUT, BenchArgs, finish_all, log_service};

/// Soft limit on the stored bytes of one streamed message (the server caps it at its
/// `max_subscribe_bytes`).
const MESSAGE_BYTES: u32 = 8 << 20;

/// A partition to replay: `[from, end)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Range {
    pub(super) partition: u32,
    pub(super) from: u64,
    pub(super) end: u64,
}

/// The partitions consumer `index` of `consumers` replays: every `consumers`-th one, each
/// from its log start offset to its high watermark.
pub(super) fn share_of(topic: &TopicDescription, consumers: u32, index: u32) -> Vec<Range> {
    topic
        .partitions
        .iter()
        .enumerate()
        .filter(|(n, _)| *n as u64 % u64::from(consumers) == u64::from(index))
        .map(|(_, p)| Range {
            partition: p.id,
            from: p.log_start_offset,
            end: p.high_watermark,
        })
        .collect()
}

/// Replays every partition of `topic` from its log start offset to its high watermark as
/// described, with `--consumers` consumers splitting the partitions. Returns when the last
/// consumer finished.
pub(super) async fn run_all(
    args: &BenchArgs,
    topic: &TopicDescription,
    deadline: Option<Instant>,
    stats: &Arc<Stats>,
) -> anyhow::Result<Instant> {
    let mut consumers = Vec::new();
    for index in 0..args.consumers() {
        let ranges = share_of(topic, args.consumers(), index);
        if ranges.is_empty() {
            continue;
        }
        let log = log_service(&args.connect).await?;
        let topic = topic.name.clone();
        let stats = Arc::clone(stats);
        consumers.push(tokio::spawn(async move {
            replay(log, &topic, ranges, deadline, &stats).await
        }));
    }
    finish_all(consumers, "consumer").await
}

/// Streams `ranges` (each partition from its log start) until every partition reached its
/// end or the deadline passed. Latency is per message: how long the consumer waited for it.
async fn replay(
    mut log: sluice_proto::v1::log_client::LogClient<sluice_client::Transport>,
    topic: &str,
    mut ranges: Vec<Range>,
    deadline: Option<Instant>,
    stats: &Stats,
) -> anyhow::Result<()> {
    let request = pb::SubscribeRequest {
        topic: topic.to_owned(),
        partitions: ranges.iter().map(|r| r.partition).collect(),
        start: Some(pb::OffsetSpec {
            kind: Some(pb::offset_spec::Kind::Earliest(pb::Earliest {})),
        }),
        max_bytes: MESSAGE_BYTES,
    };
    let mut stream = log.subscribe_batches(request).await?.into_inner();
    ranges.retain(|r| r.from < r.end);
    let mut waiting = Instant::now();
    while !ranges.is_empty() && deadline.is_none_or(|d| Instant::now() < d) {
        let message = tokio::time::timeout(ANSWER_TIMEOUT, stream.message())
            .await
            .with_context(|| format!("no message within {ANSWER_TIMEOUT:?}"))??
            .context("the subscription ended early")?;
        stats.latency(waiting.elapsed());
        waiting = Instant::now();
        let Some(range) = ranges.iter_mut().find(|r| r.partition == message.partition) else {
            continue;
        };
        let records = count_records(&message.record_batches, range.from, range.end)?;
        stats.add(records, message.record_batches.len() as u64);
        if message.next_offset <= range.from {
            bail!(
                "partition {} streamed nothing new at offset {}",
                range.partition,
                range.from
            );
        }
        range.from = message.next_offset;
        ranges.retain(|r| r.from < r.end);
    }
    Ok(())
}

/// The records with offsets in `[from, end)` of the record batches `batches`, counted from
/// each batch header's base offset and last offset delta (the records are never decoded).
pub(super) fn count_records(batches: &Bytes, from: u64, end: u64) -> anyhow::Result<u64> {
    let mut count = 0;
    for item in batch::batches(batches.clone()) {
        let (header, _) = item.context("damaged record batch")?;
        let first = header.base_offset.max(from);
        let after = header.last_offset().saturating_add(1).min(end);
        count += after.saturating_sub(first);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use sluice_storage::batch::{RecordBatchBuilder, set_base_offset};

    use super::*;

    /// A real batch of `records` records of `value_len` bytes, from offset `base`.
    fn batch(base: u64, records: u32, value_len: usize) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new();
        let value = vec![0xAB; value_len];
        for _ in 0..records {
            builder
                .push(1, None, Some(&value), std::iter::empty())
                .expect("small record");
        }
        let mut out = builder.finish().expect("non-empty batch");
        set_base_offset(&mut out, base);
        out.to_vec()
    }

    #[test]
    fn records_are_counted_within_the_range() -> anyhow::Result<()> {
        let mut batches = batch(0, 10, 37);
        batches.extend(batch(10, 5, 0));
        batches.extend(batch(15, 100, 1000));
        let batches = Bytes::from(batches);
        assert_eq!(count_records(&batches, 0, 115)?, 115);
        // The first batch starts before the requested offset; the last ends after the end.
        assert_eq!(count_records(&batches, 4, 20)?, 16);
        assert_eq!(count_records(&Bytes::new(), 0, 10)?, 0);
        Ok(())
    }

    #[test]
    fn compressed_batches_are_counted_from_their_headers() -> anyhow::Result<()> {
        let mut zstd = batch(20, 30, 10);
        zstd[22] |= 4; // attributes: codec 4 (the records are never looked at)
        assert_eq!(count_records(&Bytes::from(zstd), 25, 100)?, 25);
        Ok(())
    }

    #[test]
    fn damaged_batches_are_errors() {
        let whole = batch(0, 3, 20);
        let cut = |n: usize| Bytes::copy_from_slice(&whole[..n]);
        assert!(count_records(&cut(whole.len() - 1), 0, 3).is_err());
        assert!(count_records(&cut(30), 0, 3).is_err());
        let mut wrong_magic = whole.clone();
        wrong_magic[16] = 1;
        assert!(count_records(&Bytes::from(wrong_magic), 0, 3).is_err());
    }
}
