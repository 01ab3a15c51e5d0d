//! Idempotent producers: producer ids, duplicates, fencing, sequence checks, and the state
//! kept across restarts, crashes and retention.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice_broker::{Broker, BrokerConfig, BrokerError, ErrorKind, NewRecord};
use sluice_storage::batch::RecordBatchBuilder;
use tempfile::TempDir;

use crate::common::{config, fetch_all, overrides};

/// A broker on a temporary directory, reopened with the same settings.
struct Node {
    dir: TempDir,
    adjust: fn(&mut BrokerConfig),
    broker: Arc<Broker>,
}

impl Node {
    fn new(adjust: fn(&mut BrokerConfig)) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = open(dir.path(), adjust);
        Node {
            dir,
            adjust,
            broker,
        }
    }

    /// Shuts the broker down cleanly and opens it again.
    async fn restart(self) -> Node {
        self.broker.shutdown().await.expect("shutdown");
        self.reopen()
    }

    /// Drops the broker without shutting it down (no log is closed, no snapshot written)
    /// and opens it again.
    async fn crash(self) -> Node {
        let Node {
            dir,
            adjust,
            broker,
        } = self;
        drop(broker);
        // The writers give their threads back after 10 ms idle, and background steps end.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let broker = open(dir.path(), adjust);
        Node {
            dir,
            adjust,
            broker,
        }
    }

    /// Opens the broker again (after a shutdown).
    fn reopen(self) -> Node {
        let Node {
            dir,
            adjust,
            broker,
        } = self;
        drop(broker);
        let broker = open(dir.path(), adjust);
        Node {
            dir,
            adjust,
            broker,
        }
    }

    fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.dir
            .path()
            .join("topics")
            .join(topic)
            .join(partition.to_string())
    }
}

fn open(dir: &Path, adjust: fn(&mut BrokerConfig)) -> Arc<Broker> {
    let mut config = config(dir);
    adjust(&mut config);
    Broker::open(config).expect("open broker")
}

fn defaults(_: &mut BrokerConfig) {}

/// A batch of `values` from producer `id` at `epoch`, its first record at sequence `seq`.
fn batch(id: i64, epoch: i16, seq: i32, values: &[&str]) -> BytesMut {
    let mut builder = RecordBatchBuilder::new().with_producer(id, epoch, seq);
    for (i, value) in values.iter().enumerate() {
        builder
            .push(
                1_000 + i as i64,
                None,
                Some(value.as_bytes()),
                std::iter::empty(),
            )
            .expect("push");
    }
    builder.finish().expect("a batch")
}

/// `a` then `b`, in one request.
fn both(a: BytesMut, b: BytesMut) -> BytesMut {
    let mut out = a;
    out.extend_from_slice(&b);
    out
}

/// (base offset, record count) of a produce.
async fn produce(broker: &Broker, topic: &str, bytes: BytesMut) -> Result<(u64, u32), BrokerError> {
    broker
        .produce_batches(topic, 0, bytes)
        .await
        .map(|a| (a.base_offset, a.record_count))
}

/// Every value of partition 0, in offset order.
async fn stored(broker: &Broker, topic: &str) -> Vec<String> {
    fetch_all(broker, topic, 0, 0)
        .await
        .into_iter()
        .map(|(_, _, value)| value)
        .collect()
}

