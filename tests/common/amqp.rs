//! Real AMQP 0-9-1 clients against a server's AMQP listener: the pika programs of
//! `tests/amqp/` (RabbitMQ's tutorial programs and a few single behaviours; installed by
//! `scripts/setup-python.sh`), run as child processes that are killed when a test fails.
//! Each prints one JSON object a line (see `tests/amqp/harness.py`), which the tests
//! compare with what they expect as [`Value`]s.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::Server;
use super::kafka::{Program, parse_lines, python_command};

/// How long a program may take to run to its end, or to show an awaited line.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The `host:port` of `server`'s AMQP listener.
pub fn addr(server: &Server) -> Result<&str> {
    server
        .amqp_addr()
        .context("the server has no AMQP listener")
}

/// Starts `tests/amqp/SCRIPT ARGS` against the AMQP listener at `addr`.
pub fn start(addr: &str, script: &str, args: &[&str]) -> Result<Program> {
    start_as(addr, ("guest", "guest"), script, args)
}

/// Starts `tests/amqp/SCRIPT ARGS` against the AMQP listener at `addr`, logging in as
/// `user` with `password`.
pub fn start_as(
    addr: &str,
    (user, password): (&str, &str),
    script: &str,
    args: &[&str],
) -> Result<Program> {
    let mut command = python_command("tests/amqp", script, args)?;
    command
        .env("AMQP_ADDR", addr)
        .env("AMQP_USER", user)
        .env("AMQP_PASSWORD", password);
    Program::spawn(script, command)
}

/// Runs `tests/amqp/SCRIPT ARGS` against `addr` to its successful end (within
/// [`TIMEOUT`]); the lines it printed, parsed.
pub fn run(addr: &str, script: &str, args: &[&str]) -> Result<Vec<Value>> {
    parse_lines(&start(addr, script, args)?.finish(TIMEOUT)?)
}

/// [`run`], logging in as `user` with `password`.
pub fn run_as(addr: &str, user: (&str, &str), script: &str, args: &[&str]) -> Result<Vec<Value>> {
    parse_lines(&start_as(addr, user, script, args)?.finish(TIMEOUT)?)
}

/// What `queue_info.py` reports for each of `queues`: their ready message and consumer
/// counts, or the code and text of the channel close a passive declare met.
pub fn queue_info(addr: &str, queues: &[&str]) -> Result<Vec<Value>> {
    run(addr, "queue_info.py", queues)
}

/// What `queue_info.py` prints for a queue with `messages` ready and `consumers`.
pub fn queue(name: &str, messages: u64, consumers: u64) -> Value {
    json!({"event": "queue", "queue": name, "messages": messages, "consumers": consumers})
}

/// The lines `program` printed so far, parsed.
pub fn events(program: &Program) -> Result<Vec<Value>> {
    parse_lines(&program.stdout())
}

/// The lines `program` printed so far whose `event` is `kind`.
pub fn events_of(program: &Program, kind: &str) -> Result<Vec<Value>> {
    Ok(events(program)?
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect())
}

/// Waits (up to [`TIMEOUT`]) until `program` printed `count` lines whose `event` is
/// `kind`.
pub fn wait_for(program: &Program, kind: &str, count: usize) -> Result<()> {
    program.wait_for_stdout(&format!("{count} `{kind}` lines"), TIMEOUT, |lines| {
        lines
            .iter()
            .filter(|line| serde_json::from_str::<Value>(line).is_ok_and(|e| e["event"] == kind))
            .count()
            >= count
    })
}

/// Starts a consumer program that prints `ready` (with the name of its queue, when the
/// server named it) once it consumes, and waits for that line; the program and its
/// `ready` line.
pub fn start_ready(addr: &str, script: &str, args: &[&str]) -> Result<(Program, Value)> {
    let program = start(addr, script, args)?;
    wait_for(&program, "ready", 1)?;
    let ready = events_of(&program, "ready")?
        .into_iter()
        .next()
        .context("no ready line")?;
    Ok((program, ready))
}
