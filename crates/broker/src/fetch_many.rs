//! Fetching many partitions in one call, with the semantics of Kafka's Fetch: a byte budget
//! for the whole answer and one per partition, a minimum to wait for, and a longest wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

use crate::broker::join;
use crate::topic::{Partition, Topic};
use crate::{Broker, BrokerError, Fetched};

/// One partition of a [`FetchMany`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFetch {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset to read from.
    pub offset: u64,
    /// Cap on this partition's stored bytes in the answer.
    pub max_bytes: usize,
}

/// A fetch of several partitions at once; see [`Broker::fetch_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchMany {
    /// The partitions, in the order their data fills the answer.
    pub partitions: Vec<PartitionFetch>,
    /// Cap on the stored bytes of the whole answer (capped by `limits.max_fetch_bytes`).
    pub max_bytes: usize,
    /// Answer as soon as this many bytes are there (0: answer at once).
    pub min_bytes: usize,
    /// Longest wait for `min_bytes` (capped by `limits.max_wait`).
    pub max_wait: Duration,
}

/// What [`Broker::fetch_many`] read of one partition.
#[derive(Debug)]
pub struct PartitionFetched {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The batches read, or why this partition could not be read.
    pub result: Result<Fetched, BrokerError>,
}

/// A requested partition that exists (`None` where resolving it failed).
type Target = Option<(Arc<Topic>, Arc<Partition>)>;

impl Broker {
    /// Reads whole record batches from several partitions, in request order.
    ///
    /// Each partition gets at most its own `max_bytes` and what is left of the answer's
    /// `max_bytes`; a partition left with too little budget for its next batch answers
    /// empty. As in Kafka (KIP-74), the first batch of the first partition that has data is
    /// returned whole even when it is larger than either limit, so a consumer always makes
    /// progress. A partition that cannot be read (unknown, offset out of range, failed log)
    /// answers with its error; the others are unaffected.
    ///
    /// Answers at once when the data reaches `min_bytes` or any partition has an error;
    /// otherwise waits, up to `max_wait`, for appends to the requested partitions (only
    /// those wake it) and reads again.
    pub async fn fetch_many(
        self: &Arc<Self>,
        request: &FetchMany,
    ) -> Result<Vec<PartitionFetched>, BrokerError> {
        self.check_running()?;
        let deadline = Instant::now() + request.max_wait.min(self.config.limits.max_wait);
        let max_bytes = request.max_bytes.min(self.config.limits.max_fetch_bytes);
        let mut unresolved = Vec::new();
        let targets: Vec<Target> = request
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| match self.resolve(p) {
                Ok(target) => Some(target),
                Err(err) => {
                    unresolved.push((i, err));
                    None
                }
            })
            .collect();
        let draining = self.draining();
        loop {
            // Watch before reading, so an append right after the read still wakes us.
            let mut appended = tokio_stream::StreamMap::new();
            for (i, (_, partition)) in targets
                .iter()
                .enumerate()
                .filter_map(|(i, t)| Some((i, t.as_ref()?)))
            {
                appended.insert(i, WatchStream::from_changes(partition.subscribe()));
            }
            let mut reads = self.read_many(request, &targets, max_bytes).await?;
            let bytes: usize = reads
                .iter()
                .filter_map(|r| r.as_ref()?.as_ref().ok())
                .map(|f| f.batches.len())
                .sum();
            let failed = !unresolved.is_empty() || reads.iter().flatten().any(Result::is_err);
            let now = Instant::now();
            let done = bytes >= request.min_bytes.max(1) || failed || now >= deadline;
            if !done {
                let woken = tokio::select! {
                    woken = tokio::time::timeout(deadline - now, appended.next()) => woken.is_ok(),
                    () = draining.wait() => false,
                };
                if woken {
                    continue;
                }
                // The deadline (or draining): answer with whatever is there now.
                reads = self.read_many(request, &targets, max_bytes).await?;
            }
            for (i, err) in unresolved {
                reads[i] = Some(Err(err));
            }
            return Ok(request
                .partitions
                .iter()
                .zip(reads)
                .map(|(p, read)| PartitionFetched {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    result: read.unwrap_or(Err(BrokerError::ShuttingDown)),
                })
                .collect());
        }
    }

    /// The topic and partition a fetch names, if it can be read.
    fn resolve(&self, p: &PartitionFetch) -> Result<(Arc<Topic>, Arc<Partition>), BrokerError> {
        let topic = self.topic(&p.topic)?;
        let partition = Arc::clone(topic.partition(p.partition)?);
        partition.log()?;
        Ok((topic, partition))
    }

    /// One pass over the targets, on one blocking thread; `None` where there is no target.
    async fn read_many(
        &self,
        request: &FetchMany,
        targets: &[Target],
        max_bytes: usize,
    ) -> Result<Vec<Option<Result<Fetched, BrokerError>>>, BrokerError> {
        let work: Vec<(PartitionFetch, Target)> = request
            .partitions
            .iter()
            .cloned()
            .zip(targets.iter().cloned())
            .collect();
        let started = Instant::now();
        let decompress_limit = self.config.limits.max_decompressed_batch_bytes;
        let reads = join(tokio::task::spawn_blocking(move || {
            let mut left = max_bytes;
            let mut first = true;
            work.into_iter()
                .map(|(p, target)| {
                    let (topic, partition) = target?;
                    let budget = if first {
                        // At least one batch, whatever the limits.
                        p.max_bytes.min(left).max(1)
                    } else {
                        p.max_bytes.min(left)
                    };
                    let mut result =
                        read_partition(&topic, &partition, p.offset, budget, decompress_limit);
                    if let Ok(fetched) = &mut result {
                        let len = fetched.batches.len();
                        if !first && len > budget {
                            // Past the budget: this partition's next batch waits for a
                            // later fetch.
                            fetched.batches = Bytes::new();
                        } else if len > 0 {
                            first = false;
                            left = left.saturating_sub(len);
                            partition.count_fetched(fetched.next_offset() - p.offset, len as u64);
                        }
                    }
                    Some(result)
                })
                .collect::<Vec<_>>()
        }))
        .await?;
        metrics::histogram!("sluice_fetch_duration_seconds").record(started.elapsed());
        Ok(reads)
    }
}

/// Reads up to `budget` bytes of one partition (none at all when the budget is 0, after
/// checking the offset); `decompress_limit` is the result's `max_decompressed_batch_bytes`.
/// Blocking.
fn read_partition(
    topic: &Topic,
    partition: &Partition,
    offset: u64,
    budget: usize,
    decompress_limit: usize,
) -> Result<Fetched, BrokerError> {
    if topic.is_deleted() {
        return Err(BrokerError::TopicNotFound {
            topic: topic.name().to_owned(),
        });
    }
    let log = partition.log()?;
    if budget == 0 {
        let (log_start_offset, high_watermark) = (log.log_start_offset(), log.high_watermark());
        if !(log_start_offset..=high_watermark).contains(&offset) {
            return Err(BrokerError::OffsetOutOfRange {
                requested: offset,
                log_start_offset,
                high_watermark,
            });
        }
        return Ok(Fetched {
            batches: Bytes::new(),
            offset,
            high_watermark,
            log_start_offset,
            max_decompressed_batch_bytes: decompress_limit,
        });
    }
    let read = log
        .read(offset, budget)
        .map_err(|e| crate::broker::map_storage_error(topic, e))?;
    Ok(Fetched {
        batches: read.batches,
        offset,
        high_watermark: read.high_watermark,
        log_start_offset: read.log_start_offset,
        max_decompressed_batch_bytes: decompress_limit,
    })
}
