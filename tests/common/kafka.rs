//! Real Kafka clients against a server's Kafka listener: the Python programs of
//! `tests/kafka/` (kafka-python, librdkafka through confluent-kafka, aiokafka; installed by
//! `scripts/setup-python.sh`) and command-line tools such as kcat, run as child processes
//! that are killed when a test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_proto::v1 as pb;

use super::{Server, fetch_all};

/// The workspace root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `.venv/bin/python` with the Kafka and AMQP clients installed; `scripts/setup-python.sh` runs
/// once per test process.
pub fn python() -> Result<PathBuf> {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let status = Command::new(root().join("scripts/setup-python.sh"))
                .status()
                .map_err(|e| format!("cannot run scripts/setup-python.sh: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("scripts/setup-python.sh failed: {status}"))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)?;
    Ok(root().join(".venv/bin/python"))
}

/// `DIR/SCRIPT ARGS` (`DIR` relative to the workspace root) run by the virtual
/// environment's Python, unbuffered so that every line it prints reaches the test at once.
pub fn python_command(dir: &str, script: &str, args: &[&str]) -> Result<Command> {
    let mut command = Command::new(python()?);
    command
        .arg(root().join(dir).join(script))
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    Ok(command)
}

/// A Kafka client program of `tests/kafka/`, all of which take the same `produce` and
/// `consume` commands (see `tests/kafka/records.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// librdkafka, through confluent-kafka (`rdkafka_client.py`).
    Rdkafka,
    /// kafka-python (`kafka_python_client.py`).
    KafkaPython,
    /// aiokafka (`aiokafka_client.py`).
    Aiokafka,
}

impl Client {
    /// The program's file name in `tests/kafka/`.
    pub fn script(self) -> &'static str {
        match self {
            Client::Rdkafka => "rdkafka_client.py",
            Client::KafkaPython => "kafka_python_client.py",
            Client::Aiokafka => "aiokafka_client.py",
        }
    }

    /// How long a client program may take to run one command.
    pub const TIMEOUT: Duration = Duration::from_secs(20);

    /// Runs `command` (`create-topic`, `offsets`, ...) against `bootstrap` for `topic`
    /// with `args` and the library's default settings; its output lines once it exited
    /// successfully within [`Client::TIMEOUT`].
    pub fn run(
        self,
        command: &str,
        bootstrap: &str,
        topic: &str,
        args: &[&str],
    ) -> Result<Vec<String>> {
        self.start(command, bootstrap, topic, &[], args)?
            .finish(Self::TIMEOUT)
    }

    /// Starts `command` with the client settings `set` (library names) and `args`, without
    /// waiting for it.
    pub fn start(
        self,
        command: &str,
        bootstrap: &str,
        topic: &str,
        set: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Program> {
        let mut all = vec![
            command.to_owned(),
            "--bootstrap".into(),
            bootstrap.into(),
            "--topic".into(),
            topic.into(),
        ];
        for (key, value) in set {
            all.extend(["--set".into(), format!("{key}={value}")]);
        }
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Program::python(self.script(), &all)
    }

    /// Produces `records` to `topic` with settings `set`; the delivery report of each
    /// record, in input order. Fails unless every record got one.
    pub fn produce(
        self,
        bootstrap: &str,
        topic: &str,
        set: &[(&str, &str)],
        records: &[Outgoing],
    ) -> Result<Vec<Delivery>> {
        let mut program = self.start("produce", bootstrap, topic, set, &[])?;
        program.write(&Outgoing::lines(records)?)?;
        let lines = program.finish(Self::TIMEOUT)?;
        Delivery::in_order(parse_lines(&lines)?, records.len())
    }

    /// Produces `records` and fails unless every one was acknowledged.
    pub fn produce_acknowledged(
        self,
        bootstrap: &str,
        topic: &str,
        set: &[(&str, &str)],
        records: &[Outgoing],
    ) -> Result<Vec<(i32, i64)>> {
        self.produce(bootstrap, topic, set, records)?
            .iter()
            .map(Delivery::acknowledged)
            .collect()
    }

    /// Consumes every partition of `topic` from the beginning (`assign`, no group) until
    /// `count` records came (`None`: up to the end offsets at the start).
    pub fn consume(
        self,
        bootstrap: &str,
        topic: &str,
        set: &[(&str, &str)],
        count: Option<usize>,
    ) -> Result<Vec<Consumed>> {
        let count = count.map(|n| n.to_string());
        let args: Vec<&str> = match &count {
            Some(n) => vec!["--count", n],
            None => vec![],
        };
        let lines = self
            .start("consume", bootstrap, topic, set, &args)?
            .finish(Self::TIMEOUT)?;
        parse_lines(&lines)
    }
}

/// A record to produce: one JSON line on a client program's stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outgoing {
    /// Key (text); `None` for none.
    pub key: Option<String>,
    /// Value (text).
    pub value: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Timestamp in ms (`None`: the client's clock).
    pub timestamp: Option<i64>,
    /// Partition (`None`: the client's partitioner).
    pub partition: Option<i32>,
}

impl Outgoing {
    /// A record with just a value.
    pub fn value(value: impl Into<String>) -> Outgoing {
        Outgoing {
            key: None,
            value: value.into(),
            headers: vec![],
            timestamp: None,
            partition: None,
        }
    }

    /// The records as the program's input.
    pub fn lines(records: &[Outgoing]) -> Result<String> {
        let mut text = String::new();
        for record in records {
            text.push_str(&serde_json::to_string(record)?);
            text.push('\n');
        }
        Ok(text)
    }
}

/// The report of one produced record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Delivery {
    /// Acknowledged at this partition and offset.
    Delivered {
        /// Which input record.
        index: usize,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// Not acknowledged.
    Failed {
        /// Which input record.
        index: usize,
        /// What the client said.
        error: String,
    },
}

impl Delivery {
    /// Which input record this reports on.
    pub fn index(&self) -> usize {
        match self {
            Delivery::Delivered { index, .. } | Delivery::Failed { index, .. } => *index,
        }
    }

    /// Partition and offset, or an error when the record was not acknowledged.
    pub fn acknowledged(&self) -> Result<(i32, i64)> {
        match self {
            Delivery::Delivered {
                partition, offset, ..
            } => Ok((*partition, *offset)),
            Delivery::Failed { index, error } => bail!("record {index} failed: {error}"),
        }
    }

    /// Reports sorted by input record; fails unless each of `count` records has one.
    pub fn in_order(mut reports: Vec<Delivery>, count: usize) -> Result<Vec<Delivery>> {
        reports.sort_by_key(Delivery::index);
        let indexes: Vec<usize> = reports.iter().map(Delivery::index).collect();
        ensure!(
            indexes == (0..count).collect::<Vec<_>>(),
            "expected one delivery report for each of {count} records, got {indexes:?}"
        );
        Ok(reports)
    }
}

/// A record a Kafka client consumed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Consumed {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key; `None` for none.
    pub key: Option<String>,
    /// Value.
    pub value: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// `create` (CreateTime) or `log_append` (LogAppendTime); `None` where the protocol
    /// does not say (gRPC).
    pub timestamp_type: Option<String>,
}

