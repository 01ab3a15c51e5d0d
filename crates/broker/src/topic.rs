//! Topics, their partitions, and what describing them returns.

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use sluice_storage::batch::MAX_BATCH_LEN;
use sluice_storage::io::FileIo;
use sluice_storage::{AppendInfo, Log, LogConfig};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::append_queue::{AppendJob, AppendQueue};
use crate::metadata::{self, DataDir, TopicMeta};
use crate::producers::Producers;
use crate::{BrokerConfig, BrokerError, ConfigUpdate, TopicConfig};

/// A topic and its partition count, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    /// The topic name.
    pub name: String,
    /// How many partitions it has.
    pub partitions: u32,
}

/// A topic's partitions and effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// Every partition, by id.
    pub partitions: Vec<PartitionInfo>,
    /// The effective value of every config key.
    pub config: BTreeMap<String, String>,
    /// The keys the topic overrides, with the values it was given (the others follow the
    /// broker's defaults).
    pub overrides: BTreeMap<String, String>,
}

/// The state of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition id.
    pub id: u32,
    /// First offset still kept.
    pub log_start_offset: u64,
    /// First offset not yet visible to consumers.
    pub high_watermark: u64,
    /// The offset the next record will get.
    pub log_end_offset: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Segment files.
    pub segment_count: u32,
    /// Why the partition cannot serve, when it cannot: its log failed to open at start, it
    /// latched a write or fsync failure, or its append task panicked. `None` for a healthy
    /// partition.
    pub failure: Option<String>,
    /// Records and bytes appended and fetched since the broker opened.
    pub traffic: PartitionTraffic,
}

/// What went in and out of a partition since the broker opened (counters that only grow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionTraffic {
    /// Records appended.
    pub records_in: u64,
    /// Record batch bytes appended.
    pub bytes_in: u64,
    /// Records returned by fetches (those at or after each fetch's offset).
    pub records_out: u64,
    /// Record batch bytes returned by fetches.
    pub bytes_out: u64,
}

/// The live counters behind [`PartitionTraffic`]: one atomic add each per append or fetch.
#[derive(Debug, Default)]
struct TrafficCounters {
    records_in: AtomicU64,
    bytes_in: AtomicU64,
    records_out: AtomicU64,
    bytes_out: AtomicU64,
}

impl TrafficCounters {
    fn snapshot(&self) -> PartitionTraffic {
        PartitionTraffic {
            records_in: self.records_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// A partition that cannot serve, as listed by [`crate::Broker::partition_faults`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFault {
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// What went wrong: the open error, the write or fsync failure the log latched, or the
    /// panic of its append task.
    pub reason: String,
}

/// Where a produce request's records for one partition landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAppend {
    /// The partition.
    pub partition: u32,
    /// Offset of the first record appended to it.
    pub base_offset: u64,
    /// Records appended to it.
    pub record_count: u32,
}

/// One partition: its log, its queue of appends and the signal that wakes long-polling
/// fetches.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) id: u32,
    topic: String,
    /// The open log, or why it could not be opened at start (the partition then answers
    /// every request with [`BrokerError::PartitionUnavailable`] until a restart).
    log: Result<Log, String>,
    /// Marked changed after every append (and at deletion and shutdown); fetches waiting
    /// for data hold receivers.
    changed: watch::Sender<()>,
    /// Started on the first produce, inside the runtime.
    appends: OnceLock<AppendQueue>,
    /// Set once when the append task panicked: the partition then answers every request
    /// with [`BrokerError::PartitionUnavailable`] naming it, until a restart.
    fault: OnceLock<String>,
    /// The idempotent producers writing to it.
    producers: Producers,
    traffic: TrafficCounters,
}

impl Partition {
    fn new(topic: &str, id: u32, log: Result<Log, String>, producers: Producers) -> Partition {
        Partition {
            id,
            topic: topic.to_owned(),
            log,
            changed: watch::Sender::new(()),
            appends: OnceLock::new(),
            fault: OnceLock::new(),
            producers,
            traffic: TrafficCounters::default(),
        }
    }

    /// The name of the partition's topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The idempotent producers writing to the partition.
    pub(crate) fn producers(&self) -> &Producers {
        &self.producers
    }

