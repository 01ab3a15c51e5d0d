//! DescribeConfigs: a topic's effective configuration, under Kafka's own key names.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::errors;

/// DescribeConfigs' resource type of topics.
const TOPIC: i8 = 2;
/// DescribeConfigs' resource type of brokers.
const BROKER: i8 = 4;
/// `config_source` of a setting a topic holds.
pub(crate) const DYNAMIC_TOPIC_CONFIG: i8 = 1;

/// Describes each resource asked about: topics with every effective setting; the broker
/// with none (its settings are the server's config file, not Kafka's broker keys).
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
                TOPIC => match ctx.broker.describe_topic(resource.resource_name.as_str()) {
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
                                DescribeConfigsResourceResult::default()
                                    .with_name(StrBytes::from_string(key))
                                    .with_value(Some(StrBytes::from_string(value)))
                                    .with_config_source(DYNAMIC_TOPIC_CONFIG)
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
                BROKER => result,
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
