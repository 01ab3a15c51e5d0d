//! The file holding one group's committed offsets: `data_dir/groups/<group>.offsets`.
//!
//! ```text
//! magic    4 bytes  "SLGO"
//! version  u16      1
//! crc      u32      CRC-32C of everything after this field
//! count    u32      number of entries
//! entries  count x  { topic_len u16, topic (UTF-8), partition u32, offset u64, commit_ms i64 }
//! ```
//!
//! Integers are big-endian. The file is replaced whole, atomically: written to
//! `<group>.offsets.tmp`, fsynced, renamed over the old one, then the directory is fsynced.
//! A group without committed offsets has no file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::groups::{Committed, TopicPartition, validate_group_name};
use crate::{BrokerError, metadata};

/// Committed offsets by partition.
pub(crate) type Offsets = BTreeMap<TopicPartition, Committed>;

const MAGIC: &[u8; 4] = b"SLGO";
const VERSION: u16 = 1;
/// Magic, version and CRC.
const HEADER_LEN: usize = 4 + 2 + 4;
/// Partition, offset and commit time of an entry.
const ENTRY_FIXED_LEN: usize = 4 + 8 + 8;
const SUFFIX: &str = ".offsets";
const TMP_SUFFIX: &str = ".offsets.tmp";

/// The offsets file of `group` in `dir`.
pub(crate) fn path(dir: &Path, group: &str) -> PathBuf {
    dir.join(format!("{group}{SUFFIX}"))
}

/// Serialises offsets into the file format.
pub(crate) fn encode(offsets: &Offsets) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let count = u32::try_from(offsets.len()).map_err(|_| "too many entries".to_owned())?;
    body.extend_from_slice(&count.to_be_bytes());
    for (tp, committed) in offsets {
        let topic_len = u16::try_from(tp.topic.len())
            .map_err(|_| format!("topic name of {} bytes is too long", tp.topic.len()))?;
        body.extend_from_slice(&topic_len.to_be_bytes());
        body.extend_from_slice(tp.topic.as_bytes());
        body.extend_from_slice(&tp.partition.to_be_bytes());
        body.extend_from_slice(&committed.offset.to_be_bytes());
        body.extend_from_slice(&committed.commit_ms.to_be_bytes());
    }
    let mut file = Vec::with_capacity(HEADER_LEN + body.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&VERSION.to_be_bytes());
    file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    file.extend_from_slice(&body);
    Ok(file)
}

/// Parses and checks a file's contents; the error says what is wrong.
pub(crate) fn decode(bytes: &[u8]) -> Result<Offsets, String> {
    let mut reader = Reader(bytes);
    let magic = reader.take(MAGIC.len(), "magic")?;
    if magic != MAGIC {
        return Err(format!("bad magic {magic:02x?}, expected {MAGIC:02x?}"));
    }
    let version = u16::from_be_bytes(reader.array("version")?);
    if version != VERSION {
        return Err(format!(
            "unsupported version {version} (this broker reads version {VERSION})"
        ));
    }
    let stored_crc = u32::from_be_bytes(reader.array("checksum")?);
    let actual_crc = crc32c::crc32c(reader.0);
    if stored_crc != actual_crc {
        return Err(format!(
            "CRC mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}"
        ));
    }
    let count = u32::from_be_bytes(reader.array("entry count")?);
    let mut offsets = Offsets::new();
    for index in 0..count {
        let topic_len = usize::from(u16::from_be_bytes(reader.array("topic length")?));
        if reader.0.len() < topic_len + ENTRY_FIXED_LEN {
            return Err(format!("entry {index} of {count} is truncated"));
        }
        let topic = std::str::from_utf8(reader.take(topic_len, "topic")?)
            .map_err(|_| format!("entry {index}: topic name is not UTF-8"))?
            .to_owned();
        let partition = u32::from_be_bytes(reader.array("partition")?);
        let offset = u64::from_be_bytes(reader.array("offset")?);
        let commit_ms = i64::from_be_bytes(reader.array("commit time")?);
        let tp = TopicPartition::new(topic, partition);
        if offsets
            .insert(tp.clone(), Committed { offset, commit_ms })
            .is_some()
        {
            return Err(format!("entry {index}: partition {tp} appears twice"));
        }
    }
    if !reader.0.is_empty() {
        return Err(format!(
            "{} unexpected bytes after {count} entries",
            reader.0.len()
        ));
    }
    Ok(offsets)
}

/// Reads the bytes of a file front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err(format!("file ends inside the {what}"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let bytes = self.take(N, what)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }
}

/// Replaces `group`'s file in `dir` with `offsets`, atomically and durably; removes it when
/// `offsets` is empty. Blocking.
pub(crate) fn write(dir: &Path, group: &str, offsets: &Offsets) -> Result<(), BrokerError> {
    let path = path(dir, group);
    if offsets.is_empty() {
        return match fs::remove_file(&path) {
            Ok(()) => metadata::sync_dir(dir),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BrokerError::io("remove", &path, e)),
        };
    }
    let bytes = encode(offsets).map_err(|reason| BrokerError::OffsetsCorrupt {
        path: path.clone(),
        reason: format!("cannot encode: {reason}"),
    })?;
    let tmp = dir.join(format!("{group}{TMP_SUFFIX}"));
    let mut file = File::create(&tmp).map_err(|e| BrokerError::io("create", &tmp, e))?;
    file.write_all(&bytes)
        .map_err(|e| BrokerError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| BrokerError::io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| BrokerError::io("rename", &tmp, e))?;
    metadata::sync_dir(dir)
}

