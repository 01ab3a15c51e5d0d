//! Share groups (KIP-932) on the Kafka listener: ShareGroupHeartbeat, ShareGroupDescribe,
//! ShareFetch and ShareAcknowledge, mapped onto the broker's share groups
//! ([`sluice_broker::Broker::share_join`], [`sluice_broker::ShareMember`]).
//!
//! The listener keeps each member and its share session ([`members`]); heartbeats join and
//! keep members ([`heartbeat`]); ShareFetch applies piggybacked acknowledgements, then
//! acquires records and answers with the stored batches holding them plus the ranges
//! acquired ([`fetch`]); ShareAcknowledge only acknowledges ([`acknowledge`]).

mod acknowledge;
mod fetch;
mod heartbeat;
pub(crate) mod members;

use std::time::{Duration, Instant};

pub(crate) use acknowledge::share_acknowledge;
pub(crate) use fetch::share_fetch;
pub(crate) use heartbeat::{describe as share_group_describe, heartbeat as share_group_heartbeat};
use kafka_protocol::ResponseError;

use crate::api::Context;
use crate::api::topic_ids::TopicIds;
use members::ShareMembers;

/// What the share APIs of one listener keep: its members and their sessions, and the topic
/// ids seen.
#[derive(Debug, Default)]
pub(crate) struct Shares {
    /// Members and share sessions.
    pub(crate) members: ShareMembers,
    /// Topic names by id.
    pub(crate) topic_ids: TopicIds,
}

impl Shares {
    /// Removes the members whose last heartbeat is older than `timeout` (dropping their
    /// broker members releases what they held).
    pub(crate) fn expire(&self, timeout: Duration) {
        drop(self.members.expire(Instant::now(), timeout));
    }
}

/// The message of a share session refusal.
fn session_error(code: ResponseError, group: &str, id: &str) -> String {
    match code {
        ResponseError::UnknownMemberId => format!(
            "member {id:?} is not in share group {group:?} on this listener: join with ShareGroupHeartbeat first"
        ),
        ResponseError::ShareSessionNotFound => format!(
            "member {id:?} of share group {group:?} has no share session: open one with a ShareFetch of share_session_epoch 0"
        ),
        ResponseError::InvalidShareSessionEpoch => format!(
            "share_session_epoch is not the next epoch of the share session of member {id:?} of share group {group:?}"
        ),
        other => format!("{other:?}"),
    }
}

/// Closes the member's share session and releases every record it still holds: a new
/// broker member reading the same topics replaces the old one, which is dropped.
async fn close_session(ctx: &Context, group: &str, id: &str) {
    ctx.shares.members.close(group, id);
    let Some((epoch, assigned)) = ctx
        .shares
        .members
        .with(group, id, |m| (m.epoch, m.assigned.clone()))
    else {
        return;
    };
    // The old member leaves first, so the new one does not count against the group's size.
    drop(ctx.shares.members.replace(group, id, epoch, None));
    match heartbeat::join_broker(ctx, group, &assigned).await {
        Ok(member) => drop(ctx.shares.members.replace(group, id, epoch, member)),
        Err(err) => {
            tracing::warn!(group, member = id, error = %err, "cannot rejoin a share group after closing a share session");
        }
    }
}

#[cfg(test)]
mod tests {
    //! The share APIs end to end against a broker: join, fetch, acknowledge with every
    //! type, redelivery, session epochs, fencing, describe, leave and expiry.

    use std::time::Duration;

    use kafka_protocol::messages as m;
    use kafka_protocol::protocol::StrBytes;
    use sluice_broker::{AckKind, NewRecord};

    use super::acknowledge::{AckBatch, acks_of};
    use super::*;
    use crate::api::test_context;
    use crate::api::topic_ids::topic_id;

    fn header() -> m::RequestHeader {
        m::RequestHeader::default().with_request_api_version(1)
    }

    async fn beat(ctx: &Context, id: &str, epoch: i32) -> m::ShareGroupHeartbeatResponse {
        share_group_heartbeat(
            ctx,
            &header(),
            m::ShareGroupHeartbeatRequest::default()
                .with_group_id(m::GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_string(id.to_owned()))
                .with_member_epoch(epoch)
                .with_subscribed_topic_names(
                    (epoch == 0).then(|| vec![m::TopicName(StrBytes::from_static_str("t"))]),
                ),
        )
        .await
    }