    /// Counts the appends of `batches` that were written (`results` in the same order; the
    /// appends at `answered` were answered without being written).
    pub(crate) fn count_appended<B: AsRef<[u8]>, E>(
        &self,
        batches: &[B],
        results: &[Result<AppendInfo, E>],
        answered: &[usize],
    ) {
        let (mut records, mut bytes) = (0, 0);
        for (index, (batch, result)) in batches.iter().zip(results).enumerate() {
            if let Ok(info) = result
                && !answered.contains(&index)
            {
                records += info.record_count;
                bytes += batch.as_ref().len() as u64;
            }
        }
        self.traffic
            .records_in
            .fetch_add(records, Ordering::Relaxed);
        self.traffic.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts what one fetch returned.
    pub(crate) fn count_fetched(&self, records: u64, bytes: u64) {
        self.traffic
            .records_out
            .fetch_add(records, Ordering::Relaxed);
        self.traffic.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The partition's log, or [`BrokerError::PartitionUnavailable`] when it could not be
    /// opened or its append task failed.
    pub(crate) fn log(&self) -> Result<&Log, BrokerError> {
        let unavailable = |reason: &String| BrokerError::PartitionUnavailable {
            topic: self.topic.clone(),
            partition: self.id,
            reason: reason.clone(),
        };
        if let Some(fault) = self.fault.get() {
            return Err(unavailable(fault));
        }
        self.log.as_ref().map_err(unavailable)
    }

    /// Marks the partition faulted (see [`Partition::log`]) and wakes its waiting fetches so
    /// they notice. The first fault is kept.
    pub(crate) fn set_fault(&self, reason: String) {
        tracing::error!(
            topic = %self.topic,
            partition = self.id,
            %reason,
            "partition faulted; it is unavailable until a restart"
        );
        let _ = self.fault.set(reason);
        self.wake();
    }

    /// The log if it opened; background work skips partitions without one.
    pub(crate) fn opened(&self) -> Option<&Log> {
        self.log.as_ref().ok()
    }

    /// Why the partition cannot serve, if it cannot (see [`PartitionInfo::failure`]).
    pub(crate) fn failure(&self) -> Option<String> {
        if let Some(fault) = self.fault.get() {
            return Some(fault.clone());
        }
        match &self.log {
            Ok(log) => log.failure().map(str::to_owned),
            Err(reason) => Some(reason.clone()),
        }
    }

    /// Queues a record batch for appending, behind every batch queued before it; the reply
    /// comes once it is written (and, under `fsync`, durable). Only call it for a partition
    /// whose [`Partition::log`] opened.
    ///
    /// Gives the job back when it cannot be queued (the partition faulted, or there is no
    /// tokio runtime to start its writer on); dropping it then tells the producer the append
    /// failed.
    pub(crate) fn enqueue(self: &Arc<Self>, job: AppendJob) -> Result<(), AppendJob> {
        if self.fault.get().is_some() {
            return Err(job);
        }
        let queue = match self.appends.get() {
            Some(queue) => queue,
            None => match Handle::try_current() {
                Ok(runtime) => self.appends.get_or_init(|| AppendQueue::new(runtime)),
                Err(_) => return Err(job),
            },
        };
        queue.push(self, job)
    }

    /// The append queue, once the first append started it.
    pub(crate) fn append_queue(&self) -> Option<&AppendQueue> {
        self.appends.get()
    }

    /// A receiver that sees every [`Partition::wake`] from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Wakes every fetch waiting on this partition.
    pub(crate) fn wake(&self) {
        self.changed.send_replace(());
    }

    pub(crate) fn info(&self) -> PartitionInfo {
        let failure = self.failure();
        match &self.log {
            Ok(log) => PartitionInfo {
                id: self.id,
                log_start_offset: log.log_start_offset(),
                high_watermark: log.high_watermark(),
                log_end_offset: log.log_end_offset(),
                size_bytes: log.size_bytes(),
                segment_count: u32::try_from(log.segment_count()).unwrap_or(u32::MAX),
                failure,
                traffic: self.traffic.snapshot(),
            },
            Err(_) => PartitionInfo {
                id: self.id,
                log_start_offset: 0,
                high_watermark: 0,
                log_end_offset: 0,
                size_bytes: 0,
                segment_count: 0,
                failure,
                traffic: self.traffic.snapshot(),
            },
        }
    }
}

/// A topic's config as it stands: the overrides `topic.json` keeps and the effective config
/// they give over the broker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicSettings {
    pub(crate) overrides: BTreeMap<String, String>,
    pub(crate) config: TopicConfig,
}

impl TopicSettings {
    /// `overrides` over `defaults`, checked as at creation.
    pub(crate) fn new(
        defaults: &TopicConfig,
        overrides: BTreeMap<String, String>,
    ) -> Result<TopicSettings, BrokerError> {
        let config = TopicConfig::from_overrides(defaults, &overrides)?;
        Ok(TopicSettings { overrides, config })
    }

