//! `sluice user`: create, list and delete users and change passwords; `sluice whoami`.

use std::io::{self, Write};

use clap::Subcommand;
use serde_json::json;
use sluice_proto::v1 as pb;

use super::ConnectArgs;
use super::output::{Output, Table, write_json};
use super::security::{TargetArgs, password_from_stdin};

/// Flags of `sluice user`.
#[derive(Debug, clap::Args)]
pub(crate) struct UserArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Create a user; its password is kept only as SCRAM-SHA-256 and -512 salted hashes.
    Add {
        /// User name: 1 to 255 characters, no control characters or ':'
        name: String,
        /// Read the password from the first line of standard input
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change a user's password.
    Passwd {
        /// User name
        name: String,
        /// Read the new password from the first line of standard input
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Delete a user.
    Delete {
        /// User name
        name: String,
    },
    /// List the users and their SCRAM mechanisms.
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// Runs `sluice user ...`.
pub(crate) async fn run(args: UserArgs) -> anyhow::Result<()> {
    let mut target = args.target.open().await?;
    let mut out = io::stdout().lock();
    match args.action {
        UserAction::Add { name, .. } => {
            target.add_user(&name, &password_from_stdin()?).await?;
            writeln!(out, "created user {name}")?;
        }
        UserAction::Passwd { name, .. } => {
            target.set_password(&name, &password_from_stdin()?).await?;
            writeln!(out, "changed the password of {name}")?;
        }
        UserAction::Delete { name } => {
            target.delete_user(&name).await?;
            writeln!(out, "deleted user {name}")?;
        }
        UserAction::List { output } => print_users(&mut out, &target.users().await?, output)?,
    }
    Ok(())
}

fn print_users(out: &mut impl Write, users: &[pb::User], output: Output) -> io::Result<()> {
    match output {
        Output::Table => {
            let mut table = Table::new(&["USER", "MECHANISMS"]);
            for user in users {
                table.row(vec![user.name.clone(), user.mechanisms.join(",")]);
            }
            table.write(out)
        }
        Output::Json => {
            for user in users {
                write_json(
                    out,
                    &json!({"name": user.name, "mechanisms": user.mechanisms}),
                )?;
            }
            Ok(())
        }
    }
}

/// Flags of `sluice whoami`.
#[derive(Debug, clap::Args)]
pub(crate) struct WhoAmIArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Runs `sluice whoami`: prints the principal the server takes the caller for.
pub(crate) async fn whoami(args: WhoAmIArgs) -> anyhow::Result<()> {
    let answer = args
        .connect
        .connect()
        .await?
        .security_service()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map_err(sluice_client::Error::from)?
        .into_inner();
    let auth = if answer.auth_enabled {
        "authentication required"
    } else {
        "authentication not required"
    };
    writeln!(io::stdout().lock(), "{} ({auth})", answer.principal)?;
    Ok(())
}
