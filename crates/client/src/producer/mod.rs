//! The producer: batches records per partition and pipelines the batches over one
//! `ProduceStream`.

mod driver;
mod partitioner;
mod pipeline;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::record::{ProducerRecord, RecordMetadata};
use driver::{Command, Driver};
use pipeline::Config;

/// Sends records to a Sluice server.
///
/// [`send`](Producer::send) hands a record over and returns a future that resolves once
/// the server acknowledged it, with the partition and offset it was written at. Records are
/// grouped into one batch per partition; a batch is sent when it reaches the batch size or
/// after the linger time, and up to `max_in_flight` batches await their answers at once,
/// all over a single `ProduceStream`.
///
/// Each batch goes as a Kafka RecordBatch v2 the producer encodes itself (raw-batch
/// produce, see [`ProducerBuilder::raw_batches`]): the server stores it as it is.
///
/// Partitions are chosen like Kafka's default partitioner: the record's own partition if
/// set, else murmur2 of its key (the same partition the server and Kafka pick), else a
/// "sticky" partition that takes every keyless record until its batch is sent, then moves
/// on to the next partition.
///
/// Records of a partition are stored in the order they were sent. A batch that fails
/// because the server is unavailable (for example while it restarts) is sent again after a
/// backoff, together with the later batches of its partition, in order. Other errors (an
/// unknown topic, a record over the topic's `max.message.bytes`) fail every record of the
/// batch, that is the records of one partition sent together.
///
/// Cloning is cheap and clones share the batches. When the last clone is dropped, the
/// producer still sends what it holds, then stops; [`flush`](Producer::flush) waits for it.
///
/// ```no_run
/// use sluice_client::{Client, ProducerRecord};
///
/// # async fn example() -> sluice_client::Result<()> {
/// let client = Client::connect("http://127.0.0.1:50051").await?;
/// let producer = client.producer().build()?;
/// let written = producer
///     .send(ProducerRecord::new("orders", "42 widgets").key("customer-7"))
///     .await?;
/// println!("stored at {}@{}", written.partition, written.offset);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    commands: mpsc::UnboundedSender<Command>,
    /// Encoded bytes of the records the producer holds that have no outcome yet.
    buffered: Arc<AtomicUsize>,
}

impl Producer {
    /// Queues `record` and returns a future that resolves when the server acknowledged it
    /// (or it failed). The record is queued even if the future is never polled; dropping
    /// the future only gives up on learning the outcome.
    ///
    /// The producer takes records into its batches while it holds less than
    /// `max_buffered_bytes` (see [`ProducerBuilder::max_buffered_bytes`]); past that, a
    /// record sent waits, in send order, until acknowledgements make room, and its future
    /// completes only after that. So a caller that awaits its futures waits while the buffer
    /// is full. `send` itself never blocks the thread, so the records of futures made but
    /// not awaited are the caller's to bound: for example await the oldest future once a
    /// few thousand are outstanding.
    pub fn send(&self, record: ProducerRecord) -> SendFuture {
        let (ack, outcome) = oneshot::channel();
        // If the task is gone, the dropped ack resolves the future with ProducerClosed.
        let _ = self.commands.send(Command::Send { record, ack });
        SendFuture { outcome }
    }

    /// Encoded bytes of the records taken into batches that are not yet acknowledged or
    /// failed: at most `max_buffered_bytes` plus one record.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    /// Sends every queued record without waiting for the linger time and waits until each
    /// record sent before this call is acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        let (done, finished) = oneshot::channel();
        self.commands
            .send(Command::Flush(done))
            .map_err(|_| Error::ProducerClosed)?;
        finished.await.map_err(|_| Error::ProducerClosed)
    }
}

/// The outcome of one [`Producer::send`]: where the record was written, or why it was not.
#[derive(Debug)]
#[must_use = "the future tells whether the record was stored"]
pub struct SendFuture {
    outcome: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for SendFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.outcome)
            .poll(cx)
            .map(|outcome| outcome.unwrap_or(Err(Error::ProducerClosed)))
    }
}

/// Settings of a [`Producer`]; made by [`Client::producer`].
///
/// ```no_run
/// use std::time::Duration;
///
/// # async fn example(client: sluice_client::Client) -> sluice_client::Result<()> {
/// let producer = client
///     .producer()
///     .linger(Duration::from_millis(20))
///     .batch_size(256 * 1024)
///     .max_in_flight(16)
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    client: Client,
    config: Config,
}

impl ProducerBuilder {
    pub(crate) fn new(client: Client) -> Self {
        ProducerBuilder {
            client,
            config: Config::default(),
        }
    }

    /// How long a batch waits for more records before it is sent. Default 5 ms.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// Size in encoded bytes at which a batch is sent without waiting. Default 1 MiB. A
    /// record larger than this is sent in a batch of its own.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.config.batch_size = bytes.max(1);
        self
    }

    /// Most batches awaiting an answer at once (at least 1). Default 8.
    pub fn max_in_flight(mut self, batches: usize) -> Self {
        self.config.max_in_flight = batches.max(1);
        self
    }

    /// How many times a batch is sent again after failing because the server is
    /// unavailable. Default: unlimited within the delivery timeout.
    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = retries;
        self
    }

    /// Wait before the first retry; it doubles with every further failure up to `max`.
    /// Default 100 ms, doubling up to 1 s.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff.initial = initial;
        self.config.backoff.max = max.max(initial);
        self
    }

    /// How long after it was sent a record may still be retried; past it the record fails
    /// with [`Error::DeliveryTimeout`]. Default 120 s.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.config.delivery_timeout = timeout;
        self
    }

    /// Encoded bytes of unacknowledged records the producer takes into its batches (at
    /// least 1; one record always fits). Past it, sent records wait in send order until
    /// answers make room. Default 32 MiB, as Kafka's `buffer.memory`.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.config.max_buffered_bytes = bytes.max(1);
        self
    }

    /// Whether batches go to the server as Kafka RecordBatch v2 bytes the producer encodes
    /// (raw-batch produce: the server checks them without decoding and stores them as they
    /// are). Default `true`. A record with timestamp 0 is then stamped with this machine's
    /// clock when it is sent, as a Kafka producer does, and a batch must fit in the topic's
    /// `max.message.bytes` as a whole. `false` sends records for the server to encode
    /// (timestamp 0 is stamped by the server's clock, and `max.message.bytes` applies to
    /// each record).
    pub fn raw_batches(mut self, raw: bool) -> Self {
        self.config.raw_batches = raw;
        self
    }

    /// Starts the producer's background task. Fails outside a Tokio runtime.
    pub fn build(self) -> Result<Producer> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let driver = Driver::new(&self.client, self.config, receiver);
        let buffered = Arc::clone(driver.buffered());
        runtime.spawn(driver.run());
        Ok(Producer { commands, buffered })
    }
}
