//! Fuzz targets for Sluice, as plain functions over bytes.
//!
//! Each target must accept any input without panicking; a panic is a bug. The targets are
//! run by cargo-fuzz (`fuzz/fuzz_targets/`, see `scripts/fuzz.sh`) and, in `cargo test`, by
//! this crate's tests, which replay the seed corpus and every saved crash
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) and run each target on bounded
//! random and mutated inputs.
//!
//! - [`batch_decode`]: the Kafka v2 record batch decoder. Whatever it accepts re-encodes to a
//!   batch that decodes to the same records.
//! - [`segment_recovery`]: opening a partition directory holding arbitrary segment and index
//!   bytes. Opening may fail, but what the recovered log serves is whole, CRC-valid, densely
//!   numbered batches, and it accepts appends after them.
//! - [`request_validation`]: arbitrary bytes decoded as request messages and run through the
//!   checks the server applies before a request reaches the broker.
//! - [`kafka_request`]: arbitrary bytes read as a stream of Kafka request frames and decoded
//!   as the Kafka listener decodes them.
#![warn(missing_docs)]

use bytes::Bytes;
use prost::Message;
use sluice_broker::{Limits, TopicConfig, validate_group_name, validate_topic_name};
use sluice_grpc::validation::{join_request, position, require_topic};
use sluice_proto::v1 as pb;
use sluice_storage::batch::{self, BatchHeader, RecordBatchBuilder, RecordView};
use sluice_storage::{FlushPolicy, Log, LogConfig};

/// Names of the targets, as used for their corpus and regression directories.
pub const TARGETS: [&str; 4] = [
    "batch_decode",
    "segment_recovery",
    "request_validation",
    "kafka_request",
];

/// Largest frame [`kafka_request`] reads (the listener's limit is configurable; the check
/// is the same).
const KAFKA_FRAME_LIMIT: usize = 1 << 20;

/// Runs the target named `name` (one of [`TARGETS`]) on `data`.
///
/// # Panics
///
/// On an unknown target name, and wherever the target finds a bug.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "batch_decode" => batch_decode(data),
        "segment_recovery" => segment_recovery(data),
        "request_validation" => request_validation(data),
        "kafka_request" => kafka_request(data),
        other => panic!("no fuzz target named {other:?}"),
    }
}

/// Splits `data` into record batches and decodes every record of each (decompressing the
/// records of compressed ones). The record check ([`batch::validate_records`]) must fail
/// exactly as decoding does. Whatever decodes is rebuilt with [`RecordBatchBuilder`], and
/// the rebuilt batch must decode to the same records.
pub fn batch_decode(data: &[u8]) {
    for item in batch::batches(Bytes::copy_from_slice(data)) {
        let Ok((header, bytes)) = item else { break };
        assert_eq!(bytes.len(), header.total_len(), "split length");
        assert_eq!(BatchHeader::parse(&bytes), Ok(header), "header reparses");
        // Only its outcome matters: a CRC mismatch must be an error, not a panic.
        let _ = batch::verify_crc(&bytes);
        let checked = batch::validate_records(&bytes, batch::DEFAULT_MAX_DECOMPRESSED_BYTES);
        let decoded =
            batch::records(bytes).and_then(|records| records.collect::<Result<Vec<_>, _>>());
        assert_eq!(
            checked.err(),
            decoded.as_ref().err().cloned(),
            "the record check and decoding disagree"
        );
        let Ok(records) = decoded else {
            continue;
        };
        assert_eq!(
            records.len(),
            usize::try_from(header.record_count).unwrap_or(0),
            "record count"
        );
        assert_reencodes(&header, &records);
    }
}

/// Rebuilds a batch from decoded records and checks it decodes to the same records.
fn assert_reencodes(header: &BatchHeader, records: &[RecordView]) {
    let mut builder = RecordBatchBuilder::new();
    for record in records {
        let headers = record.headers.iter().map(|(k, v)| (&k[..], v.as_deref()));
        builder
            .push(
                record.timestamp_ms,
                record.key.as_deref(),
                record.value.as_deref(),
                headers,
            )
            .expect("a decoded record re-encodes");
    }
    let mut rebuilt = builder.finish().expect("at least one record");
    batch::set_base_offset(&mut rebuilt, header.base_offset);
    let rebuilt = rebuilt.freeze();
    batch::verify_crc(&rebuilt).expect("a built batch has a valid CRC");
    let again: Vec<RecordView> = batch::records(rebuilt)
        .expect("a built batch parses")
        .collect::<Result<_, _>>()
        .expect("a built batch decodes");
    assert_eq!(again, records, "re-encoded records differ");
}

