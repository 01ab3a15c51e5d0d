//! `Groups.Consume`: one group member's stream.
//!
//! Two tasks serve a member. The inbound task reads client messages: each one is a sign of
//! life; commits and revocation acknowledgements go, in order, to the session task. The
//! session task owns the [`GroupMember`] and the response stream: it reacts to assignment
//! changes (stopping revoked partitions' readers before announcing the revocation, starting
//! new readers after announcing their partitions), processes commits and acknowledgements
//! one at a time, and asks for heartbeats. Records come from one [`PartitionReader`] per
//! assigned partition, sharing the bounded response channel, so a slow member is paced by
//! HTTP/2 flow control.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_broker::{
    Broker, BrokerError, Fetched, GroupMember, Keepalive, MemberAssignment, OffsetReset,
    TopicPartition,
};
use sluice_proto::v1::{
    self as pb, ConsumeRequest, ConsumeResponse, consume_request, consume_response,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval_at};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::convert::fetched_records;
use crate::groups::wire::{
    join_request, millis, offset_commits, partitions_of, status_error, topic_partitions, wire_error,
};
use crate::request_limit::request_error;
use crate::shutdown::Shutdown;
use crate::status::{invalid_field, shutting_down, to_status};
use crate::subscribe::{PartitionReader, ReaderOutput, Recovery, SubscribeLimits};

/// Messages buffered between the session, the partition readers and the response stream.
const BUFFERED_MESSAGES: usize = 4;
/// Commits and acknowledgements read ahead of the session.
const BUFFERED_COMMANDS: usize = 16;
/// How long the session tries to deliver its final status.
const FINAL_NOTICE: Duration = Duration::from_secs(1);

/// The response stream of one member. Fetched records wait in the channel as stored
/// (slices of the segment files) and are decoded only when the stream takes them, so a
/// member that does not read holds no decoded records beyond the message being sent.
pub(crate) type ConsumeStream = tokio_stream::adapters::Map<
    ReceiverStream<Result<Outgoing, Status>>,
    fn(Result<Outgoing, Status>) -> Result<ConsumeResponse, Status>,
>;

/// Server messages, or the status that ends the stream.
type Messages = mpsc::Sender<Result<Outgoing, Status>>;

/// A server message on its way to the member.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A message ready to send.
    Ready(ConsumeResponse),
    /// Records of a partition, decoded when sent.
    Records {
        topic: String,
        partition: u32,
        fetched: Fetched,
    },
}

/// The wire message of an outgoing message (a corrupt batch ends the stream with its
/// status).
fn encode(outgoing: Result<Outgoing, Status>) -> Result<ConsumeResponse, Status> {
    match outgoing? {
        Outgoing::Ready(message) => Ok(message),
        Outgoing::Records {
            topic,
            partition,
            fetched,
        } => Ok(response(consume_response::Kind::Records(
            pb::ConsumedRecords {
                topic,
                partition,
                records: fetched_records(&fetched)?,
                high_watermark: fetched.high_watermark,
            },
        ))),
    }
}

/// Reads the join, joins the group and starts serving the member. A missing or invalid
/// join fails the call before anything is streamed. Client messages are limited to
/// `max_request_bytes`.
pub(crate) async fn consume(
    broker: Arc<Broker>,
    mut requests: Streaming<ConsumeRequest>,
    client_host: String,
    limits: SubscribeLimits,
    max_request_bytes: usize,
    shutdown: Shutdown,
) -> Result<ConsumeStream, Status> {
    let first = tokio::select! {
        first = requests.message() => {
            first.map_err(|status| request_error(status, max_request_bytes))?
        }
        () = shutdown.wait() => return Err(shutting_down()),
    };
    let Some(consume_request::Kind::Join(join)) = first.and_then(|m| m.kind) else {
        return Err(invalid_field(
            "join",
            "the first message of a Consume stream must be a join",
        ));
    };
    let max_bytes = match usize::try_from(join.max_bytes) {
        Ok(0) | Err(_) => limits.max_bytes,
        Ok(n) => n.min(limits.max_bytes),
    };
    let request = join_request(join, client_host)?;
    let reset = request.auto_offset_reset;
    let member = broker.join_group(request).await.map_err(to_status)?;
    tracing::debug!(
        group = member.group(),
        member = member.member_id(),
        "member stream opened"
    );

    let (messages, stream) = mpsc::channel(BUFFERED_MESSAGES);
    let (commands, command_queue) = mpsc::channel(BUFFERED_COMMANDS);
    tokio::spawn(read_requests(
        requests,
        max_request_bytes,
        member.keepalive(),
        commands,
    ));
    let session = Session {
        broker,
        member,
        messages,
        readers: BTreeMap::new(),
        reset,
        max_bytes,
        wait: limits.wait,
        shutdown,
    };
    tokio::spawn(session.run(command_queue));
    Ok(ReceiverStream::new(stream).map(encode as fn(_) -> _))
}

