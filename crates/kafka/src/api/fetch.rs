//! Fetch: stored record batches of many partitions in one answer, straight from the segment
//! bytes, with Kafka's byte budgets and long poll ([`sluice_broker::Broker::fetch_many`]).
//!
//! Incremental fetch sessions (KIP-227) are not kept: a request that opens one (session id
//! 0) is answered in full with session id 0, which tells the client no session was made, so
//! it keeps sending full requests. A request naming a session id gets
//! FETCH_SESSION_ID_NOT_FOUND, as from a broker that forgot it.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, RequestHeader};
use sluice_broker::security::{Operation, QuotaKind};
use sluice_broker::{FetchMany, PartitionFetch};

use super::Context;
use super::produce::offset;
use crate::errors;

/// Answers Fetch.
pub(crate) async fn fetch(
    ctx: &Context,
    _header: &RequestHeader,
    request: FetchRequest,
) -> FetchResponse {
    if request.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }
    // Partitions the broker can be asked for, and where each answer goes.
    let mut wanted: Vec<PartitionFetch> = Vec::new();
    let mut places: Vec<(usize, usize)> = Vec::new();
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let denied = ctx.topic_refusal(Operation::Read, topic.topic.0.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let answer = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica(BrokerId(-1));
            if let Some(code) = denied {
                partitions.push(answer.with_error_code(code));
                continue;
            }
            match (u32::try_from(p.partition), u64::try_from(p.fetch_offset)) {
                (Ok(partition), Ok(from)) => {
                    places.push((topics.len(), partitions.len()));
                    wanted.push(PartitionFetch {
                        topic: topic.topic.0.to_string(),
                        partition,
                        offset: from,
                        max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                    });
                }
                (Err(_), _) => {
                    partitions.push(
                        answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    );
                    continue;
                }
                (_, Err(_)) => {
                    partitions.push(answer.with_error_code(ResponseError::OffsetOutOfRange.code()));
                    continue;
                }
            }
            partitions.push(answer);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    let many = FetchMany {
        partitions: wanted,
        max_bytes: usize::try_from(request.max_bytes).unwrap_or(0),
        min_bytes: usize::try_from(request.min_bytes).unwrap_or(0),
        max_wait: Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)),
    };
    match ctx.broker.fetch_many(&many).await {
        Ok(fetched) => {
            let mut bytes = 0;
            for (&(t, p), fetched) in places.iter().zip(fetched) {
                let answer = &mut topics[t].partitions[p];
                match fetched.result {
                    Ok(data) => {
                        answer.high_watermark = offset(data.high_watermark);
                        answer.last_stable_offset = offset(data.high_watermark);
                        answer.log_start_offset = offset(data.log_start_offset);
                        bytes += data.batches.len();
                        answer.records = Some(data.batches);
                    }
                    Err(err) => answer.error_code = errors::answer(&err).0,
                }
            }
            FetchResponse::default()
                .with_responses(topics)
                .with_throttle_time_ms(ctx.throttle(QuotaKind::Fetch, bytes))
        }
        Err(err) => FetchResponse::default().with_error_code(errors::answer(&err).0),
    }
}