    type Batch = m::share_fetch_request::AcknowledgementBatch;

    async fn fetch(ctx: &Context, epoch: i32, acks: Vec<Batch>) -> m::ShareFetchResponse {
        share_fetch(
            ctx,
            &header(),
            m::ShareFetchRequest::default()
                .with_group_id(Some(m::GroupId(StrBytes::from_static_str("g"))))
                .with_member_id(Some(StrBytes::from_static_str("m-1")))
                .with_share_session_epoch(epoch)
                .with_max_wait_ms(2000)
                .with_max_records(10)
                .with_topics(vec![
                    m::share_fetch_request::FetchTopic::default()
                        .with_topic_id(topic_id("t"))
                        .with_partitions(vec![
                            m::share_fetch_request::FetchPartition::default()
                                .with_acknowledgement_batches(acks),
                        ]),
                ]),
        )
        .await
    }

    async fn acknowledge(
        ctx: &Context,
        epoch: i32,
        first: i64,
        types: Vec<i8>,
    ) -> m::ShareAcknowledgeResponse {
        let last = first + i64::try_from(types.len()).expect("len") - 1;
        share_acknowledge(
            ctx,
            &header(),
            m::ShareAcknowledgeRequest::default()
                .with_group_id(Some(m::GroupId(StrBytes::from_static_str("g"))))
                .with_member_id(Some(StrBytes::from_static_str("m-1")))
                .with_share_session_epoch(epoch)
                .with_topics(vec![
                    m::share_acknowledge_request::AcknowledgeTopic::default()
                        .with_topic_id(topic_id("t"))
                        .with_partitions(vec![
                            m::share_acknowledge_request::AcknowledgePartition::default()
                                .with_acknowledgement_batches(vec![
                                    m::share_acknowledge_request::AcknowledgementBatch::default()
                                        .with_first_offset(first)
                                        .with_last_offset(last)
                                        .with_acknowledge_types(types),
                                ]),
                        ]),
                ]),
        )
        .await
    }

