//! Consuming as a member of a share group over `ShareGroups.ShareConsume`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::Transport;
use sluice_proto::v1::share_groups_client::ShareGroupsClient;
use sluice_proto::v1::{self as pb, share_consume_request, share_consume_response};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Refusal, Result};
use crate::group_consumer::OffsetReset;
use crate::record::ConsumerRecord;

/// Wait before joining again after the connection broke, doubling up to the maximum.
const REJOIN_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(2),
};
/// Client messages buffered towards the server.
const OUTGOING_MESSAGES: usize = 16;
/// How long [`ShareConsumer::close`] waits for the server to end the stream.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The prefetch of a consumer that does not choose one.
const DEFAULT_PREFETCH: u32 = 100;

/// What a share consumer says about a record it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// Processed: never delivered again.
    Accept,
    /// Not processed: offered again (after the group's redelivery backoff) to any member.
    Release,
    /// Cannot be processed: never delivered again; appended to the group's dead-letter
    /// topic if it has one.
    Reject,
}

/// A record a [`ShareConsumer`] holds under a lock until it acknowledges it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareRecord {
    /// The record.
    pub record: ConsumerRecord,
    /// How many times it has been delivered, this time included: 1 on its first delivery.
    pub delivery_count: u32,
}

/// Settings of a [`ShareConsumer`]; made by [`Client::share_consumer`].
#[derive(Debug, Clone)]
pub struct ShareConsumerBuilder {
    client: Client,
    group: String,
    topics: BTreeSet<String>,
    prefetch: u32,
    auto_accept: bool,
    settings: Option<pb::ShareGroupSettings>,
}

impl ShareConsumerBuilder {
    pub(crate) fn new(client: Client, group: String) -> Self {
        ShareConsumerBuilder {
            client,
            group,
            topics: BTreeSet::new(),
            prefetch: DEFAULT_PREFETCH,
            auto_accept: false,
            settings: None,
        }
    }

    /// Reads `topic` (may be repeated; at least one topic is required).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.insert(topic.into());
        self
    }

    /// Reads these topics (added to any given before).
    pub fn topics<T: Into<String>>(mut self, topics: impl IntoIterator<Item = T>) -> Self {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// The most records the consumer holds unacknowledged (returned by
    /// [`ShareConsumer::poll`] and not yet acknowledged, plus those on their way), from 1 to
    /// the server's `share.max_prefetch` (1000 by default). Default 100.
    pub fn prefetch(mut self, prefetch: u32) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Auto-accept: every record a [`ShareConsumer::poll`] returned and the caller did not
    /// acknowledge is accepted by the next `poll` and by [`ShareConsumer::close`] (not by
    /// dropping the consumer, which releases them). Default off: every record must be
    /// acknowledged.
    pub fn auto_accept(mut self, auto_accept: bool) -> Self {
        self.auto_accept = auto_accept;
        self
    }

    fn settings(&mut self) -> &mut pb::ShareGroupSettings {
        self.settings.get_or_insert_with(Default::default)
    }

    /// If this consumer creates the group: how long a record may be held before it is
    /// released again (the server's `share.record.lock.duration.ms` otherwise).
    pub fn record_lock_duration(mut self, duration: Duration) -> Self {
        self.settings().record_lock_duration_ms = Some(millis(duration));
        self
    }

    /// If this consumer creates the group: deliveries of a record after which it is
    /// dead-lettered instead (the server's `share.delivery.attempt.limit` otherwise).
    pub fn delivery_attempt_limit(mut self, limit: u32) -> Self {
        self.settings().delivery_attempt_limit = Some(limit);
        self
    }

    /// If this consumer creates the group: the topic rejected records and records past the
    /// delivery attempt limit are appended to.
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.settings().dead_letter_topic = Some(topic.into());
        self
    }

    /// If this consumer creates the group: how long a released record waits before it is
    /// offered again.
    pub fn redelivery_backoff(mut self, backoff: Duration) -> Self {
        self.settings().redelivery_backoff_ms = Some(millis(backoff));
        self
    }

    /// If this consumer creates the group: where it starts in each partition. Default
    /// [`OffsetReset::Latest`], as in Kafka.
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        let reset = match reset {
            OffsetReset::Earliest => pb::OffsetReset::Earliest,
            OffsetReset::Latest => pb::OffsetReset::Latest,
        };
        self.settings().auto_offset_reset = reset.into();
        self
    }

    /// The consumer. It joins the group on the first [`ShareConsumer::poll`].
    pub fn build(self) -> ShareConsumer {
        ShareConsumer {
            share: self.client.share_groups_service(),
            join: pb::ShareJoin {
                group: self.group,
                topics: self.topics.into_iter().collect(),
                prefetch: self.prefetch,
                credit: 0,
                settings: self.settings,
            },
            auto_accept: self.auto_accept,
            session: None,
            failures: 0,
        }
    }
}

