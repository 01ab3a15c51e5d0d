//! A journal with its queue of changes: one write in flight at a time, the changes queued
//! meanwhile (from every group) written together by the next, each acknowledged once the
//! write carrying it is durable; a compaction started in the background when the files have
//! grown enough.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::BrokerError;
use crate::broker::join;
use crate::journal::Journaled;
use crate::journal::compaction::Compaction;
use crate::journal::log::JournalLog;
use crate::journal::queue::{Durable, Outcome, StoreQueue};

/// A journal of state `S` and its queue of records, each queued by a group `G`.
///
/// Lock order: the queue, or the log, never both; callers may hold their own locks while
/// queueing (the queue is a leaf), never while the log is written.
#[derive(Debug)]
pub(crate) struct JournalWriter<S: Journaled, G> {
    log: Arc<Mutex<JournalLog<S>>>,
    queue: Mutex<StoreQueue<G, S::Record>>,
}

impl<S: Journaled, G> JournalWriter<S, G> {
    /// A writer appending to `log`.
    pub(crate) fn new(log: JournalLog<S>) -> Self {
        JournalWriter {
            log: Arc::new(Mutex::new(log)),
            queue: Mutex::new(StoreQueue::default()),
        }
    }

    /// Queues `record` of `group`. Returns the receiver of its outcome, and `true` when the
    /// caller must run [`JournalWriter::write_queued`] (no write runs).
    pub(crate) fn push(&self, group: G, record: S::Record) -> (Durable, bool) {
        self.queue.lock().push(group, record)
    }

    /// Queues `records` of `group` at once, so that one write carries them all: they
    /// survive a crash together or not at all. Returns `true` when the caller must run
    /// [`JournalWriter::write_queued`]; their outcome reaches only its `written`.
    pub(crate) fn push_all(&self, group: G, records: Vec<S::Record>) -> bool
    where
        G: Clone,
    {
        let mut queue = self.queue.lock();
        records.into_iter().fold(false, |start, record| {
            queue.push(group.clone(), record).1 | start
        })
    }

    /// Runs `f` on the durable state: what every record written so far (and none still
    /// queued) makes of it. Waits for a write in progress, which holds the log across its
    /// fsync, so call it on a blocking thread, holding no lock of the queue.
    pub(crate) fn with_durable_state<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(self.log.lock().state())
    }

    /// Writes the queued records, batch after batch, until none is left: each batch is one
    /// append (one fsync). After each, `written` is told the batch and how its write went,
    /// before the waiters are.
    pub(crate) async fn write_queued(&self, mut written: impl FnMut(&[(G, S::Record)], &Outcome)) {
        loop {
            let Some(batch) = self.queue.lock().next_batch() else {
                break;
            };
            let records: Vec<S::Record> = batch.changes.iter().map(|(_, r)| r.clone()).collect();
            let log = Arc::clone(&self.log);
            let appended = join(tokio::task::spawn_blocking(move || append(&log, &records)))
                .await
                .and_then(|result| result);
            let outcome = self.settle(appended, |compaction| {
                let log = Arc::clone(&self.log);
                tokio::task::spawn_blocking(move || compact(&log, compaction));
            });
            written(&batch.changes, &outcome);
            batch.finish(&outcome);
        }
    }

    /// [`JournalWriter::write_queued`] on this thread, for a caller outside any runtime:
    /// appends, and compacts when due, blocking.
    pub(crate) fn write_queued_blocking(&self) {
        while let Some(batch) = self.queue.lock().next_batch() {
            let records: Vec<S::Record> = batch.changes.iter().map(|(_, r)| r.clone()).collect();
            let appended = append(&self.log, &records);
            let outcome = self.settle(appended, |compaction| compact(&self.log, compaction));
            batch.finish(&outcome);
        }
    }

    /// How an append went, logging a failure; a compaction it made due is handed to
    /// `start`.
    fn settle(
        &self,
        appended: Result<Option<Compaction<S>>, BrokerError>,
        start: impl FnOnce(Compaction<S>),
    ) -> Outcome {
        match appended {
            Ok(compaction) => {
                if let Some(compaction) = compaction {
                    start(compaction);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    journal = S::NAME,
                    "writing to a journal failed"
                );
                Err(Arc::new(e))
            }
        }
    }
}

/// Appends `records` to the journal (one fsync); returns a compaction made due by it.
fn append<S: Journaled>(
    log: &Mutex<JournalLog<S>>,
    records: &[S::Record],
) -> Result<Option<Compaction<S>>, BrokerError> {
    let mut log = log.lock();
    log.append(records).map(|()| log.start_compaction())
}

/// Runs a compaction of the journal, blocking, and tells the journal how it went.
fn compact<S: Journaled>(log: &Mutex<JournalLog<S>>, compaction: Compaction<S>) {
    let result = compaction.run();
    log.lock().compaction_finished(result);
}
