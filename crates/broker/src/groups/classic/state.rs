//! One client-assigned group's membership, moved through the phases of Kafka's classic
//! group protocol by the handlers below.
//!
//! ```text
//!   Empty --join--> Joining --every member rejoined, or deadline--> Syncing --leader's sync--> Stable
//!                     ^                                                |                      |
//!                     +---- a member joins, changes, leaves or expires +----------------------+
//! ```
//!
//! Every handler runs under the group's lock and does no I/O. A member waiting for the end
//! of the join phase or for the leader's assignment holds the receiving end of a one-shot
//! channel; whichever handler or tick ends the phase answers every waiter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::BrokerError;
use crate::groups::classic::member::{ClassicSpec, Member, Reply};
use crate::groups::classic::protocol;
use crate::groups::classic::{
    ClassicJoined, ClassicMemberDescription, ClassicSync, ClassicSynced, JoinedMember,
    LeavingMember,
};
use crate::groups::{GroupState, MemberDescription};
use crate::metadata::unique_suffix;

/// The broker's settings a join needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinLimits {
    /// How long the join phase of a group that was empty waits for more members.
    pub(crate) initial_delay: Duration,
    /// Most members (and ids handed out but not yet used) a group may have.
    pub(crate) max_members: usize,
}

/// The phase of a group (Kafka's group states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No members.
    Empty,
    /// Waiting for the members to (re)join, until `deadline` at the latest.
    Joining {
        deadline: Instant,
        delay: Option<InitialDelay>,
    },
    /// The join phase ended; waiting for the leader's assignment until `deadline`.
    Syncing { deadline: Instant },
    /// Every member has its assignment.
    Stable,
}

/// The wait of a join phase that began in an empty group, for more members to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InitialDelay {
    until: Instant,
    step: Duration,
    /// Whether a member joined since the wait was last extended.
    new_members: bool,
}

/// The membership of one client-assigned group.
#[derive(Debug)]
pub(crate) struct ClassicGroup {
    name: String,
    phase: Phase,
    generation: i32,
    protocol_type: Option<String>,
    /// The protocol of the current generation.
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Static members: instance id → member id.
    instances: BTreeMap<String, String>,
    /// Ids handed out with [`BrokerError::MemberIdRequired`], and until when they may join.
    pending: BTreeMap<String, Instant>,
}

impl ClassicGroup {
    /// A group without members.
    pub(crate) fn new(name: String) -> ClassicGroup {
        ClassicGroup {
            name,
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            instances: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// How many members the group has.
    pub(crate) fn member_count(&self) -> usize {
        self.members.len()
    }

    /// No members and no member ids handed out that may still join.
    pub(crate) fn is_idle(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type of the members; empty without members.
    pub(crate) fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or_default()
    }

    /// The phase as a group state.
    pub(crate) fn state(&self) -> GroupState {
        match self.phase {
            Phase::Empty => GroupState::Empty,
            Phase::Joining { .. } => GroupState::PreparingRebalance,
            Phase::Syncing { .. } => GroupState::CompletingRebalance,
            Phase::Stable => GroupState::Stable,
        }
    }

    /// Every topic a member said it consumes.
    pub(crate) fn topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.spec.topics.iter().cloned())
            .collect()
    }