    /// The settings of each partition log, under `broker`'s limits.
    pub(crate) fn log_config(&self, broker: &BrokerConfig) -> LogConfig {
        LogConfig {
            // A produce request becomes one batch per partition, however large the
            // request the server let through.
            max_append_bytes: MAX_BATCH_LEN,
            max_decompressed_batch_bytes: broker.limits.max_decompressed_batch_bytes,
            ..self.config.to_log_config()
        }
    }
}

/// A topic: its metadata, config and partitions.
#[derive(Debug)]
pub(crate) struct Topic {
    name: String,
    partition_count: u32,
    created_ms: i64,
    /// The config in force. Its lock (the channel's) is a leaf: held only to clone or
    /// replace the `Arc`. The background flusher watches it for changes.
    settings: watch::Sender<Arc<TopicSettings>>,
    /// Held by a config change from reading the settings to publishing the new ones, and by
    /// deletion before the files go, so changes apply one at a time and never to a deleted
    /// topic's files. Only taken on blocking threads.
    altering: Mutex<()>,
    pub(crate) partitions: Vec<Arc<Partition>>,
    /// Round-robin counter choosing the partition of each request's keyless records.
    sticky: AtomicU32,
    deleted: AtomicBool,
    /// Set once the background flusher of an interval-flushed topic is spawned.
    pub(crate) flusher_started: AtomicBool,
}

impl Topic {
    /// Opens (creating if missing) the partition logs of a topic, their files through `io`.
    /// Blocking.
    ///
    /// A log that fails to open (an I/O error, or damage recovery cannot repair) is logged
    /// and kept as a failed partition, so one bad partition does not take the others down.
    pub(crate) fn open(
        dirs: &DataDir,
        meta: TopicMeta,
        broker: &BrokerConfig,
        io: &Arc<dyn FileIo>,
    ) -> Result<Topic, BrokerError> {
        let settings = TopicSettings::new(&broker.topic_defaults, meta.config)?;
        let log_config = settings.log_config(broker);
        let partitions = (0..meta.partitions)
            .map(|id| {
                let dir = dirs.partition(&meta.name, id);
                let log = Log::open_with_io(&dir, log_config.clone(), Arc::clone(io)).map_err(|e| {
                    tracing::error!(
                        topic = %meta.name,
                        partition = id,
                        error = %e,
                        "partition log failed to open; the partition is unavailable until a restart"
                    );
                    e.to_string()
                });
                let state = match &log {
                    Ok(log) => Producers::recover(&dir, log, &broker.producers, Arc::clone(io)),
                    Err(_) => Producers::empty(&dir, &broker.producers, Arc::clone(io)),
                };
                Arc::new(Partition::new(&meta.name, id, log, state))
            })
            .collect();
        Ok(Topic {
            name: meta.name,
            partition_count: meta.partitions,
            created_ms: meta.created_ms,
            settings: watch::Sender::new(Arc::new(settings)),
            altering: Mutex::new(()),
            partitions,
            sticky: AtomicU32::new(0),
            deleted: AtomicBool::new(false),
            flusher_started: AtomicBool::new(false),
        })
    }

    /// Creates a new topic on disk: partition logs first, then `topic.json`, whose
    /// appearance commits the topic. Undoes what it wrote when it fails. Blocking.
    pub(crate) fn create(
        dirs: &DataDir,
        meta: TopicMeta,
        broker: &BrokerConfig,
        io: &Arc<dyn FileIo>,
    ) -> Result<Topic, BrokerError> {
        let dir = dirs.topic(&meta.name);
        if dir.exists() {
            // Only a failed creation leaves a directory behind for a topic not in the
            // registry; a committed one means the registry and the disk disagree.
            if TopicMeta::read(&dir, &meta.name)?.is_some() {
                return Err(BrokerError::TopicExists { topic: meta.name });
            }
            metadata::remove_path(&dir)?;
        }
        let result = metadata::create_dir(&dir)
            .and_then(|()| Topic::open(dirs, meta.clone(), broker, io))
            .and_then(|topic| {
                if let Some(failed) = topic.partitions.iter().find_map(|p| p.log().err()) {
                    return Err(failed);
                }
                meta.write(&dir)?;
                metadata::sync_dir(&dirs.topics())?;
                Ok(topic)
            });
        if result.is_err()
            && let Err(e) = metadata::remove_path(&dir)
        {
            tracing::warn!(error = %e, "could not remove a partly created topic");
        }
        result
    }

    /// Closes the logs and removes the topic's directory: renamed into the trash first, so a
    /// crash midway cannot leave a half-deleted topic behind. Blocking.
    /// Waits for a config change in progress to finish first.
    pub(crate) fn destroy(&self, dirs: &DataDir) -> Result<(), BrokerError> {
        let _altering = self.altering.lock();
        if let Err(e) = self.close() {
            tracing::warn!(topic = %self.name, error = %e, "closing a deleted topic failed");
        }
        let dir = dirs.topic(&self.name);
        let trash_name = format!("{}.{}", self.name, metadata::unique_suffix());
        let trashed = dirs.trash().join(trash_name);
        fs::rename(&dir, &trashed).map_err(|e| BrokerError::io("move to trash", &dir, e))?;
        metadata::sync_dir(&dirs.topics())?;
        metadata::remove_path(&trashed)
    }

