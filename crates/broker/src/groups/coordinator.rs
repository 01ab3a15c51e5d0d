//! The registry of groups, the timer that expires members and revocations, and the writer
//! of the offsets log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::groups::GroupConfig;
use crate::groups::offsets_log;
use crate::groups::offsets_state::{LiveState, OffsetChange};
use crate::groups::state::{GroupData, MemberEnd};
use crate::journal::log::CompactionPolicy;
use crate::journal::queue::Durable;
use crate::journal::writer::JournalWriter;
use crate::{Broker, BrokerError};

/// Directory of the offsets log, under the data directory.
const GROUPS_DIR: &str = "groups";
/// How often session timeouts, revocation deadlines and topic changes are checked.
const TICK: Duration = Duration::from_millis(100);

/// One consumer group.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) data: Mutex<GroupData>,
}

/// Every consumer group of a broker.
///
/// Lock order: the registry, then a group's data. Whatever may turn a forgettable group
/// (no members, no offsets, no writes) into one worth keeping holds the registry lock while
/// it does, so a group is never forgotten under someone's feet.
#[derive(Debug)]
pub(crate) struct GroupCoordinator {
    /// Every group's committed offsets, on disk, and the changes waiting for its writer
    /// (queued while a group's data is locked).
    log: JournalWriter<LiveState, Arc<Group>>,
    pub(crate) config: GroupConfig,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
}

impl GroupCoordinator {
    /// Loads every group's committed offsets from `data_dir/groups`, dropping (and
    /// durably removing) offsets of topics for which `topic_exists` is false. Blocking.
    pub(crate) fn open(
        data_dir: &Path,
        config: GroupConfig,
        topic_exists: impl Fn(&str) -> bool,
    ) -> Result<Arc<GroupCoordinator>, BrokerError> {
        config.validate()?;
        let policy = CompactionPolicy {
            min_bytes: config.offsets_compaction_min_bytes,
            ratio: config.offsets_compaction_ratio,
        };
        let (mut log, state) = offsets_log::open(&data_dir.join(GROUPS_DIR), policy)?;
        let mut deleted: Vec<(String, OffsetChange)> = Vec::new();
        let mut groups = HashMap::new();
        for (name, mut offsets) in BTreeMap::from(state) {
            let topics: BTreeSet<String> = offsets.keys().map(|tp| tp.topic.clone()).collect();
            for topic in topics.into_iter().filter(|topic| !topic_exists(topic)) {
                tracing::info!(group = %name, topic = %topic, "dropping offsets of a deleted topic");
                let change = OffsetChange::RemoveTopic(topic);
                change.apply(&mut offsets);
                deleted.push((name.clone(), change));
            }
            if !offsets.is_empty() {
                let data = Mutex::new(GroupData::new(name.clone(), offsets));
                groups.insert(name.clone(), Arc::new(Group { name, data }));
            }
        }
        if !deleted.is_empty() {
            log.append(&deleted)?;
        }
        tracing::debug!(groups = groups.len(), "loaded consumer groups");
        Ok(Arc::new(GroupCoordinator {
            log: JournalWriter::new(log),
            config,
            groups: Mutex::new(groups),
            ticker: Mutex::new(None),
            stopped: AtomicBool::new(false),
        }))
    }

    pub(crate) fn check_running(&self) -> Result<(), BrokerError> {
        if self.stopped.load(Ordering::SeqCst) {
            Err(BrokerError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Runs `f` on a group's data, creating the group if it does not exist, with the
    /// registry locked; forgets the group afterwards if `f` left it forgettable.
    pub(crate) fn with_group<R>(
        &self,
        name: &str,
        f: impl FnOnce(&Arc<Group>, &mut GroupData) -> R,
    ) -> R {
        let mut groups = self.groups.lock();
        let group = Arc::clone(groups.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Group {
                name: name.to_owned(),
                data: Mutex::new(GroupData::new(name.to_owned(), Default::default())),
            })
        }));
        let mut data = group.data.lock();
        let result = f(&group, &mut data);
        if data.is_forgettable() {
            groups.remove(name);
        }
        result
    }

    /// A group that exists: it has members or committed offsets.
    pub(crate) fn existing(&self, name: &str) -> Option<Arc<Group>> {
        self.groups
            .lock()
            .get(name)
            .filter(|g| g.data.lock().exists())
            .cloned()
    }

