//! Conversions between the wire messages of `sluice.v1.ShareGroups` and the broker's share
//! group types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_broker::{
    Ack, AckKind, AcquiredRecord, BrokerError, ShareGroupDescription, ShareGroupSettings,
    ShareJoin, ShareOffsetReset, SharePartitionState,
};
use sluice_proto::v1 as pb;
use tonic::Status;

use crate::convert::fetched_record;
use crate::groups::wire::{millis, wire_error};
use crate::status::{invalid_field, require_topic};

/// The broker's join for a wire join; unset settings take the values of `defaults`.
pub(crate) fn share_join(
    join: pb::ShareJoin,
    defaults: &ShareGroupSettings,
) -> Result<ShareJoin, Status> {
    if join.group.is_empty() {
        return Err(invalid_field("join.group", "must not be empty"));
    }
    if join.topics.is_empty() {
        return Err(invalid_field("join.topics", "must name at least one topic"));
    }
    if let Some(topic) = join.topics.iter().find(|t| t.is_empty()) {
        return Err(invalid_field(
            "join.topics",
            &format!("topic names must not be empty (got {topic:?})"),
        ));
    }
    Ok(ShareJoin {
        group: join.group,
        topics: join.topics,
        prefetch: join.prefetch,
        settings: join
            .settings
            .map(|settings| merged_settings(defaults.clone(), settings)),
    })
}

/// `base` with the fields `changes` sets replaced. An empty dead-letter topic means none.
pub(crate) fn merged_settings(
    base: ShareGroupSettings,
    changes: pb::ShareGroupSettings,
) -> ShareGroupSettings {
    let auto_offset_reset = match changes.auto_offset_reset() {
        pb::OffsetReset::Earliest => ShareOffsetReset::Earliest,
        pb::OffsetReset::Latest => ShareOffsetReset::Latest,
        pb::OffsetReset::Unspecified => base.auto_offset_reset,
    };
    let ms = |ms: u32| Duration::from_millis(ms.into());
    ShareGroupSettings {
        record_lock_duration: changes
            .record_lock_duration_ms
            .map_or(base.record_lock_duration, ms),
        delivery_attempt_limit: changes
            .delivery_attempt_limit
            .unwrap_or(base.delivery_attempt_limit),
        dead_letter_topic: match changes.dead_letter_topic {
            Some(topic) if topic.is_empty() => None,
            Some(topic) => Some(topic),
            None => base.dead_letter_topic,
        },
        redelivery_backoff: changes
            .redelivery_backoff_ms
            .map_or(base.redelivery_backoff, ms),
        auto_offset_reset,
    }
}

/// Settings on the wire, every field set.
pub(crate) fn settings_message(settings: &ShareGroupSettings) -> pb::ShareGroupSettings {
    let reset = match settings.auto_offset_reset {
        ShareOffsetReset::Earliest => pb::OffsetReset::Earliest,
        ShareOffsetReset::Latest => pb::OffsetReset::Latest,
    };
    pb::ShareGroupSettings {
        record_lock_duration_ms: Some(millis(settings.record_lock_duration)),
        delivery_attempt_limit: Some(settings.delivery_attempt_limit),
        dead_letter_topic: Some(settings.dead_letter_topic.clone().unwrap_or_default()),
        redelivery_backoff_ms: Some(millis(settings.redelivery_backoff)),
        auto_offset_reset: reset.into(),
    }
}

/// Checks that every entry of a list of wire offsets names a topic; `field` names the
/// request field in errors.
fn require_topics(groups: &[pb::PartitionOffsets], field: &str) -> Result<(), Status> {
    groups
        .iter()
        .try_for_each(|group| require_topic(&format!("{field}.topic"), &group.topic))
}

/// Every record a list of wire offsets names, in order: (topic, partition, offset).
fn records_of(groups: &[pb::PartitionOffsets]) -> impl Iterator<Item = (&str, u32, u64)> {
    groups.iter().flat_map(|group| {
        group
            .offsets
            .iter()
            .map(move |offset| (group.topic.as_str(), group.partition, *offset))
    })
}

/// The acknowledgements of a wire ShareAcknowledge, in the order of
/// [`acknowledged_records`]: accepts, releases, then rejects.
pub(crate) fn acks(ack: &pb::ShareAcknowledge) -> Result<Vec<Ack>, Status> {
    let lists = [
        (&ack.accept, AckKind::Accept, "acknowledge.accept"),
        (&ack.release, AckKind::Release, "acknowledge.release"),
        (&ack.reject, AckKind::Reject, "acknowledge.reject"),
    ];
    let mut acks = Vec::new();
    for (groups, kind, field) in lists {
        require_topics(groups, field)?;
        acks.extend(records_of(groups).map(|(topic, partition, offset)| Ack {
            topic: topic.to_owned(),
            partition,
            offset,
            kind,
        }));
    }
    Ok(acks)
}

/// The records a ShareAcknowledge names, in the order of [`acks`].
pub(crate) fn acknowledged_records(
    ack: &pb::ShareAcknowledge,
) -> impl Iterator<Item = (&str, u32, u64)> {
    records_of(&ack.accept)
        .chain(records_of(&ack.release))
        .chain(records_of(&ack.reject))
}

