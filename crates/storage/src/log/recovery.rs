//! Opening a partition directory: finding its segments, checking or rebuilding their indexes,
//! and healing a torn tail after a crash.
//!
//! Two small files steer the work:
//! - `clean-shutdown`, written by [`crate::Log::close`] after everything was fsynced: its
//!   presence means no scan is needed. It is removed (durably) as the log opens.
//! - `recovery-point`, the base offset of the first segment that may hold data not known to
//!   be fsynced. After a crash only segments from there on are scanned batch by batch.

use std::fs;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::io::FileIo;
use crate::segment::{
    INDEX_SUFFIX, IndexCursor, LOG_SUFFIX, ScanOutcome, Segment, TIME_INDEX_SUFFIX, file_stem,
};
use crate::{LogConfig, Result, StorageError};

/// Name of the clean-shutdown marker file.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Name of the recovery checkpoint file.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
const RECOVERY_POINT_VERSION: &str = "v1";

/// The segments of an opened log, ready for appending to the last one.
#[derive(Debug)]
pub(super) struct Recovered {
    /// Sorted by base offset, never empty; the last one's indexes are writable.
    pub(super) segments: Vec<Arc<Segment>>,
    /// Index state of the last segment.
    pub(super) cursor: IndexCursor,
    /// The log end offset.
    pub(super) next_offset: u64,
}

/// Opens every segment in `dir` (creating the directory and a first segment if needed).
pub(super) fn recover(dir: &Path, config: &LogConfig, io: &dyn FileIo) -> Result<Recovered> {
    fs::create_dir_all(dir).map_err(|e| StorageError::io("create log directory", dir, e))?;
    let mut bases = list_segments(dir)?;
    let clean = take_clean_marker(dir)?;
    let recovery_point = if clean {
        u64::MAX
    } else {
        read_recovery_point(dir)
    };
    if !clean && !bases.is_empty() {
        tracing::info!(dir = %dir.display(), recovery_point, "log was not closed cleanly; recovering");
    }

    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len() + 1);
    let mut tail: Option<(IndexCursor, u64)> = None;
    let mut i = 0;
    while i < bases.len() {
        let base = bases[i];
        if let Some((_, expected)) = tail
            && base != expected
        {
            // A hole: the previous segment ends before this one begins (its tail was lost).
            // Nothing from here on can be served densely, and none of it was ever fsynced.
            tracing::warn!(dir = %dir.display(), base_offset = base, expected,
                "offset gap between segments; deleting the segments after it");
            delete_segments(io, dir, &bases[i..])?;
            bases.truncate(i);
            break;
        }
        let segment = Segment::open(io, dir, base)?;
        let is_last = i + 1 == bases.len();
        let unflushed = is_last || bases[i + 1] > recovery_point;
        if !clean && unflushed {
            let (outcome, cursor) = rebuild_indexes(&segment, config, true)?;
            if let Some((position, reason)) = &outcome.error {
                truncate(&segment, &outcome, *position, reason)?;
                delete_segments(io, dir, &bases[i + 1..])?;
                bases.truncate(i + 1);
            }
            tail = Some((cursor, outcome.next_offset));
        } else if !indexes_consistent(&segment) {
            tracing::warn!(path = %segment.log_path.display(), "index inconsistent with its log; rebuilding");
            let (outcome, _) = rebuild_indexes(&segment, config, false)?;
            if let Some((position, reason)) = outcome.error {
                // Left in place: a read that reaches it answers with the position.
                tracing::error!(path = %segment.log_path.display(), position, %reason,
                    "corrupt batch in a sealed segment");
            }
        }
        segments.push(Arc::new(segment));
        i += 1;
    }

    let (cursor, next_offset) = match (segments.last(), tail) {
        (None, _) => {
            let segment = Segment::create(io, dir, 0, capacity_for(config, 0))?;
            segments.push(Arc::new(segment));
            sync_dir(dir)?;
            (IndexCursor::new(0), 0)
        }
        (Some(_), Some(tail)) => tail,
        (Some(last), None) => scan_tail(last)?,
    };
    let active = segments
        .last()
        .cloned()
        .ok_or_else(|| StorageError::InvalidConfig("log directory without segments".into()))?;
    active.reopen_indexes(capacity_for(config, active.size()))?;

    if !clean {
        // What the scan accepted may still sit in the page cache only: make it durable before
        // anyone reads it, then remember that everything before the active segment is.
        for segment in &segments {
            segment
                .file
                .sync_data()
                .map_err(|e| segment.io_err("sync recovered segment", e))?;
        }
        sync_dir(dir)?;
        write_recovery_point(dir, active.base_offset);
    }
    Ok(Recovered {
        segments,
        cursor,
        next_offset,
    })
}

