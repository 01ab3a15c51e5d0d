//! ShareFetch: piggybacked acknowledgements first, then records acquired for the member.
//!
//! The answer carries, per partition, the stored record batches that hold the acquired
//! records ([`sluice_broker::Broker::fetch_range`], as written, compressed ones still
//! compressed) and the acquired ranges with their delivery counts; the client takes from the
//! batches only the records inside its ranges, as from a Kafka broker. Records acquired from
//! a partition the session does not fetch are released at once.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::{RequestHeader, ShareFetchRequest, ShareFetchResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::security::Operation;
use sluice_broker::{Ack, AckKind, AcquiredRecord, NODE_ID, ShareMember};
use uuid::Uuid;

use super::acknowledge::{AckBatch, AckOutcome, apply};
use super::members::{Partition, SessionEpoch};
use super::{close_session, session_error};
use crate::api::Context;
use crate::api::topic_ids::topic_id;
use crate::errors;

/// Records asked for when the request leaves `max_records` unset (Kafka's `max.poll.records`
/// default).
const DEFAULT_MAX_RECORDS: u32 = 500;

/// Records acquired, by partition: (offset, delivery count) in offset order.
type Acquired = BTreeMap<Partition, Vec<(u64, u32)>>;

/// One partition's part of the answer.
#[derive(Debug, Default)]
struct Answer {
    /// The partition's error (fetching).
    error: Option<(i16, String)>,
    /// The acknowledgement outcome, when the request acknowledged anything here.
    acknowledged: Option<AckOutcome>,
    /// Stored batches holding the acquired records.
    records: Option<Bytes>,
    /// The acquired ranges.
    acquired: Vec<AcquiredRecords>,
}

