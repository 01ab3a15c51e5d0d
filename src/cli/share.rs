//! `sluice share`: consume as a share group member; list, describe, alter and delete share
//! groups.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;
use sluice_client::{
    AckKind, Client, DescribeShareGroupResponse, OffsetReset, ShareGroupSettings, ShareRecord,
};

use super::ConnectArgs;
use super::output::{Output, Table, write_json};
use super::records::{FORMAT_HELP, Format, record_json, write_record};

/// Flags of `sluice share`.
#[derive(Debug, clap::Args)]
pub(crate) struct ShareArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    action: ShareAction,
}

#[derive(Debug, Subcommand)]
enum ShareAction {
    /// Print records of a topic as a member of a share group, accepting each once printed.
    Consume(ConsumeArgs),
    /// List every share group.
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show a share group's settings, members and, per partition, records waiting, in
    /// flight, accepted and dead-lettered and the age of the oldest waiting record.
    Describe {
        /// Group name
        group: String,
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Change a share group's settings (the ones given; the others keep their values).
    Alter {
        /// Group name
        group: String,
        #[command(flatten)]
        settings: SettingsArgs,
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a share group and its acknowledgement state (only while it has no members).
    Delete {
        /// Group name
        group: String,
    },
}

/// Flags of `sluice share consume`.
#[derive(Debug, clap::Args)]
struct ConsumeArgs {
    /// Topic to read
    topic: String,
    /// The share group to consume as a member of
    #[arg(long, value_name = "GROUP")]
    group: String,
    /// Release each record printed instead of accepting it (it is delivered again, to any
    /// member, until the group's delivery attempt limit)
    #[arg(long, conflicts_with = "reject")]
    release: bool,
    /// Reject each record printed instead of accepting it (it is never delivered again and
    /// goes to the group's dead-letter topic, if any)
    #[arg(long)]
    reject: bool,
    /// Exit after printing this many records (default: until Ctrl-C or --timeout)
    #[arg(long, visible_alias = "max", value_name = "N")]
    max_messages: Option<u64>,
    /// Exit once no record has come for this many seconds
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
    /// The most records held unacknowledged at once (1 to the server's share.max_prefetch)
    #[arg(long, value_name = "N", default_value_t = 100)]
    prefetch: u32,
    /// If this command creates the group: start at the earliest stored record (default:
    /// only records produced from now on)
    #[arg(long)]
    from_beginning: bool,
    /// Settings of the group if this command creates it
    #[command(flatten)]
    settings: SettingsArgs,
    #[arg(long, value_enum, default_value_t, help = FORMAT_HELP)]
    format: Format,
}

/// Share group settings given on the command line.
#[derive(Debug, clap::Args)]
struct SettingsArgs {
    /// How long a member may hold a record before it is released again, in ms
    /// (share.record.lock.duration.ms)
    #[arg(long, value_name = "MS")]
    record_lock_duration_ms: Option<u32>,
    /// Deliveries after which a record is dead-lettered instead
    /// (share.delivery.attempt.limit)
    #[arg(long, value_name = "N")]
    delivery_attempt_limit: Option<u32>,
    /// Topic for rejected records and records past the delivery attempt limit
    /// (share.dead.letter.topic; "" for none)
    #[arg(long, value_name = "TOPIC")]
    dead_letter_topic: Option<String>,
    /// How long a released record waits before it is offered again, in ms
    /// (share.redelivery.backoff.ms)
    #[arg(long, value_name = "MS")]
    redelivery_backoff_ms: Option<u32>,
}

impl SettingsArgs {
    fn is_empty(&self) -> bool {
        self.record_lock_duration_ms.is_none()
            && self.delivery_attempt_limit.is_none()
            && self.dead_letter_topic.is_none()
            && self.redelivery_backoff_ms.is_none()
    }

    /// The settings given, unset ones left unset.
    fn to_settings(&self) -> ShareGroupSettings {
        ShareGroupSettings {
            record_lock_duration_ms: self.record_lock_duration_ms,
            delivery_attempt_limit: self.delivery_attempt_limit,
            dead_letter_topic: self.dead_letter_topic.clone(),
            redelivery_backoff_ms: self.redelivery_backoff_ms,
            auto_offset_reset: 0,
        }
    }
}

/// A positive number of seconds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|err| format!("{err} (expected seconds, e.g. 2.5)"))?;
    // Not `from_secs_f64`, which panics on a value too large for a `Duration`.
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("must be a positive number of seconds, got {text}"))
}

