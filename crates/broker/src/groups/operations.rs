//! The consumer group operations of [`Broker`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::wall_clock_ms;
use crate::groups::coordinator::wait_durable;
use crate::groups::offsets_state::OffsetChange;
use crate::groups::state::{GroupData, MemberSpec};
use crate::groups::{
    Committed, CommittedOffset, GroupDescription, GroupMember, GroupSummary, JoinGroup,
    PartitionLag, ResetTo, TopicPartition, validate_group_name,
};
use crate::{Broker, BrokerError, OffsetSpec};

impl Broker {
    /// Joins a consumer group; the returned member's assignment tells which partitions to
    /// consume. Fails when the group name, instance id or a timeout is invalid, a topic
    /// does not exist ([`BrokerError::TopicNotFound`]) or the broker is shutting down.
    ///
    /// A member with an instance id that is already in the group replaces it (the old one's
    /// stream is ended with [`BrokerError::MemberFenced`]) and keeps its partitions. Refused
    /// with [`BrokerError::GroupKindMismatch`] while the group has client-assigned members,
    /// and with [`BrokerError::GroupFull`] past `groups.max_members`.
    pub async fn join_group(
        self: &Arc<Self>,
        request: JoinGroup,
    ) -> Result<GroupMember, BrokerError> {
        let coordinator = &self.groups;
        coordinator.check_running()?;
        validate_group_name(&request.group)?;
        let invalid = |reason: String| BrokerError::InvalidJoin {
            group: request.group.clone(),
            reason,
        };
        if let Some(instance) = &request.instance_id {
            validate_group_name(instance).map_err(|e| invalid(format!("instance id: {e}")))?;
        }
        if request.topics.is_empty() {
            return Err(invalid(
                "a member must consume at least one topic".to_owned(),
            ));
        }
        for topic in &request.topics {
            self.partition_count(topic)?;
        }
        let config = &coordinator.config;
        let session_timeout = config.session_timeout(&request.group, request.session_timeout)?;
        let rebalance_timeout =
            config.rebalance_timeout(&request.group, request.rebalance_timeout)?;
        let spec = MemberSpec {
            instance_id: request.instance_id.clone(),
            client_host: request.client_host,
            topics: request.topics.into_iter().collect(),
            session_timeout,
            rebalance_timeout,
            reset: request.auto_offset_reset,
        };
        let topics = |topic: &str| self.partition_count(topic).ok();
        let max_members = config.max_members;
        let (group, joined) = coordinator.with_group(&request.group, |group, data| {
            coordinator.check_running()?;
            let joined = data.join(Instant::now(), spec, &topics, max_members)?;
            Ok::<_, BrokerError>((Arc::clone(group), joined))
        })?;
        coordinator.start_ticker(self);
        Ok(GroupMember::new(
            Arc::clone(self),
            group,
            joined.member_id,
            request.instance_id,
            joined.view,
            session_timeout,
        ))
    }

