//! One share group: its settings, members and share-partitions, and what happens to them
//! under its lock. Nothing here does I/O: each operation returns the journal records that
//! make it durable, for the caller to queue.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::share::dead_letter::RETRY_PAUSE;
use crate::share::partition::{ArchiveReason, Holder, Released, Rules, SharePartition};
use crate::share::state_record::{Change, Outcome, StateRecord, runs};
use crate::share::{Ack, AckKind, ShareGroupSettings, ShareMemberDescription};

/// A share group.
#[derive(Debug)]
pub(crate) struct ShareGroup {
    /// Its name.
    pub(crate) name: String,
    /// Its state. Lock order: after the share group registry, before the broker's topic
    /// registry (looked up under it) and the journal's queue.
    pub(crate) state: Mutex<GroupState>,
    /// Woken when records become available other than by an append: a release, a lock
    /// expiry, a member leaving, the group being deleted.
    pub(crate) wake: Notify,
}

impl ShareGroup {
    /// A group with `state`.
    pub(crate) fn new(name: String, state: GroupState) -> ShareGroup {
        ShareGroup {
            name,
            state: Mutex::new(state),
            wake: Notify::new(),
        }
    }
}

/// One member of a share group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberState {
    /// The most records it may hold.
    pub(crate) prefetch: u32,
    /// The records it holds.
    pub(crate) held: u32,
    /// The topics it reads.
    pub(crate) topics: Vec<String>,
}

/// Records of one partition a member acquired: `(offset, delivery count)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grab {
    /// The topic.
    pub(crate) topic: Arc<str>,
    /// The partition.
    pub(crate) partition: u32,
    /// The offsets and their delivery counts, ascending.
    pub(crate) offsets: Vec<(u64, u32)>,
}

/// A record on its way to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    /// The topic.
    pub(crate) topic: Arc<str>,
    /// The partition.
    pub(crate) partition: u32,
    /// The offset.
    pub(crate) offset: u64,
    /// Its deliveries.
    pub(crate) delivery_count: u32,
    /// Why.
    pub(crate) reason: ArchiveReason,
}

/// The high watermark and log start of a partition, looked up by the caller.
pub(crate) type Ends<'a> = &'a dyn Fn(&str, u32) -> Option<(u64, u64)>;

/// A share group's state.
#[derive(Debug)]
pub(crate) struct GroupState {
    /// Its settings.
    pub(crate) settings: ShareGroupSettings,
    /// Its members by id.
    pub(crate) members: BTreeMap<Holder, MemberState>,
    /// Its share-partitions by topic, then partition.
    pub(crate) partitions: BTreeMap<Arc<str>, BTreeMap<u32, SharePartition>>,
    /// Set once the group is deleted: its handles are stale.
    pub(crate) deleted: bool,
    /// Where the next acquire starts looking, so partitions take turns.
    cursor: usize,
    /// No dead letter is started before this: a dead-letter append failed.
    dead_letters_paused_until: Option<Instant>,
}

impl GroupState {
    /// A group with `settings` and no members.
    pub(crate) fn new(
        settings: ShareGroupSettings,
        partitions: BTreeMap<Arc<str>, BTreeMap<u32, SharePartition>>,
    ) -> GroupState {
        GroupState {
            settings,
            members: BTreeMap::new(),
            partitions,
            deleted: false,
            cursor: 0,
            dead_letters_paused_until: None,
        }
    }

    /// What the group's settings mean for its records.
    pub(crate) fn rules(&self) -> Rules {
        Rules::of(&self.settings)
    }

    /// Starts reading partition `partition` of `topic` at `start` unless the group reads it
    /// already; returns the record that makes it durable.
    pub(crate) fn add_partition(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        start: u64,
    ) -> Option<StateRecord> {
        let partitions = match self.partitions.get_mut(topic) {
            Some(partitions) => partitions,
            None => self.partitions.entry(Arc::from(topic)).or_default(),
        };
        if partitions.contains_key(&partition) {
            return None;
        }
        partitions.insert(partition, SharePartition::new(start));
        Some(partition_record(
            group,
            topic,
            partition,
            &SharePartition::new(start),
        ))
    }

