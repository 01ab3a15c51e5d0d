//! Share groups: acknowledgement semantics, locks, members, delivery limits and dead letters,
//! durable state across restarts and crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_broker::{
    Ack, AckKind, AcquiredRecord, Broker, BrokerError, ErrorKind, ShareGroupSettings, ShareJoin,
    ShareMember, ShareOffsetReset,
};

use crate::common::{TestBroker, values};

const NO_WAIT: Duration = Duration::ZERO;
const WAIT: Duration = Duration::from_secs(5);

pub(crate) fn earliest() -> ShareGroupSettings {
    ShareGroupSettings {
        auto_offset_reset: ShareOffsetReset::Earliest,
        ..ShareGroupSettings::default()
    }
}

pub(crate) async fn join(
    broker: &Arc<Broker>,
    group: &str,
    topic: &str,
    prefetch: u32,
    settings: ShareGroupSettings,
) -> ShareMember {
    broker
        .share_join(ShareJoin {
            group: group.into(),
            topics: vec![topic.into()],
            prefetch,
            settings: Some(settings),
        })
        .await
        .expect("join")
}

pub(crate) async fn topic_with(broker: &Broker, topic: &str, partitions: u32, records: usize) {
    broker
        .create_topic(topic, partitions, &BTreeMap::new())
        .await
        .expect("create topic");
    for i in 0..records {
        let value = format!("r{i}");
        broker
            .produce(topic, Some(i as u32 % partitions), values(&[&value]))
            .await
            .expect("produce");
    }
}

pub(crate) fn value(record: &AcquiredRecord) -> String {
    String::from_utf8_lossy(record.record.value.as_deref().unwrap_or_default()).into_owned()
}

pub(crate) fn ack(record: &AcquiredRecord, kind: AckKind) -> Ack {
    Ack {
        topic: record.topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        kind,
    }
}

pub(crate) async fn acknowledge(member: &ShareMember, records: &[AcquiredRecord], kind: AckKind) {
    let acks = records.iter().map(|r| ack(r, kind)).collect();
    let results = member.acknowledge(acks).await.expect("acknowledge");
    for result in results {
        result.expect("ack applied");
    }
}

pub(crate) fn offsets(records: &[AcquiredRecord]) -> Vec<u64> {
    records.iter().map(|r| r.offset).collect()
}

#[tokio::test]
async fn accepted_records_are_done_released_ones_come_back_with_their_count() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 1, 5).await;
    let member = join(&t.broker, "workers", "jobs", 10, earliest()).await;
    let got = member.acquire(3, NO_WAIT).await.expect("acquire");
    assert_eq!(offsets(&got), [0, 1, 2]);
    assert_eq!(value(&got[1]), "r1");
    assert!(got.iter().all(|r| r.delivery_count == 1));
    acknowledge(&member, &got[..2], AckKind::Accept).await;
    acknowledge(&member, &got[2..], AckKind::Release).await;
    let again = member.acquire(10, NO_WAIT).await.expect("acquire");
    assert_eq!(offsets(&again), [2, 3, 4]);
    assert_eq!(again[0].delivery_count, 2);
    // Acknowledging twice, or something never delivered, is refused per ack.
    let results = member
        .acknowledge(vec![
            ack(&got[0], AckKind::Accept),
            Ack {
                offset: 99,
                ..ack(&got[0], AckKind::Accept)
            },
            ack(&again[0], AckKind::Accept),
        ])
        .await
        .expect("acknowledge");
    assert!(
        matches!(&results[0], Err(e @ BrokerError::RecordNotHeld { reason, .. })
        if e.kind() == ErrorKind::FailedPrecondition && reason.contains("acknowledged already"))
    );
    assert!(
        matches!(&results[1], Err(BrokerError::RecordNotHeld { reason, .. }) if reason.contains("never delivered"))
    );
    assert!(results[2].is_ok());
    let described = t.broker.describe_share_group("workers").expect("describe");
    let p = &described.partitions[0];
    assert_eq!((p.start_offset, p.end_offset), (3, 5));
    assert_eq!((p.accepted, p.in_flight, p.waiting), (3, 2, 0));
    assert_eq!(described.members[0].held, 2);
}

