//! The broker's share group operations.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::journal::queue::Durable;
use crate::share::coordinator::wait_durable;
use crate::share::group::{GroupState, MemberState, ShareGroup, archived_record, partition_record};
use crate::share::partition::Holder;
use crate::share::reader::ends;
use crate::share::state_record::Change;
use crate::share::{
    ShareGroupDescription, ShareGroupSettings, ShareGroupSummary, ShareJoin, ShareMember,
    ShareOffsetReset, SharePartitionState,
};
use crate::{Broker, BrokerError, validate_group_name};

impl Broker {
    /// Joins (creating if needed) a share group reading every partition of `join.topics`;
    /// the member acquires records with [`ShareMember::acquire`].
    ///
    /// A new group takes `join.settings` (or `share.defaults`); a partition the group has not
    /// read before starts at its log start or its high watermark, as the group's
    /// `auto_offset_reset` says, durably before this returns. Fails when the group name is
    /// invalid, a topic does not exist ([`BrokerError::TopicNotFound`]), the prefetch is
    /// outside `1..=share.max_prefetch`, the settings break the limits, the dead-letter topic
    /// is one the group reads, or the group has `share.max_members` members
    /// ([`BrokerError::ShareGroupFull`]).
    pub async fn share_join(self: &Arc<Self>, join: ShareJoin) -> Result<ShareMember, BrokerError> {
        let config = &self.share.config;
        if !(1..=config.max_prefetch).contains(&join.prefetch) {
            return Err(BrokerError::invalid_request(
                "prefetch",
                format!(
                    "{} is outside 1..={} (share.max_prefetch)",
                    join.prefetch, config.max_prefetch
                ),
            ));
        }
        let id = self.share.member_id(&join.group);
        let (group, durables) = self.enter_share_group(&join, Some(&id))?;
        let member = ShareMember::new(Arc::clone(self), group, id);
        wait_durable(&join.group, durables).await?;
        self.share.start_ticker(self);
        Ok(member)
    }

    /// Creates share group `group` reading every partition of `topics` unless it exists
    /// (then adds the partitions it does not read yet), durably, without joining it: its
    /// records wait for the members to come. `settings` (or `share.defaults`) apply only
    /// when this creates the group. Fails as [`Broker::share_join`] does.
    pub async fn declare_share_group(
        &self,
        group: &str,
        topics: &[String],
        settings: Option<ShareGroupSettings>,
    ) -> Result<(), BrokerError> {
        let join = ShareJoin {
            group: group.to_owned(),
            topics: topics.to_vec(),
            prefetch: 1,
            settings,
        };
        let (_, durables) = self.enter_share_group(&join, None)?;
        wait_durable(group, durables).await
    }

    /// Creates (if needed) the group of `join`, adds the partitions of its topics it does
    /// not read yet and, with `member`, adds that member. Returns the group and the writes
    /// making it durable.
    fn enter_share_group(
        &self,
        join: &ShareJoin,
        member: Option<&Holder>,
    ) -> Result<(Arc<ShareGroup>, Vec<Durable>), BrokerError> {
        let coordinator = &self.share;
        coordinator.check_running()?;
        validate_group_name(&join.group)?;
        let config = &coordinator.config;
        if join.topics.is_empty() {
            return Err(BrokerError::invalid_request(
                "topics",
                "a share group must read at least one topic",
            ));
        }
        if let Some(settings) = &join.settings {
            config.check_settings(settings)?;
        }
        let topics: BTreeSet<String> = join.topics.iter().cloned().collect();
        let mut partitions = Vec::new();
        for topic in &topics {
            for partition in 0..self.partition_count(topic)? {
                partitions.push((topic.clone(), partition));
            }
        }
        coordinator.with_registry(|groups| {
            let mut records = Vec::new();
            // A new group enters the registry only once every check has passed, its
            // settings record first in the journal.
            let (group, created) = match groups.get(&join.group) {
                Some(group) => (Arc::clone(group), false),
                None => {
                    let settings = join
                        .settings
                        .clone()
                        .unwrap_or_else(|| config.defaults.clone());
                    if let Some(dlq) = &settings.dead_letter_topic {
                        self.check_dead_letter_topic(dlq)?;
                    }
                    records.push((join.group.clone(), Change::Settings(settings.clone())));
                    let group = Arc::new(ShareGroup::new(
                        join.group.clone(),
                        GroupState::new(settings, Default::default()),
                    ));
                    (group, true)
                }
            };
            let mut state = group.state.lock();
            if let Some(dlq) = &state.settings.dead_letter_topic
                && topics.contains(dlq)
            {
                return Err(dead_letter_loop(&join.group, dlq));
            }
            if member.is_some() && state.members.len() >= config.max_members {
                return Err(BrokerError::ShareGroupFull {
                    group: join.group.clone(),
                    limit: config.max_members,
                });
            }
            for (topic, partition) in &partitions {
                let Some((log_start, end)) = ends(self, topic, *partition) else {
                    continue;
                };
                let start = match state.settings.auto_offset_reset {
                    ShareOffsetReset::Earliest => log_start,
                    ShareOffsetReset::Latest => end,
                };
                records.extend(state.add_partition(&join.group, topic, *partition, start));
            }
            if let Some(id) = member {
                state.members.insert(
                    Arc::clone(id),
                    MemberState {
                        prefetch: join.prefetch,
                        held: 0,
                        topics: topics.iter().cloned().collect(),
                    },
                );
            }
            let durables = coordinator.write(records);
            drop(state);
            if created {
                groups.insert(join.group.clone(), Arc::clone(&group));
            }
            Ok((group, durables))
        })
    }

