//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::security::Operation;
use sluice_broker::{BrokerError, NODE_ID, TopicConfig, validate_topic_name};

use super::Context;
use super::configs::config_source;
use crate::errors;

/// Creates each topic asked for (or, with `validate_only`, checks it could be created).
pub(crate) async fn create_topics(
    ctx: &Context,
    _header: &RequestHeader,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let result = CreatableTopicResult::default()
            .with_name(name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        results.push(match create(ctx, topic, request.validate_only).await {
            Ok((partitions, configs)) => result
                .with_num_partitions(i32::try_from(partitions).unwrap_or(i32::MAX))
                .with_replication_factor(1)
                .with_configs(Some(configs)),
            Err(err) => {
                let (code, message) = errors::answer(&err);
                result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Creates one topic; returns its partition count and effective configs.
async fn create(
    ctx: &Context,
    topic: CreatableTopic,
    validate_only: bool,
) -> Result<(u32, Vec<CreatableTopicConfigs>), BrokerError> {
    let name = topic.name.0.to_string();
    ctx.authorize_create(&name)?;
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err(BrokerError::InvalidRequest {
            field: "replication_factor",
            reason: format!(
                "is {}: this server is one node, so only 1 (or -1 for the default) is possible",
                topic.replication_factor
            ),
        });
    }
    let partitions = if topic.assignments.is_empty() {
        match topic.num_partitions {
            -1 => ctx.config.num_partitions,
            n => u32::try_from(n).map_err(|_| BrokerError::InvalidPartitionCount {
                requested: 0,
                max: ctx.broker.limits().max_partitions,
            })?,
        }
    } else {
        if topic
            .assignments
            .iter()
            .any(|a| a.broker_ids.iter().any(|b| b.0 != NODE_ID))
        {
            return Err(BrokerError::InvalidRequest {
                field: "assignments",
                reason: format!("replicas may only be on broker {NODE_ID}, the one node"),
            });
        }
        u32::try_from(topic.assignments.len()).unwrap_or(u32::MAX)
    };
    let overrides: BTreeMap<String, String> = topic
        .configs
        .iter()
        .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
        .collect();
    if validate_only {
        validate_topic_name(&name, ctx.broker.limits().max_topic_name_len)?;
        let max = ctx.broker.limits().max_partitions;
        if !(1..=max).contains(&partitions) {
            return Err(BrokerError::InvalidPartitionCount {
                requested: partitions,
                max,
            });
        }
        let config = TopicConfig::from_overrides(ctx.broker.topic_defaults(), &overrides)?;
        return Ok((partitions, configs(&config.to_map(), &overrides)));
    }
    let info = ctx
        .broker
        .create_topic(&name, partitions, &overrides)
        .await?;
    Ok((partitions, configs(&info.config, &overrides)))
}

/// The effective configs of a new topic, those it set marked as its own.
fn configs(
    effective: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    effective
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(key.clone()))
                .with_value(Some(StrBytes::from_string(value.clone())))
                .with_config_source(config_source(overrides, key))
        })
        .collect()
}

/// Deletes each topic named. Topic ids (version 6) are not served.
pub(crate) async fn delete_topics(
    ctx: &Context,
    _header: &RequestHeader,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut responses = Vec::with_capacity(request.topic_names.len());
    for name in request.topic_names {
        let result = DeletableTopicResult::default().with_name(Some(name.clone()));
        let deleted = match ctx.authorize_topic(Operation::Delete, name.0.as_str()) {
            Ok(()) => ctx.broker.delete_topic(name.0.as_str()).await,
            Err(denied) => Err(denied),
        };
        responses.push(match deleted {
            Ok(()) => result,
            Err(err) => {
                let (code, message) = errors::answer(&err);
                result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions: a topic's partition count is fixed when it is created, so any change is
/// refused with INVALID_PARTITIONS saying so.
pub(crate) async fn create_partitions(
    ctx: &Context,
    _header: &RequestHeader,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            let counted = ctx
                .authorize_topic(Operation::Alter, topic.name.0.as_str())
                .and_then(|()| ctx.broker.partition_count(topic.name.0.as_str()));
            let (code, message) = match counted {
                Ok(count) => (
                    ResponseError::InvalidPartitions.code(),
                    format!(
                        "topic {:?} has {count} partitions and asks for {}: the partition count of a topic is fixed at creation on this server",
                        topic.name.0.as_str(),
                        topic.count
                    ),
                ),
                Err(err) => errors::answer(&err),
            };
            result
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
