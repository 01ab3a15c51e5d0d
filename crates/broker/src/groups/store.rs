//! Group commit of a group's offsets: one write in flight at a time; changes arriving
//! meanwhile are written together by the next one, and each is acknowledged once the write
//! carrying it is durable.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::BrokerError;
use crate::groups::offsets_file::Offsets;
use crate::groups::{Committed, TopicPartition};

/// A change to a group's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OffsetChange {
    /// Sets the committed offset of partitions.
    Set(Vec<(TopicPartition, Committed)>),
    /// Drops every offset of a topic.
    RemoveTopic(String),
    /// Drops every offset.
    Clear,
}

impl OffsetChange {
    fn apply(&self, offsets: &mut Offsets) {
        match self {
            OffsetChange::Set(entries) => {
                for (tp, committed) in entries {
                    offsets.insert(tp.clone(), *committed);
                }
            }
            OffsetChange::RemoveTopic(topic) => offsets.retain(|tp, _| tp.topic != *topic),
            OffsetChange::Clear => offsets.clear(),
        }
    }
}

/// How a write went, shared by every change it carried.
pub(crate) type Outcome = Result<(), Arc<BrokerError>>;

/// Resolves once a queued change is durable, or with why it is not.
pub(crate) type Durable = oneshot::Receiver<Outcome>;

/// The changes waiting for the next write, and whether a write is in progress.
#[derive(Debug, Default)]
pub(crate) struct StoreQueue {
    pending: Vec<(OffsetChange, oneshot::Sender<Outcome>)>,
    writing: bool,
}

/// The next write: the offsets to store and whom to tell.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) offsets: Offsets,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

impl StoreQueue {
    /// Queues a change. Returns the receiver of its outcome, and `true` when the caller
    /// must start a writer (none is running).
    pub(crate) fn push(&mut self, change: OffsetChange) -> (Durable, bool) {
        let (reply, durable) = oneshot::channel();
        self.pending.push((change, reply));
        let start = !self.writing;
        self.writing = true;
        (durable, start)
    }

    /// Takes every queued change, applied onto `durable`, as the next write; `None` (and the
    /// writer stops) when nothing is queued.
    pub(crate) fn next_batch(&mut self, durable: &Offsets) -> Option<Batch> {
        if self.pending.is_empty() {
            self.writing = false;
            return None;
        }
        let mut offsets = durable.clone();
        let waiters = self
            .pending
            .drain(..)
            .map(|(change, reply)| {
                change.apply(&mut offsets);
                reply
            })
            .collect();
        Some(Batch { offsets, waiters })
    }

    /// Nothing queued and no write in progress.
    pub(crate) fn is_idle(&self) -> bool {
        !self.writing && self.pending.is_empty()
    }
}

impl Batch {
    /// Tells every change of the batch how its write went.
    pub(crate) fn finish(self, result: Outcome) {
        for waiter in self.waiters {
            // A waiter that went away no longer needs the answer.
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(partition: u32, offset: u64) -> OffsetChange {
        OffsetChange::Set(vec![(
            TopicPartition::new("t", partition),
            Committed {
                offset,
                commit_ms: 0,
            },
        )])
    }

    #[tokio::test]
    async fn changes_queued_during_a_write_go_together_into_the_next() {
        let mut queue = StoreQueue::default();
        let (first, start) = queue.push(set(0, 1));
        assert!(start, "the first change starts a writer");
        let batch = queue.next_batch(&Offsets::new()).expect("a batch");
        // While it is written, more changes arrive; none starts another writer.
        let (second, start_second) = queue.push(set(1, 5));
        let (third, start_third) = queue.push(OffsetChange::RemoveTopic("t".into()));
        let (fourth, _) = queue.push(set(2, 9));
        assert!(!start_second && !start_third);
        assert!(!queue.is_idle());
        let durable = batch.offsets.clone();
        batch.finish(Ok(()));
        assert!(matches!(first.await, Ok(Ok(()))));

        let next = queue.next_batch(&durable).expect("the coalesced batch");
        assert_eq!(
            next.offsets.keys().collect::<Vec<_>>(),
            [&TopicPartition::new("t", 2)]
        );
        let failure = Arc::new(BrokerError::ShuttingDown);
        next.finish(Err(failure));
        for waiter in [second, third, fourth] {
            assert!(matches!(waiter.await, Ok(Err(e)) if matches!(*e, BrokerError::ShuttingDown)));
        }
        assert!(queue.next_batch(&durable).is_none());
        assert!(queue.is_idle());
    }

    #[test]
    fn clear_drops_everything() {
        let mut offsets = Offsets::new();
        set(0, 3).apply(&mut offsets);
        set(1, 4).apply(&mut offsets);
        assert_eq!(offsets.len(), 2);
        OffsetChange::Clear.apply(&mut offsets);
        assert!(offsets.is_empty());
    }
}
