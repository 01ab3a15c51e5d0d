//! The seam between the log and its files.
//!
//! Every file operation of the log goes through [`FileIo`]: it opens segment and index files
//! (as [`SegmentFile`]s), fsyncs the partition directory, replaces the small marker files
//! (recovery point, log start, clean shutdown) atomically and removes files. Every byte of log
//! data goes through [`SegmentFile`]; index files are memory-mapped, so for them the seam
//! covers their creation, allocation (growing the file and backing its pages), trimming and
//! fsync, not each entry stored through the map. Production uses [`StdIo`] (positional reads
//! and writes on a `std::fs::File`).
//!
//! With the `fault-injection` feature, `FaultyIo` wraps [`StdIo`] to inject the failures a log
//! must survive: a write that fails or tears after N writes (a crash or a full disk), a failing
//! `fsync` (of a file or of the directory), a failing marker write, index allocation or file
//! removal, and a power loss that drops everything not yet synced. It is for tests only and not
//! part of the default API.

#[cfg(feature = "fault-injection")]
mod faulty;
mod mapped;

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

#[cfg(feature = "fault-injection")]
pub use faulty::{FaultyIo, WriteFault};
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

/// A segment's log file or index file, addressed by position.
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
    /// The open file itself, for memory-mapping it (index files are mapped). Changes made
    /// through it bypass the seam.
    fn std_file(&self) -> &File;

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

/// Opens, removes and syncs the files of a partition directory.
pub trait FileIo: Send + Sync + Debug {
    /// Opens `path` for reading and writing, creating it if missing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
    /// Forces the directory's entries (file creations, renames, removals) to stable storage.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Replaces `path` with a file holding `contents`, atomically and durably: a new file
    /// beside it (`<path>.tmp`) is written and fsynced, renamed over `path`, and the directory
    /// fsynced. A crash leaves either the old file or the new one (and maybe the `.tmp`).
    fn write_file_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()>;
    /// Removes the file at `path`; a file that is already gone counts as removed.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
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

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn write_file_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        replace_file(path, contents)?;
        self.sync_dir(parent_dir(path))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            done => done,
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Writes `contents` to `<path>.tmp`, fsyncs it and renames it over `path`; the rename is
/// durable only once the directory is fsynced.
fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut file = File::create(tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
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
    fn std_file(&self) -> &File {
        &self.file
    }
}
