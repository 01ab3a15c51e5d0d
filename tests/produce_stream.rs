//! Pipelined producing over one bidirectional stream: every request is answered with its id,
//! a bad request gets an error answer and the stream goes on.
mod common;

use std::collections::HashMap;

use anyhow::Result;
use common::*;
use sluice_proto::v1::{self as pb, produce_stream_response::Result as Answer};
use tokio_stream::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_flight_are_answered_by_request_id() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "pipe", 2, &[]).await?;
    let mut log = server.log().await?;

    let requests: Vec<pb::ProduceRequest> = (0..200u64)
        .map(|id| {
            let topic = if id == 100 { "missing" } else { "pipe" };
            pb::ProduceRequest {
                topic: topic.into(),
                partition: Some((id % 2) as u32),
                records: (0..50)
                    .map(|i| record(None, &format!("{id}/{i}"), 0))
                    .collect(),
                request_id: id,
                ..Default::default()
            }
        })
        .collect();
    let mut answers = log
        .produce_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();

    let mut ok: HashMap<u64, pb::ProduceResponse> = HashMap::new();
    let mut failed = Vec::new();
    while let Some(a) = answers.next().await {
        let a = a?;
        match a.result.expect("result set") {
            Answer::Produced(p) => assert!(ok.insert(a.request_id, p).is_none()),
            Answer::Error(e) => failed.push((a.request_id, e.code)),
        }
    }
    assert_eq!(failed, vec![(100, tonic::Code::NotFound as i32)]);
    assert_eq!(ok.len(), 199);

    // Offsets derived from the answers match what is stored.
    for p in 0..2u32 {
        let records = fetch_all(&mut log, "pipe", p, 0).await?;
        assert_eq!(records.len(), 99 * 50 + if p == 1 { 50 } else { 0 });
        for (id, resp) in &ok {
            let part = &resp.partitions[0];
            if part.partition != p {
                continue;
            }
            for i in 0..part.record_count as u64 {
                let r = &records[(part.base_offset + i) as usize];
                assert_eq!(value_str(r), format!("{id}/{i}"));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_keep_their_order_within_a_partition() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    create_topic(&mut server.admin().await?, "ordered", 1, &[]).await?;
    let mut log = server.log().await?;
    // 500 small requests sent back to back without waiting for answers.
    let requests: Vec<pb::ProduceRequest> = (0..500u64)
        .map(|id| pb::ProduceRequest {
            topic: "ordered".into(),
            partition: Some(0),
            records: (0..3)
                .map(|i| record(None, &format!("{id}/{i}"), 0))
                .collect(),
            request_id: id,
            ..Default::default()
        })
        .collect();
    let mut answers = log
        .produce_stream(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut base = HashMap::new();
    while let Some(a) = answers.next().await {
        let a = a?;
        match a.result.expect("result") {
            Answer::Produced(p) => {
                base.insert(a.request_id, p.partitions[0].base_offset);
            }
            Answer::Error(e) => panic!("request {} failed: {}", a.request_id, e.message),
        }
    }
    for id in 0..500u64 {
        assert_eq!(base[&id], id * 3, "request {id} appended out of order");
    }
    let records = fetch_all(&mut log, "ordered", 0, 0).await?;
    let values: Vec<String> = records.iter().map(value_str).collect();
    let want: Vec<String> = (0..500)
        .flat_map(|id| (0..3).map(move |i| format!("{id}/{i}")))
        .collect();
    assert_eq!(values, want);
    Ok(())
}
