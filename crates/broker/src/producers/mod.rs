//! Idempotent producers: the ids the broker hands out, and what each partition knows of
//! every producer writing to it, kept across restarts (docs/idempotence.md).
//!
//! A partition's state is judged and changed on its writer, inside the log's writer lock
//! (through the log's append filter), so pipelined requests are judged in the order they are
//! written. It is persisted as a snapshot (`producer-state` in the partition directory),
//! written after the log rolled (whether or not the state changed: the snapshot's offset is
//! where the next recovery's scan starts) and when it closes; opening the log rebuilds the
//! state from the snapshot plus the batch headers after it (or from the log start without
//! one).

mod ids;
mod snapshot;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sluice_storage::Log;
use sluice_storage::io::FileIo;

use crate::BrokerError;
use crate::broker::wall_clock_ms;
pub(crate) use ids::ProducerIds;
use snapshot::{SNAPSHOT_FILE, Snapshot};
pub(crate) use state::Verdict;
use state::{Bounds, ProducerState, Refusal};

/// Default of [`ProducerConfig::id_expiration`]: one day, Kafka's `producer.id.expiration.ms`.
const DEFAULT_ID_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);
/// Default of [`ProducerConfig::max_per_partition`].
const DEFAULT_MAX_PER_PARTITION: usize = 1000;

/// How partitions remember idempotent producers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// How long a partition remembers a producer it has not had a batch from (Kafka's
    /// `producer.id.expiration.ms`; default 1 day, at least 1 ms). A forgotten producer's next
    /// batch is accepted at any sequence, and no retry of its earlier batches is recognised.
    pub id_expiration: Duration,
    /// Most producers one partition remembers (default 1000, at least 1); past it, a new
    /// producer takes the place of the one least recently heard from. Each costs about
    /// 250 bytes of memory and 160 bytes of snapshot.
    pub max_per_partition: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            id_expiration: DEFAULT_ID_EXPIRATION,
            max_per_partition: DEFAULT_MAX_PER_PARTITION,
        }
    }
}

