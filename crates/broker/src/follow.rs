//! Live follow: readers that replay a partition from a start offset and then tail it, and
//! subscriptions that merge the readers of several partitions into one bounded stream.
//!
//! Every front end's "subscribe", "consume" or "tail" is one of these. Readers send what
//! they fetch as stored (slices of the segment files, see [`Fetched`]), so a subscriber that
//! does not read holds at most a few undecoded fetches; the channel is small, so a slow
//! subscriber is paced by its own transport (HTTP/2 or TCP flow control) and the broker reads
//! from disk only as fast as the subscriber drains.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;

use crate::lifecycle::Draining;
use crate::subscriptions::Slot;
use crate::{Broker, BrokerError, Fetched, OffsetReset, OffsetSpec, Position};

/// Deliveries buffered between a subscription's partition readers and its subscriber.
const BUFFERED_DELIVERIES: usize = 2;

/// How long a reader tries to deliver the final [`BrokerError::ShuttingDown`] when the
/// broker drains; a subscriber that does not read by then gets none (its stream still ends).
const SHUTDOWN_NOTICE: Duration = Duration::from_secs(1);

/// One fetch's records of a followed partition, as stored.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The partition's topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The batches read: never empty. The first batch may start before the offset the reader
    /// was at ([`Fetched::records`] skips those records).
    pub fetched: Fetched,
}

/// What [`Broker::subscribe`] follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The topic.
    pub topic: String,
    /// The partitions to follow; empty means every partition of the topic.
    pub partitions: Vec<u32>,
    /// Where each partition's reading starts. An explicit offset must lie within every
    /// partition's `[log_start_offset, high_watermark]`; a timestamp later than every record
    /// starts at the high watermark.
    pub start: Position,
    /// Cap on the stored bytes of one delivery; 0 or more than `limits.max_subscribe_bytes`
    /// means that limit.
    pub max_bytes: usize,
}

/// A running subscription: the deliveries of every followed partition, in the order they
/// were read (per partition, in offset order). Ends with an error when a read fails (the
/// error is the last item) or with [`BrokerError::ShuttingDown`] when the broker drains.
/// Dropping it stops its readers and frees its `max_subscriptions` slot.
#[derive(Debug)]
pub struct Subscription {
    deliveries: mpsc::Receiver<Result<Delivery, BrokerError>>,
    _slot: Slot,
}

impl Subscription {
    /// The next delivery, or `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        self.deliveries.recv().await
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery, BrokerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.deliveries.poll_recv(cx)
    }
}

impl Broker {
    /// Starts following partitions of a topic: resolves each partition's start offset, then
    /// runs one reader per partition until the subscription is dropped.
    ///
    /// Fails before anything is read for an unknown topic or partition, a partition listed
    /// twice, an explicit offset out of range, or when `limits.max_subscriptions`
    /// subscriptions are already open ([`BrokerError::TooManySubscriptions`]).
    pub async fn subscribe(
        self: &Arc<Self>,
        request: Subscribe,
    ) -> Result<Subscription, BrokerError> {
        self.check_running()?;
        let slot = self.subscriptions.take()?;
        let partitions = self.requested_partitions(&request.topic, request.partitions)?;
        let mut seen = BTreeSet::new();
        if let Some(duplicate) = partitions.iter().find(|p| !seen.insert(**p)) {
            return Err(BrokerError::invalid_request(
                "partitions",
                format!("partition {duplicate} is listed twice"),
            ));
        }
        let max_bytes = self.subscribe_bytes(request.max_bytes);
        let starts = self
            .start_offsets(&request.topic, partitions, request.start)
            .await?;
        let (deliveries, receiver) = mpsc::channel(BUFFERED_DELIVERIES);
        let topic: Arc<str> = request.topic.into();
        for (partition, offset) in starts {
            let reader = PartitionReader {
                broker: Arc::clone(self),
                topic: Arc::clone(&topic),
                partition,
                offset,
                max_bytes,
                policy: ReadPolicy::FailOnError,
            };
            tokio::spawn(reader.run(deliveries.clone(), std::future::pending()));
        }
        Ok(Subscription {
            deliveries: receiver,
            _slot: slot,
        })
    }

