//! The per-group offsets files of earlier versions, `data_dir/groups/<group>.offsets`, read
//! once to migrate them into the offsets log (see `offsets_log`).
//!
//! ```text
//! magic    4 bytes  "SLGO"
//! version  u16      1
//! crc      u32      CRC-32C of everything after this field
//! count    u32      number of entries
//! entries  count x  { topic_len u16, topic (UTF-8), partition u32, offset u64, commit_ms i64 }
//! ```
//!
//! Integers are big-endian. Each file held one group's whole state, replaced atomically
//! through `<group>.offsets.tmp`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::BrokerError;
use crate::groups::offsets_state::Offsets;
use crate::groups::{Committed, TopicPartition, validate_group_name};

const MAGIC: &[u8; 4] = b"SLGO";
const VERSION: u16 = 1;
/// Partition, offset and commit time of an entry.
const ENTRY_FIXED_LEN: usize = 4 + 8 + 8;
const SUFFIX: &str = ".offsets";
const TMP_SUFFIX: &str = ".offsets.tmp";

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

/// The old files found in a directory: every group's offsets, and every file (leftover
/// temporary files included) to remove once they are migrated.
#[derive(Debug, Default)]
pub(crate) struct LegacyFiles {
    pub(crate) groups: BTreeMap<String, Offsets>,
    pub(crate) files: Vec<PathBuf>,
}

/// Reads every old offsets file in `dir`. A file that fails its checks is
/// [`BrokerError::OffsetsCorrupt`]. Blocking.
pub(crate) fn read_all(dir: &Path) -> Result<LegacyFiles, BrokerError> {
    let mut found = LegacyFiles::default();
    let entries = fs::read_dir(dir).map_err(|e| BrokerError::io("list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| BrokerError::io("list", dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(TMP_SUFFIX) {
            found.files.push(path);
            continue;
        }
        let Some(group) = name
            .strip_suffix(SUFFIX)
            .filter(|g| validate_group_name(g).is_ok())
        else {
            continue;
        };
        let bytes = fs::read(&path).map_err(|e| BrokerError::io("read", &path, e))?;
        let offsets = decode(&bytes).map_err(|reason| BrokerError::OffsetsCorrupt {
            path: path.clone(),
            reason,
        })?;
        found.groups.insert(group.to_owned(), offsets);
        found.files.push(path);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Magic, version and CRC.
    const HEADER_LEN: usize = 4 + 2 + 4;

    /// A file the old encoder wrote: group `audit`, `orders/2` at offset 5.
    const AUDIT: &[u8] = include_bytes!("../../tests/fixtures/offsets-files/audit.offsets");

    #[test]
    fn decodes_a_file_of_the_old_encoder() -> Result<(), String> {
        let offsets = decode(AUDIT)?;
        let expected = Committed {
            offset: 5,
            commit_ms: 1_700_000_000_005,
        };
        assert_eq!(
            offsets,
            Offsets::from([(TopicPartition::new("orders", 2), expected)])
        );
        Ok(())
    }

    #[test]
    fn every_corruption_is_detected() {
        for i in HEADER_LEN..AUDIT.len() {
            let mut bad = AUDIT.to_vec();
            bad[i] ^= 0x01;
            assert!(
                decode(&bad).is_err_and(|e| e.contains("CRC mismatch")),
                "byte {i}"
            );
        }
        for len in 0..AUDIT.len() {
            assert!(
                decode(&AUDIT[..len]).is_err(),
                "truncated to {len} accepted"
            );
        }
        let mut bad_magic = AUDIT.to_vec();
        bad_magic[0] = b'X';
        assert!(decode(&bad_magic).is_err_and(|e| e.contains("magic")));
        let mut bad_version = AUDIT.to_vec();
        bad_version[5] = 9;
        assert!(decode(&bad_version).is_err_and(|e| e.contains("version 9")));
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
    fn read_all_finds_groups_and_leftovers_and_names_a_corrupt_file() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            fs::write(&path, bytes).map_err(|e| BrokerError::io("write", &path, e))
        };
        write("audit.offsets", AUDIT)?;
        write("h.offsets.tmp", b"half")?;
        write("offsets-00000000000000000000.log", b"not an old file")?;
        let found = read_all(dir.path())?;
        assert_eq!(found.groups.keys().collect::<Vec<_>>(), ["audit"]);
        let mut files = found.files.clone();
        files.sort();
        assert_eq!(
            files,
            [
                dir.path().join("audit.offsets"),
                dir.path().join("h.offsets.tmp")
            ]
        );
        let mut bad = AUDIT.to_vec();
        bad[AUDIT.len() - 1] ^= 0xff;
        write("audit.offsets", &bad)?;
        match read_all(dir.path()) {
            Err(BrokerError::OffsetsCorrupt { path, reason }) => {
                assert_eq!(path, dir.path().join("audit.offsets"));
                assert!(reason.contains("CRC mismatch"), "{reason}");
            }
            other => panic!("corrupt file gave {other:?}"),
        }
        Ok(())
    }
}