#[tokio::test]
async fn rejected_and_over_the_limit_records_go_to_the_dead_letter_topic() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 1, 3).await;
    t.broker
        .create_topic("jobs.dlq", 1, &BTreeMap::new())
        .await
        .expect("create dlq");
    let settings = ShareGroupSettings {
        delivery_attempt_limit: 2,
        dead_letter_topic: Some("jobs.dlq".into()),
        ..earliest()
    };
    let member = join(&t.broker, "workers", "jobs", 10, settings).await;
    let got = member.acquire(3, NO_WAIT).await.expect("acquire");
    acknowledge(&member, &got[..1], AckKind::Reject).await;
    acknowledge(&member, &got[1..2], AckKind::Accept).await;
    // Record 2: released twice, then it is past the limit.
    acknowledge(&member, &got[2..], AckKind::Release).await;
    let again = member.acquire(3, NO_WAIT).await.expect("acquire");
    assert_eq!(offsets(&again), [2]);
    assert_eq!(again[0].delivery_count, 2);
    acknowledge(&member, &again, AckKind::Release).await;
    assert!(
        member
            .acquire(3, NO_WAIT)
            .await
            .expect("acquire")
            .is_empty()
    );
    // The background sweep appends the delivery-limit dead letter.
    let mut letters = Vec::new();
    for _ in 0..50 {
        letters = dead_letters(&t.broker).await;
        if letters.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        letters,
        [
            (
                "r0".to_owned(),
                "0".to_owned(),
                "1".to_owned(),
                "rejected".to_owned()
            ),
            (
                "r2".to_owned(),
                "2".to_owned(),
                "2".to_owned(),
                "delivery-limit".to_owned()
            ),
        ]
    );
    let described = t.broker.describe_share_group("workers").expect("describe");
    let p = &described.partitions[0];
    assert_eq!(
        (p.start_offset, p.accepted, p.dead_lettered, p.waiting),
        (3, 1, 2, 0)
    );
}

/// `(value, source offset, delivery count, reason)` of every dead letter, checking the
/// source topic and partition headers.
async fn dead_letters(broker: &Broker) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let fetched = broker
            .fetch("jobs.dlq", 0, next, 0, NO_WAIT)
            .await
            .expect("fetch dlq");
        let mut any = false;
        for record in fetched.records() {
            let record = record.expect("record");
            any = true;
            next = record.offset + 1;
            let header = |name: &str| {
                record
                    .headers
                    .iter()
                    .find(|(k, _)| &k[..] == name.as_bytes())
                    .and_then(|(_, v)| v.as_deref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            assert_eq!(header("sluice.dlq.topic"), "jobs");
            assert_eq!(header("sluice.dlq.partition"), "0");
            out.push((
                String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned(),
                header("sluice.dlq.offset"),
                header("sluice.dlq.delivery.count"),
                header("sluice.dlq.reason"),
            ));
        }
        if !any {
            return out;
        }
    }
}

#[tokio::test]
async fn expired_locks_and_dropped_members_release_their_records() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 1, 4).await;
    let settings = ShareGroupSettings {
        record_lock_duration: Duration::from_millis(200),
        ..earliest()
    };
    let a = join(&t.broker, "workers", "jobs", 2, settings).await;
    let b = t
        .broker
        .share_join(ShareJoin {
            group: "workers".into(),
            topics: vec!["jobs".into()],
            prefetch: 10,
            settings: None,
        })
        .await
        .expect("join");
    let held_by_a = a.acquire(10, NO_WAIT).await.expect("acquire");
    assert_eq!(
        offsets(&held_by_a),
        [0, 1],
        "prefetch bounds what a member holds"
    );
    assert!(a.acquire(10, NO_WAIT).await.expect("acquire").is_empty());
    let held_by_b = b.acquire(10, NO_WAIT).await.expect("acquire");
    assert_eq!(
        offsets(&held_by_b),
        [2, 3],
        "never a record another member holds"
    );
    // b keeps renewing; a's locks expire and b gets them.
    let renew: Vec<(String, u32, u64)> = held_by_b
        .iter()
        .map(|r| ("jobs".into(), 0, r.offset))
        .collect();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(b.renew(&renew).iter().all(Result::is_ok));
    let redelivered = b.acquire(10, WAIT).await.expect("acquire");
    assert_eq!(offsets(&redelivered), [0, 1]);
    assert!(redelivered.iter().all(|r| r.delivery_count == 2));
    let late = a
        .acknowledge(vec![ack(&held_by_a[0], AckKind::Accept)])
        .await
        .expect("acknowledge");
    assert!(matches!(&late[0], Err(BrokerError::RecordNotHeld { .. })));
    // b leaves: all four come back to a new member.
    drop(b);
    let c = t
        .broker
        .share_join(ShareJoin {
            group: "workers".into(),
            topics: vec!["jobs".into()],
            prefetch: 10,
            settings: None,
        })
        .await
        .expect("join");
    assert_eq!(
        offsets(&c.acquire(10, NO_WAIT).await.expect("acquire")),
        [0, 1, 2, 3]
    );
}