impl Consumed {
    /// A record fetched over gRPC, as a Kafka client reports one.
    pub fn from_grpc(topic: &str, partition: u32, record: &pb::FetchedRecord) -> Consumed {
        let text = |data: &[u8]| String::from_utf8_lossy(data).into_owned();
        Consumed {
            topic: topic.to_owned(),
            partition: i32::try_from(partition).unwrap_or(i32::MAX),
            offset: i64::try_from(record.offset).unwrap_or(i64::MAX),
            key: record.key.as_deref().map(text),
            value: text(&record.value),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.clone(), text(&h.value)))
                .collect(),
            timestamp: record.timestamp_ms,
            timestamp_type: None,
        }
    }
}

/// `count` records with keys (`key-0` to `key-6`, and an empty key for every tenth), two
/// headers each, and timestamps one second apart from `base_timestamp` (ms).
pub fn sample_records(count: usize, base_timestamp: i64) -> Vec<Outgoing> {
    (0..count)
        .map(|i| Outgoing {
            key: Some(if i % 10 == 9 {
                String::new()
            } else {
                format!("key-{}", i % 7)
            }),
            value: format!("value {i}"),
            headers: vec![
                ("trace".to_owned(), format!("trace-{i}")),
                ("empty".to_owned(), String::new()),
            ],
            timestamp: Some(base_timestamp + 1000 * i64::try_from(i).unwrap_or(0)),
            partition: None,
        })
        .collect()
}

