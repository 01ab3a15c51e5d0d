//! Read-path benchmarks of the partition log, served from the page cache.
//!
//! Setup writes two logs of about 1 GiB each (one 1 GiB segment, 1 KiB records, record `n`
//! stamped `BASE_TS + n` ms; 16 MiB when run once as a test) and fsyncs them, so that write-back
//! does not run during the measurements:
//! - the *scan* log: batches of 100 records (~103 KB);
//! - the *lookup* log: batches of 1 record (~1.1 KB), about a million of them.
//!
//! Scenarios:
//! - `read/sequential`: read the whole scan log from offset 0 in `max_bytes` = 1 MiB reads,
//!   walking to the last offset returned + 1;
//! - `lookup/offset/...`: `read(offset, 1)` at random offsets (the cost of finding and returning
//!   the batch that holds one offset);
//! - `lookup/timestamp/...`: `offset_for_timestamp` at random timestamps.
//! - `decode/<codec>`: every record of one scan-log batch (100 records of 1 KiB) decoded as
//!   `RecordView`s, the batch stored uncompressed (`none`: views into the batch) or compressed
//!   as a Kafka client does it (views into its records, decompressed once); MB/s count the
//!   uncompressed batch, so the codecs compare on the same records;
//! - `check/<codec>`: the record check a compressed client batch gets at produce
//!   (`batch::validate_records`).
//!
//! Criterion reports means; a separate loop timing each lookup into an HDR histogram gives the
//! percentiles. Run with `cargo bench -p sluice-storage --bench read`.

mod support;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, SamplingMode, Throughput};
use hdrhistogram::Histogram;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_storage::batch::{self, DEFAULT_MAX_DECOMPRESSED_BYTES};
use sluice_storage::{FlushPolicy, Log, LogConfig};
use support::{MIB, Meter, batch, bench_dir, criterion, measuring};
use tempfile::TempDir;

/// Target size of each benchmark log: one default-sized segment.
const LOG_BYTES: u64 = 1 << 30;

/// Target size of each log when the benchmarks only run once as tests (`cargo test`).
const TEST_LOG_BYTES: u64 = 16 << 20;

/// Timestamp of offset 0; offset `n` has timestamp `BASE_TS + n`.
const BASE_TS: i64 = 1_700_000_000_000;

/// Most lookups timed one by one for the percentiles.
const LATENCY_SAMPLES: u64 = 200_000;

/// Lookups timed one by one when the benchmarks only run once as tests.
const TEST_LATENCY_SAMPLES: u64 = 1_000;

/// Longest a percentile loop runs.
const LATENCY_BUDGET: Duration = Duration::from_secs(3);

/// A log written for the read benchmarks, deleted when dropped.
#[derive(Debug)]
struct BenchLog {
    log: Log,
    batch_records: usize,
    _dir: TempDir,
}

impl BenchLog {
    /// Writes up to `bytes` (at most one segment) of batches of `batch_records` records,
    /// `batches_per_append` batches per append, then fsyncs the log.
    fn build(bytes: u64, batch_records: usize, batches_per_append: usize) -> BenchLog {
        let dir = bench_dir("read");
        let config = LogConfig {
            flush: FlushPolicy::None,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config).expect("open the benchmark log");
        let started = Instant::now();
        loop {
            let next = log.log_end_offset();
            let mut chunk = BytesMut::new();
            for i in 0..batches_per_append {
                let first = next + (i * batch_records) as u64;
                chunk.extend_from_slice(&batch(batch_records, BASE_TS + first as i64));
            }
            if log.size_bytes() + chunk.len() as u64 > bytes {
                break;
            }
            log.append(&mut chunk).expect("append to the benchmark log");
        }
        log.flush().expect("fsync the benchmark log");
        assert_eq!(
            log.segment_count(),
            1,
            "the benchmark log should be one segment"
        );
        println!(
            "setup: {:.2} GB in {} records, batches of {batch_records}, written and fsynced in {:.1} s",
            log.size_bytes() as f64 / 1e9,
            log.high_watermark(),
            started.elapsed().as_secs_f64()
        );
        BenchLog {
            log,
            batch_records,
            _dir: dir,
        }
    }
}

