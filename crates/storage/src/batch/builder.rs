//! Writing a record batch from records.

use bytes::{BufMut, BytesMut};

use super::header::{BatchHeader, compute_crc};
use super::varint::{length_len, put_length, put_varint, put_varlong, varint_len, varlong_len};
use super::{HEADER_LEN, LOG_OVERHEAD, MAGIC, MAX_BATCH_LEN};
use crate::BatchError;

/// Builds one uncompressed record batch, writing each record straight into a single buffer
/// (no allocation per record: sizes are computed first, then the bytes are written).
///
/// The finished header has base offset 0 (the log assigns the real one), partition leader
/// epoch 0, attributes 0 (create time, no compression), base timestamp = the first record's
/// timestamp, max timestamp = the largest, and producer id, producer epoch and base sequence
/// all -1 (no idempotent producer) unless [`RecordBatchBuilder::with_producer`] set them.
/// Record `i` gets offset delta `i`.
#[derive(Debug)]
pub struct RecordBatchBuilder {
    /// The header's room (zeroed until [`RecordBatchBuilder::finish`]) followed by the records.
    buf: BytesMut,
    /// Records pushed. Bounded well below `i32::MAX` by `MAX_BATCH_LEN`.
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    /// The header's producer id, producer epoch and base sequence.
    producer: Producer,
}

/// The idempotent-producer fields of a batch header.
#[derive(Debug, Clone, Copy)]
struct Producer {
    id: i64,
    epoch: i16,
    base_sequence: i32,
}

/// The header fields of a batch without an idempotent producer.
const NO_PRODUCER: Producer = Producer {
    id: -1,
    epoch: -1,
    base_sequence: -1,
};

impl Default for RecordBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Encoded size of a nullable byte string: its varint length (-1 for null) and its bytes.
fn field_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varint_len(-1),
        Some(bytes) => length_len(bytes.len()).saturating_add(bytes.len()),
    }
}

fn put_field(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, -1),
        Some(bytes) => {
            put_length(buf, bytes.len());
            buf.put_slice(bytes);
        }
    }
}

