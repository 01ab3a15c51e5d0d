//! Metadata: this broker, and the topics asked for (all of them when none are named),
//! created first when they do not exist and auto-creation is on (Kafka's default). From
//! version 10 each topic carries its id ([`super::topic_ids`]), and from version 12 a topic
//! may be asked for by id alone.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::security::{Operation, Resource};
use sluice_broker::{BrokerError, NODE_ID, TopicInfo};

use super::Context;
use super::topic_ids::topic_id;
use crate::errors;

/// `*_authorized_operations` when the client did not ask for them.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

/// Answers Metadata.
pub(crate) async fn metadata(
    ctx: &Context,
    header: &RequestHeader,
    request: MetadataRequest,
) -> MetadataResponse {
    let version = header.request_api_version;
    // Topics named by id only (version 10 on) that no topic has.
    let mut unknown_ids = Vec::new();
    // Version 0 asks for every topic with an empty list; later versions with null.
    let names: Vec<String> = match &request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => topics
            .iter()
            .filter_map(|t| match &t.name {
                Some(name) => Some(name.0.to_string()),
                None if !t.topic_id.is_nil() => {
                    let found = ctx.shares.topic_ids.name(&ctx.broker, t.topic_id);
                    if found.is_none() {
                        unknown_ids.push(t.topic_id);
                    }
                    found
                }
                None => None,
            })
            .collect(),
        // Every topic the principal may describe.
        _ => ctx
            .broker
            .list_topics()
            .into_iter()
            .map(|t| t.name)
            .filter(|name| ctx.permits(Operation::Describe, &Resource::topic(name)))
            .collect(),
    };
    // Versions before 4 have no flag: they always allowed auto-creation.
    let allow_create =
        ctx.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let mut topic = describe(ctx, &name, allow_create && request.topics.is_some()).await;
        if version >= 10 {
            topic.topic_id = topic_id(&name);
        }
        topics.push(topic);
    }
    for id in unknown_ids {
        topics.push(
            MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(ResponseError::UnknownTopicId.code())
                .with_topic_authorized_operations(OPERATIONS_NOT_ASKED),
        );
    }
    let (host, port) = ctx.advertised();
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(NODE_ID))
                .with_host(host)
                .with_port(port),
        ])
        .with_cluster_id(Some(StrBytes::from_string(
            ctx.broker.cluster_id().to_owned(),
        )))
        .with_controller_id(BrokerId(NODE_ID))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_NOT_ASKED)
}

/// One topic's metadata, creating it first when it is missing and `create` is set (and the
/// principal may create it). A topic the principal may not describe is answered with
/// TOPIC_AUTHORIZATION_FAILED whether it exists or not, as in Kafka.
async fn describe(ctx: &Context, name: &str, create: bool) -> MetadataResponseTopic {
    let found = match ctx.authorize_topic(Operation::Describe, name) {
        Err(denied) => Err(denied),
        Ok(()) => match ctx.broker.describe_topic(name) {
            Err(BrokerError::TopicNotFound { .. }) if create => match ctx.authorize_create(name) {
                Ok(()) => create_topic(ctx, name).await,
                Err(denied) => Err(denied),
            },
            found => found,
        },
    };
    let topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
        .with_topic_authorized_operations(OPERATIONS_NOT_ASKED);
    match found {
        Ok(info) => topic.with_partitions(partitions(&info)),
        Err(err) => topic.with_error_code(errors::answer(&err).0),
    }
}

/// Creates a topic named by a client (with `num.partitions` partitions and the defaults), then
/// describes it. Another client creating it first is no failure.
async fn create_topic(ctx: &Context, name: &str) -> Result<TopicInfo, BrokerError> {
    let partitions = ctx.config.num_partitions;
    match ctx
        .broker
        .create_topic(name, partitions, &BTreeMap::new())
        .await
    {
        Ok(info) => {
            tracing::info!(topic = name, partitions, "created topic on first use");
            Ok(info)
        }
        Err(BrokerError::TopicExists { .. }) => ctx.broker.describe_topic(name),
        Err(err) => Err(err),
    }
}

/// The partitions of a topic, each led by this node; a failed partition has no leader.
fn partitions(info: &TopicInfo) -> Vec<MetadataResponsePartition> {
    info.partitions
        .iter()
        .map(|p| {
            let partition = MetadataResponsePartition::default()
                .with_partition_index(i32::try_from(p.id).unwrap_or(i32::MAX))
                .with_replica_nodes(vec![BrokerId(NODE_ID)]);
            if p.failure.is_some() {
                partition
                    .with_error_code(ResponseError::KafkaStorageError.code())
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(vec![BrokerId(NODE_ID)])
            } else {
                partition
                    .with_leader_id(BrokerId(NODE_ID))
                    .with_isr_nodes(vec![BrokerId(NODE_ID)])
            }
        })
        .collect()
}
