//! ListOffsets: the earliest and latest offsets, and the first offset at or after a time.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};
use sluice_broker::security::Operation;
use sluice_broker::{BrokerError, OffsetSpec};

use super::Context;
use super::produce::offset;
use crate::errors;

/// ListOffsets' timestamp asking for the high watermark.
const LATEST: i64 = -1;
/// ListOffsets' timestamp asking for the log start offset.
const EARLIEST: i64 = -2;

/// Answers ListOffsets, one partition at a time.
pub(crate) async fn list_offsets(
    ctx: &Context,
    _header: &RequestHeader,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let denied = ctx.topic_refusal(Operation::Describe, &name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let Ok(partition) = u32::try_from(p.partition_index) else {
                partitions
                    .push(answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            if let Some(code) = denied {
                partitions.push(answer.with_error_code(code));
                continue;
            }
            let found = lookup(ctx, &name, partition, p.timestamp).await;
            partitions.push(match found {
                Ok(Some((at, timestamp))) => {
                    answer.with_offset(offset(at)).with_timestamp(timestamp)
                }
                Ok(None) => answer,
                Err(err) => answer.with_error_code(errors::answer(&err).0),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The offset (and for a time lookup, the found record's timestamp; else -1) that `timestamp`
/// asks for; `None` when no record is that recent.
async fn lookup(
    ctx: &Context,
    topic: &str,
    partition: u32,
    timestamp: i64,
) -> Result<Option<(u64, i64)>, BrokerError> {
    let spec = match timestamp {
        LATEST => OffsetSpec::Latest,
        EARLIEST => OffsetSpec::Earliest,
        time if time >= 0 => {
            let found = ctx
                .broker
                .offsets_for_time(topic, vec![partition], time)
                .await?;
            return Ok(found.into_iter().next().and_then(|(_, found)| found));
        }
        other => {
            return Err(BrokerError::InvalidRequest {
                field: "timestamp",
                reason: format!(
                    "{other} is neither a time nor -1 (latest) or -2 (earliest); max-timestamp (-3) and tiered lookups are not served"
                ),
            });
        }
    };
    let found = ctx
        .broker
        .list_offsets(topic, vec![partition], spec)
        .await?;
    Ok(found
        .into_iter()
        .next()
        .and_then(|(_, at)| at)
        .map(|at| (at, -1)))
}
