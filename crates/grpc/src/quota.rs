//! Byte-rate quotas on gRPC traffic. gRPC answers have no throttle field, so a caller over
//! its quota is slowed as Kafka mutes a channel: a unary answer is held back, a response
//! stream waits before its next message, and a produce stream is not read until the delay
//! has passed. Response streams are also held to the ACLs that allowed them ([`Guarded`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message;
use sluice_broker::Broker;
use sluice_broker::security::{Caller, Grant, QuotaKind};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::Status;

use crate::status::to_status;

/// Counts `bytes` of `kind` traffic by `caller` and waits as long as its quota asks.
pub(crate) async fn throttle(broker: &Broker, caller: &Caller, kind: QuotaKind, bytes: usize) {
    let delay = broker
        .security()
        .throttle(caller, kind, u64::try_from(bytes).unwrap_or(u64::MAX));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// Counts the size of `message` as `kind` traffic by `caller` (measured only when a quota
/// is set) and waits as long as its quota asks.
pub(crate) async fn throttle_message(
    broker: &Broker,
    caller: &Caller,
    kind: QuotaKind,
    message: &impl Message,
) {
    if broker.security().quotas_in_force() {
        throttle(broker, caller, kind, message.encoded_len()).await;
    }
}

/// A response stream held to what allowed it: its messages count against the caller's
/// fetch quota (after a message the caller is over its quota for, the next one waits), and
/// once an ACL change takes away what its [`Grant`] needs, it ends with PERMISSION_DENIED.
pub(crate) struct Guarded<S> {
    inner: S,
    broker: Arc<Broker>,
    grant: Grant,
    /// The wait before the next message, once one is owed.
    pause: Option<Pin<Box<Sleep>>>,
    /// Whether the grant was withdrawn: nothing follows its error.
    revoked: bool,
}

impl<S> Guarded<S> {
    /// `inner`'s messages, for the caller and needs of `grant`.
    pub(crate) fn new(inner: S, broker: Arc<Broker>, grant: Grant) -> Self {
        Guarded {
            inner,
            broker,
            grant,
            pause: None,
            revoked: false,
        }
    }
}

impl<S, T> Stream for Guarded<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
    T: Message,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.revoked {
            return Poll::Ready(None);
        }
        if let Some(pause) = &mut this.pause {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        let next = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(message))) = &next {
            let security = this.broker.security();
            if let Err(denied) = security.recheck(&mut this.grant) {
                this.revoked = true;
                return Poll::Ready(Some(Err(to_status(denied))));
            }
            if security.quotas_in_force() {
                let bytes = u64::try_from(message.encoded_len()).unwrap_or(u64::MAX);
                let delay = security.throttle(this.grant.caller(), QuotaKind::Fetch, bytes);
                if !delay.is_zero() {
                    this.pause = Some(Box::pin(tokio::time::sleep(delay)));
                }
            }
        }
        next
    }
}
