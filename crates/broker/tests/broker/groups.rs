//! Consumer groups: cooperative rebalancing, fencing, liveness, static membership and
//! durable committed offsets.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{TestBroker, overrides, values};
use sluice_broker::{
    Broker, BrokerError, GroupMember, GroupState, JoinGroup, MemberAssignment, OffsetReset,
    OffsetSpec, ResetTo, TopicPartition,
};

/// A broker whose groups accept session timeouts down to 100 ms, with topic `t` of 6
/// partitions.
async fn broker_with_topic() -> TestBroker {
    let t = TestBroker::with(|config| {
        config.groups.min_session_timeout = Duration::from_millis(100);
    });
    t.broker
        .create_topic("t", 6, &overrides(&[]))
        .await
        .expect("create topic");
    t
}

fn join_request(group: &str) -> JoinGroup {
    JoinGroup::new(group, ["t"])
}

async fn join(broker: &Arc<Broker>, request: JoinGroup) -> GroupMember {
    broker.join_group(request).await.expect("join")
}

fn current(member: &mut GroupMember) -> MemberAssignment {
    member.assignment().expect("member is in the group")
}

fn set(partitions: &[TopicPartition]) -> BTreeSet<TopicPartition> {
    partitions.iter().cloned().collect()
}

/// Waits (up to 5 s) until the member's assignment satisfies `done`.
async fn until(
    member: &mut GroupMember,
    done: impl Fn(&MemberAssignment) -> bool,
) -> MemberAssignment {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let view = current(member);
            if done(&view) {
                return view;
            }
            member.changed().await.expect("still a member");
        }
    })
    .await
    .expect("assignment reached in time")
}

