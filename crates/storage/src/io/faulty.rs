//! [`FaultyIo`]: real files with the failures a log must survive, on demand (tests only).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{FileIo, SegmentFile, StdIo, parent_dir, replace_file};

/// `errno` of a full disk.
const ENOSPC: i32 = 28;

/// What [`FaultyIo`] does to the next write once its budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Write the first `n` bytes of the buffer, then fail (a torn write).
    Torn(usize),
    /// Write nothing and fail with "no space left on device".
    DiskFull,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Writes to segment log files that still succeed; `None` = unlimited.
    writes_left: Option<u64>,
    fault: Option<WriteFault>,
    /// Once a torn write happened every later write fails, as after a crash.
    crashed: bool,
    fail_sync: bool,
    fail_dir_sync: bool,
    fail_atomic_write: bool,
    fail_index_allocation: bool,
    /// File removals that still succeed; `None` = unlimited.
    removes_left: Option<u64>,
    /// Per file: the length at its last successful sync.
    synced_len: HashMap<PathBuf, u64>,
    files: HashMap<PathBuf, Arc<dyn SegmentFile>>,
}

/// Fault-injecting [`FileIo`] over real files, for crash and I/O error tests.
///
/// Write budgets and torn writes apply to segment log files; index files fail only as armed
/// with [`FaultyIo::fail_index_allocation`] (and with every other file on
/// [`FaultyIo::fail_syncs`]). Cloning shares the fault state, so a test keeps a handle while
/// the log owns another.
#[derive(Debug, Clone, Default)]
pub struct FaultyIo {
    state: Arc<Mutex<FaultState>>,
}

impl FaultyIo {
    /// No faults until one is armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `writes` more writes to segment log files succeed; the one after suffers `fault`.
    /// A torn write also makes every later write fail, like a process that died mid-write; a
    /// full disk does not.
    pub fn fail_after_writes(&self, writes: u64, fault: WriteFault) {
        let mut s = self.state.lock();
        s.writes_left = Some(writes);
        s.fault = Some(fault);
    }

    /// Clears every armed fault (space was freed, the disk works again).
    pub fn heal(&self) {
        let mut s = self.state.lock();
        s.writes_left = None;
        s.fault = None;
        s.crashed = false;
        s.fail_sync = false;
        s.fail_dir_sync = false;
        s.fail_atomic_write = false;
        s.fail_index_allocation = false;
        s.removes_left = None;
    }

    /// Makes every `sync_data` of a file fail (or succeed again).
    pub fn fail_syncs(&self, fail: bool) {
        self.state.lock().fail_sync = fail;
    }

    /// Makes every directory fsync fail (or succeed again).
    pub fn fail_dir_syncs(&self, fail: bool) {
        self.state.lock().fail_dir_sync = fail;
    }

    /// Makes every [`FileIo::write_file_atomic`] (the marker files) fail with "no space left
    /// on device" before it writes anything (or succeed again).
    pub fn fail_atomic_writes(&self, fail: bool) {
        self.state.lock().fail_atomic_write = fail;
    }

    /// Makes growing an index file, or backing its pages, fail with "no space left on
    /// device" (or succeed again). Trimming still works.
    pub fn fail_index_allocation(&self, fail: bool) {
        self.state.lock().fail_index_allocation = fail;
    }

    /// Lets `removes` more file removals succeed; every one after fails until
    /// [`FaultyIo::heal`].
    pub fn fail_removes_after(&self, removes: u64) {
        self.state.lock().removes_left = Some(removes);
    }

    /// Simulates a power loss: every file opened through this `FaultyIo` is cut back to its
    /// length at its last successful sync (files never synced are emptied). Call it only once
    /// the logs over it are dropped, as after a real power loss: an index file cut under its
    /// live map would fault.
    pub fn power_loss(&self) -> io::Result<()> {
        let s = self.state.lock();
        for (path, file) in &s.files {
            let keep = s.synced_len.get(path).copied().unwrap_or(0);
            if file.len()? > keep {
                file.set_len(keep)?;
            }
        }
        Ok(())
    }
}

impl FileIo for FaultyIo {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let inner = StdIo.open(path)?;
        let len = inner.len()?;
        let mut s = self.state.lock();
        // What was there before this test opened it counts as durable.
        s.synced_len.entry(path.to_path_buf()).or_insert(len);
        s.files.insert(path.to_path_buf(), inner.clone());
        let is_index = path
            .extension()
            .is_some_and(|e| e == "index" || e == "timeindex");
        Ok(Arc::new(FaultyFile {
            path: path.to_path_buf(),
            is_index,
            inner,
            state: self.state.clone(),
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.state.lock().fail_dir_sync {
            return Err(io::Error::other("injected: directory fsync failed"));
        }
        StdIo.sync_dir(dir)
    }

    fn write_file_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        if self.state.lock().fail_atomic_write {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        replace_file(path, contents)?;
        self.sync_dir(parent_dir(path))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        {
            let mut s = self.state.lock();
            match s.removes_left {
                Some(0) => return Err(io::Error::other("injected: remove failed")),
                Some(ref mut left) => *left -= 1,
                None => {}
            }
            s.files.remove(path);
            s.synced_len.remove(path);
        }
        StdIo.remove_file(path)
    }
}

#[derive(Debug)]
struct FaultyFile {
    path: PathBuf,
    /// An offset or time index: write budgets and crashes do not apply, allocation faults do.
    is_index: bool,
    inner: Arc<dyn SegmentFile>,
    state: Arc<Mutex<FaultState>>,
}

impl FaultyFile {
    /// The injected failure of an index allocation, if armed.
    fn index_allocation_fault(&self, s: &FaultState) -> io::Result<()> {
        if s.fail_index_allocation {
            Err(io::Error::from_raw_os_error(ENOSPC))
        } else {
            Ok(())
        }
    }
}

impl SegmentFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        if self.is_index {
            self.index_allocation_fault(&s)?;
            return self.inner.write_all_at(buf, pos);
        }
        if s.crashed {
            return Err(io::Error::other("injected: process crashed"));
        }
        match s.writes_left {
            Some(0) => match s.fault {
                Some(WriteFault::Torn(n)) => {
                    s.crashed = true;
                    let n = n.min(buf.len());
                    self.inner.write_all_at(&buf[..n], pos)?;
                    Err(io::Error::other("injected: torn write"))
                }
                Some(WriteFault::DiskFull) | None => Err(io::Error::from_raw_os_error(ENOSPC)),
            },
            Some(ref mut left) => {
                *left -= 1;
                self.inner.write_all_at(buf, pos)
            }
            None => self.inner.write_all_at(buf, pos),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.fail_sync || (s.crashed && !self.is_index) {
            return Err(io::Error::other("injected: fsync failed"));
        }
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        s.synced_len.insert(self.path.clone(), len);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        if self.is_index {
            if len > self.inner.len()? {
                self.index_allocation_fault(&s)?;
            }
        } else if s.crashed {
            return Err(io::Error::other("injected: process crashed"));
        }
        self.inner.set_len(len)?;
        // A truncation below the synced length is itself as durable as the sync that follows;
        // never count bytes as durable beyond the file's end.
        if let Some(synced) = s.synced_len.get_mut(&self.path) {
            *synced = (*synced).min(len);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn std_file(&self) -> &File {
        self.inner.std_file()
    }
}