    /// Handles a join (see `docs/consumer-groups.md` for the rules): the answer arrives once
    /// the join phase ends, or at once when the member's view still holds.
    pub(crate) fn join(
        &mut self,
        now: Instant,
        member_id: &str,
        mut spec: ClassicSpec,
        require_known_member_id: bool,
        limits: JoinLimits,
    ) -> Result<Reply<ClassicJoined>, BrokerError> {
        if member_id.is_empty() {
            let replaced = spec
                .instance_id
                .as_ref()
                .and_then(|instance| self.instances.get(instance))
                .cloned();
            self.check_protocols(&spec, &[replaced.as_deref().unwrap_or_default()])?;
            let prefix = match (&spec.instance_id, spec.client_id.as_str()) {
                (Some(instance), _) => instance.as_str(),
                (None, "") => "member",
                (None, client_id) => client_id,
            };
            let new_id = format!("{prefix}-{}", unique_suffix());
            if let Some(old_id) = replaced {
                return Ok(self.replace_static(now, &old_id, new_id, spec));
            }
            if self.members.len() + self.pending.len() >= limits.max_members {
                return Err(BrokerError::GroupFull {
                    group: self.name.clone(),
                    limit: limits.max_members,
                });
            }
            if spec.instance_id.is_none() && require_known_member_id {
                self.pending
                    .insert(new_id.clone(), now + spec.session_timeout);
                return Err(BrokerError::MemberIdRequired {
                    group: self.name.clone(),
                    member_id: new_id,
                });
            }
            return Ok(self.add_member(now, new_id, spec, limits.initial_delay));
        }
        self.check_protocols(&spec, &[member_id])?;
        if spec.instance_id.is_none() && self.pending.remove(member_id).is_some() {
            return Ok(self.add_member(now, member_id.to_owned(), spec, limits.initial_delay));
        }
        self.check_fenced(member_id, spec.instance_id.as_deref())?;
        let is_leader = self.leader.as_deref() == Some(member_id);
        let member = self.member_mut(member_id)?;
        member.last_seen = now;
        let unchanged = member.spec.protocols == spec.protocols;
        let (waiter, reply) = oneshot::channel();
        let answer_now = match self.phase {
            Phase::Syncing { .. } => unchanged,
            // A leader's join always rebalances: it may know of changes the metadata
            // does not show.
            Phase::Stable => unchanged && !is_leader,
            Phase::Joining { .. } | Phase::Empty => false,
        };
        if answer_now {
            // The member lost the answer to its last join: the same again.
            let _ = waiter.send(Ok(self.joined_view(member_id, false)));
            return Ok(reply);
        }
        let busy = self.rebalance_in_progress();
        let member = self.member_mut(member_id)?;
        // A member keeps the instance id it joined with.
        spec.instance_id.clone_from(&member.spec.instance_id);
        member.spec = spec;
        if let Some(earlier) = member.joining.replace(waiter) {
            let _ = earlier.send(Err(busy));
        }
        self.prepare_rebalance(now, Duration::ZERO);
        self.try_complete_join(now);
        Ok(reply)
    }

    /// Handles a sync: the leader's sets every member's assignment; the answer (the
    /// member's assignment) arrives once the leader's sync did.
    pub(crate) fn sync(
        &mut self,
        now: Instant,
        request: ClassicSync,
    ) -> Result<Reply<ClassicSynced>, BrokerError> {
        let member_id = request.member_id.as_str();
        self.check_member(
            member_id,
            request.instance_id.as_deref(),
            request.generation,
        )?;
        let mismatch = |asked: &Option<String>, actual: &Option<String>, what: &str| {
            asked
                .as_ref()
                .filter(|asked| Some(*asked) != actual.as_ref())
                .map(|asked| BrokerError::InconsistentGroupProtocol {
                    group: self.name.clone(),
                    reason: format!(
                        "the sync names {what} {asked:?} but the generation's is {:?}",
                        actual.as_deref().unwrap_or_default()
                    ),
                })
        };
        if let Some(err) = mismatch(&request.protocol_type, &self.protocol_type, "protocol type")
            .or_else(|| mismatch(&request.protocol, &self.protocol, "protocol"))
        {
            return Err(err);
        }
        self.member_mut(member_id)?.last_seen = now;
        let (waiter, reply) = oneshot::channel();
        match self.phase {
            Phase::Joining { .. } | Phase::Empty => return Err(self.rebalance_in_progress()),
            Phase::Stable => {
                let _ = waiter.send(Ok(self.synced(member_id)));
            }
            Phase::Syncing { .. } => {
                let busy = self.rebalance_in_progress();
                let member = self.member_mut(member_id)?;
                member.synced = true;
                if let Some(earlier) = member.syncing.replace(waiter) {
                    let _ = earlier.send(Err(busy));
                }
                if self.leader.as_deref() == Some(member_id) {
                    self.assign(request.assignments);
                }
            }
        }
        Ok(reply)
    }

