//! The share group members and share sessions of one Kafka listener.
//!
//! A Kafka share consumer names itself (a UUID it chose) and keeps its membership alive with
//! ShareGroupHeartbeat; its ShareFetch and ShareAcknowledge requests may come on any
//! connection. So the listener, not the connection, keeps each member: the broker's
//! [`ShareMember`] it acquires and acknowledges through, the member epoch, the topics it
//! subscribed to, and its share session (the epoch the next request must carry and the
//! partitions it fetches). A member not heard from for `kafka.share_session_timeout_ms`
//! is removed, and dropping its [`ShareMember`] releases the records it held.
//!
//! Lock order: the registry's mutex is a leaf. It is never held across an `.await`, and a
//! [`ShareMember`] is never dropped while it is held (dropping one takes the broker's share
//! group locks): entries taken out are dropped after the guard.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use sluice_broker::ShareMember;

/// A partition as the share APIs name it once its topic id is resolved.
pub(crate) type Partition = (String, u32);

/// One member of a share group, as its heartbeats made it.
#[derive(Debug)]
pub(crate) struct Member {
    /// The broker's member, `None` while none of the subscribed topics exists.
    pub(crate) member: Option<Arc<ShareMember>>,
    /// The member epoch: 1 on joining, one more each time the assignment changes.
    pub(crate) epoch: i32,
    /// The topics subscribed to, sorted.
    pub(crate) topics: Vec<String>,
    /// The assignment last handed out: each existing subscribed topic with its partition
    /// count (every partition of every subscribed topic: the broker shares records, not
    /// partitions, among members).
    pub(crate) assigned: Vec<(String, u32)>,
    /// The last heartbeat.
    pub(crate) last_seen: Instant,
    /// The client id of the joining request.
    pub(crate) client_id: String,
    /// The client's address, as `/IP`.
    pub(crate) client_host: String,
    /// The share session, once a ShareFetch with epoch 0 opened one.
    pub(crate) session: Option<Session>,
}

/// A share session (KIP-932): the epoch the next request must carry and the partitions it
/// fetches.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// The epoch the next ShareFetch or ShareAcknowledge must carry: 1 after the opening
    /// request, then one more per request, wrapping from `i32::MAX` to 1.
    pub(crate) next_epoch: i32,
    /// The partitions fetched: those the opening request named, plus those later requests
    /// add, minus those they forget.
    pub(crate) partitions: BTreeSet<Partition>,
}

/// The epoch a share session request carries: open, continue or close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEpoch {
    /// 0: opens a session (replacing any the member had).
    Open,
    /// -1: closes it after the request's acknowledgements.
    Close,
    /// Anything else: continues it; must be the session's next epoch.
    Continue(i32),
}

impl SessionEpoch {
    /// The meaning of a request's `share_session_epoch`.
    pub(crate) fn of(epoch: i32) -> SessionEpoch {
        match epoch {
            0 => SessionEpoch::Open,
            -1 => SessionEpoch::Close,
            n => SessionEpoch::Continue(n),
        }
    }
}

/// What a share session request may go on with: the member and its session's partitions.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The broker's member (`None`: none of its topics exists).
    pub(crate) member: Option<Arc<ShareMember>>,
    /// The session's partitions after this request's additions and removals.
    pub(crate) partitions: BTreeSet<Partition>,
}

/// The share group members of one listener, by group and member id.
#[derive(Debug, Default)]
pub(crate) struct ShareMembers {
    members: Mutex<HashMap<(String, String), Member>>,
}

impl ShareMembers {
    /// Runs `f` on the member, if there is one.
    pub(crate) fn with<T>(
        &self,
        group: &str,
        id: &str,
        f: impl FnOnce(&mut Member) -> T,
    ) -> Option<T> {
        let mut members = self.members.lock();
        members.get_mut(&(group.to_owned(), id.to_owned())).map(f)
    }

    /// How many members of `group` this listener holds.
    pub(crate) fn count(&self, group: &str) -> usize {
        self.members
            .lock()
            .keys()
            .filter(|(g, _)| g == group)
            .count()
    }

    /// Adds or replaces a member; the one it replaces is returned (to be dropped once no
    /// lock is held).
    pub(crate) fn insert(&self, group: &str, id: &str, member: Member) -> Option<Member> {
        self.members
            .lock()
            .insert((group.to_owned(), id.to_owned()), member)
    }

