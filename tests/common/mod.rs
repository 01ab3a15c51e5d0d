//! A real `sluice` process on a loopback port with its own data directory, and gRPC clients
//! for it. Every end-to-end test talks to the binary built from this workspace.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sluice_proto::v1::admin_client::AdminClient;
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
}

impl Server {
    /// Starts `sluice serve` on `127.0.0.1:0` with `data_dir`, plus `extra` arguments, and waits
    /// until it says where it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Result<Server> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn sluice")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                    sent = true;
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                bail!("sluice did not report its address within 60 s");
            }
        };
        Ok(Server {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
