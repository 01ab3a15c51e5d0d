//! Group commit of journal appends: one write to a journal in flight at a time; changes
//! arriving meanwhile, from every group, are written together by the next one, and each is
//! acknowledged once the write carrying it is durable.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::BrokerError;

/// How a write went, shared by every change it carried.
pub(crate) type Outcome = Result<(), Arc<BrokerError>>;

/// Resolves once a queued change is durable, or with why it is not.
pub(crate) type Durable = oneshot::Receiver<Outcome>;

/// The changes of a group not yet written (or being written); a group with some is kept.
#[derive(Debug, Default)]
pub(crate) struct PendingWrites(usize);

impl PendingWrites {
    /// Nothing of the group queued or being written.
    pub(crate) fn is_idle(&self) -> bool {
        self.0 == 0
    }

    /// One more change queued.
    pub(crate) fn queued(&mut self) {
        self.0 += 1;
    }

    /// One change written (or failed).
    pub(crate) fn finished(&mut self) {
        self.0 = self.0.saturating_sub(1);
    }
}

/// The changes `C` waiting for the next write, each with its group `G`, and whether a write
/// is in progress.
#[derive(Debug)]
pub(crate) struct StoreQueue<G, C> {
    pending: Vec<(G, C, oneshot::Sender<Outcome>)>,
    writing: bool,
}

impl<G, C> Default for StoreQueue<G, C> {
    fn default() -> Self {
        StoreQueue {
            pending: Vec::new(),
            writing: false,
        }
    }
}

/// The next write: its changes in queue order, and whom to tell.
#[derive(Debug)]
pub(crate) struct Batch<G, C> {
    /// The changes, each with its group.
    pub(crate) changes: Vec<(G, C)>,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

impl<G, C> StoreQueue<G, C> {
    /// Queues a change of `group`. Returns the receiver of its outcome, and `true` when the
    /// caller must start a writer (none is running).
    pub(crate) fn push(&mut self, group: G, change: C) -> (Durable, bool) {
        let (reply, durable) = oneshot::channel();
        self.pending.push((group, change, reply));
        let start = !self.writing;
        self.writing = true;
        (durable, start)
    }

    /// Takes every queued change as the next write; `None` (and the writer stops) when
    /// nothing is queued.
    pub(crate) fn next_batch(&mut self) -> Option<Batch<G, C>> {
        if self.pending.is_empty() {
            self.writing = false;
            return None;
        }
        let (changes, waiters) = self
            .pending
            .drain(..)
            .map(|(group, change, reply)| ((group, change), reply))
            .unzip();
        Some(Batch { changes, waiters })
    }
}

impl<G, C> Batch<G, C> {
    /// Tells every change of the batch how its write went.
    pub(crate) fn finish(self, result: &Outcome) {
        for waiter in self.waiters {
            // A waiter that went away no longer needs the answer.
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::offsets_state::OffsetChange;
    use crate::groups::{Committed, TopicPartition};

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
    async fn changes_of_every_group_queued_during_a_write_go_together_into_the_next() {
        let mut queue = StoreQueue::default();
        let (first, start) = queue.push("a", set(0, 1));
        assert!(start, "the first change starts a writer");
        let batch = queue.next_batch().expect("a batch");
        assert_eq!(batch.changes, [("a", set(0, 1))]);
        // While it is written, more changes arrive; none starts another writer.
        let (second, start_second) = queue.push("b", set(1, 5));
        let (third, start_third) = queue.push("a", OffsetChange::RemoveTopic("t".into()));
        let (fourth, _) = queue.push("b", set(2, 9));
        assert!(!start_second && !start_third);
        batch.finish(&Ok(()));
        assert!(matches!(first.await, Ok(Ok(()))));

        let next = queue.next_batch().expect("the coalesced batch");
        assert_eq!(
            next.changes,
            [
                ("b", set(1, 5)),
                ("a", OffsetChange::RemoveTopic("t".into())),
                ("b", set(2, 9)),
            ]
        );
        next.finish(&Err(Arc::new(BrokerError::ShuttingDown)));
        for waiter in [second, third, fourth] {
            assert!(matches!(waiter.await, Ok(Err(e)) if matches!(*e, BrokerError::ShuttingDown)));
        }
        assert!(queue.next_batch().is_none());
        let (_, start_again) = queue.push("a", set(0, 2));
        assert!(
            start_again,
            "the writer stopped, so the next change starts one"
        );
    }

    #[test]
    fn pending_writes_count_up_and_down() {
        let mut pending = PendingWrites::default();
        assert!(pending.is_idle());
        pending.queued();
        pending.queued();
        pending.finished();
        assert!(!pending.is_idle());
        pending.finished();
        assert!(pending.is_idle());
    }
}
