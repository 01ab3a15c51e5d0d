//! The producer's bookkeeping, free of I/O: records are grouped into per-partition batches,
//! batches are handed out as requests (several in flight), answers complete the records,
//! and failed batches are queued again in order.
//!
//! Order within a partition is kept across retries: when a batch fails with a retriable
//! error, its partition stops sending, waits for the answers of its other batches in
//! flight, then sends the failed batches again in their original order, ahead of the
//! batches still waiting, after a backoff.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use sluice_storage::batch::{HEADER_LEN, RecordBatchBuilder};

use prost::Message as _;
use sluice_proto::v1 as pb;
use tokio::sync::oneshot;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::producer::partitioner::Partitioner;
use crate::record::{ProducerRecord, RecordMetadata};

/// Most records in one batch, below the server's default `max_records_per_request`.
const MAX_BATCH_RECORDS: usize = 16_384;

/// What the pipeline needs to know of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicShape {
    /// Its partition count.
    pub(crate) partitions: u32,
    /// Its `max.message.bytes`, if the server said: a raw batch must fit in it whole.
    pub(crate) max_message_bytes: Option<usize>,
}

/// Bytes a record can take in a RecordBatch on top of its key, value and header bytes: the
/// length, attributes, timestamp delta, offset delta, key length, value length and header
/// count varints.
const RAW_RECORD_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
/// Bytes a header can take on top of its key and value: the two length varints.
const RAW_HEADER_OVERHEAD: usize = 10;

/// The most bytes `record` can take in a RecordBatch.
fn raw_size(record: &pb::Record) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.len() + RAW_HEADER_OVERHEAD)
        .sum();
    record.key.as_ref().map_or(0, Bytes::len) + record.value.len() + headers + RAW_RECORD_OVERHEAD
}

/// Where the outcome of one record is sent.
pub(crate) type Ack = oneshot::Sender<Result<RecordMetadata>>;

/// The producer settings the pipeline applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// How long a batch waits for more records before it is sent.
    pub(crate) linger: Duration,
    /// Size at which a batch is closed and sent, in encoded bytes.
    pub(crate) batch_size: usize,
    /// Most requests awaiting an answer at once.
    pub(crate) max_in_flight: usize,
    /// How many times a batch is sent again after a retriable failure.
    pub(crate) retries: u32,
    /// Wait before a failed batch is sent again.
    pub(crate) backoff: Backoff,
    /// How long after its first record a batch may still be sent or retried.
    pub(crate) delivery_timeout: Duration,
    /// Encoded bytes of records the pipeline takes on before it waits for outcomes.
    pub(crate) max_buffered_bytes: usize,
    /// Send each batch as a Kafka RecordBatch v2 the producer encoded (raw-batch produce),
    /// rather than as records for the server to encode.
    pub(crate) raw_batches: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            linger: Duration::from_millis(5),
            batch_size: 1 << 20,
            max_in_flight: 8,
            retries: u32::MAX,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            delivery_timeout: Duration::from_secs(120),
            max_buffered_bytes: 32 << 20,
            raw_batches: true,
        }
    }
}

/// Records bound for one partition, sent as one request.
#[derive(Debug)]
struct Batch {
    topic: Arc<str>,
    partition: u32,
    records: Vec<pb::Record>,
    acks: Vec<Ack>,
    /// Encoded size of the records.
    bytes: usize,
    /// When the first record was added.
    created: Instant,
    /// Sequence number of the first record, in the order records were pushed.
    first_seq: u64,
    /// How many times it was sent.
    attempts: u32,
    /// The pipeline's count of buffered bytes, which this batch's `bytes` are part of.
    buffered: Arc<AtomicUsize>,
    /// Why the last attempt failed.
    last_error: Option<Error>,
}

impl Batch {
    fn new(
        topic: &Arc<str>,
        partition: u32,
        first_seq: u64,
        created: Instant,
        buffered: &Arc<AtomicUsize>,
    ) -> Self {
        Batch {
            topic: Arc::clone(topic),
            partition,
            records: Vec::new(),
            acks: Vec::new(),
            bytes: 0,
            created,
            first_seq,
            attempts: 0,
            buffered: Arc::clone(buffered),
            last_error: None,
        }
    }

    /// Whether `size` more bytes would not fit.
    fn is_full_for(&self, size: usize, batch_size: usize) -> bool {
        !self.records.is_empty()
            && (self.bytes + size > batch_size || self.records.len() >= MAX_BATCH_RECORDS)
    }

    /// Whether nothing more should be added.
    fn is_full(&self, batch_size: usize) -> bool {
        self.bytes >= batch_size || self.records.len() >= MAX_BATCH_RECORDS
    }

    /// Takes the batch's bytes off the buffered count: its records have their outcome.
    /// Done before the outcome is told, so a caller that hears of it finds the room.
    fn unbuffer(&self) {
        self.buffered.fetch_sub(self.bytes, Ordering::AcqRel);
    }

