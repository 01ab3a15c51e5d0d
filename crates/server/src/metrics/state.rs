//! Families read from the broker at scrape time: partitions, consumer groups and share
//! groups.
//!
//! They are rendered straight into the exposition text rather than kept in the recorder,
//! so a deleted topic or group disappears from the next scrape.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_broker::{
    Broker, GroupDescription, PartitionInfo, PartitionLag, ShareGroupDescription,
    SharePartitionState, TopicInfo,
};

/// Appends the partition, group and share group families to `out`. Blocking: working out
/// group delays reads a record of every lagging partition.
pub(super) fn render(broker: &Broker, out: &mut String) {
    let topics: Vec<TopicInfo> = broker
        .list_topics()
        .iter()
        // A topic deleted meanwhile is left out.
        .filter_map(|t| broker.describe_topic(&t.name).ok())
        .collect();
    let groups: Vec<GroupDescription> = broker
        .list_groups()
        .iter()
        .filter_map(|g| broker.describe_group(&g.name).ok())
        .collect();
    let share_groups: Vec<ShareGroupDescription> = broker
        .list_share_groups()
        .iter()
        .filter_map(|g| broker.describe_share_group(&g.name).ok())
        .collect();
    // Writing to a String cannot fail.
    let _ = partitions(&topics, out)
        .and_then(|()| group_families(&groups, out))
        .and_then(|()| share_group_families(&share_groups, now_ms(), out));
}

/// Milliseconds since the Unix epoch now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A partition family: name, type, help and how to read the value.
type PartitionFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PartitionInfo) -> u64,
);

fn partitions(topics: &[TopicInfo], out: &mut String) -> fmt::Result {
    let families: [PartitionFamily; 10] = [
        (
            "sluice_partition_records_in_total",
            "counter",
            "Records appended to the partition since the server started.",
            |p| p.traffic.records_in,
        ),
        (
            "sluice_partition_bytes_in_total",
            "counter",
            "Record batch bytes appended to the partition since the server started.",
            |p| p.traffic.bytes_in,
        ),
        (
            "sluice_partition_records_out_total",
            "counter",
            "Records returned by fetches and subscriptions since the server started.",
            |p| p.traffic.records_out,
        ),
        (
            "sluice_partition_bytes_out_total",
            "counter",
            "Record batch bytes returned by fetches and subscriptions since the server started.",
            |p| p.traffic.bytes_out,
        ),
        (
            "sluice_partition_log_start_offset",
            "gauge",
            "First offset still kept.",
            |p| p.log_start_offset,
        ),
        (
            "sluice_partition_high_watermark",
            "gauge",
            "First offset not yet visible to consumers: the end of the readable log.",
            |p| p.high_watermark,
        ),
        (
            "sluice_partition_log_end_offset",
            "gauge",
            "The offset the next record will get.",
            |p| p.log_end_offset,
        ),
        (
            "sluice_partition_size_bytes",
            "gauge",
            "Bytes of the partition's segment files on disk.",
            |p| p.size_bytes,
        ),
        (
            "sluice_partition_segments",
            "gauge",
            "Segment files of the partition.",
            |p| u64::from(p.segment_count),
        ),
        (
            "sluice_partition_failed",
            "gauge",
            "1 while the partition cannot serve (its log failed to open, or latched a write or fsync failure), else 0.",
            |p| u64::from(p.failure.is_some()),
        ),
    ];
    for (name, kind, help, value) in families {
        header(out, name, kind, help)?;
        for topic in topics {
            for partition in &topic.partitions {
                writeln!(
                    out,
                    "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                    Escaped(&topic.name),
                    partition.id,
                    value(partition)
                )?;
            }
        }
    }
    Ok(())
}