/// Releases everything the member is asked to give up, returning what it released.
fn release_revoked(member: &mut GroupMember) -> Vec<TopicPartition> {
    let revoking = current(member).revoking;
    member.release(&revoking).expect("release");
    revoking
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_partitions_and_hand_over_only_after_release() {
    let t = broker_with_topic().await;
    let mut a = join(&t.broker, join_request("g")).await;
    let first = current(&mut a);
    assert_eq!(first.partitions.len(), 6);
    assert!(first.revoking.is_empty());

    let mut b = join(&t.broker, join_request("g")).await;
    let a_view = current(&mut a);
    assert_eq!((a_view.partitions.len(), a_view.revoking.len()), (3, 3));
    // b gets nothing until a lets go.
    assert!(current(&mut b).partitions.is_empty());
    assert_eq!(
        t.broker.describe_group("g").expect("describe").state,
        GroupState::Rebalancing
    );
    let released = release_revoked(&mut a);
    let (a2, b2) = (current(&mut a), current(&mut b));
    assert_eq!(set(&b2.partitions), set(&released));
    assert!(set(&a2.partitions).is_disjoint(&set(&b2.partitions)));
    assert_eq!(a2.partitions.len() + b2.partitions.len(), 6);
    assert!(b2.generation > first.generation);
    assert_eq!(
        t.broker.describe_group("g").expect("describe").state,
        GroupState::Stable
    );

    // A third member: each of the others gives up exactly one partition.
    let mut c = join(&t.broker, join_request("g")).await;
    let (a3, b3) = (current(&mut a), current(&mut b));
    assert_eq!((a3.revoking.len(), b3.revoking.len()), (1, 1));
    release_revoked(&mut a);
    release_revoked(&mut b);
    let (a4, b4, c4) = (current(&mut a), current(&mut b), current(&mut c));
    for view in [&a4, &b4, &c4] {
        assert_eq!(view.partitions.len(), 2, "{view:?}");
    }
    assert!(set(&a4.partitions).is_subset(&set(&a2.partitions)));
    assert!(set(&b4.partitions).is_subset(&set(&b2.partitions)));
    let all: BTreeSet<TopicPartition> = [&a4, &b4, &c4]
        .iter()
        .flat_map(|v| v.partitions.iter().cloned())
        .collect();
    assert_eq!(all.len(), 6);

    // A dynamic member leaving hands its partitions over at once, to the others only.
    let c_had = set(&c4.partitions);
    drop(c);
    let (a5, b5) = (current(&mut a), current(&mut b));
    assert_eq!(a5.partitions.len() + b5.partitions.len(), 6);
    assert!(set(&a4.partitions).is_subset(&set(&a5.partitions)));
    assert!(set(&b4.partitions).is_subset(&set(&b5.partitions)));
    let gained: BTreeSet<TopicPartition> = a5
        .partitions
        .iter()
        .chain(&b5.partitions)
        .filter(|tp| !a4.partitions.contains(tp) && !b4.partitions.contains(tp))
        .cloned()
        .collect();
    assert_eq!(gained, c_had);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_fenced_by_member_generation_and_ownership() {
    let t = broker_with_topic().await;
    t.broker
        .produce("t", Some(0), values(&["a", "b", "c"]))
        .await
        .expect("produce");
    let mut a = join(&t.broker, join_request("g")).await;
    let old_generation = current(&mut a).generation;
    let mut b = join(&t.broker, join_request("g")).await;
    // While revoking, a still owns its revoked partitions and may commit them.
    let revoking = current(&mut a).revoking;
    let generation = current(&mut a).generation;
    let commits: Vec<(TopicPartition, u64)> = revoking.iter().map(|tp| (tp.clone(), 0)).collect();
    a.commit(generation, &commits)
        .await
        .expect("commit while revoking");
    a.release(&revoking).expect("release");

    let b_view = current(&mut b);
    let tp = b_view.partitions[0].clone();
    // b was given tp after old_generation: a commit carrying it is stale.
    let stale = b.commit(old_generation, &[(tp.clone(), 0)]).await;
    assert!(
        matches!(stale, Err(BrokerError::StaleGeneration { generation, current, .. })
            if generation == old_generation && current == b_view.generation),
        "{stale:?}"
    );
    let future = b.commit(b_view.generation + 1, &[(tp.clone(), 0)]).await;
    assert!(
        matches!(future, Err(BrokerError::StaleGeneration { .. })),
        "{future:?}"
    );
    b.commit(b_view.generation, &[(tp.clone(), 0)])
        .await
        .expect("current generation");
    // a no longer owns tp.
    let a_generation = current(&mut a).generation;
    let foreign = a.commit(a_generation, &[(tp.clone(), 0)]).await;
    assert!(
        matches!(foreign, Err(BrokerError::NotPartitionOwner { ref topic, partition, .. })
            if *topic == tp.topic && partition == tp.partition),
        "{foreign:?}"
    );
    let unknown = t
        .broker
        .commit_offsets("g", b_view.generation, "nobody", &[(tp.clone(), 0)])
        .await;
    assert!(
        matches!(unknown, Err(BrokerError::UnknownMember { .. })),
        "{unknown:?}"
    );
    let anonymous = t
        .broker
        .commit_offsets("g", 0, "", &[(tp.clone(), 0)])
        .await;
    assert!(
        matches!(
            anonymous,
            Err(BrokerError::GroupNotEmpty { members: 2, .. })
        ),
        "{anonymous:?}"
    );
    let beyond = b.commit(b_view.generation, &[(tp.clone(), 1000)]).await;
    assert!(
        matches!(
            beyond,
            Err(BrokerError::CommitOutOfRange { offset: 1000, .. })
        ),
        "{beyond:?}"
    );
    // Only accepted commits changed anything.
    let offsets = t
        .broker
        .fetch_offsets("g", Some("t"))
        .expect("fetch offsets");
    assert!(
        offsets
            .iter()
            .all(|o| o.committed.is_none_or(|c| c.offset == 0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_crash_and_consumption_resumes_there() {
    let t = broker_with_topic().await;
    let records: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let records: Vec<&str> = records.iter().map(String::as_str).collect();
    t.broker
        .produce("t", Some(2), values(&records))
        .await
        .expect("produce");
    let tp = TopicPartition::new("t", 2);
    let mut request = join_request("g");
    request.auto_offset_reset = OffsetReset::Earliest;
    let mut a = join(&t.broker, request.clone()).await;
    assert_eq!(a.start_offset(&tp).expect("start"), 0);
    let generation = current(&mut a).generation;
    a.commit(generation, &[(tp.clone(), 7)])
        .await
        .expect("commit");
    drop(a);

    // Dropping the broker without shutting it down is a crash as far as the files go.
    let t = t.restart();
    let offsets = t.broker.fetch_offsets("g", None).expect("fetch offsets");
    assert_eq!(offsets.len(), 1);
    assert_eq!(offsets[0].partition, tp);
    assert_eq!(offsets[0].committed.map(|c| c.offset), Some(7));
    let description = t.broker.describe_group("g").expect("describe");
    assert_eq!(description.state, GroupState::Empty);
    let lag = description
        .partitions
        .iter()
        .find(|p| p.partition == tp)
        .expect("partition 2 described");
    assert_eq!((lag.high_watermark, lag.lag), (10, 3));

    let a = join(&t.broker, request).await;
    assert_eq!(a.start_offset(&tp).expect("start"), 7);
    // No commit for partition 0: earliest.
    assert_eq!(
        a.start_offset(&TopicPartition::new("t", 0)).expect("start"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_expires_and_its_partitions_move() {
    let t = broker_with_topic().await;
    let mut quiet_request = join_request("g");
    quiet_request.session_timeout = Some(Duration::from_millis(300));
    let mut quiet = join(&t.broker, quiet_request).await;
    let mut busy_request = join_request("g");
    busy_request.session_timeout = Some(Duration::from_secs(10));
    let mut busy = join(&t.broker, busy_request).await;
    release_revoked(&mut quiet);
    assert_eq!(current(&mut busy).partitions.len(), 3);

    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(e) = quiet.changed().await {
                return e;
            }
        }
    })
    .await
    .expect("the silent member expires");
    assert!(
        matches!(ended, BrokerError::SessionExpired { .. }),
        "{ended}"
    );
    // The other member's view is published right after (by the same tick).
    let all = until(&mut busy, |view| view.partitions.len() == 6).await;
    assert!(all.revoking.is_empty());
    let description = t.broker.describe_group("g").expect("describe");
    assert_eq!(description.members.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_revocation_times_out() {
    let t = broker_with_topic().await;
    let mut request = join_request("g");
    request.rebalance_timeout = Some(Duration::from_millis(200));
    let mut slow = join(&t.broker, request).await;
    let mut other = join(&t.broker, join_request("g")).await;
    let revoking = current(&mut slow).revoking;
    assert_eq!(revoking.len(), 3);
    assert!(current(&mut other).partitions.is_empty());
    let handed_over = until(&mut other, |view| !view.partitions.is_empty()).await;
    assert_eq!(set(&handed_over.partitions), set(&revoking));
    assert!(current(&mut slow).revoking.is_empty());
    let late = slow
        .commit(handed_over.generation, &[(revoking[0].clone(), 0)])
        .await;
    assert!(
        matches!(late, Err(BrokerError::NotPartitionOwner { .. })),
        "{late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_rejoins_without_a_rebalance() {
    let t = broker_with_topic().await;
    let mut request = join_request("g");
    request.instance_id = Some("worker-1".into());
    request.session_timeout = Some(Duration::from_secs(10));
    let mut first = join(&t.broker, request.clone()).await;
    let mut other = join(&t.broker, join_request("g")).await;
    release_revoked(&mut first);
    let kept = current(&mut first).partitions;
    let others = current(&mut other);
    assert_eq!(kept.len(), 3);

    // Its stream closes: it keeps its partitions, unconsumed, and nobody else moves.
    drop(first);
    let description = t.broker.describe_group("g").expect("describe");
    let static_member = description
        .members
        .iter()
        .find(|m| m.instance_id.as_deref() == Some("worker-1"))
        .expect("static member still listed");
    assert!(!static_member.connected);
    assert_eq!(static_member.assigned, kept);

    let mut second = join(&t.broker, request.clone()).await;
    assert_eq!(current(&mut second).partitions, kept);
    let unchanged = tokio::time::timeout(Duration::from_millis(300), other.changed()).await;
    assert!(
        unchanged.is_err(),
        "the other member was disturbed: {unchanged:?}"
    );
    assert_eq!(current(&mut other).partitions, others.partitions);
    // The new member commits with the generation it was given.
    let generation = current(&mut second).generation;
    second
        .commit(generation, &[(kept[0].clone(), 0)])
        .await
        .expect("commit");

    // A third with the same instance id fences the second, which is still connected.
    let mut third = join(&t.broker, request).await;
    assert_eq!(current(&mut third).partitions, kept);
    let fenced = second.assignment();
    assert!(
        matches!(fenced, Err(BrokerError::MemberFenced { ref instance_id, .. }) if instance_id == "worker-1"),
        "{fenced:?}"
    );
    let stale = second.commit(generation, &[(kept[0].clone(), 0)]).await;
    assert!(
        matches!(stale, Err(BrokerError::UnknownMember { .. })),
        "{stale:?}"
    );
    assert_eq!(
        t.broker
            .describe_group("g")
            .expect("describe")
            .members
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_static_member_loses_its_partitions_after_its_session_timeout() {
    let t = broker_with_topic().await;
    let mut request = join_request("g");
    request.instance_id = Some("worker-1".into());
    request.session_timeout = Some(Duration::from_millis(300));
    let mut gone = join(&t.broker, request).await;
    let mut stays_request = join_request("g");
    stays_request.session_timeout = Some(Duration::from_secs(10));
    let mut stays = join(&t.broker, stays_request).await;
    release_revoked(&mut gone);
    drop(gone);
    assert_eq!(current(&mut stays).partitions.len(), 3);
    let all = until(&mut stays, |view| view.partitions.len() == 6).await;
    assert!(all.revoking.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_delete_wait_for_the_members_to_leave() {
    let t = broker_with_topic().await;
    t.broker
        .produce("t", Some(1), values(&["a", "b", "c", "d"]))
        .await
        .expect("produce");
    let a = join(&t.broker, join_request("g")).await;
    let refused = t
        .broker
        .reset_offsets("g", "t", &[], ResetTo::Lookup(OffsetSpec::Earliest))
        .await;
    assert!(
        matches!(refused, Err(BrokerError::GroupNotEmpty { members: 1, .. })),
        "{refused:?}"
    );
    let refused = t.broker.delete_group("g").await;
    assert!(
        matches!(refused, Err(BrokerError::GroupNotEmpty { .. })),
        "{refused:?}"
    );
    drop(a);

    let reset = t
        .broker
        .reset_offsets("g", "t", &[1], ResetTo::Offset(2))
        .await
        .expect("reset");
    assert_eq!(reset.len(), 1);
    assert_eq!(reset[0].committed.map(|c| c.offset), Some(2));
    let far_future = ResetTo::Lookup(OffsetSpec::Timestamp(i64::MAX));
    let latest = t
        .broker
        .reset_offsets("g", "t", &[0, 1], far_future)
        .await
        .expect("reset by time");
    let offsets: Vec<Option<u64>> = latest
        .iter()
        .map(|o| o.committed.map(|c| c.offset))
        .collect();
    assert_eq!(offsets, [Some(0), Some(4)]);
    let out_of_range = t
        .broker
        .reset_offsets("g", "t", &[1], ResetTo::Offset(5))
        .await;
    assert!(
        matches!(
            out_of_range,
            Err(BrokerError::OffsetOutOfRange { requested: 5, .. })
        ),
        "{out_of_range:?}"
    );
    assert_eq!(t.broker.list_groups().len(), 1);

    t.broker.delete_group("g").await.expect("delete");
    assert!(t.broker.list_groups().is_empty());
    // Durably: the deletion is in the offsets log.
    let t = t.restart();
    assert!(t.broker.list_groups().is_empty());
    assert!(matches!(
        t.broker.describe_group("g"),
        Err(BrokerError::GroupNotFound { .. })
    ));
    assert!(matches!(
        t.broker.delete_group("g").await,
        Err(BrokerError::GroupNotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_drops_its_offsets_and_partitions() {
    let t = broker_with_topic().await;
    t.broker
        .create_topic("x", 2, &overrides(&[]))
        .await
        .expect("create x");
    t.broker
        .commit_offsets(
            "g",
            0,
            "",
            &[
                (TopicPartition::new("t", 0), 0),
                (TopicPartition::new("x", 1), 0),
            ],
        )
        .await
        .expect("commit");
    let mut member = join(&t.broker, JoinGroup::new("h", ["t", "x"])).await;
    assert_eq!(current(&mut member).partitions.len(), 8);

    t.broker.delete_topic("x").await.expect("delete x");
    let left: Vec<TopicPartition> = t
        .broker
        .fetch_offsets("g", None)
        .expect("fetch")
        .into_iter()
        .map(|o| o.partition)
        .collect();
    assert_eq!(left, [TopicPartition::new("t", 0)]);
    let view = current(&mut member);
    assert_eq!(view.partitions.len(), 6);
    assert!(view.partitions.iter().all(|tp| tp.topic == "t"));
    drop(member);

    // Durably: a topic created again under the name starts without offsets.
    let t = t.restart();
    t.broker
        .create_topic("x", 2, &overrides(&[]))
        .await
        .expect("create x again");
    let x = t.broker.fetch_offsets("g", Some("x")).expect("fetch");
    assert!(x.iter().all(|o| o.committed.is_none()), "{x:?}");
    assert_eq!(t.broker.fetch_offsets("g", None).expect("fetch").len(), 1);
}

/// The offsets log's only segment in a fresh data directory.
fn offsets_segment(t: &TestBroker) -> PathBuf {
    t.dir
        .path()
        .join("groups")
        .join("offsets-00000000000000000000.log")
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_offsets_log_stops_the_broker_from_opening() {
    let t = broker_with_topic().await;
    for offset in [0, 0] {
        t.broker
            .commit_offsets("g", 0, "", &[(TopicPartition::new("t", 0), offset)])
            .await
            .expect("commit");
    }
    let file = offsets_segment(&t);
    let mut bytes = fs::read(&file).expect("read the offsets log");
    // The last byte of the first frame: a second frame follows, so this is no torn write.
    let end_of_first = 6 + (bytes.len() - 6) / 2;
    bytes[end_of_first - 1] ^= 0x55;
    fs::write(&file, bytes).expect("corrupt the offsets log");
    let TestBroker { dir, broker } = t;
    drop(broker);
    match Broker::open(crate::common::config(dir.path())) {
        Err(BrokerError::OffsetsCorrupt { path, reason }) => {
            assert_eq!(path, file);
            assert!(reason.contains("at byte 6: CRC mismatch"), "{reason}");
        }
        other => panic!("opened over a corrupt offsets log: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_writes_its_own_size_not_the_groups() {
    let t = TestBroker::new();
    t.broker
        .create_topic("wide", 500, &overrides(&[]))
        .await
        .expect("create");
    let all: Vec<(TopicPartition, u64)> = (0..500)
        .map(|p| (TopicPartition::new("wide", p), 0))
        .collect();
    t.broker
        .commit_offsets("g", 0, "", &all)
        .await
        .expect("commit every partition");
    let groups = t.dir.path().join("groups");
    let before = dir_bytes(&groups);
    t.broker
        .commit_offsets("g", 0, "", &[(TopicPartition::new("wide", 7), 0)])
        .await
        .expect("commit one partition");
    // The commit is appended: a few dozen bytes, not the group's 500 offsets again.
    let grown = dir_bytes(&groups) - before;
    assert!((1..100).contains(&grown), "grew by {grown} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_log_is_compacted_while_commits_go_on() {
    let t = TestBroker::with(|config| {
        config.groups.offsets_compaction_min_bytes = 4096;
        config.groups.offsets_compaction_ratio = 2;
    });
    t.broker
        .create_topic("t", 8, &overrides(&[]))
        .await
        .expect("create");
    t.broker
        .produce("t", Some(0), values(&["a"; 200]))
        .await
        .expect("produce");
    let committers = (0..4u32).map(|c| {
        let broker = Arc::clone(&t.broker);
        tokio::spawn(async move {
            for offset in 0..=200 {
                let tp = TopicPartition::new("t", 0);
                let group = format!("g{c}");
                broker
                    .commit_offsets(&group, 0, "", &[(tp, offset)])
                    .await
                    .expect("commit");
            }
        })
    });
    for committer in committers.collect::<Vec<_>>() {
        committer.await.expect("committer");
    }
    // 804 commits of ~40 bytes each: the log went past 4 KiB, and it holds only 4 offsets.
    let groups = t.dir.path().join("groups");
    let compacted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let names: Vec<String> = fs::read_dir(&groups)
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            if names.iter().any(|n| n.ends_with(".snapshot")) && dir_bytes(&groups) < 4096 {
                return names;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        compacted.is_ok(),
        "no compaction: {} bytes",
        dir_bytes(&groups)
    );
    let t = t.restart();
    for c in 0..4 {
        let offsets = t
            .broker
            .fetch_offsets(&format!("g{c}"), Some("t"))
            .expect("fetch");
        assert_eq!(offsets[0].committed.map(|c| c.offset), Some(200), "g{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_files_of_earlier_versions_are_migrated_into_the_log() {
    let t = TestBroker::new();
    for (topic, partitions) in [("orders", 3), ("payments.v2", 2)] {
        t.broker
            .create_topic(topic, partitions, &overrides(&[]))
            .await
            .expect("create");
        t.broker
            .produce(topic, Some(partitions - 1), values(&["x"; 20]))
            .await
            .expect("produce");
    }
    let TestBroker { dir, broker } = t;
    broker.shutdown().await.expect("shutdown");
    drop(broker);
    // A data directory written before the offsets log: one file per group.
    let groups = dir.path().join("groups");
    fs::remove_dir_all(&groups).expect("empty the groups directory");
    fs::create_dir(&groups).expect("create it again");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/offsets-files");
    for name in ["billing.offsets", "audit.offsets"] {
        fs::copy(fixtures.join(name), groups.join(name)).expect("copy fixture");
    }
    let broker = Broker::open(crate::common::config(dir.path())).expect("open");
    let t = TestBroker { dir, broker };
    let committed = |t: &TestBroker, group: &str| -> Vec<(String, u32, u64, i64)> {
        let offsets = t.broker.fetch_offsets(group, None).expect("fetch");
        offsets
            .into_iter()
            .filter_map(|o| {
                let c = o.committed?;
                Some((
                    o.partition.topic,
                    o.partition.partition,
                    c.offset,
                    c.commit_ms,
                ))
            })
            .collect()
    };
    let billing = vec![
        ("orders".to_owned(), 0, 17, 1_700_000_000_001),
        ("orders".to_owned(), 1, 0, 1_700_000_000_002),
        ("orders".to_owned(), 2, 4, 1_700_000_000_003),
        ("payments.v2".to_owned(), 1, 2, 1_700_000_000_004),
    ];
    let audit = vec![("orders".to_owned(), 2, 5, 1_700_000_000_005)];
    assert_eq!(committed(&t, "billing"), billing);
    assert_eq!(committed(&t, "audit"), audit);
    assert!(!groups.join("billing.offsets").exists());
    assert!(!groups.join("audit.offsets").exists());
    // The offsets now live in the log alone, and new commits go on from them.
    t.broker
        .commit_offsets("audit", 0, "", &[(TopicPartition::new("orders", 2), 6)])
        .await
        .expect("commit");
    let t = t.restart();
    assert_eq!(committed(&t, "billing"), billing);
    assert_eq!(committed(&t, "audit")[0].2, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_all_durable() {
    let t = TestBroker::new();
    t.broker
        .create_topic("wide", 64, &overrides(&[]))
        .await
        .expect("create");
    let commits = (0..64u32).map(|p| {
        let broker = Arc::clone(&t.broker);
        tokio::spawn(async move {
            broker
                .commit_offsets("g", 0, "", &[(TopicPartition::new("wide", p), 0)])
                .await
        })
    });
    let commits: Vec<_> = commits.collect();
    for commit in commits {
        commit.await.expect("task").expect("commit");
    }
    let t = t.restart();
    let stored = t.broker.fetch_offsets("g", None).expect("fetch");
    assert_eq!(stored.len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_validated() {
    let t = broker_with_topic().await;
    type Expected = fn(&BrokerError) -> bool;
    let cases: Vec<(JoinGroup, Expected)> = vec![
        (JoinGroup::new("bad name", ["t"]), |e| {
            matches!(e, BrokerError::InvalidGroupName { .. })
        }),
        (JoinGroup::new("g", Vec::<String>::new()), |e| {
            matches!(e, BrokerError::InvalidJoin { .. })
        }),
        (JoinGroup::new("g", ["missing"]), |e| {
            matches!(e, BrokerError::TopicNotFound { .. })
        }),
        (
            JoinGroup {
                session_timeout: Some(Duration::from_millis(10)),
                ..join_request("g")
            },
            |e| matches!(e, BrokerError::InvalidJoin { reason, .. } if reason.contains("10 ms")),
        ),
        (
            JoinGroup {
                instance_id: Some("a/b".into()),
                ..join_request("g")
            },
            |e| matches!(e, BrokerError::InvalidJoin { reason, .. } if reason.contains("instance id")),
        ),
    ];
    for (request, expected) in cases {
        let result = t.broker.join_group(request.clone()).await;
        match result {
            Err(e) => assert!(expected(&e), "{request:?} gave {e}"),
            Ok(_) => panic!("{request:?} accepted"),
        }
    }
    assert!(t.broker.list_groups().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_member() {
    let t = broker_with_topic().await;
    let mut member = join(&t.broker, join_request("g")).await;
    t.broker.shutdown().await.expect("shutdown");
    let ended = tokio::time::timeout(Duration::from_secs(5), member.changed())
        .await
        .expect("told");
    assert!(matches!(ended, Err(BrokerError::ShuttingDown)), "{ended:?}");
    let refused = t.broker.join_group(join_request("g")).await;
    assert!(matches!(refused, Err(BrokerError::ShuttingDown)));
}
