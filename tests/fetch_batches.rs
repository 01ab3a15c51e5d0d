//! `FetchBatches` serves the stored Kafka v2 batches as they are: a Kafka client library
//! decodes them into exactly the records that were produced.
mod common;

use anyhow::Result;
use common::*;
use kafka_protocol::records::RecordBatchDecoder;
use sluice_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_batches_returns_kafka_decodable_batches_from_any_offset() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "raw", 1, &[]).await?;
    let mut log = server.log().await?;
    for batch in 0..10 {
        let records = (0..100)
            .map(|i| record(Some("k"), &format!("v{}", batch * 100 + i), 1_000 + batch))
            .collect();
        log.produce(pb::ProduceRequest {
            topic: "raw".into(),
            partition: Some(0),
            records,
            request_id: 0,
            ..Default::default()
        })
        .await?;
    }

    let mut offset = 250;
    let mut values = Vec::new();
    loop {
        let resp = log
            .fetch_batches(pb::FetchRequest {
                topic: "raw".into(),
                partition: 0,
                offset,
                max_bytes: 3_000,
                max_wait_ms: 0,
            })
            .await?
            .into_inner();
        if resp.record_batches.is_empty() {
            assert_eq!(resp.next_offset, resp.high_watermark);
            break;
        }
        let mut bytes = resp.record_batches.clone();
        let mut records = Vec::new();
        while !bytes.is_empty() {
            // Each call decodes one batch; a partial batch would fail.
            records.extend(RecordBatchDecoder::decode(&mut bytes)?.records);
        }
        for r in records {
            let o = u64::try_from(r.offset)?;
            if o >= offset {
                assert_eq!(o, offset + (values.len() as u64 - (offset - 250)));
                values.push(String::from_utf8(r.value.unwrap().to_vec())?);
            }
        }
        assert!(resp.next_offset > offset);
        offset = resp.next_offset;
    }
    let want: Vec<String> = (250..1_000).map(|i| format!("v{i}")).collect();
    assert_eq!(values, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_batches_replays_then_tails_kafka_batches() -> Result<()> {
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "rawsub", 2, &[]).await?;
    let mut log = server.log().await?;
    for p in 0..2 {
        let records = (0..300)
            .map(|i| record(None, &format!("{p}/{i}"), 0))
            .collect();
        log.produce(pb::ProduceRequest {
            topic: "rawsub".into(),
            partition: Some(p),
            records,
            request_id: 0,
            ..Default::default()
        })
        .await?;
    }
    let start = pb::OffsetSpec {
        kind: Some(pb::offset_spec::Kind::Offset(100)),
    };
    let mut stream = log
        .subscribe_batches(pb::SubscribeRequest {
            topic: "rawsub".into(),
            partitions: vec![],
            start: Some(start),
            max_bytes: 2_000,
        })
        .await?
        .into_inner();
    let mut seen: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    let mut live_sent = false;
    while seen.iter().map(Vec::len).sum::<usize>() < 2 * 200 + 1 {
        if !live_sent && seen[0].len() == 200 && seen[1].len() == 200 {
            // History is replayed: now a live record.
            log.produce(pb::ProduceRequest {
                topic: "rawsub".into(),
                partition: Some(0),
                records: vec![record(None, "live", 0)],
                request_id: 0,
                ..Default::default()
            })
            .await?;
            live_sent = true;
        }
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await?
            .expect("stream open")?;
        let p = msg.partition as usize;
        let mut bytes = msg.record_batches.clone();
        while !bytes.is_empty() {
            for r in RecordBatchDecoder::decode(&mut bytes)?.records {
                let offset = u64::try_from(r.offset)?;
                if offset >= 100 + seen[p].len() as u64 {
                    assert_eq!(
                        offset,
                        100 + seen[p].len() as u64,
                        "partition {p} in order, no gaps"
                    );
                    seen[p].push(String::from_utf8(r.value.unwrap().to_vec())?);
                }
            }
        }
        assert_eq!(msg.next_offset, 100 + seen[p].len() as u64);
    }
    assert_eq!(seen[0][0], "0/100");
    assert_eq!(seen[1][199], "1/299");
    assert_eq!(seen[0].last().map(String::as_str), Some("live"));
    Ok(())
}

