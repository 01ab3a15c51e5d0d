//! The `sluice.v1.ShareGroups` service: share group membership and consumption
//! ([`consume`]) and share group administration. Consuming needs Read on the group and
//! its topics, describing Describe (the list shows only groups the caller may describe),
//! deleting Delete and changing settings AlterConfigs on the group.

mod consume;
pub(crate) mod wire;

use std::sync::Arc;

use sluice_broker::Broker;
use sluice_broker::security::{Operation, Resource};
use sluice_proto::v1::share_groups_server::ShareGroups;
use sluice_proto::v1::{
    AlterShareGroupRequest, AlterShareGroupResponse, DeleteShareGroupRequest,
    DeleteShareGroupResponse, DescribeShareGroupRequest, DescribeShareGroupResponse,
    ListShareGroupsRequest, ListShareGroupsResponse, ShareConsumeRequest, ShareGroupSummary,
};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{authorize, caller};
use crate::quota::Guarded;
use crate::status::{invalid_field, to_status};
use consume::ShareConsumeStream;
use wire::{description, merged_settings, settings_message};

/// Implements `sluice.v1.ShareGroups` on a broker.
#[derive(Debug)]
pub(crate) struct ShareGroupsService {
    broker: Arc<Broker>,
    max_request_bytes: usize,
}

impl ShareGroupsService {
    /// The service for `broker`; members' messages are limited to `max_request_bytes`.
    pub(crate) fn new(broker: Arc<Broker>, max_request_bytes: usize) -> Self {
        ShareGroupsService {
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
impl ShareGroups for ShareGroupsService {
    type ShareConsumeStream = Guarded<ShareConsumeStream>;

    async fn share_consume(
        &self,
        request: Request<Streaming<ShareConsumeRequest>>,
    ) -> Result<Response<Guarded<ShareConsumeStream>>, Status> {
        let caller = caller(&request);
        let stream = consume::share_consume(
            Arc::clone(&self.broker),
            &caller,
            request.into_inner(),
            self.max_request_bytes,
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn list_share_groups(
        &self,
        request: Request<ListShareGroupsRequest>,
    ) -> Result<Response<ListShareGroupsResponse>, Status> {
        let caller = caller(&request);
        let security = self.broker.security();
        let groups = self
            .broker
            .list_share_groups()
            .into_iter()
            .filter(|g| security.permits(&caller, Operation::Describe, &Resource::group(&g.name)))
            .map(|group| ShareGroupSummary {
                group: group.name,
                // Only the topics the caller may see.
                topics: group
                    .topics
                    .into_iter()
                    .filter(|t| security.permits(&caller, Operation::Describe, &Resource::topic(t)))
                    .collect(),
                members: u32::try_from(group.members).unwrap_or(u32::MAX),
            })
            .collect();
        Ok(Response::new(ListShareGroupsResponse { groups }))
    }

    async fn describe_share_group(
        &self,
        request: Request<DescribeShareGroupRequest>,
    ) -> Result<Response<DescribeShareGroupResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_group(&request.group)?;
        authorize(
            &self.broker,
            &caller,
            Operation::Describe,
            &Resource::group(&request.group),
        )?;
        let group = self
            .broker
            .describe_share_group(&request.group)
            .map_err(to_status)?;
        Ok(Response::new(description(group)))
    }

    async fn delete_share_group(
        &self,
        request: Request<DeleteShareGroupRequest>,
    ) -> Result<Response<DeleteShareGroupResponse>, Status> {
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
            .delete_share_group(&request.group)
            .await
            .map_err(to_status)?;
        tracing::info!(group = %request.group, "share group deleted");
        Ok(Response::new(DeleteShareGroupResponse {}))
    }

    async fn alter_share_group(
        &self,
        request: Request<AlterShareGroupRequest>,
    ) -> Result<Response<AlterShareGroupResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_group(&request.group)?;
        authorize(
            &self.broker,
            &caller,
            Operation::AlterConfigs,
            &Resource::group(&request.group),
        )?;
        let Some(changes) = request.settings else {
            return Err(invalid_field(
                "settings",
                "required: set at least one field",
            ));
        };
        let current = self
            .broker
            .describe_share_group(&request.group)
            .map_err(to_status)?
            .settings;
        let settings = merged_settings(current, changes);
        self.broker
            .alter_share_group(&request.group, settings.clone())
            .await
            .map_err(to_status)?;
        tracing::info!(group = %request.group, ?settings, "share group altered");
        Ok(Response::new(AlterShareGroupResponse {
            settings: Some(settings_message(&settings)),
        }))
    }
}
