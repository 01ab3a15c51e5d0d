//! Every kind of bad request gets its gRPC status code and a message that says what is wrong.
mod common;

use anyhow::Result;
use common::*;
use sluice_proto::v1::{self as pb, offset_spec::Kind};
use tonic::Code;

fn expect_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    match result {
        Ok(v) => panic!("expected {code:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "message: {}", s.message());
            assert!(
                s.message().contains(needle),
                "message {:?} should mention {needle:?}",
                s.message()
            );
        }
    }
}

fn produce(topic: &str, partition: Option<u32>, records: Vec<pb::Record>) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.into(),
        partition,
        records,
        request_id: 0,
        ..Default::default()
    }
}

fn fetch(topic: &str, partition: u32, offset: u64) -> pb::FetchRequest {
    pb::FetchRequest {
        topic: topic.into(),
        partition,
        offset,
        max_bytes: 0,
        max_wait_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    let mut log = server.log().await?;
    create_topic(&mut admin, "t", 2, &[("max.message.bytes", "1024")]).await?;
    log.produce(produce(
        "t",
        Some(0),
        vec![record(None, "a", 0), record(None, "b", 0)],
    ))
    .await?;

    // Topics and partitions that do not exist.
    expect_code(
        log.produce(produce("nope", None, vec![record(None, "x", 0)]))
            .await,
        Code::NotFound,
        "nope",
    );
    expect_code(log.fetch(fetch("nope", 0, 0)).await, Code::NotFound, "nope");
    expect_code(
        log.fetch(fetch("t", 2, 0)).await,
        Code::NotFound,
        "partition",
    );
    expect_code(
        log.produce(produce("t", Some(9), vec![record(None, "x", 0)]))
            .await,
        Code::NotFound,
        "partition",
    );
    expect_code(
        admin
            .describe_topic(pb::DescribeTopicRequest {
                name: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    expect_code(
        admin
            .delete_topic(pb::DeleteTopicRequest {
                name: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );

    // Creating what exists, bad names, partition counts and configs.
    let create = |name: &str, partitions: u32, config: &[(&str, &str)]| pb::CreateTopicRequest {
        name: name.into(),
        partitions,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    expect_code(
        admin.create_topic(create("t", 1, &[])).await,
        Code::AlreadyExists,
        "t",
    );
    for bad in ["", "has space", "slash/y", "..", &"x".repeat(250), "ünï"] {
        expect_code(
            admin.create_topic(create(bad, 1, &[])).await,
            Code::InvalidArgument,
            "name",
        );
    }
    expect_code(
        admin.create_topic(create("zero", 0, &[])).await,
        Code::InvalidArgument,
        "partition",
    );
    expect_code(
        admin.create_topic(create("many", 1_000_000, &[])).await,
        Code::InvalidArgument,
        "partition",
    );
    expect_code(
        admin
            .create_topic(create("cfg", 1, &[("retention.ms", "soon")]))
            .await,
        Code::InvalidArgument,
        "retention.ms",
    );
    expect_code(
        admin
            .create_topic(create("cfg", 1, &[("no.such.key", "1")]))
            .await,
        Code::InvalidArgument,
        "no.such.key",
    );
    expect_code(
        admin
            .create_topic(create("cfg", 1, &[("segment.bytes", "10")]))
            .await,
        Code::InvalidArgument,
        "segment.bytes",
    );

    // Empty batches, missing fields.
    expect_code(
        log.produce(produce("t", None, vec![])).await,
        Code::InvalidArgument,
        "records",
    );
    expect_code(
        log.produce(produce("", None, vec![record(None, "x", 0)]))
            .await,
        Code::InvalidArgument,
        "topic",
    );
    expect_code(
        log.subscribe(pb::SubscribeRequest {
            topic: "t".into(),
            partitions: vec![],
            start: None,
            max_bytes: 0,
        })
        .await,
        Code::InvalidArgument,
        "start",
    );
    expect_code(
        log.list_offsets(pb::ListOffsetsRequest {
            topic: "t".into(),
            partitions: vec![],
            spec: Some(pb::OffsetSpec {
                kind: Some(Kind::Offset(3)),
            }),
        })
        .await,
        Code::InvalidArgument,
        "spec",
    );

    // Offsets outside the log name the valid range.
    expect_code(log.fetch(fetch("t", 0, 3)).await, Code::OutOfRange, "0..=2");
    expect_code(
        log.fetch(fetch("t", 0, u64::MAX)).await,
        Code::OutOfRange,
        "0..=2",
    );

    // A record over the topic's max.message.bytes names the limit.
    let big = "x".repeat(2_000);
    expect_code(
        log.produce(produce("t", Some(0), vec![record(None, &big, 0)]))
            .await,
        Code::ResourceExhausted,
        "max.message.bytes",
    );

    // Nothing above was written.
    assert_eq!(fetch_all(&mut log, "t", 0, 0).await?.len(), 2);
    assert_eq!(fetch_all(&mut log, "t", 1, 0).await?.len(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_message_limit_is_resource_exhausted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &["--max-request-bytes", "100000"])?;
    create_topic(&mut server.admin().await?, "t", 1, &[]).await?;
    let mut log = server.log().await?;
    let records = (0..200)
        .map(|_| record(None, &"y".repeat(1_000), 0))
        .collect();
    expect_code(
        log.produce(produce("t", Some(0), records)).await,
        Code::ResourceExhausted,
        "100000",
    );
    // The server is fine afterwards.
    log.produce(produce("t", Some(0), vec![record(None, "ok", 0)]))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_topic_and_its_data() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    create_topic(&mut admin, "gone", 2, &[]).await?;
    let mut log = server.log().await?;
    log.produce(produce("gone", None, vec![record(Some("k"), "v", 0)]))
        .await?;
    let topic_dir = dir.path().join("topics").join("gone");
    assert!(topic_dir.exists());
    admin
        .delete_topic(pb::DeleteTopicRequest {
            name: "gone".into(),
        })
        .await?;
    assert!(!topic_dir.exists());
    let topics = admin
        .list_topics(pb::ListTopicsRequest {})
        .await?
        .into_inner();
    assert!(topics.topics.is_empty());
    expect_code(log.fetch(fetch("gone", 0, 0)).await, Code::NotFound, "gone");
    // The name can be used again, from offset 0.
    create_topic(&mut admin, "gone", 1, &[]).await?;
    let resp = log
        .produce(produce("gone", None, vec![record(None, "again", 0)]))
        .await?
        .into_inner();
    assert_eq!(resp.partitions[0].base_offset, 0);
    Ok(())
}
