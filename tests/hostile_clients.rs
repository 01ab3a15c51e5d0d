//! Broken and hostile clients: malformed and oversized messages, absurd numbers, thousands of
//! subscriptions, a subscriber that never reads, clients that vanish mid-request. The server
//! answers each with the right status, keeps its memory bounded, keeps serving everyone
//! else, and never panics.
mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, BufMut};
use common::*;
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::{self as pb, offset_spec::Kind};
use tokio::task::JoinSet;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

const MIB: u64 = 1 << 20;

// Memory bounds are on the server's anonymous resident memory (heap and stacks): segment
// reads map the segment files, and the pages of those mappings count in VmRSS too, but
// they are page cache that the kernel reclaims under pressure, not memory a client holds.

// ---------------------------------------------------------------------------------------
// Raw protobuf on the wire: messages a well-behaved client library would never send.

/// A codec that sends and receives message bodies as raw bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len).to_vec()))
    }
}

/// A protobuf varint.
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// A length-delimited field (string, bytes or embedded message).
fn bytes_field(tag: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(tag << 3 | 2);
    out.extend(varint(bytes.len() as u64));
    out.extend_from_slice(bytes);
    out
}

/// A varint field.
fn varint_field(tag: u64, value: u64) -> Vec<u8> {
    let mut out = varint(tag << 3);
    out.extend(varint(value));
    out
}

/// A `Record` with this value and one header.
fn raw_record(value: &[u8], header_key: &[u8]) -> Vec<u8> {
    let mut header = bytes_field(1, header_key);
    header.extend(bytes_field(2, b"v"));
    let mut record = bytes_field(2, value);
    record.extend(bytes_field(3, &header));
    record
}

/// A `ProduceRequest` for partition 0 of `topic` with one record.
fn raw_produce(topic: &[u8], request_id: u64, header_key: &[u8]) -> Vec<u8> {
    let mut body = bytes_field(1, topic);
    body.extend(varint_field(2, 0));
    body.extend(bytes_field(3, &raw_record(b"raw", header_key)));
    body.extend(varint_field(4, request_id));
    body
}

/// One unary call with a raw request body; returns the raw response body.
async fn raw_unary(
    channel: &Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let response = grpc
        .unary(
            tonic::Request::new(body),
            PathAndQuery::from_static(path),
            Raw,
        )
        .await?;
    Ok(response.into_inner())
}

/// A streaming call sending `bodies`; returns the raw responses and how the call ended.
async fn raw_streaming(
    channel: &Channel,
    path: &'static str,
    bodies: Vec<Vec<u8>>,
) -> (Vec<Vec<u8>>, Status) {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(e) = grpc.ready().await {
        return (vec![], Status::unavailable(e.to_string()));
    }
    let call = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(bodies)),
            PathAndQuery::from_static(path),
            Raw,
        )
        .await;
    let mut stream = match call {
        Ok(response) => response.into_inner(),
        Err(status) => return (vec![], status),
    };
    let mut answers = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(answer)) => answers.push(answer),
            Ok(None) => return (answers, Status::ok("")),
            Err(status) => return (answers, status),
        }
    }
}

fn expect_status<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, Status>,
    code: Code,
    needles: &[&str],
) {
    match result {
        Ok(value) => panic!("{what}: expected {code:?}, got Ok({value:?})"),
        Err(status) => check_status(what, &status, code, needles),
    }
}

