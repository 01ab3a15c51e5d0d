//! The records of the share state journal (`crate::journal`, files `share-<N>.log` under
//! `data_dir/share`), and their bytes.
//!
//! ```text
//! file    header, then frames
//! header  magic "SLSH" (4 bytes), version u16 = 1
//! frame   body_len u32, crc u32 (CRC-32C of the body), body: one or more records
//! record  kind u8, group_len u16, group (UTF-8), then by kind:
//!         1 settings    lock_ms u64, attempt_limit u32, backoff_ms u64, reset u8 (0 earliest,
//!                       1 latest), dlq_len u16, dlq (UTF-8; length 0 = none)
//!                       (creates the group, or replaces its settings)
//!         2 delete      nothing (drops the group and all its state)
//!         3 partition   topic_len u16, topic, partition u32, start u64, accepted u64,
//!                       dead_lettered u64  (sets the start offset and the counters; drops
//!                       the state of offsets below the start)
//!         4 delivered   topic_len u16, topic, partition u32, count u32,
//!                       count x { first u64, len u32, delivery_count u32 }
//!                       (offsets first..first+len were delivered that many times)
//!         5 acked       topic_len u16, topic, partition u32, count u32,
//!                       count x { first u64, len u32, outcome u8 (1 accepted, 2 archived,
//!                       3 rejected: its dead letter not appended yet) }
//!                       (offsets first..first+len are done, and counted in the counters,
//!                       or, outcome 3, headed for the dead-letter topic)
//!         6 drop topic  topic_len u16, topic  (drops the group's state of the topic)
//! ```
//!
//! Integers are big-endian. One frame is one write, so the records queued together survive
//! a crash together or not at all.

use std::time::Duration;

use crate::journal::frame::{Reader, put_str};
use crate::share::{ShareGroupSettings, ShareOffsetReset};

/// Magic and version at the start of every share state file.
pub(crate) const FILE_HEADER: [u8; 6] = *b"SLSH\x00\x01";

const SETTINGS: u8 = 1;
const DELETE: u8 = 2;
const PARTITION: u8 = 3;
const DELIVERED: u8 = 4;
const ACKED: u8 = 5;
const DROP_TOPIC: u8 = 6;

/// Bytes of a run of `delivered` or `acked`: first, len, and a u32 or a u8.
pub(crate) const RUN_LEN: usize = 8 + 4 + 4;

/// How a done record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted.
    Accepted,
    /// Archived: rejected or past the delivery limit (and dead-lettered, with a topic).
    Archived,
    /// Rejected and headed for the dead-letter topic, not appended there yet: not done,
    /// never delivered again.
    Rejected,
}

impl Outcome {
    /// Whether the record is done (its offset may fall below the start).
    pub(crate) fn is_done(self) -> bool {
        self != Outcome::Rejected
    }
}

/// Offsets `first..first + len` and what holds for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run<T> {
    /// The first offset.
    pub(crate) first: u64,
    /// How many offsets.
    pub(crate) len: u32,
    /// The delivery count or outcome of each.
    pub(crate) value: T,
}

/// Offset pairs `(offset, value)`, sorted by offset, as runs of consecutive offsets with
/// equal values.
pub(crate) fn runs<T: Copy + PartialEq>(sorted: impl IntoIterator<Item = (u64, T)>) -> Vec<Run<T>> {
    let mut runs: Vec<Run<T>> = Vec::new();
    for (offset, value) in sorted {
        match runs.last_mut() {
            Some(run)
                if run.value == value
                    && run.first + u64::from(run.len) == offset
                    && run.len < u32::MAX =>
            {
                run.len += 1;
            }
            _ => runs.push(Run {
                first: offset,
                len: 1,
                value,
            }),
        }
    }
    runs
}

/// A change to the share state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Creates the group, or replaces its settings.
    Settings(ShareGroupSettings),
    /// Drops the group.
    Delete,
    /// Sets a partition's start offset and counters.
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Its start offset.
        start: u64,
        /// Accepted records counted so far.
        accepted: u64,
        /// Archived records counted so far.
        dead_lettered: u64,
    },
    /// Delivery counts of offsets of a partition.
    Delivered {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offsets and their counts.
        runs: Vec<Run<u32>>,
    },
    /// Offsets of a partition that are done.
    Acked {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offsets and how each ended.
        runs: Vec<Run<Outcome>>,
    },
    /// Drops the group's state of a topic.
    DropTopic(String),
}

/// A change of one group.
pub(crate) type StateRecord = (String, Change);

