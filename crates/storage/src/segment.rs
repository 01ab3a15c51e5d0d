//! One segment: a log file of whole record batches plus its two indexes.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::index::{Index, IndexEntry, OffsetEntry, TimeEntry};
use crate::io::{FileIo, SegmentFile};
use crate::{Result, StorageError};

/// Suffix of a segment's log file.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Suffix of a segment's offset index.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of a segment's time index.
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// The first read of a scan: enough for a lookup, which usually stops within one index
/// interval. Later reads double up to [`SCAN_CHUNK`], for scans that walk a whole segment.
const FIRST_SCAN_CHUNK: usize = 16 << 10;
/// The most a scan reads at a time.
const SCAN_CHUNK: usize = 1 << 20;

/// The file name stem of the segment starting at `base_offset`: 20 zero-padded digits.
pub(crate) fn file_stem(base_offset: u64) -> String {
    format!("{base_offset:020}")
}

/// A segment of a partition log.
///
/// Invariants: `readable <= size`; batches in `0..size` are whole and their offsets are dense
/// from `base_offset`; only bytes below `readable` are ever handed to readers.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first record in this segment.
    pub(crate) base_offset: u64,
    /// Path of the log file.
    pub(crate) log_path: PathBuf,
    pub(crate) file: Arc<dyn SegmentFile>,
    pub(crate) index: RwLock<Index<OffsetEntry>>,
    pub(crate) time_index: RwLock<Index<TimeEntry>>,
    /// Bytes of whole batches written.
    pub(crate) size: AtomicU64,
    /// Bytes readers may see. Changed only under the log's state lock, together with the high watermark.
    pub(crate) readable: AtomicU64,
    /// Largest record timestamp in the segment; `i64::MIN` when empty.
    pub(crate) max_timestamp: AtomicI64,
    /// Bytes from the start of the log file known to hold batches with valid CRCs: what this
    /// process wrote (checked before it was written) and what a read or recovery scan
    /// checked. Reads skip the CRC check below it. Starts at 0 whenever a segment is opened,
    /// so every batch is checked once after a restart. Invariant: `verified <= size`.
    pub(crate) verified: AtomicU64,
}

/// Where the indexes of a segment stand while batches are being added to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexCursor {
    /// Log bytes added since the last offset index entry.
    pub(crate) bytes_since_entry: u64,
    /// Largest timestamp so far.
    pub(crate) max_timestamp: i64,
    /// Base offset of the batch where `max_timestamp` was first reached.
    pub(crate) offset_of_max: u64,
}

impl IndexCursor {
    pub(crate) fn new(base_offset: u64) -> Self {
        IndexCursor {
            bytes_since_entry: 0,
            max_timestamp: i64::MIN,
            offset_of_max: base_offset,
        }
    }
}

/// Result of walking a log file's batches.
#[derive(Debug, Clone)]
pub(crate) struct ScanOutcome {
    /// End of the last valid batch visited.
    pub(crate) valid_end: u64,
    /// Offset after the last valid batch visited.
    pub(crate) next_offset: u64,
    /// The first invalid batch: its position and what is wrong with it.
    pub(crate) error: Option<(u64, String)>,
}

impl Segment {
    /// Creates a new, empty segment (replacing stale files of the same name).
    pub(crate) fn create(
        io: &dyn FileIo,
        dir: &Path,
        base_offset: u64,
        index_capacity: usize,
    ) -> Result<Segment> {
        let log_path = log_path(dir, base_offset);
        let file = io
            .open(&log_path)
            .map_err(|e| StorageError::io("create segment", &log_path, e))?;
        // Truncate only a stale file: on ext4, truncating a new file would make its close
        // flush all its dirty pages.
        if file
            .len()
            .map_err(|e| StorageError::io("stat segment", &log_path, e))?
            > 0
        {
            file.set_len(0)
                .map_err(|e| StorageError::io("truncate segment", &log_path, e))?;
        }
        let (ip, tp) = index_paths(dir, base_offset);
        let index = Index::create(io, &ip, index_capacity)
            .map_err(|e| StorageError::io("create index", &ip, e))?;
        let time_index = Index::create(io, &tp, index_capacity)
            .map_err(|e| StorageError::io("create time index", &tp, e))?;
        Ok(Segment {
            base_offset,
            log_path,
            file,
            index: RwLock::new(index),
            time_index: RwLock::new(time_index),
            size: AtomicU64::new(0),
            readable: AtomicU64::new(0),
            max_timestamp: AtomicI64::new(i64::MIN),
            verified: AtomicU64::new(0),
        })
    }