    /// Members' descriptions, by id.
    pub(crate) fn describe_members(&self) -> Vec<ShareMemberDescription> {
        self.members
            .iter()
            .map(|(id, m)| ShareMemberDescription {
                id: id.to_string(),
                held: m.held,
                prefetch: m.prefetch,
            })
            .collect()
    }

    /// Acquires up to `max` records for `member` (fewer when its prefetch is nearly used
    /// up) from the partitions `ends` answers for, taking partitions in turn from the last
    /// acquire's. Returns what it got and the records making the delivery counts durable.
    pub(crate) fn acquire(
        &mut self,
        group: &str,
        member: &Holder,
        max: u32,
        now: Instant,
        ends: Ends<'_>,
        max_window: u64,
    ) -> (Vec<Grab>, Vec<StateRecord>) {
        let lock = self.settings.record_lock_duration;
        let Some(state) = self.members.get(member) else {
            return (Vec::new(), Vec::new());
        };
        let mut room = max.min(state.prefetch.saturating_sub(state.held));
        let keys: Vec<(Arc<str>, u32)> = self
            .partitions
            .iter()
            .flat_map(|(t, ps)| ps.keys().map(move |p| (Arc::clone(t), *p)))
            .collect();
        let mut grabs = Vec::new();
        let mut records = Vec::new();
        let count = keys.len();
        for i in 0..count {
            if room == 0 {
                break;
            }
            let (topic, partition) = &keys[(self.cursor + i) % count];
            if !state.topics.iter().any(|t| **t == **topic) {
                continue;
            }
            let Some((_, end)) = ends(topic, *partition) else {
                continue;
            };
            let Some(share) = self
                .partitions
                .get_mut(topic)
                .and_then(|ps| ps.get_mut(partition))
            else {
                continue;
            };
            let offsets = share.acquire(member, room, now, now + lock, end, max_window);
            if offsets.is_empty() {
                continue;
            }
            room -= offsets.len() as u32;
            records.push((
                group.to_owned(),
                Change::Delivered {
                    topic: topic.to_string(),
                    partition: *partition,
                    runs: runs(offsets.iter().copied()),
                },
            ));
            grabs.push(Grab {
                topic: Arc::clone(topic),
                partition: *partition,
                offsets,
            });
        }
        if count > 0 {
            self.cursor = (self.cursor + 1) % count;
        }
        let got: u32 = grabs.iter().map(|g| g.offsets.len() as u32).sum();
        if let Some(state) = self.members.get_mut(member) {
            state.held += got;
        }
        (grabs, records)
    }

    /// The earliest end of a redelivery backoff in the group.
    pub(crate) fn next_backoff_end(&self) -> Option<Instant> {
        self.partitions
            .values()
            .flat_map(|ps| ps.values())
            .filter_map(SharePartition::next_backoff_end)
            .min()
    }