    /// The acquired ranges of the answer's one partition, as (first, last, delivery count),
    /// and whether it carried batches.
    fn acquired(response: &m::ShareFetchResponse) -> (Vec<(i64, i64, i16)>, bool) {
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "{:?}", partition.error_message);
        assert_eq!(
            partition.acknowledge_error_code, 0,
            "{:?}",
            partition.acknowledge_error_message
        );
        (
            partition
                .acquired_records
                .iter()
                .map(|r| (r.first_offset, r.last_offset, r.delivery_count))
                .collect(),
            partition.records.as_ref().is_some_and(|r| !r.is_empty()),
        )
    }

    #[tokio::test]
    async fn a_member_fetches_acknowledges_and_sees_a_release_redelivered() {
        let (_dir, broker, ctx) = test_context().await;
        let joined = beat(&ctx, "m-1", 0).await;
        assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
        assert_eq!(joined.member_epoch, 1);
        let assignment = joined.assignment.expect("assignment");
        assert_eq!(assignment.topic_partitions[0].topic_id, topic_id("t"));
        assert_eq!(assignment.topic_partitions[0].partitions, vec![0]);
        // Acknowledging before a session is open is refused.
        assert_eq!(
            acknowledge(&ctx, 1, 0, vec![1]).await.error_code,
            ResponseError::ShareSessionNotFound.code()
        );

        broker
            .produce(
                "t",
                Some(0),
                (0..3).map(|i| NewRecord::new(format!("r{i}"))),
            )
            .await
            .expect("produce");
        let first = fetch(&ctx, 0, Vec::new()).await;
        assert_eq!(acquired(&first), (vec![(0, 2, 1)], true));
        assert!(first.acquisition_lock_timeout_ms > 0);

        // Accept 0 and 2, release 1: 1 comes back with delivery count 2.
        let ack = Batch::default()
            .with_first_offset(0)
            .with_last_offset(2)
            .with_acknowledge_types(vec![1, 2, 1]);
        let second = fetch(&ctx, 1, vec![ack]).await;
        assert_eq!(acquired(&second), (vec![(1, 1, 2)], true));

        assert_eq!(
            acknowledge(&ctx, 2, 1, vec![1]).await.responses[0].partitions[0].error_code,
            0
        );
        // The same epoch again, and an accepted record acknowledged again.
        assert_eq!(
            acknowledge(&ctx, 2, 1, vec![1]).await.error_code,
            ResponseError::InvalidShareSessionEpoch.code()
        );
        assert_eq!(
            acknowledge(&ctx, 3, 1, vec![1]).await.responses[0].partitions[0].error_code,
            ResponseError::InvalidRecordState.code()
        );
        let state = broker.describe_share_group("g").expect("describe");
        assert_eq!(state.partitions[0].accepted, 3);

        // Fencing and membership.
        assert_eq!(
            beat(&ctx, "m-1", 7).await.error_code,
            ResponseError::FencedMemberEpoch.code()
        );
        assert_eq!(
            beat(&ctx, "m-2", 1).await.error_code,
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(beat(&ctx, "m-1", 1).await.error_code, 0);
        let described = share_group_describe(
            &ctx,
            &header(),
            m::ShareGroupDescribeRequest::default()
                .with_group_ids(vec![m::GroupId(StrBytes::from_static_str("g"))]),
        )
        .await;
        assert_eq!(described.groups[0].members.len(), 1);
        assert_eq!(described.groups[0].members[0].member_epoch, 1);

        assert_eq!(beat(&ctx, "m-1", -1).await.member_epoch, -1);
        assert_eq!(
            fetch(&ctx, 4, Vec::new()).await.error_code,
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            broker
                .describe_share_group("g")
                .expect("describe")
                .members
                .len(),
            0
        );
        broker.shutdown().await.expect("shutdown");
    }

    #[tokio::test]
    async fn a_silent_member_expires_and_what_it_held_is_offered_again() {
        let (_dir, broker, ctx) = test_context().await;
        assert_eq!(beat(&ctx, "m-1", 0).await.error_code, 0);
        broker
            .produce("t", Some(0), [NewRecord::new("only")])
            .await
            .expect("produce");
        assert_eq!(
            acquired(&fetch(&ctx, 0, Vec::new()).await).0,
            vec![(0, 0, 1)]
        );
        ctx.shares.expire(Duration::from_secs(60));
        assert_eq!(ctx.shares.members.count("g"), 1, "heard from recently");
        tokio::time::sleep(Duration::from_millis(20)).await;
        ctx.shares.expire(Duration::from_millis(10));
        assert_eq!(ctx.shares.members.count("g"), 0);
        // A new member gets the record again, delivered a second time.
        assert_eq!(beat(&ctx, "m-1", 0).await.error_code, 0);
        assert_eq!(
            acquired(&fetch(&ctx, 0, Vec::new()).await).0,
            vec![(0, 0, 2)]
        );
        // Closing the session releases what the member holds.
        let closed = fetch(&ctx, -1, Vec::new()).await;
        assert_eq!(closed.error_code, 0);
        assert_eq!(
            acquired(&fetch(&ctx, 0, Vec::new()).await).0,
            vec![(0, 0, 3)]
        );
        broker.shutdown().await.expect("shutdown");
    }

    #[test]
    fn acknowledgement_batches_are_checked() {
        let partition = ("t".to_owned(), 0);
        let batch = |first, last, types: Vec<i8>| AckBatch { first, last, types };
        let acks = acks_of(&partition, &[batch(5, 7, vec![1, 0, 3])], 10).expect("acks");
        assert_eq!(
            acks.iter().map(|a| (a.offset, a.kind)).collect::<Vec<_>>(),
            vec![(5, AckKind::Accept), (7, AckKind::Reject)]
        );
        // A gap over a huge range is skipped, not walked.
        assert!(
            acks_of(&partition, &[batch(0, i64::MAX, vec![0])], 10)
                .expect("gap")
                .is_empty()
        );
        for (bad, names) in [
            (batch(-1, 2, vec![1]), "negative"),
            (batch(3, 2, vec![1]), "before"),
            (batch(0, 2, vec![1, 1]), "expected 1 or 3"),
            (batch(0, 0, vec![4]), "acknowledge type 4"),
            (batch(0, 20, vec![1]), "share.max_prefetch"),
        ] {
            let err = acks_of(&partition, &[bad], 10).expect_err(names);
            assert!(err.contains(names), "{err}");
        }
    }
}
