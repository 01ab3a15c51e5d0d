//! Queues, as message-queue protocols (AMQP) know them: a topic of one partition read by
//! the share group of the same name, plus a definition in the routing state (durable,
//! exclusive, auto-delete, arguments). The queue's messages are the topic's records, so
//! every protocol reads and measures them; its length is what the share group has waiting.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::SHARE_RECLAIM_ENABLE;
use crate::share::{ShareGroupSettings, ShareJoin, ShareOffsetReset};
use crate::{AckKind, Broker, BrokerError, QueueSpec};

/// A queue's definition and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// Its definition.
    pub spec: QueueSpec,
    /// Messages waiting (not delivered, or released and not delivered again).
    pub messages: u64,
}

impl Broker {
    /// Declares a queue: defines it (an equal definition is a no-op, a different one
    /// fails naming the field), creates its topic (one partition, `share.reclaim.enable`
    /// set, so acknowledged messages free their space) unless it exists, and
    /// the share group reading it, which starts at the topic's start when this created
    /// the topic (else at its end, as a new share group does), so every message published
    /// from now on waits for the queue's consumers. Its records are not subject to
    /// retention. A delivery stays with its consumer for `share.max_record_lock_duration`
    /// at most; a message is delivered at most `share.max_delivery_attempt_limit` times
    /// (or `x-delivery-limit` + 1), then dropped.
    pub async fn declare_queue(&self, spec: QueueSpec) -> Result<QueueStatus, BrokerError> {
        self.drop_stale_queue(&spec.name).await?;
        // The queue's space goes once its messages are acknowledged, and only then: no
        // retention deletes what waits.
        let config = BTreeMap::from([
            (SHARE_RECLAIM_ENABLE.to_owned(), "true".to_owned()),
            ("retention.ms".to_owned(), "-1".to_owned()),
            ("retention.bytes".to_owned(), "-1".to_owned()),
        ]);
        let created = match self.create_topic(&spec.name, 1, &config).await {
            Ok(_) => true,
            Err(BrokerError::TopicExists { .. }) => false,
            Err(err) => return Err(err),
        };
        // A queue keeps a delivery as long as its consumer lives (up to the longest lock
        // allowed) and redelivers a message up to the most times allowed, or the queue's
        // `x-delivery-limit`, as a quorum queue does.
        let limits = &self.share.config;
        let delivery_attempt_limit = spec
            .arguments
            .get("x-delivery-limit")
            .and_then(|l| l.parse::<u32>().ok())
            .map_or(limits.max_delivery_attempt_limit, |l| {
                l.saturating_add(1)
                    .clamp(1, limits.max_delivery_attempt_limit)
            });
        let settings = created.then(|| ShareGroupSettings {
            auto_offset_reset: ShareOffsetReset::Earliest,
            record_lock_duration: limits.max_record_lock_duration,
            delivery_attempt_limit,
            ..limits.defaults.clone()
        });
        self.declare_share_group(&spec.name, std::slice::from_ref(&spec.name), settings)
            .await?;
        self.define_queue(spec.clone()).await?;
        Ok(QueueStatus {
            messages: self.share_waiting(&spec.name).unwrap_or(0),
            spec,
        })
    }

    /// What queue `name`'s `x-max-length` and `x-overflow` arguments say: the most messages
    /// it keeps waiting, and whether a full queue refuses publishes (`reject-publish`)
    /// rather than dropping its oldest; `None` without a limit. Reads the definition in
    /// place, without copying it (publishing asks for every message).
    pub fn queue_max_length(&self, name: &str) -> Option<(u64, bool)> {
        self.routing.read(|state| {
            let arguments = &state.queue(name)?.arguments;
            let max = arguments.get("x-max-length")?.parse().ok()?;
            let reject = arguments
                .get("x-overflow")
                .is_some_and(|o| o == "reject-publish");
            Some((max, reject))
        })
    }

