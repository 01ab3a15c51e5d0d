//! Consuming as a member of a consumer group over `Groups.Consume`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::credentials::Transport;
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::{self as pb, consume_request, consume_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::record::ConsumerRecord;

/// Wait before joining again after the connection broke, doubling up to the maximum.
const REJOIN_BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(2),
};
/// Heartbeat interval used if the server does not name one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);
/// Client messages buffered towards the server.
const OUTGOING_MESSAGES: usize = 16;
/// How long [`GroupConsumer::close`] waits for the server to end the stream.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
}

/// Where a member starts reading a partition its group has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The earliest stored record.
    Earliest,
    /// Only records produced from now on.
    #[default]
    Latest,
}

/// What [`GroupConsumer::next`] returns.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupEvent {
    /// These partitions now belong to this member; their records follow, starting at the
    /// group's committed offsets.
    Assigned(Vec<TopicPartition>),
    /// These partitions are taken away. No more of their records come. Until the next call
    /// of [`GroupConsumer::next`] they still belong to this member, so
    /// [`GroupConsumer::commit`] can record the progress made on them; that next call
    /// (after committing, when auto-commit is on) hands them over.
    ///
    /// When the connection to the server is lost, every partition is revoked at once and
    /// cannot be committed any more: records returned since the last commit will be
    /// delivered again, to this member after it rejoins or to another one.
    Revoked(Vec<TopicPartition>),
    /// A record of an assigned partition.
    Record(ConsumerRecord),
}

/// Settings of a [`GroupConsumer`]; made by [`Client::group_consumer`].
#[derive(Debug, Clone)]
pub struct GroupConsumerBuilder {
    client: Client,
    group: String,
    topics: BTreeSet<String>,
    instance_id: Option<String>,
    offset_reset: OffsetReset,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    auto_commit_interval: Option<Duration>,
    max_bytes: u32,
}

impl GroupConsumerBuilder {
    pub(crate) fn new(client: Client, group: String) -> Self {
        GroupConsumerBuilder {
            client,
            group,
            topics: BTreeSet::new(),
            instance_id: None,
            offset_reset: OffsetReset::Latest,
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            auto_commit_interval: Some(Duration::from_secs(5)),
            max_bytes: 0,
        }
    }

    /// Consumes `topic` (may be repeated; at least one topic is required).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.insert(topic.into());
        self
    }

    /// Consumes these topics (added to any given before).
    pub fn topics<T: Into<String>>(mut self, topics: impl IntoIterator<Item = T>) -> Self {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// Static membership: a stable id for this consumer instance. A static member that
    /// reconnects within its session timeout gets its partitions back without a rebalance.
    pub fn instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = Some(instance_id.into());
        self
    }

    /// Where to start in partitions without a committed offset. Default
    /// [`OffsetReset::Latest`].
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = reset;
        self
    }

    /// How long the member may be silent (or, when static, disconnected) before it loses
    /// its partitions. Default: the server's (45 s).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long the member may take to hand over revoked partitions before the server
    /// moves them anyway. Default: the server's (30 s).
    pub fn rebalance_timeout(mut self, timeout: Duration) -> Self {
        self.rebalance_timeout = timeout;
        self
    }

    /// Commit the progress automatically this often (and before handing over revoked
    /// partitions, and on [`GroupConsumer::close`]); `None` commits only on
    /// [`GroupConsumer::commit`]. Default every 5 s.
    pub fn auto_commit_interval(mut self, interval: Option<Duration>) -> Self {
        self.auto_commit_interval = interval;
        self
    }

    /// Soft limit on the stored bytes of records the server sends in one message; 0 (the
    /// default) leaves it to the server.
    pub fn max_bytes(mut self, max_bytes: u32) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The consumer. It joins the group on the first [`GroupConsumer::next`].
    pub fn build(self) -> GroupConsumer {
        let reset = match self.offset_reset {
            OffsetReset::Earliest => pb::OffsetReset::Earliest,
            OffsetReset::Latest => pb::OffsetReset::Latest,
        };
        GroupConsumer {
            groups: self.client.groups_service(),
            join: pb::JoinGroup {
                group: self.group,
                topics: self.topics.into_iter().collect(),
                instance_id: self.instance_id,
                auto_offset_reset: reset as i32,
                session_timeout_ms: millis(self.session_timeout),
                rebalance_timeout_ms: millis(self.rebalance_timeout),
                max_bytes: self.max_bytes,
            },
            auto_commit_interval: self.auto_commit_interval,
            session: None,
            events: VecDeque::new(),
            failures: 0,
        }
    }
}

