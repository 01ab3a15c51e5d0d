//! Topic lifecycle: creation, persistence across restarts, deletion, and the data directory.

use std::fs;

use crate::common::{TestBroker, config, fetch_all, overrides, values};
use sluice_broker::{Broker, BrokerError, TopicSummary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_data_survive_a_restart() {
    let t = TestBroker::new();
    let created = t
        .broker
        .create_topic("orders", 3, &overrides(&[("retention.ms", "-1")]))
        .await
        .expect("create");
    assert_eq!(created.name, "orders");
    assert_eq!(created.partitions.len(), 3);
    assert_eq!(created.config["retention.ms"], "-1");
    t.broker
        .create_topic("audit", 1, &overrides(&[]))
        .await
        .expect("create");
    t.broker
        .produce("orders", Some(1), values(&["a", "b", "c"]))
        .await
        .expect("produce");

    let t = t.restart();
    assert_eq!(
        t.broker.list_topics(),
        vec![
            TopicSummary {
                name: "audit".into(),
                partitions: 1
            },
            TopicSummary {
                name: "orders".into(),
                partitions: 3
            },
        ]
    );
    let info = t.broker.describe_topic("orders").expect("describe");
    assert_eq!(info.config["retention.ms"], "-1", "overrides persist");
    assert_eq!(info.partitions[1].high_watermark, 3);
    assert_eq!(info.partitions[1].log_end_offset, 3);
    assert_eq!(info.partitions[0].high_watermark, 0);
    let records = fetch_all(&t.broker, "orders", 1, 0).await;
    assert_eq!(
        records,
        vec![
            (0, None, "a".to_owned()),
            (1, None, "b".to_owned()),
            (2, None, "c".to_owned())
        ]
    );

    // Appends continue after the recovered offsets, and a clean shutdown reopens too.
    let appended = t
        .broker
        .produce("orders", Some(1), values(&["d"]))
        .await
        .expect("produce");
    assert_eq!(appended[0].base_offset, 3);
    t.broker.shutdown().await.expect("shutdown");
    let t = t.restart();
    assert_eq!(fetch_all(&t.broker, "orders", 1, 3).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_reports_every_effective_key() {
    let t = TestBroker::with(|c| c.topic_defaults.max_message_bytes = 4096);
    let info = t
        .broker
        .create_topic("t", 2, &overrides(&[("segment.bytes", "65536")]))
        .await
        .expect("create");
    assert_eq!(
        info.config.len(),
        sluice_broker::config::TOPIC_CONFIG_KEYS.len()
    );
    assert_eq!(info.config["segment.bytes"], "65536");
    assert_eq!(
        info.config["max.message.bytes"], "4096",
        "broker default applies"
    );
    assert_eq!(info.config["flush.policy"], "fsync");
    assert_eq!(
        info.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        [0, 1]
    );
    assert!(info.partitions.iter().all(|p| p.segment_count >= 1));
    assert_eq!(t.broker.partition_count("t").expect("count"), 2);
    assert_eq!(t.broker.describe_topic("t").expect("describe"), info);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_directory_and_the_name_can_be_reused() {
    let t = TestBroker::new();
    t.broker
        .create_topic("gone", 2, &overrides(&[]))
        .await
        .expect("create");
    t.broker
        .produce("gone", Some(0), values(&["x", "y"]))
        .await
        .expect("produce");
    let dir = t.dir.path().join("topics").join("gone");
    assert!(dir.join("topic.json").is_file());
    assert!(dir.join("0").is_dir());

    t.broker.delete_topic("gone").await.expect("delete");
    assert!(!dir.exists());
    assert_eq!(
        fs::read_dir(t.dir.path().join("trash"))
            .expect("trash")
            .count(),
        0
    );
    assert!(t.broker.list_topics().is_empty());
    assert!(matches!(
        t.broker.describe_topic("gone"),
        Err(BrokerError::TopicNotFound { ref topic }) if topic == "gone"
    ));

    t.broker
        .create_topic("gone", 1, &overrides(&[]))
        .await
        .expect("recreate");
    assert_eq!(fetch_all(&t.broker, "gone", 0, 0).await, Vec::new());
    let t = t.restart();
    assert_eq!(t.broker.partition_count("gone").expect("count"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_cleans_trash_unfinished_topics_and_stray_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let broker = Broker::open(config(dir.path())).expect("open");
        broker
            .create_topic("kept", 1, &overrides(&[]))
            .await
            .expect("create");
        broker.shutdown().await.expect("shutdown");
    }
    let root = dir.path();
    fs::create_dir_all(root.join("trash/old.123/0")).expect("trash leftover");
    fs::write(root.join("trash/old.123/0/x.log"), b"junk").expect("trash file");
    fs::create_dir_all(root.join("topics/unfinished/0")).expect("unfinished topic");
    fs::write(root.join("topics/kept/topic.json.tmp"), b"{").expect("stray tmp");
    fs::write(root.join("topics/notes.txt"), b"not a topic").expect("stray file");

    let broker = Broker::open(config(root)).expect("reopen");
    assert_eq!(
        broker
            .list_topics()
            .into_iter()
            .map(|t| t.name)
            .collect::<Vec<_>>(),
        ["kept"]
    );
    assert_eq!(fs::read_dir(root.join("trash")).expect("trash").count(), 0);
    assert!(!root.join("topics/unfinished").exists());
    assert!(!root.join("topics/kept/topic.json.tmp").exists());
    assert!(
        root.join("topics/notes.txt").exists(),
        "unknown files are left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_cannot_open_the_same_directory() {
    let t = TestBroker::new();
    let err = Broker::open(config(t.dir.path()));
    assert!(
        matches!(err, Err(BrokerError::DataDirLocked { .. })),
        "{err:?}"
    );
    let path = t.dir.path().to_owned();
    drop(t.broker);
    Broker::open(config(&path)).expect("lock released with the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_metadata_refuses_to_open() {
    let t = TestBroker::new();
    t.broker
        .create_topic("meta", 1, &overrides(&[]))
        .await
        .expect("create");
    t.broker.shutdown().await.expect("shutdown");
    let path = t.dir.path().to_owned();
    drop(t.broker);
    fs::write(path.join("topics/meta/topic.json"), b"{ not json").expect("garbage");
    let err = Broker::open(config(&path));
    assert!(
        matches!(err, Err(BrokerError::Metadata { ref path, source: Some(_), .. }) if path.ends_with("topic.json")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_that_is_a_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("file");
    fs::write(&file, b"x").expect("file");
    let err = Broker::open(config(&file));
    assert!(matches!(err, Err(BrokerError::Io { .. })), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_defaults_and_settings_refuse_to_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut bad_defaults = config(dir.path());
    bad_defaults.topic_defaults.segment_bytes = 1;
    let err = Broker::open(bad_defaults);
    assert!(
        matches!(err, Err(BrokerError::InvalidConfig { ref key, .. }) if key == "segment.bytes"),
        "{err:?}"
    );
    let mut bad_interval = config(dir.path());
    bad_interval.retention_check_interval = std::time::Duration::ZERO;
    assert!(matches!(
        Broker::open(bad_interval),
        Err(BrokerError::InvalidConfig { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_cannot_open_fails_alone() {
    let t = TestBroker::new();
    t.broker
        .create_topic("split", 2, &overrides(&[]))
        .await
        .expect("create");
    t.broker
        .produce("split", Some(0), values(&["kept"]))
        .await
        .expect("produce");
    t.broker.shutdown().await.expect("shutdown");
    let path = t.dir.path().to_owned();
    drop(t.broker);
    // A file where partition 1's directory should be: its log cannot open.
    let partition_dir = path.join("topics/split/1");
    fs::remove_dir_all(&partition_dir).expect("remove partition dir");
    fs::write(&partition_dir, b"not a directory").expect("plant a file");

    let broker = Broker::open(config(&path)).expect("the broker opens despite one bad partition");
    let faults = broker.partition_faults();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(
        (faults[0].topic.as_str(), faults[0].partition),
        ("split", 1)
    );
    assert!(!faults[0].reason.is_empty());

    let unavailable = |r: Result<(), BrokerError>| {
        matches!(
            r,
            Err(BrokerError::PartitionUnavailable { partition: 1, .. })
        )
    };
    assert!(unavailable(
        broker
            .produce("split", Some(1), values(&["x"]))
            .await
            .map(|_| ())
    ));
    assert!(unavailable(
        broker
            .fetch("split", 1, 0, 0, std::time::Duration::ZERO)
            .await
            .map(|_| ())
    ));
    let info = broker.describe_topic("split").expect("describe");
    assert!(info.partitions[1].failure.is_some());
    assert_eq!(info.partitions[0].failure, None);

    // Partition 0 keeps serving.
    broker
        .produce("split", Some(0), values(&["more"]))
        .await
        .expect("produce to the healthy partition");
    assert_eq!(
        fetch_all(&broker, "split", 0, 0).await.len(),
        2,
        "the healthy partition keeps its records"
    );
    broker.shutdown().await.expect("shutdown");
}
