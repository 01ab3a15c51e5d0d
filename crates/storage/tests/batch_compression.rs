//! Compressed record batches: decoding each codec (against batches compressed here with the
//! codecs' own crates and against the independent `kafka-protocol` encoder), the checks that
//! refuse damaged ones, the cap on their decompressed size, and the log storing them as they
//! are.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression as KafkaCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sluice_storage::batch::{
    self, BatchHeader, Compression, DEFAULT_MAX_DECOMPRESSED_BYTES, HEADER_LEN, LOG_OVERHEAD,
    RecordBatchBuilder, RecordView,
};
use sluice_storage::{BatchError, FlushPolicy, Log, LogConfig, StorageError};

const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// `data` compressed with `codec`'s crate, as a Kafka client would write it.
fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            w.write_all(data).expect("gzip");
            w.finish().expect("gzip")
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .expect("snappy"),
        Compression::Lz4 => {
            let mut w = lz4_flex::frame::FrameEncoder::new(Vec::new());
            w.write_all(data).expect("lz4");
            w.finish().expect("lz4")
        }
        Compression::Zstd => zstd::encode_all(data, 3).expect("zstd"),
    }
}

/// The batch `uncompressed` with its records section replaced by `records` (already
/// compressed with `codec`): attributes, length and CRC rewritten to match.
fn with_records(uncompressed: &[u8], codec: Compression, records: &[u8]) -> BytesMut {
    let mut header = BatchHeader::parse(uncompressed).expect("a valid batch");
    header.attributes = (header.attributes & !0b111) | codec.attribute_bits();
    header.batch_length = i32::try_from(HEADER_LEN - LOG_OVERHEAD + records.len()).expect("fits");
    let mut out = BytesMut::from(&header.to_bytes()[..]);
    out.extend_from_slice(records);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// `uncompressed` as a batch compressed with `codec`.
fn compressed(uncompressed: &[u8], codec: Compression) -> BytesMut {
    with_records(
        uncompressed,
        codec,
        &compress(codec, &uncompressed[HEADER_LEN..]),
    )
}

/// A batch of `n` records with repetitive values (so it compresses well), create times
/// `ts`, `ts + 1`, ...
fn plain_batch(n: usize, value_len: usize, ts: i64) -> BytesMut {
    let mut builder = RecordBatchBuilder::new();
    for i in 0..n {
        let value: Vec<u8> = format!("value-{i:06}-")
            .into_bytes()
            .into_iter()
            .cycle()
            .take(value_len)
            .collect();
        let key = format!("key-{i}");
        builder
            .push(
                ts + i as i64,
                Some(key.as_bytes()),
                Some(&value),
                [(&b"trace"[..], Some(&b"abc"[..]))],
            )
            .expect("push");
    }
    builder.finish().expect("non-empty")
}

fn decode(batch: Bytes) -> Result<Vec<RecordView>, BatchError> {
    batch::records(batch)?.collect()
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn kafka_codec(codec: Compression) -> KafkaCompression {
    match codec {
        Compression::None => KafkaCompression::None,
        Compression::Gzip => KafkaCompression::Gzip,
        Compression::Snappy => KafkaCompression::Snappy,
        Compression::Lz4 => KafkaCompression::Lz4,
        Compression::Zstd => KafkaCompression::Zstd,
    }
}

fn codec() -> impl Strategy<Value = Compression> {
    proptest::sample::select(CODECS.to_vec())
}

/// (timestamp, key, value) of a record.
type Input = (i64, Option<Vec<u8>>, Vec<u8>);

fn input() -> impl Strategy<Value = Input> {
    (
        1_600_000_000_000i64..1_800_000_000_000,
        proptest::option::of(vec(any::<u8>(), 0..40)),
        prop_oneof![
            vec(any::<u8>(), 0..200),
            (any::<u8>(), 0..5000usize).prop_map(|(b, n)| vec![b; n])
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A batch compressed with any codec decodes to the records of its uncompressed form, and
    /// passes the record check.
    #[test]
    fn every_codec_round_trips_the_records(inputs in vec(input(), 1..40), codec in codec()) {
        let mut builder = RecordBatchBuilder::new();
        for (ts, key, value) in &inputs {
            builder.push(*ts, key.as_deref(), Some(value), std::iter::empty()).map_err(fail)?;
        }
        let plain = builder.finish().ok_or_else(|| fail("no batch"))?;
        let packed = compressed(&plain, codec).freeze();
        batch::verify_crc(&packed)?;
        prop_assert_eq!(BatchHeader::parse(&packed)?.compression(), Some(codec));
        batch::validate_records(&packed, DEFAULT_MAX_DECOMPRESSED_BYTES)?;
        prop_assert_eq!(decode(packed.clone())?, decode(plain.freeze())?);
        // The independent implementation reads them too.
        let set = RecordBatchDecoder::decode(&mut packed.clone()).map_err(fail)?;
        prop_assert_eq!(set.records.len(), inputs.len());
        for (record, (ts, key, value)) in set.records.iter().zip(&inputs) {
            prop_assert_eq!(record.timestamp, *ts);
            prop_assert_eq!(record.key.as_deref(), key.as_deref());
            prop_assert_eq!(record.value.as_deref(), Some(&value[..]));
        }
    }

    /// `kafka-protocol` compresses (snappy in the Java client's xerial framing), Sluice
    /// decodes.
    #[test]
    fn sluice_decodes_kafka_protocol_compressed_batches(
        inputs in vec(input(), 1..40),
        codec in codec(),
    ) {
        let records: Vec<Record> = inputs
            .iter()
            .zip(0i64..)
            .map(|((ts, key, value), offset)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 500 + offset,
                // kafka-protocol starts a new batch where sequences stop following offsets.
                sequence: offset as i32 - 1,
                timestamp: *ts,
                key: key.clone().map(Bytes::from),
                value: Some(Bytes::from(value.clone())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: kafka_codec(codec) };
        RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(fail)?;
        let split: Vec<(BatchHeader, Bytes)> =
            batch::batches(buf.freeze()).collect::<Result<_, _>>()?;
        prop_assert_eq!(split.len(), 1);
        let (header, bytes) = split.into_iter().next().ok_or_else(|| fail("no batch"))?;
        batch::verify_crc(&bytes)?;
        prop_assert_eq!(header.compression(), Some(codec));
        batch::validate_records(&bytes, DEFAULT_MAX_DECOMPRESSED_BYTES)?;
        let decoded = decode(bytes)?;
        prop_assert_eq!(decoded.len(), inputs.len());
        for ((record, (ts, key, value)), offset) in decoded.iter().zip(&inputs).zip(500u64..) {
            prop_assert_eq!(record.offset, offset);
            prop_assert_eq!(record.timestamp_ms, *ts);
            prop_assert_eq!(record.key.as_deref(), key.as_deref());
            prop_assert_eq!(record.value.as_deref(), Some(&value[..]));
        }
    }
}

/// The records section of `plain`, damaged in ways each codec notices or that leave records
/// that do not frame.
#[test]
fn damaged_compressed_records_are_refused_by_the_record_check() {
    let plain = plain_batch(20, 300, 1_000);
    let records = &plain[HEADER_LEN..];
    for codec in CODECS {
        let packed = compress(codec, records);
        let mut cut = packed.clone();
        cut.truncate(packed.len() / 2);
        // Snappy and LZ4 frames carry no checksum of their data, so a flip in a literal
        // goes unnoticed (the batch CRC is what catches that): flip the stream's first byte,
        // its magic number or (raw snappy) its length preamble.
        let mut flipped = packed.clone();
        flipped[0] ^= 0x5a;
        // Well-compressed bytes that are not records.
        let garbage = compress(codec, &[0xff; 500]);
        // One record short, and one record too many.
        let mut fewer = BytesMut::from(&plain[..]);
        fewer[57..61].copy_from_slice(&21i32.to_be_bytes());
        fewer[23..27].copy_from_slice(&20i32.to_be_bytes());
        let mut more = BytesMut::from(&plain[..]);
        more[57..61].copy_from_slice(&19i32.to_be_bytes());
        more[23..27].copy_from_slice(&18i32.to_be_bytes());
        let cases = [
            ("cut short", with_records(&plain, codec, &cut)),
            ("first byte flipped", with_records(&plain, codec, &flipped)),
            ("garbage", with_records(&plain, codec, &garbage)),
            ("a missing record", compressed(&fewer, codec)),
            ("an extra record", compressed(&more, codec)),
        ];
        for (what, batch) in cases {
            let batch = batch.freeze();
            // The CRC is right: only the records are wrong.
            batch::verify_crc(&batch).expect("the test batches carry good CRCs");
            let checked = batch::validate_records(&batch, DEFAULT_MAX_DECOMPRESSED_BYTES);
            assert!(
                matches!(
                    checked,
                    Err(BatchError::Decompress { .. } | BatchError::BadRecord { .. })
                ),
                "{codec} {what}: {checked:?}"
            );
            let decoded = decode(batch);
            assert!(decoded.is_err(), "{codec} {what}: decoding must fail too");
        }
        let fewer = compressed(&fewer, codec).freeze();
        assert_eq!(
            batch::validate_records(&fewer, DEFAULT_MAX_DECOMPRESSED_BYTES),
            Err(BatchError::BadRecord {
                index: 20,
                reason: "varint runs past the end"
            }),
            "{codec}"
        );
        let more = compressed(&more, codec).freeze();
        assert_eq!(
            batch::validate_records(&more, DEFAULT_MAX_DECOMPRESSED_BYTES),
            Err(BatchError::BadRecord {
                index: 18,
                reason: "bytes left after the last record"
            }),
            "{codec}"
        );
    }
}

#[test]
fn decompression_stops_at_the_cap() {
    // 65 MiB of one repeated byte compresses to a few KiB: a bomb under the default cap.
    let mut builder = RecordBatchBuilder::new();
    let bomb = vec![b'z'; DEFAULT_MAX_DECOMPRESSED_BYTES + (1 << 20)];
    builder
        .push(1, None, Some(&bomb), std::iter::empty())
        .expect("push");
    let plain = builder.finish().expect("non-empty");
    drop(bomb);
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let packed = compressed(&plain, codec).freeze();
        assert!(packed.len() < 1 << 20, "{codec}: {} bytes", packed.len());
        let expected = BatchError::DecompressedTooLarge {
            codec,
            limit: DEFAULT_MAX_DECOMPRESSED_BYTES,
        };
        assert!(
            expected
                .to_string()
                .contains(&format!("limit of {DEFAULT_MAX_DECOMPRESSED_BYTES} bytes")),
            "{expected}"
        );
        assert_eq!(batch::records(packed.clone()).err(), Some(expected.clone()));
        assert_eq!(
            batch::validate_records(&packed, DEFAULT_MAX_DECOMPRESSED_BYTES),
            Err(expected)
        );
    }
    drop(plain);

    // A lower cap, and a cap the record count alone exceeds.
    let plain = plain_batch(10, 100, 1);
    for codec in CODECS {
        let packed = compressed(&plain, codec).freeze();
        let size = plain.len() - HEADER_LEN;
        assert!(
            batch::records_within(packed.clone(), size).is_ok(),
            "{codec}"
        );
        assert_eq!(
            batch::records_within(packed.clone(), size - 1).err(),
            Some(BatchError::DecompressedTooLarge {
                codec,
                limit: size - 1
            }),
            "{codec}"
        );
        assert_eq!(
            batch::validate_records(&packed, 69).err(),
            Some(BatchError::DecompressedTooLarge { codec, limit: 69 }),
            "{codec}: ten records need at least 70 bytes"
        );
    }
}

#[test]
fn codecs_five_to_seven_stay_refused() {
    let plain = plain_batch(2, 10, 1);
    for codec in 5i16..8 {
        let mut bad = plain.clone();
        bad[21..23].copy_from_slice(&codec.to_be_bytes());
        let err = batch::records(bad.freeze()).err();
        assert_eq!(err, Some(BatchError::UnsupportedAttributes(codec)));
        assert!(
            err.is_some_and(|e| e.to_string().contains("codecs 5-7")),
            "codec {codec}"
        );
    }
}

fn open(dir: &std::path::Path, config: LogConfig) -> Log {
    Log::open(
        dir,
        LogConfig {
            flush: FlushPolicy::None,
            ..config
        },
    )
    .expect("open")
}

#[test]
fn the_log_stores_compressed_batches_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), LogConfig::default());
    let mut expected = Vec::new();
    let mut stored = Vec::new();
    for (i, codec) in CODECS.into_iter().enumerate() {
        let plain = plain_batch(50, 200, 10_000 + 1_000 * i as i64);
        let mut packed = compressed(&plain, codec);
        let sent = packed.clone();
        let info = log.append(&mut packed).expect("append");
        assert_eq!(info.base_offset, 50 * i as u64);
        assert_eq!(info.record_count, 50);
        assert_eq!(info.max_timestamp, 10_000 + 1_000 * i as i64 + 49);
        stored.push((info.base_offset, sent));
        expected.extend(
            decode(plain.freeze())
                .expect("plain records")
                .into_iter()
                .map(|mut r| {
                    r.offset += 50 * i as u64;
                    r
                }),
        );
    }
    let read = log.read(0, 1 << 20).expect("read");
    let mut decoded = Vec::new();
    for (item, (base_offset, sent)) in batch::batches(read.batches).zip(stored) {
        let (header, bytes) = item.expect("a whole batch");
        assert_eq!(header.base_offset, base_offset);
        // Only the base offset differs from what was sent.
        assert_eq!(bytes[8..], sent[8..]);
        decoded.extend(decode(bytes).expect("stored records"));
    }
    assert_eq!(decoded, expected);

    // Timestamp lookups land inside compressed batches.
    assert_eq!(log.offset_for_timestamp(10_000).expect("lookup"), Some(0));
    assert_eq!(log.offset_for_timestamp(11_020).expect("lookup"), Some(70));
    assert_eq!(log.offset_for_timestamp(13_049).expect("lookup"), Some(199));
    assert_eq!(log.offset_for_timestamp(13_050).expect("lookup"), None);
}

#[test]
fn timestamp_lookups_apply_the_logs_decompression_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(
        dir.path(),
        LogConfig {
            max_decompressed_batch_bytes: 100,
            ..LogConfig::default()
        },
    );
    let mut packed = compressed(&plain_batch(10, 100, 5_000), Compression::Zstd);
    log.append(&mut packed).expect("append");
    let err = log.offset_for_timestamp(5_003);
    assert!(
        matches!(&err, Err(StorageError::Corrupt { reason, .. }) if reason.contains("limit of 100 bytes")),
        "{err:?}"
    );
}

