//! The broker: the topic registry and the produce, fetch and admin operations.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use parking_lot::RwLock;
use sluice_storage::StorageError;
use sluice_storage::io::{FileIo, StdIo};
use tokio::task::JoinHandle;

use crate::append_queue::AppendFailure;
use crate::background::Background;
use crate::groups::coordinator::GroupCoordinator;
use crate::in_flight::{self, Admission, InFlight};
use crate::lifecycle::{DrainTrigger, Draining, drain_signal};
use crate::metadata::{self, DataDir, TopicMeta};
use crate::produce::{ProduceLimits, Routing, build_batches};
use crate::producers::ProducerIds;
use crate::raw_batch::{self, RawLimits};
use crate::reservations::Reservations;
use crate::routing::store::RoutingStore;
use crate::security::Security;
use crate::share::coordinator::ShareCoordinator;
use crate::subscriptions::SubscriptionSlots;
use crate::topic::{Partition, PartitionFault, Topic};
use crate::{
    BrokerConfig, BrokerError, Fetched, OffsetSpec, PartitionAppend, ProduceRecord,
    ProducerIdentity, TopicConfig, TopicInfo, TopicSummary, validate_topic_name,
};

/// Maps a log error, telling apart logs closed by a topic deletion (the topic is gone) from
/// logs closed by shutdown (the only other closer).
pub(crate) fn map_storage_error(topic: &Topic, err: StorageError) -> BrokerError {
    if topic.is_deleted() {
        BrokerError::TopicNotFound {
            topic: topic.name().to_owned(),
        }
    } else if matches!(err, StorageError::Closed { .. }) {
        BrokerError::ShuttingDown
    } else if let StorageError::InvalidBatch(batch) = &err {
        // Only a client-encoded batch can fail the log's checks (its CRC, which the log is the
        // one to compute); the broker's own batches are valid by construction.
        raw_batch::batch_error(batch)
    } else {
        err.into()
    }
}

/// A produce request that was accepted: its batches are queued for appending, or waiting
/// for room in the in-flight budget (they are queued in submit order either way); see
/// [`Broker::submit_produce`].
#[derive(Debug)]
#[must_use = "the records are appended either way; wait() tells where, or why not"]
pub struct PendingProduce {
    topic: Arc<Topic>,
    /// When the request was submitted: its latency runs until every append is done.
    submitted: Instant,
    /// (partition, records) per partition written, in the order of the batches admitted.
    targets: Vec<(u32, u32)>,
    budget: Arc<InFlight>,
    admission: Admission,
}

impl PendingProduce {
    /// Waits, if the request had to, until it has room in the in-flight budget and its
    /// batches are queued; a request still waiting after `produce_wait` fails here with
    /// [`BrokerError::Overloaded`], and none of it is appended. Front ends await this before
    /// they read their client's next produce request, so the bytes of requests waiting for
    /// room stay bounded by one request per stream or connection.
    pub async fn admitted(mut self) -> Result<PendingProduce, BrokerError> {
        let admission = std::mem::replace(&mut self.admission, Admission::Queued(Vec::new()));
        self.admission = Admission::Queued(self.budget.admitted(admission).await?);
        Ok(self)
    }

    /// Waits for room in the in-flight budget if the request had to, then for every
    /// partition's append. Returns one entry per partition written, sorted by partition, or
    /// the first failure (other partitions may have been written).
    ///
    /// A request still waiting for room after `produce_wait` fails with
    /// [`BrokerError::Overloaded`] and none of it is appended.
    #[tracing::instrument(
        level = "debug",
        name = "produce_wait",
        skip_all,
        fields(topic = %self.topic.name(), partitions = self.targets.len())
    )]
    pub async fn wait(self) -> Result<Vec<PartitionAppend>, BrokerError> {
        let submitted = self.submitted;
        let result = self.appended().await;
        metrics::histogram!("sluice_produce_duration_seconds").record(submitted.elapsed());
        result
    }

    async fn appended(self) -> Result<Vec<PartitionAppend>, BrokerError> {
        let appends = self.budget.admitted(self.admission).await?;
        let mut appended = Vec::with_capacity(appends.len());
        let mut failure = None;
        for ((partition, record_count), done) in self.targets.into_iter().zip(appends) {
            let result = match done.await {
                Ok(Ok(info)) => Ok(PartitionAppend {
                    partition,
                    base_offset: info.base_offset,
                    record_count,
                }),
                Ok(Err(AppendFailure::Storage(e))) => Err(map_storage_error(&self.topic, e)),
                Ok(Err(AppendFailure::Refused(e))) => Err(e),
                // The append was dropped unanswered: its partition faulted, or shutdown.
                Err(_dropped) => Err(self
                    .topic
                    .partition(partition)
                    .and_then(|p| p.log().map(drop))
                    .err()
                    .unwrap_or(BrokerError::ShuttingDown)),
            };
            match result {
                Ok(append) => appended.push(append),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(appended),
        }
    }
}

