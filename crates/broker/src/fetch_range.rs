//! `fetch_range`: the stored batches that hold a range of offsets, whole and as stored.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_storage::batch;

use crate::{Broker, BrokerError, CorruptSource};

impl Broker {
    /// The stored record batches (CRC-checked, as written, compressed ones still compressed)
    /// that hold the offsets `first..=last` of a partition, concatenated: the first batch
    /// is the one holding `first` (it may start before it), the last the one holding
    /// `last` (it may end after it). A protocol answering with stored batches plus the
    /// ranges the client may take from them (Kafka's ShareFetch) reads them with this.
    ///
    /// Fewer batches than the range needs when the high watermark comes first. `first`
    /// outside `[log_start_offset, high_watermark]` is [`BrokerError::OffsetOutOfRange`];
    /// `last < first` gives nothing. The range is read in fetches of up to 1 MiB (or
    /// `limits.max_fetch_bytes`); the caller bounds it (a share fetch by its records).
    pub async fn fetch_range(
        &self,
        topic: &str,
        partition: u32,
        first: u64,
        last: u64,
    ) -> Result<Bytes, BrokerError> {
        // Each fetch's batches are one slice of the segment: kept as slices, joined (copied)
        // only when the range spans more than one fetch.
        let mut parts: Vec<Bytes> = Vec::new();
        let mut len = 0;
        let mut from = first;
        while from <= last {
            let fetched = self
                .fetch(topic, partition, from, 0, Duration::ZERO)
                .await?;
            if fetched.batches.is_empty() {
                break;
            }
            let mut next = from;
            let mut used = 0;
            for item in batch::batches(fetched.batches.clone()) {
                let (header, bytes) = item.map_err(|source| BrokerError::Corrupt {
                    source: CorruptSource::Record {
                        fetch_offset: from,
                        source,
                    },
                })?;
                if header.base_offset > last {
                    break;
                }
                used += bytes.len();
                next = header.last_offset().saturating_add(1);
                if next > last {
                    break;
                }
            }
            if used > 0 {
                len += used;
                parts.push(fetched.batches.slice(..used));
            }
            if next <= from {
                break;
            }
            from = next;
        }
        Ok(match parts.len() {
            0 => Bytes::new(),
            1 => parts.swap_remove(0),
            _ => {
                let mut joined = BytesMut::with_capacity(len);
                for part in &parts {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        })
    }
}
