//! `Log::set_config` swaps the settings of an open log: each takes effect at the next
//! operation that reads it, and an invalid config is refused whole.
mod common;

use std::sync::Arc;

use common::*;
use sluice_storage::io::FaultyIo;
use sluice_storage::{FlushPolicy, Log, LogConfig, StorageError};

#[test]
fn an_invalid_config_is_refused_and_the_old_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    let bad = LogConfig {
        segment_bytes: 10,
        ..small_config(FlushPolicy::None)
    };
    match log.set_config(bad) {
        Err(StorageError::InvalidConfig(reason)) => {
            assert!(reason.contains("segment.bytes"), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert_eq!(log.config().segment_bytes, 16 * 1024);
    append(&log, "a", 1, 10, 1);
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn lowered_retention_applies_at_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    for i in 0..200 {
        append(&log, "r", 2, 200, i);
    }
    assert!(log.segment_count() > 3);
    assert_eq!(log.enforce_retention(i64::MAX).unwrap().segments_deleted, 0);

    log.set_config(LogConfig {
        retention_ms: Some(1),
        ..log.config()
    })
    .unwrap();
    let outcome = log.enforce_retention(1_000_000).unwrap();
    assert!(outcome.segments_deleted > 0, "{outcome:?}");
    // Every sealed segment was old enough: only the active one is left.
    assert_eq!(log.segment_count(), 1);
    assert_dense(
        &read_all(&log, log.log_start_offset()),
        log.log_start_offset(),
    );
}

#[test]
fn segment_size_changes_apply_at_the_next_roll() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    for i in 0..20 {
        append(&log, "s", 1, 200, i);
    }
    assert_eq!(log.segment_count(), 1, "5 KiB fits one 16 KiB segment");

    // Smaller segments: the next appends roll every few batches.
    log.set_config(LogConfig {
        segment_bytes: 1024,
        ..log.config()
    })
    .unwrap();
    for i in 20..40 {
        append(&log, "s", 1, 200, i);
    }
    let after_shrink = log.segment_count();
    assert!(after_shrink >= 5, "{after_shrink} segments");

    // Much larger segments with a dense index: the active segment's index was sized for
    // 1 KiB, so it fills and the log rolls early rather than losing index entries.
    log.set_config(LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 1,
        ..log.config()
    })
    .unwrap();
    for i in 40..80 {
        append(&log, "s", 1, 200, i);
    }
    assert!(log.segment_count() > after_shrink);
    assert_dense(&read_all(&log, 0), 0);
    assert_eq!(log.offset_for_timestamp(30).unwrap(), Some(30));
    assert_eq!(read_all(&log, 0).len(), 80);

    // The indexes written under each interval serve a reopened log too.
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    assert_dense(&read_all(&log, 0), 0);
    assert_eq!(log.log_end_offset(), 80);
}

#[test]
fn a_sparser_index_interval_still_finds_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let dense = LogConfig {
        index_interval_bytes: 1,
        ..small_config(FlushPolicy::None)
    };
    let log = Log::open(dir.path(), dense).unwrap();
    for i in 0..30 {
        append(&log, "d", 1, 300, i);
    }
    // Reads now allow for far less slack than the entries of the first segment are apart.
    log.set_config(LogConfig {
        index_interval_bytes: 1 << 20,
        ..log.config()
    })
    .unwrap();
    for i in 30..60 {
        append(&log, "d", 1, 300, i);
    }
    for offset in [0, 7, 29, 30, 45, 59] {
        let records = read_all(&log, offset);
        assert_eq!(records.first().map(|r| r.0), Some(offset));
        assert_dense(&records, offset);
    }
}

#[test]
fn the_flush_policy_is_read_at_every_append() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = Log::open_with_io(
        dir.path(),
        small_config(FlushPolicy::None),
        Arc::new(io.clone()),
    )
    .unwrap();
    io.fail_syncs(true);
    // Without fsyncs an append never syncs, so the failing disk goes unnoticed.
    append(&log, "f", 1, 10, 1);
    assert_eq!(log.high_watermark(), 1);

    log.set_config(LogConfig {
        flush: FlushPolicy::Fsync,
        ..log.config()
    })
    .unwrap();
    // Now the append waits for its fsync, which fails: it is not acknowledged.
    let failed = log.append(&mut batch("f", 1, 10, 2));
    assert!(
        matches!(failed, Err(StorageError::Failed { .. })),
        "{failed:?}"
    );
    assert_eq!(
        log.high_watermark(),
        1,
        "the unsynced append stays invisible"
    );
}

#[test]
fn a_switch_to_fsync_makes_earlier_unsynced_appends_durable() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = Log::open_with_io(
        dir.path(),
        small_config(FlushPolicy::None),
        Arc::new(io.clone()),
    )
    .unwrap();
    for i in 0..100 {
        append(&log, "p", 1, 300, i);
    }
    log.set_config(LogConfig {
        flush: FlushPolicy::Fsync,
        ..log.config()
    })
    .unwrap();
    append(&log, "p", 1, 300, 100);
    // A power loss drops whatever was never fsynced: nothing, since that append synced the
    // segments the unsynced appends wrote as well.
    io.power_loss().unwrap();
    drop(log);
    let log = Log::open_with_io(
        dir.path(),
        small_config(FlushPolicy::Fsync),
        Arc::new(io.clone()),
    )
    .unwrap();
    assert_eq!(log.log_end_offset(), 101);
    assert_dense(&read_all(&log, 0), 0);
}

#[test]
fn a_lower_append_limit_refuses_the_next_large_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    append(&log, "m", 1, 500, 1);
    log.set_config(LogConfig {
        max_append_bytes: 200,
        ..log.config()
    })
    .unwrap();
    let refused = log.append(&mut batch("m", 1, 500, 2));
    assert!(
        matches!(refused, Err(StorageError::BatchTooLarge { limit: 200, .. })),
        "{refused:?}"
    );
    append(&log, "m", 1, 10, 3);
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn config_swaps_racing_appends_and_reads_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap());
    let configs = [
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 64,
            flush: FlushPolicy::None,
            ..LogConfig::default()
        },
        LogConfig {
            segment_bytes: 64 * 1024,
            index_interval_bytes: 4096,
            flush: FlushPolicy::Fsync,
            ..LogConfig::default()
        },
        LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 1,
            flush: FlushPolicy::Interval(std::time::Duration::from_millis(5)),
            ..LogConfig::default()
        },
    ];
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 0..600 {
                append(&log, "c", 1, 100, i);
            }
        })
    };
    let swapper = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for round in 0..300 {
                log.set_config(configs[round % configs.len()].clone())
                    .unwrap();
                // Whatever the last policy, a flush makes everything visible.
                log.flush().unwrap();
                let _ = read_all(&log, log.log_start_offset());
            }
        })
    };
    writer.join().unwrap();
    swapper.join().unwrap();
    log.flush().unwrap();
    assert_eq!(log.high_watermark(), 600);
    assert_dense(&read_all(&log, 0), 0);
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap();
    assert_eq!(log.log_end_offset(), 600);
    assert_dense(&read_all(&log, 0), 0);
}
