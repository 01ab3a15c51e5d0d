//! The `sluice.v1.Admin` service: topic administration. Each call is authorized as Kafka
//! authorizes its counterpart: Create on the cluster or the topic, Delete, Describe (the
//! topic list shows only topics the caller may describe) and AlterConfigs on the topic.

use std::sync::Arc;

use sluice_broker::security::{Operation, Resource};
use sluice_broker::{Broker, ConfigChange, ConfigUpdate};
use sluice_proto::v1::admin_server::Admin;
use sluice_proto::v1::{
    AlterTopicConfigRequest, AlterTopicConfigResponse, CreateTopicRequest, CreateTopicResponse,
    DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest, DescribeTopicResponse,
    ListTopicsRequest, ListTopicsResponse, TopicSummary,
};
use tonic::{Request, Response, Status};

use crate::auth::{authorize, caller};
use crate::convert::topic_description;
use crate::status::{require_topic, to_status};

/// Implements `sluice.v1.Admin` on a broker.
#[derive(Debug)]
pub(crate) struct AdminService {
    broker: Arc<Broker>,
}

impl AdminService {
    /// The service for `broker`.
    pub(crate) fn new(broker: Arc<Broker>) -> Self {
        AdminService { broker }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_topic("name", &request.name)?;
        // As in Kafka: Create on the cluster, or on the topic.
        self.broker
            .security()
            .authorize_create_topic(&caller, &request.name)
            .map_err(to_status)?;
        let info = self
            .broker
            .create_topic(&request.name, request.partitions, &request.config)
            .await
            .map_err(to_status)?;
        tracing::info!(topic = %info.name, partitions = info.partitions.len(), "topic created");
        Ok(Response::new(CreateTopicResponse {
            topic: Some(topic_description(info)),
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_topic("name", &request.name)?;
        authorize(
            &self.broker,
            &caller,
            Operation::Delete,
            &Resource::topic(&request.name),
        )?;
        self.broker
            .delete_topic(&request.name)
            .await
            .map_err(to_status)?;
        tracing::info!(topic = %request.name, "topic deleted");
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let caller = caller(&request);
        let security = self.broker.security();
        let topics = self
            .broker
            .list_topics()
            .into_iter()
            .filter(|t| security.permits(&caller, Operation::Describe, &Resource::topic(&t.name)))
            .map(|summary| TopicSummary {
                name: summary.name,
                partitions: summary.partitions,
            })
            .collect();
        Ok(Response::new(ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<DescribeTopicResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_topic("name", &request.name)?;
        authorize(
            &self.broker,
            &caller,
            Operation::Describe,
            &Resource::topic(&request.name),
        )?;
        let mut info = self
            .broker
            .describe_topic(&request.name)
            .map_err(to_status)?;
        // The configuration is shown only to who may read it, as Kafka's DescribeConfigs.
        let topic = Resource::topic(&request.name);
        if !self
            .broker
            .security()
            .permits(&caller, Operation::DescribeConfigs, &topic)
        {
            info.config.clear();
            info.overrides.clear();
        }
        Ok(Response::new(DescribeTopicResponse {
            topic: Some(topic_description(info)),
        }))
    }

    async fn alter_topic_config(
        &self,
        request: Request<AlterTopicConfigRequest>,
    ) -> Result<Response<AlterTopicConfigResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_topic("name", &request.name)?;
        authorize(
            &self.broker,
            &caller,
            Operation::AlterConfigs,
            &Resource::topic(&request.name),
        )?;
        let sets = request
            .set
            .into_iter()
            .map(|(key, value)| ConfigChange::Set { key, value });
        let deletes = request
            .delete
            .into_iter()
            .map(|key| ConfigChange::Delete { key });
        let update = ConfigUpdate::Incremental(sets.chain(deletes).collect());
        let info = self
            .broker
            .alter_topic_config(&request.name, update, request.validate_only)
            .await
            .map_err(to_status)?;
        Ok(Response::new(AlterTopicConfigResponse {
            topic: Some(topic_description(info)),
        }))
    }
}