/// Flag bit of [`segment_recovery`]'s first input byte: leave a clean-shutdown marker.
const CLEAN_SHUTDOWN: u8 = 1;
/// Flag bit of [`segment_recovery`]'s first input byte: index bytes follow.
const WITH_INDEX: u8 = 2;

/// Writes `data` as a partition directory and opens it as a [`Log`].
///
/// Input layout: one flag byte ([`CLEAN_SHUTDOWN`] leaves the marker of a clean shutdown,
/// so the index is trusted; [`WITH_INDEX`] means a big-endian `u16` length and that many
/// bytes of offset index follow), then the bytes of segment `00000000000000000000.log`.
///
/// Opening may fail. When it succeeds, every batch the log returns between its start and its
/// high watermark is whole, CRC-valid and densely numbered, and an append lands at the log
/// end offset and reads back.
pub fn segment_recovery(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (index, segment) = if flags & WITH_INDEX != 0 && rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        (Some(&rest[2..2 + len]), &rest[2 + len..])
    } else {
        (None, rest)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let stem = dir.path().join("00000000000000000000");
    std::fs::write(stem.with_extension("log"), segment).expect("write segment");
    if let Some(index) = index {
        std::fs::write(stem.with_extension("index"), index).expect("write index");
    }
    if flags & CLEAN_SHUTDOWN != 0 {
        std::fs::write(dir.path().join("clean-shutdown"), b"").expect("write marker");
    }
    let config = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 64,
        flush: FlushPolicy::None,
        ..LogConfig::default()
    };
    let Ok(log) = Log::open(dir.path(), config) else {
        return;
    };
    let served = read_all(&log);
    if served.is_some_and(|end| end == log.high_watermark()) {
        let mut builder = RecordBatchBuilder::new();
        builder
            .push(1, None, Some(b"after recovery"), [])
            .expect("one small record");
        let mut appended = builder.finish().expect("one record");
        let end = log.log_end_offset();
        if let Ok(info) = log.append(&mut appended) {
            assert_eq!(info.base_offset, end, "append lands at the log end");
            let read = log.read(end, 1 << 16).expect("the append reads back");
            let (header, _) = batch::batches(read.batches)
                .next()
                .expect("a batch")
                .expect("a whole batch");
            assert_eq!(header.base_offset, end);
        }
    }
}

/// Reads every batch from the log start to the high watermark, checking each; returns the
/// offset after the last record read, or `None` if a read failed (as it may on corrupt data
/// it refuses to serve).
fn read_all(log: &Log) -> Option<u64> {
    let mut offset = log.log_start_offset();
    let high_watermark = log.high_watermark();
    while offset < high_watermark {
        let read = log.read(offset, 1 << 16).ok()?;
        assert!(!read.batches.is_empty(), "a read below the high watermark");
        let mut next = offset;
        for item in batch::batches(read.batches) {
            let (header, bytes) = item.expect("reads return whole batches");
            batch::verify_crc(&bytes).expect("reads return only CRC-valid batches");
            for record in batch::records(bytes).expect("a served batch parses") {
                let record = record.expect("a served record decodes");
                if record.offset >= offset {
                    assert_eq!(record.offset, next, "offsets are dense");
                    next += 1;
                }
            }
            assert_eq!(header.last_offset() + 1, next.max(offset), "batch ends");
        }
        assert!(next > offset, "a read makes progress");
        offset = next;
    }
    Some(offset)
}

