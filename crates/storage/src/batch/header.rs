//! The 61-byte batch header: parsing, validation, encoding and the CRC.

use super::compression::{COMPRESSION_MASK, Compression};
use super::{HEADER_LEN, LOG_OVERHEAD, MAGIC, MIN_RECORD_LEN};
use crate::BatchError;

// Byte positions of the header fields.
const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC_AT: usize = 16;
const CRC: usize = 17;
/// First byte covered by the CRC: the attributes and everything after them.
pub(super) const CRC_START: usize = 21;
const ATTRIBUTES: usize = CRC_START;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

/// Attribute bit 3: timestamps are the broker's log-append time rather than the producer's
/// create time. With the codec bits, the only attribute bits Sluice accepts.
pub(super) const TIMESTAMP_TYPE_LOG_APPEND: i16 = 1 << 3;

/// The fixed-size header of a record batch, field by field as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Bytes following the batch length field.
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was written.
    pub partition_leader_epoch: i32,
    /// Format version; always [`MAGIC`].
    pub magic: i8,
    /// CRC-32C over the bytes from the attributes to the end of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record; records store deltas from it.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Producer sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

/// Copies the `N` bytes at `at` out of a header.
fn field<const N: usize>(header: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&header[at..at + N]);
    out
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (needs at least [`HEADER_LEN`] bytes, not the
    /// whole batch).
    ///
    /// Validates that the magic byte is 2; that the batch length covers at least the header
    /// and, for an uncompressed batch, one minimal record per record counted (compressed
    /// records can take less room than that); that the attributes name codec 0-4 (none, gzip,
    /// snappy, lz4, zstd) and carry no transactional, control or other flag except the
    /// timestamp type; and that the batch is dense: `record_count >= 1` and
    /// `last_offset_delta == record_count - 1`. Does not check the CRC (see [`verify_crc`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let Some(bytes) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        };
        let header = BatchHeader::decode(bytes);
        header.validate()?;
        Ok(header)
    }

    /// Reads the fields without validating them.
    fn decode(h: &[u8; HEADER_LEN]) -> BatchHeader {
        BatchHeader {
            base_offset: u64::from_be_bytes(field(h, BASE_OFFSET)),
            batch_length: i32::from_be_bytes(field(h, BATCH_LENGTH)),
            partition_leader_epoch: i32::from_be_bytes(field(h, PARTITION_LEADER_EPOCH)),
            magic: i8::from_be_bytes(field(h, MAGIC_AT)),
            crc: u32::from_be_bytes(field(h, CRC)),
            attributes: i16::from_be_bytes(field(h, ATTRIBUTES)),
            last_offset_delta: i32::from_be_bytes(field(h, LAST_OFFSET_DELTA)),
            base_timestamp: i64::from_be_bytes(field(h, BASE_TIMESTAMP)),
            max_timestamp: i64::from_be_bytes(field(h, MAX_TIMESTAMP)),
            producer_id: i64::from_be_bytes(field(h, PRODUCER_ID)),
            producer_epoch: i16::from_be_bytes(field(h, PRODUCER_EPOCH)),
            base_sequence: i32::from_be_bytes(field(h, BASE_SEQUENCE)),
            record_count: i32::from_be_bytes(field(h, RECORD_COUNT)),
        }
    }

    fn validate(&self) -> Result<(), BatchError> {
        let records_len = usize::try_from(self.batch_length)
            .ok()
            .and_then(|len| len.checked_sub(HEADER_LEN - LOG_OVERHEAD))
            .ok_or(BatchError::BadLength(self.batch_length))?;
        if self.magic != MAGIC {
            return Err(BatchError::BadMagic(self.magic));
        }
        let Some(compression) = self.compression() else {
            return Err(BatchError::UnsupportedAttributes(self.attributes));
        };
        if self.attributes & !(COMPRESSION_MASK | TIMESTAMP_TYPE_LOG_APPEND) != 0 {
            return Err(BatchError::UnsupportedAttributes(self.attributes));
        }
        let room = match compression {
            Compression::None => records_len / MIN_RECORD_LEN,
            _ => usize::MAX,
        };
        let count_fits =
            usize::try_from(self.record_count).is_ok_and(|count| count >= 1 && count <= room);
        if !count_fits || self.last_offset_delta != self.record_count - 1 {
            return Err(BatchError::BadRecordCount {
                count: self.record_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        Ok(())
    }

    /// Encodes the header as it appears at the start of a batch.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
        put(BASE_OFFSET, &self.base_offset.to_be_bytes());
        put(BATCH_LENGTH, &self.batch_length.to_be_bytes());
        put(
            PARTITION_LEADER_EPOCH,
            &self.partition_leader_epoch.to_be_bytes(),
        );
        put(MAGIC_AT, &self.magic.to_be_bytes());
        put(CRC, &self.crc.to_be_bytes());
        put(ATTRIBUTES, &self.attributes.to_be_bytes());
        put(LAST_OFFSET_DELTA, &self.last_offset_delta.to_be_bytes());
        put(BASE_TIMESTAMP, &self.base_timestamp.to_be_bytes());
        put(MAX_TIMESTAMP, &self.max_timestamp.to_be_bytes());
        put(PRODUCER_ID, &self.producer_id.to_be_bytes());
        put(PRODUCER_EPOCH, &self.producer_epoch.to_be_bytes());
        put(BASE_SEQUENCE, &self.base_sequence.to_be_bytes());
        put(RECORD_COUNT, &self.record_count.to_be_bytes());
        out
    }

    /// [`LOG_OVERHEAD`] + `batch_length`: the whole batch's size in bytes.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + usize::try_from(self.batch_length).unwrap_or(0)
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> u64 {
        self.base_offset
            .wrapping_add_signed(i64::from(self.last_offset_delta))
    }

    /// Producer sequence number of the last record: `base_sequence + last_offset_delta`,
    /// wrapping from `i32::MAX` to 0 as Kafka's sequence numbers do; -1 (none) when
    /// `base_sequence` is -1.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == -1 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        let wrapped = if last > i64::from(i32::MAX) {
            last - (i64::from(i32::MAX) + 1)
        } else {
            last
        };
        // `last_offset_delta` is at most `i32::MAX`, so `wrapped` is back in range.
        i32::try_from(wrapped).unwrap_or(i32::MAX)
    }

    /// Whether record timestamps are the log-append time (attribute bit 3): every record's
    /// timestamp is then `max_timestamp`, whatever its stored delta says.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_LOG_APPEND != 0
    }

    /// The codec the records are compressed with (attribute bits 0-2), or `None` for codecs
    /// 5-7, which [`BatchHeader::parse`] refuses.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_attributes(self.attributes)
    }
}

