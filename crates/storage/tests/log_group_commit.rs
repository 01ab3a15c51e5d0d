//! Under `fsync`, concurrent appenders all get their records durably, with dense offsets.
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use sluice_storage::{FlushPolicy, Log};

#[test]
fn concurrent_fsync_appends_are_all_acknowledged_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let info = log.append(&mut batch(&format!("t{t}"), 2, 64, i)).unwrap();
                        // Visible as soon as acknowledged.
                        assert!(log.high_watermark() > info.last_offset);
                        info.base_offset
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut bases = BTreeSet::new();
    for t in threads {
        for b in t.join().unwrap() {
            assert!(bases.insert(b), "offset {b} handed out twice");
        }
    }
    assert_eq!(bases.len(), 200);
    assert_eq!(log.log_end_offset(), 400);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 400);
    assert_dense(&all, 0);
}
