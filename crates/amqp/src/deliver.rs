//! Deliveries: consumers taking records from their queue's share group and sending them
//! as basic.deliver, the channel's unacknowledged deliveries by delivery tag, and their
//! settlement (ack, nack, reject, recover, channel close).
//!
//! Each consumer is a share group member whose prefetch is the consumer's `basic.qos`
//! prefetch count (0: the broker's `share.max_prefetch`); a channel-wide (`global`)
//! prefetch count bounds the channel's unacknowledged deliveries on top. A delivery of a
//! record delivered before carries `redelivered = true`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, basic};
use parking_lot::Mutex;
use sluice_broker::security::{Grant, QuotaKind};
use sluice_broker::{Ack, AckKind, AcquiredRecord, BrokerError, RecordView, ShareMember};
use tokio::sync::Notify;

use crate::access::hold_back;
use crate::codec::{body_chunk, encode};
use crate::connection::{Outgoing, Shared};
use crate::properties::Message;
use crate::publish::{self, short};
use crate::reply::{Failure, NOT_FOUND, PRECONDITION_FAILED};

/// How long one acquire waits before looking at the channel again.
const ACQUIRE_WAIT: Duration = Duration::from_secs(1);

/// What a queue's arguments ask of its messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueueRules {
    /// The queue.
    pub(crate) name: String,
    /// `x-dead-letter-exchange`: where rejected and expired messages go.
    pub(crate) dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`: their routing key there (default: their own).
    pub(crate) dead_letter_routing_key: Option<String>,
    /// `x-message-ttl`: ms a message may wait before it expires.
    pub(crate) message_ttl: Option<u64>,
}

impl QueueRules {
    /// The rules of `queue`'s arguments.
    pub(crate) fn of(queue: &str, arguments: &BTreeMap<String, String>) -> QueueRules {
        QueueRules {
            name: queue.to_owned(),
            dead_letter_exchange: arguments.get("x-dead-letter-exchange").cloned(),
            dead_letter_routing_key: arguments.get("x-dead-letter-routing-key").cloned(),
            message_ttl: arguments.get("x-message-ttl").and_then(|t| t.parse().ok()),
        }
    }

    /// Where the queue's dead letters may go, if it has a dead-letter exchange: the queue
    /// named by the routing key on the default exchange (`Some(Some(name))`), or any queue
    /// (`Some(None)`: another exchange, or the messages' own routing keys).
    pub(crate) fn dead_letter_target(&self) -> Option<Option<&str>> {
        let exchange = self.dead_letter_exchange.as_deref()?;
        Some(match (exchange, self.dead_letter_routing_key.as_deref()) {
            ("", Some(key)) => Some(key),
            _ => None,
        })
    }
}

/// A delivery not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Unacked {
    member: Arc<ShareMember>,
    rules: Arc<QueueRules>,
    record: AcquiredRecord,
}

/// A channel's deliveries, shared by its consumers and the connection reading acks.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    state: Mutex<DeliveryState>,
    /// Woken when deliveries are settled or flow resumes.
    room: Notify,
    /// channel.flow, or a channel closing: `true` stops deliveries.
    paused: AtomicBool,
}

#[derive(Debug, Default)]
struct DeliveryState {
    last_tag: u64,
    unacked: BTreeMap<u64, Unacked>,
    /// The channel-wide prefetch count (0: none).
    prefetch: u16,
}

/// What happens to settled deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// ack: done.
    Accept,
    /// nack/reject with requeue, recover, channel close: delivered again.
    Requeue,
    /// nack/reject without requeue: dead-lettered through the queue's dead-letter exchange,
    /// or dropped.
    Discard,
}

impl Deliveries {
    /// Sets the channel-wide prefetch count.
    pub(crate) fn set_prefetch(&self, prefetch: u16) {
        self.state.lock().prefetch = prefetch;
        self.room.notify_waiters();
    }

    /// Pauses or resumes deliveries (channel.flow, a channel closing).
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        self.room.notify_waiters();
    }

    fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// How many more deliveries the channel takes now, at most `wanted`.
    fn room(&self, wanted: u32) -> u32 {
        if self.is_paused() {
            return 0;
        }
        let state = self.state.lock();
        match state.prefetch {
            0 => wanted,
            n => u32::from(n)
                .saturating_sub(state.unacked.len() as u32)
                .min(wanted),
        }
    }

    /// A new delivery tag, remembering the delivery when it is to be acknowledged.
    fn register(&self, unacked: Option<Unacked>) -> u64 {
        let mut state = self.state.lock();
        state.last_tag += 1;
        let tag = state.last_tag;
        if let Some(unacked) = unacked {
            state.unacked.insert(tag, unacked);
        }
        tag
    }

    /// Takes the deliveries an ack, nack or reject names: `tag`, or with `multiple` every
    /// one up to `tag` (0: all). An unknown tag fails the channel, as in RabbitMQ.
    pub(crate) fn take(&self, tag: u64, multiple: bool) -> Result<Vec<Unacked>, Failure> {
        let mut state = self.state.lock();
        if multiple {
            let kept = match tag.checked_add(1) {
                Some(after) if tag != 0 => state.unacked.split_off(&after),
                _ => BTreeMap::new(),
            };
            let taken = std::mem::replace(&mut state.unacked, kept);
            if taken.is_empty() && tag != 0 && tag > state.last_tag {
                return Err(unknown(tag));
            }
            return Ok(taken.into_values().collect());
        }
        state
            .unacked
            .remove(&tag)
            .map(|u| vec![u])
            .ok_or_else(|| unknown(tag))
    }

    /// Takes every unacknowledged delivery of `queue`, or of every queue.
    pub(crate) fn take_all(&self, queue: Option<&str>) -> Vec<Unacked> {
        let mut state = self.state.lock();
        let Some(queue) = queue else {
            return std::mem::take(&mut state.unacked).into_values().collect();
        };
        let tags: Vec<u64> = state
            .unacked
            .iter()
            .filter(|(_, u)| u.rules.name == queue)
            .map(|(tag, _)| *tag)
            .collect();
        tags.iter()
            .filter_map(|tag| state.unacked.remove(tag))
            .collect()
    }
}

fn unknown(tag: u64) -> Failure {
    Failure::channel(PRECONDITION_FAILED, format!("unknown delivery tag {tag}"))
}

/// Settles deliveries as `how` says, each member's at once. A delivery whose record the
/// member no longer holds (its lock ran out) fails the channel with 406.
pub(crate) async fn settle(
    shared: &Shared,
    deliveries: &Deliveries,
    taken: Vec<Unacked>,
    how: Settle,
) -> Result<(), Failure> {
    let mut by_member: Vec<(Arc<ShareMember>, Vec<Unacked>)> = Vec::new();
    for unacked in taken {
        match by_member
            .iter_mut()
            .find(|(m, _)| Arc::ptr_eq(m, &unacked.member))
        {
            Some((_, list)) => list.push(unacked),
            None => by_member.push((Arc::clone(&unacked.member), vec![unacked])),
        }
    }
    let mut result = Ok(());
    for (member, list) in by_member {
        let mut acks = Vec::with_capacity(list.len());
        for unacked in &list {
            let kind = match how {
                Settle::Accept => AckKind::Accept,
                Settle::Requeue => AckKind::Release,
                Settle::Discard => {
                    match dead_letter(shared, &unacked.rules, &unacked.record.record, "rejected")
                        .await
                    {
                        Ok(true) => AckKind::Accept,
                        Ok(false) => AckKind::Reject,
                        Err(failure) => {
                            result = Err(failure);
                            AckKind::Release
                        }
                    }
                }
            };
            acks.push(ack(&unacked.record, kind));
        }
        match member.acknowledge(acks).await {
            Ok(outcomes) => {
                if let Some(Err(err)) = outcomes.into_iter().find(Result::is_err) {
                    result =
                        result.and(Err(Failure::channel(PRECONDITION_FAILED, err.to_string())));
                }
            }
            Err(err) => result = result.and(Err(Failure::from(err))),
        }
    }
    deliveries.room.notify_waiters();
    result
}

fn ack(record: &AcquiredRecord, kind: AckKind) -> Ack {
    Ack {
        topic: record.topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        kind,
    }
}

/// Publishes a dead letter of `record` through the queue's dead-letter exchange, with
/// RabbitMQ's `x-death` and `x-first-death-*` headers; `false` when the queue has none,
/// or it does not exist (then the message is dropped, as RabbitMQ does).
pub(crate) async fn dead_letter(
    shared: &Shared,
    rules: &QueueRules,
    record: &RecordView,
    reason: &str,
) -> Result<bool, Failure> {
    let Some(exchange) = &rules.dead_letter_exchange else {
        return Ok(false);
    };
    let mut message = Message::from_record(record, &rules.name);
    let routing_key = rules
        .dead_letter_routing_key
        .clone()
        .unwrap_or_else(|| message.routing_key.clone());
    message.properties = publish::with_death(&message, &rules.name, reason);
    message.exchange = exchange.clone();
    message.routing_key = routing_key;
    match publish::route_and_store(shared, &message).await {
        Ok(()) => Ok(true),
        Err(failure) if failure.code == NOT_FOUND => Ok(false),
        Err(failure) => Err(failure),
    }
}

/// A consumer's settings.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerSpec {
    /// The channel it delivers on.
    pub(crate) channel: u16,
    /// Its tag.
    pub(crate) tag: String,
    /// Whether deliveries count as acknowledged once sent.
    pub(crate) no_ack: bool,
    /// The queue's rules.
    pub(crate) rules: Arc<QueueRules>,
    /// The negotiated frame_max.
    pub(crate) frame_max: u32,
    /// What allowed the consumer (Read on the queue's topic and group), for whom: its
    /// deliveries count against that caller's fetch quota, and it is cancelled once an ACL
    /// change takes the grant away.
    pub(crate) grant: Grant,
}

/// Delivers records of `member`'s queue on the channel until the task is aborted or the
/// connection goes away. When the queue's share group goes (deleted by another protocol),
/// or an ACL change takes away the consumer's grant, the client is told with basic.cancel.
pub(crate) async fn run_consumer(
    shared: Arc<Shared>,
    mut spec: ConsumerSpec,
    member: Arc<ShareMember>,
    deliveries: Arc<Deliveries>,
    out: Outgoing,
) {
    let batch = shared.broker.share_config().max_prefetch;
    loop {
        let waiting = deliveries.room.notified();
        tokio::pin!(waiting);
        waiting.as_mut().enable();
        let room = deliveries.room(batch);
        if room == 0 {
            waiting.await;
            continue;
        }
        let records = match member.acquire(room, ACQUIRE_WAIT).await {
            Ok(records) => records,
            Err(BrokerError::ShareMemberGone { .. }) => {
                cancel(&spec, &out).await;
                return;
            }
            Err(BrokerError::ShuttingDown) => return,
            Err(err) => {
                tracing::warn!(queue = spec.rules.name, error = %err, "an AMQP consumer cannot acquire; retrying");
                tokio::time::sleep(ACQUIRE_WAIT).await;
                continue;
            }
        };
        // The denial is logged by the broker; what was acquired is offered again.
        if shared.broker.security().recheck(&mut spec.grant).is_err() {
            let _ = member
                .acknowledge(records.iter().map(|r| ack(r, AckKind::Release)).collect())
                .await;
            cancel(&spec, &out).await;
            return;
        }
        // Expired records are dead-lettered; with no_ack the others count as delivered
        // before they are sent (at most once, as RabbitMQ's automatic acknowledgement).
        let mut settled = Vec::new();
        let mut live = Vec::with_capacity(records.len());
        for record in records {
            if expired(&spec.rules, &record.record) {
                let kind = match dead_letter(&shared, &spec.rules, &record.record, "expired").await
                {
                    Ok(_) => AckKind::Accept,
                    Err(_) => AckKind::Release,
                };
                settled.push(ack(&record, kind));
            } else {
                if spec.no_ack {
                    settled.push(ack(&record, AckKind::Accept));
                }
                live.push(record);
            }
        }
        if !settled.is_empty() && member.acknowledge(settled).await.is_err() {
            return;
        }
        let mut unsent = live.into_iter();
        for record in unsent.by_ref() {
            let bytes = record.record.value.as_ref().map_or(0, |v| v.len());
            let frames = deliver_frames(&spec, &deliveries, &member, record);
            if out.send(frames).await.is_err() {
                return;
            }
            // Over the fetch quota: the next delivery waits.
            hold_back(&shared, spec.grant.caller(), QuotaKind::Fetch, bytes).await;
            // A paused channel takes no more (what no_ack counted as delivered still goes).
            if deliveries.is_paused() && !spec.no_ack {
                break;
            }
        }
        // Acquired but not sent (the channel paused or is closing): offered again.
        let rest: Vec<Ack> = unsent.map(|r| ack(&r, AckKind::Release)).collect();
        if !rest.is_empty() && !spec.no_ack {
            let _ = member.acknowledge(rest).await;
        }
    }
}

/// Tells the client the server cancelled the consumer (basic.cancel, RabbitMQ's consumer
/// cancel notification).
async fn cancel(spec: &ConsumerSpec, out: &Outgoing) {
    let cancel = basic::AMQPMethod::Cancel(basic::Cancel {
        consumer_tag: short(&spec.tag),
        nowait: true,
    });
    let mut frames = Vec::new();
    encode(
        &AMQPFrame::Method(spec.channel, AMQPClass::Basic(cancel)),
        &mut frames,
    );
    let _ = out.send(frames).await;
}

/// Whether a record is past its TTL (its own `expiration`, the queue's `x-message-ttl`).
pub(crate) fn expired(rules: &QueueRules, record: &RecordView) -> bool {
    if rules.message_ttl.is_none()
        && !record
            .headers
            .iter()
            .any(|(k, _)| &k[..] == b"amqp.expiration")
    {
        return false;
    }
    let message = Message::from_record(record, &rules.name);
    message
        .expires_at(record.timestamp_ms, rules.message_ttl)
        .is_some_and(|at| at <= now_ms())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The frames delivering `record`, registered for acknowledgement unless `no_ack`.
fn deliver_frames(
    spec: &ConsumerSpec,
    deliveries: &Deliveries,
    member: &Arc<ShareMember>,
    record: AcquiredRecord,
) -> Vec<u8> {
    let message = Message::from_record(&record.record, &spec.rules.name);
    let redelivered = record.delivery_count > 1;
    let unacked = (!spec.no_ack).then(|| Unacked {
        member: Arc::clone(member),
        rules: Arc::clone(&spec.rules),
        record,
    });
    let tag = deliveries.register(unacked);
    let method = basic::AMQPMethod::Deliver(basic::Deliver {
        consumer_tag: short(&spec.tag),
        delivery_tag: tag,
        redelivered,
        exchange: short(&message.exchange),
        routing_key: short(&message.routing_key),
    });
    content_frames(spec.channel, method, &message, spec.frame_max)
}

/// A method carrying content (deliver, get-ok, return), its header and body frames.
pub(crate) fn content_frames(
    channel: u16,
    method: basic::AMQPMethod,
    message: &Message,
    frame_max: u32,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(message.body.len() + 256);
    encode(
        &AMQPFrame::Method(channel, AMQPClass::Basic(method)),
        &mut bytes,
    );
    encode(
        &AMQPFrame::Header(
            channel,
            AMQPContentHeader {
                class_id: 60,
                body_size: message.body.len() as u64,
                properties: message.properties.clone(),
            },
        ),
        &mut bytes,
    );
    for chunk in message.body.chunks(body_chunk(frame_max)) {
        encode(&AMQPFrame::Body(channel, chunk.to_vec()), &mut bytes);
    }
    bytes
}

/// basic.get: one record of `member`'s queue, registered for acknowledgement unless
/// `no_ack`; `None` when none waits. Expired records met on the way are dead-lettered.
pub(crate) async fn get_one(
    shared: &Shared,
    member: &Arc<ShareMember>,
    rules: &Arc<QueueRules>,
    deliveries: &Deliveries,
    no_ack: bool,
) -> Result<Option<(u64, bool, Message)>, Failure> {
    loop {
        let mut records = member
            .acquire(1, Duration::ZERO)
            .await
            .map_err(Failure::from)?;
        let Some(record) = records.pop() else {
            return Ok(None);
        };
        if expired(rules, &record.record) {
            let kind = match dead_letter(shared, rules, &record.record, "expired").await {
                Ok(_) => AckKind::Accept,
                Err(_) => AckKind::Release,
            };
            member
                .acknowledge(vec![ack(&record, kind)])
                .await
                .map_err(Failure::from)?;
            continue;
        }
        let message = Message::from_record(&record.record, &rules.name);
        let redelivered = record.delivery_count > 1;
        let tag = if no_ack {
            member
                .acknowledge(vec![ack(&record, AckKind::Accept)])
                .await
                .map_err(Failure::from)?;
            deliveries.register(None)
        } else {
            deliveries.register(Some(Unacked {
                member: Arc::clone(member),
                rules: Arc::clone(rules),
                record,
            }))
        };
        return Ok(Some((tag, redelivered, message)));
    }
}
