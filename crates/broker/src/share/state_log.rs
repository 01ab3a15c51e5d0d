//! The durable state of every share group, as the share state journal's records replay into
//! it (`state_record`), and what a compacted copy of it takes.
//!
//! Per group: its settings, and per partition the start offset, the counters, and for each
//! offset at or above the start that was delivered its delivery count and, once done, how it
//! ended. The start moves past the done offsets at its front as records are applied, so the
//! state of a partition stays within its in-flight window.

use std::collections::BTreeMap;
use std::path::Path;

use crate::BrokerError;
use crate::journal::frame::FRAME_HEADER_LEN;
use crate::journal::{FrameSink, Journaled};
use crate::share::ShareGroupSettings;
use crate::share::state_record::{
    Change, FILE_HEADER, Outcome, RUN_LEN, Run, StateRecord, decode, encode, runs,
};

/// The durable state of one offset: its delivery count and, once done, how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurableOffset {
    /// Deliveries so far.
    pub(crate) delivery_count: u32,
    /// How it ended, once done.
    pub(crate) outcome: Option<Outcome>,
}

/// The durable state of one share-partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DurablePartition {
    /// Everything below is done.
    pub(crate) start: u64,
    /// Accepted records counted so far.
    pub(crate) accepted: u64,
    /// Archived records counted so far.
    pub(crate) dead_lettered: u64,
    /// The delivered offsets at and above the start.
    pub(crate) offsets: BTreeMap<u64, DurableOffset>,
}

impl DurablePartition {
    /// Applies `apply` to the entry of every offset of `runs` at or above the start, with
    /// its run's value, adding the entries missing (with `new_count` deliveries); `apply`
    /// returns the outcome that became newly true of the offset, which is counted. Returns
    /// how many entries were added.
    fn apply_runs<T: Copy>(
        &mut self,
        runs: &[Run<T>],
        new_count: u32,
        mut apply: impl FnMut(&mut DurableOffset, T) -> Option<Outcome>,
    ) -> usize {
        let mut added = 0;
        for run in runs {
            let end = run.first + u64::from(run.len);
            for offset in run.first.max(self.start)..end {
                let entry = self.offsets.entry(offset).or_insert_with(|| {
                    added += 1;
                    DurableOffset {
                        delivery_count: new_count,
                        outcome: None,
                    }
                });
                match apply(entry, run.value) {
                    Some(Outcome::Accepted) => self.accepted += 1,
                    Some(Outcome::Archived) => self.dead_lettered += 1,
                    Some(Outcome::Rejected) | None => {}
                }
            }
        }
        added
    }

    fn advance(&mut self) -> usize {
        let mut removed = 0;
        while let Some(entry) = self.offsets.first_entry() {
            if *entry.key() != self.start || !entry.get().outcome.is_some_and(Outcome::is_done) {
                break;
            }
            entry.remove();
            self.start += 1;
            removed += 1;
        }
        removed
    }
}

/// The durable state of one share group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DurableGroup {
    /// Its settings.
    pub(crate) settings: ShareGroupSettings,
    /// Its partitions by topic and partition.
    pub(crate) partitions: BTreeMap<(String, u32), DurablePartition>,
}

/// Every share group's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShareState {
    groups: BTreeMap<String, DurableGroup>,
    /// Bytes of a compacted file, but for the file header (see [`ShareState::size_of`]).
    compacted_len: u64,
}

/// Bytes a compacted file spends on a group's settings frame.
fn group_len(name: &str, settings: &ShareGroupSettings) -> u64 {
    let dlq = settings.dead_letter_topic.as_deref().map_or(0, str::len);
    (FRAME_HEADER_LEN + 3 + name.len() + 8 + 4 + 8 + 1 + 2 + dlq) as u64
}

/// Bytes a compacted file spends on a partition's frame without its offsets: the partition
/// record and the headers of its delivered and acked records.
fn partition_len(group: &str, topic: &str) -> u64 {
    let header = 3 + group.len() + 2 + topic.len() + 4;
    (FRAME_HEADER_LEN + header + 24 + 2 * (header + 4)) as u64
}

impl ShareState {
    /// Every group's state.
    pub(crate) fn groups(&self) -> &BTreeMap<String, DurableGroup> {
        &self.groups
    }