    /// Opens an existing segment with its indexes as they are on disk (trimmed, read-only).
    /// A missing or malformed index file opens as empty; callers check and rebuild.
    pub(crate) fn open(io: &dyn FileIo, dir: &Path, base_offset: u64) -> Result<Segment> {
        let log_path = log_path(dir, base_offset);
        let file = io
            .open(&log_path)
            .map_err(|e| StorageError::io("open segment", &log_path, e))?;
        let size = file
            .len()
            .map_err(|e| StorageError::io("stat segment", &log_path, e))?;
        let (ip, tp) = index_paths(dir, base_offset);
        let index: Index<OffsetEntry> = open_index_or_empty(io, &ip)?;
        let time_index: Index<TimeEntry> = open_index_or_empty(io, &tp)?;
        let max_timestamp = time_index.last().map_or(i64::MIN, |e| e.timestamp);
        Ok(Segment {
            base_offset,
            log_path,
            file,
            index: RwLock::new(index),
            time_index: RwLock::new(time_index),
            size: AtomicU64::new(size),
            readable: AtomicU64::new(size),
            max_timestamp: AtomicI64::new(max_timestamp),
            verified: AtomicU64::new(0),
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn readable(&self) -> u64 {
        self.readable.load(Ordering::Acquire)
    }

    /// See [`Segment::verified`].
    pub(crate) fn verified(&self) -> u64 {
        self.verified.load(Ordering::Acquire)
    }

    /// Records that the batches in `from..to` have valid CRCs. Only a range that touches the
    /// verified prefix extends it: the watermark never covers bytes nobody checked.
    pub(crate) fn note_verified(&self, from: u64, to: u64) {
        let _ = self
            .verified
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (from <= v && to > v).then_some(to)
            });
    }

    /// An I/O error on this segment's log file.
    pub(crate) fn io_err(&self, op: &'static str, e: std::io::Error) -> StorageError {
        StorageError::io(op, &self.log_path, e)
    }

    /// A corruption report naming this segment's log file.
    pub(crate) fn corrupt(&self, position: u64, reason: impl ToString) -> StorageError {
        StorageError::Corrupt {
            path: self.log_path.clone(),
            position,
            reason: reason.to_string(),
        }
    }

    /// Position of the batch to start a search for `offset` from: the floor entry of the offset
    /// index, or the start of the file.
    pub(crate) fn position_for(&self, offset: u64) -> u64 {
        let rel = i64::try_from(offset.saturating_sub(self.base_offset)).unwrap_or(i64::MAX);
        self.index
            .read()
            .floor(rel)
            .map_or(0, |e| u64::from(e.position))
    }

    /// Records a batch written at `position` in the indexes, Kafka style: an offset entry once
    /// `interval` bytes have passed since the last one, with a time entry when the running
    /// maximum timestamp grew. Returns `false` when the offset index is full (time to roll).
    pub(crate) fn index_batch(
        &self,
        cursor: &mut IndexCursor,
        position: u64,
        header: &BatchHeader,
        interval: u32,
    ) -> bool {
        if header.max_timestamp > cursor.max_timestamp {
            cursor.max_timestamp = header.max_timestamp;
            cursor.offset_of_max = header.base_offset;
            self.max_timestamp
                .fetch_max(header.max_timestamp, Ordering::AcqRel);
        }
        let mut room = true;
        if cursor.bytes_since_entry >= u64::from(interval) {
            let entry = OffsetEntry {
                relative_offset: self.relative(header.base_offset),
                position: u32::try_from(position).unwrap_or(u32::MAX),
            };
            let mut index = self.index.write();
            room = index.push(entry) && !index.is_full();
            drop(index);
            room &= self.push_time_entry(cursor, false);
            cursor.bytes_since_entry = 0;
        }
        cursor.bytes_since_entry += header.total_len() as u64;
        room
    }

    /// Adds a time entry for the running maximum timestamp if it grew; `last` for the final
    /// one before sealing. Returns `false` when the entry was due but the time index could not
    /// take it (full, or no disk space for the next one): time to roll.
    fn push_time_entry(&self, cursor: &IndexCursor, last: bool) -> bool {
        if cursor.max_timestamp == i64::MIN {
            return true;
        }
        let mut ti = self.time_index.write();
        if ti
            .last()
            .is_some_and(|l| l.timestamp >= cursor.max_timestamp)
        {
            return true;
        }
        let entry = TimeEntry {
            timestamp: cursor.max_timestamp,
            relative_offset: self.relative(cursor.offset_of_max),
        };
        if last {
            ti.push_last(entry)
        } else {
            ti.push(entry)
        }
    }

    fn relative(&self, offset: u64) -> u32 {
        u32::try_from(offset - self.base_offset).unwrap_or(u32::MAX)
    }

    /// Makes the indexes writable again with room for `capacity` entries (the log reopened
    /// this segment as its active one).
    /// Makes the indexes writable again with room for `capacity` entries (the log reopened
    /// this segment as its active one). Takes one index lock at a time (see the lock order in
    /// the `log` module).
    pub(crate) fn reopen_indexes(&self, capacity: usize) -> Result<()> {
        {
            let mut index = self.index.write();
            let path = index.path().to_path_buf();
            index
                .make_writable(capacity)
                .map_err(|e| StorageError::io("map index", path, e))?;
        }
        let mut ti = self.time_index.write();
        let path = ti.path().to_path_buf();
        ti.make_writable(capacity)
            .map_err(|e| StorageError::io("map time index", path, e))
    }

    /// Ends the segment's active life: a final time entry for its maximum timestamp, then both
    /// indexes trimmed, mapped read-only and fsynced. Takes one index lock at a time, and
    /// fsyncs under a read guard only, so lookups proceed while the disk works (see the lock
    /// order in the `log` module).
    pub(crate) fn seal_indexes(&self, cursor: &IndexCursor) -> Result<()> {
        self.push_time_entry(cursor, true);
        seal_index(&self.index, "seal index")?;
        seal_index(&self.time_index, "seal time index")
    }

    /// Walks the batches in `from..end`, starting at a batch boundary whose base offset is
    /// `first_offset`, and calls `visit(position, header)` for each valid one until it breaks.
    /// With `verify`, each batch's CRC is checked too. Stops at the first invalid batch and
    /// reports it; never reads past `end`.
    pub(crate) fn scan(
        &self,
        from: u64,
        end: u64,
        first_offset: Option<u64>,
        verify: bool,
        mut visit: impl FnMut(u64, &BatchHeader) -> ControlFlow<()>,
    ) -> Result<ScanOutcome> {
        let mut out = ScanOutcome {
            valid_end: from,
            next_offset: first_offset.unwrap_or(self.base_offset),
            error: None,
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_start = from; // file position of buf[0]
        let mut pos = from;
        while pos < end {
            if end - pos < HEADER_LEN as u64 {
                out.error = Some((pos, format!("{} trailing bytes", end - pos)));
                break;
            }
            // Make sure the header (and, when verifying, the whole batch) is in `buf`.
            self.fill(&mut buf, &mut buf_start, pos, HEADER_LEN, end)?;
            let at = (pos - buf_start) as usize;
            let header = match BatchHeader::parse(&buf[at..]) {
                Ok(h) => h,
                Err(e) => {
                    out.error = Some((pos, e.to_string()));
                    break;
                }
            };
            let total = header.total_len() as u64;
            if total > end - pos {
                out.error = Some((
                    pos,
                    format!("batch of {total} bytes runs past the end ({end})"),
                ));
                break;
            }
            if first_offset.is_some() && header.base_offset != out.next_offset {
                out.error = Some((
                    pos,
                    format!(
                        "batch base offset {} where {} was expected",
                        header.base_offset, out.next_offset
                    ),
                ));
                break;
            }
            if verify {
                self.fill(&mut buf, &mut buf_start, pos, total as usize, end)?;
                let at = (pos - buf_start) as usize;
                if let Err(e) = batch::verify_crc(&buf[at..at + total as usize]) {
                    out.error = Some((pos, e.to_string()));
                    break;
                }
            }
            let flow = visit(pos, &header);
            pos += total;
            out.valid_end = pos;
            out.next_offset = header.last_offset() + 1;
            if flow.is_break() {
                break;
            }
        }
        Ok(out)
    }

    /// Ensures `buf` holds file bytes `pos..pos + need` (reading ahead up to `end`).
    fn fill(
        &self,
        buf: &mut Vec<u8>,
        buf_start: &mut u64,
        pos: u64,
        need: usize,
        end: u64,
    ) -> Result<()> {
        let have_end = *buf_start + buf.len() as u64;
        if pos >= *buf_start && pos + need as u64 <= have_end {
            return Ok(());
        }
        let chunk = (buf.len() * 2).clamp(FIRST_SCAN_CHUNK, SCAN_CHUNK);
        let len = (need.max(chunk) as u64).min(end - pos) as usize;
        buf.resize(len, 0);
        self.file
            .read_exact_at(buf, pos)
            .map_err(|e| self.io_err("read segment", e))?;
        *buf_start = pos;
        Ok(())
    }

    /// The `len` bytes at `pos` (without a copy where the file allows).
    pub(crate) fn read_bytes(&self, pos: u64, len: usize) -> Result<bytes::Bytes> {
        self.file
            .read_bytes(pos, len)
            .map_err(|e| self.io_err("read segment", e))
    }

    /// Removes the segment's three files. Readers that still hold the segment keep reading
    /// through their open handles.
    pub(crate) fn delete_files(&self, io: &dyn FileIo) -> Result<()> {
        let dir = self.log_path.parent().unwrap_or(Path::new("."));
        remove_segment_files(io, dir, self.base_offset)
    }
}

/// Removes the three files of the segment at `base_offset` in `dir`, the log file first, so
/// that an interrupted removal leaves no log file without its indexes (indexes without a log
/// file are removed at the next open). Files already gone count as removed.
pub(crate) fn remove_segment_files(io: &dyn FileIo, dir: &Path, base_offset: u64) -> Result<()> {
    let log_path = log_path(dir, base_offset);
    let (ip, tp) = index_paths(dir, base_offset);
    for path in [&log_path, &ip, &tp] {
        io.remove_file(path)
            .map_err(|e| StorageError::io("delete segment file", path, e))?;
    }
    Ok(())
}

/// Trims `index` under its write guard, then fsyncs it under a read guard.
fn seal_index<E: IndexEntry>(index: &RwLock<Index<E>>, op: &'static str) -> Result<()> {
    let err = |i: &Index<E>, e| StorageError::io(op, i.path().to_path_buf(), e);
    {
        let mut i = index.write();
        i.trim().map_err(|e| err(&i, e))?;
    }
    let i = index.read();
    i.sync().map_err(|e| err(&i, e))
}

fn log_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{}{LOG_SUFFIX}", file_stem(base_offset)))
}

fn index_paths(dir: &Path, base_offset: u64) -> (PathBuf, PathBuf) {
    let stem = file_stem(base_offset);
    (
        dir.join(format!("{stem}{INDEX_SUFFIX}")),
        dir.join(format!("{stem}{TIME_INDEX_SUFFIX}")),
    )
}

fn open_index_or_empty<E: IndexEntry>(io: &dyn FileIo, path: &Path) -> Result<Index<E>> {
    match Index::open_sealed(io, path) {
        Ok(index) => Ok(index),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            tracing::warn!(path = %path.display(), error = %e, "malformed index file; it will be rebuilt");
            Index::create(io, path, 0)
                .and_then(|mut i| i.seal().map(|()| i))
                .map_err(|e| StorageError::io("reset index", path, e))
        }
        Err(e) => Err(StorageError::io("open index", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;

    #[test]
    fn the_verified_watermark_grows_only_from_checked_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(&StdIo, dir.path(), 0, 16).unwrap();
        segment.note_verified(100, 200);
        assert_eq!(segment.verified(), 0, "a range after a gap is no prefix");
        segment.note_verified(0, 100);
        segment.note_verified(100, 200);
        assert_eq!(segment.verified(), 200);
        segment.note_verified(50, 150);
        assert_eq!(segment.verified(), 200, "a range inside it changes nothing");
        drop(segment);
        let reopened = Segment::open(&StdIo, dir.path(), 0).unwrap();
        assert_eq!(
            reopened.verified(),
            0,
            "a reopened segment checks every batch again"
        );
    }
}