/// Appends one record; the error says which field does not fit.
pub(crate) fn encode((group, change): &StateRecord, out: &mut Vec<u8>) -> Result<(), String> {
    let kind = match change {
        Change::Settings(_) => SETTINGS,
        Change::Delete => DELETE,
        Change::Partition { .. } => PARTITION,
        Change::Delivered { .. } => DELIVERED,
        Change::Acked { .. } => ACKED,
        Change::DropTopic(_) => DROP_TOPIC,
    };
    out.push(kind);
    put_str(out, group, "group name")?;
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match change {
        Change::Settings(s) => {
            out.extend_from_slice(&millis(s.record_lock_duration).to_be_bytes());
            out.extend_from_slice(&s.delivery_attempt_limit.to_be_bytes());
            out.extend_from_slice(&millis(s.redelivery_backoff).to_be_bytes());
            out.push(match s.auto_offset_reset {
                ShareOffsetReset::Earliest => 0,
                ShareOffsetReset::Latest => 1,
            });
            put_str(
                out,
                s.dead_letter_topic.as_deref().unwrap_or_default(),
                "dead-letter topic",
            )?;
        }
        Change::Delete => {}
        Change::Partition {
            topic,
            partition,
            start,
            accepted,
            dead_lettered,
        } => {
            put_str(out, topic, "topic name")?;
            out.extend_from_slice(&partition.to_be_bytes());
            out.extend_from_slice(&start.to_be_bytes());
            out.extend_from_slice(&accepted.to_be_bytes());
            out.extend_from_slice(&dead_lettered.to_be_bytes());
        }
        Change::Delivered {
            topic,
            partition,
            runs,
        } => put_runs(out, topic, *partition, runs, |count, out| {
            out.extend_from_slice(&count.to_be_bytes());
        })?,
        Change::Acked {
            topic,
            partition,
            runs,
        } => put_runs(out, topic, *partition, runs, |outcome, out| {
            out.push(match outcome {
                Outcome::Accepted => 1,
                Outcome::Archived => 2,
                Outcome::Rejected => 3,
            });
        })?,
        Change::DropTopic(topic) => put_str(out, topic, "topic name")?,
    }
    Ok(())
}

fn put_runs<T: Copy>(
    out: &mut Vec<u8>,
    topic: &str,
    partition: u32,
    runs: &[Run<T>],
    value: impl Fn(T, &mut Vec<u8>),
) -> Result<(), String> {
    put_str(out, topic, "topic name")?;
    out.extend_from_slice(&partition.to_be_bytes());
    let count = u32::try_from(runs.len())
        .map_err(|_| format!("{} runs in one record exceed 2^32", runs.len()))?;
    out.extend_from_slice(&count.to_be_bytes());
    for run in runs {
        out.extend_from_slice(&run.first.to_be_bytes());
        out.extend_from_slice(&run.len.to_be_bytes());
        value(run.value, out);
    }
    Ok(())
}

/// The records of an intact frame's body, in order; the error says what is malformed.
pub(crate) fn decode(body: &[u8]) -> Result<Vec<StateRecord>, String> {
    let mut reader = Reader(body);
    let mut records = Vec::new();
    while reader.remaining() > 0 {
        let index = records.len();
        let kind = reader.array::<1>("record kind")?[0];
        let group = reader.string("group name")?;
        let change = match kind {
            SETTINGS => {
                let record_lock_duration = Duration::from_millis(reader.u64("lock duration")?);
                let delivery_attempt_limit = reader.u32("delivery attempt limit")?;
                let redelivery_backoff = Duration::from_millis(reader.u64("redelivery backoff")?);
                let auto_offset_reset = match reader.array::<1>("offset reset")?[0] {
                    0 => ShareOffsetReset::Earliest,
                    1 => ShareOffsetReset::Latest,
                    other => return Err(format!("record {index}: unknown offset reset {other}")),
                };
                let dlq = reader.string("dead-letter topic")?;
                Change::Settings(ShareGroupSettings {
                    record_lock_duration,
                    delivery_attempt_limit,
                    dead_letter_topic: (!dlq.is_empty()).then_some(dlq),
                    redelivery_backoff,
                    auto_offset_reset,
                })
            }
            DELETE => Change::Delete,
            PARTITION => Change::Partition {
                topic: reader.string("topic name")?,
                partition: reader.u32("partition")?,
                start: reader.u64("start offset")?,
                accepted: reader.u64("accepted count")?,
                dead_lettered: reader.u64("dead-lettered count")?,
            },
            DELIVERED => {
                let (topic, partition, runs) =
                    read_runs(&mut reader, index, |r| r.u32("delivery count"))?;
                Change::Delivered {
                    topic,
                    partition,
                    runs,
                }
            }
            ACKED => {
                let (topic, partition, runs) =
                    read_runs(&mut reader, index, |r| match r.array::<1>("outcome")?[0] {
                        1 => Ok(Outcome::Accepted),
                        2 => Ok(Outcome::Archived),
                        3 => Ok(Outcome::Rejected),
                        other => Err(format!("record {index}: unknown outcome {other}")),
                    })?;
                Change::Acked {
                    topic,
                    partition,
                    runs,
                }
            }
            DROP_TOPIC => Change::DropTopic(reader.string("topic name")?),
            other => return Err(format!("record {index}: unknown record kind {other}")),
        };
        records.push((group, change));
    }
    Ok(records)
}

