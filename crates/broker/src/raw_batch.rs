//! Raw-batch produce: checking Kafka RecordBatch v2 bytes that a client encoded.
//!
//! An uncompressed batch is checked from its 61-byte header alone, before anything is queued;
//! its CRC-32C is computed once, by the log, when it appends the batches
//! ([`sluice_storage::Log::append`] verifies every batch before it writes any), and a mismatch
//! comes back from the append as [`BrokerError::InvalidBatch`] naming the `crc` field (see
//! [`batch_error`]). A compressed batch (gzip, snappy, lz4 or zstd) is, as Kafka's broker
//! does, also decompressed and its records checked here (their count and framing, nothing
//! kept per record), so that no consumer is ever served a batch it cannot decode; its CRC is
//! checked first, so that damage in transit is reported as such. The log then rewrites only
//! the base offsets, which the CRC does not cover, and stores the batch still compressed.

use sluice_storage::BatchError;
use sluice_storage::batch::{self, BatchHeader, Compression, HEADER_LEN, LOG_OVERHEAD, MAGIC};

use crate::BrokerError;

/// Where the magic byte sits in every Kafka message format (v0, v1 and v2 alike), so an old
/// format is named as such before its other fields are misread as v2 ones.
const MAGIC_AT: usize = 16;

/// Attribute bit 4: part of a transaction.
const TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit 5: a control batch (transaction markers).
const CONTROL: i16 = 1 << 5;

/// The timestamp a header carries when it has none.
const NO_TIMESTAMP: i64 = -1;

/// Limits a raw-batch produce request is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLimits {
    /// The topic's `max.message.bytes`, applied to each batch's total size as Kafka does.
    pub(crate) max_message_bytes: usize,
    /// The broker's `max_records_per_request`, applied to the records of all batches.
    pub(crate) max_records: usize,
    /// The broker's `max_decompressed_batch_bytes`, applied to each compressed batch's
    /// records once decompressed.
    pub(crate) max_decompressed_bytes: usize,
}

/// What the headers of a valid request say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Records of all its batches.
    pub(crate) records: u32,
    /// Whether a batch names an idempotent producer (producer id 0 or more).
    pub(crate) idempotent: bool,
}

/// Checks that `buf` holds one or more whole RecordBatch v2 batches and nothing else, each
/// within `limits`; returns how many records they hold and whether any is idempotent.
///
/// Checked per batch: the magic byte (2), the batch length against the bytes present (no
/// partial batch, no trailing bytes), the attributes (codec 0-4, no transaction or control
/// flag), the record count against `last_offset_delta + 1`, the total size as sent (so
/// compressed, if it is) against `max.message.bytes` ([`BrokerError::BatchTooLarge`]), the
/// first and max timestamps (non-negative, or -1 for none; max not below first), and the
/// producer fields (a producer id of -1, or one of 0 or more with an epoch and a base
/// sequence of 0 or more). A compressed batch's CRC (field `crc`) and records (field
/// `records`: they must decompress, to at most `max_decompressed_bytes`
/// ([`BrokerError::DecompressedTooLarge`]), and be exactly `record_count` well-framed
/// records) are checked too. Then the sum of record counts against
/// `max_records_per_request` ([`BrokerError::TooManyRecords`]). Any other failure is a
/// [`BrokerError::InvalidBatch`] naming the field; an empty buffer is
/// [`BrokerError::EmptyBatch`].
pub(crate) fn validate(buf: &[u8], limits: RawLimits) -> Result<Checked, BrokerError> {
    if buf.is_empty() {
        return Err(BrokerError::EmptyBatch);
    }
    let (mut pos, mut index, mut records) = (0usize, 0usize, 0u64);
    let mut idempotent = false;
    while pos < buf.len() {
        let at = |reason: String| format!("batch {index} at byte {pos}: {reason}");
        let rest = &buf[pos..];
        if rest.len() < HEADER_LEN {
            return Err(invalid(
                "batch_length",
                at(format!(
                    "{} byte(s) left, fewer than the {HEADER_LEN}-byte header of a batch",
                    rest.len()
                )),
            ));
        }
        let magic = rest[MAGIC_AT] as i8;
        if magic != MAGIC {
            return Err(invalid(
                "magic",
                at(format!(
                    "is {magic}; only RecordBatch v2 (magic {MAGIC}) is accepted"
                )),
            ));
        }
        let header = BatchHeader::parse(rest).map_err(|e| match batch_error(&e) {
            BrokerError::InvalidBatch { field, reason } => invalid(field, at(reason)),
            other => other,
        })?;
        let total = header.total_len();
        if total > rest.len() {
            return Err(invalid(
                "batch_length",
                at(format!(
                    "declares a {total}-byte batch but only {} byte(s) are left",
                    rest.len()
                )),
            ));
        }
        if total > limits.max_message_bytes {
            return Err(BrokerError::BatchTooLarge {
                size: total,
                limit: limits.max_message_bytes,
            });
        }
        check_timestamps(&header).map_err(|(field, reason)| invalid(field, at(reason)))?;
        if header.compression() != Some(Compression::None) {
            let bytes = &rest[..total];
            batch::verify_crc(bytes)
                .and_then(|()| batch::validate_records(bytes, limits.max_decompressed_bytes))
                .map_err(|e| match batch_error(&e) {
                    BrokerError::InvalidBatch { field, reason } => invalid(field, at(reason)),
                    other => other,
                })?;
        }
        check_producer(&header).map_err(|(field, reason)| invalid(field, at(reason)))?;
        idempotent |= header.producer_id >= 0;
        // `parse` guarantees 1 <= record_count.
        records += u64::from(header.record_count.unsigned_abs());
        pos += total;
        index += 1;
    }
    let records = usize::try_from(records).unwrap_or(usize::MAX);
    if records > limits.max_records {
        return Err(BrokerError::TooManyRecords {
            count: records,
            limit: limits.max_records,
        });
    }
    Ok(Checked {
        records: u32::try_from(records).unwrap_or(u32::MAX),
        idempotent,
    })
}

