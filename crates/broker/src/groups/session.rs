//! A group member's session: the protocol-neutral engine behind a front end's "consume as a
//! member of a group" stream.
//!
//! [`Broker::open_session`](crate::Broker::open_session) joins the group and starts one task
//! that owns the [`GroupMember`]. It reacts to assignment changes (stopping revoked
//! partitions' readers before announcing the revocation, starting readers of new partitions
//! after announcing them), processes commits and revocation acknowledgements one at a time
//! in the order the front end passed them, and asks for heartbeats. Records come from one
//! [`PartitionReader`] per assigned partition, sharing the session's bounded event channel,
//! so a slow member is paced by its transport's flow control.
//!
//! The front end reads [`SessionEvent`]s from the [`GroupSession`] and passes what the
//! client sends through its [`SessionHandle`]. Dropping the session, or every handle (the
//! client finished sending), ends it: that is the member's stream closing, see
//! [`GroupMember`].

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval_at};
use tokio_stream::Stream;

use crate::follow::{Delivery, PartitionReader, ReadPolicy};
use crate::groups::{
    GroupMember, JoinGroup, Keepalive, MemberAssignment, OffsetReset, TopicPartition,
};
use crate::lifecycle::Draining;
use crate::subscriptions::Slot;
use crate::{Broker, BrokerError};

/// Events buffered between the session, its partition readers and the front end.
const BUFFERED_EVENTS: usize = 4;
/// Commands read ahead of the session.
const BUFFERED_COMMANDS: usize = 16;
/// How long the session tries to deliver its final error.
const FINAL_NOTICE: Duration = Duration::from_secs(1);

/// What a session tells its member, in order.
#[derive(Debug)]
pub enum SessionEvent {
    /// The member's partitions changed (the first event is its first assignment).
    Assignment(SessionAssignment),
    /// Records of an assigned partition, as stored.
    Records(Delivery),
    /// The answer to [`SessionHandle::commit`].
    CommitAck {
        /// The id the commit carried.
        commit_id: u64,
        /// Whether the commit was made (and is durable).
        result: Result<(), BrokerError>,
    },
    /// The member should give a sign of life soon (sent every heartbeat interval when the
    /// event channel has room).
    HeartbeatRequest,
}

impl From<Delivery> for SessionEvent {
    fn from(delivery: Delivery) -> Self {
        SessionEvent::Records(delivery)
    }
}

/// A member's assignment as announced to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAssignment {
    /// The generation commits carry.
    pub generation: u64,
    /// The member's id.
    pub member_id: String,
    /// The partitions it consumes, sorted.
    pub partitions: Vec<TopicPartition>,
    /// Partitions being taken away, sorted: the member commits their progress and
    /// acknowledges with [`SessionHandle::revoke_ack`]. Their readers have already stopped.
    pub revoked: Vec<TopicPartition>,
    /// How often the member should give a sign of life.
    pub heartbeat_interval: Duration,
    /// How long it may go unheard before it loses its partitions.
    pub session_timeout: Duration,
}

/// What the front end passes on from the member.
#[derive(Debug)]
enum Command {
    Commit {
        commit_id: u64,
        generation: u64,
        offsets: Vec<(TopicPartition, u64)>,
    },
    RevokeAck(Vec<TopicPartition>),
}

/// An open group session: its events, in order. Ends with an error (the last item) when the
/// member is out of the group, a read fails, or the broker drains
/// ([`BrokerError::ShuttingDown`]); ends quietly when the member left.
#[derive(Debug)]
pub struct GroupSession {
    events: mpsc::Receiver<Result<SessionEvent, BrokerError>>,
    _slot: Slot,
}

impl GroupSession {
    /// The next event, or `None` once the session has ended.
    pub async fn next(&mut self) -> Option<Result<SessionEvent, BrokerError>> {
        self.events.recv().await
    }
}

impl Stream for GroupSession {
    type Item = Result<SessionEvent, BrokerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

/// Passes a member's messages to its session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    commands: mpsc::Sender<Command>,
    keepalive: Keepalive,
}

impl SessionHandle {
    /// Records a sign of life (every message from the member is one). Fails once the
    /// member is out of the group; the session then ends with the reason.
    pub fn beat(&self) -> Result<(), BrokerError> {
        self.keepalive.beat()
    }

    /// Commits offsets as of `generation`; the answer comes as [`SessionEvent::CommitAck`]
    /// with this `commit_id`. Waits while the session has commands queued. Fails once the
    /// session has ended.
    pub async fn commit(
        &self,
        commit_id: u64,
        generation: u64,
        offsets: Vec<(TopicPartition, u64)>,
    ) -> Result<(), BrokerError> {
        self.send(Command::Commit {
            commit_id,
            generation,
            offsets,
        })
        .await
    }

    /// Acknowledges that the member is done with revoked partitions (it committed their
    /// progress), so they can go to their new owner.
    pub async fn revoke_ack(&self, partitions: Vec<TopicPartition>) -> Result<(), BrokerError> {
        self.send(Command::RevokeAck(partitions)).await
    }

    async fn send(&self, command: Command) -> Result<(), BrokerError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| BrokerError::SessionClosed)
    }
}