fn check_status(what: &str, status: &Status, code: Code, needles: &[&str]) {
    assert_eq!(
        status.code(),
        code,
        "{what}: message {:?}",
        status.message()
    );
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{what}: message {:?} should mention {needle:?}",
            status.message()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Health checks run after every scenario.

/// A normal produce and fetch on `topic` partition 0 work, within `within`.
async fn serves_normally(server: &Server, topic: &str, within: Duration) -> Result<Duration> {
    let started = Instant::now();
    let mut log = server.log().await?;
    let value = format!("probe-{}", started.elapsed().as_nanos());
    let produced = log
        .produce(pb::ProduceRequest {
            topic: topic.into(),
            partition: Some(0),
            records: vec![record(None, &value, 0)],
            request_id: 0,
            ..Default::default()
        })
        .await?
        .into_inner();
    let offset = produced.partitions[0].base_offset;
    let fetched = log
        .fetch(pb::FetchRequest {
            topic: topic.into(),
            partition: 0,
            offset,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await?
        .into_inner();
    ensure!(
        fetched.records.first().map(value_str).as_deref() == Some(value.as_str()),
        "the probe record did not come back"
    );
    let took = started.elapsed();
    ensure!(took < within, "a normal produce and fetch took {took:?}");
    Ok(took)
}

/// The process runs, serves, and has not panicked.
async fn assert_healthy(server: &mut Server, topic: &str) -> Result<()> {
    ensure!(server.is_running(), "the server exited");
    serves_normally(server, topic, Duration::from_secs(10)).await?;
    let stderr = server.stderr();
    ensure!(
        !stderr.contains("panicked"),
        "the server panicked:\n{stderr}"
    );
    Ok(())
}

async fn create(server: &Server, name: &str, partitions: u32) -> Result<()> {
    create_topic(&mut server.admin().await?, name, partitions, &[]).await
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_names_are_invalid_argument() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start_capturing_stderr(dir.path(), &[])?;
    create(&server, "t", 1).await?;
    let channel = server.channel().await?;
    let not_utf8 = b"t\xff\xfe";

    // A string field holding bytes that are not UTF-8, in each service.
    expect_status(
        "Produce topic",
        raw_unary(
            &channel,
            "/sluice.v1.Log/Produce",
            raw_produce(not_utf8, 0, b"h"),
        )
        .await,
        Code::InvalidArgument,
        &["topic", "UTF-8"],
    );
    expect_status(
        "Produce header key",
        raw_unary(
            &channel,
            "/sluice.v1.Log/Produce",
            raw_produce(b"t", 0, b"\xc3\x28"),
        )
        .await,
        Code::InvalidArgument,
        &["key", "UTF-8"],
    );
    let mut create_request = bytes_field(1, not_utf8);
    create_request.extend(varint_field(2, 1));
    expect_status(
        "CreateTopic name",
        raw_unary(&channel, "/sluice.v1.Admin/CreateTopic", create_request).await,
        Code::InvalidArgument,
        &["name", "UTF-8"],
    );
    expect_status(
        "DescribeGroup group",
        raw_unary(
            &channel,
            "/sluice.v1.Groups/DescribeGroup",
            bytes_field(1, not_utf8),
        )
        .await,
        Code::InvalidArgument,
        &["group", "UTF-8"],
    );
    // Bytes that are no protobuf at all: a truncated varint.
    expect_status(
        "Fetch garbage",
        raw_unary(&channel, "/sluice.v1.Log/Fetch", vec![0x08, 0xff]).await,
        Code::InvalidArgument,
        &["malformed request message"],
    );
    // The first message of a Consume stream, with a group that is not UTF-8.
    let join = bytes_field(1, &bytes_field(1, not_utf8));
    let (_, status) = raw_streaming(&channel, "/sluice.v1.Groups/Consume", vec![join]).await;
    check_status(
        "Consume join group",
        &status,
        Code::InvalidArgument,
        &["group", "UTF-8"],
    );
    // Mid-stream: the first request is answered, the malformed one ends the call.
    let (answers, status) = raw_streaming(
        &channel,
        "/sluice.v1.Log/ProduceStream",
        vec![raw_produce(b"t", 1, b"h"), raw_produce(not_utf8, 2, b"h")],
    )
    .await;
    assert_eq!(answers.len(), 1, "the valid request is answered");
    check_status(
        "ProduceStream topic",
        &status,
        Code::InvalidArgument,
        &["topic", "UTF-8"],
    );

    // Empty, over-long and invalid group names (topic names: tests/error_codes.rs).
    let mut groups = groups_client(&server).await?;
    for bad in ["", &"g".repeat(241), "a b", "..", "grüppe"] {
        expect_status(
            "DescribeGroup name",
            groups
                .describe_group(pb::DescribeGroupRequest { group: bad.into() })
                .await,
            Code::InvalidArgument,
            &["group"],
        );
        expect_status(
            "CommitOffsets name",
            groups
                .commit_offsets(pb::CommitOffsetsRequest {
                    group: bad.into(),
                    generation: 0,
                    member_id: String::new(),
                    offsets: vec![pb::OffsetCommit {
                        topic: "t".into(),
                        partition: 0,
                        offset: 0,
                    }],
                })
                .await,
            Code::InvalidArgument,
            &["group"],
        );
    }
    // Made-up method names answer UNIMPLEMENTED and are counted under one label value.
    for path in ["/sluice.v1.Log/Nope", "/no.such.Service/Call"] {
        expect_status(
            path,
            raw_unary(&channel, path, vec![]).await,
            Code::Unimplemented,
            &[],
        );
    }
    let text = server.scrape()?;
    let unknown = [("rpc", "unknown"), ("code", "Unimplemented")];
    ensure!(
        metric(&text, "sluice_grpc_responses_total", &unknown) == Some(2.0),
        "{text}"
    );
    ensure!(
        !text.contains("Nope") && !text.contains("no.such"),
        "{text}"
    );
    // A topic name of a megabyte: refused without echoing it whole.
    let huge = "x".repeat(1 << 20);
    let mut log = server.log().await?;
    for result in [
        log.produce(pb::ProduceRequest {
            topic: huge.clone(),
            partition: None,
            records: vec![record(None, "v", 0)],
            request_id: 0,
            ..Default::default()
        })
        .await
        .map(|_| ()),
        log.fetch(pb::FetchRequest {
            topic: huge.clone(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .map(|_| ()),
    ] {
        let status = result.expect_err("a megabyte topic name");
        assert!(
            matches!(status.code(), Code::InvalidArgument | Code::NotFound),
            "{status:?}"
        );
        assert!(
            status.message().len() < 4096,
            "{} bytes",
            status.message().len()
        );
    }
    assert_healthy(&mut server, "t").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_numbers_get_the_right_code_without_hanging() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start_capturing_stderr(dir.path(), &["--max-wait-ms", "300"])?;
    create(&server, "t", 2).await?;
    let mut log = server.log().await?;
    produce_values(&mut log, "t", 0, ["a".to_string(), "b".to_string()]).await?;
    let channel = server.channel().await?;
    let fetch = |partition, offset, max_bytes, max_wait_ms| pb::FetchRequest {
        topic: "t".into(),
        partition,
        offset,
        max_bytes,
        max_wait_ms,
    };
    let started = Instant::now();

    expect_status(
        "fetch partition u32::MAX",
        log.fetch(fetch(u32::MAX, 0, 0, 0)).await,
        Code::NotFound,
        &["partition"],
    );
    // Negative numbers in unsigned fields: -1 as a ten-byte varint.
    let mut negative = bytes_field(1, b"t");
    negative.extend(varint_field(2, -1i64 as u64));
    negative.extend(varint_field(3, -1i64 as u64));
    expect_status(
        "fetch partition -1",
        raw_unary(&channel, "/sluice.v1.Log/Fetch", negative).await,
        Code::NotFound,
        &["partition"],
    );
    let mut negative = bytes_field(1, b"t");
    negative.extend(varint_field(3, -1i64 as u64));
    expect_status(
        "fetch offset -1",
        raw_unary(&channel, "/sluice.v1.Log/Fetch", negative).await,
        Code::OutOfRange,
        &["0..=2"],
    );
    // An enormous max_bytes is capped; an enormous max_wait_ms is capped by max_wait_ms.
    let all = log
        .fetch(fetch(0, 0, u32::MAX, u32::MAX))
        .await?
        .into_inner();
    assert_eq!(all.records.len(), 2);
    let waited = Instant::now();
    let empty = log
        .fetch(fetch(0, 2, u32::MAX, u32::MAX))
        .await?
        .into_inner();
    assert!(empty.records.is_empty());
    assert!(
        waited.elapsed() < Duration::from_secs(10),
        "waited {:?}",
        waited.elapsed()
    );

    let subscribe = |partitions: Vec<u32>, kind| pb::SubscribeRequest {
        topic: "t".into(),
        partitions,
        start: Some(pb::OffsetSpec { kind: Some(kind) }),
        max_bytes: u32::MAX,
    };
    expect_status(
        "subscribe offset u64::MAX",
        log.subscribe(subscribe(vec![0], Kind::Offset(u64::MAX)))
            .await,
        Code::OutOfRange,
        &["0..=2"],
    );
    expect_status(
        "subscribe partition u32::MAX",
        log.subscribe(subscribe(vec![u32::MAX], Kind::Offset(0)))
            .await,
        Code::NotFound,
        &["partition"],
    );
    for timestamp in [i64::MIN, -1, i64::MAX] {
        let mut stream = log
            .subscribe(subscribe(vec![0], Kind::TimestampMs(timestamp)))
            .await?
            .into_inner();
        if timestamp < 0 {
            let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await?
                .context("subscription ended")?;
            assert_eq!(first.map(|m| m.records.len()), Some(2));
        }
        let offsets = log
            .list_offsets(pb::ListOffsetsRequest {
                topic: "t".into(),
                partitions: vec![],
                spec: Some(pb::OffsetSpec {
                    kind: Some(Kind::TimestampMs(timestamp)),
                }),
            })
            .await?
            .into_inner();
        assert_eq!(offsets.offsets.len(), 2);
    }
    // Records stamped at the ends of time are stored and read back as given.
    let mut extremes = vec![record(None, "min", i64::MIN), record(None, "max", i64::MAX)];
    extremes.push(record(None, "negative", -1));
    let produced = log
        .produce(pb::ProduceRequest {
            topic: "t".into(),
            partition: Some(1),
            records: extremes,
            request_id: 0,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(produced.partitions[0].record_count, 3);
    let stamps: Vec<i64> = fetch_all(&mut log, "t", 1, 0)
        .await?
        .iter()
        .map(|r| r.timestamp_ms)
        .collect();
    assert_eq!(stamps, [i64::MIN, i64::MAX, -1]);

    // Groups: absurd timeouts, partitions and offsets.
    let mut groups = groups_client(&server).await?;
    let commit = |partition, offset| pb::CommitOffsetsRequest {
        group: "g".into(),
        generation: u64::MAX,
        member_id: String::new(),
        offsets: vec![pb::OffsetCommit {
            topic: "t".into(),
            partition,
            offset,
        }],
    };
    expect_status(
        "commit offset u64::MAX",
        groups.commit_offsets(commit(0, u64::MAX)).await,
        Code::OutOfRange,
        &["high watermark"],
    );
    expect_status(
        "commit partition u32::MAX",
        groups.commit_offsets(commit(u32::MAX, 0)).await,
        Code::NotFound,
        &["partition"],
    );
    let join = |session_timeout_ms| pb::ConsumeRequest {
        kind: Some(pb::consume_request::Kind::Join(pb::JoinGroup {
            group: "g".into(),
            topics: vec!["t".into()],
            instance_id: None,
            auto_offset_reset: 0,
            session_timeout_ms,
            rebalance_timeout_ms: u32::MAX,
            max_bytes: u32::MAX,
        })),
    };
    expect_status(
        "join session timeout u32::MAX",
        groups.consume(tokio_stream::iter([join(u32::MAX)])).await,
        Code::InvalidArgument,
        &["session"],
    );
    expect_status(
        "create u32::MAX partitions",
        server
            .admin()
            .await?
            .create_topic(pb::CreateTopicRequest {
                name: "huge".into(),
                partitions: u32::MAX,
                config: Default::default(),
            })
            .await,
        Code::InvalidArgument,
        &["partition"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
    assert_healthy(&mut server, "t").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_and_messages_are_resource_exhausted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start_capturing_stderr(
        dir.path(),
        &[
            "--max-request-bytes",
            "200000",
            "--max-records-per-request",
            "100",
        ],
    )?;
    create(&server, "t", 1).await?;
    let mut log = server.log().await?;

    // More records than max_records_per_request (each one small).
    let records = (0..101).map(|i| record(None, &i.to_string(), 0)).collect();
    expect_status(
        "101 records",
        log.produce(pb::ProduceRequest {
            topic: "t".into(),
            partition: Some(0),
            records,
            request_id: 0,
            ..Default::default()
        })
        .await,
        Code::ResourceExhausted,
        &["max_records_per_request", "100"],
    );
    // A record whose headers push it over max.message.bytes.
    let mut heavy = record(None, "v", 0);
    heavy.headers = (0..3)
        .map(|i| pb::Header {
            key: format!("h{i}"),
            value: vec![b'x'; 60_000].into(),
        })
        .collect();
    let mut small_topic = server.admin().await?;
    create_topic(
        &mut small_topic,
        "small",
        1,
        &[("max.message.bytes", "100000")],
    )
    .await?;
    expect_status(
        "heavy headers",
        log.produce(pb::ProduceRequest {
            topic: "small".into(),
            partition: Some(0),
            records: vec![heavy],
            request_id: 0,
            ..Default::default()
        })
        .await,
        Code::ResourceExhausted,
        &["max.message.bytes"],
    );
    // A ProduceStream request over max_request_bytes ends the stream, after the answer to
    // the request before it.
    let big = pb::ProduceRequest {
        topic: "t".into(),
        partition: Some(0),
        records: vec![record(None, &"y".repeat(300_000), 0)],
        request_id: 2,
        ..Default::default()
    };
    let small = pb::ProduceRequest {
        request_id: 1,
        records: vec![record(None, "ok", 0)],
        ..big.clone()
    };
    let mut answers = log
        .produce_stream(tokio_stream::iter([small, big]))
        .await?
        .into_inner();
    let first = answers.message().await?.context("an answer")?;
    assert_eq!(first.request_id, 1);
    let end = answers.message().await.expect_err("the stream breaks");
    check_status(
        "ProduceStream",
        &end,
        Code::ResourceExhausted,
        &["max_request_bytes = 200000"],
    );
    // The same for a Consume message, and for an Admin request.
    let mut groups = groups_client(&server).await?;
    let join = pb::ConsumeRequest {
        kind: Some(pb::consume_request::Kind::Join(pb::JoinGroup {
            group: "g".into(),
            topics: std::iter::repeat_n("z".repeat(1000), 300).collect(),
            instance_id: None,
            auto_offset_reset: 0,
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            max_bytes: 0,
        })),
    };
    expect_status(
        "Consume join",
        groups.consume(tokio_stream::iter([join])).await,
        Code::ResourceExhausted,
        &["max_request_bytes = 200000"],
    );
    expect_status(
        "CreateTopic config",
        server
            .admin()
            .await?
            .create_topic(pb::CreateTopicRequest {
                name: "cfg".into(),
                partitions: 1,
                config: (0..1000)
                    .map(|i| (format!("key.{i}"), "v".repeat(300)))
                    .collect(),
            })
            .await,
        Code::ResourceExhausted,
        &["max_request_bytes = 200000"],
    );
    assert_healthy(&mut server, "t").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_subscriptions_are_capped_and_released() -> Result<()> {
    const SUBSCRIPTIONS: usize = 2000;
    const CONNECTIONS: usize = 4;
    let dir = tempfile::tempdir()?;
    let mut server = Server::start_capturing_stderr(dir.path(), &["--max-subscriptions", "2000"])?;
    create(&server, "t", 1).await?;
    create(&server, "probe", 1).await?;
    serves_normally(&server, "probe", Duration::from_secs(10)).await?;
    let baseline = server.anon_rss_bytes()?;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(server.log().await?);
    }
    let subscribe = subscribe_request("t", Kind::Latest(pb::Latest {}));

    let open = |clients: &Vec<LogClient<Channel>>| {
        let mut calls = JoinSet::new();
        for i in 0..SUBSCRIPTIONS {
            let mut client = clients[i % CONNECTIONS].clone();
            let request = subscribe.clone();
            calls.spawn(async move { client.subscribe(request).await });
        }
        calls
    };
    let started = Instant::now();
    let mut calls = open(&clients);
    let mut streams = Vec::new();
    while let Some(call) = calls.join_next().await {
        streams.push(call?.context("subscribe")?.into_inner());
    }
    let opened_in = started.elapsed();

    // One more is refused, naming the limit; other calls are served as usual.
    expect_status(
        "subscription 2001",
        clients[0].clone().subscribe(subscribe.clone()).await,
        Code::ResourceExhausted,
        &["max_subscriptions = 2000"],
    );
    // SubscribeBatches and group members take slots from the same cap.
    expect_status(
        "subscribe batches 2001",
        clients[0]
            .clone()
            .subscribe_batches(subscribe.clone())
            .await,
        Code::ResourceExhausted,
        &["max_subscriptions = 2000"],
    );
    let refused = GroupConsumer::join(&server, MemberOptions::new("g", "t"))
        .await
        .err()
        .context("a member joined past the cap")?;
    let status = refused
        .downcast_ref::<Status>()
        .with_context(|| format!("not a gRPC status: {refused:#}"))?;
    check_status(
        "join 2001",
        status,
        Code::ResourceExhausted,
        &["max_subscriptions = 2000"],
    );
    let took = serves_normally(&server, "probe", Duration::from_secs(5)).await?;
    let loaded = server.anon_rss_bytes()?;
    eprintln!(
        "{SUBSCRIPTIONS} subscriptions opened in {opened_in:?}; anonymous RSS {} -> {} MiB; a produce and fetch took {took:?}",
        baseline / MIB,
        loaded / MIB
    );
    // An idle subscription is a reader task, a waiting fetch and HTTP/2 stream state:
    // about 27 KiB each measured (2000 took 53 MiB); 64 KiB each leaves room for
    // allocator slack.
    ensure!(
        loaded < baseline + (SUBSCRIPTIONS as u64) * 64 * 1024,
        "anonymous RSS grew from {baseline} to {loaded} bytes"
    );

    // Every subscriber gets a record produced now.
    produce_values(&mut server.log().await?, "t", 0, ["fan-out".to_string()]).await?;
    let mut delivered = JoinSet::new();
    for mut stream in streams {
        delivered.spawn(async move {
            let message = tokio::time::timeout(Duration::from_secs(30), stream.message()).await;
            (message, stream)
        });
    }
    let mut streams = Vec::new();
    while let Some(result) = delivered.join_next().await {
        let (message, stream) = result?;
        let message = message
            .context("a subscriber waited 30 s")??
            .context("a subscription ended")?;
        assert_eq!(message.records.len(), 1);
        streams.push(stream);
    }

    // Clients that go away free their slots: all 2000 can be opened again.
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut calls = open(&clients);
        let mut reopened = Vec::new();
        let mut refused = 0;
        while let Some(call) = calls.join_next().await {
            match call? {
                Ok(response) => reopened.push(response.into_inner()),
                Err(status) if status.code() == Code::ResourceExhausted => refused += 1,
                Err(status) => bail!("subscribe failed: {status:?}"),
            }
        }
        if refused == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{refused} slots still taken 30 s after their clients left"
        );
        drop(reopened);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_healthy(&mut server, "probe").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_per_connection_limit_wait_for_a_free_stream() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server =
        Server::start_capturing_stderr(dir.path(), &["--max-streams-per-connection", "8"])?;
    create(&server, "t", 1).await?;
    let client = server.log().await?;
    let subscribe = pb::SubscribeRequest {
        partitions: vec![0],
        ..subscribe_request("t", Kind::Earliest(pb::Earliest {}))
    };
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(
            client
                .clone()
                .subscribe(subscribe.clone())
                .await?
                .into_inner(),
        );
    }
    // The ninth call on the same connection is held back by the client's HTTP/2 layer...
    let mut ninth = client.clone();
    let request = subscribe.clone();
    let mut ninth = tokio::spawn(async move { ninth.subscribe(request).await });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut ninth)
            .await
            .is_err(),
        "a ninth stream opened on a connection limited to 8"
    );
    // ... while other connections are served ...
    serves_normally(&server, "t", Duration::from_secs(5)).await?;
    // ... and proceeds once a stream of its connection ends.
    drop(open.pop());
    let ninth = tokio::time::timeout(Duration::from_secs(10), ninth).await??;
    ninth?;
    // A client that ignores the limit has the call past it refused by the server.
    let addr = server.addr.clone();
    let refused = tokio::task::spawn_blocking(move || open_past_the_limit(&addr, 9)).await??;
    assert_eq!(refused, 17, "the ninth stream (id 17) is refused");
    assert_healthy(&mut server, "t").await
}

/// Reads one HTTP/2 frame: its type, stream id and payload.
fn read_frame(socket: &mut TcpStream) -> Result<(u8, u32, Vec<u8>)> {
    let mut head = [0; 9];
    socket.read_exact(&mut head)?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    socket.read_exact(&mut payload)?;
    Ok((head[3], stream, payload))
}

/// Opens `streams` Subscribe calls at once on one raw HTTP/2 connection, past any limit the
/// server announced; returns the id of the first stream the server resets with
/// REFUSED_STREAM.
fn open_past_the_limit(addr: &str, streams: u32) -> Result<u32> {
    const SETTINGS: u8 = 0x4;
    const RST_STREAM: u8 = 0x3;
    const REFUSED_STREAM: [u8; 4] = 7u32.to_be_bytes();
    let mut socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    socket.write_all(&out)?;
    // The server's limit applies once its SETTINGS are acknowledged.
    while read_frame(&mut socket)?.0 != SETTINGS {}
    let mut out = frame(SETTINGS, 0x1, 0, &[]);
    for i in 0..streams {
        let headers = grpc_headers("/sluice.v1.Log/Subscribe");
        out.extend(frame(0x1, 0x4, 2 * i + 1, &headers)); // HEADERS, the stream stays open
    }
    socket.write_all(&out)?;
    loop {
        let (kind, stream, payload) = read_frame(&mut socket).context("no stream refused")?;
        if kind == RST_STREAM {
            ensure!(
                payload == REFUSED_STREAM,
                "stream {stream} reset with {payload:?}"
            );
            return Ok(stream);
        }
    }
}

/// Writes `requests` requests of 10 records of 100 kB to partition 0 of `topic`, probing
/// normal service every 10 requests, then reads them all back. Returns the peak RSS seen
/// and the slowest probe.
async fn write_and_read(server: &Server, topic: &str, requests: usize) -> Result<(u64, Duration)> {
    let mut log = server.log().await?;
    let value = "v".repeat(100_000);
    let mut peak = server.anon_rss_bytes()?;
    let mut slowest = Duration::ZERO;
    for i in 0..requests {
        produce_values(&mut log, topic, 0, vec![value.clone(); 10]).await?;
        if i % 10 == 9 {
            let took = serves_normally(server, "probe", Duration::from_secs(5)).await?;
            slowest = slowest.max(took);
            peak = peak.max(server.anon_rss_bytes()?);
        }
    }
    let all = fetch_all(&mut log, topic, 0, 0).await?;
    ensure!(
        all.len() == requests * 10,
        "read {} records back",
        all.len()
    );
    Ok((peak.max(server.anon_rss_bytes()?), slowest))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_costs_bounded_memory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start_capturing_stderr(dir.path(), &[])?;
    for topic in ["warm-up", "t", "probe"] {
        create(&server, topic, 1).await?;
    }
    // The same load once without stalled subscribers, so the allocator has grown its
    // pools for 1 MB requests and responses before the baseline is taken.
    write_and_read(&server, "warm-up", 60).await?;
    let baseline = server.anon_rss_bytes()?;

    // Subscribers that start at the beginning and never read a message.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut log = server.log().await?;
        let stream = log
            .subscribe(subscribe_request("t", Kind::Earliest(pb::Earliest {})))
            .await?
            .into_inner();
        stalled.push((log, stream));
    }
    let (peak, slowest) = write_and_read(&server, "t", 60).await?;
    eprintln!(
        "wrote and read 60 MB past 4 stalled subscribers: anonymous RSS after warm-up {} MiB, peak {} MiB; slowest probe {slowest:?}",
        baseline / MIB,
        peak / MIB
    );
    // Each stalled subscription holds at most its channel (2 messages) and the message
    // its reader is sending, each up to max_subscribe_bytes (1 MiB), plus what HTTP/2 flow
    // control lets through unread (the client's stream window, 64 KiB by default): about
    // 3 MiB each, 12 MiB for the four. 32 MiB more is slack for the allocator.
    ensure!(
        peak < baseline + 44 * MIB,
        "anonymous RSS grew from {baseline} to {peak} bytes while 60 MB went by"
    );
    drop(stalled);
    assert_healthy(&mut server, "probe").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_of_small_records_cost_bounded_memory() -> Result<()> {
    const STALLED: usize = 20;
    let dir = tempfile::tempdir()?;
    let mut server = Server::start_capturing_stderr(dir.path(), &[])?;
    create(&server, "small", 1).await?;
    create(&server, "probe", 1).await?;
    // About 4 MB stored: 200,000 records of 8 bytes, so every Subscribe message is full
    // (1 MiB stored), and holds some 50,000 records.
    let mut log = server.log().await?;
    for chunk in 0..20 {
        let values = (0..10_000).map(|i| format!("{chunk:02}-{i:05}"));
        produce_values(&mut log, "small", 0, values).await?;
    }
    serves_normally(&server, "probe", Duration::from_secs(10)).await?;
    let baseline = server.anon_rss_bytes()?;

    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let stream = log
            .subscribe(subscribe_request("small", Kind::Earliest(pb::Earliest {})))
            .await?
            .into_inner();
        stalled.push(stream);
    }
    // Give the readers time to fill whatever they may hold, sampling as they do.
    let mut peak = baseline;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        peak = peak.max(server.anon_rss_bytes()?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = serves_normally(&server, "probe", Duration::from_secs(5)).await?;
    eprintln!(
        "{STALLED} stalled subscribers of small records: anonymous RSS {} -> peak {} MiB; a produce and fetch took {took:?}",
        baseline / MIB,
        peak / MIB
    );
    // Buffered fetches stay undecoded (slices of the mapped segment); what a stalled
    // subscription holds in memory is the one message being sent: 1 MiB of stored records,
    // about 1.5 MB encoded. Decoded, each buffered message took some 6 MB.
    ensure!(
        peak < baseline + STALLED as u64 * 4 * MIB,
        "anonymous RSS grew from {baseline} to {peak} bytes"
    );
    // The first message each gets is whole and in order.
    let mut first = stalled.swap_remove(0);
    let message = first.message().await?.context("a message")?;
    assert_eq!(message.records.first().map(|r| r.offset), Some(0));
    drop(stalled);

    // Group members that never read their stream: the same, for Groups.Consume.
    let baseline = server.anon_rss_bytes()?;
    let mut members = Vec::new();
    for g in 0..STALLED {
        let (requests, outgoing) = tokio::sync::mpsc::unbounded_channel();
        requests.send(pb::ConsumeRequest {
            kind: Some(pb::consume_request::Kind::Join(pb::JoinGroup {
                group: format!("stalled-{g}"),
                topics: vec!["small".into()],
                instance_id: None,
                auto_offset_reset: pb::OffsetReset::Earliest.into(),
                session_timeout_ms: 60_000,
                rebalance_timeout_ms: 0,
                max_bytes: 0,
            })),
        })?;
        let responses = groups_client(&server)
            .await?
            .consume(tokio_stream::wrappers::UnboundedReceiverStream::new(
                outgoing,
            ))
            .await?
            .into_inner();
        members.push((requests, responses));
    }
    let mut peak = baseline;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        peak = peak.max(server.anon_rss_bytes()?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{STALLED} stalled group members of small records: anonymous RSS {} -> peak {} MiB",
        baseline / MIB,
        peak / MIB
    );
    ensure!(
        peak < baseline + STALLED as u64 * 4 * MIB,
        "anonymous RSS grew from {baseline} to {peak} bytes"
    );
    let (_requests, mut responses) = members.swap_remove(0);
    let assignment = responses.message().await?.context("an assignment")?;
    assert!(matches!(
        assignment.kind,
        Some(pb::consume_response::Kind::Assignment(_))
    ));
    let records = responses.message().await?.context("records")?;
    match records.kind {
        Some(pb::consume_response::Kind::Records(records)) => {
            assert_eq!(records.records.first().map(|r| r.offset), Some(0));
        }
        other => bail!("expected records, got {other:?}"),
    }
    drop(members);
    assert_healthy(&mut server, "probe").await
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The request headers of a gRPC call to `path`, HPACK-encoded as literals.
fn grpc_headers(path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0); // literal header field without indexing, new name
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Opens a raw HTTP/2 connection, starts a Produce call whose message announces
/// `announced` bytes, sends `sent` of them, and closes the socket.
fn cut_off_mid_message(addr: &str, announced: u32, sent: usize) -> Result<()> {
    let mut socket = TcpStream::connect(addr)?;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4, 1, &grpc_headers("/sluice.v1.Log/Produce"))); // HEADERS
    let mut data = vec![0];
    data.extend_from_slice(&announced.to_be_bytes());
    data.extend(raw_produce(b"t", 0, b"h").into_iter().cycle().take(sent));
    out.extend(frame(0x0, 0, 1, &data)); // DATA, not the end of the stream
    socket.write_all(&out)?;
    socket.flush()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_request_leave_nothing_behind() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start_capturing_stderr(dir.path(), &["--max-subscriptions", "50"])?;
    create(&server, "t", 2).await?;
    serves_normally(&server, "t", Duration::from_secs(10)).await?;
    let baseline = server.anon_rss_bytes()?;

    // Sockets closed in the middle of a request message, 200 times over.
    let addr = server.addr.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        for i in 0..200 {
            cut_off_mid_message(&addr, 1 << 20, 100 + i)?;
        }
        Ok(())
    })
    .await??;
    let after_sockets = server.anon_rss_bytes()?;

    // Produce streams dropped with requests in flight: what was acknowledged is stored,
    // and the log stays dense.
    for round in 0..20 {
        let mut log = server.log().await?;
        let requests = (0..50u64).map(move |id| pb::ProduceRequest {
            topic: "t".into(),
            partition: Some(1),
            records: vec![record(None, &format!("{round}-{id}"), 0); 20],
            request_id: id,
            ..Default::default()
        });
        let mut answers = log
            .produce_stream(tokio_stream::iter(requests))
            .await?
            .into_inner();
        // Read a few answers, then hang up.
        for _ in 0..(round % 5) {
            answers.message().await?;
        }
        drop(answers);
        drop(log);
    }
    let mut log = server.log().await?;
    let stored = fetch_all(&mut log, "t", 1, 0).await?;
    for (i, record) in stored.iter().enumerate() {
        assert_eq!(record.offset, i as u64, "offsets stay dense");
    }

    // Subscribers and group members that hang up free their slots: 10 rounds of 50
    // subscriptions (and a member) under a limit of 50. They start at the end of the
    // log: what unread backlog costs is a_subscriber_that_never_reads_costs_bounded_memory.
    for _ in 0..10 {
        let mut log = server.log().await?;
        let mut streams = Vec::new();
        for _ in 0..49 {
            let stream = log
                .subscribe(subscribe_request("t", Kind::Latest(pb::Latest {})))
                .await;
            streams.push(retry_exhausted(stream, &mut log).await?);
        }
        let member = join_when_a_slot_is_free(&server).await?;
        member.close();
        drop(streams);
    }
    let end = server.anon_rss_bytes()?;
    eprintln!(
        "anonymous RSS {} MiB at the start, after 200 cut-off sockets {} MiB, after the rest {} MiB",
        baseline / MIB,
        after_sockets / MIB,
        end / MIB
    );
    // A cut-off call holds nothing once its connection is gone; the produce streams
    // write 20 MB, which leaves buffers the allocator keeps for reuse.
    ensure!(
        after_sockets < baseline + 16 * MIB,
        "200 cut-off sockets left {after_sockets} bytes (from {baseline})"
    );
    ensure!(
        end < baseline + 64 * MIB,
        "anonymous RSS grew from {baseline} to {end} bytes"
    );
    assert_healthy(&mut server, "t").await
}

/// A group member, retrying while the slots of streams just dropped are still held.
async fn join_when_a_slot_is_free(server: &Server) -> Result<GroupConsumer> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match GroupConsumer::join(server, MemberOptions::new("g", "t")).await {
            Ok(member) => return Ok(member),
            Err(e) if e.to_string().contains("max_subscriptions") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A subscription, retrying while the slots of streams just dropped are still held (the
/// server frees them as soon as it notices the client is gone).
async fn retry_exhausted(
    first: Result<tonic::Response<tonic::Streaming<pb::SubscribeResponse>>, Status>,
    log: &mut LogClient<Channel>,
) -> Result<tonic::Streaming<pb::SubscribeResponse>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut result = first;
    loop {
        match result {
            Ok(response) => return Ok(response.into_inner()),
            Err(status)
                if status.code() == Code::ResourceExhausted && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => bail!("subscribe failed: {status:?}"),
        }
        result = log
            .subscribe(subscribe_request("t", Kind::Latest(pb::Latest {})))
            .await;
    }
}
