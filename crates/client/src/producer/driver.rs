//! The producer's background task: takes records from the producer handles, learns each
//! topic's partition count, and exchanges the pipeline's requests and answers over one
//! `ProduceStream`, opening it again after it breaks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::credentials::Transport;
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::{self as pb, produce_stream_response};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::admin::Admin;
use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::producer::pipeline::{Ack, Config, Pipeline, TopicShape};
use crate::record::ProducerRecord;

/// Most commands handled in one go before the pipeline gets to send.
const COMMANDS_PER_TURN: usize = 1024;

/// What a producer handle asks of the task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Produce a record and report the outcome to `ack`.
    Send { record: ProducerRecord, ack: Ack },
    /// Send everything without lingering and signal `done` once every record sent before
    /// has its outcome.
    Flush(oneshot::Sender<()>),
}

/// The partition count of a topic, or the records waiting for it.
#[derive(Debug)]
enum Topic {
    Known { name: Arc<str>, shape: TopicShape },
    LookingUp(Vec<(u64, ProducerRecord, Ack)>),
}

/// An open `ProduceStream`.
#[derive(Debug)]
struct Connection {
    requests: mpsc::UnboundedSender<pb::ProduceRequest>,
    answers: Streaming<pb::ProduceStreamResponse>,
}

/// The state of the task.
#[derive(Debug)]
pub(crate) struct Driver {
    log: LogClient<Transport>,
    admin: Admin,
    backoff: Backoff,
    delivery_timeout: Duration,
    pipeline: Pipeline,
    commands: mpsc::UnboundedReceiver<Command>,
    topics: HashMap<Arc<str>, Topic>,
    lookups: mpsc::UnboundedReceiver<(Arc<str>, Result<TopicShape>)>,
    lookup_results: mpsc::UnboundedSender<(Arc<str>, Result<TopicShape>)>,
    /// Flushes waiting, each with the sequence number of the first record sent after it.
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    next_seq: u64,
    connection: Option<Connection>,
    /// Consecutive failures to open or keep the stream.
    failures: u32,
    reconnect_at: Option<Instant>,
    /// Every handle is gone: finish what was sent, then stop.
    closing: bool,
}

impl Driver {
    pub(crate) fn new(
        client: &Client,
        config: Config,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let (lookup_results, lookups) = mpsc::unbounded_channel();
        Driver {
            log: client.log_service(),
            admin: client.admin(),
            backoff: config.backoff,
            delivery_timeout: config.delivery_timeout,
            pipeline: Pipeline::new(config),
            commands,
            topics: HashMap::new(),
            lookups,
            lookup_results,
            flushes: Vec::new(),
            next_seq: 0,
            connection: None,
            failures: 0,
            reconnect_at: None,
            closing: false,
        }
    }

    /// The count of bytes the pipeline holds.
    pub(crate) fn buffered(&self) -> &Arc<std::sync::atomic::AtomicUsize> {
        self.pipeline.buffered()
    }

