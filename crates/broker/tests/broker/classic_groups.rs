//! Client-assigned (Kafka classic) groups: the join and sync phases, heartbeats, leaving,
//! session and rebalance timeouts, member ids required, static membership, fenced and
//! standalone commits, coexistence with server-assigned groups, and descriptions. Time is
//! paused, so the timeouts pass at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

use crate::common::{TestBroker, overrides, values};
use sluice_broker::{
    Broker, BrokerError, ClassicCommit, ClassicJoin, ClassicJoined, ClassicSync, ClassicSynced,
    ErrorKind, GroupKind, GroupState, JoinGroup, LeavingMember, TopicPartition,
};

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(5);

/// A broker with topic `t` of 6 partitions whose groups accept session timeouts down to
/// 100 ms and wait `initial_delay` in the first join phase.
async fn broker_with(initial_delay: Duration, max_members: usize) -> TestBroker {
    let t = TestBroker::with(|config| {
        config.groups.min_session_timeout = Duration::from_millis(100);
        config.groups.initial_rebalance_delay = initial_delay;
        config.groups.max_members = max_members;
    });
    t.broker
        .create_topic("t", 6, &overrides(&[]))
        .await
        .expect("create topic");
    t
}

/// A broker whose first join phases wait 100 ms, so members joining together share one.
async fn broker() -> TestBroker {
    broker_with(Duration::from_millis(100), 1000).await
}

/// A new member of group `g` with client id `client`, supporting `range` then `roundrobin`
/// (the metadata names the member and the protocol).
fn member(client: &str) -> ClassicJoin {
    let protocols = ["range", "roundrobin"]
        .map(|name| (name.to_owned(), Bytes::from(format!("{client} {name}"))))
        .to_vec();
    let mut join = ClassicJoin::new("g", "consumer", protocols);
    join.client_id = client.to_owned();
    join.client_host = format!("/10.0.0.1:{client}");
    join.session_timeout = Some(SESSION);
    join.rebalance_timeout = Some(REBALANCE);
    join.topics = vec!["t".to_owned()];
    join
}

/// `request` joining again as the member it became.
fn rejoin(request: &ClassicJoin, joined: &ClassicJoined) -> ClassicJoin {
    ClassicJoin {
        member_id: joined.member_id.clone(),
        ..request.clone()
    }
}

fn spawn_join(
    broker: &Arc<Broker>,
    request: ClassicJoin,
) -> JoinHandle<Result<ClassicJoined, BrokerError>> {
    let broker = Arc::clone(broker);
    tokio::spawn(async move { broker.join_classic(request).await })
}

async fn answer<T>(task: JoinHandle<Result<T, BrokerError>>) -> Result<T, BrokerError> {
    task.await.expect("task")
}

/// Joins every request at once (one join phase); the answers, in request order.
async fn join_all(broker: &Arc<Broker>, requests: &[ClassicJoin]) -> Vec<ClassicJoined> {
    let tasks: Vec<_> = requests
        .iter()
        .map(|request| spawn_join(broker, request.clone()))
        .collect();
    let mut joined = Vec::new();
    for task in tasks {
        joined.push(answer(task).await.expect("joined"));
    }
    joined
}

/// The assignment a leader computes for a member, in these tests.
fn assignment_for(member_id: &str) -> Bytes {
    Bytes::from(format!("partitions of {member_id}"))
}

fn sync_request(joined: &ClassicJoined, assignments: Vec<(String, Bytes)>) -> ClassicSync {
    ClassicSync {
        group: "g".to_owned(),
        generation: joined.generation,
        member_id: joined.member_id.clone(),
        instance_id: None,
        protocol_type: Some(joined.protocol_type.clone()),
        protocol: Some(joined.protocol.clone()),
        assignments,
    }
}

/// What the leader among `joined` sends: an assignment for every member.
fn leader_sync(joined: &ClassicJoined) -> ClassicSync {
    let assignments = joined
        .members
        .iter()
        .map(|m| (m.member_id.clone(), assignment_for(&m.member_id)))
        .collect();
    sync_request(joined, assignments)
}

fn spawn_sync(
    broker: &Arc<Broker>,
    request: ClassicSync,
) -> JoinHandle<Result<ClassicSynced, BrokerError>> {
    let broker = Arc::clone(broker);
    tokio::spawn(async move { broker.sync_classic(request).await })
}

