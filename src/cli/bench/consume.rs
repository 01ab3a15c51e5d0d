//! Replaying a topic with `Log.SubscribeBatches`, counting records from the batch headers.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use sluice_client::{Client, TopicDescription};
use sluice_proto::v1::{self as pb};

use super::stats::Stats;
use super::{ANSWER_TIMEOUT, BenchArgs, log_service};

/// Bytes of a Kafka RecordBatch v2 header, up to and including the record count.
const BATCH_HEADER_LEN: usize = 61;
/// Bytes of a batch before its `batchLength` field ends; the length counts the rest.
const LENGTH_END: usize = 12;
/// The only batch format stored.
const MAGIC: i8 = 2;
/// Soft limit on the stored bytes of one streamed message (the server caps it at its
/// `max_subscribe_bytes`).
const MESSAGE_BYTES: u32 = 8 << 20;

/// A partition to replay: `[from, end)`.
#[derive(Debug, Clone, Copy)]
struct Range {
    partition: u32,
    from: u64,
    end: u64,
}

/// Replays every partition of `topic` from its log start offset to its high watermark as
/// described, with `--consumers` consumers splitting the partitions. Returns when the last
/// consumer finished.
pub(super) async fn run_all(
    client: &Client,
    args: &BenchArgs,
    topic: &TopicDescription,
    deadline: Option<Instant>,
    stats: &Arc<Stats>,
) -> anyhow::Result<Instant> {
    let mut consumers = Vec::new();
    for index in 0..args.consumers {
        let ranges: Vec<Range> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(n, _)| *n as u64 % u64::from(args.consumers) == u64::from(index))
            .map(|(_, p)| Range {
                partition: p.id,
                from: p.log_start_offset,
                end: p.high_watermark,
            })
            .collect();
        if ranges.is_empty() {
            continue;
        }
        let log = log_service(client).await?;
        let topic = topic.name.clone();
        let stats = Arc::clone(stats);
        consumers.push(tokio::spawn(async move {
            replay(log, &topic, ranges, deadline, &stats).await
        }));
    }
    for consumer in consumers {
        consumer.await.context("a consumer task failed")??;
    }
    Ok(Instant::now())
}

/// Streams `ranges` (each partition from its log start) until every partition reached its
/// end or the deadline passed. Latency is per message: how long the consumer waited for it.
async fn replay(
    mut log: sluice_proto::v1::log_client::LogClient<tonic::transport::Channel>,
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
/// each batch header's base offset and last offset delta.
fn count_records(mut batches: &[u8], from: u64, end: u64) -> anyhow::Result<u64> {
    let mut count = 0;
    while !batches.is_empty() {
        let header = batches
            .get(..BATCH_HEADER_LEN)
            .context("truncated record batch header")?;
        let base =
            u64::try_from(i64::from_be_bytes(field(header, 0)?)).context("negative base offset")?;
        let length = usize::try_from(i32::from_be_bytes(field(header, 8)?))
            .context("negative batch length")?;
        let magic = i8::from_be_bytes(field(header, 16)?);
        if magic != MAGIC {
            bail!("record batch with magic {magic}, expected {MAGIC}");
        }
        let last_delta = u64::try_from(i32::from_be_bytes(field(header, 23)?))
            .context("negative last offset delta")?;
        let first = base.max(from);
        let after = base.saturating_add(last_delta).saturating_add(1).min(end);
        count += after.saturating_sub(first);
        batches = batches
            .get(LENGTH_END.saturating_add(length)..)
            .context("truncated record batch")?;
    }
    Ok(count)
}

/// The `N` bytes of `header` at `at`.
fn field<const N: usize>(header: &[u8], at: usize) -> anyhow::Result<[u8; N]> {
    header
        .get(at..at + N)
        .and_then(|bytes| bytes.try_into().ok())
        .context("truncated record batch header")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch header with `records` records from `base`, followed by `body` bytes.
    fn batch(base: u64, records: u32, body: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&base.to_be_bytes());
        let length = u32::try_from(BATCH_HEADER_LEN - LENGTH_END + body).unwrap_or(0);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // partition leader epoch
        out.push(2); // magic
        out.extend_from_slice(&0u32.to_be_bytes()); // crc
        out.extend_from_slice(&0u16.to_be_bytes()); // attributes
        out.extend_from_slice(&(records - 1).to_be_bytes()); // last offset delta
        out.extend_from_slice(&[0; 8 + 8 + 8 + 2 + 4]); // timestamps, producer, sequence
        out.extend_from_slice(&records.to_be_bytes());
        out.extend(std::iter::repeat_n(0xAB, body));
        out
    }

    #[test]
    fn records_are_counted_within_the_range() -> anyhow::Result<()> {
        let mut batches = batch(0, 10, 37);
        batches.extend(batch(10, 5, 0));
        batches.extend(batch(15, 100, 1000));
        assert_eq!(count_records(&batches, 0, 115)?, 115);
        // The first batch starts before the requested offset; the last ends after the end.
        assert_eq!(count_records(&batches, 4, 20)?, 16);
        assert_eq!(count_records(&[], 0, 10)?, 0);
        Ok(())
    }

    #[test]
    fn damaged_batches_are_errors() {
        let whole = batch(0, 3, 20);
        assert!(count_records(&whole[..whole.len() - 1], 0, 3).is_err());
        assert!(count_records(&whole[..30], 0, 3).is_err());
        let mut wrong_magic = whole.clone();
        wrong_magic[16] = 1;
        assert!(count_records(&wrong_magic, 0, 3).is_err());
    }
}
