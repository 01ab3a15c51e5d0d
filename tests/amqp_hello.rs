//! The first RabbitMQ programs most people write (tutorial 1, "Hello World!"), run
//! unchanged against `sluice serve`: `send.py` declares the queue `hello`, publishes
//! `Hello World!` to it through the default exchange and closes; then `receive.py`, started
//! only after that, declares `hello` and consumes it with automatic acknowledgement,
//! printing what it gets. The message waits in the queue until the receiver comes. Both
//! dial `localhost` on the default port, so this is the one test that listens on the real
//! AMQP port, 5672.
mod common;

use anyhow::{Context, Result, ensure};
use common::Server;
use common::amqp::{self, TIMEOUT, queue, queue_info};

#[test]
fn rabbitmq_hello_world_programs_run_unchanged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &["--amqp-listen", "127.0.0.1:5672"])
        .context("start sluice with its AMQP listener on 127.0.0.1:5672 (is the port taken?)")?;
    let addr = amqp::addr(&server)?;
    ensure!(addr == "127.0.0.1:5672", "the AMQP listener is on {addr}");

    let sent = amqp::start(addr, "send.py", &[])?.finish(TIMEOUT)?;
    ensure!(
        sent == [" [x] Sent 'Hello World!'"],
        "send.py printed {sent:?}"
    );
    let waiting = queue_info(addr, &["hello"])?;
    ensure!(
        waiting == [queue("hello", 1, 0)],
        "before the receiver came: {waiting:?}"
    );

    let receiver = amqp::start(addr, "receive.py", &[])?;
    receiver.wait_for_stdout("the message", TIMEOUT, |lines| lines.len() >= 2)?;
    let consumed = queue_info(addr, &["hello"])?;
    ensure!(
        consumed == [queue("hello", 0, 1)],
        "once the receiver had the message: {consumed:?}"
    );
    let printed = receiver.stdout();
    ensure!(
        printed
            == [
                " [*] Waiting for messages. To exit press CTRL+C",
                " [x] Received b'Hello World!'"
            ],
        "receive.py printed {printed:?}"
    );
    Ok(())
}