/// Every member of a generation syncs, the leader last; each gets the assignment the
/// leader computed for it.
async fn sync_all(broker: &Arc<Broker>, joined: &[ClassicJoined]) {
    let (leaders, followers): (Vec<_>, Vec<_>) =
        joined.iter().partition(|j| j.member_id == j.leader);
    let tasks: Vec<_> = followers
        .iter()
        .map(|j| (j, spawn_sync(broker, sync_request(j, Vec::new()))))
        .collect();
    let leader = leaders.first().expect("a leader");
    let synced = broker
        .sync_classic(leader_sync(leader))
        .await
        .expect("leader synced");
    assert_eq!(synced.assignment, assignment_for(&leader.member_id));
    for (j, task) in tasks {
        let synced = answer(task).await.expect("synced");
        assert_eq!(synced.assignment, assignment_for(&j.member_id));
    }
}

/// A stable group of `requests`, joined together.
async fn stable(broker: &Arc<Broker>, requests: &[ClassicJoin]) -> Vec<ClassicJoined> {
    let joined = join_all(broker, requests).await;
    sync_all(broker, &joined).await;
    joined
}

fn heartbeat(broker: &Broker, joined: &ClassicJoined) -> Result<(), BrokerError> {
    broker.heartbeat_classic("g", joined.generation, &joined.member_id, None)
}

fn state(broker: &Broker) -> GroupState {
    broker.describe_classic("g").expect("describe").state
}

fn commit(joined: &ClassicJoined, generation: i32, offset: u64) -> ClassicCommit {
    ClassicCommit {
        group: "g".to_owned(),
        generation,
        member_id: joined.member_id.clone(),
        instance_id: None,
        offsets: vec![(TopicPartition::new("t", 0), offset)],
    }
}

fn committed(broker: &Broker, group: &str) -> Option<u64> {
    broker
        .fetch_offsets(group, Some("t"))
        .expect("fetch offsets")
        .into_iter()
        .find(|o| o.partition.partition == 0)
        .and_then(|o| o.committed)
        .map(|c| c.offset)
}

#[tokio::test(start_paused = true)]
async fn three_members_join_sync_and_heartbeat_with_the_leaders_assignment() {
    let t = broker().await;
    let mut c = member("c");
    c.protocols.reverse();
    let joined = join_all(&t.broker, &[member("a"), member("b"), c]).await;
    let leader = &joined[0];
    assert!(leader.member_id.starts_with("a-"), "{}", leader.member_id);
    for j in &joined {
        // Two of three prefer range, which all support.
        assert_eq!(
            (j.generation, j.protocol.as_str(), j.protocol_type.as_str()),
            (1, "range", "consumer")
        );
        assert_eq!(j.leader, leader.member_id);
        assert!(!j.skip_assignment);
    }
    let metadata: Vec<&[u8]> = leader.members.iter().map(|m| m.metadata.as_ref()).collect();
    assert_eq!(
        metadata,
        [&b"a range"[..], &b"b range"[..], &b"c range"[..]]
    );
    assert!(joined[1].members.is_empty() && joined[2].members.is_empty());
    assert_eq!(state(&t.broker), GroupState::CompletingRebalance);

    // A follower's sync waits for the leader's; heartbeats are fine meanwhile.
    let follower = spawn_sync(&t.broker, sync_request(&joined[1], Vec::new()));
    sleep(Duration::from_secs(1)).await;
    assert!(!follower.is_finished());
    heartbeat(&t.broker, &joined[1]).expect("heartbeat while completing");
    let synced = t
        .broker
        .sync_classic(leader_sync(leader))
        .await
        .expect("leader sync");
    assert_eq!(synced.assignment, assignment_for(&leader.member_id));
    assert_eq!(
        (synced.protocol_type.as_str(), synced.protocol.as_str()),
        ("consumer", "range")
    );
    let b = answer(follower).await.expect("follower sync");
    assert_eq!(b.assignment, assignment_for(&joined[1].member_id));
    // Once stable, a sync is answered at once.
    let c = t
        .broker
        .sync_classic(sync_request(&joined[2], Vec::new()))
        .await
        .expect("late sync");
    assert_eq!(c.assignment, assignment_for(&joined[2].member_id));

    let description = t.broker.describe_classic("g").expect("describe");
    assert_eq!(description.state, GroupState::Stable);
    assert_eq!(description.kind, Some(GroupKind::ClientAssigned));
    assert_eq!(
        (
            description.protocol_type.as_str(),
            description.protocol.as_str()
        ),
        ("consumer", "range")
    );
    for (described, j) in description.members.iter().zip(&joined) {
        assert_eq!(described.member_id, j.member_id);
        assert_eq!(described.assignment, assignment_for(&j.member_id));
        assert!(described.metadata.ends_with(b" range"));
        assert_eq!(
            described.client_host,
            format!("/10.0.0.1:{}", described.client_id)
        );
    }
    // Members that heartbeat within their session timeout stay.
    for _ in 0..5 {
        sleep(SESSION / 2).await;
        for j in &joined {
            heartbeat(&t.broker, j).expect("heartbeat");
        }
    }
    assert_eq!(state(&t.broker), GroupState::Stable);
}

