//! The client-assigned group operations of [`Broker`], one per Kafka classic group request.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;

use crate::groups::classic::{
    ClassicCommit, ClassicGroupDescription, ClassicJoin, ClassicJoined, ClassicSpec, ClassicSync,
    ClassicSynced, JoinLimits, LeavingMember, Reply,
};
use crate::groups::coordinator::Group;
use crate::groups::validate_group_name;
use crate::{Broker, BrokerError};

impl Broker {
    /// Joins a client-assigned group, or rejoins it (Kafka's JoinGroup), and waits until the
    /// join phase ends: once every member has rejoined (a group that was empty waits
    /// `groups.initial_rebalance_delay` for more), or the longest rebalance timeout of its
    /// members has passed (those that did not rejoin are removed). A rejoin that changes
    /// nothing in a stable group, or a static member taking its own place (see
    /// [`ClassicJoin::instance_id`]), is answered at once.
    ///
    /// Fails with [`BrokerError::MemberIdRequired`] (carrying the new id) for a new dynamic
    /// member when `require_known_member_id` is set; [`BrokerError::UnknownMember`] for an
    /// id that is not a member; [`BrokerError::MemberFenced`] for an instance id held by
    /// another member id; [`BrokerError::InconsistentGroupProtocol`] when the protocol type
    /// differs from the group's or no protocol is shared with every member;
    /// [`BrokerError::GroupKindMismatch`] while the group has server-assigned members;
    /// [`BrokerError::GroupFull`] past `groups.max_members`; [`BrokerError::InvalidJoin`]
    /// for a timeout outside the broker's limits; [`BrokerError::RebalanceInProgress`] when
    /// the same member joins again before the answer (the earlier join gets it).
    pub async fn join_classic(
        self: &Arc<Self>,
        request: ClassicJoin,
    ) -> Result<ClassicJoined, BrokerError> {
        let coordinator = &self.groups;
        coordinator.check_running()?;
        let group = request.group.as_str();
        validate_group_name(group)?;
        if let Some(instance) = &request.instance_id {
            validate_group_name(instance).map_err(|e| BrokerError::InvalidJoin {
                group: group.to_owned(),
                reason: format!("instance id: {e}"),
            })?;
        }
        let mut names = BTreeSet::new();
        if let Some((name, _)) = request
            .protocols
            .iter()
            .find(|(name, _)| !names.insert(name.as_str()))
        {
            return Err(BrokerError::invalid_request(
                "protocols",
                format!("protocol {name:?} is listed twice"),
            ));
        }
        let config = &coordinator.config;
        let spec = ClassicSpec {
            session_timeout: config.session_timeout(group, request.session_timeout)?,
            rebalance_timeout: config.rebalance_timeout(group, request.rebalance_timeout)?,
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            topics: request.topics.into_iter().collect(),
        };
        let limits = JoinLimits {
            initial_delay: config.initial_rebalance_delay,
            max_members: config.max_members,
        };
        let reply = coordinator.with_group(group, |_, data| {
            coordinator.check_running()?;
            data.join_classic(
                Instant::now(),
                &request.member_id,
                spec,
                request.require_known_member_id,
                limits,
            )
        });
        // Also for a member id handed out: the timer forgets it when it goes unused.
        coordinator.start_ticker(self);
        self.classic_reply(reply?).await
    }

    /// Asks for a member's assignment in its generation (Kafka's SyncGroup); the leader's
    /// request carries everyone's. Waits, while the group completes its rebalance, until the
    /// leader's has arrived; in a stable group it answers at once.
    ///
    /// Fails with [`BrokerError::UnknownMember`], [`BrokerError::MemberFenced`],
    /// [`BrokerError::IllegalGeneration`], [`BrokerError::InconsistentGroupProtocol`] (the
    /// protocol type or protocol named is not the generation's), or
    /// [`BrokerError::RebalanceInProgress`] when a join phase began (before or while it
    /// waits): the member must rejoin.
    pub async fn sync_classic(&self, request: ClassicSync) -> Result<ClassicSynced, BrokerError> {
        self.groups.check_running()?;
        validate_group_name(&request.group)?;
        let group = self.classic_group(&request.group, &request.member_id)?;
        let reply = group.data.lock().classic.sync(Instant::now(), request)?;
        self.classic_reply(reply).await
    }