/// The records a wire ShareRenew names, in the order of [`renewed_records`].
pub(crate) fn renewals(renew: &pb::ShareRenew) -> Result<Vec<(String, u32, u64)>, Status> {
    require_topics(&renew.records, "renew.records")?;
    Ok(renewed_records(renew)
        .map(|(topic, partition, offset)| (topic.to_owned(), partition, offset))
        .collect())
}

/// The records a ShareRenew names, in order.
pub(crate) fn renewed_records(renew: &pb::ShareRenew) -> impl Iterator<Item = (&str, u32, u64)> {
    records_of(&renew.records)
}

/// The refused ones among per-record outcomes, each with the record it is about.
/// `records` lists the records in the order of `outcomes`.
pub(crate) fn refused<'a>(
    records: impl Iterator<Item = (&'a str, u32, u64)>,
    outcomes: Vec<Result<(), BrokerError>>,
) -> Vec<pb::ShareRecordError> {
    records
        .zip(outcomes)
        .filter_map(|((topic, partition, offset), outcome)| {
            outcome.err().map(|err| pb::ShareRecordError {
                topic: topic.to_owned(),
                partition,
                offset,
                error: Some(wire_error(err)),
            })
        })
        .collect()
}

/// Acquired records on the wire: consecutive records of one partition share an entry, so
/// the broker's order is kept.
pub(crate) fn records_message(records: Vec<AcquiredRecord>) -> pb::ShareRecords {
    let mut partitions: Vec<pb::SharePartitionRecords> = Vec::new();
    for acquired in records {
        let record = pb::AcquiredRecord {
            record: Some(fetched_record(acquired.record)),
            delivery_count: acquired.delivery_count,
        };
        match partitions.last_mut() {
            Some(last)
                if last.partition == acquired.partition && *last.topic == *acquired.topic =>
            {
                last.records.push(record);
            }
            _ => partitions.push(pb::SharePartitionRecords {
                topic: acquired.topic.to_string(),
                partition: acquired.partition,
                records: vec![record],
            }),
        }
    }
    pb::ShareRecords { partitions }
}

/// Milliseconds since the Unix epoch now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A share group description on the wire; delays are measured from `now_ms`.
pub(crate) fn description(group: ShareGroupDescription) -> pb::DescribeShareGroupResponse {
    let now = now_ms();
    pb::DescribeShareGroupResponse {
        group: group.name,
        settings: Some(settings_message(&group.settings)),
        members: group
            .members
            .into_iter()
            .map(|member| pb::ShareMemberDescription {
                member_id: member.id,
                held: member.held,
                prefetch: member.prefetch,
            })
            .collect(),
        partitions: group
            .partitions
            .into_iter()
            .map(|partition| partition_state(partition, now))
            .collect(),
    }
}