impl RecordBatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty builder whose buffer is presized for a batch of `bytes` bytes, header included.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(bytes.max(HEADER_LEN));
        buf.put_bytes(0, HEADER_LEN);
        RecordBatchBuilder {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            producer: NO_PRODUCER,
        }
    }

    /// This builder with the header naming an idempotent producer: its id, its epoch and the
    /// sequence number of the batch's first record (the records that follow take the next
    /// numbers). Values are written as given; the broker checks them.
    pub fn with_producer(mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer = Producer {
            id: producer_id,
            epoch,
            base_sequence,
        };
        self
    }

    /// Appends a record. `headers` are (key, value or `None`) pairs; Kafka wants header keys to
    /// be UTF-8, but they are stored as given. The headers iterator is walked twice (sizes, then
    /// bytes), so its clone must yield the same items.
    ///
    /// Fails with [`BatchError::TooLarge`] if the batch would outgrow [`MAX_BATCH_LEN`], and with
    /// [`BatchError::BadRecord`] if the cloned headers iterator yields different items; either
    /// way the builder is left as it was.
    pub fn push<'h, H>(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: H,
    ) -> Result<(), BatchError>
    where
        H: IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
        H::IntoIter: Clone,
    {
        let base_timestamp = if self.count == 0 {
            timestamp_ms
        } else {
            self.base_timestamp
        };
        // Wrapping, like Kafka's Java arithmetic: the reader adds it back with wrapping too.
        let timestamp_delta = timestamp_ms.wrapping_sub(base_timestamp);
        let offset_delta = self.count;

        let headers = headers.into_iter();
        let (header_count, headers_len) =
            headers
                .clone()
                .fold((0usize, 0usize), |(count, len), (key, value)| {
                    let len = len
                        .saturating_add(field_len(Some(key)))
                        .saturating_add(field_len(value));
                    (count + 1, len)
                });
        let body_len = [
            1, // attributes
            varlong_len(timestamp_delta),
            varint_len(offset_delta),
            field_len(key),
            field_len(value),
            length_len(header_count),
            headers_len,
        ]
        .into_iter()
        .fold(0usize, usize::saturating_add);
        let record_len = length_len(body_len).saturating_add(body_len);
        let size = self.buf.len().saturating_add(record_len);
        if size > MAX_BATCH_LEN {
            return Err(BatchError::TooLarge {
                size,
                limit: MAX_BATCH_LEN,
            });
        }
        // Every length written below is smaller than `MAX_BATCH_LEN`, so fits an `i32`.
        let start = self.buf.len();
        self.buf.reserve(record_len);
        put_length(&mut self.buf, body_len);
        self.buf.put_u8(0); // attributes: unused in v2
        put_varlong(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, offset_delta);
        put_field(&mut self.buf, key);
        put_field(&mut self.buf, value);
        put_length(&mut self.buf, header_count);
        for (key, value) in headers {
            put_field(&mut self.buf, Some(key));
            put_field(&mut self.buf, value);
        }
        if self.buf.len() - start != record_len {
            self.buf.truncate(start);
            return Err(BatchError::BadRecord {
                index: offset_delta as usize,
                reason: "the cloned headers iterator yielded different headers",
            });
        }
        self.count += 1;
        self.base_timestamp = base_timestamp;
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        Ok(())
    }

    /// Number of records pushed.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size in bytes the finished batch will have.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Fills in the header and CRC and returns the batch, or `None` when no record was pushed.
    pub fn finish(self) -> Option<BytesMut> {
        if self.count == 0 {
            return None;
        }
        let mut buf = self.buf;
        let mut header = BatchHeader {
            base_offset: 0,
            // `push` keeps the whole batch within `MAX_BATCH_LEN`.
            batch_length: (buf.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: 0,
            magic: MAGIC,
            crc: 0,
            attributes: 0,
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer.id,
            producer_epoch: self.producer.epoch,
            base_sequence: self.producer.base_sequence,
            record_count: self.count,
        };
        // The CRC covers the header fields after it, so they go in first.
        buf[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        header.crc = compute_crc(&buf);
        buf[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::batch::{records, verify_crc};

    const NO_HEADERS: [(&[u8], Option<&[u8]>); 0] = [];

    #[test]
    fn empty_builder_finishes_to_nothing() {
        let builder = RecordBatchBuilder::default();
        assert!(builder.is_empty());
        assert_eq!(builder.len(), 0);
        assert_eq!(builder.size_bytes(), HEADER_LEN);
        assert!(builder.finish().is_none());
    }

    #[test]
    fn fills_the_header_as_documented() -> Result<(), BatchError> {
        let mut builder = RecordBatchBuilder::with_capacity(1024);
        builder.push(50, Some(b"k"), Some(b"v"), NO_HEADERS)?;
        builder.push(80, None, Some(b""), NO_HEADERS)?;
        builder.push(-3, Some(b""), None, [(&b"h"[..], None)])?;
        assert_eq!(builder.len(), 3);
        assert!(!builder.is_empty());
        let size = builder.size_bytes();
        let batch = builder.finish().ok_or(BatchError::BadLength(0))?;
        assert_eq!(batch.len(), size);
        verify_crc(&batch)?;
        let header = BatchHeader::parse(&batch)?;
        let expected = BatchHeader {
            base_offset: 0,
            batch_length: (size - LOG_OVERHEAD) as i32,
            partition_leader_epoch: 0,
            magic: 2,
            crc: header.crc,
            attributes: 0,
            last_offset_delta: 2,
            base_timestamp: 50,
            max_timestamp: 80,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 3,
        };
        assert_eq!(header, expected);
        Ok(())
    }

    #[test]
    fn writes_the_producer_fields_it_is_given() -> Result<(), BatchError> {
        let mut builder = RecordBatchBuilder::new().with_producer(42, 3, 17);
        builder.push(1, None, Some(b"a"), NO_HEADERS)?;
        builder.push(2, None, Some(b"b"), NO_HEADERS)?;
        let batch = builder.finish().ok_or(BatchError::BadLength(0))?;
        verify_crc(&batch)?;
        let header = BatchHeader::parse(&batch)?;
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (42, 3, 17)
        );
        assert_eq!(header.record_count, 2);
        Ok(())
    }

    #[test]
    fn writes_a_minimal_record_byte_for_byte() -> Result<(), BatchError> {
        let mut builder = RecordBatchBuilder::new();
        builder.push(1000, None, None, NO_HEADERS)?;
        let batch = builder.finish().ok_or(BatchError::BadLength(0))?;
        // length 6, attributes, ts delta 0, offset delta 0, null key, null value, no headers
        assert_eq!(batch[HEADER_LEN..], [0x0c, 0, 0, 0, 0x01, 0x01, 0]);
        Ok(())
    }

    #[test]
    fn extreme_timestamps_round_trip() -> Result<(), BatchError> {
        let timestamps = [i64::MAX, i64::MIN, 0, -1, i64::MIN + 1];
        let mut builder = RecordBatchBuilder::new();
        for ts in timestamps {
            builder.push(ts, None, Some(b"x"), NO_HEADERS)?;
        }
        let batch = builder.finish().ok_or(BatchError::BadLength(0))?.freeze();
        let decoded: Vec<i64> = records(batch)?
            .map(|r| r.map(|r| r.timestamp_ms))
            .collect::<Result<_, _>>()?;
        assert_eq!(decoded, timestamps);
        Ok(())
    }

    #[test]
    fn refuses_a_batch_past_the_format_limit() -> Result<(), BatchError> {
        let big = vec![7u8; 1 << 20];
        let headers = std::iter::repeat_n((&b"k"[..], Some(big.as_slice())), 2048);
        let mut builder = RecordBatchBuilder::new();
        builder.push(1, None, Some(b"small"), NO_HEADERS)?;
        let before = builder.size_bytes();
        let err = builder.push(2, None, None, headers);
        assert!(
            matches!(err, Err(BatchError::TooLarge { size, limit }) if size > limit && limit == MAX_BATCH_LEN),
            "{err:?}"
        );
        assert_eq!(builder.size_bytes(), before);
        assert_eq!(builder.len(), 1);
        Ok(())
    }

    /// A headers iterator whose every clone yields one more header than the previous one.
    #[derive(Debug)]
    struct Growing<'a> {
        clones: &'a Cell<usize>,
        left: usize,
    }

    impl Clone for Growing<'_> {
        fn clone(&self) -> Self {
            self.clones.set(self.clones.get() + 1);
            Growing {
                clones: self.clones,
                left: self.clones.get(),
            }
        }
    }

    impl<'a> Iterator for Growing<'a> {
        type Item = (&'a [u8], Option<&'a [u8]>);
        fn next(&mut self) -> Option<Self::Item> {
            self.left = self.left.checked_sub(1)?;
            Some((b"key", Some(b"value")))
        }
    }

    #[test]
    fn rejects_headers_that_change_between_passes() -> Result<(), BatchError> {
        let mut builder = RecordBatchBuilder::new();
        builder.push(1, None, None, NO_HEADERS)?;
        let clones = Cell::new(0);
        let err = builder.push(
            2,
            None,
            None,
            Growing {
                clones: &clones,
                left: 5,
            },
        );
        assert!(
            matches!(err, Err(BatchError::BadRecord { index: 1, .. })),
            "{err:?}"
        );
        assert_eq!(builder.len(), 1);
        let batch = builder.finish().ok_or(BatchError::BadLength(0))?.freeze();
        assert_eq!(records(batch)?.count(), 1);
        Ok(())
    }
}
