//! Sparse, memory-mapped indexes of a segment.
//!
//! Two kinds share one implementation, [`Index`]:
//! - the offset index maps a relative offset to the byte position of the batch that starts there
//!   ([`OffsetEntry`], 8 bytes: relative offset `u32` BE, position `u32` BE);
//! - the time index maps a timestamp to the relative offset of the batch where the segment's running
//!   maximum timestamp first reached it ([`TimeEntry`], 12 bytes: timestamp `i64` BE, relative offset `u32` BE).
//!
//! Both layouts are Kafka's. Keys strictly increase from one entry to the next, which is what makes
//! [`Index::floor`] a binary search. The index of the active segment is preallocated to its
//! capacity and mapped writable; sealing trims the file to its entries and maps it read-only.
//!
//! The preallocated file is sparse, and a store into a mapped page the file system cannot back
//! (the disk is full) would kill the process with SIGBUS. So the pages ahead of the entries are
//! backed with ordinary writes of zeros before the map touches them, a page at a time, and an
//! entry that cannot be backed is refused like an entry of a full index.
//!
//! Index files are opened, grown, backed, trimmed and fsynced through the [`FileIo`] seam;
//! only the entries go through the map. The module is private to the crate: two writable maps
//! of one file would let safe code corrupt it, and the segment is the one owner of each.
#![allow(unsafe_code)]

use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapMut};

use crate::io::{FileIo, SegmentFile};

/// A fixed-size index entry with a sort key.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Decodes an entry from exactly `SIZE` bytes.
    fn decode(bytes: &[u8]) -> Self;
    /// Encodes the entry into exactly `SIZE` bytes.
    fn encode(&self, out: &mut [u8]);
    /// The key entries are sorted and searched by.
    fn key(&self) -> i64;
}

/// Offset index entry: the batch starting at `relative_offset` begins at byte `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Offset minus the segment's base offset.
    pub(crate) relative_offset: u32,
    /// Byte position of the batch in the segment's log file.
    pub(crate) position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }
}

/// Time index entry: the segment's maximum timestamp first reached `timestamp` in the batch
/// starting at `relative_offset`, so every record before that batch has a smaller timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// Running maximum timestamp, in ms.
    pub(crate) timestamp: i64,
    /// Base offset of the batch where it was reached, minus the segment's base offset.
    pub(crate) relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn key(&self) -> i64 {
        self.timestamp
    }
}

/// The mapping behind an index, by life stage.
#[derive(Debug)]
enum Map {
    /// No entries and nothing mapped (a zero-length file cannot be mapped).
    Empty,
    /// Active segment: preallocated to capacity, writable.
    Writable(MmapMut),
    /// Sealed segment: trimmed to its entries, read-only.
    Sealed(Mmap),
}

/// Bytes of a writable index backed at a time (see the module docs).
const BACKING_CHUNK: usize = 4096;

/// A memory-mapped array of [`IndexEntry`] values with strictly increasing keys.
///
/// Invariants: entries `0..len` are valid and their keys strictly increase; for a writable
/// index the file is `capacity * E::SIZE` bytes long, for a sealed one `len * E::SIZE`. For a
/// writable index the first `backed` bytes of the file are allocated on disk, and they always
/// include the slot of entry `len` (when `len < capacity`): the last entry pushed before
/// sealing never needs new space.
#[derive(Debug)]
pub(crate) struct Index<E: IndexEntry> {
    path: PathBuf,
    file: Arc<dyn SegmentFile>,
    map: Map,
    len: usize,
    capacity: usize,
    backed: usize,
    _entry: PhantomData<E>,
}

