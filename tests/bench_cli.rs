//! `sluice bench` against a real server: producing, replaying, end-to-end latency and share
//! consumption, with JSON summaries.
mod common;

use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use common::Server;
use serde_json::Value;

/// Runs `sluice bench ARGS --output json` and returns the parsed summary.
fn bench(server: &Server, args: &[&str]) -> Result<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("bench")
        .args(args)
        .args(["--output", "json", "--server", &server.url()])
        .env_remove("SLUICE_SERVER")
        .env("SLUICE_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .context("run sluice bench")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "sluice bench {args:?} failed: {stderr}"
    );
    let stdout = String::from_utf8(output.stdout)?;
    ensure!(
        stdout.lines().count() == 1,
        "expected one JSON line, got {stdout:?}"
    );
    Ok(serde_json::from_str(&stdout)?)
}

fn number(summary: &Value, field: &str) -> Result<f64> {
    summary[field]
        .as_f64()
        .with_context(|| format!("no number {field} in {summary}"))
}

/// The latency quantiles, checked to be present, ordered and plausible.
fn latencies(summary: &Value, below_ms: f64) -> Result<[f64; 5]> {
    let latency = &summary["latency_ms"];
    let mut values = [0.0; 5];
    for (value, field) in values.iter_mut().zip(["p50", "p90", "p99", "p999", "max"]) {
        *value = latency[field]
            .as_f64()
            .with_context(|| format!("no latency_ms.{field} in {summary}"))?;
    }
    ensure!(values[0] > 0.0, "p50 is 0 in {summary}");
    ensure!(values.is_sorted(), "quantiles out of order in {summary}");
    ensure!(values[4] < below_ms, "max latency too high in {summary}");
    Ok(values)
}

#[test]
fn produce_then_replay_counts_every_record() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let produced = bench(
        &server,
        &[
            "produce",
            "--topic",
            "bench",
            "--partitions",
            "3",
            "--flush",
            "none",
            "--records",
            "2000",
            "--record-size",
            "100",
            "--batch-size",
            "100",
            "--producers",
            "2",
            "--in-flight",
            "1",
        ],
    )?;
    ensure!(produced["mode"] == "produce", "{produced}");
    ensure!(produced["records"] == 2000, "{produced}");
    ensure!(produced["bytes"] == 200_000, "{produced}");
    ensure!(number(&produced, "records_per_sec")? > 0.0, "{produced}");
    ensure!(number(&produced, "mb_per_sec")? > 0.0, "{produced}");
    ensure!(number(&produced, "seconds")? > 0.0, "{produced}");
    latencies(&produced, 30_000.0)?;

    for consumers in ["1", "2"] {
        let replayed = bench(
            &server,
            &["consume", "--topic", "bench", "--consumers", consumers],
        )?;
        ensure!(replayed["mode"] == "consume", "{replayed}");
        ensure!(replayed["records"] == 2000, "{replayed}");
        // Stored bytes: every payload plus batch and record overhead.
        ensure!(number(&replayed, "bytes")? > 200_000.0, "{replayed}");
        ensure!(number(&replayed, "records_per_sec")? > 0.0, "{replayed}");
        latencies(&replayed, 30_000.0)?;
    }
    Ok(())
}

#[test]
fn end_to_end_at_a_fixed_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let summary = bench(
        &server,
        &[
            "e2e",
            "--topic",
            "e2e",
            "--partitions",
            "2",
            "--records",
            "500",
            "--record-size",
            "64",
            "--rate",
            "1000",
            "--batch-size",
            "10",
        ],
    )?;
    ensure!(summary["mode"] == "e2e", "{summary}");
    ensure!(summary["records"] == 500, "{summary}");
    ensure!(summary["bytes"] == 500 * 64, "{summary}");
    // 500 records at 1000/s take about half a second, not much less.
    let seconds = number(&summary, "seconds")?;
    ensure!((0.45..30.0).contains(&seconds), "{summary}");
    let rate = number(&summary, "records_per_sec")?;
    ensure!(rate > 0.0 && rate < 1200.0, "{summary}");
    latencies(&summary, 5_000.0)?;

    // Values too short for the send-time stamp are timed by their record timestamp.
    let short = bench(
        &server,
        &[
            "e2e",
            "--topic",
            "e2e-short",
            "--records",
            "100",
            "--record-size",
            "4",
            "--rate",
            "1000",
            "--batch-size",
            "5",
        ],
    )?;
    ensure!(short["records"] == 100, "{short}");
    ensure!(short["bytes"] == 400, "{short}");
    latencies(&short, 5_000.0)?;
    Ok(())
}

#[test]
fn share_members_accept_every_record_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let filled = bench(
        &server,
        &[
            "share",
            "--topic",
            "jobs",
            "--partitions",
            "3",
            "--records",
            "3000",
            "--record-size",
            "100",
            "--consumers",
            "3",
            "--prefetch",
            "200",
            "--ack-every",
            "50",
        ],
    )?;
    ensure!(filled["mode"] == "share", "{filled}");
    // Every record accepted once: a record delivered twice would be counted twice.
    ensure!(filled["records"] == 3000, "{filled}");
    ensure!(filled["bytes"] == 300_000, "{filled}");
    ensure!(number(&filled, "records_per_sec")? > 0.0, "{filled}");
    latencies(&filled, 30_000.0)?;

    // Without --records the topic is taken as it is, by a new group (the default 4 members).
    let again = bench(&server, &["share", "--topic", "jobs"])?;
    ensure!(again["records"] == 3000, "{again}");

    // Each run deletes its group.
    let groups = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "share",
            "list",
            "--output",
            "json",
            "--server",
            &server.url(),
        ])
        .env_remove("SLUICE_SERVER")
        .stdin(Stdio::null())
        .output()?;
    ensure!(groups.status.success());
    let groups: Value = serde_json::from_slice(&groups.stdout)?;
    ensure!(groups == serde_json::json!([]), "groups left: {groups}");
    Ok(())
}

#[test]
fn share_of_an_empty_topic_fails() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "bench",
            "share",
            "--topic",
            "empty",
            "--server",
            &server.url(),
        ])
        .env_remove("SLUICE_SERVER")
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(!output.status.success(), "succeeded on an empty topic");
    ensure!(
        stderr.trim() == "error: topic 'empty' holds no record: give --records to fill it first",
        "{stderr}"
    );
    Ok(())
}

#[test]
fn bad_runs_fail_with_one_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "bench",
            "produce",
            "--topic",
            "t",
            "--server",
            &server.url(),
        ])
        .env_remove("SLUICE_SERVER")
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(!output.status.success(), "succeeded without --records");
    ensure!(
        stderr.trim() == "error: give --records or --duration",
        "{stderr}"
    );
    ensure!(output.stdout.is_empty());
    Ok(())
}
