//! SIGKILL with a durable queue: a publisher in confirm mode sends persistent messages to a
//! durable queue, each confirmed before the next; a consumer (prefetch 1, manual
//! acknowledgements) acknowledges the first few and holds the next one unacknowledged,
//! and a passive declare on its channel, answered after those acknowledgements, reports
//! the ready count. The server is then SIGKILLed and restarted on the same data directory:
//! the queue holds exactly the messages not acknowledged (the held one among them, back at
//! the head and flagged redelivered), and those only, in the order they were published.
//!
//! So an acknowledgement the server has answered past (a later synchronous method on the
//! same channel got its reply) must survive a SIGKILL. RabbitMQ 3.10 keeps it only once
//! its queue index is flushed, within about a second: killed at once, it brings every
//! acknowledged message back.
mod common;

use anyhow::{Result, ensure};
use common::Server;
use common::amqp::{self, events_of, queue, queue_info, start_ready};
use serde_json::{Value, json};

const QUEUE: &str = "durable_tasks";
/// Messages published, and how many of them the consumer acknowledges before the kill.
const PUBLISHED: usize = 20;
const ACKED: usize = 7;

#[test]
fn confirmed_persistent_messages_survive_sigkill_and_acks_stick() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = amqp::addr(&server)?;
    let bodies: Vec<String> = (0..PUBLISHED).map(|i| format!("message {i}")).collect();

    let published = amqp::run(
        addr,
        "publish_confirmed.py",
        &[QUEUE, &PUBLISHED.to_string()],
    )?;
    let confirmed: Vec<Value> = bodies
        .iter()
        .map(|b| json!({"event": "confirmed", "body": b}))
        .collect();
    ensure!(
        published == confirmed,
        "the publisher printed {published:?}"
    );

    let (mut consumer, ready) = start_ready(addr, "ack_some.py", &[QUEUE, &ACKED.to_string()])?;
    let acked = events_of(&consumer, "acked")?;
    let expected_acked: Vec<Value> = bodies[..ACKED]
        .iter()
        .map(|b| json!({"event": "acked", "body": b, "redelivered": false}))
        .collect();
    ensure!(
        acked == expected_acked,
        "the consumer acknowledged {acked:?}"
    );
    let held = events_of(&consumer, "holding")?;
    ensure!(
        held == [json!({"event": "holding", "body": bodies[ACKED], "redelivered": false})],
        "the consumer holds {held:?}"
    );
    // The ready count leaves out the message delivered and not yet acknowledged.
    ensure!(
        ready == json!({"event": "ready", "messages": PUBLISHED - ACKED - 1, "consumers": 1}),
        "before the kill: {ready}"
    );

    server.kill()?;
    consumer.kill();
    let server = Server::start(dir.path(), &[])?;
    let addr = amqp::addr(&server)?;
    let restarted = queue_info(addr, &[QUEUE])?;
    ensure!(
        restarted == [queue(QUEUE, (PUBLISHED - ACKED) as u64, 0)],
        "after the restart: {restarted:?}"
    );

    let drained = amqp::run(addr, "drain.py", &[QUEUE])?;
    let expected: Vec<Value> = bodies[ACKED..]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"event": "got", "body": b, "redelivered": true,
                   "message_count": PUBLISHED - ACKED - 1 - i, "persistent": true})
        })
        .chain([json!({"event": "empty", "messages": 0})])
        .collect();
    ensure!(
        without_unsure_flags(&drained) == without_unsure_flags(&expected),
        "after the restart the queue held {drained:?}"
    );
    ensure!(
        drained[0]["redelivered"] == true,
        "the message held at the kill came back not flagged redelivered: {}",
        drained[0]
    );
    Ok(())
}

/// `lines` without the redelivered flag of each message but the first. The first was
/// delivered before the kill, so it must be flagged; the others were not, and AMQP leaves
/// the flag to the server then ("may have been delivered before"): RabbitMQ flags every
/// message it recovers after a crash.
fn without_unsure_flags(lines: &[Value]) -> Vec<Value> {
    let mut lines = lines.to_vec();
    for line in lines.iter_mut().skip(1) {
        if let Some(fields) = line.as_object_mut() {
            fields.remove("redelivered");
        }
    }
    lines
}
