//! `sluice quota`: per-user produce and fetch byte rates (and the default for users
//! without one), enforced by delaying answers as Kafka does.

use std::io::{self, Write};

use clap::Subcommand;
use serde_json::json;
use sluice_broker::security::{DEFAULT_QUOTA_USER, QuotaKind};

use super::output::{Output, Table, write_json};
use super::security::TargetArgs;

/// Flags of `sluice quota`.
#[derive(Debug, clap::Args)]
pub(crate) struct QuotaArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    action: QuotaAction,
}

#[derive(Debug, Subcommand)]
enum QuotaAction {
    /// Set or remove a user's byte rates.
    Set {
        /// The user whose quota to set
        #[arg(value_name = "USER", required_unless_present = "default")]
        name: Option<String>,
        /// Set the default quota of users without one of their own
        #[arg(long, conflicts_with = "name")]
        default: bool,
        /// Bytes per second the user may produce (0 or `none`: remove the limit)
        #[arg(long, value_name = "BYTES", value_parser = rate)]
        produce: Option<Rate>,
        /// Bytes per second the user may fetch (0 or `none`: remove the limit)
        #[arg(long, value_name = "BYTES", value_parser = rate)]
        fetch: Option<Rate>,
    },
    /// List every quota.
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// A byte rate to set; `None`: remove the limit.
#[derive(Debug, Clone, Copy)]
struct Rate(Option<u64>);

/// A rate: bytes per second, or 0 / `none` for no limit.
fn rate(text: &str) -> Result<Rate, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Rate(None));
    }
    match text.parse::<u64>() {
        Ok(0) => Ok(Rate(None)),
        Ok(rate) => Ok(Rate(Some(rate))),
        Err(_) => Err(format!(
            "{text:?} is not a number of bytes per second or `none`"
        )),
    }
}

/// Runs `sluice quota ...`.
pub(crate) async fn run(args: QuotaArgs) -> anyhow::Result<()> {
    let mut target = args.target.open().await?;
    let mut out = io::stdout().lock();
    match args.action {
        QuotaAction::Set {
            name,
            default,
            produce,
            fetch,
        } => {
            anyhow::ensure!(
                produce.is_some() || fetch.is_some(),
                "give --produce or --fetch (or both)"
            );
            let user = match name {
                Some(name) if !default => name,
                _ => DEFAULT_QUOTA_USER.to_owned(),
            };
            for (kind, rate) in [(QuotaKind::Produce, produce), (QuotaKind::Fetch, fetch)] {
                if let Some(Rate(rate)) = rate {
                    target.set_quota(&user, kind, rate).await?;
                    match rate {
                        Some(rate) => writeln!(out, "{user}: {kind} = {rate} bytes/s")?,
                        None => writeln!(out, "{user}: {kind} removed")?,
                    }
                }
            }
        }
        QuotaAction::List { output } => {
            let quotas = target.quotas().await?;
            match output {
                Output::Table => {
                    let mut table = Table::new(&["USER", "QUOTA", "BYTES/S"]);
                    for q in &quotas {
                        table.row(vec![
                            q.user.clone(),
                            q.quota.clone(),
                            q.bytes_per_second.to_string(),
                        ]);
                    }
                    table.write(&mut out)?;
                }
                Output::Json => {
                    for q in &quotas {
                        write_json(
                            &mut out,
                            &json!({"user": q.user, "quota": q.quota, "bytes_per_second": q.bytes_per_second}),
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}
