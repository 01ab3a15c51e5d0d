//! The server-wide cap on open subscriptions (`limits.max_subscriptions`).
//!
//! Every `Subscribe`, `SubscribeBatches` and `Groups.Consume` call holds a slot for as long
//! as its response stream exists; the stream is dropped when it ends or the client goes
//! away, which frees the slot. A call that finds every slot taken fails at once with
//! RESOURCE_EXHAUSTED naming the limit, so a client opening thousands of subscriptions
//! cannot make the server run thousands of partition readers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::Status;

/// The slots subscriptions take, shared by the services that open them.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionSlots {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl SubscriptionSlots {
    /// `limit` slots.
    pub(crate) fn new(limit: usize) -> Self {
        SubscriptionSlots {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Takes a slot, or fails with RESOURCE_EXHAUSTED when all are taken.
    pub(crate) fn take(&self) -> Result<Slot, Status> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => Ok(Slot { _permit: permit }),
            Err(_) => Err(Status::resource_exhausted(format!(
                "too many open subscriptions: the server allows max_subscriptions = {} \
                 (Subscribe, SubscribeBatches and Consume calls together)",
                self.limit
            ))),
        }
    }

    /// Slots taken right now.
    #[cfg(test)]
    fn taken(&self) -> usize {
        self.limit - self.slots.available_permits()
    }
}

/// One taken slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// A response stream that keeps its subscription's slot until it is dropped.
#[derive(Debug)]
pub(crate) struct Held<S> {
    inner: S,
    _slot: Slot,
}

impl<S> Held<S> {
    /// `inner`, holding `slot`.
    pub(crate) fn new(inner: S, slot: Slot) -> Self {
        Held { inner, _slot: slot }
    }
}

impl<S: Stream + Unpin> Stream for Held<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn slots_run_out_and_come_back_when_streams_drop() {
        let slots = SubscriptionSlots::new(2);
        let first = Held::new(tokio_stream::empty::<()>(), slots.take().expect("slot 1"));
        let second = slots.take().expect("slot 2");
        let status = slots.take().expect_err("no third slot");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("max_subscriptions = 2"),
            "{}",
            status.message()
        );
        assert_eq!(slots.taken(), 2);
        drop(first);
        drop(second);
        assert_eq!(slots.taken(), 0);
        assert!(slots.take().is_ok());
    }
}
