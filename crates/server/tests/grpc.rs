//! The gRPC services in-process: a server on a loopback port with a fresh data directory,
//! driven by the generated clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::{
    self as pb, CreateTopicRequest, DeleteTopicRequest, DescribeTopicRequest, FetchRequest,
    ListOffsetsRequest, ListTopicsRequest, ProduceRequest, SubscribeRequest, offset_spec,
    produce_stream_response,
};
use sluice_server::{ListenAddr, ServeArgs, Server, ServerConfig, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The servers' `limits.max_request_bytes`.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A server running in this process; stopped by [`Running::stop`].
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<Result<(), ServerError>>,
    _data: tempfile::TempDir,
}

impl Running {
    async fn start() -> Result<Running, Box<dyn std::error::Error>> {
        let data = tempfile::tempdir()?;
        let args = ServeArgs {
            data_dir: Some(data.path().to_owned()),
            listen: Some("127.0.0.1:0".parse()?),
            metrics_listen: Some(ListenAddr::Addr("127.0.0.1:0".parse()?)),
            kafka_listen: Some(ListenAddr::Addr("127.0.0.1:0".parse()?)),
            amqp_listen: Some(ListenAddr::Addr("127.0.0.1:0".parse()?)),
            ..ServeArgs::default()
        };
        let env = [
            ("SLUICE_LIMITS_MAX_WAIT_MS".into(), "5000".into()),
            (
                "SLUICE_LIMITS_MAX_REQUEST_BYTES".into(),
                MAX_REQUEST_BYTES.to_string().into(),
            ),
        ];
        let config = ServerConfig::load(&args, env)?;
        let server = Server::start(config).await?;
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0, "the real port is reported");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Ok(Running {
            addr,
            stop,
            served,
            _data: data,
        })
    }

    async fn channel(&self) -> Result<Channel, Box<dyn std::error::Error>> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?;
        Ok(channel)
    }

    async fn stop(self) -> Result<(), ServerError> {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(30), self.served).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => panic!("server task failed: {join}"),
            Err(_) => panic!("server did not stop within 30 s"),
        }
    }
}

fn record(key: Option<&'static str>, value: &'static str) -> pb::Record {
    pb::Record {
        key: key.map(|k| Bytes::from_static(k.as_bytes())),
        value: Bytes::from_static(value.as_bytes()),
        headers: vec![pb::Header {
            key: "source".into(),
            value: Bytes::from_static(b"test"),
        }],
        timestamp_ms: 0,
    }
}

fn spec(kind: offset_spec::Kind) -> Option<pb::OffsetSpec> {
    Some(pb::OffsetSpec { kind: Some(kind) })
}

async fn create(admin: &mut AdminClient<Channel>, name: &str, partitions: u32) -> TestResult {
    admin
        .create_topic(CreateTopicRequest {
            name: name.into(),
            partitions,
            config: BTreeMap::new(),
        })
        .await?;
    Ok(())
}

