//! The client subcommands of `sluice`: topics, producing, consuming, consumer groups,
//! share groups, and users, ACLs and quotas.

mod acl;
mod bench;
mod consume;
mod group;
mod output;
mod produce;
mod quota;
mod records;
mod security;
mod share;
mod timestamp;
mod top;
mod topic;
mod user;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use sluice_client::{Client, ClientBuilder};

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
    /// Create, list and delete users and change passwords (on a server, or with --data-dir
    /// in a data directory before the server starts).
    #[command(subcommand_required = true)]
    User(user::UserArgs),
    /// Add, remove and list ACL bindings (who may do what to which topics and groups).
    #[command(subcommand_required = true)]
    Acl(acl::AclArgs),
    /// Set and list per-user produce and fetch byte rates.
    #[command(subcommand_required = true)]
    Quota(quota::QuotaArgs),
    /// Print the principal the server takes this client for.
    Whoami(user::WhoAmIArgs),
}

/// Where the server is.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    /// Server URL (`http://host:port`, `https://host:port` for TLS; a bare `host:port`
    /// means http, or https with --ca-cert)
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL",
        global = true
    )]
    server: String,
    #[command(flatten)]
    credentials: CredentialArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

/// How the client checks the server's certificate and which one it presents.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TlsArgs {
    /// PEM file with the CA certificates that signed the server's certificate (TLS)
    #[arg(long, env = "SLUICE_CA_CERT", value_name = "FILE", global = true)]
    ca_cert: Option<PathBuf>,
    /// PEM file with the client certificate to present (mutual TLS; with --client-key)
    #[arg(long, env = "SLUICE_CLIENT_CERT", value_name = "FILE", global = true)]
    client_cert: Option<PathBuf>,
    /// PEM file with the private key of --client-cert
    #[arg(long, env = "SLUICE_CLIENT_KEY", value_name = "FILE", global = true)]
    client_key: Option<PathBuf>,
}

impl TlsArgs {
    /// `client` with the CA and client certificate given, read from their files.
    fn apply(&self, mut client: ClientBuilder) -> anyhow::Result<ClientBuilder> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))
        };
        if let Some(path) = &self.ca_cert {
            client = client.ca_certificate(read("--ca-cert", path)?);
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                client = client
                    .client_certificate(read("--client-cert", cert)?, read("--client-key", key)?);
            }
            (None, None) => {}
            _ => anyhow::bail!(
                "--client-cert (SLUICE_CLIENT_CERT) and --client-key (SLUICE_CLIENT_KEY) go together"
            ),
        }
        Ok(client)
    }

    /// Whether TLS is asked for.
    fn any(&self) -> bool {
        self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

/// Who the client authenticates as.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CredentialArgs {
    /// User to authenticate as; its password comes from the environment variable
    /// SLUICE_PASSWORD or from --password-file
    #[arg(long, env = "SLUICE_USER", value_name = "NAME", global = true)]
    user: Option<String>,
    /// File holding the password of --user (its first line)
    #[arg(long, value_name = "FILE", global = true)]
    password_file: Option<PathBuf>,
}

impl ConnectArgs {
    /// Connects to the server, with credentials when a user is given.
    async fn connect(&self) -> anyhow::Result<Client> {
        let url = if self.server.contains("://") {
            self.server.clone()
        } else if self.tls.any() {
            format!("https://{}", self.server)
        } else {
            format!("http://{}", self.server)
        };
        let mut client = self.tls.apply(Client::builder(url))?;
        if let Some((user, password)) = self.credentials.given()? {
            client = client.credentials(&user, &password);
        }
        Ok(client.connect().await?)
    }
}

impl CredentialArgs {
    /// The user and password, when a user is given.
    pub(crate) fn given(&self) -> anyhow::Result<Option<(String, String)>> {
        match &self.user {
            Some(user) => Ok(Some((user.clone(), self.password()?))),
            None => Ok(None),
        }
    }

    /// The password of `--user`: from `--password-file`, else `SLUICE_PASSWORD`.
    fn password(&self) -> anyhow::Result<String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --password-file {}", path.display()))?;
            return Ok(text.lines().next().unwrap_or_default().to_owned());
        }
        std::env::var("SLUICE_PASSWORD").map_err(|_| {
            anyhow::anyhow!(
                "--user (SLUICE_USER) needs a password: set SLUICE_PASSWORD or give --password-file"
            )
        })
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
        ClientCommand::User(args) => user::run(args).await,
        ClientCommand::Acl(args) => acl::run(args).await,
        ClientCommand::Quota(args) => quota::run(args).await,
        ClientCommand::Whoami(args) => user::whoami(args).await,
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