/// Decodes `data[1..]` as the request message `data[0]` selects and runs the server's
/// checks on it: required fields, positions, joins, topic and group names, topic configs,
/// and the records of a produce request encoded as a batch (which must decode to the same
/// records).
pub fn request_validation(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 6 {
        0 => {
            if let Ok(request) = pb::ProduceRequest::decode(body) {
                check_produce(&request);
            }
        }
        1 => {
            if let Ok(request) = pb::FetchRequest::decode(body) {
                check_topic("topic", &request.topic);
            }
        }
        2 => {
            if let Ok(request) = pb::SubscribeRequest::decode(body) {
                check_topic("topic", &request.topic);
                let _ = position(request.start, "start");
            }
        }
        3 => {
            if let Ok(request) = pb::CreateTopicRequest::decode(body) {
                check_topic("name", &request.name);
                let _ = TopicConfig::from_overrides(&TopicConfig::default(), &request.config);
            }
        }
        4 => {
            if let Ok(request) = pb::ConsumeRequest::decode(body)
                && let Some(pb::consume_request::Kind::Join(join)) = request.kind
                && let Ok(join) = join_request(join, "127.0.0.1".into())
            {
                let _ = validate_group_name(&join.group);
                for topic in &join.topics {
                    let _ = validate_topic_name(topic, Limits::default().max_topic_name_len);
                }
            }
        }
        _ => {
            if let Ok(request) = pb::ListOffsetsRequest::decode(body) {
                check_topic("topic", &request.topic);
                let _ = position(request.spec, "spec");
            }
        }
    }
}

/// The server's and the broker's checks of a topic name, which must agree on empty names.
fn check_topic(field: &str, topic: &str) {
    let required = require_topic(field, topic);
    let valid = validate_topic_name(topic, Limits::default().max_topic_name_len);
    if required.is_err() {
        assert!(valid.is_err(), "an empty name passes the broker's check");
    }
}

/// Checks a produce request's topic, then encodes its records as one batch the way the
/// broker does (header keys as bytes, values never null) and decodes them back.
fn check_produce(request: &pb::ProduceRequest) {
    check_topic("topic", &request.topic);
    let mut builder = RecordBatchBuilder::new();
    for record in &request.records {
        let headers = record
            .headers
            .iter()
            .map(|h| (h.key.as_bytes(), Some(&h.value[..])));
        if builder
            .push(
                record.timestamp_ms,
                record.key.as_deref(),
                Some(&record.value),
                headers,
            )
            .is_err()
        {
            return;
        }
    }
    let Some(built) = builder.finish() else {
        return;
    };
    let decoded: Vec<RecordView> = batch::records(built.freeze())
        .expect("a built batch parses")
        .collect::<Result<_, _>>()
        .expect("a built batch decodes");
    assert_eq!(decoded.len(), request.records.len());
    for (got, sent) in decoded.iter().zip(&request.records) {
        assert_eq!(got.key, sent.key, "key");
        assert_eq!(got.value.as_ref(), Some(&sent.value), "value");
        assert_eq!(got.timestamp_ms, sent.timestamp_ms, "timestamp");
        let got_headers: Vec<(&[u8], Option<&[u8]>)> = got
            .headers
            .iter()
            .map(|(k, v)| (&k[..], v.as_deref()))
            .collect();
        let sent_headers: Vec<(&[u8], Option<&[u8]>)> = sent
            .headers
            .iter()
            .map(|h| (h.key.as_bytes(), Some(&h.value[..])))
            .collect();
        assert_eq!(got_headers, sent_headers, "headers");
    }
}

/// Reads `data` as a Kafka connection's byte stream: frames (size-checked before anything is
/// allocated), each decoded as the listener decodes requests. Reading stops at the first
/// frame error, as the listener closes the connection there. A decoded request must name a
/// served API in a served version.
pub fn kafka_request(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut stream = data;
        while let Ok(Some(frame)) = sluice_kafka::read_frame(&mut stream, KAFKA_FRAME_LIMIT).await {
            assert!(frame.len() <= KAFKA_FRAME_LIMIT, "frame over the limit");
            let Ok(request) = sluice_kafka::decode_request(frame) else {
                break;
            };
            let version = request.header.request_api_version;
            let served = sluice_kafka::api::SUPPORTED
                .iter()
                .any(|&(key, min, max)| key == request.key && (min..=max).contains(&version));
            assert!(
                served || request.key == sluice_kafka::api::ApiKey::ApiVersions,
                "decoded an unserved request: {:?} v{version}",
                request.key
            );
        }
    });
}