    /// Commits offsets (each the offset of the next record to consume, at most the
    /// partition's high watermark) for a group, and returns once they are durable.
    ///
    /// Fencing: `member_id` must be a member of the group owning every partition, and
    /// `generation` no older than the one in which it was given each of them and no newer
    /// than the group's ([`BrokerError::UnknownMember`], [`BrokerError::NotPartitionOwner`],
    /// [`BrokerError::StaleGeneration`]). An empty `member_id` commits for a group without
    /// members ([`BrokerError::GroupNotEmpty`] otherwise). Concurrent commits of a group are
    /// written together.
    pub async fn commit_offsets(
        &self,
        group: &str,
        generation: u64,
        member_id: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<(), BrokerError> {
        self.commit_with(group, offsets, |data, now| {
            data.check_commit(member_id, generation, offsets.iter().map(|(tp, _)| tp))?;
            if member_id.is_empty() {
                Ok(())
            } else {
                data.touch(member_id, now)
            }
        })
        .await
    }

    /// Commits offsets once `check` (run on the group's state, under its lock) accepted
    /// them, and returns once they are durable. Every offset must be at most its
    /// partition's high watermark, in a topic that still exists when the commit is queued.
    pub(crate) async fn commit_with(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
        check: impl FnOnce(&mut GroupData, Instant) -> Result<(), BrokerError>,
    ) -> Result<(), BrokerError> {
        let coordinator = &self.groups;
        coordinator.check_running()?;
        validate_group_name(group)?;
        for (tp, offset) in offsets {
            let high_watermark = self
                .list_offset(&tp.topic, tp.partition, OffsetSpec::Latest)?
                .unwrap_or_default();
            if *offset > high_watermark {
                return Err(BrokerError::CommitOutOfRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: *offset,
                    high_watermark,
                });
            }
        }
        let commit_ms = wall_clock_ms();
        let entries: Vec<(TopicPartition, Committed)> = offsets
            .iter()
            .map(|(tp, offset)| {
                let committed = Committed {
                    offset: *offset,
                    commit_ms,
                };
                (tp.clone(), committed)
            })
            .collect();
        // Checked again under the group's lock: a topic deleted since is not committed to.
        let topics_exist = || {
            offsets
                .iter()
                .try_for_each(|(tp, _)| self.partition_count(&tp.topic).map(drop))
        };
        let durable = coordinator.with_group(group, |handle, data| {
            check(data, Instant::now())?;
            topics_exist()?;
            Ok::<_, BrokerError>(
                (!entries.is_empty())
                    .then(|| coordinator.queue_change(handle, data, OffsetChange::Set(entries))),
            )
        })?;
        match durable {
            Some(durable) => wait_durable(group, durable).await,
            None => Ok(()),
        }
    }

