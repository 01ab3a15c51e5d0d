//! kcat (with the librdkafka Debian ships) against the Kafka listener: `kcat -P` produces
//! lines to a topic it creates by using it, with and without keys; `kcat -C -e -o
//! beginning` reads them back; `kcat -L` lists the broker and the topic.
//!
//! kcat is installed by `scripts/setup-kcat.sh` (apt-get, as root; `scripts/run-tests.sh`
//! runs it). Where it cannot be, on a developer machine that is not root, this test says so
//! and passes without running; as root, or when `CI` is set, a missing kcat fails it.
mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::Server;
use common::kafka::{Program, root};
use serde_json::Value;

/// Whether kcat can run here: installs it first where it can. Fails where it must be
/// there (as root, or under CI) and is not.
fn kcat_available() -> Result<bool> {
    let setup = Command::new(root().join("scripts/setup-kcat.sh"))
        .status()
        .context("run scripts/setup-kcat.sh")?;
    ensure!(setup.success(), "scripts/setup-kcat.sh failed: {setup}");
    if Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(true);
    }
    let uid = Command::new("id").arg("-u").output().context("run id -u")?;
    let root_user = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    if root_user || std::env::var_os("CI").is_some() {
        bail!("kcat is not installed and scripts/setup-kcat.sh could not install it");
    }
    eprintln!("SKIPPED: kcat is not installed (sudo apt-get install kcat), and this is not root");
    Ok(false)
}

/// Runs `kcat ARGS` with `stdin`; its output lines once it exited successfully.
fn kcat(args: &[&str], stdin: &str) -> Result<Vec<String>> {
    let mut command = Command::new("kcat");
    command.args(args);
    let mut program = Program::spawn(&format!("kcat {}", args.join(" ")), command)?;
    program.write(stdin)?;
    program.finish(Duration::from_secs(15))
}

#[test]
fn kcat_produces_consumes_and_lists_metadata() -> Result<()> {
    if !kcat_available()? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = server.kafka_addr().context("no Kafka listener")?;

    kcat(&["-b", addr, "-P", "-t", "lines"], "alpha\nbeta\ngamma\n")?;
    kcat(
        &["-b", addr, "-P", "-t", "lines", "-K", ":"],
        "k1:delta\nk2:epsilon\n",
    )?;

    let values = kcat(
        &["-b", addr, "-C", "-t", "lines", "-e", "-o", "beginning"],
        "",
    )?;
    ensure!(
        values == ["alpha", "beta", "gamma", "delta", "epsilon"],
        "{values:?}"
    );
    let formatted = kcat(
        &[
            "-b",
            addr,
            "-C",
            "-t",
            "lines",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%p %o %k=%s\n",
        ],
        "",
    )?;
    ensure!(
        formatted
            == [
                "0 0 =alpha",
                "0 1 =beta",
                "0 2 =gamma",
                "0 3 k1=delta",
                "0 4 k2=epsilon"
            ],
        "{formatted:?}"
    );

    let listing = kcat(&["-b", addr, "-L"], "")?.join("\n");
    for expected in [
        format!("broker 0 at {addr}"),
        "topic \"lines\" with 1 partitions:".to_owned(),
        "partition 0, leader 0, replicas: 0, isrs: 0".to_owned(),
    ] {
        ensure!(
            listing.contains(&expected),
            "no {expected:?} in:\n{listing}"
        );
    }
    let json: Value = serde_json::from_str(&kcat(&["-b", addr, "-L", "-J"], "")?.join("\n"))?;
    ensure!(json["brokers"][0]["name"] == addr, "{json}");
    let topics = json["topics"].as_array().context("no topics")?;
    ensure!(
        topics
            .iter()
            .any(|t| t["topic"] == "lines" && t["partitions"].as_array().map(Vec::len) == Some(1)),
        "{json}"
    );
    Ok(())
}