/// `max_bytes` of a fetch that asks for 0.
const DEFAULT_FETCH_BYTES: usize = 1 << 20;

/// A single-node broker: topics of partition logs under one data directory.
///
/// Share it as `Arc<Broker>`. Produce and fetch take no broker-wide lock beyond a brief read
/// of the topic registry (and, for produce, of the in-flight budget).
///
/// Where file I/O runs: appends, segment rolls and their fsyncs on each partition's writer,
/// a thread of tokio's blocking pool (see the `append_queue` module); fetch reads, topic
/// creation and deletion, and shutdown's closing of the logs on `spawn_blocking` threads. No
/// async lock is held across any of them. [`Broker::open`], [`Broker::list_offset`] with a
/// timestamp and [`Broker::start_offset`] read files on the caller's thread, as their docs
/// say.
#[derive(Debug)]
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) dirs: DataDir,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Names of topics being created or deleted; shutdown waits for those operations.
    reservations: Reservations,
    shutting_down: AtomicBool,
    /// Fired by [`Broker::begin_drain`]: ends every long-running call.
    drain: DrainTrigger,
    /// Slots of open subscriptions and group sessions (`limits.max_subscriptions`).
    pub(crate) subscriptions: SubscriptionSlots,
    pub(crate) background: Background,
    /// How partition logs open their segment files.
    io: Arc<dyn FileIo>,
    /// Consumer groups and their committed offsets.
    pub(crate) groups: Arc<GroupCoordinator>,
    /// Share groups and their state.
    pub(crate) share: Arc<ShareCoordinator>,
    /// Exchanges, queue definitions and bindings.
    pub(crate) routing: Arc<RoutingStore>,
    /// Users, ACLs and quotas.
    security: Security,
    /// Bytes of produce requests queued or being appended, within `max_in_flight_bytes`.
    in_flight: Arc<InFlight>,
    /// The data directory's cluster id (see [`Broker::cluster_id`]).
    cluster_id: String,
    /// Hands out the ids of idempotent producers.
    producer_ids: Arc<ProducerIds>,
    /// Its lock keeps other brokers out of the data directory while this one lives.
    _lock: File,
}