/// Checks that `consumed` holds each of `records` exactly once, at the partition and offset
/// it was acknowledged at (`acks`, in input order), with its key, value, headers and
/// timestamp (when it set one, as CreateTime), and nothing else; and that records of one
/// partition are in offset order.
pub fn check_consumed(
    topic: &str,
    records: &[Outgoing],
    acks: &[(i32, i64)],
    consumed: &[Consumed],
) -> Result<()> {
    ensure!(
        records.len() == acks.len(),
        "one acknowledgement per record"
    );
    let expected: BTreeMap<(i32, i64), &Outgoing> = acks.iter().copied().zip(records).collect();
    ensure!(
        expected.len() == records.len(),
        "two records acknowledged at one offset: {acks:?}"
    );
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for record in consumed {
        let at = (record.partition, record.offset);
        let sent = expected
            .get(&at)
            .with_context(|| format!("consumed a record nobody produced: {record:?}"))?;
        ensure!(seen.insert(at), "consumed twice: {record:?}");
        ensure!(
            last.insert(record.partition, record.offset)
                .is_none_or(|before| before < record.offset),
            "out of offset order: {record:?}"
        );
        ensure!(record.topic == topic, "wrong topic: {record:?}");
        ensure!(
            record.key == sent.key && record.value == sent.value && record.headers == sent.headers,
            "consumed {record:?}, produced {sent:?}"
        );
        if let Some(timestamp) = sent.timestamp {
            ensure!(
                record.timestamp == timestamp,
                "consumed {record:?}, produced {sent:?}"
            );
            ensure!(
                record
                    .timestamp_type
                    .as_deref()
                    .is_none_or(|t| t == "create"),
                "not CreateTime: {record:?}"
            );
        }
    }
    let missing: Vec<_> = expected.keys().filter(|at| !seen.contains(at)).collect();
    ensure!(
        missing.is_empty(),
        "acknowledged but not consumed: {missing:?}"
    );
    Ok(())
}

/// Every record of every partition of `topic`, fetched over gRPC from offset 0.
pub async fn fetch_over_grpc(server: &Server, topic: &str) -> Result<Vec<Consumed>> {
    let described = server
        .admin()
        .await?
        .describe_topic(pb::DescribeTopicRequest { name: topic.into() })
        .await?
        .into_inner()
        .topic
        .context("no topic in the answer")?;
    let mut log = server.log().await?;
    let mut out = Vec::new();
    for partition in described.partitions {
        for record in fetch_all(&mut log, topic, partition.id, 0).await? {
            out.push(Consumed::from_grpc(topic, partition.id, &record));
        }
    }
    Ok(out)
}

/// Each line of a program's output parsed as JSON.
pub fn parse_lines<T: DeserializeOwned>(lines: &[String]) -> Result<Vec<T>> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).with_context(|| format!("parse {line:?}")))
        .collect()
}

/// What a child wrote to one of its pipes so far.
#[derive(Debug, Default)]
struct Pipe {
    state: Mutex<PipeState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct PipeState {
    lines: Vec<String>,
    closed: bool,
}

impl Pipe {
    /// Collects the lines of `source` on a thread of its own; with `echo`, also prints them
    /// on the test's stderr behind `name`.
    fn collect(source: impl Read + Send + 'static, name: String, echo: bool) -> Arc<Pipe> {
        let pipe = Arc::new(Pipe::default());
        let sink = Arc::clone(&pipe);
        std::thread::spawn(move || {
            for line in BufReader::new(source).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("[{name}] {line}");
                }
                sink.lock().lines.push(line);
                sink.changed.notify_all();
            }
            sink.lock().closed = true;
            sink.changed.notify_all();
        });
        pipe
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `done` holds for the lines, the pipe closes, or `deadline` passes;
    /// whether `done` held.
    fn wait(&self, deadline: Instant, done: &dyn Fn(&[String]) -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if done(&state.lines) {
                return true;
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A running client program. Killed when dropped, so a failing test leaves nothing behind.
#[derive(Debug)]
pub struct Program {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Pipe>,
    stderr: Arc<Pipe>,
}

impl Program {
    /// Starts `command` (named `name` in messages) with its pipes collected; its stderr
    /// is echoed on the test's stderr.
    pub fn spawn(name: &str, mut command: Command) -> Result<Program> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        let stdout = Pipe::collect(child.stdout.take().context("stdout")?, name.into(), false);
        let stderr = Pipe::collect(child.stderr.take().context("stderr")?, name.into(), true);
        Ok(Program {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        })
    }

    /// Starts `tests/kafka/SCRIPT ARGS` with the virtual environment's Python, unbuffered
    /// so that every line it prints reaches the test at once.
    pub fn python(script: &str, args: &[&str]) -> Result<Program> {
        Program::spawn(script, python_command("tests/kafka", script, args)?)
    }

    /// Writes `text` to the program's stdin.
    pub fn write(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin is closed")?;
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .with_context(|| format!("write to {}", self.name))
    }

    /// Closes the program's stdin (it sees the end of its input).
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// The lines printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().lines.clone()
    }

    /// Whether the program closed its stdout (it exited, as a rule).
    pub fn ended(&self) -> bool {
        self.stdout.lock().closed
    }

    /// What was printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().lines.join("\n")
    }

