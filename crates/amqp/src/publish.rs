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
use sluice_broker::{Broker, PendingProduce};
use tokio::sync::{mpsc, oneshot};

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

/// A message routed and submitted for appending, not yet durable.
#[derive(Debug)]
pub(crate) struct Submitted {
    /// The appends, one per queue that took the message.
    pending: Vec<PendingProduce>,
    /// Queues with `x-max-length` (drop-head) to trim once the appends are done.
    trims: Vec<(String, u64)>,
    /// Queues that took it.
    pub(crate) stored: usize,
    /// Queues that refused it: full, with `x-overflow = reject-publish`.
    pub(crate) refused: usize,
}

/// Routes `message` through its exchange and submits it to every queue it reaches, in
/// order with the channel's earlier publishes. A queue with `x-max-length` keeps at most
/// that many messages waiting: past it, the oldest waiting ones are dropped once the
/// append is done (`x-overflow = drop-head`, the default), or the new one is refused
/// (`reject-publish`).
///
/// Returns once the appends have room in the broker's in-flight budget, so a publisher
/// faster than the disk is held back (its connection is not read meanwhile).
pub(crate) async fn submit(shared: &Shared, message: &Message) -> Result<Submitted, Failure> {
    let record = message.to_record();
    let headers: Vec<(Bytes, Option<Bytes>)> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let broker = &shared.broker;
    let queues = broker
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
    let mut submitted = Submitted {
        pending: Vec::with_capacity(queues.len()),
        trims: Vec::new(),
        stored: 0,
        refused: 0,
    };
    for queue in queues {
        let limit = broker.queue_definition(&queue).and_then(|q| {
            let max: u64 = q.arguments.get("x-max-length")?.parse().ok()?;
            let reject = q
                .arguments
                .get("x-overflow")
                .is_some_and(|o| o == "reject-publish");
            Some((max, reject))
        });
        match limit {
            Some((max, true)) if broker.share_waiting(&queue).unwrap_or(0) >= max => {
                submitted.refused += 1;
                continue;
            }
            Some((max, false)) => submitted.trims.push((queue.clone(), max)),
            _ => {}
        }
        let pending = broker
            .submit_produce(&queue, None, [record.clone()])
            .map_err(Failure::from)?;
        submitted
            .pending
            .push(pending.admitted().await.map_err(Failure::from)?);
        submitted.stored += 1;
    }
    Ok(submitted)
}

impl Submitted {
    /// Waits until every append is durable (as its topic's `flush.policy` promises), then
    /// trims the queues over their `x-max-length`. The first failure is returned.
    pub(crate) async fn done(self, broker: &Arc<Broker>) -> Result<(), Failure> {
        let mut result = Ok(());
        for pending in self.pending {
            if let Err(err) = pending.wait().await {
                result = result.and(Err(Failure::from(err)));
            }
        }
        for (queue, max) in self.trims {
            let excess = broker
                .share_waiting(&queue)
                .unwrap_or(0)
                .saturating_sub(max);
            if excess > 0 {
                let count = u32::try_from(excess).unwrap_or(u32::MAX);
                if let Err(err) = broker.drop_queue_head(&queue, count).await {
                    result = result.and(Err(Failure::from(err)));
                }
            }
        }
        result
    }
}

/// Routes and stores `message`, waiting until it is durable (dead letters).
pub(crate) async fn route_and_store(shared: &Shared, message: &Message) -> Result<(), Failure> {
    submit(shared, message).await?.done(&shared.broker).await
}

/// Publishes whose appends are under way on one channel, settled in publish order by a
/// task of the channel: confirms (ack, or nack for a refused or failed one) go out in
/// that order. Publishing does not wait for the appends, so a publisher's messages stream
/// into the log; any other method of the channel first waits for them ([`Pipeline::drain`]).
#[derive(Debug)]
pub(crate) struct Pipeline {
    jobs: mpsc::Sender<Job>,
    /// Set once the channel closes: confirms are no longer sent.
    silenced: Arc<AtomicBool>,
}

#[derive(Debug)]
enum Job {
    /// A publish; with confirms, its sequence number.
    Publish(Submitted, Option<u64>),
    /// Answered once every job before it is settled, with the first failure of a publish
    /// without confirms since the last drain.
    Drain(oneshot::Sender<Option<Failure>>),
}

/// Publishes a channel may have under way before the next waits.
const PIPELINE_DEPTH: usize = 1024;

impl Pipeline {
    /// The pipeline of channel `channel`, answering on `out`.
    pub(crate) fn new(channel: u16, out: Outgoing, broker: Arc<Broker>) -> Pipeline {
        let (jobs, mut queued) = mpsc::channel(PIPELINE_DEPTH);
        let silenced = Arc::new(AtomicBool::new(false));
        let quiet = Arc::clone(&silenced);
        tokio::spawn(async move {
            let mut failed: Option<Failure> = None;
            while let Some(job) = queued.recv().await {
                match job {
                    Job::Publish(submitted, confirm) => {
                        let refused = submitted.refused > 0;
                        let outcome = submitted.done(&broker).await;
                        match confirm {
                            Some(_) if quiet.load(Ordering::SeqCst) => {}
                            Some(delivery_tag) => {
                                let method = if refused || outcome.is_err() {
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
                                send(&out, AMQPFrame::Method(channel, AMQPClass::Basic(method)))
                                    .await;
                            }
                            None => {
                                if let Err(failure) = outcome {
                                    failed.get_or_insert(failure);
                                }
                            }
                        }
                    }
                    Job::Drain(answer) => {
                        let _ = answer.send(failed.take());
                    }
                }
            }
        });
        Pipeline { jobs, silenced }
    }

    /// Stops sending confirms: the channel is closing.
    pub(crate) fn silence(&self) {
        self.silenced.store(true, Ordering::SeqCst);
    }

    /// Waits until every publish queued is settled, whatever its outcome.
    pub(crate) async fn drain_quietly(&self) {
        let _ = self.drain().await;
    }

    /// Queues a submitted publish (waiting while the pipeline is full).
    pub(crate) async fn push(&self, submitted: Submitted, confirm: Option<u64>) {
        // The task ends only with the channel.
        let _ = self.jobs.send(Job::Publish(submitted, confirm)).await;
    }

    /// Waits until every publish queued is settled; the first failure of a publish without
    /// confirms since the last drain fails the channel.
    pub(crate) async fn drain(&self) -> Result<(), Failure> {
        let (answer, settled) = oneshot::channel();
        if self.jobs.send(Job::Drain(answer)).await.is_err() {
            return Ok(());
        }
        match settled.await {
            Ok(Some(failure)) => Err(failure),
            _ => Ok(()),
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
