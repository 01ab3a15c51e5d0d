//! RabbitMQ's tutorials 2 to 6, as their pika programs (`tests/amqp/`), against
//! `sluice serve`: work queues (fair dispatch under prefetch 1, redelivery of what a
//! killed worker held), publish/subscribe (a fanout exchange and exclusive server-named
//! queues), routing (a direct exchange), topics (a topic exchange with `*` and `#`) and
//! RPC (reply_to and correlation_id).
mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use common::Server;
use common::amqp::{self, events_of, queue, queue_info, start_ready, wait_for};
use serde_json::{Value, json};

/// A task that keeps a worker working (a second per dot) far longer than the test runs.
const SLOW_TASK: &str = "slow task............................................................";

/// A worker busy with a task (prefetch 1) is given nothing more: the tasks published
/// meanwhile all go to the other worker, in order. When the busy worker is SIGKILLed
/// without acknowledging its task, the task goes to the other worker, flagged redelivered.
#[test]
fn a_killed_workers_task_goes_to_another_worker_redelivered() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = amqp::addr(&server)?;

    let (mut busy, _) = start_ready(addr, "worker.py", &[])?;
    amqp::run(addr, "new_task.py", &[SLOW_TASK])?;
    wait_for(&busy, "received", 1)?;
    let (other, _) = start_ready(addr, "worker.py", &["0"])?;
    for i in 1..=3 {
        amqp::run(addr, "new_task.py", &[&format!("task {i}.")])?;
    }
    wait_for(&other, "done", 3)?;
    let held = queue_info(addr, &["task_queue"])?;
    ensure!(
        held == [queue("task_queue", 0, 2)],
        "while one task is held: {held:?}"
    );

    busy.kill();
    wait_for(&other, "done", 4)?;
    let busy_got = events_of(&busy, "received")?;
    ensure!(
        busy_got == [json!({"event": "received", "body": SLOW_TASK, "redelivered": false})],
        "the killed worker received {busy_got:?}"
    );
    let other_got = events_of(&other, "received")?;
    let expected: Vec<Value> = (1..=3)
        .map(|i| json!({"event": "received", "body": format!("task {i}."), "redelivered": false}))
        .chain([json!({"event": "received", "body": SLOW_TASK, "redelivered": true})])
        .collect();
    ensure!(
        other_got == expected,
        "the other worker received {other_got:?}"
    );
    let after = queue_info(addr, &["task_queue"])?;
    ensure!(
        after == [queue("task_queue", 0, 1)],
        "after every task was done: {after:?}"
    );
    Ok(())
}

/// Every subscriber of the fanout exchange `logs` gets every message published while it
/// listens (and none published before), each through an exclusive queue named by the
/// server, which no other connection may use; a subscriber's queue goes when its
/// connection does.
#[test]
fn every_subscriber_gets_every_log_message() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = amqp::addr(&server)?;

    amqp::run(addr, "emit_log.py", &["info: before anyone listens"])?;
    let (mut first, first_ready) = start_ready(addr, "receive_logs.py", &[])?;
    let (second, second_ready) = start_ready(addr, "receive_logs.py", &[])?;
    let names = [&first_ready["queue"], &second_ready["queue"]].map(|q| q.as_str().unwrap_or(""));
    ensure!(
        names.iter().all(|n| n.starts_with("amq.gen-")) && names[0] != names[1],
        "the server named the queues {names:?}"
    );

    let messages = ["info: one", "warning: two", "error: three"];
    for message in messages {
        amqp::run(addr, "emit_log.py", &[message])?;
    }
    for subscriber in [&first, &second] {
        wait_for(subscriber, "received", messages.len())?;
        let got = events_of(subscriber, "received")?;
        let expected: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({"event": "received", "body": m, "exchange": "logs", "routing_key": "",
                       "redelivered": false})
            })
            .collect();
        ensure!(got == expected, "a subscriber received {got:?}");
    }

    first.kill();
    let gone = eventually(|| {
        let info = queue_info(addr, &[names[0], names[1]])?;
        Ok((info.first().is_some_and(|q| q["event"] == "closed"), info))
    })?;
    // The other subscriber's queue is still there, and still its own: another connection
    // cannot even declare it passively.
    ensure!(
        gone[0]["code"] == 404
            && gone[1]["code"] == 405
            && gone[1]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("RESOURCE_LOCKED - ")),
        "once the first subscriber was killed: {gone:?}"
    );
    drop(second);
    Ok(())
}

/// A direct exchange routes by exact routing key: a subscriber bound to `error` gets only
/// errors, one bound to `info`, `warning` and `error` gets those three, and a `debug`
/// message, bound by nobody, reaches no one.
#[test]
fn direct_exchange_routes_by_severity() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = amqp::addr(&server)?;

    let (errors, _) = start_ready(addr, "receive_logs_direct.py", &["error"])?;
    let (all, _) = start_ready(
        addr,
        "receive_logs_direct.py",
        &["info", "warning", "error"],
    )?;
    let sent = [
        ("info", "an info"),
        ("debug", "a debug line"),
        ("warning", "a warning"),
        ("error", "an error"),
    ];
    for (severity, message) in sent {
        amqp::run(addr, "emit_log_direct.py", &[severity, message])?;
    }
    // The last message reaches both, so anything routed before it came before it.
    check_routed(&errors, &sent, &["error"])?;
    check_routed(&all, &sent, &["info", "warning", "error"])
}