/// Deletes segments that follow a torn or missing one: their data was never fsynced.
fn delete_segments(io: &dyn FileIo, dir: &Path, bases: &[u64]) -> Result<()> {
    for &base in bases {
        tracing::warn!(dir = %dir.display(), base_offset = base,
            "deleting segment after a torn one: its data was never fsynced");
        Segment::open(io, dir, base)?.delete_files()?;
    }
    Ok(())
}

/// Cuts a segment at the first bad batch, loudly.
fn truncate(segment: &Segment, outcome: &ScanOutcome, position: u64, reason: &str) -> Result<()> {
    let size = segment.size();
    tracing::warn!(
        path = %segment.log_path.display(),
        position,
        %reason,
        bytes_cut = size - outcome.valid_end,
        log_end_offset = outcome.next_offset,
        "truncating torn tail of segment"
    );
    segment
        .file
        .set_len(outcome.valid_end)
        .map_err(|e| segment.io_err("truncate torn tail", e))?;
    segment.size.store(outcome.valid_end, Ordering::Release);
    segment.readable.store(outcome.valid_end, Ordering::Release);
    Ok(())
}

/// Rebuilds both indexes of `segment` from its log, validating batch framing, density of
/// offsets and (with `verify`) CRCs. Stops at the first bad batch, which the outcome reports.
fn rebuild_indexes(
    segment: &Segment,
    config: &LogConfig,
    verify: bool,
) -> Result<(ScanOutcome, IndexCursor)> {
    segment.index.write().clear();
    segment.time_index.write().clear();
    segment.reopen_indexes(capacity_for(config, segment.size()))?;
    segment.max_timestamp.store(i64::MIN, Ordering::Release);
    let mut cursor = IndexCursor::new(segment.base_offset);
    let interval = config.index_interval_bytes;
    let outcome = segment.scan(
        0,
        segment.size(),
        Some(segment.base_offset),
        verify,
        |pos, header| {
            segment.index_batch(&mut cursor, pos, header, interval);
            ControlFlow::Continue(())
        },
    )?;
    segment.seal_indexes(&cursor)?;
    Ok((outcome, cursor))
}

/// Whether a sealed segment's indexes look like what its log would produce.
fn indexes_consistent(segment: &Segment) -> bool {
    let size = segment.size();
    let offsets_ok = segment
        .index
        .read()
        .is_consistent(|e| u64::from(e.position) < size);
    let time = segment.time_index.read();
    let times_ok = time.is_consistent(|_| true);
    // A non-empty segment always gets a final time entry when it is sealed.
    offsets_ok && times_ok && (size == 0 || !time.is_empty())
}

/// After a clean shutdown: where the last segment ends, found by walking from its last index
/// entry. A tail that does not parse is cut, as after a crash.
fn scan_tail(segment: &Segment) -> Result<(IndexCursor, u64)> {
    let last_entry = segment.index.read().last();
    let (from, first_offset) = last_entry.map_or((0, segment.base_offset), |e| {
        (
            u64::from(e.position),
            segment.base_offset + u64::from(e.relative_offset),
        )
    });
    let mut cursor = IndexCursor::new(segment.base_offset);
    if let Some(t) = segment.time_index.read().last() {
        cursor.max_timestamp = t.timestamp;
        cursor.offset_of_max = segment.base_offset + u64::from(t.relative_offset);
    }
    let outcome = segment.scan(from, segment.size(), Some(first_offset), false, |_, h| {
        if h.max_timestamp > cursor.max_timestamp {
            cursor.max_timestamp = h.max_timestamp;
            cursor.offset_of_max = h.base_offset;
        }
        ControlFlow::Continue(())
    })?;
    if let Some((position, reason)) = &outcome.error {
        truncate(segment, &outcome, *position, reason)?;
    }
    segment
        .max_timestamp
        .fetch_max(cursor.max_timestamp, Ordering::AcqRel);
    cursor.bytes_since_entry = outcome.valid_end - from;
    Ok((cursor, outcome.next_offset))
}

