//! The Rust client (`sluice-client`) against a real `sluice` process: producer offsets and
//! partitioning, consumer start positions and live tailing, consumer groups, and surviving
//! a server restart.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::*;
use sluice_client::{
    Client, Code, ConsumerRecord, GroupEvent, NewTopic, OffsetReset, Position, ProducerRecord,
    RecordMetadata, TopicPartition,
};
use sluice_proto::v1 as pb;

/// Longest wait for something a test expects to happen.
const PATIENCE: Duration = Duration::from_secs(30);

async fn connect(server: &Server) -> Result<Client> {
    Ok(Client::connect(server.url()).await?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for the next record of a plain consumer.
async fn next_record(consumer: &mut sluice_client::Consumer) -> Result<ConsumerRecord> {
    Ok(tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .context("no record in time")??)
}

/// Reads `n` records.
async fn take(consumer: &mut sluice_client::Consumer, n: usize) -> Result<Vec<ConsumerRecord>> {
    let mut records = Vec::with_capacity(n);
    while records.len() < n {
        records.push(next_record(consumer).await?);
    }
    Ok(records)
}

/// (partition, offset, value) of each record.
fn positions(records: &[ConsumerRecord]) -> Vec<(u32, u64, String)> {
    records
        .iter()
        .map(|r| (r.partition, r.offset, text(&r.value)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_resolves_to_the_offset_where_its_record_is() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("keyed", 4))
        .await?;
    // Small batches and a short linger: many batches in flight at once.
    let producer = client
        .producer()
        .batch_size(4096)
        .linger(Duration::from_millis(2))
        .max_in_flight(8)
        .build()?;

    let sends: Vec<_> = (0..10_000)
        .map(|i| {
            let record = ProducerRecord::new("keyed", format!("value-{i}"))
                .key(format!("key-{}", i % 97))
                .header("seq", i.to_string());
            producer.send(record)
        })
        .collect();
    let mut written: Vec<RecordMetadata> = Vec::with_capacity(sends.len());
    for send in sends {
        written.push(send.await?);
    }

    let mut log = server.log().await?;
    let mut stored: HashMap<(u32, u64), pb::FetchedRecord> = HashMap::new();
    for partition in 0..4 {
        for record in fetch_all(&mut log, "keyed", partition, 0).await? {
            stored.insert((partition, record.offset), record);
        }
    }
    assert_eq!(stored.len(), 10_000, "records stored");
    let distinct: BTreeSet<_> = written.iter().map(|w| (w.partition, w.offset)).collect();
    assert_eq!(distinct.len(), 10_000, "every record has its own offset");
    let mut partition_of_key: HashMap<String, u32> = HashMap::new();
    for (i, at) in written.iter().enumerate() {
        let record = stored
            .get(&(at.partition, at.offset))
            .with_context(|| format!("nothing stored at {}@{}", at.partition, at.offset))?;
        assert_eq!(value_str(record), format!("value-{i}"));
        assert_eq!(record.headers[0].value, i.to_string().as_bytes());
        let key = text(record.key.as_deref().unwrap_or_default());
        assert_eq!(key, format!("key-{}", i % 97));
        // Equal keys share a partition, and sends of one key are stored in send order.
        let partition = *partition_of_key.entry(key).or_insert(at.partition);
        assert_eq!(partition, at.partition);
    }

    // The client picks the partition the server's partitioner picks for the same key.
    let mut checked = 0;
    for (key, partition) in &partition_of_key {
        let response = log
            .produce(pb::ProduceRequest {
                topic: "keyed".into(),
                partition: None,
                records: vec![record(Some(key), "server-side", 0)],
                request_id: 0,
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(response.partitions[0].partition, *partition, "key {key}");
        checked += 1;
    }
    assert_eq!(checked, 97);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_errors_fail_only_the_affected_records() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("small", 1).config("max.message.bytes", "1024"))
        .await?;
    let producer = client.producer().build()?;
    let missing = producer.send(ProducerRecord::new("no-such-topic", "x"));
    let no_partition = producer.send(ProducerRecord::new("small", "x").partition(5));
    let ok_before = producer.send(ProducerRecord::new("small", "before"));
    producer.flush().await?;
    // A failed request fails its whole batch; flushing puts the next record in another.
    let too_big = producer.send(ProducerRecord::new("small", vec![b'x'; 4096]));
    producer.flush().await?;
    let ok_after = producer.send(ProducerRecord::new("small", "after"));

    let err = missing.await.err().context("unknown topic accepted")?;
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
    assert!(matches!(
        no_partition.await,
        Err(sluice_client::Error::InvalidArgument(_))
    ));
    assert_eq!(ok_before.await?.offset, 0);
    let err = too_big.await.err().context("oversized record accepted")?;
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    assert_eq!(ok_after.await?.offset, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_start_at_earliest_offset_timestamp_or_latest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("times", 2))
        .await?;
    let producer = client.producer().build()?;
    let stamped = [
        (0, 1000, "a"),
        (1, 1500, "b"),
        (0, 2000, "c"),
        (1, 2500, "d"),
        (0, 3000, "e"),
    ];
    for (partition, ts, value) in stamped {
        producer
            .send(
                ProducerRecord::new("times", value)
                    .partition(partition)
                    .timestamp_ms(ts),
            )
            .await?;
    }

    let mut earliest = client.consumer("times").start(Position::Earliest).build();
    let mut got = positions(&take(&mut earliest, 5).await?);
    got.sort();
    assert_eq!(
        got,
        [
            (0, 0, "a".into()),
            (0, 1, "c".into()),
            (0, 2, "e".into()),
            (1, 0, "b".into()),
            (1, 1, "d".into())
        ]
    );

    let mut from_offset = client
        .consumer("times")
        .partition(0)
        .start(Position::Offset(1))
        .build();
    assert_eq!(
        positions(&take(&mut from_offset, 2).await?),
        [(0, 1, "c".into()), (0, 2, "e".into())]
    );

    let mut from_time = client
        .consumer("times")
        .start(Position::Timestamp(2000))
        .build();
    let mut got = positions(&take(&mut from_time, 3).await?);
    got.sort();
    assert_eq!(
        got,
        [(0, 1, "c".into()), (0, 2, "e".into()), (1, 1, "d".into())]
    );
    // A timestamp after every record waits for new ones.
    let mut future = client
        .consumer("times")
        .start(Position::Timestamp(9_000_000_000_000))
        .build();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), future.next())
            .await
            .is_err()
    );

    let mut latest = client.consumer("times").build();
    // Nothing stored is returned; the wait also fixes the start position.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), latest.next())
            .await
            .is_err()
    );
    producer
        .send(ProducerRecord::new("times", "f").partition(1))
        .await?;
    assert_eq!(
        positions(&[next_record(&mut latest).await?]),
        [(1, 2, "f".into())]
    );
    assert_eq!(
        positions(&[next_record(&mut future).await?]),
        [(1, 2, "f".into())]
    );

    // Seek moves one partition back; partition 1 goes on where it was, so its live record
    // "f" may come before or between the replayed ones.
    earliest.seek(0, 1).await?;
    let mut got = positions(&take(&mut earliest, 3).await?);
    got.sort();
    assert_eq!(
        got,
        [(0, 1, "c".into()), (0, 2, "e".into()), (1, 2, "f".into())]
    );
    assert_eq!(earliest.position(0), Some(3));
    assert!(earliest.seek(7, 0).await.is_err());

    let mut missing = client.consumer("missing").build();
    let err = missing.next().await.err().context("unknown topic read")?;
    assert_eq!(err.code(), Some(Code::NotFound));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_tails_records_as_they_are_produced() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("live", 3))
        .await?;
    let mut consumer = client.consumer("live").start(Position::Earliest).build();

    let producer = client.producer().linger(Duration::from_millis(1)).build()?;
    let writer = tokio::spawn(async move {
        let mut written = Vec::new();
        for i in 0..300 {
            let at = producer
                .send(ProducerRecord::new("live", format!("{i}")).key(format!("k{}", i % 7)))
                .await?;
            written.push((at.partition, at.offset, i.to_string()));
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        anyhow::Ok(written)
    });
    let mut received = positions(&take(&mut consumer, 300).await?);
    let mut written = writer.await??;
    // Per partition, records arrive in offset order.
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for (partition, offset, _) in &received {
        if let Some(previous) = last.insert(*partition, *offset) {
            ensure!(
                *offset == previous + 1,
                "gap or reorder in partition {partition}"
            );
        }
    }
    received.sort();
    written.sort();
    assert_eq!(received, written);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_survive_a_server_restart() -> Result<()> {
    const RECORDS: usize = 3000;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = server.addr.clone();
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("durable", 2))
        .await?;

    let mut consumer = client.consumer("durable").start(Position::Earliest).build();
    let reader = tokio::spawn(async move { take(&mut consumer, RECORDS).await });

    let producer = client
        .producer()
        .linger(Duration::from_millis(1))
        .batch_size(2048)
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()?;
    let writer = tokio::spawn(async move {
        let mut sends = Vec::new();
        for i in 0..RECORDS {
            let partition = u32::try_from(i % 2)?;
            sends.push(
                producer.send(ProducerRecord::new("durable", i.to_string()).partition(partition)),
            );
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let mut written = Vec::new();
        for (i, send) in sends.into_iter().enumerate() {
            let at = send.await.with_context(|| format!("record {i}"))?;
            written.push((at.partition, at.offset, i.to_string()));
        }
        anyhow::Ok(written)
    });

    // Restart while records are being produced and consumed.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = server.stop()?;
    ensure!(status.success(), "server exited with {status}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = Server::start_on(dir.path(), &addr, &[])?;

    let written = tokio::time::timeout(PATIENCE, writer).await???;
    let received = positions(&tokio::time::timeout(PATIENCE, reader).await???);

    let mut log = server.log().await?;
    let mut stored = Vec::new();
    for partition in 0..2 {
        for record in fetch_all(&mut log, "durable", partition, 0).await? {
            stored.push((partition, record.offset, value_str(&record)));
        }
    }
    // Every acknowledged record is stored once, where its send said, and nothing else is.
    let mut acknowledged = written.clone();
    acknowledged.sort();
    assert_eq!(stored, acknowledged);
    // Order within a partition survived the retries.
    for partition in 0..2 {
        let values: Vec<usize> = stored
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, _, v)| v.parse())
            .collect::<Result<_, _>>()?;
        ensure!(
            values.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} out of order"
        );
    }
    // The consumer saw every record exactly once.
    let mut seen = received.clone();
    seen.sort();
    assert_eq!(seen, stored);
    Ok(())
}

