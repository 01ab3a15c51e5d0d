//! Prometheus metrics.
//!
//! Two kinds of families make up `/metrics`:
//! - events, recorded as they happen through the `metrics` facade into the process's
//!   Prometheus recorder: latency and batch size histograms (the broker records them),
//!   fsync latency (timed by the storage layer, see [`sluice_broker::observe_syncs`]),
//!   gRPC connections, open calls and responses by status code (counted by the gRPC front
//!   end's [`sluice_grpc::ObserveCalls`] layer and [`sluice_grpc::Accept`]);
//! - state, read from the broker at scrape time ([`state`]): per partition offsets, size,
//!   segments and traffic counters, per group committed offsets, lag and delay, per share
//!   group and partition the queue's length (waiting records), records in flight, delay
//!   and the accepted and dead-lettered counters.
//!
//! Labels are bounded: `topic`, `partition`, `group`, `rpc` and `code` only.

mod http;
mod state;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub(crate) use http::{MetricsEndpoint, serve};

/// Bucket bounds of the latency histograms, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Bucket bounds of the append batch record count histogram.
const RECORD_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 100000.0,
];
/// Bucket bounds of the append batch size histogram, in bytes: 64 B to 16 MiB.
const BYTE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];
/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The recorder's handle; the recorder is installed once per process.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's Prometheus recorder (the first call does; later calls share it)
/// and returns its handle. Histograms get explicit buckets, so they render as Prometheus
/// histograms.
pub(crate) fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = buckets(PrometheusBuilder::new()).build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "another metrics recorder is installed; /metrics shows broker state only"
                );
            }
            describe();
            sluice_broker::observe_syncs(record_fsync);
            handle
        })
        .clone()
}

/// `builder` with the buckets of every histogram Sluice records.
fn buckets(builder: PrometheusBuilder) -> PrometheusBuilder {
    let families = [
        (Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS),
        (
            Matcher::Full("sluice_append_batch_records".to_owned()),
            RECORD_BUCKETS,
        ),
        (
            Matcher::Full("sluice_append_batch_bytes".to_owned()),
            BYTE_BUCKETS,
        ),
    ];
    families
        .into_iter()
        .fold(builder, |builder, (matcher, bounds)| {
            // Only an empty bucket list is refused, and none of these is empty.
            builder
                .set_buckets_for_metric(matcher, bounds)
                .expect("bucket lists are not empty")
        })
}

/// Records one fsync of segment data.
fn record_fsync(elapsed: Duration) {
    metrics::histogram!("sluice_fsync_duration_seconds").record(elapsed);
}

/// Help texts of the event families.
fn describe() {
    describe_histogram!(
        "sluice_produce_duration_seconds",
        Unit::Seconds,
        "Produce request latency: from queueing its batches to their acknowledgement (written, and fsynced under flush.policy=fsync)."
    );
    describe_histogram!(
        "sluice_fetch_duration_seconds",
        Unit::Seconds,
        "Fetch read latency: reading a fetch's batches from the log, not counting the long-poll wait for new records."
    );
    describe_histogram!(
        "sluice_fsync_duration_seconds",
        Unit::Seconds,
        "Latency of each fsync of segment data; its _count is the number of fsyncs."
    );
    describe_histogram!(
        "sluice_append_batch_records",
        Unit::Count,
        "Records per appended batch (one batch per partition of a produce request)."
    );
    describe_histogram!(
        "sluice_append_batch_bytes",
        Unit::Bytes,
        "Bytes per appended batch (one batch per partition of a produce request)."
    );
    describe_counter!(
        "sluice_produce_duplicates_total",
        Unit::Count,
        "Idempotent producers' retries of batches stored before, answered with their original offsets and not stored again."
    );
    describe_gauge!(
        "sluice_grpc_connections",
        Unit::Count,
        "Open client connections to the gRPC port."
    );
    describe_gauge!(
        "sluice_grpc_open_calls",
        Unit::Count,
        "gRPC calls whose response is still open, by rpc: for Subscribe, SubscribeBatches, ProduceStream and Consume the open streams."
    );
    describe_counter!(
        "sluice_grpc_responses_total",
        Unit::Count,
        "Finished gRPC calls by rpc and status code (OK included; Cancelled when the client went away)."
    );
}

/// Folds histogram samples into their buckets regularly, so that memory stays bounded when
/// nobody scrapes. Runs until dropped.
async fn upkeep(handle: PrometheusHandle) {
    let mut ticker = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        ticker.tick().await;
        handle.run_upkeep();
    }
}
