//! `sluice group`: list, describe, reset and delete consumer groups.

use std::io::{self, Write};

use clap::Subcommand;
use serde_json::json;
use sluice_client::{
    CommittedOffset, DescribeGroupResponse, GroupState, Position, TopicPartitions,
};

use super::ConnectArgs;
use super::output::{Output, Table, write_json};
use super::timestamp::parse_time;

/// Flags of `sluice group`.
#[derive(Debug, clap::Args)]
pub(crate) struct GroupArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    action: GroupAction,
}

#[derive(Debug, Subcommand)]
enum GroupAction {
    /// List every group with members or committed offsets.
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show a group's members and, per partition, the committed offset, log end and lag.
    Describe {
        /// Group name
        group: String,
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Set a group's committed offsets for a topic (only while the group has no members).
    Reset(ResetArgs),
    /// Delete a group and its committed offsets (only while it has no members).
    Delete {
        /// Group name
        group: String,
    },
}

/// Flags of `sluice group reset`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("to").required(true).multiple(false)))]
struct ResetArgs {
    /// Group name
    group: String,
    /// Topic whose offsets to set
    #[arg(long)]
    topic: String,
    /// Only this partition (repeatable; default: every partition of the topic)
    #[arg(long, value_name = "P")]
    partition: Vec<u32>,
    /// To the earliest stored record
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// To the high watermark (skip everything stored)
    #[arg(long, group = "to")]
    to_latest: bool,
    /// To this offset in every partition
    #[arg(long, value_name = "N", group = "to")]
    to_offset: Option<u64>,
    /// To the first record at or after this time, e.g. 2026-01-31T12:00:00Z
    #[arg(long, value_name = "RFC3339", value_parser = parse_time, group = "to")]
    to_time: Option<i64>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

impl ResetArgs {
    fn position(&self) -> Position {
        match (self.to_earliest, self.to_offset, self.to_time) {
            (true, _, _) => Position::Earliest,
            (_, Some(offset), _) => Position::Offset(offset),
            (_, _, Some(ms)) => Position::Timestamp(ms),
            _ => Position::Latest,
        }
    }
}

/// Runs `sluice group ...`.
pub(crate) async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let admin = args.connect.connect().await?.admin();
    let mut out = io::stdout().lock();
    match args.action {
        GroupAction::List { output } => {
            let groups = admin.list_groups().await?;
            match output {
                Output::Table => {
                    let mut table = Table::new(&["GROUP", "STATE", "MEMBERS"]);
                    for group in groups {
                        table.row(vec![
                            group.group.clone(),
                            state_name(group.state()).to_owned(),
                            group.members.to_string(),
                        ]);
                    }
                    table.write(&mut out)?;
                }
                Output::Json => {
                    let list: Vec<_> = groups
                        .iter()
                        .map(|g| {
                            json!({
                                "group": g.group,
                                "state": state_name(g.state()),
                                "members": g.members,
                            })
                        })
                        .collect();
                    write_json(&mut out, &json!(list))?;
                }
            }
        }
        GroupAction::Describe { group, output } => {
            let described = admin.describe_group(&group).await?;
            match output {
                Output::Table => describe_table(&mut out, &described)?,
                Output::Json => write_json(&mut out, &describe_json(&described))?,
            }
        }
        GroupAction::Reset(reset) => {
            let offsets = admin
                .reset_offsets(
                    &reset.group,
                    &reset.topic,
                    &reset.partition,
                    reset.position(),
                )
                .await?;
            match reset.output {
                Output::Table => offsets_table(&mut out, &offsets)?,
                Output::Json => write_json(&mut out, &offsets_json(&offsets))?,
            }
        }
        GroupAction::Delete { group } => {
            admin.delete_group(&group).await?;
            writeln!(out, "Deleted group '{group}'.")?;
        }
    }
    Ok(())
}

fn state_name(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "empty",
        GroupState::Stable => "stable",
        GroupState::Rebalancing => "rebalancing",
        GroupState::Unspecified => "unknown",
    }
}

