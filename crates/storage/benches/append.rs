//! Append throughput of the partition log, next to raw file-write baselines measured in the
//! same run.
//!
//! Scenarios (1 KiB records, batches pre-built outside the timed loop and appended again and
//! again, since the log rewrites base offsets in place):
//! - `append/fsync/batch=1000/writers=1` and `.../writers=4`: flush policy `Fsync`, where
//!   concurrent writers share fsyncs (group commit); the same with batches of 10 records, where
//!   the fsync rather than the bytes dominates;
//! - `append/none/batch=100/writers=1` and `append/none/batch=1000/writers=1`: flush policy
//!   `None`, one writer;
//! - `raw/fdatasync/1MiB/...`: sequential 1 MiB `write`s to plain files, each followed by an
//!   `fdatasync`, run before and after the `fsync` appends;
//! - `raw/buffered/1MiB/...`: the same without the sync, run before and after the `none` appends;
//! - `raw/buffered/{n}B`: plain writes of the size of one 100-record batch, without sync.
//!
//! Each criterion call (a warm-up round or a sample) writes into a fresh log or a fresh set of
//! raw files in a new directory, emptied and deleted after the call, outside the timed region.
//! Both sides roll files every 256 MiB; neither pays for deleting; page-cache data is dropped
//! rather than written back; disk use stays bounded by what one call writes (about 1-2 GB).
//! Run with `cargo bench -p sluice-storage --bench append`.

mod support;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, SamplingMode, Throughput};
use sluice_storage::{FlushPolicy, Log, LogConfig};
use support::{MIB, Meter, batch, bench_dir, criterion, measuring};
use tempfile::TempDir;

/// Segment size of the benchmark logs and raw files.
const SEGMENT_BYTES: u64 = 256 << 20;

/// One append scenario.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    flush: FlushPolicy,
    batch_records: usize,
    writers: usize,
}

impl Scenario {
    fn name(&self) -> String {
        let flush = match self.flush {
            FlushPolicy::None => "none",
            FlushPolicy::Fsync => "fsync",
            FlushPolicy::Interval(_) => "interval",
        };
        format!(
            "{flush}/batch={}/writers={}",
            self.batch_records, self.writers
        )
    }
}

/// Measures one append scenario; every iteration is one `append` of one pre-built batch.
fn bench_append(c: &mut Criterion, scenario: Scenario) -> Meter {
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        flush: scenario.flush,
        ..LogConfig::default()
    };
    let template = batch(scenario.batch_records, 0);
    let mut buffers: Vec<BytesMut> = vec![template.clone(); scenario.writers];
    let name = scenario.name();
    let mut meter = Meter::new(
        format!("append/{name}"),
        template.len() as u64,
        scenario.batch_records as u64,
    );

    let mut group = c.benchmark_group("append");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::BytesDecimal(template.len() as u64));
    group.bench_function(name.as_str(), |b| {
        b.iter_custom(|iters| {
            let dir = bench_dir("append");
            let log = Log::open(dir.path(), config.clone()).expect("open the benchmark log");
            let elapsed = append_concurrently(&log, &mut buffers, iters);
            discard(dir.path());
            let expected = iters * scenario.batch_records as u64;
            assert_eq!(
                log.high_watermark(),
                expected,
                "every append must be visible"
            );
            meter.add(iters, elapsed);
            elapsed
        });
    });
    group.finish();
    meter
}

/// Runs `iters` appends spread over one thread per buffer and returns the wall time they took.
fn append_concurrently(log: &Log, buffers: &mut [BytesMut], iters: u64) -> Duration {
    let writers = buffers.len() as u64;
    let start = Instant::now();
    std::thread::scope(|s| {
        for (i, buf) in (0..writers).zip(buffers.iter_mut()) {
            let share = iters / writers + u64::from(i < iters % writers);
            s.spawn(move || {
                for _ in 0..share {
                    log.append(buf).expect("append to the benchmark log");
                }
            });
        }
    });
    start.elapsed()
}

/// Plain files written sequentially in 1 MiB chunks, rolled like log segments; deleted with
/// their directory when dropped.
#[derive(Debug)]
struct RawFiles {
    dir: TempDir,
    current: File,
    written: u64,
    created: u64,
    fdatasync: bool,
}

impl RawFiles {
    fn new(fdatasync: bool) -> Self {
        let dir = bench_dir("raw");
        let current = File::create(Self::path(&dir, 0)).expect("create a raw file");
        RawFiles {
            dir,
            current,
            written: 0,
            created: 1,
            fdatasync,
        }
    }

    fn path(dir: &TempDir, n: u64) -> PathBuf {
        dir.path().join(format!("{n:020}.raw"))
    }

    /// Writes `chunk` at the end of the current file (rolling first if it is full), then
    /// `fdatasync`s it if asked to.
    fn write(&mut self, chunk: &[u8]) {
        if self.written + chunk.len() as u64 > SEGMENT_BYTES {
            let path = Self::path(&self.dir, self.created);
            self.current = File::create(path).expect("create a raw file");
            self.created += 1;
            self.written = 0;
        }
        self.current.write_all(chunk).expect("write to a raw file");
        if self.fdatasync {
            self.current.sync_data().expect("fdatasync a raw file");
        }
        self.written += chunk.len() as u64;
    }
}

