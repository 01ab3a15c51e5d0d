//! The records of the offsets journal (`crate::journal`), and the frames that carry them.
//!
//! ```text
//! file    header, then frames
//! header  magic "SLOF" (4 bytes), version u16 = 1
//! frame   body_len u32, crc u32 (CRC-32C of the body), body: one or more records
//! record  kind u8, group_len u16, group (UTF-8), then by kind:
//!         1 commit        count u32, count x { topic_len u16, topic, partition u32,
//!                                              offset u64, commit_ms i64 }
//!         2 delete topic  topic_len u16, topic   (drops the group's offsets of the topic)
//!         3 delete group  nothing                (drops every offset of the group)
//! ```
//!
//! Integers are big-endian. One frame is one write: the changes queued together are written,
//! and so survive a crash, together or not at all.

use crate::groups::offsets_state::OffsetChange;
use crate::groups::{Committed, TopicPartition};
use crate::journal::frame::{Reader, put_str};

/// Magic and version at the start of every offsets log file.
pub(crate) const FILE_HEADER: [u8; 6] = *b"SLOF\x00\x01";
const COMMIT: u8 = 1;
const DELETE_TOPIC: u8 = 2;
const DELETE_GROUP: u8 = 3;
/// Kind and group length of a record.
const RECORD_FIXED_LEN: usize = 1 + 2;
/// Topic length, partition, offset and commit time of a commit entry.
const ENTRY_FIXED_LEN: usize = 2 + 4 + 8 + 8;

/// Bytes a commit record of `group` with no entries takes.
pub(crate) fn commit_record_len(group: &str) -> usize {
    RECORD_FIXED_LEN + group.len() + 4
}

/// Bytes one commit entry for `tp` takes.
pub(crate) fn entry_len(tp: &TopicPartition) -> usize {
    ENTRY_FIXED_LEN + tp.topic.len()
}

/// Appends one record of `group` to a frame body; the error says which field does not fit.
pub(crate) fn encode_record(
    group: &str,
    change: &OffsetChange,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let kind = match change {
        OffsetChange::Set(_) => COMMIT,
        OffsetChange::RemoveTopic(_) => DELETE_TOPIC,
        OffsetChange::Clear => DELETE_GROUP,
    };
    out.push(kind);
    put_str(out, group, "group name")?;
    match change {
        OffsetChange::Set(entries) => {
            let count = u32::try_from(entries.len())
                .map_err(|_| format!("{} offsets in one commit exceed 2^32", entries.len()))?;
            out.extend_from_slice(&count.to_be_bytes());
            for (tp, committed) in entries {
                put_str(out, &tp.topic, "topic name")?;
                out.extend_from_slice(&tp.partition.to_be_bytes());
                out.extend_from_slice(&committed.offset.to_be_bytes());
                out.extend_from_slice(&committed.commit_ms.to_be_bytes());
            }
        }
        OffsetChange::RemoveTopic(topic) => put_str(out, topic, "topic name")?,
        OffsetChange::Clear => {}
    }
    Ok(())
}

/// The records of an intact frame's body, in order; the error says what is malformed.
pub(crate) fn decode_body(body: &[u8]) -> Result<Vec<(String, OffsetChange)>, String> {
    let mut reader = Reader(body);
    let mut records = Vec::new();
    while reader.remaining() > 0 {
        let index = records.len();
        let kind = reader.array::<1>("record kind")?[0];
        let group = reader.string("group name")?;
        let change = match kind {
            COMMIT => {
                let count = reader.u32("offset count")? as usize;
                if count > reader.remaining() / ENTRY_FIXED_LEN {
                    return Err(format!(
                        "record {index}: {count} offsets cannot fit in the {} bytes left",
                        reader.remaining()
                    ));
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let topic = reader.string("topic name")?;
                    let partition = reader.u32("partition")?;
                    let offset = reader.u64("offset")?;
                    let commit_ms = reader.i64("commit time")?;
                    entries.push((
                        TopicPartition::new(topic, partition),
                        Committed { offset, commit_ms },
                    ));
                }
                OffsetChange::Set(entries)
            }
            DELETE_TOPIC => OffsetChange::RemoveTopic(reader.string("topic name")?),
            DELETE_GROUP => OffsetChange::Clear,
            other => return Err(format!("record {index}: unknown record kind {other}")),
        };
        records.push((group, change));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::frame::{FRAME_HEADER_LEN, Frame, encode_frame, read_frame};

    fn sample() -> Vec<(String, OffsetChange)> {
        let c = |offset, commit_ms| Committed { offset, commit_ms };
        vec![
            (
                "billing".to_owned(),
                OffsetChange::Set(vec![
                    (TopicPartition::new("orders", 0), c(42, 1_700_000_000_000)),
                    (TopicPartition::new("payments.v2", 7), c(u64::MAX, -1)),
                ]),
            ),
            (
                "audit".to_owned(),
                OffsetChange::RemoveTopic("orders".into()),
            ),
            ("old".to_owned(), OffsetChange::Clear),
            ("empty".to_owned(), OffsetChange::Set(Vec::new())),
        ]
    }

    fn frame(records: &[(String, OffsetChange)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, |body| {
            records
                .iter()
                .try_for_each(|(g, c)| encode_record(g, c, body))
        })
        .expect("encode");
        out
    }

    #[test]
    fn frames_round_trip_and_sizes_are_exact() {
        let records = sample();
        let bytes = frame(&records);
        let Frame::Intact { body, len } = read_frame(&bytes) else {
            panic!("not intact");
        };
        assert_eq!(len, bytes.len());
        assert_eq!(decode_body(body), Ok(records));
        let tp = TopicPartition::new("orders", 3);
        let one = OffsetChange::Set(vec![(
            tp.clone(),
            Committed {
                offset: 1,
                commit_ms: 2,
            },
        )]);
        let one = frame(&[("g".to_owned(), one)]);
        assert_eq!(
            one.len(),
            FRAME_HEADER_LEN + commit_record_len("g") + entry_len(&tp)
        );
    }

    #[test]
    fn malformed_bodies_behind_a_valid_crc_are_errors() {
        assert!(decode_body(&[9, 0, 1, b'g']).is_err_and(|e| e.contains("unknown record kind 9")));
        assert!(
            decode_body(&[COMMIT, 0, 1, b'g', 0xff, 0xff, 0xff, 0xff])
                .is_err_and(|e| e.contains("cannot fit"))
        );
        assert!(
            decode_body(&[DELETE_TOPIC, 0, 1, b'g', 0, 5, b'x'])
                .is_err_and(|e| e.contains("inside a topic name"))
        );
        assert!(decode_body(&[DELETE_GROUP, 0, 1, 0xff]).is_err_and(|e| e.contains("UTF-8")));
    }
}
