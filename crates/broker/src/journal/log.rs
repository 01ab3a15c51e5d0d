//! The writer and loader of a journal (see the module above for its files).
//!
//! Only the last segment can end in a torn write (a crash mid-append): a frame there that
//! is cut short, fails its CRC as the last thing in the file, or is all zeros (space the
//! file system allocated but never wrote) is truncated with a warning. Anything else that
//! fails its checks is the journal's corruption error ([`Journaled::corrupt`]), naming the
//! file and byte position.
//!
//! An append writes one frame and fsyncs it (cost of the append's size). When the files have
//! grown to `max(compaction_min_bytes, compaction_ratio x live state)`, the writer rolls to a
//! new segment and a background task writes the live state as of the roll into a new snapshot
//! (`compaction`), while appends go on into the new segment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::journal::Journaled;
use crate::journal::compaction::Compaction;
use crate::journal::frame::{Frame, encode_frame, read_frame};
use crate::{BrokerError, metadata};

const LOG_SUFFIX: &str = ".log";
const SNAPSHOT_SUFFIX: &str = ".snapshot";
const TMP_SUFFIX: &str = ".tmp";

/// The name of segment `seq` of journal `name`.
pub(crate) fn segment_name(name: &str, seq: u64) -> String {
    format!("{name}-{seq:020}{LOG_SUFFIX}")
}

/// The name of the snapshot of journal `name`'s state through segment `seq`.
pub(crate) fn snapshot_name(name: &str, seq: u64) -> String {
    format!("{name}-{seq:020}{SNAPSHOT_SUFFIX}")
}

/// The file of a journal a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFile {
    Segment(u64),
    Snapshot(u64),
    /// Unfinished: a crash came before its rename.
    Temporary,
}

impl LogFile {
    /// Which file of journal `journal` the file `name` is, if any.
    pub(crate) fn parse(journal: &str, name: &str) -> Option<LogFile> {
        let rest = name.strip_prefix(journal)?.strip_prefix('-')?;
        if rest.ends_with(TMP_SUFFIX) {
            return Some(LogFile::Temporary);
        }
        let seq = |digits: &str| {
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        };
        if let Some(digits) = rest.strip_suffix(LOG_SUFFIX) {
            return seq(digits).map(LogFile::Segment);
        }
        rest.strip_suffix(SNAPSHOT_SUFFIX)
            .and_then(seq)
            .map(LogFile::Snapshot)
    }
}

/// Every file of journal `journal` in `dir`, with its path.
pub(crate) fn list(journal: &str, dir: &Path) -> Result<Vec<(LogFile, PathBuf)>, BrokerError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| BrokerError::io("list", dir, e))? {
        let path = entry.map_err(|e| BrokerError::io("list", dir, e))?.path();
        let kind = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|name| LogFile::parse(journal, name));
        if let Some(kind) = kind {
            files.push((kind, path));
        }
    }
    Ok(files)
}

/// When the log is compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompactionPolicy {
    /// The files are compacted once they hold at least this many bytes...
    pub(crate) min_bytes: u64,
    /// ...and at least this many times the bytes of the live state.
    pub(crate) ratio: u64,
}

/// A journal of state `S`. Blocking: use it from blocking threads.
#[derive(Debug)]
pub(crate) struct JournalLog<S> {
    dir: PathBuf,
    policy: CompactionPolicy,
    active: File,
    active_path: PathBuf,
    active_seq: u64,
    /// Bytes of the active segment that hold whole, durable frames.
    active_len: u64,
    /// The state the files hold.
    state: S,
    /// Bytes of every file a load replays (the snapshot and the segments).
    file_bytes: u64,
    /// While a compaction runs: `file_bytes` through the segment it compacts.
    compacting: Option<u64>,
    /// After a failed compaction, the next waits until the files hold this many bytes.
    retry_at: u64,
    /// Set once an fsync failed: what is on disk is unknown, nothing more is appended.
    failed: Option<String>,
}

