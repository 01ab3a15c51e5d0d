//! Produce: the client's record batches appended as they are (raw-batch produce), one
//! partition at a time, in the order the requests came.
//!
//! The batches of every partition are queued with the broker while the request is read
//! ([`submit`]), so requests pipelined on one connection are appended in order; the answer
//! waits for the appends ([`Submitted::answer`]). `acks=1` and `acks=-1` both wait until the
//! records are stored under the topic's `flush.policy` (with `fsync`, on disk): there are no
//! replicas to wait for. `acks=0` gets no answer at all.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::security::{Operation, QuotaKind};
use sluice_broker::{BrokerError, OffsetSpec, PendingProduce};

use super::{Context, respond_in};
use crate::{KafkaError, errors};

/// One partition of a produce request: queued, or refused before it was.
#[derive(Debug)]
enum Queued {
    Pending(PendingProduce),
    Refused(i16, String),
}

/// One partition's index and record batches, as a produce request carries them.
type PartitionRecords = (i32, Option<Bytes>);

/// A produce request whose batches are queued and whose answer is still to come.
#[derive(Debug)]
pub(crate) struct Submitted {
    correlation_id: i32,
    version: i16,
    /// `acks`: 0 means no answer.
    acks: i16,
    /// How long `acks=-1` waits for an append (`timeout_ms`; `None` for no limit).
    timeout: Option<Duration>,
    topics: Vec<(String, Vec<(i32, Queued)>)>,
    /// `throttle_time_ms`: how long the produce quota holds the connection back.
    throttle_ms: i32,
}

/// Queues every partition's batches of `request` with the broker, in request order.
pub(crate) fn submit(ctx: &Context, header: RequestHeader, request: ProduceRequest) -> Submitted {
    let refuse_all = if !matches!(request.acks, -1..=1) {
        Some((
            ResponseError::InvalidRequiredAcks.code(),
            format!("acks is {}: it must be -1 (all), 0 or 1", request.acks),
        ))
    } else if request.transactional_id.is_some() {
        Some((
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            "transactional produce is not supported by this server".to_owned(),
        ))
    } else {
        None
    };
    // Every other view of the request frame is let go first (names become strings), so the
    // last partition's records are the frame's only view and are appended without a copy.
    let (correlation_id, version) = (header.correlation_id, header.request_api_version);
    drop(header);
    let (acks, timeout_ms) = (request.acks, request.timeout_ms);
    let bytes: usize = request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_ref().map_or(0, Bytes::len))
        .sum();
    let throttle_ms = ctx.throttle(QuotaKind::Produce, bytes);
    let parts: Vec<(String, Vec<PartitionRecords>)> = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_data
                .into_iter()
                .map(|data| (data.index, data.records))
                .collect();
            (topic.name.0.to_string(), partitions)
        })
        .collect();
    let topics = parts
        .into_iter()
        .map(|(name, partitions)| {
            let denied = match ctx.authorize_topic(Operation::Write, &name) {
                Ok(()) => None,
                Err(err) => Some(errors::answer(&err)),
            };
            let partitions = partitions
                .into_iter()
                .map(|(index, records)| {
                    let refused = refuse_all.as_ref().or(denied.as_ref());
                    let queued = match (refused, u32::try_from(index)) {
                        (Some((code, message)), _) => Queued::Refused(*code, message.clone()),
                        (None, Err(_)) => Queued::Refused(
                            ResponseError::UnknownTopicOrPartition.code(),
                            format!("partition {index} of topic {name:?} does not exist"),
                        ),
                        (None, Ok(partition)) => {
                            queue(ctx, &name, partition, records.unwrap_or_default())
                        }
                    };
                    (index, queued)
                })
                .collect();
            (name, partitions)
        })
        .collect();
    Submitted {
        correlation_id,
        version,
        acks,
        // As in Kafka, the timeout bounds only the wait of acks=-1 (there for replication).
        timeout: u64::try_from(timeout_ms)
            .ok()
            .filter(|&ms| ms > 0 && acks == -1)
            .map(Duration::from_millis),
        topics,
        throttle_ms,
    }
}