    /// Every share group, by name.
    pub fn list_share_groups(&self) -> Vec<ShareGroupSummary> {
        self.share
            .snapshot()
            .iter()
            .map(|group| {
                let state = group.state.lock();
                ShareGroupSummary {
                    name: group.name.clone(),
                    topics: state.partitions.keys().map(|t| t.to_string()).collect(),
                    members: state.members.len(),
                }
            })
            .collect()
    }

    /// Records waiting in a share group (its queue length), summed over its partitions
    /// without reading any record; `None` when the group does not exist.
    pub fn share_waiting(&self, group: &str) -> Option<u64> {
        let handle = self.share.group(group)?;
        let state = handle.state.lock();
        Some(
            state
                .partitions
                .iter()
                .flat_map(|(topic, ps)| {
                    ps.iter().map(move |(partition, share)| {
                        let end =
                            ends(self, topic, *partition).map_or(share.start(), |(_, end)| end);
                        share.waiting(end)
                    })
                })
                .sum(),
        )
    }

    /// A share group's settings, members and share-partitions: per partition its start
    /// offset, high watermark, records waiting and in flight, the counters, and the
    /// timestamp of the oldest waiting record (one batch read per partition with records
    /// waiting). O(partitions + members).
    pub fn describe_share_group(&self, group: &str) -> Result<ShareGroupDescription, BrokerError> {
        let handle = self
            .share
            .group(group)
            .ok_or_else(|| BrokerError::ShareGroupNotFound {
                group: group.to_owned(),
            })?;
        let (settings, members, mut partitions, oldest) = {
            let state = handle.state.lock();
            let mut partitions = Vec::new();
            let mut oldest = Vec::new();
            for (topic, ps) in &state.partitions {
                for (partition, share) in ps {
                    let end = ends(self, topic, *partition).map_or(share.start(), |(_, end)| end);
                    partitions.push(SharePartitionState {
                        topic: topic.to_string(),
                        partition: *partition,
                        start_offset: share.start(),
                        end_offset: end,
                        waiting: share.waiting(end),
                        in_flight: share.in_flight(),
                        accepted: share.accepted,
                        dead_lettered: share.dead_lettered,
                        oldest_waiting_timestamp_ms: None,
                    });
                    oldest.push(share.oldest_waiting(end));
                }
            }
            (
                state.settings.clone(),
                state.describe_members(),
                partitions,
                oldest,
            )
        };
        for (partition, oldest) in partitions.iter_mut().zip(oldest) {
            partition.oldest_waiting_timestamp_ms = oldest.and_then(|offset| {
                self.record_timestamp(&partition.topic, partition.partition, offset)
                    .ok()
                    .flatten()
            });
        }
        Ok(ShareGroupDescription {
            name: group.to_owned(),
            settings,
            members,
            partitions,
        })
    }

    /// Deletes a share group and its state, durably; only while it has no members
    /// ([`BrokerError::ShareGroupHasMembers`]).
    pub async fn delete_share_group(&self, group: &str) -> Result<(), BrokerError> {
        self.share.check_running()?;
        let durables = self.share.with_registry(|groups| {
            let handle = groups
                .get(group)
                .ok_or_else(|| BrokerError::ShareGroupNotFound {
                    group: group.to_owned(),
                })?;
            let mut state = handle.state.lock();
            if !state.members.is_empty() {
                return Err(BrokerError::ShareGroupHasMembers {
                    group: group.to_owned(),
                    members: state.members.len(),
                });
            }
            state.deleted = true;
            let durables = self.share.write(vec![(group.to_owned(), Change::Delete)]);
            drop(state);
            groups.remove(group);
            Ok(durables)
        })?;
        wait_durable(group, durables).await
    }

