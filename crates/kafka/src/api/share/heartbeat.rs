//! ShareGroupHeartbeat (joining, staying in and leaving a share group) and
//! ShareGroupDescribe.
//!
//! A member joins with epoch 0, its own id (a UUID) and the topics it subscribes to, and
//! gets epoch 1 and its assignment: every partition of every subscribed topic that exists,
//! since the broker shares records, not partitions, among members. Later heartbeats carry
//! the epoch; a new subscription, or a subscribed topic appearing or growing partitions,
//! moves the epoch on and hands out the new assignment. Epoch -1 leaves.

use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::share_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    GroupId, RequestHeader, ShareGroupDescribeRequest, ShareGroupDescribeResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::security::Operation;
use sluice_broker::{BrokerError, ShareJoin, ShareMember};

use super::members::Member;
use crate::api::Context;
use crate::api::topic_ids::topic_id;
use crate::errors;

/// The member epoch that leaves the group.
const LEAVE_EPOCH: i32 = -1;
/// `authorized_operations` when the client did not ask for them.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;
/// The assignor ShareGroupDescribe names (Kafka's share groups use "simple").
const ASSIGNOR: &str = "simple";

/// A protocol string.
fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// The existing topics among `topics`, each with its partition count.
fn assignment_of(ctx: &Context, topics: &[String]) -> Vec<(String, u32)> {
    topics
        .iter()
        .filter_map(|t| ctx.broker.partition_count(t).ok().map(|n| (t.clone(), n)))
        .collect()
}

/// Joins the broker's share group reading the assigned topics (none assigned: no broker
/// member), with the most records a member may hold as its prefetch.
pub(super) async fn join_broker(
    ctx: &Context,
    group: &str,
    assigned: &[(String, u32)],
) -> Result<Option<Arc<ShareMember>>, BrokerError> {
    if assigned.is_empty() {
        return Ok(None);
    }
    let member = ctx
        .broker
        .share_join(ShareJoin {
            group: group.to_owned(),
            topics: assigned.iter().map(|(t, _)| t.clone()).collect(),
            prefetch: ctx.broker.share_config().max_prefetch,
            settings: None,
        })
        .await?;
    Ok(Some(Arc::new(member)))
}

/// The heartbeat's answer for an assignment.
fn assignment(assigned: &[(String, u32)]) -> Assignment {
    Assignment::default().with_topic_partitions(
        assigned
            .iter()
            .map(|(topic, count)| {
                TopicPartitions::default()
                    .with_topic_id(topic_id(topic))
                    .with_partitions((0..*count).filter_map(|p| i32::try_from(p).ok()).collect())
            })
            .collect(),
    )
}

