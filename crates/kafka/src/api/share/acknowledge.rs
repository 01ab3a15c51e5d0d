//! Acknowledgements (KIP-932): what ShareAcknowledge and a ShareFetch's piggybacked
//! acknowledgements carry, turned into the broker's acks, and ShareAcknowledge itself.
//!
//! An acknowledgement batch names an offset range and either one type for all of it or one
//! per offset: 0 gap (no record there: nothing to do), 1 accept, 2 release, 3 reject.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch, PartitionData, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::{RequestHeader, ShareAcknowledgeRequest, ShareAcknowledgeResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::security::Operation;
use sluice_broker::{Ack, AckKind, BrokerError, NODE_ID, ShareMember};
use uuid::Uuid;

use super::members::{Partition, SessionEpoch};
use super::{close_session, session_error};
use crate::api::Context;
use crate::errors;

/// One acknowledgement batch as the request carries it.
#[derive(Debug, Clone)]
pub(super) struct AckBatch {
    /// The first offset.
    pub(super) first: i64,
    /// The last offset (inclusive).
    pub(super) last: i64,
    /// One type for the whole range, or one per offset.
    pub(super) types: Vec<i8>,
}

impl AckBatch {
    /// The batches of a request, from each one's first offset, last offset and types.
    pub(super) fn all<'a>(batches: impl Iterator<Item = (i64, i64, &'a [i8])>) -> Vec<AckBatch> {
        batches
            .map(|(first, last, types)| AckBatch {
                first,
                last,
                types: types.to_vec(),
            })
            .collect()
    }
}

/// The broker's acks for the batches of one partition, at most `limit` records (gaps do
/// not count). The error names what is wrong.
pub(super) fn acks_of(
    (topic, partition): &Partition,
    batches: &[AckBatch],
    limit: usize,
) -> Result<Vec<Ack>, String> {
    let mut acks = Vec::new();
    for batch in batches {
        let (Ok(first), Ok(last)) = (u64::try_from(batch.first), u64::try_from(batch.last)) else {
            return Err(format!(
                "acknowledgement batch {}..={}: offsets must not be negative",
                batch.first, batch.last
            ));
        };
        if last < first {
            return Err(format!(
                "acknowledgement batch {first}..={last}: last_offset is before first_offset"
            ));
        }
        let span = last - first + 1;
        let per_offset = match batch.types.len() {
            1 => false,
            n if u64::try_from(n).ok() == Some(span) => true,
            n => {
                return Err(format!(
                    "acknowledgement batch {first}..={last}: {n} acknowledge_types, expected 1 or {span}"
                ));
            }
        };
        if !per_offset && batch.types.first() == Some(&0) {
            // A gap over the whole range: nothing to do (and nothing to walk).
            continue;
        }
        if !per_offset {
            let total = u64::try_from(acks.len())
                .unwrap_or(u64::MAX)
                .saturating_add(span);
            if total > u64::try_from(limit).unwrap_or(u64::MAX) {
                return Err(format!(
                    "acknowledgements of {total} records in one request: a member holds at most {limit} (share.max_prefetch)"
                ));
            }
        }
        for (i, offset) in (first..=last).enumerate() {
            let kind_code = if per_offset {
                batch.types.get(i).copied().unwrap_or(0)
            } else {
                batch.types.first().copied().unwrap_or(0)
            };
            let kind = match kind_code {
                0 => continue,
                1 => AckKind::Accept,
                2 => AckKind::Release,
                3 => AckKind::Reject,
                other => {
                    return Err(format!(
                        "acknowledge type {other} at offset {offset}: expected 0 (gap), 1 (accept), 2 (release) or 3 (reject)"
                    ));
                }
            };
            if acks.len() >= limit {
                return Err(format!(
                    "acknowledgements of more than {limit} records in one request: a member holds at most {limit} (share.max_prefetch)"
                ));
            }
            acks.push(Ack {
                topic: topic.clone(),
                partition: *partition,
                offset,
                kind,
            });
        }
    }
    Ok(acks)
}

/// The acknowledgement outcome of one partition: its error code and message (0 and none
/// when every ack was applied).
pub(super) type AckOutcome = (i16, Option<String>);

