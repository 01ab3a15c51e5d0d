//! Producer ids: unique for the life of the data directory, never handed out twice, even
//! across a crash.
//!
//! Ids are taken from blocks of [`BLOCK`]: before the first id of a block is handed out, the
//! end of the block is written to `producer-ids` (replaced atomically and fsynced through the
//! storage `FileIo` seam). After a restart allocation resumes at the persisted end, so ids of
//! a block that were never handed out are skipped, never reused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_storage::io::FileIo;

use crate::BrokerError;

/// Name of the file in the data directory.
pub(crate) const IDS_FILE: &str = "producer-ids";
/// First word of the file.
const VERSION: &str = "v1";
/// Ids reserved by one write of the file.
pub(crate) const BLOCK: i64 = 1000;

/// The allocator of producer ids.
#[derive(Debug)]
pub(crate) struct ProducerIds {
    path: PathBuf,
    io: Arc<dyn FileIo>,
    /// Held while a block is reserved, across the file's write and fsync: taken only on
    /// blocking threads, and no other lock is taken while it is held.
    state: Mutex<Allocation>,
}

/// Invariant: `next <= reserved`, and `reserved` is what the file holds.
#[derive(Debug)]
struct Allocation {
    /// The next id to hand out.
    next: i64,
    /// The end of the reserved block: ids below it may have been handed out.
    reserved: i64,
}

impl ProducerIds {
    /// Opens the allocator of the data directory `dir`, resuming after its persisted block,
    /// and after `floor` (one past the largest producer id any partition remembers), should
    /// the file have been lost. Blocking.
    pub(crate) fn open(
        dir: &Path,
        io: Arc<dyn FileIo>,
        floor: i64,
    ) -> Result<ProducerIds, BrokerError> {
        let path = dir.join(IDS_FILE);
        let persisted = read(&path)?;
        let start = persisted.max(floor);
        Ok(ProducerIds {
            path,
            io,
            state: Mutex::new(Allocation {
                next: start,
                reserved: persisted,
            }),
        })
    }

    /// A producer id no one had before, reserving a new block first when the current one
    /// is used up. Blocking (it may write and fsync the file).
    pub(crate) fn allocate(&self) -> Result<i64, BrokerError> {
        let mut st = self.state.lock();
        if st.next >= st.reserved {
            let end = st
                .next
                .checked_add(BLOCK)
                .ok_or_else(|| BrokerError::ProducerIds {
                    path: self.path.clone(),
                    reason: format!("the id space is used up (next id {})", st.next),
                })?;
            let contents = format!("{VERSION} {end}\n");
            self.io
                .write_file_atomic(&self.path, contents.as_bytes())
                .map_err(|e| BrokerError::io("write producer ids", &self.path, e))?;
            st.reserved = end;
        }
        let id = st.next;
        st.next += 1;
        Ok(id)
    }
}

/// The end of the reserved block in the file at `path`; 0 when there is no file yet.
fn read(path: &Path) -> Result<i64, BrokerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(BrokerError::io("read producer ids", path, e)),
    };
    let mut words = text.split_whitespace();
    match (
        words.next(),
        words.next().and_then(|w| w.parse::<i64>().ok()),
        words.next(),
    ) {
        (Some(VERSION), Some(end), None) if end >= 0 => Ok(end),
        _ => Err(BrokerError::ProducerIds {
            path: path.to_owned(),
            reason: format!(
                "holds {text:?}, expected \"{VERSION} <end of the reserved ids>\"; \
                 restore it, or write an end above every producer id ever handed out"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use sluice_storage::io::StdIo;

    use super::*;

    #[test]
    fn ids_continue_after_the_persisted_block_and_the_floor() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        let ids = ProducerIds::open(dir.path(), Arc::new(StdIo), 0)?;
        let first: Vec<i64> = (0..3).map(|_| ids.allocate()).collect::<Result<_, _>>()?;
        assert_eq!(first, [0, 1, 2]);
        let text = std::fs::read_to_string(dir.path().join(IDS_FILE))
            .map_err(|e| BrokerError::io("read", dir.path(), e))?;
        assert_eq!(text, format!("v1 {BLOCK}\n"));
        drop(ids);

        let ids = ProducerIds::open(dir.path(), Arc::new(StdIo), 0)?;
        assert_eq!(ids.allocate()?, BLOCK, "the rest of the block is skipped");
        drop(ids);
        let ids = ProducerIds::open(dir.path(), Arc::new(StdIo), 5 * BLOCK + 7)?;
        assert_eq!(ids.allocate()?, 5 * BLOCK + 7, "never below an id in use");
        let text = std::fs::read_to_string(dir.path().join(IDS_FILE))
            .map_err(|e| BrokerError::io("read", dir.path(), e))?;
        assert_eq!(text, format!("v1 {}\n", 6 * BLOCK + 7));
        Ok(())
    }

    #[test]
    fn a_damaged_file_is_refused_naming_it() -> Result<(), BrokerError> {
        let dir = tempfile::tempdir().map_err(|e| BrokerError::io("tempdir", "", e))?;
        for text in ["", "v1", "v1 -5", "v2 10", "v1 10 11", "v1 ten"] {
            std::fs::write(dir.path().join(IDS_FILE), text)
                .map_err(|e| BrokerError::io("write", dir.path(), e))?;
            let err = ProducerIds::open(dir.path(), Arc::new(StdIo), 0);
            assert!(
                matches!(&err, Err(BrokerError::ProducerIds { path, .. }) if path.ends_with(IDS_FILE)),
                "{text:?}: {err:?}"
            );
        }
        Ok(())
    }
}
