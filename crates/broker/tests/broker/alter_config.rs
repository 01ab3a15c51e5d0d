//! Topic configs changed while the topic serves: checked as at creation, kept across
//! restarts, and applied to produce, the logs and the background work without a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sluice_broker::{Broker, BrokerError, ConfigChange, ConfigUpdate, NewRecord, TopicInfo};
use sluice_storage::batch::RecordBatchBuilder;
use sluice_storage::io::FaultyIo;

use crate::common::{TestBroker, config, fetch_all, overrides, values};

fn set(key: &str, value: &str) -> ConfigChange {
    ConfigChange::Set {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

fn delete(key: &str) -> ConfigChange {
    ConfigChange::Delete {
        key: key.to_owned(),
    }
}

/// Applies `changes` to `topic` for real.
async fn alter(broker: &Arc<Broker>, topic: &str, changes: Vec<ConfigChange>) -> TopicInfo {
    broker
        .alter_topic_config(topic, ConfigUpdate::Incremental(changes), false)
        .await
        .expect("alter config")
}

/// The overrides `topic.json` holds.
fn stored_overrides(t: &TestBroker, topic: &str) -> serde_json::Value {
    let path = t.dir.path().join("topics").join(topic).join("topic.json");
    let text = std::fs::read_to_string(path).expect("topic.json");
    let meta: serde_json::Value = serde_json::from_str(&text).expect("json");
    meta["config"].clone()
}

/// Polls `check` every 20 ms for up to 5 s.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// One record of `size` value bytes.
fn record(size: usize) -> Vec<NewRecord> {
    vec![NewRecord::new(vec![b'x'; size])]
}

#[tokio::test]
async fn changes_survive_a_restart_and_describe_tells_overrides_from_defaults() {
    let t = TestBroker::new();
    let created = overrides(&[("retention.ms", "60000"), ("segment.bytes", "4096")]);
    t.broker
        .create_topic("orders", 2, &created)
        .await
        .expect("create");
    let info = alter(
        &t.broker,
        "orders",
        vec![set("max.message.bytes", "2048"), delete("segment.bytes")],
    )
    .await;
    let expected = overrides(&[("max.message.bytes", "2048"), ("retention.ms", "60000")]);
    assert_eq!(info.overrides, expected);
    assert_eq!(info.config["max.message.bytes"], "2048");
    assert_eq!(info.config["segment.bytes"], (1u64 << 30).to_string());
    assert_eq!(t.broker.describe_topic("orders").expect("describe"), info);
    assert_eq!(
        stored_overrides(&t, "orders"),
        serde_json::json!({"max.message.bytes": "2048", "retention.ms": "60000"})
    );

    let t = t.restart();
    let info = t.broker.describe_topic("orders").expect("describe");
    assert_eq!(info.overrides, expected);
    assert_eq!(info.config["max.message.bytes"], "2048");
    assert_eq!(info.partitions.len(), 2);
    let refused = t.broker.produce("orders", Some(0), record(3000)).await;
    assert!(
        matches!(
            refused,
            Err(BrokerError::RecordTooLarge { limit: 2048, .. })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_lowered_max_message_bytes_refuses_the_next_larger_record() {
    let t = TestBroker::new();
    t.broker
        .create_topic("sizes", 1, &BTreeMap::new())
        .await
        .expect("create");
    t.broker
        .produce("sizes", Some(0), record(2000))
        .await
        .expect("under the default");

    alter(&t.broker, "sizes", vec![set("max.message.bytes", "1000")]).await;
    let refused = t.broker.produce("sizes", Some(0), record(2000)).await;
    assert!(
        matches!(
            refused,
            Err(BrokerError::RecordTooLarge { limit: 1000, .. })
        ),
        "{refused:?}"
    );
    // A client-encoded batch is held to the new limit too.
    let mut builder = RecordBatchBuilder::with_capacity(4096);
    builder
        .push(1, None, Some(&[b'y'; 2000]), std::iter::empty())
        .expect("push");
    let batch: BytesMut = builder.finish().expect("batch");
    let refused = t.broker.produce_batches("sizes", 0, batch).await;
    assert!(
        matches!(refused, Err(BrokerError::BatchTooLarge { limit: 1000, .. })),
        "{refused:?}"
    );

    alter(&t.broker, "sizes", vec![delete("max.message.bytes")]).await;
    t.broker
        .produce("sizes", Some(0), record(2000))
        .await
        .expect("back to the default");
    assert_eq!(fetch_all(&t.broker, "sizes", 0, 0).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_retention_deletes_segments_at_the_next_retention_run() {
    let t = TestBroker::with(|c| c.retention_check_interval = Duration::from_millis(50));
    let created = overrides(&[("segment.bytes", "1024"), ("flush.policy", "none")]);
    t.broker
        .create_topic("history", 1, &created)
        .await
        .expect("create");
    for _ in 0..12 {
        t.broker
            .produce("history", Some(0), record(300))
            .await
            .expect("produce");
    }
    t.broker.start_background();
    let partition = |t: &TestBroker| {
        t.broker
            .describe_topic("history")
            .expect("describe")
            .partitions[0]
            .clone()
    };
    let before = partition(&t);
    assert!(before.segment_count > 2, "{before:?}");
    // Several retention runs under the default 7 days keep everything.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(partition(&t).log_start_offset, 0);

    alter(&t.broker, "history", vec![set("retention.ms", "1")]).await;
    assert!(
        eventually(|| partition(&t).segment_count == 1).await,
        "retention never used the new retention.ms: {:?}",
        partition(&t)
    );
    let after = partition(&t);
    assert!(after.log_start_offset > 0, "{after:?}");
    let kept = fetch_all(&t.broker, "history", 0, after.log_start_offset).await;
    assert_eq!(
        kept.last().map(|r| r.0),
        Some(11),
        "the newest records stay"
    );
    t.broker.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_lowered_segment_bytes_rolls_at_the_next_append() {
    let t = TestBroker::new();
    t.broker
        .create_topic("rolls", 1, &BTreeMap::new())
        .await
        .expect("create");
    let segments = |t: &TestBroker| {
        t.broker
            .describe_topic("rolls")
            .expect("describe")
            .partitions[0]
            .segment_count
    };
    for _ in 0..4 {
        t.broker
            .produce("rolls", Some(0), record(400))
            .await
            .expect("produce");
    }
    assert_eq!(segments(&t), 1);
    alter(&t.broker, "rolls", vec![set("segment.bytes", "1024")]).await;
    for _ in 0..4 {
        t.broker
            .produce("rolls", Some(0), record(400))
            .await
            .expect("produce");
    }
    assert!(segments(&t) >= 3, "{} segments", segments(&t));
    assert_eq!(fetch_all(&t.broker, "rolls", 0, 0).await.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_policy_change_applies_at_the_next_append() {
    let dir = tempfile::tempdir().expect("temp dir");
    let io = FaultyIo::new();
    let broker = Broker::open_with_io(config(dir.path()), Arc::new(io.clone())).expect("open");
    broker
        .create_topic("durable", 1, &BTreeMap::new())
        .await
        .expect("create");
    alter(&broker, "durable", vec![set("flush.policy", "none")]).await;
    io.fail_syncs(true);
    // No fsync is asked for, so the failing disk goes unnoticed.
    broker
        .produce("durable", Some(0), values(&["unsynced"]))
        .await
        .expect("produce without fsync");

    alter(&broker, "durable", vec![delete("flush.policy")]).await;
    // Back to the default fsync: the next append waits for one, which fails.
    let refused = broker
        .produce("durable", Some(0), values(&["synced"]))
        .await;
    assert!(
        matches!(refused, Err(BrokerError::LogFailed(_))),
        "{refused:?}"
    );
    assert!(refused.is_err_and(|e| e.to_string().contains("fsync")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_switched_to_interval_flushes_are_flushed_by_the_background() {
    let dir = tempfile::tempdir().expect("temp dir");
    let io = FaultyIo::new();
    let broker = Broker::open_with_io(config(dir.path()), Arc::new(io.clone())).expect("open");
    broker.start_background();
    let lazy = overrides(&[("flush.policy", "none")]);
    for topic in ["flushed", "unflushed"] {
        broker.create_topic(topic, 1, &lazy).await.expect("create");
    }
    alter(
        &broker,
        "flushed",
        vec![set("flush.policy", "interval"), set("flush.ms", "3600000")],
    )
    .await;
    // A shorter interval reaches the flusher at once, not after the hour it waits for.
    alter(&broker, "flushed", vec![set("flush.ms", "20")]).await;
    for topic in ["flushed", "unflushed"] {
        for i in 0..5 {
            broker
                .produce(topic, Some(0), values(&[&format!("r{i}")]))
                .await
                .expect("produce");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A power loss keeps what was fsynced: the interval flushes covered one topic, and
    // nothing covered the other (its only segment is active, so no checkpoint synced it).
    drop(broker);
    io.power_loss().expect("power loss");
    let broker = Broker::open(config(dir.path())).expect("reopen");
    assert_eq!(fetch_all(&broker, "flushed", 0, 0).await.len(), 5);
    assert_eq!(fetch_all(&broker, "unflushed", 0, 0).await.len(), 0);
}

#[tokio::test]
async fn invalid_changes_are_refused_as_at_creation_and_change_nothing() {
    let t = TestBroker::new();
    let created = overrides(&[("retention.ms", "60000")]);
    t.broker
        .create_topic("strict", 1, &created)
        .await
        .expect("create");
    let before = t.broker.describe_topic("strict").expect("describe");

    let at_creation = t
        .broker
        .create_topic("other", 1, &overrides(&[("segment.bytes", "12")]))
        .await
        .expect_err("invalid at creation");
    let refused = t
        .broker
        .alter_topic_config(
            "strict",
            ConfigUpdate::Incremental(vec![set("retention.ms", "5"), set("segment.bytes", "12")]),
            false,
        )
        .await
        .expect_err("invalid change");
    assert_eq!(refused.to_string(), at_creation.to_string());
    assert!(
        refused.to_string().contains("segment.bytes") && refused.to_string().contains("1024..="),
        "{refused}"
    );
    for bad in [
        vec![set("cleanup.policy", "compact")],
        vec![delete("cleanup.policy")],
        vec![set("flush.policy", "always")],
        vec![set("retention.ms", "1"), delete("retention.ms")],
    ] {
        let err = t
            .broker
            .alter_topic_config("strict", ConfigUpdate::Incremental(bad.clone()), false)
            .await;
        assert!(
            matches!(err, Err(BrokerError::InvalidConfig { .. })),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(t.broker.describe_topic("strict").expect("describe"), before);
    assert_eq!(
        stored_overrides(&t, "strict"),
        serde_json::json!({"retention.ms": "60000"})
    );

    let missing = t
        .broker
        .alter_topic_config("missing", ConfigUpdate::Incremental(vec![]), false)
        .await;
    assert!(
        matches!(missing, Err(BrokerError::TopicNotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn validate_only_answers_the_result_and_changes_nothing() {
    let t = TestBroker::new();
    t.broker
        .create_topic("dry", 1, &BTreeMap::new())
        .await
        .expect("create");
    let would = t
        .broker
        .alter_topic_config(
            "dry",
            ConfigUpdate::Incremental(vec![set("max.message.bytes", "100")]),
            true,
        )
        .await
        .expect("valid");
    assert_eq!(would.overrides, overrides(&[("max.message.bytes", "100")]));
    let info = t.broker.describe_topic("dry").expect("describe");
    assert!(info.overrides.is_empty(), "{info:?}");
    assert_eq!(stored_overrides(&t, "dry"), serde_json::json!({}));
    t.broker
        .produce("dry", Some(0), record(500))
        .await
        .expect("the old limit holds");
    let invalid = t
        .broker
        .alter_topic_config(
            "dry",
            ConfigUpdate::Incremental(vec![set("max.message.bytes", "0")]),
            true,
        )
        .await;
    assert!(
        matches!(invalid, Err(BrokerError::InvalidConfig { .. })),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn replace_makes_the_given_overrides_the_only_ones() {
    let t = TestBroker::new();
    let created = overrides(&[("retention.ms", "60000"), ("segment.bytes", "4096")]);
    t.broker
        .create_topic("whole", 1, &created)
        .await
        .expect("create");
    let info = t
        .broker
        .alter_topic_config(
            "whole",
            ConfigUpdate::Replace(overrides(&[("flush.policy", "none")])),
            false,
        )
        .await
        .expect("replace");
    assert_eq!(info.overrides, overrides(&[("flush.policy", "none")]));
    assert_eq!(
        info.config["retention.ms"],
        (7u64 * 24 * 3600 * 1000).to_string()
    );
    let t = t.restart();
    assert_eq!(
        t.broker
            .describe_topic("whole")
            .expect("describe")
            .overrides,
        overrides(&[("flush.policy", "none")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_racing_a_deletion_never_reaches_the_next_topic_of_that_name() {
    let t = TestBroker::new();
    for _ in 0..10 {
        t.broker
            .create_topic("reused", 1, &BTreeMap::new())
            .await
            .expect("create");
        let alters: Vec<_> = (0..4)
            .map(|i| {
                let broker = Arc::clone(&t.broker);
                tokio::spawn(async move {
                    let change = vec![set("retention.ms", &format!("{}", 1000 + i))];
                    broker
                        .alter_topic_config("reused", ConfigUpdate::Incremental(change), false)
                        .await
                })
            })
            .collect();
        t.broker.delete_topic("reused").await.expect("delete");
        for result in alters {
            match result.await.expect("task") {
                Ok(_) | Err(BrokerError::TopicNotFound { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        t.broker
            .create_topic("reused", 1, &BTreeMap::new())
            .await
            .expect("create again");
        assert!(
            t.broker
                .describe_topic("reused")
                .expect("describe")
                .overrides
                .is_empty()
        );
        assert_eq!(stored_overrides(&t, "reused"), serde_json::json!({}));
        t.broker.delete_topic("reused").await.expect("delete");
    }
}

#[tokio::test]
async fn a_timestamp_type_change_stamps_the_next_append_and_keeps_stored_ones() {
    let t = TestBroker::new();
    t.broker
        .create_topic("stamps", 1, &BTreeMap::new())
        .await
        .expect("create");
    let stamped = |ts| vec![NewRecord::new("r").with_timestamp(ts)];
    t.broker
        .produce("stamps", Some(0), stamped(5))
        .await
        .expect("produce");
    alter(
        &t.broker,
        "stamps",
        vec![set("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    t.broker
        .produce("stamps", Some(0), stamped(6))
        .await
        .expect("produce");
    let fetched = t
        .broker
        .fetch("stamps", 0, 0, 1 << 20, Duration::ZERO)
        .await
        .expect("fetch");
    let stamps: Vec<i64> = fetched
        .records()
        .map(|r| r.expect("record").timestamp_ms)
        .collect();
    assert_eq!(stamps.len(), 2);
    assert_eq!(stamps[0], 5, "the stored batch keeps the producer's time");
    assert!(
        stamps[1] > 1_000_000_000_000,
        "stamped at append: {stamps:?}"
    );
}
