//! The `sluice.v1.Groups` service: consumer group membership and consumption
//! ([`consume`]), committed offsets and group administration.

mod consume;
pub(crate) mod wire;

use std::sync::Arc;

use sluice_broker::Broker;
use sluice_proto::v1::groups_server::Groups;
use sluice_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, ConsumeRequest, DeleteGroupRequest,
    DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, GroupSummary, ListGroupsRequest, ListGroupsResponse, ResetOffsetsRequest,
    ResetOffsetsResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::convert::position;
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
    type ConsumeStream = ConsumeStream;

    async fn consume(
        &self,
        request: Request<Streaming<ConsumeRequest>>,
    ) -> Result<Response<ConsumeStream>, Status> {
        let client_host = request
            .remote_addr()
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default();
        consume::consume(
            Arc::clone(&self.broker),
            request.into_inner(),
            client_host,
            self.max_request_bytes,
        )
        .await
        .map(Response::new)
    }

    async fn commit_offsets(
        &self,
        request: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        let request = request.into_inner();
        require_group(&request.group)?;
        if request.offsets.is_empty() {
            return Err(invalid_field("offsets", "must not be empty"));
        }
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
        let request = request.into_inner();
        require_group(&request.group)?;
        let topic = (!request.topic.is_empty()).then_some(request.topic.as_str());
        let offsets = self
            .broker
            .fetch_offsets(&request.group, topic)
            .map_err(to_status)?;
        Ok(Response::new(FetchOffsetsResponse {
            offsets: offsets.into_iter().map(committed_offset).collect(),
        }))
    }

    async fn list_groups(
        &self,
        _request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let groups = self
            .broker
            .list_groups()
            .into_iter()
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
        let request = request.into_inner();
        require_group(&request.group)?;
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
        let request = request.into_inner();
        require_group(&request.group)?;
        require_topic("topic", &request.topic)?;
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
        let request = request.into_inner();
        require_group(&request.group)?;
        self.broker
            .delete_group(&request.group)
            .await
            .map_err(to_status)?;
        Ok(Response::new(DeleteGroupResponse {}))
    }
}
