//! Appending assigns dense offsets; reads return whole batches from any offset.
mod common;

use common::*;
use sluice_storage::{FlushPolicy, Log, LogConfig, StorageError, batch};

#[test]
fn offsets_are_dense_across_batches_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    let mut expected = 0;
    for i in 0..200 {
        let n = 1 + i % 7;
        assert_eq!(append(&log, "r", n, 100, 1_000 + i as i64), expected);
        expected += n as u64;
    }
    assert_eq!(log.log_end_offset(), expected);
    assert_eq!(log.high_watermark(), expected);
    assert!(log.segment_count() > 3, "small segments must roll");
    let all = read_all(&log, 0);
    assert_eq!(all.len() as u64, expected);
    assert_dense(&all, 0);
}

#[test]
fn read_from_the_middle_starts_with_the_containing_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    for _ in 0..50 {
        append(&log, "m", 10, 50, 7);
    }
    for offset in [0, 1, 9, 10, 255, 499] {
        let r = log.read(offset, 1).unwrap();
        let mut it = batch::batches(r.batches);
        let (h, _) = it.next().unwrap().unwrap();
        assert!(
            h.base_offset <= offset && offset <= h.last_offset(),
            "offset {offset} in {h:?}"
        );
        assert!(
            it.next().is_none(),
            "max_bytes = 1 still returns exactly one whole batch"
        );
    }
    let all = read_all(&log, 123);
    assert_eq!(all.first().unwrap().0, 123);
    assert_eq!(all.len(), 500 - 123);
}

#[test]
fn read_respects_max_bytes_and_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            flush: FlushPolicy::None,
            ..LogConfig::default()
        },
    )
    .unwrap();
    for _ in 0..100 {
        append(&log, "x", 10, 100, 1);
    }
    let r = log.read(0, 5_000).unwrap();
    assert!(r.batches.len() <= 5_000 && !r.batches.is_empty());
    assert_eq!(r.high_watermark, 1_000);
    let at_end = log.read(1_000, 5_000).unwrap();
    assert!(at_end.batches.is_empty());
    match log.read(1_001, 10) {
        Err(StorageError::OffsetOutOfRange {
            requested: 1_001,
            log_start_offset: 0,
            high_watermark: 1_000,
        }) => {}
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    // Timestamps rise by 10 per batch of 5, with one batch out of order.
    for i in 0..100i64 {
        let ts = if i == 50 { 5 } else { 1_000 + i * 10 };
        append(&log, "t", 5, 80, ts);
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1_000).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1_001).unwrap(), Some(5));
    assert_eq!(log.offset_for_timestamp(1_500).unwrap(), Some(255));
    assert_eq!(log.offset_for_timestamp(1_990).unwrap(), Some(495));
    assert_eq!(log.offset_for_timestamp(1_991).unwrap(), None);
    // Survives a reopen (indexes read back from disk).
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    assert_eq!(log.offset_for_timestamp(1_500).unwrap(), Some(255));
}

#[test]
fn invalid_batches_are_refused_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            max_append_bytes: 10_000,
            ..LogConfig::default()
        },
    )
    .unwrap();
    let mut b = batch("a", 3, 10, 1);
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(matches!(
        log.append(&mut b),
        Err(StorageError::InvalidBatch(_))
    ));
    let mut half = batch("a", 3, 10, 1);
    let n = half.len() / 2;
    assert!(matches!(
        log.append(&mut half[..n]),
        Err(StorageError::InvalidBatch(_))
    ));
    let mut big = batch("a", 200, 100, 1);
    assert!(matches!(
        log.append(&mut big),
        Err(StorageError::BatchTooLarge { limit: 10_000, .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn several_batches_in_one_append_get_consecutive_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let mut buf = batch("a", 3, 10, 1);
    buf.extend_from_slice(&batch("b", 4, 10, 2));
    let info = log.append(&mut buf).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.record_count),
        (0, 6, 7)
    );
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 7);
    assert_eq!(&all[3].2[..3], b"b-0");
}