#[tokio::test]
async fn a_waiting_member_is_woken_by_an_append_and_by_a_release() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 1, 0).await;
    let a = join(
        &t.broker,
        "workers",
        "jobs",
        10,
        ShareGroupSettings::default(),
    )
    .await;
    let broker = Arc::clone(&t.broker);
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        broker
            .produce("jobs", None, values(&["late"]))
            .await
            .expect("produce");
    });
    let started = std::time::Instant::now();
    let got = a.acquire(10, WAIT).await.expect("acquire");
    assert_eq!(got.iter().map(value).collect::<Vec<_>>(), ["late"]);
    assert!(started.elapsed() < Duration::from_secs(2));
    producer.await.expect("producer");
    let b = join(
        &t.broker,
        "workers",
        "jobs",
        10,
        ShareGroupSettings::default(),
    )
    .await;
    let waiter = tokio::spawn(async move { b.acquire(10, WAIT).await.map(|r| offsets(&r)) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    acknowledge(&a, &got, AckKind::Release).await;
    assert_eq!(waiter.await.expect("waiter").expect("acquire"), [0]);
}

#[tokio::test]
async fn redelivery_waits_for_the_backoff() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 1, 1).await;
    let settings = ShareGroupSettings {
        redelivery_backoff: Duration::from_millis(300),
        ..earliest()
    };
    let a = join(&t.broker, "workers", "jobs", 10, settings).await;
    let got = a.acquire(10, NO_WAIT).await.expect("acquire");
    acknowledge(&a, &got, AckKind::Release).await;
    let released = std::time::Instant::now();
    assert!(a.acquire(10, NO_WAIT).await.expect("acquire").is_empty());
    let again = a.acquire(10, WAIT).await.expect("acquire");
    assert_eq!(offsets(&again), [0]);
    assert!(released.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn many_members_never_hold_the_same_record_and_each_is_accepted_once() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 3, 300).await;
    // Members work until every record is accepted: one that finds nothing for a while (the
    // rest held by others, on a busy machine) keeps asking rather than leaving them behind.
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let member = join(&t.broker, "workers", "jobs", 7, earliest()).await;
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while done.load(std::sync::atomic::Ordering::SeqCst) < 300 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "records left unaccepted"
                );
                let got = member
                    .acquire(5, Duration::from_millis(200))
                    .await
                    .expect("acquire");
                if got.is_empty() {
                    continue;
                }
                // Every third batch is released, to mix redeliveries in; only first
                // deliveries, so no record reaches the delivery limit and is archived.
                let first = got.iter().all(|r| r.delivery_count == 1);
                let kind = if first && accepted.len() % 3 == 1 {
                    AckKind::Release
                } else {
                    AckKind::Accept
                };
                acknowledge(&member, &got, kind).await;
                if kind == AckKind::Accept {
                    accepted.extend(got.iter().map(|r| (r.partition, r.offset)));
                    done.fetch_add(got.len(), std::sync::atomic::Ordering::SeqCst);
                } else {
                    accepted.push((u32::MAX, 0));
                }
            }
            accepted
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(
            task.await
                .expect("member")
                .into_iter()
                .filter(|(p, _)| *p != u32::MAX),
        );
    }
    let unique: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a record was accepted twice");
    assert_eq!(all.len(), 300);
}

#[tokio::test]
async fn state_survives_a_restart_and_a_crash_with_counts_kept() {
    for crash in [false, true] {
        let t = TestBroker::new();
        topic_with(&t.broker, "jobs", 1, 6).await;
        let member = join(&t.broker, "workers", "jobs", 10, earliest()).await;
        let got = member.acquire(4, NO_WAIT).await.expect("acquire");
        acknowledge(&member, &got[..1], AckKind::Accept).await;
        acknowledge(&member, &got[2..3], AckKind::Accept).await;
        acknowledge(&member, &got[3..4], AckKind::Release).await;
        let again = member.acquire(1, NO_WAIT).await.expect("acquire");
        assert_eq!((again[0].offset, again[0].delivery_count), (3, 2));
        // Records 1 (delivered once) and 3 (twice) are in flight; 0 and 2 are accepted.
        // The member's release on drop is in memory only: what counts is the journal.
        drop(member);
        if !crash {
            t.broker.shutdown().await.expect("shutdown");
        }
        let t = t.restart();
        let member = join(&t.broker, "workers", "jobs", 10, earliest()).await;
        let got = member.acquire(10, NO_WAIT).await.expect("acquire");
        let seen: Vec<(u64, u32)> = got.iter().map(|r| (r.offset, r.delivery_count)).collect();
        assert_eq!(seen, [(1, 2), (3, 3), (4, 1), (5, 1)], "crash: {crash}");
        let p = &t
            .broker
            .describe_share_group("workers")
            .expect("describe")
            .partitions[0];
        assert_eq!((p.start_offset, p.accepted), (1, 2), "crash: {crash}");
    }
}