impl ProducerConfig {
    /// Checks the settings' ranges; the error names the setting.
    pub fn validate(&self) -> Result<(), BrokerError> {
        if self.id_expiration < Duration::from_millis(1) {
            return Err(BrokerError::invalid_config(
                "producers.id_expiration",
                &format!("{} ms", self.id_expiration.as_millis()),
                "must be at least 1 ms (Kafka's producer.id.expiration.ms)",
            ));
        }
        if self.max_per_partition == 0 {
            return Err(BrokerError::invalid_config(
                "producers.max_per_partition",
                "0",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn bounds(&self) -> Bounds {
        Bounds {
            expiration_ms: i64::try_from(self.id_expiration.as_millis()).unwrap_or(i64::MAX),
            max_producers: self.max_per_partition,
        }
    }
}

/// An idempotent producer's identity, as `InitProducerId` hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerIdentity {
    /// The producer id: never handed out before by this data directory.
    pub producer_id: i64,
    /// The epoch its batches start with (0).
    pub epoch: i16,
}

/// One partition's producers, and where their snapshot stands.
#[derive(Debug)]
pub(crate) struct Producers {
    state: Mutex<ProducerState>,
    /// The state reflects every batch below this offset (and maybe some above it): set by
    /// the writer after each write, once the state holds it.
    through: AtomicU64,
    /// What the snapshot on disk holds. Held across writing a snapshot, so two are never
    /// written at once; the state mutex may be taken while it is held, and nothing else.
    snapshotted: Mutex<Snapshotted>,
    path: PathBuf,
    io: Arc<dyn FileIo>,
}

/// The last snapshot written or read.
#[derive(Debug, Clone, Copy)]
struct Snapshotted {
    /// The state version it holds.
    version: u64,
    /// The active segment when it was taken (or when the log opened).
    segment: u64,
    /// Its offset; `None` when there is no usable snapshot.
    through: Option<u64>,
}

impl Producers {
    /// No producers, for a partition whose log did not open.
    pub(crate) fn empty(dir: &Path, config: &ProducerConfig, io: Arc<dyn FileIo>) -> Producers {
        let state = ProducerState::new(config.bounds());
        let snapshotted = Snapshotted {
            version: state.version(),
            segment: 0,
            through: None,
        };
        Producers::new(dir, state, 0, snapshotted, io)
    }

    fn new(
        dir: &Path,
        state: ProducerState,
        through: u64,
        snapshotted: Snapshotted,
        io: Arc<dyn FileIo>,
    ) -> Producers {
        Producers {
            snapshotted: Mutex::new(snapshotted),
            state: Mutex::new(state),
            through: AtomicU64::new(through),
            path: dir.join(SNAPSHOT_FILE),
            io,
        }
    }

    /// Rebuilds the producers of the freshly opened `log` in `dir`: from its snapshot, less
    /// what the log no longer holds, then from the headers of the batches after it (or from
    /// the log start when there is no usable snapshot). Blocking.
    ///
    /// A damaged snapshot is reported and ignored; a scan that stops at a damaged batch is
    /// reported and leaves the producers after it unknown (their next batches are accepted at
    /// any sequence).
    pub(crate) fn recover(
        dir: &Path,
        log: &Log,
        config: &ProducerConfig,
        io: Arc<dyn FileIo>,
    ) -> Producers {
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let now = wall_clock_ms();
        let bounds = config.bounds();
        let path = dir.join(SNAPSHOT_FILE);
        let (mut state, on_disk) = match snapshot::read(&path) {
            Ok(Some(Snapshot { through, entries })) => (
                ProducerState::from_entries(bounds, entries, now),
                Some(through),
            ),
            Ok(None) => (ProducerState::new(bounds), None),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason,
                    "ignoring a damaged producer-state snapshot; rebuilding it from the log");
                (ProducerState::new(bounds), None)
            }
        };
        if on_disk.is_none() && start < end {
            tracing::info!(dir = %dir.display(), start, end,
                "no producer-state snapshot: reading every batch header of the log");
        }
        // Recovery may have cut the log below what the snapshot saw.
        state.forget_from(end);
        let from = on_disk.unwrap_or(start).clamp(start, end);
        let mut scanned = 0u64;
        let scan = log.scan_headers(from, |header| {
            if header.producer_id >= 0 {
                state.restore(header, now);
                scanned += 1;
            }
        });
        if let Err(e) = scan {
            tracing::warn!(dir = %dir.display(), error = %e,
                "producer state rebuilt only up to a damaged batch; producers after it are unknown");
        }
        tracing::debug!(dir = %dir.display(), from, end, scanned, producers = state.len(),
            "recovered producer state");
        let snapshotted = Snapshotted {
            version: state.version(),
            segment: log.active_segment_base(),
            through: on_disk,
        };
        Producers::new(dir, state, end, snapshotted, io)
    }

    /// Judges an append of validated batches at `now_ms` (see [`ProducerState::judge`]).
    pub(crate) fn judge(&self, batches: &[u8], now_ms: i64) -> Verdict {
        self.state.lock().judge(batches, now_ms)
    }

    /// Records the idempotent batches of a written append.
    pub(crate) fn record(&self, batches: &[u8], now_ms: i64) {
        self.state.lock().record_append(batches, now_ms);
    }

    /// Tells that the state reflects every batch below `end`: the writer calls it after
    /// each write.
    pub(crate) fn written_through(&self, end: u64) {
        self.through.store(end, Ordering::Release);
    }

    /// The largest producer id the partition remembers.
    pub(crate) fn max_producer_id(&self) -> Option<i64> {
        self.state.lock().max_producer_id()
    }

    /// Forgets producers idle past `producer.id.expiration.ms`.
    pub(crate) fn expire(&self, now_ms: i64) {
        self.state.lock().expire(now_ms);
    }

    /// Writes a snapshot if `log` rolled since the last one, so a recovery scans at most
    /// about a segment of headers, whether or not any of them is an idempotent producer's.
    /// Blocking.
    pub(crate) fn checkpoint(&self, log: &Log) -> Result<(), BrokerError> {
        // Read first: the state then holds at least everything below it.
        let through = self.through.load(Ordering::Acquire);
        let segment = log.active_segment_base();
        let mut last = self.snapshotted.lock();
        if segment == last.segment {
            return Ok(());
        }
        self.write(&mut last, through, segment)
    }

    /// Writes a snapshot of a cleanly closed log, unless the one on disk already holds the
    /// same state at the same offset, so the next open scans nothing. Blocking.
    pub(crate) fn closed(&self, log: &Log) -> Result<(), BrokerError> {
        // Closing took the writer lock after the last write, so the state holds it all.
        let through = log.log_end_offset();
        let segment = log.active_segment_base();
        let mut last = self.snapshotted.lock();
        if last.through == Some(through) && self.state.lock().version() == last.version {
            return Ok(());
        }
        self.write(&mut last, through, segment)
    }

    fn write(&self, last: &mut Snapshotted, through: u64, segment: u64) -> Result<(), BrokerError> {
        let (version, entries) = {
            let st = self.state.lock();
            (st.version(), st.entries(wall_clock_ms()))
        };
        let bytes = snapshot::encode(&Snapshot { through, entries });
        self.io
            .write_file_atomic(&self.path, &bytes)
            .map_err(|e| BrokerError::io("write producer state", &self.path, e))?;
        *last = Snapshotted {
            version,
            segment,
            through: Some(through),
        };
        Ok(())
    }
}

impl Refusal {
    /// The broker error of a refused batch of `topic`'s `partition`.
    pub(crate) fn into_error(self, topic: &str, partition: u32) -> BrokerError {
        let topic = topic.to_owned();
        match self {
            Refusal::Fenced {
                producer_id,
                epoch,
                current_epoch,
            } => BrokerError::ProducerFenced {
                topic,
                partition,
                producer_id,
                epoch,
                current_epoch,
            },
            Refusal::OutOfOrder {
                producer_id,
                epoch,
                sequence,
                expected,
            } => BrokerError::OutOfOrderSequence {
                topic,
                partition,
                producer_id,
                epoch,
                sequence,
                expected,
            },
            Refusal::Mixed {
                producer_id,
                duplicate,
                new,
            } => BrokerError::InvalidBatch {
                field: "base_sequence",
                reason: format!(
                    "of batch {duplicate} repeats a batch of producer {producer_id} stored \
                     before, while batch {new} is new: send the new batches in a request of \
                     their own"
                ),
            },
        }
    }
}
