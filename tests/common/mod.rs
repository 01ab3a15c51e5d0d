//! A real `sluice` process on a loopback port with its own data directory, and gRPC clients
//! for it. Every end-to-end test talks to the binary built from this workspace.
#![allow(dead_code, unreachable_pub)]

pub mod amqp;
pub mod kafka;
pub mod security;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::{self as pb};
use tonic::transport::Channel;

/// A running server. Killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// `host:port` of its metrics endpoint, unless that is off.
    metrics_addr: Option<String>,
    /// `host:port` of its Kafka listener, unless that is off.
    kafka_addr: Option<String>,
    /// `host:port` of its AMQP 0-9-1 listener, unless that is off.
    amqp_addr: Option<String>,
    /// What it wrote to stderr so far, when started with [`Server::start_capturing_stderr`].
    stderr: Option<Arc<Mutex<String>>>,
}

impl Server {
    /// Starts `sluice serve` on `127.0.0.1:0` with `data_dir`, plus `extra` arguments, and waits
    /// until it says where it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Result<Server> {
        Self::start_on(data_dir, "127.0.0.1:0", extra)
    }

    /// Starts `sluice serve` on `addr` (`host:port`, port 0 picks a free one) with
    /// `data_dir`, plus `extra` arguments, and waits until it says where it listens. A server
    /// restarted on the address of a stopped one is reached by the clients of the old one.
    pub fn start_on(data_dir: &Path, addr: &str, extra: &[&str]) -> Result<Server> {
        Self::spawn(&[], &[], data_dir, addr, extra, false)
    }

    /// [`Server::start`], keeping a copy of what the server writes to stderr (still
    /// echoed to the test's stderr) for [`Server::stderr`].
    pub fn start_capturing_stderr(data_dir: &Path, extra: &[&str]) -> Result<Server> {
        Self::spawn(&[], &[], data_dir, "127.0.0.1:0", extra, true)
    }

    /// [`Server::start_capturing_stderr`] with these environment variables set (settings
    /// such as `SLUICE_KAFKA_MAX_REQUEST_BYTES`; one the server does not know is only
    /// warned about).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Result<Server> {
        Self::spawn(&[], env, data_dir, "127.0.0.1:0", extra, true)
    }

    /// [`Server::start_capturing_stderr`] with `sluice serve ...` run by `wrapper`: a program
    /// and its arguments that end by executing the command appended to them (as `unshare`
    /// or `sh -c '...; exec "$@"' sh` do), so the process is still the server's.
    pub fn start_wrapped(wrapper: &[&str], data_dir: &Path, extra: &[&str]) -> Result<Server> {
        Self::spawn(wrapper, &[], data_dir, "127.0.0.1:0", extra, true)
    }

    fn spawn(
        wrapper: &[&str],
        env: &[(&str, &str)],
        data_dir: &Path,
        addr: &str,
        extra: &[&str],
        capture: bool,
    ) -> Result<Server> {
        let sluice = env!("CARGO_BIN_EXE_sluice");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(sluice);
                command
            }
            None => Command::new(sluice),
        };
        let mut child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", addr])
            // A free port each, so that servers started in parallel do not collide.
            .args(if extra.contains(&"--metrics-listen") {
                &[][..]
            } else {
                &["--metrics-listen", "127.0.0.1:0"][..]
            })
            .args(if extra.contains(&"--kafka-listen") {
                &[][..]
            } else {
                &["--kafka-listen", "127.0.0.1:0"][..]
            })
            .args(if extra.contains(&"--amqp-listen") {
                &[][..]
            } else {
                &["--amqp-listen", "127.0.0.1:0"][..]
            })
            .args(extra)
            .env("SLUICE_LOG", "warn")
            // A setting of the soak test, not of the server.
            .env_remove("SLUICE_SOAK_SECS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .context("spawn sluice")?;
        let stderr = match child.stderr.take() {
            Some(pipe) => {
                let text = Arc::new(Mutex::new(String::new()));
                let sink = Arc::clone(&text);
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        eprintln!("{line}");
                        let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                        text.push_str(&line);
                        text.push('\n');
                    }
                });
                Some(text)
            }
            None => None,
        };
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            let (mut metrics_addr, mut kafka_addr, mut amqp_addr) = (None, None, None);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("sluice metrics on ") {
                    metrics_addr = Some(addr.trim().to_string());
                }
                if let Some(addr) = line.strip_prefix("sluice kafka on ") {
                    kafka_addr = Some(addr.trim().to_string());
                }
                if let Some(addr) = line.strip_prefix("sluice amqp on ") {
                    amqp_addr = Some(addr.trim().to_string());
                }
                if !sent && let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send((
                        addr.trim().to_string(),
                        metrics_addr.take(),
                        kafka_addr.take(),
                        amqp_addr.take(),
                    ));
                    sent = true;
                }
            }
        });
        let (addr, metrics_addr, kafka_addr, amqp_addr) =
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(addrs) => addrs,
                Err(_) => {
                    let _ = child.kill();
                    bail!("sluice did not report its address within 60 s");
                }
            };
        Ok(Server {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            metrics_addr,
            kafka_addr,
            amqp_addr,
            stderr,
        })
    }

    /// `host:port` of the server's Kafka listener (`None` when it is off or the server is
    /// attached).
    pub fn kafka_addr(&self) -> Option<&str> {
        self.kafka_addr.as_deref()
    }

    /// `host:port` of the server's AMQP 0-9-1 listener (`None` when it is off or the
    /// server is attached).
    pub fn amqp_addr(&self) -> Option<&str> {
        self.amqp_addr.as_deref()
    }

    /// `host:port` of the server's metrics endpoint (`None` when it is off or the server
    /// is attached).
    pub fn metrics_addr(&self) -> Option<&str> {
        self.metrics_addr.as_deref()
    }

    /// A handle to only the metrics endpoint at `addr` (`host:port`), for
    /// [`Server::metrics_get`] while a server starts.
    pub fn attach_metrics(addr: &str) -> Server {
        let mut server = Server::attach("");
        server.metrics_addr = Some(addr.to_string());
        server
    }

    /// A handle to a server someone else started and owns (it is not killed on drop).
    pub fn attach(url: &str) -> Server {
        Server {
            child: None,
            addr: url.trim_start_matches("http://").to_string(),
            data_dir: PathBuf::new(),
            metrics_addr: None,
            kafka_addr: None,
            amqp_addr: None,
            stderr: None,
        }
    }

    /// The server's process id (`None` for an attached server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's resident memory (`VmRSS` in `/proc/<pid>/status`), in bytes. It
    /// includes pages of memory-mapped files, which are page cache the kernel can reclaim.
    pub fn rss_bytes(&self) -> Result<u64> {
        self.proc_status_bytes("VmRSS")
    }

    /// The server's resident anonymous memory (`RssAnon`: heap and stacks, not mapped
    /// files), in bytes: what a client could exhaust.
    pub fn anon_rss_bytes(&self) -> Result<u64> {
        self.proc_status_bytes("RssAnon")
    }

    /// A `kB` field of `/proc/<pid>/status`, in bytes.
    fn proc_status_bytes(&self, field: &str) -> Result<u64> {
        let pid = self.pid().context("not a child of this test")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("no {field} line"))?
            .parse()?;
        Ok(kib * 1024)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// What the server wrote to stderr so far (empty unless started with
    /// [`Server::start_capturing_stderr`]).
    pub fn stderr(&self) -> String {
        self.stderr.as_ref().map_or_else(String::new, |text| {
            text.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL TLS clients connect to (a server started with `--tls-cert`).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// GETs `path` from the metrics endpoint: the HTTP status code and the body.
    pub fn metrics_get(&self, path: &str) -> Result<(u16, String)> {
        self.metrics_get_with(path, &[])
    }

    /// [`Server::metrics_get`] with these extra request headers (`name: value`).
    pub fn metrics_get_with(&self, path: &str, headers: &[&str]) -> Result<(u16, String)> {
        use std::io::{Read as _, Write as _};
        let addr = self.metrics_addr().context("the metrics endpoint is off")?;
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("no end of the response head")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .context("no status line")?
            .parse()?;
        Ok((status, body.to_owned()))
    }

    /// The `/metrics` text.
    pub fn scrape(&self) -> Result<String> {
        let (status, body) = self.metrics_get("/metrics")?;
        if status != 200 {
            bail!("/metrics answered {status}: {body}");
        }
        Ok(body)
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Result<Channel> {
        Ok(Channel::from_shared(self.url())?.connect().await?)
    }

    /// An Admin client.
    pub async fn admin(&self) -> Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel().await?))
    }

    /// A Log client that accepts large responses.
    pub async fn log(&self) -> Result<LogClient<Channel>> {
        Ok(LogClient::new(self.channel().await?).max_decoding_message_size(256 << 20))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        signal(&child, "TERM")?;
        wait_timeout(&mut child, Duration::from_secs(30))
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{name} failed");
    }
    Ok(())
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("sluice did not exit within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the sample of family `name` with exactly these labels in a `/metrics` text.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeSet<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (family, rest) = match series.split_once('{') {
            Some((family, rest)) => (family, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let have: BTreeSet<String> = rest
            .split(',')
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        (family == name && have == wanted).then(|| value.parse().ok())?
    })
}

