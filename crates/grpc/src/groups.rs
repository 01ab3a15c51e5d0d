//! The `sluice.v1.Groups` service: consumer group membership and consumption
//! ([`consume`]), committed offsets and group administration. As in Kafka, consuming and
//! committing need Read on the group and its topics, offset lookups and descriptions
//! Describe on the group (the list shows only groups the caller may describe), deleting
//! Delete.

mod consume;
pub(crate) mod wire;

use std::collections::BTreeSet;
use std::sync::Arc;

use sluice_broker::Broker;
use sluice_broker::security::{Operation, Resource};
use sluice_proto::v1::groups_server::Groups;
use sluice_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, ConsumeRequest, DeleteGroupRequest,
    DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, GroupSummary, ListGroupsRequest, ListGroupsResponse, ResetOffsetsRequest,
    ResetOffsetsResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{authorize, authorize_group_read, caller};
use crate::convert::position;
use crate::quota::Guarded;
use crate::status::{invalid_field, require_topic, to_status};
use consume::ConsumeStream;
use wire::{committed_offset, group_description, group_state, offset_commits};

/// Implements `sluice.v1.Groups` on a broker.
#[derive(Debug)]
pub(crate) struct GroupsService {
    broker: Arc<Broker>,
    max_request_bytes: usize,
}

impl GroupsService {
    /// The service for `broker`; members' messages are limited to `max_request_bytes`.
    pub(crate) fn new(broker: Arc<Broker>, max_request_bytes: usize) -> Self {
        GroupsService {
            broker,
            max_request_bytes,
        }
    }
}

/// Checks a request's group field is set.
fn require_group(group: &str) -> Result<(), Status> {
    if group.is_empty() {
        return Err(invalid_field("group", "must not be empty"));
    }
    Ok(())
}

#[tonic::async_trait]
impl Groups for GroupsService {
    type ConsumeStream = Guarded<ConsumeStream>;

    async fn consume(
        &self,
        request: Request<Streaming<ConsumeRequest>>,
    ) -> Result<Response<Guarded<ConsumeStream>>, Status> {
        let caller = caller(&request);
        let client_host = if caller.host.is_unspecified() {
            String::new()
        } else {
            caller.host.to_string()
        };
        let stream = consume::consume(
            Arc::clone(&self.broker),
            &caller,
            request.into_inner(),
            client_host,
            self.max_request_bytes,
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn commit_offsets(
        &self,
        request: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_group(&request.group)?;
        if request.offsets.is_empty() {
            return Err(invalid_field("offsets", "must not be empty"));
        }
        let topics: BTreeSet<&String> = request.offsets.iter().map(|o| &o.topic).collect();
        authorize_group_read(&self.broker, &caller, &request.group, topics)?;
        let offsets = offset_commits(request.offsets, "offsets")?;
        self.broker
            .commit_offsets(
                &request.group,
                request.generation,
                &request.member_id,
                &offsets,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_group(&request.group)?;
        authorize(
            &self.broker,
            &caller,
            Operation::Describe,
            &Resource::group(&request.group),
        )?;
        let topic = (!request.topic.is_empty()).then_some(request.topic.as_str());
        let offsets = self
            .broker
            .fetch_offsets(&request.group, topic)
            .map_err(to_status)?;
        // As in Kafka's OffsetFetch: only the topics the caller may describe.
        let security = self.broker.security();
        Ok(Response::new(FetchOffsetsResponse {
            offsets: offsets
                .into_iter()
                .filter(|o| {
                    security.permits(
                        &caller,
                        Operation::Describe,
                        &Resource::topic(&o.partition.topic),
                    )
                })
                .map(committed_offset)
                .collect(),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let caller = caller(&request);
        let security = self.broker.security();
        let groups = self
            .broker
            .list_groups()
            .into_iter()
            .filter(|g| security.permits(&caller, Operation::Describe, &Resource::group(&g.name)))
            .map(|group| GroupSummary {
                group: group.name,
                state: group_state(group.state).into(),
                members: u32::try_from(group.members).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_group(&request.group)?;
        authorize(
            &self.broker,
            &caller,
            Operation::Describe,
            &Resource::group(&request.group),
        )?;
        // Working out the delay reads a record of each lagging partition.
        let broker = Arc::clone(&self.broker);
        let description =
            tokio::task::spawn_blocking(move || broker.describe_group(&request.group))
                .await
                .map_err(|e| Status::internal(format!("describe task failed: {e}")))?
                .map_err(to_status)?;
        Ok(Response::new(group_description(description)))
    }

    async fn reset_offsets(
        &self,
        request: Request<ResetOffsetsRequest>,
    ) -> Result<Response<ResetOffsetsResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_group(&request.group)?;
        require_topic("topic", &request.topic)?;
        authorize_group_read(&self.broker, &caller, &request.group, [&request.topic])?;
        let to = position(request.to, "to")?;
        let offsets = self
            .broker
            .reset_offsets(&request.group, &request.topic, &request.partitions, to)
            .await
            .map_err(to_status)?;
        tracing::info!(group = %request.group, topic = %request.topic, "offsets reset");
        Ok(Response::new(ResetOffsetsResponse {
            offsets: offsets.into_iter().map(committed_offset).collect(),
        }))
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_group(&request.group)?;
        authorize(
            &self.broker,
            &caller,
            Operation::Delete,
            &Resource::group(&request.group),
        )?;
        self.broker
            .delete_group(&request.group)
            .await
            .map_err(to_status)?;
        Ok(Response::new(DeleteGroupResponse {}))
    }
}
