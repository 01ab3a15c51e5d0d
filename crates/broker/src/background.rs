//! Periodic log maintenance: interval flushes, checkpoints (with the producer-state snapshots
//! of partitions that rolled) and retention (with the expiry of idle producers and, for
//! topics with `share.reclaim.enable`, the deletion of segments every share group is past).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use crate::Broker;
use crate::broker::{join, wall_clock_ms};
use crate::share::coordinator::ShareCoordinator;
use crate::topic::{Topic, TopicSettings};

/// How often every partition is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The broker's background tasks.
#[derive(Debug)]
pub(crate) struct Background {
    /// Set to `true` to stop every task; dropping it (with the broker) stops them too.
    stop: watch::Sender<bool>,
    /// `None` until started.
    tasks: Mutex<Option<Vec<JoinHandle<()>>>>,
}

impl Background {
    pub(crate) fn new() -> Background {
        Background {
            stop: watch::Sender::new(false),
            tasks: Mutex::new(None),
        }
    }

    /// Spawns the maintenance task and a flusher for every interval-flushed topic. Does
    /// nothing when already started or stopped.
    pub(crate) fn start(&self, broker: &Arc<Broker>) {
        let mut tasks = self.tasks.lock();
        if tasks.is_some() || *self.stop.borrow() {
            return;
        }
        let mut started = vec![tokio::spawn(maintain(
            Arc::downgrade(broker),
            self.stop.subscribe(),
            broker.config.retention_check_interval,
        ))];
        started.extend(
            broker
                .topics_snapshot()
                .iter()
                .filter_map(|topic| self.spawn_flusher(topic)),
        );
        *tasks = Some(started);
    }

    /// Spawns the flusher of a newly created topic, or of one whose config changed, if the
    /// tasks run and the topic needs one it does not have yet.
    pub(crate) fn watch_topic(&self, topic: &Arc<Topic>) {
        let mut tasks = self.tasks.lock();
        if let Some(tasks) = tasks.as_mut() {
            tasks.retain(|task| !task.is_finished());
            tasks.extend(self.spawn_flusher(topic));
        }
    }

    /// Stops every task and waits for it to finish its current step.
    pub(crate) async fn stop(&self) {
        self.stop.send_replace(true);
        let tasks = self.tasks.lock().take().unwrap_or_default();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "background task failed");
            }
        }
    }

    fn spawn_flusher(&self, topic: &Arc<Topic>) -> Option<JoinHandle<()>> {
        topic.settings().config.flush_interval()?;
        if topic.flusher_started.swap(true, Ordering::SeqCst) {
            return None;
        }
        Some(tokio::spawn(flush_topic(
            Arc::downgrade(topic),
            topic.watch_settings(),
            self.stop.subscribe(),
        )))
    }
}

/// Resolves once the broker stops or is dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Checkpoints every partition each second (writing the producer-state snapshot of those
/// whose log rolled since their last one) and enforces retention every `retention_every`
/// (forgetting producers idle past `producer.id.expiration.ms`, and reclaiming the space of
/// topics with `share.reclaim.enable`).
async fn maintain(
    broker: Weak<Broker>,
    mut stop: watch::Receiver<bool>,
    retention_every: Duration,
) {
    let mut checkpoint = interval_at(Instant::now() + CHECKPOINT_EVERY, CHECKPOINT_EVERY);
    let mut retention = interval_at(Instant::now() + retention_every, retention_every);
    checkpoint.set_missed_tick_behavior(MissedTickBehavior::Delay);
    retention.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let enforce_retention = tokio::select! {
            _ = checkpoint.tick() => false,
            _ = retention.tick() => true,
            () = stopped(&mut stop) => return,
        };
        let Some((topics, share)) = broker
            .upgrade()
            .map(|b| (b.topics_snapshot(), Arc::clone(&b.share)))
        else {
            return;
        };
        let step = tokio::task::spawn_blocking(move || {
            if enforce_retention {
                retain(&topics, &share, wall_clock_ms());
            } else {
                checkpoint_all(&topics);
            }
        });
        if join(step).await.is_err() {
            return;
        }
    }
}

/// Flushes a topic every `flush.ms` while its `flush.policy` is `interval`, following
/// changes of either: a new interval restarts the ticker, another policy parks the task
/// until the next change. Ends once the topic is deleted (or dropped) or the broker stops.
async fn flush_topic(
    topic: Weak<Topic>,
    mut settings: watch::Receiver<Arc<TopicSettings>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = settings.borrow_and_update().config.flush_interval();
    loop {
        let Some(period) = every else {
            tokio::select! {
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    every = settings.borrow_and_update().config.flush_interval();
                    continue;
                }
                () = stopped(&mut stop) => return,
            }
        };
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while every == Some(period) {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    every = settings.borrow_and_update().config.flush_interval();
                    continue;
                }
                () = stopped(&mut stop) => return,
            }
            let Some(target) = topic.upgrade().filter(|t| !t.is_deleted()) else {
                return;
            };
            if join(tokio::task::spawn_blocking(move || flush(&target)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn flush(topic: &Topic) {
    for partition in &topic.partitions {
        if let Some(log) = partition.opened()
            && let Err(e) = log.flush()
        {
            tracing::warn!(topic = topic.name(), partition = partition.id, error = %e, "flush failed");
        }
    }
}

fn checkpoint_all(topics: &[Arc<Topic>]) {
    for topic in topics.iter().filter(|t| !t.is_deleted()) {
        for partition in &topic.partitions {
            let Some(log) = partition.opened() else {
                continue;
            };
            if let Err(e) = log.checkpoint() {
                tracing::warn!(topic = topic.name(), partition = partition.id, error = %e, "checkpoint failed");
            }
            if let Err(e) = partition.producers().checkpoint(log) {
                tracing::warn!(topic = topic.name(), partition = partition.id, error = %e,
                    "writing the producer-state snapshot failed");
            }
        }
    }
}

/// One retention pass over every partition; for a topic with `share.reclaim.enable`, each
/// partition some share group reads also loses the segments wholly below the lowest start
/// offset of those groups.
fn retain(topics: &[Arc<Topic>], share: &ShareCoordinator, now_ms: i64) {
    for topic in topics.iter().filter(|t| !t.is_deleted()) {
        let floors = topic
            .settings()
            .config
            .share_reclaim
            .then(|| share.reclaim_floors(topic.name()));
        for partition in &topic.partitions {
            partition.producers().expire(now_ms);
            let Some(log) = partition.opened() else {
                continue;
            };
            if let Err(e) = log.enforce_retention(now_ms) {
                tracing::warn!(topic = topic.name(), partition = partition.id, error = %e, "retention failed");
            }
            if let Some(floor) = floors.as_ref().and_then(|f| f.get(&partition.id))
                && let Err(e) = log.delete_segments_below(*floor)
            {
                tracing::warn!(topic = topic.name(), partition = partition.id, error = %e,
                    "reclaiming the space share groups are done with failed");
            }
        }
    }
}