    /// Applies one acknowledgement of `member`. Returns the record to write (if any) and
    /// the dead letter to append (a reject with a dead-letter topic).
    pub(crate) fn acknowledge(
        &mut self,
        group: &str,
        member: &Holder,
        ack: &Ack,
        now: Instant,
    ) -> Result<Acked, &'static str> {
        let (topic, partition, offset, kind) =
            (ack.topic.as_str(), ack.partition, ack.offset, ack.kind);
        let rules = self.rules();
        let share = self
            .partitions
            .get_mut(topic)
            .and_then(|ps| ps.get_mut(&partition))
            .ok_or("the group does not read this partition")?;
        let (outcome, released) = match kind {
            AckKind::Accept => {
                share.accept(member, offset, now)?;
                (Some(Outcome::Accepted), None)
            }
            AckKind::Release => (None, Some(share.release(member, offset, now, &rules)?)),
            AckKind::Reject => (None, Some(share.reject(member, offset, now, &rules)?)),
        };
        if let Some(state) = self.members.get_mut(member) {
            state.held = state.held.saturating_sub(1);
        }
        // A reject headed for the dead-letter topic is written down as such, so a crash
        // before the append cannot deliver it again.
        let outcome = outcome.or(match (kind, released) {
            (_, Some(Released::Archived)) => Some(Outcome::Archived),
            (AckKind::Reject, Some(Released::DeadLetter)) => Some(Outcome::Rejected),
            _ => None,
        });
        let record = outcome.map(|outcome| acked_record(group, topic, partition, offset, outcome));
        let dead_letter = (kind == AckKind::Reject && released == Some(Released::DeadLetter))
            .then(|| share.start_dead_letter(offset))
            .flatten()
            .map(|(delivery_count, reason)| DeadLetter {
                topic: Arc::from(topic),
                partition,
                offset,
                delivery_count,
                reason,
            });
        Ok(Acked {
            record,
            dead_letter,
        })
    }

    /// Extends `member`'s lock of a record.
    pub(crate) fn renew(
        &mut self,
        member: &Holder,
        topic: &str,
        partition: u32,
        offset: u64,
        now: Instant,
    ) -> Result<(), &'static str> {
        let deadline = now + self.settings.record_lock_duration;
        self.partitions
            .get_mut(topic)
            .and_then(|ps| ps.get_mut(&partition))
            .ok_or("the group does not read this partition")?
            .renew(member, offset, now, deadline)
    }

    /// Releases expired locks (and, with `leaving`, everything that member holds), moves
    /// starts past records retention deleted, and starts the dead letters waiting (unless
    /// a failed append paused them; without a dead-letter topic, archives them). Returns
    /// the records to write, the dead letters to append, and whether records became
    /// available.
    pub(crate) fn sweep(
        &mut self,
        group: &str,
        now: Instant,
        leaving: Option<&str>,
        ends: Ends<'_>,
    ) -> Swept {
        let rules = self.rules();
        let start_letters = self.dead_letters_paused_until.is_none_or(|t| t <= now);
        let mut swept = Swept::default();
        if !rules.dead_letter {
            swept.records = self.archive_dead_letters(group);
        }
        for (topic, ps) in &mut self.partitions {
            for (partition, share) in ps.iter_mut() {
                let released = share.release_expired(now, leaving, &rules);
                let mut archived = Vec::new();
                for (offset, holder, outcome) in released {
                    if let Some(m) = self.members.get_mut(&holder) {
                        m.held = m.held.saturating_sub(1);
                    }
                    match outcome {
                        Released::Available => swept.available = true,
                        Released::Archived => archived.push((offset, Outcome::Archived)),
                        Released::DeadLetter => {}
                    }
                }
                if !archived.is_empty() {
                    swept.records.push((
                        group.to_owned(),
                        Change::Acked {
                            topic: topic.to_string(),
                            partition: *partition,
                            runs: runs(archived),
                        },
                    ));
                }
                if let Some((log_start, _)) = ends(topic, *partition)
                    && let Some(dropped) = share.skip_to(log_start)
                {
                    for holder in dropped {
                        if let Some(m) = self.members.get_mut(&holder) {
                            m.held = m.held.saturating_sub(1);
                        }
                    }
                    swept
                        .records
                        .push(partition_record(group, topic, *partition, share));
                    swept.available = true;
                }
                if rules.dead_letter && start_letters {
                    swept
                        .dead_letters
                        .extend(share.start_dead_letters().into_iter().map(
                            |(offset, delivery_count, reason)| DeadLetter {
                                topic: Arc::clone(topic),
                                partition: *partition,
                                offset,
                                delivery_count,
                                reason,
                            },
                        ));
                }
            }
        }
        swept
    }

    /// How dead-letter appends of a partition went at `now`: archives the appended ones
    /// (returning the record to write), leaves the others to be tried again after
    /// [`RETRY_PAUSE`].
    pub(crate) fn dead_lettered(
        &mut self,
        group: &str,
        topic: &str,
        partition: u32,
        offsets: &[u64],
        appended: bool,
        now: Instant,
    ) -> Option<StateRecord> {
        if !appended {
            self.dead_letters_paused_until = Some(now + RETRY_PAUSE);
        }
        let share = self.partitions.get_mut(topic)?.get_mut(&partition)?;
        let archived: Vec<(u64, Outcome)> = offsets
            .iter()
            .filter(|o| share.dead_lettered(**o, appended))
            .map(|o| (*o, Outcome::Archived))
            .collect();
        (!archived.is_empty()).then(|| {
            (
                group.to_owned(),
                Change::Acked {
                    topic: topic.to_owned(),
                    partition,
                    runs: runs(archived),
                },
            )
        })
    }

    /// Archives the records waiting for a dead-letter topic the group no longer has (those
    /// whose append is under way are archived once it ends); returns the records to write.
    pub(crate) fn archive_dead_letters(&mut self, group: &str) -> Vec<StateRecord> {
        self.archive_where(group, SharePartition::archive_dead_letters)
    }

    /// Archives the waiting records delivered as often as the delivery limit allows (it was
    /// lowered), through the dead-letter topic if the group has one; returns the records to
    /// write.
    pub(crate) fn enforce_delivery_limit(&mut self, group: &str) -> Vec<StateRecord> {
        let rules = self.rules();
        self.archive_where(group, |share| share.enforce_limit(&rules))
    }

    /// The records making durable what `archive` archived in each share-partition.
    fn archive_where(
        &mut self,
        group: &str,
        mut archive: impl FnMut(&mut SharePartition) -> Vec<u64>,
    ) -> Vec<StateRecord> {
        let mut records = Vec::new();
        for (topic, ps) in &mut self.partitions {
            for (partition, share) in ps.iter_mut() {
                records.extend(archived_record(group, topic, *partition, archive(share)));
            }
        }
        records
    }

    /// Whether the background sweep has work: members with locks, or dead letters waiting.
    pub(crate) fn needs_sweeps(&self) -> bool {
        !self.members.is_empty()
            || self
                .partitions
                .values()
                .flat_map(|ps| ps.values())
                .any(|p| p.dead_lettering() > 0)
    }
}