    /// Waits until `done` holds for the stdout lines; fails after `timeout` or when the
    /// program closes its stdout first.
    pub fn wait_for_stdout(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Result<()> {
        self.wait_for(&self.stdout, what, timeout, &done)
    }

    /// [`Program::wait_for_stdout`] for the stderr lines.
    pub fn wait_for_stderr(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Result<()> {
        self.wait_for(&self.stderr, what, timeout, &done)
    }

    fn wait_for(
        &self,
        pipe: &Pipe,
        what: &str,
        timeout: Duration,
        done: &dyn Fn(&[String]) -> bool,
    ) -> Result<()> {
        if pipe.wait(Instant::now() + timeout, done) {
            return Ok(());
        }
        bail!(
            "{} did not show {what} within {timeout:?}; stdout:\n{}\nstderr:\n{}",
            self.name,
            self.stdout().join("\n"),
            self.stderr()
        )
    }

    /// Closes stdin and waits up to `timeout` for the program to exit (then kills it);
    /// its stdout lines when it exited successfully.
    pub fn finish(mut self, timeout: Duration) -> Result<Vec<String>> {
        let status = self.exit_within(timeout)?;
        ensure!(
            status.success(),
            "{} failed ({status}); stdout:\n{}\nstderr:\n{}",
            self.name,
            self.stdout().join("\n"),
            self.stderr()
        );
        Ok(self.stdout())
    }

    /// Closes stdin and waits up to `timeout` for the program to exit, whatever its
    /// status; kills it and fails when it does not. Its output is all collected then.
    pub fn exit_within(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.close_stdin();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} did not exit within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    self.name,
                    self.stdout().join("\n"),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.drain();
        Ok(status)
    }

    /// Kills the program (SIGKILL) and reaps it; its output is all collected then.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
    }

