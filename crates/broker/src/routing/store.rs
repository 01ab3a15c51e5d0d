//! The broker's routing state in memory and its journal under `data_dir/routing`.
//!
//! A change is checked and applied to the live state under its write lock, and its
//! durable part queued for the journal under the same lock, so the journal holds the
//! changes in the order they were applied; the caller then waits, holding no lock, until
//! every record queued up to its own is written and fsynced (changes queued meanwhile by
//! other callers share the write). A call that changes nothing waits the same way for the
//! records queued before it, so what it saw is durable when it returns.
//!
//! The live state runs ahead of the disk until the write is done. Should a write fail, its
//! callers get the error, and every later change is refused until the broker restarts and
//! reloads what the disk holds: the live state may hold changes the journal lacks.
//!
//! Lock order: the state's `RwLock`, then (a leaf) the journal's queue. The progress
//! channel's lock is a leaf taken alone. None is held across I/O or an `.await`; routing
//! takes no other broker lock.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::BrokerError;
use crate::journal::log::{CompactionPolicy, JournalLog};
use crate::journal::queue::Outcome;
use crate::journal::writer::JournalWriter;
use crate::routing::record::Change;
use crate::routing::state::RoutingState;

/// Directory of the routing journal, under the data directory.
const ROUTING_DIR: &str = "routing";

/// When the routing journal is compacted: past 1 MiB and four times the live state.
const COMPACTION: CompactionPolicy = CompactionPolicy {
    min_bytes: 1 << 20,
    ratio: 4,
};

/// The live state and how many records were queued for the journal so far.
#[derive(Debug)]
struct Live {
    state: RoutingState,
    /// Invariant: `Progress::written <= queued`.
    queued: u64,
}

/// How far the journal's writes got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Records written and fsynced, in queue order.
    written: u64,
    /// The first failed write, after which changes are refused.
    failed: Option<Arc<BrokerError>>,
}

/// The routing state of a broker.
#[derive(Debug)]
pub(crate) struct RoutingStore {
    live: RwLock<Live>,
    journal: JournalWriter<RoutingState, ()>,
    progress: watch::Sender<Progress>,
    /// Transient (or exclusive) queues the last run left: defined no more, their topic
    /// and share group to be dropped ([`crate::Broker::drop_stale_queue`]).
    pub(crate) stale: parking_lot::Mutex<std::collections::BTreeSet<String>>,
}

/// The changes of one operation, applied as they are made.
#[derive(Debug)]
pub(crate) struct Changes<'a> {
    state: &'a mut RoutingState,
    journaled: Vec<Change>,
}

impl Changes<'_> {
    /// The live state, with the changes made so far.
    pub(crate) fn state(&self) -> &RoutingState {
        self.state
    }

    /// Applies `change`, journaling it when it concerns something durable.
    pub(crate) fn apply(&mut self, change: Change) {
        let durable = self.state.is_durable_change(&change);
        self.state.apply(&change);
        if durable {
            self.journaled.push(change);
        }
    }
}

impl RoutingStore {
    /// Loads the routing state from `data_dir/routing`: the durable exchanges, queue
    /// definitions and bindings. Blocking.
    pub(crate) fn open(data_dir: &Path) -> Result<Arc<RoutingStore>, BrokerError> {
        let (log, state) =
            JournalLog::<RoutingState>::open(&data_dir.join(ROUTING_DIR), COMPACTION)?;
        tracing::debug!(queues = state.queues().count(), "loaded routing state");
        let stale = state
            .queues()
            .filter(|q| !q.durable || q.exclusive)
            .map(|q| q.name.clone())
            .collect();
        Ok(Arc::new(RoutingStore {
            live: RwLock::new(Live { state, queued: 0 }),
            journal: JournalWriter::new(log),
            progress: watch::Sender::new(Progress::default()),
            stale: parking_lot::Mutex::new(stale),
        }))
    }

    /// Runs `f` on the live state, under its read lock.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&RoutingState) -> R) -> R {
        f(&self.live.read().state)
    }

    /// Runs `decide` on the live state under its write lock: it checks the request, failing
    /// before its first change, then applies its changes. Returns once they (and every
    /// change before them) are durable. Must be called inside a tokio runtime.
    pub(crate) async fn change<R>(
        self: &Arc<Self>,
        decide: impl FnOnce(&mut Changes<'_>) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        if let Some(failed) = &self.progress.borrow().failed {
            return Err(write_failed(failed));
        }
        let (result, target, start) = {
            let mut live = self.live.write();
            let mut changes = Changes {
                state: &mut live.state,
                journaled: Vec::new(),
            };
            let result = decide(&mut changes)?;
            let records = changes.journaled;
            live.queued += records.len() as u64;
            let start = self.journal.push_all((), records);
            (result, live.queued, start)
        };
        if start {
            let store = Arc::clone(self);
            tokio::spawn(async move {
                store
                    .journal
                    .write_queued(|batch, outcome| store.written(batch.len(), outcome))
                    .await;
            });
        }
        let mut progress = self.progress.subscribe();
        let settled = progress
            .wait_for(|p| p.written >= target || p.failed.is_some())
            .await
            .map_err(|_| BrokerError::ShuttingDown)?;
        match &settled.failed {
            Some(failed) if settled.written < target => Err(write_failed(failed)),
            _ => Ok(result),
        }
    }

    /// Takes note of a write of `records` records and how it went.
    fn written(&self, records: usize, outcome: &Outcome) {
        self.progress.send_modify(|progress| match outcome {
            // Once a write failed, the count stops: a waiter of the failed write must not
            // take later writes for its own.
            Ok(()) if progress.failed.is_none() => progress.written += records as u64,
            Ok(()) => {}
            Err(e) => {
                progress.failed.get_or_insert_with(|| Arc::clone(e));
            }
        });
    }
}

fn write_failed(source: &Arc<BrokerError>) -> BrokerError {
    BrokerError::RoutingWriteFailed {
        source: Arc::clone(source),
    }
}
