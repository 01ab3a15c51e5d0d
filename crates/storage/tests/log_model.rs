//! The log against a simple in-memory model: random appends, reopens, crashes mid-write and
//! reads must always agree with a plain vector of records.
mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use sluice_storage::io::{FaultyIo, WriteFault};
use sluice_storage::{FlushPolicy, Log, LogConfig};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        size: usize,
        ts: i64,
    },
    ReopenClean,
    CrashMidAppend {
        torn: usize,
    },
    Read {
        at: f64,
    },
    FindTimestamp {
        ts: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..12, 0usize..400, 0i64..1_000).prop_map(|(records, size, ts)| Op::Append { records, size, ts }),
        1 => Just(Op::ReopenClean),
        1 => (0usize..600).prop_map(|torn| Op::CrashMidAppend { torn }),
        2 => (0.0f64..1.0).prop_map(|at| Op::Read { at }),
        1 => (0i64..1_100).prop_map(|ts| Op::FindTimestamp { ts }),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4 * 1024,
        index_interval_bytes: 256,
        ..small_config(FlushPolicy::Fsync)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let open = |io: &FaultyIo| Log::open_with_io(dir.path(), config(), Arc::new(io.clone())).unwrap();
        let mut log = open(&io);
        // (timestamp, value) per offset.
        let mut model: Vec<(i64, Bytes)> = Vec::new();
        let mut seq = 0usize;
        for op in ops {
            match op {
                Op::Append { records, size, ts } => {
                    seq += 1;
                    let tag = format!("s{seq}");
                    let mut b = batch(&tag, records, size, ts);
                    let info = log.append(&mut b).unwrap();
                    prop_assert_eq!(info.base_offset, model.len() as u64);
                    for i in 0..records {
                        let mut v = format!("{tag}-{i}").into_bytes();
                        v.resize(size.max(v.len()), b'.');
                        model.push((ts, Bytes::from(v)));
                    }
                }
                Op::ReopenClean => {
                    log.close().unwrap();
                    drop(log);
                    log = open(&io);
                }
                Op::CrashMidAppend { torn } => {
                    io.fail_after_writes(0, WriteFault::Torn(torn));
                    let mut lost = batch("lost", 3, 100, 1);
                    let whole = torn >= lost.len();
                    prop_assert!(log.append(&mut lost).is_err());
                    drop(log);
                    io.heal();
                    log = open(&io);
                    // An unacknowledged batch comes back whole (all its bytes landed) or not at all.
                    if whole {
                        for i in 0..3 {
                            let mut v = format!("lost-{i}").into_bytes();
                            v.resize(100, b'.');
                            model.push((1, Bytes::from(v)));
                        }
                    }
                }
                Op::Read { at } => {
                    let from = (at * model.len() as f64) as u64;
                    let got = read_all(&log, from);
                    prop_assert_eq!(got.len(), model.len() - from as usize);
                    for (r, (ts, v)) in got.iter().zip(&model[from as usize..]) {
                        prop_assert_eq!(r.1, *ts);
                        prop_assert_eq!(&r.2, v);
                    }
                }
                Op::FindTimestamp { ts } => {
                    let want = model.iter().position(|(t, _)| *t >= ts).map(|i| i as u64);
                    prop_assert_eq!(log.offset_for_timestamp(ts).unwrap(), want);
                }
            }
            prop_assert_eq!(log.log_end_offset(), model.len() as u64);
            prop_assert_eq!(log.high_watermark(), model.len() as u64);
        }
        let all = read_all(&log, 0);
        prop_assert_eq!(all.len(), model.len());
        assert_dense(&all, 0);
    }
}