    /// Waits (up to 5 s) for the pipes of an ended program to close: they do as the
    /// process ends, unless a child of it keeps them open.
    fn drain(&self) {
        for pipe in [&self.stdout, &self.stderr] {
            pipe.wait(Instant::now() + Duration::from_secs(5), &|_| false);
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The header fields of a stored record batch that say how a client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBatch {
    /// Offset of its first record.
    pub base_offset: u64,
    /// Attributes: bits 0-2 the compression codec, bit 3 LogAppendTime.
    pub attributes: i16,
    /// Largest record timestamp (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of its first record, or -1.
    pub base_sequence: i32,
    /// Records in it.
    pub record_count: i32,
}

impl StoredBatch {
    /// The compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn codec(&self) -> i16 {
        self.attributes & 0x7
    }
}

/// The header of every batch stored in `partition` of `topic`, as gRPC `FetchBatches`
/// returns them byte for byte (RecordBatch v2, big-endian; see docs/storage-format.md).
pub async fn stored_batches(
    server: &Server,
    topic: &str,
    partition: u32,
) -> Result<Vec<StoredBatch>> {
    fn be<const N: usize>(batch: &[u8], at: usize) -> Result<[u8; N]> {
        batch
            .get(at..at + N)
            .and_then(|b| b.try_into().ok())
            .context("batch header cut short")
    }
    let mut log = server.log().await?;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let fetched = log
            .fetch_batches(pb::FetchRequest {
                topic: topic.into(),
                partition,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            })
            .await?
            .into_inner();
        let mut rest = &fetched.record_batches[..];
        while !rest.is_empty() {
            let length = usize::try_from(i32::from_be_bytes(be(rest, 8)?))?;
            let (batch, next) = rest
                .split_at_checked(12 + length)
                .context("batch cut short")?;
            out.push(StoredBatch {
                base_offset: u64::from_be_bytes(be(batch, 0)?),
                attributes: i16::from_be_bytes(be(batch, 21)?),
                max_timestamp: i64::from_be_bytes(be(batch, 35)?),
                producer_id: i64::from_be_bytes(be(batch, 43)?),
                producer_epoch: i16::from_be_bytes(be(batch, 51)?),
                base_sequence: i32::from_be_bytes(be(batch, 53)?),
                record_count: i32::from_be_bytes(be(batch, 57)?),
            });
            rest = next;
        }
        if fetched.next_offset >= fetched.high_watermark {
            return Ok(out);
        }
        ensure!(
            fetched.next_offset > offset,
            "FetchBatches made no progress at {offset}"
        );
        offset = fetched.next_offset;
    }
}

/// One line a consumer group member printed (see `tests/kafka/group_member.py`).
#[derive(Debug, Clone, Deserialize)]
pub struct MemberEvent {
    /// `assigned`, `revoked`, `record`, `committed`, `commit_failed` or `closed`.
    pub event: String,
    /// The member's name.
    pub member: String,
    /// Wall-clock time of the event, in ns since the Unix epoch.
    pub t: u128,
    /// The partitions assigned or revoked.
    #[serde(default)]
    pub partitions: Vec<u32>,
    /// The partition of a record or commit.
    pub partition: Option<u32>,
    /// The offset of a record, or the offset committed (the one after the record).
    pub offset: Option<u64>,
}

/// A Kafka consumer group member (kafka-python, `subscribe()`, a commit after each record
/// it processed), running until told to leave.
#[derive(Debug)]
pub struct Member {
    /// Its name (client id).
    pub name: String,
    program: Program,
}

impl Member {
    /// Starts member `name` of `group` on `topic`, taking `process_ms` per record.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        group: &str,
        name: &str,
        process_ms: u32,
    ) -> Result<Member> {
        let process_ms = process_ms.to_string();
        let program = Program::python(
            "group_member.py",
            &[
                "--bootstrap",
                bootstrap,
                "--topic",
                topic,
                "--group",
                group,
                "--name",
                name,
                "--process-ms",
                &process_ms,
            ],
        )?;
        Ok(Member {
            name: name.to_owned(),
            program,
        })
    }

    /// What it printed so far.
    pub fn events(&self) -> Result<Vec<MemberEvent>> {
        parse_lines(&self.program.stdout())
    }

    /// The partitions of its latest assignment (after its latest revocation: none).
    pub fn assigned(&self) -> Result<BTreeSet<u32>> {
        let mut now = BTreeSet::new();
        for e in self.events()? {
            match e.event.as_str() {
                "assigned" => now = e.partitions.into_iter().collect(),
                "revoked" => now.clear(),
                _ => {}
            }
        }
        Ok(now)
    }

    /// Waits up to 20 s until `done` holds for its events.
    pub fn wait(&self, what: &str, done: impl Fn(&[MemberEvent]) -> bool) -> Result<()> {
        self.program
            .wait_for_stdout(what, Duration::from_secs(20), |lines| {
                parse_lines::<MemberEvent>(lines).is_ok_and(|events| done(&events))
            })
            .with_context(|| format!("member {}", self.name))
    }

    /// Whether it exited.
    pub fn ended(&self) -> bool {
        self.program.ended()
    }

    /// What it printed on stderr.
    pub fn stderr(&self) -> String {
        self.program.stderr()
    }

    /// Tells it to leave the group and waits until it closed its consumer; its events.
    pub fn leave(mut self) -> Result<Vec<MemberEvent>> {
        self.program.write("leave\n")?;
        parse_lines(&self.program.finish(Duration::from_secs(15))?)
    }

    /// Kills it (SIGKILL), as a crash would; its events.
    pub fn kill(mut self) -> Result<Vec<MemberEvent>> {
        self.program.kill();
        self.events()
    }
}

/// The highest offset committed per partition in `events` (acknowledged commits only).
pub fn committed_offsets(events: &[MemberEvent]) -> BTreeMap<u32, u64> {
    let mut committed = BTreeMap::new();
    for e in events.iter().filter(|e| e.event == "committed") {
        if let (Some(p), Some(offset)) = (e.partition, e.offset) {
            let at = committed.entry(p).or_insert(0);
            *at = offset.max(*at);
        }
    }
    committed
}
