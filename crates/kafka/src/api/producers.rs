//! InitProducerId: an idempotent producer's id and epoch. Transactions are not supported: a
//! transactional id is refused (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the code Kafka's
//! clients treat as "transactions are not available to this client").

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};

use super::Context;
use crate::errors;

/// Hands out a producer id no producer of this data directory had before, with epoch 0.
pub(crate) async fn init_producer_id(
    ctx: &Context,
    _header: &RequestHeader,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let transactional_id = request.transactional_id.as_ref().map(|id| id.0.as_str());
    match ctx.broker.init_producer_id(transactional_id).await {
        Ok(identity) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(identity.producer_id))
            .with_producer_epoch(identity.epoch),
        Err(err) => InitProducerIdResponse::default()
            .with_error_code(errors::answer(&err).0)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
