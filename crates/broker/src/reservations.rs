//! Topic names held by a creation or deletion in progress.
//!
//! Creating or deleting a topic does blocking file work. Instead of serialising those
//! operations behind one async lock held across that work, each holds its topic's name here
//! while it runs: another creation of the same name is refused as existing, operations on
//! other names run side by side, and shutdown waits only for the operations in progress
//! (then refuses new ones) rather than queueing behind a lock.
//!
//! Lock order: this mutex before the topic registry's lock, never the other way round.

use std::collections::HashSet;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::BrokerError;

/// The names held, and whether new holds are refused.
#[derive(Debug)]
pub(crate) struct Reservations {
    names: Mutex<Names>,
    /// How many names are held, for shutdown to wait on.
    held: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct Names {
    held: HashSet<String>,
    closed: bool,
}

/// A held name, given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    owner: &'a Reservations,
    name: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut names = self.owner.names.lock();
        names.held.remove(&self.name);
        self.owner.held.send_replace(names.held.len());
    }
}

impl Reservations {
    pub(crate) fn new() -> Reservations {
        Reservations {
            names: Mutex::new(Names::default()),
            held: watch::Sender::new(0),
        }
    }

    /// Holds `name` if no other operation holds it and `check` (run under the lock, so any
    /// registry lock it takes is ordered after this one) passes, returning what `check`
    /// returns. A name already held is the error `busy` makes. Refused with
    /// [`BrokerError::ShuttingDown`] once closed.
    pub(crate) fn hold<T>(
        &self,
        name: &str,
        busy: impl FnOnce() -> BrokerError,
        check: impl FnOnce() -> Result<T, BrokerError>,
    ) -> Result<(Reservation<'_>, T), BrokerError> {
        let mut names = self.names.lock();
        if names.closed {
            return Err(BrokerError::ShuttingDown);
        }
        if names.held.contains(name) {
            return Err(busy());
        }
        let checked = check()?;
        names.held.insert(name.to_owned());
        self.held.send_replace(names.held.len());
        let reservation = Reservation {
            owner: self,
            name: name.to_owned(),
        };
        Ok((reservation, checked))
    }

    /// Refuses new holds, then waits until every name held is given back.
    pub(crate) async fn close(&self) {
        self.names.lock().closed = true;
        let mut held = self.held.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = held.wait_for(|n| *n == 0).await;
    }
}
