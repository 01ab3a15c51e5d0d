//! One channel: its methods (channel, exchange, queue, basic, confirm) mapped onto the
//! broker, its consumers, and the publish whose content it is receiving. Each method is
//! authorized as the connection's caller before it acts (`access::authorize`; what each
//! needs is the table of `sluice_broker::security::QueueAccess`), and what it publishes
//! or gets counts against the caller's quotas.

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, exchange, queue};
use amq_protocol::types::ShortString;
use sluice_broker::security::{Caller, QueueAccess, QuotaKind};
use sluice_broker::{BindingSpec, Broker, ExchangeKind, QueueSpec, ShareJoin, ShareMember};
use tokio::task::JoinHandle;

use crate::access::{authorize, consumer_grant, hold_back};
use crate::connection::{Outgoing, Shared, Tuned, send};
use crate::deliver::{self, ConsumerSpec, Deliveries, QueueRules, Settle};
use crate::properties::arguments;
use crate::publish::{self, Incoming, Pipeline, short};
use crate::registry::{Access, ConnectionId};
use crate::reply::{
    ACCESS_REFUSED, COMMAND_INVALID, Failure, NO_ROUTE, NOT_FOUND, NOT_IMPLEMENTED,
    PRECONDITION_FAILED, RESOURCE_LOCKED, UNEXPECTED_FRAME,
};

/// A consumer of the channel.
#[derive(Debug)]
struct Consumer {
    queue: String,
    task: JoinHandle<()>,
}

impl Consumer {
    /// Stops delivering; once this returns the task and its hold on the share group
    /// member are gone (what it delivered unacknowledged stays the channel's).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// An open channel.
#[derive(Debug)]
pub(crate) struct Channel {
    id: u16,
    out: Outgoing,
    tuned: Tuned,
    /// Who the channel's connection acts as.
    caller: Caller,
    /// Set once the server sent channel.close: only close-ok is awaited.
    closing: bool,
    /// The publish whose content is arriving.
    incoming: Option<Incoming>,
    /// Publisher confirms on (confirm.select), and the last publish's sequence number.
    confirm: Option<u64>,
    /// Publishes whose appends are under way.
    pipeline: Pipeline,
    /// Prefetch of consumers created from now on (basic.qos, not global); 0: none.
    consumer_prefetch: u16,
    deliveries: Arc<Deliveries>,
    consumers: HashMap<String, Consumer>,
    next_consumer: u64,
}

impl Channel {
    /// A channel just opened.
    pub(crate) fn new(
        id: u16,
        out: Outgoing,
        tuned: Tuned,
        caller: Caller,
        broker: Arc<Broker>,
    ) -> Channel {
        Channel {
            id,
            pipeline: Pipeline::new(id, out.clone(), broker),
            out,
            tuned,
            caller,
            closing: false,
            incoming: None,
            confirm: None,
            consumer_prefetch: 0,
            deliveries: Arc::default(),
            consumers: HashMap::new(),
            next_consumer: 0,
        }
    }

    async fn reply(&self, class: AMQPClass) {
        send(&self.out, AMQPFrame::Method(self.id, class)).await;
    }

    /// Answers `failure` with channel.close and pauses the channel's consumers; the channel
    /// then waits for close-ok.
    pub(crate) async fn fail(&mut self, failure: Failure) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.incoming = None;
        // Its consumers stop once the close is done (`close`); no delivery or confirm
        // goes out after the channel.close.
        self.deliveries.set_paused(true);
        self.pipeline.silence();
        tracing::debug!(channel = self.id, code = failure.code, reason = %failure.text, "closing an AMQP channel");
        self.reply(AMQPClass::Channel(channel::AMQPMethod::Close(
            channel::Close {
                reply_code: failure.code,
                reply_text: short(&failure.text),
                class_id: failure.class_id,
                method_id: failure.method_id,
            },
        )))
        .await;
    }

