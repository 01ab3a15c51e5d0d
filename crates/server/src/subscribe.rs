//! `Log.Subscribe`: replay a topic's partitions from a start position, then follow them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_broker::{Broker, BrokerError, Fetched, OffsetReset, OffsetSpec};
use sluice_proto::v1::{SubscribeBatchesResponse, SubscribeRequest, SubscribeResponse};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::convert::{Position, fetched_records, position};
use crate::lookup::{self, offsets, partitions};
use crate::shutdown::Shutdown;
use crate::status::{invalid_field, require_topic, shutting_down, to_status};

/// Messages buffered between the partition readers and the response stream. Kept small
/// so a slow subscriber is paced by HTTP/2 flow control and the server reads from disk
/// only as fast as the stream drains.
const BUFFERED_MESSAGES: usize = 2;

/// How long a partition reader tries to deliver the final UNAVAILABLE at shutdown.
const SHUTDOWN_NOTICE: Duration = Duration::from_secs(1);

/// The messages of one subscription. Fetched batches wait in the channel as stored (slices
/// of the segment files) and are decoded only when the response stream takes them: decoded,
/// small records take several times their stored size, and a subscriber that does not read
/// would otherwise hold every buffered message decoded.
pub(crate) type SubscriptionStream = tokio_stream::adapters::Map<
    ReceiverStream<Result<Undecoded, Status>>,
    fn(Result<Undecoded, Status>) -> Result<SubscribeResponse, Status>,
>;

/// The messages of one batch subscription.
pub(crate) type BatchSubscriptionStream = ReceiverStream<Result<SubscribeBatchesResponse, Status>>;

/// Server-side bounds of subscriptions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SubscribeLimits {
    /// Cap on (and default of) the records of one message, in stored bytes.
    pub(crate) max_bytes: usize,
    /// How long each partition reader waits for new records per fetch.
    pub(crate) wait: Duration,
}

/// Resolves the start offset of every requested partition, then starts one reader per
/// partition. Problems with the request (unknown topic or partition, duplicate
/// partition, bad start) fail the call before anything is streamed.
pub(crate) async fn subscribe(
    broker: &Arc<Broker>,
    request: SubscribeRequest,
    limits: SubscribeLimits,
    shutdown: &Shutdown,
) -> Result<SubscriptionStream, Status> {
    let undecoded = follow(broker, request, limits, shutdown, SubscribeOutput).await?;
    Ok(undecoded.map(decode as fn(_) -> _))
}

/// One fetch's records of one partition, not yet decoded.
#[derive(Debug)]
pub(crate) struct Undecoded {
    partition: u32,
    fetched: Fetched,
}

/// The Subscribe message of a fetch (a corrupt batch ends the stream with its status).
fn decode(undecoded: Result<Undecoded, Status>) -> Result<SubscribeResponse, Status> {
    let Undecoded { partition, fetched } = undecoded?;
    Ok(SubscribeResponse {
        partition,
        records: fetched_records(&fetched)?,
        high_watermark: fetched.high_watermark,
    })
}

/// `Log.SubscribeBatches`: as [`subscribe`], streaming the stored batches undecoded.
pub(crate) async fn subscribe_batches(
    broker: &Arc<Broker>,
    request: SubscribeRequest,
    limits: SubscribeLimits,
    shutdown: &Shutdown,
) -> Result<BatchSubscriptionStream, Status> {
    follow(broker, request, limits, shutdown, BatchesOutput).await
}

/// Starts the readers of a subscription whose messages `output` makes.
async fn follow<O: ReaderOutput + Copy>(
    broker: &Arc<Broker>,
    request: SubscribeRequest,
    limits: SubscribeLimits,
    shutdown: &Shutdown,
    output: O,
) -> Result<ReceiverStream<Result<O::Message, Status>>, Status> {
    require_topic("topic", &request.topic)?;
    let start = position(request.start, "start")?;
    let partitions = partitions(broker, &request.topic, request.partitions)?;
    let mut seen = BTreeSet::new();
    if let Some(duplicate) = partitions.iter().find(|p| !seen.insert(**p)) {
        return Err(invalid_field(
            "partitions",
            &format!("partition {duplicate} is listed twice"),
        ));
    }
    let max_bytes = match usize::try_from(request.max_bytes) {
        Ok(0) | Err(_) => limits.max_bytes,
        Ok(n) => n.min(limits.max_bytes),
    };
    let starts = start_offsets(broker, &request.topic, partitions, start).await?;

    let (messages, stream) = mpsc::channel(BUFFERED_MESSAGES);
    let topic: Arc<str> = request.topic.into();
    for (partition, offset) in starts {
        let reader = PartitionReader {
            broker: Arc::clone(broker),
            topic: Arc::clone(&topic),
            partition,
            offset,
            max_bytes,
            wait: limits.wait,
        };
        tokio::spawn(reader.run(
            output,
            messages.clone(),
            std::future::pending(),
            shutdown.clone(),
        ));
    }
    Ok(ReceiverStream::new(stream))
}

/// Where each partition's subscription starts. A timestamp later than every record
/// starts at the high watermark; an explicit offset must lie within each partition's
/// `[log start offset, high watermark]`.
async fn start_offsets(
    broker: &Arc<Broker>,
    topic: &str,
    partitions: Vec<u32>,
    start: Position,
) -> Result<Vec<(u32, u64)>, Status> {
    let latest = |partition| {
        broker
            .list_offset(topic, partition, OffsetSpec::Latest)
            .map(Option::unwrap_or_default)
            .map_err(to_status)
    };
    match start {
        Position::Lookup(spec) => lookup::start_offsets(broker, topic, partitions, spec).await,
        Position::Exact(offset) => offsets(broker, topic, partitions, OffsetSpec::Earliest)
            .await?
            .into_iter()
            .map(|(partition, earliest)| {
                let log_start_offset = earliest.unwrap_or_default();
                let high_watermark = latest(partition)?;
                if (log_start_offset..=high_watermark).contains(&offset) {
                    Ok((partition, offset))
                } else {
                    Err(to_status(BrokerError::OffsetOutOfRange {
                        requested: offset,
                        log_start_offset,
                        high_watermark,
                    }))
                }
            })
            .collect(),
    }
}

