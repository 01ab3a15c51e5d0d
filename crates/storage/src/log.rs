//! The partition log: segments in a directory, one writer, any number of readers.
//!
//! # Lock order
//!
//! These are every lock of the storage crate. A thread may take them only in this order
//! (skipping any), never one higher in the list while it holds one lower down:
//!
//! 1. [`Log`]'s `retention` mutex: one retention pass at a time. Held across the pass's
//!    file I/O (the log-start marker's fsync, the deletions).
//! 2. [`Log`]'s `durable` mutex: the fsynced offset. Held across the fsyncs of a group
//!    commit, [`Log::checkpoint`] and [`Log::close`].
//! 3. [`Log`]'s `writer` mutex: one append at a time. Held across the append's write and a
//!    roll's file creation, directory fsync and index sealing, and across the calls of an
//!    [`AppendFilter`], which may take locks of their own only if those are leaves: taken
//!    with no other lock of theirs held, and never held while calling into the log.
//! 4. [`Log`]'s `state` `RwLock`: what readers see (segment list, high watermark). Held only
//!    to copy or change those, never across I/O.
//! 5. A segment's offset `index` or its `time_index` `RwLock` (crate `segment`). These are
//!    leaves among the log's locks: a thread holds at most one of them, of one segment, at a
//!    time, and takes no other lock of this list while it does. Lookups copy an entry out
//!    and drop the guard before taking the other index's lock; sealing trims each index
//!    under its write guard and fsyncs it under a read guard, so lookups never wait for a
//!    disk.
//! 6. Locks private to the `io` module, each taken with nothing below it and never held
//!    across a call out of that module: the fault injector's state, then a segment file's
//!    read map.
//! 7. [`Log`]'s `config` `RwLock`: the settings [`Log::set_config`] swaps. A leaf below
//!    every other lock: held only to clone or replace an `Arc`, so it may be taken while
//!    holding any lock above, and no lock is taken and no I/O is done while it is held.
//!    Each operation reads the settings once, before its other locks, and works with that
//!    snapshot throughout.

mod recovery;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::io::{FileIo, StdIo};
use crate::segment::{IndexCursor, Segment};
use crate::{FlushPolicy, LogConfig, Result, StorageError, TimestampType};

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: u64,
    /// Offset of the last record appended.
    pub last_offset: u64,
    /// Number of records appended.
    pub record_count: u64,
    /// Largest record timestamp among them.
    pub max_timestamp: i64,
}

/// Decides, append by append and under the log's writer lock, which appends of
/// [`Log::append_all_filtered`] are written: each is judged knowing how every earlier append
/// of the same call ended. The broker's idempotent-producer checks run here, so that
/// pipelined appends are judged in the order they are written.
pub trait AppendFilter {
    /// What an append the filter answers itself reports; storage errors convert into it.
    type Error: From<StorageError>;

    /// Called for append `index` once its batches passed validation (headers, CRC) and every
    /// earlier append of the call was written or failed. `None` writes it; `Some(result)`
    /// reports `result` for it instead and writes nothing. Runs under the writer lock: it must
    /// not call into the log (see the lock order).
    fn admit(&mut self, index: usize, batches: &[u8]) -> Option<Result<AppendInfo, Self::Error>>;

    /// Told how the write of admitted append `index` went, its batches now carrying their
    /// base offsets, before the next append is offered. Under [`FlushPolicy::Fsync`] the
    /// fsync comes after every write of the call, so an append written here may still end
    /// with a failed sync (which latches the log).
    fn written(&mut self, index: usize, batches: &[u8], result: &Result<AppendInfo>);
}

/// The filter of [`Log::append_all`]: writes every append.
struct AdmitAll;

impl AppendFilter for AdmitAll {
    type Error = StorageError;

    fn admit(&mut self, _: usize, _: &[u8]) -> Option<Result<AppendInfo>> {
        None
    }

    fn written(&mut self, _: usize, _: &[u8], _: &Result<AppendInfo>) {}
}

/// Whole batches read from the log.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Concatenated record batches. The first may start before the offset asked for (it is the
    /// batch that contains it); empty when the offset is the high watermark.
    pub batches: Bytes,
    /// The high watermark when the read was made.
    pub high_watermark: u64,
    /// The log start offset when the read was made.
    pub log_start_offset: u64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes of log deleted.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: u64,
}

/// What readers may see.
///
/// Invariant: `segments` is sorted by base offset, never empty, and its last element is the
/// writer's active segment; `segments[0].base_offset <= high_watermark`.
#[derive(Debug)]
struct LogState {
    segments: Vec<Arc<Segment>>,
    /// First offset not visible to readers.
    high_watermark: u64,
}

