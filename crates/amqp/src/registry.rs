//! What the AMQP listener knows across its connections: which connection owns each
//! exclusive queue, and how many AMQP consumers each queue has (for `consumer_count`,
//! `if_unused` and auto-delete).

use std::collections::HashMap;

use parking_lot::Mutex;

/// A connection's id within the listener.
pub(crate) type ConnectionId = u64;

/// Exclusive owners and consumer counts, by queue.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    queues: Mutex<HashMap<String, QueueUse>>,
}

#[derive(Debug, Default)]
struct QueueUse {
    /// The connection owning the queue, if it is exclusive.
    owner: Option<ConnectionId>,
    /// AMQP consumers on the queue.
    consumers: usize,
    /// Whether it ever had a consumer (auto-delete waits for the first).
    had_consumers: bool,
}

/// Whether a connection may use a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Not exclusive, or exclusive to this connection.
    Allowed,
    /// Exclusive to another connection.
    Locked,
}

impl Registry {
    /// Whether `connection` may use `queue`.
    pub(crate) fn access(&self, queue: &str, connection: ConnectionId) -> Access {
        match self.queues.lock().get(queue).and_then(|q| q.owner) {
            Some(owner) if owner != connection => Access::Locked,
            _ => Access::Allowed,
        }
    }

    /// Makes `connection` the owner of exclusive `queue`.
    pub(crate) fn own(&self, queue: &str, connection: ConnectionId) {
        self.queues
            .lock()
            .entry(queue.to_owned())
            .or_default()
            .owner = Some(connection);
    }

    /// The exclusive queues `connection` owns, forgotten.
    pub(crate) fn release_owned(&self, connection: ConnectionId) -> Vec<String> {
        let mut queues = self.queues.lock();
        let owned: Vec<String> = queues
            .iter()
            .filter(|(_, q)| q.owner == Some(connection))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &owned {
            queues.remove(name);
        }
        owned
    }

    /// One more consumer on `queue`.
    pub(crate) fn consumer_added(&self, queue: &str) {
        let mut queues = self.queues.lock();
        let q = queues.entry(queue.to_owned()).or_default();
        q.consumers += 1;
        q.had_consumers = true;
    }

    /// One consumer fewer on `queue`; `true` when that was its last one.
    pub(crate) fn consumer_removed(&self, queue: &str) -> bool {
        let mut queues = self.queues.lock();
        let Some(q) = queues.get_mut(queue) else {
            return false;
        };
        q.consumers = q.consumers.saturating_sub(1);
        q.consumers == 0 && q.had_consumers
    }

    /// AMQP consumers on `queue`.
    pub(crate) fn consumers(&self, queue: &str) -> usize {
        self.queues.lock().get(queue).map_or(0, |q| q.consumers)
    }

    /// Forgets `queue` (deleted).
    pub(crate) fn forget(&self, queue: &str) {
        self.queues.lock().remove(queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_queues_belong_to_one_connection_and_consumers_are_counted() {
        let registry = Registry::default();
        registry.own("q", 1);
        assert_eq!(registry.access("q", 1), Access::Allowed);
        assert_eq!(registry.access("q", 2), Access::Locked);
        assert_eq!(registry.access("other", 2), Access::Allowed);
        registry.consumer_added("q");
        registry.consumer_added("q");
        assert_eq!(registry.consumers("q"), 2);
        assert!(!registry.consumer_removed("q"));
        assert!(registry.consumer_removed("q"), "the last consumer went");
        assert_eq!(registry.release_owned(1), ["q"]);
        assert_eq!(registry.access("q", 2), Access::Allowed);
    }
}