/// A batch names no producer (id -1), or an idempotent one: id, epoch and base sequence all
/// 0 or more.
fn check_producer(header: &BatchHeader) -> Result<(), (&'static str, String)> {
    let id = header.producer_id;
    if id < -1 {
        return Err((
            "producer_id",
            format!("is {id}; expected -1 (none) or an id from InitProducerId (0 or more)"),
        ));
    }
    if id == -1 {
        return Ok(());
    }
    if header.producer_epoch < 0 {
        return Err((
            "producer_epoch",
            format!(
                "is {} for producer {id}; an idempotent producer's epoch is 0 or more",
                header.producer_epoch
            ),
        ));
    }
    if header.base_sequence < 0 {
        return Err((
            "base_sequence",
            format!(
                "is {} for producer {id}; an idempotent producer's sequence numbers are 0 or more",
                header.base_sequence
            ),
        ));
    }
    Ok(())
}

/// The first and max timestamps must each be a time (non-negative) or -1 ("none"), and the
/// max must not be below the first.
fn check_timestamps(header: &BatchHeader) -> Result<(), (&'static str, String)> {
    for (field, value) in [
        ("base_timestamp", header.base_timestamp),
        ("max_timestamp", header.max_timestamp),
    ] {
        if value < 0 && value != NO_TIMESTAMP {
            return Err((
                field,
                format!("is {value}; expected ms since the epoch (>= 0) or -1 for none"),
            ));
        }
    }
    if header.base_timestamp >= 0 && header.max_timestamp < header.base_timestamp {
        return Err((
            "max_timestamp",
            format!(
                "is {}, below base_timestamp {}",
                header.max_timestamp, header.base_timestamp
            ),
        ));
    }
    Ok(())
}

fn invalid(field: &'static str, reason: String) -> BrokerError {
    BrokerError::InvalidBatch { field, reason }
}

/// The broker error for a batch the storage layer refused: [`BrokerError::InvalidBatch`]
/// naming the header field at fault (`records` for what is wrong inside the records), or
/// [`BrokerError::DecompressedTooLarge`].
pub(crate) fn batch_error(err: &BatchError) -> BrokerError {
    let (field, reason) = match *err {
        BatchError::DecompressedTooLarge { codec, limit } => {
            return BrokerError::DecompressedTooLarge { codec, limit };
        }
        BatchError::CrcMismatch { stored, computed } => (
            "crc",
            format!("is {stored:#010x} but the bytes it covers give {computed:#010x}"),
        ),
        BatchError::BadMagic(magic) => (
            "magic",
            format!("is {magic}; only RecordBatch v2 (magic {MAGIC}) is accepted"),
        ),
        BatchError::BadLength(length) => (
            "batch_length",
            format!(
                "is {length}; a batch needs at least {} bytes after the length field",
                HEADER_LEN - LOG_OVERHEAD
            ),
        ),
        BatchError::UnsupportedAttributes(attributes) => {
            ("attributes", unsupported_attributes(attributes))
        }
        BatchError::BadRecordCount {
            count,
            last_offset_delta,
        } => (
            "record_count",
            format!(
                "is {count}; expected last_offset_delta + 1 = {} records, at least one, \
                 and no more than the batch length can hold",
                i64::from(last_offset_delta) + 1
            ),
        ),
        BatchError::Truncated { needed, available } => (
            "batch_length",
            format!("needs {needed} bytes but {available} are present"),
        ),
        ref other => ("records", other.to_string()),
    };
    invalid(field, reason)
}

