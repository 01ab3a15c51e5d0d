//! The seam between the log and its segment files.
//!
//! Every byte of log data goes through [`SegmentFile`]; [`FileIo`] opens them. Production uses
//! [`StdIo`] (positional reads and writes on a `std::fs::File`). [`FaultyIo`] wraps it to inject
//! the failures a log must survive: a write that fails or tears after N writes (a crash or a full
//! disk), a failing `fsync`, and a power loss that drops everything not yet synced.

mod mapped;

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use mapped::MappedReads;

/// Told how long every fsync of segment data took, once set (see [`observe_syncs`]).
static SYNC_OBSERVER: OnceLock<fn(Duration)> = OnceLock::new();

/// Sets the function told how long each fsync of segment data takes, successful or not
/// (for metrics). Only the first call in a process takes effect; returns whether this one
/// did.
pub fn observe_syncs(observer: fn(Duration)) -> bool {
    SYNC_OBSERVER.set(observer).is_ok()
}

/// `file.sync_data()`, timed for the observer set with [`observe_syncs`].
pub(crate) fn timed_sync(file: &dyn SegmentFile) -> io::Result<()> {
    let started = Instant::now();
    let synced = file.sync_data();
    if let Some(observe) = SYNC_OBSERVER.get() {
        observe(started.elapsed());
    }
    synced
}

/// A segment's log file, addressed by position.
#[allow(clippy::len_without_is_empty)] // a file's length is not a collection's
pub trait SegmentFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `pos`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// The `len` bytes at `pos`, failing with `UnexpectedEof` past the end of the file. The
    /// default copies them into a new buffer; [`StdIo`]'s files hand out memory-mapped
    /// bytes without a copy.
    fn read_bytes(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0; len];
        self.read_exact_at(&mut buf, pos)?;
        Ok(buf.into())
    }
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Forces written data to stable storage (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Fills `buf` from `pos`, failing with `UnexpectedEof` at end of file.
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Opens segment files.
pub trait FileIo: Send + Sync + Debug {
    /// Opens `path` for reading and writing, creating it if missing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
}

/// Real files: positional writes, and reads through a memory map.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

impl FileIo for StdIo {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(StdFile {
            file,
            reads: MappedReads::new(len),
        }))
    }
}

#[derive(Debug)]
struct StdFile {
    file: File,
    reads: MappedReads,
}

impl SegmentFile for StdFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.file.read_at(buf, pos)
    }
    fn read_bytes(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.reads.read(&self.file, pos, len)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(buf, pos)?;
        self.reads.written(pos + buf.len() as u64);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.reads.shrinking(len);
        self.file.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

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
    /// Writes that still succeed; `None` = unlimited.
    writes_left: Option<u64>,
    fault: Option<WriteFault>,
    /// Once a torn write happened every later write fails, as after a crash.
    crashed: bool,
    fail_sync: bool,
    /// Per file: the length at its last successful sync.
    synced_len: HashMap<PathBuf, u64>,
    files: HashMap<PathBuf, Arc<dyn SegmentFile>>,
}

/// Fault-injecting [`FileIo`] over real files, for crash and I/O error tests.
///
/// Cloning shares the fault state, so a test keeps a handle while the log owns another.
#[derive(Debug, Clone, Default)]
pub struct FaultyIo {
    state: Arc<Mutex<FaultState>>,
}

impl FaultyIo {
    /// No faults until one is armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `writes` more writes succeed; the one after suffers `fault`. A torn write also makes
    /// every later write fail, like a process that died mid-write; a full disk does not.
    pub fn fail_after_writes(&self, writes: u64, fault: WriteFault) {
        let mut s = self.state.lock();
        s.writes_left = Some(writes);
        s.fault = Some(fault);
    }

    /// Lets writes succeed again (space was freed).
    pub fn heal(&self) {
        let mut s = self.state.lock();
        s.writes_left = None;
        s.fault = None;
        s.crashed = false;
        s.fail_sync = false;
    }

    /// Makes every `sync_data` fail (or succeed again).
    pub fn fail_syncs(&self, fail: bool) {
        self.state.lock().fail_sync = fail;
    }

    /// Simulates a power loss: every file opened through this `FaultyIo` is cut back to its
    /// length at its last successful sync (files never synced are emptied).
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
        Ok(Arc::new(FaultyFile {
            path: path.to_path_buf(),
            inner,
            state: self.state.clone(),
        }))
    }
}

#[derive(Debug)]
struct FaultyFile {
    path: PathBuf,
    inner: Arc<dyn SegmentFile>,
    state: Arc<Mutex<FaultState>>,
}

impl SegmentFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut s = self.state.lock();
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
                Some(WriteFault::DiskFull) | None => {
                    Err(io::Error::from_raw_os_error(28 /* ENOSPC */))
                }
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
        if s.fail_sync || s.crashed {
            return Err(io::Error::other("injected: fsync failed"));
        }
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        s.synced_len.insert(self.path.clone(), len);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.crashed {
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
}
