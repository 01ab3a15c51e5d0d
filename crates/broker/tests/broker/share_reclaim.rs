//! `share.reclaim.enable`: a topic's whole segments are deleted once every share group reading
//! it is past them, never a record some group has not finished with, and the deletion lasts
//! across restarts.

use std::time::Duration;

use sluice_broker::{AckKind, Broker, BrokerConfig, ConfigChange, ConfigUpdate, NewRecord};

use crate::background::eventually;
use crate::common::{TestBroker, fetch_all, overrides};
use crate::share_groups::{acknowledge, earliest, join, offsets, value};

const NO_WAIT: Duration = Duration::ZERO;
/// Records per test topic: about 2 per 1 KiB segment, so about 20 segments.
const RECORDS: u64 = 40;
/// Long enough for several retention checks.
const SEVERAL_CHECKS: Duration = Duration::from_millis(400);

fn fast_checks(config: &mut BrokerConfig) {
    config.retention_check_interval = Duration::from_millis(50);
}

/// Creates `topic` (one partition, 1 KiB segments, `share.reclaim.enable = reclaim`) holding
/// [`RECORDS`] records of about 300 bytes, values `r0`, `r1`, ...
async fn queue(broker: &Broker, topic: &str, reclaim: bool) {
    let reclaim = reclaim.to_string();
    let config = overrides(&[
        ("segment.bytes", "1024"),
        ("share.reclaim.enable", &reclaim),
    ]);
    broker
        .create_topic(topic, 1, &config)
        .await
        .expect("create topic");
    for i in 0..RECORDS {
        let record = NewRecord::new(format!("r{i}").into_bytes()).with_key(vec![b'k'; 280]);
        broker
            .produce(topic, Some(0), vec![record])
            .await
            .expect("produce");
    }
    let segments = broker.describe_topic(topic).expect("describe").partitions[0].segment_count;
    assert!(segments > 10, "{topic} has {segments} segments");
}

fn log_start(broker: &Broker, topic: &str) -> u64 {
    broker.describe_topic(topic).expect("describe").partitions[0].log_start_offset
}

