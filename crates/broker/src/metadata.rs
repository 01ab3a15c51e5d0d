//! On-disk layout of the data directory and topic metadata files.
//!
//! ```text
//! data_dir/
//!   .lock                      held (flock) while a broker has the directory open
//!   cluster.id                 the cluster id, made at the first open (cluster.rs)
//!   producer-ids               "v1 <end>": the end of the producer ids reserved so far
//!   topics/<name>/topic.json   TopicMeta, written atomically; its presence commits the topic
//!   topics/<name>/<partition>/ partition logs, and each one's producer-state snapshot
//!   trash/                     topics being deleted; emptied at open
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::BrokerError;

const TOPICS_DIR: &str = "topics";
const TRASH_DIR: &str = "trash";
const LOCK_FILE: &str = ".lock";
const META_FILE: &str = "topic.json";
const META_TMP_FILE: &str = "topic.json.tmp";

/// Paths inside a broker's data directory.
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub(crate) fn new(root: PathBuf) -> DataDir {
        DataDir { root }
    }

    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    pub(crate) fn topics(&self) -> PathBuf {
        self.root.join(TOPICS_DIR)
    }

    pub(crate) fn trash(&self) -> PathBuf {
        self.root.join(TRASH_DIR)
    }

    pub(crate) fn topic(&self, name: &str) -> PathBuf {
        self.topics().join(name)
    }

    pub(crate) fn partition(&self, name: &str, partition: u32) -> PathBuf {
        self.topic(name).join(partition.to_string())
    }
}

/// What `topic.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub(crate) name: String,
    pub(crate) partitions: u32,
    /// Only the keys the topic overrides; the rest follow the broker's defaults.
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) created_ms: i64,
}

impl TopicMeta {
    /// Writes `topic_dir/topic.json` atomically (see [`write_atomically`]).
    pub(crate) fn write(&self, topic_dir: &Path) -> Result<(), BrokerError> {
        let path = topic_dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|source| BrokerError::Metadata {
            path: path.clone(),
            reason: "cannot serialize".to_owned(),
            source: Some(source),
        })?;
        write_atomically(topic_dir, META_TMP_FILE, META_FILE, &json)
    }

    /// Reads `topic_dir/topic.json`; `None` when there is none (creation never finished).
    /// Checks the name inside matches `dir_name`.
    pub(crate) fn read(topic_dir: &Path, dir_name: &str) -> Result<Option<TopicMeta>, BrokerError> {
        let path = topic_dir.join(META_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BrokerError::io("read", &path, e)),
        };
        let meta: TopicMeta =
            serde_json::from_slice(&bytes).map_err(|source| BrokerError::Metadata {
                path: path.clone(),
                reason: "cannot parse".to_owned(),
                source: Some(source),
            })?;
        if meta.name != dir_name {
            return Err(BrokerError::Metadata {
                path,
                reason: format!("names topic {:?} but lives in {dir_name:?}", meta.name),
                source: None,
            });
        }
        Ok(Some(meta))
    }

    /// Removes a temporary file left by a crash during [`TopicMeta::write`].
    pub(crate) fn remove_stray_tmp(topic_dir: &Path) -> Result<(), BrokerError> {
        let tmp = topic_dir.join(META_TMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => {
                tracing::info!(path = %tmp.display(), "removed unfinished metadata file");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BrokerError::io("remove", &tmp, e)),
        }
    }
}

/// A name part no earlier call in this process returned, and unlikely to clash with
/// leftovers of earlier processes: wall-clock nanoseconds and a counter.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Opens (creating if needed) the data directory's lock file and takes an exclusive lock on
/// it, released when the returned file is dropped.
pub(crate) fn lock_data_dir(path: &Path) -> Result<File, BrokerError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| BrokerError::io("open", path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(BrokerError::DataDirLocked {
            path: path.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(BrokerError::io("lock", path, e)),
    }
}

/// Writes `dir/name` atomically: `dir/tmp_name` first, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(
    dir: &Path,
    tmp_name: &str,
    name: &str,
    bytes: &[u8],
) -> Result<(), BrokerError> {
    let tmp = dir.join(tmp_name);
    let mut file = File::create(&tmp).map_err(|e| BrokerError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| BrokerError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| BrokerError::io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, dir.join(name)).map_err(|e| BrokerError::io("rename", &tmp, e))?;
    sync_dir(dir)
}

/// Creates `path` (and parents) if missing.
pub(crate) fn create_dir(path: &Path) -> Result<(), BrokerError> {
    fs::create_dir_all(path).map_err(|e| BrokerError::io("create directory", path, e))
}

/// Makes a directory's entries (creations, renames) durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), BrokerError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| BrokerError::io("fsync directory", path, e))
}

/// Removes every entry of `dir`.
pub(crate) fn empty_dir(dir: &Path) -> Result<(), BrokerError> {
    let entries = fs::read_dir(dir).map_err(|e| BrokerError::io("list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| BrokerError::io("list", dir, e))?.path();
        remove_path(&path)?;
    }
    Ok(())
}

/// Removes a file or a whole directory tree.
pub(crate) fn remove_path(path: &Path) -> Result<(), BrokerError> {
    let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let result = if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(|e| BrokerError::io("remove", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> TopicMeta {
        TopicMeta {
            name: "orders".to_owned(),
            partitions: 3,
            config: [("retention.ms".to_owned(), "1000".to_owned())].into(),
            created_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn write_then_read_round_trips() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        assert_eq!(TopicMeta::read(dir.path(), "orders")?, None);
        meta().write(dir.path())?;
        assert!(!dir.path().join(META_TMP_FILE).exists());
        assert_eq!(TopicMeta::read(dir.path(), "orders")?, Some(meta()));
        // Rewriting replaces the file whole.
        let mut changed = meta();
        changed.partitions = 5;
        changed.write(dir.path())?;
        assert_eq!(TopicMeta::read(dir.path(), "orders")?, Some(changed));
        Ok(())
    }

    #[test]
    fn rejects_garbage_and_misplaced_files() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        meta().write(dir.path())?;
        assert!(matches!(
            TopicMeta::read(dir.path(), "payments"),
            Err(BrokerError::Metadata { source: None, .. })
        ));
        fs::write(dir.path().join(META_FILE), b"{\"name\": \"orders\"")
            .map_err(|e| BrokerError::io("write", dir.path(), e))?;
        assert!(matches!(
            TopicMeta::read(dir.path(), "orders"),
            Err(BrokerError::Metadata {
                source: Some(_),
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn stray_tmp_is_removed() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        let tmp = dir.path().join(META_TMP_FILE);
        fs::write(&tmp, b"half").map_err(|e| BrokerError::io("write", &tmp, e))?;
        TopicMeta::remove_stray_tmp(dir.path())?;
        assert!(!tmp.exists());
        TopicMeta::remove_stray_tmp(dir.path())?;
        Ok(())
    }

    #[test]
    fn empty_dir_removes_files_and_trees() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        let nested = dir.path().join("a/b");
        create_dir(&nested)?;
        fs::write(nested.join("f"), b"x").map_err(|e| BrokerError::io("write", &nested, e))?;
        fs::write(dir.path().join("g"), b"y")
            .map_err(|e| BrokerError::io("write", dir.path(), e))?;
        empty_dir(dir.path())?;
        let left = fs::read_dir(dir.path())
            .map_err(|e| BrokerError::io("list", dir.path(), e))?
            .count();
        assert_eq!(left, 0);
        Ok(())
    }
}