/// Runs `sluice share ...`.
pub(crate) async fn run(args: ShareArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let admin = client.admin();
    let mut out = io::stdout().lock();
    match args.action {
        ShareAction::Consume(consume_args) => {
            drop(out);
            return consume(&client, &consume_args).await;
        }
        ShareAction::List { output } => {
            let groups = admin.list_share_groups().await?;
            match output {
                Output::Table => {
                    let mut table = Table::new(&["GROUP", "TOPICS", "MEMBERS"]);
                    for group in &groups {
                        table.row(vec![
                            group.group.clone(),
                            group.topics.join(","),
                            group.members.to_string(),
                        ]);
                    }
                    table.write(&mut out)?;
                }
                Output::Json => {
                    let list: Vec<_> = groups
                        .iter()
                        .map(
                            |g| json!({"group": g.group, "topics": g.topics, "members": g.members}),
                        )
                        .collect();
                    write_json(&mut out, &json!(list))?;
                }
            }
        }
        ShareAction::Describe { group, output } => {
            let described = admin.describe_share_group(&group).await?;
            match output {
                Output::Table => describe_table(&mut out, &described)?,
                Output::Json => write_json(&mut out, &describe_json(&described))?,
            }
        }
        ShareAction::Alter {
            group,
            settings,
            output,
        } => {
            anyhow::ensure!(
                !settings.is_empty(),
                "nothing to change: give at least one of --record-lock-duration-ms, \
                 --delivery-attempt-limit, --dead-letter-topic, --redelivery-backoff-ms"
            );
            let now = admin
                .alter_share_group(&group, settings.to_settings())
                .await?;
            match output {
                Output::Table => writeln!(out, "Share group '{group}': {}", settings_text(&now))?,
                Output::Json => write_json(&mut out, &settings_json(&now))?,
            }
        }
        ShareAction::Delete { group } => {
            admin.delete_share_group(&group).await?;
            writeln!(out, "Deleted share group '{group}'.")?;
        }
    }
    Ok(())
}

/// Consumes until `--max-messages`, `--timeout` or Ctrl-C, acknowledging every record once
/// it is printed, then sends the acknowledgements, waits until they are durable and leaves.
async fn consume(client: &Client, args: &ConsumeArgs) -> anyhow::Result<()> {
    if args.max_messages == Some(0) {
        return Ok(());
    }
    let kind = if args.release {
        AckKind::Release
    } else if args.reject {
        AckKind::Reject
    } else {
        AckKind::Accept
    };
    let mut builder = client
        .share_consumer(args.group.as_str())
        .topic(args.topic.as_str())
        .prefetch(args.prefetch);
    if args.from_beginning {
        builder = builder.offset_reset(OffsetReset::Earliest);
    }
    if let Some(ms) = args.settings.record_lock_duration_ms {
        builder = builder.record_lock_duration(Duration::from_millis(ms.into()));
    }
    if let Some(limit) = args.settings.delivery_attempt_limit {
        builder = builder.delivery_attempt_limit(limit);
    }
    if let Some(topic) = &args.settings.dead_letter_topic {
        builder = builder.dead_letter_topic(topic.as_str());
    }
    if let Some(ms) = args.settings.redelivery_backoff_ms {
        builder = builder.redelivery_backoff(Duration::from_millis(ms.into()));
    }
    let mut consumer = builder.build();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut printed = 0u64;
    // Without --timeout, each poll waits this long before asking again.
    let wait = args.timeout.unwrap_or(Duration::from_secs(1));
    loop {
        let remaining = args
            .max_messages
            .map_or(u64::MAX, |max| max.saturating_sub(printed));
        if remaining == 0 {
            break;
        }
        let max_records = u32::try_from(remaining)
            .unwrap_or(u32::MAX)
            .min(args.prefetch.max(1));
        let records = tokio::select! {
            records = consumer.poll(max_records, wait) => records?,
            _ = &mut interrupted => break,
        };
        if records.is_empty() && args.timeout.is_some() {
            break;
        }
        print(&records, args.format)?;
        for record in &records {
            consumer.acknowledge(record, kind)?;
        }
        printed += records.len() as u64;
    }
    consumer
        .close()
        .await
        .context("cannot acknowledge the records printed")
}

/// Prints `records` and flushes standard output, so that what is acknowledged was written.
fn print(records: &[ShareRecord], format: Format) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for record in records {
        match format {
            Format::Text => write_record(&mut out, &record.record, format)?,
            Format::Json => {
                let mut value = record_json(&record.record);
                value["delivery_count"] = json!(record.delivery_count);
                write_json(&mut out, &value)?;
            }
        }
    }
    out.flush()
}

/// A duration in milliseconds as seconds with one decimal, e.g. `12.5s`.
fn seconds_text(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn reset_name(settings: &ShareGroupSettings) -> &'static str {
    match settings.auto_offset_reset() {
        sluice_proto::v1::OffsetReset::Earliest => "earliest",
        _ => "latest",
    }
}