/// A member of a share group: it takes records of the group's topics one by one, each
/// under a lock, shared with any number of other members, and acknowledges each.
///
/// [`poll`](Self::poll) returns records; each must then be acknowledged with
/// [`accept`](Self::accept) (processed), [`release`](Self::release) (to be delivered again,
/// to any member) or [`reject`](Self::reject) (never to be delivered again; dead-lettered
/// if the group has a dead-letter topic), or, with
/// [`auto_accept`](ShareConsumerBuilder::auto_accept), is accepted by the next `poll` or by
/// [`close`](Self::close). Acknowledgements are queued and sent by the next `poll`,
/// [`commit`](Self::commit) or `close`, each of which returns once they are durable on the
/// server. A record held longer than the group's lock duration (30 s by default; extend it
/// with [`renew`](Self::renew)) is released by the server and its acknowledgement refused
/// ([`Error::Refused`]).
///
/// Delivery is at least once: when the consumer is dropped, its connection breaks or its
/// locks expire, the records it holds unacknowledged (including acknowledgements queued but
/// not yet sent) are delivered again, to another member or to this one after it joins
/// again. [`ShareRecord::delivery_count`] says how often a record was delivered.
///
/// ```no_run
/// use std::time::Duration;
///
/// # async fn example() -> sluice_client::Result<()> {
/// let client = sluice_client::Client::connect("http://127.0.0.1:50051").await?;
/// let mut worker = client.share_consumer("workers").topic("jobs").build();
/// loop {
///     for job in worker.poll(100, Duration::from_secs(1)).await? {
///         if job.record.value.is_empty() {
///             worker.reject(&job)?;
///         } else {
///             println!("{}@{}", job.record.partition, job.record.offset);
///             worker.accept(&job)?;
///         }
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct ShareConsumer {
    share: ShareGroupsClient<Transport>,
    join: pb::ShareJoin,
    auto_accept: bool,
    session: Option<Session>,
    /// Consecutive failed attempts to join.
    failures: u32,
}

