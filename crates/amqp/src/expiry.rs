//! Queue TTL without readers: a queue with `x-message-ttl` whose oldest waiting message is
//! past it has its expired head dead-lettered (or dropped), as RabbitMQ does, so a delay
//! queue (TTL plus dead-letter exchange, no consumer) delivers its messages on time.

use std::sync::Arc;
use std::time::Duration;

use sluice_broker::{Ack, AckKind, ShareJoin};

use crate::connection::Shared;
use crate::deliver::{self, QueueRules};

/// How often queues are looked at.
const SWEEP: Duration = Duration::from_millis(250);

/// Expires the heads of the queues with a TTL until the broker drains.
pub(crate) async fn run(shared: Arc<Shared>) {
    let draining = shared.broker.draining();
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = draining.wait() => return,
        }
        for spec in shared.broker.queue_definitions() {
            let rules = QueueRules::of(&spec.name, &spec.arguments);
            if let Some(ttl) = rules.message_ttl {
                expire_head(&shared, &rules, ttl).await;
            }
        }
    }
}

/// Dead-letters the expired messages at the head of one queue.
async fn expire_head(shared: &Shared, rules: &QueueRules, ttl: u64) {
    let broker = &shared.broker;
    let Ok(described) = broker.describe_share_group(&rules.name) else {
        return;
    };
    let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
    let due = described
        .partitions
        .iter()
        .filter_map(|p| p.oldest_waiting_timestamp_ms)
        .any(|oldest| oldest.saturating_add(ttl) <= deliver::now_ms());
    if !due {
        return;
    }
    let joined = broker
        .share_join(ShareJoin {
            group: rules.name.clone(),
            topics: vec![rules.name.clone()],
            prefetch: 1,
            settings: None,
        })
        .await;
    let Ok(member) = joined else {
        return;
    };
    // One at a time, oldest first, until one has not expired (given back as it was).
    while let Ok(mut records) = member.acquire(1, Duration::ZERO).await {
        let Some(record) = records.pop() else {
            return;
        };
        let kind = if !deliver::expired(rules, &record.record) {
            AckKind::Release
        } else if deliver::dead_letter(shared, rules, &record.record, "expired")
            .await
            .is_ok()
        {
            AckKind::Accept
        } else {
            AckKind::Release
        };
        let ack = Ack {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            kind,
        };
        if member.acknowledge(vec![ack]).await.is_err() || kind == AckKind::Release {
            return;
        }
    }
}