impl<S: Journaled> JournalLog<S> {
    /// Opens the journal in `dir` (creating both if missing), replays it and removes what a
    /// crash left behind. Returns the log and the state it holds.
    pub(crate) fn open(dir: &Path, policy: CompactionPolicy) -> Result<(Self, S), BrokerError> {
        metadata::create_dir(dir)?;
        let files = list(S::NAME, dir)?;
        let base = files
            .iter()
            .filter_map(|(kind, _)| match kind {
                LogFile::Snapshot(seq) => Some(*seq),
                _ => None,
            })
            .max();
        let mut segments = Vec::new();
        let mut snapshot = None;
        let mut stale = Vec::new();
        for (kind, path) in files {
            match kind {
                LogFile::Temporary => stale.push(path),
                LogFile::Snapshot(seq) if Some(seq) == base => snapshot = Some(path),
                LogFile::Segment(seq) if base.is_none_or(|base| seq > base) => {
                    segments.push((seq, path));
                }
                // Older than the snapshot: a crash came before the compaction removed it.
                LogFile::Snapshot(_) | LogFile::Segment(_) => stale.push(path),
            }
        }
        for path in &stale {
            tracing::info!(path = %path.display(), journal = S::NAME, "removing a leftover journal file");
            metadata::remove_path(path)?;
        }
        segments.sort_unstable();

        let mut state = S::default();
        let mut file_bytes = 0;
        if let Some(path) = &snapshot {
            file_bytes += replay(path, &mut state, false)?;
        }
        let last = segments.len().checked_sub(1);
        let mut active_len = 0;
        for (i, (_, path)) in segments.iter().enumerate() {
            active_len = replay(path, &mut state, Some(i) == last)?;
            file_bytes += active_len;
        }
        let (active_seq, active_path, active) = match segments.pop() {
            Some((seq, path)) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| BrokerError::io("open", &path, e))?;
                (seq, path, file)
            }
            None => {
                let seq = base.map_or(0, |base| base + 1);
                let (path, file) = create_segment::<S>(dir, seq)?;
                active_len = S::FILE_HEADER.len() as u64;
                file_bytes += active_len;
                (seq, path, file)
            }
        };
        if !stale.is_empty() {
            metadata::sync_dir(dir)?;
        }
        let log = JournalLog {
            dir: dir.to_owned(),
            policy,
            active,
            active_path,
            active_seq,
            active_len,
            state: state.clone(),
            file_bytes,
            compacting: None,
            retry_at: 0,
            failed: None,
        };
        Ok((log, state))
    }

    /// The directory of the journal.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state the files hold: every record appended so far is durable and applied.
    pub(crate) fn state(&self) -> &S {
        &self.state
    }

    /// Appends `records` as one frame and fsyncs it; they are durable when this returns
    /// `Ok`. A failed write is cut off again, so the next append follows the last good frame;
    /// after a failed fsync every append fails until the broker restarts.
    pub(crate) fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a S::Record> + Clone,
    ) -> Result<(), BrokerError> {
        if let Some(reason) = &self.failed {
            return Err(self.io_error("append to", io::Error::other(reason.clone())));
        }
        let mut frame = Vec::new();
        encode_frame(&mut frame, |out| {
            records
                .clone()
                .into_iter()
                .try_for_each(|record| S::encode(record, out))
        })
        .map_err(|reason| S::corrupt(&self.active_path, format!("cannot encode: {reason}")))?;
        if let Err(e) = self.active.write_all_at(&frame, self.active_len) {
            if let Err(cut) = self.active.set_len(self.active_len) {
                self.failed = Some(format!(
                    "cutting off a failed write failed ({cut}); restart the broker"
                ));
            }
            return Err(self.io_error("write", e));
        }
        if let Err(e) = self.active.sync_data() {
            self.failed = Some(format!("an fsync failed ({e}); restart the broker"));
            return Err(self.io_error("fsync", e));
        }
        self.active_len += frame.len() as u64;
        self.file_bytes += frame.len() as u64;
        for record in records {
            self.state.apply(record);
        }
        Ok(())
    }

    /// When the files have grown past the compaction threshold and no compaction runs:
    /// rolls to a new segment and returns the compaction of everything before it, to run
    /// in the background and report to [`JournalLog::compaction_finished`].
    pub(crate) fn start_compaction(&mut self) -> Option<Compaction<S>> {
        let live = self.state.compacted_len();
        let threshold = self
            .policy
            .min_bytes
            .max(live.saturating_mul(self.policy.ratio))
            .max(self.retry_at);
        if self.compacting.is_some() || self.failed.is_some() || self.file_bytes < threshold {
            return None;
        }
        let through = self.file_bytes;
        let seq = self.active_seq + 1;
        let (path, file) = match create_segment::<S>(&self.dir, seq) {
            Ok(created) => created,
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    journal = S::NAME,
                    "rolling a journal failed; compaction postponed"
                );
                self.retry_at = self.file_bytes + self.policy.min_bytes;
                return None;
            }
        };
        tracing::info!(
            bytes = through,
            live,
            journal = S::NAME,
            "compacting a journal"
        );
        self.active = file;
        self.active_path = path;
        self.active_seq = seq;
        self.active_len = S::FILE_HEADER.len() as u64;
        self.file_bytes += self.active_len;
        self.compacting = Some(through);
        Some(Compaction::new(
            self.dir.clone(),
            seq - 1,
            self.state.clone(),
        ))
    }

    /// Takes note of how a compaction went: with the bytes of the snapshot it wrote, or why
    /// it failed (then the next one waits for another `min_bytes` of appends).
    pub(crate) fn compaction_finished(&mut self, result: Result<u64, BrokerError>) {
        let through = self.compacting.take().unwrap_or_default();
        match result {
            Ok(snapshot) => {
                self.file_bytes = self.file_bytes.saturating_sub(through) + snapshot;
                tracing::info!(
                    before = through,
                    after = snapshot,
                    journal = S::NAME,
                    "compacted a journal"
                );
            }
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    journal = S::NAME,
                    "compacting a journal failed"
                );
                self.retry_at = self.file_bytes + self.policy.min_bytes;
            }
        }
    }

    fn io_error(&self, op: &'static str, e: io::Error) -> BrokerError {
        BrokerError::io(op, &self.active_path, e)
    }
}

