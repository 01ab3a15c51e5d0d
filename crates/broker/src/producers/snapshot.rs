//! The producer-state snapshot file of a partition: its bytes (docs/storage-format.md,
//! "Producer state") and their checks.

use std::collections::VecDeque;
use std::path::Path;

use bytes::BufMut;

use super::state::{BatchMeta, ProducerEntry, TRACKED_BATCHES};

/// Name of the snapshot file in a partition directory.
pub(crate) const SNAPSHOT_FILE: &str = "producer-state";

/// First bytes of the file.
const MAGIC: &[u8; 4] = b"SLPS";
/// The format version this build writes and reads.
const VERSION: u16 = 1;
/// Magic, version, the offset and the producer count.
const HEADER_LEN: usize = 4 + 2 + 8 + 4;
/// Producer id, epoch, last seen time and batch count.
const PRODUCER_LEN: usize = 8 + 2 + 8 + 1;
/// First and last sequence, base offset, last offset delta and max timestamp.
const BATCH_LEN: usize = 4 + 4 + 8 + 4 + 8;
/// The CRC-32C at the end.
const CRC_LEN: usize = 4;

/// A partition's producers as of an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The producers reflect every batch below this offset (and maybe some at or past it).
    pub(crate) through: u64,
    /// The producers, by id.
    pub(crate) entries: Vec<(i64, ProducerEntry)>,
}

/// The file's bytes.
pub(crate) fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let batches: usize = snapshot.entries.iter().map(|(_, e)| e.batches.len()).sum();
    let mut out = Vec::with_capacity(
        HEADER_LEN + snapshot.entries.len() * PRODUCER_LEN + batches * BATCH_LEN + CRC_LEN,
    );
    out.put_slice(MAGIC);
    out.put_u16(VERSION);
    out.put_u64(snapshot.through);
    out.put_u32(u32::try_from(snapshot.entries.len()).unwrap_or(u32::MAX));
    for (id, entry) in &snapshot.entries {
        out.put_i64(*id);
        out.put_i16(entry.epoch);
        out.put_i64(entry.last_seen_ms);
        // At most `TRACKED_BATCHES`, so it fits.
        out.put_u8(entry.batches.len() as u8);
        for b in &entry.batches {
            out.put_i32(b.first_seq);
            out.put_i32(b.last_seq);
            out.put_u64(b.base_offset);
            out.put_i32(b.last_offset_delta);
            out.put_i64(b.max_timestamp);
        }
    }
    let crc = crc32c::crc32c(&out);
    out.put_u32(crc);
    out
}

/// Parses the file's bytes; the error says what is wrong with them.
pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    let Some((body, crc)) = bytes.split_last_chunk::<CRC_LEN>() else {
        return Err(format!("{} bytes, too short for a snapshot", bytes.len()));
    };
    let stored = u32::from_be_bytes(*crc);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(format!(
            "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let mut r = Reader { rest: body };
    if r.take::<4>()? != *MAGIC {
        return Err("not a producer-state file (bad magic)".to_owned());
    }
    let version = u16::from_be_bytes(r.take()?);
    if version != VERSION {
        return Err(format!(
            "format version {version}; this build reads version {VERSION}"
        ));
    }
    let through = u64::from_be_bytes(r.take()?);
    let count = u32::from_be_bytes(r.take()?) as usize;
    // Every producer takes at least this much: a count the bytes cannot hold is refused
    // before anything is allocated for it.
    if count > r.rest.len() / (PRODUCER_LEN + BATCH_LEN) {
        return Err(format!(
            "{count} producers do not fit in {} bytes",
            r.rest.len()
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let id = i64::from_be_bytes(r.take()?);
        let epoch = i16::from_be_bytes(r.take()?);
        let last_seen_ms = i64::from_be_bytes(r.take()?);
        let [n] = r.take::<1>()?;
        let n = usize::from(n);
        if !(1..=TRACKED_BATCHES).contains(&n) {
            return Err(format!(
                "producer {id} has {n} batches; expected 1..={TRACKED_BATCHES}"
            ));
        }
        let mut batches = VecDeque::with_capacity(TRACKED_BATCHES);
        for _ in 0..n {
            batches.push_back(BatchMeta {
                first_seq: i32::from_be_bytes(r.take()?),
                last_seq: i32::from_be_bytes(r.take()?),
                base_offset: u64::from_be_bytes(r.take()?),
                last_offset_delta: i32::from_be_bytes(r.take()?),
                max_timestamp: i64::from_be_bytes(r.take()?),
            });
        }
        entries.push((
            id,
            ProducerEntry {
                epoch,
                batches,
                last_seen_ms,
            },
        ));
    }
    if !r.rest.is_empty() {
        return Err(format!("{} bytes after the last producer", r.rest.len()));
    }
    Ok(Snapshot { through, entries })
}

/// Reads the snapshot at `path`: `None` when there is none; the error says what is wrong.
pub(crate) fn read(path: &Path) -> Result<Option<Snapshot>, String> {
    match std::fs::read(path) {
        Ok(bytes) => decode(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

/// Fixed-size fields off the front of a byte string.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((field, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err("truncated".to_owned());
        };
        self.rest = rest;
        Ok(*field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let meta = |i: i32| BatchMeta {
            first_seq: i * 10,
            last_seq: i * 10 + 9,
            base_offset: 1000 + i as u64,
            last_offset_delta: 9,
            max_timestamp: -1,
        };
        Snapshot {
            through: 4242,
            entries: vec![
                (
                    7,
                    ProducerEntry {
                        epoch: 3,
                        batches: (0..5).map(meta).collect(),
                        last_seen_ms: 1_700_000_000_000,
                    },
                ),
                (
                    i64::MAX,
                    ProducerEntry {
                        epoch: i16::MAX,
                        batches: [meta(3)].into(),
                        last_seen_ms: 0,
                    },
                ),
            ],
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&snapshot());
        assert_eq!(&bytes[..4], b"SLPS");
        assert_eq!(
            bytes.len(),
            HEADER_LEN + 2 * PRODUCER_LEN + 6 * BATCH_LEN + CRC_LEN
        );
        assert_eq!(decode(&bytes), Ok(snapshot()));
        let empty = Snapshot {
            through: 0,
            entries: Vec::new(),
        };
        assert_eq!(decode(&encode(&empty)), Ok(empty));
    }

    #[test]
    fn refuses_damaged_or_foreign_bytes() {
        let bytes = encode(&snapshot());
        for at in [0, 5, 20, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            assert!(decode(&flipped).is_err(), "flip at {at}");
        }
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(decode(&[]).is_err());
        /// The bytes with `body` changed and the CRC recomputed.
        fn resealed(bytes: &[u8], change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
            let mut body = bytes[..bytes.len() - CRC_LEN].to_vec();
            change(&mut body);
            let crc = crc32c::crc32c(&body);
            body.put_u32(crc);
            body
        }
        let newer = resealed(&bytes, |b| b[4..6].copy_from_slice(&2u16.to_be_bytes()));
        assert!(decode(&newer).is_err_and(|e| e.contains("version 2")));
        let huge = resealed(&bytes, |b| {
            b[14..18].copy_from_slice(&u32::MAX.to_be_bytes())
        });
        assert!(decode(&huge).is_err_and(|e| e.contains("do not fit")));
        let no_batches = resealed(&bytes, |b| b[HEADER_LEN + 18] = 0);
        assert!(decode(&no_batches).is_err_and(|e| e.contains("0 batches")));
        let trailing = resealed(&bytes, |b| b.push(0));
        assert!(decode(&trailing).is_err_and(|e| e.contains("after the last")));
    }
}
