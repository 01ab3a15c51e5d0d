//! Compatibility of the record batch codec with an independent Kafka implementation, the
//! `kafka-protocol` crate: each side decodes what the other encodes, and for the same input
//! both write the same bytes.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, RecordSet,
    TimestampType,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sluice_storage::BatchError;
use sluice_storage::batch::{self, BatchHeader, RecordBatchBuilder, RecordView};

/// A record with the fields both implementations share. Header keys are unique UTF-8 strings,
/// as `kafka-protocol` keeps headers in a map keyed by string.
#[derive(Debug, Clone)]
struct Input {
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: BTreeMap<String, Option<Vec<u8>>>,
}

/// Timestamps whose differences stay within `i64` (`kafka-protocol` subtracts them unchecked).
const TIMESTAMP_RANGE: std::ops::Range<i64> = -(1 << 60)..(1 << 60);

fn input_with(timestamp: impl Strategy<Value = i64>) -> impl Strategy<Value = Input> {
    (
        timestamp,
        proptest::option::of(vec(any::<u8>(), 0..300)),
        proptest::option::of(vec(any::<u8>(), 0..300)),
        btree_map(
            "[a-zA-Z0-9_.é-]{0,10}",
            proptest::option::of(vec(any::<u8>(), 0..30)),
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

fn input() -> impl Strategy<Value = Input> {
    input_with(TIMESTAMP_RANGE)
}

/// Producer-side batch fields `kafka-protocol` lets a caller choose.
#[derive(Debug, Clone, Copy)]
struct Producer {
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

/// What Sluice's builder writes.
const SLUICE_DEFAULTS: Producer = Producer {
    partition_leader_epoch: 0,
    producer_id: -1,
    producer_epoch: -1,
    base_sequence: -1,
};

fn to_kafka(inputs: &[Input], base_offset: i64, producer: Producer) -> Vec<Record> {
    inputs
        .iter()
        .zip(0i32..)
        .map(|(input, delta)| {
            let mut record = Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: producer.partition_leader_epoch,
                producer_id: producer.producer_id,
                producer_epoch: producer.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: base_offset + i64::from(delta),
                sequence: producer.base_sequence.wrapping_add(delta),
                timestamp: input.timestamp_ms,
                key: input.key.clone().map(Bytes::from),
                value: input.value.clone().map(Bytes::from),
                headers: Default::default(),
            };
            for (key, value) in &input.headers {
                record.headers.insert(
                    StrBytes::from_string(key.clone()),
                    value.clone().map(Bytes::from),
                );
            }
            record
        })
        .collect()
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn kafka_encode(records: &[Record]) -> Result<Bytes, TestCaseError> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).map_err(fail)?;
    Ok(buf.freeze())
}

fn kafka_decode(mut bytes: Bytes) -> Result<RecordSet, TestCaseError> {
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(fail)?;
    prop_assert!(bytes.is_empty(), "{} bytes left undecoded", bytes.len());
    Ok(set)
}

fn sluice_build(inputs: &[Input]) -> Result<Bytes, BatchError> {
    let mut builder = RecordBatchBuilder::new();
    for input in inputs {
        builder.push(
            input.timestamp_ms,
            input.key.as_deref(),
            input.value.as_deref(),
            input
                .headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_deref())),
        )?;
    }
    Ok(builder.finish().ok_or(BatchError::BadLength(0))?.freeze())
}

