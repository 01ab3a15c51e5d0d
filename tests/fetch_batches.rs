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
