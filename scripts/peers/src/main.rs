//! `peerbench`: the load generator that scripts/compare-peers.sh runs against the brokers
//! Sluice is compared with, measuring what `sluice bench` measures and printing the same JSON
//! summary (`records`, `bytes`, `seconds`, `records_per_sec`, `mb_per_sec`, `latency_ms`).
//!
//! Systems:
//! - `nats`: NATS JetStream, a file-storage stream with one replica (async-nats).
//! - `stream`: a RabbitMQ stream (rabbitmq_stream plugin, rabbitmq-stream-client).
//! - `queue`: a RabbitMQ classic durable queue, persistent messages, publisher confirms (lapin).
//!
//! Modes:
//! - `produce`: sends `--records` messages (or for `--duration` seconds) in sends of
//!   `--batch-size` messages (`stream` only; the others send one message at a time) with at
//!   most `--window` sends unconfirmed. Latency is per send, from its intended send time to
//!   its confirmation. With `--rate`, sends are due on a fixed schedule (open loop) and latency
//!   counts from the schedule.
//! - `consume`: reads `--records` messages from the start of the stream (`nats`, `stream`).
//!   Latency is per message: how long the consumer waited for it.
//! - `e2e`: produces as `produce` does while a consumer tails the stream; every payload starts
//!   with its intended send time (microseconds since the run started, little-endian) and
//!   latency is per message, receipt time minus that.
//! - `work` (`queue` only), the counterpart of `sluice bench share`: fills the queue with
//!   `--records` persistent messages first (publisher confirms, not measured), then
//!   `--consumers` consumers, each on its own connection with `basic.qos(--prefetch)`, take
//!   them with manual acknowledgement, acknowledging every `--ack-every` deliveries with one
//!   `basic.ack(multiple)` (and what they hold whenever the queue runs dry), until every
//!   message is acknowledged. Latency is per message, from its delivery to the ack that
//!   covers it being sent (RabbitMQ does not answer acks).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull, stream as js_stream};
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use lapin::{BasicProperties, Connection, ConnectionProperties, options::*, types::FieldTable};
use rabbitmq_stream_client::Environment;
use rabbitmq_stream_client::types::{Message, OffsetSpecification};

/// No run lasts longer than this.
const HARD_LIMIT: Duration = Duration::from_secs(180);
/// How long an e2e consumer may take to receive the last messages once producing ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Highest latency tracked, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum System {
    /// NATS JetStream, file storage
    Nats,
    /// RabbitMQ stream
    Stream,
    /// RabbitMQ classic durable queue with persistent messages and publisher confirms
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Produce,
    Consume,
    E2e,
    Work,
}

/// Flags of `peerbench`.
#[derive(Debug, clap::Parser)]
struct Args {
    #[arg(value_enum)]
    system: System,
    #[arg(value_enum)]
    mode: Mode,
    /// Messages to send (produce, e2e) or read (consume)
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Payload bytes per message
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Messages per send (stream only)
    #[arg(long, default_value_t = 1)]
    batch_size: u64,
    /// Most sends unconfirmed
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Messages per second, open loop
    #[arg(long)]
    rate: Option<f64>,
    /// Stop producing after this many seconds
    #[arg(long)]
    duration: Option<f64>,
    /// Stream, queue or JetStream stream name
    #[arg(long, default_value = "bench")]
    name: String,
    /// Host of the broker
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Consumers (work)
    #[arg(long, default_value_t = 4)]
    consumers: u32,
    /// Unacknowledged deliveries each consumer may hold: basic.qos prefetch count (work)
    #[arg(long, default_value_t = 1000)]
    prefetch: u16,
    /// Deliveries per acknowledgement (work): one basic.ack with multiple=true
    #[arg(long, default_value_t = 100)]
    ack_every: usize,
}

/// Counters and latencies of a run, shared by its tasks.
#[derive(Debug)]
struct Stats {
    records: AtomicU64,
    bytes: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
}

