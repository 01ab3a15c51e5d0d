//! I/O faults under the broker, injected through the storage seam: a full disk refuses writes
//! without losing or latching anything and writing resumes once space returns; a failed
//! fsync makes its partition read-only until a restart while the others keep serving.

use std::path::Path;
use std::sync::Arc;

use crate::common::{config, fetch_all, overrides, values};
use sluice_broker::{Broker, BrokerError};
use sluice_storage::StorageError;
use sluice_storage::io::{FaultyIo, WriteFault};

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
