//! Background work: retention, checkpoints and interval flushes.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{TestBroker, fetch_all, overrides};
use sluice_broker::{Broker, NewRecord};

/// Produces `count` single-record requests of about 300 bytes each to partition 0.
async fn fill(broker: &Broker, topic: &str, count: usize) {
    for i in 0..count {
        let record = NewRecord::new(vec![b'x'; 300]).with_key(format!("{i}"));
        broker
            .produce(topic, Some(0), vec![record])
            .await
            .expect("produce");
    }
}

/// Polls `check` every 20 ms for up to 5 s.
pub(crate) async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_every_check_interval() {
    let t = TestBroker::with(|c| c.retention_check_interval = Duration::from_millis(50));
    let config = overrides(&[
        ("segment.bytes", "1024"),
        ("retention.bytes", "1024"),
        ("flush.policy", "none"),
    ]);
    t.broker
        .create_topic("short", 1, &config)
        .await
        .expect("create");
    t.broker
        .create_topic("forever", 1, &overrides(&[("segment.bytes", "1024")]))
        .await
        .expect("create");
    fill(&t.broker, "short", 12).await;
    fill(&t.broker, "forever", 12).await;
    let before = t
        .broker
        .describe_topic("short")
        .expect("describe")
        .partitions[0]
        .clone();
    assert!(before.segment_count > 2, "{before:?}");
    assert_eq!(before.log_start_offset, 0);

    t.broker.start_background();
    t.broker.start_background();
    let trimmed = eventually(|| {
        let p = &t
            .broker
            .describe_topic("short")
            .expect("describe")
            .partitions[0];
        p.log_start_offset > 0 && p.size_bytes < before.size_bytes
    })
    .await;
    assert!(trimmed, "retention never ran");
    let after = t
        .broker
        .describe_topic("short")
        .expect("describe")
        .partitions[0]
        .clone();
    let kept = fetch_all(&t.broker, "short", 0, after.log_start_offset).await;
    assert_eq!(
        kept.last().map(|r| r.0),
        Some(11),
        "the newest records stay"
    );

    let untouched = &t
        .broker
        .describe_topic("forever")
        .expect("describe")
        .partitions[0];
    assert_eq!(
        untouched.log_start_offset, 0,
        "no retention.bytes, 7-day retention.ms"
    );
    t.broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_topics_are_flushed_and_checkpointed() {
    let t = TestBroker::new();
    t.broker.start_background();
    let config = overrides(&[
        ("segment.bytes", "1024"),
        ("flush.policy", "interval"),
        ("flush.ms", "20"),
    ]);
    t.broker
        .create_topic("lazy", 1, &config)
        .await
        .expect("create");
    fill(&t.broker, "lazy", 8).await;
    let partition_dir = t.dir.path().join("topics/lazy/0");
    let checkpointed = eventually(|| recovery_point(&partition_dir).is_some_and(|o| o > 0)).await;
    assert!(checkpointed, "no checkpoint written");

    // A crash (no shutdown) loses nothing the checkpoint and flushes covered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = t.restart();
    assert_eq!(fetch_all(&t.broker, "lazy", 0, 0).await.len(), 8);
}

/// The offset in a partition's recovery-point file, once the log has written one.
fn recovery_point(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("recovery-point")).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}
