//! Property tests of the record batch codec: what the builder writes, the decoder gives back,
//! and no input, however mangled, makes the decoder panic.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use sluice_storage::BatchError;
use sluice_storage::batch::{
    self, BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC, RecordBatchBuilder, RecordView,
};

/// A record as a producer hands it over.
#[derive(Debug, Clone)]
struct Input {
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Input {
    /// The record the decoder should give back at `offset`.
    fn expected(&self, offset: u64) -> RecordView {
        RecordView {
            offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.clone().map(Bytes::from),
            value: self.value.clone().map(Bytes::from),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (Bytes::from(k.clone()), v.clone().map(Bytes::from)))
                .collect(),
        }
    }
}

/// Byte strings from empty to a few hundred KiB (so lengths take one to three varint bytes).
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..16),
        2 => vec(any::<u8>(), 0..3000),
        1 => (any::<u8>(), 60_000usize..300_000).prop_map(|(byte, len)| vec![byte; len]),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -1000i64..1000,
        1_600_000_000_000i64..1_800_000_000_000,
        Just(i64::MIN),
        Just(i64::MAX),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    (
        timestamp(),
        proptest::option::of(payload()),
        proptest::option::of(payload()),
        vec(
            (
                vec(any::<u8>(), 0..12),
                proptest::option::of(vec(any::<u8>(), 0..40)),
            ),
            0..4,
        ),
    )
        .prop_map(|(timestamp_ms, key, value, headers)| Input {
            timestamp_ms,
            key,
            value,
            headers,
        })
}

fn build(records: &[Input]) -> Result<BytesMut, BatchError> {
    let mut builder = RecordBatchBuilder::with_capacity(4096);
    for r in records {
        builder.push(
            r.timestamp_ms,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
        )?;
    }
    let size = builder.size_bytes();
    let batch = builder.finish().ok_or(BatchError::BadLength(0))?;
    assert_eq!(batch.len(), size, "size_bytes must predict the batch size");
    Ok(batch)
}

fn decode_all(batch: Bytes) -> Result<Vec<RecordView>, BatchError> {
    batch::records(batch)?.collect()
}

/// Builds each group as a batch with dense base offsets from 0 and concatenates them.
fn build_log(groups: &[Vec<Input>]) -> Result<(Bytes, Vec<usize>), BatchError> {
    let mut buf = BytesMut::new();
    let mut ends = Vec::new();
    let mut next_offset = 0u64;
    for group in groups {
        let mut batch = build(group)?;
        batch::set_base_offset(&mut batch, next_offset);
        next_offset += group.len() as u64;
        buf.extend_from_slice(&batch);
        ends.push(buf.len());
    }
    Ok((buf.freeze(), ends))
}