/// Creates a topic with `partitions` and config `key=value` pairs.
pub async fn create_topic(
    admin: &mut AdminClient<Channel>,
    name: &str,
    partitions: u32,
    config: &[(&str, &str)],
) -> Result<()> {
    admin
        .create_topic(pb::CreateTopicRequest {
            name: name.into(),
            partitions,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await?;
    Ok(())
}

/// A record with a key, a value and a timestamp (0 = server time).
pub fn record(key: Option<&str>, value: &str, timestamp_ms: i64) -> pb::Record {
    pb::Record {
        key: key.map(|k| bytes::Bytes::copy_from_slice(k.as_bytes())),
        value: bytes::Bytes::copy_from_slice(value.as_bytes()),
        headers: vec![],
        timestamp_ms,
    }
}

/// Fetches every record of `partition` from `offset` up to the high watermark.
pub async fn fetch_all(
    log: &mut LogClient<Channel>,
    topic: &str,
    partition: u32,
    mut offset: u64,
) -> Result<Vec<pb::FetchedRecord>> {
    let mut out = Vec::new();
    loop {
        let resp = log
            .fetch(pb::FetchRequest {
                topic: topic.into(),
                partition,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            })
            .await?
            .into_inner();
        out.extend(resp.records);
        if resp.next_offset >= resp.high_watermark {
            return Ok(out);
        }
        if resp.next_offset == offset {
            bail!("fetch made no progress at offset {offset}");
        }
        offset = resp.next_offset;
    }
}

/// The text of a record's value.
pub fn value_str(r: &pb::FetchedRecord) -> String {
    String::from_utf8_lossy(&r.value).into_owned()
}

/// A Groups client.
pub async fn groups_client(server: &Server) -> Result<GroupsClient<Channel>> {
    Ok(GroupsClient::new(server.channel().await?).max_decoding_message_size(256 << 20))
}

/// Appends keyless records with these values to one partition.
pub async fn produce_values(
    log: &mut LogClient<Channel>,
    topic: &str,
    partition: u32,
    values: impl IntoIterator<Item = String>,
) -> Result<()> {
    log.produce(pb::ProduceRequest {
        topic: topic.into(),
        partition: Some(partition),
        records: values.into_iter().map(|v| record(None, &v, 0)).collect(),
        request_id: 0,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// A subscription to every partition of `topic` from `start`, with the server's default
/// message size.
pub fn subscribe_request(topic: &str, start: pb::offset_spec::Kind) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        topic: topic.into(),
        partitions: vec![],
        start: Some(pb::OffsetSpec { kind: Some(start) }),
        max_bytes: 0,
    }
}

/// Produces one keyless record to a partition: its offset, or the status it was refused with.
pub async fn produce_one(
    server: &Server,
    topic: &str,
    partition: u32,
    value: &str,
) -> Result<u64, tonic::Status> {
    let mut log = server
        .log()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let resp = log
        .produce(pb::ProduceRequest {
            topic: topic.into(),
            partition: Some(partition),
            records: vec![record(None, value, 0)],
            request_id: 0,
            ..Default::default()
        })
        .await?
        .into_inner();
    resp.partitions
        .first()
        .map(|p| p.base_offset)
        .ok_or_else(|| tonic::Status::internal("produce answered no partition"))
}

/// A partition of a topic, as test members track them.
pub type Tp = (String, u32);

/// How a test group member joins.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// The group.
    pub group: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Session timeout in ms (0 = server default).
    pub session_timeout_ms: u32,
    /// Start from the earliest offset without a committed one (else the latest).
    pub earliest: bool,
}

impl MemberOptions {
    /// A dynamic member of `group` on `topic` reading from the earliest offset, with a
    /// 1.5 s session timeout.
    pub fn new(group: &str, topic: &str) -> MemberOptions {
        MemberOptions {
            group: group.into(),
            topics: vec![topic.into()],
            instance_id: None,
            session_timeout_ms: 1500,
            earliest: true,
        }
    }
}

/// One record as a test member received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Topic and partition.
    pub tp: Tp,
    /// Offset.
    pub offset: u64,
    /// Value as text.
    pub value: String,
}

/// Everything a test member saw on its stream.
#[derive(Debug, Default)]
pub struct MemberState {
    /// Its member id (from the first assignment).
    pub member_id: String,
    /// The generation of the latest assignment.
    pub generation: u64,
    /// The partitions of the latest assignment.
    pub partitions: BTreeSet<Tp>,
    /// Assignment messages received.
    pub assignments: usize,
    /// Records received, in order.
    pub records: Vec<Received>,
    /// Next offset to consume per partition (after the last record received).
    pub positions: BTreeMap<Tp, u64>,
    /// Commit acknowledgements by commit id: `None` = committed.
    pub acks: BTreeMap<u64, Option<pb::Error>>,
    /// Records of partitions the latest assignment did not list.
    pub violations: Vec<String>,
    /// How the stream ended (`Code::Ok` for a clean end), once it did.
    pub ended: Option<tonic::Status>,
}

/// A group member driven by a background task that answers heartbeat requests, sends
/// heartbeats, records what it receives and, when partitions are revoked, commits their
/// positions and acknowledges the revocation.
pub struct GroupConsumer {
    requests: tokio::sync::mpsc::UnboundedSender<pb::ConsumeRequest>,
    state: Arc<Mutex<MemberState>>,
    changed: Arc<tokio::sync::Notify>,
    silent: Arc<AtomicBool>,
    next_commit_id: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

/// Commit ids above this are the member's own releases.
const RELEASE_COMMIT_IDS: u64 = 1 << 40;

impl GroupConsumer {
    /// Joins and waits for the first assignment.
    pub async fn join(server: &Server, options: MemberOptions) -> Result<GroupConsumer> {
        let mut client = groups_client(server).await?;
        let (requests, outgoing) = tokio::sync::mpsc::unbounded_channel();
        let reset = if options.earliest {
            pb::OffsetReset::Earliest
        } else {
            pb::OffsetReset::Latest
        };
        requests.send(consume_request(pb::consume_request::Kind::Join(
            pb::JoinGroup {
                group: options.group,
                topics: options.topics,
                instance_id: options.instance_id,
                auto_offset_reset: reset.into(),
                session_timeout_ms: options.session_timeout_ms,
                rebalance_timeout_ms: 0,
                max_bytes: 4096,
            },
        )))?;
        let responses = client
            .consume(tokio_stream::wrappers::UnboundedReceiverStream::new(
                outgoing,
            ))
            .await?
            .into_inner();
        let state = Arc::new(Mutex::new(MemberState::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let silent = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(drive_member(
            responses,
            requests.clone(),
            Arc::clone(&state),
            Arc::clone(&changed),
            Arc::clone(&silent),
        ));
        let member = GroupConsumer {
            requests,
            state,
            changed,
            silent,
            next_commit_id: AtomicU64::new(1),
            task,
        };
        member
            .wait_until("the first assignment", Duration::from_secs(10), |s| {
                s.assignments > 0 || s.ended.is_some()
            })
            .await?;
        if let Some(status) = member.state().ended.clone() {
            bail!("stream ended before the first assignment: {status:?}");
        }
        Ok(member)
    }

    /// What the member saw so far.
    pub fn state(&self) -> MutexGuard<'_, MemberState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until `done` holds for the member's state.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&MemberState) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if done(&self.state()) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("timed out waiting for {what}; state: {:?}", self.summary());
            }
        }
    }

    /// Member id, generation and partitions, for messages.
    pub fn summary(&self) -> String {
        let s = self.state();
        format!(
            "member {} generation {} partitions {:?} assignments {} records {} ended {:?}",
            s.member_id,
            s.generation,
            s.partitions,
            s.assignments,
            s.records.len(),
            s.ended
        )
    }

    /// Commits offsets with the latest generation; returns the acknowledgement's error.
    pub async fn commit(&self, offsets: &[(&str, u32, u64)]) -> Result<Option<pb::Error>> {
        let generation = self.state().generation;
        self.commit_as(generation, offsets).await
    }

    /// Commits offsets claiming `generation`; returns the acknowledgement's error.
    pub async fn commit_as(
        &self,
        generation: u64,
        offsets: &[(&str, u32, u64)],
    ) -> Result<Option<pb::Error>> {
        let id = self.next_commit_id.fetch_add(1, Ordering::Relaxed);
        let offsets = offsets
            .iter()
            .map(|(topic, partition, offset)| pb::OffsetCommit {
                topic: (*topic).into(),
                partition: *partition,
                offset: *offset,
            })
            .collect();
        self.requests
            .send(commit_request(id, generation, offsets))?;
        self.wait_until("a commit ack", Duration::from_secs(10), |s| {
            s.acks.contains_key(&id)
        })
        .await?;
        Ok(self.state().acks.get(&id).cloned().flatten())
    }

    /// Stops heartbeats and ignores heartbeat requests, keeping the stream open.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Drops the stream (the call is cancelled), as a crashed consumer would.
    pub fn close(self) {
        self.task.abort();
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn consume_request(kind: pb::consume_request::Kind) -> pb::ConsumeRequest {
    pb::ConsumeRequest { kind: Some(kind) }
}

fn commit_request(id: u64, generation: u64, offsets: Vec<pb::OffsetCommit>) -> pb::ConsumeRequest {
    consume_request(pb::consume_request::Kind::Commit(pb::CommitRequest {
        commit_id: id,
        generation,
        offsets,
    }))
}

fn tps(groups: &[pb::TopicPartitions]) -> BTreeSet<Tp> {
    groups
        .iter()
        .flat_map(|g| g.partitions.iter().map(|p| (g.topic.clone(), *p)))
        .collect()
}

/// The background task of a [`GroupConsumer`].
async fn drive_member(
    mut responses: tonic::Streaming<pb::ConsumeResponse>,
    requests: tokio::sync::mpsc::UnboundedSender<pb::ConsumeRequest>,
    state: Arc<Mutex<MemberState>>,
    changed: Arc<tokio::sync::Notify>,
    silent: Arc<AtomicBool>,
) {
    use pb::consume_response::Kind;
    let heartbeat = || consume_request(pb::consume_request::Kind::Heartbeat(pb::Heartbeat {}));
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let mut releases: BTreeMap<u64, Vec<pb::TopicPartitions>> = BTreeMap::new();
    let mut next_release = RELEASE_COMMIT_IDS;
    loop {
        let message = tokio::select! {
            message = responses.message() => message,
            _ = ticker.tick() => {
                if !silent.load(Ordering::SeqCst) {
                    let _ = requests.send(heartbeat());
                }
                continue;
            }
        };
        let mut s = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match message {
            Ok(Some(pb::ConsumeResponse { kind: Some(kind) })) => match kind {
                Kind::Assignment(a) => {
                    s.member_id = a.member_id;
                    s.generation = a.generation;
                    s.partitions = tps(&a.partitions);
                    s.assignments += 1;
                    if !a.revoked.is_empty() {
                        let offsets: Vec<pb::OffsetCommit> = tps(&a.revoked)
                            .into_iter()
                            .filter_map(|tp| {
                                s.positions.get(&tp).map(|offset| pb::OffsetCommit {
                                    topic: tp.0.clone(),
                                    partition: tp.1,
                                    offset: *offset,
                                })
                            })
                            .collect();
                        if offsets.is_empty() {
                            let _ = requests.send(consume_request(
                                pb::consume_request::Kind::RevokeAck(pb::RevokeAck {
                                    partitions: a.revoked,
                                }),
                            ));
                        } else {
                            next_release += 1;
                            releases.insert(next_release, a.revoked);
                            let _ =
                                requests.send(commit_request(next_release, a.generation, offsets));
                        }
                    }
                }
                Kind::Records(batch) => {
                    let tp = (batch.topic, batch.partition);
                    if !s.partitions.contains(&tp) {
                        let violation = format!("records of {tp:?} outside the assignment");
                        s.violations.push(violation);
                    }
                    for r in &batch.records {
                        s.records.push(Received {
                            tp: tp.clone(),
                            offset: r.offset,
                            value: value_str(r),
                        });
                        s.positions.insert(tp.clone(), r.offset + 1);
                    }
                }
                Kind::CommitAck(ack) => {
                    if let Some(partitions) = releases.remove(&ack.commit_id) {
                        let _ = requests.send(consume_request(
                            pb::consume_request::Kind::RevokeAck(pb::RevokeAck { partitions }),
                        ));
                    }
                    s.acks.insert(ack.commit_id, ack.error);
                }
                Kind::HeartbeatRequest(_) => {
                    if !silent.load(Ordering::SeqCst) {
                        let _ = requests.send(heartbeat());
                    }
                }
            },
            Ok(Some(pb::ConsumeResponse { kind: None })) => {
                s.violations.push("a message without a kind".into());
            }
            Ok(None) => {
                s.ended = Some(tonic::Status::ok("stream ended"));
            }
            Err(status) => {
                s.ended = Some(status);
            }
        }
        let ended = s.ended.is_some();
        drop(s);
        changed.notify_waiters();
        if ended {
            return;
        }
    }
}