async fn topic(broker: &Broker, name: &str, config: &[(&str, &str)]) {
    broker
        .create_topic(name, 1, &overrides(config))
        .await
        .expect("create topic");
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_is_acknowledged_with_its_offset_and_stored_once() {
    let node = Node::new(defaults);
    let b = &node.broker;
    topic(b, "t", &[]).await;
    let id = b.init_producer_id(None).await.expect("producer id");
    assert_eq!(id.epoch, 0);
    let p = id.producer_id;
    assert_eq!(
        produce(b, "t", batch(p, 0, 0, &["a", "b"])).await.ok(),
        Some((0, 2))
    );
    b.produce("t", Some(0), [NewRecord::new("plain")])
        .await
        .expect("plain produce");
    for (seq, value) in [(2, "c"), (3, "d"), (4, "e"), (5, "f")] {
        produce(b, "t", batch(p, 0, seq, &[value]))
            .await
            .expect("next batch");
    }
    // The first batch is the fifth last of its producer: still remembered.
    assert_eq!(
        produce(b, "t", batch(p, 0, 0, &["a", "b"])).await.ok(),
        Some((0, 2))
    );
    assert_eq!(
        produce(b, "t", batch(p, 0, 4, &["e"])).await.ok(),
        Some((5, 1))
    );
    assert_eq!(
        stored(b, "t").await,
        ["a", "b", "plain", "c", "d", "e", "f"]
    );
    let info = b.describe_topic("t").expect("describe");
    assert_eq!(
        info.partitions[0].traffic.records_in, 7,
        "duplicates are not counted"
    );
    // One more batch pushes the first out of the five remembered.
    produce(b, "t", batch(p, 0, 6, &["g"]))
        .await
        .expect("next batch");
    let err = produce(b, "t", batch(p, 0, 0, &["a", "b"])).await;
    assert!(
        matches!(
            err,
            Err(BrokerError::OutOfOrderSequence {
                sequence: 0,
                expected: 7,
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_order_batch_is_refused_and_not_stored() {
    let node = Node::new(defaults);
    let b = &node.broker;
    topic(b, "t", &[]).await;
    let p = b
        .init_producer_id(None)
        .await
        .expect("producer id")
        .producer_id;
    // A producer the partition does not know may start at any sequence.
    produce(b, "t", batch(p, 0, 10, &["a", "b"]))
        .await
        .expect("first");
    let err = produce(b, "t", batch(p, 0, 13, &["gap"]))
        .await
        .expect_err("gap");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        matches!(
            &err,
            BrokerError::OutOfOrderSequence { topic, partition: 0, producer_id, epoch: 0, sequence: 13, expected: 12 }
                if topic == "t" && *producer_id == p
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("12 was expected"), "{err}");
    assert_eq!(stored(b, "t").await, ["a", "b"]);
    assert_eq!(
        produce(b, "t", batch(p, 0, 12, &["c"])).await.ok(),
        Some((2, 1))
    );
    // A request whose second batch leaves a gap stores nothing, not even the first.
    let gapped = both(batch(p, 0, 13, &["d"]), batch(p, 0, 15, &["e"]));
    let err = produce(b, "t", gapped)
        .await
        .expect_err("gap in the second batch");
    assert!(
        matches!(
            err,
            BrokerError::OutOfOrderSequence {
                sequence: 15,
                expected: 14,
                ..
            }
        ),
        "{err:?}"
    );
    let two = both(batch(p, 0, 13, &["d"]), batch(p, 0, 14, &["e"]));
    assert_eq!(produce(b, "t", two.clone()).await.ok(), Some((3, 2)));
    assert_eq!(
        produce(b, "t", two).await.ok(),
        Some((3, 2)),
        "a whole retry"
    );
    let mixed = both(batch(p, 0, 14, &["e"]), batch(p, 0, 15, &["f"]));
    let err = produce(b, "t", mixed)
        .await
        .expect_err("a retry mixed with a new batch");
    assert!(
        matches!(&err, BrokerError::InvalidBatch { field: "base_sequence", reason } if reason.contains("batch 1 is new")),
        "{err:?}"
    );
    assert_eq!(stored(b, "t").await, ["a", "b", "c", "d", "e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_epoch_is_fenced_and_a_new_epoch_starts_at_zero() {
    let node = Node::new(defaults);
    let b = &node.broker;
    topic(b, "t", &[]).await;
    let p = b
        .init_producer_id(None)
        .await
        .expect("producer id")
        .producer_id;
    produce(b, "t", batch(p, 0, 0, &["a", "b", "c"]))
        .await
        .expect("epoch 0");
    let err = produce(b, "t", batch(p, 1, 3, &["x"]))
        .await
        .expect_err("new epoch at 3");
    assert!(
        matches!(
            err,
            BrokerError::OutOfOrderSequence {
                epoch: 1,
                sequence: 3,
                expected: 0,
                ..
            }
        ),
        "{err:?}"
    );
    produce(b, "t", batch(p, 1, 0, &["d"]))
        .await
        .expect("epoch 1 at 0");
    let err = produce(b, "t", batch(p, 0, 3, &["zombie"]))
        .await
        .expect_err("fenced");
    assert_eq!(err.kind(), ErrorKind::Fenced);
    assert!(
        matches!(
            err,
            BrokerError::ProducerFenced {
                epoch: 0,
                current_epoch: 1,
                ..
            }
        ),
        "{err:?}"
    );
    // A retry from the old epoch is fenced too, not answered as a duplicate.
    let err = produce(b, "t", batch(p, 0, 0, &["a", "b", "c"])).await;
    assert!(
        matches!(err, Err(BrokerError::ProducerFenced { .. })),
        "{err:?}"
    );
    assert_eq!(stored(b, "t").await, ["a", "b", "c", "d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_judged_in_the_order_they_are_written() {
    let node = Node::new(defaults);
    let b = &node.broker;
    topic(b, "t", &[]).await;
    let p = b
        .init_producer_id(None)
        .await
        .expect("producer id")
        .producer_id;
    let values: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    let pending: Vec<_> = (0..40)
        .map(|i| {
            b.submit_batches("t", 0, batch(p, 0, i, &[values[i as usize].as_str()]))
                .expect("queued")
        })
        .collect();
    for (i, request) in pending.into_iter().enumerate() {
        let appended = request.wait().await.expect("in order");
        assert_eq!(appended[0].base_offset, i as u64);
    }
    // A gap in the pipeline: the batch after it is refused, and so is every later one,
    // since none of them follows what was stored.
    let pending: Vec<_> = [40, 41, 43, 44]
        .into_iter()
        .map(|seq| {
            b.submit_batches("t", 0, batch(p, 0, seq, &["w"]))
                .expect("queued")
        })
        .collect();
    let results: Vec<_> = futures_join(pending).await;
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(
        results[2..]
            .iter()
            .all(|r| matches!(r, Err(BrokerError::OutOfOrderSequence { expected: 42, .. }))),
        "{results:?}"
    );
    assert_eq!(stored(b, "t").await.len(), 42);
}

/// Waits for every request, in order.
async fn futures_join(
    pending: Vec<sluice_broker::PendingProduce>,
) -> Vec<Result<u64, BrokerError>> {
    let mut out = Vec::new();
    for request in pending {
        out.push(request.wait().await.map(|a| a[0].base_offset));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_restart_or_a_crash_is_still_deduplicated() {
    let node = Node::new(defaults);
    topic(&node.broker, "t", &[]).await;
    let p = node
        .broker
        .init_producer_id(None)
        .await
        .expect("id")
        .producer_id;
    produce(&node.broker, "t", batch(p, 0, 0, &["a"]))
        .await
        .expect("a");
    produce(&node.broker, "t", batch(p, 0, 1, &["b", "c"]))
        .await
        .expect("b");

    let node = node.restart().await;
    assert!(
        node.partition_dir("t", 0).join("producer-state").exists(),
        "a clean close writes the snapshot"
    );
    let b = &node.broker;
    assert_eq!(
        produce(b, "t", batch(p, 0, 1, &["b", "c"])).await.ok(),
        Some((1, 2))
    );
    assert_eq!(
        produce(b, "t", batch(p, 0, 0, &["a"])).await.ok(),
        Some((0, 1))
    );
    produce(b, "t", batch(p, 0, 3, &["d"])).await.expect("d");

    // No close, no new snapshot: the batch after the last one is found by the header scan.
    let node = node.crash().await;
    let b = &node.broker;
    assert_eq!(
        produce(b, "t", batch(p, 0, 3, &["d"])).await.ok(),
        Some((3, 1))
    );
    let err = produce(b, "t", batch(p, 0, 5, &["gap"])).await;
    assert!(
        matches!(
            err,
            Err(BrokerError::OutOfOrderSequence { expected: 4, .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        produce(b, "t", batch(p, 0, 4, &["e"])).await.ok(),
        Some((4, 1))
    );
    assert_eq!(stored(b, "t").await, ["a", "b", "c", "d", "e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_rebuilt_from_the_log() {
    let node = Node::new(defaults);
    topic(&node.broker, "t", &[]).await;
    let p = node
        .broker
        .init_producer_id(None)
        .await
        .expect("id")
        .producer_id;
    produce(&node.broker, "t", batch(p, 0, 0, &["a"]))
        .await
        .expect("a");
    let node = node.restart().await;
    let snapshot = node.partition_dir("t", 0).join("producer-state");
    let mut bytes = std::fs::read(&snapshot).expect("snapshot");
    bytes[10] ^= 0xff;
    std::fs::write(&snapshot, bytes).expect("damage the snapshot");
    let node = node.restart().await;
    let b = &node.broker;
    assert_eq!(
        produce(b, "t", batch(p, 0, 0, &["a"])).await.ok(),
        Some((0, 1))
    );
    assert_eq!(stored(b, "t").await, ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_a_snapshot_saw_but_the_log_lost_are_forgotten() {
    let node = Node::new(defaults);
    topic(&node.broker, "t", &[]).await;
    let p = node
        .broker
        .init_producer_id(None)
        .await
        .expect("id")
        .producer_id;
    produce(&node.broker, "t", batch(p, 0, 0, &["a"]))
        .await
        .expect("a");
    let lost = batch(p, 0, 1, &["lost"]);
    produce(&node.broker, "t", lost.clone())
        .await
        .expect("lost");
    let node = node.restart().await;
    node.broker.shutdown().await.expect("shutdown");
    // The snapshot saw both batches; cut the second off the log (as a power loss under
    // `flush.policy = none` may) and let recovery scan the tail.
    let dir = node.partition_dir("t", 0);
    let segment = dir.join("00000000000000000000.log");
    let len = std::fs::metadata(&segment).expect("segment").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open");
    file.set_len(len - lost.len() as u64)
        .expect("cut the last batch");
    drop(file);
    std::fs::remove_file(dir.join("clean-shutdown")).expect("unclean");
    let node = node.reopen();
    let b = &node.broker;
    // Not a duplicate of a batch that is gone: stored again, where it belongs.
    assert_eq!(produce(b, "t", lost).await.ok(), Some((1, 1)));
    assert_eq!(stored(b, "t").await, ["a", "lost"]);
}

fn small_and_retained(config: &mut BrokerConfig) {
    config.retention_check_interval = Duration::from_millis(50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_what_dedup_needs_through_the_snapshot() {
    let node = Node::new(small_and_retained);
    node.broker.start_background();
    topic(
        &node.broker,
        "t",
        &[
            ("segment.bytes", "1024"),
            ("retention.bytes", "2048"),
            ("flush.policy", "none"),
        ],
    )
    .await;
    let p = node
        .broker
        .init_producer_id(None)
        .await
        .expect("id")
        .producer_id;
    let first = batch(p, 0, 0, &["first"]);
    assert_eq!(
        produce(&node.broker, "t", first.clone()).await.ok(),
        Some((0, 1))
    );
    // Other producers' records roll the log, and retention deletes the first segment.
    for i in 0..40 {
        node.broker
            .produce(
                "t",
                Some(0),
                [NewRecord::new(vec![b'x'; 200]).with_key(format!("{i}"))],
            )
            .await
            .expect("filler");
    }
    let broker = Arc::clone(&node.broker);
    assert!(
        eventually(|| {
            broker
                .describe_topic("t")
                .is_ok_and(|i| i.partitions[0].log_start_offset > 0)
        })
        .await,
        "retention never ran"
    );
    drop(broker);
    let snapshot = node.partition_dir("t", 0).join("producer-state");
    assert!(
        eventually(|| snapshot.exists()).await,
        "no snapshot after the log rolled"
    );
    let second = batch(p, 0, 1, &["second"]);
    let (at, _) = produce(&node.broker, "t", second.clone())
        .await
        .expect("second");

    let node = node.crash().await;
    let b = &node.broker;
    let start = b.describe_topic("t").expect("describe").partitions[0].log_start_offset;
    assert!(start > 0, "the first batch's segment is gone");
    // Known from the snapshot only: its segment was deleted.
    assert_eq!(produce(b, "t", first).await.ok(), Some((0, 1)));
    // Known from the header scan after the snapshot.
    assert_eq!(produce(b, "t", second).await.ok(), Some((at, 1)));
    assert_eq!(
        produce(b, "t", batch(p, 0, 2, &["third"])).await.ok(),
        Some((at + 1, 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_never_handed_out_twice() {
    let node = Node::new(defaults);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(
            node.broker
                .init_producer_id(None)
                .await
                .expect("id")
                .producer_id,
        );
    }
    let node = node.restart().await;
    seen.push(
        node.broker
            .init_producer_id(None)
            .await
            .expect("id")
            .producer_id,
    );
    let node = node.crash().await;
    seen.push(
        node.broker
            .init_producer_id(None)
            .await
            .expect("id")
            .producer_id,
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, seen, "increasing, never repeated: {seen:?}");

    // Should the allocation file be lost, ids still stay above every producer a partition
    // remembers.
    topic(&node.broker, "t", &[]).await;
    let high = 1_000_000;
    produce(&node.broker, "t", batch(high, 0, 0, &["a"]))
        .await
        .expect("a");
    node.broker.shutdown().await.expect("shutdown");
    std::fs::remove_file(node.dir.path().join("producer-ids")).expect("lose the file");
    let node = node.reopen();
    let next = node
        .broker
        .init_producer_id(None)
        .await
        .expect("id")
        .producer_id;
    assert!(next > high, "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_ids_are_refused() {
    let node = Node::new(defaults);
    let err = node
        .broker
        .init_producer_id(Some("tx-1"))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(
        err.to_string().contains("transactions are not supported"),
        "{err}"
    );
    let err = node
        .broker
        .init_producer_id(Some(""))
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            BrokerError::InvalidRequest {
                field: "transactional_id",
                ..
            }
        ),
        "{err:?}"
    );
}

fn short_expiry(config: &mut BrokerConfig) {
    config.producers.id_expiration = Duration::from_millis(300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_producers_are_forgotten_after_the_expiration() {
    let node = Node::new(short_expiry);
    topic(&node.broker, "t", &[]).await;
    let b = &node.broker;
    let p = b.init_producer_id(None).await.expect("id").producer_id;
    let a = batch(p, 0, 0, &["a"]);
    produce(b, "t", a.clone()).await.expect("a");
    assert_eq!(
        produce(b, "t", a.clone()).await.ok(),
        Some((0, 1)),
        "remembered"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Forgotten: its retry is no longer recognised, and it may start anywhere.
    assert_eq!(produce(b, "t", a).await.ok(), Some((1, 1)));
    assert_eq!(produce(b, "t", batch(p, 0, 50, &["b"])).await.ok(), None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        produce(b, "t", batch(p, 0, 50, &["b"])).await.ok(),
        Some((2, 1))
    );
}

fn two_producers(config: &mut BrokerConfig) {
    config.producers.max_per_partition = 2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_remembers_at_most_max_per_partition_producers() {
    let node = Node::new(two_producers);
    topic(&node.broker, "t", &[]).await;
    let b = &node.broker;
    for id in [1, 2, 3] {
        produce(b, "t", batch(id, 0, 0, &["x"]))
            .await
            .expect("first batch");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Producer 1, heard from least recently, made room for 3; 2 is still remembered.
    let err = produce(b, "t", batch(2, 0, 9, &["y"])).await;
    assert!(
        matches!(err, Err(BrokerError::OutOfOrderSequence { .. })),
        "{err:?}"
    );
    assert!(produce(b, "t", batch(1, 0, 9, &["y"])).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_producer_fields_are_refused_naming_the_field() {
    let node = Node::new(defaults);
    topic(&node.broker, "t", &[]).await;
    let err = node
        .broker
        .submit_batches("t", 0, batch(4, 0, -3, &["x"]))
        .map(|_| ());
    assert!(
        matches!(&err, Err(BrokerError::InvalidBatch { field: "base_sequence", reason }) if reason.contains("is -3")),
        "{err:?}"
    );
    assert!(stored(&node.broker, "t").await.is_empty());
}

/// The offset a partition's producer-state snapshot was taken at (bytes 6..14).
fn snapshot_offset(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join("producer-state")).expect("snapshot");
    u64::from_be_bytes(bytes[6..14].try_into().expect("8 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_mark_where_the_next_scan_starts_even_without_producers() {
    let node = Node::new(defaults);
    node.broker.start_background();
    topic(&node.broker, "plain", &[("segment.bytes", "1024")]).await;
    let dir = node.partition_dir("plain", 0);
    for i in 0..10 {
        node.broker
            .produce(
                "plain",
                Some(0),
                [NewRecord::new(vec![b'x'; 300]).with_key(format!("{i}"))],
            )
            .await
            .expect("produce");
    }
    // The log rolled: the checkpoint writes a snapshot, idempotent producers or not.
    assert!(
        eventually(|| dir.join("producer-state").exists()).await,
        "no snapshot after a roll"
    );
    assert!(snapshot_offset(&dir) > 0);
    node.broker
        .produce("plain", Some(0), [NewRecord::new("last")])
        .await
        .expect("produce");
    let node = node.restart().await;
    // A clean close leaves nothing to scan at the next open.
    assert_eq!(snapshot_offset(&dir), 11);
    let before = std::fs::metadata(dir.join("producer-state"))
        .and_then(|m| m.modified())
        .expect("mtime");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Nothing changed since: the next close leaves the snapshot as it is.
    let node = node.restart().await;
    let after = std::fs::metadata(node.partition_dir("plain", 0).join("producer-state"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(before, after);
}