/// Applies the acks of each partition through `member` and returns each partition's
/// outcome. Partitions whose batches do not parse get INVALID_REQUEST; a record this member
/// does not hold (or no longer: its lock expired) INVALID_RECORD_STATE.
pub(super) async fn apply(
    ctx: &Context,
    member: Option<&ShareMember>,
    wanted: Vec<(Partition, Vec<AckBatch>)>,
) -> BTreeMap<Partition, AckOutcome> {
    // A member holds at most its prefetch: no request acknowledges more, in all.
    let limit = usize::try_from(ctx.broker.share_config().max_prefetch).unwrap_or(usize::MAX);
    let mut outcomes = BTreeMap::new();
    let mut named = BTreeMap::<&Partition, usize>::new();
    for (partition, _) in &wanted {
        *named.entry(partition).or_default() += 1;
    }
    let twice: Vec<Partition> = named
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(p, _)| p.clone())
        .collect();
    let mut acks = Vec::new();
    let mut owners = Vec::new();
    for (partition, batches) in wanted {
        if twice.contains(&partition) {
            let reason = "the partition is named twice in one request: none of its acknowledgements is applied";
            outcomes.insert(
                partition,
                (
                    ResponseError::InvalidRequest.code(),
                    Some(reason.to_owned()),
                ),
            );
            continue;
        }
        match acks_of(&partition, &batches, limit - acks.len()) {
            Ok(parsed) => {
                owners.extend(std::iter::repeat_n(partition.clone(), parsed.len()));
                acks.extend(parsed);
                outcomes.insert(partition, (0, None));
            }
            Err(reason) => {
                outcomes.insert(
                    partition,
                    (ResponseError::InvalidRequest.code(), Some(reason)),
                );
            }
        }
    }
    if acks.is_empty() {
        return outcomes;
    }
    let Some(member) = member else {
        for partition in owners {
            outcomes.insert(
                partition,
                (
                    ResponseError::InvalidRecordState.code(),
                    Some("the member holds no records: none of its topics exists".to_owned()),
                ),
            );
        }
        return outcomes;
    };
    match member.acknowledge(acks).await {
        Ok(results) => {
            for (partition, result) in owners.into_iter().zip(results) {
                if let Err(err) = result {
                    let outcome = outcomes.entry(partition).or_insert((0, None));
                    if outcome.0 == 0 {
                        *outcome = failure(&err);
                    }
                }
            }
        }
        Err(err) => {
            let failed = failure(&err);
            for partition in owners {
                outcomes.insert(partition, failed.clone());
            }
        }
    }
    outcomes
}

/// A failed acknowledgement as an outcome.
fn failure(err: &BrokerError) -> AckOutcome {
    let (code, message) = errors::answer(err);
    (code, Some(message))
}

/// Answers ShareAcknowledge: applies the acknowledgements within the member's share session
/// (which it moves on, or closes with epoch -1, releasing what the member still holds).
pub(crate) async fn share_acknowledge(
    ctx: &Context,
    _header: &RequestHeader,
    request: ShareAcknowledgeRequest,
) -> ShareAcknowledgeResponse {
    let refuse = |code: ResponseError, message: String| {
        ShareAcknowledgeResponse::default()
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
        return ShareAcknowledgeResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let epoch = SessionEpoch::of(request.share_session_epoch);
    if epoch == SessionEpoch::Open {
        return refuse(
            ResponseError::InvalidShareSessionEpoch,
            "a ShareAcknowledge cannot open a share session (share_session_epoch 0)".to_owned(),
        );
    }
    // Partitions named by id: resolved, or answered UNKNOWN_TOPIC_ID.
    let mut unknown: Vec<(Uuid, i32)> = Vec::new();
    let mut wanted: Vec<(Partition, Vec<AckBatch>)> = Vec::new();
    let mut names: BTreeMap<String, Uuid> = BTreeMap::new();
    for topic in &request.topics {
        let name = ctx.shares.topic_ids.name(&ctx.broker, topic.topic_id);
        for p in &topic.partitions {
            match (&name, u32::try_from(p.partition_index)) {
                (Some(name), Ok(partition)) => {
                    names.insert(name.clone(), topic.topic_id);
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
                _ => unknown.push((topic.topic_id, p.partition_index)),
            }
        }
    }
    let admitted = match ctx.shares.members.admit(&group, &id, epoch, &[], &[]) {
        Ok(admitted) => admitted,
        Err(code) => return refuse(code, session_error(code, &group, &id)),
    };
    let outcomes = apply(ctx, admitted.member.as_deref(), wanted).await;
    if epoch == SessionEpoch::Close {
        close_session(ctx, &group, &id).await;
    }
    let mut topics: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
    let leader = LeaderIdAndEpoch::default()
        .with_leader_id(NODE_ID)
        .with_leader_epoch(0);
    for ((topic, partition), (code, message)) in outcomes {
        let id = names.get(&topic).copied().unwrap_or_default();
        topics.entry(id).or_default().push(
            PartitionData::default()
                .with_partition_index(i32::try_from(partition).unwrap_or(i32::MAX))
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
                .with_current_leader(leader.clone()),
        );
    }
    for (id, partition) in unknown {
        topics.entry(id).or_default().push(
            PartitionData::default()
                .with_partition_index(partition)
                .with_error_code(ResponseError::UnknownTopicId.code())
                .with_current_leader(leader.clone()),
        );
    }
    ShareAcknowledgeResponse::default().with_responses(
        topics
            .into_iter()
            .map(|(topic_id, partitions)| {
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions)
            })
            .collect(),
    )
}
