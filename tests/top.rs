//! `sluice top --once` against a real server: one snapshot of topics and groups read from
//! the server's `/metrics` endpoint.
mod common;

use std::process::Command;

use anyhow::{Context, Result, ensure};
use common::{Server, create_topic, groups_client, produce_values};
use sluice_proto::v1 as pb;

/// The whitespace-separated cells of the first line of `table` that starts with `first`.
fn row<'a>(table: &'a str, first: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_once_shows_topics_and_groups() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    create_topic(&mut admin, "watched", 2, &[]).await?;
    let mut log = server.log().await?;
    produce_values(&mut log, "watched", 0, (0..7).map(|i| i.to_string())).await?;
    produce_values(&mut log, "watched", 1, (0..3).map(|i| i.to_string())).await?;
    groups_client(&server)
        .await?
        .commit_offsets(pb::CommitOffsetsRequest {
            group: "readers".into(),
            offsets: vec![pb::OffsetCommit {
                topic: "watched".into(),
                partition: 0,
                offset: 4,
            }],
            ..Default::default()
        })
        .await?;

    let metrics = format!("http://{}", server.metrics_addr().context("metrics on")?);
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["top", "--once", "--interval", "0.3", "--metrics", &metrics])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(stdout.contains("fsync p99"), "{stdout}");
    // TOPIC PARTITIONS IN REC/S IN MB/S OUT REC/S OUT MB/S END OFFSET SIZE MB FAILED
    let topic = row(&stdout, "watched").context("a row for the topic")?;
    ensure!(
        topic[1] == "2" && topic[6] == "10" && topic[8] == "0",
        "{stdout}"
    );
    // GROUP MEMBERS LAG LAG REC/S MAX DELAY
    let group = row(&stdout, "readers").context("a row for the group")?;
    ensure!(group[1] == "0" && group[2] == "3", "{stdout}");

    // An endpoint that is not there is one error line.
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["top", "--once", "--metrics", "http://127.0.0.1:1"])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success() && stderr.starts_with("error: "),
        "{stderr}"
    );
    Ok(())
}
