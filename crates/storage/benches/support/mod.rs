//! Helpers shared by the storage benchmarks: record batches, bench directories, criterion
//! settings and the summary lines printed next to criterion's own report.

use std::time::Duration;

use bytes::BytesMut;
use criterion::Criterion;
use sluice_storage::batch::RecordBatchBuilder;
use tempfile::TempDir;

/// Value size of every benchmark record.
pub(crate) const RECORD_BYTES: usize = 1024;

/// One mebibyte.
pub(crate) const MIB: usize = 1 << 20;

/// A Kafka v2 batch of `records` keyless records with [`RECORD_BYTES`]-byte values and no
/// headers; record `i` has timestamp `first_ts + i`.
pub(crate) fn batch(records: usize, first_ts: i64) -> BytesMut {
    let value: Vec<u8> = (0..RECORD_BYTES).map(|i| (i % 251) as u8).collect();
    let mut builder = RecordBatchBuilder::with_capacity(records * (RECORD_BYTES + 16));
    for i in 0..records {
        builder
            .push(
                first_ts + i as i64,
                None,
                Some(&value),
                std::iter::empty::<(&[u8], Option<&[u8]>)>(),
            )
            .expect("a 1 KiB record fits in a batch");
    }
    builder.finish().expect("at least one record")
}

/// A fresh directory for one scenario, removed (with whatever is in it) when dropped.
///
/// It lives in the system temporary directory, which on the benchmark machine is on the same
/// disk as the build.
pub(crate) fn bench_dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sluice-bench-{name}-"))
        .tempdir()
        .expect("create a benchmark directory")
}

/// Whether this is a measuring run: `cargo bench` passes `--bench`; without it (`cargo test`)
/// criterion runs every benchmark once, as a test, and the figures mean nothing.
pub(crate) fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Criterion settings sized for a 2-core box: few samples, short warm-up and measurement.
/// Command-line options still override them.
pub(crate) fn criterion(warm_up: Duration, measurement: Duration) -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .configure_from_args()
}

/// What criterion's measurement samples of one scenario did, for a summary line.
///
/// It sees every call criterion makes to the `iter_custom` routine. Every scenario here uses
/// flat sampling, where all samples run the same number of iterations and come after the
/// warm-up calls, so the samples are the trailing calls with the last call's iteration count.
/// Its rates are their total work over their total time, which is criterion's own mean.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    /// Scenario name as printed.
    pub(crate) name: String,
    bytes_per_iter: u64,
    records_per_iter: u64,
    /// (iterations, time) of each call, in order.
    calls: Vec<(u64, Duration)>,
}

impl Meter {
    /// A meter for a scenario whose every iteration moves `bytes_per_iter` bytes holding
    /// `records_per_iter` records.
    pub(crate) fn new(name: impl Into<String>, bytes_per_iter: u64, records_per_iter: u64) -> Self {
        Meter {
            name: name.into(),
            bytes_per_iter,
            records_per_iter,
            calls: Vec::new(),
        }
    }

    /// Records one call: `iters` iterations that took `elapsed` in all.
    pub(crate) fn add(&mut self, iters: u64, elapsed: Duration) {
        self.calls.push((iters, elapsed));
    }

    /// Iterations and time of the measurement samples.
    fn samples(&self) -> (u64, Duration) {
        let Some(&(per_sample, _)) = self.calls.last() else {
            return (0, Duration::ZERO);
        };
        self.calls
            .iter()
            .rev()
            .take_while(|(iters, _)| *iters == per_sample)
            .fold((0, Duration::ZERO), |(n, t), (iters, elapsed)| {
                (n + iters, t + *elapsed)
            })
    }

    /// Bytes per second over the samples; `None` if the scenario did not run (filtered out on
    /// the command line).
    pub(crate) fn bytes_per_sec(&self) -> Option<f64> {
        let (iters, elapsed) = self.samples();
        let secs = elapsed.as_secs_f64();
        (iters > 0 && secs > 0.0).then(|| (iters * self.bytes_per_iter) as f64 / secs)
    }

    /// Records per second over the samples; `None` also when the iterations carry no records
    /// (raw file baselines).
    pub(crate) fn records_per_sec(&self) -> Option<f64> {
        let (iters, elapsed) = self.samples();
        let secs = elapsed.as_secs_f64();
        (iters > 0 && self.records_per_iter > 0 && secs > 0.0)
            .then(|| (iters * self.records_per_iter) as f64 / secs)
    }

    /// One line: MB/s, records/s and the totals they come from.
    pub(crate) fn line(&self) -> String {
        let Some(bps) = self.bytes_per_sec() else {
            return format!("{:<36} not run", self.name);
        };
        let records = self
            .records_per_sec()
            .map_or_else(|| "-".to_string(), |rps| format!("{rps:.0}"));
        let (iters, elapsed) = self.samples();
        format!(
            "{:<36} {:>8.1} MB/s {:>10} records/s   ({:.2} GB in {:.2} s)",
            self.name,
            bps / 1e6,
            records,
            (iters * self.bytes_per_iter) as f64 / 1e9,
            elapsed.as_secs_f64()
        )
    }
}