#[tokio::test]
async fn admin_calls_and_health() -> TestResult {
    let server = Running::start().await?;
    let channel = server.channel().await?;
    let mut admin = AdminClient::new(channel.clone());

    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "sluice.v1.Admin",
        "sluice.v1.Log",
        "sluice.v1.Groups",
        "sluice.v1.ShareGroups",
        "sluice.v1.Security",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    assert_eq!(
        reflected_services(channel.clone()).await?,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "sluice.v1.Admin",
            "sluice.v1.Groups",
            "sluice.v1.Log",
            "sluice.v1.Security",
            "sluice.v1.ShareGroups",
        ]
    );

    let created = admin
        .create_topic(CreateTopicRequest {
            name: "orders".into(),
            partitions: 3,
            config: BTreeMap::from([("retention.ms".to_owned(), "60000".to_owned())]),
        })
        .await?
        .into_inner()
        .topic
        .ok_or("no topic in response")?;
    assert_eq!(created.name, "orders");
    assert_eq!(
        created.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        created.config.get("retention.ms").map(String::as_str),
        Some("60000")
    );
    assert!(
        created.config.contains_key("segment.bytes"),
        "effective config has every key"
    );

    let again = admin
        .create_topic(CreateTopicRequest {
            name: "orders".into(),
            partitions: 1,
            config: BTreeMap::new(),
        })
        .await
        .expect_err("duplicate");
    assert_eq!(again.code(), Code::AlreadyExists);
    let bad_config = admin
        .create_topic(CreateTopicRequest {
            name: "other".into(),
            partitions: 1,
            config: BTreeMap::from([("segment.bytes".to_owned(), "1".to_owned())]),
        })
        .await
        .expect_err("bad config");
    assert_eq!(bad_config.code(), Code::InvalidArgument);
    assert!(bad_config.message().contains("segment.bytes"));
    let no_name = admin
        .create_topic(CreateTopicRequest::default())
        .await
        .expect_err("empty name");
    assert_eq!(no_name.code(), Code::InvalidArgument);
    assert!(no_name.message().starts_with("name:"));

    create(&mut admin, "audit", 1).await?;
    let listed = admin
        .list_topics(ListTopicsRequest {})
        .await?
        .into_inner()
        .topics;
    let listed: Vec<_> = listed
        .iter()
        .map(|t| (t.name.as_str(), t.partitions))
        .collect();
    assert_eq!(listed, [("audit", 1), ("orders", 3)]);

    let described = admin
        .describe_topic(DescribeTopicRequest {
            name: "audit".into(),
        })
        .await?
        .into_inner()
        .topic
        .ok_or("no topic in response")?;
    assert_eq!(described.partitions.len(), 1);
    assert_eq!(described.partitions[0].high_watermark, 0);

    admin
        .delete_topic(DeleteTopicRequest {
            name: "audit".into(),
        })
        .await?;
    let gone = admin
        .describe_topic(DescribeTopicRequest {
            name: "audit".into(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);

    // Shutdown is announced to health watchers before the server goes away.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    let serving = watch.next().await.ok_or("watch ended")??.status;
    assert_eq!(serving, ServingStatus::Serving as i32);
    let stopping = tokio::spawn(server.stop());
    let not_serving = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await?
        .ok_or("watch ended")??
        .status;
    assert_eq!(not_serving, ServingStatus::NotServing as i32);
    drop(watch);
    stopping.await??;
    Ok(())
}

#[tokio::test]
async fn produce_fetch_and_list_offsets() -> TestResult {
    let server = Running::start().await?;
    let channel = server.channel().await?;
    let mut admin = AdminClient::new(channel.clone());
    let mut log = LogClient::new(channel);
    create(&mut admin, "events", 2).await?;

    let before = now_ms();
    let produced = log
        .produce(ProduceRequest {
            topic: "events".into(),
            partition: Some(1),
            records: vec![
                record(Some("a"), "one"),
                record(None, "two"),
                record(Some("b"), "three"),
            ],
            request_id: 0,
            ..Default::default()
        })
        .await?
        .into_inner()
        .partitions;
    assert_eq!(produced.len(), 1);
    assert_eq!(
        (
            produced[0].partition,
            produced[0].base_offset,
            produced[0].record_count
        ),
        (1, 0, 3)
    );

    let fetched = log
        .fetch(FetchRequest {
            topic: "events".into(),
            partition: 1,
            offset: 1,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await?
        .into_inner();
    let values: Vec<_> = fetched.records.iter().map(|r| r.value.clone()).collect();
    assert_eq!(values, [Bytes::from("two"), Bytes::from("three")]);
    assert_eq!(fetched.records[0].offset, 1);
    assert_eq!(fetched.records[0].key, None);
    assert_eq!(fetched.records[1].key, Some(Bytes::from("b")));
    assert_eq!(fetched.records[1].headers[0].key, "source");
    assert!(
        fetched.records[1].timestamp_ms >= before,
        "server stamped the record"
    );
    assert_eq!((fetched.high_watermark, fetched.next_offset), (3, 3));

    let out_of_range = log
        .fetch(FetchRequest {
            topic: "events".into(),
            partition: 1,
            offset: 10,
            ..FetchRequest::default()
        })
        .await
        .expect_err("past the high watermark");
    assert_eq!(out_of_range.code(), Code::OutOfRange);
    assert!(
        out_of_range.message().contains("0..=3"),
        "{}",
        out_of_range.message()
    );
    let no_partition = log
        .fetch(FetchRequest {
            topic: "events".into(),
            partition: 9,
            ..FetchRequest::default()
        })
        .await
        .expect_err("no such partition");
    assert_eq!(no_partition.code(), Code::NotFound);
    let empty = log
        .produce(ProduceRequest {
            topic: "events".into(),
            ..ProduceRequest::default()
        })
        .await
        .expect_err("no records");
    assert_eq!(empty.code(), Code::InvalidArgument);

    let oversized = || ProduceRequest {
        topic: "events".into(),
        partition: Some(0),
        records: vec![pb::Record {
            value: Bytes::from(vec![7u8; MAX_REQUEST_BYTES + 1]),
            ..pb::Record::default()
        }],
        request_id: 5,
        ..Default::default()
    };
    let too_large = log
        .produce(oversized())
        .await
        .expect_err("over max_request_bytes");
    assert_eq!(too_large.code(), Code::ResourceExhausted, "{too_large:?}");
    assert!(
        too_large.message().contains("max_request_bytes"),
        "{}",
        too_large.message()
    );
    let mut answers = log
        .produce_stream(tokio_stream::iter([oversized()]))
        .await?
        .into_inner();
    let ended = answers
        .next()
        .await
        .ok_or("stream ended without a status")?;
    let status = ended.expect_err("an oversized stream message ends the stream");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // A long-poll fetch at the high watermark returns when a record arrives.
    let mut waiting = log.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        waiting
            .fetch(FetchRequest {
                topic: "events".into(),
                partition: 0,
                offset: 0,
                max_bytes: 0,
                max_wait_ms: 4000,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    log.produce(ProduceRequest {
        topic: "events".into(),
        partition: Some(0),
        records: vec![record(None, "late")],
        request_id: 0,
        ..Default::default()
    })
    .await?;
    let polled = poll.await??.into_inner();
    assert_eq!(polled.records.len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "woken by the append"
    );

    let offsets = |kind| ListOffsetsRequest {
        topic: "events".into(),
        partitions: vec![],
        spec: spec(kind),
    };
    let latest = log
        .list_offsets(offsets(offset_spec::Kind::Latest(pb::Latest {})))
        .await?
        .into_inner()
        .offsets;
    let latest: Vec<_> = latest.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(latest, [(0, Some(1)), (1, Some(3))]);
    let future = log
        .list_offsets(offsets(offset_spec::Kind::TimestampMs(
            now_ms() + 3_600_000,
        )))
        .await?
        .into_inner()
        .offsets;
    assert!(future.iter().all(|o| o.offset.is_none()), "{future:?}");
    let first = log
        .list_offsets(offsets(offset_spec::Kind::TimestampMs(before)))
        .await?
        .into_inner()
        .offsets;
    assert_eq!(first[1].offset, Some(0));
    let explicit = log
        .list_offsets(offsets(offset_spec::Kind::Offset(1)))
        .await
        .expect_err("explicit offset");
    assert_eq!(explicit.code(), Code::InvalidArgument);
    assert!(explicit.message().starts_with("spec:"));

    server.stop().await?;
    Ok(())
}

#[tokio::test]
async fn produce_stream_answers_every_request_by_id() -> TestResult {
    let server = Running::start().await?;
    let channel = server.channel().await?;
    create(&mut AdminClient::new(channel.clone()), "stream", 1).await?;
    let mut log = LogClient::new(channel);

    let requests: Vec<ProduceRequest> = (0..200u64)
        .map(|id| ProduceRequest {
            // Every tenth request names a missing topic and must fail alone.
            topic: if id % 10 == 7 { "missing" } else { "stream" }.into(),
            partition: None,
            records: vec![record(None, "x"), record(None, "y")],
            request_id: id,
            ..Default::default()
        })
        .collect();
    let mut answers = log
        .produce_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut seen = BTreeMap::new();
    while let Some(answer) = answers.next().await {
        let answer = answer?;
        seen.insert(answer.request_id, answer.result.ok_or("empty answer")?);
    }
    assert_eq!(seen.len(), 200);
    let mut offsets = Vec::new();
    for (id, result) in seen {
        match result {
            produce_stream_response::Result::Produced(produced) => {
                assert_ne!(id % 10, 7, "request {id} should have failed");
                assert_eq!(produced.partitions[0].record_count, 2);
                offsets.push(produced.partitions[0].base_offset);
            }
            produce_stream_response::Result::Error(error) => {
                assert_eq!(id % 10, 7, "request {id} failed: {}", error.message);
                assert_eq!(error.code, Code::NotFound as i32);
            }
        }
    }
    // 180 successful requests of two records each, with no offset handed out twice.
    offsets.sort_unstable();
    assert_eq!(offsets, (0..180).map(|n| n * 2).collect::<Vec<u64>>());

    server.stop().await?;
    Ok(())
}

#[tokio::test]
async fn subscribe_replays_then_tails() -> TestResult {
    let server = Running::start().await?;
    let channel = server.channel().await?;
    create(&mut AdminClient::new(channel.clone()), "feed", 2).await?;
    let mut log = LogClient::new(channel);
    for partition in [0, 1] {
        log.produce(ProduceRequest {
            topic: "feed".into(),
            partition: Some(partition),
            records: vec![record(None, "old-1"), record(None, "old-2")],
            request_id: 0,
            ..Default::default()
        })
        .await?;
    }

    let subscribe = |start| SubscribeRequest {
        topic: "feed".into(),
        partitions: vec![],
        start: spec(start),
        max_bytes: 0,
    };
    let mut stream = log
        .subscribe(subscribe(offset_spec::Kind::Earliest(pb::Earliest {})))
        .await?
        .into_inner();
    let mut received: BTreeMap<u32, Vec<(u64, Bytes)>> = BTreeMap::new();
    while received.values().map(Vec::len).sum::<usize>() < 4 {
        let message = next(&mut stream).await?;
        let entry = received.entry(message.partition).or_default();
        entry.extend(message.records.into_iter().map(|r| (r.offset, r.value)));
    }
    log.produce(ProduceRequest {
        topic: "feed".into(),
        partition: Some(1),
        records: vec![record(None, "new")],
        request_id: 0,
        ..Default::default()
    })
    .await?;
    let message = next(&mut stream).await?;
    assert_eq!(message.partition, 1);
    assert_eq!(message.records[0].offset, 2);
    assert_eq!(message.records[0].value, Bytes::from("new"));
    assert_eq!(message.high_watermark, 3);
    for partition in [0, 1] {
        let offsets: Vec<_> = received[&partition].iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [0, 1], "partition {partition}");
    }

    let bad_start = log
        .subscribe(subscribe(offset_spec::Kind::Offset(99)))
        .await
        .expect_err("offset out of range");
    assert_eq!(bad_start.code(), Code::OutOfRange);
    let duplicate = log
        .subscribe(SubscribeRequest {
            partitions: vec![1, 1],
            ..subscribe(offset_spec::Kind::Latest(pb::Latest {}))
        })
        .await
        .expect_err("duplicate partition");
    assert_eq!(duplicate.code(), Code::InvalidArgument);
    let no_start = log
        .subscribe(SubscribeRequest {
            start: None,
            ..subscribe(offset_spec::Kind::Latest(pb::Latest {}))
        })
        .await
        .expect_err("no start");
    assert!(no_start.message().starts_with("start:"));

    // Shutdown ends the open subscription instead of waiting for it.
    let stopped = tokio::spawn(server.stop());
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => break Some(status.code()),
                None => break None,
            }
        }
    })
    .await?;
    assert_eq!(end, Some(Code::Unavailable));
    stopped.await??;
    Ok(())
}

