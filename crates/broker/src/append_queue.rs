//! A partition's queue of appends: produce requests are written in the order they were
//! submitted, and whatever queued up while one write was in progress goes into the next
//! write together (one writer lock, one fsync for all of them).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Weak;

use bytes::BytesMut;
use sluice_storage::{AppendInfo, StorageError};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::in_flight::Permit;
use crate::topic::Partition;

/// Most appends written together in one blocking call.
const MAX_APPENDS_PER_WRITE: usize = 256;

/// One record batch waiting to be appended, and who to tell.
#[derive(Debug)]
pub(crate) struct AppendJob {
    pub(crate) batch: BytesMut,
    /// The batch's bytes in the in-flight budget, given back once the append is done. Declared
    /// before `reply` so a dropped job gives its bytes back before its producer hears of it.
    pub(crate) permit: Permit,
    pub(crate) reply: oneshot::Sender<Result<AppendInfo, StorageError>>,
}

/// Resolves to the result of one queued append.
pub(crate) type AppendDone = oneshot::Receiver<Result<AppendInfo, StorageError>>;

/// The sending side, owned by the partition.
pub(crate) type AppendQueue = mpsc::UnboundedSender<AppendJob>;

/// Starts the task that drains a partition's queue on `runtime`; it ends once the partition
/// is dropped.
pub(crate) fn start(runtime: &Handle, partition: Weak<Partition>) -> AppendQueue {
    let (tx, rx) = mpsc::unbounded_channel();
    runtime.spawn(drain(partition, rx));
    tx
}

/// Largest write done on the async worker itself rather than on a blocking thread.
const MAX_INLINE_WRITE_BYTES: usize = 64 << 10;

/// Whether `batches` are written without handing them to a blocking thread: a small write
/// that only reaches the page cache (no fsync, no segment roll) takes microseconds, less than
/// the handoff.
fn writes_inline(partition: &Partition, batches: &[BytesMut]) -> bool {
    let bytes = batches.iter().map(BytesMut::len).sum::<usize>();
    bytes <= MAX_INLINE_WRITE_BYTES
        && partition
            .opened()
            .is_some_and(|log| log.appends_without_blocking(bytes as u64))
}

async fn drain(partition: Weak<Partition>, mut rx: mpsc::UnboundedReceiver<AppendJob>) {
    let mut jobs = Vec::with_capacity(MAX_APPENDS_PER_WRITE);
    while rx.recv_many(&mut jobs, MAX_APPENDS_PER_WRITE).await > 0 {
        let Some(partition) = partition.upgrade() else {
            return;
        };
        let mut batches = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        // Held until the appends are done, so their bytes count as in flight until then.
        let mut permits = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            batches.push(job.batch);
            replies.push(job.reply);
            permits.push(job.permit);
        }
        let inline = writes_inline(&partition, &batches);
        let writer = partition.clone();
        // Only partitions whose log opened get a queue; should that not hold, dropping the
        // replies fails the producers.
        let mut write = move || {
            catch_unwind(AssertUnwindSafe(|| {
                let results = writer
                    .opened()
                    .map(|log| log.append_all(&mut batches))
                    .unwrap_or_default();
                writer.count_appended(&batches, &results);
                results
            }))
            .map_err(|panic| panic_message(panic.as_ref()))
        };
        let outcome = if inline {
            write()
        } else {
            match tokio::task::spawn_blocking(write).await {
                Ok(outcome) => outcome,
                // Cancelled: the runtime is shutting down, and dropping the replies says so.
                Err(_) => return,
            }
        };
        // The appends are done: their bytes go back before their producers hear of them.
        drop(permits);
        match outcome {
            Ok(results) => {
                if results.iter().any(Result::is_ok) {
                    partition.wake();
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    // The producer may have gone away; its records are written all the same.
                    let _ = reply.send(result);
                }
            }
            Err(panic) => {
                // What the log holds is in doubt: the partition serves nothing more until a
                // restart recovers it. Its waiting producers learn why from the fault, once
                // their replies (these and those still queued) are dropped.
                partition.set_fault(format!("its append task panicked: {panic}"));
                drop(replies);
                rx.close();
                while let Ok(job) = rx.try_recv() {
                    drop(job);
                }
                return;
            }
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