fn group_families(groups: &[GroupDescription], out: &mut String) -> fmt::Result {
    header(
        out,
        "sluice_group_members",
        "gauge",
        "Members of the consumer group.",
    )?;
    for group in groups {
        writeln!(
            out,
            "sluice_group_members{{group=\"{}\"}} {}",
            Escaped(&group.name),
            group.members.len()
        )?;
    }
    header(
        out,
        "sluice_group_committed_offset",
        "gauge",
        "The group's committed offset: the next record it will consume (absent until it commits).",
    )?;
    for (group, lag) in group_partitions(groups) {
        if let Some(committed) = lag.committed {
            writeln!(
                out,
                "sluice_group_committed_offset{} {}",
                GroupLabels::of(group, lag),
                committed.offset
            )?;
        }
    }
    header(
        out,
        "sluice_group_lag_records",
        "gauge",
        "Records the group has not committed past: high watermark - max(committed offset, log start offset).",
    )?;
    for (group, lag) in group_partitions(groups) {
        writeln!(
            out,
            "sluice_group_lag_records{} {}",
            GroupLabels::of(group, lag),
            lag.lag
        )?;
    }
    header(
        out,
        "sluice_group_delay_seconds",
        "gauge",
        "Age of the oldest record the group has not committed past (now - its timestamp); 0 when the lag is 0.",
    )?;
    for (group, lag) in group_partitions(groups) {
        writeln!(
            out,
            "sluice_group_delay_seconds{} {}",
            GroupLabels::of(group, lag),
            lag.delay.as_secs_f64()
        )?;
    }
    Ok(())
}

/// A share group family: name, type, help and how to read the value of a share-partition
/// at a time (ms since the Unix epoch).
type ShareFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SharePartitionState, i64) -> f64,
);

fn share_group_families(
    groups: &[ShareGroupDescription],
    now_ms: i64,
    out: &mut String,
) -> fmt::Result {
    header(
        out,
        "sluice_share_group_members",
        "gauge",
        "Members of the share group.",
    )?;
    for group in groups {
        writeln!(
            out,
            "sluice_share_group_members{{group=\"{}\"}} {}",
            Escaped(&group.name),
            group.members.len()
        )?;
    }
    let families: [ShareFamily; 5] = [
        (
            "sluice_share_group_waiting_records",
            "gauge",
            "The queue's length: records of the partition available to the share group or awaiting redelivery.",
            |p, _| p.waiting as f64,
        ),
        (
            "sluice_share_group_in_flight_records",
            "gauge",
            "Records acquired by a member of the share group and not yet acknowledged.",
            |p, _| p.in_flight as f64,
        ),
        (
            "sluice_share_group_delay_seconds",
            "gauge",
            "The queue's delay: age of the oldest waiting record (now - its timestamp); 0 when none waits.",
            |p, now_ms| share_delay_seconds(p, now_ms),
        ),
        (
            "sluice_share_group_accepted_records_total",
            "counter",
            "Records the share group accepted since it was created.",
            |p, _| p.accepted as f64,
        ),
        (
            "sluice_share_group_dead_lettered_records_total",
            "counter",
            "Records the share group rejected or gave up on at the delivery attempt limit since it was created.",
            |p, _| p.dead_lettered as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        header(out, name, kind, help)?;
        for group in groups {
            for partition in &group.partitions {
                let labels = GroupLabels {
                    group: &group.name,
                    topic: &partition.topic,
                    partition: partition.partition,
                };
                writeln!(out, "{name}{labels} {}", value(partition, now_ms))?;
            }
        }
    }
    Ok(())
}

/// Seconds the oldest waiting record of a share-partition has waited at `now_ms`.
fn share_delay_seconds(partition: &SharePartitionState, now_ms: i64) -> f64 {
    partition.delay_ms(now_ms) as f64 / 1000.0
}

/// Every (group, partition) pair.
fn group_partitions(
    groups: &[GroupDescription],
) -> impl Iterator<Item = (&GroupDescription, &PartitionLag)> {
    groups
        .iter()
        .flat_map(|g| g.partitions.iter().map(move |p| (g, p)))
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// `{group="…",topic="…",partition="…"}`: a partition as a group (of either kind) reads it.
struct GroupLabels<'a> {
    group: &'a str,
    topic: &'a str,
    partition: u32,
}

impl<'a> GroupLabels<'a> {
    /// The labels of a consumer group's partition.
    fn of(group: &'a GroupDescription, lag: &'a PartitionLag) -> Self {
        GroupLabels {
            group: &group.name,
            topic: &lag.partition.topic,
            partition: lag.partition.partition,
        }
    }
}

impl fmt::Display for GroupLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{group=\"{}\",topic=\"{}\",partition=\"{}\"}}",
            Escaped(self.group),
            Escaped(self.topic),
            self.partition
        )
    }
}