    /// The cap on one delivery: `requested`, or `limits.max_subscribe_bytes` when it is 0 or
    /// larger.
    pub(crate) fn subscribe_bytes(&self, requested: usize) -> usize {
        let cap = self.config.limits.max_subscribe_bytes;
        match requested {
            0 => cap,
            n => n.min(cap),
        }
    }

    /// `requested`, or every partition of the topic when it names none.
    pub(crate) fn requested_partitions(
        &self,
        topic: &str,
        requested: Vec<u32>,
    ) -> Result<Vec<u32>, BrokerError> {
        if requested.is_empty() {
            Ok((0..self.partition_count(topic)?).collect())
        } else {
            Ok(requested)
        }
    }
}

/// What a reader does when a fetch fails.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReadPolicy {
    /// Every failure ends the stream with that error.
    FailOnError,
    /// A group member's reader: an offset retention removed restarts at the log start or
    /// the high watermark as the member asked; a deleted topic stops the reader quietly (the
    /// group takes the partition away); other failures end the stream.
    Group(OffsetReset),
}

/// What a reader does next after a failed fetch.
enum Recovery {
    Fail(BrokerError),
    Reset(OffsetReset),
    Stop,
}

impl ReadPolicy {
    fn recover(self, err: BrokerError) -> Recovery {
        match (self, err) {
            (ReadPolicy::Group(reset), BrokerError::OffsetOutOfRange { .. }) => {
                Recovery::Reset(reset)
            }
            (
                ReadPolicy::Group(_),
                BrokerError::TopicNotFound { .. } | BrokerError::PartitionNotFound { .. },
            ) => Recovery::Stop,
            (_, err) => Recovery::Fail(err),
        }
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
    pub(crate) policy: ReadPolicy,
}

impl PartitionReader {
    /// Fetches and sends until the receiver goes away, `stop` resolves, a fetch fails in a
    /// way the policy does not recover from (the error is sent last) or the broker drains
    /// ([`BrokerError::ShuttingDown`] is sent last).
    pub(crate) async fn run<E: From<Delivery> + Send + 'static>(
        mut self,
        out: mpsc::Sender<Result<E, BrokerError>>,
        stop: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(stop);
        let draining: Draining = self.broker.draining();
        let wait = self.broker.config.limits.max_wait;
        let last = loop {
            let fetched = tokio::select! {
                fetched = self.broker.fetch(
                    &self.topic, self.partition, self.offset, self.max_bytes, wait,
                ) => fetched,
                () = out.closed() => return,
                () = &mut stop => return,
                () = draining.wait() => break BrokerError::ShuttingDown,
            };
            let item = match fetched {
                Ok(fetched) if fetched.batches.is_empty() => continue,
                Ok(fetched) => {
                    self.offset = fetched.next_offset();
                    Ok(E::from(Delivery {
                        topic: Arc::clone(&self.topic),
                        partition: self.partition,
                        fetched,
                    }))
                }
                Err(err) => match self.policy.recover(err) {
                    Recovery::Fail(err) => Err(err),
                    Recovery::Reset(reset) => match self.reset(reset).await {
                        Ok(()) => continue,
                        Err(err) => Err(err),
                    },
                    Recovery::Stop => return,
                },
            };
            let failed = item.is_err();
            tokio::select! {
                sent = out.send(item) => if sent.is_err() || failed { return },
                () = &mut stop => return,
                () = draining.wait() => break BrokerError::ShuttingDown,
            }
        };
        let _ = tokio::time::timeout(SHUTDOWN_NOTICE, out.send(Err(last))).await;
    }

    /// Moves the reader to the log start offset or the high watermark.
    async fn reset(&mut self, reset: OffsetReset) -> Result<(), BrokerError> {
        let spec = match reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
        };
        let offset = self
            .broker
            .start_offsets(&self.topic, vec![self.partition], Position::Lookup(spec))
            .await?
            .first()
            .map_or(0, |(_, offset)| *offset);
        tracing::info!(topic = %self.topic, partition = self.partition, from = self.offset, to = offset, "reader repositioned");
        self.offset = offset;
        Ok(())
    }
}
