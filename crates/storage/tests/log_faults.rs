//! Failures of the file operations besides segment data: directory fsyncs, marker files and
//! index allocation. Each is a clean error (a latched read-only log where a write may have
//! been lost), never a panic, a lost acknowledged record or a wrong log start.
mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use sluice_storage::io::FaultyIo;
use sluice_storage::{FlushPolicy, Log, StorageError};

fn open(dir: &Path, io: &FaultyIo) -> Log {
    Log::open_with_io(dir, small_config(FlushPolicy::Fsync), Arc::new(io.clone())).unwrap()
}

/// Appends 200-byte records until one fails or `limit` appends succeeded; returns the
/// acknowledged count and the failure.
fn append_until_failure(log: &Log, limit: usize) -> (u64, Option<StorageError>) {
    let mut acked = 0;
    for i in 0..limit {
        match log.append(&mut batch("f", 1, 200, i as i64)) {
            Ok(_) => acked += 1,
            Err(e) => return (acked, Some(e)),
        }
    }
    (acked, None)
}

#[test]
fn a_failing_directory_fsync_at_a_roll_latches_the_log_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = open(dir.path(), &io);
    io.fail_dir_syncs(true);
    // 16 KiB segments: a roll within 100 appends.
    let (acked, failure) = append_until_failure(&log, 100);
    match failure {
        Some(StorageError::Failed { reason, .. }) => {
            assert!(reason.contains("sync directory"), "{reason}")
        }
        other => panic!("expected the latched failure of the roll, got {other:?}"),
    }
    io.heal();
    // The new segment's directory entry may not be durable: the log stays read-only.
    assert!(matches!(
        log.append(&mut batch("after", 1, 10, 0)),
        Err(StorageError::Failed { .. })
    ));
    assert!(log.failure().is_some());
    assert_eq!(read_all(&log, 0).len() as u64, acked);
    drop(log);
    let log = open(dir.path(), &io);
    assert_eq!(log.log_end_offset(), acked);
    assert_eq!(append(&log, "resumed", 1, 10, 0), acked);
}

#[test]
fn a_failing_clean_shutdown_marker_fails_close_and_the_next_open_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = open(dir.path(), &io);
    let (acked, failure) = append_until_failure(&log, 200);
    assert!(failure.is_none());
    io.fail_atomic_writes(true);
    match log.close() {
        Err(StorageError::Io { op, path, .. }) => {
            assert_eq!(op, "write clean-shutdown marker");
            assert!(path.ends_with("clean-shutdown"));
        }
        other => panic!("expected the injected marker failure, got {other:?}"),
    }
    assert!(!dir.path().join("clean-shutdown").exists());
    io.heal();
    drop(log);
    // Without the marker the open scans, and keeps everything.
    let log = open(dir.path(), &io);
    assert_eq!(log.log_end_offset(), acked);
    let all = read_all(&log, 0);
    assert_eq!(all.len() as u64, acked);
    assert_dense(&all, 0);
}

#[test]
fn a_failing_index_allocation_refuses_the_roll_cleanly_and_appends_resume() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = open(dir.path(), &io);
    io.fail_index_allocation(true);
    // The active index cannot back more entries, so it counts as full and the log rolls;
    // the new segment's indexes cannot be allocated, so the roll fails.
    let (acked, failure) = append_until_failure(&log, 200);
    match failure {
        Some(StorageError::Io { op, source, .. }) => {
            assert_eq!(op, "create index");
            assert_eq!(source.raw_os_error(), Some(28), "{source}");
        }
        other => panic!("expected the index allocation failure, got {other:?}"),
    }
    // Nothing was written and nothing latched: a full disk is not a lost write.
    assert!(log.failure().is_none());
    assert_eq!(log.log_end_offset(), acked);
    io.heal();
    assert_eq!(append(&log, "resumed", 1, 10, 0), acked);
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), &io);
    let all = read_all(&log, 0);
    assert_eq!(all.len() as u64, acked + 1);
    assert_dense(&all, 0);
}

#[test]
fn a_failing_index_allocation_at_open_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = open(dir.path(), &io);
    append(&log, "a", 3, 10, 0);
    log.close().unwrap();
    drop(log);
    io.fail_index_allocation(true);
    // Reopening makes the active segment's trimmed indexes writable again: that needs room.
    match Log::open_with_io(
        dir.path(),
        small_config(FlushPolicy::Fsync),
        Arc::new(io.clone()),
    ) {
        Err(StorageError::Io { op, .. }) => assert_eq!(op, "map index"),
        other => panic!("expected the index allocation failure, got {other:?}"),
    }
    io.heal();
    let log = open(dir.path(), &io);
    assert_eq!(read_all(&log, 0).len(), 3);
}