/// A label value escaped for the text exposition format.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use sluice_broker::{
        BrokerConfig, ClassicCommit, ClassicJoin, ClassicSync, NewRecord, TopicPartition,
    };

    use super::*;

    #[test]
    fn share_groups_show_length_delay_and_counters_per_partition() {
        let partition = SharePartitionState {
            topic: "jobs".into(),
            partition: 1,
            start_offset: 4,
            end_offset: 20,
            waiting: 9,
            in_flight: 2,
            accepted: 7,
            dead_lettered: 1,
            oldest_waiting_timestamp_ms: Some(10_000),
        };
        let idle = SharePartitionState {
            partition: 0,
            waiting: 0,
            oldest_waiting_timestamp_ms: None,
            ..partition.clone()
        };
        let group = ShareGroupDescription {
            name: "workers".into(),
            settings: sluice_broker::ShareGroupSettings::default(),
            members: vec![],
            partitions: vec![idle, partition],
        };
        let mut out = String::new();
        share_group_families(&[group], 12_500, &mut out).expect("render");
        let labels = r#"{group="workers",topic="jobs",partition="1"}"#;
        for line in [
            r#"sluice_share_group_members{group="workers"} 0"#.to_owned(),
            format!("sluice_share_group_waiting_records{labels} 9"),
            format!("sluice_share_group_in_flight_records{labels} 2"),
            format!("sluice_share_group_delay_seconds{labels} 2.5"),
            format!("sluice_share_group_accepted_records_total{labels} 7"),
            format!("sluice_share_group_dead_lettered_records_total{labels} 1"),
            r#"sluice_share_group_delay_seconds{group="workers",topic="jobs",partition="0"} 0"#
                .to_owned(),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(Escaped("a\"b\\c\nd").to_string(), "a\\\"b\\\\c\\nd");
        assert_eq!(Escaped("orders.v1").to_string(), "orders.v1");
    }

    #[tokio::test]
    async fn client_assigned_groups_show_their_members_and_lag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = BrokerConfig::new(dir.path());
        config.groups.initial_rebalance_delay = Duration::ZERO;
        let broker = Broker::open(config).expect("open broker");
        broker
            .create_topic("t", 1, &BTreeMap::new())
            .await
            .expect("create topic");
        broker
            .produce("t", Some(0), ["a", "b", "c"].map(NewRecord::new))
            .await
            .expect("produce");
        let protocols = vec![("range".to_owned(), Bytes::from_static(b"subscription"))];
        let joined = broker
            .join_classic(ClassicJoin::new("kafka-readers", "consumer", protocols))
            .await
            .expect("join");
        broker
            .sync_classic(ClassicSync {
                group: "kafka-readers".to_owned(),
                generation: joined.generation,
                member_id: joined.member_id.clone(),
                instance_id: None,
                protocol_type: None,
                protocol: None,
                assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"t/0"))],
            })
            .await
            .expect("sync");
        broker
            .commit_classic(&ClassicCommit {
                group: "kafka-readers".to_owned(),
                generation: joined.generation,
                member_id: joined.member_id.clone(),
                instance_id: None,
                offsets: vec![(TopicPartition::new("t", 0), 1)],
            })
            .await
            .expect("commit");
        let scraped = Arc::clone(&broker);
        let out = tokio::task::spawn_blocking(move || {
            let mut out = String::new();
            render(&scraped, &mut out);
            out
        })
        .await
        .expect("render");
        let labels = r#"{group="kafka-readers",topic="t",partition="0"}"#;
        for line in [
            r#"sluice_group_members{group="kafka-readers"} 1"#.to_owned(),
            format!("sluice_group_committed_offset{labels} 1"),
            format!("sluice_group_lag_records{labels} 2"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
        broker.shutdown().await.expect("shutdown");
    }
}