    /// A member's sign of life (Kafka's Heartbeat). Fails with
    /// [`BrokerError::RebalanceInProgress`] once a join phase began (the member must
    /// rejoin), or as [`Broker::sync_classic`] does for an unknown, fenced or stale member.
    /// Answers at once.
    pub fn heartbeat_classic(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), BrokerError> {
        self.groups.check_running()?;
        validate_group_name(group)?;
        self.classic_group(group, member_id)?
            .data
            .lock()
            .classic
            .heartbeat(Instant::now(), generation, member_id, instance_id)
    }

    /// Removes members from a group (Kafka's LeaveGroup; several at once as version 3 and
    /// later), by member id or, for static members, by instance id (with the member id
    /// empty or the current one); the others rebalance. Returns one result per member:
    /// [`BrokerError::UnknownMember`] for one that is not in the group,
    /// [`BrokerError::MemberFenced`] for an instance id held by another member id. Answers
    /// at once.
    pub fn leave_classic(
        &self,
        group: &str,
        members: &[LeavingMember],
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let coordinator = &self.groups;
        coordinator.check_running()?;
        validate_group_name(group)?;
        let Some(handle) = coordinator.existing(group) else {
            return Ok(members
                .iter()
                .map(|m| Err(unknown_member(group, &m.member_id)))
                .collect());
        };
        let results = {
            let mut data = handle.data.lock();
            let now = Instant::now();
            members
                .iter()
                .map(|leaving| data.classic.leave(now, leaving))
                .collect()
        };
        coordinator.forget_if_empty(&handle);
        Ok(results)
    }

    /// Commits offsets (Kafka's OffsetCommit) and returns once they are durable, in the
    /// offsets log every kind of group shares. Accepted from a member of the current
    /// generation while the group is not completing a rebalance (counting as its sign of
    /// life), and, with a negative generation, from a consumer outside any membership while
    /// the group has no members.
    ///
    /// Fails with [`BrokerError::UnknownMember`] (also for a commit outside any membership
    /// while the group has members), [`BrokerError::MemberFenced`],
    /// [`BrokerError::IllegalGeneration`], [`BrokerError::RebalanceInProgress`] while the
    /// members wait for the leader's assignment, or as [`Broker::commit_offsets`] does for
    /// the offsets (a topic or partition that does not exist, an offset past the high
    /// watermark). Nothing is committed when it fails.
    pub async fn commit_classic(&self, request: &ClassicCommit) -> Result<(), BrokerError> {
        self.commit_with(&request.group, &request.offsets, |data, now| {
            data.check_classic_commit(
                now,
                request.generation,
                &request.member_id,
                request.instance_id.as_deref(),
            )
        })
        .await
    }

    /// A group as Kafka's DescribeGroups shows it: its state, protocol and members, with
    /// their metadata and assignments. A server-assigned group is described with its
    /// members and an empty protocol. Fails with [`BrokerError::GroupNotFound`] for a
    /// group without members or committed offsets (Kafka describes it as `Dead`). Answers
    /// at once.
    pub fn describe_classic(&self, group: &str) -> Result<ClassicGroupDescription, BrokerError> {
        validate_group_name(group)?;
        let handle = self
            .groups
            .existing(group)
            .ok_or_else(|| BrokerError::GroupNotFound {
                group: group.to_owned(),
            })?;
        let data = handle.data.lock();
        Ok(data.describe_classic())
    }

    /// The group a member of it names, or [`BrokerError::UnknownMember`].
    fn classic_group(&self, group: &str, member_id: &str) -> Result<Arc<Group>, BrokerError> {
        self.groups
            .existing(group)
            .ok_or_else(|| unknown_member(group, member_id))
    }

    /// Waits for a member's answer, or until the broker drains.
    async fn classic_reply<T>(&self, reply: Reply<T>) -> Result<T, BrokerError> {
        let draining = self.draining();
        tokio::select! {
            biased;
            answer = reply => answer.unwrap_or(Err(BrokerError::ShuttingDown)),
            () = draining.wait() => Err(BrokerError::ShuttingDown),
        }
    }
}

fn unknown_member(group: &str, member_id: &str) -> BrokerError {
    BrokerError::UnknownMember {
        group: group.to_owned(),
        member_id: member_id.to_owned(),
    }
}
