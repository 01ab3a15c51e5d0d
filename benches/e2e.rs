//! End-to-end benchmark: starts the real `sluice` server on loopback with a temporary data
//! directory and runs a fixed matrix of `sluice bench` runs against it, each a child process
//! printing its summary as JSON:
//!
//! - produce: 100 B and 1 KiB records × requests of 1, 100 and 1000 records × `flush.policy`
//!   `none` and `fsync`, one topic per scenario, each bounded by time;
//! - replay: 1 GiB of 1 KiB records from offset 0;
//! - latency: produce at 1,000 records/s, and end-to-end (produce → consumer) at 1,000 and
//!   20,000 records/s, 1 KiB records, `flush.policy` `none`.
//!
//! It prints one table and writes `target/sluice-bench/summary.json` and
//! `target/sluice-bench/report.html` (inline SVG charts).
//!
//! Knobs: `SLUICE_BENCH_QUICK=1` shrinks every scenario to about a second and the replay to
//! 64 MiB (also the default when run by `cargo test`, i.e. without `--bench`);
//! `SLUICE_BENCH_SECONDS=S` sets the time per produce scenario; a free argument
//! (`cargo bench --bench e2e -- replay`) runs only the scenarios whose name contains it.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/report.rs"]
mod report;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use common::Server;
use report::{Outcome, Scenario};

/// Seconds per produce scenario, unless `SLUICE_BENCH_SECONDS` says otherwise.
const PRODUCE_SECONDS: f64 = 5.0;
/// Seconds per produce scenario in a quick run.
const QUICK_SECONDS: f64 = 1.0;
/// Bytes replayed.
const REPLAY_BYTES: u64 = 1 << 30;
/// Bytes replayed in a quick run.
const QUICK_REPLAY_BYTES: u64 = 64 << 20;
/// Longest any one `sluice bench` run may take, on top of its own bound.
const RUN_LIMIT_SECONDS: u64 = 120;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
struct Size {
    produce_seconds: f64,
    replay_bytes: u64,
    /// Seconds of each latency scenario.
    latency_seconds: u64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("e2e: benchmark");
        return Ok(());
    }
    let benching = args.iter().any(|a| a == "--bench");
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let quick = !benching || std::env::var("SLUICE_BENCH_QUICK").is_ok_and(|v| v != "0");
    let produce_seconds = match std::env::var("SLUICE_BENCH_SECONDS") {
        Ok(text) => text
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .with_context(|| format!("SLUICE_BENCH_SECONDS must be a positive number: {text}"))?,
        Err(_) if quick => QUICK_SECONDS,
        Err(_) => PRODUCE_SECONDS,
    };
    let size = Size {
        produce_seconds,
        replay_bytes: if quick {
            QUICK_REPLAY_BYTES
        } else {
            REPLAY_BYTES
        },
        latency_seconds: if quick { 1 } else { 5 },
    };
    let scenarios: Vec<Scenario> = matrix(size)
        .into_iter()
        .filter(|s| filter.as_ref().is_none_or(|f| s.name.contains(f.as_str())))
        .collect();
    if scenarios.is_empty() {
        bail!("no scenario matches {filter:?}");
    }

    let out_dir = target_dir().join("sluice-bench");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let data = tempfile::tempdir().context("temporary data directory")?;
    let server = Server::start(data.path(), &[])?;
    eprintln!(
        "sluice e2e bench: {} scenarios against {} ({}), data in {}",
        scenarios.len(),
        server.url(),
        if quick { "quick" } else { "full" },
        data.path().display()
    );

    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(scenarios.len());
    for scenario in scenarios {
        eprint!("{:<34}", scenario.name);
        let outcome = match run(&server, &scenario) {
            Ok(result) => Outcome { scenario, result },
            Err(err) => {
                eprintln!("FAILED: {err:#}");
                let result = serde_json::json!({ "error": format!("{err:#}") });
                Outcome { scenario, result }
            }
        };
        eprintln!("{}", report::short(&outcome.result));
        outcomes.push(outcome);
    }
    let elapsed = started.elapsed();

    print!("{}", report::table(&outcomes));
    let summary = report::summary_json(&outcomes, quick, elapsed);
    let json_path = out_dir.join("summary.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let html_path = out_dir.join("report.html");
    std::fs::write(&html_path, report::html(&outcomes, &summary))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    println!(
        "\n{} scenarios in {:.0} s; wrote {} and {}",
        outcomes.len(),
        elapsed.as_secs_f64(),
        json_path.display(),
        html_path.display()
    );
    server.stop()?;
    let failed = outcomes
        .iter()
        .filter(|o| o.result.get("error").is_some())
        .count();
    if failed > 0 {
        bail!("{failed} of {} scenarios failed", outcomes.len());
    }
    Ok(())
}

