//! I/O faults under the broker, injected through the storage seam: a full disk refuses writes
//! without losing or latching anything and writing resumes once space returns; a failed
//! fsync makes its partition read-only until a restart while the others keep serving.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::common::{config, fetch_all, overrides, values};
use sluice_broker::{Broker, BrokerError, NewRecord};
use sluice_storage::StorageError;
use sluice_storage::io::{FaultyIo, FileIo, SegmentFile, StdIo, WriteFault};

/// Real files on a slow disk (each fsync takes `sync_delay`, each write `write_delay`, and
/// opening a file whose path contains `slow_opens.0` takes `slow_opens.1`), whose writes panic
/// while `panic_writes` is set (a bug below the broker), and whose writes of bytes holding
/// `full_for` (when not empty) fail as on a full disk.
#[derive(Debug, Clone, Default)]
struct TestIo {
    sync_delay: Duration,
    write_delay: Duration,
    slow_opens: (String, Duration),
    panic_writes: Arc<AtomicBool>,
    full_for: Vec<u8>,
}

impl FileIo for TestIo {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let (slow, delay) = &self.slow_opens;
        if !slow.is_empty() && path.to_string_lossy().contains(slow.as_str()) {
            std::thread::sleep(*delay);
        }
        Ok(Arc::new(TestFile {
            inner: StdIo.open(path)?,
            io: self.clone(),
        }))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdIo.sync_dir(dir)
    }
    fn write_file_atomic(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        StdIo.write_file_atomic(path, contents)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdIo.remove_file(path)
    }
}

#[derive(Debug)]
struct TestFile {
    inner: Arc<dyn SegmentFile>,
    io: TestIo,
}

impl SegmentFile for TestFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn read_bytes(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.inner.read_bytes(pos, len)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        assert!(
            !self.io.panic_writes.load(Ordering::SeqCst),
            "injected panic in a segment write"
        );
        std::thread::sleep(self.io.write_delay);
        let full_for = &self.io.full_for;
        if !full_for.is_empty() && buf.windows(full_for.len()).any(|w| w == full_for) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        std::thread::sleep(self.io.sync_delay);
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn std_file(&self) -> &std::fs::File {
        self.inner.std_file()
    }
}

/// A broker on `dir` whose partition logs write through `io`.
fn open(dir: &Path, io: &FaultyIo) -> Arc<Broker> {
    Broker::open_with_io(config(dir), Arc::new(io.clone())).expect("open broker")
}

