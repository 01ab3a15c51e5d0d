//! FindCoordinator and DescribeCluster: this one node is the coordinator of every group and
//! the whole cluster.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::NODE_ID;
use sluice_broker::security::{Operation, Resource};

use super::Context;

/// FindCoordinator's key type of consumer groups (1 is transactions, 2 share groups).
const GROUP_KEY: i8 = 0;
/// `cluster_authorized_operations` when the client did not ask for them.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;
/// DescribeCluster's endpoint type of brokers (2 is controllers).
const BROKER_ENDPOINTS: i8 = 1;

/// Names this node as the coordinator of every consumer group asked about. Transaction
/// coordinators are refused: transactions are not supported.
pub(crate) async fn find_coordinator(
    ctx: &Context,
    header: &RequestHeader,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let (host, port) = ctx.advertised();
    let coordinator = |key: StrBytes| {
        let key_text = key.clone();
        let found = Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(NODE_ID))
            .with_host(host.clone())
            .with_port(port);
        if request.key_type == GROUP_KEY {
            match ctx.group_refusal(Operation::Describe, key_text.as_str()) {
                None => found,
                Some(code) => found
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1)
                    .with_error_code(code),
            }
        } else {
            found
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1)
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_error_message(Some(StrBytes::from_string(format!(
                    "key type {}: only consumer group coordinators exist here (transactions and share groups are not supported over Kafka)",
                    request.key_type
                ))))
        }
    };
    if header.request_api_version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .cloned()
            .map(coordinator)
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let one = coordinator(request.key.clone());
        FindCoordinatorResponse::default()
            .with_error_code(one.error_code)
            .with_error_message(one.error_message)
            .with_node_id(one.node_id)
            .with_host(one.host)
            .with_port(one.port)
    }
}

/// Describes the cluster: its id and this one broker.
pub(crate) async fn describe_cluster(
    ctx: &Context,
    _header: &RequestHeader,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let (host, port) = ctx.advertised();
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(ctx.broker.cluster_id().to_owned()))
        .with_controller_id(BrokerId(NODE_ID))
        .with_cluster_authorized_operations(OPERATIONS_NOT_ASKED);
    if let Err(denied) = ctx.authorize(Operation::Describe, &Resource::cluster()) {
        let (code, message) = crate::errors::answer(&denied);
        return response
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    if request.endpoint_type != BROKER_ENDPOINTS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "only broker endpoints (endpoint type 1) exist: there are no separate controllers",
            )));
    }
    response.with_brokers(vec![
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(NODE_ID))
            .with_host(host)
            .with_port(port),
    ])
}