/// Reads group events until `records` records arrived, returning the records and the
/// partitions assigned.
async fn consume_group(
    consumer: &mut sluice_client::GroupConsumer,
    records: usize,
) -> Result<(Vec<ConsumerRecord>, BTreeSet<TopicPartition>)> {
    let mut got = Vec::new();
    let mut assigned = BTreeSet::new();
    while got.len() < records {
        match tokio::time::timeout(PATIENCE, consumer.next())
            .await
            .context("no group event in time")??
        {
            GroupEvent::Record(record) => got.push(record),
            GroupEvent::Assigned(partitions) => assigned.extend(partitions),
            GroupEvent::Revoked(partitions) => {
                for partition in &partitions {
                    assigned.remove(partition);
                }
            }
        }
    }
    Ok((got, assigned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_share_partitions_and_resume_at_committed_offsets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("shared", 4))
        .await?;
    let producer = client.producer().build()?;
    for i in 0..40u32 {
        producer
            .send(ProducerRecord::new("shared", i.to_string()).partition(i % 4))
            .await?;
    }
    let member = || {
        client
            .group_consumer("workers")
            .topic("shared")
            .offset_reset(OffsetReset::Earliest)
            .session_timeout(Duration::from_secs(2))
            .rebalance_timeout(Duration::from_secs(2))
            .auto_commit_interval(None)
            .build()
    };

    // Alone, one member gets every partition and every record.
    let mut first = member();
    let (records, assigned) = consume_group(&mut first, 40).await?;
    assert_eq!(assigned.len(), 4);
    let mut values: Vec<u32> = records
        .iter()
        .map(|r| text(&r.value).parse())
        .collect::<Result<_, _>>()?;
    values.sort_unstable();
    assert_eq!(values, (0..40).collect::<Vec<_>>());
    first.commit().await?;
    let described = client.admin().describe_group("workers").await?;
    assert!(
        described.partitions.iter().all(|p| p.lag == 0),
        "{described:?}"
    );

    // A second member takes half of the partitions; between them they read new records once.
    let mut second = member();
    let both = async {
        let (a, b) = tokio::join!(
            async {
                // The first member keeps reading (and hands over) while the second joins.
                let mut records = Vec::new();
                let mut owned = first.assignment().into_iter().collect::<BTreeSet<_>>();
                loop {
                    match tokio::time::timeout(Duration::from_secs(3), first.next()).await {
                        Err(_elapsed) => break,
                        Ok(event) => match event? {
                            GroupEvent::Record(record) => records.push(record),
                            GroupEvent::Assigned(partitions) => owned.extend(partitions),
                            GroupEvent::Revoked(partitions) => {
                                first.commit().await?;
                                for partition in &partitions {
                                    owned.remove(partition);
                                }
                            }
                        },
                    }
                }
                anyhow::Ok((records, owned))
            },
            async {
                let mut assigned = BTreeSet::new();
                let deadline = tokio::time::Instant::now() + PATIENCE;
                while assigned.len() < 2 {
                    let event = tokio::time::timeout_at(deadline, second.next())
                        .await
                        .context("second member got no partitions")??;
                    if let GroupEvent::Assigned(partitions) = event {
                        assigned.extend(partitions);
                    }
                }
                anyhow::Ok(assigned)
            }
        );
        anyhow::Ok((a?, b?))
    };
    let ((_, first_owned), second_owned) = both.await?;
    assert_eq!(first_owned.len(), 2, "{first_owned:?}");
    assert_eq!(second_owned.len(), 2, "{second_owned:?}");
    assert!(first_owned.is_disjoint(&second_owned));

    for i in 40..80u32 {
        producer
            .send(ProducerRecord::new("shared", i.to_string()).partition(i % 4))
            .await?;
    }
    let (mine, theirs) = tokio::join!(
        consume_group(&mut first, 20),
        consume_group(&mut second, 20)
    );
    let mut values: Vec<u32> = mine?
        .0
        .iter()
        .chain(theirs?.0.iter())
        .map(|r| text(&r.value).parse())
        .collect::<Result<_, _>>()?;
    values.sort_unstable();
    assert_eq!(values, (40..80).collect::<Vec<_>>());
    first.commit().await?;
    second.commit().await?;
    first.close().await?;
    second.close().await?;

    // A new member resumes after the committed records: the next record is new.
    producer
        .send(ProducerRecord::new("shared", "80").partition(0))
        .await?;
    let mut third = member();
    let (records, _) = consume_group(&mut third, 1).await?;
    assert_eq!(text(&records[0].value), "80");
    third.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_rejoins_after_a_server_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let addr = server.addr.clone();
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("restart", 1))
        .await?;
    let producer = client.producer().build()?;
    for i in 0..10 {
        producer
            .send(ProducerRecord::new("restart", i.to_string()))
            .await?;
    }
    let mut member = client
        .group_consumer("restarting")
        .topic("restart")
        .offset_reset(OffsetReset::Earliest)
        .auto_commit_interval(None)
        .build();
    let (records, _) = consume_group(&mut member, 10).await?;
    assert_eq!(records.last().map(|r| r.offset), Some(9));
    member.commit().await?;

    let status = server.stop()?;
    ensure!(status.success(), "server exited with {status}");
    let _server = Server::start_on(dir.path(), &addr, &[])?;
    producer.send(ProducerRecord::new("restart", "10")).await?;

    // The member loses its partition with the connection, rejoins and resumes at 10.
    let mut lost = false;
    let record = loop {
        match tokio::time::timeout(PATIENCE, member.next())
            .await
            .context("no event after the restart")??
        {
            GroupEvent::Revoked(_) => lost = true,
            GroupEvent::Assigned(_) => {}
            GroupEvent::Record(record) => break record,
        }
    };
    if !lost {
        bail!("the lost partition was not reported");
    }
    assert_eq!((record.offset, text(&record.value)), (10, "10".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_buffer_holds_records_back_in_order() -> Result<()> {
    const BUFFER: usize = 16 << 10;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), &[])?;
    let client = connect(&server).await?;
    client
        .admin()
        .create_topic(NewTopic::new("buffered", 1))
        .await?;
    let producer = client
        .producer()
        .batch_size(4096)
        .max_buffered_bytes(BUFFER)
        .build()?;
    // Far more than the buffer holds, all sent before any is awaited.
    let value = "v".repeat(1000);
    let sends: Vec<_> = (0..300)
        .map(|i| producer.send(ProducerRecord::new("buffered", format!("{i:04}{value}"))))
        .collect();
    let mut most = 0;
    for (i, send) in sends.into_iter().enumerate() {
        most = most.max(producer.buffered_bytes());
        let written = send.await?;
        assert_eq!(
            (written.partition, written.offset),
            (0, i as u64),
            "send order kept"
        );
    }
    ensure!(most > 0, "the buffer never held anything");
    // At most the buffer and the one record that filled it (1004 bytes plus framing).
    ensure!(
        most <= BUFFER + 1100,
        "{most} bytes buffered, over {BUFFER}"
    );
    assert_eq!(producer.buffered_bytes(), 0);
    Ok(())
}