    /// Tears the channel down: its consumers stop, what it holds unacknowledged is
    /// delivered again (its delivery count kept), and its publishes under way finish (their
    /// confirms no longer sent). Idempotent.
    pub(crate) async fn teardown(&mut self, shared: &Arc<Shared>) {
        self.deliveries.set_paused(true);
        let consumers: Vec<Consumer> = self.consumers.drain().map(|(_, c)| c).collect();
        for consumer in &consumers {
            consumer.task.abort();
        }
        let mut queues = Vec::with_capacity(consumers.len());
        for consumer in consumers {
            queues.push(consumer.queue.clone());
            consumer.stop().await;
        }
        let unacked = self.deliveries.take_all(None);
        if !unacked.is_empty() {
            let _ = deliver::settle(shared, &self.deliveries, unacked, Settle::Requeue).await;
        }
        for queue in queues {
            consumer_gone(shared, &queue).await;
        }
        self.pipeline.silence();
        self.pipeline.drain_quietly().await;
    }

    /// Tears the channel down ([`Channel::teardown`]) and drops it.
    pub(crate) async fn close(mut self, shared: &Arc<Shared>) {
        self.teardown(shared).await;
    }

    /// Handles one frame; `Ok(false)` once the channel is closed.
    pub(crate) async fn handle(
        &mut self,
        frame: AMQPFrame,
        shared: &Arc<Shared>,
        connection: ConnectionId,
    ) -> Result<bool, Failure> {
        if self.closing {
            return Ok(match frame {
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => false,
                // Both sides closed at once: each answers the other's close.
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                    self.reply(AMQPClass::Channel(channel::AMQPMethod::CloseOk(
                        channel::CloseOk {},
                    )))
                    .await;
                    false
                }
                _ => true,
            });
        }
        match frame {
            AMQPFrame::Header(_, header) => {
                let incoming = self.incoming.as_mut().ok_or_else(|| {
                    Failure::connection(UNEXPECTED_FRAME, "a content header without a publish")
                })?;
                match incoming.header(
                    header.body_size,
                    header.properties,
                    shared.config.max_message_bytes,
                ) {
                    Ok(Some(message)) => self.published(shared, message).await?,
                    Ok(None) => {}
                    Err(failure) => {
                        self.incoming = None;
                        return Err(failure);
                    }
                }
                Ok(true)
            }
            AMQPFrame::Body(_, bytes) => {
                let incoming = self.incoming.as_mut().ok_or_else(|| {
                    Failure::connection(UNEXPECTED_FRAME, "a content body without a publish")
                })?;
                if let Some(message) = incoming.body(&bytes)? {
                    self.published(shared, message).await?;
                }
                Ok(true)
            }
            AMQPFrame::Method(_, class) => {
                if self.incoming.is_some() {
                    return Err(Failure::connection(
                        UNEXPECTED_FRAME,
                        "a method frame inside a publish's content",
                    ));
                }
                let (class_id, method_id) = (class.get_amqp_class_id(), class.get_amqp_method_id());
                // Every method but a publish sees the channel's earlier publishes done.
                if !matches!(class, AMQPClass::Basic(basic::AMQPMethod::Publish(_))) {
                    self.pipeline.drain().await?;
                }
                self.method(class, shared, connection)
                    .await
                    .map_err(|failure| {
                        if failure.class_id == 0 {
                            failure.on(class_id, method_id)
                        } else {
                            failure
                        }
                    })
            }
            other => Err(Failure::connection(
                UNEXPECTED_FRAME,
                format!("unexpected frame {other}"),
            )),
        }
    }

    async fn method(
        &mut self,
        class: AMQPClass,
        shared: &Arc<Shared>,
        connection: ConnectionId,
    ) -> Result<bool, Failure> {
        match class {
            AMQPClass::Channel(method) => match method {
                channel::AMQPMethod::Close(_) => {
                    // Nothing of the channel goes out after its close-ok.
                    self.teardown(shared).await;
                    self.reply(AMQPClass::Channel(channel::AMQPMethod::CloseOk(
                        channel::CloseOk {},
                    )))
                    .await;
                    Ok(false)
                }
                channel::AMQPMethod::CloseOk(_) => Ok(false),
                channel::AMQPMethod::Flow(flow) => {
                    self.deliveries.set_paused(!flow.active);
                    self.reply(AMQPClass::Channel(channel::AMQPMethod::FlowOk(
                        channel::FlowOk {
                            active: flow.active,
                        },
                    )))
                    .await;
                    Ok(true)
                }
                other => Err(Failure::connection(
                    COMMAND_INVALID,
                    format!("channel method {other:?} is not allowed here"),
                )),
            },
            AMQPClass::Exchange(method) => self.exchange(method, shared).await.map(|()| true),
            AMQPClass::Queue(method) => self.queue(method, shared, connection).await.map(|()| true),
            AMQPClass::Basic(method) => self.basic(method, shared, connection).await.map(|()| true),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(select)) => {
                self.confirm.get_or_insert(0);
                if !select.nowait {
                    self.reply(AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(
                        confirm::SelectOk {},
                    )))
                    .await;
                }
                Ok(true)
            }
            AMQPClass::Tx(_) => Err(Failure::channel(
                NOT_IMPLEMENTED,
                "transactions (tx.*) are not supported; use publisher confirms",
            )),
            AMQPClass::Access(_) => Err(Failure::channel(
                NOT_IMPLEMENTED,
                "access.request is deprecated and not supported",
            )),
            other => Err(Failure::connection(
                COMMAND_INVALID,
                format!("method {other:?} is not allowed from a client"),
            )),
        }
    }

    async fn exchange(
        &mut self,
        method: exchange::AMQPMethod,
        shared: &Arc<Shared>,
    ) -> Result<(), Failure> {
        let broker = &shared.broker;
        match method {
            exchange::AMQPMethod::Declare(d) => {
                if !d.passive && broker.exchange(d.exchange.as_str()).is_none() {
                    authorize(
                        shared,
                        &self.caller,
                        "exchange.declare",
                        QueueAccess::CreateExchange(d.exchange.as_str()),
                    )?;
                }
                let kind: ExchangeKind = d.kind.as_str().parse().map_err(|_| {
                    Failure::connection(
                        COMMAND_INVALID,
                        format!("unknown exchange type '{}'", d.kind),
                    )
                })?;
                let spec = sluice_broker::ExchangeSpec {
                    name: d.exchange.to_string(),
                    kind,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: arguments(&d.arguments),
                };
                broker
                    .declare_exchange(spec, d.passive)
                    .await
                    .map_err(|err| not_found(err, "exchange", d.exchange.as_str()))?;
                if !d.nowait {
                    self.reply(AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                        exchange::DeclareOk {},
                    )))
                    .await;
                }
            }
            exchange::AMQPMethod::Delete(d) => {
                authorize(
                    shared,
                    &self.caller,
                    "exchange.delete",
                    QueueAccess::DeleteExchange(d.exchange.as_str()),
                )?;
                broker
                    .delete_exchange(d.exchange.as_str(), d.if_unused)
                    .await
                    .map_err(|err| not_found(err, "exchange", d.exchange.as_str()))?;
                if !d.nowait {
                    self.reply(AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(
                        exchange::DeleteOk {},
                    )))
                    .await;
                }
            }
            exchange::AMQPMethod::Bind(_) | exchange::AMQPMethod::Unbind(_) => {
                return Err(Failure::channel(
                    NOT_IMPLEMENTED,
                    "exchange-to-exchange bindings are not supported; bind queues",
                ));
            }
            other => {
                return Err(Failure::connection(
                    COMMAND_INVALID,
                    format!("exchange method {other:?} is not allowed from a client"),
                ));
            }
        }
        Ok(())
    }

    async fn queue(
        &mut self,
        method: queue::AMQPMethod,
        shared: &Arc<Shared>,
        connection: ConnectionId,
    ) -> Result<(), Failure> {
        let broker = &shared.broker;
        match method {
            queue::AMQPMethod::Declare(d) => {
                let name = if d.queue.as_str().is_empty() {
                    if d.passive {
                        return Err(Failure::channel(NOT_FOUND, "no queue '' in vhost '/'"));
                    }
                    format!("amq.gen-{}", uuid::Uuid::new_v4().simple())
                } else {
                    d.queue.to_string()
                };
                let access = if d.passive || broker.queue_definition(&name).is_some() {
                    QueueAccess::DescribeQueue(&name)
                } else {
                    QueueAccess::CreateQueue(&name)
                };
                authorize(shared, &self.caller, "queue.declare", access)?;
                if let QueueAccess::CreateQueue(_) = access {
                    let rules = QueueRules::of(&name, &arguments(&d.arguments));
                    if let Some(target) = rules.dead_letter_target() {
                        let access = QueueAccess::DeadLetterTo(target);
                        authorize(shared, &self.caller, "queue.declare", access)?;
                    }
                }
                if shared.registry.access(&name, connection) == Access::Locked {
                    return Err(locked(&name));
                }
                let status = if d.passive {
                    broker
                        .queue_status(&name)
                        .map_err(|err| not_found(err, "queue", &name))?
                } else {
                    if name.starts_with("amq.") && !d.queue.as_str().is_empty() {
                        return Err(Failure::channel(
                            ACCESS_REFUSED,
                            format!("queue name '{name}' contains reserved prefix 'amq.*'"),
                        ));
                    }
                    let spec = QueueSpec {
                        name: name.clone(),
                        durable: d.durable,
                        exclusive: d.exclusive,
                        auto_delete: d.auto_delete,
                        arguments: arguments(&d.arguments),
                    };
                    let status = broker.declare_queue(spec).await.map_err(Failure::from)?;
                    if d.exclusive {
                        shared.registry.own(&name, connection);
                    }
                    status
                };
                if !d.nowait {
                    self.reply(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(
                        queue::DeclareOk {
                            queue: short(&name),
                            message_count: u32::try_from(status.messages).unwrap_or(u32::MAX),
                            consumer_count: u32::try_from(shared.registry.consumers(&name))
                                .unwrap_or(u32::MAX),
                        },
                    )))
                    .await;
                }
            }
            queue::AMQPMethod::Bind(b) => {
                let access = QueueAccess::BindQueue(b.queue.as_str());
                authorize(shared, &self.caller, "queue.bind", access)?;
                self.check_access(shared, b.queue.as_str(), connection)?;
                let binding = BindingSpec {
                    exchange: b.exchange.to_string(),
                    queue: b.queue.to_string(),
                    routing_key: b.routing_key.to_string(),
                    arguments: arguments(&b.arguments),
                };
                broker.bind_queue(binding).await.map_err(Failure::from)?;
                if !b.nowait {
                    self.reply(AMQPClass::Queue(queue::AMQPMethod::BindOk(
                        queue::BindOk {},
                    )))
                    .await;
                }
            }
            queue::AMQPMethod::Unbind(u) => {
                let access = QueueAccess::BindQueue(u.queue.as_str());
                authorize(shared, &self.caller, "queue.unbind", access)?;
                self.check_access(shared, u.queue.as_str(), connection)?;
                let binding = BindingSpec {
                    exchange: u.exchange.to_string(),
                    queue: u.queue.to_string(),
                    routing_key: u.routing_key.to_string(),
                    arguments: arguments(&u.arguments),
                };
                broker.unbind_queue(&binding).await.map_err(Failure::from)?;
                self.reply(AMQPClass::Queue(queue::AMQPMethod::UnbindOk(
                    queue::UnbindOk {},
                )))
                .await;
            }
            queue::AMQPMethod::Purge(p) => {
                let access = QueueAccess::PurgeQueue(p.queue.as_str());
                authorize(shared, &self.caller, "queue.purge", access)?;
                self.check_access(shared, p.queue.as_str(), connection)?;
                let purged = broker
                    .purge_queue(p.queue.as_str())
                    .await
                    .map_err(|err| not_found(err, "queue", p.queue.as_str()))?;
                if !p.nowait {
                    self.reply(AMQPClass::Queue(queue::AMQPMethod::PurgeOk(
                        queue::PurgeOk {
                            message_count: u32::try_from(purged).unwrap_or(u32::MAX),
                        },
                    )))
                    .await;
                }
            }
            queue::AMQPMethod::Delete(d) => {
                let name = d.queue.to_string();
                authorize(
                    shared,
                    &self.caller,
                    "queue.delete",
                    QueueAccess::DeleteQueue(&name),
                )?;
                self.check_access(shared, &name, connection)?;
                if d.if_unused && shared.registry.consumers(&name) > 0 {
                    return Err(Failure::channel(
                        PRECONDITION_FAILED,
                        format!("queue '{name}' in vhost '/' in use"),
                    ));
                }
                self.drop_consumers_of(shared, &name).await;
                // Deleting a queue that does not exist succeeds, as in RabbitMQ.
                let deleted = match broker.delete_queue(&name, d.if_empty).await {
                    Ok(deleted) => deleted,
                    Err(sluice_broker::BrokerError::QueueNotFound { .. }) => 0,
                    Err(err) => return Err(Failure::from(err)),
                };
                shared.registry.forget(&name);
                if !d.nowait {
                    self.reply(AMQPClass::Queue(queue::AMQPMethod::DeleteOk(
                        queue::DeleteOk {
                            message_count: u32::try_from(deleted).unwrap_or(u32::MAX),
                        },
                    )))
                    .await;
                }
            }
            other => {
                return Err(Failure::connection(
                    COMMAND_INVALID,
                    format!("queue method {other:?} is not allowed from a client"),
                ));
            }
        }
        Ok(())
    }

    fn check_access(
        &self,
        shared: &Arc<Shared>,
        queue: &str,
        connection: ConnectionId,
    ) -> Result<(), Failure> {
        match shared.registry.access(queue, connection) {
            Access::Allowed => Ok(()),
            Access::Locked => Err(locked(queue)),
        }
    }

    /// Stops this channel's consumers of `queue` (about to be deleted) and gives back its
    /// unacknowledged deliveries of that queue.
    async fn drop_consumers_of(&mut self, shared: &Arc<Shared>, queue: &str) {
        let tags: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.queue == queue)
            .map(|(t, _)| t.clone())
            .collect();
        for tag in tags {
            if let Some(consumer) = self.consumers.remove(&tag) {
                consumer.stop().await;
                shared.registry.consumer_removed(queue);
            }
        }
        let unacked = self.deliveries.take_all(Some(queue));
        let _ = deliver::settle(shared, &self.deliveries, unacked, Settle::Requeue).await;
    }

    async fn basic(
        &mut self,
        method: basic::AMQPMethod,
        shared: &Arc<Shared>,
        connection: ConnectionId,
    ) -> Result<(), Failure> {
        match method {
            basic::AMQPMethod::Qos(q) => {
                if q.global {
                    self.deliveries.set_prefetch(q.prefetch_count);
                } else {
                    self.consumer_prefetch = q.prefetch_count;
                }
                self.reply(AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})))
                    .await;
            }
            basic::AMQPMethod::Publish(p) => {
                if p.immediate {
                    return Err(Failure::connection(
                        NOT_IMPLEMENTED,
                        "immediate=true is not supported (RabbitMQ dropped it too)",
                    ));
                }
                self.incoming = Some(Incoming::new(p));
            }
            basic::AMQPMethod::Consume(c) => self.consume(c, shared, connection).await?,
            basic::AMQPMethod::Cancel(c) => {
                if let Some(consumer) = self.consumers.remove(c.consumer_tag.as_str()) {
                    let queue = consumer.queue.clone();
                    consumer.stop().await;
                    // The last consumer of an auto-delete queue takes the queue with it:
                    // what the channel holds of it goes back first.
                    let last = shared.registry.consumers(&queue) == 1
                        && shared
                            .broker
                            .queue_definition(&queue)
                            .is_some_and(|q| q.auto_delete);
                    if last {
                        let unacked = self.deliveries.take_all(Some(&queue));
                        deliver::settle(shared, &self.deliveries, unacked, Settle::Requeue).await?;
                    }
                    consumer_gone(shared, &queue).await;
                }
                if !c.nowait {
                    self.reply(AMQPClass::Basic(basic::AMQPMethod::CancelOk(
                        basic::CancelOk {
                            consumer_tag: c.consumer_tag,
                        },
                    )))
                    .await;
                }
            }
            basic::AMQPMethod::Get(g) => self.get(g, shared, connection).await?,
            basic::AMQPMethod::Ack(a) => {
                let taken = self.deliveries.take(a.delivery_tag, a.multiple)?;
                deliver::settle(shared, &self.deliveries, taken, Settle::Accept).await?;
            }
            basic::AMQPMethod::Nack(n) => {
                let taken = self.deliveries.take(n.delivery_tag, n.multiple)?;
                let how = if n.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                deliver::settle(shared, &self.deliveries, taken, how).await?;
            }
            basic::AMQPMethod::Reject(r) => {
                let taken = self.deliveries.take(r.delivery_tag, false)?;
                let how = if r.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                deliver::settle(shared, &self.deliveries, taken, how).await?;
            }
            basic::AMQPMethod::Recover(basic::Recover { .. }) => {
                let unacked = self.deliveries.take_all(None);
                deliver::settle(shared, &self.deliveries, unacked, Settle::Requeue).await?;
                self.reply(AMQPClass::Basic(basic::AMQPMethod::RecoverOk(
                    basic::RecoverOk {},
                )))
                .await;
            }
            basic::AMQPMethod::RecoverAsync(_) => {
                let unacked = self.deliveries.take_all(None);
                deliver::settle(shared, &self.deliveries, unacked, Settle::Requeue).await?;
            }
            other => {
                return Err(Failure::connection(
                    COMMAND_INVALID,
                    format!("basic method {other:?} is not allowed from a client"),
                ));
            }
        }
        Ok(())
    }

    /// A whole message arrived: routed, stored, confirmed, or returned when mandatory and
    /// unroutable.
    async fn published(
        &mut self,
        shared: &Arc<Shared>,
        message: crate::properties::Message,
    ) -> Result<(), Failure> {
        let Some(incoming) = self.incoming.take() else {
            return Ok(());
        };
        let routed = publish::route(shared, &message)?;
        for queue in routed.queues() {
            authorize(
                shared,
                &self.caller,
                "basic.publish",
                QueueAccess::PublishTo(queue),
            )
            .map_err(|failure| failure.on(60, 40))?;
        }
        if routed.stored() == 0 && routed.refused == 0 && incoming.publish.mandatory {
            let method = basic::AMQPMethod::Return(basic::Return {
                reply_code: NO_ROUTE,
                reply_text: ShortString::from("NO_ROUTE"),
                exchange: incoming.publish.exchange.clone(),
                routing_key: incoming.publish.routing_key.clone(),
            });
            let frames = deliver::content_frames(self.id, method, &message, self.tuned.frame_max);
            let _ = self.out.send(frames).await;
        }
        let confirm = self.confirm.as_mut().map(|sequence| {
            *sequence += 1;
            *sequence
        });
        self.pipeline.push(routed, confirm).await;
        // Over the produce quota: the connection is not read further until the delay is
        // over.
        hold_back(shared, &self.caller, QuotaKind::Produce, message.body.len()).await;
        Ok(())
    }

    async fn consume(
        &mut self,
        c: basic::Consume,
        shared: &Arc<Shared>,
        connection: ConnectionId,
    ) -> Result<(), Failure> {
        let queue = c.queue.to_string();
        let grant = consumer_grant(shared, &self.caller, "basic.consume", &queue)?;
        self.check_access(shared, &queue, connection)?;
        let definition = shared.broker.queue_definition(&queue).ok_or_else(|| {
            Failure::channel(NOT_FOUND, format!("no queue '{queue}' in vhost '/'"))
        })?;
        let tag = if c.consumer_tag.as_str().is_empty() {
            self.next_consumer += 1;
            format!(
                "amq.ctag-{}-{}",
                uuid::Uuid::new_v4().simple(),
                self.next_consumer
            )
        } else {
            c.consumer_tag.to_string()
        };
        if self.consumers.contains_key(&tag) {
            return Err(Failure::connection(
                crate::reply::NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        if c.exclusive && shared.registry.consumers(&queue) > 0 {
            return Err(Failure::channel(
                ACCESS_REFUSED,
                format!("queue '{queue}' in vhost '/' has consumers: cannot consume exclusively"),
            ));
        }
        let member = self.join(shared, &queue, self.consumer_prefetch).await?;
        if !c.nowait {
            self.reply(AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(
                basic::ConsumeOk {
                    consumer_tag: short(&tag),
                },
            )))
            .await;
        }
        shared.registry.consumer_added(&queue);
        let spec = ConsumerSpec {
            channel: self.id,
            tag: tag.clone(),
            no_ack: c.no_ack,
            rules: Arc::new(QueueRules::of(&queue, &definition.arguments)),
            frame_max: self.tuned.frame_max,
            grant,
        };
        let task = tokio::spawn(deliver::run_consumer(
            Arc::clone(shared),
            spec,
            member,
            Arc::clone(&self.deliveries),
            self.out.clone(),
        ));
        self.consumers.insert(tag, Consumer { queue, task });
        Ok(())
    }

    /// A member of `queue`'s share group holding at most `prefetch` records (0: the most
    /// the broker allows).
    async fn join(
        &self,
        shared: &Arc<Shared>,
        queue: &str,
        prefetch: u16,
    ) -> Result<Arc<ShareMember>, Failure> {
        let max = shared.broker.share_config().max_prefetch;
        let prefetch = match u32::from(prefetch) {
            0 => max,
            n => n.min(max),
        };
        let member = shared
            .broker
            .share_join(ShareJoin {
                group: queue.to_owned(),
                topics: vec![queue.to_owned()],
                prefetch,
                settings: None,
            })
            .await
            .map_err(Failure::from)?;
        Ok(Arc::new(member))
    }

    async fn get(
        &mut self,
        g: basic::Get,
        shared: &Arc<Shared>,
        connection: ConnectionId,
    ) -> Result<(), Failure> {
        let queue = g.queue.to_string();
        authorize(
            shared,
            &self.caller,
            "basic.get",
            QueueAccess::ConsumeQueue(&queue),
        )?;
        self.check_access(shared, &queue, connection)?;
        let definition = shared.broker.queue_definition(&queue).ok_or_else(|| {
            Failure::channel(NOT_FOUND, format!("no queue '{queue}' in vhost '/'"))
        })?;
        // A member of its own, alive while its delivery is unacknowledged.
        let member = self.join(shared, &queue, 1).await?;
        let rules = Arc::new(QueueRules::of(&queue, &definition.arguments));
        match deliver::get_one(shared, &member, &rules, &self.deliveries, g.no_ack).await? {
            Some((delivery_tag, redelivered, message)) => {
                let remaining = shared.broker.queue_status(&queue).map_or(0, |s| s.messages);
                let method = basic::AMQPMethod::GetOk(basic::GetOk {
                    delivery_tag,
                    redelivered,
                    exchange: short(&message.exchange),
                    routing_key: short(&message.routing_key),
                    message_count: u32::try_from(remaining).unwrap_or(u32::MAX),
                });
                let frames =
                    deliver::content_frames(self.id, method, &message, self.tuned.frame_max);
                let _ = self.out.send(frames).await;
                hold_back(shared, &self.caller, QuotaKind::Fetch, message.body.len()).await;
            }
            None => {
                self.reply(AMQPClass::Basic(basic::AMQPMethod::GetEmpty(
                    basic::GetEmpty {},
                )))
                .await
            }
        }
        Ok(())
    }
}

/// A consumer of `queue` went; the queue goes too when it is auto-delete and that was its
/// last consumer.
async fn consumer_gone(shared: &Arc<Shared>, queue: &str) {
    if shared.registry.consumer_removed(queue)
        && shared
            .broker
            .queue_definition(queue)
            .is_some_and(|q| q.auto_delete)
    {
        if let Err(err) = shared.broker.delete_queue(queue, false).await {
            tracing::warn!(queue, error = %err, "deleting an auto-delete queue failed");
        }
        shared.registry.forget(queue);
    }
}

fn locked(queue: &str) -> Failure {
    Failure::channel(
        RESOURCE_LOCKED,
        format!(
            "cannot obtain exclusive access to locked queue '{queue}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
        ),
    )
}

/// A broker error, with RabbitMQ's wording when the exchange or queue does not exist.
fn not_found(err: sluice_broker::BrokerError, what: &str, name: &str) -> Failure {
    let failure = Failure::from(err);
    if failure.code == NOT_FOUND {
        Failure::channel(NOT_FOUND, format!("no {what} '{name}' in vhost '/'"))
    } else {
        failure
    }
}
