//! The records of the offsets log and the frames that carry them.
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

use crate::groups::store::OffsetChange;
use crate::groups::{Committed, TopicPartition};

/// Magic and version at the start of every offsets log file.
pub(crate) const FILE_HEADER: [u8; 6] = *b"SLOF\x00\x01";
/// Length and CRC of a frame.
pub(crate) const FRAME_HEADER_LEN: usize = 4 + 4;

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

/// Appends one frame holding `records` to `out`; the error says which field does not fit.
pub(crate) fn encode_frame<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a OffsetChange)>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    for (group, change) in records {
        encode_record(group, change, out)?;
    }
    let body = &out[start + FRAME_HEADER_LEN..];
    let body_len = u32::try_from(body.len())
        .map_err(|_| format!("a frame of {} bytes exceeds 4 GiB", body.len()))?;
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&body_len.to_be_bytes());
    out[start + 4..start + FRAME_HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn encode_record(group: &str, change: &OffsetChange, out: &mut Vec<u8>) -> Result<(), String> {
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

fn put_str(out: &mut Vec<u8>, s: &str, what: &str) -> Result<(), String> {
    let len = u16::try_from(s.len())
        .map_err(|_| format!("{what} of {} bytes exceeds {} bytes", s.len(), u16::MAX))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// What is found at a position of a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A frame whose CRC matches: its body, and the bytes it takes with its header.
    Intact { body: &'a [u8], len: usize },
    /// Fewer bytes remain than the frame's header or its stated length needs.
    Incomplete,
    /// The stated length is 0 (no frame is empty).
    EmptyLength,
    /// The body does not match its CRC; `ends_at_eof` when it is the last thing in the file.
    BadCrc {
        stored: u32,
        computed: u32,
        ends_at_eof: bool,
    },
}

/// Reads the frame at the start of `bytes` (the rest of a file).
pub(crate) fn read_frame(bytes: &[u8]) -> Frame<'_> {
    let Some((header, rest)) = bytes.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Frame::Incomplete;
    };
    let body_len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let stored = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if body_len == 0 {
        return Frame::EmptyLength;
    }
    let Some(body) = rest.get(..body_len) else {
        return Frame::Incomplete;
    };
    let computed = crc32c::crc32c(body);
    if computed != stored {
        return Frame::BadCrc {
            stored,
            computed,
            ends_at_eof: rest.len() == body_len,
        };
    }
    Frame::Intact {
        body,
        len: FRAME_HEADER_LEN + body_len,
    }
}

/// The records of an intact frame's body, in order; the error says what is malformed.
pub(crate) fn decode_body(body: &[u8]) -> Result<Vec<(String, OffsetChange)>, String> {
    let mut reader = Reader(body);
    let mut records = Vec::new();
    while !reader.0.is_empty() {
        let index = records.len();
        let kind = reader.array::<1>("record kind")?[0];
        let group = reader.string("group name")?;
        let change = match kind {
            COMMIT => {
                let count = u32::from_be_bytes(reader.array("offset count")?) as usize;
                if count > reader.0.len() / ENTRY_FIXED_LEN {
                    return Err(format!(
                        "record {index}: {count} offsets cannot fit in the {} bytes left",
                        reader.0.len()
                    ));
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let topic = reader.string("topic name")?;
                    let partition = u32::from_be_bytes(reader.array("partition")?);
                    let offset = u64::from_be_bytes(reader.array("offset")?);
                    let commit_ms = i64::from_be_bytes(reader.array("commit time")?);
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

/// Reads the bytes of a frame body front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err(format!("frame ends inside a {what}"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = usize::from(u16::from_be_bytes(self.array(what)?));
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| format!("{what} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        encode_frame(records.iter().map(|(g, c)| (g.as_str(), c)), &mut out).expect("encode");
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
    fn every_flipped_bit_and_every_cut_is_detected() {
        let bytes = frame(&sample());
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    !matches!(read_frame(&bad), Frame::Intact { .. }),
                    "byte {i} bit {bit} accepted"
                );
            }
        }
        for len in 0..bytes.len() {
            let cut = read_frame(&bytes[..len]);
            assert!(
                matches!(cut, Frame::Incomplete | Frame::EmptyLength),
                "cut to {len}: {cut:?}"
            );
        }
        let mut followed = bytes.clone();
        followed[FRAME_HEADER_LEN] ^= 1;
        followed.extend_from_slice(&bytes);
        assert!(matches!(
            read_frame(&followed),
            Frame::BadCrc {
                ends_at_eof: false,
                ..
            }
        ));
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

    #[test]
    fn names_too_long_for_the_format_are_refused() {
        let long = "t".repeat(usize::from(u16::MAX) + 1);
        let change = OffsetChange::RemoveTopic(long);
        let err = encode_frame([("g", &change)], &mut Vec::new());
        assert!(err.is_err_and(|e| e.contains("topic name of 65536 bytes exceeds 65535")));
    }
}