#[tokio::test]
async fn a_new_group_starts_at_the_latest_offset_and_keeps_it_across_restarts() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 1, 3).await;
    let member = join(
        &t.broker,
        "workers",
        "jobs",
        10,
        ShareGroupSettings::default(),
    )
    .await;
    assert!(
        member
            .acquire(10, NO_WAIT)
            .await
            .expect("acquire")
            .is_empty()
    );
    drop(member);
    t.broker
        .produce("jobs", None, values(&["new"]))
        .await
        .expect("produce");
    let t = t.restart();
    t.broker
        .produce("jobs", None, values(&["newer"]))
        .await
        .expect("produce");
    let member = join(
        &t.broker,
        "workers",
        "jobs",
        10,
        ShareGroupSettings::default(),
    )
    .await;
    let got = member.acquire(10, NO_WAIT).await.expect("acquire");
    assert_eq!(got.iter().map(value).collect::<Vec<_>>(), ["new", "newer"]);
}

#[tokio::test]
async fn compaction_keeps_the_state() {
    let t = TestBroker::with(|c| {
        c.share.state_compaction_min_bytes = 4096;
        c.share.state_compaction_ratio = 2;
    });
    topic_with(&t.broker, "jobs", 1, 0).await;
    let many: Vec<String> = (0..400).map(|i| format!("v{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    t.broker
        .produce("jobs", None, values(&refs))
        .await
        .expect("produce");
    let member = join(&t.broker, "workers", "jobs", 1000, earliest()).await;
    for _ in 0..100 {
        let got = member.acquire(4, NO_WAIT).await.expect("acquire");
        acknowledge(&member, &got[..3], AckKind::Accept).await;
        acknowledge(&member, &got[3..], AckKind::Release).await;
    }
    let files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(t.dir.path().join("share"))
            .expect("share dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let mut compacted = false;
    for _ in 0..50 {
        if files().iter().any(|n| n.ends_with(".snapshot")) {
            compacted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(compacted, "no snapshot: {:?}", files());
    let before = t.broker.describe_share_group("workers").expect("describe");
    drop(member);
    let t = t.restart();
    let after = t.broker.describe_share_group("workers").expect("describe");
    assert_eq!(after.partitions[0].accepted, before.partitions[0].accepted);
    assert_eq!(
        after.partitions[0].start_offset,
        before.partitions[0].start_offset
    );
    let member = join(&t.broker, "workers", "jobs", 1000, earliest()).await;
    let rest = member.acquire(1000, NO_WAIT).await.expect("acquire");
    assert_eq!(rest.len() as u64, 400 - after.partitions[0].accepted);
}

#[tokio::test]
async fn groups_are_listed_altered_and_deleted_only_without_members() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 2, 0).await;
    let member = join(
        &t.broker,
        "workers",
        "jobs",
        10,
        ShareGroupSettings::default(),
    )
    .await;
    let listed = t.broker.list_share_groups();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].topics.clone(), listed[0].members),
        (vec!["jobs".to_owned()], 1)
    );
    let err = t.broker.delete_share_group("workers").await;
    assert!(matches!(
        err,
        Err(BrokerError::ShareGroupHasMembers { members: 1, .. })
    ));
    let changed = ShareGroupSettings {
        delivery_attempt_limit: 3,
        ..ShareGroupSettings::default()
    };
    t.broker
        .alter_share_group("workers", changed.clone())
        .await
        .expect("alter");
    let loop_dlq = ShareGroupSettings {
        dead_letter_topic: Some("jobs".into()),
        ..ShareGroupSettings::default()
    };
    assert!(
        t.broker
            .alter_share_group("workers", loop_dlq)
            .await
            .is_err()
    );
    drop(member);
    let t = t.restart();
    assert_eq!(
        t.broker
            .describe_share_group("workers")
            .expect("describe")
            .settings,
        changed
    );
    t.broker
        .delete_share_group("workers")
        .await
        .expect("delete");
    assert!(matches!(
        t.broker.describe_share_group("workers"),
        Err(e @ BrokerError::ShareGroupNotFound { .. }) if e.kind() == ErrorKind::NotFound
    ));
    let t = t.restart();
    assert!(t.broker.list_share_groups().is_empty());
    let bad = t
        .broker
        .share_join(ShareJoin {
            group: "workers".into(),
            topics: vec!["jobs".into()],
            prefetch: 0,
            settings: None,
        })
        .await;
    assert!(matches!(
        bad,
        Err(BrokerError::InvalidRequest {
            field: "prefetch",
            ..
        })
    ));
}