/// One share-partition on the wire, its delay measured from `now_ms`.
fn partition_state(state: SharePartitionState, now_ms: i64) -> pb::SharePartitionState {
    pb::SharePartitionState {
        delay_ms: state
            .oldest_waiting_timestamp_ms
            .map_or(0, |oldest| now_ms.saturating_sub(oldest).max(0)),
        topic: state.topic,
        partition: state.partition,
        start_offset: state.start_offset,
        end_offset: state.end_offset,
        waiting: state.waiting,
        in_flight: state.in_flight,
        accepted: state.accepted,
        dead_lettered: state.dead_lettered,
        oldest_waiting_timestamp_ms: state.oldest_waiting_timestamp_ms,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use sluice_broker::RecordView;

    use super::*;

    fn offsets(topic: &str, partition: u32, offsets: &[u64]) -> pb::PartitionOffsets {
        pb::PartitionOffsets {
            topic: topic.into(),
            partition,
            offsets: offsets.to_vec(),
        }
    }

    #[test]
    fn join_settings_fill_unset_fields_from_the_defaults() -> Result<(), Status> {
        let defaults = ShareGroupSettings {
            dead_letter_topic: Some("dlq".into()),
            ..ShareGroupSettings::default()
        };
        let join = pb::ShareJoin {
            group: "g".into(),
            topics: vec!["t".into()],
            prefetch: 10,
            credit: 10,
            settings: None,
        };
        assert_eq!(share_join(join.clone(), &defaults)?.settings, None);
        let with_settings = pb::ShareJoin {
            settings: Some(pb::ShareGroupSettings {
                delivery_attempt_limit: Some(2),
                auto_offset_reset: pb::OffsetReset::Earliest.into(),
                ..pb::ShareGroupSettings::default()
            }),
            ..join.clone()
        };
        let settings = share_join(with_settings, &defaults)?
            .settings
            .ok_or_else(|| Status::internal("settings dropped"))?;
        assert_eq!(settings.delivery_attempt_limit, 2);
        assert_eq!(settings.auto_offset_reset, ShareOffsetReset::Earliest);
        assert_eq!(settings.dead_letter_topic.as_deref(), Some("dlq"));
        assert_eq!(settings.record_lock_duration, defaults.record_lock_duration);
        for (bad, field) in [
            (
                pb::ShareJoin {
                    group: String::new(),
                    ..join.clone()
                },
                "join.group:",
            ),
            (
                pb::ShareJoin {
                    topics: vec![],
                    ..join.clone()
                },
                "join.topics:",
            ),
            (
                pb::ShareJoin {
                    topics: vec![String::new()],
                    ..join
                },
                "join.topics:",
            ),
        ] {
            let status = share_join(bad, &defaults).expect_err("invalid join");
            assert!(status.message().starts_with(field), "{}", status.message());
        }
        Ok(())
    }

    #[test]
    fn an_empty_dead_letter_topic_clears_it_and_settings_round_trip() {
        let base = ShareGroupSettings {
            dead_letter_topic: Some("dlq".into()),
            redelivery_backoff: Duration::from_millis(250),
            ..ShareGroupSettings::default()
        };
        let cleared = merged_settings(
            base.clone(),
            pb::ShareGroupSettings {
                dead_letter_topic: Some(String::new()),
                ..pb::ShareGroupSettings::default()
            },
        );
        assert_eq!(cleared.dead_letter_topic, None);
        assert_eq!(cleared.redelivery_backoff, Duration::from_millis(250));
        assert_eq!(merged_settings(base.clone(), settings_message(&base)), base);
    }

    #[test]
    fn acks_keep_their_order_and_need_topics() -> Result<(), Status> {
        let ack = pb::ShareAcknowledge {
            ack_id: 1,
            accept: vec![offsets("a", 0, &[3, 4])],
            release: vec![offsets("b", 1, &[7])],
            reject: vec![offsets("a", 0, &[5])],
        };
        let parsed = acks(&ack)?;
        let kinds: Vec<(&str, u64, AckKind)> = parsed
            .iter()
            .map(|a| (a.topic.as_str(), a.offset, a.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a", 3, AckKind::Accept),
                ("a", 4, AckKind::Accept),
                ("b", 7, AckKind::Release),
                ("a", 5, AckKind::Reject)
            ]
        );
        let records: Vec<_> = acknowledged_records(&ack).collect();
        assert_eq!(
            records,
            [("a", 0, 3), ("a", 0, 4), ("b", 1, 7), ("a", 0, 5)]
        );
        let missing = pb::ShareAcknowledge {
            release: vec![offsets("", 0, &[1])],
            ..ack
        };
        let status = acks(&missing).expect_err("no topic");
        assert!(
            status.message().starts_with("acknowledge.release.topic:"),
            "{}",
            status.message()
        );
        let renew = pb::ShareRenew {
            renew_id: 2,
            records: vec![offsets("a", 2, &[9])],
        };
        assert_eq!(renewals(&renew)?, [("a".to_owned(), 2, 9)]);
        assert_eq!(renewed_records(&renew).collect::<Vec<_>>(), [("a", 2, 9)]);
        Ok(())
    }

    #[test]
    fn only_refused_outcomes_are_reported_with_their_record() {
        let records = [("a", 0, 1), ("a", 0, 2)];
        let refusal = BrokerError::RecordNotHeld {
            group: "g".into(),
            member_id: "m".into(),
            topic: "a".into(),
            partition: 0,
            offset: 2,
            reason: "lock expired",
        };
        let reported = refused(records.into_iter(), vec![Ok(()), Err(refusal)]);
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].offset, 2);
        let error = reported[0].error.clone().unwrap_or_default();
        assert_eq!(error.code, i32::from(tonic::Code::FailedPrecondition));
        assert!(error.message.contains("lock expired"), "{}", error.message);
    }

    #[test]
    fn consecutive_records_of_a_partition_share_an_entry() {
        let acquired = |topic: &str, partition, offset| AcquiredRecord {
            topic: Arc::from(topic),
            partition,
            offset,
            delivery_count: 1,
            record: RecordView {
                offset,
                timestamp_ms: 0,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
            },
        };
        let message = records_message(vec![
            acquired("a", 0, 1),
            acquired("a", 0, 2),
            acquired("a", 1, 1),
            acquired("a", 0, 3),
        ]);
        let shape: Vec<(u32, usize)> = message
            .partitions
            .iter()
            .map(|p| (p.partition, p.records.len()))
            .collect();
        assert_eq!(shape, [(0, 2), (1, 1), (0, 1)]);
    }

    #[test]
    fn the_delay_is_the_age_of_the_oldest_waiting_record() {
        let state = |oldest| SharePartitionState {
            topic: "t".into(),
            partition: 0,
            start_offset: 0,
            end_offset: 10,
            waiting: 4,
            in_flight: 1,
            accepted: 5,
            dead_lettered: 0,
            oldest_waiting_timestamp_ms: oldest,
        };
        assert_eq!(partition_state(state(Some(1_000)), 3_500).delay_ms, 2_500);
        assert_eq!(partition_state(state(None), 3_500).delay_ms, 0);
        // A record stamped in the future has not waited.
        assert_eq!(partition_state(state(Some(9_000)), 3_500).delay_ms, 0);
    }
}