    /// Replaces a share group's settings, durably. They apply from now on: to locks taken,
    /// releases and acknowledgements after this returns. Records waiting that were delivered
    /// as often as a lowered delivery limit allows are archived (dead-lettered, with a
    /// dead-letter topic); without a dead-letter topic, those waiting for one are archived.
    pub async fn alter_share_group(
        self: &Arc<Self>,
        group: &str,
        settings: ShareGroupSettings,
    ) -> Result<(), BrokerError> {
        self.share.check_running()?;
        self.share.config.check_settings(&settings)?;
        let handle = self
            .share
            .group(group)
            .ok_or_else(|| BrokerError::ShareGroupNotFound {
                group: group.to_owned(),
            })?;
        if let Some(dlq) = &settings.dead_letter_topic {
            self.check_dead_letter_topic(dlq)?;
        }
        let durables = {
            let mut state = handle.state.lock();
            if let Some(dlq) = &settings.dead_letter_topic
                && state.partitions.contains_key(dlq.as_str())
            {
                return Err(dead_letter_loop(group, dlq));
            }
            let removes_dlq = settings.dead_letter_topic.is_none();
            state.settings = settings.clone();
            let mut records = vec![(group.to_owned(), Change::Settings(settings))];
            if removes_dlq {
                records.extend(state.archive_dead_letters(group));
            }
            records.extend(state.enforce_delivery_limit(group));
            self.share.write(records)
        };
        handle.wake.notify_waiters();
        // Dead letters the new settings made due are appended by the sweep.
        self.share.start_ticker(self);
        wait_durable(group, durables).await
    }

    /// Purges a share group (RabbitMQ's queue purge): every record waiting is archived,
    /// counted as dead-lettered, not dead-lettered; records in flight stay. Returns how many
    /// were purged. Durable before it returns.
    pub async fn purge_share_group(&self, group: &str) -> Result<u64, BrokerError> {
        self.share.check_running()?;
        let handle = self
            .share
            .group(group)
            .ok_or_else(|| BrokerError::ShareGroupNotFound {
                group: group.to_owned(),
            })?;
        let max_window = u64::from(self.share.config.max_in_flight_per_partition);
        let (durables, purged) = {
            let mut state = handle.state.lock();
            let mut records = Vec::new();
            let mut purged = 0;
            for (topic, ps) in &mut state.partitions {
                for (partition, share) in ps.iter_mut() {
                    let end = ends(self, topic, *partition).map_or(share.start(), |(_, end)| end);
                    let (archived, count) = share.purge(end, max_window);
                    if count == 0 {
                        continue;
                    }
                    purged += count;
                    records.extend(archived_record(group, topic, *partition, archived));
                    records.push(partition_record(group, topic, *partition, share));
                }
            }
            (self.share.write(records), purged)
        };
        wait_durable(group, durables).await?;
        Ok(purged)
    }

    /// Drops a deleted topic's share-partitions from every share group, durably.
    pub(crate) async fn share_topic_deleted(&self, topic: &str) -> Result<(), BrokerError> {
        let mut writes = Vec::new();
        for group in self.share.snapshot() {
            let mut state = group.state.lock();
            if let Some(removed) = state.partitions.remove(topic) {
                for mut share in removed.into_values() {
                    for holder in share.skip_to(u64::MAX).unwrap_or_default() {
                        if let Some(member) = state.members.get_mut(&holder) {
                            member.held = member.held.saturating_sub(1);
                        }
                    }
                }
                writes.push((
                    group.name.clone(),
                    self.share.write(vec![(
                        group.name.clone(),
                        Change::DropTopic(topic.to_owned()),
                    )]),
                ));
            }
        }
        for (group, durables) in writes {
            wait_durable(&group, durables).await?;
        }
        Ok(())
    }
}

impl Broker {
    /// Checks that a dead-letter topic named in share group settings exists.
    fn check_dead_letter_topic(&self, dlq: &str) -> Result<(), BrokerError> {
        self.partition_count(dlq).map(drop).map_err(|_| {
            BrokerError::invalid_config(
                "share.dead.letter.topic",
                dlq,
                "no such topic: create the dead-letter topic first",
            )
        })
    }
}

fn dead_letter_loop(group: &str, dlq: &str) -> BrokerError {
    BrokerError::invalid_config(
        "share.dead.letter.topic",
        dlq,
        format!("share group {group:?} reads this topic; a dead-letter topic must be another"),
    )
}