/// A member of a consumer group: the server assigns it a share of the partitions of the
/// group's topics and streams their records from the group's committed offsets.
///
/// [`next`](Self::next) returns records as well as changes of the assignment. Progress
/// (the offset after the last record returned, per partition) is committed by
/// [`commit`](Self::commit), and automatically every `auto_commit_interval` unless that is
/// turned off. Delivery is at least once: records returned after the last commit are
/// delivered again after a rebalance, a crash or a restart. Heartbeats are sent in the
/// background, so slow processing between calls does not cost the membership.
///
/// After a lost connection (for example a server restart) the consumer joins again and
/// resumes at the committed offsets.
///
/// ```no_run
/// use sluice_client::{Client, GroupEvent, OffsetReset};
///
/// # async fn example() -> sluice_client::Result<()> {
/// let client = Client::connect("http://127.0.0.1:50051").await?;
/// let mut consumer = client
///     .group_consumer("billing")
///     .topic("orders")
///     .offset_reset(OffsetReset::Earliest)
///     .build();
/// loop {
///     match consumer.next().await? {
///         GroupEvent::Record(record) => println!("{}@{}", record.partition, record.offset),
///         GroupEvent::Assigned(partitions) => println!("assigned {partitions:?}"),
///         GroupEvent::Revoked(partitions) => println!("revoked {partitions:?}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct GroupConsumer {
    groups: GroupsClient<Transport>,
    join: pb::JoinGroup,
    auto_commit_interval: Option<Duration>,
    session: Option<Session>,
    /// Events not yet returned.
    events: VecDeque<GroupEvent>,
    /// Consecutive failed attempts to join.
    failures: u32,
}

impl GroupConsumer {
    /// The next record or assignment change, joining the group first if needed.
    ///
    /// Connection failures are retried (with backoff) without returning. Other errors are
    /// returned, for example a topic that does not exist, or FAILED_PRECONDITION when the
    /// server expired the member or a newer member took over its `instance_id`; calling
    /// `next` again joins again.
    pub async fn next(&mut self) -> Result<GroupEvent> {
        loop {
            if self.session.is_none() {
                // The partitions of a lost membership are reported before joining again.
                if let Some(event) = self.events.pop_front() {
                    return Ok(event);
                }
                match self.open().await {
                    Ok(()) => self.failures = 0,
                    Err(err) => {
                        self.back_off(err).await?;
                        continue;
                    }
                }
            }
            let progress = match self.release_revoked().await {
                Ok(()) => self.auto_commit().await,
                Err(err) => Err(err),
            };
            if let Err(err) = progress {
                self.lose(err.clone());
                self.back_off(err).await?;
                continue;
            }
            if let Some(event) = self.events.pop_front() {
                if let Some(session) = &mut self.session {
                    session.ownership.returned(&event);
                }
                return Ok(event);
            }
            if let Err(err) = self.receive(self.auto_commit_due()).await {
                self.lose(err.clone());
                self.back_off(err).await?;
            }
        }
    }

    /// Commits the progress of every partition this member owns: the offset after the
    /// last record returned from it. Waits until the server has stored it durably.
    pub async fn commit(&mut self) -> Result<()> {
        let result = self.commit_progress().await;
        if let Err(err) = &result
            && err.is_transient()
        {
            self.lose(err.clone());
        }
        result
    }

