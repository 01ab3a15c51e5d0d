//! Fetch results and offset lookups.

use bytes::Bytes;
use sluice_storage::BatchError;
use sluice_storage::batch::{self, RecordView};

use crate::{BrokerError, CorruptSource};

/// Which offset [`crate::Broker::list_offset`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset: the first offset still kept.
    Earliest,
    /// The high watermark: the offset the next visible record will get.
    Latest,
    /// The first offset whose record timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

/// Where reading (or an offset reset) starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The offset a lookup finds in each partition (a timestamp after every record gives
    /// the high watermark).
    Lookup(OffsetSpec),
    /// This offset in every partition; it must lie within each partition's
    /// `[log_start_offset, high_watermark]`.
    Offset(u64),
}

/// What a fetch returned: whole, CRC-checked Kafka v2 record batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Concatenated record batches. The first may start before `offset` (it is the batch
    /// that holds it); [`Fetched::records`] skips those records.
    pub batches: Bytes,
    /// The offset that was asked for.
    pub offset: u64,
    /// The partition's high watermark when the data was read.
    pub high_watermark: u64,
    /// The partition's log start offset when the data was read.
    pub log_start_offset: u64,
    /// The most bytes [`Fetched::records`] lets the records of one compressed batch
    /// decompress to (the broker's `limits.max_decompressed_batch_bytes`).
    pub max_decompressed_batch_bytes: usize,
}

impl Fetched {
    /// The records from `offset` on, decoded without copying their bytes; a compressed
    /// batch's records are decompressed, once per batch, into one buffer they are views of.
    ///
    /// A batch that does not decode yields one [`BrokerError::Corrupt`] (or
    /// [`BrokerError::DecompressedTooLarge`] past `max_decompressed_batch_bytes`) and ends the
    /// iteration.
    pub fn records(&self) -> impl Iterator<Item = Result<RecordView, BrokerError>> + use<> {
        let from = self.offset;
        let limit = self.max_decompressed_batch_bytes;
        let failed = move |source: BatchError| match source {
            BatchError::DecompressedTooLarge { codec, limit } => {
                BrokerError::DecompressedTooLarge { codec, limit }
            }
            source => BrokerError::Corrupt {
                source: CorruptSource::Record {
                    fetch_offset: from,
                    source,
                },
            },
        };
        batch::batches(self.batches.clone())
            .map(move |item| item.and_then(|(_, bytes)| batch::records_within(bytes, limit)))
            .flat_map(|item| {
                let (records, error) = match item {
                    Ok(records) => (Some(records), None),
                    Err(e) => (None, Some(Err(e))),
                };
                records.into_iter().flatten().chain(error)
            })
            .scan(false, |failed, item| {
                if *failed {
                    return None;
                }
                *failed = item.is_err();
                Some(item)
            })
            .filter(move |item| item.as_ref().map_or(true, |record| record.offset >= from))
            .map(move |item| item.map_err(failed))
    }

    /// The offset after the last record returned, or [`Fetched::offset`] when there is none:
    /// where the next fetch continues.
    pub fn next_offset(&self) -> u64 {
        batch::batches(self.batches.clone())
            .map_while(Result::ok)
            .last()
            .map_or(self.offset, |(header, _)| {
                header.last_offset().saturating_add(1).max(self.offset)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use sluice_storage::batch::{RecordBatchBuilder, set_base_offset};

    fn batch(base_offset: u64, values: &[&str]) -> BytesMut {
        let mut builder = RecordBatchBuilder::new();
        for value in values {
            builder
                .push(
                    7,
                    None,
                    Some(value.as_bytes()),
                    std::iter::empty::<(&[u8], Option<&[u8]>)>(),
                )
                .expect("small record");
        }
        let mut bytes = builder.finish().expect("non-empty batch");
        set_base_offset(&mut bytes, base_offset);
        bytes
    }

    fn fetched(offset: u64, parts: &[BytesMut]) -> Fetched {
        let mut all = BytesMut::new();
        for part in parts {
            all.extend_from_slice(part);
        }
        Fetched {
            batches: all.freeze(),
            offset,
            high_watermark: 100,
            log_start_offset: 0,
            max_decompressed_batch_bytes: 1 << 20,
        }
    }

    fn offsets(f: &Fetched) -> Vec<u64> {
        f.records()
            .map(|r| r.expect("valid record").offset)
            .collect()
    }

    #[test]
    fn skips_records_before_the_requested_offset() {
        let f = fetched(11, &[batch(10, &["a", "b", "c"]), batch(13, &["d"])]);
        assert_eq!(offsets(&f), [11, 12, 13]);
        assert_eq!(f.next_offset(), 14);
        let values: Vec<Bytes> = f
            .records()
            .filter_map(|r| r.ok().and_then(|r| r.value))
            .collect();
        assert_eq!(
            values,
            [Bytes::from("b"), Bytes::from("c"), Bytes::from("d")]
        );
    }

    #[test]
    fn empty_fetch_continues_at_the_requested_offset() {
        let f = fetched(42, &[]);
        assert_eq!(offsets(&f), Vec::<u64>::new());
        assert_eq!(f.next_offset(), 42);
    }

    #[test]
    fn broken_batch_yields_one_corrupt_error() {
        let good = batch(0, &["a"]);
        let mut broken = batch(1, &["b", "c"]);
        let len = broken.len();
        broken.truncate(len - 1);
        let f = fetched(0, &[good, broken]);
        let items: Vec<_> = f.records().collect();
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(matches!(&items[0], Ok(r) if r.offset == 0));
        assert!(matches!(
            &items[1],
            Err(BrokerError::Corrupt {
                source: CorruptSource::Record {
                    fetch_offset: 0,
                    ..
                }
            })
        ));
        // The broken batch is not counted as returned.
        assert_eq!(f.next_offset(), 1);
    }
}