    /// Closes every partition log cleanly, then (unless the topic is being deleted) writes
    /// its producer-state snapshot; reports the first failure after trying them all.
    /// Blocking.
    pub(crate) fn close(&self) -> Result<(), BrokerError> {
        let mut first = Ok(());
        for partition in &self.partitions {
            let Some(log) = partition.opened() else {
                continue;
            };
            let closed = log.close().map_err(BrokerError::from).and_then(|()| {
                if self.is_deleted() {
                    Ok(())
                } else {
                    partition.producers().closed(log)
                }
            });
            if let Err(e) = closed {
                tracing::warn!(
                    topic = %self.name,
                    partition = partition.id,
                    error = %e,
                    "closing partition log failed"
                );
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn partition_count(&self) -> u32 {
        self.partition_count
    }

    pub(crate) fn partition(&self, id: u32) -> Result<&Arc<Partition>, BrokerError> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| BrokerError::PartitionNotFound {
                topic: self.name.clone(),
                partition: id,
                partitions: self.partition_count,
            })
    }

    /// The partition for this request's keyless records: the next in round-robin order.
    pub(crate) fn next_sticky_partition(&self) -> u32 {
        self.sticky.fetch_add(1, Ordering::Relaxed) % self.partition_count.max(1)
    }

    /// Marks the topic deleted and wakes its waiting fetches so they notice.
    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    pub(crate) fn wake_all(&self) {
        for partition in &self.partitions {
            partition.wake();
        }
    }

    /// The partitions that cannot serve.
    pub(crate) fn faults(&self) -> impl Iterator<Item = PartitionFault> + '_ {
        self.partitions.iter().filter_map(|p| {
            p.failure().map(|reason| PartitionFault {
                topic: self.name.clone(),
                partition: p.id,
                reason,
            })
        })
    }

    pub(crate) fn summary(&self) -> TopicSummary {
        TopicSummary {
            name: self.name.clone(),
            partitions: self.partition_count,
        }
    }

    pub(crate) fn info(&self) -> TopicInfo {
        self.info_with(&self.settings())
    }

    /// [`Topic::info`] showing `settings` as its config.
    pub(crate) fn info_with(&self, settings: &TopicSettings) -> TopicInfo {
        TopicInfo {
            name: self.name.clone(),
            partitions: self.partitions.iter().map(|p| p.info()).collect(),
            config: settings.config.to_map(),
            overrides: settings.overrides.clone(),
        }
    }

    /// The config in force now.
    pub(crate) fn settings(&self) -> Arc<TopicSettings> {
        Arc::clone(&self.settings.borrow())
    }

    /// A receiver that sees every config change from now on.
    pub(crate) fn watch_settings(&self) -> watch::Receiver<Arc<TopicSettings>> {
        self.settings.subscribe()
    }

    /// The settings `update` would give the topic, checked over `broker`'s topic defaults
    /// as creation checks them. Changes nothing and takes no lock but the settings' own.
    pub(crate) fn plan_config(
        &self,
        broker: &BrokerConfig,
        update: &ConfigUpdate,
    ) -> Result<TopicSettings, BrokerError> {
        let overrides = update.apply_to(&self.settings().overrides)?;
        let next = TopicSettings::new(&broker.topic_defaults, overrides)?;
        next.log_config(broker).validate()?;
        Ok(next)
    }

    /// Applies `update` ([`Topic::plan_config`]): writes the new overrides to `topic.json`
    /// (atomically; skipped when they are unchanged), hands every open partition log its new
    /// settings, then publishes them to produce and the background flusher. Returns the
    /// settings now in force. Changes run one at a time; a deleted topic is
    /// [`BrokerError::TopicNotFound`]. Blocking.
    pub(crate) fn alter_config(
        &self,
        dirs: &DataDir,
        broker: &BrokerConfig,
        update: &ConfigUpdate,
    ) -> Result<Arc<TopicSettings>, BrokerError> {
        let _altering = self.altering.lock();
        if self.is_deleted() {
            return Err(BrokerError::TopicNotFound {
                topic: self.name.clone(),
            });
        }
        let next = self.plan_config(broker, update)?;
        if next.overrides != self.settings().overrides {
            let meta = TopicMeta {
                name: self.name.clone(),
                partitions: self.partition_count,
                config: next.overrides.clone(),
                created_ms: self.created_ms,
            };
            meta.write(&dirs.topic(&self.name))?;
        }
        let log_config = next.log_config(broker);
        for partition in &self.partitions {
            if let Some(log) = partition.opened() {
                log.set_config(log_config.clone())?;
            }
        }
        let next = Arc::new(next);
        self.settings.send_replace(Arc::clone(&next));
        Ok(next)
    }
}