    /// The partitions this member owns (including revoked ones not yet handed over).
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.session
            .as_ref()
            .map(|session| session.ownership.partitions.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The group generation of the member's latest assignment, once joined.
    pub fn generation(&self) -> Option<u64> {
        self.session
            .as_ref()
            .map(|session| session.ownership.generation)
    }

    /// The member id the server gave this member, once joined.
    pub fn member_id(&self) -> Option<&str> {
        self.session
            .as_ref()
            .map(|session| session.ownership.member_id.as_str())
    }

    /// Commits the progress when auto-commit is on, then leaves the group.
    pub async fn close(mut self) -> Result<()> {
        let committed = if self.auto_commit_interval.is_some() {
            self.commit_progress().await
        } else {
            Ok(())
        };
        if let Some(session) = self.session.take() {
            session.leave().await;
        }
        committed
    }

    /// Joins the group on a new `Consume` stream and waits for the first assignment.
    async fn open(&mut self) -> Result<()> {
        let (requests, outgoing) = mpsc::channel(OUTGOING_MESSAGES);
        let join = pb::ConsumeRequest {
            kind: Some(consume_request::Kind::Join(self.join.clone())),
        };
        requests.send(join).await.map_err(|_| closed())?;
        let mut responses = self
            .groups
            .consume(ReceiverStream::new(outgoing))
            .await?
            .into_inner();
        let first = responses.message().await?.ok_or_else(closed)?;
        let Some(consume_response::Kind::Assignment(assignment)) = &first.kind else {
            return Err(Error::Protocol(
                "the first message of a group stream is not an assignment".into(),
            ));
        };
        let heartbeat = match assignment.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        tokio::spawn(send_heartbeats(requests.downgrade(), heartbeat));
        let mut session = Session {
            requests,
            responses,
            ownership: Ownership::default(),
            next_commit_id: 0,
            acks: HashMap::new(),
            last_commit: Instant::now(),
        };
        session.handle(first, &mut self.events)?;
        self.session = Some(session);
        Ok(())
    }

    /// Hands over the partitions returned as revoked, committing them first when
    /// auto-commit is on. A failed commit does not keep them: their records since the last
    /// commit are delivered again.
    async fn release_revoked(&mut self) -> Result<()> {
        if self
            .session
            .as_ref()
            .is_none_or(|session| session.ownership.releasing.is_empty())
        {
            return Ok(());
        }
        if self.auto_commit_interval.is_some()
            && let Err(err) = self.commit_progress().await
        {
            if err.is_transient() {
                return Err(err);
            }
            tracing::warn!(error = %err, group = %self.join.group, "cannot commit revoked partitions");
        }
        let Some(session) = &mut self.session else {
            return Ok(());
        };
        let released = session.ownership.release();
        let ack = pb::ConsumeRequest {
            kind: Some(consume_request::Kind::RevokeAck(pb::RevokeAck {
                partitions: by_topic(&released),
            })),
        };
        session.requests.send(ack).await.map_err(|_| closed())
    }

    /// When the next automatic commit is due.
    fn auto_commit_due(&self) -> Option<Instant> {
        let interval = self.auto_commit_interval?;
        Some(self.session.as_ref()?.last_commit + interval)
    }

    /// Commits if an automatic commit is due. A fenced commit is only logged: the
    /// partitions are being reassigned and their records will be delivered again.
    async fn auto_commit(&mut self) -> Result<()> {
        if self
            .auto_commit_due()
            .is_none_or(|due| Instant::now() < due)
        {
            return Ok(());
        }
        match self.commit_progress().await {
            Err(err) if !err.is_transient() => {
                tracing::warn!(error = %err, group = %self.join.group, "automatic commit failed");
                Ok(())
            }
            result => result,
        }
    }

    async fn commit_progress(&mut self) -> Result<()> {
        let Some(session) = &mut self.session else {
            return Ok(());
        };
        session.commit(&mut self.events).await
    }

    /// Reads and handles one server message, or returns at `until`.
    async fn receive(&mut self, until: Option<Instant>) -> Result<()> {
        let Some(session) = &mut self.session else {
            return Ok(());
        };
        let message = match until {
            Some(until) => {
                match tokio::time::timeout_at(until.into(), session.responses.message()).await {
                    Ok(message) => message?,
                    Err(_elapsed) => return Ok(()),
                }
            }
            None => session.responses.message().await?,
        };
        session.handle(message.ok_or_else(closed)?, &mut self.events)
    }

    /// Ends the session after `err`: its queued events are dropped and every partition it
    /// announced is returned as revoked.
    fn lose(&mut self, err: Error) {
        let Some(session) = self.session.take() else {
            return;
        };
        tracing::warn!(error = %err, group = %self.join.group, "left the group");
        self.events.clear();
        let lost = session.ownership.announced();
        if !lost.is_empty() {
            self.events.push_back(GroupEvent::Revoked(lost));
        }
    }

    /// Waits before joining again after a connection failure; returns any other error.
    async fn back_off(&mut self, err: Error) -> Result<()> {
        if !err.is_transient() {
            self.failures = 0;
            return Err(err);
        }
        self.failures = self.failures.saturating_add(1);
        let delay = REJOIN_BACKOFF.delay(self.failures);
        tracing::warn!(error = %err, group = %self.join.group, retry_in = ?delay, "group stream interrupted");
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// One membership: an open `Consume` stream and what it owns.
#[derive(Debug)]
struct Session {
    requests: mpsc::Sender<pb::ConsumeRequest>,
    responses: Streaming<pb::ConsumeResponse>,
    ownership: Ownership,
    next_commit_id: u64,
    /// Outcomes of commits, by commit id.
    acks: HashMap<u64, Option<pb::Error>>,
    last_commit: Instant,
}

impl Session {
    /// Applies one server message; records and assignment changes become events.
    fn handle(
        &mut self,
        message: pb::ConsumeResponse,
        events: &mut VecDeque<GroupEvent>,
    ) -> Result<()> {
        match message.kind {
            Some(consume_response::Kind::Assignment(assignment)) => {
                self.ownership.assign(assignment, events);
            }
            Some(consume_response::Kind::Records(records)) => {
                self.ownership.records(records, events)?;
            }
            Some(consume_response::Kind::CommitAck(ack)) => {
                self.acks.insert(ack.commit_id, ack.error);
            }
            Some(consume_response::Kind::HeartbeatRequest(_)) => {
                // Any message will do; if the queue is full, one is on its way already.
                let _ = self.requests.try_send(heartbeat());
            }
            None => return Err(Error::Protocol("a group message without content".into())),
        }
        Ok(())
    }

    /// Commits every position that moved since the last commit and waits for the answer.
    /// A commit fenced because an assignment arrived meanwhile is tried again once with
    /// the new generation.
    async fn commit(&mut self, events: &mut VecDeque<GroupEvent>) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let offsets = self.ownership.uncommitted();
            if offsets.is_empty() {
                self.last_commit = Instant::now();
                return Ok(());
            }
            let generation = self.ownership.generation;
            let commit_id = self.next_commit_id;
            self.next_commit_id += 1;
            let request = pb::ConsumeRequest {
                kind: Some(consume_request::Kind::Commit(pb::CommitRequest {
                    commit_id,
                    generation,
                    offsets: offsets
                        .iter()
                        .map(|(partition, offset)| pb::OffsetCommit {
                            topic: partition.topic.to_string(),
                            partition: partition.partition,
                            offset: *offset,
                        })
                        .collect(),
                })),
            };
            self.requests.send(request).await.map_err(|_| closed())?;
            let outcome = loop {
                if let Some(outcome) = self.acks.remove(&commit_id) {
                    break outcome;
                }
                let message = self.responses.message().await?.ok_or_else(closed)?;
                self.handle(message, events)?;
            };
            let Some(error) = outcome else {
                self.ownership.committed(offsets);
                self.last_commit = Instant::now();
                return Ok(());
            };
            let code = Code::from_i32(error.code);
            if code == Code::FailedPrecondition
                && self.ownership.generation != generation
                && attempts < 2
            {
                continue;
            }
            return Err(Error::Server {
                code,
                message: error.message,
            });
        }
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

/// What a member owns and how far it got: the bookkeeping of a session, apart from I/O.
#[derive(Debug, Default)]
struct Ownership {
    member_id: String,
    generation: u64,
    partitions: BTreeMap<TopicPartition, Progress>,
    /// Partitions returned as revoked, handed over on the next call of `next`.
    releasing: Vec<TopicPartition>,
}

/// The state of one owned partition.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// The offset after the last record returned.
    position: Option<u64>,
    /// The offset last committed by this member.
    committed: Option<u64>,
    /// Returned in an `Assigned` event.
    announced: bool,
    /// Being taken away.
    revoking: bool,
}

impl Ownership {
    /// Takes in a new assignment: partitions no longer listed are revoked, new ones added.
    fn assign(&mut self, assignment: pb::Assignment, events: &mut VecDeque<GroupEvent>) {
        self.generation = assignment.generation;
        self.member_id = assignment.member_id;
        let current: BTreeSet<TopicPartition> = flatten(&assignment.partitions).collect();
        let mut revoked = Vec::new();
        for (partition, progress) in &mut self.partitions {
            let keep = current.contains(partition);
            if !keep && !progress.revoking {
                revoked.push(partition.clone());
            }
            progress.revoking = !keep;
        }
        let added: Vec<TopicPartition> = current
            .into_iter()
            .filter(|partition| !self.partitions.contains_key(partition))
            .collect();
        for partition in &added {
            self.partitions
                .insert(partition.clone(), Progress::default());
        }
        if !revoked.is_empty() {
            events.push_back(GroupEvent::Revoked(revoked));
        }
        if !added.is_empty() {
            events.push_back(GroupEvent::Assigned(added));
        }
    }

    /// Queues the records of an owned partition.
    fn records(
        &self,
        records: pb::ConsumedRecords,
        events: &mut VecDeque<GroupEvent>,
    ) -> Result<()> {
        let topic: Arc<str> = records.topic.into();
        let key = TopicPartition {
            topic: Arc::clone(&topic),
            partition: records.partition,
        };
        if !self.partitions.contains_key(&key) {
            return Err(Error::Protocol(format!(
                "records of partition {} of topic '{topic}', which is not assigned",
                records.partition
            )));
        }
        events.extend(records.records.into_iter().map(|record| {
            GroupEvent::Record(ConsumerRecord::from_wire(&topic, records.partition, record))
        }));
        Ok(())
    }

    /// Records that `event` was returned to the caller.
    fn returned(&mut self, event: &GroupEvent) {
        match event {
            GroupEvent::Record(record) => {
                let key = TopicPartition {
                    topic: Arc::clone(&record.topic),
                    partition: record.partition,
                };
                if let Some(progress) = self.partitions.get_mut(&key) {
                    progress.position = Some(record.offset.saturating_add(1));
                }
            }
            GroupEvent::Assigned(partitions) => {
                for partition in partitions {
                    if let Some(progress) = self.partitions.get_mut(partition) {
                        progress.announced = true;
                    }
                }
            }
            GroupEvent::Revoked(partitions) => self.releasing.extend(partitions.iter().cloned()),
        }
    }

    /// The positions that moved since they were last committed.
    fn uncommitted(&self) -> Vec<(TopicPartition, u64)> {
        self.partitions
            .iter()
            .filter_map(|(partition, progress)| {
                progress
                    .position
                    .filter(|position| progress.committed != Some(*position))
                    .map(|position| (partition.clone(), position))
            })
            .collect()
    }

    /// Notes that `offsets` are committed.
    fn committed(&mut self, offsets: Vec<(TopicPartition, u64)>) {
        for (partition, offset) in offsets {
            if let Some(progress) = self.partitions.get_mut(&partition) {
                progress.committed = Some(offset);
            }
        }
    }

    /// Gives up the partitions returned as revoked and returns them.
    fn release(&mut self) -> Vec<TopicPartition> {
        let released = std::mem::take(&mut self.releasing);
        for partition in &released {
            self.partitions.remove(partition);
        }
        released
    }

    /// The partitions the caller was told about, when the membership is lost.
    fn announced(self) -> Vec<TopicPartition> {
        self.partitions
            .into_iter()
            .filter(|(_, progress)| progress.announced)
            .map(|(partition, _)| partition)
            .collect()
    }
}

/// Sends a heartbeat every `interval` while the stream's request side is open.
async fn send_heartbeats(requests: mpsc::WeakSender<pb::ConsumeRequest>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(requests) = requests.upgrade() else {
            return;
        };
        if requests.send(heartbeat()).await.is_err() {
            return;
        }
    }
}

fn heartbeat() -> pb::ConsumeRequest {
    pb::ConsumeRequest {
        kind: Some(consume_request::Kind::Heartbeat(pb::Heartbeat {})),
    }
}

/// The error of a group stream the server ended.
fn closed() -> Error {
    Error::Server {
        code: Code::Unavailable,
        message: "the server ended the group stream".into(),
    }
}

/// Every partition listed.
fn flatten(topics: &[pb::TopicPartitions]) -> impl Iterator<Item = TopicPartition> + '_ {
    topics.iter().flat_map(|topic| {
        let name: Arc<str> = topic.topic.as_str().into();
        topic
            .partitions
            .iter()
            .map(move |partition| TopicPartition {
                topic: Arc::clone(&name),
                partition: *partition,
            })
    })
}