    /// Runs until every handle is dropped and every record has its outcome.
    pub(crate) async fn run(mut self) {
        loop {
            self.pipeline.tick(Instant::now());
            self.pump().await;
            self.finish_flushes();
            if self.closing && self.pipeline.is_empty() && self.topics_waiting().is_none() {
                return;
            }
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                answer = next_answer(&mut self.connection) => self.on_answer(answer),
                // With the buffer full, records wait in the command queue, in send order,
                // until answers make room.
                command = self.commands.recv(), if !self.closing && self.pipeline.has_room() => {
                    self.on_command(command);
                    for _ in 1..COMMANDS_PER_TURN {
                        if !self.pipeline.has_room() {
                            break;
                        }
                        match self.commands.try_recv() {
                            Ok(command) => self.on_command(Some(command)),
                            Err(_) => break,
                        }
                    }
                }
                Some((topic, result)) = self.lookups.recv() => self.on_lookup(topic, result),
                () = sleep_until(wake) => {}
            }
        }
    }

    fn on_command(&mut self, command: Option<Command>) {
        match command {
            Some(Command::Send { record, ack }) => self.on_send(record, ack),
            Some(Command::Flush(done)) => {
                self.pipeline.close_all();
                self.flushes.push((self.next_seq, done));
            }
            None => {
                self.closing = true;
                self.pipeline.close_all();
            }
        }
    }

    fn on_send(&mut self, record: ProducerRecord, ack: Ack) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if !matches!(
            self.topics.get(record.topic.as_str()),
            Some(Topic::Known { .. })
        ) {
            // Counted while it waits for its topic, like the records in batches.
            self.pipeline.hold(held_size(&record));
        }
        match self.topics.get_mut(record.topic.as_str()) {
            Some(Topic::Known { name, shape }) => {
                self.pipeline
                    .push(name, *shape, record, seq, ack, Instant::now());
            }
            Some(Topic::LookingUp(waiting)) => waiting.push((seq, record, ack)),
            None => {
                let topic: Arc<str> = Arc::from(record.topic.as_str());
                self.spawn_lookup(Arc::clone(&topic));
                self.topics
                    .insert(topic, Topic::LookingUp(vec![(seq, record, ack)]));
            }
        }
    }

    /// Looks up the partition count of `topic` in the background.
    fn spawn_lookup(&self, topic: Arc<str>) {
        let admin = self.admin.clone();
        let results = self.lookup_results.clone();
        let (backoff, timeout) = (self.backoff, self.delivery_timeout);
        tokio::spawn(async move {
            let result = partition_count(&admin, &topic, backoff, timeout).await;
            // The driver holds a receiver for as long as it runs.
            let _ = results.send((topic, result));
        });
    }

    /// Places the records that waited for `topic`'s partition count, or fails them. A failed
    /// lookup is not remembered: the next record of the topic tries again.
    fn on_lookup(&mut self, topic: Arc<str>, result: Result<TopicShape>) {
        let Some(Topic::LookingUp(waiting)) = self.topics.remove(&topic) else {
            return;
        };
        self.pipeline
            .release(waiting.iter().map(|(_, record, _)| held_size(record)).sum());
        match result {
            Ok(shape) => {
                let now = Instant::now();
                for (seq, record, ack) in waiting {
                    self.pipeline.push(&topic, shape, record, seq, ack, now);
                }
                if !self.flushes.is_empty() || self.closing {
                    self.pipeline.close_all();
                }
                let known = Topic::Known {
                    name: Arc::clone(&topic),
                    shape,
                };
                self.topics.insert(topic, known);
            }
            Err(err) => {
                for (_, _, ack) in waiting {
                    let _ = ack.send(Err(err.clone()));
                }
            }
        }
    }

    /// Opens the stream if there is something to send, then sends what the pipeline allows.
    async fn pump(&mut self) {
        let now = Instant::now();
        if self.connection.is_none() {
            if !self.pipeline.has_sendable(now) || self.reconnect_at.is_some_and(|at| now < at) {
                return;
            }
            match self.open().await {
                Ok(connection) => self.connection = Some(connection),
                Err(err) => {
                    tracing::debug!(error = %err, "cannot open the produce stream");
                    self.failed_stream(Instant::now());
                    return;
                }
            }
        }
        let Some(connection) = &self.connection else {
            return;
        };
        while let Some(request) = self.pipeline.next_request(now) {
            // A closed request side means the call is over; its end arrives as an answer.
            if connection.requests.send(request).is_err() {
                break;
            }
        }
    }

    async fn open(&mut self) -> Result<Connection> {
        let (requests, outgoing) = mpsc::unbounded_channel();
        let answers = self
            .log
            .produce_stream(UnboundedReceiverStream::new(outgoing))
            .await?
            .into_inner();
        Ok(Connection { requests, answers })
    }

    fn on_answer(&mut self, answer: Result<Option<pb::ProduceStreamResponse>, Status>) {
        let now = Instant::now();
        let broken = match answer {
            Ok(Some(answer)) => {
                self.failures = 0;
                let result = match answer.result {
                    Some(produce_stream_response::Result::Produced(response)) => Ok(response),
                    Some(produce_stream_response::Result::Error(error)) => Err(Error::Server {
                        code: Code::from_i32(error.code),
                        message: error.message,
                    }),
                    None => Err(Error::Protocol(format!(
                        "the answer to request {} has no result",
                        answer.request_id
                    ))),
                };
                self.pipeline.on_answer(answer.request_id, result, now);
                return;
            }
            Ok(None) => Error::Server {
                code: Code::Unavailable,
                message: "the server ended the produce stream".into(),
            },
            Err(status) => Error::from(status),
        };
        tracing::debug!(error = %broken, "produce stream broke");
        self.connection = None;
        self.pipeline.on_stream_broken(&broken, now);
        self.failed_stream(now);
    }

    fn failed_stream(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.reconnect_at = Some(now + self.backoff.delay(self.failures));
    }

    /// The sequence number of the oldest record waiting for its topic's partition count.
    fn topics_waiting(&self) -> Option<u64> {
        self.topics
            .values()
            .filter_map(|topic| match topic {
                Topic::LookingUp(waiting) => waiting.iter().map(|(seq, _, _)| *seq).min(),
                Topic::Known { .. } => None,
            })
            .min()
    }

    /// Signals the flushes whose records all have their outcome.
    fn finish_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let oldest = [self.pipeline.oldest_pending(), self.topics_waiting()]
            .into_iter()
            .flatten()
            .min();
        let (done, waiting) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(end, _)| oldest.is_none_or(|oldest| oldest >= *end));
        self.flushes = waiting;
        for (_, signal) in done {
            let _ = signal.send(());
        }
    }

    /// The next moment something is due: a batch's linger or expiry, a retry, a reconnect.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let reconnect = self.reconnect_at.filter(|_| self.connection.is_none());
        [self.pipeline.next_deadline(), reconnect]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .min()
    }
}