type Runs<T> = (String, u32, Vec<Run<T>>);

fn read_runs<T>(
    reader: &mut Reader<'_>,
    index: usize,
    value: impl Fn(&mut Reader<'_>) -> Result<T, String>,
) -> Result<Runs<T>, String> {
    let topic = reader.string("topic name")?;
    let partition = reader.u32("partition")?;
    let count = reader.u32("run count")? as usize;
    // Each run takes at least 13 bytes.
    if count > reader.remaining() / 13 {
        return Err(format!(
            "record {index}: {count} runs cannot fit in the {} bytes left",
            reader.remaining()
        ));
    }
    let mut runs = Vec::with_capacity(count);
    for _ in 0..count {
        let first = reader.u64("first offset")?;
        let len = reader.u32("run length")?;
        if first.checked_add(u64::from(len)).is_none() {
            return Err(format!(
                "record {index}: a run of {len} from offset {first} overflows"
            ));
        }
        runs.push(Run {
            first,
            len,
            value: value(reader)?,
        });
    }
    Ok((topic, partition, runs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::frame::{Frame, encode_frame, read_frame};

    fn sample() -> Vec<StateRecord> {
        let g = || "work".to_owned();
        vec![
            (
                g(),
                Change::Settings(ShareGroupSettings {
                    dead_letter_topic: Some("work.dlq".into()),
                    redelivery_backoff: Duration::from_millis(250),
                    auto_offset_reset: ShareOffsetReset::Earliest,
                    ..ShareGroupSettings::default()
                }),
            ),
            (
                "plain".to_owned(),
                Change::Settings(ShareGroupSettings::default()),
            ),
            (
                g(),
                Change::Partition {
                    topic: "jobs".into(),
                    partition: 3,
                    start: 17,
                    accepted: 5,
                    dead_lettered: 1,
                },
            ),
            (
                g(),
                Change::Delivered {
                    topic: "jobs".into(),
                    partition: 3,
                    runs: runs([(17, 1), (18, 1), (19, 2), (30, 1)]),
                },
            ),
            (
                g(),
                Change::Acked {
                    topic: "jobs".into(),
                    partition: 3,
                    runs: runs([
                        (17, Outcome::Accepted),
                        (18, Outcome::Archived),
                        (19, Outcome::Rejected),
                    ]),
                },
            ),
            (g(), Change::DropTopic("old".into())),
            (g(), Change::Delete),
        ]
    }

    #[test]
    fn records_round_trip() {
        let records = sample();
        let mut out = Vec::new();
        encode_frame(&mut out, |body| {
            records.iter().try_for_each(|r| encode(r, body))
        })
        .expect("encode");
        let Frame::Intact { body, .. } = read_frame(&out) else {
            panic!("not intact");
        };
        assert_eq!(decode(body), Ok(records));
    }

    #[test]
    fn runs_join_consecutive_offsets_with_equal_values() {
        assert_eq!(
            runs([(1, 1), (2, 1), (3, 2), (5, 2), (6, 2)]),
            [
                Run {
                    first: 1,
                    len: 2,
                    value: 1
                },
                Run {
                    first: 3,
                    len: 1,
                    value: 2
                },
                Run {
                    first: 5,
                    len: 2,
                    value: 2
                },
            ]
        );
        assert!(runs::<u32>([]).is_empty());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(decode(&[9, 0, 1, b'g']).is_err_and(|e| e.contains("unknown record kind 9")));
        let mut bad = vec![DELIVERED, 0, 1, b'g', 0, 1, b't'];
        bad.extend_from_slice(&0u32.to_be_bytes());
        bad.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&bad).is_err_and(|e| e.contains("cannot fit")));
        let mut overflow = vec![ACKED, 0, 1, b'g', 0, 1, b't'];
        overflow.extend_from_slice(&0u32.to_be_bytes());
        overflow.extend_from_slice(&1u32.to_be_bytes());
        overflow.extend_from_slice(&u64::MAX.to_be_bytes());
        overflow.extend_from_slice(&2u32.to_be_bytes());
        overflow.push(1);
        assert!(decode(&overflow).is_err_and(|e| e.contains("overflows")));
    }
}
