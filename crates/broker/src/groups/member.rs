//! The handle of one group member: its assignment as it changes, and what it sends.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::groups::coordinator::Group;
use crate::groups::state::{MemberEnd, MemberView};
use crate::groups::{MemberAssignment, OffsetReset, TopicPartition};
use crate::{Broker, BrokerError, OffsetSpec};

/// One member of a consumer group, from [`Broker::join_group`].
///
/// Dropping it is the member's stream closing: a dynamic member leaves the group at once
/// (its partitions go to the others); a static member keeps its partitions, unconsumed,
/// until a member with its instance id joins or its session timeout passes.
#[derive(Debug)]
pub struct GroupMember {
    broker: Arc<Broker>,
    group: Arc<Group>,
    member_id: String,
    instance_id: Option<String>,
    view: watch::Receiver<MemberView>,
    session_timeout: Duration,
    heartbeat_interval: Duration,
}

impl GroupMember {
    pub(crate) fn new(
        broker: Arc<Broker>,
        group: Arc<Group>,
        member_id: String,
        instance_id: Option<String>,
        view: watch::Receiver<MemberView>,
        session_timeout: Duration,
    ) -> GroupMember {
        let heartbeat_interval = broker.groups.config.heartbeat_interval(session_timeout);
        GroupMember {
            broker,
            group,
            member_id,
            instance_id,
            view,
            session_timeout,
            heartbeat_interval,
        }
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group.name
    }

    /// This member's id, which commits name.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Its static membership id, if it has one.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }

    /// How long the member may go unheard before it loses its partitions.
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    /// How often the member should give a sign of life.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// The member's current partitions, marking them seen; fails once the member is out of
    /// the group (expired, replaced, or the broker is shutting down).
    pub fn assignment(&mut self) -> Result<MemberAssignment, BrokerError> {
        let view = self.view.borrow_and_update().clone();
        self.active(view)
    }

    /// Waits until the member's partitions change (or it is out of the group), then returns
    /// them as [`GroupMember::assignment`] does.
    pub async fn changed(&mut self) -> Result<MemberAssignment, BrokerError> {
        if self.view.changed().await.is_err() {
            return Err(self.unknown());
        }
        self.assignment()
    }

    /// A handle that records this member's signs of life, for another task than the one
    /// holding the member.
    pub fn keepalive(&self) -> Keepalive {
        Keepalive {
            group: Arc::clone(&self.group),
            member_id: self.member_id.clone(),
        }
    }

    /// Commits offsets of partitions this member owns, as of `generation`; see
    /// [`Broker::commit_offsets`]. Counts as a sign of life.
    pub async fn commit(
        &self,
        generation: u64,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<(), BrokerError> {
        self.broker
            .commit_offsets(&self.group.name, generation, &self.member_id, offsets)
            .await
    }

    /// Releases partitions being revoked from this member (after committing them), so they
    /// can go to their new owner. Partitions not being revoked are ignored. Counts as a sign
    /// of life.
    pub fn release(&self, partitions: &[TopicPartition]) -> Result<(), BrokerError> {
        self.group
            .data
            .lock()
            .revoke_ack(&self.member_id, partitions, Instant::now())
    }

    /// Where this member starts reading a partition: the group's committed offset, or the
    /// member's `auto_offset_reset` when there is none or it is outside the partition's
    /// `[log_start_offset, high_watermark]`.
    pub fn start_offset(&self, tp: &TopicPartition) -> Result<u64, BrokerError> {
        let (committed, reset) = {
            let data = self.group.data.lock();
            let committed = data.offsets.get(tp).map(|c| c.offset);
            (committed, data.reset_policy(&self.member_id)?)
        };
        let lookup = |spec| {
            self.broker
                .list_offset(&tp.topic, tp.partition, spec)
                .map(Option::unwrap_or_default)
        };
        let (log_start, high_watermark) =
            (lookup(OffsetSpec::Earliest)?, lookup(OffsetSpec::Latest)?);
        match committed {
            Some(offset) if (log_start..=high_watermark).contains(&offset) => Ok(offset),
            committed => {
                if let Some(offset) = committed {
                    tracing::warn!(
                        group = %self.group.name, partition = %tp, offset, log_start, high_watermark,
                        ?reset, "committed offset is out of range; resetting"
                    );
                }
                Ok(match reset {
                    OffsetReset::Earliest => log_start,
                    OffsetReset::Latest => high_watermark,
                })
            }
        }
    }

    fn active(&self, view: MemberView) -> Result<MemberAssignment, BrokerError> {
        match view {
            MemberView::Active(assignment) => Ok(assignment),
            MemberView::Ended(MemberEnd::Expired) => Err(BrokerError::SessionExpired {
                group: self.group.name.clone(),
                member_id: self.member_id.clone(),
            }),
            MemberView::Ended(MemberEnd::Fenced) => Err(BrokerError::MemberFenced {
                group: self.group.name.clone(),
                member_id: self.member_id.clone(),
                instance_id: self.instance_id.clone().unwrap_or_default(),
            }),
            MemberView::Ended(MemberEnd::ShuttingDown) => Err(BrokerError::ShuttingDown),
        }
    }

    fn unknown(&self) -> BrokerError {
        BrokerError::UnknownMember {
            group: self.group.name.clone(),
            member_id: self.member_id.clone(),
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        let topics = |topic: &str| self.broker.partition_count(topic).ok();
        self.group
            .data
            .lock()
            .disconnect(&self.member_id, Instant::now(), &topics);
        self.broker.groups.forget_if_empty(&self.group);
    }
}

/// Records the signs of life of a member (see [`GroupMember::keepalive`]); dropping it does
/// not affect the membership.
#[derive(Debug, Clone)]
pub struct Keepalive {
    group: Arc<Group>,
    member_id: String,
}

impl Keepalive {
    /// Records a sign of life; fails once the member is out of the group.
    pub fn beat(&self) -> Result<(), BrokerError> {
        self.group
            .data
            .lock()
            .touch(&self.member_id, Instant::now())
    }
}
