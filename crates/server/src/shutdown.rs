//! The server-wide shutdown signal that ends long-running calls (long-poll fetches,
//! subscriptions, produce streams) so the server can drain.

use tokio::sync::watch;

/// Fires the [`Shutdown`] signal.
#[derive(Debug)]
pub(crate) struct ShutdownTrigger(watch::Sender<bool>);

/// Resolves [`Shutdown::wait`] once shutdown begins. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and signal.
pub(crate) fn shutdown_signal() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Begins shutdown: every [`Shutdown::wait`] resolves.
    pub(crate) fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown has begun (or the trigger is gone).
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger was dropped: the server is gone, so stop as well.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wait_resolves_only_after_fire() {
        let (trigger, shutdown) = shutdown_signal();
        let waiting = tokio::time::timeout(Duration::from_millis(50), shutdown.wait()).await;
        assert!(waiting.is_err(), "resolved before fire");
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .expect("resolved after fire");
        // Late waiters see the signal too.
        tokio::time::timeout(Duration::from_secs(5), shutdown.clone().wait())
            .await
            .expect("late waiter");
    }
}