    /// Applies one record.
    pub(crate) fn apply_change(&mut self, name: &str, change: &Change) {
        if let Change::Settings(settings) = change {
            let len = group_len(name, settings);
            match self.groups.get_mut(name) {
                Some(group) => {
                    self.compacted_len =
                        self.compacted_len - group_len(name, &group.settings) + len;
                    group.settings = settings.clone();
                }
                None => {
                    self.compacted_len += len;
                    self.groups.insert(
                        name.to_owned(),
                        DurableGroup {
                            settings: settings.clone(),
                            partitions: BTreeMap::new(),
                        },
                    );
                }
            }
            return;
        }
        let Some(group) = self.groups.get_mut(name) else {
            return;
        };
        let run_bytes = |n: usize| (n * RUN_LEN) as u64;
        match change {
            Change::Settings(_) => {}
            Change::Delete => {
                let mut len = group_len(name, &group.settings);
                for ((topic, _), partition) in &group.partitions {
                    len += partition_len(name, topic) + run_bytes(2 * partition.offsets.len());
                }
                self.compacted_len -= len;
                self.groups.remove(name);
            }
            Change::DropTopic(topic) => {
                let mut len = 0;
                group.partitions.retain(|(t, _), partition| {
                    let keep = t != topic;
                    if !keep {
                        len += partition_len(name, t) + run_bytes(2 * partition.offsets.len());
                    }
                    keep
                });
                self.compacted_len -= len;
            }
            Change::Partition {
                topic,
                partition,
                start,
                accepted,
                dead_lettered,
            } => {
                let key = (topic.clone(), *partition);
                let state = group.partitions.entry(key).or_insert_with(|| {
                    self.compacted_len += partition_len(name, topic);
                    DurablePartition::default()
                });
                let before = state.offsets.len();
                state.start = *start;
                state.accepted = *accepted;
                state.dead_lettered = *dead_lettered;
                state.offsets = state.offsets.split_off(start);
                let removed = before - state.offsets.len() + state.advance();
                self.compacted_len -= run_bytes(2 * removed);
            }
            Change::Delivered {
                topic,
                partition,
                runs,
            } => {
                let Some(state) = group.partitions.get_mut(&(topic.clone(), *partition)) else {
                    return;
                };
                let added = state.apply_runs(runs, 0, |entry, count| {
                    entry.delivery_count = count;
                    None
                });
                self.compacted_len += run_bytes(2 * added);
            }
            Change::Acked {
                topic,
                partition,
                runs,
            } => {
                let Some(state) = group.partitions.get_mut(&(topic.clone(), *partition)) else {
                    return;
                };
                // Delivered once at least, when no delivery count was written down.
                let added = state.apply_runs(runs, 1, |entry, outcome| {
                    if entry.outcome.is_some_and(Outcome::is_done) {
                        return None;
                    }
                    entry.outcome = Some(outcome);
                    Some(outcome)
                });
                let removed = state.advance();
                self.compacted_len =
                    self.compacted_len + run_bytes(2 * added) - run_bytes(2 * removed);
            }
        }
    }
}

impl Journaled for ShareState {
    type Record = StateRecord;

    const NAME: &'static str = "share";
    const FILE_HEADER: [u8; 6] = FILE_HEADER;

    fn encode(record: &StateRecord, out: &mut Vec<u8>) -> Result<(), String> {
        encode(record, out)
    }

    fn decode(body: &[u8]) -> Result<Vec<StateRecord>, String> {
        decode(body)
    }

    fn apply(&mut self, (group, change): &StateRecord) {
        self.apply_change(group, change);
    }

    /// An upper bound: each offset counted as a run of its own in both the delivered and
    /// the acked record.
    fn compacted_len(&self) -> u64 {
        FILE_HEADER.len() as u64 + self.compacted_len
    }

    /// Per group one frame with its settings, then per partition one frame: its start and
    /// counters (less what the acked record after them counts again), its delivery counts
    /// and its done offsets.
    fn snapshot(&self, frame: &mut FrameSink<'_, StateRecord>) -> Result<(), BrokerError> {
        for (name, group) in &self.groups {
            frame(&[(name.clone(), Change::Settings(group.settings.clone()))])?;
            for ((topic, partition), state) in &group.partitions {
                let done = |outcome| {
                    state
                        .offsets
                        .values()
                        .filter(|o| o.outcome == Some(outcome))
                        .count() as u64
                };
                let record = |change| (name.clone(), change);
                frame(&[
                    record(Change::Partition {
                        topic: topic.clone(),
                        partition: *partition,
                        start: state.start,
                        accepted: state.accepted - done(Outcome::Accepted),
                        dead_lettered: state.dead_lettered - done(Outcome::Archived),
                    }),
                    record(Change::Delivered {
                        topic: topic.clone(),
                        partition: *partition,
                        runs: runs(state.offsets.iter().map(|(o, d)| (*o, d.delivery_count))),
                    }),
                    record(Change::Acked {
                        topic: topic.clone(),
                        partition: *partition,
                        runs: runs(
                            state
                                .offsets
                                .iter()
                                .filter_map(|(o, d)| Some((*o, d.outcome?))),
                        ),
                    }),
                ])?;
            }
        }
        Ok(())
    }

