//! A partition's queue of appends and the writer that drains it.
//!
//! Produce requests are written in the order they were queued, and whatever queued up while
//! one write was in progress goes into the next write together (one writer lock, one fsync
//! for all of them).
//!
//! # Where the file I/O runs
//!
//! Never on an async worker. Every append, segment roll and fsync of a partition runs on its
//! writer: a thread of tokio's blocking pool, started by the first append queued to an idle
//! partition. The writer stays while appends keep coming and parks on a condition variable
//! between them, so a busy partition pays no handoff per request; after [`IDLE_LINGER`]
//! without work it gives its thread back, and the next append starts a new one. A writer
//! that has written [`MAX_WRITES_PER_TURN`] times in a row queues itself behind the other
//! blocking work rather than keeping its thread forever, so partitions and reads share the
//! pool fairly.
//!
//! Appends of idempotent producers are judged as they are written: the writer hands the log
//! an append filter that checks each such append against the partition's producer state
//! under the log's writer lock, knowing how every append before it ended (see the
//! `producers` module). A duplicate is answered with where it was stored before, a refused
//! append with why; neither is written.
//!
//! A panic while writing (a bug below the broker) faults the partition: the producers of
//! the write and of everything still queued are told the append failed, and the queue takes
//! nothing more.
//!
//! Lock discipline: the queue's mutex is never held while a job is dropped, since dropping a
//! job's [`Permit`] returns bytes to the in-flight budget, which may queue other jobs.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::{Condvar, Mutex};
use sluice_storage::{AppendFilter, AppendInfo, StorageError};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::BrokerError;
use crate::broker::wall_clock_ms;
use crate::in_flight::Permit;
use crate::producers::Verdict;
use crate::topic::Partition;

/// Counter of appends answered as duplicates of batches stored before.
const DUPLICATES_COUNTER: &str = "sluice_produce_duplicates_total";

/// Most appends written together in one blocking call.
const MAX_APPENDS_PER_WRITE: usize = 256;

/// How long an idle writer waits for the next append before giving its thread back. Longer
/// than the gap between requests of a partition under steady load (1 ms at 1,000/s), short
/// enough that idle partitions hold no threads.
pub(crate) const IDLE_LINGER: Duration = Duration::from_millis(10);

/// Writes a writer makes before it lets other blocking work have its thread.
pub(crate) const MAX_WRITES_PER_TURN: usize = 64;

/// One record batch waiting to be appended, and who to tell.
#[derive(Debug)]
pub(crate) struct AppendJob {
    pub(crate) batch: BytesMut,
    /// Whether a batch of it names an idempotent producer: only those are checked.
    pub(crate) idempotent: bool,
    /// The batch's bytes in the in-flight budget, given back once the append is done. Declared
    /// before `reply` so a dropped job gives its bytes back before its producer hears of it.
    pub(crate) permit: Permit,
    pub(crate) reply: oneshot::Sender<Result<AppendInfo, AppendFailure>>,
}

/// Why a queued append was not written.
#[derive(Debug)]
pub(crate) enum AppendFailure {
    /// The log refused or failed it.
    Storage(StorageError),
    /// The idempotent-producer checks refused it (fenced, out of order).
    Refused(BrokerError),
}

impl From<StorageError> for AppendFailure {
    fn from(err: StorageError) -> Self {
        AppendFailure::Storage(err)
    }
}

/// Resolves to the result of one queued append.
pub(crate) type AppendDone = oneshot::Receiver<Result<AppendInfo, AppendFailure>>;

/// A partition's queue and the state of its writer.
#[derive(Debug)]
pub(crate) struct AppendQueue {
    state: Mutex<QueueState>,
    /// Signalled when a job is queued for a writer that is waiting.
    work: Condvar,
    /// Where writers are started.
    runtime: Handle,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<AppendJob>,
    /// A writer is running (writing, waiting for work, or queued to start).
    writer: bool,
    /// The partition faulted: nothing more is queued.
    closed: bool,
}

impl AppendQueue {
    /// An empty queue whose writers run on `runtime`'s blocking pool.
    pub(crate) fn new(runtime: Handle) -> AppendQueue {
        AppendQueue {
            state: Mutex::new(QueueState::default()),
            work: Condvar::new(),
            runtime,
        }
    }

