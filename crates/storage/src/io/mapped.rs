//! Zero-copy reads of a segment file through a shared, read-only memory map.
//!
//! A read hands out a slice of the map as [`Bytes`]: no buffer to allocate and zero, no copy
//! out of the page cache. The map reaches [`MAP_AHEAD`] bytes past the file's end when it is
//! made, so a segment that is being appended to is remapped once per that many bytes rather
//! than on every read of new data. Slices keep the map they came from alive, so a remap (or
//! the segment's deletion) never pulls memory from under a reader.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use memmap2::MmapOptions;
use parking_lot::RwLock;

/// How far past the file's current end a new map reaches.
const MAP_AHEAD: u64 = 64 << 20;

/// The current map of one file and how much of the file is known to exist.
///
/// Invariant: `known_len` never exceeds the file's length (every write raises it only after it
/// landed; a shrink lowers it before the file is cut), so a slice below it lies within the file.
#[derive(Debug)]
pub(super) struct MappedReads {
    map: RwLock<Bytes>,
    known_len: AtomicU64,
}

impl MappedReads {
    /// Reads of a file that is `len` bytes long.
    pub(super) fn new(len: u64) -> Self {
        MappedReads {
            map: RwLock::new(Bytes::new()),
            known_len: AtomicU64::new(len),
        }
    }

    /// Records that bytes up to `end` were written.
    pub(super) fn written(&self, end: u64) {
        self.known_len.fetch_max(end, Ordering::AcqRel);
    }

    /// Records that the file is about to be cut to `len` bytes; later reads map it anew.
    pub(super) fn shrinking(&self, len: u64) {
        self.known_len.fetch_min(len, Ordering::AcqRel);
        *self.map.write() = Bytes::new();
    }

    /// Bytes `pos..pos + len` of `file`, which must exist (`UnexpectedEof` otherwise).
    pub(super) fn read(&self, file: &File, pos: u64, len: usize) -> io::Result<Bytes> {
        let end = pos
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if end > self.known_len.load(Ordering::Acquire) {
            // Written by someone else, or not at all: ask the file itself.
            let file_len = file.metadata()?.len();
            if end > file_len {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.written(file_len);
        }
        let range = usize::try_from(pos).map_err(|_| io::ErrorKind::InvalidInput)?
            ..usize::try_from(end).map_err(|_| io::ErrorKind::InvalidInput)?;
        {
            let map = self.map.read();
            if range.end <= map.len() {
                return Ok(map.slice(range));
            }
        }
        let map_len = usize::try_from(self.known_len.load(Ordering::Acquire) + MAP_AHEAD)
            .map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: the map is read-only, and the only bytes ever sliced out of it are below
        // `known_len`, which lie within the file (see the invariant). The segment files are
        // this process's own: while the server runs they only grow, except that `set_len`
        // may cut off bytes past the readable end (a failed write), and that goes through
        // `shrinking` first. Pages past the end of the file are mapped but never touched.
        // Another process truncating a segment file under a running server would make reads
        // fault; docs/storage-format.md says the data directory is the server's alone.
        let mmap = unsafe { MmapOptions::new().len(map_len).map(file)? };
        let map = Bytes::from_owner(mmap);
        let slice = map.slice(range);
        *self.map.write() = map;
        Ok(slice)
    }
}
