//! `sluice bench`: a load generator that measures producing, replaying and end-to-end
//! latency against a running server.
//!
//! - `produce` drives `Log.ProduceStream` directly: each producer owns one connection and
//!   one stream, sends requests of `--batch-size` records (no keys, the server spreads them
//!   over the partitions) and keeps at most `--in-flight` requests unanswered.
//!   Latency is measured per request, from its (intended) send time to its answer.
//! - `consume` replays the topic with `Log.SubscribeBatches` from the earliest offset up to
//!   the high watermark seen at the start, counting records from the batch headers only.
//!   Latency is per streamed message: how long the consumer waited for it.
//! - With `--kafka HOST:PORT`, produce and consume speak the Kafka protocol instead
//!   ([`kafka`]): Produce v9 (`acks=-1`, one batch per request) and Fetch v12.
//! - `e2e` produces as above, stamping every record's value with its intended send time in
//!   microseconds, while consumers (the client `Consumer`) tail the topic; latency is per
//!   record, receipt time minus that stamp.
//! - `share` ([`share`]): `--consumers` members (default 4) of a fresh share group take the
//!   records of a pre-filled topic (filled first with `--records`, not measured) and accept
//!   each explicitly, the acceptances of one poll sent (and made durable) by the next, until
//!   all are accepted. Latency is per record, from the poll that returned it until its
//!   acceptance was durable.

mod consume;
mod e2e;
mod kafka;
mod produce;
mod share;
mod stats;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use sluice_client::{Client, Code, NewTopic, TopicDescription, Transport};
use sluice_proto::v1::log_client::LogClient;
use sluice_storage::batch::RecordBatchBuilder;

use super::ConnectArgs;
use super::output::Output;
use stats::{Clock, Stats, Summary};

/// Largest response message accepted.
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Longest wait for any one answer of the server before the run fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `sluice bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
produce: each producer drives Log.ProduceStream directly with requests of --batch-size \
records and at most --in-flight requests unanswered (default 8); latency is per request, from its intended send \
time to its acknowledgement.
consume: replays the topic with Log.SubscribeBatches from the earliest offset to the high \
watermark seen at the start, counting records from batch headers; latency is per streamed \
message (the wait for it).
e2e: produces as above, each record stamped with its intended send time, while client \
consumers tail the topic; latency is per record, receipt time minus the send time stamped in \
the first 8 bytes of the value (records under 8 bytes: minus the timestamp, 1 ms resolution).
share: with --records, fills the topic first (as produce, not measured); then --consumers \
members (default 4) of a new share group, starting at the earliest record, each poll up to \
--ack-every records and accept every one, the next poll sending the acceptances and \
returning once they are durable, until every record the topic held is accepted; the group \
is deleted at the end. Records/s counts records accepted; latency is per record, from the \
poll that returned it until its acceptance was durable.
With --rate, requests are sent open-loop on a fixed schedule and latency counts from the \
scheduled time, so queueing is not hidden. MB/s counts payload bytes (consume: stored batch \
bytes), 1 MB = 10^6 bytes.")]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// What to measure
    #[arg(value_enum)]
    mode: Mode,
    /// Topic to use; created if missing
    #[arg(long, default_value = "sluice-bench", value_name = "T")]
    topic: String,
    /// Records to produce (produce, e2e: required unless --duration is given; share: to fill
    /// the topic with before the measured part)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    records: Option<u64>,
    /// Payload bytes per record (random bytes, no key)
    #[arg(long, value_name = "B", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(0..=16 << 20))]
    record_size: u32,
    /// Records per produce request
    #[arg(long, value_name = "K", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_size: u32,
    /// Produce requests each producer keeps sent and unanswered (1: one batch at a time)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    in_flight: u32,
    /// How a gRPC produce request carries its records: as protobuf records the server
    /// encodes into a batch, or as one Kafka record batch the producer encoded
    /// (`ProduceRequest.record_batches`, as the client library's producer sends)
    #[arg(long, value_enum, default_value_t)]
    encoding: Encoding,
    /// Concurrent producers, each with its own connection
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    producers: u32,
    /// Concurrent consumers, splitting the partitions between them (share: members of the
    /// share group) [default: 1; share: 4]
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u32).range(1..=1024))]
    consumers: Option<u32>,
    /// Records each share group member may hold unacknowledged (share; at most the server's
    /// share.max_prefetch)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    prefetch: u32,
    /// Records each share group member polls, accepts and commits at a time (share); below
    /// --prefetch, the next records come while a commit is on its way [default: half the
    /// prefetch]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    ack_every: Option<u32>,
    /// Total records per second over all producers (open loop); default: as fast as acknowledged
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Stop producing (or replaying) after this many seconds
    #[arg(long, value_name = "S", value_parser = seconds)]
    duration: Option<Duration>,
    /// Partitions of the topic if it is created
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// flush.policy of the topic if it is created (default: the server's)
    #[arg(long, value_enum)]
    flush: Option<Flush>,
    /// Speak the Kafka protocol to this Kafka listener (`host:port`) for produce and consume;
    /// the topic is still created over gRPC
    #[arg(long, value_name = "HOST:PORT")]
    kafka: Option<String>,
    /// Output format of the summary
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// How `sluice bench produce` encodes a gRPC request's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum Encoding {
    /// Protobuf records (`ProduceRequest.records`)
    #[default]
    Records,
    /// One Kafka record batch (`ProduceRequest.record_batches`)
    Batch,
}

/// What `sluice bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Produce records and measure acknowledgement latency
    Produce,
    /// Replay the topic from the earliest offset
    Consume,
    /// Produce while consuming and measure produce-to-receipt latency
    E2e,
    /// Take and accept every record of the topic as members of a share group
    Share,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::E2e => "e2e",
            Mode::Share => "share",
        }
    }
}

