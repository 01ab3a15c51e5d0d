//! Families read from the broker at scrape time: partitions and consumer groups.
//!
//! They are rendered straight into the exposition text rather than kept in the recorder,
//! so a deleted topic or group disappears from the next scrape.

use std::fmt::{self, Write as _};

use sluice_broker::{Broker, GroupDescription, PartitionInfo, PartitionLag, TopicInfo};

/// Appends the partition and group families to `out`. Blocking: working out group delays
/// reads a record of every lagging partition.
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
    // Writing to a String cannot fail.
    let _ = partitions(&topics, out).and_then(|()| group_families(&groups, out));
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
                GroupLabels(group, lag),
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
            GroupLabels(group, lag),
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
            GroupLabels(group, lag),
            lag.delay.as_secs_f64()
        )?;
    }
    Ok(())
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

/// `{group="…",topic="…",partition="…"}`.
struct GroupLabels<'a>(&'a GroupDescription, &'a PartitionLag);

impl fmt::Display for GroupLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{group=\"{}\",topic=\"{}\",partition=\"{}\"}}",
            Escaped(&self.0.name),
            Escaped(&self.1.partition.topic),
            self.1.partition.partition
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