    /// Queues `job` behind every job queued before it, starting a writer for `partition` if
    /// none runs. Gives the job back when the queue is closed.
    pub(crate) fn push(&self, partition: &Arc<Partition>, job: AppendJob) -> Result<(), AppendJob> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(job);
        }
        st.jobs.push_back(job);
        if st.writer {
            self.work.notify_one();
            return Ok(());
        }
        st.writer = true;
        drop(st);
        self.start_writer(Arc::clone(partition));
        Ok(())
    }

    fn start_writer(&self, partition: Arc<Partition>) {
        // If the runtime is shutting down the writer never runs; its producers are going away
        // with the runtime.
        drop(self.runtime.spawn_blocking(move || write_loop(&partition)));
    }

    /// The next jobs to write, waiting up to [`IDLE_LINGER`] for some; `None` when there were
    /// none, and the writer must stop (it is marked stopped).
    fn next_jobs(&self, into: &mut Vec<AppendJob>) -> Option<()> {
        let mut st = self.state.lock();
        while st.jobs.is_empty() {
            if st.closed
                || (self.work.wait_for(&mut st, IDLE_LINGER).timed_out() && st.jobs.is_empty())
            {
                st.writer = false;
                return None;
            }
        }
        let n = st.jobs.len().min(MAX_APPENDS_PER_WRITE);
        into.extend(st.jobs.drain(..n));
        Some(())
    }

    /// Ends a writer's turn: `true` when jobs are waiting, which a new writer must take on
    /// (the queue keeps counting one as running); otherwise the writer is marked stopped.
    fn end_turn(&self) -> bool {
        let mut st = self.state.lock();
        st.writer = !st.jobs.is_empty();
        st.writer
    }

    /// Closes the queue and takes every job still in it.
    fn close(&self) -> Vec<AppendJob> {
        let mut st = self.state.lock();
        st.closed = true;
        st.writer = false;
        st.jobs.drain(..).collect()
    }
}

/// The writer: writes whatever is queued, in order, until the queue stays empty for
/// [`IDLE_LINGER`], the partition faults, or its turn is over.
fn write_loop(partition: &Arc<Partition>) {
    let Some(queue) = partition.append_queue() else {
        return;
    };
    let mut jobs = Vec::with_capacity(MAX_APPENDS_PER_WRITE);
    for _ in 0..MAX_WRITES_PER_TURN {
        if queue.next_jobs(&mut jobs).is_none() {
            return;
        }
        if let Err(panic) = write(partition, &mut jobs) {
            // What the log holds is in doubt: the partition serves nothing more until a
            // restart recovers it. Its producers learn why from the fault once their replies
            // (of this write and of the jobs still queued) are dropped.
            partition.set_fault(format!("its append task panicked: {panic}"));
            let queued = queue.close();
            drop(jobs);
            drop(queued);
            return;
        }
    }
    if queue.end_turn() {
        queue.start_writer(Arc::clone(partition));
    }
}

/// Appends `jobs` (taking them) and answers their producers; a panic in the log comes back
/// as its message, with the jobs left in `jobs`.
fn write(partition: &Partition, jobs: &mut Vec<AppendJob>) -> Result<(), String> {
    let mut batches: Vec<BytesMut> = jobs
        .iter_mut()
        .map(|job| std::mem::take(&mut job.batch))
        .collect();
    let mut check = ProducerCheck {
        partition,
        jobs,
        now_ms: if jobs.iter().any(|job| job.idempotent) {
            wall_clock_ms()
        } else {
            0
        },
        duplicates: Vec::new(),
    };
    let results = catch_unwind(AssertUnwindSafe(|| {
        // Only partitions whose log opened get a queue; should that not hold, dropping the
        // replies fails the producers.
        let results = partition
            .opened()
            .map(|log| {
                let results = log.append_all_filtered(&mut batches, &mut check);
                partition.producers().written_through(log.log_end_offset());
                results
            })
            .unwrap_or_default();
        partition.count_appended(&batches, &results, &check.duplicates);
        results
    }))
    .map_err(|panic| panic_message(panic.as_ref()))?;
    if !check.duplicates.is_empty() {
        metrics::counter!(DUPLICATES_COUNTER).increment(check.duplicates.len() as u64);
    }
    let (permits, replies): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.permit, j.reply)).unzip();
    // The appends are done: their bytes go back before their producers hear of them.
    drop(permits);
    if results.iter().any(Result::is_ok) {
        partition.wake();
    }
    for (reply, result) in replies.into_iter().zip(results) {
        // The producer may have gone away; its records are written all the same.
        let _ = reply.send(result);
    }
    Ok(())
}

/// The log's append filter on a partition's writer: judges the appends of idempotent
/// producers against the partition's producer state and records those written.
struct ProducerCheck<'a> {
    partition: &'a Partition,
    /// The jobs being written, in the order of the appends.
    jobs: &'a [AppendJob],
    /// When the write started (only read when some job is idempotent).
    now_ms: i64,
    /// Appends answered as duplicates.
    duplicates: Vec<usize>,
}

impl AppendFilter for ProducerCheck<'_> {
    type Error = AppendFailure;

    fn admit(&mut self, index: usize, batches: &[u8]) -> Option<Result<AppendInfo, AppendFailure>> {
        if !self.jobs.get(index).is_some_and(|job| job.idempotent) {
            return None;
        }
        match self.partition.producers().judge(batches, self.now_ms) {
            Verdict::Write => None,
            Verdict::Duplicate(stored) => {
                self.duplicates.push(index);
                Some(Ok(stored))
            }
            Verdict::Refuse(refusal) => Some(Err(AppendFailure::Refused(
                refusal.into_error(self.partition.topic(), self.partition.id),
            ))),
        }
    }

    fn written(&mut self, index: usize, batches: &[u8], result: &Result<AppendInfo, StorageError>) {
        if result.is_ok() && self.jobs.get(index).is_some_and(|job| job.idempotent) {
            self.partition.producers().record(batches, self.now_ms);
        }
    }
}

/// The message a panic was raised with.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
