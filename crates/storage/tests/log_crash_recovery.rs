//! Crashes, torn writes, power loss and corruption: what was acknowledged survives, nothing
//! after a torn batch does, and bad bytes are never served.
mod common;

use std::sync::Arc;

use common::*;
use sluice_storage::io::{FaultyIo, WriteFault};
use sluice_storage::{FlushPolicy, Log, StorageError};

fn open_faulty(dir: &std::path::Path, io: &FaultyIo, flush: FlushPolicy) -> Log {
    Log::open_with_io(dir, small_config(flush), Arc::new(io.clone())).unwrap()
}

fn log_bytes_on_disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// For every write position, crash with a torn write there, recover, and check.
#[test]
fn a_torn_write_at_any_point_loses_only_unacknowledged_records() {
    for crash_after in 0..40u64 {
        for torn in [0usize, 1, 30, 61, 200] {
            let dir = tempfile::tempdir().unwrap();
            let io = FaultyIo::new();
            io.fail_after_writes(crash_after, WriteFault::Torn(torn));
            let log = open_faulty(dir.path(), &io, FlushPolicy::Fsync);
            let mut acked = 0u64;
            for i in 0..60 {
                match log.append(&mut batch("c", 1 + i % 4, 300, i as i64)) {
                    Ok(info) => {
                        assert_eq!(info.base_offset, acked);
                        acked = info.last_offset + 1;
                    }
                    Err(_) => break,
                }
            }
            drop(log); // the process dies: no close, no clean marker
            io.heal();
            let log = open_faulty(dir.path(), &io, FlushPolicy::Fsync);
            assert_eq!(
                log.log_end_offset(),
                acked,
                "crash_after={crash_after} torn={torn}"
            );
            assert_eq!(
                log_bytes_on_disk(dir.path()),
                log.size_bytes(),
                "the torn tail is cut from the file"
            );
            let all = read_all(&log, 0);
            assert_eq!(all.len() as u64, acked);
            assert_dense(&all, 0);
            // The log keeps working after recovery.
            let next = append(&log, "after", 2, 10, 1);
            assert_eq!(next, acked);
        }
    }
}

#[test]
fn power_loss_under_fsync_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = open_faulty(dir.path(), &io, FlushPolicy::Fsync);
    let mut acked = 0;
    for i in 0..300 {
        acked = log.append(&mut batch("p", 3, 200, i)).unwrap().last_offset + 1;
    }
    assert!(log.segment_count() > 5);
    drop(log);
    io.power_loss().unwrap();
    let log = open_faulty(dir.path(), &io, FlushPolicy::Fsync);
    assert_eq!(log.log_end_offset(), acked);
    assert_eq!(read_all(&log, 0).len() as u64, acked);
}

#[test]
fn power_loss_under_none_loses_only_the_unsynced_tail_and_stays_dense() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = open_faulty(dir.path(), &io, FlushPolicy::None);
    for i in 0..100 {
        log.append(&mut batch("n", 3, 200, i)).unwrap();
    }
    log.flush().unwrap();
    let flushed = log.log_end_offset();
    for i in 0..100 {
        log.append(&mut batch("n", 3, 200, i)).unwrap();
    }
    drop(log);
    io.power_loss().unwrap();
    let log = open_faulty(dir.path(), &io, FlushPolicy::None);
    let end = log.log_end_offset();
    assert!(
        end >= flushed,
        "flushed records must survive: end {end} < flushed {flushed}"
    );
    let all = read_all(&log, 0);
    assert_eq!(all.len() as u64, end);
    assert_dense(&all, 0);
}

#[test]
fn a_failed_fsync_latches_the_log_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = open_faulty(dir.path(), &io, FlushPolicy::Fsync);
    append(&log, "ok", 2, 10, 1);
    io.fail_syncs(true);
    assert!(matches!(
        log.append(&mut batch("x", 1, 10, 1)),
        Err(StorageError::Failed { .. })
    ));
    io.fail_syncs(false);
    // Even with fsync working again, the log refuses writes: the failed one may have lost pages.
    assert!(matches!(
        log.append(&mut batch("y", 1, 10, 1)),
        Err(StorageError::Failed { .. })
    ));
    assert!(log.failure().is_some());
    // The unacknowledged record is not visible to readers.
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(read_all(&log, 0).len(), 2);
}

#[test]
fn a_full_disk_fails_the_append_and_writes_resume_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let log = open_faulty(dir.path(), &io, FlushPolicy::Fsync);
    append(&log, "a", 2, 10, 1);
    io.fail_after_writes(0, WriteFault::DiskFull);
    match log.append(&mut batch("b", 1, 10, 1)) {
        Err(StorageError::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(28)),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    io.heal();
    assert_eq!(append(&log, "c", 1, 10, 1), 2);
    let values: Vec<_> = read_all(&log, 0).into_iter().map(|r| r.2).collect();
    assert_eq!(values.len(), 3);
    assert!(values[2].starts_with(b"c-0"));
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_reported_with_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap();
    for i in 0..100 {
        append(&log, "f", 3, 200, i);
    }
    log.close().unwrap();
    drop(log);
    let first = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[1_000] ^= 0x10;
    std::fs::write(&first, &bytes).unwrap();

    let log = Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap();
    let mut saw_corruption = false;
    for offset in 0..log.high_watermark() {
        match log.read(offset, 1) {
            Ok(_) => {}
            Err(StorageError::Corrupt { path, position, .. }) => {
                assert_eq!(path, first);
                assert!(position <= 1_000);
                saw_corruption = true;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(saw_corruption, "the flipped bit must be detected");
    // Later segments keep serving.
    let last = log.high_watermark() - 1;
    assert!(log.read(last, 1).is_ok());
}

#[test]
fn missing_or_garbled_indexes_and_stray_files_are_repaired_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    for i in 0..200 {
        append(&log, "g", 2, 150, 10 * i);
    }
    let end = log.log_end_offset();
    let ts_probe = log.offset_for_timestamp(1_000).unwrap();
    log.close().unwrap();
    drop(log);
    std::fs::remove_file(dir.path().join(format!("{:020}.index", 0))).unwrap();
    let garbled = dir.path().join(format!("{:020}.timeindex", 0));
    let mut t = std::fs::read(&garbled).unwrap();
    t.truncate(t.len() - 5);
    std::fs::write(&garbled, t).unwrap();
    std::fs::write(dir.path().join("recovery-point.tmp"), b"junk").unwrap();
    std::fs::write(dir.path().join(format!("{:020}.index", 999_999)), b"orphan").unwrap();

    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0).len() as u64, end);
    assert_eq!(log.offset_for_timestamp(1_000).unwrap(), ts_probe);
    assert!(!dir.path().join("recovery-point.tmp").exists());
    assert!(!dir.path().join(format!("{:020}.index", 999_999)).exists());
}

#[test]
fn a_truncated_tail_after_a_clean_close_is_cut_at_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap();
    for i in 0..10 {
        append(&log, "t", 2, 100, i);
    }
    drop(log); // crash
    let active = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap();
    let len = std::fs::metadata(&active).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap();
    f.set_len(len - 7).unwrap(); // cut mid-batch
    let log = Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap();
    assert_eq!(log.log_end_offset(), 18);
    assert_eq!(read_all(&log, 0).len(), 18);
}