    /// Removes a member, returned to be dropped once no lock is held.
    pub(crate) fn remove(&self, group: &str, id: &str) -> Option<Member> {
        self.members
            .lock()
            .remove(&(group.to_owned(), id.to_owned()))
    }

    /// The members of `group`, by id.
    pub(crate) fn describe(&self, group: &str) -> Vec<MemberSummary> {
        let members = self.members.lock();
        let mut found: Vec<MemberSummary> = members
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|((_, id), m)| MemberSummary {
                id: id.clone(),
                epoch: m.epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                topics: m.topics.clone(),
                assigned: m.assigned.clone(),
            })
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Removes the members not heard from within `timeout`; they are returned to be dropped
    /// (which releases what they hold) once no lock is held.
    pub(crate) fn expire(&self, now: Instant, timeout: Duration) -> Vec<Member> {
        let mut members = self.members.lock();
        let expired: Vec<(String, String)> = members
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > timeout)
            .map(|(key, _)| key.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|key| {
                tracing::info!(group = %key.0, member = %key.1, "share group member expired (no heartbeat within kafka.share_session_timeout_ms)");
                members.remove(&key)
            })
            .collect()
    }

    /// Checks a ShareFetch or ShareAcknowledge against the member's share session and moves
    /// the session on: an opening request starts one with `add` as its partitions, a
    /// continuing one must carry the session's next epoch and adds `add` and drops `forget`,
    /// a closing one must name an open session (the caller ends it with [`Self::close`]
    /// once its acknowledgements are applied). The error is the request's error code.
    pub(crate) fn admit(
        &self,
        group: &str,
        id: &str,
        epoch: SessionEpoch,
        add: &[Partition],
        forget: &[Partition],
    ) -> Result<Admitted, ResponseError> {
        let mut members = self.members.lock();
        let member = members
            .get_mut(&(group.to_owned(), id.to_owned()))
            .ok_or(ResponseError::UnknownMemberId)?;
        let session = match (epoch, &mut member.session) {
            (SessionEpoch::Open, session) => session.insert(Session {
                next_epoch: 1,
                partitions: BTreeSet::new(),
            }),
            (_, None) => return Err(ResponseError::ShareSessionNotFound),
            (SessionEpoch::Close, Some(session)) => session,
            (SessionEpoch::Continue(n), Some(session)) => {
                if n != session.next_epoch {
                    return Err(ResponseError::InvalidShareSessionEpoch);
                }
                session.next_epoch = n.checked_add(1).unwrap_or(1);
                session
            }
        };
        for partition in forget {
            session.partitions.remove(partition);
        }
        session.partitions.extend(add.iter().cloned());
        Ok(Admitted {
            member: member.member.clone(),
            partitions: session.partitions.clone(),
        })
    }

    /// Ends the member's share session.
    pub(crate) fn close(&self, group: &str, id: &str) {
        if let Some(member) = self
            .members
            .lock()
            .get_mut(&(group.to_owned(), id.to_owned()))
        {
            member.session = None;
        }
    }

    /// Replaces the member's broker member (keeping its epoch and session) if its epoch is
    /// still `epoch`; the one replaced (or, when the epoch moved on meanwhile, `new`) is
    /// returned to be dropped once no lock is held.
    pub(crate) fn replace(
        &self,
        group: &str,
        id: &str,
        epoch: i32,
        new: Option<Arc<ShareMember>>,
    ) -> Option<Arc<ShareMember>> {
        let mut members = self.members.lock();
        match members.get_mut(&(group.to_owned(), id.to_owned())) {
            Some(member) if member.epoch == epoch => std::mem::replace(&mut member.member, new),
            _ => new,
        }
    }
}

/// A member as ShareGroupDescribe shows it.
#[derive(Debug, Clone)]
pub(crate) struct MemberSummary {
    /// Its id.
    pub(crate) id: String,
    /// Its member epoch.
    pub(crate) epoch: i32,
    /// The client id it joined with.
    pub(crate) client_id: String,
    /// Its address.
    pub(crate) client_host: String,
    /// The topics it subscribed to.
    pub(crate) topics: Vec<String>,
    /// Its assignment.
    pub(crate) assigned: Vec<(String, u32)>,
}
