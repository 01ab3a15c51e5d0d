//! The client subcommands of `sluice`: topics, producing, consuming, consumer groups and
//! share groups.

mod bench;
mod consume;
mod group;
mod output;
mod produce;
mod records;
mod share;
mod timestamp;
mod top;
mod topic;

use std::io;
use std::process::ExitCode;

use clap::Subcommand;
use sluice_client::Client;

/// Subcommands that talk to a running server.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Create, list, describe and delete topics.
    #[command(subcommand_required = true)]
    Topic(topic::TopicArgs),
    /// Produce one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Print the records of a topic, one per line.
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand_required = true)]
    Group(group::GroupArgs),
    /// Consume as a member of a share group (a queue); list, describe, alter and delete
    /// share groups.
    #[command(subcommand_required = true)]
    Share(share::ShareArgs),
    /// Generate load and measure throughput and latency (produce, consume, e2e).
    Bench(bench::BenchArgs),
    /// Watch topics and groups live: rates, lag, delay and fsync latency (from /metrics).
    Top(top::TopArgs),
}

/// Where the server is.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    /// Server URL (`http://host:port`; a bare `host:port` means http)
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL",
        global = true
    )]
    server: String,
}

impl ConnectArgs {
    /// Connects to the server.
    async fn connect(&self) -> anyhow::Result<Client> {
        let url = if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        };
        Ok(Client::connect(url).await?)
    }
}

/// Runs a client subcommand. Failures are reported as one line on standard error and a
/// non-zero exit code.
pub(crate) async fn run(command: ClientCommand) -> ExitCode {
    let result = match command {
        ClientCommand::Topic(args) => topic::run(args).await,
        ClientCommand::Produce(args) => produce::run(args).await,
        ClientCommand::Consume(args) => consume::run(args).await,
        ClientCommand::Group(args) => group::run(args).await,
        ClientCommand::Share(args) => share::run(args).await,
        ClientCommand::Bench(args) => bench::run(args).await,
        ClientCommand::Top(args) => top::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of standard output went away (`| head`): not a failure.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once.
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Whether writing to standard output failed because its reader went away.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_on_one_line_without_repeated_causes() {
        let err = anyhow::Error::from(io::Error::other("connection refused"))
            .context("tcp connect error")
            .context("tcp connect error")
            .context("cannot connect\nto the server");
        assert_eq!(
            one_line(&err),
            "cannot connect to the server: tcp connect error: connection refused"
        );
    }
}
