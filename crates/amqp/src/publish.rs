//! Publishing: a basic.publish with its content header and body frames, routed through
//! the broker's exchanges and appended to each queue's topic; the confirm once the append
//! is as durable as the topic's `flush.policy` promises; basic.return for a mandatory
//! message no queue takes.

use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use bytes::{Bytes, BytesMut};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::AMQPClass;
use sluice_broker::{Broker, NewRecord};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::connection::{Outgoing, Shared, send};
use crate::properties::Message;
use crate::reply::{Failure, NOT_FOUND, PRECONDITION_FAILED, UNEXPECTED_FRAME};

/// A publish whose content is being received.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The method.
    pub(crate) publish: basic::Publish,
    /// The content header: body size and properties, once received.
    header: Option<(u64, AMQPProperties)>,
    body: BytesMut,
}

impl Incoming {
    /// A publish waiting for its content header.
    pub(crate) fn new(publish: basic::Publish) -> Incoming {
        Incoming {
            publish,
            header: None,
            body: BytesMut::new(),
        }
    }

    /// Takes the content header; the message when its body is empty.
    pub(crate) fn header(
        &mut self,
        body_size: u64,
        properties: AMQPProperties,
        max: u64,
    ) -> Result<Option<Message>, Failure> {
        if self.header.is_some() {
            return Err(Failure::connection(
                UNEXPECTED_FRAME,
                "a second content header for one publish",
            ));
        }
        if body_size > max {
            return Err(Failure::channel(
                PRECONDITION_FAILED,
                format!(
                    "message size {body_size} is larger than the configured max size {max} (amqp.max_message_bytes)"
                ),
            ));
        }
        // Grown as the body arrives; reserved up front only up to 1 MiB.
        self.body.reserve(body_size.min(1 << 20) as usize);
        self.header = Some((body_size, properties));
        Ok(self.complete())
    }

    /// Takes a body frame; the message once the body is whole.
    pub(crate) fn body(&mut self, bytes: &[u8]) -> Result<Option<Message>, Failure> {
        let Some((size, _)) = &self.header else {
            return Err(Failure::connection(
                UNEXPECTED_FRAME,
                "a content body before its header",
            ));
        };
        if (self.body.len() + bytes.len()) as u64 > *size {
            return Err(Failure::connection(
                UNEXPECTED_FRAME,
                format!("content body longer than the {size} bytes its header announced"),
            ));
        }
        self.body.extend_from_slice(bytes);
        Ok(self.complete())
    }

    fn complete(&mut self) -> Option<Message> {
        let (size, _) = self.header.as_ref()?;
        if (self.body.len() as u64) < *size {
            return None;
        }
        let (_, properties) = self.header.take()?;
        Some(Message {
            exchange: self.publish.exchange.to_string(),
            routing_key: self.publish.routing_key.to_string(),
            properties,
            body: Bytes::from(std::mem::take(&mut self.body)),
        })
    }
}

/// A message routed: the record to append and the queues it goes to.
#[derive(Debug)]
pub(crate) struct Routed {
    record: NewRecord,
    /// The queues that take it, each with its `x-max-length` when it drops its head past it.
    queues: Vec<(String, Option<u64>)>,
    /// Queues that refused it: full, with `x-overflow = reject-publish`.
    pub(crate) refused: usize,
}

impl Routed {
    /// Queues that take it.
    pub(crate) fn stored(&self) -> usize {
        self.queues.len()
    }

    /// The names of the queues that take it.
    pub(crate) fn queues(&self) -> impl Iterator<Item = &str> {
        self.queues.iter().map(|(name, _)| name.as_str())
    }
}

