//! Reading the records a share group hands out, through the broker's fetch path.

use std::sync::Arc;
use std::time::Duration;

use sluice_storage::batch::RecordView;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

use crate::{Broker, BrokerError};

/// The log start and high watermark of a partition, `None` when it cannot be read (unknown
/// or failed).
pub(crate) fn ends(broker: &Broker, topic: &str, partition: u32) -> Option<(u64, u64)> {
    let topic = broker.topic(topic).ok()?;
    let log = topic.partition(partition).ok()?.log().ok()?;
    Some((log.log_start_offset(), log.high_watermark()))
}

/// Reads the records at `offsets` (ascending) of a partition, one fetch per stretch of
/// the log; offsets with no record (deleted by retention meanwhile) are left out.
pub(crate) async fn read_offsets(
    broker: &Broker,
    topic: &str,
    partition: u32,
    offsets: &[u64],
) -> Result<Vec<RecordView>, BrokerError> {
    let mut out = Vec::with_capacity(offsets.len());
    let mut i = 0;
    while let Some(&from) = offsets.get(i) {
        let fetched = match broker
            .fetch(topic, partition, from, 0, Duration::ZERO)
            .await
        {
            Ok(fetched) => fetched,
            Err(BrokerError::OffsetOutOfRange { .. }) => {
                i += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let before = i;
        for record in fetched.records() {
            let record = record?;
            while offsets.get(i).is_some_and(|o| *o < record.offset) {
                i += 1;
            }
            if offsets.get(i) == Some(&record.offset) {
                out.push(record);
                i += 1;
            }
            if i >= offsets.len() {
                break;
            }
        }
        if i == before {
            // Nothing at `from`: past what the fetch returned, or gone.
            i += 1;
        }
    }
    Ok(out)
}

/// A stream that yields whenever one of these partitions is appended to (subscribed now,
/// so an append right after a read still wakes the reader).
pub(crate) fn appends(
    broker: &Broker,
    partitions: Vec<(Arc<str>, u32)>,
) -> impl tokio_stream::Stream<Item = ()> + Unpin + use<> {
    let mut streams = tokio_stream::StreamMap::new();
    for (i, (topic, partition)) in partitions.into_iter().enumerate() {
        if let Ok(topic) = broker.topic(&topic)
            && let Ok(partition) = topic.partition(partition)
        {
            streams.insert(i, WatchStream::from_changes(partition.subscribe()));
        }
    }
    streams.map(|_| ())
}
