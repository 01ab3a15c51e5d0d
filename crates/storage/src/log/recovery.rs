//! Opening a partition directory: finding its segments, checking or rebuilding their indexes,
//! and healing a torn tail after a crash.
//!
//! Three small files steer the work, each replaced atomically through [`FileIo`]:
//! - `log-start`, the log start offset retention decided on, persisted before it deletes the
//!   segments below it: segments wholly below it are deleted as the log opens, finishing an
//!   interrupted retention pass, so the log start never moves backwards.
//! - `clean-shutdown`, written by [`crate::Log::close`] after everything was fsynced: its
//!   presence means no scan is needed. It is removed (durably) as the log opens.
//! - `recovery-point`, the base offset of the first segment that may hold data not known to
//!   be fsynced. After a crash only segments from there on are scanned batch by batch.

use std::fs;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::io::FileIo;
use crate::segment::{
    INDEX_SUFFIX, IndexCursor, LOG_SUFFIX, ScanOutcome, Segment, TIME_INDEX_SUFFIX, file_stem,
    remove_segment_files,
};
use crate::{LogConfig, Result, StorageError};

/// Name of the clean-shutdown marker file.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Name of the recovery checkpoint file.
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Name of the persisted log start offset.
pub(crate) const LOG_START_FILE: &str = "log-start";
/// First word of the offset marker files (`recovery-point`, `log-start`).
const MARKER_VERSION: &str = "v1";

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
    let mut bases = list_segments(io, dir)?;
    let log_start = read_marker(dir, LOG_START_FILE).unwrap_or(0);
    delete_below_log_start(io, dir, &mut bases, log_start)?;
    let clean = take_clean_marker(io, dir)?;
    let recovery_point = if clean {
        u64::MAX
    } else {
        read_marker(dir, RECOVERY_POINT_FILE).unwrap_or(0)
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
            // A new log, or one whose every segment retention removed: it starts where
            // retention left it.
            let segment = Segment::create(io, dir, log_start, capacity_for(config, 0))?;
            segments.push(Arc::new(segment));
            sync_dir(io, dir)?;
            (IndexCursor::new(log_start), log_start)
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
        sync_dir(io, dir)?;
        write_recovery_point(io, dir, active.base_offset);
    }
    Ok(Recovered {
        segments,
        cursor,
        next_offset,
    })
}

/// Finishes an interrupted retention pass: deletes the segments wholly below the persisted
/// `log_start` (those the next segment starts at or before) and drops them from `bases`.
fn delete_below_log_start(
    io: &dyn FileIo,
    dir: &Path,
    bases: &mut Vec<u64>,
    log_start: u64,
) -> Result<()> {
    let below = bases
        .windows(2)
        .take_while(|pair| pair[1] <= log_start)
        .count();
    for &base in &bases[..below] {
        tracing::info!(dir = %dir.display(), base_offset = base, log_start,
            "deleting segment below the log start (a deletion pass was interrupted)");
        remove_segment_files(io, dir, base)?;
    }
    bases.drain(..below);
    if let Some(&first) = bases.first()
        && first < log_start
    {
        tracing::warn!(dir = %dir.display(), first_segment = first, log_start,
            "the first segment starts below the persisted log start");
    }
    Ok(())
}

/// Deletes segments that follow a torn or missing one: their data was never fsynced.
fn delete_segments(io: &dyn FileIo, dir: &Path, bases: &[u64]) -> Result<()> {
    for &base in bases {
        tracing::warn!(dir = %dir.display(), base_offset = base,
            "deleting segment after a torn one: its data was never fsynced");
        remove_segment_files(io, dir, base)?;
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
    if verify {
        segment.note_verified(0, outcome.valid_end);
    }
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
fn list_segments(io: &dyn FileIo, dir: &Path) -> Result<Vec<u64>> {
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
            remove_file(io, &entry.path())?;
        }
    }
    bases.sort_unstable();
    for (stem, path) in index_files {
        if parse_stem(&stem).is_none_or(|b| bases.binary_search(&b).is_err()) {
            tracing::warn!(file = %path.display(), "removing index without a log file");
            remove_file(io, &path)?;
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

fn remove_file(io: &dyn FileIo, path: &Path) -> Result<()> {
    io.remove_file(path)
        .map_err(|e| StorageError::io("remove file", path, e))
}

/// Removes the clean-shutdown marker, durably; returns whether it was there.
fn take_clean_marker(io: &dyn FileIo, dir: &Path) -> Result<bool> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let there = path
        .try_exists()
        .map_err(|e| StorageError::io("look for clean-shutdown marker", &path, e))?;
    if there {
        io.remove_file(&path)
            .map_err(|e| StorageError::io("remove clean-shutdown marker", &path, e))?;
        sync_dir(io, dir)?;
    }
    Ok(there)
}

/// Writes the clean-shutdown marker, durably.
pub(super) fn mark_clean(io: &dyn FileIo, dir: &Path) -> Result<()> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    io.write_file_atomic(&path, b"")
        .map_err(|e| StorageError::io("write clean-shutdown marker", &path, e))
}

/// The offset in marker file `name`; `None` when it is missing or unreadable (logged).
fn read_marker(dir: &Path, name: &str) -> Option<u64> {
    let path = dir.join(name);
    let text = fs::read_to_string(&path).ok()?;
    let mut words = text.split_whitespace();
    match (words.next(), words.next().and_then(|w| w.parse().ok())) {
        (Some(MARKER_VERSION), Some(offset)) => Some(offset),
        _ => {
            tracing::warn!(path = %path.display(), "unreadable marker file; ignoring it");
            None
        }
    }
}

/// Atomically and durably replaces marker file `name` with `offset`.
fn write_marker(io: &dyn FileIo, dir: &Path, name: &str, offset: u64) -> Result<()> {
    let path = dir.join(name);
    io.write_file_atomic(&path, format!("{MARKER_VERSION} {offset}\n").as_bytes())
        .map_err(|e| StorageError::io("write marker file", &path, e))
}

/// Replaces the recovery checkpoint. A failure only makes the next recovery scan more, so it
/// is logged, not returned.
pub(super) fn write_recovery_point(io: &dyn FileIo, dir: &Path, offset: u64) {
    if let Err(e) = write_marker(io, dir, RECOVERY_POINT_FILE, offset) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not write the recovery point");
    }
}

/// Persists the log start offset before retention deletes the segments below it.
pub(super) fn write_log_start(io: &dyn FileIo, dir: &Path, offset: u64) -> Result<()> {
    write_marker(io, dir, LOG_START_FILE, offset)
}

/// Fsyncs a directory, making file creations, renames and removals in it durable.
pub(crate) fn sync_dir(io: &dyn FileIo, dir: &Path) -> Result<()> {
    io.sync_dir(dir)
        .map_err(|e| StorageError::io("sync directory", dir, e))
}