/// Computes the CRC-32C a batch's header should carry (`batch` starts at the header and is
/// at least [`HEADER_LEN`] long).
pub(super) fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(CRC_START..).unwrap_or_default())
}

/// Checks the CRC-32C of exactly one whole batch: `batch.len()` must equal the total length its
/// header declares. The CRC covers the attributes and everything after them; the base offset,
/// batch length, partition leader epoch and magic byte are not covered.
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    let Some(header) = batch.first_chunk::<HEADER_LEN>() else {
        return Err(BatchError::Truncated {
            needed: HEADER_LEN,
            available: batch.len(),
        });
    };
    let batch_length = i32::from_be_bytes(field(header, BATCH_LENGTH));
    let declared = usize::try_from(batch_length)
        .ok()
        .and_then(|len| len.checked_add(LOG_OVERHEAD))
        .ok_or(BatchError::BadLength(batch_length))?;
    if batch.len() < declared {
        return Err(BatchError::Truncated {
            needed: declared,
            available: batch.len(),
        });
    }
    if batch.len() > declared {
        return Err(BatchError::BadLength(batch_length));
    }
    let stored = u32::from_be_bytes(field(header, CRC));
    let computed = compute_crc(batch);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    Ok(())
}

/// Marks a whole, valid batch as log-append time: sets attribute bit 3 (keeping the codec),
/// writes `append_time_ms` as its max timestamp, and recomputes the CRC, which covers both.
/// Readers then report `append_time_ms` as every record's timestamp. Does nothing to a
/// buffer shorter than the header, which holds no batch.
pub(crate) fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) {
    let Some(header) = batch.first_chunk_mut::<HEADER_LEN>() else {
        return;
    };
    let attributes = i16::from_be_bytes(field(header, ATTRIBUTES)) | TIMESTAMP_TYPE_LOG_APPEND;
    header[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&append_time_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Overwrites the base offset (bytes 0..8). The CRC does not cover it, so the batch stays
/// valid. Does nothing to a buffer shorter than 8 bytes, which holds no batch.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    if let Some(bytes) = batch.first_chunk_mut::<8>() {
        *bytes = base_offset.to_be_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid header for a batch of `count` minimal records.
    fn header(count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 7,
            batch_length: (HEADER_LEN - LOG_OVERHEAD + MIN_RECORD_LEN * count as usize) as i32,
            partition_leader_epoch: 3,
            magic: MAGIC,
            crc: 0xdead_beef,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: -5,
            max_timestamp: 9,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        }
    }

    fn parse_modified(change: impl FnOnce(&mut BatchHeader)) -> Result<BatchHeader, BatchError> {
        let mut h = header(3);
        change(&mut h);
        BatchHeader::parse(&h.to_bytes())
    }

    #[test]
    fn round_trips_every_field() {
        let mut h = header(3);
        h.attributes = TIMESTAMP_TYPE_LOG_APPEND;
        let bytes = h.to_bytes();
        assert_eq!(bytes[..8], 7u64.to_be_bytes());
        assert_eq!(bytes[16], 2);
        assert_eq!(bytes[CRC..CRC + 4], 0xdead_beefu32.to_be_bytes());
        assert_eq!(bytes[RECORD_COUNT..], 3i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&bytes), Ok(h));
        assert!(h.is_log_append_time());
        assert_eq!(h.total_len(), HEADER_LEN + 3 * MIN_RECORD_LEN);
        assert_eq!(h.last_offset(), 9);
    }

    #[test]
    fn parses_from_a_longer_buffer() {
        let mut buf = header(1).to_bytes().to_vec();
        buf.extend_from_slice(&[0; 100]);
        assert_eq!(BatchHeader::parse(&buf), Ok(header(1)));
    }

    #[test]
    fn rejects_short_buffers() {
        let bytes = header(1).to_bytes();
        assert_eq!(
            BatchHeader::parse(&bytes[..HEADER_LEN - 1]),
            Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: HEADER_LEN - 1
            })
        );
    }

    #[test]
    fn rejects_bad_magic() {
        for magic in [0, 1, 3, -1] {
            assert_eq!(
                parse_modified(|h| h.magic = magic),
                Err(BatchError::BadMagic(magic))
            );
        }
    }

    #[test]
    fn rejects_impossible_lengths() {
        for len in [-1, i32::MIN, 0, (HEADER_LEN - LOG_OVERHEAD) as i32 - 1] {
            assert_eq!(
                parse_modified(|h| h.batch_length = len),
                Err(BatchError::BadLength(len))
            );
        }
    }

    #[test]
    fn rejects_unknown_codecs_transactions_and_unknown_flags() {
        for attributes in [
            5,
            6,
            7,
            13,
            1 << 4,
            1 << 5,
            1 << 6,
            1 << 7,
            1 | 1 << 4,
            i16::MIN,
            -1,
        ] {
            assert_eq!(
                parse_modified(|h| h.attributes = attributes),
                Err(BatchError::UnsupportedAttributes(attributes))
            );
        }
    }

    #[test]
    fn accepts_the_five_codecs_with_either_timestamp_type() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for codec in codecs {
            for timestamp_type in [0, TIMESTAMP_TYPE_LOG_APPEND] {
                let attributes = codec.attribute_bits() | timestamp_type;
                let parsed = parse_modified(|h| h.attributes = attributes);
                assert_eq!(parsed.map(|h| h.compression()), Ok(Some(codec)));
            }
        }
    }

    #[test]
    fn compressed_records_may_take_less_room_than_minimal_ones() {
        // A thousand records in the room of three minimal ones: possible once compressed.
        let dense = |h: &mut BatchHeader| {
            h.record_count = 1000;
            h.last_offset_delta = 999;
        };
        assert!(matches!(
            parse_modified(dense),
            Err(BatchError::BadRecordCount { count: 1000, .. })
        ));
        let parsed = parse_modified(|h| {
            dense(h);
            h.attributes = Compression::Zstd.attribute_bits();
        });
        assert_eq!(parsed.map(|h| h.record_count), Ok(1000));
        // Still dense and non-empty.
        assert!(matches!(
            parse_modified(|h| {
                h.attributes = 1;
                h.record_count = 0;
                h.last_offset_delta = -1;
            }),
            Err(BatchError::BadRecordCount { count: 0, .. })
        ));
    }

    #[test]
    fn log_append_time_rewrites_the_max_timestamp_and_the_crc() {
        for codec in [0i16, 2] {
            let mut batch = signed_batch(30);
            batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&codec.to_be_bytes());
            let crc = compute_crc(&batch);
            batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
            set_log_append_time(&mut batch, 1_700_000_000_123);
            assert_eq!(verify_crc(&batch), Ok(()));
            let header = BatchHeader::parse(&batch).expect("valid");
            assert!(header.is_log_append_time());
            assert_eq!(header.attributes, codec | TIMESTAMP_TYPE_LOG_APPEND);
            assert_eq!(header.max_timestamp, 1_700_000_000_123);
            assert_eq!(header.base_timestamp, -5, "the base timestamp stays");
        }
        let mut short = [1u8; 20];
        set_log_append_time(&mut short, 5);
        assert_eq!(short, [1; 20]);
    }

    #[test]
    fn rejects_sparse_empty_or_oversized_counts() {
        let cases: [(i32, i32); 5] = [(0, -1), (-1, -2), (3, 3), (3, 1), (i32::MAX, i32::MAX - 1)];
        for (count, delta) in cases {
            assert_eq!(
                parse_modified(|h| {
                    h.record_count = count;
                    h.last_offset_delta = delta;
                }),
                Err(BatchError::BadRecordCount {
                    count,
                    last_offset_delta: delta
                }),
                "count {count} delta {delta}"
            );
        }
        // Four records cannot fit in the room of three minimal ones.
        assert!(matches!(
            parse_modified(|h| {
                h.record_count = 4;
                h.last_offset_delta = 3;
            }),
            Err(BatchError::BadRecordCount { count: 4, .. })
        ));
    }

    #[test]
    fn total_len_and_last_offset_do_not_overflow() {
        let mut h = header(1);
        h.batch_length = -1;
        assert_eq!(h.total_len(), LOG_OVERHEAD);
        h.base_offset = u64::MAX;
        h.last_offset_delta = 1;
        assert_eq!(h.last_offset(), 0);
    }

    /// A header followed by `len` payload bytes, with a correct CRC.
    fn signed_batch(len: usize) -> Vec<u8> {
        let mut h = header(1);
        h.batch_length = (HEADER_LEN - LOG_OVERHEAD + len) as i32;
        let mut batch = h.to_bytes().to_vec();
        batch.extend((0..len).map(|i| i as u8));
        let crc = compute_crc(&batch);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn crc_detects_any_single_bit_flip_in_covered_bytes() {
        let batch = signed_batch(40);
        assert_eq!(verify_crc(&batch), Ok(()));
        for bit in 0..batch.len() * 8 {
            let mut flipped = batch.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let byte = bit / 8;
            let result = verify_crc(&flipped);
            if (BATCH_LENGTH..PARTITION_LEADER_EPOCH).contains(&byte) || byte >= CRC {
                assert!(result.is_err(), "flip of bit {bit} went unnoticed");
            } else {
                // Base offset, leader epoch and magic are outside the CRC, as in Kafka.
                assert_eq!(result, Ok(()), "bit {bit}");
            }
        }
    }

    #[test]
    fn crc_check_needs_exactly_one_batch() {
        let batch = signed_batch(10);
        let total = batch.len();
        assert_eq!(
            verify_crc(&batch[..total - 1]),
            Err(BatchError::Truncated {
                needed: total,
                available: total - 1
            })
        );
        let mut longer = batch.clone();
        longer.push(0);
        assert!(matches!(verify_crc(&longer), Err(BatchError::BadLength(_))));
        assert!(matches!(
            verify_crc(&batch[..20]),
            Err(BatchError::Truncated { needed: 61, .. })
        ));
        let mut negative = batch;
        negative[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(verify_crc(&negative), Err(BatchError::BadLength(-5)));
    }

    #[test]
    fn crc_mismatch_reports_both_values() {
        let mut batch = signed_batch(4);
        let good = compute_crc(&batch);
        batch[CRC..CRC + 4].copy_from_slice(&(good ^ 1).to_be_bytes());
        assert_eq!(
            verify_crc(&batch),
            Err(BatchError::CrcMismatch {
                stored: good ^ 1,
                computed: good
            })
        );
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        let with = |base_sequence, count| BatchHeader {
            base_sequence,
            ..header(count)
        };
        assert_eq!(with(-1, 5).last_sequence(), -1);
        assert_eq!(with(0, 1).last_sequence(), 0);
        assert_eq!(with(10, 5).last_sequence(), 14);
        assert_eq!(with(i32::MAX, 1).last_sequence(), i32::MAX);
        assert_eq!(with(i32::MAX, 2).last_sequence(), 0);
        assert_eq!(with(i32::MAX - 1, 4).last_sequence(), 1);
    }

    #[test]
    fn set_base_offset_keeps_the_crc_valid() {
        let mut batch = signed_batch(8);
        set_base_offset(&mut batch, 0x0102_0304_0506_0708);
        assert_eq!(batch[..8], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(verify_crc(&batch), Ok(()));
        let mut short = [9u8; 5];
        set_base_offset(&mut short, 1);
        assert_eq!(short, [9; 5]);
    }
}