/// Creates segment `seq` in `dir` holding just the file header, durably: written to a
/// temporary file, fsynced, renamed into place, then the directory is fsynced.
fn create_segment<S: Journaled>(dir: &Path, seq: u64) -> Result<(PathBuf, File), BrokerError> {
    let path = dir.join(segment_name(S::NAME, seq));
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", segment_name(S::NAME, seq)));
    let mut file = File::create(&tmp).map_err(|e| BrokerError::io("create", &tmp, e))?;
    file.write_all(&S::FILE_HEADER)
        .map_err(|e| BrokerError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| BrokerError::io("fsync", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| BrokerError::io("rename", &tmp, e))?;
    metadata::sync_dir(dir)?;
    Ok((path, file))
}

/// Replays the file at `path` into `state`, returning the bytes of whole frames (header
/// included). With `tail`, a torn last write is truncated away with a warning.
fn replay<S: Journaled>(path: &Path, state: &mut S, tail: bool) -> Result<u64, BrokerError> {
    let bytes = fs::read(path).map_err(|e| BrokerError::io("read", path, e))?;
    let corrupt = |pos: usize, what: String| S::corrupt(path, format!("at byte {pos}: {what}"));
    let header = S::FILE_HEADER;
    if bytes.get(..header.len()) != Some(&header[..]) {
        return Err(corrupt(
            0,
            format!("the file does not start with the header {header:02x?}"),
        ));
    }
    let mut pos = header.len();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let frame = read_frame(rest);
        if let Frame::Intact { body, len } = frame {
            let records = S::decode(body).map_err(|reason| corrupt(pos, reason))?;
            for record in &records {
                state.apply(record);
            }
            pos += len;
            continue;
        }
        let torn = match frame {
            _ if rest.iter().all(|&b| b == 0) => Some("zeros"),
            Frame::Incomplete => Some("a frame cut short"),
            Frame::BadCrc {
                ends_at_eof: true, ..
            } => Some("a frame failing its CRC"),
            _ => None,
        };
        let Some(torn) = torn.filter(|_| tail) else {
            let what = match frame {
                Frame::BadCrc {
                    stored, computed, ..
                } => format!("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"),
                Frame::EmptyLength => "a frame of length 0".to_owned(),
                _ => "the file ends inside a frame".to_owned(),
            };
            return Err(corrupt(
                pos,
                format!(
                    "{what}, {} bytes before the end of the file; the records before it are intact (truncate the file there to keep them)",
                    rest.len()
                ),
            ));
        };
        tracing::warn!(path = %path.display(), position = pos, bytes = rest.len(), found = torn, "truncating a torn write at the end of a journal");
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| BrokerError::io("open", path, e))?;
        file.set_len(pos as u64)
            .and_then(|()| file.sync_all())
            .map_err(|e| BrokerError::io("truncate", path, e))?;
        break;
    }
    Ok(pos as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::groups::offsets_state::{LiveState, OffsetChange, Offsets};
    use crate::groups::{Committed, TopicPartition};

    /// The offsets journal stands in for every kind.
    type OffsetsLog = JournalLog<LiveState>;

    fn segment_name(seq: u64) -> String {
        super::segment_name(LiveState::NAME, seq)
    }

    fn snapshot_name(seq: u64) -> String {
        super::snapshot_name(LiveState::NAME, seq)
    }

    const POLICY: CompactionPolicy = CompactionPolicy {
        min_bytes: 4096,
        ratio: 2,
    };

    fn commit(partition: u32, offset: u64) -> OffsetChange {
        let committed = Committed {
            offset,
            commit_ms: 7,
        };
        OffsetChange::Set(vec![(TopicPartition::new("orders", partition), committed)])
    }

    fn open(dir: &Path) -> (OffsetsLog, BTreeMap<String, Offsets>) {
        let (log, state) = OffsetsLog::open(dir, POLICY).expect("open the offsets log");
        (log, state.into())
    }

    fn append(log: &mut OffsetsLog, group: &str, change: &OffsetChange) {
        log.append(&[(group.to_owned(), change.clone())])
            .expect("append");
    }

    /// Offsets of `orders` in a group, by partition.
    fn orders(state: &BTreeMap<String, Offsets>, group: &str) -> Vec<(u32, u64)> {
        state
            .get(group)
            .map(|o| {
                o.iter()
                    .filter(|(tp, _)| tp.topic == "orders")
                    .map(|(tp, c)| (tp.partition, c.offset))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replay_keeps_the_last_commit_and_applies_deletions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut log, state) = open(dir.path());
        assert!(state.is_empty());
        append(&mut log, "a", &commit(0, 1));
        append(&mut log, "a", &commit(1, 2));
        append(&mut log, "b", &commit(0, 3));
        log.append(&[
            ("a".to_owned(), commit(0, 9)),
            ("b".to_owned(), OffsetChange::Clear),
        ])
        .expect("append two records");
        append(&mut log, "c", &commit(4, 4));
        append(&mut log, "c", &OffsetChange::RemoveTopic("orders".into()));
        drop(log);
        let (_, state) = open(dir.path());
        assert_eq!(state.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(orders(&state, "a"), [(0, 9), (1, 2)]);
        assert_eq!(names(dir.path()), [segment_name(0)]);
    }

    #[test]
    fn a_torn_last_write_is_truncated_wherever_it_was_cut() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut log, _) = open(dir.path());
        append(&mut log, "a", &commit(0, 1));
        let good = log.active_len;
        append(&mut log, "a", &commit(0, 2));
        let full = log.active_len;
        drop(log);
        let path = dir.path().join(segment_name(0));
        let bytes = fs::read(&path).expect("read");
        let mut torn: Vec<Vec<u8>> = (good..full)
            .map(|len| bytes[..len as usize].to_vec())
            .collect();
        // The file grew but the data never landed: zeros.
        let mut zeros = bytes[..good as usize].to_vec();
        zeros.resize(full as usize, 0);
        torn.push(zeros);
        // The last frame landed in part: it fails its CRC.
        let mut garbled = bytes.clone();
        garbled[full as usize - 3] ^= 0x40;
        torn.push(garbled);
        for (i, contents) in torn.iter().enumerate() {
            fs::write(&path, contents).expect("tear the file");
            let (mut log, state) = open(dir.path());
            assert_eq!(orders(&state, "a"), [(0, 1)], "case {i}");
            assert_eq!(fs::metadata(&path).expect("stat").len(), good, "case {i}");
            // Appends go on right after the last whole frame.
            append(&mut log, "a", &commit(1, 5));
            drop(log);
            let (_, state) = open(dir.path());
            assert_eq!(orders(&state, "a"), [(0, 1), (1, 5)], "case {i}");
        }
    }

    #[test]
    fn corruption_before_the_end_is_an_error_naming_file_and_position() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut log, _) = open(dir.path());
        append(&mut log, "a", &commit(0, 1));
        let second = log.active_len;
        append(&mut log, "a", &commit(0, 2));
        append(&mut log, "a", &commit(0, 3));
        drop(log);
        let path = dir.path().join(segment_name(0));
        let bytes = fs::read(&path).expect("read");
        let expect_corrupt = |contents: &[u8], position: u64| {
            fs::write(&path, contents).expect("corrupt the file");
            match OffsetsLog::open(dir.path(), POLICY) {
                Err(BrokerError::OffsetsCorrupt { path: at, reason }) => {
                    assert_eq!(at, path);
                    assert!(reason.contains(&format!("at byte {position}:")), "{reason}");
                }
                other => panic!("opened a corrupt log: {other:?}"),
            }
        };
        let mut flipped = bytes.clone();
        flipped[second as usize + 12] ^= 0x01;
        expect_corrupt(&flipped, second);
        let mut zero_length = bytes.clone();
        zero_length[second as usize..second as usize + 4].fill(0);
        expect_corrupt(&zero_length, second);
        expect_corrupt(b"SLOX\x00\x01", 0);
    }

    /// A log in `dir` whose files are past the compaction threshold, rolled for compaction,
    /// with one more commit appended after the roll; and the offsets it holds.
    fn rolled(dir: &Path) -> (OffsetsLog, Compaction<LiveState>, Vec<(u32, u64)>) {
        let (mut log, _) = open(dir);
        let mut offset = 0;
        let compaction = loop {
            offset += 1;
            append(&mut log, "a", &commit((offset % 3) as u32, offset));
            if let Some(compaction) = log.start_compaction() {
                break compaction;
            }
        };
        assert!(log.file_bytes >= POLICY.min_bytes);
        append(&mut log, "a", &commit(7, 70));
        let mut expected: Vec<(u32, u64)> =
            (offset - 2..=offset).map(|o| ((o % 3) as u32, o)).collect();
        expected.sort_unstable();
        expected.push((7, 70));
        (log, compaction, expected)
    }

    #[test]
    fn a_crash_after_any_compaction_step_loses_nothing() {
        type Step = fn(&Compaction<LiveState>) -> Result<(), BrokerError>;
        let steps: [Step; 5] = [
            Compaction::write_tmp,
            Compaction::sync_tmp,
            Compaction::publish,
            Compaction::sync_dir,
            Compaction::remove_replaced,
        ];
        for done in 0..=steps.len() {
            let dir = tempfile::tempdir().expect("temp dir");
            let (log, compaction, expected) = rolled(dir.path());
            for step in &steps[..done] {
                step(&compaction).expect("compaction step");
            }
            // The broker dies here.
            drop((log, compaction));
            let (mut log, state) = open(dir.path());
            assert_eq!(orders(&state, "a"), expected, "after {done} steps");
            let files = names(dir.path());
            let snapshot = files.iter().any(|name| name.ends_with(".snapshot"));
            assert_eq!(snapshot, done >= 3, "after {done} steps: {files:?}");
            assert!(
                !files.iter().any(|name| name.ends_with(".tmp")),
                "{files:?}"
            );
            if snapshot {
                assert_eq!(files, [snapshot_name(0), segment_name(1)]);
            }
            // And the log goes on.
            append(&mut log, "a", &commit(8, 80));
            drop(log);
            let (_, state) = open(dir.path());
            assert_eq!(orders(&state, "a").last(), Some(&(8, 80)));
        }
        // A crash halfway through writing the snapshot leaves a torn temporary file.
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, compaction, expected) = rolled(dir.path());
        compaction.write_tmp().expect("write");
        let tmp = dir.path().join(format!("{}.tmp", snapshot_name(0)));
        let len = fs::metadata(&tmp).expect("stat").len();
        fs::OpenOptions::new()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_len(len / 2))
            .expect("tear the snapshot");
        drop((log, compaction));
        let (_, state) = open(dir.path());
        assert_eq!(orders(&state, "a"), expected);
    }

    #[test]
    fn a_finished_compaction_shrinks_the_files_and_the_next_waits_for_growth() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut log, compaction, expected) = rolled(dir.path());
        let before = log.file_bytes;
        let result = compaction.run();
        log.compaction_finished(result);
        assert!(
            log.file_bytes < before / 4,
            "{} of {before}",
            log.file_bytes
        );
        assert!(log.start_compaction().is_none());
        drop(log);
        let (_, state) = open(dir.path());
        assert_eq!(orders(&state, "a"), expected);
        assert_eq!(names(dir.path()), [snapshot_name(0), segment_name(1)]);
    }

    #[test]
    fn a_failed_compaction_keeps_every_file_and_is_retried_after_more_appends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut log, compaction, expected) = rolled(dir.path());
        // Something occupies the snapshot's name: the rename fails.
        let blocker = dir.path().join(snapshot_name(0));
        fs::create_dir(&blocker).expect("mkdir");
        fs::write(blocker.join("x"), b"x").expect("write");
        let result = compaction.run();
        assert!(
            matches!(result, Err(BrokerError::Io { op: "rename", .. })),
            "{result:?}"
        );
        log.compaction_finished(result);
        assert_eq!(
            names(dir.path()),
            [segment_name(0), snapshot_name(0), segment_name(1)],
            "the temporary file is gone, the segments stay"
        );
        fs::remove_dir_all(&blocker).expect("unblock");
        let failed_at = log.file_bytes;
        let mut next = None;
        let mut offset = 100;
        while next.is_none() {
            offset += 1;
            append(&mut log, "a", &commit(7, offset));
            next = log.start_compaction();
        }
        assert!(log.file_bytes >= failed_at + POLICY.min_bytes);
        let result = next.expect("retried").run();
        log.compaction_finished(result);
        drop(log);
        let (_, state) = open(dir.path());
        let mut expected = expected;
        expected.pop();
        expected.push((7, offset));
        assert_eq!(orders(&state, "a"), expected);
        assert_eq!(names(dir.path()), [snapshot_name(1), segment_name(2)]);
    }

    #[test]
    fn file_names_parse_strictly() {
        assert_eq!(
            LogFile::parse("offsets", &segment_name(42)),
            Some(LogFile::Segment(42))
        );
        assert_eq!(
            LogFile::parse("offsets", &snapshot_name(7)),
            Some(LogFile::Snapshot(7))
        );
        assert_eq!(
            LogFile::parse("offsets", &format!("{}.tmp", segment_name(1))),
            Some(LogFile::Temporary)
        );
        for other in [
            "offsets-1.log",
            "g.offsets",
            "offsets-0000000000000000000x.log",
            "share-00000000000000000000.log",
        ] {
            assert_eq!(LogFile::parse("offsets", other), None, "{other}");
        }
    }
}
