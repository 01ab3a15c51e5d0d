//! The first Kafka programs most people write, run unchanged against `sluice serve`: a
//! kafka-python producer that sends ten values to topic `test` (which does not exist
//! beforehand) and flushes, and a kafka-python consumer of `test` without a group, on the
//! default settings, that prints every message it gets. Both dial `localhost:9092`, so this
//! is the one test that listens on the real Kafka port.
mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::Server;
use common::kafka::{Program, python, root};

/// What kafka-python logs (at INFO) once the consumer knows where it starts reading
/// `test-0`: from then on, every record appended to the partition reaches it.
const POSITIONED: &str = "Resetting offset for partition TopicPartition(topic='test', partition=0)";

#[test]
fn kafka_python_hello_programs_run_unchanged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &["--kafka-listen", "127.0.0.1:9092"])
        .context("start sluice with its Kafka listener on 127.0.0.1:9092 (is the port taken?)")?;
    ensure!(server.kafka_addr() == Some("127.0.0.1:9092"));

    // The consumer starts at the latest offset, which it asks for only after its Metadata
    // request has created `test`: a record produced before that answer would be skipped.
    // So the producer starts only once the consumer logged that it positioned itself on
    // the partition. The program is unchanged; kafka-python's own logging is turned on
    // around it, and stdout is unbuffered so that each message it prints shows at once.
    let mut consumer_command = Command::new(python()?);
    consumer_command
        .args([
            "-c",
            "import logging, runpy, sys; logging.basicConfig(level=logging.INFO); \
             runpy.run_path(sys.argv[1], run_name='__main__')",
        ])
        .arg(root().join("tests/kafka/hello_consumer.py"))
        .env("PYTHONUNBUFFERED", "1");
    let mut consumer = Program::spawn("hello_consumer.py", consumer_command)?;
    consumer.wait_for_stderr("its position on test-0", Duration::from_secs(15), |lines| {
        lines.iter().any(|line| line.contains(POSITIONED))
    })?;

    Program::python("hello_producer.py", &[])?.finish(Duration::from_secs(15))?;

    consumer.wait_for_stdout("ten messages", Duration::from_secs(10), |lines| {
        lines.len() >= 10
    })?;
    let printed = consumer.stdout();
    let values: Vec<&str> = printed.iter().filter_map(|line| value_of(line)).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("Hello {i}")).collect();
    ensure!(
        values == expected && printed.len() == 10,
        "the consumer printed:\n{}",
        printed.join("\n")
    );
    for (offset, line) in printed.iter().enumerate() {
        ensure!(
            line.contains("topic='test', partition=0,")
                && line.contains(&format!(" offset={offset},")),
            "message {offset} is not at offset {offset} of test-0: {line}"
        );
    }
    consumer.kill();
    Ok(())
}

/// The value of a printed `ConsumerRecord(..., value=b'...', ...)`.
fn value_of(line: &str) -> Option<&str> {
    let rest = line.split_once("value=b'")?.1;
    Some(rest.split_once('\'')?.0)
}