/// Index entries needed for a segment of `size` bytes under `config`.
fn capacity_for(config: &LogConfig, size: u64) -> usize {
    let entries = config
        .max_index_entries()
        .max(size / u64::from(config.index_interval_bytes) + 2);
    usize::try_from(entries).unwrap_or(usize::MAX)
}

/// Base offsets of the segments in `dir`, sorted; removes leftovers of interrupted work.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StorageError::io("list log directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("list log directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(LOG_SUFFIX) {
            match parse_stem(stem) {
                Some(base) => bases.push(base),
                None => {
                    tracing::warn!(dir = %dir.display(), file = name, "ignoring unknown .log file")
                }
            }
        } else if let Some(stem) = name
            .strip_suffix(INDEX_SUFFIX)
            .or_else(|| name.strip_suffix(TIME_INDEX_SUFFIX))
        {
            index_files.push((stem.to_string(), entry.path()));
        } else if name.ends_with(".tmp") || name.ends_with(".deleted") {
            tracing::warn!(dir = %dir.display(), file = name, "removing leftover file");
            remove_file(&entry.path())?;
        }
    }
    bases.sort_unstable();
    for (stem, path) in index_files {
        if parse_stem(&stem).is_none_or(|b| bases.binary_search(&b).is_err()) {
            tracing::warn!(file = %path.display(), "removing index without a log file");
            remove_file(&path)?;
        }
    }
    Ok(bases)
}

fn parse_stem(stem: &str) -> Option<u64> {
    if stem.len() == file_stem(0).len() && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove file", path, e)),
    }
}

/// Removes the clean-shutdown marker, durably; returns whether it was there.
fn take_clean_marker(dir: &Path) -> Result<bool> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    match fs::remove_file(&path) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("remove clean-shutdown marker", path, e)),
    }
}

/// Writes the clean-shutdown marker, durably.
pub(super) fn mark_clean(dir: &Path) -> Result<()> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    fs::File::create(&path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError::io("write clean-shutdown marker", &path, e))?;
    sync_dir(dir)
}

/// The recovery checkpoint; 0 (scan everything) when missing or unreadable.
fn read_recovery_point(dir: &Path) -> u64 {
    let path = dir.join(RECOVERY_POINT_FILE);
    let Ok(text) = fs::read_to_string(&path) else {
        return 0;
    };
    let mut words = text.split_whitespace();
    match (words.next(), words.next().and_then(|w| w.parse().ok())) {
        (Some(RECOVERY_POINT_VERSION), Some(offset)) => offset,
        _ => {
            tracing::warn!(path = %path.display(), "unreadable recovery point; scanning every segment");
            0
        }
    }
}

/// Atomically replaces the recovery checkpoint (write, fsync, rename, fsync the directory).
/// A failure only makes the next recovery scan more, so it is logged, not returned.
pub(super) fn write_recovery_point(dir: &Path, offset: u64) {
    let tmp = dir.join(format!("{RECOVERY_POINT_FILE}.tmp"));
    let result = fs::File::create(&tmp)
        .and_then(|mut f| {
            writeln!(f, "{RECOVERY_POINT_VERSION} {offset}")?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, dir.join(RECOVERY_POINT_FILE)))
        .and_then(|()| fs::File::open(dir)?.sync_all());
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "could not write the recovery point");
    }
}

/// Fsyncs a directory, making file creations, renames and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("sync directory", dir, e))
}