/// The values of every record in a partition, in offset order, checking offsets are dense.
async fn stored(broker: &Broker, topic: &str, partition: u32) -> Vec<String> {
    let records = fetch_all(broker, topic, partition, 0).await;
    for (i, (offset, _, _)) in records.iter().enumerate() {
        assert_eq!(*offset, i as u64, "dense offsets");
    }
    records.into_iter().map(|(_, _, v)| v).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_loses_nothing_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let io = FaultyIo::new();
    let broker = open(dir.path(), &io);
    broker
        .create_topic("full", 2, &overrides(&[]))
        .await
        .expect("create");
    broker
        .produce("full", Some(0), values(&["a", "b"]))
        .await
        .expect("produce before the disk fills");

    io.fail_after_writes(0, WriteFault::DiskFull);
    for partition in [0, 1] {
        let err = broker
            .produce("full", Some(partition), values(&["lost"]))
            .await
            .expect_err("no space left");
        match &err {
            BrokerError::Storage(StorageError::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{err}");
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert!(err.to_string().contains("append to segment"), "{err}");
    }
    // Reads keep working, and a full disk is no lasting fault.
    assert_eq!(stored(&broker, "full", 0).await, ["a", "b"]);
    assert!(broker.partition_faults().is_empty());

    io.heal();
    let appended = broker
        .produce("full", Some(0), values(&["c"]))
        .await
        .expect("writes resume once space returns");
    assert_eq!(
        appended[0].base_offset, 2,
        "the refused write left no trace"
    );
    broker
        .produce("full", Some(1), values(&["d"]))
        .await
        .expect("the other partition too");
    assert_eq!(stored(&broker, "full", 0).await, ["a", "b", "c"]);

    // Without a clean shutdown: recovery finds exactly what was acknowledged.
    drop(broker);
    let broker = Broker::open(config(dir.path())).expect("reopen");
    assert_eq!(stored(&broker, "full", 0).await, ["a", "b", "c"]);
    assert_eq!(stored(&broker, "full", 1).await, ["d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_mid_roll_refuses_the_write_and_keeps_the_log_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let io = FaultyIo::new();
    let broker = open(dir.path(), &io);
    broker
        .create_topic("rolls", 1, &overrides(&[("segment.bytes", "1024")]))
        .await
        .expect("create");
    let big = "x".repeat(300);
    let mut acked = Vec::new();
    // Fill, fail, heal, fill again: some failures land on the first write of a new segment.
    for round in 0..6 {
        for i in 0..4 {
            let value = format!("{round}-{i}-{big}");
            if broker
                .produce("rolls", Some(0), values(&[&value]))
                .await
                .is_ok()
            {
                acked.push(value);
            }
        }
        io.fail_after_writes(0, WriteFault::DiskFull);
        // Too big for the active segment: the log rolls, then the write fails.
        let refused = format!("refused-{big}");
        broker
            .produce("rolls", Some(0), values(&[&refused]))
            .await
            .expect_err("no space left");
        io.heal();
    }
    assert_eq!(acked.len(), 24, "every write with space succeeded");
    assert_eq!(stored(&broker, "rolls", 0).await, acked);
    drop(broker);
    let broker = Broker::open(config(dir.path())).expect("reopen");
    assert_eq!(stored(&broker, "rolls", 0).await, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_makes_its_partition_read_only_until_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let io = FaultyIo::new();
    let broker = open(dir.path(), &io);
    broker
        .create_topic("synced", 2, &overrides(&[]))
        .await
        .expect("create");
    for partition in [0, 1] {
        broker
            .produce("synced", Some(partition), values(&["kept"]))
            .await
            .expect("produce");
    }

    io.fail_syncs(true);
    let err = broker
        .produce("synced", Some(0), values(&["not acknowledged"]))
        .await
        .expect_err("fsync failed");
    assert!(
        matches!(err, BrokerError::LogFailed(StorageError::Failed { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("fsync"), "{err}");
    io.fail_syncs(false);

    // The failure is latched: the partition stays read-only though fsync works again...
    let again = broker
        .produce("synced", Some(0), values(&["still refused"]))
        .await
        .expect_err("read-only until restart");
    assert!(matches!(again, BrokerError::LogFailed(_)), "{again:?}");
    let faults = broker.partition_faults();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(
        (faults[0].topic.as_str(), faults[0].partition),
        ("synced", 0)
    );
    assert!(faults[0].reason.contains("fsync"), "{}", faults[0].reason);
    // ...its acknowledged records can still be read...
    assert_eq!(stored(&broker, "synced", 0).await, ["kept"]);
    // ...and the other partition keeps serving.
    broker
        .produce("synced", Some(1), values(&["more"]))
        .await
        .expect("the other partition takes writes");
    assert_eq!(stored(&broker, "synced", 1).await, ["kept", "more"]);

    // A restart clears the latch; what was acknowledged is there, what was not may be.
    drop(broker);
    let broker = Broker::open(config(dir.path())).expect("reopen");
    assert!(broker.partition_faults().is_empty());
    let after = stored(&broker, "synced", 0).await;
    assert_eq!(after[0], "kept");
    assert!(
        after[1..].iter().all(|v| v == "not acknowledged"),
        "{after:?}"
    );
    broker
        .produce("synced", Some(0), values(&["writable again"]))
        .await
        .expect("writes after the restart");
}

/// A record of `size` bytes whose value starts with `id`.
fn sized_record(id: &str, size: usize) -> NewRecord {
    let mut value = id.as_bytes().to_vec();
    value.push(b'/');
    value.resize(size, b'.');
    NewRecord::new(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_flooding_a_slow_disk_stay_within_the_in_flight_budget() {
    const BUDGET: usize = 64 << 10;
    const RECORD: usize = 8 << 10;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.limits.max_in_flight_bytes = BUDGET;
    config.limits.produce_wait = Duration::from_millis(30);
    let io = TestIo {
        sync_delay: Duration::from_millis(100),
        ..TestIo::default()
    };
    let broker = Broker::open_with_io(config, Arc::new(io)).expect("open broker");
    broker
        .create_topic("flood", 2, &overrides(&[]))
        .await
        .expect("create");

    let flooding = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (broker, flooding) = (Arc::clone(&broker), Arc::clone(&flooding));
        tokio::spawn(async move {
            let mut peak = 0;
            while flooding.load(Ordering::SeqCst) {
                peak = peak.max(broker.in_flight_bytes());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            peak
        })
    };
    let producers: Vec<_> = (0..32)
        .map(|p| {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..4 {
                    let id = format!("{p}-{i}");
                    let started = Instant::now();
                    let result = broker
                        .produce("flood", Some(p % 2), [sized_record(&id, RECORD)])
                        .await;
                    outcomes.push((id, p % 2, result, started.elapsed()));
                }
                outcomes
            })
        })
        .collect();
    let mut acked: [BTreeSet<String>; 2] = Default::default();
    let mut overloaded = 0;
    for producer in producers {
        for (id, partition, result, took) in producer.await.expect("producer") {
            match result {
                Ok(_) => {
                    acked[partition as usize].insert(id);
                }
                Err(err @ BrokerError::Overloaded { .. }) => {
                    overloaded += 1;
                    assert!(took >= Duration::from_millis(30), "refused early: {took:?}");
                    assert!(
                        err.to_string().contains("max_in_flight_bytes = 65536"),
                        "{err}"
                    );
                }
                Err(other) => panic!("unexpected failure: {other:?}"),
            }
        }
    }
    flooding.store(false, Ordering::SeqCst);
    let peak = watcher.await.expect("watcher");
    assert!(peak <= BUDGET, "{peak} bytes in flight, over the budget");
    assert!(
        peak > BUDGET / 2,
        "the flood never filled the budget: {peak}"
    );
    assert!(overloaded > 0, "nobody waited past produce_wait");
    assert!(
        !acked[0].is_empty() && !acked[1].is_empty(),
        "some got through"
    );
    assert_eq!(
        broker.in_flight_bytes(),
        0,
        "every append gave its bytes back"
    );

    // Every acknowledged record is stored, and no refused one.
    for (partition, acked) in acked.iter().enumerate() {
        let stored: BTreeSet<String> = fetch_all(&broker, "flood", partition as u32, 0)
            .await
            .into_iter()
            .map(|(_, _, v)| v.split('/').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(&stored, acked, "partition {partition}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_budget_are_appended_in_submit_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.limits.max_in_flight_bytes = 20 << 10;
    let io = TestIo {
        sync_delay: Duration::from_millis(20),
        ..TestIo::default()
    };
    let broker = Broker::open_with_io(config, Arc::new(io)).expect("open broker");
    broker
        .create_topic("ordered", 1, &overrides(&[]))
        .await
        .expect("create");
    // 9 KiB and 512-byte requests, one after the other: two big ones and two small ones fill
    // the budget, the third big one waits, and the small ones behind it, which would fit,
    // must wait behind it rather than overtake it.
    let pending: Vec<_> = (0..24)
        .map(|i| {
            let size = if i % 2 == 0 { 9 << 10 } else { 512 };
            broker
                .submit_produce("ordered", Some(0), [sized_record(&i.to_string(), size)])
                .expect("submitted")
        })
        .collect();
    assert!(broker.in_flight_bytes() <= 20 << 10);
    for (i, pending) in pending.into_iter().enumerate() {
        let appended = pending.wait().await.expect("appended");
        assert_eq!(
            appended[0].base_offset, i as u64,
            "request {i} landed out of submit order"
        );
    }
    let oversized = broker.submit_produce("ordered", Some(0), [sized_record("big", 21 << 10)]);
    assert!(
        matches!(
            oversized,
            Err(BrokerError::ProduceTooLarge { limit: 20480, .. })
        ),
        "{oversized:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_append_faults_its_partition_and_fails_its_producers() {
    // Under fsync the append runs on a blocking thread; under none it may run on the worker.
    for policy in ["fsync", "none"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let io = TestIo::default();
        let broker =
            Broker::open_with_io(config(dir.path()), Arc::new(io.clone())).expect("open broker");
        broker
            .create_topic("bug", 2, &overrides(&[("flush.policy", policy)]))
            .await
            .expect("create");
        for partition in [0, 1] {
            broker
                .produce("bug", Some(partition), values(&["kept"]))
                .await
                .expect("produce");
        }

        io.panic_writes.store(true, Ordering::SeqCst);
        // The first is queued; those submitted after the panic may be refused at once.
        // Either way each learns of the fault.
        for i in 0..5 {
            let submitted =
                broker.submit_produce("bug", Some(0), values(&[&format!("doomed-{i}")]));
            if i == 0 {
                assert!(submitted.is_ok(), "{policy}: {submitted:?}");
            }
            let err = match submitted {
                Ok(pending) => pending.wait().await.expect_err("the append panicked"),
                Err(err) => err,
            };
            assert!(
                matches!(&err, BrokerError::PartitionUnavailable { partition: 0, reason, .. }
                    if reason.contains("panicked") && reason.contains("injected panic")),
                "{policy}: {err:?}"
            );
        }
        io.panic_writes.store(false, Ordering::SeqCst);

        // Faulted until a restart: listed, and every request to it names the fault.
        let faults = broker.partition_faults();
        assert_eq!(faults.len(), 1, "{policy}: {faults:?}");
        assert_eq!((faults[0].topic.as_str(), faults[0].partition), ("bug", 0));
        assert!(
            faults[0].reason.contains("append task panicked"),
            "{faults:?}"
        );
        let info = broker.describe_topic("bug").expect("describe");
        assert!(info.partitions[0].failure.is_some());
        let later = broker.produce("bug", Some(0), values(&["later"])).await;
        assert!(
            matches!(&later, Err(BrokerError::PartitionUnavailable { reason, .. }) if reason.contains("panicked")),
            "{policy}: {later:?}"
        );
        let fetch = broker.fetch("bug", 0, 0, 0, Duration::ZERO).await;
        assert!(
            matches!(&fetch, Err(BrokerError::PartitionUnavailable { reason, .. }) if reason.contains("panicked")),
            "{policy}: {fetch:?}"
        );
        assert_eq!(
            broker.in_flight_bytes(),
            0,
            "the failed appends gave their bytes back"
        );

        // The other partition keeps serving.
        broker
            .produce("bug", Some(1), values(&["more"]))
            .await
            .expect("the other partition takes writes");
        assert_eq!(fetch_all(&broker, "bug", 1, 0).await.len(), 2);

        // A restart recovers the partition with what was acknowledged.
        drop(broker);
        let broker = Broker::open(config(dir.path())).expect("reopen");
        assert!(broker.partition_faults().is_empty());
        assert_eq!(stored(&broker, "bug", 0).await, ["kept"], "{policy}");
        broker
            .produce("bug", Some(0), values(&["writable again"]))
            .await
            .expect("writes after the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_slow_write_does_not_stall_the_async_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let io = TestIo {
        write_delay: Duration::from_millis(300),
        ..TestIo::default()
    };
    let broker = Broker::open_with_io(config(dir.path()), Arc::new(io)).expect("open broker");
    // No fsync and a small write: the kind that used to be written on the async worker.
    broker
        .create_topic("paged", 1, &overrides(&[("flush.policy", "none")]))
        .await
        .expect("create");
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = {
        let ticking = Arc::clone(&ticking);
        tokio::spawn(async move {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            while ticking.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..2 {
        broker
            .produce("paged", Some(0), values(&["slowly"]))
            .await
            .expect("produce");
    }
    ticking.store(false, Ordering::SeqCst);
    let longest = ticker.await.expect("ticker");
    // The only worker thread stayed free while each write took 300 ms.
    assert!(
        longest < Duration::from_millis(200),
        "the async worker stalled for {longest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_topic_creation_holds_up_no_other_admin_operation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let io = TestIo {
        slow_opens: ("slow-topic".to_owned(), Duration::from_millis(300)),
        ..TestIo::default()
    };
    let broker = Broker::open_with_io(config(dir.path()), Arc::new(io)).expect("open broker");
    broker
        .create_topic("old", 1, &overrides(&[]))
        .await
        .expect("create");
    let creating = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            let started = Instant::now();
            let created = broker.create_topic("slow-topic", 4, &overrides(&[])).await;
            (created, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Other names go ahead while the slow creation opens its partitions.
    let started = Instant::now();
    broker
        .create_topic("quick", 1, &overrides(&[]))
        .await
        .expect("create alongside");
    broker.delete_topic("old").await.expect("delete alongside");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "waited {took:?} behind the slow creation"
    );
    // The name being created is taken, and is not there to delete yet.
    let again = broker.create_topic("slow-topic", 1, &overrides(&[])).await;
    assert!(
        matches!(again, Err(BrokerError::TopicExists { .. })),
        "{again:?}"
    );
    let early = broker.delete_topic("slow-topic").await;
    assert!(
        matches!(early, Err(BrokerError::TopicNotFound { .. })),
        "{early:?}"
    );

    // Shutdown waits for the creation in progress, then closes it with the rest.
    broker.shutdown().await.expect("shutdown");
    let (created, took) = creating.await.expect("creation");
    let created = created.expect("the slow creation completes");
    assert_eq!(created.partitions.len(), 4);
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    drop(broker);
    let broker = Broker::open(config(dir.path())).expect("reopen");
    let names: Vec<String> = broker.list_topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["quick", "slow-topic"]);
    broker
        .produce("slow-topic", Some(3), values(&["there"]))
        .await
        .expect("the created topic works");
}

/// A batch of `values` from idempotent producer `id`, epoch 0, starting at sequence `seq`.
fn idempotent_batch(id: i64, seq: i32, values: &[&str]) -> bytes::BytesMut {
    let mut builder = sluice_storage::batch::RecordBatchBuilder::new().with_producer(id, 0, seq);
    for value in values {
        builder
            .push(1, None, Some(value.as_bytes()), std::iter::empty())
            .expect("push");
    }
    builder.finish().expect("a batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_idempotent_write_is_not_skipped_over_by_the_batches_queued_behind_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let io = TestIo {
        full_for: b"no room for this one".to_vec(),
        // Slow writes, so the queued batches are written together, after the failure.
        write_delay: Duration::from_millis(20),
        ..TestIo::default()
    };
    let broker = Broker::open_with_io(config(dir.path()), Arc::new(io)).expect("open broker");
    broker
        .create_topic("t", 1, &overrides(&[]))
        .await
        .expect("create");
    let p = broker.init_producer_id(None).await.expect("id").producer_id;
    broker
        .produce_batches("t", 0, idempotent_batch(p, 0, &["a"]))
        .await
        .expect("a");
    let failing = broker
        .submit_batches("t", 0, idempotent_batch(p, 1, &["no room for this one"]))
        .expect("queued");
    let behind: Vec<_> = (2..5)
        .map(|seq| {
            broker
                .submit_batches("t", 0, idempotent_batch(p, seq, &["after"]))
                .expect("queued")
        })
        .collect();
    let err = failing.wait().await.expect_err("the disk is full");
    assert!(
        matches!(&err, BrokerError::Storage(StorageError::Io { .. })),
        "{err:?}"
    );
    // Each later batch is judged knowing the failed one was not stored: storing them would
    // leave a hole in the producer's sequence.
    for request in behind {
        let err = request.wait().await.expect_err("out of order");
        assert!(
            matches!(
                err,
                BrokerError::OutOfOrderSequence {
                    sequence: 2..,
                    expected: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(stored(&broker, "t", 0).await, ["a"]);
    // The retry of the failed batch continues the sequence.
    let retry = idempotent_batch(p, 1, &["b"]);
    let appended = broker.produce_batches("t", 0, retry).await.expect("retry");
    assert_eq!(appended.base_offset, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_returns_once_a_request_has_room_and_refuses_one_that_waited_too_long() {
    const BUDGET: usize = 16 << 10;
    const RECORD: usize = 12 << 10;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.limits.max_in_flight_bytes = BUDGET;
    config.limits.produce_wait = Duration::from_millis(300);
    let io = TestIo {
        sync_delay: Duration::from_millis(100),
        ..TestIo::default()
    };
    let broker = Broker::open_with_io(config, Arc::new(io)).expect("open broker");
    broker
        .create_topic("slow", 1, &overrides(&[]))
        .await
        .expect("create");

    // The first request takes most of the budget until its fsync is done; the second must
    // wait for it: `admitted` returns only once the first gave its bytes back.
    let first = broker
        .submit_produce("slow", Some(0), [sized_record("first", RECORD)])
        .expect("submit first");
    let second = broker
        .submit_produce("slow", Some(0), [sized_record("second", RECORD)])
        .expect("submit second");
    let started = Instant::now();
    let first = first.admitted().await.expect("room at once");
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "the first waited"
    );
    let second = second
        .admitted()
        .await
        .expect("room once the first is done");
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "the second was admitted before the first's append finished: {:?}",
        started.elapsed()
    );
    first.wait().await.expect("first appended");
    second.wait().await.expect("second appended");

    // With the budget held longer than produce_wait, a waiting request is refused by
    // `admitted`, and nothing of it is stored.
    let slow_io = TestIo {
        sync_delay: Duration::from_millis(600),
        ..TestIo::default()
    };
    drop(broker);
    let mut config = self::config(dir.path());
    config.limits.max_in_flight_bytes = BUDGET;
    config.limits.produce_wait = Duration::from_millis(100);
    let broker = Broker::open_with_io(config, Arc::new(slow_io)).expect("reopen");
    let holding = broker
        .submit_produce("slow", Some(0), [sized_record("holding", RECORD)])
        .expect("submit");
    let refused = broker
        .submit_produce("slow", Some(0), [sized_record("refused", RECORD)])
        .expect("submit");
    let err = refused
        .admitted()
        .await
        .expect_err("waited past produce_wait");
    assert!(matches!(err, BrokerError::Overloaded { .. }), "{err:?}");
    holding.wait().await.expect("holding appended");
    let stored = stored(&broker, "slow", 0).await;
    assert!(
        stored.iter().all(|v| !v.starts_with("refused")),
        "{stored:?}"
    );
    assert_eq!(stored.len(), 3, "{stored:?}");
}
