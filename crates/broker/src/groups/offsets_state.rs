//! The committed offsets the offsets log holds, as its records replay into them, and the size
//! a compacted copy of them takes.

use std::collections::BTreeMap;

use crate::groups::offsets_record::{FILE_HEADER, FRAME_HEADER_LEN, commit_record_len, entry_len};
use crate::groups::store::OffsetChange;
use crate::groups::{Committed, TopicPartition};

/// Committed offsets by partition.
pub(crate) type Offsets = BTreeMap<TopicPartition, Committed>;

/// Every group's committed offsets; groups without any are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LiveState {
    groups: BTreeMap<String, Offsets>,
    /// Bytes of a compacted file holding `groups` (see [`LiveState::compacted_len`]).
    compacted_len: u64,
}

impl LiveState {
    /// Applies one record: the last commit of a partition wins, deletions drop offsets.
    pub(crate) fn apply(&mut self, group: &str, change: &OffsetChange) {
        let before = self.group_len(group);
        match change {
            OffsetChange::Set(entries) => {
                if !entries.is_empty() {
                    let offsets = self.groups.entry(group.to_owned()).or_default();
                    change.apply(offsets);
                }
            }
            OffsetChange::RemoveTopic(_) | OffsetChange::Clear => {
                if let Some(offsets) = self.groups.get_mut(group) {
                    change.apply(offsets);
                    if offsets.is_empty() {
                        self.groups.remove(group);
                    }
                }
            }
        }
        self.compacted_len = self.compacted_len - before + self.group_len(group);
    }

    /// Bytes a compacted file takes: the file header, then per group one frame holding one
    /// commit record with all its offsets.
    pub(crate) fn compacted_len(&self) -> u64 {
        FILE_HEADER.len() as u64 + self.compacted_len
    }

    /// Every group's offsets.
    pub(crate) fn groups(&self) -> &BTreeMap<String, Offsets> {
        &self.groups
    }

    /// The frame of a compacted file holding `group`'s offsets, in bytes (0 without any).
    fn group_len(&self, group: &str) -> u64 {
        self.groups.get(group).map_or(0, |offsets| {
            let entries: usize = offsets.keys().map(entry_len).sum();
            (FRAME_HEADER_LEN + commit_record_len(group) + entries) as u64
        })
    }
}

impl From<LiveState> for BTreeMap<String, Offsets> {
    fn from(state: LiveState) -> Self {
        state.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::offsets_record::encode_frame;

    fn set(topic: &str, partitions: &[u32]) -> OffsetChange {
        let committed = Committed {
            offset: 1,
            commit_ms: 2,
        };
        OffsetChange::Set(
            partitions
                .iter()
                .map(|&p| (TopicPartition::new(topic, p), committed))
                .collect(),
        )
    }

    /// The bytes of the compacted file, encoded for real.
    fn encoded_len(state: &LiveState) -> u64 {
        let mut out = FILE_HEADER.to_vec();
        for (group, offsets) in state.groups() {
            let change =
                OffsetChange::Set(offsets.iter().map(|(tp, c)| (tp.clone(), *c)).collect());
            encode_frame([(group.as_str(), &change)], &mut out).expect("encode");
        }
        out.len() as u64
    }

    #[test]
    fn replay_keeps_the_last_commit_and_honours_deletions_with_an_exact_size() {
        let mut state = LiveState::default();
        let steps = [
            ("a", set("orders", &[0, 1, 2])),
            ("b", set("orders", &[0])),
            ("a", set("orders", &[1])),
            ("a", set("payments", &[5])),
            ("a", OffsetChange::RemoveTopic("orders".into())),
            ("b", OffsetChange::Clear),
            ("c", OffsetChange::Clear),
            ("c", OffsetChange::RemoveTopic("orders".into())),
            ("d", set("orders", &[])),
        ];
        for (group, change) in &steps {
            state.apply(group, change);
            assert_eq!(
                state.compacted_len(),
                encoded_len(&state),
                "after {group} {change:?}"
            );
        }
        assert_eq!(state.groups().keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            state.groups()["a"].keys().collect::<Vec<_>>(),
            [&TopicPartition::new("payments", 5)]
        );
    }
}
