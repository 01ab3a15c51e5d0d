//! `/metrics` against a real server: after producing, fetching and committing known
//! amounts, the counters, offsets, committed offsets, lag and delay it reports equal them.
mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::{
    GroupConsumer, MemberOptions, Server, create_topic, fetch_all, groups_client, metric,
    produce_values,
};
use sluice_proto::v1 as pb;

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The sample of `name` for partition `partition` of topic `t`.
fn partition_metric(text: &str, name: &str, partition: &str) -> Result<f64> {
    metric(text, name, &[("topic", "t"), ("partition", partition)])
        .with_context(|| format!("no {name} for t/{partition} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_equal_what_was_produced_fetched_and_committed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    let mut log = server.log().await?;
    create_topic(&mut admin, "t", 2, &[]).await?;

    // Partition 0: two requests of 3 and 2 records; partition 1: one request of 4.
    produce_values(&mut log, "t", 0, values("a", 3)).await?;
    produce_values(&mut log, "t", 0, values("b", 2)).await?;
    produce_values(&mut log, "t", 1, values("c", 4)).await?;
    // Fetch all of partition 0, and partition 1 from offset 1.
    ensure!(fetch_all(&mut log, "t", 0, 0).await?.len() == 5);
    ensure!(fetch_all(&mut log, "t", 1, 1).await?.len() == 3);
    // The group processed 2 records of partition 0 and all of partition 1.
    let mut groups = groups_client(&server).await?;
    groups
        .commit_offsets(pb::CommitOffsetsRequest {
            group: "g".into(),
            generation: 0,
            member_id: String::new(),
            offsets: vec![
                pb::OffsetCommit {
                    topic: "t".into(),
                    partition: 0,
                    offset: 2,
                },
                pb::OffsetCommit {
                    topic: "t".into(),
                    partition: 1,
                    offset: 4,
                },
            ],
        })
        .await?;
    // Let the oldest unconsumed record age measurably.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let text = server.scrape()?;
    let described = admin
        .describe_topic(pb::DescribeTopicRequest { name: "t".into() })
        .await?
        .into_inner()
        .topic
        .context("topic described")?;
    for (partition, records_in, records_out, end) in [("0", 5.0, 5.0, 5.0), ("1", 4.0, 3.0, 4.0)] {
        let at = |name| partition_metric(&text, name, partition);
        ensure!(at("sluice_partition_records_in_total")? == records_in);
        ensure!(at("sluice_partition_records_out_total")? == records_out);
        ensure!(at("sluice_partition_high_watermark")? == end);
        ensure!(at("sluice_partition_log_end_offset")? == end);
        ensure!(at("sluice_partition_log_start_offset")? == 0.0);
        ensure!(at("sluice_partition_segments")? == 1.0);
        ensure!(at("sluice_partition_failed")? == 0.0);
        // One segment holding exactly the appended batches.
        let info = described
            .partitions
            .iter()
            .find(|p| p.id.to_string() == partition)
            .context("partition described")?;
        let size = at("sluice_partition_size_bytes")?;
        ensure!(size == info.size_bytes as f64, "{size} vs {info:?}");
        ensure!(at("sluice_partition_bytes_in_total")? == size);
    }
    // Partition 0 was read whole once; partition 1's one batch was sent whole.
    let size_1 = partition_metric(&text, "sluice_partition_size_bytes", "1")?;
    ensure!(partition_metric(&text, "sluice_partition_bytes_out_total", "1")? == size_1);

    let group = |name, partition| {
        metric(
            &text,
            name,
            &[("group", "g"), ("topic", "t"), ("partition", partition)],
        )
        .with_context(|| format!("no {name} for g t/{partition} in:\n{text}"))
    };
    ensure!(group("sluice_group_committed_offset", "0")? == 2.0);
    ensure!(group("sluice_group_committed_offset", "1")? == 4.0);
    ensure!(group("sluice_group_lag_records", "0")? == 3.0);
    ensure!(group("sluice_group_lag_records", "1")? == 0.0);
    let delay = group("sluice_group_delay_seconds", "0")?;
    ensure!((0.3..60.0).contains(&delay), "delay {delay}");
    ensure!(group("sluice_group_delay_seconds", "1")? == 0.0);

    // Event families: three produce requests, each one batch.
    ensure!(metric(&text, "sluice_produce_duration_seconds_count", &[]) == Some(3.0));
    ensure!(metric(&text, "sluice_append_batch_records_sum", &[]) == Some(9.0));
    ensure!(metric(&text, "sluice_append_batch_records_count", &[]) == Some(3.0));
    let size_0 = partition_metric(&text, "sluice_partition_size_bytes", "0")?;
    ensure!(metric(&text, "sluice_append_batch_bytes_sum", &[]) == Some(size_0 + size_1));
    ensure!(metric(&text, "sluice_append_batch_bytes_count", &[]) == Some(3.0));
    // At least one read of the log per partition fetched.
    let reads = metric(&text, "sluice_fetch_duration_seconds_count", &[]).unwrap_or(0.0);
    ensure!(reads >= 2.0, "fetch reads {reads}");
    let fsyncs = metric(&text, "sluice_fsync_duration_seconds_count", &[]).unwrap_or(0.0);
    ensure!(fsyncs >= 1.0, "fsyncs {fsyncs} under flush.policy=fsync");
    ensure!(
        metric(
            &text,
            "sluice_grpc_responses_total",
            &[("rpc", "Produce"), ("code", "Ok")]
        ) == Some(3.0),
        "{text}"
    );
    ensure!(metric(&text, "sluice_grpc_connections", &[]).unwrap_or(0.0) >= 1.0);

    // The delay is visible to consumers too.
    let described = groups
        .describe_group(pb::DescribeGroupRequest { group: "g".into() })
        .await?
        .into_inner();
    let lagging = described
        .partitions
        .iter()
        .find(|p| p.partition == 0)
        .context("partition 0 described")?;
    ensure!(lagging.lag == 3 && lagging.delay_ms >= 300, "{lagging:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_code_and_streams_while_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut log = server.log().await?;
    let missing = log
        .fetch(pb::FetchRequest {
            topic: "nope".into(),
            ..Default::default()
        })
        .await;
    ensure!(missing.is_err());
    let mut admin = server.admin().await?;
    create_topic(&mut admin, "t", 1, &[]).await?;
    let subscription = log
        .subscribe(pb::SubscribeRequest {
            topic: "t".into(),
            start: Some(pb::OffsetSpec {
                kind: Some(pb::offset_spec::Kind::Earliest(pb::Earliest {})),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();

    let open_calls = |text: &str| metric(text, "sluice_grpc_open_calls", &[("rpc", "Subscribe")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = server.scrape()?;
        if open_calls(&text) == Some(1.0) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(open_calls(&text) == Some(1.0), "{text}");
    ensure!(
        metric(
            &text,
            "sluice_grpc_responses_total",
            &[("rpc", "Fetch"), ("code", "NotFound")]
        ) == Some(1.0),
        "{text}"
    );

    // A stream whose client goes away ends as Cancelled.
    drop(subscription);
    let cancelled = |text: &str| {
        metric(
            text,
            "sluice_grpc_responses_total",
            &[("rpc", "Subscribe"), ("code", "Cancelled")],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = server.scrape()?;
        if open_calls(&text) == Some(0.0) && cancelled(&text) == Some(1.0) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the stream stays counted, or not as Cancelled:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The series of a deleted topic are gone at the next scrape.
    let watermark = |text: &str| partition_metric(text, "sluice_partition_high_watermark", "0");
    ensure!(watermark(&server.scrape()?)? == 0.0);
    admin
        .delete_topic(pb::DeleteTopicRequest { name: "t".into() })
        .await?;
    let text = server.scrape()?;
    ensure!(!text.contains(r#"topic="t""#), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consuming_member_shows_in_the_group_metrics() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    let mut log = server.log().await?;
    create_topic(&mut admin, "q", 2, &[]).await?;
    produce_values(&mut log, "q", 0, values("x", 6)).await?;
    produce_values(&mut log, "q", 1, values("y", 4)).await?;

    let member = GroupConsumer::join(&server, MemberOptions::new("workers", "q")).await?;
    member
        .wait_until("every record", Duration::from_secs(30), |s| {
            s.records.len() == 10
        })
        .await?;
    // Processed all of partition 0 and one record of partition 1.
    let refused = member.commit(&[("q", 0, 6), ("q", 1, 1)]).await?;
    ensure!(refused.is_none(), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = server.scrape()?;
    let group = |name, partition| {
        metric(
            &text,
            name,
            &[
                ("group", "workers"),
                ("topic", "q"),
                ("partition", partition),
            ],
        )
        .with_context(|| format!("no {name} for workers q/{partition} in:\n{text}"))
    };
    ensure!(metric(&text, "sluice_group_members", &[("group", "workers")]) == Some(1.0));
    ensure!(group("sluice_group_committed_offset", "0")? == 6.0);
    ensure!(group("sluice_group_committed_offset", "1")? == 1.0);
    ensure!(group("sluice_group_lag_records", "0")? == 0.0);
    ensure!(group("sluice_group_lag_records", "1")? == 3.0);
    ensure!(group("sluice_group_delay_seconds", "0")? == 0.0);
    ensure!(group("sluice_group_delay_seconds", "1")? >= 0.2);
    // The member received every record once.
    let out = |partition| {
        metric(
            &text,
            "sluice_partition_records_out_total",
            &[("topic", "q"), ("partition", partition)],
        )
    };
    ensure!(out("0") == Some(6.0) && out("1") == Some(4.0), "{text}");
    ensure!(
        metric(&text, "sluice_grpc_open_calls", &[("rpc", "Consume")]) == Some(1.0),
        "{text}"
    );
    member.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_serves_without_an_endpoint() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &["--metrics-listen", "off"])?;
    ensure!(
        server.metrics_addr().is_none(),
        "a metrics endpoint was announced"
    );
    create_topic(&mut server.admin().await?, "t", 1, &[]).await?;
    let mut log = server.log().await?;
    produce_values(&mut log, "t", 0, values("v", 3)).await?;
    ensure!(fetch_all(&mut log, "t", 0, 0).await?.len() == 3);
    Ok(())
}
