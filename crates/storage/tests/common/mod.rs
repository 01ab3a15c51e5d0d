//! Helpers shared by the storage tests.
#![allow(dead_code, unreachable_pub)]

use bytes::{Bytes, BytesMut};
use sluice_storage::batch::{self, RecordBatchBuilder};
use sluice_storage::{FlushPolicy, Log, LogConfig};

/// A batch of `n` records whose values are `"{tag}-{i}"` padded to `size` bytes, timestamps `ts`.
pub fn batch(tag: &str, n: usize, size: usize, ts: i64) -> BytesMut {
    let mut b = RecordBatchBuilder::with_capacity(n * (size + 32));
    for i in 0..n {
        let mut value = format!("{tag}-{i}").into_bytes();
        value.resize(size.max(value.len()), b'.');
        let key = format!("k{i}");
        b.push(ts, Some(key.as_bytes()), Some(&value), std::iter::empty())
            .expect("push");
    }
    b.finish().expect("non-empty batch")
}

/// Appends `batch(tag, n, size, ts)` and returns its base offset.
pub fn append(log: &Log, tag: &str, n: usize, size: usize, ts: i64) -> u64 {
    let mut b = batch(tag, n, size, ts);
    log.append(&mut b).expect("append").base_offset
}

/// A small-segment config for tests.
pub fn small_config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        flush,
        ..LogConfig::default()
    }
}

/// Every record from `from` to the high watermark: (offset, timestamp, value).
pub fn read_all(log: &Log, from: u64) -> Vec<(u64, i64, Bytes)> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.high_watermark() {
        let r = log.read(next, 64 * 1024).expect("read");
        assert!(
            !r.batches.is_empty(),
            "empty read below the high watermark at {next}"
        );
        for b in batch::batches(r.batches) {
            let (_, bytes) = b.expect("whole batch");
            for rec in batch::records(bytes).expect("records") {
                let rec = rec.expect("record");
                if rec.offset >= next {
                    out.push((rec.offset, rec.timestamp_ms, rec.value.unwrap_or_default()));
                }
            }
        }
        next = out.last().map_or(next, |r| r.0 + 1);
    }
    out
}

/// Asserts offsets from `from` are dense and returns how many records there were.
pub fn assert_dense(records: &[(u64, i64, Bytes)], from: u64) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.0, from + i as u64, "offsets must be dense");
    }
}
