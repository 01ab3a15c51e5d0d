//! Writes the seed corpus of the fuzz targets (`fuzz/corpus/<target>/`): valid batches,
//! segments and requests to mutate from. Run by hand when the formats change:
//! `cargo test --workspace --test seeds -- --ignored`.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, FetchRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use prost::Message;
use sluice_proto::v1 as pb;
use sluice_storage::batch::RecordBatchBuilder;
use sluice_storage::{FlushPolicy, Log, LogConfig};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

/// A batch of `count` records with keys, values, a null value and headers.
fn batch(count: usize, log_append_time: bool) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    for i in 0..count {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let value = (i % 3 != 2).then_some(value.as_bytes());
        builder
            .push(
                1_700_000_000_000 + i as i64,
                Some(key.as_bytes()),
                value,
                [(&b"trace"[..], Some(&b"abc"[..])), (&b"empty"[..], None)],
            )
            .expect("push");
    }
    let mut bytes = builder.finish().expect("records").to_vec();
    if log_append_time {
        bytes[22] |= 0x08; // attributes: timestamp type = log append time (CRC now stale)
    }
    bytes
}

/// A batch of `count` records compressed with `codec`, as a Kafka client encodes it.
fn compressed(count: i64, codec: Compression) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(format!("key-{i}").into()),
            value: Some(format!("value-{i}-value-{i}").into()),
            headers: Default::default(),
        })
        .collect();
    let mut out = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut out, &records, &options).expect("encode");
    out.to_vec()
}

#[test]
#[ignore = "writes the seed corpus into the source tree"]
fn write_seed_corpus() {
    write("batch_decode", "one-record", &batch(1, false));
    write("batch_decode", "five-records", &batch(5, false));
    let mut two = batch(3, false);
    two.extend(batch(2, false));
    write("batch_decode", "two-batches", &two);
    write("batch_decode", "log-append-time", &batch(2, true));
    for (name, codec) in [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        write("batch_decode", name, &compressed(4, codec));
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let config = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 64,
        flush: FlushPolicy::None,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).expect("open");
    for count in [1, 4, 2, 7] {
        log.append(&mut batch(count, false)).expect("append");
    }
    log.close().expect("close");
    let stem = dir.path().join("00000000000000000000");
    let segment = std::fs::read(stem.with_extension("log")).expect("segment");
    let index = std::fs::read(stem.with_extension("index")).expect("index");
    let with_index = |flags: u8| {
        let mut out = vec![flags];
        out.extend((index.len() as u16).to_be_bytes());
        out.extend(&index);
        out.extend(&segment);
        out
    };
    let mut crashed = vec![0];
    crashed.extend(&segment);
    write("segment_recovery", "after-crash", &crashed);
    let mut torn = crashed.clone();
    torn.truncate(torn.len() - 10);
    write("segment_recovery", "torn-tail", &torn);
    write("segment_recovery", "clean-with-index", &with_index(3));
    write("segment_recovery", "crash-with-index", &with_index(2));

    let record = |value: &str| pb::Record {
        key: Some("k".into()),
        value: value.to_owned().into(),
        headers: vec![pb::Header {
            key: "h".into(),
            value: "v".into(),
        }],
        timestamp_ms: 1_700_000_000_000,
    };
    let spec = |kind| Some(pb::OffsetSpec { kind: Some(kind) });
    let request = |selector: u8, body: Vec<u8>| {
        let mut out = vec![selector];
        out.extend(body);
        out
    };
    let produce = pb::ProduceRequest {
        topic: "orders".into(),
        partition: Some(1),
        records: vec![record("a"), record("b")],
        request_id: 7,
        ..Default::default()
    };
    write(
        "request_validation",
        "produce",
        &request(0, produce.encode_to_vec()),
    );
    let fetch = pb::FetchRequest {
        topic: "orders".into(),
        partition: 0,
        offset: 5,
        max_bytes: 1 << 20,
        max_wait_ms: 100,
    };
    write(
        "request_validation",
        "fetch",
        &request(1, fetch.encode_to_vec()),
    );
    let subscribe = pb::SubscribeRequest {
        topic: "orders".into(),
        partitions: vec![0, 2],
        start: spec(pb::offset_spec::Kind::TimestampMs(1_700_000_000_000)),
        max_bytes: 0,
    };
    write(
        "request_validation",
        "subscribe",
        &request(2, subscribe.encode_to_vec()),
    );
    let create = pb::CreateTopicRequest {
        name: "orders".into(),
        partitions: 3,
        config: [("retention.ms".to_owned(), "1000".to_owned())].into(),
    };
    write(
        "request_validation",
        "create-topic",
        &request(3, create.encode_to_vec()),
    );
    let join = pb::ConsumeRequest {
        kind: Some(pb::consume_request::Kind::Join(pb::JoinGroup {
            group: "billing".into(),
            topics: vec!["orders".into()],
            instance_id: Some("i-1".into()),
            auto_offset_reset: 1,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 0,
            max_bytes: 0,
        })),
    };
    write(
        "request_validation",
        "join",
        &request(4, join.encode_to_vec()),
    );
    let list = pb::ListOffsetsRequest {
        topic: "orders".into(),
        partitions: vec![],
        spec: spec(pb::offset_spec::Kind::Earliest(pb::Earliest {})),
    };
    write(
        "request_validation",
        "list-offsets",
        &request(5, list.encode_to_vec()),
    );

    write_kafka_seeds();
}

/// One Kafka request frame: size, header (client id `seed`, correlation id 1), body.
fn kafka_frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, request: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("seed")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .expect("header");
    request.encode(&mut body, version).expect("body");
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Seeds of the `kafka_request` target: requests as current clients send them.
fn write_kafka_seeds() {
    let topic = || TopicName(StrBytes::from_static_str("orders"));
    let api_versions = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("seed"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic())),
        ]))
        .with_allow_auto_topic_creation(true);
    let mut both = kafka_frame(ApiKey::ApiVersions, 3, &api_versions);
    both.extend(kafka_frame(ApiKey::Metadata, 12, &metadata));
    write("kafka_request", "api-versions-then-metadata", &both);
    write(
        "kafka_request",
        "metadata-v0-all",
        &kafka_frame(
            ApiKey::Metadata,
            0,
            &MetadataRequest::default().with_topics(Some(vec![])),
        ),
    );
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic())
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(batch(3, false)))),
                ]),
        ]);
    write(
        "kafka_request",
        "produce-v9",
        &kafka_frame(ApiKey::Produce, 9, &produce),
    );
    write(
        "kafka_request",
        "produce-v3",
        &kafka_frame(ApiKey::Produce, 3, &produce),
    );
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(52_428_800)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic())
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1_048_576),
                ]),
        ]);
    write(
        "kafka_request",
        "fetch-v12",
        &kafka_frame(ApiKey::Fetch, 12, &fetch),
    );
    write(
        "kafka_request",
        "fetch-v4",
        &kafka_frame(ApiKey::Fetch, 4, &fetch),
    );
    let list = ListOffsetsRequest::default().with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(topic())
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-2),
            ]),
    ]);
    write(
        "kafka_request",
        "list-offsets-v6",
        &kafka_frame(ApiKey::ListOffsets, 6, &list),
    );
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic())
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("60000"))),
                ]),
        ]);
    write(
        "kafka_request",
        "create-topics-v7",
        &kafka_frame(ApiKey::CreateTopics, 7, &create),
    );
}
