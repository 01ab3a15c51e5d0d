//! A client-assigned group's member: what it brought when it joined, its assignment, and
//! the answers it waits for.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::BrokerError;
use crate::groups::classic::{ClassicJoined, ClassicSynced};

/// Where a waiting member's answer arrives.
pub(crate) type Reply<T> = oneshot::Receiver<Result<T, BrokerError>>;
/// Where a waiting member's answer is sent.
pub(super) type Waiter<T> = oneshot::Sender<Result<T, BrokerError>>;

/// What a joining member brings, checked.
#[derive(Debug, Clone)]
pub(crate) struct ClassicSpec {
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) topics: BTreeSet<String>,
}

impl ClassicSpec {
    /// The member's metadata for `protocol`, if it supports it.
    pub(super) fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata)
    }
}

/// A member of a client-assigned group.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) spec: ClassicSpec,
    /// What the leader assigned it in the current generation.
    pub(super) assignment: Bytes,
    pub(super) last_seen: Instant,
    /// Set once the member has joined the current join phase, until the phase ends.
    pub(super) joining: Option<Waiter<ClassicJoined>>,
    /// Set while it waits for the leader's assignment.
    pub(super) syncing: Option<Waiter<ClassicSynced>>,
    /// Whether it asked for its assignment since the last join phase ended.
    pub(super) synced: bool,
}

impl Member {
    pub(super) fn new(
        spec: ClassicSpec,
        now: Instant,
        joining: Option<Waiter<ClassicJoined>>,
    ) -> Member {
        Member {
            spec,
            assignment: Bytes::new(),
            last_seen: now,
            joining,
            syncing: None,
            synced: false,
        }
    }

    /// Whether the session timeout applies now: not while it waits for a phase to end
    /// (those phases have deadlines of their own).
    pub(super) fn is_silent_since(&self, now: Instant) -> bool {
        self.joining.is_none()
            && self.syncing.is_none()
            && now >= self.last_seen + self.spec.session_timeout
    }

    /// Answers whatever the member waits for with `err`.
    pub(super) fn fail_waiters(&mut self, err: impl Fn() -> BrokerError) {
        if let Some(waiter) = self.joining.take() {
            let _ = waiter.send(Err(err()));
        }
        if let Some(waiter) = self.syncing.take() {
            let _ = waiter.send(Err(err()));
        }
    }
}
