//! `sluice consume`: print a topic's records, one per line.

use std::io::{self, Write};

use anyhow::Context as _;
use sluice_client::{Client, GroupEvent, OffsetReset, Position};

use super::ConnectArgs;
use super::records::{FORMAT_HELP, Format, write_record};
use super::timestamp::parse_time;

/// Flags of `sluice consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to read
    topic: String,
    /// Read only this partition (default: every partition)
    #[arg(long, value_name = "P", conflicts_with = "group")]
    partition: Option<u32>,
    /// Start at the earliest stored record (default: only records produced from now on).
    /// With --group: where partitions without a committed offset start
    #[arg(long, conflicts_with_all = ["offset", "from_time"])]
    from_beginning: bool,
    /// Start at this offset in every partition read
    #[arg(long, value_name = "N", conflicts_with_all = ["from_time", "group"])]
    offset: Option<u64>,
    /// Start at the first record at or after this time, e.g. 2026-01-31T12:00:00Z
    #[arg(long, value_name = "RFC3339", value_parser = parse_time, conflicts_with = "group")]
    from_time: Option<i64>,
    /// Consume as a member of this consumer group: read the partitions the group assigns,
    /// from its committed offsets, committing progress every 5 s and on exit
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Exit after printing this many records (default: follow the topic until Ctrl-C)
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    #[arg(long, value_enum, default_value_t, help = FORMAT_HELP)]
    format: Format,
}

/// Runs `sluice consume` until `--max-messages` records are printed or Ctrl-C.
pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    if args.max_messages == Some(0) {
        return Ok(());
    }
    match &args.group {
        Some(group) => consume_group(&client, &args, group).await,
        None => tokio::select! {
            result = consume(&client, &args) => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
        },
    }
}

/// Reads with a plain consumer.
async fn consume(client: &Client, args: &ConsumeArgs) -> anyhow::Result<()> {
    let start = match (args.from_beginning, args.offset, args.from_time) {
        (true, _, _) => Position::Earliest,
        (_, Some(offset), _) => Position::Offset(offset),
        (_, _, Some(ms)) => Position::Timestamp(ms),
        _ => Position::Latest,
    };
    let mut consumer = client
        .consumer(args.topic.as_str())
        .partitions(args.partition)
        .start(start)
        .build();
    let mut printed = 0u64;
    loop {
        let record = consumer.next().await?;
        write_record(&mut io::stdout().lock(), &record, args.format)?;
        printed += 1;
        if args.max_messages.is_some_and(|max| printed >= max) {
            return Ok(());
        }
    }
}

/// Reads as a group member until `--max-messages` or Ctrl-C, then commits the progress
/// and leaves the group.
async fn consume_group(client: &Client, args: &ConsumeArgs, group: &str) -> anyhow::Result<()> {
    let reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut consumer = client
        .group_consumer(group)
        .topic(args.topic.as_str())
        .offset_reset(reset)
        .build();
    let mut printed = 0u64;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            event = consumer.next() => event?,
            _ = &mut interrupted => break,
        };
        if let GroupEvent::Record(record) = event {
            write_record(&mut io::stdout().lock(), &record, args.format)?;
            printed += 1;
            if args.max_messages.is_some_and(|max| printed >= max) {
                break;
            }
        }
    }
    io::stdout().flush()?;
    consumer
        .close()
        .await
        .context("cannot commit the group's offsets")
}