#[test]
fn log_append_time_stamps_every_batch_and_its_crc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        timestamp_type: sluice_storage::TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config.clone());
    let before = now_ms();
    let mut infos = Vec::new();
    for codec in [Compression::None, Compression::Snappy, Compression::Zstd] {
        // Create times far in the past.
        let mut batch = compressed(&plain_batch(5, 50, 1_000), codec);
        // Two batches in one append share one append time.
        batch.extend_from_slice(&compressed(&plain_batch(3, 50, 2_000), codec));
        infos.push(log.append(&mut batch).expect("append"));
    }
    let after = now_ms();
    for info in &infos {
        assert!((before..=after).contains(&info.max_timestamp), "{info:?}");
    }
    let read = log.read(0, 1 << 20).expect("read checks every CRC");
    let batches: Vec<(BatchHeader, Bytes)> = batch::batches(read.batches)
        .collect::<Result<_, _>>()
        .expect("whole batches");
    assert_eq!(batches.len(), 6);
    for (i, (header, bytes)) in batches.into_iter().enumerate() {
        batch::verify_crc(&bytes).expect("the rewritten CRC holds");
        assert!(header.is_log_append_time());
        let codec = [Compression::None, Compression::Snappy, Compression::Zstd][i / 2];
        assert_eq!(header.compression(), Some(codec), "the codec bits stay");
        assert_eq!(header.max_timestamp, infos[i / 2].max_timestamp);
        assert_eq!(header.base_timestamp, [1_000, 2_000][i % 2]);
        for record in decode(bytes).expect("records") {
            assert_eq!(record.timestamp_ms, header.max_timestamp);
        }
    }
    // The time index holds the append times.
    assert_eq!(log.offset_for_timestamp(5_000).expect("lookup"), Some(0));
    // Appends may share a millisecond: the first at or after the last one's time.
    let last = infos[2].max_timestamp;
    let first_at_last = infos
        .iter()
        .find(|i| i.max_timestamp >= last)
        .map(|i| i.base_offset);
    assert_eq!(
        log.offset_for_timestamp(last).expect("lookup"),
        first_at_last
    );
    assert_eq!(log.offset_for_timestamp(last + 1).expect("lookup"), None);
    log.close().expect("close");
    drop(log);
    // And so does the one rebuilt on reopening.
    let log = open(dir.path(), config);
    assert_eq!(
        log.offset_for_timestamp(last).expect("lookup"),
        first_at_last
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