/// Reads the whole log from its start in `max_bytes` = 1 MiB reads; returns the bytes and
/// records read.
fn read_through(log: &Log) -> (u64, u64) {
    let start = log.log_start_offset();
    let end = log.high_watermark();
    let (mut next, mut bytes) = (start, 0u64);
    while next < end {
        let read = log.read(next, MIB).expect("read the benchmark log");
        bytes += read.batches.len() as u64;
        let last = batch::batches(read.batches)
            .map(|b| b.expect("whole batches").0.last_offset())
            .last()
            .expect("a read below the high watermark returns a batch");
        next = last + 1;
    }
    (bytes, next - start)
}

fn bench_sequential_read(c: &mut Criterion, scan: &BenchLog) -> Meter {
    let log = &scan.log;
    let (size, records) = (log.size_bytes(), log.high_watermark());
    let mut meter = Meter::new(
        format!("read/sequential/batch={}", scan.batch_records),
        size,
        records,
    );
    let mut group = c.benchmark_group("read");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::BytesDecimal(size));
    group.bench_function(format!("sequential/batch={}", scan.batch_records), |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let read = read_through(log);
                elapsed += start.elapsed();
                assert_eq!(
                    read,
                    (size, records),
                    "a full read must return the whole log"
                );
            }
            meter.add(iters, elapsed);
            elapsed
        });
    });
    group.finish();
    meter
}

/// A small, fast pseudo-random generator (SplitMix64) for lookup keys.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// `read(offset, 1)`: the batch holding `offset`, checked to hold it.
fn offset_lookup(log: &Log, offset: u64) -> bool {
    let read = log.read(offset, 1).expect("read the benchmark log");
    match batch::batches(read.batches).next() {
        Some(Ok((header, _))) => header.base_offset <= offset && offset <= header.last_offset(),
        _ => false,
    }
}

/// `offset_for_timestamp` of the timestamp stamped on `offset`, checked to find it.
fn timestamp_lookup(log: &Log, offset: u64) -> bool {
    let found = log
        .offset_for_timestamp(BASE_TS + offset as i64)
        .expect("timestamp lookup on the benchmark log");
    found == Some(offset)
}

/// Latency percentiles of one kind of lookup.
#[derive(Debug)]
struct Latency {
    name: String,
    histogram: Histogram<u64>,
}

impl Latency {
    fn line(&self) -> String {
        let h = &self.histogram;
        if h.is_empty() {
            return format!("{:<30} not run", self.name);
        }
        let us = |ns: u64| ns as f64 / 1e3;
        format!(
            "{:<30} mean {:>8.2} us  p50 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>9.2} us  (n = {})",
            self.name,
            h.mean() / 1e3,
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
            h.len()
        )
    }
}

/// Measures one kind of lookup at random offsets of `target`: criterion's mean, then a loop
/// timing each call for the percentiles. Every timed lookup's answer is checked afterwards.
fn bench_lookup(
    c: &mut Criterion,
    kind: &str,
    target: &BenchLog,
    lookup: fn(&Log, u64) -> bool,
    max_samples: u64,
) -> Latency {
    let name = format!("{kind}/batch={}", target.batch_records);
    let log = &target.log;
    let end = log.high_watermark();
    let mut rng = SplitMix(0x5EED);

    let mut ran = false;
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name.as_str(), |b| {
        ran = true;
        b.iter(|| lookup(log, rng.below(end)));
    });
    group.finish();

    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let started = Instant::now();
    // Skipped when the command line filtered the criterion benchmark out.
    let samples = if ran { max_samples } else { 0 };
    for _ in 0..samples {
        let offset = rng.below(end);
        let start = Instant::now();
        let found = lookup(log, offset);
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        assert!(found, "{name}: wrong answer for offset {offset}");
        histogram.saturating_record(ns.max(1));
        if started.elapsed() > LATENCY_BUDGET {
            break;
        }
    }
    Latency {
        name: format!("lookup/{name}"),
        histogram,
    }
}