impl LogState {
    fn log_start_offset(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.base_offset)
    }

    /// How many of the oldest segments retention should delete now: a prefix of the sealed
    /// ones that are fully visible and too old or beyond `retention.bytes`.
    fn expired_segments(&self, config: &LogConfig, now_ms: i64) -> usize {
        let mut remaining: u64 = self.segments.iter().map(|s| s.size()).sum();
        let sealed = self.segments.len() - 1;
        let mut n = 0;
        for segment in &self.segments[..sealed] {
            let size = segment.size();
            // A sealed segment still waiting for its fsync is not fully visible yet.
            if segment.readable() < size {
                break;
            }
            let too_old = config.retention_ms.is_some_and(|ms| {
                let max = segment.max_timestamp.load(Ordering::Acquire);
                max < now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
            });
            let too_big = config
                .retention_bytes
                .is_some_and(|limit| remaining - size >= limit);
            if !(too_old || too_big) {
                break;
            }
            remaining -= size;
            n += 1;
        }
        n
    }

    /// How many of the oldest segments hold only offsets below `offset`: a prefix of the
    /// sealed, fully visible ones whose successor starts at or below `offset`.
    fn segments_below(&self, offset: u64) -> usize {
        let sealed = self.segments.len() - 1;
        self.segments[..sealed]
            .iter()
            .zip(&self.segments[1..])
            .take_while(|(segment, next)| {
                // A sealed segment still waiting for its fsync is not fully visible yet.
                segment.readable() >= segment.size() && next.base_offset <= offset
            })
            .count()
    }
}

/// The writer's side, behind one mutex: one append at a time.
#[derive(Debug)]
struct Writer {
    active: Arc<Segment>,
    cursor: IndexCursor,
    /// The log end offset: the next offset to assign.
    next_offset: u64,
    /// End of the last whole batch in the active segment.
    write_pos: u64,
    /// Wall-clock time of the active segment's first append since it was opened (`segment.ms`).
    active_since_ms: Option<i64>,
    /// The offset index of the active segment is full: roll before the next append.
    index_full: bool,
    /// Sealed segments whose data has not been fsynced yet.
    unsynced_sealed: Vec<Arc<Segment>>,
    closed: bool,
}

impl Writer {
    /// Drops `segments` from the sealed segments waiting for an fsync (they were synced, or
    /// deleted). Matches by identity: the queue may have changed since they were taken.
    fn forget_synced(&mut self, segments: &[Arc<Segment>]) {
        self.unsynced_sealed
            .retain(|s| !segments.iter().any(|d| Arc::ptr_eq(d, s)));
    }
}

/// A partition's append-only log of Kafka v2 record batches.
///
/// Offsets are dense: every record gets the next one. Invariant, at every instant:
/// `log_start_offset <= high_watermark <= log_end_offset`, where
/// - `log_start_offset` is the first offset still kept (retention moves it forward),
/// - `high_watermark` is the first offset readers cannot see yet: under [`FlushPolicy::Fsync`]
///   it only covers fsynced data, otherwise it follows every append,
/// - `log_end_offset` is the next offset an append will assign.
///
/// Concurrency: one append runs at a time (the writer mutex); readers take the state lock only
/// to copy a segment handle and the high watermark, never across I/O, so they neither block the
/// writer for longer than that copy nor see a batch that is partly written.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    /// The settings, swapped whole by [`Log::set_config`]; see "Lock order" above.
    config: RwLock<Arc<LogConfig>>,
    io: Arc<dyn FileIo>,
    state: RwLock<LogState>,
    writer: Mutex<Writer>,
    /// Offsets below this are fsynced. Held while syncing, which makes appends that wait for
    /// durability share one fsync (group commit).
    durable: Mutex<u64>,
    /// Copy of the writer's `next_offset` for lock-free readers of the log end offset.
    end_offset: AtomicU64,
    /// Set once by the first failed write or fsync; the log then refuses appends.
    failure: OnceLock<String>,
    /// Segments retention has removed from the log (the persisted log start is past them)
    /// whose files are still to be deleted. Held for a whole retention pass, so passes run
    /// one at a time.
    retention: Mutex<Vec<Arc<Segment>>>,
}