/// The outcome of one acknowledgement.
#[derive(Debug, Default)]
pub(crate) struct Acked {
    /// The record that makes it durable.
    pub(crate) record: Option<StateRecord>,
    /// The dead letter to append first.
    pub(crate) dead_letter: Option<DeadLetter>,
}

/// The outcome of a sweep.
#[derive(Debug, Default)]
pub(crate) struct Swept {
    /// Records to write.
    pub(crate) records: Vec<StateRecord>,
    /// Dead letters to append.
    pub(crate) dead_letters: Vec<DeadLetter>,
    /// Whether records became available.
    pub(crate) available: bool,
}

/// The record archiving `offsets` (ascending) of a partition, unless there are none.
pub(crate) fn archived_record(
    group: &str,
    topic: &str,
    partition: u32,
    offsets: Vec<u64>,
) -> Option<StateRecord> {
    (!offsets.is_empty()).then(|| {
        (
            group.to_owned(),
            Change::Acked {
                topic: topic.to_owned(),
                partition,
                runs: runs(offsets.into_iter().map(|o| (o, Outcome::Archived))),
            },
        )
    })
}

/// The record stating a share-partition's start and counters.
pub(crate) fn partition_record(
    group: &str,
    topic: &str,
    partition: u32,
    share: &SharePartition,
) -> StateRecord {
    (
        group.to_owned(),
        Change::Partition {
            topic: topic.to_owned(),
            partition,
            start: share.start(),
            accepted: share.accepted,
            dead_lettered: share.dead_lettered,
        },
    )
}

fn acked_record(
    group: &str,
    topic: &str,
    partition: u32,
    offset: u64,
    outcome: Outcome,
) -> StateRecord {
    (
        group.to_owned(),
        Change::Acked {
            topic: topic.to_owned(),
            partition,
            runs: runs([(offset, outcome)]),
        },
    )
}
