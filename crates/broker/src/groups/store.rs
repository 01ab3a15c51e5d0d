//! Group commit of offset changes: one write to the offsets log in flight at a time; changes
//! arriving meanwhile, from every group, are written together by the next one, and each is
//! acknowledged once the write carrying it is durable.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::BrokerError;
use crate::groups::Committed;
use crate::groups::TopicPartition;
use crate::groups::offsets_state::Offsets;

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
    /// Applies the change to a group's offsets.
    pub(crate) fn apply(&self, offsets: &mut Offsets) {
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

/// The changes waiting for the next write, each with its group `G`, and whether a write is
/// in progress.
#[derive(Debug)]
pub(crate) struct StoreQueue<G> {
    pending: Vec<(G, OffsetChange, oneshot::Sender<Outcome>)>,
    writing: bool,
}

impl<G> Default for StoreQueue<G> {
    fn default() -> Self {
        StoreQueue {
            pending: Vec::new(),
            writing: false,
        }
    }
}

/// The next write: its changes in queue order, and whom to tell.
#[derive(Debug)]
pub(crate) struct Batch<G> {
    /// The changes, each with its group.
    pub(crate) changes: Vec<(G, OffsetChange)>,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

impl<G> StoreQueue<G> {
    /// Queues a change of `group`. Returns the receiver of its outcome, and `true` when the
    /// caller must start a writer (none is running).
    pub(crate) fn push(&mut self, group: G, change: OffsetChange) -> (Durable, bool) {
        let (reply, durable) = oneshot::channel();
        self.pending.push((group, change, reply));
        let start = !self.writing;
        self.writing = true;
        (durable, start)
    }

    /// Takes every queued change as the next write; `None` (and the writer stops) when
    /// nothing is queued.
    pub(crate) fn next_batch(&mut self) -> Option<Batch<G>> {
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

impl<G> Batch<G> {
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
    fn changes_apply_in_order() {
        let mut offsets = Offsets::new();
        set(0, 3).apply(&mut offsets);
        set(1, 4).apply(&mut offsets);
        set(0, 5).apply(&mut offsets);
        assert_eq!(offsets.len(), 2);
        assert_eq!(offsets[&TopicPartition::new("t", 0)].offset, 5);
        OffsetChange::Clear.apply(&mut offsets);
        assert!(offsets.is_empty());
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
