//! Conversions between the wire messages of `sluice.v1.Groups` and the broker's group types.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_broker::{
    BrokerError, CommittedOffset, GroupDescription, GroupState, JoinGroup, MemberDescription,
    OffsetReset, PartitionLag, TopicPartition,
};
use sluice_proto::v1 as pb;
use tonic::Status;

use crate::status::{invalid_field, require_topic, to_status};

/// Partitions grouped by topic, topics and partitions sorted.
pub(crate) fn topic_partitions(
    partitions: impl IntoIterator<Item = TopicPartition>,
) -> Vec<pb::TopicPartitions> {
    let mut by_topic: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            pb::TopicPartitions { topic, partitions }
        })
        .collect()
}

/// The partitions of wire `TopicPartitions`.
pub(crate) fn partitions_of(groups: Vec<pb::TopicPartitions>) -> Vec<TopicPartition> {
    groups
        .into_iter()
        .flat_map(|group| {
            let topic = group.topic;
            group
                .partitions
                .into_iter()
                .map(move |p| TopicPartition::new(topic.clone(), p))
        })
        .collect()
}

/// The offsets of a commit; `field` names the request field in errors.
pub(crate) fn offset_commits(
    offsets: Vec<pb::OffsetCommit>,
    field: &str,
) -> Result<Vec<(TopicPartition, u64)>, Status> {
    offsets
        .into_iter()
        .map(|commit| {
            require_topic(&format!("{field}.topic"), &commit.topic)?;
            Ok((
                TopicPartition::new(commit.topic, commit.partition),
                commit.offset,
            ))
        })
        .collect()
}

/// The broker's join request for a wire join sent from `client_host`.
pub fn join_request(join: pb::JoinGroup, client_host: String) -> Result<JoinGroup, Status> {
    if join.group.is_empty() {
        return Err(invalid_field("join.group", "must not be empty"));
    }
    if let Some(topic) = join.topics.iter().find(|t| t.is_empty()) {
        return Err(invalid_field(
            "join.topics",
            &format!("topic names must not be empty (got {topic:?})"),
        ));
    }
    let millis = |ms: u32| (ms != 0).then(|| Duration::from_millis(ms.into()));
    Ok(JoinGroup {
        auto_offset_reset: offset_reset(join.auto_offset_reset()),
        group: join.group,
        topics: join.topics,
        instance_id: join.instance_id,
        session_timeout: millis(join.session_timeout_ms),
        rebalance_timeout: millis(join.rebalance_timeout_ms),
        client_host,
    })
}

fn offset_reset(reset: pb::OffsetReset) -> OffsetReset {
    match reset {
        pb::OffsetReset::Earliest => OffsetReset::Earliest,
        pb::OffsetReset::Latest | pb::OffsetReset::Unspecified => OffsetReset::Latest,
    }
}

/// Milliseconds of a duration, saturated to `u32`.
pub(crate) fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// A broker error as an in-message wire error, with the status code a call would get.
pub(crate) fn wire_error(err: BrokerError) -> pb::Error {
    status_error(&to_status(err))
}

/// A status as an in-message wire error.
pub(crate) fn status_error(status: &Status) -> pb::Error {
    pb::Error {
        code: status.code().into(),
        message: status.message().to_owned(),
    }
}

/// A committed offset on the wire.
pub(crate) fn committed_offset(offset: CommittedOffset) -> pb::CommittedOffset {
    pb::CommittedOffset {
        topic: offset.partition.topic,
        partition: offset.partition.partition,
        offset: offset.committed.map(|c| c.offset),
        commit_timestamp_ms: offset.committed.map_or(0, |c| c.commit_ms),
    }
}

/// A group state on the wire.
pub(crate) fn group_state(state: GroupState) -> pb::GroupState {
    match state {
        GroupState::Empty => pb::GroupState::Empty,
        GroupState::Stable => pb::GroupState::Stable,
        // The join and sync phases of client-assigned members are rebalancing too.
        GroupState::Rebalancing
        | GroupState::PreparingRebalance
        | GroupState::CompletingRebalance => pb::GroupState::Rebalancing,
    }
}