/// `batch` (uncompressed) encoded again with `codec` by an independent Kafka implementation,
/// as a Kafka client would send it.
fn kafka_encoded(batch: &Bytes, codec: Compression) -> Bytes {
    let records: Vec<Record> = batch::records(batch.clone())
        .expect("a valid batch")
        .map(|r| {
            let r = r.expect("a valid record");
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: r.offset as i64,
                sequence: r.offset as i32 - 1,
                timestamp: r.timestamp_ms,
                key: r.key,
                value: r.value,
                headers: Default::default(),
            }
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut out, &records, &options).expect("encode");
    out.freeze()
}

/// Decodes every record of `batch`; returns the value bytes seen.
fn decode_all(batch: &Bytes) -> u64 {
    batch::records(batch.clone())
        .expect("a valid batch")
        .map(|r| {
            r.expect("a valid record")
                .value
                .map_or(0, |v| v.len() as u64)
        })
        .sum()
}

/// Times `work` on one batch whose records take `plain_len` bytes uncompressed.
fn bench_batch(
    c: &mut Criterion,
    group: &str,
    codec: &str,
    plain_len: usize,
    work: impl Fn() -> u64,
) -> Meter {
    let mut meter = Meter::new(format!("{group}/{codec}"), plain_len as u64, 100);
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::BytesDecimal(plain_len as u64));
    g.bench_function(codec, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(work());
            }
            let elapsed = start.elapsed();
            meter.add(iters, elapsed);
            elapsed
        });
    });
    g.finish();
    meter
}

/// The decode and record-check scenarios, on one batch of the scan log's kind per codec.
fn bench_codecs(c: &mut Criterion) -> Vec<Meter> {
    let plain = batch(100, BASE_TS).freeze();
    let values = decode_all(&plain);
    let codecs = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    let mut meters = Vec::new();
    for (name, codec) in codecs {
        let stored = if codec == Compression::None {
            plain.clone()
        } else {
            kafka_encoded(&plain, codec)
        };
        assert_eq!(
            decode_all(&stored),
            values,
            "{name} decodes to the same records"
        );
        meters.push(bench_batch(c, "decode", name, plain.len(), || {
            decode_all(&stored)
        }));
        if codec != Compression::None {
            meters.push(bench_batch(c, "check", name, plain.len(), || {
                batch::validate_records(&stored, DEFAULT_MAX_DECOMPRESSED_BYTES)
                    .expect("a valid batch");
                stored.len() as u64
            }));
        }
    }
    meters
}

fn main() {
    let mut c = criterion(Duration::from_secs(1), Duration::from_secs(3));
    let measuring = measuring();
    let (log_bytes, samples) = if measuring {
        (LOG_BYTES, LATENCY_SAMPLES)
    } else {
        (TEST_LOG_BYTES, TEST_LATENCY_SAMPLES)
    };
    let scan = BenchLog::build(log_bytes, 100, 10);
    let lookups = BenchLog::build(log_bytes, 1, 1000);

    let sequential = bench_sequential_read(&mut c, &scan);
    let codecs = bench_codecs(&mut c);
    let latencies = [
        bench_lookup(&mut c, "offset", &lookups, offset_lookup, samples),
        bench_lookup(&mut c, "offset", &scan, offset_lookup, samples),
        bench_lookup(&mut c, "timestamp", &lookups, timestamp_lookup, samples),
        bench_lookup(&mut c, "timestamp", &scan, timestamp_lookup, samples),
    ];
    c.final_summary();
    if !measuring {
        return;
    }

    println!("\nsummary (MB = 10^6 bytes; lookup times include ~25 ns of clock reads)");
    println!("  {}", sequential.line());
    for meter in &codecs {
        println!("  {}", meter.line());
    }
    for latency in &latencies {
        println!("  {}", latency.line());
    }
}
