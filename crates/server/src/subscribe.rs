//! `Log.Subscribe`: replay a topic's partitions from a start position, then follow them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_broker::{Broker, BrokerError, Fetched, OffsetSpec};
use sluice_proto::v1::{SubscribeRequest, SubscribeResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::convert::{Position, fetched_records, position};
use crate::lookup::{offsets, partitions};
use crate::shutdown::Shutdown;
use crate::status::{invalid_field, require_topic, shutting_down, to_status};

/// Messages buffered between the partition readers and the response stream. Kept small
/// so a slow subscriber is paced by HTTP/2 flow control and the server reads from disk
/// only as fast as the stream drains.
const BUFFERED_MESSAGES: usize = 2;

/// How long a partition reader tries to deliver the final UNAVAILABLE at shutdown.
const SHUTDOWN_NOTICE: Duration = Duration::from_secs(1);

/// The messages of one subscription.
pub(crate) type SubscriptionStream = ReceiverStream<Result<SubscribeResponse, Status>>;

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
        tokio::spawn(reader.run(messages.clone(), shutdown.clone()));
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
        Position::Lookup(spec) => offsets(broker, topic, partitions, spec)
            .await?
            .into_iter()
            .map(|(partition, found)| match found {
                Some(offset) => Ok((partition, offset)),
                None => latest(partition).map(|offset| (partition, offset)),
            })
            .collect(),
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

/// Follows one partition of a subscription.
#[derive(Debug)]
struct PartitionReader {
    broker: Arc<Broker>,
    topic: Arc<str>,
    partition: u32,
    /// Next offset to read.
    offset: u64,
    max_bytes: usize,
    wait: Duration,
}

impl PartitionReader {
    /// Fetches and sends until the subscriber goes away, a fetch fails (the error ends the
    /// stream) or the server shuts down (UNAVAILABLE ends the stream).
    async fn run(
        mut self,
        messages: mpsc::Sender<Result<SubscribeResponse, Status>>,
        shutdown: Shutdown,
    ) {
        let stopping = loop {
            let fetched = tokio::select! {
                fetched = self.broker.fetch(
                    &self.topic, self.partition, self.offset, self.max_bytes, self.wait,
                ) => fetched,
                () = messages.closed() => return,
                () = shutdown.wait() => break shutting_down(),
            };
            let message = match self.next_message(fetched) {
                Ok(Some(message)) => Ok(message),
                Ok(None) => continue,
                Err(status) => Err(status),
            };
            let failed = message.is_err();
            tokio::select! {
                sent = messages.send(message) => if sent.is_err() || failed { return },
                () = shutdown.wait() => break shutting_down(),
            }
        };
        // A subscriber that does not read within the notice period gets no final status;
        // the stream still ends.
        let _ = tokio::time::timeout(SHUTDOWN_NOTICE, messages.send(Err(stopping))).await;
    }

    /// The message for one fetch result (`None` when it holds no records, as after a wait
    /// that saw no append), advancing the reader past what was read.
    fn next_message(
        &mut self,
        fetched: Result<Fetched, BrokerError>,
    ) -> Result<Option<SubscribeResponse>, Status> {
        let fetched = fetched.map_err(to_status)?;
        let records = fetched_records(&fetched)?;
        self.offset = fetched.next_offset();
        if records.is_empty() {
            return Ok(None);
        }
        Ok(Some(SubscribeResponse {
            partition: self.partition,
            records,
            high_watermark: fetched.high_watermark,
        }))
    }
}
