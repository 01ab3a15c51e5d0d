//! `sluice topic`: create, list, describe, reconfigure and delete topics.

use std::io::{self, Write};

use clap::Subcommand;
use serde_json::json;
use sluice_client::{NewTopic, TopicConfigChanges, TopicDescription};
use sluice_server::key_value;

use super::ConnectArgs;
use super::output::{Output, Table, write_json};

/// Flags of `sluice topic`.
#[derive(Debug, clap::Args)]
pub(crate) struct TopicArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    action: TopicAction,
}

#[derive(Debug, Subcommand)]
enum TopicAction {
    /// Create a topic.
    Create {
        /// Topic name: 1 to 249 characters from [a-zA-Z0-9._-]
        name: String,
        /// Number of partitions (fixed for the life of the topic)
        #[arg(long, value_name = "N")]
        partitions: u32,
        /// A config override with Kafka's key names, e.g. `retention.ms=86400000`; repeatable
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        config: Vec<(String, String)>,
    },
    /// List every topic.
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show a topic's partitions (offsets, sizes) and effective config.
    Describe {
        /// Topic name
        name: String,
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Change a topic's config overrides while it serves; the others stay.
    Alter {
        /// Topic name
        name: String,
        /// A config override to set, with Kafka's key names, e.g. `retention.ms=86400000`;
        /// repeatable
        #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
        config: Vec<(String, String)>,
        /// A config override to drop, so the key follows the server's default; repeatable
        #[arg(long, value_name = "KEY")]
        delete_config: Vec<String>,
        /// Only check the change; nothing is written or applied
        #[arg(long)]
        validate_only: bool,
    },
    /// Delete a topic and all of its data.
    Delete {
        /// Topic name
        name: String,
    },
}

/// Runs `sluice topic ...`.
pub(crate) async fn run(args: TopicArgs) -> anyhow::Result<()> {
    let admin = args.connect.connect().await?.admin();
    let mut out = io::stdout().lock();
    match args.action {
        TopicAction::Create {
            name,
            partitions,
            config,
        } => {
            let topic = config
                .into_iter()
                .fold(NewTopic::new(name, partitions), |topic, (key, value)| {
                    topic.config(key, value)
                });
            let created = admin.create_topic(topic).await?;
            writeln!(
                out,
                "Created topic '{}' with {} partition(s).",
                created.name,
                created.partitions.len()
            )?;
        }
        TopicAction::List { output } => {
            let topics = admin.list_topics().await?;
            match output {
                Output::Table => {
                    let mut table = Table::new(&["NAME", "PARTITIONS"]);
                    for topic in topics {
                        table.row(vec![topic.name, topic.partitions.to_string()]);
                    }
                    table.write(&mut out)?;
                }
                Output::Json => {
                    let list: Vec<_> = topics
                        .into_iter()
                        .map(|t| json!({"name": t.name, "partitions": t.partitions}))
                        .collect();
                    write_json(&mut out, &json!(list))?;
                }
            }
        }
        TopicAction::Describe { name, output } => {
            let topic = admin.describe_topic(&name).await?;
            match output {
                Output::Table => describe_table(&mut out, &topic)?,
                Output::Json => write_json(&mut out, &describe_json(&topic))?,
            }
        }
        TopicAction::Alter {
            name,
            config,
            delete_config,
            validate_only,
        } => {
            let mut changes = TopicConfigChanges {
                delete: delete_config,
                validate_only,
                ..TopicConfigChanges::new()
            };
            changes.set.extend(config);
            let altered = admin.alter_topic_config(&name, changes).await?;
            let overrides = if altered.overrides.is_empty() {
                "none".to_owned()
            } else {
                let pairs: Vec<String> = altered
                    .overrides
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                pairs.join(", ")
            };
            let verb = if validate_only { "would be" } else { "are now" };
            writeln!(out, "Overrides of topic '{name}' {verb}: {overrides}.")?;
        }
        TopicAction::Delete { name } => {
            admin.delete_topic(&name).await?;
            writeln!(out, "Deleted topic '{name}'.")?;
        }
    }
    Ok(())
}

fn describe_table(out: &mut impl Write, topic: &TopicDescription) -> io::Result<()> {
    writeln!(
        out,
        "Topic '{}': {} partition(s)\n",
        topic.name,
        topic.partitions.len()
    )?;
    let mut partitions = Table::new(&[
        "PARTITION",
        "LOG-START",
        "HIGH-WATERMARK",
        "LOG-END",
        "SIZE-BYTES",
        "SEGMENTS",
    ]);
    for p in &topic.partitions {
        partitions.row(vec![
            p.id.to_string(),
            p.log_start_offset.to_string(),
            p.high_watermark.to_string(),
            p.log_end_offset.to_string(),
            p.size_bytes.to_string(),
            p.segment_count.to_string(),
        ]);
    }
    partitions.write(out)?;
    writeln!(out)?;
    let mut config = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    for (key, value) in &topic.config {
        let source = if topic.overrides.contains_key(key) {
            "topic"
        } else {
            "default"
        };
        config.row(vec![key.clone(), value.clone(), source.to_owned()]);
    }
    config.write(out)
}

fn describe_json(topic: &TopicDescription) -> serde_json::Value {
    let partitions: Vec<_> = topic
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.id,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
                "log_end_offset": p.log_end_offset,
                "size_bytes": p.size_bytes,
                "segment_count": p.segment_count,
            })
        })
        .collect();
    json!({
        "name": topic.name,
        "partitions": partitions,
        "config": topic.config,
        "overrides": topic.overrides,
    })
}