impl Stats {
    fn new() -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Stats {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            latency_us: Mutex::new(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?),
        }))
    }

    fn add(&self, records: u64, bytes: u64, latency: Duration) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(micros);
    }

    fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Counts messages received at `received`, `bytes` bytes in all, acknowledged now.
    fn acked(&self, received: &[Instant], bytes: u64) {
        let now = Instant::now();
        let mut histogram = self.latency_us.lock().unwrap_or_else(PoisonError::into_inner);
        for at in received {
            let micros = u64::try_from(now.duration_since(*at).as_micros()).unwrap_or(u64::MAX);
            histogram.saturating_record(micros.max(1));
        }
        drop(histogram);
        self.records.fetch_add(received.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn summary(&self, args: &Args, seconds: f64) -> serde_json::Value {
        let histogram = self.latency_us.lock().unwrap_or_else(PoisonError::into_inner);
        let ms = |micros: u64| micros as f64 / 1000.0;
        let at = |q| ms(histogram.value_at_quantile(q));
        let (records, bytes) = (self.records(), self.bytes.load(Ordering::Relaxed));
        serde_json::json!({
            "system": format!("{:?}", args.system).to_lowercase(),
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "records": records,
            "bytes": bytes,
            "seconds": seconds,
            "records_per_sec": records as f64 / seconds,
            "mb_per_sec": bytes as f64 / 1e6 / seconds,
            "latency_ms": {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999),
                           "max": ms(histogram.max())},
        })
    }
}

/// A confirmation still to come.
type Confirm = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Sends messages to one broker.
trait Sender {
    /// Sends `payloads` as one send; the future resolves once the broker confirmed them all.
    async fn send(&mut self, payloads: Vec<Bytes>) -> anyhow::Result<Confirm>;
}

/// What a producer sends and when.
#[derive(Debug, Clone)]
struct Plan {
    records: u64,
    batch: u64,
    window: usize,
    rate: Option<f64>,
    deadline: Instant,
    payload: Bytes,
    /// Whether each payload starts with its intended send time (e2e).
    stamp: bool,
    start: Instant,
}

impl Plan {
    fn new(args: &Args, start: Instant) -> Self {
        let duration = args.duration.map_or(HARD_LIMIT, Duration::from_secs_f64);
        Plan {
            records: args.records,
            batch: if args.system == System::Stream { args.batch_size.max(1) } else { 1 },
            window: args.window.max(1),
            rate: args.rate,
            deadline: start + duration.min(HARD_LIMIT),
            payload: random_payload(args.record_size),
            stamp: args.mode == Mode::E2e,
            start,
        }
    }

    /// When the send starting at message `sent` and holding `count` messages is due.
    fn due(&self, sent: u64, count: u64) -> Instant {
        match self.rate {
            Some(rate) => self.start + Duration::from_secs_f64((sent + count) as f64 / rate),
            None => Instant::now(),
        }
    }

    fn payloads(&self, count: u64, due: Instant) -> Vec<Bytes> {
        (0..count)
            .map(|_| {
                if self.stamp && self.payload.len() >= 8 {
                    let mut stamped = self.payload.to_vec();
                    let micros = due.saturating_duration_since(self.start).as_micros() as u64;
                    stamped[..8].copy_from_slice(&micros.to_le_bytes());
                    Bytes::from(stamped)
                } else {
                    self.payload.clone()
                }
            })
            .collect()
    }
}

/// Runs the plan with `sender`; confirmed messages and per-send latencies go to `stats`.
async fn produce(plan: &Plan, mut sender: impl Sender, stats: &Stats) -> anyhow::Result<()> {
    let mut pending = FuturesUnordered::new();
    let mut sent = 0u64;
    let size = plan.payload.len() as u64;
    loop {
        let more = sent < plan.records && Instant::now() < plan.deadline;
        if !more && pending.is_empty() {
            return Ok(());
        }
        let count = plan.batch.min(plan.records.saturating_sub(sent)).max(1);
        let due = plan.due(sent, count);
        tokio::select! {
            biased;
            Some(done) = pending.next(), if !pending.is_empty() => {
                let (due, count): (Instant, u64) = done?;
                stats.add(count, count * size, due.elapsed());
            }
            () = sleep_until(due), if more && pending.len() < plan.window => {
                let confirm = sender.send(plan.payloads(count, due)).await?;
                pending.push(async move {
                    tokio::time::timeout(Duration::from_secs(60), confirm)
                        .await
                        .context("no confirmation within 60 s")??;
                    anyhow::Ok((due, count))
                });
                sent += count;
            }
        }
    }
}