    /// Handles a heartbeat: fine while the generation holds, [`BrokerError::RebalanceInProgress`]
    /// once a join phase began (the member must rejoin).
    pub(crate) fn heartbeat(
        &mut self,
        now: Instant,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), BrokerError> {
        self.check_member(member_id, instance_id, generation)?;
        self.member_mut(member_id)?.last_seen = now;
        match self.phase {
            Phase::Joining { .. } | Phase::Empty => Err(self.rebalance_in_progress()),
            Phase::Syncing { .. } | Phase::Stable => Ok(()),
        }
    }

    /// Removes a member (by its id, or by its instance id when it has one); the others
    /// rebalance.
    pub(crate) fn leave(
        &mut self,
        now: Instant,
        leaving: &LeavingMember,
    ) -> Result<(), BrokerError> {
        let member_id = match &leaving.instance_id {
            Some(instance) => {
                let current = self
                    .instances
                    .get(instance)
                    .cloned()
                    .ok_or_else(|| self.unknown_member(&leaving.member_id))?;
                if !leaving.member_id.is_empty() && leaving.member_id != current {
                    return Err(self.fenced(&leaving.member_id, instance));
                }
                current
            }
            None => {
                if self.pending.remove(&leaving.member_id).is_some() {
                    self.try_complete_join(now);
                    return Ok(());
                }
                if !self.members.contains_key(&leaving.member_id) {
                    return Err(self.unknown_member(&leaving.member_id));
                }
                leaving.member_id.clone()
            }
        };
        tracing::info!(group = %self.name, member = %member_id, "member left");
        self.remove_member(&member_id);
        self.members_removed(now);
        Ok(())
    }

    /// Checks an offset commit: from a member of the current generation, outside a sync
    /// phase; or, with a negative generation, from outside any membership while the group
    /// has no members. A member's commit counts as a sign of life.
    pub(crate) fn check_commit(
        &mut self,
        now: Instant,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), BrokerError> {
        if self.members.is_empty() {
            return match (generation < 0, member_id.is_empty()) {
                (true, _) => Ok(()),
                (false, true) => Err(self.illegal_generation(generation)),
                (false, false) => Err(self.unknown_member(member_id)),
            };
        }
        self.check_member(member_id, instance_id, generation)?;
        self.member_mut(member_id)?.last_seen = now;
        match self.phase {
            Phase::Syncing { .. } => Err(self.rebalance_in_progress()),
            Phase::Joining { .. } | Phase::Stable | Phase::Empty => Ok(()),
        }
    }