impl BenchArgs {
    /// Consumers (share: members) to run.
    fn consumers(&self) -> u32 {
        let default = if self.mode == Mode::Share { 4 } else { 1 };
        self.consumers.unwrap_or(default)
    }

    /// Records a share group member polls and commits at a time.
    fn ack_every(&self) -> u32 {
        self.ack_every
            .unwrap_or(self.prefetch / 2)
            .clamp(1, self.prefetch)
    }
}

/// The `flush.policy` of a created topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Flush {
    /// Acknowledge only once on stable storage
    Fsync,
    /// fsync every flush.ms
    Interval,
    /// Leave write-back to the operating system
    None,
}

impl Flush {
    fn policy(self) -> &'static str {
        match self {
            Flush::Fsync => "fsync",
            Flush::Interval => "interval",
            Flush::None => "none",
        }
    }
}

/// Parses a positive number of seconds.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|_| format!("not a number: {text}"))?;
    if value.is_nan() || value <= 0.0 {
        return Err("must be more than 0".into());
    }
    Duration::try_from_secs_f64(value).map_err(|err| err.to_string())
}

/// Runs `sluice bench`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let needs_records = matches!(args.mode, Mode::Produce | Mode::E2e);
    if needs_records && args.records.is_none() && args.duration.is_none() {
        bail!("give --records or --duration");
    }
    if args.mode == Mode::Share && args.kafka.is_some() {
        bail!("--kafka measures produce and consume, not share");
    }
    let client = args.connect.connect().await?;
    let mut topic = ensure_topic(&client, &args).await?;
    if args.mode == Mode::Share {
        topic = share::prefill(&client, &args, topic).await?;
    }
    let clock = Clock::start();
    let deadline = args.duration.map(|d| clock.start + d);
    let stats = Stats::new()?;
    let progress = stats::spawn_progress(stats.clone(), clock.start);
    let outcome = match (args.mode, args.kafka.as_deref()) {
        (Mode::Produce, None) => produce::run_all(&args, &topic, &clock, deadline, &stats).await,
        (Mode::Produce, Some(addr)) => {
            kafka::produce_all(addr, &args, &topic, &clock, deadline, &stats).await
        }
        (Mode::Consume, None) => consume::run_all(&args, &topic, deadline, &stats).await,
        (Mode::Consume, Some(addr)) => {
            kafka::consume_all(addr, &args, &topic, deadline, &stats).await
        }
        (Mode::E2e, None) => e2e::run(&client, &args, &topic, &clock, deadline, &stats).await,
        (Mode::E2e, Some(_)) => bail!("--kafka measures produce and consume, not e2e"),
        (Mode::Share, _) => share::run(&client, &args, &topic, deadline, &stats).await,
    };
    progress.abort();
    let finished = outcome?;
    Summary::new(args.mode.name(), &stats, finished - clock.start).print(args.output)
}

