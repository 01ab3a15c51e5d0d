//! The server-wide cap on open subscriptions (`limits.max_subscriptions`).
//!
//! Every subscription and group session, whichever front end opened it, holds a slot for as
//! long as it exists, which frees the slot when it is dropped. A subscription that finds
//! every slot taken fails at once with [`BrokerError::TooManySubscriptions`], so a client
//! opening thousands of subscriptions cannot make the broker run thousands of readers.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::BrokerError;

/// The slots subscriptions take.
#[derive(Debug)]
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

    /// Takes a slot, or fails when all are taken.
    pub(crate) fn take(&self) -> Result<Slot, BrokerError> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => Ok(Slot { _permit: permit }),
            Err(_) => Err(BrokerError::TooManySubscriptions { limit: self.limit }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_and_come_back_when_dropped() {
        let slots = SubscriptionSlots::new(2);
        let first = slots.take().expect("slot 1");
        let second = slots.take().expect("slot 2");
        let err = slots.take().expect_err("no third slot");
        assert!(matches!(
            err,
            BrokerError::TooManySubscriptions { limit: 2 }
        ));
        assert!(err.to_string().contains("max_subscriptions = 2"), "{err}");
        assert_eq!(slots.taken(), 2);
        drop(first);
        drop(second);
        assert_eq!(slots.taken(), 0);
        assert!(slots.take().is_ok());
    }
}
