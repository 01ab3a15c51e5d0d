//! Reading a topic's partitions from a position and following them live.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::Transport;
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::{self as pb};
use tokio_stream::{StreamExt as _, StreamMap};
use tonic::{Code, Streaming};

use crate::admin::Admin;
use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::record::{ConsumerRecord, Position};

/// Wait before subscribing again after the connection broke, doubling up to the maximum.
const RECONNECT_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(2),
};

/// Settings of a [`Consumer`]; made by [`Client::consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    client: Client,
    topic: String,
    partitions: BTreeSet<u32>,
    start: Position,
    max_bytes: u32,
}

impl ConsumerBuilder {
    pub(crate) fn new(client: Client, topic: String) -> Self {
        ConsumerBuilder {
            client,
            topic,
            partitions: BTreeSet::new(),
            start: Position::Latest,
            max_bytes: 0,
        }
    }

    /// Reads `partition` (may be repeated). Without any, the consumer reads every partition.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partitions.insert(partition);
        self
    }

    /// Reads these partitions (added to any given before).
    pub fn partitions(mut self, partitions: impl IntoIterator<Item = u32>) -> Self {
        self.partitions.extend(partitions);
        self
    }

    /// Where to start in every partition. Default [`Position::Latest`]: only records
    /// produced from now on.
    pub fn start(mut self, start: Position) -> Self {
        self.start = start;
        self
    }

    /// Soft limit on the stored bytes of records the server sends in one message; 0 (the
    /// default) leaves it to the server.
    pub fn max_bytes(mut self, max_bytes: u32) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The consumer. It contacts the server on the first [`Consumer::next`] or
    /// [`Consumer::seek`].
    pub fn build(self) -> Consumer {
        Consumer {
            log: self.client.log_service(),
            admin: self.client.admin(),
            topic: self.topic.into(),
            partitions: self.partitions.into_iter().collect(),
            start: self.start,
            max_bytes: self.max_bytes,
            positions: BTreeMap::new(),
            streams: StreamMap::new(),
            buffered: VecDeque::new(),
            failures: 0,
        }
    }
}

/// Reads records of a topic's partitions in offset order (per partition), replaying
/// stored records from a start position and then following new ones as they are produced.
///
/// The consumer remembers, per partition, the offset after the last record it returned.
/// When the connection breaks (for example while the server restarts) it subscribes again
/// from there, so no record is skipped or returned twice.
///
/// ```no_run
/// use sluice_client::{Client, Position};
///
/// # async fn example() -> sluice_client::Result<()> {
/// let client = Client::connect("http://127.0.0.1:50051").await?;
/// let mut consumer = client.consumer("orders").start(Position::Earliest).build();
/// loop {
///     let record = consumer.next().await?;
///     println!("{}@{}: {:?}", record.partition, record.offset, record.value);
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    log: LogClient<Transport>,
    admin: Admin,
    topic: Arc<str>,
    /// The partitions asked for; empty = all.
    partitions: Vec<u32>,
    start: Position,
    max_bytes: u32,
    /// Per partition read, the offset of the next record to return. Empty until the start
    /// position has been looked up.
    positions: BTreeMap<u32, u64>,
    /// The open subscriptions, keyed by the offset they started at.
    streams: StreamMap<u64, Streaming<pb::SubscribeResponse>>,
    /// Records received and not yet returned.
    buffered: VecDeque<ConsumerRecord>,
    /// Consecutive failed attempts to (re)subscribe.
    failures: u32,
}

