//! Compressed client batches and `message.timestamp.type`: stored as sent, served
//! decompressed, checked at produce, and stamped with the append time where the topic asks.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression as KafkaCompression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_broker::{BrokerError, NewRecord, OffsetSpec};
use sluice_storage::batch::{self, BatchHeader, Compression};

use crate::common::{TestBroker, overrides};

const CODECS: [(KafkaCompression, Compression); 4] = [
    (KafkaCompression::Gzip, Compression::Gzip),
    (KafkaCompression::Snappy, Compression::Snappy),
    (KafkaCompression::Lz4, Compression::Lz4),
    (KafkaCompression::Zstd, Compression::Zstd),
];

/// One batch of `values` compressed with `codec`, as a Kafka client encodes it: producer
/// timestamps from `first_ms` on, keys `k0`, `k1`, ...
fn client_batch(codec: KafkaCompression, values: &[String], first_ms: i64) -> BytesMut {
    let records: Vec<Record> = values
        .iter()
        .zip(0i64..)
        .map(|(value, i)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32 - 1,
            timestamp: first_ms + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(value.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
    buf
}

/// `n` values that compress well.
fn values(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag}-{i:04}-").repeat(20))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_are_stored_compressed_and_served_decompressed() {
    let t = TestBroker::new();
    t.broker
        .create_topic("zipped", 1, &overrides(&[]))
        .await
        .expect("create");
    let mut sent = Vec::new();
    let mut expected = Vec::new();
    for (i, (kafka, codec)) in CODECS.into_iter().enumerate() {
        let values = values(codec.name(), 40);
        let first_ms = 1_700_000_000_000 + 1_000 * i as i64;
        let batch = client_batch(kafka, &values, first_ms);
        let appended = t
            .broker
            .produce_batches("zipped", 0, batch.clone())
            .await
            .expect("compressed produce");
        assert_eq!(
            (appended.base_offset, appended.record_count),
            (40 * i as u64, 40)
        );
        sent.push((codec, batch));
        expected.extend(
            values
                .into_iter()
                .enumerate()
                .map(|(j, v)| (40 * i as u64 + j as u64, first_ms + j as i64, v)),
        );
    }
    let fetched = t
        .broker
        .fetch("zipped", 0, 0, 1 << 20, Duration::ZERO)
        .await
        .expect("fetch");
    // The stored batches are the client's, compressed, with only the base offset rewritten.
    let stored: Vec<(BatchHeader, Bytes)> = batch::batches(fetched.batches.clone())
        .collect::<Result<_, _>>()
        .expect("whole batches");
    assert_eq!(stored.len(), 4);
    for ((header, bytes), (codec, batch)) in stored.iter().zip(&sent) {
        assert_eq!(header.compression(), Some(*codec));
        assert_eq!(bytes[8..], batch[8..]);
    }
    // Records come out decompressed.
    let records: Vec<(u64, i64, String)> = fetched
        .records()
        .map(|r| {
            let r = r.expect("record");
            let value = String::from_utf8(r.value.expect("value").to_vec()).expect("text");
            (r.offset, r.timestamp_ms, value)
        })
        .collect();
    assert_eq!(records, expected);
    // From the middle of a compressed batch, and by timestamp into one.
    let middle = t
        .broker
        .fetch("zipped", 0, 95, 1, Duration::ZERO)
        .await
        .expect("fetch");
    let first = middle.records().next().expect("a record").expect("valid");
    assert_eq!(first.offset, 95);
    assert_eq!(
        t.broker
            .list_offset("zipped", 0, OffsetSpec::Timestamp(1_700_000_002_017))
            .expect("lookup"),
        Some(97)
    );
    let info = t.broker.describe_topic("zipped").expect("describe");
    assert_eq!(info.partitions[0].traffic.records_in, 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_compressed_batches_are_refused_at_produce() {
    let t = TestBroker::new();
    t.broker
        .create_topic("damaged", 1, &overrides(&[]))
        .await
        .expect("create");
    for (kafka, codec) in CODECS {
        let good = client_batch(kafka, &values("x", 30), 1_000);
        // Cut the compressed records short and sign the batch again, as a buggy client would:
        // the CRC holds, the records do not.
        let len = good.len() - 8;
        let mut cut = BytesMut::from(&good[..len]);
        cut[8..12].copy_from_slice(&(len as i32 - 12).to_be_bytes());
        let crc = crc32c::crc32c(&cut[21..]);
        cut[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = t.broker.submit_batches("damaged", 0, cut).map(|_| ());
        assert!(
            matches!(&err, Err(BrokerError::InvalidBatch { field: "records", reason }) if reason.contains(codec.name())),
            "{codec}: {err:?}"
        );
    }
    assert_eq!(
        t.broker
            .list_offset("damaged", 0, OffsetSpec::Latest)
            .expect("latest"),
        Some(0),
        "nothing was queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decompressed_size_is_capped_at_produce_and_at_fetch() {
    let t = TestBroker::new();
    t.broker
        .create_topic("capped", 1, &overrides(&[]))
        .await
        .expect("create");
    let batch = client_batch(KafkaCompression::Zstd, &values("y", 100), 1_000);
    t.broker
        .produce_batches("capped", 0, batch.clone())
        .await
        .expect("under the default cap");
    // A lower cap refuses the same batch at produce, and the stored one when it is decoded.
    let t = t.restart_with(|config| config.limits.max_decompressed_batch_bytes = 4096);
    let err = t.broker.submit_batches("capped", 0, batch).map(|_| ());
    assert!(
        matches!(
            err,
            Err(BrokerError::DecompressedTooLarge {
                codec: Compression::Zstd,
                limit: 4096
            })
        ),
        "{err:?}"
    );
    let fetched = t
        .broker
        .fetch("capped", 0, 0, 0, Duration::ZERO)
        .await
        .expect("the stored bytes are served");
    let decoded: Vec<_> = fetched.records().collect();
    assert_eq!(decoded.len(), 1);
    let err = decoded.into_iter().next().and_then(Result::err);
    assert!(
        err.as_ref().is_some_and(|e| e
            .to_string()
            .contains("limits.max_decompressed_batch_bytes = 4096")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_replaces_the_producers_timestamps() {
    let t = TestBroker::new();
    t.broker
        .create_topic(
            "stamped",
            1,
            &overrides(&[("message.timestamp.type", "LogAppendTime")]),
        )
        .await
        .expect("create");
    let info = t.broker.describe_topic("stamped").expect("describe");
    assert_eq!(info.config["message.timestamp.type"], "LogAppendTime");
    let before = now_ms();
    t.broker
        .produce(
            "stamped",
            Some(0),
            [NewRecord::new("record").with_timestamp(5)],
        )
        .await
        .expect("records produce");
    t.broker
        .produce_batches(
            "stamped",
            0,
            client_batch(KafkaCompression::Lz4, &values("z", 3), 7),
        )
        .await
        .expect("raw produce");
    let after = now_ms();
    let fetched = t
        .broker
        .fetch("stamped", 0, 0, 1 << 20, Duration::ZERO)
        .await
        .expect("fetch");
    for item in batch::batches(fetched.batches.clone()) {
        let (header, bytes) = item.expect("whole batch");
        batch::verify_crc(&bytes).expect("the CRC was recomputed");
        assert!(header.is_log_append_time());
        assert!(
            (before..=after).contains(&header.max_timestamp),
            "{header:?}"
        );
    }
    let stamps: Vec<i64> = fetched
        .records()
        .map(|r| r.expect("record").timestamp_ms)
        .collect();
    assert_eq!(stamps.len(), 4);
    assert!(
        stamps.iter().all(|ts| (before..=after).contains(ts)),
        "{stamps:?}"
    );
    // Lookups by time see the append times, not the producers' 5 and 7.
    assert_eq!(
        t.broker
            .list_offset("stamped", 0, OffsetSpec::Timestamp(before))
            .expect("lookup"),
        Some(0)
    );
    assert_eq!(
        t.broker
            .list_offset("stamped", 0, OffsetSpec::Timestamp(after + 1))
            .expect("lookup"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_timestamp_type_is_refused() {
    let t = TestBroker::new();
    let err = t
        .broker
        .create_topic(
            "bad",
            1,
            &overrides(&[("message.timestamp.type", "AppendTime")]),
        )
        .await;
    assert!(
        matches!(&err, Err(BrokerError::InvalidConfig { key, reason, .. }) if key == "message.timestamp.type" && reason.contains("CreateTime or LogAppendTime")),
        "{err:?}"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970")
}

#[test]
fn a_zero_decompression_cap_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = crate::common::config(dir.path());
    config.limits.max_decompressed_batch_bytes = 0;
    let err = sluice_broker::Broker::open(config).map(|_| ());
    assert!(
        matches!(&err, Err(BrokerError::InvalidConfig { key, .. }) if key == "max_decompressed_batch_bytes"),
        "{err:?}"
    );
}
