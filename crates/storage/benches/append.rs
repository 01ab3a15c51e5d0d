//! Append throughput of the partition log, next to raw file-write baselines measured in the
//! same run.
//!
//! Scenarios (1 KiB records, batches pre-built outside the timed loop and appended again and
//! again, since the log rewrites base offsets in place):
//! - `append/none/batch=100` and `append/none/batch=1000`: flush policy `None`, one writer;
//! - `append/fsync/batch=1000/writers=1` and `.../writers=4`: flush policy `Fsync`, where
//!   concurrent writers share fsyncs (group commit);
//! - `raw/buffered/1MiB`: sequential 1 MiB `write`s to plain files, no sync;
//! - `raw/fdatasync/1MiB`: the same with an `fdatasync` after every write.
//!
//! Logs and raw files roll every 256 MiB and keep about 512 MiB (the log by its own retention),
//! so disk use stays bounded. Deletion happens between criterion's timed calls, so neither
//! side's figure includes unlinking. Run with `cargo bench -p sluice-storage --bench append`.

mod support;

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, SamplingMode, Throughput};
use sluice_storage::{FlushPolicy, Log, LogConfig};
use support::{MIB, Meter, batch, bench_dir, criterion};
use tempfile::TempDir;

/// Segment size of the benchmark logs and raw files.
const SEGMENT_BYTES: u64 = 256 << 20;

/// Bytes of sealed segments kept (`retention.bytes`).
const RETAIN_BYTES: u64 = 512 << 20;

/// Raw files kept: the sealed ones retention would keep, plus the one being written.
const RAW_FILES_KEPT: usize = (RETAIN_BYTES / SEGMENT_BYTES) as usize + 1;

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
    let dir = bench_dir("append");
    let config = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        retention_bytes: Some(RETAIN_BYTES),
        flush: scenario.flush,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).expect("open the benchmark log");
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
            let elapsed = append_concurrently(&log, &mut buffers, iters);
            meter.add(iters, elapsed);
            // Only `retention.bytes` is set, so the clock does not matter.
            log.enforce_retention(0)
                .expect("retention on the benchmark log");
            elapsed
        });
    });
    group.finish();
    assert!(
        log.size_bytes() <= RETAIN_BYTES + 2 * SEGMENT_BYTES,
        "retention did not bound the benchmark log: {} bytes",
        log.size_bytes()
    );
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

/// Plain files written sequentially in 1 MiB chunks, rolled and deleted like log segments.
#[derive(Debug)]
struct RawFiles {
    dir: TempDir,
    /// Oldest first; the last one is being written.
    files: VecDeque<PathBuf>,
    current: File,
    written: u64,
    created: u64,
    fdatasync: bool,
}

impl RawFiles {
    fn new(fdatasync: bool) -> Self {
        let dir = bench_dir("raw");
        let path = dir.path().join(format!("{:020}.raw", 0));
        let current = File::create(&path).expect("create a raw file");
        RawFiles {
            dir,
            files: VecDeque::from([path]),
            current,
            written: 0,
            created: 1,
            fdatasync,
        }
    }

    /// Writes `chunk` at the end of the current file (rolling first if it is full), then
    /// `fdatasync`s it if asked to.
    fn write(&mut self, chunk: &[u8]) {
        if self.written + chunk.len() as u64 > SEGMENT_BYTES {
            let path = self.dir.path().join(format!("{:020}.raw", self.created));
            self.current = File::create(&path).expect("create a raw file");
            self.files.push_back(path);
            self.created += 1;
            self.written = 0;
        }
        self.current.write_all(chunk).expect("write to a raw file");
        if self.fdatasync {
            self.current.sync_data().expect("fdatasync a raw file");
        }
        self.written += chunk.len() as u64;
    }

    /// Deletes the oldest files beyond what the log's retention would keep.
    fn trim(&mut self) {
        while self.files.len() > RAW_FILES_KEPT {
            if let Some(path) = self.files.pop_front() {
                std::fs::remove_file(&path).expect("delete a raw file");
            }
        }
    }
}

/// Measures a raw baseline; every iteration is one 1 MiB write (and `fdatasync`, if asked).
fn bench_raw(c: &mut Criterion, fdatasync: bool) -> Meter {
    let name = if fdatasync {
        "fdatasync/1MiB"
    } else {
        "buffered/1MiB"
    };
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    let mut raw = RawFiles::new(fdatasync);
    let mut meter = Meter::new(format!("raw/{name}"), MIB as u64, 0);

    let mut group = c.benchmark_group("raw");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::BytesDecimal(MIB as u64));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                raw.write(&chunk);
            }
            let elapsed = start.elapsed();
            meter.add(iters, elapsed);
            raw.trim();
            elapsed
        });
    });
    group.finish();
    meter
}

/// `append` over `raw` as a percentage, with the target it is held against.
fn ratio_line(append: &Meter, raw: &Meter, target_pct: f64) -> String {
    match (append.bytes_per_sec(), raw.bytes_per_sec()) {
        (Some(a), Some(r)) => format!(
            "{} / {}: {:.0}% (target >= {target_pct:.0}%)",
            append.name,
            raw.name,
            100.0 * a / r
        ),
        _ => format!("{} / {}: not run", append.name, raw.name),
    }
}

fn main() {
    let mut c = criterion(Duration::from_secs(4));
    let none = |batch_records| Scenario {
        flush: FlushPolicy::None,
        batch_records,
        writers: 1,
    };
    let fsync = |writers| Scenario {
        flush: FlushPolicy::Fsync,
        batch_records: 1000,
        writers,
    };
    // Each baseline runs right before the appends it is compared with.
    let raw_buffered = bench_raw(&mut c, false);
    let none_100 = bench_append(&mut c, none(100));
    let none_1000 = bench_append(&mut c, none(1000));
    let raw_fdatasync = bench_raw(&mut c, true);
    let fsync_1 = bench_append(&mut c, fsync(1));
    let fsync_4 = bench_append(&mut c, fsync(4));
    c.final_summary();

    println!("\nsummary (totals over every timed iteration, warm-up included; MB = 10^6 bytes)");
    for meter in [
        &raw_buffered,
        &none_100,
        &none_1000,
        &raw_fdatasync,
        &fsync_1,
        &fsync_4,
    ] {
        println!("  {}", meter.line());
    }
    println!("  {}", ratio_line(&none_1000, &raw_buffered, 85.0));
    println!("  {}", ratio_line(&fsync_1, &raw_fdatasync, 80.0));
    println!("  {}", ratio_line(&fsync_4, &raw_fdatasync, 80.0));
}