/// The services listed by gRPC reflection, sorted.
async fn reflected_services(channel: Channel) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses.next().await.ok_or("no reflection response")??;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        return Err(format!("unexpected reflection response {response:?}").into());
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    Ok(names)
}

async fn next(
    stream: &mut tonic::Streaming<pb::SubscribeResponse>,
) -> Result<pb::SubscribeResponse, Box<dyn std::error::Error>> {
    let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await?
        .ok_or("stream ended")??;
    Ok(message)
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_takes_client_encoded_batches_as_they_are() -> TestResult {
    let server = Running::start().await?;
    let channel = server.channel().await?;
    let mut admin = AdminClient::new(channel.clone());
    let mut log = LogClient::new(channel);
    create(&mut admin, "source", 1).await?;
    create(&mut admin, "mirror", 2).await?;
    log.produce(ProduceRequest {
        topic: "source".into(),
        partition: Some(0),
        records: vec![record(Some("k"), "a"), record(None, "b")],
        ..Default::default()
    })
    .await?;
    let fetch = |topic: &str, partition| FetchRequest {
        topic: topic.into(),
        partition,
        ..FetchRequest::default()
    };
    // Encoded batches, as a Kafka client would send them: here, those the server stored.
    let batches = log
        .fetch_batches(fetch("source", 0))
        .await?
        .into_inner()
        .record_batches;
    let raw = |batches: Bytes, partition| ProduceRequest {
        topic: "mirror".into(),
        partition,
        record_batches: batches,
        ..Default::default()
    };
    for _ in 0..2 {
        let written = log
            .produce(raw(batches.clone(), Some(1)))
            .await?
            .into_inner();
        assert_eq!(written.partitions.len(), 1);
        assert_eq!(written.partitions[0].partition, 1);
        assert_eq!(written.partitions[0].record_count, 2);
    }
    let mirrored = log.fetch(fetch("mirror", 1)).await?.into_inner();
    let seen: Vec<(u64, &[u8])> = mirrored
        .records
        .iter()
        .map(|r| (r.offset, &r.value[..]))
        .collect();
    assert_eq!(
        seen,
        [(0, &b"a"[..]), (1, b"b"), (2, b"a"), (3, b"b")],
        "stored as sent, with offsets assigned"
    );
    let stored = log
        .fetch_batches(fetch("mirror", 1))
        .await?
        .into_inner()
        .record_batches;
    assert_eq!(
        stored[8..batches.len()],
        batches[8..],
        "only the base offset differs"
    );

    let mut corrupt = batches.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let refused = log
        .produce(raw(Bytes::from(corrupt), Some(1)))
        .await
        .expect_err("bad CRC");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("crc"), "{}", refused.message());
    let unrouted = log
        .produce(raw(batches.clone(), None))
        .await
        .expect_err("no partition");
    assert_eq!(unrouted.code(), Code::InvalidArgument);
    assert!(
        unrouted.message().contains("partition"),
        "{}",
        unrouted.message()
    );
    let both = log
        .produce(ProduceRequest {
            records: vec![record(None, "c")],
            ..raw(batches, Some(1))
        })
        .await
        .expect_err("records and batches");
    assert_eq!(both.code(), Code::InvalidArgument);
    assert!(both.message().contains("not both"), "{}", both.message());
    server.stop().await?;
    Ok(())
}