/// Routes `message` through its exchange. A queue with `x-max-length` keeps at most that
/// many messages waiting: past it, the oldest waiting ones are dropped once the append is
/// done (`x-overflow = drop-head`, the default), or the new one is refused
/// (`reject-publish`).
pub(crate) fn route(shared: &Shared, message: &Message) -> Result<Routed, Failure> {
    let record = message.to_record();
    let headers: Vec<(Bytes, Option<Bytes>)> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let broker = &shared.broker;
    let names = broker
        .route(&message.exchange, &message.routing_key, &headers)
        .map_err(|err| {
            let failure = Failure::from(err);
            if failure.code == NOT_FOUND {
                Failure::channel(
                    NOT_FOUND,
                    format!("no exchange '{}' in vhost '/'", message.exchange),
                )
            } else {
                failure
            }
        })?;
    let mut queues = Vec::with_capacity(names.len());
    let mut refused = 0;
    for queue in names {
        let limit = broker.queue_max_length(&queue);
        match limit {
            Some((max, true)) if broker.share_waiting(&queue).unwrap_or(0) >= max => refused += 1,
            Some((_, true)) | None => queues.push((queue, None)),
            Some((max, false)) => queues.push((queue, Some(max))),
        }
    }
    Ok(Routed {
        record,
        queues,
        refused,
    })
}

/// Appends routed messages, in order, as one record batch per queue, and waits until each
/// is durable (as its topic's `flush.policy` promises); then trims the queues over their
/// `x-max-length`. One outcome per message. A queue's batch that fails on one message's
/// size or content is retried message by message, so only that one fails.
async fn store(broker: &Arc<Broker>, messages: &[&Routed]) -> Vec<Result<(), Failure>> {
    let mut outcomes: Vec<Result<(), Failure>> = messages.iter().map(|_| Ok(())).collect();
    let mut by_queue: Vec<(&str, Option<u64>, Vec<usize>)> = Vec::new();
    for (i, routed) in messages.iter().enumerate() {
        for (queue, max) in &routed.queues {
            match by_queue.iter_mut().find(|(q, _, _)| q == queue) {
                Some((_, _, indexes)) => indexes.push(i),
                None => by_queue.push((queue, *max, vec![i])),
            }
        }
    }
    for (queue, max, indexes) in by_queue {
        let records = || indexes.iter().map(|&i| messages[i].record.clone());
        match append(broker, queue, records()).await {
            Ok(()) => {}
            Err(_) if indexes.len() > 1 => {
                for &i in &indexes {
                    if let Err(failure) = append(broker, queue, [messages[i].record.clone()]).await
                    {
                        outcomes[i] = Err(failure);
                    }
                }
            }
            Err(failure) => outcomes[indexes[0]] = Err(failure),
        }
        if let Some(max) = max {
            let excess = broker.share_waiting(queue).unwrap_or(0).saturating_sub(max);
            if excess > 0 {
                let count = u32::try_from(excess).unwrap_or(u32::MAX);
                if let Err(err) = broker.drop_queue_head(queue, count).await {
                    tracing::warn!(queue, error = %err, "trimming a queue to its x-max-length failed");
                }
            }
        }
    }
    outcomes
}

/// Appends `records` to `queue` as one batch and waits until it is durable.
async fn append(
    broker: &Broker,
    queue: &str,
    records: impl IntoIterator<Item = NewRecord>,
) -> Result<(), Failure> {
    let pending = broker
        .submit_produce(queue, None, records)
        .map_err(Failure::from)?;
    pending.wait().await.map(drop).map_err(Failure::from)
}

/// Routes and stores `message`, waiting until it is durable (dead letters).
pub(crate) async fn route_and_store(shared: &Shared, message: &Message) -> Result<(), Failure> {
    let routed = route(shared, message)?;
    store(&shared.broker, &[&routed]).await.remove(0)
}

/// Publishes of one channel on their way to the log, appended and settled in publish
/// order by a task of the channel: the publishes waiting when it looks are appended
/// together (one record batch per queue, up to [`BATCH_MESSAGES`] messages or
/// [`BATCH_BYTES`]), and their confirms (ack, or nack for a refused or failed one) go out
/// in order once each is durable. Publishing does not wait for the appends, so a
/// publisher's messages stream into the log; any other method of the channel first waits
/// for them ([`Pipeline::drain`]). What is queued is bounded by [`PIPELINE_BYTES`], so a
/// publisher faster than the disk is held back (its connection is not read meanwhile).
#[derive(Debug)]
pub(crate) struct Pipeline {
    jobs: mpsc::UnboundedSender<Job>,
    /// Bytes of message bodies queued and not yet settled.
    room: Arc<Semaphore>,
    /// Set once the channel closes: confirms are no longer sent.
    silenced: Arc<AtomicBool>,
}

