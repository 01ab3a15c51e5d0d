//! A real full disk: the server runs on a 1 MiB tmpfs (mounted in a user and mount namespace
//! of its own, so no privileges are needed where unprivileged user namespaces are allowed).
//! Writes that do not fit answer RESOURCE_EXHAUSTED naming the file, the server stays up,
//! everything acknowledged reads back, and writes resume at the next offset once space is
//! freed. Where the machine forbids the namespace or the mount, the test says why and passes
//! without running: the same faults are injected through the storage I/O seam by the broker's
//! `faults` tests, which always run.
mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use common::*;
use sluice_proto::v1 as pb;
use tonic::Code;

/// The shell step that mounts a tmpfs of this size on the data directory (`$0`) and then
/// becomes the command after it.
const MOUNT_AND_EXEC: &str = r#"mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@""#;

/// Why a tmpfs cannot be mounted in a namespace of our own here, if it cannot.
fn cannot_mount(dir: &Path) -> Option<String> {
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(MOUNT_AND_EXEC)
        .arg(dir)
        .arg("true")
        .output();
    match probe {
        Err(e) => Some(format!("cannot run unshare: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "unshare/mount failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Appends records of `size` bytes until the disk is full; returns the values acknowledged.
async fn fill(server: &Server, topic: &str, size: usize, acked: &mut Vec<String>) -> Result<()> {
    for i in 0..5_000 {
        let value = format!("{size}-{i}-{}", "x".repeat(size));
        match produce_one(server, topic, 0, &value).await {
            Ok(offset) => {
                assert_eq!(offset, acked.len() as u64, "dense offsets");
                acked.push(value);
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::ResourceExhausted,
                    "{}",
                    status.message()
                );
                assert!(
                    status.message().contains("No space left on device")
                        && status.message().contains(&format!("topics/{topic}/0/")),
                    "{}",
                    status.message()
                );
                return Ok(());
            }
        }
    }
    bail!("a 1 MiB disk took 5000 records of {size} bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_resource_exhausted_and_recovers_when_space_is_freed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    if let Some(why) = cannot_mount(dir.path()) {
        eprintln!("skipped: no private tmpfs on this machine: {why}");
        return Ok(());
    }
    let data_dir = dir.path().to_str().expect("a UTF-8 temporary path");
    let wrapper = [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        MOUNT_AND_EXEC,
        data_dir,
    ];
    let mut server = Server::start_wrapped(&wrapper, dir.path(), &[])?;
    let mut admin = server.admin().await?;
    create_topic(&mut admin, "ballast", 1, &[]).await?;
    create_topic(&mut admin, "full", 1, &[("segment.bytes", "16384")]).await?;
    let mut ballast = Vec::new();
    for _ in 0..25 {
        let value = "b".repeat(4_000);
        produce_one(&server, "ballast", 0, &value).await?;
        ballast.push(value);
    }

    // Records of several sizes until each no longer fits. Small records keep filling the
    // last page of a segment after the disk is full, until the index needs a new page: the
    // server used to die there with SIGBUS (a store into an mmapped page the file system
    // could not back). Each refusal must be clean.
    let mut acked = Vec::new();
    for size in [700, 4_000, 200, 20] {
        fill(&server, "full", size, &mut acked).await?;
    }
    assert!(server.is_running(), "the server survived the full disk");
    let stored = fetch_all(&mut server.log().await?, "full", 0, 0).await?;
    let values: Vec<String> = stored.iter().map(value_str).collect();
    assert_eq!(values, acked, "every acknowledged record reads back");

    // Space returns: writes resume right after the last acknowledged record.
    admin
        .delete_topic(pb::DeleteTopicRequest {
            name: "ballast".into(),
        })
        .await?;
    for i in 0..20 {
        let value = format!("after-{i}");
        let offset = produce_one(&server, "full", 0, &value).await?;
        assert_eq!(offset, acked.len() as u64);
        acked.push(value);
    }
    let stored = fetch_all(&mut server.log().await?, "full", 0, 0).await?;
    let values: Vec<String> = stored.iter().map(value_str).collect();
    assert_eq!(values, acked);
    assert!(server.is_running());
    Ok(())
}