/// `topic[0,1,2] other[3]`.
fn partitions_text(topics: &[TopicPartitions]) -> String {
    let text: Vec<String> = topics
        .iter()
        .map(|t| {
            let ids: Vec<String> = t.partitions.iter().map(u32::to_string).collect();
            format!("{}[{}]", t.topic, ids.join(","))
        })
        .collect();
    if text.is_empty() {
        "-".into()
    } else {
        text.join(" ")
    }
}

fn partitions_json(topics: &[TopicPartitions]) -> serde_json::Value {
    json!(
        topics
            .iter()
            .map(|t| json!({"topic": t.topic, "partitions": t.partitions}))
            .collect::<Vec<_>>()
    )
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_owned()
    }
}

fn describe_table(out: &mut impl Write, group: &DescribeGroupResponse) -> io::Result<()> {
    writeln!(
        out,
        "Group '{}': {}, generation {}, {} member(s)\n",
        group.group,
        state_name(group.state()),
        group.generation,
        group.members.len()
    )?;
    if !group.members.is_empty() {
        let mut members = Table::new(&[
            "MEMBER",
            "INSTANCE",
            "HOST",
            "CONNECTED",
            "ASSIGNED",
            "REVOKING",
        ]);
        for m in &group.members {
            members.row(vec![
                m.member_id.clone(),
                or_dash(m.instance_id.as_deref().unwrap_or_default()),
                or_dash(&m.client_host),
                if m.connected { "yes" } else { "no" }.into(),
                partitions_text(&m.assigned),
                partitions_text(&m.revoking),
            ]);
        }
        members.write(out)?;
        writeln!(out)?;
    }
    let mut partitions = Table::new(&[
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "LOG-END",
        "LAG",
        "DELAY",
        "MEMBER",
    ]);
    for p in &group.partitions {
        partitions.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            p.committed_offset
                .map_or_else(|| "-".into(), |o| o.to_string()),
            p.high_watermark.to_string(),
            p.lag.to_string(),
            delay_text(p.delay_ms),
            or_dash(&p.member_id),
        ]);
    }
    partitions.write(out)
}

/// A delay in milliseconds as seconds with one decimal, e.g. `12.5s`.
fn delay_text(delay_ms: i64) -> String {
    format!("{:.1}s", delay_ms as f64 / 1000.0)
}

fn describe_json(group: &DescribeGroupResponse) -> serde_json::Value {
    let members: Vec<_> = group
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_host": m.client_host,
                "connected": m.connected,
                "topics": m.topics,
                "assigned": partitions_json(&m.assigned),
                "revoking": partitions_json(&m.revoking),
                "session_timeout_ms": m.session_timeout_ms,
            })
        })
        .collect();
    let partitions: Vec<_> = group
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed_offset": p.committed_offset,
                "commit_timestamp_ms": p.commit_timestamp_ms,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
                "lag": p.lag,
                "delay_ms": p.delay_ms,
                "member_id": p.member_id,
            })
        })
        .collect();
    json!({
        "group": group.group,
        "state": state_name(group.state()),
        "generation": group.generation,
        "members": members,
        "partitions": partitions,
    })
}

fn offsets_table(out: &mut impl Write, offsets: &[CommittedOffset]) -> io::Result<()> {
    let mut table = Table::new(&["TOPIC", "PARTITION", "OFFSET"]);
    for o in offsets {
        table.row(vec![
            o.topic.clone(),
            o.partition.to_string(),
            o.offset.map_or_else(|| "-".into(), |o| o.to_string()),
        ]);
    }
    table.write(out)
}

fn offsets_json(offsets: &[CommittedOffset]) -> serde_json::Value {
    json!(
        offsets
            .iter()
            .map(|o| json!({"topic": o.topic, "partition": o.partition, "offset": o.offset}))
            .collect::<Vec<_>>()
    )
}
