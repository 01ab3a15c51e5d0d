//! `Groups.Consume`: one group member's stream over a broker [`GroupSession`].
//!
//! The broker's session does the work (assignments, partition readers, commits, heartbeat
//! requests); this module turns its events into messages and the client's messages into
//! session calls. An inbound stream that breaks, or breaks the protocol, ends the call with
//! that status; the session ends with it (the member leaves).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sluice_broker::security::Caller;
use sluice_broker::{
    Broker, Delivery, GroupSession, SessionAssignment, SessionEvent, SessionHandle,
};
use sluice_proto::v1::{
    self as pb, ConsumeRequest, ConsumeResponse, consume_request, consume_response,
};
use tokio::sync::oneshot;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::auth::authorize_group_read;
use crate::convert::fetched_records;
use crate::groups::wire::{
    join_request, millis, offset_commits, partitions_of, topic_partitions, wire_error,
};
use crate::quota::Guarded;
use crate::request_limit::request_error;
use crate::status::{invalid_field, shutting_down, to_status};

/// The response stream of one member: the session's events as messages, ending after the
/// first error (the session's, or the inbound stream's).
#[derive(Debug)]
pub(crate) struct ConsumeStream {
    session: GroupSession,
    /// Fires when the inbound stream fails; the status then ends the call. `None` once it
    /// has resolved either way.
    inbound_failed: Option<oneshot::Receiver<Status>>,
    ended: bool,
}

impl Stream for ConsumeStream {
    type Item = Result<ConsumeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(failed) = &mut self.inbound_failed
            && let Poll::Ready(failure) = Pin::new(failed).poll(cx)
        {
            self.inbound_failed = None;
            if let Ok(status) = failure {
                self.ended = true;
                return Poll::Ready(Some(Err(status)));
            }
        }
        let next = match Pin::new(&mut self.session).poll_next(cx) {
            Poll::Ready(Some(event)) => event.map_err(to_status).and_then(message),
            Poll::Ready(None) => {
                self.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => return Poll::Pending,
        };
        self.ended = next.is_err();
        Poll::Ready(Some(next))
    }
}

/// Reads the join, joins the group and starts serving the member. A missing or invalid
/// join fails the call before anything is streamed. Client messages are limited to
/// `max_request_bytes`.
pub(crate) async fn consume(
    broker: Arc<Broker>,
    caller: &Caller,
    mut requests: Streaming<ConsumeRequest>,
    client_host: String,
    max_request_bytes: usize,
) -> Result<Guarded<ConsumeStream>, Status> {
    let draining = broker.draining();
    let first = tokio::select! {
        first = requests.message() => {
            first.map_err(|status| request_error(status, max_request_bytes))?
        }
        () = draining.wait() => return Err(shutting_down()),
    };
    let Some(consume_request::Kind::Join(join)) = first.and_then(|m| m.kind) else {
        return Err(invalid_field(
            "join",
            "the first message of a Consume stream must be a join",
        ));
    };
    let max_bytes = usize::try_from(join.max_bytes).unwrap_or(usize::MAX);
    let request = join_request(join, client_host)?;
    let grant = authorize_group_read(&broker, caller, &request.group, &request.topics)?;
    let (session, handle) = broker
        .open_session(request, max_bytes)
        .await
        .map_err(to_status)?;
    let (failed, inbound_failed) = oneshot::channel();
    tokio::spawn(read_requests(requests, max_request_bytes, handle, failed));
    let stream = ConsumeStream {
        session,
        inbound_failed: Some(inbound_failed),
        ended: false,
    };
    Ok(Guarded::new(stream, broker, grant))
}

/// Reads client messages (each limited to `max_request_bytes`) until the stream ends: each
/// is a sign of life; commits and revocation acknowledgements go, in order, to the session.
/// A broken stream or a protocol violation is reported through `failed`. Returning drops
/// the handle, which ends the session once the client finished sending.
async fn read_requests(
    mut requests: Streaming<ConsumeRequest>,
    max_request_bytes: usize,
    session: SessionHandle,
    mut failed: oneshot::Sender<Status>,
) {
    let failure = loop {
        let message = tokio::select! {
            message = requests.next() => message,
            () = failed.closed() => return,
        };
        let message = match message {
            None => return,
            Some(Err(status)) => break request_error(status, max_request_bytes),
            Some(Ok(message)) => message,
        };
        // An expired member's session is ending anyway; it reports why.
        let _ = session.beat();
        let sent = match message.kind {
            Some(consume_request::Kind::Heartbeat(_)) => Ok(()),
            Some(consume_request::Kind::Commit(commit)) => {
                match offset_commits(commit.offsets, "commit.offsets") {
                    Ok(offsets) => {
                        session
                            .commit(commit.commit_id, commit.generation, offsets)
                            .await
                    }
                    Err(status) => break status,
                }
            }
            Some(consume_request::Kind::RevokeAck(ack)) => {
                session.revoke_ack(partitions_of(ack.partitions)).await
            }
            Some(consume_request::Kind::Join(_)) => {
                break invalid_field(
                    "join",
                    "only the first message of a Consume stream may be a join",
                );
            }
            None => {
                break invalid_field(
                    "kind",
                    "required: set one of join, commit, heartbeat or revoke_ack",
                );
            }
        };
        if sent.is_err() {
            // The session has ended; the response stream says why.
            return;
        }
    };
    let _ = failed.send(failure);
}

/// The wire message of a session event (a corrupt batch ends the stream with its status).
fn message(event: SessionEvent) -> Result<ConsumeResponse, Status> {
    let kind = match event {
        SessionEvent::Assignment(assignment) => {
            consume_response::Kind::Assignment(assignment_message(assignment))
        }
        SessionEvent::Records(Delivery {
            topic,
            partition,
            fetched,
        }) => consume_response::Kind::Records(pb::ConsumedRecords {
            topic: topic.to_string(),
            partition,
            records: fetched_records(&fetched)?,
            high_watermark: fetched.high_watermark,
        }),
        SessionEvent::CommitAck { commit_id, result } => {
            consume_response::Kind::CommitAck(pb::CommitAck {
                commit_id,
                error: result.err().map(wire_error),
            })
        }
        SessionEvent::HeartbeatRequest => {
            consume_response::Kind::HeartbeatRequest(pb::HeartbeatRequest {})
        }
    };
    Ok(ConsumeResponse { kind: Some(kind) })
}

fn assignment_message(assignment: SessionAssignment) -> pb::Assignment {
    pb::Assignment {
        generation: assignment.generation,
        member_id: assignment.member_id,
        partitions: topic_partitions(assignment.partitions),
        revoked: topic_partitions(assignment.revoked),
        heartbeat_interval_ms: millis(assignment.heartbeat_interval),
        session_timeout_ms: millis(assignment.session_timeout),
    }
}