    /// A group's committed offsets: for every partition of `topic` (those without one have
    /// `committed: None`), or every committed offset of the group when `topic` is `None`.
    /// A group that does not exist has none.
    pub fn fetch_offsets(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<Vec<CommittedOffset>, BrokerError> {
        validate_group_name(group)?;
        let committed = self
            .groups
            .existing(group)
            .map(|g| g.data.lock().offsets.clone())
            .unwrap_or_default();
        let entry = |tp: TopicPartition| CommittedOffset {
            committed: committed.get(&tp).copied(),
            partition: tp,
        };
        match topic {
            Some(topic) => {
                let count = self.partition_count(topic)?;
                Ok((0..count)
                    .map(|p| entry(TopicPartition::new(topic, p)))
                    .collect())
            }
            None => Ok(committed.keys().cloned().map(entry).collect()),
        }
    }

    /// Every group with members or committed offsets, sorted by name.
    pub fn list_groups(&self) -> Vec<GroupSummary> {
        let mut groups: Vec<GroupSummary> = self
            .groups
            .snapshot()
            .into_iter()
            .filter_map(|group| {
                let data = group.data.lock();
                data.exists().then(|| GroupSummary {
                    name: group.name.clone(),
                    state: data.state(),
                    members: data.member_count(),
                    kind: data.kind(),
                    protocol_type: data.protocol_type().to_owned(),
                })
            })
            .collect();
        groups.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        groups
    }

    /// A group's members and, for the partitions of its topics and those with committed
    /// offsets, the committed offset, high watermark and lag.
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription, BrokerError> {
        validate_group_name(group)?;
        let not_found = || BrokerError::GroupNotFound {
            group: group.to_owned(),
        };
        let handle = self.groups.existing(group).ok_or_else(not_found)?;
        let (state, kind, generation, members, mut partitions, client_assigned_topics) = {
            let data = handle.data.lock();
            let mut partitions: BTreeMap<TopicPartition, (Option<Committed>, Option<String>)> =
                data.subscribed_partitions()
                    .map(|tp| (tp, (None, None)))
                    .collect();
            for (tp, committed) in &data.offsets {
                partitions.entry(tp.clone()).or_default().0 = Some(*committed);
            }
            for (tp, (_, owner)) in &mut partitions {
                *owner = data.owner(tp).map(str::to_owned);
            }
            (
                data.state(),
                data.kind(),
                data.generation(),
                data.describe_members(),
                partitions,
                data.client_assigned_topics(),
            )
        };
        // The broker does not know which client-assigned member reads which partition.
        for topic in client_assigned_topics {
            for p in 0..self.partition_count(&topic).unwrap_or(0) {
                partitions
                    .entry(TopicPartition::new(topic.clone(), p))
                    .or_default();
            }
        }
        let now_ms = wall_clock_ms();
        let partitions = partitions
            .into_iter()
            .filter_map(|(tp, (committed, owner))| {
                // A partition of a topic deleted meanwhile is left out.
                let offset = |spec| {
                    self.list_offset(&tp.topic, tp.partition, spec)
                        .ok()
                        .flatten()
                };
                let log_start_offset = offset(OffsetSpec::Earliest)?;
                let high_watermark = offset(OffsetSpec::Latest)?;
                let committed_offset = committed.map(|c| c.offset);
                let lag = PartitionLag::lag_of(committed_offset, log_start_offset, high_watermark);
                let delay = if lag == 0 {
                    Duration::ZERO
                } else {
                    // The oldest record not committed past; a read failure shows no delay
                    // (the partition's fault is reported on its own).
                    let oldest =
                        committed_offset.map_or(log_start_offset, |c| c.max(log_start_offset));
                    self.record_timestamp(&tp.topic, tp.partition, oldest)
                        .ok()
                        .flatten()
                        .map_or(Duration::ZERO, |ts| {
                            Duration::from_millis(u64::try_from(now_ms - ts).unwrap_or(0))
                        })
                };
                Some(PartitionLag {
                    lag,
                    delay,
                    partition: tp,
                    committed,
                    log_start_offset,
                    high_watermark,
                    owner,
                })
            })
            .collect();
        Ok(GroupDescription {
            name: group.to_owned(),
            state,
            kind,
            generation,
            members,
            partitions,
        })
    }

    /// Sets a group's committed offsets for `partitions` of `topic` (all when empty) and
    /// returns them once durable. Refused with [`BrokerError::GroupNotEmpty`] while the group
    /// has members. An explicit offset must lie within each partition's
    /// `[log_start_offset, high_watermark]`; a timestamp after every record gives the high
    /// watermark.
    pub async fn reset_offsets(
        self: &Arc<Self>,
        group: &str,
        topic: &str,
        partitions: &[u32],
        to: ResetTo,
    ) -> Result<Vec<CommittedOffset>, BrokerError> {
        let coordinator = &self.groups;
        coordinator.check_running()?;
        validate_group_name(group)?;
        let count = self.partition_count(topic)?;
        let partitions: BTreeSet<u32> = if partitions.is_empty() {
            (0..count).collect()
        } else {
            partitions.iter().copied().collect()
        };
        let offsets = self
            .start_offsets(topic, partitions.into_iter().collect(), to)
            .await?;
        let commit_ms = wall_clock_ms();
        let entries: Vec<(TopicPartition, Committed)> = offsets
            .into_iter()
            .map(|(p, offset)| {
                (
                    TopicPartition::new(topic, p),
                    Committed { offset, commit_ms },
                )
            })
            .collect();
        let result = entries
            .iter()
            .map(|(tp, committed)| CommittedOffset {
                partition: tp.clone(),
                committed: Some(*committed),
            })
            .collect();
        let durable = coordinator.with_group(group, |handle, data| match data.member_count() {
            0 => Ok(coordinator.queue_change(handle, data, OffsetChange::Set(entries))),
            members => Err(BrokerError::GroupNotEmpty {
                group: group.to_owned(),
                members,
            }),
        })?;
        wait_durable(group, durable).await?;
        Ok(result)
    }

    /// Deletes a group and its committed offsets. Refused with [`BrokerError::GroupNotEmpty`]
    /// while it has members; [`BrokerError::GroupNotFound`] when it does not exist.
    pub async fn delete_group(&self, group: &str) -> Result<(), BrokerError> {
        let coordinator = &self.groups;
        coordinator.check_running()?;
        validate_group_name(group)?;
        let durable = coordinator.with_group(group, |handle, data| {
            if !data.exists() {
                return Err(BrokerError::GroupNotFound {
                    group: group.to_owned(),
                });
            }
            match data.member_count() {
                0 => Ok(coordinator.queue_change(handle, data, OffsetChange::Clear)),
                members => Err(BrokerError::GroupNotEmpty {
                    group: group.to_owned(),
                    members,
                }),
            }
        })?;
        wait_durable(group, durable).await?;
        tracing::info!(group, "deleted group");
        Ok(())
    }
}