impl ShareConsumer {
    /// Sends the queued acknowledgements (first accepting, in auto-accept mode, every record
    /// returned before and not acknowledged) and waits until they are durable, then returns
    /// up to `max_records` records, waiting up to `max_wait` for the first. Empty when none
    /// came in time.
    ///
    /// Joins the group first if needed; connection failures are retried (with backoff)
    /// until `max_wait` has passed, the acknowledgements queued for the lost connection
    /// being dropped (their records are delivered again). Other errors are returned, among
    /// them [`Error::Refused`] when some acknowledgements were refused (the others were
    /// applied; call `poll` again to go on).
    pub async fn poll(&mut self, max_records: u32, max_wait: Duration) -> Result<Vec<ShareRecord>> {
        let deadline = Instant::now() + max_wait;
        if self.auto_accept
            && let Some(session) = &mut self.session
        {
            session.accept_all();
        }
        loop {
            if self.session.is_none() {
                match self.open().await {
                    Ok(()) => self.failures = 0,
                    Err(err) => {
                        self.back_off(err, deadline).await?;
                        if Instant::now() >= deadline {
                            return Ok(Vec::new());
                        }
                        continue;
                    }
                }
            }
            let Some(session) = &mut self.session else {
                continue;
            };
            match session.poll(max_records, deadline).await {
                Ok(records) => return Ok(records),
                Err(err) if err.is_transient() => {
                    self.lose(&err);
                    self.back_off(err, deadline).await?;
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Queues the acceptance of `record`: processed, never delivered again.
    ///
    /// Fails with [`Error::InvalidArgument`] for a record this consumer does not hold (not
    /// returned by its `poll`, acknowledged already, or returned before its connection
    /// was lost).
    pub fn accept(&mut self, record: &ShareRecord) -> Result<()> {
        self.acknowledge(record, AckKind::Accept)
    }

    /// Queues the release of `record`: delivered again, to any member, after the group's
    /// redelivery backoff; past the group's delivery attempt limit it is dead-lettered
    /// instead. Fails as [`accept`](Self::accept) does.
    pub fn release(&mut self, record: &ShareRecord) -> Result<()> {
        self.acknowledge(record, AckKind::Release)
    }

    /// Queues the rejection of `record`: never delivered again, appended to the group's
    /// dead-letter topic if it has one. Fails as [`accept`](Self::accept) does.
    pub fn reject(&mut self, record: &ShareRecord) -> Result<()> {
        self.acknowledge(record, AckKind::Reject)
    }

    /// Queues an acknowledgement of `record`. Fails as [`accept`](Self::accept) does.
    pub fn acknowledge(&mut self, record: &ShareRecord, kind: AckKind) -> Result<()> {
        match &mut self.session {
            Some(session) => session.acknowledge(record, kind),
            None => Err(not_held(record)),
        }
    }

    /// Sends the queued acknowledgements and waits until the server has stored them
    /// durably. Fails with [`Error::Refused`] for refused ones (the others were applied),
    /// and with the server's or the connection's error otherwise; after a connection
    /// failure, the next `poll` joins again and the records concerned are delivered again.
    pub async fn commit(&mut self) -> Result<()> {
        let Some(session) = &mut self.session else {
            return Ok(());
        };
        let result = session.flush().await;
        if let Err(err) = &result
            && err.is_transient()
        {
            self.lose(err);
        }
        result
    }

    /// Extends the locks of these held records by the group's lock duration, counted from
    /// now. Fails with [`Error::Refused`] for records whose lock could not be extended (for
    /// example because it had expired), and as [`accept`](Self::accept) does for records
    /// this consumer does not hold.
    pub async fn renew(&mut self, records: &[&ShareRecord]) -> Result<()> {
        let Some(session) = &mut self.session else {
            return match records.first() {
                Some(record) => Err(not_held(record)),
                None => Ok(()),
            };
        };
        let result = session.renew(records).await;
        if let Err(err) = &result
            && err.is_transient()
        {
            self.lose(err);
        }
        result
    }

    /// The member id the server gave this consumer, once joined.
    pub fn member_id(&self) -> Option<&str> {
        self.session
            .as_ref()
            .map(|session| session.member_id.as_str())
    }

    /// The group's settings, as the server reported them when this consumer joined.
    pub fn group_settings(&self) -> Option<&pb::ShareGroupSettings> {
        self.session.as_ref().map(|session| &session.settings)
    }

    /// Records returned by `poll` and not yet acknowledged.
    pub fn held(&self) -> usize {
        self.session
            .as_ref()
            .map_or(0, |session| session.unacknowledged.len())
    }

    /// In auto-accept mode accepts every record returned and not acknowledged; sends the
    /// queued acknowledgements and waits until they are durable; then leaves the group.
    /// The records still held (not acknowledged, or received and not yet returned) are
    /// released by the server, their delivery counts kept.
    pub async fn close(mut self) -> Result<()> {
        let Some(mut session) = self.session.take() else {
            return Ok(());
        };
        if self.auto_accept {
            session.accept_all();
        }
        let flushed = session.flush().await;
        session.leave().await;
        flushed
    }

    /// Joins the group on a new `ShareConsume` stream and waits for the answer.
    async fn open(&mut self) -> Result<()> {
        let (requests, outgoing) = mpsc::channel(OUTGOING_MESSAGES);
        let join = pb::ShareConsumeRequest {
            kind: Some(share_consume_request::Kind::Join(self.join.clone())),
        };
        requests.send(join).await.map_err(|_| closed())?;
        let mut responses = self
            .share
            .share_consume(ReceiverStream::new(outgoing))
            .await?
            .into_inner();
        let first = responses.message().await?.ok_or_else(closed)?;
        let Some(share_consume_response::Kind::Joined(joined)) = first.kind else {
            return Err(Error::Protocol(
                "the first message of a share group stream is not a ShareJoined".into(),
            ));
        };
        self.session = Some(Session {
            requests,
            responses,
            member_id: joined.member_id,
            settings: joined.settings.unwrap_or_default(),
            buffered: VecDeque::new(),
            unacknowledged: HashSet::new(),
            queued: Queued::default(),
            credit: 0,
            next_id: 0,
            answers: HashMap::new(),
        });
        Ok(())
    }

    /// Ends the session after `err`: its records (held, queued and buffered) go back to the
    /// group on the server.
    fn lose(&mut self, err: &Error) {
        if self.session.take().is_some() {
            tracing::warn!(error = %err, group = %self.join.group, "left the share group");
        }
    }

    /// Waits before joining again after a connection failure, at most until `deadline`;
    /// returns any other error.
    async fn back_off(&mut self, err: Error, deadline: Instant) -> Result<()> {
        if !err.is_transient() {
            self.failures = 0;
            return Err(err);
        }
        self.failures = self.failures.saturating_add(1);
        let delay = REJOIN_BACKOFF.delay(self.failures);
        tracing::warn!(error = %err, group = %self.join.group, retry_in = ?delay, "share group stream interrupted");
        tokio::time::sleep_until(deadline.min(Instant::now() + delay)).await;
        Ok(())
    }
}

/// A record's identity: topic, partition, offset.
type RecordKey = (Arc<str>, u32, u64);

fn key_of(record: &ShareRecord) -> RecordKey {
    (
        Arc::clone(&record.record.topic),
        record.record.partition,
        record.record.offset,
    )
}

fn not_held(record: &ShareRecord) -> Error {
    Error::InvalidArgument(format!(
        "offset {} of partition {} of topic '{}' is not held by this consumer (not returned by its poll, acknowledged already, or returned before its connection was lost)",
        record.record.offset, record.record.partition, record.record.topic
    ))
}

/// Offsets by partition.
type OffsetsByPartition = BTreeMap<(Arc<str>, u32), Vec<u64>>;

/// Acknowledgements not yet sent, by kind and partition.
#[derive(Debug, Default)]
struct Queued {
    /// Accepts, releases, rejects.
    by_kind: [OffsetsByPartition; 3],
}

impl Queued {
    fn push(&mut self, (topic, partition, offset): RecordKey, kind: AckKind) {
        let index = match kind {
            AckKind::Accept => 0,
            AckKind::Release => 1,
            AckKind::Reject => 2,
        };
        self.by_kind[index]
            .entry((topic, partition))
            .or_default()
            .push(offset);
    }

    fn is_empty(&self) -> bool {
        self.by_kind.iter().all(BTreeMap::is_empty)
    }

    /// The wire message of everything queued, which is emptied.
    fn take(&mut self, ack_id: u64) -> pb::ShareAcknowledge {
        let [accept, release, reject] = std::mem::take(&mut self.by_kind)
            .map(|lists| lists.into_iter().map(partition_offsets).collect());
        pb::ShareAcknowledge {
            ack_id,
            accept,
            release,
            reject,
        }
    }
}

/// One partition's offsets on the wire.
fn partition_offsets(
    ((topic, partition), offsets): ((Arc<str>, u32), Vec<u64>),
) -> pb::PartitionOffsets {
    pb::PartitionOffsets {
        topic: topic.to_string(),
        partition,
        offsets,
    }
}

/// The answer to an acknowledgement or renewal.
#[derive(Debug)]
enum Answer {
    Acknowledged(pb::ShareAcknowledged),
    Renewed(pb::ShareRenewed),
}

/// One membership: an open `ShareConsume` stream and the records it holds.
#[derive(Debug)]
struct Session {
    requests: mpsc::Sender<pb::ShareConsumeRequest>,
    responses: Streaming<pb::ShareConsumeResponse>,
    member_id: String,
    settings: pb::ShareGroupSettings,
    /// Records received and not yet returned.
    buffered: VecDeque<ShareRecord>,
    /// Records returned and not yet acknowledged.
    unacknowledged: HashSet<RecordKey>,
    queued: Queued,
    /// Credit given to the server and not yet used: records on their way.
    credit: u64,
    next_id: u64,
    /// Answers received, by ack or renew id.
    answers: HashMap<u64, Answer>,
}

impl Session {
    /// Asks for enough records to return `max_records`, flushes the queued
    /// acknowledgements, and returns what came by `deadline` (waiting only for the first).
    ///
    /// The credit goes out before the acknowledgements: the server then acquires the next
    /// records as soon as the acknowledgements free prefetch room, and makes both durable
    /// together, instead of waiting for another round trip.
    async fn poll(&mut self, max_records: u32, deadline: Instant) -> Result<Vec<ShareRecord>> {
        let wanted = u64::from(max_records);
        let coming = self.buffered.len() as u64 + self.credit;
        if wanted > coming {
            let more = u32::try_from(wanted - coming).unwrap_or(u32::MAX);
            self.send(share_consume_request::Kind::Credit(pb::ShareCredit {
                records: more,
            }))
            .await?;
            self.credit += u64::from(more);
        }
        self.flush().await?;
        if max_records == 0 {
            return Ok(Vec::new());
        }
        while self.buffered.is_empty() {
            match tokio::time::timeout_at(deadline, self.responses.message()).await {
                Ok(message) => self.handle(message?.ok_or_else(closed)?)?,
                Err(_elapsed) => break,
            }
        }
        let count = self.buffered.len().min(max_records as usize);
        let records: Vec<ShareRecord> = self.buffered.drain(..count).collect();
        self.unacknowledged.extend(records.iter().map(key_of));
        Ok(records)
    }

    fn acknowledge(&mut self, record: &ShareRecord, kind: AckKind) -> Result<()> {
        let key = key_of(record);
        if !self.unacknowledged.remove(&key) {
            return Err(not_held(record));
        }
        self.queued.push(key, kind);
        Ok(())
    }

    /// Queues the acceptance of every record returned and not acknowledged.
    fn accept_all(&mut self) {
        for key in std::mem::take(&mut self.unacknowledged) {
            self.queued.push(key, AckKind::Accept);
        }
    }

    /// Sends the queued acknowledgements and waits for their answer.
    async fn flush(&mut self) -> Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let id = self.next_id();
        let message = self.queued.take(id);
        self.send(share_consume_request::Kind::Acknowledge(message))
            .await?;
        let Answer::Acknowledged(answer) = self.answer(id).await? else {
            return Err(Error::Protocol(format!(
                "acknowledgement {id} was answered as a renewal"
            )));
        };
        if let Some(error) = answer.error {
            return Err(Error::Server {
                code: Code::from_i32(error.code),
                message: error.message,
            });
        }
        refusals(answer.refused)
    }

    async fn renew(&mut self, records: &[&ShareRecord]) -> Result<()> {
        if let Some(record) = records
            .iter()
            .find(|record| !self.unacknowledged.contains(&key_of(record)))
        {
            return Err(not_held(record));
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut by_partition = OffsetsByPartition::new();
        for (topic, partition, offset) in records.iter().map(|record| key_of(record)) {
            by_partition
                .entry((topic, partition))
                .or_default()
                .push(offset);
        }
        let id = self.next_id();
        let renew = pb::ShareRenew {
            renew_id: id,
            records: by_partition.into_iter().map(partition_offsets).collect(),
        };
        self.send(share_consume_request::Kind::Renew(renew)).await?;
        let Answer::Renewed(answer) = self.answer(id).await? else {
            return Err(Error::Protocol(format!(
                "renewal {id} was answered as an acknowledgement"
            )));
        };
        refusals(answer.refused)
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn send(&mut self, kind: share_consume_request::Kind) -> Result<()> {
        let message = pb::ShareConsumeRequest { kind: Some(kind) };
        self.requests.send(message).await.map_err(|_| closed())
    }

    /// Reads server messages (buffering records) until the answer with `id` has come.
    async fn answer(&mut self, id: u64) -> Result<Answer> {
        loop {
            if let Some(answer) = self.answers.remove(&id) {
                return Ok(answer);
            }
            let message = self.responses.message().await?.ok_or_else(closed)?;
            self.handle(message)?;
        }
    }

    /// Applies one server message: records are buffered, answers kept.
    fn handle(&mut self, message: pb::ShareConsumeResponse) -> Result<()> {
        match message.kind {
            Some(share_consume_response::Kind::Records(records)) => {
                for partition in records.partitions {
                    let topic: Arc<str> = partition.topic.into();
                    for acquired in partition.records {
                        let Some(record) = acquired.record else {
                            return Err(Error::Protocol(
                                "an acquired record without content".into(),
                            ));
                        };
                        self.credit = self.credit.saturating_sub(1);
                        self.buffered.push_back(ShareRecord {
                            record: ConsumerRecord::from_wire(&topic, partition.partition, record),
                            delivery_count: acquired.delivery_count,
                        });
                    }
                }
            }
            Some(share_consume_response::Kind::Acknowledged(answer)) => {
                self.answers
                    .insert(answer.ack_id, Answer::Acknowledged(answer));
            }
            Some(share_consume_response::Kind::Renewed(answer)) => {
                self.answers
                    .insert(answer.renew_id, Answer::Renewed(answer));
            }
            Some(share_consume_response::Kind::Joined(_)) => {
                return Err(Error::Protocol("a second ShareJoined".into()));
            }
            None => {
                return Err(Error::Protocol(
                    "a share group message without content".into(),
                ));
            }
        }
        Ok(())
    }

    /// Closes the request side, so the server ends the membership, and waits briefly for
    /// it to end the stream.
    async fn leave(self) {
        let Session {
            requests,
            mut responses,
            ..
        } = self;
        drop(requests);
        let drain = async { while let Ok(Some(_)) = responses.message().await {} };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
    }
}

/// `Ok` when nothing was refused, else [`Error::Refused`].
fn refusals(refused: Vec<pb::ShareRecordError>) -> Result<()> {
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(
        refused
            .into_iter()
            .map(|refusal| {
                let error = refusal.error.unwrap_or_default();
                Refusal {
                    topic: refusal.topic.into(),
                    partition: refusal.partition,
                    offset: refusal.offset,
                    code: Code::from_i32(error.code),
                    message: error.message,
                }
            })
            .collect(),
    ))
}

/// The error of a share group stream the server ended.
fn closed() -> Error {
    Error::Server {
        code: Code::Unavailable,
        message: "the server ended the share group stream".into(),
    }
}

/// A duration in whole milliseconds, saturating.
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(topic: &str, partition: u32, offset: u64) -> ShareRecord {
        ShareRecord {
            record: ConsumerRecord {
                topic: topic.into(),
                partition,
                offset,
                timestamp_ms: 0,
                key: None,
                value: Bytes::new(),
                headers: vec![],
            },
            delivery_count: 1,
        }
    }

    #[test]
    fn queued_acknowledgements_group_by_kind_and_partition() {
        let mut queued = Queued::default();
        assert!(queued.is_empty());
        queued.push(key_of(&record("b", 0, 4)), AckKind::Accept);
        queued.push(key_of(&record("a", 1, 2)), AckKind::Accept);
        queued.push(key_of(&record("a", 1, 3)), AckKind::Accept);
        queued.push(key_of(&record("a", 1, 9)), AckKind::Reject);
        assert!(!queued.is_empty());
        let message = queued.take(7);
        assert!(queued.is_empty());
        assert_eq!(message.ack_id, 7);
        let accept: Vec<(&str, u32, &[u64])> = message
            .accept
            .iter()
            .map(|p| (p.topic.as_str(), p.partition, p.offsets.as_slice()))
            .collect();
        assert_eq!(accept, [("a", 1, &[2, 3][..]), ("b", 0, &[4][..])]);
        assert!(message.release.is_empty());
        assert_eq!(message.reject.len(), 1);
        assert_eq!(message.reject[0].offsets, [9]);
    }

    #[test]
    fn refusals_become_one_error() {
        assert!(refusals(vec![]).is_ok());
        let err = refusals(vec![pb::ShareRecordError {
            topic: "jobs".into(),
            partition: 0,
            offset: 7,
            error: Some(pb::Error {
                code: Code::FailedPrecondition.into(),
                message: "lock expired".into(),
            }),
        }])
        .expect_err("refused");
        let Error::Refused(refused) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(refused[0].code, Code::FailedPrecondition);
        assert_eq!(
            err.to_string(),
            "1 record(s) refused; the first, offset 7 of partition 0 of 'jobs': lock expired"
        );
    }
}