/// The fixed matrix, in the order it runs.
fn matrix(size: Size) -> Vec<Scenario> {
    let mut scenarios = Vec::new();
    let seconds = format!("{}", size.produce_seconds);
    for flush in ["none", "fsync"] {
        for record_size in [100u32, 1024] {
            for batch in [1u32, 100, 1000] {
                let name = format!("produce {} B x{batch} {flush}", record_size);
                scenarios.push(Scenario::new(
                    &name,
                    "produce",
                    &[
                        "--flush",
                        flush,
                        "--record-size",
                        &record_size.to_string(),
                        "--batch-size",
                        &batch.to_string(),
                        "--duration",
                        &seconds,
                        "--records",
                        "1000000000",
                    ],
                ));
            }
        }
    }
    let replay_records = size.replay_bytes / 1024;
    let mut replay = Scenario::new(
        &format!("replay {} MiB 1 KiB", size.replay_bytes >> 20),
        "consume",
        &[],
    );
    replay.setup = vec![
        "produce".into(),
        "--flush".into(),
        "none".into(),
        "--record-size".into(),
        "1024".into(),
        "--batch-size".into(),
        "1000".into(),
        "--records".into(),
        replay_records.to_string(),
    ];
    scenarios.push(replay);
    for (mode, rate, batch) in [
        ("produce", 1_000u64, 1u32),
        ("e2e", 1_000, 1),
        ("e2e", 20_000, 10),
    ] {
        let name = format!("{mode} latency @{rate}/s 1 KiB x{batch}");
        scenarios.push(Scenario::new(
            &name,
            mode,
            &[
                "--flush",
                "none",
                "--record-size",
                "1024",
                "--batch-size",
                &batch.to_string(),
                "--rate",
                &rate.to_string(),
                "--records",
                &(rate * size.latency_seconds).to_string(),
            ],
        ));
    }
    scenarios
}

/// Runs one scenario on a topic of its own (its setup first, if any), then deletes the topic;
/// returns the summary `sluice bench` printed.
fn run(server: &Server, scenario: &Scenario) -> Result<serde_json::Value> {
    let topic = scenario.topic();
    if !scenario.setup.is_empty() {
        bench(server, &topic, &scenario.setup).context("setup")?;
    }
    let result = bench(server, &topic, &scenario.args)
        .with_context(|| format!("scenario '{}'", scenario.name))?;
    sluice(server, &["topic", "delete", &topic])?;
    Ok(result)
}

/// Runs `sluice bench ARGS --topic TOPIC --output json` and returns its summary.
fn bench(server: &Server, topic: &str, args: &[String]) -> Result<serde_json::Value> {
    let mut full: Vec<&str> = vec!["bench"];
    full.extend(args.iter().map(String::as_str));
    full.extend(["--topic", topic, "--output", "json"]);
    let stdout = sluice(server, &full)?;
    serde_json::from_str(stdout.trim()).with_context(|| format!("not JSON: {stdout}"))
}

/// Runs the `sluice` client with `args` against `server`; its standard output, or an error
/// with its standard error.
fn sluice(server: &Server, args: &[&str]) -> Result<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--server", &server.url()])
        .env_remove("SLUICE_SERVER")
        .env("SLUICE_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run sluice")?;
    let stdout = drain(child.stdout.take().context("stdout")?);
    let stderr = drain(child.stderr.take().context("stderr")?);
    let deadline = Instant::now() + Duration::from_secs(RUN_LIMIT_SECONDS);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!("sluice {args:?} did not finish within {RUN_LIMIT_SECONDS} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let joined = |reader: std::thread::JoinHandle<std::io::Result<String>>| {
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("output reader panicked"))?
            .context("cannot read the output of sluice")
    };
    let (stdout, stderr) = (joined(stdout)?, joined(stderr)?);
    if !status.success() {
        // The last line is the error; the lines before it are progress.
        let error = stderr.trim().lines().last().unwrap_or("no message");
        bail!("sluice {} failed: {error}", args.join(" "));
    }
    Ok(stdout)
}

/// Reads `pipe` to its end on a thread of its own, so the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<std::io::Result<String>> {
    std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).map(|_| text)
    })
}

/// The target directory: `CARGO_TARGET_DIR` if set, else `target/` of the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}