impl Log {
    /// Opens the partition log in `dir`, creating it if needed, and recovers it if the last
    /// run did not close it cleanly. Blocking.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log> {
        Self::open_with_io(dir, config, Arc::new(StdIo))
    }

    /// [`Log::open`] with a chosen file I/O implementation (tests inject faults through it).
    pub fn open_with_io(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        io: Arc<dyn FileIo>,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.into();
        let recovered = recovery::recover(&dir, &config, io.as_ref())?;
        let next_offset = recovered.next_offset;
        let active =
            recovered.segments.last().cloned().ok_or_else(|| {
                StorageError::InvalidConfig("recovery produced no segment".into())
            })?;
        let write_pos = active.size();
        let log = Log {
            state: RwLock::new(LogState {
                segments: recovered.segments,
                high_watermark: next_offset,
            }),
            writer: Mutex::new(Writer {
                active,
                cursor: recovered.cursor,
                next_offset,
                write_pos,
                active_since_ms: None,
                index_full: false,
                unsynced_sealed: Vec::new(),
                closed: false,
            }),
            durable: Mutex::new(next_offset),
            end_offset: AtomicU64::new(next_offset),
            failure: OnceLock::new(),
            retention: Mutex::new(Vec::new()),
            dir,
            config: RwLock::new(Arc::new(config)),
            io,
        };
        Ok(log)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's configuration.
    pub fn config(&self) -> LogConfig {
        LogConfig::clone(&self.settings())
    }

    /// Replaces the log's configuration, checked as [`Log::open`] checks it; the log keeps
    /// the old one when it is invalid. Takes effect from the next operation that reads it:
    /// the next append (`max_append_bytes`, `flush`, `index_interval_bytes`,
    /// `timestamp_type`), the next timestamp lookup (`max_decompressed_batch_bytes`), the next roll
    /// (`segment_bytes`, `segment_ms`, and the index size of the new segment), the next
    /// retention pass (`retention_bytes`, `retention_ms`) and the next checkpoint. An
    /// operation in progress finishes under the settings it started with.
    ///
    /// Segments already written keep the indexes they have: a smaller
    /// `index_interval_bytes` only makes new entries denser, and a larger `segment_bytes`
    /// than the active segment's index was sized for rolls it early, once its index is full.
    /// A switch away from [`FlushPolicy::Fsync`] makes later appends visible before they are
    /// fsynced; a switch to it makes the next append fsync everything written before it too.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        *self.config.write() = Arc::new(config);
        Ok(())
    }

    /// The settings now in force: one brief read of the leaf `config` lock.
    fn settings(&self) -> Arc<LogConfig> {
        Arc::clone(&self.config.read())
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.state.read().log_start_offset()
    }

    /// First offset not yet visible to readers.
    pub fn high_watermark(&self) -> u64 {
        self.state.read().high_watermark
    }

    /// The next offset an append will assign.
    pub fn log_end_offset(&self) -> u64 {
        self.end_offset.load(Ordering::Acquire)
    }

    /// Bytes of log on disk.
    pub fn size_bytes(&self) -> u64 {
        self.state.read().segments.iter().map(|s| s.size()).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.state.read().segments.len()
    }

    /// The reason the log refuses writes, if an earlier write or fsync failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Appends one or more concatenated record batches, assigning dense offsets (the base
    /// offsets in `batches` are overwritten in place). Every batch is validated first (header,
    /// CRC); nothing is written unless all are valid. Compressed batches are stored as they
    /// are; their records are not decoded here.
    ///
    /// Under [`TimestampType::LogAppendTime`] each batch is also marked as log-append time and
    /// gets the append time as its max timestamp (and so a new CRC), as Kafka does; the time
    /// index and [`AppendInfo::max_timestamp`] then carry that time.
    ///
    /// Returns once the records are visible to readers and, under [`FlushPolicy::Fsync`],
    /// fsynced; concurrent appends then share one fsync. Blocking.
    pub fn append(&self, batches: &mut [u8]) -> Result<AppendInfo> {
        self.append_all(&mut [batches])
            .pop()
            .unwrap_or_else(|| Err(batch_err(0)))
    }

    /// Several appends in one go, in order, each as [`Log::append`] and each with its own
    /// result; under [`FlushPolicy::Fsync`] they wait for one fsync together. This is how a
    /// partition's queue of produce requests is written: one lock, one sync, many requests.
    pub fn append_all<B: AsMut<[u8]>>(&self, appends: &mut [B]) -> Vec<Result<AppendInfo>> {
        self.append_all_filtered(appends, &mut AdmitAll)
    }

    /// [`Log::append_all`], offering each valid append to `filter` first, in order, under the
    /// writer lock: an append it answers itself is not written and reports its answer (which,
    /// when successful, is turned into the failure of a failed fsync like the written ones).
    pub fn append_all_filtered<B: AsMut<[u8]>, F: AppendFilter>(
        &self,
        appends: &mut [B],
        filter: &mut F,
    ) -> Vec<Result<AppendInfo, F::Error>> {
        let config = self.settings();
        let checked: Vec<Result<(u64, i64)>> = appends
            .iter_mut()
            .map(|b| {
                let b = b.as_mut();
                if b.len() > config.max_append_bytes {
                    return Err(StorageError::BatchTooLarge {
                        size: b.len(),
                        limit: config.max_append_bytes,
                    });
                }
                validate(b)
            })
            .collect();
        let mut w = self.writer.lock();
        let mut results: Vec<Result<AppendInfo, F::Error>> = appends
            .iter_mut()
            .zip(checked)
            .enumerate()
            .map(|(index, (buf, checked))| {
                let buf = buf.as_mut();
                let (record_count, max_timestamp) = checked?;
                if let Some(answer) = filter.admit(index, buf) {
                    return answer;
                }
                let result = self.write_locked(&mut w, &config, buf, record_count, max_timestamp);
                filter.written(index, buf, &result);
                Ok(result?)
            })
            .collect();
        let end = w.next_offset;
        if config.flush == FlushPolicy::Fsync {
            drop(w);
            if results.iter().any(Result::is_ok)
                && let Err(e) = self.make_durable(end)
            {
                // Not durable, so not acknowledged: every written append reports the failure.
                let reason = e.to_string();
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(StorageError::Failed {
                        path: self.dir.clone(),
                        reason: reason.clone(),
                    }
                    .into());
                }
            }
        } else {
            self.publish(&[], &w.active, w.write_pos, end);
        }
        results
    }

    /// Writes one validated append while holding the writer lock; does not publish it.
    fn write_locked(
        &self,
        w: &mut Writer,
        config: &LogConfig,
        batches: &mut [u8],
        record_count: u64,
        max_timestamp: i64,
    ) -> Result<AppendInfo> {
        if w.closed {
            return Err(StorageError::Closed {
                path: self.dir.clone(),
            });
        }
        self.check_failed()?;
        self.maybe_roll(w, config, batches.len() as u64, record_count)?;

        let base_offset = w.next_offset;
        let mut offset = base_offset;
        // One clock reading per append, taken under the writer lock: append times follow
        // offsets unless the wall clock steps back.
        let append_time = (config.timestamp_type == TimestampType::LogAppendTime).then(now_ms);
        for_each_batch(batches, |at, header, bytes| {
            let Some(bytes) = bytes.get_mut(at..at + header.total_len()) else {
                return;
            };
            batch::set_base_offset(bytes, offset);
            if let Some(time) = append_time {
                batch::set_log_append_time(bytes, time);
            }
            offset += header.record_count as u64;
        });

        let position = w.write_pos;
        if let Err(e) = w.active.file.write_all_at(batches, position) {
            // Cut whatever part of the write landed, so the next append starts clean.
            if let Err(e2) = w.active.file.set_len(position) {
                self.fail(format!("could not undo a failed write ({e}): {e2}"));
            }
            return Err(w.active.io_err("append to segment", e));
        }
        let interval = config.index_interval_bytes;
        let Writer { active, cursor, .. } = &mut *w;
        let mut room = true;
        for_each_batch(batches, |at, header, _| {
            room &= active.index_batch(cursor, position + at as u64, header, interval);
        });
        w.index_full |= !room;
        // `validate` checked every CRC and `set_log_append_time` rewrites the one it changes.
        w.active
            .note_verified(position, position + batches.len() as u64);
        w.write_pos += batches.len() as u64;
        w.next_offset = offset;
        w.active.size.store(w.write_pos, Ordering::Release);
        w.active_since_ms.get_or_insert_with(now_ms);
        self.end_offset.store(offset, Ordering::Release);
        Ok(AppendInfo {
            base_offset,
            last_offset: offset - 1,
            record_count,
            max_timestamp: append_time.unwrap_or(max_timestamp),
        })
    }

    /// Base offset of the active segment, the one appends go to: it changes when the log
    /// rolls.
    pub fn active_segment_base(&self) -> u64 {
        self.state
            .read()
            .segments
            .last()
            .map_or(0, |s| s.base_offset)
    }

    /// Calls `visit` with the header of every readable batch from the one holding `from` (or
    /// from the log start, when `from` is below it) to the high watermark, in offset order.
    /// Records are not decoded and CRCs not checked: this is for rebuilding state kept from
    /// headers alone. Blocking.
    ///
    /// Stops at the first batch whose framing is bad, with [`StorageError::Corrupt`] naming
    /// its file and position; the headers visited before it stand.
    pub fn scan_headers(&self, from: u64, mut visit: impl FnMut(&BatchHeader)) -> Result<()> {
        let segments = self.state.read().segments.clone();
        for (i, segment) in segments.iter().enumerate() {
            if segments
                .get(i + 1)
                .is_some_and(|next| next.base_offset <= from)
            {
                continue;
            }
            let start = if from > segment.base_offset {
                segment.position_for(from)
            } else {
                0
            };
            let outcome = segment.scan(start, segment.readable(), None, false, |_, header| {
                if header.last_offset() >= from {
                    visit(header);
                }
                std::ops::ControlFlow::Continue(())
            })?;
            if let Some((position, reason)) = outcome.error {
                return Err(segment.corrupt(position, reason));
            }
        }
        Ok(())
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`
    /// (but always at least one whole batch), never past the high watermark. Every batch
    /// returned has a valid CRC: checked when this process appended it, or else on its first
    /// read since the segment was opened (see `Segment::verified`). Blocking.
    ///
    /// `offset == high_watermark` gives an empty result; an offset below the log start or above
    /// the high watermark is [`StorageError::OffsetOutOfRange`].
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadResult> {
        let (segment, readable, high_watermark, log_start_offset) = {
            let st = self.state.read();
            let start = st.log_start_offset();
            if offset < start || offset > st.high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start_offset: start,
                    high_watermark: st.high_watermark,
                });
            }
            let i = st
                .segments
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            let segment = st.segments[i].clone();
            let readable = segment.readable();
            (segment, readable, st.high_watermark, start)
        };
        let batches = if offset == high_watermark {
            Bytes::new()
        } else {
            read_from_segment(&segment, offset, readable, max_bytes, &self.settings())?
        };
        Ok(ReadResult {
            batches,
            high_watermark,
            log_start_offset,
        })
    }

    /// The first offset whose record timestamp is `>= timestamp_ms`, or `None` when no visible
    /// record is that recent. Timestamps need not be monotonic; the answer is exact.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        let config = self.settings();
        let segments: Vec<(Arc<Segment>, u64)> = {
            let st = self.state.read();
            st.segments
                .iter()
                .map(|s| (s.clone(), s.readable()))
                .collect()
        };
        for (segment, readable) in segments {
            if segment.max_timestamp.load(Ordering::Acquire) < timestamp_ms {
                continue;
            }
            // Copied out, so the time index guard is gone before `position_for` takes the
            // offset index lock (see "Lock order" above).
            let floor = segment.time_index.read().floor(timestamp_ms);
            let from = floor.map_or(0, |e| {
                segment.position_for(segment.base_offset + u64::from(e.relative_offset))
            });
            let mut hit = None;
            let outcome = segment.scan(from, readable, None, false, |pos, h| {
                if h.max_timestamp >= timestamp_ms {
                    hit = Some((pos, h.total_len()));
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            })?;
            if let Some((pos, reason)) = outcome.error {
                return Err(segment.corrupt(pos, reason));
            }
            let Some((pos, len)) = hit else { continue };
            let bytes = segment.read_bytes(pos, len)?;
            batch::verify_crc(&bytes).map_err(|e| segment.corrupt(pos, e))?;
            let header = BatchHeader::parse(&bytes).map_err(|e| segment.corrupt(pos, e))?;
            if header.is_log_append_time() {
                // Every record's timestamp is the max timestamp: the first one is it.
                return Ok(Some(header.base_offset));
            }
            let limit = config.max_decompressed_batch_bytes;
            for record in
                batch::records_within(bytes, limit).map_err(|e| segment.corrupt(pos, e))?
            {
                let record = record.map_err(|e| segment.corrupt(pos, e))?;
                if record.timestamp_ms >= timestamp_ms {
                    return Ok(Some(record.offset));
                }
            }
        }
        Ok(None)
    }

    /// Fsyncs everything appended so far and makes it visible. Under
    /// [`FlushPolicy::Interval`] the owner calls this every interval. Blocking.
    pub fn flush(&self) -> Result<()> {
        self.make_durable(self.log_end_offset())
    }

    /// Fsyncs segments sealed since the last call and moves the recovery checkpoint past
    /// them, so that crash recovery only has to scan the active segment. Cheap when there is
    /// nothing to do; a no-op under [`FlushPolicy::Fsync`], where appends do it. Blocking.
    pub fn checkpoint(&self) -> Result<()> {
        if self.settings().flush == FlushPolicy::Fsync {
            return Ok(());
        }
        let _durable = self.durable.lock();
        let (sealed, active_base) = {
            let w = self.writer.lock();
            (w.unsynced_sealed.clone(), w.active.base_offset)
        };
        if sealed.is_empty() {
            return Ok(());
        }
        for segment in &sealed {
            self.sync_segment(segment)?;
        }
        self.writer.lock().forget_synced(&sealed);
        recovery::write_recovery_point(self.io.as_ref(), &self.dir, active_base);
        Ok(())
    }

    /// Deletes the oldest sealed segments while the log is over `retention.bytes`, and those
    /// whose newest record is older than `retention.ms` (relative to `now_ms`). The active
    /// segment is never deleted. Blocking.
    ///
    /// Crash-safe, in this order: the new log start is decided, persisted (the `log-start`
    /// marker, replaced atomically), published to readers, and only then are the files
    /// deleted. A failure before the marker is durable changes nothing; a failure to delete
    /// leaves the log start where it was moved to, and the files are deleted by the next pass
    /// or, after a restart, by recovery. The log start never moves backwards.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let config = self.settings();
        self.delete_front(|st| st.expired_segments(&config, now_ms), "retention")
    }

    /// Deletes the oldest sealed segments that hold only offsets below `offset` (segment
    /// granularity: a segment holding `offset` or anything above it stays, and so does the
    /// active segment, and a sealed one not yet fsynced). The log start becomes the base
    /// offset of the first segment kept, so it never passes `offset`. Blocking.
    ///
    /// The owner calls this once the records below `offset` are no longer needed (the
    /// broker: once every share group reading the partition is past them). Crash-safe and
    /// serialised with retention passes exactly as [`Log::enforce_retention`] is: both share
    /// one deletion path.
    pub fn delete_segments_below(&self, offset: u64) -> Result<RetentionOutcome> {
        self.delete_front(|st| st.segments_below(offset), "reclaim")
    }

    /// Removes the `choose(state)` oldest segments: the one deletion path of
    /// [`Log::enforce_retention`] and [`Log::delete_segments_below`]. `choose` must pick a
    /// prefix of the sealed segments (never the active one); `why` names the pass in logs.
    fn delete_front(
        &self,
        choose: impl FnOnce(&LogState) -> usize,
        why: &'static str,
    ) -> Result<RetentionOutcome> {
        let mut undeleted = self.retention.lock();
        // Only this path removes segments, and passes run one at a time, so the decided
        // prefix stays the front of the list until it is drained below; rolls only append.
        let (n, new_start) = {
            let st = self.state.read();
            let n = choose(&st).min(st.segments.len() - 1);
            (n, st.segments[n].base_offset)
        };
        let mut doomed = Vec::new();
        if n > 0 {
            recovery::write_log_start(self.io.as_ref(), &self.dir, new_start)?;
            // The writer lock lets doomed segments leave the queue of segments waiting for
            // an fsync: syncing deleted data is wasted I/O.
            let mut w = self.writer.lock();
            doomed = self.state.write().segments.drain(..n).collect::<Vec<_>>();
            w.forget_synced(&doomed);
            drop(w);
            undeleted.extend(doomed.iter().cloned());
        }
        while let Some(segment) = undeleted.first() {
            segment.delete_files(self.io.as_ref())?;
            undeleted.remove(0);
        }
        let bytes_deleted = doomed.iter().map(|s| s.size()).sum();
        let log_start_offset = self.log_start_offset();
        if !doomed.is_empty() {
            tracing::info!(
                dir = %self.dir.display(),
                segments = doomed.len(),
                bytes = bytes_deleted,
                log_start_offset,
                pass = why,
                "deleted segments"
            );
        }
        Ok(RetentionOutcome {
            segments_deleted: doomed.len(),
            bytes_deleted,
            log_start_offset,
        })
    }

    /// Fsyncs everything, trims the active segment's indexes and writes the clean-shutdown
    /// marker, so the next open skips recovery. Appends fail afterwards; reads still work.
    pub fn close(&self) -> Result<()> {
        let mut durable = self.durable.lock();
        let mut w = self.writer.lock();
        if w.closed {
            return Ok(());
        }
        w.closed = true;
        let sealed = std::mem::take(&mut w.unsynced_sealed);
        for segment in &sealed {
            self.sync_segment(segment)?;
        }
        self.sync_segment(&w.active)?;
        w.active.seal_indexes(&w.cursor)?;
        self.publish(&sealed, &w.active, w.write_pos, w.next_offset);
        *durable = w.next_offset;
        recovery::write_recovery_point(self.io.as_ref(), &self.dir, w.active.base_offset);
        if self.failure.get().is_none() {
            recovery::mark_clean(self.io.as_ref(), &self.dir)?;
        }
        Ok(())
    }

    fn check_failed(&self) -> Result<()> {
        match self.failure.get() {
            Some(reason) => Err(StorageError::Failed {
                path: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Latches the log into its failed state and returns the error to report.
    fn fail(&self, reason: String) -> StorageError {
        tracing::error!(dir = %self.dir.display(), %reason, "log failed; refusing writes until restart");
        let _ = self.failure.set(reason);
        StorageError::Failed {
            path: self.dir.clone(),
            reason: self.failure.get().cloned().unwrap_or_default(),
        }
    }

    fn sync_segment(&self, segment: &Segment) -> Result<()> {
        crate::io::timed_sync(segment.file.as_ref()).map_err(|e| {
            self.fail(format!(
                "fsync of {} failed: {e}",
                segment.log_path.display()
            ))
        })
    }

    /// Waits until every offset below `target` is fsynced, syncing itself if no one else is.
    /// Whoever holds `durable` syncs all that was written when it started, so appends that
    /// queue behind it usually find their data already durable.
    fn make_durable(&self, target: u64) -> Result<()> {
        let mut durable = self.durable.lock();
        if *durable >= target {
            return Ok(());
        }
        self.check_failed()?;
        let (sealed, active, readable, end) = {
            let w = self.writer.lock();
            (
                w.unsynced_sealed.clone(),
                w.active.clone(),
                w.write_pos,
                w.next_offset,
            )
        };
        for segment in &sealed {
            self.sync_segment(segment)?;
        }
        self.sync_segment(&active)?;
        if !sealed.is_empty() {
            self.writer.lock().forget_synced(&sealed);
            recovery::write_recovery_point(self.io.as_ref(), &self.dir, active.base_offset);
        }
        self.publish(&sealed, &active, readable, end);
        *durable = end;
        Ok(())
    }

    /// Makes data visible: whole `sealed` segments, `active` up to `readable` bytes, offsets up
    /// to `end`. Never moves anything backwards.
    fn publish(&self, sealed: &[Arc<Segment>], active: &Segment, readable: u64, end: u64) {
        let mut st = self.state.write();
        for segment in sealed {
            segment.readable.store(segment.size(), Ordering::Release);
        }
        active.readable.fetch_max(readable, Ordering::AcqRel);
        if end > st.high_watermark {
            st.high_watermark = end;
        }
    }

    /// Whether the active segment is full, too old, or its index cannot take more.
    fn roll_due(
        &self,
        w: &Writer,
        config: &LogConfig,
        incoming_bytes: u64,
        incoming_records: u64,
    ) -> bool {
        if w.write_pos == 0 {
            return false;
        }
        let too_big = w.write_pos + incoming_bytes > config.segment_bytes;
        let too_old = config.segment_ms.is_some_and(|ms| {
            w.active_since_ms
                .is_some_and(|since| now_ms() - since >= i64::try_from(ms).unwrap_or(i64::MAX))
        });
        let offsets_overflow =
            w.next_offset + incoming_records - w.active.base_offset > u64::from(u32::MAX);
        too_big || too_old || offsets_overflow || w.index_full
    }

    /// Starts a new segment if [`Log::roll_due`].
    fn maybe_roll(
        &self,
        w: &mut Writer,
        config: &LogConfig,
        incoming_bytes: u64,
        incoming_records: u64,
    ) -> Result<()> {
        if !self.roll_due(w, config, incoming_bytes, incoming_records) {
            return Ok(());
        }
        // The new segment first: when that fails (a full disk) the active one is untouched
        // and takes appends again once there is room.
        let capacity = index_capacity(config);
        let next = Arc::new(Segment::create(
            self.io.as_ref(),
            &self.dir,
            w.next_offset,
            capacity,
        )?);
        recovery::sync_dir(self.io.as_ref(), &self.dir)
            .map_err(|e| self.fail(format!("could not make a new segment durable: {e}")))?;
        w.active
            .seal_indexes(&w.cursor)
            .map_err(|e| self.fail(format!("could not seal segment indexes: {e}")))?;
        let old = std::mem::replace(&mut w.active, next.clone());
        if config.flush != FlushPolicy::Fsync {
            old.readable.store(old.size(), Ordering::Release);
        }
        w.unsynced_sealed.push(old);
        w.cursor = IndexCursor::new(w.next_offset);
        w.write_pos = 0;
        w.active_since_ms = None;
        w.index_full = false;
        self.state.write().segments.push(next);
        Ok(())
    }
}

/// Index entries a segment of this configuration can need.
fn index_capacity(config: &LogConfig) -> usize {
    usize::try_from(config.max_index_entries()).unwrap_or(usize::MAX)
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Checks that `buf` is a sequence of whole, valid batches; returns their record count and
/// largest timestamp.
fn validate(buf: &[u8]) -> Result<(u64, i64)> {
    if buf.len() < HEADER_LEN {
        return Err(batch_err(buf.len()));
    }
    let (mut pos, mut count, mut max_ts) = (0usize, 0u64, i64::MIN);
    while pos < buf.len() {
        let header = BatchHeader::parse(&buf[pos..])?;
        let total = header.total_len();
        let Some(bytes) = buf.get(pos..pos + total) else {
            return Err(batch_err(buf.len() - pos));
        };
        batch::verify_crc(bytes)?;
        count += header.record_count as u64;
        max_ts = max_ts.max(header.max_timestamp);
        pos += total;
    }
    Ok((count, max_ts))
}

fn batch_err(available: usize) -> StorageError {
    StorageError::InvalidBatch(crate::BatchError::Truncated {
        needed: HEADER_LEN,
        available,
    })
}

/// Calls `f(position, header, buf)` for each batch of an already validated buffer.
fn for_each_batch(buf: &mut [u8], mut f: impl FnMut(usize, &BatchHeader, &mut [u8])) {
    let mut pos = 0;
    while pos < buf.len() {
        let Ok(header) = BatchHeader::parse(&buf[pos..]) else {
            return;
        };
        f(pos, &header, buf);
        pos += header.total_len();
    }
}

/// Reads whole batches from `segment`, starting with the one containing `offset`, within its
/// first `readable` bytes, up to `max_bytes` (at least one batch). CRC-checks each.
fn read_from_segment(
    segment: &Segment,
    offset: u64,
    readable: u64,
    max_bytes: usize,
    config: &LogConfig,
) -> Result<Bytes> {
    let slack = config.index_interval_bytes as usize + HEADER_LEN;
    let mut from = segment.position_for(offset);
    loop {
        if from >= readable {
            return Err(segment.corrupt(from, format!("offset {offset} not found")));
        }
        let want = ((max_bytes.saturating_add(slack)) as u64).min(readable - from) as usize;
        let want = want.max(HEADER_LEN.min((readable - from) as usize));
        let chunk = segment.read_bytes(from, want)?;
        // Skip the batches before the one that holds `offset`.
        let mut pos = 0usize;
        let mut first = None;
        while pos + HEADER_LEN <= chunk.len() {
            let h = BatchHeader::parse(&chunk[pos..])
                .map_err(|e| segment.corrupt(from + pos as u64, e))?;
            if h.last_offset() >= offset {
                first = Some(h);
                break;
            }
            pos += h.total_len();
        }
        let Some(first) = first else {
            // Ran out of chunk while skipping: continue from where the skipping got to.
            if pos == 0 {
                return Err(segment.corrupt(from, "batch header does not fit"));
            }
            from += pos as u64;
            continue;
        };
        if pos + first.total_len() > chunk.len() {
            // The first batch does not fit in this chunk: read again, starting with it.
            let start = from + pos as u64;
            let need = first
                .total_len()
                .max(max_bytes)
                .min((readable - start) as usize);
            if need < first.total_len() {
                return Err(segment.corrupt(start, "batch runs past the readable end"));
            }
            let chunk = segment.read_bytes(start, need)?;
            return take_batches(segment, chunk, start, max_bytes);
        }
        let chunk = chunk.slice(pos..);
        return take_batches(segment, chunk, from + pos as u64, max_bytes);
    }
}

/// The whole batches at the front of `chunk` (which starts with one) up to `max_bytes`, at
/// least one, each CRC-checked unless it lies below the segment's verified watermark (which
/// the checked ones then extend). `start` is the chunk's file position.
fn take_batches(segment: &Segment, chunk: Bytes, start: u64, max_bytes: usize) -> Result<Bytes> {
    let verified = segment.verified();
    let mut end = 0usize;
    while end + HEADER_LEN <= chunk.len() {
        let at = start + end as u64;
        let h = BatchHeader::parse(&chunk[end..]).map_err(|e| segment.corrupt(at, e))?;
        let total = h.total_len();
        if end + total > chunk.len() || (end > 0 && end + total > max_bytes) {
            break;
        }
        if at + total as u64 > verified {
            batch::verify_crc(&chunk[end..end + total]).map_err(|e| segment.corrupt(at, e))?;
        }
        end += total;
    }
    segment.note_verified(start, start + end as u64);
    Ok(chunk.slice(..end))
}