/// Why a batch with these attributes is refused.
fn unsupported_attributes(attributes: i16) -> String {
    if Compression::from_attributes(attributes).is_none() {
        format!(
            "{attributes:#06x} asks for compression codec {}, which Kafka does not define; \
             codecs 0-4 (none, gzip, snappy, lz4, zstd) are accepted",
            attributes & 0b111
        )
    } else if attributes & TRANSACTIONAL != 0 {
        format!("{attributes:#06x} marks a transactional batch; transactions are not supported")
    } else if attributes & CONTROL != 0 {
        format!("{attributes:#06x} marks a control batch; transactions are not supported")
    } else {
        format!(
            "{attributes:#06x} sets unknown bits; only bits 0-2 (the codec) and 3 (log-append \
             time) may be set"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::RecordBatchBuilder;

    const LIMITS: RawLimits = RawLimits {
        max_message_bytes: 1 << 20,
        max_records: 1000,
        max_decompressed_bytes: 1 << 20,
    };

    /// A valid batch of `count` records with 10-byte values, timestamps from 1000.
    fn batch(count: usize) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new();
        for i in 0..count {
            builder
                .push(1000 + i as i64, None, Some(&[7u8; 10]), std::iter::empty())
                .expect("push");
        }
        builder.finish().expect("a batch").to_vec()
    }

    /// `batch` with the big-endian bytes at `at` replaced by `bytes` (CRC left as it was).
    fn patched(mut batch: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
        batch[at..at + bytes.len()].copy_from_slice(bytes);
        batch
    }

    fn field_of(result: Result<Checked, BrokerError>) -> (&'static str, String) {
        match result {
            Err(BrokerError::InvalidBatch { field, reason }) => (field, reason),
            other => panic!("expected InvalidBatch, got {other:?}"),
        }
    }

    #[test]
    fn counts_the_records_of_concatenated_batches() {
        let mut buf = batch(3);
        buf.extend(batch(1));
        buf.extend(batch(5));
        assert_eq!(
            validate(&buf, LIMITS).expect("valid"),
            Checked {
                records: 9,
                idempotent: false
            }
        );
    }

    #[test]
    fn refuses_an_empty_buffer() {
        assert!(matches!(
            validate(&[], LIMITS),
            Err(BrokerError::EmptyBatch)
        ));
    }

    #[test]
    fn refuses_partial_batches_and_trailing_bytes() {
        let whole = batch(2);
        let (field, reason) = field_of(validate(&whole[..whole.len() - 1], LIMITS));
        assert_eq!(field, "batch_length");
        assert!(reason.contains("batch 0 at byte 0"), "{reason}");
        assert!(reason.contains("only"), "{reason}");

        let mut trailing = whole.clone();
        trailing.extend([0u8; 5]);
        let (field, reason) = field_of(validate(&trailing, LIMITS));
        assert_eq!(field, "batch_length");
        assert!(
            reason.contains(&format!("batch 1 at byte {}", whole.len())),
            "{reason}"
        );
        assert!(reason.contains("5 byte(s) left"), "{reason}");
    }

    #[test]
    fn refuses_other_magic_bytes() {
        for magic in [0u8, 1, 3] {
            let (field, reason) = field_of(validate(&patched(batch(1), 16, &[magic]), LIMITS));
            assert_eq!(field, "magic");
            assert!(reason.contains(&format!("is {magic}")), "{reason}");
        }
    }

    #[test]
    fn refuses_a_length_below_the_header() {
        let (field, reason) = field_of(validate(
            &patched(batch(1), 8, &40i32.to_be_bytes()),
            LIMITS,
        ));
        assert_eq!(field, "batch_length");
        assert!(reason.contains("is 40"), "{reason}");
    }

    #[test]
    fn refuses_a_record_count_that_disagrees_with_the_last_offset_delta() {
        // Two records, but last_offset_delta 0 (bytes 23..27).
        let (field, reason) = field_of(validate(
            &patched(batch(2), 23, &0i32.to_be_bytes()),
            LIMITS,
        ));
        assert_eq!(field, "record_count");
        assert!(reason.contains("is 2"), "{reason}");
        assert!(reason.contains("= 1 records"), "{reason}");
    }

    #[test]
    fn names_unknown_codecs_and_other_flags() {
        for (bits, word) in [
            (5i16, "codec 5, which Kafka does not define"),
            (7, "codec 7"),
            (TRANSACTIONAL, "transactional"),
            (CONTROL, "control"),
            (1 | TRANSACTIONAL, "transactional"),
            (1 << 6, "unknown bits"),
        ] {
            let (field, reason) = field_of(validate(
                &patched(batch(1), 21, &bits.to_be_bytes()),
                LIMITS,
            ));
            assert_eq!(field, "attributes");
            assert!(reason.contains(word), "{bits}: {reason}");
        }
        // Log-append time is accepted.
        assert!(validate(&patched(batch(1), 21, &8i16.to_be_bytes()), LIMITS).is_ok());
    }

    /// The records of `plain` (a batch from [`batch`]) encoded again by an independent Kafka
    /// implementation, compressed with `codec` as a Kafka client would.
    fn compressed(plain: &[u8], codec: kafka_protocol::records::Compression) -> Vec<u8> {
        use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
        let records: Vec<Record> =
            sluice_storage::batch::records(bytes::Bytes::copy_from_slice(plain))
                .expect("a valid batch")
                .map(|r| {
                    let r = r.expect("a valid record");
                    Record {
                        transactional: false,
                        control: false,
                        delete_horizon: false,
                        partition_leader_epoch: 0,
                        producer_id: -1,
                        producer_epoch: -1,
                        timestamp_type: kafka_protocol::records::TimestampType::Creation,
                        offset: r.offset as i64,
                        sequence: r.offset as i32 - 1,
                        timestamp: r.timestamp_ms,
                        key: r.key,
                        value: r.value,
                        headers: Default::default(),
                    }
                })
                .collect();
        let mut out = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: codec,
        };
        RecordBatchEncoder::encode(&mut out, &records, &options).expect("encode");
        out.to_vec()
    }

    /// `batch` with its CRC recomputed, so that only what was patched is wrong.
    fn resigned(mut batch: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    const CODECS: [kafka_protocol::records::Compression; 4] = [
        kafka_protocol::records::Compression::Gzip,
        kafka_protocol::records::Compression::Snappy,
        kafka_protocol::records::Compression::Lz4,
        kafka_protocol::records::Compression::Zstd,
    ];

    #[test]
    fn accepts_batches_of_every_codec() {
        for codec in CODECS {
            let mut buf = compressed(&batch(30), codec);
            buf.extend(batch(2));
            buf.extend(compressed(&batch(1), codec));
            assert_eq!(
                validate(&buf, LIMITS).expect("valid").records,
                33,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn checks_the_crc_and_the_records_of_compressed_batches() {
        for codec in CODECS {
            let good = compressed(&batch(30), codec);
            let (field, _) = field_of(validate(&patched(good.clone(), 70, &[0xee]), LIMITS));
            assert_eq!(field, "crc", "{codec:?}");

            // Damaged after compression (and signed again, as a buggy client would).
            let cut = good.len() - 10;
            let cut = resigned(patched(
                good[..cut].to_vec(),
                8,
                &(cut as i32 - 12).to_be_bytes(),
            ));
            let (field, reason) = field_of(validate(&cut, LIMITS));
            assert_eq!(field, "records", "{codec:?}: {reason}");
            assert!(reason.contains("batch 0 at byte 0"), "{reason}");

            // One record more, and one fewer, than the header counts.
            for count in [31i32, 29] {
                let miscounted = resigned(patched(
                    patched(good.clone(), 57, &count.to_be_bytes()),
                    23,
                    &(count - 1).to_be_bytes(),
                ));
                let (field, reason) = field_of(validate(&miscounted, LIMITS));
                assert_eq!(field, "records", "{codec:?} {count}: {reason}");
                assert!(reason.contains("malformed record"), "{reason}");
            }
        }
    }

    #[test]
    fn caps_the_decompressed_size_of_compressed_batches() {
        let packed = compressed(&batch(30), kafka_protocol::records::Compression::Zstd);
        let limits = RawLimits {
            max_decompressed_bytes: 100,
            ..LIMITS
        };
        let err = validate(&packed, limits);
        assert!(
            matches!(
                err,
                Err(BrokerError::DecompressedTooLarge {
                    codec: Compression::Zstd,
                    limit: 100
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn applies_max_message_bytes_to_the_compressed_size() {
        let plain = batch(50);
        let packed = compressed(&plain, kafka_protocol::records::Compression::Gzip);
        assert!(packed.len() < plain.len());
        let limits = RawLimits {
            max_message_bytes: packed.len(),
            ..LIMITS
        };
        assert_eq!(
            validate(&packed, limits).expect("fits compressed").records,
            50
        );
        assert!(matches!(
            validate(&plain, limits),
            Err(BrokerError::BatchTooLarge { .. })
        ));
    }

    #[test]
    fn applies_max_message_bytes_to_each_batch_whole() {
        let one = batch(4);
        let limits = RawLimits {
            max_message_bytes: one.len(),
            ..LIMITS
        };
        let mut two = one.clone();
        two.extend(&one);
        assert_eq!(validate(&two, limits).expect("each batch fits").records, 8);
        let limits = RawLimits {
            max_message_bytes: one.len() - 1,
            ..LIMITS
        };
        let err = validate(&one, limits);
        assert!(
            matches!(err, Err(BrokerError::BatchTooLarge { size, limit }) if size == one.len() && limit == one.len() - 1),
            "{err:?}"
        );
    }

    #[test]
    fn applies_max_records_per_request_to_all_batches() {
        let mut buf = batch(600);
        buf.extend(batch(401));
        let err = validate(&buf, LIMITS);
        assert!(
            matches!(
                err,
                Err(BrokerError::TooManyRecords {
                    count: 1001,
                    limit: 1000
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn checks_the_header_timestamps() {
        // Base timestamp at 27, max timestamp at 35.
        let none = patched(
            patched(batch(1), 27, &(-1i64).to_be_bytes()),
            35,
            &(-1i64).to_be_bytes(),
        );
        assert!(validate(&none, LIMITS).is_ok(), "-1 means none");
        for (at, field) in [(27, "base_timestamp"), (35, "max_timestamp")] {
            let (got, reason) = field_of(validate(
                &patched(batch(1), at, &(-2i64).to_be_bytes()),
                LIMITS,
            ));
            assert_eq!(got, field);
            assert!(reason.contains("is -2"), "{reason}");
        }
        let backwards = patched(batch(2), 35, &999i64.to_be_bytes());
        let (field, reason) = field_of(validate(&backwards, LIMITS));
        assert_eq!(field, "max_timestamp");
        assert!(reason.contains("below base_timestamp 1000"), "{reason}");
    }

    #[test]
    fn checks_the_producer_fields() {
        let idempotent = |id: i64, epoch: i16, seq: i32| {
            let mut builder = RecordBatchBuilder::new().with_producer(id, epoch, seq);
            builder
                .push(1, None, Some(b"v"), std::iter::empty())
                .expect("push");
            builder.finish().expect("a batch").to_vec()
        };
        let mut buf = batch(2);
        buf.extend(idempotent(5, 0, 0));
        assert_eq!(
            validate(&buf, LIMITS).expect("valid"),
            Checked {
                records: 3,
                idempotent: true
            }
        );
        // Without a producer id, the epoch and sequence are not looked at.
        assert!(validate(&idempotent(-1, -7, -9), LIMITS).is_ok_and(|c| !c.idempotent));
        for (id, epoch, seq, field, needle) in [
            (-2, 0, 0, "producer_id", "is -2"),
            (5, -1, 0, "producer_epoch", "is -1 for producer 5"),
            (5, 0, -1, "base_sequence", "is -1 for producer 5"),
        ] {
            let (got, reason) = field_of(validate(&idempotent(id, epoch, seq), LIMITS));
            assert_eq!(got, field);
            assert!(reason.contains(needle), "{reason}");
        }
    }

    #[test]
    fn maps_a_crc_mismatch_to_the_crc_field() {
        let err = batch_error(&BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        });
        assert!(
            matches!(&err, BrokerError::InvalidBatch { field: "crc", reason } if reason.contains("0x00000001")),
            "{err:?}"
        );
    }
}
