//! The registry of share groups, their journal under `data_dir/share`, and the background
//! sweep that expires locks and retries dead letters.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::journal::log::{CompactionPolicy, JournalLog};
use crate::journal::queue::Durable;
use crate::journal::writer::JournalWriter;
use crate::share::ShareConfig;
use crate::share::group::{GroupState, ShareGroup};
use crate::share::partition::{Rules, SharePartition};
use crate::share::state_log::ShareState;
use crate::share::state_record::{Change, Outcome, StateRecord, runs};
use crate::{Broker, BrokerError};

/// Directory of the share state journal, under the data directory.
const SHARE_DIR: &str = "share";
/// How often locks are checked for expiry and waiting dead letters retried.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Every share group of a broker.
///
/// Lock order: the registry, then a group's state, then (leaves) the broker's topic
/// registry and the journal's queue.
#[derive(Debug)]
pub(crate) struct ShareCoordinator {
    pub(crate) config: ShareConfig,
    groups: Mutex<BTreeMap<String, Arc<ShareGroup>>>,
    pub(super) journal: JournalWriter<ShareState, ()>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    next_member: AtomicU64,
}

impl ShareCoordinator {
    /// Loads every share group from `data_dir/share`: records in flight at the last stop
    /// are available again with their delivery counts. Blocking.
    pub(crate) fn open(
        data_dir: &Path,
        config: ShareConfig,
    ) -> Result<Arc<ShareCoordinator>, BrokerError> {
        config.validate()?;
        let policy = CompactionPolicy {
            min_bytes: config.state_compaction_min_bytes,
            ratio: config.state_compaction_ratio,
        };
        let (mut log, state) = JournalLog::<ShareState>::open(&data_dir.join(SHARE_DIR), policy)?;
        let mut groups = BTreeMap::new();
        let mut archived: Vec<StateRecord> = Vec::new();
        for (name, group) in state.groups() {
            let settings = group.settings.clone();
            let rules = Rules::of(&settings);
            let mut partitions: BTreeMap<Arc<str>, BTreeMap<u32, SharePartition>> = BTreeMap::new();
            for ((topic, partition), durable) in &group.partitions {
                let entries = durable
                    .offsets
                    .iter()
                    .map(|(offset, o)| (*offset, o.delivery_count, o.outcome));
                let (share, done) = SharePartition::restore(
                    durable.start,
                    durable.accepted,
                    durable.dead_lettered,
                    entries,
                    &rules,
                );
                if !done.is_empty() {
                    archived.push((
                        name.clone(),
                        Change::Acked {
                            topic: topic.clone(),
                            partition: *partition,
                            runs: runs(done.into_iter().map(|o| (o, Outcome::Archived))),
                        },
                    ));
                }
                partitions
                    .entry(Arc::from(topic.as_str()))
                    .or_default()
                    .insert(*partition, share);
            }
            let group = ShareGroup::new(name.clone(), GroupState::new(settings, partitions));
            groups.insert(name.clone(), Arc::new(group));
        }
        if !archived.is_empty() {
            log.append(&archived)?;
        }
        tracing::debug!(groups = groups.len(), "loaded share groups");
        Ok(Arc::new(ShareCoordinator {
            config,
            groups: Mutex::new(groups),
            journal: JournalWriter::new(log),
            ticker: Mutex::new(None),
            stopped: AtomicBool::new(false),
            next_member: AtomicU64::new(0),
        }))
    }

    pub(crate) fn check_running(&self) -> Result<(), BrokerError> {
        if self.stopped.load(Ordering::SeqCst) {
            Err(BrokerError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// A new member id, unique within this process.
    pub(crate) fn member_id(&self, group: &str) -> Arc<str> {
        let n = self.next_member.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{group}-{n}-{}", uuid::Uuid::new_v4().simple()))
    }

    /// The group `name`, if it exists.
    pub(crate) fn group(&self, name: &str) -> Option<Arc<ShareGroup>> {
        self.groups.lock().get(name).cloned()
    }

    /// Every group, by name.
    pub(crate) fn snapshot(&self) -> Vec<Arc<ShareGroup>> {
        self.groups.lock().values().cloned().collect()
    }

    /// Runs `f` with the registry locked.
    pub(crate) fn with_registry<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Arc<ShareGroup>>) -> R,
    ) -> R {
        f(&mut self.groups.lock())
    }

    /// Queues `records` for the journal (starting its writer if it does not run); the
    /// returned receivers resolve once they are durable. May be called with a group's
    /// state locked (outside a runtime it then writes, and fsyncs, under that lock).
    pub(crate) fn write(self: &Arc<Self>, records: Vec<StateRecord>) -> Vec<Durable> {
        let mut durables = Vec::with_capacity(records.len());
        let mut start = false;
        for record in records {
            let (durable, first) = self.journal.push((), record);
            start |= first;
            durables.push(durable);
        }
        if start {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let coordinator = Arc::clone(self);
                    runtime.spawn(async move { coordinator.journal.write_queued(|_, _| {}).await });
                }
                // Outside a runtime (a member dropped there): written on this thread.
                Err(_) => self.journal.write_queued_blocking(),
            }
        }
        durables
    }

    /// Starts the sweep task unless it runs. Call it inside a tokio runtime after adding a
    /// member; it stops by itself once no group needs sweeps.
    pub(crate) fn start_ticker(self: &Arc<Self>, broker: &Arc<Broker>) {
        let mut ticker = self.ticker.lock();
        if ticker.is_none() && !self.stopped.load(Ordering::SeqCst) {
            *ticker = Some(tokio::spawn(tick_loop(
                Arc::downgrade(self),
                Arc::downgrade(broker),
            )));
        }
    }

    fn keep_ticking(&self) -> bool {
        let mut ticker = self.ticker.lock();
        let needed = !self.stopped.load(Ordering::SeqCst)
            && self
                .snapshot()
                .iter()
                .any(|group| group.state.lock().needs_sweeps());
        if !needed {
            *ticker = None;
        }
        needed
    }

    /// Stops the sweep; later share operations fail with [`BrokerError::ShuttingDown`] and
    /// waiting members are woken.
    pub(crate) fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(ticker) = self.ticker.lock().take() {
            ticker.abort();
        }
        for group in self.snapshot() {
            group.wake.notify_waiters();
        }
    }
}

/// Waits for every record of a write to be durable.
pub(crate) async fn wait_durable(group: &str, durables: Vec<Durable>) -> Result<(), BrokerError> {
    for durable in durables {
        match durable.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(BrokerError::CommitFailed {
                    group: group.to_owned(),
                    source,
                });
            }
            Err(_) => return Err(BrokerError::ShuttingDown),
        }
    }
    Ok(())
}

/// Sweeps every group each [`TICK`] while some group needs it and the broker lives.
async fn tick_loop(coordinator: Weak<ShareCoordinator>, broker: Weak<Broker>) {
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
        let Some(broker) = broker.upgrade() else {
            return;
        };
        for group in coordinator.snapshot() {
            crate::share::dead_letter::sweep(&broker, &coordinator, &group, Instant::now(), None);
        }
    }
}
