//! Compaction of a journal: the live state as of the end of a segment becomes a snapshot
//! replacing that segment and everything before it.
//!
//! Steps, each leaving a directory that loads to the same state if the broker dies after it:
//! 1. write the snapshot to `<name>-<N>.snapshot.tmp` (a leftover temporary file is removed
//!    at load),
//! 2. fsync it,
//! 3. rename it to `<name>-<N>.snapshot` (from now on a load starts from it and removes the
//!    files it replaces),
//! 4. fsync the directory,
//! 5. remove the replaced segments and snapshot, and fsync the directory.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use crate::journal::Journaled;
use crate::journal::frame::encode_frame;
use crate::journal::log::{LogFile, list, snapshot_name};
use crate::{BrokerError, metadata};

/// A compaction to run: the state through segment `seq`.
#[derive(Debug)]
pub(crate) struct Compaction<S> {
    dir: PathBuf,
    seq: u64,
    state: S,
}

impl<S: Journaled> Compaction<S> {
    /// The compaction of `dir`'s files through segment `seq`, which hold `state`.
    pub(crate) fn new(dir: PathBuf, seq: u64, state: S) -> Compaction<S> {
        Compaction { dir, seq, state }
    }

    /// Runs every step; returns the bytes of the snapshot. A failed step leaves the files
    /// as they were (the temporary file is removed). Blocking.
    pub(crate) fn run(self) -> Result<u64, BrokerError> {
        let tmp = self.tmp_path();
        let published = self
            .write_tmp()
            .and_then(|()| self.sync_tmp())
            .and_then(|()| self.publish());
        if let Err(e) = published {
            if let Err(cleanup) = fs::remove_file(&tmp)
                && cleanup.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %tmp.display(), error = %cleanup, "cannot remove an unfinished journal snapshot");
            }
            return Err(e);
        }
        self.sync_dir()?;
        if let Err(e) = self.remove_replaced() {
            // The snapshot is in place; the next load or compaction removes the rest.
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                journal = S::NAME,
                "cannot remove journal files a snapshot replaced"
            );
        }
        Ok(self.state.compacted_len())
    }

    fn tmp_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}.tmp", snapshot_name(S::NAME, self.seq)))
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join(snapshot_name(S::NAME, self.seq))
    }

    /// Step 1: writes the snapshot, frame by frame as the state gives them, to the
    /// temporary file.
    pub(crate) fn write_tmp(&self) -> Result<(), BrokerError> {
        let tmp = self.tmp_path();
        let write_err = |e| BrokerError::io("write", &tmp, e);
        let file = File::create(&tmp).map_err(|e| BrokerError::io("create", &tmp, e))?;
        let mut out = BufWriter::new(file);
        out.write_all(&S::FILE_HEADER).map_err(write_err)?;
        let mut frame = Vec::new();
        self.state.snapshot(&mut |records| {
            frame.clear();
            encode_frame(&mut frame, |body| {
                records
                    .iter()
                    .try_for_each(|record| S::encode(record, body))
            })
            .map_err(|reason| S::corrupt(&tmp, format!("cannot encode: {reason}")))?;
            out.write_all(&frame).map_err(write_err)
        })?;
        out.flush().map_err(write_err)
    }

    /// Step 2: fsyncs the temporary file.
    pub(crate) fn sync_tmp(&self) -> Result<(), BrokerError> {
        let tmp = self.tmp_path();
        File::open(&tmp)
            .and_then(|file| file.sync_all())
            .map_err(|e| BrokerError::io("fsync", &tmp, e))
    }

    /// Step 3: renames the temporary file into place.
    pub(crate) fn publish(&self) -> Result<(), BrokerError> {
        let tmp = self.tmp_path();
        fs::rename(&tmp, self.snapshot_path()).map_err(|e| BrokerError::io("rename", &tmp, e))
    }

    /// Step 4: makes the rename durable.
    pub(crate) fn sync_dir(&self) -> Result<(), BrokerError> {
        metadata::sync_dir(&self.dir)
    }

    /// Step 5: removes the segments through `seq` and older snapshots, then fsyncs the
    /// directory.
    pub(crate) fn remove_replaced(&self) -> Result<(), BrokerError> {
        for (kind, path) in list(S::NAME, &self.dir)? {
            let replaced = match kind {
                LogFile::Segment(seq) => seq <= self.seq,
                LogFile::Snapshot(seq) => seq < self.seq,
                LogFile::Temporary => false,
            };
            if replaced {
                metadata::remove_path(&path)?;
            }
        }
        metadata::sync_dir(&self.dir)
    }
}