    /// Periodic work: forgets unused member ids, removes silent members and those that did
    /// not rejoin or sync in time, and ends a join phase whose time has come.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.pending.retain(|_, until| now < *until);
        let mut gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.is_silent_since(now))
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in &gone {
            tracing::info!(group = %self.name, member = %member_id, "member expired");
        }
        if let Phase::Syncing { deadline } = self.phase
            && now >= deadline
        {
            for (member_id, _) in self.members.iter().filter(|(_, m)| !m.synced) {
                tracing::warn!(group = %self.name, member = %member_id, "member did not ask for its assignment in time");
                gone.push(member_id.clone());
            }
        }
        for member_id in &gone {
            self.remove_member(member_id);
        }
        if gone.is_empty() {
            self.try_complete_join(now);
        } else {
            self.members_removed(now);
        }
    }

    /// Answers every waiting member with [`BrokerError::ShuttingDown`].
    pub(crate) fn end_all(&mut self) {
        for member in self.members.values_mut() {
            member.fail_waiters(|| BrokerError::ShuttingDown);
        }
    }

    /// Every member as Kafka describes it, sorted by id.
    pub(crate) fn describe(&self) -> (String, Vec<ClassicMemberDescription>) {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = self
            .members
            .iter()
            .map(|(id, m)| ClassicMemberDescription {
                member_id: id.clone(),
                instance_id: m.spec.instance_id.clone(),
                client_id: m.spec.client_id.clone(),
                client_host: m.spec.client_host.clone(),
                metadata: m.spec.metadata(&protocol).cloned().unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        (protocol, members)
    }

    /// Every member in the protocol-neutral form: the broker does not know their
    /// partitions, which only their assignments (opaque to it) name.
    pub(crate) fn describe_members(&self) -> impl Iterator<Item = MemberDescription> + '_ {
        self.members.iter().map(|(id, m)| MemberDescription {
            member_id: id.clone(),
            instance_id: m.spec.instance_id.clone(),
            client_host: m.spec.client_host.clone(),
            topics: m.spec.topics.iter().cloned().collect(),
            assigned: Vec::new(),
            revoking: Vec::new(),
            connected: true,
            session_timeout: m.spec.session_timeout,
        })
    }

    /// Refuses a member whose protocols cannot go with the others' (see
    /// [`protocol::incompatibility`]); `excluding` are itself, or the static member it
    /// replaces.
    fn check_protocols(&self, spec: &ClassicSpec, excluding: &[&str]) -> Result<(), BrokerError> {
        let group_type = self
            .protocol_type
            .as_deref()
            .filter(|_| !self.members.is_empty());
        let others: Vec<&ClassicSpec> = self
            .members
            .iter()
            .filter(|(id, _)| !excluding.contains(&id.as_str()))
            .map(|(_, m)| &m.spec)
            .collect();
        match protocol::incompatibility(spec, group_type, &others) {
            Some(reason) => Err(BrokerError::InconsistentGroupProtocol {
                group: self.name.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Refuses a request naming a static member's instance id with another member id.
    fn check_fenced(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), BrokerError> {
        match instance_id {
            Some(instance)
                if self
                    .instances
                    .get(instance)
                    .is_some_and(|current| current != member_id) =>
            {
                Err(self.fenced(member_id, instance))
            }
            _ => Ok(()),
        }
    }

    /// Checks that a request comes from a current member of the current generation.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), BrokerError> {
        self.check_fenced(member_id, instance_id)?;
        if !self.members.contains_key(member_id) {
            return Err(self.unknown_member(member_id));
        }
        if generation != self.generation {
            return Err(self.illegal_generation(generation));
        }
        Ok(())
    }

    /// Adds a member that waits for the join phase, starting one if none runs.
    fn add_member(
        &mut self,
        now: Instant,
        member_id: String,
        spec: ClassicSpec,
        initial_delay: Duration,
    ) -> Reply<ClassicJoined> {
        let (waiter, reply) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(spec.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if let Phase::Joining {
            delay: Some(delay), ..
        } = &mut self.phase
        {
            delay.new_members = true;
        }
        if let Some(instance) = &spec.instance_id {
            self.instances.insert(instance.clone(), member_id.clone());
        }
        tracing::info!(group = %self.name, member = %member_id, "member joined");
        self.members
            .insert(member_id, Member::new(spec, now, Some(waiter)));
        self.prepare_rebalance(now, initial_delay);
        self.try_complete_join(now);
        reply
    }

    /// A static member joins with a new id in place of `old_id`, which is fenced from now
    /// on. In a stable group whose protocol and the member's metadata for it are
    /// unchanged, it takes the old member's place and assignment without a rebalance.
    fn replace_static(
        &mut self,
        now: Instant,
        old_id: &str,
        new_id: String,
        spec: ClassicSpec,
    ) -> Reply<ClassicJoined> {
        let instance = spec.instance_id.clone().unwrap_or_default();
        let Some(mut old) = self.members.remove(old_id) else {
            return self.add_member(now, new_id, spec, Duration::ZERO);
        };
        old.fail_waiters(|| self.fenced(old_id, &instance));
        let unchanged = self.phase == Phase::Stable
            && self.protocol.as_deref().is_some_and(|protocol| {
                spec.metadata(protocol).is_some()
                    && spec.metadata(protocol) == old.spec.metadata(protocol)
            });
        self.instances.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        tracing::info!(group = %self.name, member = %new_id, replaced = %old_id, "static member rejoined");
        let mut member = Member::new(spec, now, None);
        member.assignment = old.assignment;
        member.synced = old.synced;
        let (waiter, reply) = oneshot::channel();
        if unchanged {
            self.members.insert(new_id.clone(), member);
            let _ = waiter.send(Ok(self.joined_view(&new_id, true)));
        } else {
            member.joining = Some(waiter);
            self.members.insert(new_id, member);
            self.prepare_rebalance(now, Duration::ZERO);
            self.try_complete_join(now);
        }
        reply
    }

    /// Starts a join phase unless one runs: answers the members waiting for their
    /// assignment with [`BrokerError::RebalanceInProgress`] and drops the assignments.
    /// A group that was empty waits `initial_delay` for more members, extended while they
    /// keep coming, up to the rebalance timeout.
    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        let timeout = self
            .members
            .values()
            .map(|m| m.spec.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.phase = match self.phase {
            Phase::Joining { .. } => return,
            Phase::Empty => Phase::Joining {
                deadline: now + timeout.max(initial_delay),
                delay: Some(InitialDelay {
                    until: now + initial_delay,
                    step: initial_delay,
                    new_members: false,
                }),
            },
            Phase::Syncing { .. } | Phase::Stable => {
                for member in self.members.values_mut() {
                    member.assignment = Bytes::new();
                    if let Some(waiter) = member.syncing.take() {
                        let _ = waiter.send(Err(BrokerError::RebalanceInProgress {
                            group: self.name.clone(),
                        }));
                    }
                }
                Phase::Joining {
                    deadline: now + timeout,
                    delay: None,
                }
            }
        };
        tracing::debug!(group = %self.name, generation = self.generation, "preparing rebalance");
    }

    /// Ends the join phase if its time has come: every member (and every id handed out)
    /// has joined, or, after a group was empty, the initial delay has passed without new
    /// members; or the deadline has passed.
    fn try_complete_join(&mut self, now: Instant) {
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.joining.is_some());
        let Phase::Joining { deadline, delay } = &mut self.phase else {
            return;
        };
        let ready = match delay {
            None => all_joined,
            Some(delay) if now < delay.until => false,
            Some(delay) if delay.new_members && now < *deadline => {
                delay.new_members = false;
                delay.until = (now + delay.step).min(*deadline);
                false
            }
            Some(_) => true,
        };
        if ready || now >= *deadline {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, a new generation
    /// begins with a protocol every member supports, and every member is told.
    fn complete_join(&mut self, now: Instant) {
        let late: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.joining.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in &late {
            tracing::info!(group = %self.name, member = %member_id, "member did not rejoin in time");
            self.remove_member(member_id);
        }
        self.generation = self.generation.checked_add(1).unwrap_or(1);
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.protocol_type = None;
            self.protocol = None;
            self.leader = None;
            return;
        }
        if !self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let members: Vec<&ClassicSpec> = self.members.values().map(|m| &m.spec).collect();
        let leader = self
            .leader
            .as_ref()
            .and_then(|leader| self.members.get(leader))
            .map(|m| &m.spec);
        self.protocol = Some(protocol::select(&members, leader));
        let timeout = self
            .members
            .values()
            .map(|m| m.spec.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.phase = Phase::Syncing {
            deadline: now + timeout,
        };
        tracing::debug!(group = %self.name, generation = self.generation, members = self.members.len(), "join phase completed");
        let views: Vec<ClassicJoined> = self
            .members
            .keys()
            .map(|id| self.joined_view(id, false))
            .collect();
        for (member, view) in self.members.values_mut().zip(views) {
            member.last_seen = now;
            member.synced = false;
            if let Some(waiter) = member.joining.take() {
                let _ = waiter.send(Ok(view));
            }
        }
    }

    /// Sets every member's assignment from the leader's and answers the waiting members:
    /// the group is stable.
    fn assign(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for (id, member) in &mut self.members {
            member.assignment = given.remove(id).unwrap_or_default();
        }
        if !given.is_empty() {
            tracing::debug!(group = %self.name, ignored = given.len(), "the leader assigned to ids that are not members");
        }
        self.phase = Phase::Stable;
        let views: Vec<ClassicSynced> = self.members.keys().map(|id| self.synced(id)).collect();
        for (member, view) in self.members.values_mut().zip(views) {
            if let Some(waiter) = member.syncing.take() {
                let _ = waiter.send(Ok(view));
            }
        }
        tracing::debug!(group = %self.name, generation = self.generation, "stable");
    }

    /// After members were removed: a stable or syncing group rebalances; a join phase may
    /// now be complete.
    fn members_removed(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Stable | Phase::Syncing { .. }) {
            self.prepare_rebalance(now, Duration::ZERO);
        }
        self.try_complete_join(now);
    }

    /// Removes a member, answering whatever it waits for with
    /// [`BrokerError::UnknownMember`]; a leader leaving hands over to another member.
    fn remove_member(&mut self, member_id: &str) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        member.fail_waiters(|| self.unknown_member(member_id));
        if let Some(instance) = &member.spec.instance_id
            && self
                .instances
                .get(instance)
                .is_some_and(|id| id == member_id)
        {
            self.instances.remove(instance);
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// What a member is told of the current generation.
    fn joined_view(&self, member_id: &str, skip_assignment: bool) -> ClassicJoined {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        let members = if is_leader {
            self.members
                .iter()
                .map(|(id, m)| JoinedMember {
                    member_id: id.clone(),
                    instance_id: m.spec.instance_id.clone(),
                    metadata: m.spec.metadata(&protocol).cloned().unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        ClassicJoined {
            generation: self.generation,
            protocol_type: self.protocol_type().to_owned(),
            protocol,
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            skip_assignment: skip_assignment && is_leader,
            members,
        }
    }

    /// A member's answer to its sync in a stable group.
    fn synced(&self, member_id: &str) -> ClassicSynced {
        ClassicSynced {
            protocol_type: self.protocol_type().to_owned(),
            protocol: self.protocol.clone().unwrap_or_default(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    fn member_mut(&mut self, member_id: &str) -> Result<&mut Member, BrokerError> {
        let unknown = self.unknown_member(member_id);
        self.members.get_mut(member_id).ok_or(unknown)
    }

    fn unknown_member(&self, member_id: &str) -> BrokerError {
        BrokerError::UnknownMember {
            group: self.name.clone(),
            member_id: member_id.to_owned(),
        }
    }

    fn illegal_generation(&self, generation: i32) -> BrokerError {
        BrokerError::IllegalGeneration {
            group: self.name.clone(),
            generation,
            current: self.generation,
        }
    }

    fn rebalance_in_progress(&self) -> BrokerError {
        BrokerError::RebalanceInProgress {
            group: self.name.clone(),
        }
    }

    fn fenced(&self, member_id: &str, instance_id: &str) -> BrokerError {
        BrokerError::MemberFenced {
            group: self.name.clone(),
            member_id: member_id.to_owned(),
            instance_id: instance_id.to_owned(),
        }
    }
}