/// SubscribeBatches answers the same batches to a client that compresses its request
/// with gzip and accepts gzip answers, and refuses a bad request with a status naming it,
/// before anything is streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_batches_serves_gzip_clients_and_names_bad_requests() -> Result<()> {
    use tokio_stream::StreamExt;
    use tonic::Code;
    use tonic::codec::CompressionEncoding;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "zipped", 1, &[]).await?;
    let mut log = server.log().await?;
    let records = (0..50).map(|i| record(None, &format!("z{i}"), 0)).collect();
    log.produce(pb::ProduceRequest {
        topic: "zipped".into(),
        partition: Some(0),
        records,
        request_id: 0,
        ..Default::default()
    })
    .await?;
    let subscribe = |topic: &str| pb::SubscribeRequest {
        topic: topic.into(),
        partitions: vec![],
        start: Some(pb::OffsetSpec {
            kind: Some(pb::offset_spec::Kind::Offset(0)),
        }),
        max_bytes: 0,
    };
    let mut plain = log
        .subscribe_batches(subscribe("zipped"))
        .await?
        .into_inner();
    let plain = plain.next().await.expect("a message")?;
    let mut gzip = server
        .log()
        .await?
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let mut zipped = gzip
        .subscribe_batches(subscribe("zipped"))
        .await?
        .into_inner();
    let zipped = zipped.next().await.expect("a message")?;
    assert_eq!(zipped, plain);
    assert_eq!(plain.next_offset, 50);
    assert_eq!(plain.high_watermark, 50);

    for client in [&mut log, &mut gzip] {
        let unknown = client
            .subscribe_batches(subscribe("nowhere"))
            .await
            .expect_err("an unknown topic is refused");
        assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
        assert!(unknown.message().contains("nowhere"), "{unknown:?}");
        let unnamed = client
            .subscribe_batches(subscribe(""))
            .await
            .expect_err("an empty topic name is refused");
        assert_eq!(unnamed.code(), Code::InvalidArgument, "{unnamed:?}");
        assert!(unnamed.message().contains("topic"), "{unnamed:?}");
    }
    Ok(())
}

/// One batch of `values` as a Kafka client compresses it with `codec`.
fn kafka_batch(
    codec: kafka_protocol::records::Compression,
    values: &[String],
) -> Result<bytes::Bytes> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = values
        .iter()
        .zip(0i64..)
        .map(|(value, i)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32 - 1,
            timestamp: 1_000 + i,
            key: None,
            value: Some(bytes::Bytes::from(value.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)?;
    Ok(buf.freeze())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_client_batches_are_fetched_decompressed_and_stamped_by_the_topic() -> Result<()>
{
    use kafka_protocol::records::Compression;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let mut admin = server.admin().await?;
    create_topic(&mut admin, "zipped", 1, &[]).await?;
    create_topic(
        &mut admin,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await?;
    let mut log = server.log().await?;
    let mut sent = Vec::new();
    for (n, codec) in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let values: Vec<String> = (0..50).map(|i| format!("{n}-{i}-").repeat(10)).collect();
        for topic in ["zipped", "stamped"] {
            let produced = log
                .produce(pb::ProduceRequest {
                    topic: topic.into(),
                    partition: Some(0),
                    record_batches: kafka_batch(codec, &values)?,
                    ..Default::default()
                })
                .await?
                .into_inner();
            assert_eq!(produced.partitions[0].record_count, 50);
        }
        sent.extend(values);
    }
    // Fetch decodes the compressed batches into records.
    let records = fetch_all(&mut log, "zipped", 0, 0).await?;
    assert_eq!(records.iter().map(value_str).collect::<Vec<_>>(), sent);
    assert_eq!(records[0].timestamp_ms, 1_000);
    // FetchBatches serves them as stored: still compressed, decodable by a Kafka client.
    let resp = log
        .fetch_batches(pb::FetchRequest {
            topic: "zipped".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        })
        .await?
        .into_inner();
    let mut bytes = resp.record_batches.clone();
    let mut codecs = Vec::new();
    while !bytes.is_empty() {
        codecs.push(RecordBatchDecoder::decode(&mut bytes)?.compression);
    }
    assert_eq!(
        codecs,
        [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd
        ]
    );
    // Under LogAppendTime every record carries the time it was appended, not the producer's.
    let stamped = fetch_all(&mut log, "stamped", 0, 0).await?;
    assert_eq!(stamped.len(), 200);
    assert!(
        stamped.iter().all(|r| r.timestamp_ms > 1_600_000_000_000),
        "{:?}",
        stamped[0]
    );
    // A damaged compressed batch is refused naming the records.
    let mut bad = kafka_batch(Compression::Zstd, &sent[..10])?.to_vec();
    let len = bad.len() - 6;
    bad.truncate(len);
    bad[8..12].copy_from_slice(&(len as i32 - 12).to_be_bytes());
    let crc = crc32c::crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    let err = log
        .produce(pb::ProduceRequest {
            topic: "zipped".into(),
            partition: Some(0),
            record_batches: bad.into(),
            ..Default::default()
        })
        .await
        .expect_err("damaged records");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("records"), "{}", err.message());
    Ok(())
}
