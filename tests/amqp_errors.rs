//! Channel errors as RabbitMQ raises them, through pika programs of `tests/amqp/`: the
//! server closes the channel with the AMQP reply code (and a reply text that starts with
//! its name), and the connection stays usable on a new channel.
mod common;

use anyhow::{Result, ensure};
use common::Server;
use common::amqp;
use serde_json::Value;

/// Runs `basics.py COMMAND` against a server of its own; what it printed.
fn basics(command: &str) -> Result<Vec<Value>> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    amqp::run(amqp::addr(&server)?, "basics.py", &[command])
}

/// Checks that `closed` is a `closed` line with `code`, a text that starts with `name`, and
/// the channel closed.
fn check_closed(closed: &Value, code: u64, name: &str) -> Result<()> {
    ensure!(
        closed["event"] == "closed"
            && closed["code"] == code
            && closed["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{name} - ")))
            && closed["channel_open"] == false,
        "expected the channel closed with {code} {name}: {closed}"
    );
    Ok(())
}

/// A passive declare of a queue that does not exist closes the channel with 404
/// NOT_FOUND; a new channel on the same connection works.
#[test]
fn passive_declare_of_a_missing_queue_is_not_found() -> Result<()> {
    let printed = basics("missing")?;
    let [closed, reused] = printed.as_slice() else {
        anyhow::bail!("basics.py missing printed {printed:?}");
    };
    check_closed(closed, 404, "NOT_FOUND")?;
    ensure!(
        *reused
            == serde_json::json!({"event": "reused", "connection_open": true, "body": "still here"}),
        "on a new channel: {reused}"
    );
    Ok(())
}

/// Declaring an existing queue again with another `durable` flag closes the channel with
/// 406 PRECONDITION_FAILED and leaves the queue as it was: a new channel declares it
/// again with its own flag.
#[test]
fn redeclare_with_another_durable_flag_is_a_precondition_failure() -> Result<()> {
    let printed = basics("redeclare")?;
    let [closed, redeclared] = printed.as_slice() else {
        anyhow::bail!("basics.py redeclare printed {printed:?}");
    };
    check_closed(closed, 406, "PRECONDITION_FAILED")?;
    ensure!(
        *redeclared
            == serde_json::json!({"event": "redeclared", "queue": "flip_queue", "messages": 0}),
        "on a new channel: {redeclared}"
    );
    Ok(())
}