/// Reads every group's file in `dir` (creating `dir` if missing), removing temporary files
/// left by a crash. A file that fails its checks is [`BrokerError::OffsetsCorrupt`].
/// Blocking.
pub(crate) fn load_all(dir: &Path) -> Result<BTreeMap<String, Offsets>, BrokerError> {
    metadata::create_dir(dir)?;
    let mut groups = BTreeMap::new();
    let entries = fs::read_dir(dir).map_err(|e| BrokerError::io("list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| BrokerError::io("list", dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(TMP_SUFFIX) {
            tracing::info!(path = %path.display(), "removing unfinished offsets file");
            metadata::remove_path(&path)?;
            continue;
        }
        let Some(group) = name
            .strip_suffix(SUFFIX)
            .filter(|g| validate_group_name(g).is_ok())
        else {
            tracing::warn!(path = %path.display(), "ignoring a file that is not a group's offsets");
            continue;
        };
        let bytes = fs::read(&path).map_err(|e| BrokerError::io("read", &path, e))?;
        let offsets = decode(&bytes).map_err(|reason| BrokerError::OffsetsCorrupt {
            path: path.clone(),
            reason,
        })?;
        groups.insert(group.to_owned(), offsets);
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Offsets {
        Offsets::from([
            (
                TopicPartition::new("orders", 0),
                Committed {
                    offset: 42,
                    commit_ms: 1_700_000_000_000,
                },
            ),
            (
                TopicPartition::new("orders", 7),
                Committed {
                    offset: u64::MAX,
                    commit_ms: -1,
                },
            ),
            (
                TopicPartition::new("payments.v2", 3),
                Committed {
                    offset: 0,
                    commit_ms: 5,
                },
            ),
        ])
    }

    #[test]
    fn encode_decode_round_trips() -> Result<(), String> {
        let bytes = encode(&sample())?;
        assert_eq!(&bytes[..4], b"SLGO");
        assert_eq!(decode(&bytes)?, sample());
        assert_eq!(decode(&encode(&Offsets::new())?)?, Offsets::new());
        Ok(())
    }

    #[test]
    fn every_corruption_is_detected() -> Result<(), String> {
        let bytes = encode(&sample())?;
        // Flip each bit of the body in turn: the CRC catches every one.
        for i in HEADER_LEN..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let err = decode(&bad).expect_err("corruption accepted");
            assert!(err.contains("CRC mismatch"), "byte {i}: {err}");
        }
        let mut bad_crc = bytes.clone();
        bad_crc[7] ^= 0x80;
        assert!(decode(&bad_crc).is_err_and(|e| e.contains("CRC mismatch")));
        // Truncation anywhere is an error, never an empty or partial result.
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncated to {len} accepted"
            );
        }
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert!(decode(&bad_magic).is_err_and(|e| e.contains("magic")));
        let mut bad_version = bytes.clone();
        bad_version[5] = 9;
        assert!(decode(&bad_version).is_err_and(|e| e.contains("version 9")));
        Ok(())
    }

    #[test]
    fn structural_errors_behind_a_valid_crc_are_caught() {
        // A body with trailing bytes, re-checksummed so only the structure is wrong.
        let mut body = 0u32.to_be_bytes().to_vec();
        body.push(0);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&VERSION.to_be_bytes());
        file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        file.extend_from_slice(&body);
        assert!(decode(&file).is_err_and(|e| e.contains("unexpected bytes")));
    }

    #[test]
    fn write_replaces_and_empty_removes() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        write(dir.path(), "g", &sample())?;
        let mut changed = sample();
        changed.remove(&TopicPartition::new("orders", 0));
        write(dir.path(), "g", &changed)?;
        fs::write(dir.path().join("h.offsets.tmp"), b"half")
            .map_err(|e| BrokerError::io("write", dir.path(), e))?;
        let loaded = load_all(dir.path())?;
        assert_eq!(loaded, BTreeMap::from([("g".to_owned(), changed)]));
        assert!(!dir.path().join("h.offsets.tmp").exists());
        write(dir.path(), "g", &Offsets::new())?;
        assert!(!path(dir.path(), "g").exists());
        assert!(load_all(dir.path())?.is_empty());
        Ok(())
    }

    #[test]
    fn corrupt_file_fails_loading_with_its_path() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        write(dir.path(), "g", &sample())?;
        let file = path(dir.path(), "g");
        let mut bytes = fs::read(&file).map_err(|e| BrokerError::io("read", &file, e))?;
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&file, &bytes).map_err(|e| BrokerError::io("write", &file, e))?;
        match load_all(dir.path()) {
            Err(BrokerError::OffsetsCorrupt { path, reason }) => {
                assert_eq!(path, file);
                assert!(reason.contains("CRC mismatch"), "{reason}");
            }
            other => panic!("corrupt file gave {other:?}"),
        }
        Ok(())
    }
}
