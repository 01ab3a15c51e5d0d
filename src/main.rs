//! The `sluice` command: a partitioned, append-only log server, and a command-line client
//! for it.

mod cli;

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sluice_server::{ServeArgs, ServerConfig};

/// mimalloc keeps freed memory for reuse instead of returning it to the system at once:
/// the server and the load generator allocate and drop megabyte-sized message buffers at
/// high rates, which glibc's allocator turns into fresh page faults (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sluice: a partitioned, append-only log server with a gRPC API.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server until SIGINT or SIGTERM.
    // Both boxed: the server's flags and the client commands' connection settings are large.
    Serve(Box<ServeArgs>),
    #[command(flatten)]
    Client(Box<cli::ClientCommand>),
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => match serve(*args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {}", cli::one_line(&err));
                ExitCode::FAILURE
            }
        },
        Command::Client(command) => cli::run(*command).await,
    }
}

/// `sluice serve`.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::load(&args, std::env::vars_os())?;
    sluice_server::init_logging(&config.log_filter, config.log_format)?;
    // Register the signal handlers before the server announces itself, so a signal sent
    // right after the "listening" line already shuts down cleanly.
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    sluice_server::run(config, shutdown).await?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves on the first Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}