    /// The definition and length of a declared queue.
    pub fn queue_status(&self, name: &str) -> Result<QueueStatus, BrokerError> {
        let spec = self
            .queue_definition(name)
            .ok_or_else(|| queue_not_found(name))?;
        Ok(QueueStatus {
            messages: self.share_waiting(name).unwrap_or(0),
            spec,
        })
    }

    /// Purges a declared queue: every waiting message goes (those delivered and not yet
    /// acknowledged stay). Returns how many went.
    pub async fn purge_queue(&self, name: &str) -> Result<u64, BrokerError> {
        self.queue_status(name)?;
        self.purge_share_group(name).await
    }

    /// Drops the `count` oldest waiting messages of a declared queue (the head, as a
    /// queue over its `x-max-length` does); returns how many went.
    pub async fn drop_queue_head(
        self: &Arc<Self>,
        name: &str,
        count: u32,
    ) -> Result<u64, BrokerError> {
        if count == 0 {
            return Ok(0);
        }
        let prefetch = count.min(self.share.config.max_prefetch);
        let member = self
            .share_join(ShareJoin {
                group: name.to_owned(),
                topics: vec![name.to_owned()],
                prefetch,
                settings: None,
            })
            .await?;
        let records = member.acquire(prefetch, std::time::Duration::ZERO).await?;
        let acks = records
            .iter()
            .map(|r| crate::Ack {
                topic: r.topic.to_string(),
                partition: r.partition,
                offset: r.offset,
                kind: AckKind::Accept,
            })
            .collect();
        member.acknowledge(acks).await?;
        Ok(records.len() as u64)
    }

    /// Deletes a declared queue: its definition and bindings, its share group and its
    /// topic. With `if_empty`, refuses while messages wait; refuses while the share group
    /// has members (consumers). Returns how many messages it held.
    pub async fn delete_queue(&self, name: &str, if_empty: bool) -> Result<u64, BrokerError> {
        let status = self.queue_status(name)?;
        if if_empty && status.messages > 0 {
            return Err(BrokerError::QueueNotEmpty {
                queue: name.to_owned(),
                messages: status.messages,
            });
        }
        if let Ok(described) = self.describe_share_group(name)
            && !described.members.is_empty()
        {
            return Err(BrokerError::ShareGroupHasMembers {
                group: name.to_owned(),
                members: described.members.len(),
            });
        }
        self.remove_queue(name).await?;
        Ok(status.messages)
    }

    /// Removes a queue's definition and bindings, share group and topic, whichever of them
    /// still exist.
    async fn remove_queue(&self, name: &str) -> Result<(), BrokerError> {
        match self.forget_queue(name).await {
            Ok(()) | Err(BrokerError::QueueNotFound { .. }) => {}
            Err(err) => return Err(err),
        }
        match self.delete_share_group(name).await {
            Ok(()) | Err(BrokerError::ShareGroupNotFound { .. }) => {}
            Err(err) => return Err(err),
        }
        match self.delete_topic(name).await {
            Ok(()) | Err(BrokerError::TopicNotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl Broker {
    /// Drops a transient (or exclusive) queue the last run left, unless done already: its
    /// definition, share group and topic, records and all, as RabbitMQ loses such a queue
    /// with the server.
    pub(crate) async fn drop_stale_queue(&self, name: &str) -> Result<(), BrokerError> {
        if !self.routing.stale.lock().remove(name) {
            return Ok(());
        }
        self.remove_queue(name).await?;
        tracing::info!(queue = name, "dropped a transient queue of the last run");
        Ok(())
    }

    /// Drops every transient queue the last run left (in the background, from
    /// [`Broker::start_background`]).
    pub(crate) async fn drop_stale_queues(&self) {
        let stale: Vec<String> = self.routing.stale.lock().iter().cloned().collect();
        for name in stale {
            if let Err(err) = self.drop_stale_queue(&name).await {
                tracing::warn!(queue = name, error = %err, "dropping a transient queue of the last run failed");
            }
        }
    }
}

fn queue_not_found(name: &str) -> BrokerError {
    BrokerError::QueueNotFound {
        queue: name.to_owned(),
    }
}