#[derive(Debug)]
enum Job {
    /// A publish; with confirms, its sequence number; and the room its body takes.
    Publish(Routed, Option<u64>, OwnedSemaphorePermit),
    /// Answered once every job before it is settled, with the first failure of a publish
    /// without confirms since the last drain.
    Drain(oneshot::Sender<Option<Failure>>),
}

/// Bytes of message bodies a channel may have queued before the next publish waits.
const PIPELINE_BYTES: usize = 32 << 20;
/// Most messages appended together.
const BATCH_MESSAGES: usize = 512;
/// Most body bytes appended together.
const BATCH_BYTES: usize = 1 << 20;

impl Pipeline {
    /// The pipeline of channel `channel`, answering on `out`.
    pub(crate) fn new(channel: u16, out: Outgoing, broker: Arc<Broker>) -> Pipeline {
        let (jobs, queued) = mpsc::unbounded_channel();
        let silenced = Arc::new(AtomicBool::new(false));
        tokio::spawn(settle_loop(
            channel,
            out,
            broker,
            queued,
            Arc::clone(&silenced),
        ));
        Pipeline {
            jobs,
            room: Arc::new(Semaphore::new(PIPELINE_BYTES)),
            silenced,
        }
    }

    /// Queues a routed publish, waiting while the pipeline holds [`PIPELINE_BYTES`].
    pub(crate) async fn push(&self, routed: Routed, confirm: Option<u64>) {
        let bytes = routed.record.value.len().clamp(1, PIPELINE_BYTES);
        let Ok(permit) = Arc::clone(&self.room)
            .acquire_many_owned(u32::try_from(bytes).unwrap_or(u32::MAX))
            .await
        else {
            return;
        };
        // The task ends only with the channel.
        let _ = self.jobs.send(Job::Publish(routed, confirm, permit));
    }

    /// Stops sending confirms: the channel is closing.
    pub(crate) fn silence(&self) {
        self.silenced.store(true, Ordering::SeqCst);
    }

    /// Waits until every publish queued is settled, whatever its outcome.
    pub(crate) async fn drain_quietly(&self) {
        let _ = self.drain().await;
    }

    /// Waits until every publish queued is settled; the first failure of a publish without
    /// confirms since the last drain fails the channel.
    pub(crate) async fn drain(&self) -> Result<(), Failure> {
        let (answer, settled) = oneshot::channel();
        if self.jobs.send(Job::Drain(answer)).is_err() {
            return Ok(());
        }
        match settled.await {
            Ok(Some(failure)) => Err(failure),
            _ => Ok(()),
        }
    }
}

/// A channel's pipeline task: takes the publishes waiting, appends them together,
/// confirms them in order; answers drains once what came before is settled.
async fn settle_loop(
    channel: u16,
    out: Outgoing,
    broker: Arc<Broker>,
    mut queued: mpsc::UnboundedReceiver<Job>,
    silenced: Arc<AtomicBool>,
) {
    let mut failed: Option<Failure> = None;
    let mut next = queued.recv().await;
    while let Some(job) = next.take() {
        let first = match job {
            Job::Drain(answer) => {
                let _ = answer.send(failed.take());
                next = queued.recv().await;
                continue;
            }
            Job::Publish(routed, confirm, permit) => (routed, confirm, permit),
        };
        let mut bytes = first.0.record.value.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
            match queued.try_recv() {
                Ok(Job::Publish(routed, confirm, permit)) => {
                    bytes += routed.record.value.len();
                    batch.push((routed, confirm, permit));
                }
                Ok(drain) => {
                    next = Some(drain);
                    break;
                }
                Err(_) => break,
            }
        }
        let routed: Vec<&Routed> = batch.iter().map(|(r, _, _)| r).collect();
        let outcomes = store(&broker, &routed).await;
        for ((routed, confirm, _permit), outcome) in batch.into_iter().zip(outcomes) {
            match confirm {
                Some(_) if silenced.load(Ordering::SeqCst) => {}
                Some(delivery_tag) => {
                    let method = if routed.refused > 0 || outcome.is_err() {
                        basic::AMQPMethod::Nack(basic::Nack {
                            delivery_tag,
                            multiple: false,
                            requeue: false,
                        })
                    } else {
                        basic::AMQPMethod::Ack(basic::Ack {
                            delivery_tag,
                            multiple: false,
                        })
                    };
                    send(&out, AMQPFrame::Method(channel, AMQPClass::Basic(method))).await;
                }
                None => {
                    if let Err(failure) = outcome {
                        failed.get_or_insert(failure);
                    }
                }
            }
        }
        if next.is_none() {
            next = queued.recv().await;
        }
    }
}