#[test]
fn append_all_writes_in_order_with_one_result_each() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap();
    let mut bad = batch("bad", 2, 10, 1);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut appends = vec![batch("a", 3, 10, 1), bad, batch("c", 2, 10, 1)];
    let results = log.append_all(&mut appends);
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().base_offset, 0);
    assert!(matches!(results[1], Err(StorageError::InvalidBatch(_))));
    assert_eq!(results[2].as_ref().unwrap().base_offset, 3);
    assert_eq!(log.high_watermark(), 5);
    let values: Vec<_> = read_all(&log, 0).into_iter().map(|r| r.2).collect();
    assert!(values[3].starts_with(b"c-0"));
}

/// A filter that answers every append whose index is in `answer` itself, and records what it
/// was offered and told.
#[derive(Default)]
struct Recorder {
    answer: Vec<usize>,
    offered: Vec<usize>,
    /// (index, base offset the written batches carry, result's base offset)
    written: Vec<(usize, u64, Option<u64>)>,
}

impl sluice_storage::AppendFilter for Recorder {
    type Error = StorageError;

    fn admit(
        &mut self,
        index: usize,
        _: &[u8],
    ) -> Option<Result<sluice_storage::AppendInfo, StorageError>> {
        self.offered.push(index);
        self.answer.contains(&index).then(|| {
            Ok(sluice_storage::AppendInfo {
                base_offset: 1000 + index as u64,
                last_offset: 1000 + index as u64,
                record_count: 1,
                max_timestamp: 0,
            })
        })
    }

    fn written(
        &mut self,
        index: usize,
        batches: &[u8],
        result: &Result<sluice_storage::AppendInfo, StorageError>,
    ) {
        let stamped = batch::BatchHeader::parse(batches).unwrap().base_offset;
        let landed = result.as_ref().ok().map(|info| info.base_offset);
        self.written.push((index, stamped, landed));
    }
}

#[test]
fn append_all_filtered_writes_only_what_the_filter_admits() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::Fsync)).unwrap();
    let mut bad = batch("bad", 1, 10, 1);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut appends = vec![
        batch("a", 2, 10, 1),
        bad,
        batch("skipped", 3, 10, 1),
        batch("c", 1, 10, 1),
    ];
    let mut filter = Recorder {
        answer: vec![2],
        ..Recorder::default()
    };
    let results = log.append_all_filtered(&mut appends, &mut filter);
    // The invalid append is never offered; the answered one is not written.
    assert_eq!(filter.offered, [0, 2, 3]);
    assert_eq!(filter.written, [(0, 0, Some(0)), (3, 2, Some(2))]);
    assert_eq!(results[0].as_ref().unwrap().base_offset, 0);
    assert!(matches!(results[1], Err(StorageError::InvalidBatch(_))));
    assert_eq!(results[2].as_ref().unwrap().base_offset, 1002);
    assert_eq!(results[3].as_ref().unwrap().base_offset, 2);
    let values: Vec<_> = read_all(&log, 0).into_iter().map(|r| r.2).collect();
    assert_eq!(values.len(), 3);
    assert!(values[2].starts_with(b"c-0"));
}

#[test]
fn scan_headers_visits_batches_from_an_offset_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config(FlushPolicy::None)).unwrap();
    let mut bases = Vec::new();
    for i in 0..120 {
        bases.push(append(&log, "s", 1 + i % 3, 200, i as i64));
    }
    assert!(log.segment_count() > 3, "small segments must roll");
    let first_active = log.active_segment_base();
    assert!(first_active > 0);
    for from in [0, 1, 7, bases[60], bases[60] + 1, log.log_end_offset() - 1] {
        let mut seen = Vec::new();
        log.scan_headers(from, |h| seen.push(h.base_offset))
            .unwrap();
        let expected: Vec<u64> = bases
            .iter()
            .zip(bases.iter().skip(1).chain([&log.log_end_offset()]))
            .filter(|(_, next)| **next > from)
            .map(|(base, _)| *base)
            .collect();
        assert_eq!(seen, expected, "from {from}");
    }
    let mut none = 0;
    log.scan_headers(log.log_end_offset(), |_| none += 1)
        .unwrap();
    assert_eq!(none, 0);
}
