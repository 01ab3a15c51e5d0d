//! The broker's lifecycle signal: once draining begins, every long-running call (long-poll
//! fetches, subscriptions, group sessions, produce streams of any front end) ends, so the
//! host can let in-flight requests finish and then close the logs.
//!
//! The host calls [`crate::Broker::begin_drain`] when it starts shutting down, waits (a
//! grace period) for open calls to end, then calls [`crate::Broker::shutdown`].

use tokio::sync::watch;

/// Fires the [`Draining`] signal; owned by the broker.
#[derive(Debug)]
pub(crate) struct DrainTrigger(watch::Sender<bool>);

/// Resolves [`Draining::wait`] once the broker begins draining. Cheap to clone: every
/// long-running call of every front end holds one.
#[derive(Debug, Clone)]
pub struct Draining(watch::Receiver<bool>);

/// A connected trigger and signal.
pub(crate) fn drain_signal() -> (DrainTrigger, Draining) {
    let (tx, rx) = watch::channel(false);
    (DrainTrigger(tx), Draining(rx))
}

impl DrainTrigger {
    /// Begins draining: every [`Draining::wait`] resolves.
    pub(crate) fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A signal connected to this trigger.
    pub(crate) fn signal(&self) -> Draining {
        Draining(self.0.subscribe())
    }
}

impl Draining {
    /// Resolves once draining has begun (or the broker is gone).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger was dropped: the broker is gone, so stop as well.
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// Whether draining has begun.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wait_resolves_only_after_fire() {
        let (trigger, draining) = drain_signal();
        let waiting = tokio::time::timeout(Duration::from_millis(50), draining.wait()).await;
        assert!(waiting.is_err(), "resolved before fire");
        assert!(!draining.is_draining());
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), draining.wait())
            .await
            .expect("resolved after fire");
        // Late waiters, and signals made after the fact, see it too.
        tokio::time::timeout(Duration::from_secs(5), trigger.signal().wait())
            .await
            .expect("late waiter");
        assert!(draining.is_draining());
    }
}