    /// Acknowledges every record: the n-th was written at `base_offset + n`.
    fn complete(self, base_offset: u64) {
        self.unbuffer();
        let partition = self.partition;
        for (offset, ack) in (base_offset..).zip(self.acks) {
            // A dropped send future just means nobody waits for this record.
            let _ = ack.send(Ok(RecordMetadata { partition, offset }));
        }
    }

    /// Fails every record with `err`.
    fn fail(self, err: &Error) {
        self.unbuffer();
        for ack in self.acks {
            let _ = ack.send(Err(err.clone()));
        }
    }

    /// The offset of the first record, if `response` is a valid answer for this batch.
    fn base_offset(&self, response: &pb::ProduceResponse) -> Result<u64> {
        let count = self.records.len();
        match response.partitions.as_slice() {
            [written]
                if written.partition == self.partition
                    && usize::try_from(written.record_count) == Ok(count)
                    && u64::try_from(count)
                        .ok()
                        .and_then(|n| written.base_offset.checked_add(n))
                        .is_some() =>
            {
                Ok(written.base_offset)
            }
            written => Err(Error::Protocol(format!(
                "a request of {count} record(s) for partition {} of topic '{}' was answered with {written:?}",
                self.partition, self.topic
            ))),
        }
    }
}

/// The batches of one partition.
#[derive(Debug, Default)]
struct PartitionState {
    /// The batch records are being added to.
    open: Option<Batch>,
    /// Closed batches waiting to be sent, in order.
    ready: VecDeque<Batch>,
    /// How many of its batches are awaiting an answer.
    in_flight: usize,
    /// Batches that failed with a retriable error, by request id, while others are still
    /// in flight. Non-empty = the partition sends nothing until they are queued again.
    failed: Vec<(u64, Batch)>,
    /// No sending before this (backoff after a failure).
    resume_at: Option<Instant>,
}

impl PartitionState {
    fn can_send(&self, now: Instant) -> bool {
        self.failed.is_empty()
            && !self.ready.is_empty()
            && self.resume_at.is_none_or(|at| now >= at)
    }

    fn is_idle(&self) -> bool {
        self.open.is_none()
            && self.ready.is_empty()
            && self.in_flight == 0
            && self.failed.is_empty()
    }

    /// Moves the open batch to the ready queue.
    fn close(&mut self, partitioner: &mut Partitioner) {
        if let Some(batch) = self.open.take() {
            partitioner.batch_closed(&batch.topic, batch.partition);
            self.ready.push_back(batch);
        }
    }

    /// Once nothing is in flight, queues the failed batches again, in the order they were
    /// first sent and ahead of the rest, after a backoff.
    fn requeue_failed(&mut self, backoff: Backoff, now: Instant) {
        if self.in_flight > 0 || self.failed.is_empty() {
            return;
        }
        self.failed.sort_by_key(|(request_id, _)| *request_id);
        let attempts = self.failed.first().map_or(1, |(_, batch)| batch.attempts);
        for (_, batch) in self.failed.drain(..).rev() {
            self.ready.push_front(batch);
        }
        self.resume_at = Some(now + backoff.delay(attempts));
    }
}

/// Every batch of a producer, from the first record to the answer.
#[derive(Debug)]
pub(crate) struct Pipeline {
    config: Config,
    partitioner: Partitioner,
    partitions: BTreeMap<(Arc<str>, u32), PartitionState>,
    /// Requests awaiting an answer, by request id (ids grow in sending order).
    in_flight: BTreeMap<u64, Batch>,
    next_request_id: u64,
    /// Encoded bytes of the records pushed that have no outcome yet.
    buffered: Arc<AtomicUsize>,
}