/// A group description on the wire.
pub(crate) fn group_description(group: GroupDescription) -> pb::DescribeGroupResponse {
    pb::DescribeGroupResponse {
        group: group.name,
        state: group_state(group.state).into(),
        generation: group.generation,
        members: group.members.into_iter().map(member_description).collect(),
        partitions: group.partitions.into_iter().map(partition_lag).collect(),
    }
}

fn member_description(member: MemberDescription) -> pb::MemberDescription {
    pb::MemberDescription {
        member_id: member.member_id,
        instance_id: member.instance_id,
        client_host: member.client_host,
        topics: member.topics,
        assigned: topic_partitions(member.assigned),
        revoking: topic_partitions(member.revoking),
        connected: member.connected,
        session_timeout_ms: millis(member.session_timeout),
    }
}

fn partition_lag(lag: PartitionLag) -> pb::PartitionLag {
    pb::PartitionLag {
        topic: lag.partition.topic,
        partition: lag.partition.partition,
        committed_offset: lag.committed.map(|c| c.offset),
        commit_timestamp_ms: lag.committed.map_or(0, |c| c.commit_ms),
        log_start_offset: lag.log_start_offset,
        high_watermark: lag.high_watermark,
        lag: lag.lag,
        member_id: lag.owner.unwrap_or_default(),
        delay_ms: i64::try_from(lag.delay.as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_group_by_topic_and_back() {
        let partitions = vec![
            TopicPartition::new("b", 2),
            TopicPartition::new("a", 1),
            TopicPartition::new("b", 0),
        ];
        let wire = topic_partitions(partitions);
        assert_eq!(
            wire,
            vec![
                pb::TopicPartitions {
                    topic: "a".into(),
                    partitions: vec![1]
                },
                pb::TopicPartitions {
                    topic: "b".into(),
                    partitions: vec![0, 2]
                },
            ]
        );
        assert_eq!(
            partitions_of(wire),
            vec![
                TopicPartition::new("a", 1),
                TopicPartition::new("b", 0),
                TopicPartition::new("b", 2)
            ]
        );
    }

    #[test]
    fn join_request_maps_defaults_and_rejects_empty_names() {
        let join = pb::JoinGroup {
            group: "g".into(),
            topics: vec!["t".into()],
            instance_id: Some("i".into()),
            auto_offset_reset: pb::OffsetReset::Earliest.into(),
            session_timeout_ms: 1500,
            rebalance_timeout_ms: 0,
            max_bytes: 0,
        };
        let request = join_request(join.clone(), "127.0.0.1".into()).expect("valid join");
        assert_eq!(request.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(request.session_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(request.rebalance_timeout, None);
        assert_eq!(request.instance_id.as_deref(), Some("i"));
        let unspecified = pb::JoinGroup {
            auto_offset_reset: 0,
            ..join.clone()
        };
        assert_eq!(
            join_request(unspecified, String::new())
                .map(|r| r.auto_offset_reset)
                .ok(),
            Some(OffsetReset::Latest)
        );
        let no_group = pb::JoinGroup {
            group: String::new(),
            ..join.clone()
        };
        assert!(
            join_request(no_group, String::new())
                .is_err_and(|s| s.message().starts_with("join.group:"))
        );
        let empty_topic = pb::JoinGroup {
            topics: vec![String::new()],
            ..join
        };
        assert!(
            join_request(empty_topic, String::new())
                .is_err_and(|s| s.message().starts_with("join.topics:"))
        );
    }

    #[test]
    fn commits_need_topics() {
        let ok = offset_commits(
            vec![pb::OffsetCommit {
                topic: "t".into(),
                partition: 3,
                offset: 9,
            }],
            "offsets",
        );
        assert_eq!(ok.ok(), Some(vec![(TopicPartition::new("t", 3), 9)]));
        let missing = offset_commits(vec![pb::OffsetCommit::default()], "offsets");
        assert!(missing.is_err_and(|s| s.message().starts_with("offsets.topic:")));
    }
}