/// What a [`PartitionReader`] sends and how it treats failed fetches.
pub(crate) trait ReaderOutput: Send + 'static {
    /// The stream's message type.
    type Message: Send + 'static;

    /// The message carrying one fetch's records of `partition`, or `None` when it holds
    /// none (as after a wait that saw no append).
    fn message(&self, partition: u32, fetched: &Fetched) -> Result<Option<Self::Message>, Status>;

    /// What to do after a fetch failed.
    fn recover(&self, err: BrokerError) -> Recovery;
}

/// What a [`PartitionReader`] does after a failed fetch.
#[derive(Debug)]
pub(crate) enum Recovery {
    /// End the stream with this status.
    Fail(Status),
    /// Go on reading from the log start offset or the high watermark.
    Reset(OffsetReset),
    /// Stop reading quietly.
    Stop,
}

/// A subscription's reader output: every failure ends the subscription.
#[derive(Debug, Clone, Copy)]
struct SubscribeOutput;

impl ReaderOutput for SubscribeOutput {
    type Message = Undecoded;

    fn message(&self, partition: u32, fetched: &Fetched) -> Result<Option<Undecoded>, Status> {
        // A fetch with batches holds at least one record from its offset on: the first
        // batch is the one holding that offset.
        Ok((!fetched.batches.is_empty()).then(|| Undecoded {
            partition,
            fetched: fetched.clone(),
        }))
    }

    fn recover(&self, err: BrokerError) -> Recovery {
        Recovery::Fail(to_status(err))
    }
}

/// SubscribeBatches' reader output: the stored batches as they are.
#[derive(Debug, Clone, Copy)]
struct BatchesOutput;

impl ReaderOutput for BatchesOutput {
    type Message = SubscribeBatchesResponse;

    fn message(
        &self,
        partition: u32,
        fetched: &Fetched,
    ) -> Result<Option<SubscribeBatchesResponse>, Status> {
        Ok(
            (!fetched.batches.is_empty()).then(|| SubscribeBatchesResponse {
                partition,
                record_batches: fetched.batches.clone(),
                high_watermark: fetched.high_watermark,
                next_offset: fetched.next_offset(),
            }),
        )
    }

    fn recover(&self, err: BrokerError) -> Recovery {
        Recovery::Fail(to_status(err))
    }
}

/// Follows one partition, sending its records as they come.
#[derive(Debug)]
pub(crate) struct PartitionReader {
    pub(crate) broker: Arc<Broker>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    /// Next offset to read.
    pub(crate) offset: u64,
    pub(crate) max_bytes: usize,
    pub(crate) wait: Duration,
}

impl PartitionReader {
    /// Fetches and sends until the receiver goes away, `stop` resolves, a fetch fails in a
    /// way `output` does not recover from (the error ends the stream) or the server shuts
    /// down (UNAVAILABLE ends the stream).
    pub(crate) async fn run<O: ReaderOutput>(
        mut self,
        output: O,
        messages: mpsc::Sender<Result<O::Message, Status>>,
        stop: impl Future<Output = ()> + Send,
        shutdown: Shutdown,
    ) {
        tokio::pin!(stop);
        let stopping = loop {
            let fetched = tokio::select! {
                fetched = self.broker.fetch(
                    &self.topic, self.partition, self.offset, self.max_bytes, self.wait,
                ) => fetched,
                () = messages.closed() => return,
                () = &mut stop => return,
                () = shutdown.wait() => break shutting_down(),
            };
            let message = match fetched {
                Ok(fetched) => match self.next_message(&output, &fetched) {
                    Ok(Some(message)) => Ok(message),
                    Ok(None) => continue,
                    Err(status) => Err(status),
                },
                Err(err) => match output.recover(err) {
                    Recovery::Fail(status) => Err(status),
                    Recovery::Reset(reset) => match self.reset(reset) {
                        Ok(()) => continue,
                        Err(status) => Err(status),
                    },
                    Recovery::Stop => return,
                },
            };
            let failed = message.is_err();
            tokio::select! {
                sent = messages.send(message) => if sent.is_err() || failed { return },
                () = &mut stop => return,
                () = shutdown.wait() => break shutting_down(),
            }
        };
        // A receiver that does not read within the notice period gets no final status;
        // the stream still ends.
        let _ = tokio::time::timeout(SHUTDOWN_NOTICE, messages.send(Err(stopping))).await;
    }

    /// The message for one fetch result (`None` when it holds no records, as after a wait
    /// that saw no append), advancing the reader past what was read.
    fn next_message<O: ReaderOutput>(
        &mut self,
        output: &O,
        fetched: &Fetched,
    ) -> Result<Option<O::Message>, Status> {
        let message = output.message(self.partition, fetched)?;
        self.offset = fetched.next_offset();
        Ok(message)
    }

    /// Moves the reader to the log start offset or the high watermark.
    fn reset(&mut self, reset: OffsetReset) -> Result<(), Status> {
        let spec = match reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
        };
        let offset = self
            .broker
            .list_offset(&self.topic, self.partition, spec)
            .map_err(to_status)?
            .unwrap_or_default();
        tracing::info!(topic = %self.topic, partition = self.partition, from = self.offset, to = offset, "reader repositioned");
        self.offset = offset;
        Ok(())
    }
}