impl Pipeline {
    pub(crate) fn new(config: Config) -> Self {
        Pipeline {
            config,
            partitioner: Partitioner::default(),
            partitions: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_request_id: 0,
            buffered: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The count of buffered bytes, shared with whoever reports it.
    pub(crate) fn buffered(&self) -> &Arc<AtomicUsize> {
        &self.buffered
    }

    /// Counts `bytes` the producer holds outside the batches (records waiting for their
    /// topic's partition count) until [`release`](Self::release).
    pub(crate) fn hold(&self, bytes: usize) {
        self.buffered.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Stops counting `bytes` taken by [`hold`](Self::hold).
    pub(crate) fn release(&self, bytes: usize) {
        self.buffered.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Whether the pipeline takes more records: it holds less than `max_buffered_bytes`.
    pub(crate) fn has_room(&self) -> bool {
        self.buffered.load(Ordering::Acquire) < self.config.max_buffered_bytes
    }

    /// Adds a record of `topic`, which has `partitions` partitions, to its partition's open
    /// batch. `seq` numbers records in the order they were sent. A record that cannot be
    /// placed (a partition that does not exist) fails at once.
    pub(crate) fn push(
        &mut self,
        topic: &Arc<str>,
        shape: TopicShape,
        record: ProducerRecord,
        seq: u64,
        ack: Ack,
        now: Instant,
    ) {
        let partitions = shape.partitions;
        let sticky = record.partition.is_none() && record.key.is_none();
        let mut chosen =
            self.partitioner
                .choose(topic, partitions, record.partition, record.key.as_deref());
        let mut record = record.into_wire();
        if self.config.raw_batches && record.timestamp_ms == 0 {
            // Nobody downstream stamps a raw batch: the producer's clock does, as Kafka's.
            record.timestamp_ms = wall_clock_ms();
        }
        // A raw batch is sized as the server will measure it against `max.message.bytes`.
        let (size, batch_size) = if self.config.raw_batches {
            let room = shape
                .max_message_bytes
                .map_or(usize::MAX, |max| max.saturating_sub(HEADER_LEN).max(1));
            (raw_size(&record), self.config.batch_size.min(room))
        } else {
            (record.encoded_len(), self.config.batch_size)
        };
        if let Ok(partition) = chosen
            && let Some(state) = self.partitions.get_mut(&(Arc::clone(topic), partition))
            && state
                .open
                .as_ref()
                .is_some_and(|open| open.is_full_for(size, batch_size))
        {
            state.close(&mut self.partitioner);
            if sticky {
                // The sticky partition moved on with the closed batch: follow it.
                chosen = self.partitioner.choose(topic, partitions, None, None);
            }
        }
        let partition = match chosen {
            Ok(partition) => partition,
            Err(err) => {
                let _ = ack.send(Err(err));
                return;
            }
        };
        let state = self
            .partitions
            .entry((Arc::clone(topic), partition))
            .or_default();
        let batch = state
            .open
            .get_or_insert_with(|| Batch::new(topic, partition, seq, now, &self.buffered));
        batch.records.push(record);
        batch.acks.push(ack);
        batch.bytes += size;
        self.buffered.fetch_add(size, Ordering::AcqRel);
        if batch.is_full(batch_size) {
            state.close(&mut self.partitioner);
        }
    }

    /// Closes the open batches that lingered long enough and fails the waiting batches that
    /// are past the delivery timeout.
    pub(crate) fn tick(&mut self, now: Instant) {
        let Config {
            linger,
            delivery_timeout,
            ..
        } = self.config;
        for state in self.partitions.values_mut() {
            if state
                .open
                .as_ref()
                .is_some_and(|open| now >= open.created + linger)
            {
                state.close(&mut self.partitioner);
            }
            if state
                .ready
                .iter()
                .any(|batch| now >= batch.created + delivery_timeout)
            {
                for batch in std::mem::take(&mut state.ready) {
                    if now >= batch.created + delivery_timeout {
                        let last = batch.last_error.clone().map(Box::new);
                        batch.fail(&Error::DeliveryTimeout {
                            after: delivery_timeout,
                            last,
                        });
                    } else {
                        state.ready.push_back(batch);
                    }
                }
            }
        }
        self.partitions.retain(|_, state| !state.is_idle());
    }

    /// Closes every open batch, so that everything pushed so far is sent without lingering.
    pub(crate) fn close_all(&mut self) {
        for state in self.partitions.values_mut() {
            state.close(&mut self.partitioner);
        }
    }

    /// Whether a request could be sent now (ignoring the in-flight limit).
    pub(crate) fn has_sendable(&self, now: Instant) -> bool {
        self.partitions.values().any(|state| state.can_send(now))
    }

    /// The next request to send, if the in-flight limit allows one and a batch is ready:
    /// the ready batch holding the oldest record, among partitions not waiting on a retry.
    pub(crate) fn next_request(&mut self, now: Instant) -> Option<pb::ProduceRequest> {
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        let state = self
            .partitions
            .values_mut()
            .filter(|state| state.can_send(now))
            .min_by_key(|state| state.ready.front().map(|batch| batch.first_seq))?;
        let mut batch = state.ready.pop_front()?;
        state.in_flight += 1;
        state.resume_at = None;
        batch.attempts += 1;
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let mut request = pb::ProduceRequest {
            topic: batch.topic.to_string(),
            partition: Some(batch.partition),
            request_id,
            ..Default::default()
        };
        // A batch that cannot be encoded (only past the format's 2 GiB limit) goes as records.
        match encode_batch(&batch.records).filter(|_| self.config.raw_batches) {
            Some(encoded) => request.record_batches = encoded,
            None => request.records = batch.records.clone(),
        }
        self.in_flight.insert(request_id, batch);
        Some(request)
    }

    /// Handles the answer to request `request_id`.
    pub(crate) fn on_answer(
        &mut self,
        request_id: u64,
        answer: Result<pb::ProduceResponse>,
        now: Instant,
    ) {
        let Some(batch) = self.in_flight.remove(&request_id) else {
            tracing::warn!(request_id, "answer to a request not in flight");
            return;
        };
        match answer.and_then(|response| batch.base_offset(&response)) {
            Ok(base_offset) => {
                let backoff = self.config.backoff;
                if let Some(state) = self.state_of(&batch) {
                    state.in_flight = state.in_flight.saturating_sub(1);
                    state.requeue_failed(backoff, now);
                }
                batch.complete(base_offset);
            }
            Err(err) => {
                let retriable = err.is_retriable();
                self.failed(request_id, batch, err, retriable, now);
            }
        }
    }

    /// The request stream broke with `err`: no answer will come for the requests in flight.
    /// If the connection failed, they are all sent again. Otherwise the server ended the
    /// stream because of the first request it had not answered, which fails with `err`;
    /// the later ones are sent again.
    pub(crate) fn on_stream_broken(&mut self, err: &Error, now: Instant) {
        let transient = err.is_transient();
        for (position, (request_id, batch)) in
            std::mem::take(&mut self.in_flight).into_iter().enumerate()
        {
            self.failed(
                request_id,
                batch,
                err.clone(),
                transient || position > 0,
                now,
            );
        }
    }

    /// Records a failed attempt: a retriable failure with attempts and time left waits to
    /// be queued again; anything else fails the batch's records.
    fn failed(
        &mut self,
        request_id: u64,
        mut batch: Batch,
        err: Error,
        retriable: bool,
        now: Instant,
    ) {
        let Config {
            retries,
            backoff,
            delivery_timeout,
            ..
        } = self.config;
        let Some(state) = self.state_of(&batch) else {
            batch.fail(&err);
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        if !retriable || batch.attempts > retries {
            batch.fail(&err);
        } else if now >= batch.created + delivery_timeout {
            batch.fail(&Error::DeliveryTimeout {
                after: delivery_timeout,
                last: Some(Box::new(err)),
            });
        } else {
            tracing::debug!(error = %err, topic = %batch.topic, partition = batch.partition, attempts = batch.attempts, "produce request failed; will retry");
            batch.last_error = Some(err);
            state.failed.push((request_id, batch));
        }
        state.requeue_failed(backoff, now);
    }

    fn state_of(&mut self, batch: &Batch) -> Option<&mut PartitionState> {
        self.partitions
            .get_mut(&(Arc::clone(&batch.topic), batch.partition))
    }

    /// When [`tick`](Self::tick) has something to do or a retry may be sent.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let Config {
            linger,
            delivery_timeout,
            ..
        } = self.config;
        self.partitions
            .values()
            .flat_map(|state| {
                let linger_end = state.open.as_ref().map(|open| open.created + linger);
                let resume = state.resume_at.filter(|_| !state.ready.is_empty());
                let expiry = state
                    .ready
                    .iter()
                    .map(|batch| batch.created + delivery_timeout)
                    .min();
                [linger_end, resume, expiry].into_iter().flatten()
            })
            .min()
    }

    /// The sequence number of the oldest record not yet acknowledged or failed.
    pub(crate) fn oldest_pending(&self) -> Option<u64> {
        let waiting = self.partitions.values().flat_map(|state| {
            state
                .open
                .iter()
                .chain(&state.ready)
                .chain(state.failed.iter().map(|(_, batch)| batch))
        });
        waiting
            .chain(self.in_flight.values())
            .map(|batch| batch.first_seq)
            .min()
    }

    /// Whether no record is waiting for anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.partitions.values().all(PartitionState::is_idle)
    }
}

/// `records` as one uncompressed Kafka RecordBatch v2 (base offset 0, for the server to
/// assign), or `None` if the format cannot hold them.
fn encode_batch(records: &[pb::Record]) -> Option<Bytes> {
    let capacity = records.iter().map(|r| r.encoded_len() + 16).sum::<usize>() + HEADER_LEN;
    let mut builder = RecordBatchBuilder::with_capacity(capacity);
    for record in records {
        let headers = record
            .headers
            .iter()
            .map(|h| (h.key.as_bytes(), Some(&h.value[..])));
        builder
            .push(
                record.timestamp_ms,
                record.key.as_deref(),
                Some(&record.value),
                headers,
            )
            .ok()?;
    }
    builder.finish().map(BytesMut::freeze)
}

/// Milliseconds since the Unix epoch by the wall clock (0 before 1970).
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio::sync::oneshot::error::TryRecvError;
    use tonic::Code;

    use super::*;

    type Outcome = oneshot::Receiver<Result<RecordMetadata>>;

    fn config() -> Config {
        Config {
            linger: Duration::from_millis(5),
            batch_size: 1000,
            max_in_flight: 8,
            retries: 3,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            delivery_timeout: Duration::from_secs(60),
            max_buffered_bytes: 1 << 20,
            raw_batches: false,
        }
    }

    /// A pipeline with one topic "t" of `partitions` partitions, and a clock.
    struct Fixture {
        pipeline: Pipeline,
        topic: Arc<str>,
        partitions: u32,
        seq: u64,
        now: Instant,
    }

    impl Fixture {
        fn new(config: Config, partitions: u32) -> Self {
            Fixture {
                pipeline: Pipeline::new(config),
                topic: Arc::from("t"),
                partitions,
                seq: 0,
                now: Instant::now(),
            }
        }

        fn push(&mut self, record: ProducerRecord) -> Outcome {
            let (ack, outcome) = oneshot::channel();
            let shape = TopicShape {
                partitions: self.partitions,
                max_message_bytes: None,
            };
            self.pipeline
                .push(&self.topic, shape, record, self.seq, ack, self.now);
            self.seq += 1;
            outcome
        }

        /// Pushes a record of `value` to `partition`.
        fn push_to(&mut self, partition: u32, value: &str) -> Outcome {
            self.push(ProducerRecord::new("t", value.to_owned()).partition(partition))
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.pipeline.tick(self.now);
        }

        /// Every request the pipeline will send now.
        fn drain(&mut self) -> Vec<pb::ProduceRequest> {
            std::iter::from_fn(|| self.pipeline.next_request(self.now)).collect()
        }

        fn answer_ok(&mut self, request: &pb::ProduceRequest, base_offset: u64) {
            let response = pb::ProduceResponse {
                partitions: vec![pb::PartitionProduced {
                    partition: request.partition.unwrap_or_default(),
                    base_offset,
                    record_count: u32::try_from(request.records.len()).unwrap_or(u32::MAX),
                }],
            };
            self.pipeline
                .on_answer(request.request_id, Ok(response), self.now);
        }

        fn answer_err(&mut self, request: &pb::ProduceRequest, code: Code) {
            let err = Error::Server {
                code,
                message: format!("{code:?}"),
            };
            self.pipeline
                .on_answer(request.request_id, Err(err), self.now);
        }
    }

    fn values(request: &pb::ProduceRequest) -> Vec<String> {
        request
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    }

    fn outcome(rx: &mut Outcome) -> Option<Result<RecordMetadata>> {
        match rx.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Closed) => Some(Err(Error::ProducerClosed)),
        }
    }

    fn acked(rx: &mut Outcome) -> Option<(u32, u64)> {
        match outcome(rx) {
            Some(Ok(meta)) => Some((meta.partition, meta.offset)),
            _ => None,
        }
    }

    #[test]
    fn raw_batches_carry_the_records_encoded_and_stamped() {
        let mut f = Fixture::new(
            Config {
                raw_batches: true,
                ..config()
            },
            1,
        );
        let before = wall_clock_ms();
        let _a = f.push(
            ProducerRecord::new("t", "a")
                .key("k")
                .header("h", "1")
                .partition(0),
        );
        let _b = f.push(ProducerRecord::new("t", "b").timestamp_ms(42).partition(0));
        f.advance(Duration::from_millis(5));
        let requests = f.drain();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].records.is_empty(), "sent as a batch only");
        let mut decoded = Vec::new();
        for batch in sluice_storage::batch::batches(requests[0].record_batches.clone()) {
            let (_, bytes) = batch.expect("a whole batch");
            sluice_storage::batch::verify_crc(&bytes).expect("a valid CRC");
            for record in sluice_storage::batch::records(bytes).expect("records") {
                decoded.push(record.expect("a record"));
            }
        }
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(decoded[0].value.as_deref(), Some(&b"a"[..]));
        assert_eq!(&decoded[0].headers[0].0[..], b"h");
        assert!(decoded[0].timestamp_ms >= before, "stamped by the producer");
        assert_eq!(decoded[1].timestamp_ms, 42);
        assert_eq!(decoded[1].offset, 1);
    }

    #[test]
    fn raw_batches_fit_in_the_topics_max_message_bytes() {
        let mut pipeline = Pipeline::new(Config {
            raw_batches: true,
            ..config()
        });
        let topic: Arc<str> = Arc::from("t");
        let shape = TopicShape {
            partitions: 1,
            max_message_bytes: Some(600),
        };
        let now = Instant::now();
        let mut outcomes = Vec::new();
        for seq in 0..6 {
            let (ack, outcome) = oneshot::channel();
            let record = ProducerRecord::new("t", "x".repeat(100)).partition(0);
            pipeline.push(&topic, shape, record, seq, ack, now);
            outcomes.push(outcome);
        }
        pipeline.close_all();
        let requests: Vec<_> = std::iter::from_fn(|| pipeline.next_request(now)).collect();
        assert!(
            requests.len() >= 2,
            "six 100-byte records do not fit in 600 bytes"
        );
        for request in &requests {
            let len = request.record_batches.len();
            assert!(len <= 600, "a {len}-byte batch for max.message.bytes 600");
        }
    }

    #[test]
    fn buffered_bytes_count_records_until_their_outcome() {
        let mut f = Fixture::new(
            Config {
                max_buffered_bytes: 1000,
                ..config()
            },
            2,
        );
        let value = "x".repeat(400);
        let mut a = f.push_to(0, &value);
        assert!(f.pipeline.has_room());
        let mut b = f.push_to(1, &value);
        let mut c = f.push_to(1, &value);
        let held = f.pipeline.buffered().load(Ordering::Acquire);
        assert!(held > 1200, "three 400-byte records: {held}");
        assert!(!f.pipeline.has_room(), "full at {held} of 1000");
        f.advance(Duration::from_millis(5));
        let requests = f.drain();
        assert_eq!(requests.len(), 2);
        f.answer_ok(&requests[1], 10);
        assert_eq!(acked(&mut b), Some((1, 10)));
        assert_eq!(acked(&mut c), Some((1, 11)));
        assert!(f.pipeline.has_room(), "partition 1's records are done");
        // A failure gives the room back too.
        f.answer_err(&requests[0], Code::InvalidArgument);
        assert!(matches!(outcome(&mut a), Some(Err(_))));
        assert_eq!(f.pipeline.buffered().load(Ordering::Acquire), 0);
    }

    #[test]
    fn records_linger_then_go_out_as_one_batch() {
        let mut f = Fixture::new(config(), 2);
        let _a = f.push_to(0, "a");
        let _b = f.push_to(0, "b");
        assert!(f.drain().is_empty(), "sent before linger");
        f.advance(Duration::from_millis(4));
        assert!(f.drain().is_empty(), "sent before linger");
        f.advance(Duration::from_millis(1));
        let requests = f.drain();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].topic, "t");
        assert_eq!(requests[0].partition, Some(0));
        assert_eq!(values(&requests[0]), ["a", "b"]);
    }

    #[test]
    fn a_full_batch_goes_out_without_lingering() {
        let mut f = Fixture::new(config(), 1);
        let big = "x".repeat(400);
        for _ in 0..5 {
            f.push_to(0, &big);
        }
        // 400-byte values: two fit in 1000 bytes, the third opens a new batch.
        let requests = f.drain();
        assert_eq!(
            requests.iter().map(|r| r.records.len()).collect::<Vec<_>>(),
            [2, 2]
        );
        f.advance(Duration::from_millis(5));
        let rest = f.drain();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].records.len(), 1);
        assert!(requests[0].request_id < requests[1].request_id);
        assert!(requests[1].request_id < rest[0].request_id);
    }

    #[test]
    fn a_record_larger_than_the_batch_size_is_sent_alone() {
        let mut f = Fixture::new(config(), 1);
        f.push_to(0, "small");
        f.push_to(0, &"x".repeat(5000));
        let requests = f.drain();
        assert_eq!(
            requests.iter().map(|r| r.records.len()).collect::<Vec<_>>(),
            [1, 1]
        );
        assert_eq!(values(&requests[0]), ["small"]);
    }

    #[test]
    fn offsets_are_the_base_offset_plus_the_index_in_the_batch() {
        let mut f = Fixture::new(config(), 3);
        let mut outcomes: Vec<Outcome> = (0..5).map(|i| f.push_to(2, &i.to_string())).collect();
        f.advance(Duration::from_millis(5));
        let requests = f.drain();
        assert_eq!(requests.len(), 1);
        assert!(outcomes.iter_mut().all(|o| outcome(o).is_none()));
        f.answer_ok(&requests[0], 40);
        let got: Vec<_> = outcomes.iter_mut().map(acked).collect();
        let expected: Vec<_> = (40..45).map(|offset| Some((2, offset))).collect();
        assert_eq!(got, expected);
        assert!(f.pipeline.is_empty());
    }

    #[test]
    fn an_answer_that_does_not_match_the_batch_fails_it() {
        let mut f = Fixture::new(config(), 1);
        let mut a = f.push_to(0, "a");
        let mut b = f.push_to(0, "b");
        f.advance(Duration::from_millis(5));
        let request = f.drain().remove(0);
        let response = pb::ProduceResponse {
            partitions: vec![pb::PartitionProduced {
                partition: 0,
                base_offset: 0,
                record_count: 1,
            }],
        };
        f.pipeline
            .on_answer(request.request_id, Ok(response), f.now);
        assert!(matches!(outcome(&mut a), Some(Err(Error::Protocol(_)))));
        assert!(matches!(outcome(&mut b), Some(Err(Error::Protocol(_)))));
    }

    #[test]
    fn no_more_than_max_in_flight_requests_are_out() {
        let mut f = Fixture::new(
            Config {
                max_in_flight: 3,
                batch_size: 1,
                ..config()
            },
            1,
        );
        for i in 0..5 {
            f.push_to(0, &i.to_string());
        }
        let first = f.drain();
        assert_eq!(first.len(), 3);
        f.answer_ok(&first[0], 0);
        let second = f.drain();
        assert_eq!(second.len(), 1);
        assert_eq!(values(&second[0]), ["3"]);
    }

    #[test]
    fn keyed_records_are_batched_by_their_partition() {
        let mut f = Fixture::new(config(), 4);
        for key in ["alice", "bob", "carol", "dave", "erin"] {
            f.push(ProducerRecord::new("t", key).key(key));
        }
        f.advance(Duration::from_millis(5));
        for request in f.drain() {
            for record in &request.records {
                let key = record.key.as_deref().unwrap_or_default();
                assert_eq!(
                    request.partition,
                    Some(sluice_partitioner::partition_for_key(key, 4))
                );
            }
        }
    }

    #[test]
    fn keyless_records_fill_one_partition_per_batch() {
        let mut f = Fixture::new(
            Config {
                batch_size: 100,
                ..config()
            },
            3,
        );
        // 30-byte values: three per 100-byte batch.
        for i in 0..9 {
            f.push(ProducerRecord::new("t", format!("{i:030}")));
        }
        // The first two batches are full; the third goes out after lingering.
        let mut requests = f.drain();
        assert_eq!(requests.len(), 2);
        f.advance(Duration::from_millis(5));
        requests.extend(f.drain());
        assert_eq!(requests.len(), 3);
        let partitions: Vec<u32> = requests
            .iter()
            .map(|r| r.partition.unwrap_or(u32::MAX))
            .collect();
        for (i, request) in requests.iter().enumerate() {
            assert_eq!(request.records.len(), 3);
            assert_eq!(partitions[i], (partitions[0] + i as u32) % 3);
        }
    }

    #[test]
    fn an_unknown_partition_fails_the_record_at_once() {
        let mut f = Fixture::new(config(), 2);
        let mut rx = f.push_to(2, "x");
        assert!(matches!(
            outcome(&mut rx),
            Some(Err(Error::InvalidArgument(_)))
        ));
        assert!(f.pipeline.is_empty());
    }

    /// Sends `n` single-record batches of partition 0 ("0", "1", ...).
    fn in_flight_batches(f: &mut Fixture, n: usize) -> (Vec<Outcome>, Vec<pb::ProduceRequest>) {
        let outcomes = (0..n).map(|i| f.push_to(0, &i.to_string())).collect();
        let requests = f.drain();
        assert_eq!(requests.len(), n);
        (outcomes, requests)
    }

    fn single_record_config() -> Config {
        Config {
            batch_size: 1,
            ..config()
        }
    }

    #[test]
    fn a_retriable_failure_resends_it_and_every_later_batch_in_order() {
        let mut f = Fixture::new(single_record_config(), 2);
        let (mut outcomes, requests) = in_flight_batches(&mut f, 4);
        f.answer_ok(&requests[0], 10);
        f.answer_err(&requests[1], Code::Unavailable);
        // Partition 0 stalls until its other batches are answered; partition 1 goes on.
        let mut other = f.push_to(1, "other");
        let sent = f.drain();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].partition, Some(1));
        f.answer_ok(&sent[0], 0);
        assert_eq!(acked(&mut other), Some((1, 0)));
        f.answer_err(&requests[3], Code::Unavailable);
        assert!(f.drain().is_empty(), "resent while a batch is in flight");
        f.answer_err(&requests[2], Code::Unavailable);
        assert!(f.drain().is_empty(), "resent before the backoff");
        f.advance(Duration::from_millis(100));
        let resent = f.drain();
        assert_eq!(
            resent.iter().map(values).collect::<Vec<_>>(),
            [["1"], ["2"], ["3"]]
        );
        for (i, request) in resent.iter().enumerate() {
            f.answer_ok(request, 11 + i as u64);
        }
        let got: Vec<_> = outcomes.iter_mut().map(acked).collect();
        assert_eq!(
            got,
            [Some((0, 10)), Some((0, 11)), Some((0, 12)), Some((0, 13))]
        );
        assert!(f.pipeline.is_empty());
    }

    #[test]
    fn retried_batches_go_before_batches_that_were_waiting() {
        let mut f = Fixture::new(
            Config {
                max_in_flight: 2,
                ..single_record_config()
            },
            1,
        );
        for i in 0..4 {
            f.push_to(0, &i.to_string());
        }
        let first = f.drain();
        assert_eq!(first.len(), 2);
        f.answer_err(&first[0], Code::Unavailable);
        f.answer_err(&first[1], Code::Unavailable);
        f.advance(Duration::from_millis(100));
        let mut order = Vec::new();
        while !f.pipeline.is_empty() {
            for request in f.drain() {
                order.extend(values(&request));
                f.answer_ok(&request, 0);
            }
        }
        assert_eq!(order, ["0", "1", "2", "3"]);
    }

    #[test]
    fn a_non_retriable_error_fails_only_that_batch() {
        let mut f = Fixture::new(single_record_config(), 1);
        let (mut outcomes, requests) = in_flight_batches(&mut f, 3);
        f.answer_ok(&requests[0], 0);
        f.answer_err(&requests[1], Code::ResourceExhausted);
        f.answer_ok(&requests[2], 1);
        assert_eq!(acked(&mut outcomes[0]), Some((0, 0)));
        let failed = outcome(&mut outcomes[1]);
        assert!(
            matches!(&failed, Some(Err(e)) if e.code() == Some(Code::ResourceExhausted)),
            "{failed:?}"
        );
        assert_eq!(acked(&mut outcomes[2]), Some((0, 1)));
        assert!(f.pipeline.is_empty());
    }

    #[test]
    fn a_broken_stream_resends_everything_in_flight() {
        let mut f = Fixture::new(single_record_config(), 2);
        let mut a = f.push_to(0, "a");
        let mut b = f.push_to(1, "b");
        let mut c = f.push_to(0, "c");
        assert_eq!(f.drain().len(), 3);
        let err = Error::from(tonic::Status::unavailable("server shutting down"));
        f.pipeline.on_stream_broken(&err, f.now);
        f.advance(Duration::from_millis(100));
        let resent = f.drain();
        let sent: Vec<_> = resent
            .iter()
            .map(|r| (r.partition.unwrap_or(u32::MAX), values(r)))
            .collect();
        assert_eq!(
            sent,
            [
                (0, vec!["a".to_owned()]),
                (1, vec!["b".to_owned()]),
                (0, vec!["c".to_owned()])
            ]
        );
        for request in &resent {
            f.answer_ok(request, 7);
        }
        assert_eq!(acked(&mut a), Some((0, 7)));
        assert_eq!(acked(&mut b), Some((1, 7)));
        assert_eq!(acked(&mut c), Some((0, 7)));
    }

    #[test]
    fn a_stream_refused_by_the_server_fails_the_first_unanswered_request() {
        let mut f = Fixture::new(single_record_config(), 1);
        let (mut outcomes, _requests) = in_flight_batches(&mut f, 2);
        let err = Error::from(tonic::Status::resource_exhausted("request too large"));
        f.pipeline.on_stream_broken(&err, f.now);
        assert!(matches!(
            outcome(&mut outcomes[0]),
            Some(Err(Error::Server {
                code: Code::ResourceExhausted,
                ..
            }))
        ));
        f.advance(Duration::from_millis(100));
        let resent = f.drain();
        assert_eq!(resent.iter().map(values).collect::<Vec<_>>(), [["1"]]);
        f.answer_ok(&resent[0], 3);
        assert_eq!(acked(&mut outcomes[1]), Some((0, 3)));
    }

    #[test]
    fn retries_back_off_and_give_up_with_the_last_error() {
        let mut f = Fixture::new(
            Config {
                retries: 2,
                ..single_record_config()
            },
            1,
        );
        let mut rx = f.push_to(0, "a");
        let mut gaps = Vec::new();
        for _ in 0..3 {
            let mut waited = Duration::ZERO;
            let request = loop {
                if let Some(request) = f.pipeline.next_request(f.now) {
                    break request;
                }
                f.advance(Duration::from_millis(50));
                waited += Duration::from_millis(50);
            };
            gaps.push(waited.as_millis());
            f.answer_err(&request, Code::Unavailable);
        }
        assert_eq!(gaps, [0, 100, 200]);
        assert!(matches!(
            outcome(&mut rx),
            Some(Err(Error::Server {
                code: Code::Unavailable,
                ..
            }))
        ));
        assert!(f.pipeline.is_empty());
    }

    #[test]
    fn waiting_batches_expire_after_the_delivery_timeout() {
        let mut f = Fixture::new(
            Config {
                delivery_timeout: Duration::from_secs(1),
                ..config()
            },
            1,
        );
        let mut rx = f.push_to(0, "a");
        f.advance(Duration::from_millis(5));
        assert_eq!(
            f.pipeline.next_deadline(),
            Some(f.now + Duration::from_millis(995))
        );
        f.advance(Duration::from_millis(995));
        assert!(matches!(
            outcome(&mut rx),
            Some(Err(Error::DeliveryTimeout { last: None, .. }))
        ));
        assert!(f.pipeline.is_empty());
    }

    #[test]
    fn oldest_pending_tracks_unfinished_records() {
        let mut f = Fixture::new(single_record_config(), 2);
        assert_eq!(f.pipeline.oldest_pending(), None);
        f.push_to(0, "a");
        f.push_to(1, "b");
        let requests = f.drain();
        assert_eq!(f.pipeline.oldest_pending(), Some(0));
        f.answer_ok(&requests[0], 0);
        assert_eq!(f.pipeline.oldest_pending(), Some(1));
        f.answer_ok(&requests[1], 0);
        assert_eq!(f.pipeline.oldest_pending(), None);
    }

    #[test]
    fn close_all_sends_without_lingering() {
        let mut f = Fixture::new(config(), 1);
        f.push(ProducerRecord::new("t", Bytes::from_static(b"a")).partition(0));
        assert!(f.drain().is_empty());
        f.pipeline.close_all();
        assert_eq!(f.drain().len(), 1);
    }
}
