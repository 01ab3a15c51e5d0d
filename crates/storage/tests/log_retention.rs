//! Retention deletes whole sealed segments by size and age, and moves the log start.
mod common;

use common::*;
use sluice_storage::{FlushPolicy, Log, LogConfig, StorageError};

#[test]
fn retention_bytes_keeps_the_log_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(40 * 1024),
        ..small_config(FlushPolicy::None)
    };
    let log = Log::open(dir.path(), config).unwrap();
    for i in 0..400 {
        append(&log, "r", 2, 200, i);
    }
    let before = log.segment_count();
    let out = log.enforce_retention(0).unwrap();
    assert!(out.segments_deleted > 0);
    assert_eq!(log.segment_count(), before - out.segments_deleted);
    assert!(
        log.size_bytes() <= 40 * 1024 + 16 * 1024,
        "size {}",
        log.size_bytes()
    );
    assert_eq!(out.log_start_offset, log.log_start_offset());
    let start = log.log_start_offset();
    assert!(start > 0);
    match log.read(start - 1, 100) {
        Err(StorageError::OffsetOutOfRange {
            log_start_offset, ..
        }) => assert_eq!(log_start_offset, start),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    let rest = read_all(&log, start);
    assert_dense(&rest, start);
    assert_eq!(rest.len() as u64, log.log_end_offset() - start);
    // The new start survives a restart.
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    assert_eq!(log.log_start_offset(), start);
}

#[test]
fn retention_ms_deletes_segments_whose_newest_record_is_old() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(1_000),
        ..small_config(FlushPolicy::None)
    };
    let log = Log::open(dir.path(), config).unwrap();
    for i in 0..200 {
        append(&log, "old", 2, 200, 10_000 + i);
    }
    let old_end = log.log_end_offset();
    for i in 0..200 {
        append(&log, "new", 2, 200, 100_000 + i);
    }
    // "now" = 100_500: everything stamped before 99_500 is past retention.
    let out = log.enforce_retention(100_500).unwrap();
    assert!(out.segments_deleted > 0);
    let start = log.log_start_offset();
    assert!(start <= old_end, "no segment with a recent record may go");
    assert!(start > 0);
    // The active segment is never deleted, even when everything is old.
    let out = log.enforce_retention(i64::MAX).unwrap();
    assert!(log.segment_count() >= 1);
    assert_eq!(out.log_start_offset, log.log_start_offset());
    assert_eq!(log.read(log.high_watermark(), 10).unwrap().batches.len(), 0);
}