/// Returns at `due` (at once if it has passed). tokio's timer ticks every millisecond, which
/// would make sends up to 1 ms late (counted as latency) and cap a closed loop at one send per
/// millisecond; the last 2 ms are slept on a blocking thread instead, as `sluice bench` does.
async fn sleep_until(due: Instant) {
    if let Some(early) = due.checked_sub(Duration::from_millis(2)).filter(|&e| Instant::now() < e) {
        tokio::time::sleep_until(early.into()).await;
    }
    let rest = due.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

/// Records a received message: its latency from its stamp (e2e) or from the previous one.
fn received(stats: &Stats, payload: &[u8], start: Instant, previous: &mut Instant, e2e: bool) {
    let now = Instant::now();
    let latency = if e2e && payload.len() >= 8 {
        let mut stamp = [0; 8];
        stamp.copy_from_slice(&payload[..8]);
        now.saturating_duration_since(start + Duration::from_micros(u64::from_le_bytes(stamp)))
    } else {
        now.duration_since(*previous)
    };
    *previous = now;
    stats.add(1, payload.len() as u64, latency);
}

/// Waits until `stats` counted `expected` messages, the consumer ended or the drain timed out.
async fn drain<T>(stats: &Stats, expected: u64, consumer: &tokio::task::JoinHandle<T>) -> anyhow::Result<()> {
    let give_up = Instant::now() + DRAIN_TIMEOUT;
    while stats.records() < expected {
        ensure!(!consumer.is_finished(), "the consumer stopped after {} of {expected}", stats.records());
        ensure!(Instant::now() < give_up, "received {} of {expected} within {DRAIN_TIMEOUT:?}", stats.records());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// `len` pseudo-random (incompressible) bytes.
fn random_payload(len: usize) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    Bytes::from(bytes)
}

// ---- NATS JetStream ----

struct NatsSender {
    js: jetstream::Context,
    subject: String,
}

impl Sender for NatsSender {
    async fn send(&mut self, payloads: Vec<Bytes>) -> anyhow::Result<Confirm> {
        let mut acks = Vec::with_capacity(payloads.len());
        for payload in payloads {
            acks.push(self.js.publish(self.subject.clone(), payload).await?);
        }
        Ok(Box::pin(async move {
            for ack in acks {
                ack.await?;
            }
            Ok(())
        }))
    }
}

/// Runs the mode against NATS JetStream; returns when the measured part started.
async fn nats(args: &Args, stats: &Arc<Stats>) -> anyhow::Result<Instant> {
    ensure!(args.mode != Mode::Work, "work: only the queue system");
    let client = async_nats::connect(format!("{}:4222", args.host)).await?;
    let js = jetstream::new(client);
    let subject = format!("{}.data", args.name);
    if args.mode != Mode::Consume {
        let _ = js.delete_stream(&args.name).await;
        js.create_stream(js_stream::Config {
            name: args.name.clone(),
            subjects: vec![format!("{}.>", args.name)],
            storage: js_stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await?;
    }
    let start = Instant::now();
    let plan = Plan::new(args, start);
    let sender = NatsSender { js: js.clone(), subject };
    if args.mode == Mode::Produce {
        produce(&plan, sender, stats).await?;
        return Ok(start);
    }
    let stream = js.get_stream(&args.name).await?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .create_consumer(pull::Config { ack_policy: AckPolicy::None, ..Default::default() })
        .await?;
    let mut messages = consumer.stream().max_messages_per_batch(1000).messages().await?;
    let (reader_stats, e2e, records) = (Arc::clone(stats), args.mode == Mode::E2e, args.records);
    let reader = tokio::spawn(async move {
        let mut previous = Instant::now();
        while reader_stats.records() < records {
            let Some(message) = messages.next().await else { bail!("the subscription ended") };
            let message = message.map_err(|err| anyhow::anyhow!("{err}"))?;
            received(&reader_stats, &message.payload, start, &mut previous, e2e);
        }
        anyhow::Ok(())
    });
    if e2e {
        let produced = Stats::new()?;
        produce(&plan, sender, &produced).await?;
        drain(stats, produced.records(), &reader).await?;
        reader.abort();
    } else {
        tokio::time::timeout(HARD_LIMIT, reader).await.context("consume took too long")???;
    }
    Ok(start)
}

// ---- RabbitMQ stream ----

/// The confirmation callback of a send: counts `left` down and reports through `done` once
/// every message is confirmed or as soon as one is not. (A macro, because the client does not
/// export the type of its argument, so a closure is typed only where it is passed.)
macro_rules! on_confirm {
    ($left:expr, $done:expr) => {
        move |result| {
            let ok = result.is_ok_and(|status| status.confirmed());
            if !ok || $left.fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some(done) = $done.lock().unwrap_or_else(PoisonError::into_inner).take() {
                    let _ = done.send(ok);
                }
            }
            async {}
        }
    };
}

struct StreamSender {
    producer: rabbitmq_stream_client::Producer<rabbitmq_stream_client::NoDedup>,
}

impl Sender for StreamSender {
    async fn send(&mut self, payloads: Vec<Bytes>) -> anyhow::Result<Confirm> {
        let (done, confirmed) = tokio::sync::oneshot::channel();
        let left = Arc::new(AtomicU64::new(payloads.len() as u64));
        let done = Arc::new(Mutex::new(Some(done)));
        let mut messages: Vec<Message> =
            payloads.into_iter().map(|p| Message::builder().body(p.to_vec()).build()).collect();
        // A single message goes through `send`, which the producer built with batch_size(1)
        // writes at once; `batch_send` of one message would wait for the client's flush.
        match messages.pop() {
            Some(message) if messages.is_empty() => {
                self.producer.send(message, on_confirm!(left, done)).await?
            }
            Some(last) => {
                messages.push(last);
                self.producer.batch_send(messages, on_confirm!(left, done)).await?
            }
            None => bail!("nothing to send"),
        }
        Ok(Box::pin(async move {
            ensure!(confirmed.await?, "a message was not confirmed");
            Ok(())
        }))
    }
}

/// Runs the mode against a RabbitMQ stream; returns when the measured part started.
async fn stream(args: &Args, stats: &Arc<Stats>) -> anyhow::Result<Instant> {
    ensure!(args.mode != Mode::Work, "work: only the queue system");
    let env = Environment::builder().host(&args.host).port(5552).build().await?;
    if args.mode != Mode::Consume {
        let _ = env.delete_stream(&args.name).await;
        env.stream_creator().create(&args.name).await?;
    }
    let start = Instant::now();
    let plan = Plan::new(args, start);
    // batch_size(1): the client writes each send at once instead of lingering up to 100 ms.
    let batch = if args.rate.is_some() { 1 } else { 100 };
    let sender = || async {
        let producer = env.producer().batch_size(batch).build(&args.name).await?;
        anyhow::Ok(StreamSender { producer })
    };
    if args.mode == Mode::Produce {
        produce(&plan, sender().await?, stats).await?;
        return Ok(start);
    }
    let mut consumer = env.consumer().offset(OffsetSpecification::First).build(&args.name).await?;
    let (reader_stats, e2e, records) = (Arc::clone(stats), args.mode == Mode::E2e, args.records);
    let reader = tokio::spawn(async move {
        let mut previous = Instant::now();
        while reader_stats.records() < records {
            let Some(delivery) = consumer.next().await else { bail!("the consumer ended") };
            let delivery = delivery?;
            let data = delivery.message().data().unwrap_or_default();
            received(&reader_stats, data, start, &mut previous, e2e);
        }
        anyhow::Ok(())
    });
    if e2e {
        let produced = Stats::new()?;
        produce(&plan, sender().await?, &produced).await?;
        drain(stats, produced.records(), &reader).await?;
        reader.abort();
    } else {
        tokio::time::timeout(HARD_LIMIT, reader).await.context("consume took too long")???;
    }
    Ok(start)
}

// ---- RabbitMQ classic durable queue ----

struct QueueSender {
    channel: lapin::Channel,
    queue: String,
}

impl Sender for QueueSender {
    async fn send(&mut self, payloads: Vec<Bytes>) -> anyhow::Result<Confirm> {
        let persistent = BasicProperties::default().with_delivery_mode(2);
        let mut confirms = Vec::with_capacity(payloads.len());
        for payload in payloads {
            confirms.push(
                self.channel
                    .basic_publish(
                        "".into(),
                        self.queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &payload,
                        persistent.clone(),
                    )
                    .await?,
            );
        }
        Ok(Box::pin(async move {
            for confirm in confirms {
                ensure!(confirm.await?.is_ack(), "a message was nacked");
            }
            Ok(())
        }))
    }
}

/// Produces to a RabbitMQ classic durable queue, or (work) fills it then consumes it with
/// manual acks; returns when the measured part started.
async fn queue(args: &Args, stats: &Arc<Stats>) -> anyhow::Result<Instant> {
    ensure!(
        matches!(args.mode, Mode::Produce | Mode::Work),
        "queue: only produce and work are measured"
    );
    let uri = format!("amqp://guest:guest@{}:5672/%2f", args.host);
    let connection = Connection::connect(&uri, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let _ = channel.queue_delete(args.name.as_str().into(), QueueDeleteOptions::default()).await;
    channel
        .queue_declare(args.name.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())
        .await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let sender = QueueSender { channel: channel.clone(), queue: args.name.clone() };
    let start = if args.mode == Mode::Work {
        let fill = Plan::new(args, Instant::now());
        eprintln!("publishing {} persistent messages first", args.records);
        let filled = Stats::new()?;
        produce(&fill, sender, &filled).await?;
        let start = Instant::now();
        work(args, &uri, stats).await?;
        start
    } else {
        let start = Instant::now();
        produce(&Plan::new(args, start), sender, stats).await?;
        start
    };
    let _ = channel.queue_delete(args.name.as_str().into(), QueueDeleteOptions::default()).await;
    connection.close(200, "done".into()).await?;
    Ok(start)
}

/// Runs `--consumers` consumers of the queue until `--records` messages are acknowledged.
async fn work(args: &Args, uri: &str, stats: &Arc<Stats>) -> anyhow::Result<()> {
    let mut consumers = Vec::new();
    for index in 0..args.consumers.max(1) {
        let connection = Connection::connect(uri, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel.basic_qos(args.prefetch, BasicQosOptions::default()).await?;
        let deliveries = channel
            .basic_consume(
                args.name.as_str().into(),
                format!("worker-{index}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (stats, target, ack_every) = (Arc::clone(stats), args.records, args.ack_every.max(1));
        consumers.push(tokio::spawn(async move {
            let worked = take(&channel, deliveries, target, ack_every, &stats).await;
            let _ = connection.close(200, "done".into()).await;
            worked
        }));
    }
    for consumer in consumers {
        consumer.await.context("a consumer task failed")??;
    }
    Ok(())
}

/// One consumer: acknowledges every `ack_every` deliveries (and what it holds when nothing
/// comes for a moment) until `target` messages are acknowledged over all consumers.
async fn take(
    channel: &lapin::Channel,
    mut deliveries: lapin::Consumer,
    target: u64,
    ack_every: usize,
    stats: &Stats,
) -> anyhow::Result<()> {
    /// How long a consumer holding deliveries waits for another before acknowledging them.
    const LINGER: Duration = Duration::from_millis(2);
    let mut received: Vec<Instant> = Vec::with_capacity(ack_every);
    let (mut bytes, mut last_tag) = (0u64, 0u64);
    let mut idle_since = Instant::now();
    while stats.records() < target {
        let wait = if received.is_empty() { Duration::from_millis(100) } else { LINGER };
        match tokio::time::timeout(wait, deliveries.next()).await {
            Ok(Some(delivery)) => {
                let delivery = delivery?;
                received.push(Instant::now());
                bytes += delivery.data.len() as u64;
                last_tag = delivery.delivery_tag;
                if received.len() < ack_every {
                    continue;
                }
            }
            Ok(None) => bail!("the consumer was cancelled"),
            Err(_elapsed) if received.is_empty() => {
                ensure!(idle_since.elapsed() < DRAIN_TIMEOUT, "no message within {DRAIN_TIMEOUT:?}");
                continue;
            }
            Err(_elapsed) => {}
        }
        channel.basic_ack(last_tag, BasicAckOptions { multiple: true }).await?;
        stats.acked(&received, bytes);
        received.clear();
        bytes = 0;
        idle_since = Instant::now();
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = clap::Parser::parse();
    let stats = Stats::new()?;
    let run = async {
        match args.system {
            System::Nats => nats(&args, &stats).await,
            System::Stream => stream(&args, &stats).await,
            System::Queue => queue(&args, &stats).await,
        }
    };
    let start = tokio::time::timeout(HARD_LIMIT + DRAIN_TIMEOUT, run)
        .await
        .context("the run took too long")??;
    println!("{}", stats.summary(&args, start.elapsed().as_secs_f64()));
    Ok(())
}
