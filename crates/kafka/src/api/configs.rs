//! DescribeConfigs, IncrementalAlterConfigs and AlterConfigs: a topic's configuration under
//! Kafka's own key names, read and changed while it serves.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
    alter_configs_response, incremental_alter_configs_request, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::security::{Operation, Resource};
use sluice_broker::{ConfigChange, ConfigUpdate};

use super::Context;
use crate::errors;

/// The resource type of topics.
const TOPIC: i8 = 2;
/// The resource type of brokers.
const BROKER: i8 = 4;
/// `config_source` of a setting a topic holds.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
/// `config_source` of a setting that is the broker's default.
const DEFAULT_CONFIG: i8 = 5;

/// IncrementalAlterConfigs' operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// The `config_source` of `key` for a topic overriding `overrides`.
pub(crate) fn config_source(overrides: &BTreeMap<String, String>, key: &str) -> i8 {
    if overrides.contains_key(key) {
        DYNAMIC_TOPIC_CONFIG
    } else {
        DEFAULT_CONFIG
    }
}

/// Describes each resource asked about: topics with every effective setting, those the
/// topic overrides as its own and the others as defaults; the broker with none (its
/// settings are the server's config file, not Kafka's broker keys).
pub(crate) async fn describe_configs(
    ctx: &Context,
    _header: &RequestHeader,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match resource.resource_type {
                TOPIC => match ctx
                    .authorize_topic(Operation::DescribeConfigs, resource.resource_name.as_str())
                    .and_then(|()| ctx.broker.describe_topic(resource.resource_name.as_str()))
                {
                    Ok(info) => {
                        let wanted = |key: &str| {
                            resource
                                .configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
                        };
                        let configs = info
                            .config
                            .into_iter()
                            .filter(|(key, _)| wanted(key))
                            .map(|(key, value)| {
                                let source = config_source(&info.overrides, &key);
                                DescribeConfigsResourceResult::default()
                                    .with_name(StrBytes::from_string(key))
                                    .with_value(Some(StrBytes::from_string(value)))
                                    .with_config_source(source)
                            })
                            .collect();
                        result.with_configs(configs)
                    }
                    Err(err) => {
                        let (code, message) = errors::answer(&err);
                        result
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(message)))
                    }
                },
                BROKER => match ctx.authorize(Operation::DescribeConfigs, &Resource::cluster()) {
                    Ok(()) => result,
                    Err(err) => {
                        let (code, message) = errors::answer(&err);
                        result
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(message)))
                    }
                },
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "resource type {other}: only topics (2) and brokers (4) have configs here"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Applies each resource's SET and DELETE operations to its topic's overrides (or, with
/// `validate_only`, checks them), resource by resource.
pub(crate) async fn incremental_alter_configs(
    ctx: &Context,
    _header: &RequestHeader,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let update = incremental_update(&resource.configs);
        let (code, message) = alter(
            ctx,
            resource.resource_type,
            &resource.resource_name,
            update,
            request.validate_only,
        )
        .await;
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Makes each resource's configs the only overrides of its topic (Kafka's legacy
/// whole-config semantics: a key left out goes back to the default).
pub(crate) async fn alter_configs(
    ctx: &Context,
    _header: &RequestHeader,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let entries = resource
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(StrBytes::as_str)));
        let (code, message) = alter(
            ctx,
            resource.resource_type,
            &resource.resource_name,
            replacement(entries),
            request.validate_only,
        )
        .await;
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// An error code and message to answer a resource with.
type Refusal = (i16, String);

fn invalid_request(message: String) -> Refusal {
    (ResponseError::InvalidRequest.code(), message)
}

/// Applies `update` to the resource, answering its error code and message.
async fn alter(
    ctx: &Context,
    resource_type: i8,
    name: &StrBytes,
    update: Result<ConfigUpdate, Refusal>,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let outcome = match resource_type {
        TOPIC => match (
            ctx.authorize_topic(Operation::AlterConfigs, name.as_str()),
            update,
        ) {
            (Err(denied), _) => Err(errors::answer(&denied)),
            (Ok(()), Ok(update)) => ctx
                .broker
                .alter_topic_config(name.as_str(), update, validate_only)
                .await
                .map(drop)
                .map_err(|e| errors::answer(&e)),
            (Ok(()), Err(refused)) => Err(refused),
        },
        BROKER => Err(invalid_request(
            "broker settings cannot change at runtime: they live in the server's config \
             file, environment and flags (topic defaults in [topic_defaults]); only topic \
             configs (resource type 2) change here"
                .to_owned(),
        )),
        other => Err(invalid_request(format!(
            "resource type {other}: only topic configs (resource type 2) change here"
        ))),
    };
    match outcome {
        Ok(()) => (0, None),
        Err((code, message)) => (code, Some(StrBytes::from_string(message))),
    }
}

/// The broker's changes for IncrementalAlterConfigs' operations: SET (with a value) and
/// DELETE. APPEND and SUBTRACT apply only to list-valued configs, and no topic config here
/// is one.
fn incremental_update(
    configs: &[incremental_alter_configs_request::AlterableConfig],
) -> Result<ConfigUpdate, Refusal> {
    let changes = configs
        .iter()
        .map(|config| {
            let key = config.name.to_string();
            match config.config_operation {
                SET => match &config.value {
                    Some(value) => Ok(ConfigChange::Set {
                        key,
                        value: value.to_string(),
                    }),
                    None => Err(invalid_request(format!(
                        "config {key}: SET (0) needs a value; DELETE (1) restores the default"
                    ))),
                },
                DELETE => Ok(ConfigChange::Delete { key }),
                op @ (APPEND | SUBTRACT) => {
                    let name = if op == APPEND { "APPEND" } else { "SUBTRACT" };
                    Err(invalid_request(format!(
                        "config {key}: {name} ({op}) applies only to list-valued configs, and \
                         every topic config here holds one value; use SET (0) or DELETE (1)"
                    )))
                }
                op => Err(invalid_request(format!(
                    "config {key}: unknown operation {op}; expected SET (0) or DELETE (1)"
                ))),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(ConfigUpdate::Incremental(changes))
}

/// The whole set of overrides AlterConfigs gives, refused when a key has no value or comes
/// twice.
fn replacement<'a>(
    entries: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<ConfigUpdate, Refusal> {
    let mut overrides = BTreeMap::new();
    for (key, value) in entries {
        let Some(value) = value else {
            return Err(invalid_request(format!(
                "config {key}: a value is needed; leave the key out to restore its default"
            )));
        };
        if overrides.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(invalid_request(format!(
                "config {key}: given more than once"
            )));
        }
    }
    Ok(ConfigUpdate::Replace(overrides))
}

#[cfg(test)]
mod tests {

    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;

    use super::*;
    use crate::api::test_context;

    fn op(name: &'static str, operation: i8, value: Option<&'static str>) -> AlterableConfig {
        AlterableConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_config_operation(operation)
            .with_value(value.map(StrBytes::from_static_str))
    }

    #[test]
    fn set_and_delete_map_onto_broker_changes() {
        let update = incremental_update(&[
            op("retention.ms", SET, Some("5")),
            op("segment.bytes", DELETE, None),
        ]);
        assert_eq!(
            update,
            Ok(ConfigUpdate::Incremental(vec![
                ConfigChange::Set {
                    key: "retention.ms".to_owned(),
                    value: "5".to_owned(),
                },
                ConfigChange::Delete {
                    key: "segment.bytes".to_owned(),
                },
            ]))
        );
    }

    #[test]
    fn list_operations_null_sets_and_unknown_operations_are_invalid_requests() {
        let invalid = ResponseError::InvalidRequest.code();
        for (config, needle) in [
            (op("cleanup.policy", APPEND, Some("compact")), "APPEND (2)"),
            (
                op("cleanup.policy", SUBTRACT, Some("compact")),
                "SUBTRACT (3)",
            ),
            (op("retention.ms", SET, None), "needs a value"),
            (op("retention.ms", 9, Some("1")), "unknown operation 9"),
        ] {
            match incremental_update(&[config]) {
                Err((code, message)) => {
                    assert_eq!(code, invalid);
                    assert!(message.contains(needle), "{message}");
                }
                Ok(update) => panic!("{needle}: accepted as {update:?}"),
            }
        }
    }

    #[test]
    fn a_replacement_needs_every_value_once() {
        let whole = replacement([("flush.policy", Some("none"))].into_iter());
        assert_eq!(
            whole,
            Ok(ConfigUpdate::Replace(
                [("flush.policy".to_owned(), "none".to_owned())].into()
            ))
        );
        let twice = replacement([("a", Some("1")), ("a", Some("2"))].into_iter());
        assert!(twice.is_err_and(|(_, m)| m.contains("more than once")));
        let null = replacement([("a", None)].into_iter());
        assert!(null.is_err_and(|(_, m)| m.contains("a value is needed")));
    }

    fn resource(
        kind: i8,
        name: &'static str,
        configs: Vec<AlterableConfig>,
    ) -> AlterConfigsResource {
        AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_static_str(name))
            .with_configs(configs)
    }

    /// `(key, value, config_source)` of every config DescribeConfigs gives for `topic`.
    async fn described(
        ctx: &Context,
        header: &RequestHeader,
        topic: &'static str,
    ) -> Vec<(String, String, i8)> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(StrBytes::from_static_str(topic))
                .with_configuration_keys(None),
        ]);
        let response = describe_configs(ctx, header, request).await;
        response.results[0]
            .configs
            .iter()
            .map(|c| {
                let value = c
                    .value
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                (c.name.to_string(), value, c.config_source)
            })
            .collect()
    }

    #[tokio::test]
    async fn each_resource_gets_its_own_error_code_and_describe_tells_overrides() {
        let (_dir, broker, ctx) = test_context().await;
        let header = RequestHeader::default();
        let request = |validate_only| {
            IncrementalAlterConfigsRequest::default()
                .with_validate_only(validate_only)
                .with_resources(vec![
                    resource(TOPIC, "t", vec![op("retention.ms", SET, Some("600000"))]),
                    resource(TOPIC, "t", vec![op("segment.bytes", SET, Some("12"))]),
                    resource(TOPIC, "t", vec![op("retention.ms", APPEND, Some("1"))]),
                    resource(TOPIC, "missing", vec![op("retention.ms", SET, Some("1"))]),
                    resource(BROKER, "0", vec![op("log.retention.ms", SET, Some("1"))]),
                ])
        };
        let expected = [
            0,
            ResponseError::InvalidConfig.code(),
            ResponseError::InvalidRequest.code(),
            ResponseError::UnknownTopicOrPartition.code(),
            ResponseError::InvalidRequest.code(),
        ];
        for validate_only in [true, false] {
            let response = incremental_alter_configs(&ctx, &header, request(validate_only)).await;
            let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
            assert_eq!(codes, expected, "validate_only: {validate_only}");
            let messages: Vec<String> = response
                .responses
                .iter()
                .map(|r| {
                    r.error_message
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                })
                .collect();
            assert!(messages[1].contains("segment.bytes"), "{}", messages[1]);
            assert!(messages[4].contains("config file"), "{}", messages[4]);
            let retention = described(&ctx, &header, "t")
                .await
                .into_iter()
                .find(|(key, _, _)| key == "retention.ms");
            if validate_only {
                assert_eq!(
                    retention,
                    Some((
                        "retention.ms".to_owned(),
                        "604800000".to_owned(),
                        DEFAULT_CONFIG
                    ))
                );
            } else {
                assert_eq!(
                    retention,
                    Some((
                        "retention.ms".to_owned(),
                        "600000".to_owned(),
                        DYNAMIC_TOPIC_CONFIG
                    ))
                );
            }
        }
        let sources: Vec<i8> = described(&ctx, &header, "t")
            .await
            .into_iter()
            .filter(|(key, _, _)| key != "retention.ms")
            .map(|(_, _, source)| source)
            .collect();
        assert!(sources.iter().all(|&s| s == DEFAULT_CONFIG), "{sources:?}");
        let reclaim = described(&ctx, &header, "t")
            .await
            .into_iter()
            .find(|(key, _, _)| key == "share.reclaim.enable");
        assert_eq!(
            reclaim,
            Some((
                "share.reclaim.enable".to_owned(),
                "false".to_owned(),
                DEFAULT_CONFIG
            ))
        );
        broker.shutdown().await.expect("shutdown");
    }
}
