//! Counters and the latency histogram of a run, the progress line and the final summary.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::cli::output::{Output, write_json};

/// Highest latency tracked, in microseconds (one hour); larger values count as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Bytes per MB in every rate printed.
const MB: f64 = 1e6;

/// The start of a run, on the monotonic clock and on the wall clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// When the run started.
    pub(super) start: Instant,
    /// Microseconds since the Unix epoch at `start`.
    epoch_us: i64,
}

impl Clock {
    /// The clock of a run starting now.
    pub(super) fn start() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            start: Instant::now(),
            epoch_us: i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// Microseconds since the Unix epoch at `at` (not before the start).
    pub(super) fn epoch_us(&self, at: Instant) -> i64 {
        let offset = i64::try_from(at.saturating_duration_since(self.start).as_micros());
        self.epoch_us.saturating_add(offset.unwrap_or(i64::MAX))
    }
}

/// What a run has measured so far; shared by its tasks.
#[derive(Debug)]
pub(super) struct Stats {
    records: AtomicU64,
    bytes: AtomicU64,
    /// Latencies in microseconds.
    latency: Mutex<Histogram<u64>>,
}

impl Stats {
    /// Empty counters.
    pub(super) fn new() -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Stats {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            latency: Mutex::new(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?),
        }))
    }

    /// Counts `records` records of `bytes` bytes.
    pub(super) fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records one latency.
    pub(super) fn latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us(micros);
    }

    /// Records one latency shared by `count` records.
    pub(super) fn latency_n(&self, latency: Duration, count: u64) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram().saturating_record_n(micros.max(1), count);
    }

    /// Records one latency in microseconds.
    pub(super) fn latency_us(&self, micros: u64) {
        self.histogram().saturating_record(micros.max(1));
    }

    /// Records counted so far.
    pub(super) fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn histogram(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.latency.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Prints a progress line to standard error every second until aborted.
pub(super) fn spawn_progress(stats: Arc<Stats>, start: Instant) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::from_std(start) + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let (mut records, mut bytes, mut at) = (0, 0, start);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let (total_records, total_bytes) = (stats.records(), stats.bytes());
            let seconds = now.duration_since(at).as_secs_f64().max(1e-9);
            let p99 = ms(stats.histogram().value_at_quantile(0.99));
            eprintln!(
                "{:7.1}s {:>12} records {:>11.0} records/s {:>9.2} MB/s  p99 {:.3} ms",
                now.duration_since(start).as_secs_f64(),
                total_records,
                total_records.saturating_sub(records) as f64 / seconds,
                total_bytes.saturating_sub(bytes) as f64 / MB / seconds,
                p99,
            );
            (records, bytes, at) = (total_records, total_bytes, now);
        }
    })
}

/// Microseconds as milliseconds.
fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The result of a run.
#[derive(Debug)]
pub(super) struct Summary {
    mode: &'static str,
    records: u64,
    bytes: u64,
    seconds: f64,
    /// Latency quantiles p50, p90, p99, p99.9 and the maximum, in milliseconds.
    latency_ms: [f64; 5],
}

impl Summary {
    /// The summary of `stats` over a run of `elapsed`.
    pub(super) fn new(mode: &'static str, stats: &Stats, elapsed: Duration) -> Self {
        let histogram = stats.histogram();
        let at = |q| ms(histogram.value_at_quantile(q));
        Summary {
            mode,
            records: stats.records(),
            bytes: stats.bytes(),
            seconds: elapsed.as_secs_f64(),
            latency_ms: [at(0.5), at(0.9), at(0.99), at(0.999), ms(histogram.max())],
        }
    }

    fn per_second(&self, count: f64) -> f64 {
        if self.seconds > 0.0 {
            count / self.seconds
        } else {
            0.0
        }
    }

    fn json(&self) -> serde_json::Value {
        let [p50, p90, p99, p999, max] = self.latency_ms;
        json!({
            "mode": self.mode,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "records_per_sec": self.per_second(self.records as f64),
            "mb_per_sec": self.per_second(self.bytes as f64 / MB),
            "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "p999": p999, "max": max},
        })
    }

    /// Prints the summary to standard output.
    pub(super) fn print(&self, output: Output) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        match output {
            Output::Json => write_json(&mut out, &self.json())?,
            Output::Table => {
                let [p50, p90, p99, p999, max] = self.latency_ms;
                writeln!(out, "mode        {}", self.mode)?;
                writeln!(out, "records     {}", self.records)?;
                writeln!(out, "bytes       {}", self.bytes)?;
                writeln!(out, "seconds     {:.3}", self.seconds)?;
                writeln!(
                    out,
                    "records/s   {:.0}",
                    self.per_second(self.records as f64)
                )?;
                writeln!(
                    out,
                    "MB/s        {:.2}  (1 MB = 10^6 bytes)",
                    self.per_second(self.bytes as f64 / MB)
                )?;
                writeln!(
                    out,
                    "latency ms  p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}"
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_rates_and_quantiles() -> anyhow::Result<()> {
        let stats = Stats::new()?;
        for micros in 1..=1000 {
            stats.latency_us(micros * 10);
        }
        stats.add(500, 2_000_000);
        stats.add(500, 2_000_000);
        let summary = Summary::new("produce", &stats, Duration::from_secs(2)).json();
        assert_eq!(summary["records"], 1000);
        assert_eq!(summary["records_per_sec"], 500.0);
        assert_eq!(summary["mb_per_sec"], 2.0);
        let p50 = summary["latency_ms"]["p50"].as_f64().unwrap_or_default();
        assert!((4.99..=5.01).contains(&p50), "p50 {p50}");
        let max = summary["latency_ms"]["max"].as_f64().unwrap_or_default();
        assert!((9.99..=10.01).contains(&max), "max {max}");
        Ok(())
    }

    #[test]
    fn clock_maps_instants_to_epoch_microseconds() {
        let clock = Clock::start();
        let later = clock.start + Duration::from_millis(1500);
        assert_eq!(
            clock.epoch_us(later) - clock.epoch_us(clock.start),
            1_500_000
        );
    }
}