#[tokio::test(start_paused = true)]
async fn the_first_join_phase_waits_for_more_members() {
    let t = broker_with(Duration::from_secs(3), 1000).await;
    let start = Instant::now();
    let a = spawn_join(&t.broker, member("a"));
    sleep(Duration::from_secs(2)).await;
    assert!(!a.is_finished());
    assert_eq!(state(&t.broker), GroupState::PreparingRebalance);
    // A member joining during the delay extends it, up to the rebalance timeout.
    let b = spawn_join(&t.broker, member("b"));
    let (a, b) = (answer(a).await.expect("a"), answer(b).await.expect("b"));
    let waited = start.elapsed();
    assert!(
        (REBALANCE..REBALANCE + Duration::from_millis(200)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!((a.generation, b.generation), (1, 1));
    assert_eq!(a.members.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_member_leaving_makes_the_rest_rebalance_to_a_new_generation() {
    let t = broker().await;
    let requests = [member("a"), member("b"), member("c")];
    let joined = stable(&t.broker, &requests).await;
    let results = t
        .broker
        .leave_classic(
            "g",
            &[
                LeavingMember {
                    member_id: joined[2].member_id.clone(),
                    instance_id: None,
                },
                LeavingMember {
                    member_id: "nobody".to_owned(),
                    instance_id: None,
                },
            ],
        )
        .expect("leave");
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(&results[1], Err(BrokerError::UnknownMember { member_id, .. }) if member_id == "nobody"),
        "{results:?}"
    );
    assert_eq!(state(&t.broker), GroupState::PreparingRebalance);
    let busy = heartbeat(&t.broker, &joined[0]);
    assert!(
        matches!(busy, Err(BrokerError::RebalanceInProgress { .. })),
        "{busy:?}"
    );
    assert_eq!(busy.unwrap_err().kind(), ErrorKind::RebalanceInProgress);
    let sync = t
        .broker
        .sync_classic(sync_request(&joined[1], Vec::new()))
        .await;
    assert!(
        matches!(sync, Err(BrokerError::RebalanceInProgress { .. })),
        "{sync:?}"
    );

    // The others rejoin: the phase ends as soon as both have.
    let a = spawn_join(&t.broker, rejoin(&requests[0], &joined[0]));
    sleep(Duration::from_secs(1)).await;
    assert!(!a.is_finished(), "b has not rejoined yet");
    let b = t
        .broker
        .join_classic(rejoin(&requests[1], &joined[1]))
        .await
        .expect("b rejoined");
    let a = answer(a).await.expect("a rejoined");
    assert_eq!((a.generation, b.generation), (2, 2));
    assert_eq!(
        (a.member_id.as_str(), a.leader.as_str()),
        (joined[0].member_id.as_str(), joined[0].member_id.as_str())
    );
    assert_eq!(a.members.len(), 2);
    sync_all(&t.broker, &[a.clone(), b.clone()]).await;
    assert_eq!(state(&t.broker), GroupState::Stable);

    let gone = heartbeat(&t.broker, &joined[2]);
    assert!(
        matches!(gone, Err(BrokerError::UnknownMember { .. })),
        "{gone:?}"
    );
    let stale = heartbeat(&t.broker, &joined[0]);
    assert!(
        matches!(
            stale,
            Err(BrokerError::IllegalGeneration {
                generation: 1,
                current: 2,
                ..
            })
        ),
        "{stale:?}"
    );
    assert_eq!(stale.unwrap_err().kind(), ErrorKind::Fenced);
    let mut wrong_protocol = sync_request(&a, Vec::new());
    wrong_protocol.protocol = Some("roundrobin".to_owned());
    let refused = t.broker.sync_classic(wrong_protocol).await;
    assert!(
        matches!(refused, Err(BrokerError::InconsistentGroupProtocol { .. })),
        "{refused:?}"
    );
    heartbeat(&t.broker, &a).expect("current generation");
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_expires_and_the_others_rebalance() {
    let t = broker().await;
    let mut quiet = member("quiet");
    quiet.session_timeout = Some(Duration::from_secs(1));
    let requests = [quiet, member("busy")];
    let joined = stable(&t.broker, &requests).await;
    sleep(Duration::from_millis(700)).await;
    heartbeat(&t.broker, &joined[1]).expect("busy heartbeats");
    sleep(Duration::from_millis(700)).await;
    // The quiet member was not heard from for its session timeout.
    let busy = heartbeat(&t.broker, &joined[1]);
    assert!(
        matches!(busy, Err(BrokerError::RebalanceInProgress { .. })),
        "{busy:?}"
    );
    let expired = heartbeat(&t.broker, &joined[0]);
    assert!(
        matches!(expired, Err(BrokerError::UnknownMember { .. })),
        "{expired:?}"
    );
    let alone = t
        .broker
        .join_classic(rejoin(&requests[1], &joined[1]))
        .await
        .expect("rejoined");
    assert_eq!(alone.generation, 2);
    assert_eq!(alone.leader, alone.member_id);
    assert_eq!(alone.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_member_that_does_not_rejoin_in_time_is_removed() {
    let t = broker().await;
    let requests = [member("a"), member("b")];
    let joined = stable(&t.broker, &requests).await;
    // The leader's join always starts a rebalance; b stays silent, within its session.
    let start = Instant::now();
    let a = t
        .broker
        .join_classic(rejoin(&requests[0], &joined[0]))
        .await
        .expect("a rejoined");
    let waited = start.elapsed();
    assert!(
        (REBALANCE..REBALANCE + Duration::from_millis(200)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(a.generation, 2);
    assert_eq!(a.members.len(), 1);
    let removed = heartbeat(&t.broker, &joined[1]);
    assert!(
        matches!(removed, Err(BrokerError::UnknownMember { .. })),
        "{removed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_does_not_sync_in_time_is_removed() {
    let t = broker().await;
    let requests = [member("a"), member("b")];
    let joined = join_all(&t.broker, &requests).await;
    let waiting = spawn_sync(&t.broker, sync_request(&joined[1], Vec::new()));
    sleep(REBALANCE + Duration::from_millis(200)).await;
    let ended = answer(waiting).await;
    assert!(
        matches!(ended, Err(BrokerError::RebalanceInProgress { .. })),
        "{ended:?}"
    );
    let gone = heartbeat(&t.broker, &joined[0]);
    assert!(
        matches!(gone, Err(BrokerError::UnknownMember { .. })),
        "{gone:?}"
    );
    let b = t
        .broker
        .join_classic(rejoin(&requests[1], &joined[1]))
        .await
        .expect("b rejoined");
    assert_eq!((b.generation, b.leader.as_str()), (2, b.member_id.as_str()));
}

#[tokio::test(start_paused = true)]
async fn a_new_member_may_be_asked_to_join_again_with_its_id() {
    let t = broker().await;
    let mut request = member("a");
    request.require_known_member_id = true;
    let first = t.broker.join_classic(request.clone()).await;
    let Err(BrokerError::MemberIdRequired { member_id, .. }) = first else {
        panic!("expected MEMBER_ID_REQUIRED, got {first:?}");
    };
    assert!(member_id.starts_with("a-"), "{member_id}");
    request.member_id = member_id.clone();
    let joined = t
        .broker
        .join_classic(request.clone())
        .await
        .expect("joined");
    assert_eq!(joined.member_id, member_id);
    assert_eq!(joined.generation, 1);

    // An id handed out and not used within the session timeout is forgotten.
    request.member_id = String::new();
    let second = t.broker.join_classic(request.clone()).await;
    let Err(BrokerError::MemberIdRequired { member_id, .. }) = second else {
        panic!("expected MEMBER_ID_REQUIRED, got {second:?}");
    };
    sleep(SESSION + Duration::from_millis(200)).await;
    request.member_id = member_id;
    let late = t.broker.join_classic(request).await;
    assert!(
        matches!(late, Err(BrokerError::UnknownMember { .. })),
        "{late:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_static_member_rejoins_without_a_rebalance_and_its_old_id_is_fenced() {
    let t = broker().await;
    let mut a = member("a");
    a.instance_id = Some("instance-a".to_owned());
    let requests = [a.clone(), member("b")];
    let joined = stable(&t.broker, &requests).await;
    let (old, b) = (&joined[0], &joined[1]);
    assert!(
        old.member_id.starts_with("instance-a-"),
        "{}",
        old.member_id
    );

    // The process restarts, silent for most of its session timeout, then joins with its
    // instance id and no member id: it is answered at once, in the same generation, as the
    // leader it was.
    sleep(SESSION - Duration::from_secs(2)).await;
    let new = t.broker.join_classic(a.clone()).await.expect("rejoined");
    assert_ne!(new.member_id, old.member_id);
    assert_eq!(new.generation, old.generation);
    assert_eq!(new.leader, new.member_id);
    assert!(new.skip_assignment);
    assert_eq!(new.members.len(), 2);
    assert_eq!(state(&t.broker), GroupState::Stable);
    heartbeat(&t.broker, b).expect("no rebalance for the others");
    let mut sync = sync_request(&new, Vec::new());
    sync.instance_id = a.instance_id.clone();
    let synced = t.broker.sync_classic(sync).await.expect("sync");
    assert_eq!(synced.assignment, assignment_for(&old.member_id));

    // The old id is fenced.
    let fenced =
        t.broker
            .heartbeat_classic("g", old.generation, &old.member_id, Some("instance-a"));
    assert!(
        matches!(&fenced, Err(BrokerError::MemberFenced { member_id, instance_id, .. })
            if *member_id == old.member_id && instance_id == "instance-a"),
        "{fenced:?}"
    );
    let mut old_commit = commit(old, old.generation, 0);
    old_commit.instance_id = a.instance_id.clone();
    let refused = t.broker.commit_classic(&old_commit).await;
    assert!(
        matches!(refused, Err(BrokerError::MemberFenced { .. })),
        "{refused:?}"
    );
    let left = t
        .broker
        .leave_classic(
            "g",
            &[LeavingMember {
                member_id: old.member_id.clone(),
                instance_id: a.instance_id.clone(),
            }],
        )
        .expect("leave");
    assert!(
        matches!(left[0], Err(BrokerError::MemberFenced { .. })),
        "{left:?}"
    );
    t.broker
        .heartbeat_classic("g", new.generation, &new.member_id, Some("instance-a"))
        .expect("the new id is the member");

    // With changed metadata, the static member's return rebalances the group.
    let mut changed = a.clone();
    changed.protocols[0].1 = Bytes::from_static(b"a range v2");
    let again = spawn_join(&t.broker, changed);
    sleep(Duration::from_millis(100)).await;
    let busy = heartbeat(&t.broker, b);
    assert!(
        matches!(busy, Err(BrokerError::RebalanceInProgress { .. })),
        "{busy:?}"
    );
    let b2 = t
        .broker
        .join_classic(rejoin(&requests[1], b))
        .await
        .expect("b rejoined");
    let a2 = answer(again).await.expect("a rejoined");
    assert_eq!(
        (a2.generation, b2.generation),
        (new.generation + 1, new.generation + 1)
    );
    assert!(!a2.skip_assignment);

    // A static member can be removed by its instance id alone.
    let left = t
        .broker
        .leave_classic(
            "g",
            &[LeavingMember {
                member_id: String::new(),
                instance_id: a.instance_id.clone(),
            }],
        )
        .expect("leave");
    assert!(left[0].is_ok(), "{left:?}");
    let members = t.broker.describe_classic("g").expect("describe").members;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member_id, b2.member_id);
}

#[tokio::test(start_paused = true)]
async fn commits_are_fenced_by_member_generation_and_phase() {
    let t = broker().await;
    t.broker
        .produce("t", Some(0), values(&["a", "b", "c", "d"]))
        .await
        .expect("produce");
    let requests = [member("a"), member("b")];
    let joined = stable(&t.broker, &requests).await;
    let (a, b) = (&joined[0], &joined[1]);
    t.broker
        .commit_classic(&commit(a, a.generation, 1))
        .await
        .expect("commit");
    assert_eq!(committed(&t.broker, "g"), Some(1));

    let future = t
        .broker
        .commit_classic(&commit(a, a.generation + 1, 2))
        .await;
    assert!(
        matches!(future, Err(BrokerError::IllegalGeneration { .. })),
        "{future:?}"
    );
    let mut stranger = commit(a, a.generation, 2);
    stranger.member_id = "nobody".to_owned();
    let unknown = t.broker.commit_classic(&stranger).await;
    assert!(
        matches!(unknown, Err(BrokerError::UnknownMember { .. })),
        "{unknown:?}"
    );
    let mut standalone = commit(a, -1, 2);
    standalone.member_id = String::new();
    let refused = t.broker.commit_classic(&standalone).await;
    assert!(
        matches!(refused, Err(BrokerError::UnknownMember { .. })),
        "{refused:?}"
    );
    let beyond = t.broker.commit_classic(&commit(a, a.generation, 99)).await;
    assert!(
        matches!(
            beyond,
            Err(BrokerError::CommitOutOfRange { offset: 99, .. })
        ),
        "{beyond:?}"
    );
    assert_eq!(committed(&t.broker, "g"), Some(1));

    // While the group prepares a rebalance, the old generation may still commit.
    t.broker
        .leave_classic(
            "g",
            &[LeavingMember {
                member_id: b.member_id.clone(),
                instance_id: None,
            }],
        )
        .expect("leave");
    t.broker
        .commit_classic(&commit(a, a.generation, 2))
        .await
        .expect("commit while preparing");
    // Between the join and the leader's sync, commits wait for the assignment.
    let a2 = t
        .broker
        .join_classic(rejoin(&requests[0], a))
        .await
        .expect("rejoined");
    let busy = t
        .broker
        .commit_classic(&commit(&a2, a2.generation, 3))
        .await;
    assert!(
        matches!(busy, Err(BrokerError::RebalanceInProgress { .. })),
        "{busy:?}"
    );
    let old = t.broker.commit_classic(&commit(a, a.generation, 3)).await;
    assert!(
        matches!(old, Err(BrokerError::IllegalGeneration { .. })),
        "{old:?}"
    );
    sync_all(&t.broker, std::slice::from_ref(&a2)).await;
    t.broker
        .commit_classic(&commit(&a2, a2.generation, 3))
        .await
        .expect("commit when stable");
    assert_eq!(committed(&t.broker, "g"), Some(3));
}

#[tokio::test(start_paused = true)]
async fn a_consumer_outside_any_membership_commits_while_the_group_has_no_members() {
    let t = broker().await;
    t.broker
        .produce("t", Some(0), values(&["a", "b", "c"]))
        .await
        .expect("produce");
    let standalone = |generation, offset| ClassicCommit {
        group: "solo".to_owned(),
        generation,
        member_id: String::new(),
        instance_id: None,
        offsets: vec![(TopicPartition::new("t", 0), offset)],
    };
    t.broker
        .commit_classic(&standalone(-1, 2))
        .await
        .expect("standalone commit");
    assert_eq!(committed(&t.broker, "solo"), Some(2));
    let listed = t.broker.list_groups();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].state,
            listed[0].kind,
            listed[0].protocol_type.as_str()
        ),
        ("solo", GroupState::Empty, None, "")
    );
    let lag = t
        .broker
        .describe_group("solo")
        .expect("describe")
        .partitions;
    assert_eq!((lag.len(), lag[0].lag), (1, 1));
    let generation = t.broker.commit_classic(&standalone(3, 1)).await;
    assert!(
        matches!(generation, Err(BrokerError::IllegalGeneration { .. })),
        "{generation:?}"
    );

    let mut joining = member("a");
    joining.group = "solo".to_owned();
    let joined = t.broker.join_classic(joining).await.expect("joined");
    assert_eq!(joined.generation, 1);
    let refused = t.broker.commit_classic(&standalone(-1, 3)).await;
    assert!(
        matches!(refused, Err(BrokerError::UnknownMember { .. })),
        "{refused:?}"
    );
    assert_eq!(committed(&t.broker, "solo"), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_group_takes_members_of_one_kind_at_a_time_and_shares_its_offsets() {
    let t = broker().await;
    t.broker
        .produce("t", Some(0), values(&["a", "b", "c", "d"]))
        .await
        .expect("produce");
    let server_assigned = t
        .broker
        .join_group(JoinGroup::new("g", ["t"]))
        .await
        .expect("server-assigned member");
    let refused = t.broker.join_classic(member("a")).await;
    assert!(
        matches!(
            refused,
            Err(BrokerError::GroupKindMismatch {
                kind: GroupKind::ServerAssigned,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::FailedPrecondition);
    let description = t.broker.describe_classic("g").expect("describe");
    assert_eq!(description.kind, Some(GroupKind::ServerAssigned));
    assert_eq!(description.members.len(), 1);
    assert!(description.protocol.is_empty());
    drop(server_assigned);

    let joined = stable(&t.broker, &[member("a")]).await;
    let a = &joined[0];
    let refused = t.broker.join_group(JoinGroup::new("g", ["t"])).await;
    assert!(
        matches!(
            refused,
            Err(BrokerError::GroupKindMismatch {
                kind: GroupKind::ClientAssigned,
                ..
            })
        ),
        "{refused:?}"
    );
    t.broker
        .commit_classic(&commit(a, a.generation, 3))
        .await
        .expect("commit");
    let anonymous = t
        .broker
        .commit_offsets("g", 0, "", &[(TopicPartition::new("t", 0), 1)])
        .await;
    assert!(
        matches!(
            anonymous,
            Err(BrokerError::GroupNotEmpty { members: 1, .. })
        ),
        "{anonymous:?}"
    );

    // The shared description shows the member and the lag of its topic's partitions.
    let description = t.broker.describe_group("g").expect("describe");
    assert_eq!(description.kind, Some(GroupKind::ClientAssigned));
    assert_eq!(description.state, GroupState::Stable);
    assert_eq!(description.generation, 1);
    assert_eq!(description.members.len(), 1);
    assert_eq!(description.members[0].member_id, a.member_id);
    assert_eq!(description.members[0].topics, ["t"]);
    assert_eq!(description.partitions.len(), 6);
    let p0 = &description.partitions[0];
    assert_eq!(
        (p0.committed.map(|c| c.offset), p0.high_watermark, p0.lag),
        (Some(3), 4, 1)
    );
    let listed = &t.broker.list_groups()[0];
    assert_eq!(
        (
            listed.kind,
            listed.protocol_type.as_str(),
            listed.members,
            listed.state
        ),
        (
            Some(GroupKind::ClientAssigned),
            "consumer",
            1,
            GroupState::Stable
        )
    );

    // Once the client-assigned member left, a server-assigned one reads from its offset.
    t.broker
        .leave_classic(
            "g",
            &[LeavingMember {
                member_id: a.member_id.clone(),
                instance_id: None,
            }],
        )
        .expect("leave");
    let reader = t
        .broker
        .join_group(JoinGroup::new("g", ["t"]))
        .await
        .expect("server-assigned member");
    assert_eq!(
        reader
            .start_offset(&TopicPartition::new("t", 0))
            .expect("start"),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn groups_are_described_listed_and_deleted_only_when_empty() {
    let t = broker().await;
    t.broker
        .produce("t", Some(0), values(&["a", "b"]))
        .await
        .expect("produce");
    let joined = stable(&t.broker, &[member("a"), member("b")]).await;
    t.broker
        .commit_classic(&commit(&joined[0], joined[0].generation, 2))
        .await
        .expect("commit");
    let not_empty = t.broker.delete_group("g").await;
    assert!(
        matches!(
            not_empty,
            Err(BrokerError::GroupNotEmpty { members: 2, .. })
        ),
        "{not_empty:?}"
    );
    let leaving: Vec<LeavingMember> = joined
        .iter()
        .map(|j| LeavingMember {
            member_id: j.member_id.clone(),
            instance_id: None,
        })
        .collect();
    let left = t.broker.leave_classic("g", &leaving).expect("leave");
    assert!(left.iter().all(Result::is_ok), "{left:?}");
    let description = t.broker.describe_classic("g").expect("describe");
    assert_eq!(
        (
            description.state,
            description.kind,
            description.members.len()
        ),
        (GroupState::Empty, None, 0)
    );
    let listed = &t.broker.list_groups()[0];
    assert_eq!(
        (listed.state, listed.kind, listed.members),
        (GroupState::Empty, None, 0)
    );
    t.broker.delete_group("g").await.expect("delete");
    let gone = t.broker.describe_classic("g");
    assert!(
        matches!(gone, Err(BrokerError::GroupNotFound { .. })),
        "{gone:?}"
    );
    assert!(t.broker.list_groups().is_empty());
    let missing = t.broker.delete_group("g").await;
    assert!(
        matches!(missing, Err(BrokerError::GroupNotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn joins_that_cannot_go_with_the_group_are_refused() {
    let t = broker_with(Duration::from_millis(100), 2).await;
    let requests = [member("a"), member("b")];
    let joined = stable(&t.broker, &requests).await;
    let inconsistent = |result: Result<ClassicJoined, BrokerError>, needle: &str| {
        assert!(
            matches!(&result, Err(BrokerError::InconsistentGroupProtocol { reason, .. }) if reason.contains(needle)),
            "{result:?}"
        );
    };
    let mut other_type = member("c");
    other_type.protocol_type = "connect".to_owned();
    inconsistent(t.broker.join_classic(other_type).await, "\"connect\"");
    let mut unshared = member("c");
    unshared.protocols = vec![("sticky".to_owned(), Bytes::new())];
    inconsistent(t.broker.join_classic(unshared).await, "sticky");
    let mut none = member("c");
    none.protocols.clear();
    inconsistent(t.broker.join_classic(none).await, "at least one protocol");
    let mut twice = member("c");
    twice.protocols.push(("range".to_owned(), Bytes::new()));
    let twice = t.broker.join_classic(twice).await;
    assert!(
        matches!(&twice, Err(BrokerError::InvalidRequest { field: "protocols", reason }) if reason.contains("range")),
        "{twice:?}"
    );
    let mut hasty = member("c");
    hasty.session_timeout = Some(Duration::from_millis(50));
    let hasty = t.broker.join_classic(hasty).await;
    assert!(
        matches!(hasty, Err(BrokerError::InvalidJoin { .. })),
        "{hasty:?}"
    );
    let full = t.broker.join_classic(member("c")).await;
    assert!(
        matches!(full, Err(BrokerError::GroupFull { limit: 2, .. })),
        "{full:?}"
    );
    assert_eq!(full.unwrap_err().kind(), ErrorKind::ResourceExhausted);
    let mut stranger = member("c");
    stranger.member_id = "nobody".to_owned();
    let unknown = t.broker.join_classic(stranger).await;
    assert!(
        matches!(unknown, Err(BrokerError::UnknownMember { .. })),
        "{unknown:?}"
    );

    // Nothing changed: a follower rejoining unchanged is answered at once, same generation.
    assert_eq!(state(&t.broker), GroupState::Stable);
    let again = t
        .broker
        .join_classic(rejoin(&requests[1], &joined[1]))
        .await
        .expect("rejoined");
    assert_eq!(again.generation, joined[1].generation);
    assert!(again.members.is_empty());
    assert_eq!(state(&t.broker), GroupState::Stable);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_join_ends_when_the_broker_drains() {
    let t = broker_with(Duration::from_secs(3), 1000).await;
    let waiting = spawn_join(&t.broker, member("a"));
    sleep(Duration::from_millis(500)).await;
    t.broker.begin_drain();
    let ended = answer(waiting).await;
    assert!(matches!(ended, Err(BrokerError::ShuttingDown)), "{ended:?}");
}
