//! `Log.Subscribe` and `Log.SubscribeBatches`: a broker [`Subscription`] as a response stream.
//!
//! Deliveries wait in the subscription as stored (slices of the segment files) and are
//! decoded only when the response stream takes them: decoded, small records take several
//! times their stored size, and a subscriber that does not read would otherwise hold every
//! buffered delivery decoded.

use std::sync::Arc;

use sluice_broker::security::{Caller, Grant, Need, Operation};
use sluice_broker::{Broker, BrokerError, Delivery, Subscribe, Subscription};
use sluice_proto::v1::{SubscribeBatchesResponse, SubscribeRequest, SubscribeResponse};
use tokio_stream::StreamExt;
use tonic::Status;

use crate::convert::{fetched_records, position};
use crate::quota::Guarded;
use crate::status::{require_topic, to_status};

/// The messages of one subscription.
pub(crate) type SubscriptionStream = Guarded<
    tokio_stream::adapters::Map<
        Subscription,
        fn(Result<Delivery, BrokerError>) -> Result<SubscribeResponse, Status>,
    >,
>;

/// The messages of one batch subscription.
pub(crate) type BatchSubscriptionStream = Guarded<
    tokio_stream::adapters::Map<
        Subscription,
        fn(Result<Delivery, BrokerError>) -> Result<SubscribeBatchesResponse, Status>,
    >,
>;

/// Starts a subscription, with the grant of Read on its topic it is held to; problems with
/// the request (unknown topic or partition, duplicate partition, bad start, too many
/// subscriptions, no Read on the topic) fail the call before anything is streamed.
async fn start(
    broker: &Arc<Broker>,
    caller: &Caller,
    request: SubscribeRequest,
) -> Result<(Subscription, Grant), Status> {
    require_topic("topic", &request.topic)?;
    let grant = broker
        .security()
        .grant(caller, vec![Need::topic(Operation::Read, &request.topic)])
        .map_err(to_status)?;
    let start = position(request.start, "start")?;
    let subscription = broker
        .subscribe(Subscribe {
            topic: request.topic,
            partitions: request.partitions,
            start,
            max_bytes: usize::try_from(request.max_bytes).unwrap_or(usize::MAX),
        })
        .await
        .map_err(to_status)?;
    Ok((subscription, grant))
}

/// `Log.Subscribe`: decoded records.
pub(crate) async fn subscribe(
    broker: &Arc<Broker>,
    caller: Caller,
    request: SubscribeRequest,
) -> Result<SubscriptionStream, Status> {
    let (subscription, grant) = start(broker, &caller, request).await?;
    let stream = subscription.map(records as fn(_) -> _);
    Ok(Guarded::new(stream, Arc::clone(broker), grant))
}

/// `Log.SubscribeBatches`: the stored batches as they are.
pub(crate) async fn subscribe_batches(
    broker: &Arc<Broker>,
    caller: Caller,
    request: SubscribeRequest,
) -> Result<BatchSubscriptionStream, Status> {
    let (subscription, grant) = start(broker, &caller, request).await?;
    let stream = subscription.map(batches as fn(_) -> _);
    Ok(Guarded::new(stream, Arc::clone(broker), grant))
}

/// The Subscribe message of a delivery (a corrupt batch ends the stream with its status).
fn records(delivery: Result<Delivery, BrokerError>) -> Result<SubscribeResponse, Status> {
    let Delivery {
        partition, fetched, ..
    } = delivery.map_err(to_status)?;
    Ok(SubscribeResponse {
        partition,
        records: fetched_records(&fetched)?,
        high_watermark: fetched.high_watermark,
    })
}

/// The SubscribeBatches message of a delivery.
fn batches(delivery: Result<Delivery, BrokerError>) -> Result<SubscribeBatchesResponse, Status> {
    let Delivery {
        partition, fetched, ..
    } = delivery.map_err(to_status)?;
    Ok(SubscribeBatchesResponse {
        partition,
        next_offset: fetched.next_offset(),
        record_batches: fetched.batches,
        high_watermark: fetched.high_watermark,
    })
}