impl Broker {
    /// Opens (creating if needed) the data directory, loads every topic and recovers their
    /// logs. Blocking: call it before serving or from `spawn_blocking`.
    ///
    /// Fails with [`BrokerError::DataDirLocked`] while another broker has the directory open.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        Self::open_with_io(config, Arc::new(StdIo))
    }

    /// [`Broker::open`] with partition logs whose segment files open through `io` (tests
    /// inject I/O faults through it, such as a full disk or a failing fsync).
    pub fn open_with_io(
        config: BrokerConfig,
        io: Arc<dyn FileIo>,
    ) -> Result<Arc<Broker>, BrokerError> {
        config.topic_defaults.validate()?;
        config.producers.validate()?;
        if config.retention_check_interval.is_zero() {
            return Err(BrokerError::invalid_config(
                "retention_check_interval",
                "0",
                "must be at least 1 ms",
            ));
        }
        if config.limits.max_in_flight_bytes == 0 {
            return Err(BrokerError::invalid_config(
                "max_in_flight_bytes",
                "0",
                "must be at least 1 byte",
            ));
        }
        if config.limits.max_decompressed_batch_bytes == 0 {
            return Err(BrokerError::invalid_config(
                "max_decompressed_batch_bytes",
                "0",
                "must be at least 1 byte",
            ));
        }
        let dirs = DataDir::new(config.data_dir.clone());
        metadata::create_dir(&config.data_dir)?;
        let lock = metadata::lock_data_dir(&dirs.lock_file())?;
        let cluster_id = crate::cluster::load_or_create(&config.data_dir)?;
        metadata::create_dir(&dirs.topics())?;
        metadata::create_dir(&dirs.trash())?;
        metadata::empty_dir(&dirs.trash())?;
        let topics = load_topics(&dirs, &config, &io)?;
        // Above every id a partition remembers, should the allocation file have been lost.
        let floor = topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.producers().max_producer_id())
            .max()
            .map_or(0, |id| id.saturating_add(1));
        let producer_ids = Arc::new(ProducerIds::open(&config.data_dir, Arc::clone(&io), floor)?);
        let groups = GroupCoordinator::open(&config.data_dir, config.groups.clone(), |topic| {
            topics.contains_key(topic)
        })?;
        let share = ShareCoordinator::open(&config.data_dir, config.share.clone())?;
        let routing = RoutingStore::open(&config.data_dir)?;
        let security = Security::open(&config.data_dir, config.security.clone())?;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            topics = topics.len(),
            "broker opened"
        );
        let (drain, _) = drain_signal();
        let subscriptions = SubscriptionSlots::new(config.limits.max_subscriptions);
        let in_flight = InFlight::new(
            config.limits.max_in_flight_bytes,
            config.limits.produce_wait,
        );
        Ok(Arc::new(Broker {
            config,
            cluster_id,
            dirs,
            topics: RwLock::new(topics),
            reservations: Reservations::new(),
            shutting_down: AtomicBool::new(false),
            drain,
            subscriptions,
            background: Background::new(),
            io,
            groups,
            share,
            routing,
            security,
            in_flight,
            producer_ids,
            _lock: lock,
        }))
    }

    /// The limits this broker enforces.
    pub fn limits(&self) -> &crate::Limits {
        &self.config.limits
    }

    /// Users, ACLs and quotas, and the checks front ends make with them.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The share group defaults and limits in force.
    pub fn share_config(&self) -> &crate::ShareConfig {
        &self.config.share
    }

    /// The config of topics that override nothing.
    pub fn topic_defaults(&self) -> &TopicConfig {
        &self.config.topic_defaults
    }

    /// The cluster id: made at the first open of the data directory and kept in it
    /// (`cluster.id`), so it stays the same across restarts.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Starts the background work: flushing partitions of `flush.policy = interval` topics
    /// every `flush.ms`, checkpointing every partition about once a second, and enforcing
    /// retention every `retention_check_interval`, and dropping the transient queues the
    /// last run left. Must be called inside a tokio runtime; calling it again does nothing.
    pub fn start_background(self: &Arc<Self>) {
        self.background.start(self);
        let broker = Arc::clone(self);
        tokio::spawn(async move { broker.drop_stale_queues().await });
    }

    /// Creates a topic with `partitions` partitions and the given config overrides (Kafka
    /// key names); returns it as [`Broker::describe_topic`] would.
    ///
    /// A topic of that name that exists, or is being created or deleted right now, is
    /// [`BrokerError::TopicExists`]. Creations and deletions of other names run alongside.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: &BTreeMap<String, String>,
    ) -> Result<TopicInfo, BrokerError> {
        self.check_running()?;
        let limits = &self.config.limits;
        validate_topic_name(name, limits.max_topic_name_len)?;
        if !(1..=limits.max_partitions).contains(&partitions) {
            return Err(BrokerError::InvalidPartitionCount {
                requested: partitions,
                max: limits.max_partitions,
            });
        }
        TopicConfig::from_overrides(&self.config.topic_defaults, config)?;

        let exists = || BrokerError::TopicExists {
            topic: name.to_owned(),
        };
        // Held until the topic is registered: a concurrent creation of the name is refused.
        let (_creating, ()) = self.reservations.hold(name, exists, || {
            if self.topics.read().contains_key(name) {
                Err(exists())
            } else {
                Ok(())
            }
        })?;
        let meta = TopicMeta {
            name: name.to_owned(),
            partitions,
            config: config.clone(),
            created_ms: wall_clock_ms(),
        };
        let dirs = self.dirs.clone();
        let settings = self.config.clone();
        let io = Arc::clone(&self.io);
        let topic = join(tokio::task::spawn_blocking(move || {
            Topic::create(&dirs, meta, &settings, &io)
        }))
        .await??;
        let topic = Arc::new(topic);
        self.topics
            .write()
            .insert(name.to_owned(), Arc::clone(&topic));
        self.background.watch_topic(&topic);
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic.info())
    }

    /// Deletes a topic and all its data. Fetches waiting on it return
    /// [`BrokerError::TopicNotFound`], as does deleting a topic that is still being created or
    /// already being deleted.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        self.check_running()?;
        let not_found = || BrokerError::TopicNotFound {
            topic: name.to_owned(),
        };
        // Held until the files are gone: the name cannot be created again before.
        let (_deleting, topic) = self.reservations.hold(name, not_found, || {
            self.topics.write().remove(name).ok_or_else(not_found)
        })?;
        topic.mark_deleted();
        let dirs = self.dirs.clone();
        join(tokio::task::spawn_blocking(move || topic.destroy(&dirs))).await??;
        tracing::info!(topic = name, "deleted topic");
        self.groups.topic_deleted(self, name).await?;
        self.share_topic_deleted(name).await
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicSummary> {
        let mut topics: Vec<TopicSummary> =
            self.topics.read().values().map(|t| t.summary()).collect();
        topics.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// A topic's partitions and effective config.
    pub fn describe_topic(&self, name: &str) -> Result<TopicInfo, BrokerError> {
        Ok(self.topic(name)?.info())
    }

    /// How many partitions a topic has.
    pub fn partition_count(&self, topic: &str) -> Result<u32, BrokerError> {
        Ok(self.topic(topic)?.partition_count())
    }

    /// Appends records to a topic: [`Broker::submit_produce`], then waits for the result.
    pub async fn produce<R, I>(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: I,
    ) -> Result<Vec<PartitionAppend>, BrokerError>
    where
        I: IntoIterator<Item = R>,
        R: ProduceRecord,
    {
        self.submit_produce(topic, partition, records)?.wait().await
    }

    /// Validates records, encodes them and queues them for appending; the returned
    /// [`PendingProduce`] resolves once they are written (and, under `fsync`, durable).
    ///
    /// Queueing happens before this returns, and each partition appends in queue order, so
    /// requests submitted one after the other land in that order in every partition they
    /// share, however many are awaited at once: a pipelining client keeps its order.
    ///
    /// With `partition` set, every record goes to it. Otherwise keyed records go to
    /// `(murmur2(key) & 0x7fffffff) % partitions`, as with Kafka's default partitioner, and
    /// the request's keyless records all go to one partition chosen round-robin per request.
    /// Records keep their request order within each partition; a timestamp of 0 becomes the
    /// broker's wall clock (read once per request). Each partition gets one record batch;
    /// fetches waiting on it are woken once it is appended.
    ///
    /// Nothing is queued when the request is empty ([`BrokerError::EmptyBatch`]), holds more
    /// than `max_records_per_request` records ([`BrokerError::TooManyRecords`]) or a record
    /// larger than the topic's `max.message.bytes` ([`BrokerError::RecordTooLarge`]).
    ///
    /// Backpressure: the encoded batches take their bytes from the broker-wide
    /// `max_in_flight_bytes` budget until their appends are done. A request that does not fit
    /// waits in line, in submit order, so the order above still holds; the returned
    /// [`PendingProduce`] then resolves to [`BrokerError::Overloaded`] if it is still waiting
    /// after `produce_wait`, and none of it is appended. A request larger than the whole
    /// budget is [`BrokerError::ProduceTooLarge`].
    #[tracing::instrument(level = "debug", name = "produce", skip(self, records))]
    pub fn submit_produce<R, I>(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: I,
    ) -> Result<PendingProduce, BrokerError>
    where
        I: IntoIterator<Item = R>,
        R: ProduceRecord,
    {
        let submitted = Instant::now();
        self.check_running()?;
        let topic = self.topic(topic)?;
        let routing = match partition {
            Some(p) => Routing::Fixed(topic.partition(p)?.id),
            None => Routing::ByKey {
                partitions: topic.partition_count(),
                sticky: topic.next_sticky_partition(),
            },
        };
        let limits = ProduceLimits {
            max_message_bytes: topic.settings().config.max_message_bytes,
            max_records: self.config.limits.max_records_per_request,
        };
        let batches = build_batches(records, routing, limits, wall_clock_ms())?;
        // Check every target first, so a request is refused whole rather than half queued.
        let mut targets = Vec::with_capacity(batches.len());
        let mut queued = Vec::with_capacity(batches.len());
        for batch in batches {
            let partition = topic.partition(batch.partition)?;
            partition.log()?;
            targets.push((batch.partition, batch.record_count));
            queued.push(in_flight::Batch {
                partition: Arc::clone(partition),
                bytes: batch.batch,
                idempotent: false,
            });
        }
        self.admit(topic, submitted, targets, queued)
    }

    /// Takes room in the in-flight budget for a checked request's batches and queues them,
    /// or puts the request in line for room.
    fn admit(
        &self,
        topic: Arc<Topic>,
        submitted: Instant,
        targets: Vec<(u32, u32)>,
        batches: Vec<in_flight::Batch>,
    ) -> Result<PendingProduce, BrokerError> {
        for ((_, record_count), batch) in targets.iter().zip(&batches) {
            metrics::histogram!("sluice_append_batch_records").record(*record_count);
            metrics::histogram!("sluice_append_batch_bytes").record(batch.bytes.len() as f64);
        }
        let admission = self.in_flight.admit(batches)?;
        Ok(PendingProduce {
            topic,
            submitted,
            targets,
            budget: Arc::clone(&self.in_flight),
            admission,
        })
    }

    /// Bytes of produce requests queued for appending or being appended right now, out of
    /// the `max_in_flight_bytes` budget (also the `sluice_inflight_bytes` gauge).
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight.used()
    }

    /// Queues client-encoded Kafka RecordBatch v2 bytes (one or more whole batches,
    /// concatenated) for appending to one partition as they are; resolves like
    /// [`Broker::submit_produce`], with one entry for `partition` counting the records of
    /// every batch.
    ///
    /// The batches are checked from their headers: magic 2, lengths (whole batches, no
    /// trailing bytes), attributes (codec 0-4: none, gzip, snappy, lz4 or zstd; not
    /// transactional), record count against the last offset delta, the first and max
    /// timestamps, each batch's total size as sent (compressed, if it is) against the topic's
    /// `max.message.bytes` ([`BrokerError::BatchTooLarge`]) and the records of all of them
    /// against `max_records_per_request` ([`BrokerError::TooManyRecords`]). A compressed
    /// batch is also CRC-checked and decompressed, and its records checked (they must be
    /// exactly `record_count` well-framed records, field `records`; decompressing to more than
    /// `max_decompressed_batch_bytes` is [`BrokerError::DecompressedTooLarge`]), as Kafka's
    /// broker does, on the caller's thread. A failure is a [`BrokerError::InvalidBatch`]
    /// naming the field, and nothing is queued. The CRC-32C of an uncompressed batch is
    /// verified once, by the log, before it writes anything: a mismatch fails the returned
    /// [`PendingProduce`] with an [`BrokerError::InvalidBatch`] naming `crc`. The log then
    /// assigns offsets by rewriting each batch's base offset (outside the CRC) and stores
    /// every other byte as it came, compressed batches still compressed; timestamps are the
    /// producer's unless the topic's `message.timestamp.type` is `LogAppendTime`, where the
    /// log stamps each batch with its append time (and a new CRC), as Kafka does.
    ///
    /// Queued in call order with every other produce to the partition, as
    /// [`Broker::submit_produce`] is.
    ///
    /// Idempotent producers: batches whose producer id is 0 or more (one from
    /// [`Broker::init_producer_id`]) must carry an epoch and a base sequence of 0 or more, and
    /// are judged by the partition's writer in queue order, batch by batch, against what the
    /// partition stored from that producer (docs/idempotence.md). A request whose every
    /// batch repeats one of its producer's last five batches is not stored again and
    /// resolves with the offset it was stored at; an epoch older than the producer's latest
    /// fails with [`BrokerError::ProducerFenced`]; a batch that does not continue its
    /// producer's sequence with [`BrokerError::OutOfOrderSequence`]. A refused request stores
    /// nothing. A producer the partition does not know (or has forgotten) may start at any
    /// sequence, as with Kafka 2.5 and later.
    #[tracing::instrument(level = "debug", name = "produce_batches", skip(self, batches), fields(bytes = batches.len()))]
    pub fn submit_batches(
        &self,
        topic: &str,
        partition: u32,
        batches: BytesMut,
    ) -> Result<PendingProduce, BrokerError> {
        let submitted = Instant::now();
        self.check_running()?;
        let topic = self.topic(topic)?;
        let target = Arc::clone(topic.partition(partition)?);
        target.log()?;
        let limits = RawLimits {
            max_message_bytes: topic.settings().config.max_message_bytes,
            max_records: self.config.limits.max_records_per_request,
            max_decompressed_bytes: self.config.limits.max_decompressed_batch_bytes,
        };
        let checked = raw_batch::validate(&batches, limits)?;
        self.admit(
            topic,
            submitted,
            vec![(partition, checked.records)],
            vec![in_flight::Batch {
                partition: target,
                bytes: batches,
                idempotent: checked.idempotent,
            }],
        )
    }

    /// Appends client-encoded record batches to one partition:
    /// [`Broker::submit_batches`], then waits for the result.
    pub async fn produce_batches(
        &self,
        topic: &str,
        partition: u32,
        batches: BytesMut,
    ) -> Result<PartitionAppend, BrokerError> {
        let mut appended = self
            .submit_batches(topic, partition, batches)?
            .wait()
            .await?;
        // One entry per partition written: exactly one here.
        appended.pop().ok_or(BrokerError::EmptyBatch)
    }

    /// Hands out an idempotent producer's identity (Kafka's `InitProducerId` without a
    /// transactional id): a producer id no producer of this data directory had before, even
    /// across crashes, and epoch 0. The id is taken from a block reserved in the data
    /// directory's `producer-ids` file, written and fsynced before the block's first id is
    /// handed out (on a blocking thread).
    ///
    /// As in Kafka, a request without a transactional id always gets a new producer id,
    /// whatever producer id and epoch it carries: an idempotent producer bumps its epoch
    /// itself (KIP-360), and a partition accepts a newer epoch whose first batch starts at
    /// sequence 0. A transactional id is refused with [`BrokerError::TransactionsUnsupported`]
    /// (an empty one with [`BrokerError::InvalidRequest`]).
    pub async fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<ProducerIdentity, BrokerError> {
        self.check_running()?;
        match transactional_id {
            None => {}
            Some("") => {
                return Err(BrokerError::invalid_request(
                    "transactional_id",
                    "is empty; leave it unset for an idempotent producer",
                ));
            }
            Some(id) => {
                return Err(BrokerError::TransactionsUnsupported {
                    transactional_id: id.to_owned(),
                });
            }
        }
        let ids = Arc::clone(&self.producer_ids);
        let producer_id = join(tokio::task::spawn_blocking(move || ids.allocate())).await??;
        Ok(ProducerIdentity {
            producer_id,
            epoch: 0,
        })
    }

    /// Reads whole record batches from `offset`, up to `max_bytes` (capped by
    /// `max_fetch_bytes`; 0 means 1 MiB) but at least one batch.
    ///
    /// When `offset` is the high watermark, waits up to `max_wait` (capped by the `max_wait`
    /// limit) for an append to the partition, then returns whatever is there, possibly
    /// nothing. An offset outside `[log_start_offset, high_watermark]` is
    /// [`BrokerError::OffsetOutOfRange`].
    #[tracing::instrument(level = "debug", name = "fetch", skip(self, max_bytes, max_wait))]
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Fetched, BrokerError> {
        self.check_running()?;
        let topic = self.topic(topic)?;
        let partition = Arc::clone(topic.partition(partition)?);
        let log = partition.log()?;
        let cap = self.config.limits.max_fetch_bytes;
        let max_bytes = match max_bytes {
            0 => DEFAULT_FETCH_BYTES.min(cap),
            n => n.min(cap),
        };
        let wait = max_wait.min(self.config.limits.max_wait);

        // Subscribe before reading, so an append right after the read still wakes us.
        let mut changed = partition.subscribe();
        let fetched = self.read(&topic, &partition, offset, max_bytes).await?;
        if !fetched.batches.is_empty() || wait.is_zero() {
            return Ok(fetched);
        }
        let _ = tokio::time::timeout(wait, async {
            while changed.changed().await.is_ok() {
                if log.high_watermark() > offset || topic.is_deleted() || self.is_shutting_down() {
                    break;
                }
            }
        })
        .await;
        if topic.is_deleted() {
            return Err(BrokerError::TopicNotFound {
                topic: topic.name().to_owned(),
            });
        }
        self.check_running()?;
        if log.high_watermark() == offset {
            return Ok(fetched);
        }
        self.read(&topic, &partition, offset, max_bytes).await
    }

    /// Looks up an offset: the log start (`Earliest`), the high watermark (`Latest`), or the
    /// first offset whose timestamp is at or after a time (`Timestamp`; `None` when no record
    /// is that recent). A timestamp lookup may read a little of the log.
    pub fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<u64>, BrokerError> {
        self.check_running()?;
        let topic = self.topic(topic)?;
        let log = topic.partition(partition)?.log()?;
        match spec {
            OffsetSpec::Earliest => Ok(Some(log.log_start_offset())),
            OffsetSpec::Latest => Ok(Some(log.high_watermark())),
            OffsetSpec::Timestamp(ts) => log
                .offset_for_timestamp(ts)
                .map_err(|e| map_storage_error(&topic, e)),
        }
    }

    /// The timestamp (ms since the epoch) of the record at `offset`: its producer's create
    /// time, or the broker's clock when it was appended if the producer gave none. `None`
    /// when there is no record there yet. Reads the one batch that holds it. Blocking.
    pub(crate) fn record_timestamp(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<Option<i64>, BrokerError> {
        let topic = self.topic(topic)?;
        let log = topic.partition(partition)?.log()?;
        let read = log
            .read(offset, 1)
            .map_err(|e| map_storage_error(&topic, e))?;
        let fetched = Fetched {
            batches: read.batches,
            offset,
            high_watermark: read.high_watermark,
            log_start_offset: read.log_start_offset,
            max_decompressed_batch_bytes: self.config.limits.max_decompressed_batch_bytes,
        };
        fetched
            .records()
            .next()
            .transpose()
            .map(|record| record.map(|r| r.timestamp_ms))
    }

    /// Where reading from `spec` starts in a partition: the offset [`Broker::list_offset`]
    /// finds, or the high watermark when no record is that recent. The high watermark is read
    /// before the lookup, so records appended in between are not skipped. Blocking, as
    /// [`Broker::list_offset`] is.
    pub fn start_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<u64, BrokerError> {
        let end = self
            .list_offset(topic, partition, OffsetSpec::Latest)?
            .unwrap_or_default();
        Ok(self.list_offset(topic, partition, spec)?.unwrap_or(end))
    }

    /// Begins draining: every subscription, group session and long-running call of every
    /// front end ends (with [`BrokerError::ShuttingDown`]) so in-flight requests can finish
    /// before [`Broker::shutdown`]. New requests are still served until then.
    pub fn begin_drain(&self) {
        self.drain.fire();
    }

    /// The signal that resolves once [`Broker::begin_drain`] (or [`Broker::shutdown`]) is
    /// called; front ends end their long-running calls on it.
    pub fn draining(&self) -> Draining {
        self.drain.signal()
    }

    /// Refuses new requests ([`BrokerError::ShuttingDown`]; produce requests waiting for room
    /// in the in-flight budget too), wakes waiting fetches, stops the background tasks, waits
    /// for topic creations and deletions in progress and closes every log cleanly (fsync and
    /// clean-shutdown marker).
    /// Returns the first close failure after closing all others. Calling it again does nothing.
    pub async fn shutdown(&self) -> Result<(), BrokerError> {
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.drain.fire();
        self.groups.shutdown();
        self.share.shutdown();
        self.in_flight.close();
        self.background.stop().await;
        self.reservations.close().await;
        let topics = self.topics_snapshot();
        for topic in &topics {
            topic.wake_all();
        }
        let result = join(tokio::task::spawn_blocking(move || {
            topics
                .iter()
                .map(|topic| topic.close())
                .fold(Ok(()), Result::and)
        }))
        .await?;
        tracing::info!("broker shut down");
        result
    }

    /// The partitions that cannot serve: those whose log failed to open at start or whose
    /// append task panicked (unavailable until a restart), and those whose log latched a write
    /// or fsync failure (read-only until a restart). Empty when all
    /// is well; health checks report NOT_SERVING otherwise.
    pub fn partition_faults(&self) -> Vec<PartitionFault> {
        let mut faults: Vec<_> = self
            .topics_snapshot()
            .iter()
            .flat_map(|t| t.faults())
            .collect();
        faults.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        faults
    }

    /// Every topic currently registered.
    pub(crate) fn topics_snapshot(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        self.topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::TopicNotFound {
                topic: name.to_owned(),
            })
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub(crate) fn check_running(&self) -> Result<(), BrokerError> {
        if self.is_shutting_down() {
            Err(BrokerError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    async fn read(
        &self,
        topic: &Topic,
        partition: &Arc<Partition>,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Fetched, BrokerError> {
        let log = partition.log()?;
        let (high_watermark, log_start_offset) = (log.high_watermark(), log.log_start_offset());
        if offset == high_watermark && offset >= log_start_offset {
            // Nothing to read: no need for a blocking thread.
            return Ok(Fetched {
                batches: bytes::Bytes::new(),
                offset,
                high_watermark,
                log_start_offset,
                max_decompressed_batch_bytes: self.config.limits.max_decompressed_batch_bytes,
            });
        }
        let source = Arc::clone(partition);
        let started = Instant::now();
        let read = join(tokio::task::spawn_blocking(move || {
            source.log().map(|log| log.read(offset, max_bytes))
        }))
        .await??
        .map_err(|e| map_storage_error(topic, e))?;
        metrics::histogram!("sluice_fetch_duration_seconds").record(started.elapsed());
        let fetched = Fetched {
            batches: read.batches,
            offset,
            high_watermark: read.high_watermark,
            log_start_offset: read.log_start_offset,
            max_decompressed_batch_bytes: self.config.limits.max_decompressed_batch_bytes,
        };
        partition.count_fetched(fetched.next_offset() - offset, fetched.batches.len() as u64);
        Ok(fetched)
    }
}

/// Loads every committed topic under `data_dir/topics`, removing directories of creations
/// that never finished. Blocking.
fn load_topics(
    dirs: &DataDir,
    config: &BrokerConfig,
    io: &Arc<dyn FileIo>,
) -> Result<HashMap<String, Arc<Topic>>, BrokerError> {
    let root = dirs.topics();
    let mut topics = HashMap::new();
    let mut removed_any = false;
    let entries = fs::read_dir(&root).map_err(|e| BrokerError::io("list", &root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BrokerError::io("list", &root, e))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| BrokerError::io("stat", &path, e))?
            .is_dir();
        let name = entry.file_name().to_str().map(str::to_owned);
        let Some(name) = name.filter(|n| is_dir && validate_topic_name(n, usize::MAX).is_ok())
        else {
            tracing::warn!(path = %path.display(), "ignoring an entry that is not a topic");
            continue;
        };
        TopicMeta::remove_stray_tmp(&path)?;
        match TopicMeta::read(&path, &name)? {
            Some(meta) => {
                let topic = Topic::open(dirs, meta, config, io)?;
                topics.insert(name, Arc::new(topic));
            }
            None => {
                tracing::warn!(
                    path = %path.display(),
                    "removing a topic directory whose creation never finished"
                );
                metadata::remove_path(&path)?;
                removed_any = true;
            }
        }
    }
    if removed_any {
        metadata::sync_dir(&root)?;
    }
    Ok(topics)
}

/// Waits for a blocking task. A panic in it is resumed here; a task cancelled because the
/// runtime is shutting down is [`BrokerError::ShuttingDown`].
pub(crate) async fn join<T>(handle: JoinHandle<T>) -> Result<T, BrokerError> {
    match handle.await {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(BrokerError::ShuttingDown),
    }
}

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