/// `message`'s properties with RabbitMQ's dead-letter headers added: `x-death` (one entry
/// per queue and reason, its count raised when the message dies there again) and the
/// `x-first-death-*` headers.
pub(crate) fn with_death(message: &Message, queue: &str, reason: &str) -> AMQPProperties {
    let mut headers = message.properties.headers().clone().unwrap_or_default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(array)) => array.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |entry: &AMQPValue| {
        matches!(entry, AMQPValue::FieldTable(t)
            if t.inner().get("queue") == Some(&text(queue)) && t.inner().get("reason") == Some(&text(reason)))
    };
    let previous = deaths.iter().position(same);
    let count = previous
        .and_then(|i| match &deaths[i] {
            AMQPValue::FieldTable(t) => match t.inner().get("count") {
                Some(AMQPValue::LongLongInt(n)) => Some(*n),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or(0)
        + 1;
    if let Some(i) = previous {
        deaths.remove(i);
    }
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(count));
    death.insert("reason".into(), text(reason));
    death.insert("queue".into(), text(queue));
    death.insert("exchange".into(), text(&message.exchange));
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![text(&message.routing_key)])),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    death.insert("time".into(), AMQPValue::Timestamp(now));
    deaths.insert(0, AMQPValue::FieldTable(death));
    if !headers.inner().contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), text(reason));
        headers.insert("x-first-death-queue".into(), text(queue));
        headers.insert("x-first-death-exchange".into(), text(&message.exchange));
    }
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(deaths)),
    );
    message.properties.clone().with_headers(headers)
}

/// A short string, cut to the 255 bytes it may hold.
pub(crate) fn short(text: &str) -> ShortString {
    ShortString::try_new(text).unwrap_or_else(|_| {
        let mut end = 255;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        ShortString::from(&text[..end])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_assembled_from_its_frames() {
        let publish = basic::Publish {
            exchange: "logs".into(),
            routing_key: "info".into(),
            mandatory: false,
            immediate: false,
        };
        let mut incoming = Incoming::new(publish.clone());
        assert!(matches!(
            incoming.header(5, AMQPProperties::default(), 10),
            Ok(None)
        ));
        assert!(matches!(incoming.body(b"he"), Ok(None)));
        let message = incoming.body(b"llo").ok().flatten().expect("whole");
        assert_eq!(
            (
                message.exchange.as_str(),
                message.routing_key.as_str(),
                &message.body[..]
            ),
            ("logs", "info", &b"hello"[..])
        );
        let mut empty = Incoming::new(publish.clone());
        assert!(matches!(
            empty.header(0, AMQPProperties::default(), 10),
            Ok(Some(_))
        ));
        let mut big = Incoming::new(publish);
        assert!(matches!(
            big.header(11, AMQPProperties::default(), 10),
            Err(Failure {
                code: PRECONDITION_FAILED,
                ..
            })
        ));
    }

    #[test]
    fn deaths_are_counted_per_queue_and_reason() {
        let message = Message {
            exchange: "work".into(),
            routing_key: "jobs".into(),
            properties: AMQPProperties::default(),
            body: Bytes::new(),
        };
        let once = Message {
            properties: with_death(&message, "jobs", "rejected"),
            ..message.clone()
        };
        let twice = with_death(&once, "jobs", "rejected");
        let headers = twice.headers().clone().unwrap_or_default();
        let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
            panic!("no x-death");
        };
        assert_eq!(deaths.as_slice().len(), 1);
        let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
            panic!("not a table");
        };
        assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(2)));
        assert_eq!(
            headers.inner().get("x-first-death-queue"),
            Some(&AMQPValue::LongString(LongString::from("jobs")))
        );
    }
}
