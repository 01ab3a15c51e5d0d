//! One group's membership, assignment and ownership state, and the events that change it.
//!
//! Every handler runs under the group's lock, does no I/O, and ends by publishing each
//! member's view. See `docs/consumer-groups.md` for the state machine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::BrokerError;
use crate::groups::assignment::assign;
use crate::groups::classic::{
    ClassicGroup, ClassicGroupDescription, ClassicJoined, ClassicMemberDescription, ClassicSpec,
    JoinLimits, Reply,
};
use crate::groups::offsets_state::Offsets;
use crate::groups::{
    GroupKind, GroupState, MemberAssignment, MemberDescription, OffsetReset, TopicPartition,
};
use crate::journal::queue::PendingWrites;
use crate::metadata::unique_suffix;

/// Partition counts of topics, by name; `None` for a topic that does not exist.
pub(crate) type TopicLookup<'a> = &'a dyn Fn(&str) -> Option<u32>;

/// What a member's stream is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberView {
    /// The member's current partitions.
    Active(MemberAssignment),
    /// The member is out of the group.
    Ended(MemberEnd),
}

/// Why a member is out of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberEnd {
    /// Not heard from within its session timeout.
    Expired,
    /// Replaced by a newer member with the same instance id.
    Fenced,
    /// The broker is shutting down.
    ShuttingDown,
}

/// What a joining member brings.
#[derive(Debug, Clone)]
pub(crate) struct MemberSpec {
    pub(crate) instance_id: Option<String>,
    pub(crate) client_host: String,
    pub(crate) topics: BTreeSet<String>,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) reset: OffsetReset,
}

#[derive(Debug)]
struct Member {
    spec: MemberSpec,
    last_seen: Instant,
    /// `false` once the stream of a static member closed.
    connected: bool,
    view: watch::Sender<MemberView>,
}

/// Who holds a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ownership {
    member: String,
    /// The generation in which it was granted.
    since: u64,
    /// Set while the partition is being revoked: when it is released anyway.
    revoking: Option<Instant>,
}

/// A member that joined: its id and the receiver of its views.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) member_id: String,
    pub(crate) view: watch::Receiver<MemberView>,
}

/// The state of one group: the membership of its server-assigned members, that of its
/// client-assigned ones (one of the two is empty), and the committed offsets both share.
#[derive(Debug)]
pub(crate) struct GroupData {
    name: String,
    generation: u64,
    members: BTreeMap<String, Member>,
    /// Static members: instance id → member id.
    instances: BTreeMap<String, String>,
    /// Partition counts of the subscribed topics at the last rebalance.
    topics: BTreeMap<String, u32>,
    /// Where the last rebalance wants each partition.
    target: BTreeMap<TopicPartition, String>,
    /// Who holds each partition now.
    owners: BTreeMap<TopicPartition, Ownership>,
    /// The client-assigned members.
    pub(crate) classic: ClassicGroup,
    /// Durable committed offsets.
    pub(crate) offsets: Offsets,
    /// Offset writes waiting or in progress.
    pub(crate) store: PendingWrites,
}

impl GroupData {
    /// A group without members holding `offsets`.
    pub(crate) fn new(name: String, offsets: Offsets) -> GroupData {
        GroupData {
            classic: ClassicGroup::new(name.clone()),
            name,
            generation: 0,
            members: BTreeMap::new(),
            instances: BTreeMap::new(),
            topics: BTreeMap::new(),
            target: BTreeMap::new(),
            owners: BTreeMap::new(),
            offsets,
            store: PendingWrites::default(),
        }
    }

    /// The current generation (of the client-assigned members while there are some).
    pub(crate) fn generation(&self) -> u64 {
        match self.kind() {
            Some(GroupKind::ClientAssigned) => {
                u64::try_from(self.classic.generation()).unwrap_or(0)
            }
            _ => self.generation,
        }
    }

    /// How many members the group has (connected or not), of either kind.
    pub(crate) fn member_count(&self) -> usize {
        self.members.len() + self.classic.member_count()
    }

    /// Which kind of members the group has, if any.
    pub(crate) fn kind(&self) -> Option<GroupKind> {
        if !self.members.is_empty() {
            Some(GroupKind::ServerAssigned)
        } else if self.classic.member_count() > 0 {
            Some(GroupKind::ClientAssigned)
        } else {
            None
        }
    }