/// Queues one partition's batches. The log rewrites base offsets in place, so it needs the
/// bytes to itself: when `records` is the request's only remaining view they are taken as
/// they are, else copied once.
fn queue(ctx: &Context, topic: &str, partition: u32, records: Bytes) -> Queued {
    let batches = records
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    match ctx.broker.submit_batches(topic, partition, batches) {
        Ok(pending) => Queued::Pending(pending),
        Err(err) => {
            let (code, message) = errors::answer(&err);
            Queued::Refused(code, message)
        }
    }
}

impl Submitted {
    /// Waits until every partition's batches have room in the broker's in-flight budget (a
    /// partition refused for lack of room is answered with the error). The connection awaits
    /// this before it reads the next request, so it holds at most one request outside the
    /// budget.
    pub(crate) async fn admitted(mut self) -> Submitted {
        for (_, partitions) in &mut self.topics {
            for (_, queued) in partitions.iter_mut() {
                let taken = std::mem::replace(queued, Queued::Refused(0, String::new()));
                *queued = match taken {
                    Queued::Pending(pending) => match pending.admitted().await {
                        Ok(pending) => Queued::Pending(pending),
                        Err(err) => {
                            let (code, message) = errors::answer(&err);
                            Queued::Refused(code, message)
                        }
                    },
                    refused => refused,
                };
            }
        }
        self
    }

    /// Waits for every partition's append and encodes the answer; `Ok(None)` for `acks=0`,
    /// or an error that closes the connection when an `acks=0` produce failed (Kafka's way of
    /// telling such a client).
    pub(crate) async fn answer(self, ctx: &Context) -> Result<Option<Bytes>, KafkaError> {
        let Submitted {
            correlation_id,
            version,
            acks,
            timeout,
            topics,
            throttle_ms,
        } = self;
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut answered = Vec::with_capacity(partitions.len());
            for (index, queued) in partitions {
                answered.push(partition_answer(ctx, &name, index, queued, timeout).await);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partition_responses(answered),
            );
        }
        if acks == 0 {
            let failed = responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .find(|p| p.error_code != 0);
            return match failed {
                Some(p) => Err(KafkaError::UnacknowledgedProduce(
                    p.error_message.as_ref().map_or_else(
                        || format!("error code {}", p.error_code),
                        ToString::to_string,
                    ),
                )),
                None => Ok(None),
            };
        }
        let response = ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle_ms);
        respond_in(ApiKey::Produce, correlation_id, version, &response).map(Some)
    }
}

/// Waits for one partition's append (up to the request's timeout) and answers it.
async fn partition_answer(
    ctx: &Context,
    topic: &str,
    index: i32,
    queued: Queued,
    timeout: Option<Duration>,
) -> PartitionProduceResponse {
    let answer = PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    let pending = match queued {
        Queued::Pending(pending) => pending,
        Queued::Refused(code, message) => {
            return answer
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)));
        }
    };
    let waited = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, pending.wait()).await,
        None => Ok(pending.wait().await),
    };
    let appended = match waited {
        Ok(appended) => appended,
        Err(_elapsed) => {
            return answer
                .with_error_code(ResponseError::RequestTimedOut.code())
                .with_error_message(Some(StrBytes::from_string(format!(
                    "the append did not finish within the request's timeout_ms of {} ms; it may still be stored",
                    timeout.map_or(0, |t| t.as_millis())
                ))));
        }
    };
    match appended.and_then(|mut parts| parts.pop().ok_or(BrokerError::EmptyBatch)) {
        Ok(part) => {
            let log_start = u32::try_from(index)
                .ok()
                .and_then(|p| {
                    ctx.broker
                        .list_offset(topic, p, OffsetSpec::Earliest)
                        .ok()
                        .flatten()
                })
                .map_or(-1, offset);
            answer
                .with_base_offset(offset(part.base_offset))
                .with_log_start_offset(log_start)
        }
        Err(err) => {
            let (code, message) = errors::answer(&err);
            answer
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    }
}

/// An offset as Kafka's signed 64-bit field.
pub(crate) fn offset(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}