/// Asserts `topic` holds every offset from its log start to the end, and returns the start.
async fn assert_intact_from_log_start(broker: &Broker, topic: &str) -> u64 {
    let start = log_start(broker, topic);
    let kept = fetch_all(broker, topic, 0, start).await;
    let kept: Vec<u64> = kept.iter().map(|r| r.0).collect();
    assert_eq!(kept, (start..RECORDS).collect::<Vec<_>>(), "{topic}");
    start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_go_only_once_every_group_reading_the_topic_is_past_them() {
    let t = TestBroker::with(fast_checks);
    queue(&t.broker, "jobs", true).await;
    queue(&t.broker, "plain", false).await;
    queue(&t.broker, "unread", true).await;
    let fast = join(&t.broker, "fast", "jobs", 100, earliest()).await;
    let slow = join(&t.broker, "slow", "jobs", 100, earliest()).await;
    let plain = join(&t.broker, "fast", "plain", 100, earliest()).await;
    for member in [&fast, &plain] {
        let got = member.acquire(100, NO_WAIT).await.expect("acquire");
        assert_eq!(got.len() as u64, RECORDS);
        acknowledge(member, &got, AckKind::Accept).await;
    }
    t.broker.start_background();
    tokio::time::sleep(SEVERAL_CHECKS).await;
    // "slow" has accepted nothing; "plain" does not reclaim; nobody reads "unread".
    for topic in ["jobs", "plain", "unread"] {
        assert_eq!(log_start(&t.broker, topic), 0, "{topic}");
    }

    let got = slow.acquire(20, NO_WAIT).await.expect("acquire");
    assert_eq!(offsets(&got), (0..20).collect::<Vec<_>>());
    acknowledge(&slow, &got, AckKind::Accept).await;
    assert!(
        eventually(|| log_start(&t.broker, "jobs") > 0).await,
        "nothing was reclaimed"
    );
    let start = assert_intact_from_log_start(&t.broker, "jobs").await;
    assert!(start <= 20, "reclaimed past the slowest group: {start}");
    // Segment granularity: the segment holding offset 20 is kept whole.
    tokio::time::sleep(SEVERAL_CHECKS).await;
    assert!(log_start(&t.broker, "jobs") <= 20);

    let rest = slow.acquire(100, NO_WAIT).await.expect("acquire");
    acknowledge(&slow, &rest, AckKind::Accept).await;
    assert!(eventually(|| log_start(&t.broker, "jobs") > 20).await);
    // The active segment stays, with the newest records.
    let start = assert_intact_from_log_start(&t.broker, "jobs").await;
    assert!(start < RECORDS);
    assert_eq!(log_start(&t.broker, "plain"), 0);
    assert_eq!(log_start(&t.broker, "unread"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_not_yet_accepted_are_never_reclaimed_even_across_a_crash() {
    let t = TestBroker::with(fast_checks);
    queue(&t.broker, "jobs", true).await;
    let member = join(&t.broker, "workers", "jobs", 100, earliest()).await;
    let got = member.acquire(100, NO_WAIT).await.expect("acquire");
    let (held, done): (Vec<_>, Vec<_>) = got.into_iter().partition(|r| r.offset == 15);
    let released: Vec<_> = done.iter().filter(|r| r.offset == 30).cloned().collect();
    let accepted: Vec<_> = done.into_iter().filter(|r| r.offset != 30).collect();
    acknowledge(&member, &accepted, AckKind::Accept).await;
    acknowledge(&member, &released, AckKind::Release).await;
    t.broker.start_background();
    assert!(eventually(|| log_start(&t.broker, "jobs") > 0).await);
    tokio::time::sleep(SEVERAL_CHECKS).await;
    let start = assert_intact_from_log_start(&t.broker, "jobs").await;
    assert!(
        start <= 15,
        "record 15 is in flight, yet the log starts at {start}"
    );

    // A crash: in-flight record 15 and released record 30 come back, with their content.
    drop(member);
    drop(held);
    let t = t.restart_with(fast_checks);
    assert_eq!(
        log_start(&t.broker, "jobs"),
        start,
        "the log start is durable"
    );
    t.broker.start_background();
    let member = join(&t.broker, "workers", "jobs", 100, earliest()).await;
    let again = member.acquire(100, NO_WAIT).await.expect("acquire");
    let seen: Vec<(u64, u32, String)> = again
        .iter()
        .map(|r| (r.offset, r.delivery_count, value(r)))
        .collect();
    assert_eq!(seen, [(15, 2, "r15".to_owned()), (30, 2, "r30".to_owned())]);
    acknowledge(&member, &again[..1], AckKind::Accept).await;
    assert!(eventually(|| log_start(&t.broker, "jobs") > 15).await);
    let start = assert_intact_from_log_start(&t.broker, "jobs").await;
    assert!(
        start <= 30,
        "record 30 is in flight, yet the log starts at {start}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaim_switched_on_live_is_described_and_lasts_across_a_restart() {
    let t = TestBroker::with(fast_checks);
    queue(&t.broker, "jobs", false).await;
    let config = &t.broker.describe_topic("jobs").expect("describe").config;
    assert_eq!(config["share.reclaim.enable"], "false");
    let member = join(&t.broker, "workers", "jobs", 100, earliest()).await;
    let got = member.acquire(100, NO_WAIT).await.expect("acquire");
    acknowledge(&member, &got, AckKind::Accept).await;
    t.broker.start_background();
    tokio::time::sleep(SEVERAL_CHECKS).await;
    assert_eq!(log_start(&t.broker, "jobs"), 0);

    let change = ConfigUpdate::Incremental(vec![ConfigChange::Set {
        key: "share.reclaim.enable".into(),
        value: "true".into(),
    }]);
    let info = t
        .broker
        .alter_topic_config("jobs", change, false)
        .await
        .expect("alter");
    assert_eq!(info.config["share.reclaim.enable"], "true");
    assert_eq!(info.overrides["share.reclaim.enable"], "true");
    assert!(eventually(|| log_start(&t.broker, "jobs") > 0).await);
    let start = assert_intact_from_log_start(&t.broker, "jobs").await;

    drop(member);
    t.broker.shutdown().await.expect("shutdown");
    let t = t.restart_with(fast_checks);
    assert_eq!(log_start(&t.broker, "jobs"), start);
    let info = t.broker.describe_topic("jobs").expect("describe");
    assert_eq!(info.config["share.reclaim.enable"], "true");
    let described = t.broker.describe_share_group("workers").expect("describe");
    assert_eq!(described.partitions[0].start_offset, RECORDS);
}
