//! Queue operations beyond the tutorials, each through a pika program of `tests/amqp/`:
//! dead-lettering of a rejected message, basic.get and its message count, basic.nack of
//! several deliveries at once with requeue, queue.purge, and a delayed retry (queue TTL
//! with a dead-letter exchange, no reader).
mod common;

use anyhow::{Result, ensure};
use common::Server;
use common::amqp;
use serde_json::{Value, json};

/// Runs `basics.py COMMAND` against a server of its own; what it printed.
fn basics(command: &str) -> Result<Vec<Value>> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    amqp::run(amqp::addr(&server)?, "basics.py", &[command])
}

/// A message rejected without requeue leaves its queue for the queue's dead-letter
/// exchange, with the dead-letter routing key, and an `x-death` header that says from
/// where and why; the messages acknowledged around it are gone.
#[test]
fn a_rejected_message_is_dead_lettered() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let printed = amqp::run(amqp::addr(&server)?, "dead_letter.py", &[])?;
    let expected = [
        json!({"event": "acked", "body": "good 1"}),
        json!({"event": "rejected", "body": "bad"}),
        json!({"event": "acked", "body": "good 2"}),
        json!({"event": "dead_letter", "body": "bad", "exchange": "dlx",
               "routing_key": "rejected", "redelivered": false,
               "x_death": [{"count": 1, "reason": "rejected", "queue": "work",
                            "exchange": "", "routing-keys": ["work"]}]}),
        json!({"event": "after", "work": 0, "rejected": 0}),
    ];
    ensure!(printed == expected, "dead_letter.py printed {printed:?}");
    Ok(())
}

/// A message waiting in a queue nobody reads expires after the queue's TTL and goes to
/// the dead-letter exchange (a delayed retry).
#[test]
fn an_expired_message_is_dead_lettered_without_a_reader() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let printed = amqp::run(amqp::addr(&server)?, "delayed_retry.py", &[])?;
    let expected = [
        json!({"event": "arrived", "body": "try again", "reason": "expired", "waited_the_ttl": true}),
        json!({"event": "after", "delay": 0}),
    ];
    ensure!(printed == expected, "delayed_retry.py printed {printed:?}");
    Ok(())
}

/// basic.get takes the messages in order, each with the count of those still ready after
/// it, and answers get-empty once none is left.
#[test]
fn basic_get_counts_what_is_left() -> Result<()> {
    let printed = basics("get")?;
    let expected = [
        json!({"event": "got", "body": "one", "message_count": 2, "redelivered": false, "delivery_tag": 1}),
        json!({"event": "got", "body": "two", "message_count": 1, "redelivered": false, "delivery_tag": 2}),
        json!({"event": "got", "body": "three", "message_count": 0, "redelivered": false, "delivery_tag": 3}),
        json!({"event": "empty", "body": null}),
    ];
    ensure!(printed == expected, "basics.py get printed {printed:?}");
    Ok(())
}

/// basic.nack with `multiple` and `requeue` puts back every delivery up to the tag given:
/// all come again, in their original order, flagged redelivered, under new tags.
#[test]
fn nack_multiple_requeues_in_order() -> Result<()> {
    let printed = basics("nack")?;
    let delivery = |kind: &str, body: &str, redelivered: bool, tag: u64| json!({"event": kind, "body": body, "redelivered": redelivered, "delivery_tag": tag});
    let expected = [
        delivery("delivered", "one", false, 1),
        delivery("delivered", "two", false, 2),
        delivery("delivered", "three", false, 3),
        delivery("redelivered", "one", true, 4),
        delivery("redelivered", "two", true, 5),
        delivery("redelivered", "three", true, 6),
        json!({"event": "after", "messages": 0}),
    ];
    ensure!(printed == expected, "basics.py nack printed {printed:?}");
    Ok(())
}

/// queue.purge removes every ready message and says how many.
#[test]
fn purge_empties_the_queue() -> Result<()> {
    let printed = basics("purge")?;
    let expected = [
        json!({"event": "purged", "message_count": 5}),
        json!({"event": "after", "messages": 0}),
    ];
    ensure!(printed == expected, "basics.py purge printed {printed:?}");
    Ok(())
}
