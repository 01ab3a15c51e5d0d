//! The committed offsets the offsets journal holds, as its records replay into them, and the
//! size a compacted copy of them takes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::BrokerError;
use crate::groups::offsets_record::{
    FILE_HEADER, commit_record_len, decode_body, encode_record, entry_len,
};
use crate::groups::{Committed, TopicPartition};
use crate::journal::frame::FRAME_HEADER_LEN;
use crate::journal::{FrameSink, Journaled};

/// Committed offsets by partition.
pub(crate) type Offsets = BTreeMap<TopicPartition, Committed>;

/// A change to a group's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OffsetChange {
    /// Sets the committed offset of partitions.
    Set(Vec<(TopicPartition, Committed)>),
    /// Drops every offset of a topic.
    RemoveTopic(String),
    /// Drops every offset.
    Clear,
}

impl OffsetChange {
    /// Applies the change to a group's offsets.
    pub(crate) fn apply(&self, offsets: &mut Offsets) {
        match self {
            OffsetChange::Set(entries) => {
                for (tp, committed) in entries {
                    offsets.insert(tp.clone(), *committed);
                }
            }
            OffsetChange::RemoveTopic(topic) => offsets.retain(|tp, _| tp.topic != *topic),
            OffsetChange::Clear => offsets.clear(),
        }
    }
}

/// Every group's committed offsets; groups without any are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LiveState {
    groups: BTreeMap<String, Offsets>,
    /// Bytes of a compacted file holding `groups` (see [`LiveState::compacted_len`]).
    compacted_len: u64,
}

impl LiveState {
    /// Applies one record: the last commit of a partition wins, deletions drop offsets.
    pub(crate) fn apply_change(&mut self, group: &str, change: &OffsetChange) {
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

    /// The frame of a compacted file holding `group`'s offsets, in bytes (0 without any).
    fn group_len(&self, group: &str) -> u64 {
        self.groups.get(group).map_or(0, |offsets| {
            let entries: usize = offsets.keys().map(entry_len).sum();
            (FRAME_HEADER_LEN + commit_record_len(group) + entries) as u64
        })
    }
}

impl Journaled for LiveState {
    type Record = (String, OffsetChange);

    const NAME: &'static str = "offsets";
    const FILE_HEADER: [u8; 6] = FILE_HEADER;

    fn encode((group, change): &Self::Record, out: &mut Vec<u8>) -> Result<(), String> {
        encode_record(group, change, out)
    }

    fn decode(body: &[u8]) -> Result<Vec<Self::Record>, String> {
        decode_body(body)
    }

    fn apply(&mut self, (group, change): &Self::Record) {
        self.apply_change(group, change);
    }

    fn compacted_len(&self) -> u64 {
        LiveState::compacted_len(self)
    }

    /// One frame per group, holding one commit record with all its offsets.
    fn snapshot(&self, frame: &mut FrameSink<'_, Self::Record>) -> Result<(), BrokerError> {
        for (group, offsets) in &self.groups {
            let all = OffsetChange::Set(offsets.iter().map(|(tp, c)| (tp.clone(), *c)).collect());
            frame(&[(group.clone(), all)])?;
        }
        Ok(())
    }

    fn corrupt(path: &Path, reason: String) -> BrokerError {
        BrokerError::OffsetsCorrupt {
            path: path.to_owned(),
            reason,
        }
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
    use crate::journal::frame::encode_frame;

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
        for (group, offsets) in &state.groups {
            let change =
                OffsetChange::Set(offsets.iter().map(|(tp, c)| (tp.clone(), *c)).collect());
            encode_frame(&mut out, |body| encode_record(group, &change, body)).expect("encode");
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
            state.apply_change(group, change);
            assert_eq!(
                state.compacted_len(),
                encoded_len(&state),
                "after {group} {change:?}"
            );
        }
        assert_eq!(state.groups.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            state.groups["a"].keys().collect::<Vec<_>>(),
            [&TopicPartition::new("payments", 5)]
        );
    }

    #[test]
    fn changes_apply_in_order() {
        let commit = |partition, offset| {
            OffsetChange::Set(vec![(
                TopicPartition::new("t", partition),
                Committed {
                    offset,
                    commit_ms: 0,
                },
            )])
        };
        let mut offsets = Offsets::new();
        commit(0, 3).apply(&mut offsets);
        commit(1, 4).apply(&mut offsets);
        commit(0, 5).apply(&mut offsets);
        assert_eq!(offsets.len(), 2);
        assert_eq!(offsets[&TopicPartition::new("t", 0)].offset, 5);
        OffsetChange::Clear.apply(&mut offsets);
        assert!(offsets.is_empty());
    }
}