/// Answers ShareFetch.
pub(crate) async fn share_fetch(
    ctx: &Context,
    _header: &RequestHeader,
    request: ShareFetchRequest,
) -> ShareFetchResponse {
    let refuse = |code: ResponseError, message: String| {
        ShareFetchResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    let (Some(group), Some(id)) = (&request.group_id, &request.member_id) else {
        return refuse(
            ResponseError::InvalidRequest,
            "group_id and member_id must be set".to_owned(),
        );
    };
    let (group, id) = (group.0.to_string(), id.to_string());
    if let Err(denied) = ctx.authorize_group(Operation::Read, &group) {
        let (code, message) = errors::answer(&denied);
        return ShareFetchResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let epoch = SessionEpoch::of(request.share_session_epoch);

    // The partitions named, resolved from their topic ids.
    let mut answers: BTreeMap<(Uuid, i32), Answer> = BTreeMap::new();
    let mut add: Vec<Partition> = Vec::new();
    let mut wanted: Vec<(Partition, Vec<AckBatch>)> = Vec::new();
    for topic in &request.topics {
        let name = ctx.shares.topic_ids.name(&ctx.broker, topic.topic_id);
        for p in &topic.partitions {
            let answer = answers
                .entry((topic.topic_id, p.partition_index))
                .or_default();
            let (Some(name), Ok(partition)) = (&name, u32::try_from(p.partition_index)) else {
                answer.error = Some((
                    ResponseError::UnknownTopicId.code(),
                    format!("no topic has id {}", topic.topic_id),
                ));
                continue;
            };
            if let Err(denied) = ctx.authorize_topic(Operation::Read, name) {
                answer.error = Some(errors::answer(&denied));
                continue;
            }
            // Only partitions that exist join a session, so it stays within the topics'.
            if ctx
                .broker
                .partition_count(name)
                .is_ok_and(|n| partition >= n)
            {
                answer.error = Some((
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("topic {name:?} has no partition {partition}"),
                ));
                continue;
            }
            add.push((name.clone(), partition));
            if !p.acknowledgement_batches.is_empty() {
                wanted.push((
                    (name.clone(), partition),
                    AckBatch::all(p.acknowledgement_batches.iter().map(|b| {
                        (
                            b.first_offset,
                            b.last_offset,
                            b.acknowledge_types.as_slice(),
                        )
                    })),
                ));
            }
        }
    }
    if epoch == SessionEpoch::Open && !wanted.is_empty() {
        return refuse(
            ResponseError::InvalidRequest,
            "a ShareFetch opening a share session (share_session_epoch 0) cannot acknowledge"
                .to_owned(),
        );
    }
    let mut forget: Vec<Partition> = Vec::new();
    for topic in &request.forgotten_topics_data {
        if let Some(name) = ctx.shares.topic_ids.name(&ctx.broker, topic.topic_id) {
            forget.extend(
                topic
                    .partitions
                    .iter()
                    .filter_map(|p| u32::try_from(*p).ok())
                    .map(|p| (name.clone(), p)),
            );
        }
    }
    let admitted = match ctx.shares.members.admit(&group, &id, epoch, &add, &forget) {
        Ok(admitted) => admitted,
        Err(code) => return refuse(code, session_error(code, &group, &id)),
    };
    let member = admitted.member.as_deref();

    for ((topic, partition), outcome) in apply(ctx, member, wanted).await {
        let key = (
            topic_id(&topic),
            i32::try_from(partition).unwrap_or(i32::MAX),
        );
        answers.entry(key).or_default().acknowledged = Some(outcome);
    }
    let lock = member.map_or(Duration::ZERO, ShareMember::record_lock_duration);
    let response = ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(i32::try_from(lock.as_millis()).unwrap_or(i32::MAX));
    if epoch == SessionEpoch::Close {
        close_session(ctx, &group, &id).await;
        return response.with_responses(responses(answers));
    }

    if let Some(member) = member.filter(|_| !admitted.partitions.is_empty()) {
        let max_records = u32::try_from(request.max_records)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_MAX_RECORDS)
            .min(ctx.broker.share_config().max_prefetch);
        let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
        let session = &admitted.partitions;
        let in_session =
            |topic: &str, partition: u32| session.contains(&(topic.to_owned(), partition));
        match member
            .acquire_from(max_records, max_wait, &in_session)
            .await
        {
            Ok(records) => {
                let mut unread = Vec::new();
                for ((topic, partition), records) in by_partition(records) {
                    let key = (
                        topic_id(&topic),
                        i32::try_from(partition).unwrap_or(i32::MAX),
                    );
                    let answer = answers.entry(key).or_default();
                    if !fill(ctx, &topic, partition, &records, answer).await {
                        unread.extend(records.iter().map(|&(offset, _)| Ack {
                            topic: topic.clone(),
                            partition,
                            offset,
                            kind: AckKind::Release,
                        }));
                    }
                }
                if !unread.is_empty() {
                    let _ = member.acknowledge(unread).await;
                }
            }
            Err(err) => {
                let (code, message) = errors::answer(&err);
                return response
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_responses(responses(answers));
            }
        }
    }
    response.with_responses(responses(answers))
}

/// Acquired records by partition, each in offset order.
fn by_partition(records: Vec<AcquiredRecord>) -> Acquired {
    let mut acquired = Acquired::new();
    for record in records {
        acquired
            .entry((record.topic.to_string(), record.partition))
            .or_default()
            .push((record.offset, record.delivery_count));
    }
    for offsets in acquired.values_mut() {
        offsets.sort_unstable();
    }
    acquired
}

/// The acquired ranges of one partition: consecutive offsets with the same delivery count.
fn ranges(records: &[(u64, u32)]) -> Vec<AcquiredRecords> {
    let mut out: Vec<AcquiredRecords> = Vec::new();
    for &(offset, count) in records {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let count = i16::try_from(count).unwrap_or(i16::MAX);
        match out.last_mut() {
            Some(last)
                if last.last_offset.checked_add(1) == Some(offset)
                    && last.delivery_count == count =>
            {
                last.last_offset = offset;
            }
            _ => out.push(
                AcquiredRecords::default()
                    .with_first_offset(offset)
                    .with_last_offset(offset)
                    .with_delivery_count(count),
            ),
        }
    }
    out
}

/// Fills one partition's answer with the batches holding its acquired records and their
/// ranges; `false` when the batches cannot be read (the partition then answers the error,
/// and the caller releases the records).
async fn fill(
    ctx: &Context,
    topic: &str,
    partition: u32,
    records: &[(u64, u32)],
    answer: &mut Answer,
) -> bool {
    let (Some(&(first, _)), Some(&(last, _))) = (records.first(), records.last()) else {
        return true;
    };
    match ctx.broker.fetch_range(topic, partition, first, last).await {
        Ok(batches) => {
            answer.records = Some(batches);
            answer.acquired = ranges(records);
            true
        }
        Err(err) => {
            answer.error = Some(errors::answer(&err));
            false
        }
    }
}

/// The answer's topics, each with its partitions.
fn responses(answers: BTreeMap<(Uuid, i32), Answer>) -> Vec<ShareFetchableTopicResponse> {
    let leader = LeaderIdAndEpoch::default()
        .with_leader_id(NODE_ID)
        .with_leader_epoch(0);
    let mut topics: Vec<ShareFetchableTopicResponse> = Vec::new();
    for ((topic_id, partition), answer) in answers {
        let (error_code, error_message) = answer.error.unzip();
        let (ack_code, ack_message) = answer.acknowledged.unwrap_or((0, None));
        let data = PartitionData::default()
            .with_partition_index(partition)
            .with_error_code(error_code.unwrap_or(0))
            .with_error_message(error_message.map(StrBytes::from_string))
            .with_acknowledge_error_code(ack_code)
            .with_acknowledge_error_message(ack_message.map(StrBytes::from_string))
            .with_current_leader(leader.clone())
            // librdkafka reads a null record set as malformed: none is an empty one.
            .with_records(Some(answer.records.unwrap_or_default()))
            .with_acquired_records(answer.acquired);
        match topics.last_mut() {
            Some(last) if last.topic_id == topic_id => last.partitions.push(data),
            _ => topics.push(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    topics
}