/// Answers ShareGroupHeartbeat.
pub(crate) async fn heartbeat(
    ctx: &Context,
    header: &RequestHeader,
    request: ShareGroupHeartbeatRequest,
) -> ShareGroupHeartbeatResponse {
    let interval_ms =
        i32::try_from(ctx.config.share_heartbeat_interval.as_millis()).unwrap_or(i32::MAX);
    let response = ShareGroupHeartbeatResponse::default().with_heartbeat_interval_ms(interval_ms);
    let refuse = |code: ResponseError, message: String| {
        ShareGroupHeartbeatResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(text(message)))
    };
    let group = request.group_id.0.to_string();
    let id = request.member_id.to_string();
    if group.is_empty() {
        return refuse(
            ResponseError::InvalidGroupId,
            "group_id must not be empty".to_owned(),
        );
    }
    if id.is_empty() {
        return refuse(
            ResponseError::InvalidRequest,
            "member_id must not be empty: a share consumer names itself with a UUID".to_owned(),
        );
    }
    if let Err(denied) = ctx.authorize_group(Operation::Read, &group) {
        let (code, message) = errors::answer(&denied);
        return ShareGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(text(message)));
    }
    let subscribed: Option<Vec<String>> = request.subscribed_topic_names.as_ref().map(|names| {
        let mut names: Vec<String> = names.iter().map(|n| n.0.to_string()).collect();
        names.sort_unstable();
        names.dedup();
        names
    });
    // A subscription may name only topics the principal may see, as in Kafka.
    for topic in subscribed.iter().flatten() {
        if let Err(denied) = ctx.authorize_topic(Operation::Describe, topic) {
            let (code, message) = errors::answer(&denied);
            return ShareGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(text(message)));
        }
    }
    let response = response.with_member_id(Some(request.member_id.clone()));
    match request.member_epoch {
        LEAVE_EPOCH => {
            // Dropped here, with no lock held: releases what it held.
            drop(ctx.shares.members.remove(&group, &id));
            response.with_member_epoch(LEAVE_EPOCH)
        }
        0 => {
            let Some(topics) = subscribed else {
                return refuse(
                    ResponseError::InvalidRequest,
                    "subscribed_topic_names must be set when joining (member_epoch 0)".to_owned(),
                );
            };
            let limit = ctx.broker.share_config().max_members;
            if ctx.shares.members.with(&group, &id, |_| ()).is_none()
                && ctx.shares.members.count(&group) >= limit
            {
                return refuse(
                    ResponseError::GroupMaxSizeReached,
                    format!("share group {group:?} has {limit} members (share.max_members)"),
                );
            }
            let assigned = assignment_of(ctx, &topics);
            let member = match join_broker(ctx, &group, &assigned).await {
                Ok(joined) => joined,
                Err(err) => {
                    let (code, message) = errors::answer(&err);
                    return response
                        .with_error_code(code)
                        .with_error_message(Some(text(message)));
                }
            };
            let replaced = ctx.shares.members.insert(
                &group,
                &id,
                Member {
                    member,
                    epoch: 1,
                    topics,
                    assigned: assigned.clone(),
                    last_seen: Instant::now(),
                    client_id: header
                        .client_id
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string),
                    client_host: format!("/{}", ctx.peer.ip()),
                    session: None,
                },
            );
            drop(replaced);
            response
                .with_member_epoch(1)
                .with_assignment(Some(assignment(&assigned)))
        }
        epoch => {
            // Under the lock: check the epoch, note the heartbeat, see what changed.
            let seen = ctx.shares.members.with(&group, &id, |m| {
                if m.epoch != epoch {
                    return Err(m.epoch);
                }
                m.last_seen = Instant::now();
                if let Some(topics) = &subscribed {
                    m.topics.clone_from(topics);
                }
                Ok((m.topics.clone(), m.assigned.clone(), m.member.is_some()))
            });
            let (topics, was, joined) = match seen {
                None => {
                    return refuse(
                        ResponseError::UnknownMemberId,
                        format!(
                            "member {id:?} is not in share group {group:?}: join with member_epoch 0"
                        ),
                    );
                }
                Some(Err(current)) => {
                    return refuse(
                        ResponseError::FencedMemberEpoch,
                        format!("member epoch {epoch} is not the current one ({current})"),
                    );
                }
                Some(Ok(seen)) => seen,
            };
            let assigned = assignment_of(ctx, &topics);
            // A member with topics but no broker member (a rejoin failed) joins again too.
            if assigned == was && (joined || assigned.is_empty()) {
                return response.with_member_epoch(epoch);
            }
            // The assignment changed: a broker member reading the new topics replaces the
            // old one (what the old one held is released), under a new epoch.
            let member = match join_broker(ctx, &group, &assigned).await {
                Ok(joined) => joined,
                Err(err) => {
                    let (code, message) = errors::answer(&err);
                    return response
                        .with_error_code(code)
                        .with_error_message(Some(text(message)));
                }
            };
            let next = epoch.checked_add(1).unwrap_or(1);
            let moved = ctx.shares.members.with(&group, &id, |m| {
                if m.epoch != epoch {
                    return Err(());
                }
                m.epoch = next;
                m.assigned.clone_from(&assigned);
                Ok(std::mem::replace(&mut m.member, member.clone()))
            });
            // Whichever broker member lost is dropped here, with no lock held.
            match moved {
                Some(Ok(old)) => {
                    drop(old);
                    response
                        .with_member_epoch(next)
                        .with_assignment(Some(self::assignment(&assigned)))
                }
                _ => refuse(
                    ResponseError::FencedMemberEpoch,
                    format!("member {id:?} rejoined or left meanwhile"),
                ),
            }
        }
    }
}

/// Answers ShareGroupDescribe: each group's members as this listener knows them.
pub(crate) async fn describe(
    ctx: &Context,
    _header: &RequestHeader,
    request: ShareGroupDescribeRequest,
) -> ShareGroupDescribeResponse {
    let groups = request
        .group_ids
        .iter()
        .map(|group_id| describe_one(ctx, group_id))
        .collect();
    ShareGroupDescribeResponse::default().with_groups(groups)
}

fn describe_one(ctx: &Context, group_id: &GroupId) -> DescribedGroup {
    let group = group_id.0.as_str();
    let described = DescribedGroup::default()
        .with_group_id(group_id.clone())
        .with_authorized_operations(OPERATIONS_NOT_ASKED);
    let described_group = ctx
        .authorize_group(Operation::Describe, group)
        .and_then(|()| ctx.broker.describe_share_group(group).map(drop));
    if let Err(err) = described_group {
        let (code, message) = errors::answer(&err);
        return described
            .with_error_code(code)
            .with_error_message(Some(text(message)));
    }
    let members = ctx.shares.members.describe(group);
    let epoch = members.iter().map(|m| m.epoch).max().unwrap_or(0);
    let state = if members.is_empty() {
        "Empty"
    } else {
        "Stable"
    };
    described
        .with_group_state(text(state))
        .with_group_epoch(epoch)
        .with_assignment_epoch(epoch)
        .with_assignor_name(text(ASSIGNOR))
        .with_members(
            members
                .into_iter()
                .map(|m| {
                    describe::Member::default()
                        .with_member_id(text(m.id))
                        .with_member_epoch(m.epoch)
                        .with_client_id(text(m.client_id))
                        .with_client_host(text(m.client_host))
                        .with_subscribed_topic_names(
                            m.topics.into_iter().map(|t| TopicName(text(t))).collect(),
                        )
                        .with_assignment(
                            describe::Assignment::default().with_topic_partitions(
                                m.assigned
                                    .iter()
                                    .map(|(topic, count)| {
                                        describe::TopicPartitions::default()
                                            .with_topic_id(topic_id(topic))
                                            .with_topic_name(TopicName(text(topic.clone())))
                                            .with_partitions(
                                                (0..*count)
                                                    .filter_map(|p| i32::try_from(p).ok())
                                                    .collect(),
                                            )
                                    })
                                    .collect(),
                            ),
                        )
                })
                .collect(),
        )
}