/// `lock 30.0s, delivery attempt limit 5, dead-letter topic -, ...`.
fn settings_text(settings: &ShareGroupSettings) -> String {
    let dead_letters = settings
        .dead_letter_topic
        .as_deref()
        .filter(|topic| !topic.is_empty())
        .unwrap_or("-");
    format!(
        "record lock {}, delivery attempt limit {}, dead-letter topic {}, redelivery backoff {}, starts at {}",
        seconds_text(settings.record_lock_duration_ms.unwrap_or_default().into()),
        settings.delivery_attempt_limit.unwrap_or_default(),
        dead_letters,
        seconds_text(settings.redelivery_backoff_ms.unwrap_or_default().into()),
        reset_name(settings),
    )
}

fn settings_json(settings: &ShareGroupSettings) -> serde_json::Value {
    json!({
        "record_lock_duration_ms": settings.record_lock_duration_ms,
        "delivery_attempt_limit": settings.delivery_attempt_limit,
        "dead_letter_topic": settings.dead_letter_topic.as_deref().filter(|t| !t.is_empty()),
        "redelivery_backoff_ms": settings.redelivery_backoff_ms,
        "auto_offset_reset": reset_name(settings),
    })
}

fn describe_table(out: &mut impl Write, group: &DescribeShareGroupResponse) -> io::Result<()> {
    let settings = group.settings.clone().unwrap_or_default();
    writeln!(
        out,
        "Share group '{}': {} member(s); {}\n",
        group.group,
        group.members.len(),
        settings_text(&settings)
    )?;
    if !group.members.is_empty() {
        let mut members = Table::new(&["MEMBER", "HELD", "PREFETCH"]);
        for m in &group.members {
            members.row(vec![
                m.member_id.clone(),
                m.held.to_string(),
                m.prefetch.to_string(),
            ]);
        }
        members.write(out)?;
        writeln!(out)?;
    }
    let mut partitions = Table::new(&[
        "TOPIC",
        "PARTITION",
        "START",
        "END",
        "WAITING",
        "IN-FLIGHT",
        "ACCEPTED",
        "DEAD-LETTERED",
        "OLDEST-WAITING",
    ]);
    for p in &group.partitions {
        partitions.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            p.start_offset.to_string(),
            p.end_offset.to_string(),
            p.waiting.to_string(),
            p.in_flight.to_string(),
            p.accepted.to_string(),
            p.dead_lettered.to_string(),
            if p.oldest_waiting_timestamp_ms.is_some() {
                seconds_text(p.delay_ms)
            } else {
                "-".into()
            },
        ]);
    }
    partitions.write(out)
}

fn describe_json(group: &DescribeShareGroupResponse) -> serde_json::Value {
    let members: Vec<_> = group
        .members
        .iter()
        .map(|m| json!({"member_id": m.member_id, "held": m.held, "prefetch": m.prefetch}))
        .collect();
    let partitions: Vec<_> = group
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "start_offset": p.start_offset,
                "end_offset": p.end_offset,
                "waiting": p.waiting,
                "in_flight": p.in_flight,
                "accepted": p.accepted,
                "dead_lettered": p.dead_lettered,
                "oldest_waiting_timestamp_ms": p.oldest_waiting_timestamp_ms,
                "delay_ms": p.delay_ms,
            })
        })
        .collect();
    json!({
        "group": group.group,
        "settings": settings_json(&group.settings.clone().unwrap_or_default()),
        "members": members,
        "partitions": partitions,
    })
}

#[cfg(test)]
mod tests {
    use sluice_client::{ShareMemberDescription, SharePartitionState};

    use super::*;

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(parse_seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("1e300").is_err());
    }

    #[test]
    fn describe_shows_the_queue_of_each_partition() -> io::Result<()> {
        let group = DescribeShareGroupResponse {
            group: "workers".into(),
            settings: Some(ShareGroupSettings {
                record_lock_duration_ms: Some(30_000),
                delivery_attempt_limit: Some(5),
                dead_letter_topic: Some(String::new()),
                redelivery_backoff_ms: Some(0),
                auto_offset_reset: 2,
            }),
            members: vec![ShareMemberDescription {
                member_id: "m-1".into(),
                held: 3,
                prefetch: 100,
            }],
            partitions: vec![SharePartitionState {
                topic: "jobs".into(),
                partition: 0,
                start_offset: 10,
                end_offset: 20,
                waiting: 6,
                in_flight: 3,
                accepted: 11,
                dead_lettered: 1,
                oldest_waiting_timestamp_ms: Some(1),
                delay_ms: 12_500,
            }],
        };
        let mut out = Vec::new();
        describe_table(&mut out, &group)?;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("Share group 'workers': 1 member(s); record lock 30.0s, delivery attempt limit 5, dead-letter topic -, redelivery backoff 0.0s, starts at latest\n"),
            "{text}"
        );
        let row = text.lines().last().unwrap_or_default();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["jobs", "0", "10", "20", "6", "3", "11", "1", "12.5s"]
        );
        let value = describe_json(&group);
        assert_eq!(value["partitions"][0]["waiting"], json!(6));
        assert_eq!(value["settings"]["dead_letter_topic"], json!(null));
        Ok(())
    }
}