/// What the inbound task passes to the session.
#[derive(Debug)]
enum Command {
    Commit(pb::CommitRequest),
    RevokeAck(pb::RevokeAck),
    /// The request stream broke or broke the protocol; end the call with this status.
    Fail(Status),
}

/// Reads client messages (each limited to `max_request_bytes`) until the stream ends: marks
/// the member alive on each, and passes commits and acknowledgements on.
async fn read_requests(
    mut requests: Streaming<ConsumeRequest>,
    max_request_bytes: usize,
    keepalive: Keepalive,
    commands: mpsc::Sender<Command>,
) {
    loop {
        let message = tokio::select! {
            message = requests.next() => message,
            () = commands.closed() => return,
        };
        let command = match message {
            None => return,
            Some(Err(status)) => Command::Fail(request_error(status, max_request_bytes)),
            Some(Ok(message)) => {
                // An expired member's stream is ending anyway; the session reports why.
                let _ = keepalive.beat();
                match message.kind {
                    Some(consume_request::Kind::Heartbeat(_)) => continue,
                    Some(consume_request::Kind::Commit(commit)) => Command::Commit(commit),
                    Some(consume_request::Kind::RevokeAck(ack)) => Command::RevokeAck(ack),
                    Some(consume_request::Kind::Join(_)) => Command::Fail(invalid_field(
                        "join",
                        "only the first message of a Consume stream may be a join",
                    )),
                    None => Command::Fail(invalid_field(
                        "kind",
                        "required: set one of join, commit, heartbeat or revoke_ack",
                    )),
                }
            }
        };
        let failed = matches!(command, Command::Fail(_));
        if commands.send(command).await.is_err() || failed {
            return;
        }
    }
}

/// A running partition reader and how to stop it.
#[derive(Debug)]
struct Reader {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Reader {
    /// Stops the reader and waits until it has ended: every record it read is queued.
    async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// A reader's output for one topic.
#[derive(Debug, Clone)]
struct TopicOutput {
    topic: String,
    reset: OffsetReset,
}

impl ReaderOutput for TopicOutput {
    type Message = Outgoing;

    fn message(&self, partition: u32, fetched: &Fetched) -> Result<Option<Outgoing>, Status> {
        // A fetch with batches holds at least one record from its offset on: the first
        // batch is the one holding that offset.
        Ok((!fetched.batches.is_empty()).then(|| Outgoing::Records {
            topic: self.topic.clone(),
            partition,
            fetched: fetched.clone(),
        }))
    }

    fn recover(&self, err: BrokerError) -> Recovery {
        match err {
            // Retention removed records the group had not read: start over as told.
            BrokerError::OffsetOutOfRange { .. } => Recovery::Reset(self.reset),
            // The topic is being deleted; the coordinator takes its partitions away.
            BrokerError::TopicNotFound { .. } | BrokerError::PartitionNotFound { .. } => {
                Recovery::Stop
            }
            other => Recovery::Fail(to_status(other)),
        }
    }
}

/// Serves one member: see the module docs.
struct Session {
    broker: Arc<Broker>,
    member: GroupMember,
    messages: Messages,
    readers: BTreeMap<TopicPartition, Reader>,
    /// Where readers restart when retention removed records the group had not read.
    reset: OffsetReset,
    max_bytes: usize,
    wait: Duration,
    shutdown: Shutdown,
}

/// Why a session ends: with a final status, or quietly (the client left or went away).
type End = Option<Status>;

impl Session {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let end = self.serve(&mut commands).await;
        for (_, reader) in std::mem::take(&mut self.readers) {
            reader.stop().await;
        }
        if let Some(status) = end {
            let _ = tokio::time::timeout(FINAL_NOTICE, self.messages.send(Err(status))).await;
        }
        tracing::debug!(
            group = self.member.group(),
            member = self.member.member_id(),
            "member stream closed"
        );
        // Dropping the member leaves the group.
    }