    /// Whether the group exists for those asking: it has members or committed offsets.
    pub(crate) fn exists(&self) -> bool {
        self.member_count() > 0 || !self.offsets.is_empty()
    }

    /// Whether the timer has work here: members to expire or member ids to forget.
    pub(crate) fn needs_ticks(&self) -> bool {
        !self.members.is_empty() || !self.classic.is_idle()
    }

    /// The protocol type of the client-assigned members; empty without any.
    pub(crate) fn protocol_type(&self) -> &str {
        self.classic.protocol_type()
    }

    /// Every topic a client-assigned member said it consumes.
    pub(crate) fn client_assigned_topics(&self) -> BTreeSet<String> {
        self.classic.topics()
    }

    /// Every topic some member subscribes to.
    pub(crate) fn subscribed_topics(&self) -> impl Iterator<Item = String> + '_ {
        self.members
            .values()
            .flat_map(|m| m.spec.topics.iter().cloned())
    }

    /// No members, no member ids handed out, no committed offsets, no offset writes:
    /// nothing worth keeping.
    pub(crate) fn is_forgettable(&self) -> bool {
        self.members.is_empty()
            && self.classic.is_idle()
            && self.offsets.is_empty()
            && self.store.is_idle()
    }

    /// Adds a member, or replaces the static member with the same instance id; rebalances
    /// unless the replacement keeps the same topics. Refused while the group has
    /// client-assigned members, and for a new member past `max_members`.
    pub(crate) fn join(
        &mut self,
        now: Instant,
        spec: MemberSpec,
        topics: TopicLookup<'_>,
        max_members: usize,
    ) -> Result<Joined, BrokerError> {
        if self.classic.member_count() > 0 {
            return Err(BrokerError::GroupKindMismatch {
                group: self.name.clone(),
                kind: GroupKind::ClientAssigned,
            });
        }
        let replaced = spec
            .instance_id
            .as_ref()
            .and_then(|instance| self.instances.get(instance).cloned());
        if replaced.is_none() && self.members.len() >= max_members {
            return Err(BrokerError::GroupFull {
                group: self.name.clone(),
                limit: max_members,
            });
        }
        let prefix = spec.instance_id.as_deref().unwrap_or("member");
        let member_id = format!("{prefix}-{}", unique_suffix());
        let same_topics = replaced
            .as_ref()
            .and_then(|old| self.members.get(old))
            .is_some_and(|old| old.spec.topics == spec.topics);
        let (sender, view) = watch::channel(MemberView::Active(MemberAssignment::default()));
        if let Some(instance) = &spec.instance_id {
            self.instances.insert(instance.clone(), member_id.clone());
        }
        let member = Member {
            spec,
            last_seen: now,
            connected: true,
            view: sender,
        };
        self.members.insert(member_id.clone(), member);
        match replaced {
            Some(old_id) => {
                if let Some(old) = self.members.remove(&old_id) {
                    old.view.send_replace(MemberView::Ended(MemberEnd::Fenced));
                }
                // The new member takes the old one's place: its ownerships (re-stamped
                // with a new generation, so the old member's generation cannot be reused)
                // and its target.
                self.generation += 1;
                for ownership in self.owners.values_mut() {
                    if ownership.member == old_id {
                        ownership.member.clone_from(&member_id);
                        ownership.since = self.generation;
                    }
                }
                for target in self.target.values_mut() {
                    if *target == old_id {
                        target.clone_from(&member_id);
                    }
                }
                tracing::info!(group = %self.name, member = %member_id, replaced = %old_id, "static member rejoined");
                if same_topics {
                    self.publish();
                } else {
                    self.rebalance(now, topics);
                }
            }
            None => {
                tracing::info!(group = %self.name, member = %member_id, "member joined");
                self.rebalance(now, topics);
            }
        }
        Ok(Joined { member_id, view })
    }

    /// A client-assigned member joins (see [`ClassicGroup::join`]); refused while the group
    /// has server-assigned members.
    pub(crate) fn join_classic(
        &mut self,
        now: Instant,
        member_id: &str,
        spec: ClassicSpec,
        require_known_member_id: bool,
        limits: JoinLimits,
    ) -> Result<Reply<ClassicJoined>, BrokerError> {
        if !self.members.is_empty() {
            return Err(BrokerError::GroupKindMismatch {
                group: self.name.clone(),
                kind: GroupKind::ServerAssigned,
            });
        }
        self.classic
            .join(now, member_id, spec, require_known_member_id, limits)
    }

    /// Checks a client-assigned member's commit (see [`ClassicGroup::check_commit`]); a
    /// group with server-assigned members knows no such member.
    pub(crate) fn check_classic_commit(
        &mut self,
        now: Instant,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), BrokerError> {
        if !self.members.is_empty() {
            return Err(self.unknown_member(member_id));
        }
        self.classic
            .check_commit(now, generation, member_id, instance_id)
    }

    /// The group as Kafka's DescribeGroups shows it.
    pub(crate) fn describe_classic(&self) -> ClassicGroupDescription {
        let (protocol, members) = match self.kind() {
            Some(GroupKind::ServerAssigned) => {
                let members = self
                    .describe_members()
                    .into_iter()
                    .map(|m| ClassicMemberDescription {
                        member_id: m.member_id,
                        instance_id: m.instance_id,
                        client_id: String::new(),
                        client_host: m.client_host,
                        metadata: Default::default(),
                        assignment: Default::default(),
                    })
                    .collect();
                (String::new(), members)
            }
            _ => self.classic.describe(),
        };
        ClassicGroupDescription {
            name: self.name.clone(),
            state: self.state(),
            kind: self.kind(),
            protocol_type: self.protocol_type().to_owned(),
            protocol,
            members,
        }
    }

    /// Records a sign of life.
    pub(crate) fn touch(&mut self, member_id: &str, now: Instant) -> Result<(), BrokerError> {
        let member = self.member_mut(member_id)?;
        member.last_seen = now;
        Ok(())
    }

    /// The member's stream closed: a dynamic member leaves, a static one stays (without
    /// the partitions it was releasing) until it reconnects or expires.
    pub(crate) fn disconnect(&mut self, member_id: &str, now: Instant, topics: TopicLookup<'_>) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if member.spec.instance_id.is_some() {
            member.connected = false;
            member.last_seen = now;
            tracing::info!(group = %self.name, member = %member_id, "static member disconnected");
            let revoking: Vec<TopicPartition> = self
                .owners
                .iter()
                .filter(|(_, o)| o.member == member_id && o.revoking.is_some())
                .map(|(tp, _)| tp.clone())
                .collect();
            self.release(&revoking);
        } else {
            tracing::info!(group = %self.name, member = %member_id, "member left");
            self.remove_member(member_id, None);
            self.rebalance(now, topics);
        }
    }

    /// The member released partitions it was asked to give up. Partitions it does not own
    /// in revoking state are ignored.
    pub(crate) fn revoke_ack(
        &mut self,
        member_id: &str,
        partitions: &[TopicPartition],
        now: Instant,
    ) -> Result<(), BrokerError> {
        self.touch(member_id, now)?;
        let released: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| {
                self.owners
                    .get(*tp)
                    .is_some_and(|o| o.member == member_id && o.revoking.is_some())
            })
            .cloned()
            .collect();
        self.release(&released);
        Ok(())
    }

    /// Checks a commit of `partitions` by `member_id` in `generation` (see the fencing
    /// rule); an empty member id is accepted only while the group has no members.
    pub(crate) fn check_commit<'a>(
        &self,
        member_id: &str,
        generation: u64,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Result<(), BrokerError> {
        if member_id.is_empty() {
            return match self.member_count() {
                0 => Ok(()),
                members => Err(BrokerError::GroupNotEmpty {
                    group: self.name.clone(),
                    members,
                }),
            };
        }
        if !self.members.contains_key(member_id) {
            return Err(self.unknown_member(member_id));
        }
        for tp in partitions {
            let ownership = self
                .owners
                .get(tp)
                .filter(|o| o.member == member_id)
                .ok_or_else(|| BrokerError::NotPartitionOwner {
                    group: self.name.clone(),
                    member_id: member_id.to_owned(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })?;
            if !(ownership.since..=self.generation).contains(&generation) {
                return Err(BrokerError::StaleGeneration {
                    group: self.name.clone(),
                    generation,
                    valid_from: ownership.since,
                    current: self.generation,
                });
            }
        }
        Ok(())
    }

    /// Periodic work: expires silent members, releases revocations past their deadline and
    /// rebalances when a subscribed topic's partitions changed (deleted, created again).
    pub(crate) fn tick(&mut self, now: Instant, topics: TopicLookup<'_>) {
        self.classic.tick(now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now >= m.last_seen + m.spec.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in &expired {
            tracing::info!(group = %self.name, member = %member_id, "member expired");
            self.remove_member(member_id, Some(MemberEnd::Expired));
        }
        if !expired.is_empty() || self.topics_changed(topics) {
            self.rebalance(now, topics);
            return;
        }
        let overdue: Vec<TopicPartition> = self
            .owners
            .iter()
            .filter(|(_, o)| o.revoking.is_some_and(|deadline| now >= deadline))
            .map(|(tp, _)| tp.clone())
            .collect();
        if !overdue.is_empty() {
            tracing::warn!(group = %self.name, partitions = overdue.len(), "revocation timed out; handing partitions over");
        }
        self.release(&overdue);
    }

    /// Ends every member's stream and answers every waiting client-assigned member (at
    /// broker shutdown).
    pub(crate) fn end_all(&mut self, end: MemberEnd) {
        for member in self.members.values() {
            member.view.send_replace(MemberView::Ended(end));
        }
        self.classic.end_all();
    }

    /// Where `member_id` starts reading without a usable committed offset.
    pub(crate) fn reset_policy(&self, member_id: &str) -> Result<OffsetReset, BrokerError> {
        self.members
            .get(member_id)
            .map(|m| m.spec.reset)
            .ok_or_else(|| self.unknown_member(member_id))
    }

    /// Empty without members. With client-assigned members, their phase. With
    /// server-assigned ones, stable when every partition is owned, without revocation, by
    /// its target member (and nothing else is owned); rebalancing otherwise.
    pub(crate) fn state(&self) -> GroupState {
        if self.kind() == Some(GroupKind::ClientAssigned) {
            return self.classic.state();
        }
        let settled = self.owners.len() == self.target.len()
            && self
                .owners
                .iter()
                .all(|(tp, o)| o.revoking.is_none() && self.target.get(tp) == Some(&o.member));
        match (self.members.is_empty(), settled) {
            (true, _) => GroupState::Empty,
            (false, true) => GroupState::Stable,
            (false, false) => GroupState::Rebalancing,
        }
    }

    /// Every member, with its partitions (unknown to the broker for client-assigned
    /// members), sorted by id.
    pub(crate) fn describe_members(&self) -> Vec<MemberDescription> {
        let mut members: Vec<MemberDescription> = self.classic.describe_members().collect();
        members.extend(self.members.iter().map(|(id, member)| {
            let assignment = self.assignment_of(id);
            MemberDescription {
                member_id: id.clone(),
                instance_id: member.spec.instance_id.clone(),
                client_host: member.spec.client_host.clone(),
                topics: member.spec.topics.iter().cloned().collect(),
                assigned: assignment.partitions,
                revoking: assignment.revoking,
                connected: member.connected,
                session_timeout: member.spec.session_timeout,
            }
        }));
        // Only one of the two kinds has members at a time.
        members
    }

    /// The partitions of the subscribed topics, as of the last rebalance.
    pub(crate) fn subscribed_partitions(&self) -> impl Iterator<Item = TopicPartition> + '_ {
        self.topics
            .iter()
            .flat_map(|(topic, &n)| (0..n).map(move |p| TopicPartition::new(topic.clone(), p)))
    }

    /// The member owning a partition, if any.
    pub(crate) fn owner(&self, tp: &TopicPartition) -> Option<&str> {
        self.owners.get(tp).map(|o| o.member.as_str())
    }

    fn member_mut(&mut self, member_id: &str) -> Result<&mut Member, BrokerError> {
        let group = &self.name;
        self.members
            .get_mut(member_id)
            .ok_or_else(|| BrokerError::UnknownMember {
                group: group.clone(),
                member_id: member_id.to_owned(),
            })
    }

    fn unknown_member(&self, member_id: &str) -> BrokerError {
        BrokerError::UnknownMember {
            group: self.name.clone(),
            member_id: member_id.to_owned(),
        }
    }

    /// Removes a member and its ownerships, telling its stream why when it has a reason.
    fn remove_member(&mut self, member_id: &str, end: Option<MemberEnd>) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.spec.instance_id
            && self
                .instances
                .get(instance)
                .is_some_and(|id| id == member_id)
        {
            self.instances.remove(instance);
        }
        self.owners.retain(|_, o| o.member != member_id);
        if let Some(end) = end {
            member.view.send_replace(MemberView::Ended(end));
        }
    }

    /// Whether a subscribed topic's partition count differs from the last rebalance's.
    fn topics_changed(&self, topics: TopicLookup<'_>) -> bool {
        self.current_topics(topics) != self.topics
    }

    fn current_topics(&self, topics: TopicLookup<'_>) -> BTreeMap<String, u32> {
        self.members
            .values()
            .flat_map(|m| m.spec.topics.iter())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|topic| topics(topic).map(|n| (topic.clone(), n)))
            .collect()
    }

    /// Computes a new target and starts the handovers it needs: a new generation; partitions
    /// whose topic is gone lose their owner; owners of partitions targeted elsewhere are
    /// asked to release them (or lose them at once if disconnected); unowned target
    /// partitions are granted.
    fn rebalance(&mut self, now: Instant, topics: TopicLookup<'_>) {
        self.generation += 1;
        self.topics = self.current_topics(topics);
        let counts = &self.topics;
        self.owners
            .retain(|tp, _| counts.get(&tp.topic).is_some_and(|&n| tp.partition < n));
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.spec.topics.clone()))
            .collect();
        self.target = assign(&self.target, &subscriptions, &self.topics);
        let mut lost = Vec::new();
        for (tp, ownership) in &mut self.owners {
            if self.target.get(tp) == Some(&ownership.member) || ownership.revoking.is_some() {
                continue;
            }
            match self.members.get(&ownership.member) {
                Some(member) if member.connected => {
                    ownership.revoking = Some(now + member.spec.rebalance_timeout);
                }
                _ => lost.push(tp.clone()),
            }
        }
        for tp in &lost {
            self.owners.remove(tp);
        }
        tracing::debug!(group = %self.name, generation = self.generation, members = self.members.len(), "rebalanced");
        self.grant();
        self.publish();
    }

    /// Removes the ownership of released partitions, then (in a new generation) grants them
    /// to their targets. Does nothing when `partitions` is empty.
    fn release(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        for tp in partitions {
            self.owners.remove(tp);
        }
        self.generation += 1;
        self.grant();
        self.publish();
    }

    /// Gives every unowned target partition to its target member.
    fn grant(&mut self) {
        for (tp, member) in &self.target {
            if !self.owners.contains_key(tp) {
                self.owners.insert(
                    tp.clone(),
                    Ownership {
                        member: member.clone(),
                        since: self.generation,
                        revoking: None,
                    },
                );
            }
        }
    }

    fn assignment_of(&self, member_id: &str) -> MemberAssignment {
        let mut assignment = MemberAssignment {
            generation: self.generation,
            ..MemberAssignment::default()
        };
        for (tp, ownership) in &self.owners {
            if ownership.member == member_id {
                match ownership.revoking {
                    None => assignment.partitions.push(tp.clone()),
                    Some(_) => assignment.revoking.push(tp.clone()),
                }
            }
        }
        assignment
    }

    /// Tells each member its partitions. Members whose partitions did not change get the
    /// new generation without being woken.
    fn publish(&self) {
        for (id, member) in &self.members {
            let next = self.assignment_of(id);
            member.view.send_if_modified(|view| {
                let changed = match view {
                    MemberView::Active(current) => {
                        current.partitions != next.partitions || current.revoking != next.revoking
                    }
                    MemberView::Ended(_) => false,
                };
                if let MemberView::Active(current) = view {
                    *current = next;
                }
                changed
            });
        }
    }
}
