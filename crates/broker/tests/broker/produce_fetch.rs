//! Produce and fetch semantics: partitioning, ordering, timestamps, long-poll, offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::common::{TestBroker, decoded, fetch_all, overrides, values};
use sluice_broker::{BrokerError, NewRecord, OffsetSpec, partition_for_key};
use sluice_storage::batch::RecordBatchBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_by_murmur2_in_order() {
    let t = TestBroker::new();
    t.broker
        .create_topic("keyed", 4, &overrides(&[("flush.policy", "none")]))
        .await
        .expect("create");
    let keys = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut sent: BTreeMap<u32, Vec<(String, String)>> = BTreeMap::new();
    for round in 0..3 {
        let batch: Vec<NewRecord> = keys
            .iter()
            .map(|k| NewRecord::new(format!("{k}-{round}")).with_key(*k))
            .collect();
        let appended = t
            .broker
            .produce("keyed", None, batch)
            .await
            .expect("produce");
        let partitions: Vec<u32> = appended.iter().map(|a| a.partition).collect();
        let mut sorted = partitions.clone();
        sorted.sort_unstable();
        assert_eq!(partitions, sorted, "result sorted by partition");
        assert_eq!(
            appended.iter().map(|a| a.record_count).sum::<u32>(),
            keys.len() as u32
        );
        for k in keys {
            sent.entry(partition_for_key(k.as_bytes(), 4))
                .or_default()
                .push((k.to_owned(), format!("{k}-{round}")));
        }
    }
    for partition in 0..4 {
        let got: Vec<(String, String)> = fetch_all(&t.broker, "keyed", partition, 0)
            .await
            .into_iter()
            .map(|(_, k, v)| (k.expect("keyed"), v))
            .collect();
        assert_eq!(
            got,
            sent.remove(&partition).unwrap_or_default(),
            "partition {partition}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_requests_rotate_over_partitions() {
    let t = TestBroker::new();
    t.broker
        .create_topic("free", 3, &overrides(&[]))
        .await
        .expect("create");
    let mut seen = Vec::new();
    for i in 0..3 {
        let appended = t
            .broker
            .produce("free", None, values(&["a", "b", &format!("{i}")]))
            .await
            .expect("produce");
        assert_eq!(
            appended.len(),
            1,
            "one request's keyless records stay together"
        );
        assert_eq!(appended[0].record_count, 3);
        seen.push(appended[0].partition);
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_timestamps_get_the_broker_clock() {
    let t = TestBroker::new();
    t.broker
        .create_topic("time", 1, &overrides(&[]))
        .await
        .expect("create");
    let before = now_ms();
    t.broker
        .produce(
            "time",
            Some(0),
            vec![
                NewRecord::new("stamped"),
                NewRecord::new("given").with_timestamp(1_000),
                NewRecord::new("headers")
                    .with_header("h1", "v1")
                    .with_header("h2", ""),
            ],
        )
        .await
        .expect("produce");
    let after = now_ms();
    let fetched = t
        .broker
        .fetch("time", 0, 0, 0, Duration::ZERO)
        .await
        .expect("fetch");
    let records: Vec<_> = fetched.records().map(|r| r.expect("record")).collect();
    assert!((before..=after).contains(&records[0].timestamp_ms));
    assert_eq!(records[1].timestamp_ms, 1_000);
    assert_eq!(
        records[2].timestamp_ms, records[0].timestamp_ms,
        "one clock read per request"
    );
    assert_eq!(records[2].headers.len(), 2);
    assert_eq!(&records[2].headers[0].0[..], b"h1");
    assert_eq!(records[2].headers[1].1.as_deref(), Some(&b""[..]));

    // Timestamp lookups see the stamps.
    let lookup = |ts| t.broker.list_offset("time", 0, OffsetSpec::Timestamp(ts));
    assert_eq!(lookup(0).expect("lookup"), Some(0));
    assert_eq!(lookup(before).expect("lookup"), Some(0));
    assert_eq!(lookup(after + 60_000).expect("lookup"), None);
    assert_eq!(
        t.broker
            .list_offset("time", 0, OffsetSpec::Earliest)
            .expect("earliest"),
        Some(0)
    );
    assert_eq!(
        t.broker
            .list_offset("time", 0, OffsetSpec::Latest)
            .expect("latest"),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_the_middle_of_a_batch_and_respects_max_bytes() {
    let t = TestBroker::new();
    t.broker
        .create_topic("mid", 1, &overrides(&[]))
        .await
        .expect("create");
    for chunk in [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]] {
        t.broker
            .produce("mid", Some(0), values(&chunk))
            .await
            .expect("produce");
    }
    let fetched = t
        .broker
        .fetch("mid", 0, 4, 1, Duration::ZERO)
        .await
        .expect("fetch");
    // max_bytes 1: still one whole batch, records before the offset skipped.
    assert_eq!(
        decoded(&fetched)
            .into_iter()
            .map(|(o, _, v)| (o, v))
            .collect::<Vec<_>>(),
        [(4, "e".to_owned()), (5, "f".to_owned())]
    );
    assert_eq!(fetched.next_offset(), 6);
    assert_eq!(
        (
            fetched.offset,
            fetched.high_watermark,
            fetched.log_start_offset
        ),
        (4, 9, 0)
    );

    let all = t
        .broker
        .fetch("mid", 0, 0, 0, Duration::ZERO)
        .await
        .expect("fetch");
    assert_eq!(decoded(&all).len(), 9);
    assert_eq!(all.next_offset(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_append() {
    let t = TestBroker::new();
    t.broker
        .create_topic("poll", 2, &overrides(&[]))
        .await
        .expect("create");
    let producer = t.broker.clone();
    let started = Instant::now();
    let produce = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        producer.produce("poll", Some(1), values(&["wake"])).await
    });
    // Two waiters on the same partition are both woken by one append.
    let (first, second) = tokio::join!(
        t.broker.fetch("poll", 1, 0, 0, Duration::from_secs(20)),
        t.broker.fetch("poll", 1, 0, 0, Duration::from_secs(20)),
    );
    let elapsed = started.elapsed();
    produce.await.expect("join").expect("produce");
    for fetched in [first, second] {
        let fetched = fetched.expect("fetch");
        assert_eq!(decoded(&fetched), [(0, None, "wake".to_owned())]);
        assert_eq!(fetched.high_watermark, 1);
    }
    assert!(
        elapsed >= Duration::from_millis(90),
        "returned before the append: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "not woken by the append: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_ignores_other_partitions_and_times_out_empty() {
    let t = TestBroker::new();
    t.broker
        .create_topic("quiet", 2, &overrides(&[]))
        .await
        .expect("create");
    let producer = t.broker.clone();
    let noise = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        producer.produce("quiet", Some(0), values(&["other"])).await
    });
    let started = Instant::now();
    let fetched = t
        .broker
        .fetch("quiet", 1, 0, 0, Duration::from_millis(300))
        .await
        .expect("fetch");
    let elapsed = started.elapsed();
    noise.await.expect("join").expect("produce");
    assert!(fetched.batches.is_empty());
    assert_eq!(fetched.next_offset(), 0);
    assert_eq!(fetched.high_watermark, 0);
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wait_is_capped_by_the_limit() {
    let t = TestBroker::with(|c| c.limits.max_wait = Duration::from_millis(100));
    t.broker
        .create_topic("capped", 1, &overrides(&[]))
        .await
        .expect("create");
    let started = Instant::now();
    let fetched = t
        .broker
        .fetch("capped", 0, 0, 0, Duration::from_secs(60))
        .await
        .expect("fetch");
    assert!(fetched.batches.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_ends_its_long_polls() {
    let t = TestBroker::new();
    t.broker
        .create_topic("doomed", 1, &overrides(&[]))
        .await
        .expect("create");
    let fetcher = t.broker.clone();
    let waiting = tokio::spawn(async move {
        fetcher
            .fetch("doomed", 0, 0, 0, Duration::from_secs(20))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    t.broker.delete_topic("doomed").await.expect("delete");
    let result = waiting.await.expect("join");
    assert!(
        matches!(result, Err(BrokerError::TopicNotFound { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls_and_refuses_requests() {
    let t = TestBroker::new();
    t.broker
        .create_topic("s", 1, &overrides(&[]))
        .await
        .expect("create");
    t.broker
        .produce("s", None, values(&["kept"]))
        .await
        .expect("produce");
    let fetcher = t.broker.clone();
    let waiting =
        tokio::spawn(async move { fetcher.fetch("s", 0, 1, 0, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.broker.shutdown().await.expect("shutdown");
    let result = waiting.await.expect("join");
    assert!(
        matches!(result, Err(BrokerError::ShuttingDown)),
        "{result:?}"
    );
    assert!(matches!(
        t.broker.produce("s", None, values(&["late"])).await,
        Err(BrokerError::ShuttingDown)
    ));
    assert!(matches!(
        t.broker.fetch("s", 0, 0, 0, Duration::ZERO).await,
        Err(BrokerError::ShuttingDown)
    ));
    assert!(matches!(
        t.broker.create_topic("new", 1, &overrides(&[])).await,
        Err(BrokerError::ShuttingDown)
    ));
    t.broker
        .shutdown()
        .await
        .expect("second shutdown is a no-op");
    let t = t.restart();
    assert_eq!(fetch_all(&t.broker, "s", 0, 0).await.len(), 1);
}

/// A client-encoded batch of `values`, as a Kafka producer would send it: base offset 0,
/// producer timestamps from `first_ms` on, one header on each record.
fn client_batch(values: &[&str], first_ms: i64) -> BytesMut {
    let mut builder = RecordBatchBuilder::new();
    for (i, value) in values.iter().enumerate() {
        let header = (&b"origin"[..], Some(&b"client"[..]));
        builder
            .push(
                first_ms + i as i64,
                Some(format!("k{i}").as_bytes()),
                Some(value.as_bytes()),
                std::iter::once(header),
            )
            .expect("push");
    }
    builder.finish().expect("a batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_batches_are_stored_as_sent_with_only_their_base_offsets_rewritten() {
    let t = TestBroker::new();
    t.broker
        .create_topic("raw", 2, &overrides(&[]))
        .await
        .expect("create");
    t.broker
        .produce("raw", Some(1), [NewRecord::new("before").with_timestamp(1)])
        .await
        .expect("record produce");
    let first = client_batch(&["a", "b", "c"], 5_000);
    let second = client_batch(&["d"], 6_000);
    let mut both = first.clone();
    both.extend_from_slice(&second);
    let appended = t
        .broker
        .produce_batches("raw", 1, both.clone())
        .await
        .expect("raw produce");
    assert_eq!(
        (
            appended.partition,
            appended.base_offset,
            appended.record_count
        ),
        (1, 1, 4)
    );
    let pending = t
        .broker
        .submit_batches("raw", 1, client_batch(&["e", "f"], 7_000))
        .expect("queued");
    let after = t
        .broker
        .produce("raw", Some(1), values(&["after"]))
        .await
        .expect("record produce");
    let queued_first = pending.wait().await.expect("raw produce");
    assert_eq!(
        (queued_first[0].base_offset, queued_first[0].record_count),
        (5, 2),
        "queued in call order"
    );
    assert_eq!(after[0].base_offset, 7);

    let fetched = t
        .broker
        .fetch("raw", 1, 1, 0, Duration::ZERO)
        .await
        .expect("fetch");
    // Byte for byte what the client sent, except the base offsets (bytes 0..8 of each batch).
    let stored = &fetched.batches[..both.len()];
    assert_eq!(stored[..8], 1u64.to_be_bytes());
    assert_eq!(stored[8..first.len()], first[8..]);
    assert_eq!(stored[first.len()..first.len() + 8], 4u64.to_be_bytes());
    assert_eq!(stored[first.len() + 8..], second[8..]);
    let records: Vec<_> = fetched.records().map(|r| r.expect("record")).collect();
    let seen: Vec<(u64, i64, &[u8])> = records
        .iter()
        .map(|r| {
            (
                r.offset,
                r.timestamp_ms,
                r.value.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen[..6],
        [
            (1, 5_000, &b"a"[..]),
            (2, 5_001, b"b"),
            (3, 5_002, b"c"),
            (4, 6_000, b"d"),
            (5, 7_000, b"e"),
            (6, 7_001, b"f"),
        ]
    );
    assert_eq!(records[0].key.as_deref(), Some(&b"k0"[..]));
    assert_eq!(&records[0].headers[0].0[..], b"origin");
    assert_eq!(
        t.broker
            .list_offset("raw", 1, OffsetSpec::Timestamp(6_000))
            .expect("lookup"),
        Some(4),
        "the producer's timestamps are indexed"
    );
    let info = t.broker.describe_topic("raw").expect("describe");
    assert_eq!(info.partitions[1].traffic.records_in, 8);
    assert_eq!(
        info.partitions[0].log_end_offset, 0,
        "only partition 1 written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_batch_with_a_bad_crc_is_refused_and_leaves_no_trace() {
    let t = TestBroker::new();
    t.broker
        .create_topic("crc", 1, &overrides(&[]))
        .await
        .expect("create");
    let good = client_batch(&["good"], 1_000);
    let mut bad = client_batch(&["bad"], 2_000);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let mut mixed = good.clone();
    mixed.extend_from_slice(&bad);
    let err = t
        .broker
        .produce_batches("crc", 0, mixed)
        .await
        .expect_err("corrupted in transit");
    match &err {
        BrokerError::InvalidBatch { field, reason } => {
            assert_eq!(*field, "crc", "{err}");
            assert!(reason.contains("give"), "{reason}");
        }
        other => panic!("expected InvalidBatch, got {other:?}"),
    }
    assert!(err.to_string().contains("crc"), "{err}");
    // Nothing of the request was written, and the partition takes the next one.
    let appended = t
        .broker
        .produce_batches("crc", 0, good)
        .await
        .expect("a good batch");
    assert_eq!(appended.base_offset, 0);
    assert!(t.broker.partition_faults().is_empty());
    assert_eq!(fetch_all(&t.broker, "crc", 0, 0).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_batches_are_checked_against_the_topic_and_queue_nothing_when_refused() {
    let t = TestBroker::new();
    t.broker
        .create_topic("small", 1, &overrides(&[("max.message.bytes", "200")]))
        .await
        .expect("create");
    let big = client_batch(&[&"x".repeat(150)], 1);
    let err = t.broker.submit_batches("small", 0, big.clone());
    assert!(
        matches!(err, Err(BrokerError::BatchTooLarge { size, limit: 200 }) if size == big.len()),
        "{err:?}"
    );
    let mut unknown = client_batch(&["zipped"], 1);
    unknown[22] |= 5; // attributes (bytes 21..23): codec 5, which Kafka does not define
    let err = t.broker.submit_batches("small", 0, unknown).map(|_| ());
    assert!(
        matches!(&err, Err(BrokerError::InvalidBatch { field: "attributes", reason }) if reason.contains("codec 5")),
        "{err:?}"
    );
    let err = t
        .broker
        .submit_batches("small", 0, BytesMut::new())
        .map(|_| ());
    assert!(matches!(err, Err(BrokerError::EmptyBatch)), "{err:?}");
    let err = t
        .broker
        .submit_batches("small", 1, client_batch(&["a"], 1))
        .map(|_| ());
    assert!(
        matches!(
            err,
            Err(BrokerError::PartitionNotFound { partition: 1, .. })
        ),
        "{err:?}"
    );
    let err = t
        .broker
        .submit_batches("none", 0, client_batch(&["a"], 1))
        .map(|_| ());
    assert!(
        matches!(err, Err(BrokerError::TopicNotFound { .. })),
        "{err:?}"
    );
    assert_eq!(
        t.broker
            .list_offset("small", 0, OffsetSpec::Latest)
            .expect("latest"),
        Some(0),
        "nothing was queued"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970")
}
