//! Retention deletes whole sealed segments by size and age (and the owner's deletion below an
//! offset, by the same path), and moves the log start, which never moves backwards: not after
//! a failed deletion, nor after a crash in the middle of one.
mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use sluice_storage::io::FaultyIo;
use sluice_storage::{FlushPolicy, Log, LogConfig, StorageError};

/// A log over `io` with small segments, kept under 40 KiB by `retention.bytes`.
fn open_retained(dir: &Path, io: &FaultyIo) -> Log {
    let config = LogConfig {
        retention_bytes: Some(40 * 1024),
        ..small_config(FlushPolicy::None)
    };
    Log::open_with_io(dir, config, Arc::new(io.clone())).unwrap()
}

/// A log with well over 40 KiB in many segments.
fn filled(dir: &Path, io: &FaultyIo) -> Log {
    let log = open_retained(dir, io);
    for i in 0..400 {
        append(&log, "r", 2, 200, i);
    }
    log
}

/// Base offsets of the segment files (of any of the three kinds) in `dir`, sorted.
fn segment_files_on_disk(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let (stem, ext) = name.split_once('.')?;
            ["log", "index", "timeindex"]
                .contains(&ext)
                .then(|| stem.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases.dedup();
    bases
}

/// Asserts the log starts at `start`, serves densely from there and refuses what is below.
fn assert_starts_at(log: &Log, dir: &Path, start: u64) {
    assert_eq!(log.log_start_offset(), start);
    assert!(matches!(
        log.read(start - 1, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let rest = read_all(log, start);
    assert_dense(&rest, start);
    assert_eq!(rest.len() as u64, log.log_end_offset() - start);
    assert!(
        segment_files_on_disk(dir).iter().all(|&b| b >= start),
        "files below the log start {start} remain: {:?}",
        segment_files_on_disk(dir)
    );
}

#[test]
fn a_failed_deletion_moves_the_log_start_forward_only_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = filled(dir.path(), &io);
    // The first doomed segment's log and offset index go, then removals fail.
    io.fail_removes_after(2);
    match log.enforce_retention(0) {
        Err(StorageError::Io { op, path, .. }) => {
            assert_eq!(op, "delete segment file");
            assert!(path.to_string_lossy().ends_with(".timeindex"), "{path:?}");
        }
        other => panic!("expected the injected delete failure, got {other:?}"),
    }
    let start = log.log_start_offset();
    assert!(start > 0, "the pass decided to delete segments");
    io.heal();
    // A crash now: the next open finishes the deletion and starts where retention left it.
    drop(log);
    let log = open_retained(dir.path(), &io);
    assert_starts_at(&log, dir.path(), start);
}

#[test]
fn the_next_pass_finishes_a_failed_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = filled(dir.path(), &io);
    io.fail_removes_after(4);
    assert!(log.enforce_retention(0).is_err());
    let start = log.log_start_offset();
    io.heal();
    let out = log.enforce_retention(0).unwrap();
    assert_eq!(out.segments_deleted, 0, "nothing more is due");
    assert_eq!(out.log_start_offset, start);
    assert_starts_at(&log, dir.path(), start);
}

#[test]
fn a_crash_between_persisting_the_log_start_and_deleting_is_finished_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = filled(dir.path(), &io);
    let before = segment_files_on_disk(dir.path());
    // Every removal fails: the log start is persisted, no file is gone.
    io.fail_removes_after(0);
    assert!(log.enforce_retention(0).is_err());
    let start = log.log_start_offset();
    assert!(start > 0);
    assert_eq!(segment_files_on_disk(dir.path()), before);
    io.heal();
    drop(log); // the crash: no close
    let log = open_retained(dir.path(), &io);
    assert_starts_at(&log, dir.path(), start);
    // And again after a clean close.
    log.close().unwrap();
    drop(log);
    let log = open_retained(dir.path(), &io);
    assert_starts_at(&log, dir.path(), start);
}

#[test]
fn a_failed_log_start_write_deletes_nothing_and_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = filled(dir.path(), &io);
    let (segments, end) = (log.segment_count(), log.log_end_offset());
    for fault in [FaultyIo::fail_atomic_writes, FaultyIo::fail_dir_syncs] {
        fault(&io, true);
        match log.enforce_retention(0) {
            Err(StorageError::Io { path, .. }) => assert!(
                path.ends_with("log-start") || path == dir.path(),
                "the error names the marker or its directory: {path:?}"
            ),
            other => panic!("expected the injected failure, got {other:?}"),
        }
        io.heal();
        assert_eq!(log.log_start_offset(), 0);
        assert_eq!(log.segment_count(), segments);
        assert_eq!(read_all(&log, 0).len() as u64, end);
        assert!(log.failure().is_none(), "no data write failed");
    }
    assert!(log.enforce_retention(0).unwrap().segments_deleted > 0);
}

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

#[test]
fn deleting_below_an_offset_removes_only_whole_segments_below_it() {
    let dir = tempfile::tempdir().unwrap();
    // No retention limits: only the offset decides.
    let config = small_config(FlushPolicy::None);
    let log = Log::open(dir.path(), config.clone()).unwrap();
    for i in 0..400 {
        append(&log, "r", 2, 200, i);
    }
    let end = log.log_end_offset();
    let before = log.segment_count();
    assert!(before > 4, "the test needs several segments, got {before}");
    assert_eq!(log.delete_segments_below(0).unwrap().segments_deleted, 0);

    let floor = end / 2;
    let out = log.delete_segments_below(floor).unwrap();
    assert!(out.segments_deleted > 0);
    let start = log.log_start_offset();
    assert_eq!(out.log_start_offset, start);
    assert!(start > 0 && start <= floor, "start {start}, floor {floor}");
    assert_starts_at(&log, dir.path(), start);
    // The segment holding the floor stayed: nothing more goes at the same floor, nor at
    // the new log start.
    assert_eq!(
        log.delete_segments_below(floor).unwrap().segments_deleted,
        0
    );
    assert_eq!(
        log.delete_segments_below(start).unwrap().segments_deleted,
        0
    );

    // Even past the end the active segment stays, holding the newest records.
    let out = log.delete_segments_below(u64::MAX).unwrap();
    assert!(out.segments_deleted > 0);
    assert_eq!(log.segment_count(), 1);
    let start = log.log_start_offset();
    assert!(start < end);
    assert_starts_at(&log, dir.path(), start);

    // The log start survives a restart.
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), end);
}