impl Consumer {
    /// The next record, waiting for one to be produced if the consumer has caught up.
    /// Cancel safe: a call dropped before it returns loses no record.
    ///
    /// Connection failures are retried (with backoff) without returning. Other errors are
    /// returned: the topic or partition does not exist, or the start offset is out of range
    /// (for example removed by retention). Calling `next` again after an error subscribes
    /// again from the current positions.
    pub async fn next(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(record) = self.buffered.pop_front() {
                self.positions
                    .insert(record.partition, record.offset.saturating_add(1));
                return Ok(record);
            }
            if self.streams.is_empty()
                && let Err(err) = self.subscribe().await
            {
                self.reset();
                self.back_off(err).await?;
                continue;
            }
            let open = self.streams.len();
            let outcome = match self.streams.next().await {
                // A subscription that ended drops out of the map.
                Some((_, Ok(message))) if self.streams.len() == open => Ok(message),
                Some((_, Err(status))) => Err(Error::from(status)),
                _ => Err(Error::Server {
                    code: Code::Unavailable,
                    message: "the server ended the subscription".into(),
                }),
            };
            match outcome.and_then(|message| self.buffer(message)) {
                Ok(()) => self.failures = 0,
                Err(err) => {
                    self.reset();
                    self.back_off(err).await?;
                }
            }
        }
    }

    /// Makes `offset` the next record returned from `partition`. Records of the partition
    /// received but not yet returned are dropped.
    pub async fn seek(&mut self, partition: u32, offset: u64) -> Result<()> {
        self.resolve().await?;
        if !self.positions.contains_key(&partition) {
            return Err(Error::InvalidArgument(format!(
                "the consumer does not read partition {partition} of topic '{}'",
                self.topic
            )));
        }
        self.positions.insert(partition, offset);
        self.reset();
        Ok(())
    }

    /// The offset of the next record `partition` will return, once the consumer has looked
    /// up its start position (after the first [`next`](Self::next) or
    /// [`seek`](Self::seek)).
    pub fn position(&self, partition: u32) -> Option<u64> {
        self.positions.get(&partition).copied()
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Drops the subscriptions and unreturned records; the next read subscribes again.
    fn reset(&mut self) {
        self.streams = StreamMap::new();
        self.buffered.clear();
    }

    /// Waits before trying again after a connection failure; returns any other error.
    async fn back_off(&mut self, err: Error) -> Result<()> {
        if !err.is_transient() {
            self.failures = 0;
            return Err(err);
        }
        self.failures = self.failures.saturating_add(1);
        let delay = RECONNECT_BACKOFF.delay(self.failures);
        tracing::warn!(error = %err, topic = %self.topic, retry_in = ?delay, "subscription interrupted");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Turns the start position into an offset per partition, once.
    async fn resolve(&mut self) -> Result<()> {
        if !self.positions.is_empty() {
            return Ok(());
        }
        let lookup = match self.start {
            Position::Offset(_) => Position::Earliest,
            other => other,
        };
        // For a timestamp, the high watermarks come first: a partition with no record that
        // recent starts where its end was before the lookup, so nothing appended meanwhile
        // is skipped.
        let mut ends = BTreeMap::new();
        if let Position::Timestamp(_) = self.start {
            for entry in self
                .admin
                .list_offsets(&self.topic, &self.partitions, Position::Latest)
                .await?
            {
                ends.insert(entry.partition, entry.offset.unwrap_or_default());
            }
        }
        let found = self
            .admin
            .list_offsets(&self.topic, &self.partitions, lookup)
            .await?;
        let mut positions = BTreeMap::new();
        for entry in found {
            match (self.start, entry.offset) {
                (Position::Offset(offset), _) => {
                    positions.insert(entry.partition, offset);
                }
                (_, Some(offset)) => {
                    positions.insert(entry.partition, offset);
                }
                // No record that recent: start at the high watermark.
                (Position::Timestamp(_), None) => {
                    let end = ends.get(&entry.partition).copied().unwrap_or_default();
                    positions.insert(entry.partition, end);
                }
                (_, None) => {
                    return Err(Error::Protocol(format!(
                        "no {lookup:?} offset for partition {} of topic '{}'",
                        entry.partition, self.topic
                    )));
                }
            }
        }
        self.positions = positions;
        Ok(())
    }

    /// Opens subscriptions that continue every partition at its position: one per distinct
    /// offset, since a subscription starts all its partitions at the same offset. They are
    /// kept only once all are open, so a cancelled call leaves none behind.
    async fn subscribe(&mut self) -> Result<()> {
        self.resolve().await?;
        let mut groups: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for (partition, offset) in &self.positions {
            groups.entry(*offset).or_default().push(*partition);
        }
        let mut streams = StreamMap::new();
        for (offset, partitions) in groups {
            let stream = self
                .log
                .subscribe(pb::SubscribeRequest {
                    topic: self.topic.to_string(),
                    partitions,
                    start: Some(Position::Offset(offset).to_wire()),
                    max_bytes: self.max_bytes,
                })
                .await?
                .into_inner();
            streams.insert(offset, stream);
        }
        self.streams = streams;
        Ok(())
    }

    /// Queues the records of one message that the consumer has not returned yet.
    fn buffer(&mut self, message: pb::SubscribeResponse) -> Result<()> {
        let Some(&next) = self.positions.get(&message.partition) else {
            return Err(Error::Protocol(format!(
                "records of partition {} that was not subscribed",
                message.partition
            )));
        };
        let topic = &self.topic;
        self.buffered.extend(
            message
                .records
                .into_iter()
                .filter(|record| record.offset >= next)
                .map(|record| ConsumerRecord::from_wire(topic, message.partition, record)),
        );
        Ok(())
    }
}