/// Bytes a record waiting for its topic's partition count holds in the buffer: its key,
/// value and header bytes.
fn held_size(record: &ProducerRecord) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.len())
        .sum();
    record.key.as_ref().map_or(0, |k| k.len()) + record.value.len() + headers
}

/// The next answer of the open stream; never resolves without one.
async fn next_answer(
    connection: &mut Option<Connection>,
) -> Result<Option<pb::ProduceStreamResponse>, Status> {
    match connection {
        Some(connection) => connection.answers.message().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The partition count and `max.message.bytes` of `topic`, retrying while the server is
/// unreachable.
async fn partition_count(
    admin: &Admin,
    topic: &str,
    backoff: Backoff,
    timeout: Duration,
) -> Result<TopicShape> {
    let deadline = Instant::now() + timeout;
    let mut failures = 0;
    loop {
        match admin.describe_topic(topic).await {
            Ok(description) => {
                let partitions = u32::try_from(description.partitions.len()).map_err(|_| {
                    Error::Protocol(format!("topic '{topic}' has too many partitions"))
                })?;
                let max_message_bytes = description
                    .config
                    .get("max.message.bytes")
                    .and_then(|v| v.parse().ok());
                return Ok(TopicShape {
                    partitions,
                    max_message_bytes,
                });
            }
            Err(err) if err.is_transient() => {
                failures += 1;
                let delay = backoff.delay(failures);
                if Instant::now() + delay >= deadline {
                    return Err(Error::DeliveryTimeout {
                        after: timeout,
                        last: Some(Box::new(err)),
                    });
                }
                tokio::time::sleep(delay).await;
            }
            Err(err) => return Err(err),
        }
    }
}