impl<E: IndexEntry> Index<E> {
    /// Opens (creating if needed) a sealed, trimmed index file read-only. The entries are not
    /// checked here; see [`Index::is_consistent`].
    pub(crate) fn open_sealed(io: &dyn FileIo, path: &Path) -> io::Result<Self> {
        let file = io.open(path)?;
        let bytes = file.len()?;
        if bytes % E::SIZE as u64 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("index size {bytes} is not a multiple of {}", E::SIZE),
            ));
        }
        let len = usize::try_from(bytes / E::SIZE as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "index too large"))?;
        let map = if len == 0 {
            Map::Empty
        } else {
            // SAFETY: the file is private to this partition directory and only this process
            // changes it, through this `Index` alone (the module is crate-private and each
            // segment owns its two indexes, so no second map of the file exists); it is never
            // truncated while this read-only map exists (sealed indexes are immutable until
            // deleted, and deletion only unlinks the name).
            Map::Sealed(unsafe { Mmap::map(file.std_file())? })
        };
        Ok(Index {
            path: path.to_path_buf(),
            file,
            map,
            len,
            capacity: len,
            backed: len * E::SIZE,
            _entry: PhantomData,
        })
    }

    /// Creates an empty writable index with room for `capacity` entries, replacing any file there.
    pub(crate) fn create(io: &dyn FileIo, path: &Path, capacity: usize) -> io::Result<Self> {
        let file = io.open(path)?;
        // Only a stale file needs emptying (see `Segment::create` on ext4 and truncation).
        if file.len()? > 0 {
            file.set_len(0)?;
        }
        let mut index = Index {
            path: path.to_path_buf(),
            file,
            map: Map::Empty,
            len: 0,
            capacity: 0,
            backed: 0,
            _entry: PhantomData,
        };
        index.make_writable(capacity)?;
        Ok(index)
    }

    /// Turns a sealed index back into a writable one with room for `capacity` entries
    /// (used when a log reopens its last segment as the active one). Fails when the disk has
    /// no room for the next entry.
    pub(crate) fn make_writable(&mut self, capacity: usize) -> io::Result<()> {
        let capacity = capacity.max(self.len + 1);
        self.map = Map::Empty;
        self.file.set_len((capacity * E::SIZE) as u64)?;
        self.capacity = capacity;
        // Slots past the entries may be holes (a file preallocated before a crash).
        self.backed = self.len * E::SIZE;
        self.back((self.len + 1) * E::SIZE)?;
        // SAFETY: as in `open_sealed`; in addition the file length was just set to the mapped
        // size and is changed again only in `trim`, after this map has been dropped.
        self.map = Map::Writable(unsafe { MmapMut::map_mut(self.file.std_file())? });
        Ok(())
    }

    /// Allocates the file's first `end` bytes on disk (at most the capacity), writing zeros
    /// from `backed` on, a chunk at a time. Only zeros past the last entry are written.
    fn back(&mut self, end: usize) -> io::Result<()> {
        let end = end.min(self.capacity * E::SIZE);
        if end <= self.backed {
            return Ok(());
        }
        let to = end
            .next_multiple_of(BACKING_CHUNK)
            .min(self.capacity * E::SIZE);
        let zeros = vec![0u8; to - self.backed];
        self.file.write_all_at(&zeros, self.backed as u64)?;
        self.backed = to;
        Ok(())
    }

    /// True when there are no entries.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when no further entry fits.
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// The index file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            Map::Empty => &[],
            Map::Writable(m) => &m[..],
            Map::Sealed(m) => &m[..],
        }
    }

    /// Entry `i`, if `i < len`.
    pub(crate) fn get(&self, i: usize) -> Option<E> {
        if i >= self.len {
            return None;
        }
        let start = i * E::SIZE;
        self.bytes().get(start..start + E::SIZE).map(E::decode)
    }

    /// The last entry.
    pub(crate) fn last(&self) -> Option<E> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// The entry with the largest key `<= key`; `None` when every key is larger or there are none.
    pub(crate) fn floor(&self, key: i64) -> Option<E> {
        // First index whose key is > `key`; the floor is the one before it.
        let (mut lo, mut hi) = (0usize, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(e) if e.key() <= key => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Appends an entry. Returns `false` (and changes nothing) when the index is full, not
    /// writable, the key does not exceed the last one, or the disk has no room to keep a slot
    /// free after it for [`Index::push_last`] (treat that like a full index: seal it).
    pub(crate) fn push(&mut self, entry: E) -> bool {
        self.push_entry(entry, true)
    }

    /// Appends the last entry before [`Index::seal`]: like [`Index::push`], but it may take
    /// the slot `push` keeps free, so it succeeds on a full disk too.
    pub(crate) fn push_last(&mut self, entry: E) -> bool {
        self.push_entry(entry, false)
    }

    fn push_entry(&mut self, entry: E, keep_a_slot: bool) -> bool {
        if self.is_full() || self.last().is_some_and(|l| l.key() >= entry.key()) {
            return false;
        }
        if !matches!(self.map, Map::Writable(_)) {
            return false;
        }
        let start = self.len * E::SIZE;
        if keep_a_slot && self.back(start + 2 * E::SIZE).is_err() {
            return false;
        }
        let Map::Writable(map) = &mut self.map else {
            return false;
        };
        entry.encode(&mut map[start..start + E::SIZE]);
        self.len += 1;
        true
    }

    /// Drops every entry (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Trims the file to its entries, maps it read-only and fsyncs it: [`Index::trim`], then
    /// [`Index::sync`].
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        self.trim()?;
        self.sync()
    }

    /// Trims the file to its entries and maps it read-only, without waiting for the disk.
    /// Unmapping the writable map leaves the entries written through it as dirty pages of
    /// the file, which [`Index::sync`] writes out. Split from the sync so that a caller can
    /// do the slow part under a shared guard.
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.map = Map::Empty;
        self.file.set_len((self.len * E::SIZE) as u64)?;
        self.capacity = self.len;
        if self.len > 0 {
            // SAFETY: as in `open_sealed`: the file now has exactly the mapped length and is
            // not resized again while sealed.
            self.map = Map::Sealed(unsafe { Mmap::map(self.file.std_file())? });
        }
        Ok(())
    }

    /// Forces the index file, entries and length, to stable storage (`fdatasync`, which
    /// covers a changed length).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Checks the structural invariant: keys strictly increase and no slot is all zeros
    /// (an unused preallocated slot), and `valid(entry)` holds for every entry.
    pub(crate) fn is_consistent(&self, valid: impl Fn(&E) -> bool) -> bool {
        let zero = vec![0u8; E::SIZE];
        let mut prev: Option<i64> = None;
        for (i, chunk) in self
            .bytes()
            .chunks_exact(E::SIZE)
            .take(self.len)
            .enumerate()
        {
            if i > 0 && chunk == zero.as_slice() {
                return false;
            }
            let e = E::decode(chunk);
            if prev.is_some_and(|p| p >= e.key()) || !valid(&e) {
                return false;
            }
            prev = Some(e.key());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;

    fn offset_index(dir: &Path, cap: usize) -> Index<OffsetEntry> {
        Index::create(&StdIo, &dir.join("0.index"), cap).unwrap()
    }

    #[test]
    fn floor_finds_the_largest_key_not_above() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = offset_index(dir.path(), 10);
        assert_eq!(idx.floor(5), None);
        for (o, p) in [(10, 100), (20, 200), (30, 300)] {
            assert!(idx.push(OffsetEntry {
                relative_offset: o,
                position: p
            }));
        }
        assert_eq!(idx.floor(9), None);
        assert_eq!(idx.floor(10).unwrap().position, 100);
        assert_eq!(idx.floor(29).unwrap().position, 200);
        assert_eq!(idx.floor(1000).unwrap().position, 300);
    }

    #[test]
    fn push_refuses_non_increasing_keys_and_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = offset_index(dir.path(), 2);
        assert!(idx.push(OffsetEntry {
            relative_offset: 5,
            position: 1
        }));
        assert!(!idx.push(OffsetEntry {
            relative_offset: 5,
            position: 2
        }));
        assert!(idx.push(OffsetEntry {
            relative_offset: 6,
            position: 2
        }));
        assert!(idx.is_full());
        assert!(!idx.push(OffsetEntry {
            relative_offset: 7,
            position: 3
        }));
    }

    #[test]
    fn seal_trims_and_reopens_with_the_same_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut idx: Index<TimeEntry> = Index::create(&StdIo, &path, 100).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1200);
        idx.push(TimeEntry {
            timestamp: -5,
            relative_offset: 0,
        });
        idx.push(TimeEntry {
            timestamp: 7,
            relative_offset: 3,
        });
        idx.seal().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
        drop(idx);
        let idx: Index<TimeEntry> = Index::open_sealed(&StdIo, &path).unwrap();
        assert_eq!(idx.len, 2);
        assert_eq!(
            idx.floor(0).unwrap(),
            TimeEntry {
                timestamp: -5,
                relative_offset: 0
            }
        );
        assert!(idx.is_consistent(|_| true));
    }

    #[test]
    fn an_untrimmed_index_is_inconsistent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = offset_index(dir.path(), 10);
        idx.push(OffsetEntry {
            relative_offset: 4,
            position: 4096,
        });
        drop(idx);
        // A crash before sealing leaves the preallocated zeros behind.
        let idx: Index<OffsetEntry> = Index::open_sealed(&StdIo, &path).unwrap();
        assert_eq!(idx.len, 10);
        assert!(!idx.is_consistent(|_| true));
    }

    /// Bytes of the file allocated on disk.
    fn allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn pages_are_allocated_before_the_map_writes_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx: Index<OffsetEntry> = Index::create(&StdIo, &path, 100_000).unwrap();
        // The preallocated file is sparse but for the slot of the first entry.
        assert!(allocated(&path) >= OffsetEntry::SIZE as u64);
        assert!(allocated(&path) < 100_000 * OffsetEntry::SIZE as u64 / 2);
        for o in 1..=2_000u32 {
            assert!(idx.push(OffsetEntry {
                relative_offset: o,
                position: o,
            }));
            // Every entry written, and the slot after it, is backed by the file system.
            assert!(allocated(&path) >= u64::from(o + 1) * OffsetEntry::SIZE as u64);
        }
        // A reopened index backs its next slot again (the file may have holes after a crash).
        idx.seal().unwrap();
        idx.make_writable(100_000).unwrap();
        assert!(allocated(&path) >= 2_001 * OffsetEntry::SIZE as u64);
        assert_eq!(idx.len, 2_000);
    }
}
