//! `ShareGroups.ShareConsume`: one share group member's stream over a broker
//! [`ShareMember`].
//!
//! Two tasks share the member: the *acquirer* acquires records while the stream has credit
//! and sends them; the *reader* reads client messages in order, applying acknowledgements
//! and renewals and adding credit. The broker does the work (locks, delivery counts,
//! durability); this module only maps messages. When the client ends its side, breaks the
//! protocol or the server drains, the reader stops the acquirer and the member is dropped,
//! which releases every record it still holds.

use std::sync::Arc;
use std::time::Duration;

use sluice_broker::security::Caller;
use sluice_broker::{Broker, BrokerError, Draining, ShareMember};
use sluice_proto::v1::{
    self as pb, ShareConsumeRequest, ShareConsumeResponse, share_consume_request,
    share_consume_response,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::auth::authorize_group_read;
use crate::groups::wire::wire_error;
use crate::quota::Guarded;
use crate::request_limit::request_error;
use crate::share::wire::{
    acknowledged_records, acks, records_message, refused, renewals, renewed_records,
    settings_message, share_join,
};
use crate::status::{invalid_field, shutting_down, to_status};

/// How long one acquire waits for records before the acquirer looks at its credit again.
const ACQUIRE_WAIT: Duration = Duration::from_secs(5);
/// Server messages buffered towards the client (each holds at most `prefetch` records).
const RESPONSE_BUFFER: usize = 4;

/// The response stream of one member.
pub(crate) type ShareConsumeStream = ReceiverStream<Result<ShareConsumeResponse, Status>>;

/// Where a member's messages go.
type Responses = mpsc::Sender<Result<ShareConsumeResponse, Status>>;

/// Reads the join, joins the group and starts serving the member. A missing or invalid join
/// fails the call before anything is streamed. Client messages are limited to
/// `max_request_bytes`.
pub(crate) async fn share_consume(
    broker: Arc<Broker>,
    caller: &Caller,
    mut requests: Streaming<ShareConsumeRequest>,
    max_request_bytes: usize,
) -> Result<Guarded<ShareConsumeStream>, Status> {
    let draining = broker.draining();
    let first = tokio::select! {
        first = requests.message() => {
            first.map_err(|status| request_error(status, max_request_bytes))?
        }
        () = draining.wait() => return Err(shutting_down()),
    };
    let Some(share_consume_request::Kind::Join(join)) = first.and_then(|m| m.kind) else {
        return Err(invalid_field(
            "join",
            "the first message of a ShareConsume stream must be a join",
        ));
    };
    let credit = join.credit;
    let join = share_join(join, &broker.share_config().defaults)?;
    let grant = authorize_group_read(&broker, caller, &join.group, &join.topics)?;
    let prefetch = join.prefetch;
    let member = broker.share_join(join).await.map_err(to_status)?;
    let settings = broker
        .describe_share_group(member.group())
        .map_err(to_status)?
        .settings;
    let (responses, stream) = mpsc::channel(RESPONSE_BUFFER);
    let joined = share_consume_response::Kind::Joined(pb::ShareJoined {
        member_id: member.id().to_owned(),
        settings: Some(settings_message(&settings)),
    });
    // The channel is empty and its receiver is held right here.
    let _ = responses.try_send(Ok(response(joined)));
    let member = Arc::new(member);
    let (credits, granted) = watch::channel(u64::from(credit));
    let acquirer = tokio::spawn(acquire(
        Arc::clone(&member),
        prefetch,
        granted,
        responses.clone(),
        draining.clone(),
    ));
    tokio::spawn(async move {
        read_requests(
            requests,
            max_request_bytes,
            &member,
            &credits,
            &responses,
            &draining,
        )
        .await;
        // The acquirer holds records only in a message on its way, or not sent at all;
        // dropping the member (its last handle goes with the acquirer) releases them.
        acquirer.abort();
        drop(member);
    });
    Ok(Guarded::new(ReceiverStream::new(stream), broker, grant))
}

fn response(kind: share_consume_response::Kind) -> ShareConsumeResponse {
    ShareConsumeResponse { kind: Some(kind) }
}

/// Acquires records for the member while the stream has credit (`granted`, the total
/// credit given, minus the records sent) and sends them, at most `prefetch` per message.
/// Ends when the reader drops the credit, the client goes away, the broker fails the
/// member (the status ends the call) or the server drains.
async fn acquire(
    member: Arc<ShareMember>,
    prefetch: u32,
    mut granted: watch::Receiver<u64>,
    responses: Responses,
    draining: Draining,
) {
    let mut sent: u64 = 0;
    loop {
        let credit = granted.borrow_and_update().saturating_sub(sent);
        if credit == 0 {
            tokio::select! {
                changed = granted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = draining.wait() => {
                    let _ = responses.send(Err(shutting_down())).await;
                    return;
                }
                () = responses.closed() => return,
            }
            continue;
        }
        let max_records = u32::try_from(credit).unwrap_or(u32::MAX).min(prefetch);
        let acquired = tokio::select! {
            acquired = member.acquire(max_records, ACQUIRE_WAIT) => acquired,
            () = draining.wait() => {
                let _ = responses.send(Err(shutting_down())).await;
                return;
            }
            () = responses.closed() => return,
        };
        let records = match acquired {
            Ok(records) if records.is_empty() => continue,
            Ok(records) => records,
            Err(err) => {
                let _ = responses.send(Err(to_status(err))).await;
                return;
            }
        };
        sent = sent.saturating_add(records.len() as u64);
        let message = share_consume_response::Kind::Records(records_message(records));
        if responses.send(Ok(response(message))).await.is_err() {
            return;
        }
    }
}

/// Reads client messages (each limited to `max_request_bytes`) in order until the stream
/// ends, the response stream closes or the server drains: acknowledgements and renewals
/// go to the member and are answered on `responses`, credit goes to the acquirer. A broken
/// stream or a protocol violation ends the call with its status.
async fn read_requests(
    mut requests: Streaming<ShareConsumeRequest>,
    max_request_bytes: usize,
    member: &ShareMember,
    credits: &watch::Sender<u64>,
    responses: &Responses,
    draining: &Draining,
) {
    loop {
        let message = tokio::select! {
            message = requests.next() => message,
            () = responses.closed() => return,
            () = draining.wait() => {
                // The acquirer may be stopped before it reports the shutdown itself.
                let _ = responses.send(Err(shutting_down())).await;
                return;
            }
        };
        let message = match message {
            None => return,
            Some(Err(status)) => {
                let _ = responses
                    .send(Err(request_error(status, max_request_bytes)))
                    .await;
                return;
            }
            Some(Ok(message)) => message,
        };
        let answer = match message.kind {
            Some(share_consume_request::Kind::Acknowledge(ack)) => acknowledge(member, ack).await,
            Some(share_consume_request::Kind::Renew(renew)) => renew_locks(member, &renew),
            Some(share_consume_request::Kind::Credit(credit)) => {
                credits.send_modify(|total| *total = total.saturating_add(credit.records.into()));
                continue;
            }
            Some(share_consume_request::Kind::Join(_)) => Err(invalid_field(
                "join",
                "only the first message of a ShareConsume stream may be a join",
            )),
            None => Err(invalid_field(
                "kind",
                "required: set one of join, acknowledge, renew or credit",
            )),
        };
        let failed = answer.is_err();
        if responses.send(answer).await.is_err() || failed {
            return;
        }
    }
}

/// Applies a ShareAcknowledge and answers it once its outcome is durable.
async fn acknowledge(
    member: &ShareMember,
    ack: pb::ShareAcknowledge,
) -> Result<ShareConsumeResponse, Status> {
    let outcome = member.acknowledge(acks(&ack)?).await;
    let acknowledged = match outcome {
        Ok(outcomes) => pb::ShareAcknowledged {
            ack_id: ack.ack_id,
            refused: refused(acknowledged_records(&ack), outcomes),
            error: None,
        },
        Err(err) if ends_member(&err) => return Err(to_status(err)),
        Err(err) => pb::ShareAcknowledged {
            ack_id: ack.ack_id,
            refused: Vec::new(),
            error: Some(wire_error(err)),
        },
    };
    Ok(response(share_consume_response::Kind::Acknowledged(
        acknowledged,
    )))
}

/// Applies a ShareRenew and answers it.
fn renew_locks(
    member: &ShareMember,
    renew: &pb::ShareRenew,
) -> Result<ShareConsumeResponse, Status> {
    let outcomes = member.renew(&renewals(renew)?);
    Ok(response(share_consume_response::Kind::Renewed(
        pb::ShareRenewed {
            renew_id: renew.renew_id,
            refused: refused(renewed_records(renew), outcomes),
        },
    )))
}

/// Whether an error of a whole acknowledgement means the member is gone (left, its group
/// deleted, or the server shutting down): the stream then ends with it.
fn ends_member(err: &BrokerError) -> bool {
    matches!(
        err,
        BrokerError::ShareMemberGone { .. } | BrokerError::ShuttingDown
    )
}
