//! Consumer groups against the real binary: assignment and cooperative rebalancing,
//! at-least-once delivery in order, committed offsets across restarts and crashes, fencing,
//! lag, administration and static membership.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use common::*;
use sluice_proto::v1::{self as pb, offset_spec::Kind};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(10);

async fn server_with_topic(dir: &std::path::Path, topic: &str, partitions: u32) -> Result<Server> {
    let server = Server::start(dir, &[])?;
    create_topic(&mut server.admin().await?, topic, partitions, &[]).await?;
    Ok(server)
}

fn partitions(member: &GroupConsumer) -> BTreeSet<Tp> {
    member.state().partitions.clone()
}

/// Waits until the members' partitions are disjoint, cover `count` partitions, and have
/// these sizes.
async fn wait_for_split(members: &[&GroupConsumer], sizes: &[usize], count: usize) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sets: Vec<BTreeSet<Tp>> = members.iter().map(|m| partitions(m)).collect();
        let mut got: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        got.sort_unstable();
        let mut want = sizes.to_vec();
        want.sort_unstable();
        let union: BTreeSet<&Tp> = sets.iter().flatten().collect();
        if got == want && union.len() == count {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("no {want:?} split of {count} partitions: {sets:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_and_rebalance_with_minimal_moves() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 6).await?;
    let a = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    wait_for_split(&[&a], &[6], 6).await?;

    let b = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    wait_for_split(&[&a, &b], &[3, 3], 6).await?;
    let (a_two, b_two) = (partitions(&a), partitions(&b));

    let c = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    wait_for_split(&[&a, &b, &c], &[2, 2, 2], 6).await?;
    // Only the two partitions the newcomer got moved.
    assert!(partitions(&a).is_subset(&a_two), "{}", a.summary());
    assert!(partitions(&b).is_subset(&b_two), "{}", b.summary());

    // A member whose stream drops loses its partitions to the others, which keep theirs.
    let (a_three, b_three) = (partitions(&a), partitions(&b));
    c.close();
    wait_for_split(&[&a, &b], &[3, 3], 6).await?;
    assert!(a_three.is_subset(&partitions(&a)));
    assert!(b_three.is_subset(&partitions(&b)));
    for member in [&a, &b] {
        assert!(
            member.state().violations.is_empty(),
            "{:?}",
            member.state().violations
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_delivered_in_order_across_rebalances() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 6).await?;
    let total = 1200;
    let producer = {
        let mut log = server.log().await?;
        tokio::spawn(async move {
            for chunk in 0..40 {
                for partition in 0..6u32 {
                    let values = (0..5).map(|i| (chunk * 30 + partition * 5 + i).to_string());
                    produce_values(&mut log, "t", partition, values)
                        .await
                        .expect("produce");
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    let a = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let b = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let c = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    // a leaves cleanly: commits what it read first (as its partitions are not revoked, by hand).
    let positions: Vec<(String, u32, u64)> = {
        let state = a.state();
        state
            .positions
            .iter()
            .filter(|(tp, _)| state.partitions.contains(*tp))
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect()
    };
    let offsets: Vec<(&str, u32, u64)> = positions
        .iter()
        .map(|(t, p, o)| (t.as_str(), *p, *o))
        .collect();
    if !offsets.is_empty() {
        assert_eq!(a.commit(&offsets).await?, None);
    }
    let a_state = std::mem::take(&mut a.state().records);
    a.close();
    producer.await?;

    let members = [&b, &c];
    let deadline = tokio::time::Instant::now() + WAIT;
    let all_values = |seen: &[&Vec<Received>]| -> BTreeSet<u32> {
        seen.iter()
            .flat_map(|records| records.iter().filter_map(|r| r.value.parse().ok()))
            .collect()
    };
    loop {
        let b_records = b.state().records.clone();
        let c_records = c.state().records.clone();
        if all_values(&[&a_state, &b_records, &c_records]).len() == total {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not everything delivered: {} of {total}",
            all_values(&[&a_state, &b_records, &c_records]).len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Per member and partition, offsets strictly increase; each value matches its offset.
    for records in [
        a_state,
        b.state().records.clone(),
        c.state().records.clone(),
    ] {
        let mut last: BTreeMap<Tp, u64> = BTreeMap::new();
        for r in &records {
            if let Some(previous) = last.insert(r.tp.clone(), r.offset) {
                assert!(
                    r.offset > previous,
                    "{:?} went from {previous} to {}",
                    r.tp,
                    r.offset
                );
            }
            let value: u32 = r.value.parse()?;
            let expected = (r.offset / 5) * 30 + r.tp.1 as u64 * 5 + r.offset % 5;
            assert_eq!(u64::from(value), expected, "{r:?}");
        }
    }
    for member in members {
        assert!(
            member.state().violations.is_empty(),
            "{:?}",
            member.state().violations
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumption_resumes_at_the_committed_offset_after_restart_and_kill() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 2).await?;
    let mut log = server.log().await?;
    for partition in 0..2 {
        produce_values(
            &mut log,
            "t",
            partition,
            (0..10).map(|i| format!("{partition}-{i}")),
        )
        .await?;
    }
    let first_offsets = |member: &GroupConsumer| -> BTreeMap<u32, u64> {
        let mut first = BTreeMap::new();
        for r in &member.state().records {
            first.entry(r.tp.1).or_insert(r.offset);
        }
        first
    };
    let all_read = |s: &MemberState| s.positions.values().filter(|o| **o == 10).count() == 2;

    let member = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    member.wait_until("every record", WAIT, all_read).await?;
    assert_eq!(first_offsets(&member), BTreeMap::from([(0, 0), (1, 0)]));
    assert_eq!(member.commit(&[("t", 0, 4), ("t", 1, 6)]).await?, None);
    member.close();
    let status = server.stop()?;
    assert!(status.success(), "{status:?}");

    let server = Server::start(dir.path(), &[])?;
    let member = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    member.wait_until("every record", WAIT, all_read).await?;
    assert_eq!(first_offsets(&member), BTreeMap::from([(0, 4), (1, 6)]));
    assert_eq!(member.commit(&[("t", 0, 8)]).await?, None);
    // SIGKILL right after the acknowledgement: the commit was durable.
    server.kill()?;
    member.close();

    let server = Server::start(dir.path(), &[])?;
    let member = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    member.wait_until("every record", WAIT, all_read).await?;
    assert_eq!(first_offsets(&member), BTreeMap::from([(0, 8), (1, 6)]));
    let values: Vec<String> = member
        .state()
        .records
        .iter()
        .filter(|r| r.tp.1 == 0)
        .map(|r| r.value.clone())
        .collect();
    assert_eq!(values, ["0-8", "0-9"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_with_a_stale_generation_or_unknown_member_are_rejected() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 6).await?;
    let a = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    let first_generation = a.state().generation;
    let b = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    wait_for_split(&[&a, &b], &[3, 3], 6).await?;
    let (_, b_partition) = partitions(&b).into_iter().next().expect("b has partitions");
    assert!(b.state().generation > first_generation);

    // b was given its partitions after the first generation.
    let stale = b
        .commit_as(first_generation, &[("t", b_partition, 0)])
        .await?;
    let stale = stale.expect("stale generation rejected");
    assert_eq!(stale.code, Code::FailedPrecondition as i32, "{stale:?}");
    assert!(stale.message.contains("stale"), "{}", stale.message);
    assert_eq!(b.commit(&[("t", b_partition, 0)]).await?, None);
    // a does not own b's partition.
    let foreign = a.commit(&[("t", b_partition, 0)]).await?.expect("rejected");
    assert_eq!(foreign.code, Code::FailedPrecondition as i32, "{foreign:?}");

    let mut groups = groups_client(&server).await?;
    let commit = |member_id: &str, generation| pb::CommitOffsetsRequest {
        group: "g".into(),
        generation,
        member_id: member_id.into(),
        offsets: vec![pb::OffsetCommit {
            topic: "t".into(),
            partition: b_partition,
            offset: 0,
        }],
    };
    let b_id = b.state().member_id.clone();
    let b_generation = b.state().generation;
    for (request, what) in [
        (commit("nobody", b_generation), "unknown member"),
        (commit(&b_id, first_generation), "stale generation"),
        (commit("", 0), "no member while the group has members"),
    ] {
        let status = groups.commit_offsets(request).await.expect_err(what);
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{what}: {status:?}"
        );
    }
    groups.commit_offsets(commit(&b_id, b_generation)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_group_reports_members_offsets_and_lag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 2).await?;
    let mut log = server.log().await?;
    produce_values(&mut log, "t", 0, (0..10).map(|i| i.to_string())).await?;
    produce_values(&mut log, "t", 1, (0..4).map(|i| i.to_string())).await?;
    let member = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    member
        .wait_until("every record", WAIT, |s| s.records.len() == 14)
        .await?;
    assert_eq!(member.commit(&[("t", 0, 6), ("t", 1, 1)]).await?, None);

    let mut groups = groups_client(&server).await?;
    let description = groups
        .describe_group(pb::DescribeGroupRequest { group: "g".into() })
        .await?
        .into_inner();
    assert_eq!(description.state(), pb::GroupState::Stable);
    assert_eq!(description.members.len(), 1);
    let described = &description.members[0];
    assert_eq!(described.member_id, member.state().member_id);
    assert_eq!(described.client_host, "127.0.0.1");
    assert_eq!(described.assigned.len(), 1);
    assert_eq!(described.assigned[0].partitions, [0, 1]);
    let lags: Vec<(u32, Option<u64>, u64, u64)> = description
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed_offset, p.high_watermark, p.lag))
        .collect();
    assert_eq!(lags, [(0, Some(6), 10, 4), (1, Some(1), 4, 3)]);
    assert!(
        description
            .partitions
            .iter()
            .all(|p| p.member_id == described.member_id)
    );

    let listed = groups
        .list_groups(pb::ListGroupsRequest {})
        .await?
        .into_inner();
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(
        (listed.groups[0].group.as_str(), listed.groups[0].members),
        ("g", 1)
    );
    let fetched = groups
        .fetch_offsets(pb::FetchOffsetsRequest {
            group: "g".into(),
            topic: "t".into(),
        })
        .await?
        .into_inner();
    let offsets: Vec<Option<u64>> = fetched.offsets.iter().map(|o| o.offset).collect();
    assert_eq!(offsets, [Some(6), Some(1)]);
    let missing = groups
        .describe_group(pb::DescribeGroupRequest {
            group: "other".into(),
        })
        .await
        .expect_err("unknown group");
    assert_eq!(missing.code(), Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_delete_are_refused_while_members_are_live() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 3).await?;
    let mut log = server.log().await?;
    produce_values(&mut log, "t", 0, (0..5).map(|i| i.to_string())).await?;
    let member = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    member
        .wait_until("every record", WAIT, |s| s.records.len() == 5)
        .await?;
    assert_eq!(member.commit(&[("t", 0, 5)]).await?, None);

    let mut groups = groups_client(&server).await?;
    let reset = |spec| pb::ResetOffsetsRequest {
        group: "g".into(),
        topic: "t".into(),
        partitions: vec![],
        to: Some(pb::OffsetSpec { kind: Some(spec) }),
    };
    let refused = groups
        .reset_offsets(reset(Kind::Earliest(pb::Earliest {})))
        .await
        .expect_err("reset with a live member");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let refused = groups
        .delete_group(pb::DeleteGroupRequest { group: "g".into() })
        .await
        .expect_err("delete with a live member");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    member.close();
    let deadline = tokio::time::Instant::now() + WAIT;
    let reset_offsets = loop {
        match groups
            .reset_offsets(reset(Kind::Earliest(pb::Earliest {})))
            .await
        {
            Ok(response) => break response.into_inner().offsets,
            Err(status) if status.code() == Code::FailedPrecondition => {
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "member never left");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => return Err(status.into()),
        }
    };
    let offsets: Vec<Option<u64>> = reset_offsets.iter().map(|o| o.offset).collect();
    assert_eq!(offsets, [Some(0), Some(0), Some(0)]);
    let status = groups
        .reset_offsets(reset(Kind::Offset(2)))
        .await
        .expect_err("offset 2 is out of range in empty partitions");
    assert_eq!(status.code(), Code::OutOfRange);
    let reset = groups
        .reset_offsets(pb::ResetOffsetsRequest {
            partitions: vec![0],
            ..reset(Kind::Offset(2))
        })
        .await?
        .into_inner();
    assert_eq!(reset.offsets.len(), 1);
    assert_eq!(reset.offsets[0].offset, Some(2));
    let fetched = groups
        .fetch_offsets(pb::FetchOffsetsRequest {
            group: "g".into(),
            topic: "t".into(),
        })
        .await?
        .into_inner();
    let offsets: Vec<Option<u64>> = fetched.offsets.iter().map(|o| o.offset).collect();
    assert_eq!(offsets, [Some(2), Some(0), Some(0)]);

    // The next member starts at the reset offset.
    let member = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    member
        .wait_until("records from offset 2", WAIT, |s| s.records.len() == 3)
        .await?;
    assert_eq!(member.state().records[0].offset, 2);
    member.close();

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match groups
            .delete_group(pb::DeleteGroupRequest { group: "g".into() })
            .await
        {
            Ok(_) => break,
            Err(status) if status.code() == Code::FailedPrecondition => {
                anyhow::ensure!(tokio::time::Instant::now() < deadline, "member never left");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => return Err(status.into()),
        }
    }
    let gone = groups
        .describe_group(pb::DescribeGroupRequest { group: "g".into() })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_reconnects_without_a_rebalance() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 6).await?;
    let static_options = MemberOptions {
        instance_id: Some("worker-1".into()),
        session_timeout_ms: 5000,
        ..MemberOptions::new("g", "t")
    };
    let first = GroupConsumer::join(&server, static_options.clone()).await?;
    let other = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    wait_for_split(&[&first, &other], &[3, 3], 6).await?;
    let kept = partitions(&first);
    let (other_partitions, other_assignments) = (partitions(&other), other.state().assignments);

    first.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = GroupConsumer::join(&server, static_options).await?;
    assert_eq!(partitions(&second), kept);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(partitions(&other), other_partitions);
    assert_eq!(
        other.state().assignments,
        other_assignments,
        "the other member saw a rebalance: {}",
        other.summary()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_loses_its_partitions_after_the_session_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 6).await?;
    let quiet = GroupConsumer::join(
        &server,
        MemberOptions {
            session_timeout_ms: 1000,
            ..MemberOptions::new("g", "t")
        },
    )
    .await?;
    let busy = GroupConsumer::join(&server, MemberOptions::new("g", "t")).await?;
    wait_for_split(&[&quiet, &busy], &[3, 3], 6).await?;
    quiet.go_silent();
    busy.wait_until("every partition", Duration::from_secs(5), |s| {
        s.partitions.len() == 6
    })
    .await?;
    quiet
        .wait_until("the end of the stream", WAIT, |s| s.ended.is_some())
        .await?;
    let ended = quiet.state().ended.clone().expect("ended");
    assert_eq!(ended.code(), Code::FailedPrecondition, "{ended:?}");
    assert!(ended.message().contains("expired"), "{}", ended.message());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_must_start_with_a_valid_join() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = server_with_topic(dir.path(), "t", 1).await?;
    let mut groups = groups_client(&server).await?;
    let heartbeat = pb::ConsumeRequest {
        kind: Some(pb::consume_request::Kind::Heartbeat(pb::Heartbeat {})),
    };
    let status = groups
        .consume(tokio_stream::iter([heartbeat]))
        .await
        .expect_err("no join");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let join = |topic: &str, session_timeout_ms| pb::ConsumeRequest {
        kind: Some(pb::consume_request::Kind::Join(pb::JoinGroup {
            group: "g".into(),
            topics: vec![topic.into()],
            session_timeout_ms,
            ..Default::default()
        })),
    };
    let status = groups
        .consume(tokio_stream::iter([join("missing", 0)]))
        .await
        .expect_err("unknown topic");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = groups
        .consume(tokio_stream::iter([join("t", 10)]))
        .await
        .expect_err("session timeout below the limit");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    Ok(())
}
