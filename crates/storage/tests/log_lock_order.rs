//! Readers looking up timestamps never deadlock with a writer that rolls segments: every lock
//! of the storage crate is taken in the order the `log` module documents.
mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use sluice_storage::{FlushPolicy, Log, LogConfig, MIN_SEGMENT_BYTES};

/// How long the writer and the readers race.
const RACE: Duration = Duration::from_secs(3);
/// How long every thread gets to finish once the race is over, before the test calls it a
/// deadlock.
const WATCHDOG: Duration = Duration::from_secs(10);
/// Threads calling `offset_for_timestamp` while the writer rolls.
const READERS: usize = 4;

#[test]
fn offset_for_timestamp_does_not_deadlock_with_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        // The smallest segments and a dense index: a roll every few appends, and a time entry
        // in every segment for the readers to find.
        segment_bytes: MIN_SEGMENT_BYTES,
        index_interval_bytes: 64,
        flush: FlushPolicy::None,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(dir.path(), config).unwrap());
    let newest = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel::<Result<String, String>>();

    let writer = {
        let (log, newest, stop, done) = (log.clone(), newest.clone(), stop.clone(), done.clone());
        thread::spawn(move || {
            let mut ts = 1_000;
            while !stop.load(Ordering::Relaxed) {
                ts += 1;
                if let Err(e) = log.append(&mut batch("w", 1, 100, ts)) {
                    let _ = done.send(Err(format!("append failed: {e}")));
                    return;
                }
                newest.store(ts, Ordering::Release);
            }
            let _ = done.send(Ok(format!("writer: {} segments", log.segment_count())));
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (log, newest, stop, done) =
                (log.clone(), newest.clone(), stop.clone(), done.clone());
            thread::spawn(move || {
                let mut lookups = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Just behind the newest record: a time entry of the active segment, the
                    // one the writer seals at its next roll.
                    let ts = newest.load(Ordering::Acquire) - 1;
                    if let Err(e) = log.offset_for_timestamp(ts) {
                        let _ = done.send(Err(format!("lookup failed: {e}")));
                        return;
                    }
                    lookups += 1;
                }
                let _ = done.send(Ok(format!("reader: {lookups} lookups")));
            })
        })
        .collect();
    drop(done);

    thread::sleep(RACE);
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + WATCHDOG;
    for _ in 0..=READERS {
        let left = deadline.saturating_duration_since(Instant::now());
        match finished.recv_timeout(left) {
            Ok(Ok(report)) => eprintln!("{report}"),
            Ok(Err(e)) => panic!("{e}"),
            // The hung threads are left behind; the test process ends without them.
            Err(_) => panic!(
                "deadlock: a thread did not finish within {WATCHDOG:?} of the race's end \
                 (lock order between the offset and time index locks)"
            ),
        }
    }
    writer.join().unwrap();
    for reader in readers {
        reader.join().unwrap();
    }
    assert!(log.segment_count() > 10, "the writer must have rolled");
}