/// Measures a raw baseline; every iteration is one write of `chunk_bytes` (and `fdatasync`,
/// if asked). `label` names the run, e.g. `1MiB/before`.
fn bench_raw(c: &mut Criterion, fdatasync: bool, chunk_bytes: usize, label: &str) -> Meter {
    let kind = if fdatasync { "fdatasync" } else { "buffered" };
    let name = format!("{kind}/{label}");
    let chunk: Vec<u8> = (0..chunk_bytes).map(|i| (i % 251) as u8).collect();
    let mut meter = Meter::new(format!("raw/{name}"), chunk_bytes as u64, 0);

    let mut group = c.benchmark_group("raw");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::BytesDecimal(chunk_bytes as u64));
    group.bench_function(name.as_str(), |b| {
        b.iter_custom(|iters| {
            let mut raw = RawFiles::new(fdatasync);
            let start = Instant::now();
            for _ in 0..iters {
                raw.write(&chunk);
            }
            let elapsed = start.elapsed();
            discard(raw.dir.path());
            meter.add(iters, elapsed);
            elapsed
        });
    });
    group.finish();
    meter
}

/// Empties every file in `dir`, so that the dirty pages of data about to be deleted are dropped
/// instead of written back when the files are closed. (A segment file is created with an
/// explicit truncation, which on ext4 makes closing it start write-back of all its dirty pages.)
fn discard(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("list a benchmark directory") {
        let path = entry.expect("list a benchmark directory").path();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .expect("empty a benchmark file");
    }
}

/// `append` over the mean of the `raw` runs, with the target it is held against, if any.
fn ratio_line(append: &Meter, raw: &[&Meter], target_pct: Option<f64>) -> String {
    let rates: Vec<f64> = raw.iter().filter_map(|m| m.bytes_per_sec()).collect();
    let names: Vec<&str> = raw.iter().map(|m| m.name.as_str()).collect();
    let target = target_pct.map_or_else(String::new, |t| format!("; target >= {t:.0}%"));
    match append.bytes_per_sec() {
        Some(a) if !rates.is_empty() => {
            let mean = rates.iter().sum::<f64>() / rates.len() as f64;
            format!(
                "{}: {:.0}% of {} ({:.1} MB/s){target}",
                append.name,
                100.0 * a / mean,
                names.join(" + "),
                mean / 1e6
            )
        }
        _ => format!("{}: no ratio (not run)", append.name),
    }
}

fn main() {
    let mut c = criterion(Duration::from_millis(500), Duration::from_secs(2));
    let none = |batch_records| Scenario {
        flush: FlushPolicy::None,
        batch_records,
        writers: 1,
    };
    let fsync = |batch_records, writers| Scenario {
        flush: FlushPolicy::Fsync,
        batch_records,
        writers,
    };
    // Each pair of 1 MiB baselines brackets the appends it is compared with, which shows how
    // much the shared disk drifted meanwhile.
    let fdatasync_before = bench_raw(&mut c, true, MIB, "1MiB/before");
    let fsync_1 = bench_append(&mut c, fsync(1000, 1));
    let fsync_4 = bench_append(&mut c, fsync(1000, 4));
    // Small batches, where an fsync costs far more than the bytes it covers: what sharing
    // fsyncs between writers buys.
    let small_1 = bench_append(&mut c, fsync(10, 1));
    let small_4 = bench_append(&mut c, fsync(10, 4));
    let fdatasync_after = bench_raw(&mut c, true, MIB, "1MiB/after");
    let buffered_before = bench_raw(&mut c, false, MIB, "1MiB/before");
    // Plain writes of the size of one 100-record append, to separate the cost of the write size
    // from the cost of the log.
    let small = batch(100, 0).len();
    let buffered_small = bench_raw(&mut c, false, small, &format!("{small}B"));
    let none_100 = bench_append(&mut c, none(100));
    let none_1000 = bench_append(&mut c, none(1000));
    let buffered_after = bench_raw(&mut c, false, MIB, "1MiB/after");
    c.final_summary();
    if !measuring() {
        return;
    }

    println!("\nsummary (criterion's samples, warm-up excluded; MB = 10^6 bytes)");
    for meter in [
        &fdatasync_before,
        &fsync_1,
        &fsync_4,
        &small_1,
        &small_4,
        &fdatasync_after,
        &buffered_before,
        &buffered_small,
        &none_100,
        &none_1000,
        &buffered_after,
    ] {
        println!("  {}", meter.line());
    }
    for (append, before, after, target) in [
        (&fsync_1, &fdatasync_before, &fdatasync_after, 80.0),
        (&fsync_4, &fdatasync_before, &fdatasync_after, 80.0),
        (&none_100, &buffered_before, &buffered_after, 85.0),
        (&none_1000, &buffered_before, &buffered_after, 85.0),
    ] {
        println!("  {}", ratio_line(append, &[before, after], Some(target)));
    }
    println!("  {}", ratio_line(&none_100, &[&buffered_small], None));
    println!("  {}", ratio_line(&small_4, &[&small_1], None));
}