    async fn serve(&mut self, commands: &mut mpsc::Receiver<Command>) -> End {
        let first = self.member.assignment().map_err(to_status).map_err(Some);
        if let Err(end) = self.apply(first).await {
            return end;
        }
        let every = self.member.heartbeat_interval();
        let mut heartbeats = interval_at(tokio::time::Instant::now() + every, every);
        heartbeats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                biased;
                () = self.shutdown.wait() => Err(Some(shutting_down())),
                () = self.messages.closed() => Err(None),
                changed = self.member.changed() => {
                    self.apply(changed.map_err(to_status).map_err(Some)).await
                }
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => Err(None),
                },
                _ = heartbeats.tick() => {
                    // Skipped when the stream is full: the member has plenty to read.
                    let _ = self.messages.try_send(Ok(Outgoing::Ready(response(
                        consume_response::Kind::HeartbeatRequest(pb::HeartbeatRequest {}),
                    ))));
                    Ok(())
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Moves to a new assignment: stops the readers of partitions no longer active, sends
    /// the assignment, starts readers for newly active partitions.
    async fn apply(&mut self, assignment: Result<MemberAssignment, End>) -> Result<(), End> {
        let assignment = assignment?;
        let stopped: Vec<TopicPartition> = self
            .readers
            .keys()
            .filter(|tp| assignment.partitions.binary_search(tp).is_err())
            .cloned()
            .collect();
        for tp in stopped {
            if let Some(reader) = self.readers.remove(&tp) {
                reader.stop().await;
            }
        }
        let message = pb::Assignment {
            generation: assignment.generation,
            member_id: self.member.member_id().to_owned(),
            partitions: topic_partitions(assignment.partitions.iter().cloned()),
            revoked: topic_partitions(assignment.revoking.iter().cloned()),
            heartbeat_interval_ms: millis(self.member.heartbeat_interval()),
            session_timeout_ms: millis(self.member.session_timeout()),
        };
        self.send(response(consume_response::Kind::Assignment(message)))
            .await?;
        for tp in assignment.partitions {
            if self.readers.contains_key(&tp) {
                continue;
            }
            let offset = match self.member.start_offset(&tp) {
                Ok(offset) => offset,
                // Deleted meanwhile: the next assignment drops it.
                Err(BrokerError::TopicNotFound { .. } | BrokerError::PartitionNotFound { .. }) => {
                    continue;
                }
                Err(e) => return Err(Some(to_status(e))),
            };
            let reader = self.start_reader(&tp, offset);
            self.readers.insert(tp, reader);
        }
        Ok(())
    }

    fn start_reader(&self, tp: &TopicPartition, offset: u64) -> Reader {
        let (stop, stopped) = oneshot::channel();
        let reader = PartitionReader {
            broker: Arc::clone(&self.broker),
            topic: tp.topic.as_str().into(),
            partition: tp.partition,
            offset,
            max_bytes: self.max_bytes,
            wait: self.wait,
        };
        let output = TopicOutput {
            topic: tp.topic.clone(),
            reset: self.reset,
        };
        let stop_signal = async {
            // Resolves on stop() and when the session is gone.
            let _ = stopped.await;
        };
        let task = tokio::spawn(reader.run(
            output,
            self.messages.clone(),
            stop_signal,
            self.shutdown.clone(),
        ));
        Reader { stop, task }
    }

    async fn handle(&mut self, command: Command) -> Result<(), End> {
        match command {
            Command::Fail(status) => Err(Some(status)),
            Command::Commit(commit) => {
                let error = match offset_commits(commit.offsets, "commit.offsets") {
                    Ok(offsets) => self
                        .member
                        .commit(commit.generation, &offsets)
                        .await
                        .err()
                        .map(wire_error),
                    Err(status) => Some(status_error(&status)),
                };
                let ack = pb::CommitAck {
                    commit_id: commit.commit_id,
                    error,
                };
                self.send(response(consume_response::Kind::CommitAck(ack)))
                    .await
            }
            Command::RevokeAck(ack) => {
                // Only partitions whose reader has stopped (so the member was told) count.
                let released: Vec<TopicPartition> = partitions_of(ack.partitions)
                    .into_iter()
                    .filter(|tp| !self.readers.contains_key(tp))
                    .collect();
                if let Err(e) = self.member.release(&released) {
                    // The member is out of the group; its stream is ending.
                    tracing::debug!(error = %e, "revocation acknowledged too late");
                }
                Ok(())
            }
        }
    }

    /// Sends a message, giving up at shutdown.
    async fn send(&self, message: ConsumeResponse) -> Result<(), End> {
        tokio::select! {
            sent = self.messages.send(Ok(Outgoing::Ready(message))) => sent.map_err(|_| None),
            () = self.shutdown.wait() => Err(Some(shutting_down())),
        }
    }
}

fn response(kind: consume_response::Kind) -> ConsumeResponse {
    ConsumeResponse { kind: Some(kind) }
}