    /// Every group, in no particular order.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Group>> {
        self.groups.lock().values().cloned().collect()
    }

    /// Forgets `group` if nothing is worth keeping in it any more.
    pub(crate) fn forget_if_empty(&self, group: &Arc<Group>) {
        let mut groups = self.groups.lock();
        if group.data.lock().is_forgettable()
            && groups
                .get(&group.name)
                .is_some_and(|g| Arc::ptr_eq(g, group))
        {
            groups.remove(&group.name);
        }
    }

    /// Starts the timer task unless it runs. Call it after adding a member, inside a tokio
    /// runtime: the timer stops by itself once no group has members.
    pub(crate) fn start_ticker(self: &Arc<Self>, broker: &Arc<Broker>) {
        let mut ticker = self.ticker.lock();
        if ticker.is_none() && !self.stopped.load(Ordering::SeqCst) {
            *ticker = Some(tokio::spawn(tick_loop(
                Arc::downgrade(self),
                Arc::downgrade(broker),
            )));
        }
    }

    /// Whether the timer should go on: while the coordinator runs and some group has
    /// members (or member ids handed out). When not, the timer is marked stopped, so the next join starts a new one.
    fn keep_ticking(&self) -> bool {
        let mut ticker = self.ticker.lock();
        let needed = !self.stopped.load(Ordering::SeqCst)
            && self
                .snapshot()
                .iter()
                .any(|group| group.data.lock().needs_ticks());
        if !needed {
            *ticker = None;
        }
        needed
    }

    /// The partition counts of every topic some member subscribes to.
    fn subscribed_topics(&self, broker: &Broker) -> BTreeMap<String, u32> {
        let mut topics = BTreeSet::new();
        for group in self.snapshot() {
            topics.extend(group.data.lock().subscribed_topics());
        }
        topics
            .into_iter()
            .filter_map(|topic| broker.partition_count(&topic).ok().map(|n| (topic, n)))
            .collect()
    }

    /// Expires members and revocations and notices topic changes, in every group;
    /// `topics` has the partition counts of the subscribed topics.
    fn tick(&self, topics: &BTreeMap<String, u32>) {
        let lookup = |topic: &str| topics.get(topic).copied();
        let now = Instant::now();
        for group in self.snapshot() {
            group.data.lock().tick(now, &lookup);
            self.forget_if_empty(&group);
        }
    }

    /// Queues a change of `group`'s offsets (whose data is `data`, locked by the caller),
    /// starting the writer when it does not run.
    pub(crate) fn queue_change(
        self: &Arc<Self>,
        group: &Arc<Group>,
        data: &mut GroupData,
        change: OffsetChange,
    ) -> Durable {
        data.store.queued();
        let record = (group.name.clone(), change);
        let (durable, start) = self.log.push(Arc::clone(group), record);
        if start {
            tokio::spawn(Arc::clone(self).write_offsets());
        }
        durable
    }

    /// Writes the queued changes of every group until none is left; each is applied to its
    /// group's durable offsets once the write carrying it is durable.
    async fn write_offsets(self: Arc<Self>) {
        self.log
            .write_queued(|changes, outcome| {
                for (group, (_, change)) in changes {
                    let mut data = group.data.lock();
                    if outcome.is_ok() {
                        change.apply(&mut data.offsets);
                    }
                    data.store.finished();
                }
                for (group, _) in changes {
                    self.forget_if_empty(group);
                }
            })
            .await;
    }

    /// Drops a deleted topic's offsets from every group (durably) and takes its partitions
    /// out of their assignments.
    pub(crate) async fn topic_deleted(
        self: &Arc<Self>,
        broker: &Broker,
        topic: &str,
    ) -> Result<(), BrokerError> {
        let topics = |name: &str| broker.partition_count(name).ok();
        let mut writes = Vec::new();
        for group in self.snapshot() {
            let mut data = group.data.lock();
            if data.offsets.keys().any(|tp| tp.topic == topic) || !data.store.is_idle() {
                let durable = self.queue_change(
                    &group,
                    &mut data,
                    OffsetChange::RemoveTopic(topic.to_owned()),
                );
                writes.push((Arc::clone(&group), durable));
            }
            data.tick(Instant::now(), &topics);
        }
        let mut result = Ok(());
        for (group, durable) in writes {
            let written = wait_durable(&group.name, durable).await;
            result = result.and(written);
            self.forget_if_empty(&group);
        }
        result
    }

    /// Stops the timer and ends every member's stream; later group operations fail with
    /// [`BrokerError::ShuttingDown`].
    pub(crate) fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(ticker) = self.ticker.lock().take() {
            ticker.abort();
        }
        for group in self.snapshot() {
            group.data.lock().end_all(MemberEnd::ShuttingDown);
        }
    }
}

/// Waits for a queued offsets change of `group` to be durable.
pub(crate) async fn wait_durable(group: &str, durable: Durable) -> Result<(), BrokerError> {
    match durable.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(BrokerError::CommitFailed {
            group: group.to_owned(),
            source,
        }),
        // The writer went away with the runtime.
        Err(_) => Err(BrokerError::ShuttingDown),
    }
}

/// Ticks the coordinator while some group has members and the broker lives. The broker is
/// held only while the topics are looked up.
async fn tick_loop(coordinator: Weak<GroupCoordinator>, broker: Weak<Broker>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(coordinator) = coordinator.upgrade() else {
            return;
        };
        if !coordinator.keep_ticking() {
            return;
        }
        let Some(topics) = broker
            .upgrade()
            .map(|broker| coordinator.subscribed_topics(&broker))
        else {
            return;
        };
        coordinator.tick(&topics);
    }
}