/// Runs every decoding entry point over `bytes` to the end; only panics matter.
fn decode_everything(bytes: &Bytes) {
    let _ = BatchHeader::parse(bytes);
    let _ = batch::verify_crc(bytes);
    if let Ok(iter) = batch::records(bytes.clone()) {
        iter.for_each(drop);
    }
    for (_, batch) in batch::batches(bytes.clone()).flatten() {
        if let Ok(iter) = batch::records(batch) {
            iter.for_each(drop);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn built_batches_decode_to_their_records(
        records in vec(input(), 1..24),
        base_offset in 0u64..(1 << 62),
    ) {
        let mut batch = build(&records)?;
        batch::verify_crc(&batch)?;
        let header = BatchHeader::parse(&batch)?;
        prop_assert_eq!(header.record_count as usize, records.len());
        prop_assert_eq!(header.last_offset_delta as usize, records.len() - 1);
        prop_assert_eq!(header.base_timestamp, records[0].timestamp_ms);
        let max = records.iter().map(|r| r.timestamp_ms).max();
        prop_assert_eq!(Some(header.max_timestamp), max);
        prop_assert_eq!(header.total_len(), batch.len());

        let expected: Vec<_> = records.iter().zip(0..).map(|(r, i)| r.expected(i)).collect();
        prop_assert_eq!(&decode_all(batch.clone().freeze())?, &expected);

        batch::set_base_offset(&mut batch, base_offset);
        batch::verify_crc(&batch)?;
        let moved: Vec<_> = records
            .iter()
            .zip(base_offset..)
            .map(|(r, offset)| r.expected(offset))
            .collect();
        prop_assert_eq!(decode_all(batch.freeze())?, moved);
    }

    #[test]
    fn concatenated_batches_split_back(groups in vec(vec(input(), 1..6), 1..6)) {
        let (log, ends) = build_log(&groups)?;
        let split: Vec<(BatchHeader, Bytes)> = batch::batches(log.clone()).collect::<Result<_, _>>()?;
        prop_assert_eq!(split.len(), groups.len());
        let mut start = 0;
        let mut offset = 0u64;
        for (((header, bytes), group), end) in split.iter().zip(&groups).zip(&ends) {
            prop_assert_eq!(bytes, &log.slice(start..*end));
            prop_assert_eq!(header.base_offset, offset);
            prop_assert_eq!(header.record_count as usize, group.len());
            let expected: Vec<_> = group.iter().zip(offset..).map(|(r, o)| r.expected(o)).collect();
            prop_assert_eq!(decode_all(bytes.clone())?, expected);
            offset = header.last_offset() + 1;
            start = *end;
        }
    }

    #[test]
    fn truncated_logs_yield_whole_batches_then_an_error(
        groups in vec(vec(input(), 1..4), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let (log, ends) = build_log(&groups)?;
        let cut = cut.index(log.len());
        let truncated = log.slice(..cut);
        decode_everything(&truncated);
        let items: Vec<_> = batch::batches(truncated).collect();
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        let at_boundary = cut == 0 || ends.contains(&cut);
        prop_assert_eq!(items.len(), whole + usize::from(!at_boundary));
        prop_assert!(items[..whole].iter().all(Result::is_ok));
        if !at_boundary {
            let is_truncated = matches!(items[whole], Err(BatchError::Truncated { .. }));
            prop_assert!(is_truncated, "{:?}", items[whole]);
        }
    }

    #[test]
    fn corrupted_batches_never_panic(
        records in vec(input(), 1..6),
        flips in vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
    ) {
        let mut batch = build(&records)?;
        let mut covered_changed = false;
        for (at, mask) in flips {
            let at = at.index(batch.len());
            batch[at] ^= mask;
            covered_changed |= at >= 17;
        }
        let original = build(&records)?;
        covered_changed &= batch[17..] != original[17..];
        let batch = batch.freeze();
        decode_everything(&batch);
        if covered_changed {
            prop_assert!(batch::verify_crc(&batch).is_err());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..600)) {
        decode_everything(&Bytes::from(bytes));
    }

    #[test]
    fn garbage_records_behind_a_valid_header_never_panic(
        count in 1i32..6,
        attributes in prop_oneof![Just(0i16), Just(8i16)],
        body in vec(any::<u8>(), 35..400),
    ) {
        let header = BatchHeader {
            base_offset: 0,
            batch_length: (HEADER_LEN - LOG_OVERHEAD + body.len()) as i32,
            partition_leader_epoch: 0,
            magic: MAGIC,
            crc: 0,
            attributes,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        };
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let bytes = Bytes::from(bytes);
        let iter = batch::records(bytes.clone())?;
        let items: Vec<_> = iter.collect();
        prop_assert!(!items.is_empty() && items.len() <= count as usize);
        // Either every record decodes, or exactly the last item is an error.
        let errors = items.iter().filter(|r| r.is_err()).count();
        let all_ok = errors == 0 && items.len() == count as usize;
        let last_failed = errors == 1 && items[items.len() - 1].is_err();
        prop_assert!(all_ok || last_failed);
        decode_everything(&bytes);
    }
}

#[test]
fn a_huge_header_count_is_rejected_without_allocating() -> Result<(), BatchError> {
    // One record claiming 2^31 - 1 headers in a 10-byte body.
    let body = [0x14, 0, 0, 0, 0x01, 0x01, 0xfe, 0xff, 0xff, 0xff, 0x0f];
    let header = BatchHeader {
        base_offset: 0,
        batch_length: (HEADER_LEN - LOG_OVERHEAD + body.len()) as i32,
        partition_leader_epoch: 0,
        magic: MAGIC,
        crc: 0,
        attributes: 0,
        last_offset_delta: 0,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: 1,
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(&body);
    let result = decode_all(Bytes::from(bytes));
    assert!(
        matches!(result, Err(BatchError::BadRecord { index: 0, .. })),
        "{result:?}"
    );
    Ok(())
}
