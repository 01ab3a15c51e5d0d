//! The classic consumer group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups and DeleteGroups, each mapped onto
//! the broker's client-assigned groups. Member metadata and assignments pass through as the
//! clients encoded them (the assignors run in the clients); the offsets are the ones every
//! protocol shares.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Buf;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, RequestHeader, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use sluice_broker::{
    BrokerError, ClassicCommit, ClassicJoin, ClassicSync, GroupState, LeavingMember, TopicPartition,
};

use sluice_broker::security::{Operation, Resource};

use super::Context;
use super::produce::offset;
use crate::errors;

/// The protocol type Kafka's consumers join with; their metadata names their topics.
const CONSUMER: &str = "consumer";
/// `authorized_operations` when the client did not ask for them.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

/// A protocol string as the codec's type.
fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// A timeout in milliseconds from a request; `None` (the broker's default) when not positive.
fn timeout(ms: i32) -> Option<Duration> {
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

/// The topics a consumer subscribes to, read from its metadata for the first protocol
/// (Kafka's ConsumerProtocolSubscription); none when it does not parse.
fn subscribed_topics(protocol_type: &str, metadata: Option<&bytes::Bytes>) -> Vec<String> {
    let Some(mut metadata) = metadata.filter(|_| protocol_type == CONSUMER).cloned() else {
        return Vec::new();
    };
    if metadata.remaining() < 2 {
        return Vec::new();
    }
    let version = metadata.get_i16().clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut metadata, version)
        .map(|s| s.topics.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// JoinGroup: waits for the join phase to end and answers with the generation; the leader
/// also gets every member's metadata.
pub(crate) async fn join_group(
    ctx: &Context,
    header: &RequestHeader,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let version = header.request_api_version;
    let protocol_type = request.protocol_type.to_string();
    let topics = subscribed_topics(
        &protocol_type,
        request.protocols.first().map(|p| &p.metadata),
    );
    let join = ClassicJoin {
        group: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
        client_id: header
            .client_id
            .as_ref()
            .map_or_else(String::new, ToString::to_string),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout: timeout(request.session_timeout_ms),
        // Version 0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout: timeout(if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        }),
        protocol_type: protocol_type.clone(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
        topics,
    };
    // The protocol type is in the response from version 7 on.
    let typed = |protocol_type: String| (version >= 7).then(|| text(protocol_type));
    let response = JoinGroupResponse::default()
        .with_generation_id(-1)
        .with_protocol_type(typed(protocol_type))
        .with_protocol_name(Some(StrBytes::default()));
    if let Some(code) = ctx.group_refusal(Operation::Read, &join.group) {
        return response
            .with_error_code(code)
            .with_member_id(request.member_id);
    }
    match ctx.broker.join_classic(join).await {
        Ok(joined) => response
            .with_generation_id(joined.generation)
            .with_protocol_type(typed(joined.protocol_type))
            .with_protocol_name(Some(text(joined.protocol)))
            .with_leader(text(joined.leader))
            .with_skip_assignment(joined.skip_assignment && version >= 9)
            .with_member_id(text(joined.member_id))
            .with_members(
                joined
                    .members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(text(m.member_id))
                            .with_group_instance_id(
                                m.instance_id.filter(|_| version >= 5).map(text),
                            )
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
        Err(BrokerError::MemberIdRequired { member_id, .. }) => response
            .with_error_code(ResponseError::MemberIdRequired.code())
            .with_member_id(text(member_id)),
        Err(err) => response
            .with_error_code(errors::answer(&err).0)
            .with_member_id(request.member_id),
    }
}

/// SyncGroup: the leader hands in the assignment; every member gets its own.
pub(crate) async fn sync_group(
    ctx: &Context,
    header: &RequestHeader,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    // The protocol type and name are in the response from version 5 on.
    let named = |value: String| (header.request_api_version >= 5).then(|| text(value));
    let sync = ClassicSync {
        group: request.group_id.0.to_string(),
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
        protocol_type: request.protocol_type.as_ref().map(ToString::to_string),
        protocol: request.protocol_name.as_ref().map(ToString::to_string),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    if let Some(code) = ctx.group_refusal(Operation::Read, &sync.group) {
        return SyncGroupResponse::default().with_error_code(code);
    }
    match ctx.broker.sync_classic(sync).await {
        Ok(synced) => SyncGroupResponse::default()
            .with_protocol_type(named(synced.protocol_type))
            .with_protocol_name(named(synced.protocol))
            .with_assignment(synced.assignment),
        Err(err) => SyncGroupResponse::default().with_error_code(errors::answer(&err).0),
    }
}

/// Heartbeat: a member's sign of life; REBALANCE_IN_PROGRESS tells it to rejoin.
pub(crate) async fn heartbeat(
    ctx: &Context,
    _header: &RequestHeader,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    if let Some(code) = ctx.group_refusal(Operation::Read, request.group_id.0.as_str()) {
        return HeartbeatResponse::default().with_error_code(code);
    }
    let beat = ctx.broker.heartbeat_classic(
        request.group_id.0.as_str(),
        request.generation_id,
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(StrBytes::as_str),
    );
    HeartbeatResponse::default().with_error_code(beat.map_or_else(|e| errors::answer(&e).0, |()| 0))
}

/// LeaveGroup: one member (before version 3) or several leave; the rest rebalance.
pub(crate) async fn leave_group(
    ctx: &Context,
    header: &RequestHeader,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let members: Vec<LeavingMember> = if header.request_api_version < 3 {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            instance_id: None,
        }]
    } else {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(ToString::to_string),
            })
            .collect()
    };
    if let Some(code) = ctx.group_refusal(Operation::Read, request.group_id.0.as_str()) {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    match ctx
        .broker
        .leave_classic(request.group_id.0.as_str(), &members)
    {
        Ok(results) => {
            let codes: Vec<i16> = results
                .iter()
                .map(|r| r.as_ref().map_or_else(|e| errors::answer(e).0, |()| 0))
                .collect();
            // Before version 3 the one member's result is the top-level error.
            if header.request_api_version < 3 {
                return LeaveGroupResponse::default()
                    .with_error_code(codes.first().copied().unwrap_or(0));
            }
            LeaveGroupResponse::default().with_members(
                members
                    .iter()
                    .zip(&codes)
                    .map(|(m, &code)| {
                        MemberResponse::default()
                            .with_member_id(text(m.member_id.clone()))
                            .with_group_instance_id(m.instance_id.clone().map(text))
                            .with_error_code(code)
                    })
                    .collect(),
            )
        }
        Err(err) => LeaveGroupResponse::default().with_error_code(errors::answer(&err).0),
    }
}

/// OffsetCommit: durable before it is answered. The broker commits all of a request or
/// nothing, so every partition gets the same answer.
pub(crate) async fn offset_commit(
    ctx: &Context,
    _header: &RequestHeader,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let mut offsets = Vec::new();
    let mut refused = ctx.group_refusal(Operation::Read, request.group_id.0.as_str());
    // Topics the principal may not read: their partitions are answered with the refusal
    // and left out of the commit.
    let denied: HashMap<String, i16> = request
        .topics
        .iter()
        .filter_map(|t| {
            let name = t.name.0.as_str();
            Some((name.to_owned(), ctx.topic_refusal(Operation::Read, name)?))
        })
        .collect();
    for topic in &request.topics {
        if denied.contains_key(topic.name.0.as_str()) {
            continue;
        }
        for p in &topic.partitions {
            match (
                u32::try_from(p.partition_index),
                u64::try_from(p.committed_offset),
            ) {
                (Ok(partition), Ok(at)) => {
                    offsets.push((TopicPartition::new(topic.name.0.as_str(), partition), at));
                }
                (Err(_), _) => refused = Some(ResponseError::UnknownTopicOrPartition.code()),
                (_, Err(_)) => refused = Some(ResponseError::OffsetOutOfRange.code()),
            }
        }
    }
    let code = match refused {
        Some(code) => code,
        None => {
            let commit = ClassicCommit {
                group: request.group_id.0.to_string(),
                generation: request.generation_id_or_member_epoch,
                member_id: request.member_id.to_string(),
                instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
                offsets,
            };
            ctx.broker
                .commit_classic(&commit)
                .await
                .map_or_else(|e| errors::answer(&e).0, |()| 0)
        }
    };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let code = denied.get(topic.name.0.as_str()).copied().unwrap_or(code);
            OffsetCommitResponseTopic::default()
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
                .with_name(topic.name)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch (one group): the committed offsets of the partitions asked for, or of every
/// partition the group committed when `topics` is null; -1 where there is none.
pub(crate) async fn offset_fetch(
    ctx: &Context,
    _header: &RequestHeader,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let group = request.group_id.0.as_str();
    if let Some(code) = ctx.group_refusal(Operation::Describe, group) {
        return OffsetFetchResponse::default().with_error_code(code);
    }
    let committed = match ctx.broker.fetch_offsets(group, None) {
        Ok(committed) => committed,
        Err(err) => return OffsetFetchResponse::default().with_error_code(errors::answer(&err).0),
    };
    let partition = |index: i32, at: Option<u64>| {
        OffsetFetchResponsePartition::default()
            .with_partition_index(index)
            .with_committed_offset(at.map_or(-1, offset))
            .with_committed_leader_epoch(-1)
            .with_metadata(Some(StrBytes::default()))
    };
    let lookup = |topic: &str, index: i32| {
        committed
            .iter()
            .find(|c| {
                c.partition.topic == topic && i64::from(c.partition.partition) == i64::from(index)
            })
            .and_then(|c| c.committed.map(|c| c.offset))
    };
    let topics = match &request.topics {
        Some(topics) => topics
            .iter()
            .map(|t| {
                let name = t.name.0.as_str();
                let denied = ctx.topic_refusal(Operation::Describe, name);
                let answer = |i: i32| match denied {
                    Some(code) => partition(i, None).with_error_code(code),
                    None => partition(i, lookup(name, i)),
                };
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(t.partition_indexes.iter().map(|&i| answer(i)).collect())
            })
            .collect(),
        None => {
            let mut by_topic: Vec<OffsetFetchResponseTopic> = Vec::new();
            let visible = |topic: &str| ctx.permits(Operation::Describe, &Resource::topic(topic));
            for c in committed.iter().filter(|c| visible(&c.partition.topic)) {
                let Some(at) = c.committed else { continue };
                let index = i32::try_from(c.partition.partition).unwrap_or(i32::MAX);
                let entry = partition(index, Some(at.offset));
                match by_topic
                    .iter_mut()
                    .find(|t| t.name.0.as_str() == c.partition.topic)
                {
                    Some(topic) => topic.partitions.push(entry),
                    None => by_topic.push(
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(text(c.partition.topic.clone())))
                            .with_partitions(vec![entry]),
                    ),
                }
            }
            by_topic
        }
    };
    OffsetFetchResponse::default().with_topics(topics)
}

/// A group state under Kafka's name.
fn state_name(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::Stable => "Stable",
        GroupState::Rebalancing | GroupState::PreparingRebalance => "PreparingRebalance",
        GroupState::CompletingRebalance => "CompletingRebalance",
    }
}

/// DescribeGroups: state, protocol and members of each group; a group that does not exist is
/// `Dead`, as Kafka describes it.
pub(crate) async fn describe_groups(
    ctx: &Context,
    header: &RequestHeader,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let version = header.request_api_version;
    let groups = request
        .groups
        .into_iter()
        .map(|name| {
            let described = DescribedGroup::default()
                .with_group_id(name.clone())
                .with_authorized_operations(OPERATIONS_NOT_ASKED);
            if let Some(code) = ctx.group_refusal(Operation::Describe, name.0.as_str()) {
                return described.with_error_code(code);
            }
            match ctx.broker.describe_classic(name.0.as_str()) {
                Ok(group) => described
                    .with_group_state(text(state_name(group.state)))
                    .with_protocol_type(text(group.protocol_type))
                    .with_protocol_data(text(group.protocol))
                    .with_members(
                        group
                            .members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(text(m.member_id))
                                    .with_group_instance_id(
                                        m.instance_id.filter(|_| version >= 4).map(text),
                                    )
                                    .with_client_id(text(m.client_id))
                                    .with_client_host(text(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                Err(BrokerError::GroupNotFound { .. }) => {
                    described.with_group_state(StrBytes::from_static_str("Dead"))
                }
                // Error messages are in the response from version 6 on, beyond those served.
                Err(err) => described.with_error_code(errors::answer(&err).0),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// ListGroups: every group with members or committed offsets, of either kind, optionally
/// only those in the states asked for.
pub(crate) async fn list_groups(
    ctx: &Context,
    _header: &RequestHeader,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    // Describe on the cluster shows every group; else those the principal may describe.
    let all = ctx.permits(Operation::Describe, &Resource::cluster());
    let groups = ctx
        .broker
        .list_groups()
        .into_iter()
        .filter(|g| all || ctx.permits(Operation::Describe, &Resource::group(&g.name)))
        .filter(|g| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.as_str().eq_ignore_ascii_case(state_name(g.state)))
        })
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(text(g.name)))
                .with_protocol_type(text(g.protocol_type))
                .with_group_state(text(state_name(g.state)))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

/// DeleteGroups: removes groups without members, with their committed offsets.
pub(crate) async fn delete_groups(
    ctx: &Context,
    _header: &RequestHeader,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for name in request.groups_names {
        let code = match ctx.group_refusal(Operation::Delete, name.0.as_str()) {
            Some(code) => code,
            None => ctx
                .broker
                .delete_group(name.0.as_str())
                .await
                .map_or_else(|e| errors::answer(&e).0, |()| 0),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(name)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