fn expected_view(input: &Input, offset: u64) -> RecordView {
    RecordView {
        offset,
        timestamp_ms: input.timestamp_ms,
        key: input.key.clone().map(Bytes::from),
        value: input.value.clone().map(Bytes::from),
        headers: input
            .headers
            .iter()
            .map(|(k, v)| (Bytes::from(k.clone()), v.clone().map(Bytes::from)))
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Sluice encodes, `kafka-protocol` decodes: every field of every record matches.
    #[test]
    fn kafka_protocol_decodes_sluice_batches(inputs in vec(input(), 1..16)) {
        let batch = sluice_build(&inputs)?;
        let set = kafka_decode(batch)?;
        prop_assert_eq!(set.version, 2);
        prop_assert_eq!(set.compression, Compression::None);
        prop_assert_eq!(set.records.len(), inputs.len());
        for ((record, input), delta) in set.records.iter().zip(&inputs).zip(0i32..) {
            prop_assert_eq!(record.offset, i64::from(delta));
            prop_assert_eq!(record.timestamp, input.timestamp_ms);
            prop_assert_eq!(record.timestamp_type, TimestampType::Creation);
            prop_assert_eq!(record.key.as_deref(), input.key.as_deref());
            prop_assert_eq!(record.value.as_deref(), input.value.as_deref());
            let headers: Vec<(&str, Option<&[u8]>)> =
                record.headers.iter().map(|(k, v)| (&**k, v.as_deref())).collect();
            let expected: Vec<(&str, Option<&[u8]>)> =
                input.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            prop_assert_eq!(headers, expected);
            prop_assert!(!record.transactional && !record.control && !record.delete_horizon);
            prop_assert_eq!(record.partition_leader_epoch, 0);
            prop_assert_eq!(record.producer_id, -1);
            prop_assert_eq!(record.producer_epoch, -1);
            prop_assert_eq!(record.sequence, (-1i32).wrapping_add(delta));
        }
    }

    /// `kafka-protocol` encodes, Sluice decodes: header and records match what was encoded.
    #[test]
    fn sluice_decodes_kafka_protocol_batches(
        inputs in vec(input(), 1..16),
        base_offset in 0i64..(1 << 60),
        partition_leader_epoch in any::<i32>(),
        producer_id in any::<i64>(),
        producer_epoch in any::<i16>(),
        base_sequence in any::<i32>(),
    ) {
        let producer = Producer { partition_leader_epoch, producer_id, producer_epoch, base_sequence };
        let bytes = kafka_encode(&to_kafka(&inputs, base_offset, producer))?;
        let split: Vec<(BatchHeader, Bytes)> = batch::batches(bytes).collect::<Result<_, _>>()?;
        prop_assert_eq!(split.len(), 1);
        let (header, batch) = split.into_iter().next().ok_or_else(|| fail("no batch"))?;
        batch::verify_crc(&batch)?;

        let timestamps = inputs.iter().map(|i| i.timestamp_ms);
        prop_assert_eq!(header.base_offset, base_offset as u64);
        prop_assert_eq!(header.partition_leader_epoch, partition_leader_epoch);
        prop_assert_eq!(header.attributes, 0);
        prop_assert_eq!(header.record_count as usize, inputs.len());
        prop_assert_eq!(header.last_offset_delta as usize, inputs.len() - 1);
        prop_assert_eq!(Some(header.base_timestamp), timestamps.clone().min());
        prop_assert_eq!(Some(header.max_timestamp), timestamps.max());
        prop_assert_eq!(header.producer_id, producer_id);
        prop_assert_eq!(header.producer_epoch, producer_epoch);
        prop_assert_eq!(header.base_sequence, base_sequence);
        prop_assert_eq!(header.last_offset(), base_offset as u64 + inputs.len() as u64 - 1);

        let records: Vec<RecordView> = batch::records(batch)?.collect::<Result<_, _>>()?;
        let expected: Vec<RecordView> = inputs
            .iter()
            .zip(base_offset as u64..)
            .map(|(input, offset)| expected_view(input, offset))
            .collect();
        prop_assert_eq!(records, expected);
    }

    /// Given the same records and the header values Sluice writes, both encoders produce the
    /// same bytes. `kafka-protocol` takes the smallest timestamp as the base timestamp and Sluice
    /// the first record's (as Kafka's own producer does), so the timestamps here are sorted.
    #[test]
    fn both_encoders_write_identical_bytes(mut inputs in vec(input(), 1..16)) {
        inputs.sort_by_key(|i| i.timestamp_ms);
        let ours = sluice_build(&inputs)?;
        let theirs = kafka_encode(&to_kafka(&inputs, 0, SLUICE_DEFAULTS))?;
        prop_assert_eq!(ours, theirs);
    }
}

#[test]
fn sluice_rejects_transactional_and_control_batches() -> Result<(), TestCaseError> {
    let inputs = [Input {
        timestamp_ms: 5,
        key: None,
        value: Some(b"v".to_vec()),
        headers: BTreeMap::new(),
    }];
    let mut records = to_kafka(&inputs, 0, SLUICE_DEFAULTS);
    records[0].transactional = true;
    let bytes = kafka_encode(&records)?;
    assert_eq!(
        batch::records(bytes).err(),
        Some(BatchError::UnsupportedAttributes(1 << 4))
    );
    records[0].transactional = false;
    records[0].control = true;
    let bytes = kafka_encode(&records)?;
    assert_eq!(
        batch::batches(bytes).next(),
        Some(Err(BatchError::UnsupportedAttributes(1 << 5)))
    );
    Ok(())
}

#[test]
fn sluice_splits_several_kafka_protocol_batches() -> Result<(), TestCaseError> {
    let inputs: Vec<Input> = (0..5)
        .map(|i| Input {
            timestamp_ms: 1_700_000_000_000 + i,
            key: Some(format!("key-{i}").into_bytes()),
            value: Some(vec![i as u8; 10]),
            headers: BTreeMap::from([("trace".to_string(), Some(b"abc".to_vec()))]),
        })
        .collect();
    // A change of producer id starts a new batch in kafka-protocol's encoder.
    let mut records = to_kafka(&inputs, 10, SLUICE_DEFAULTS);
    for record in &mut records[3..] {
        record.producer_id = 42;
        record.producer_epoch = 0;
    }
    let bytes = kafka_encode(&records)?;
    let split: Vec<(BatchHeader, Bytes)> = batch::batches(bytes).collect::<Result<_, _>>()?;
    let shape: Vec<(u64, i32, i64)> = split
        .iter()
        .map(|(h, _)| (h.base_offset, h.record_count, h.producer_id))
        .collect();
    assert_eq!(shape, [(10, 3, -1), (13, 2, 42)]);
    let mut decoded = Vec::new();
    for (_, batch) in split {
        batch::verify_crc(&batch)?;
        for record in batch::records(batch)? {
            decoded.push(record?);
        }
    }
    let expected: Vec<RecordView> = inputs
        .iter()
        .zip(10u64..)
        .map(|(input, offset)| expected_view(input, offset))
        .collect();
    assert_eq!(decoded, expected);
    Ok(())
}