/// Partitions grouped by topic, as the protocol lists them.
fn by_topic(partitions: &[TopicPartition]) -> Vec<pb::TopicPartitions> {
    let mut topics: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for partition in partitions {
        topics
            .entry(&partition.topic)
            .or_default()
            .push(partition.partition);
    }
    topics
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            pb::TopicPartitions {
                topic: topic.to_owned(),
                partitions,
            }
        })
        .collect()
}

/// A duration in whole milliseconds, saturating.
fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    fn assignment(generation: u64, partitions: &[(&str, &[u32])]) -> pb::Assignment {
        pb::Assignment {
            generation,
            member_id: "m-1".into(),
            partitions: partitions
                .iter()
                .map(|(topic, ids)| pb::TopicPartitions {
                    topic: (*topic).into(),
                    partitions: ids.to_vec(),
                })
                .collect(),
            revoked: vec![],
            heartbeat_interval_ms: 3000,
            session_timeout_ms: 45_000,
        }
    }

    fn records(topic: &str, partition: u32, offsets: std::ops::Range<u64>) -> pb::ConsumedRecords {
        pb::ConsumedRecords {
            topic: topic.into(),
            partition,
            records: offsets
                .map(|offset| pb::FetchedRecord {
                    offset,
                    ..pb::FetchedRecord::default()
                })
                .collect(),
            high_watermark: 0,
        }
    }

    /// Returns every queued event to the "caller", as `next` does.
    fn deliver(ownership: &mut Ownership, events: &mut VecDeque<GroupEvent>) -> Vec<GroupEvent> {
        let delivered: Vec<GroupEvent> = events.drain(..).collect();
        for event in &delivered {
            ownership.returned(event);
        }
        delivered
    }

    #[test]
    fn assignments_become_assigned_and_revoked_events() {
        let mut ownership = Ownership::default();
        let mut events = VecDeque::new();
        ownership.assign(assignment(1, &[("a", &[0, 1]), ("b", &[0])]), &mut events);
        assert_eq!(
            deliver(&mut ownership, &mut events),
            [GroupEvent::Assigned(vec![
                tp("a", 0),
                tp("a", 1),
                tp("b", 0)
            ])]
        );
        ownership.assign(assignment(2, &[("a", &[1, 2]), ("b", &[0])]), &mut events);
        assert_eq!(
            deliver(&mut ownership, &mut events),
            [
                GroupEvent::Revoked(vec![tp("a", 0)]),
                GroupEvent::Assigned(vec![tp("a", 2)])
            ]
        );
        assert_eq!(ownership.generation, 2);
        // A revoked partition is owned until it is released.
        assert!(ownership.partitions.contains_key(&tp("a", 0)));
        // The same revocation repeated is not announced twice.
        ownership.assign(assignment(3, &[("a", &[1, 2]), ("b", &[0])]), &mut events);
        assert!(events.is_empty());
        assert_eq!(ownership.release(), [tp("a", 0)]);
        assert!(!ownership.partitions.contains_key(&tp("a", 0)));
        assert!(ownership.release().is_empty());
    }

    #[test]
    fn progress_is_the_offset_after_the_last_record_returned() -> Result<()> {
        let mut ownership = Ownership::default();
        let mut events = VecDeque::new();
        ownership.assign(assignment(1, &[("a", &[0, 1])]), &mut events);
        ownership.records(records("a", 0, 5..8), &mut events)?;
        ownership.records(records("a", 1, 0..2), &mut events)?;
        assert!(ownership.uncommitted().is_empty());
        deliver(&mut ownership, &mut events);
        assert_eq!(ownership.uncommitted(), [(tp("a", 0), 8), (tp("a", 1), 2)]);
        ownership.committed(ownership.uncommitted());
        assert!(ownership.uncommitted().is_empty());
        ownership.records(records("a", 1, 2..3), &mut events)?;
        deliver(&mut ownership, &mut events);
        assert_eq!(ownership.uncommitted(), [(tp("a", 1), 3)]);
        Ok(())
    }

    #[test]
    fn records_of_a_partition_not_owned_are_refused() {
        let mut ownership = Ownership::default();
        let mut events = VecDeque::new();
        ownership.assign(assignment(1, &[("a", &[0])]), &mut events);
        assert!(matches!(
            ownership.records(records("a", 1, 0..1), &mut events),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn a_lost_membership_reports_only_announced_partitions() {
        let mut ownership = Ownership::default();
        let mut events = VecDeque::new();
        ownership.assign(assignment(1, &[("a", &[0])]), &mut events);
        deliver(&mut ownership, &mut events);
        ownership.assign(assignment(2, &[("a", &[0, 1])]), &mut events);
        assert_eq!(ownership.announced(), [tp("a", 0)]);
    }

    #[test]
    fn partitions_are_grouped_by_topic_and_sorted() {
        let grouped = by_topic(&[tp("b", 2), tp("a", 1), tp("b", 0)]);
        let listed: Vec<(String, Vec<u32>)> = grouped
            .into_iter()
            .map(|t| (t.topic, t.partitions))
            .collect();
        assert_eq!(
            listed,
            vec![("a".to_owned(), vec![1]), ("b".to_owned(), vec![0, 2])]
        );
        let flat: Vec<_> = flatten(&by_topic(&[tp("x", 3), tp("x", 1)])).collect();
        assert_eq!(flat, vec![tp("x", 1), tp("x", 3)]);
    }

    #[test]
    fn durations_are_sent_in_saturated_milliseconds() {
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