impl Broker {
    /// Joins a group and starts the member's session (see the module docs): its events,
    /// and the handle that passes on what the member sends. Each delivery holds at most
    /// `max_bytes` of stored batches (0 or more than `limits.max_subscribe_bytes` means that
    /// limit). The session takes one `limits.max_subscriptions` slot.
    pub async fn open_session(
        self: &Arc<Self>,
        join: JoinGroup,
        max_bytes: usize,
    ) -> Result<(GroupSession, SessionHandle), BrokerError> {
        self.check_running()?;
        let slot = self.subscriptions.take()?;
        let reset = join.auto_offset_reset;
        let member = self.join_group(join).await?;
        tracing::debug!(
            group = member.group(),
            member = member.member_id(),
            "member session opened"
        );
        let (events, receiver) = mpsc::channel(BUFFERED_EVENTS);
        let (commands, command_queue) = mpsc::channel(BUFFERED_COMMANDS);
        let handle = SessionHandle {
            commands,
            keepalive: member.keepalive(),
        };
        let task = Session {
            broker: Arc::clone(self),
            member,
            events,
            readers: BTreeMap::new(),
            reset,
            max_bytes: self.subscribe_bytes(max_bytes),
            draining: self.draining(),
        };
        tokio::spawn(task.run(command_queue));
        let session = GroupSession {
            events: receiver,
            _slot: slot,
        };
        Ok((session, handle))
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

/// Why a session ends: with a final error, or quietly (the member left or went away).
type End = Option<BrokerError>;

/// The session task's state.
struct Session {
    broker: Arc<Broker>,
    member: GroupMember,
    events: mpsc::Sender<Result<SessionEvent, BrokerError>>,
    readers: BTreeMap<TopicPartition, Reader>,
    /// Where readers restart when retention removed records the group had not read.
    reset: OffsetReset,
    max_bytes: usize,
    draining: Draining,
}

impl Session {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let end = self.serve(&mut commands).await;
        for (_, reader) in std::mem::take(&mut self.readers) {
            reader.stop().await;
        }
        if let Some(err) = end {
            let _ = tokio::time::timeout(FINAL_NOTICE, self.events.send(Err(err))).await;
        }
        tracing::debug!(
            group = self.member.group(),
            member = self.member.member_id(),
            "member session closed"
        );
        // Dropping the member leaves the group.
    }

    async fn serve(&mut self, commands: &mut mpsc::Receiver<Command>) -> End {
        let first = self.member.assignment().map_err(Some);
        if let Err(end) = self.apply(first).await {
            return end;
        }
        let every = self.member.heartbeat_interval();
        let mut heartbeats = interval_at(tokio::time::Instant::now() + every, every);
        heartbeats.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                biased;
                () = self.draining.wait() => Err(Some(BrokerError::ShuttingDown)),
                () = self.events.closed() => Err(None),
                changed = self.member.changed() => self.apply(changed.map_err(Some)).await,
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => Err(None),
                },
                _ = heartbeats.tick() => {
                    // Skipped when the channel is full: the member has plenty to read.
                    let _ = self.events.try_send(Ok(SessionEvent::HeartbeatRequest));
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
        let announced = SessionAssignment {
            generation: assignment.generation,
            member_id: self.member.member_id().to_owned(),
            partitions: assignment.partitions.clone(),
            revoked: assignment.revoking.clone(),
            heartbeat_interval: self.member.heartbeat_interval(),
            session_timeout: self.member.session_timeout(),
        };
        self.send(SessionEvent::Assignment(announced)).await?;
        for tp in assignment.partitions {
            if self.readers.contains_key(&tp) {
                continue;
            }
            // The committed offset or the log bounds: no file I/O, so no blocking thread.
            let offset = match self.member.start_offset(&tp) {
                Ok(offset) => offset,
                // Deleted meanwhile: the next assignment drops it.
                Err(BrokerError::TopicNotFound { .. } | BrokerError::PartitionNotFound { .. }) => {
                    continue;
                }
                Err(e) => return Err(Some(e)),
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
            policy: ReadPolicy::Group(self.reset),
        };
        let stop_signal = async {
            // Resolves on stop() and when the session is gone.
            let _ = stopped.await;
        };
        let task = tokio::spawn(reader.run(self.events.clone(), stop_signal));
        Reader { stop, task }
    }

    async fn handle(&mut self, command: Command) -> Result<(), End> {
        match command {
            Command::Commit {
                commit_id,
                generation,
                offsets,
            } => {
                let result = self.member.commit(generation, &offsets).await;
                self.send(SessionEvent::CommitAck { commit_id, result })
                    .await
            }
            Command::RevokeAck(partitions) => {
                // Only partitions whose reader has stopped (so the member was told) count.
                let released: Vec<TopicPartition> = partitions
                    .into_iter()
                    .filter(|tp| !self.readers.contains_key(tp))
                    .collect();
                if let Err(e) = self.member.release(&released) {
                    // The member is out of the group; its session is ending.
                    tracing::debug!(error = %e, "revocation acknowledged too late");
                }
                Ok(())
            }
        }
    }

    /// Sends an event, giving up when the broker drains.
    async fn send(&self, event: SessionEvent) -> Result<(), End> {
        tokio::select! {
            sent = self.events.send(Ok(event)) => sent.map_err(|_| None),
            () = self.draining.wait() => Err(Some(BrokerError::ShuttingDown)),
        }
    }
}
