//! A client in another language: the Python example (grpcio, stubs generated from proto/ at
//! run time) produces and consumes a message against the real server.
mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use common::*;

#[test]
fn python_grpcio_client_round_trips_a_message() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let setup = Command::new(root.join("scripts/setup-python.sh"))
        .status()
        .context("run setup-python.sh")?;
    ensure!(setup.success(), "scripts/setup-python.sh failed");
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("examples/python/hello.py"))
        .args(["--server", &server.addr])
        .output()
        .context("run hello.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "hello.py failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout.contains("Hello World!"),
        "unexpected output: {stdout}"
    );
    Ok(())
}