/// A group reading `jobs` (two records) with dead-letter topic `jobs.dlq`, whose member has
/// rejected record 0 after `jobs.dlq` was deleted: the dead letter waits.
async fn reject_with_the_dead_letter_topic_gone(t: &TestBroker) -> ShareMember {
    topic_with(&t.broker, "jobs", 1, 2).await;
    topic_with(&t.broker, "jobs.dlq", 1, 0).await;
    let settings = ShareGroupSettings {
        dead_letter_topic: Some("jobs.dlq".into()),
        ..earliest()
    };
    let member = join(&t.broker, "workers", "jobs", 10, settings).await;
    let got = member.acquire(2, NO_WAIT).await.expect("acquire");
    assert_eq!(offsets(&got), [0, 1]);
    t.broker.delete_topic("jobs.dlq").await.expect("delete dlq");
    let results = member
        .acknowledge(vec![ack(&got[0], AckKind::Reject)])
        .await
        .expect("acknowledge");
    assert!(
        matches!(&results[..], [Err(_)]),
        "the dead letter cannot be appended: {results:?}"
    );
    member
}

#[tokio::test]
async fn a_reject_waiting_for_its_dead_letter_is_not_delivered_again_after_a_crash() {
    let t = TestBroker::new();
    let member = reject_with_the_dead_letter_topic_gone(&t).await;
    drop(member);
    let t = t.restart(); // no shutdown: a crash
    let member = join(&t.broker, "workers", "jobs", 10, earliest()).await;
    let got = member.acquire(10, NO_WAIT).await.expect("acquire");
    let seen: Vec<(u64, u32)> = got.iter().map(|r| (r.offset, r.delivery_count)).collect();
    assert_eq!(
        seen,
        [(1, 2)],
        "the rejected record 0 is not delivered again"
    );
    // Once the dead-letter topic exists again, a sweep appends the waiting dead letter.
    topic_with(&t.broker, "jobs.dlq", 1, 0).await;
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = dead_letters(&t.broker).await;
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rejected = ("r0", "0", "1", "rejected");
    let rejected = [rejected].map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()));
    assert_eq!(letters, rejected);
}

#[tokio::test]
async fn removing_the_dead_letter_topic_archives_the_records_waiting_for_it() {
    let t = TestBroker::new();
    let member = reject_with_the_dead_letter_topic_gone(&t).await;
    let waiting = t.broker.describe_share_group("workers").expect("describe");
    assert_eq!(waiting.partitions[0].dead_lettered, 0);
    t.broker
        .alter_share_group("workers", earliest())
        .await
        .expect("alter");
    let p = &t
        .broker
        .describe_share_group("workers")
        .expect("describe")
        .partitions[0];
    assert_eq!((p.start_offset, p.dead_lettered, p.in_flight), (1, 1, 1));
    drop(member);
    let t = t.restart();
    let p = &t
        .broker
        .describe_share_group("workers")
        .expect("describe")
        .partitions[0];
    assert_eq!((p.start_offset, p.dead_lettered), (1, 1));
}

#[tokio::test]
async fn a_refused_join_leaves_no_group_behind() {
    let t = TestBroker::new();
    topic_with(&t.broker, "jobs", 1, 0).await;
    for dlq in ["jobs", "missing"] {
        let settings = ShareGroupSettings {
            dead_letter_topic: Some(dlq.into()),
            ..earliest()
        };
        let refused = t
            .broker
            .share_join(ShareJoin {
                group: "workers".into(),
                topics: vec!["jobs".into()],
                prefetch: 1,
                settings: Some(settings),
            })
            .await;
        assert!(
            matches!(refused, Err(BrokerError::InvalidConfig { ref key, .. }) if key == "share.dead.letter.topic"),
            "{dlq}: {refused:?}"
        );
        assert!(t.broker.list_share_groups().is_empty(), "{dlq}");
    }
    // The next join creates the group with its own settings, durably.
    let member = join(&t.broker, "workers", "jobs", 1, earliest()).await;
    drop(member);
    let t = t.restart();
    let described = t.broker.describe_share_group("workers").expect("describe");
    assert_eq!(described.settings, earliest());
}