/// A topic exchange matches routing keys word by word: `*` one word, `#` zero or more; a
/// message matching two bindings of one queue reaches it once.
#[test]
fn topic_exchange_matches_patterns() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = amqp::addr(&server)?;

    let (critical, _) = start_ready(addr, "receive_logs_topic.py", &["*.critical"])?;
    let (kernel, _) = start_ready(addr, "receive_logs_topic.py", &["kern.#"])?;
    let (animals, _) = start_ready(addr, "receive_logs_topic.py", &["*.orange.*", "lazy.#"])?;
    let (everything, _) = start_ready(addr, "receive_logs_topic.py", &["#"])?;
    // Each subscriber's last message is one it matches, sent after all it must not get.
    let sent = [
        ("kern.info", "kernel info"),
        ("auth.critical", "auth critical"),
        ("kern", "kernel alone"),
        ("a.critical.b", "three words"),
        ("quick.brown.fox", "brown fox"),
        ("lazy", "lazy alone"),
        ("lazy.orange.elephant", "both bindings"),
        ("quick.orange.rabbit", "orange rabbit"),
        ("kern.critical", "kernel critical"),
    ];
    for (routing_key, message) in sent {
        amqp::run(addr, "emit_log_topic.py", &[routing_key, message])?;
    }
    check_routed(&critical, &sent, &["auth.critical", "kern.critical"])?;
    check_routed(&kernel, &sent, &["kern.info", "kern", "kern.critical"])?;
    check_routed(
        &animals,
        &sent,
        &["lazy", "lazy.orange.elephant", "quick.orange.rabbit"],
    )?;
    let all: Vec<&str> = sent.iter().map(|(key, _)| *key).collect();
    check_routed(&everything, &sent, &all)
}

/// Waits until `subscriber` received as many messages as `keys` names, then checks it got
/// exactly the messages of `sent` routed with those keys, in the order they were sent.
fn check_routed(
    subscriber: &common::kafka::Program,
    sent: &[(&str, &str)],
    keys: &[&str],
) -> Result<()> {
    let expected: Vec<Value> = sent
        .iter()
        .filter(|(key, _)| keys.contains(key))
        .map(|(key, body)| json!({"event": "received", "routing_key": key, "body": body}))
        .collect();
    wait_for(subscriber, "received", expected.len())?;
    let got = events_of(subscriber, "received")?;
    ensure!(
        got == expected,
        "a subscriber bound to {keys:?} received {got:?}"
    );
    Ok(())
}

/// Two RPC clients call one server at once: each gets the answers to its own requests,
/// on its own exclusive server-named callback queue, under the correlation id of each
/// call, and no reply it was not waiting for.
#[test]
fn rpc_clients_get_their_own_answers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = amqp::addr(&server)?;

    let (rpc_server, _) = start_ready(addr, "rpc_server.py", &[])?;
    let calls: [&[u64]; 2] = [&[0, 1, 10, 20], &[2, 15, 25]];
    let clients = calls
        .iter()
        .map(|ns| {
            let args: Vec<String> = ns.iter().map(u64::to_string).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            amqp::start(addr, "rpc_client.py", &args)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut callback_queues = Vec::new();
    for (client, ns) in clients.into_iter().zip(calls) {
        let lines = client.finish(amqp::TIMEOUT)?;
        let answers: Vec<Value> = common::kafka::parse_lines(&lines)?;
        let got: Vec<(u64, u64)> = answers
            .iter()
            .filter_map(|a| Some((a["n"].as_u64()?, a["result"].as_u64()?)))
            .collect();
        let expected: Vec<(u64, u64)> = ns.iter().map(|&n| (n, fibonacci(n))).collect();
        ensure!(
            got == expected && answers.len() == ns.len(),
            "a client asked for {ns:?} and printed {answers:?}"
        );
        let reply_to = answers[0]["reply_to"].as_str().unwrap_or("").to_owned();
        ensure!(
            reply_to.starts_with("amq.gen-")
                && answers.iter().all(|a| a["reply_to"] == reply_to.as_str()),
            "a client's callback queues: {answers:?}"
        );
        callback_queues.push(reply_to);
    }
    ensure!(callback_queues[0] != callback_queues[1]);
    wait_for(&rpc_server, "request", 7)?;
    let requests = events_of(&rpc_server, "request")?;
    ensure!(
        requests.len() == 7,
        "the server handled {} requests: {requests:?}",
        requests.len()
    );
    Ok(())
}

fn fibonacci(n: u64) -> u64 {
    (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0
}

/// Retries `probe` (up to 10 s, every 100 ms) until it reports it is done; what it saw
/// last.
fn eventually<T: std::fmt::Debug>(probe: impl Fn() -> Result<(bool, T)>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (done, seen) = probe()?;
        if done {
            return Ok(seen);
        }
        ensure!(Instant::now() < deadline, "still {seen:?} after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
