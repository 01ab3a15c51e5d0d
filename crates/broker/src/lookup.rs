//! Offset lookups over several partitions, and where reading from a [`Position`] starts.
//!
//! A timestamp lookup reads the log (index pages, then one batch), so every lookup here runs
//! on a blocking thread: no front end calls it from an async worker.

use std::sync::Arc;

use crate::broker::join;
use crate::{Broker, BrokerError, OffsetSpec, Position};

impl Broker {
    /// Looks up `spec` in each partition, in order (see [`Broker::list_offset`]); on a
    /// blocking thread.
    pub async fn list_offsets(
        self: &Arc<Self>,
        topic: &str,
        partitions: Vec<u32>,
        spec: OffsetSpec,
    ) -> Result<Vec<(u32, Option<u64>)>, BrokerError> {
        self.per_partition(topic, partitions, move |broker, topic, partition| {
            broker.list_offset(topic, partition, spec)
        })
        .await
    }

    /// The first offset of each partition whose record timestamp is at or after
    /// `timestamp_ms`, with that record's timestamp (what Kafka's ListOffsets answers);
    /// `None` for a partition with no record that recent. On a blocking thread.
    pub async fn offsets_for_time(
        self: &Arc<Self>,
        topic: &str,
        partitions: Vec<u32>,
        timestamp_ms: i64,
    ) -> Result<Vec<(u32, Option<(u64, i64)>)>, BrokerError> {
        self.per_partition(topic, partitions, move |broker, topic, partition| {
            let Some(offset) =
                broker.list_offset(topic, partition, OffsetSpec::Timestamp(timestamp_ms))?
            else {
                return Ok(None);
            };
            let found = broker.record_timestamp(topic, partition, offset)?;
            Ok(Some((offset, found.unwrap_or(timestamp_ms))))
        })
        .await
    }

    /// Where reading from `start` begins in each partition, in order. A lookup that finds no
    /// record that recent gives the high watermark (see [`Broker::start_offset`]); an explicit
    /// offset must lie within each partition's `[log_start_offset, high_watermark]`, else
    /// [`BrokerError::OffsetOutOfRange`]. On a blocking thread.
    pub async fn start_offsets(
        self: &Arc<Self>,
        topic: &str,
        partitions: Vec<u32>,
        start: Position,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        self.per_partition(topic, partitions, move |broker, topic, partition| {
            broker.position_offset(topic, partition, start)
        })
        .await
    }

    /// Where reading from `start` begins in one partition (blocking; see
    /// [`Broker::start_offsets`]).
    pub(crate) fn position_offset(
        &self,
        topic: &str,
        partition: u32,
        start: Position,
    ) -> Result<u64, BrokerError> {
        match start {
            Position::Lookup(spec) => self.start_offset(topic, partition, spec),
            Position::Offset(offset) => {
                let log_start_offset = self
                    .list_offset(topic, partition, OffsetSpec::Earliest)?
                    .unwrap_or_default();
                let high_watermark = self
                    .list_offset(topic, partition, OffsetSpec::Latest)?
                    .unwrap_or_default();
                if (log_start_offset..=high_watermark).contains(&offset) {
                    Ok(offset)
                } else {
                    Err(BrokerError::OffsetOutOfRange {
                        requested: offset,
                        log_start_offset,
                        high_watermark,
                    })
                }
            }
        }
    }

    /// `lookup` of each partition, in order, on a blocking thread.
    async fn per_partition<T: Send + 'static>(
        self: &Arc<Self>,
        topic: &str,
        partitions: Vec<u32>,
        lookup: impl Fn(&Broker, &str, u32) -> Result<T, BrokerError> + Send + 'static,
    ) -> Result<Vec<(u32, T)>, BrokerError> {
        let broker = Arc::clone(self);
        let topic = topic.to_owned();
        join(tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .map(|partition| lookup(&broker, &topic, partition).map(|found| (partition, found)))
                .collect()
        }))
        .await?
    }
}
