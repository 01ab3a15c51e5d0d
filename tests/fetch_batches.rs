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