    fn corrupt(path: &Path, reason: String) -> BrokerError {
        BrokerError::ShareStateCorrupt {
            path: path.to_owned(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::state_record::Run;

    fn apply(state: &mut ShareState, change: Change) {
        state.apply_change("g", &change);
    }

    fn partition(start: u64) -> Change {
        Change::Partition {
            topic: "t".into(),
            partition: 0,
            start,
            accepted: 0,
            dead_lettered: 0,
        }
    }

    fn delivered(first: u64, len: u32, count: u32) -> Change {
        Change::Delivered {
            topic: "t".into(),
            partition: 0,
            runs: vec![Run {
                first,
                len,
                value: count,
            }],
        }
    }

    fn acked(first: u64, len: u32, outcome: Outcome) -> Change {
        Change::Acked {
            topic: "t".into(),
            partition: 0,
            runs: vec![Run {
                first,
                len,
                value: outcome,
            }],
        }
    }

    fn replayed(state: &ShareState) -> ShareState {
        let mut out = ShareState::default();
        state
            .snapshot(&mut |records| {
                for (group, change) in records {
                    out.apply_change(group, change);
                }
                Ok(())
            })
            .expect("snapshot");
        out
    }

    #[test]
    fn acks_move_the_start_and_a_snapshot_replays_to_the_same_state() {
        let mut state = ShareState::default();
        apply(&mut state, Change::Settings(ShareGroupSettings::default()));
        apply(&mut state, partition(10));
        apply(&mut state, delivered(10, 5, 1));
        apply(&mut state, delivered(12, 1, 2));
        apply(&mut state, acked(11, 1, Outcome::Accepted));
        apply(&mut state, acked(13, 1, Outcome::Archived));
        let p = &state.groups()["g"].partitions[&("t".to_owned(), 0)];
        assert_eq!((p.start, p.accepted, p.dead_lettered), (10, 1, 1));
        assert_eq!(p.offsets.len(), 5);
        apply(&mut state, acked(10, 1, Outcome::Accepted));
        let p = &state.groups()["g"].partitions[&("t".to_owned(), 0)];
        assert_eq!((p.start, p.accepted), (12, 2));
        assert_eq!(p.offsets[&12].delivery_count, 2);
        let again = replayed(&state);
        assert_eq!(again.groups, state.groups);
        // Acking twice counts once.
        apply(&mut state, acked(13, 1, Outcome::Archived));
        assert_eq!(
            state.groups()["g"].partitions[&("t".to_owned(), 0)].dead_lettered,
            1
        );
    }

    #[test]
    fn a_reject_waiting_for_its_dead_letter_holds_the_start_until_archived() {
        let mut state = ShareState::default();
        apply(&mut state, Change::Settings(ShareGroupSettings::default()));
        apply(&mut state, partition(0));
        apply(&mut state, delivered(0, 2, 1));
        apply(&mut state, acked(0, 1, Outcome::Rejected));
        apply(&mut state, acked(1, 1, Outcome::Accepted));
        // A done record is not made pending again.
        apply(&mut state, acked(1, 1, Outcome::Rejected));
        let p = &state.groups()["g"].partitions[&("t".to_owned(), 0)];
        assert_eq!((p.start, p.accepted, p.dead_lettered), (0, 1, 0));
        assert_eq!(p.offsets[&0].outcome, Some(Outcome::Rejected));
        assert_eq!(p.offsets[&1].outcome, Some(Outcome::Accepted));
        assert_eq!(replayed(&state).groups, state.groups);
        apply(&mut state, acked(0, 1, Outcome::Archived));
        let p = &state.groups()["g"].partitions[&("t".to_owned(), 0)];
        assert_eq!((p.start, p.accepted, p.dead_lettered), (2, 1, 1));
    }

    #[test]
    fn the_compacted_size_bounds_a_real_snapshot_and_returns_to_its_base() {
        use crate::journal::frame::encode_frame;
        let encoded = |state: &ShareState| {
            let mut out = FILE_HEADER.to_vec();
            state
                .snapshot(&mut |records| {
                    encode_frame(&mut out, |body| {
                        records.iter().try_for_each(|r| encode(r, body))
                    })
                    .map_err(|reason| BrokerError::invalid_request("test", reason))
                })
                .expect("snapshot");
            out.len() as u64
        };
        let mut state = ShareState::default();
        apply(&mut state, Change::Settings(ShareGroupSettings::default()));
        apply(&mut state, partition(0));
        let base = state.compacted_len();
        assert!(base >= encoded(&state));
        apply(&mut state, delivered(0, 100, 1));
        apply(&mut state, acked(50, 10, Outcome::Accepted));
        assert!(state.compacted_len() >= encoded(&state));
        apply(&mut state, acked(0, 50, Outcome::Accepted));
        apply(&mut state, acked(60, 40, Outcome::Archived));
        assert_eq!(
            state.compacted_len(),
            base,
            "everything done: nothing in the window"
        );
        apply(&mut state, Change::DropTopic("t".into()));
        apply(&mut state, Change::Delete);
        assert_eq!(state.compacted_len(), FILE_HEADER.len() as u64);
        assert!(state.groups().is_empty());
    }
}