/// The topic described, created first if missing.
async fn ensure_topic(client: &Client, args: &BenchArgs) -> anyhow::Result<TopicDescription> {
    let admin = client.admin();
    match admin.describe_topic(&args.topic).await {
        Err(err) if err.code() == Some(Code::NotFound) => {
            let mut topic = NewTopic::new(args.topic.as_str(), args.partitions);
            if let Some(flush) = args.flush {
                topic = topic.config("flush.policy", flush.policy());
            }
            admin
                .create_topic(topic)
                .await
                .with_context(|| format!("cannot create topic '{}'", args.topic))
        }
        other => Ok(other?),
    }
}

/// A `Log` client on a connection of its own (with the CLI's TLS settings and
/// credentials).
async fn log_service(connect: &ConnectArgs) -> anyhow::Result<LogClient<Transport>> {
    let client = connect.connect().await?;
    Ok(client
        .log_service()
        .max_decoding_message_size(MAX_RESPONSE_BYTES))
}

/// Waits for every task of `tasks` (producers or consumers, named by `what`); returns when
/// the last one finished, or the first failure.
async fn finish_all(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    what: &str,
) -> anyhow::Result<Instant> {
    for task in tasks {
        task.await
            .with_context(|| format!("a {what} task failed"))??;
    }
    Ok(Instant::now())
}

/// `len` pseudo-random bytes (xorshift, seeded from the clock): incompressible payload.
/// One uncompressed record batch of `count` records holding `value`, stamped
/// `timestamp_ms`, with no key or headers.
fn encoded_batch(value: &[u8], count: u64, timestamp_ms: i64) -> anyhow::Result<Bytes> {
    // A record adds at most 21 bytes of framing to its value here.
    let capacity = (value.len() + 21) * count as usize + sluice_storage::batch::HEADER_LEN;
    let mut builder = RecordBatchBuilder::with_capacity(capacity);
    for _ in 0..count {
        builder.push(timestamp_ms, None, Some(value), std::iter::empty())?;
    }
    Ok(builder.finish().context("an empty batch")?.freeze())
}

fn random_payload(len: u32, seed: u64) -> Bytes {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len as usize);
    while bytes.len() < len as usize {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_be_bytes());
    }
    bytes.truncate(len as usize);
    Bytes::from(bytes)
}

/// Splits `total` into `parts` shares that differ by at most one.
fn share(total: u64, parts: u32, index: u32) -> u64 {
    let parts = u64::from(parts.max(1));
    total / parts + u64::from(u64::from(index) < total % parts)
}

/// Nanoseconds since `start`, for seeding.
fn seed(start: Instant, salt: u32) -> u64 {
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    nanos ^ (u64::from(salt) << 32) ^ 0x9E37_79B9_7F4A_7C15
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (total, parts) in [(10, 3), (2, 5), (0, 1), (1_000_001, 7)] {
            let shares: Vec<u64> = (0..parts).map(|i| share(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total);
            let (min, max) = (shares.iter().min(), shares.iter().max());
            assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
        }
    }

    #[test]
    fn payloads_have_the_requested_size_and_vary() {
        assert_eq!(random_payload(0, 1).len(), 0);
        let payload = random_payload(1001, 42);
        assert_eq!(payload.len(), 1001);
        assert!(payload.iter().any(|&b| b != payload[0]));
        assert_ne!(random_payload(64, 1), random_payload(64, 2));
    }

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(seconds("0").is_err());
        assert!(seconds("-3").is_err());
        assert!(seconds("NaN").is_err());
        assert!(seconds("soon").is_err());
    }
}
