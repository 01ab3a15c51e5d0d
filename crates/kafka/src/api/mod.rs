//! The Kafka APIs served: which versions ([`SUPPORTED`], what ApiVersions answers) and the
//! handler of each, one module per API family.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
pub use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use sluice_broker::Broker;
use sluice_broker::security::{Caller, Principal};

use crate::frame::{Frame, finish_frame, start_frame};
use crate::{KafkaConfig, KafkaError};

mod access;
mod acls;
mod api_versions;
mod cluster;
mod configs;
mod fetch;
mod fetch_frame;
mod groups;
mod list_offsets;
mod metadata;
pub(crate) mod produce;
mod producers;
pub(crate) mod sasl;
pub(crate) mod share;
pub(crate) mod topic_ids;
mod topics;

/// The protocol name in the audit log and metrics.
pub(crate) const PROTOCOL: &str = "kafka";

/// Every API served, with the oldest and newest version: exactly what ApiVersions answers.
/// An API missing here (or a version outside its range) ends the connection, as in Kafka.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
];

/// The served version range of `key`, if it is served at all.
pub(crate) fn served(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// What every handler can reach: the broker, the front end's settings and the connection's
/// own address (the default advertised address).
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) broker: Arc<Broker>,
    pub(crate) config: Arc<KafkaConfig>,
    /// The address the client connected to.
    pub(crate) local_addr: SocketAddr,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The listener's share group members and sessions.
    pub(crate) shares: Arc<share::Shares>,
    /// Who the connection is: its client certificate's principal (mTLS) or the SASL user
    /// it logged in as; anonymous until then.
    pub(crate) caller: Caller,
    /// The connection's pending quota throttle in milliseconds (see [`Context::throttle`]).
    pub(crate) mute: Arc<AtomicU64>,
}

impl Context {
    /// The context of a new connection from `peer` to `local_addr`, anonymous until it
    /// logs in.
    pub(crate) fn new(
        broker: Arc<Broker>,
        config: Arc<KafkaConfig>,
        shares: Arc<share::Shares>,
        local_addr: SocketAddr,
        peer: SocketAddr,
    ) -> Context {
        Context {
            broker,
            config,
            local_addr,
            peer,
            shares,
            caller: Caller::new(Principal::anonymous(), peer.ip(), PROTOCOL),
            mute: Arc::default(),
        }
    }

    /// This context authenticated by its client certificate's principal, if it showed one.
    pub(crate) fn with_certificate(mut self, certificate: Option<Principal>) -> Context {
        if let Some(principal) = certificate {
            self.caller.principal = principal;
        }
        self
    }

    /// The host and port Metadata, FindCoordinator and DescribeCluster hand out.
    pub(crate) fn advertised(&self) -> (StrBytes, i32) {
        match &self.config.advertised {
            Some(advertised) => (
                StrBytes::from_string(advertised.host.clone()),
                i32::from(advertised.port),
            ),
            None => (
                StrBytes::from_string(self.local_addr.ip().to_string()),
                i32::from(self.local_addr.port()),
            ),
        }
    }
}

/// A request read off the wire: its header and its decoded body.
#[derive(Debug)]
pub struct Request {
    /// The API named by the header.
    pub key: ApiKey,
    /// The header, with the version and correlation id.
    pub header: RequestHeader,
    /// The decoded body.
    pub body: RequestKind,
}

/// Decodes one request frame (without its size prefix), checking first that its API and
/// version are served. An ApiVersions request in a version newer than served is let
/// through with an empty body: Kafka answers it with UNSUPPORTED_VERSION in version 0 (see
/// [`api_versions`]).
pub fn decode_request(mut frame: Bytes) -> Result<Request, KafkaError> {
    if frame.len() < 4 {
        return Err(KafkaError::Malformed {
            api: "unknown".to_owned(),
            version: -1,
            reason: format!("a {}-byte frame has no request header", frame.len()),
        });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|()| KafkaError::UnsupportedApi {
        key: raw_key,
        version,
    })?;
    let (min, max) = served(key).ok_or(KafkaError::UnsupportedApi {
        key: raw_key,
        version,
    })?;
    let api_versions_probe = key == ApiKey::ApiVersions && version > max;
    if !(min..=max).contains(&version) && !api_versions_probe {
        return Err(KafkaError::UnsupportedVersion {
            api: format!("{key:?}"),
            version,
            min,
            max,
        });
    }
    let malformed = |reason: String| KafkaError::Malformed {
        api: format!("{key:?}"),
        version,
        reason,
    };
    // A newer ApiVersions request is read with the newest header we know; only the
    // correlation id matters for the answer.
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version.min(max)))
        .map_err(|e| malformed(e.to_string()))?;
    let body = if api_versions_probe {
        RequestKind::ApiVersions(ApiVersionsRequest::default())
    } else {
        RequestKind::decode(key, &mut frame, version).map_err(|e| malformed(format!("{e:#}")))?
    };
    Ok(Request { key, header, body })
}

/// Encodes a response frame: size, response header (with the request's correlation id),
/// body, in the request's version.
pub(crate) fn respond<M: Encodable + HeaderVersion>(
    key: ApiKey,
    header: &RequestHeader,
    response: &M,
) -> Result<Bytes, KafkaError> {
    respond_in(
        key,
        header.correlation_id,
        header.request_api_version,
        response,
    )
}

/// [`respond`] in an explicit version.
pub(crate) fn respond_in<M: Encodable + HeaderVersion>(
    key: ApiKey,
    correlation_id: i32,
    version: i16,
    response: &M,
) -> Result<Bytes, KafkaError> {
    let failed = |reason: String| KafkaError::Encode {
        api: format!("{key:?}"),
        version,
        reason,
    };
    let response_header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = M::header_version(version);
    let size = response_header
        .compute_size(header_version)
        .and_then(|h| Ok(h + response.compute_size(version)?))
        .map_err(|e| failed(e.to_string()))?;
    let mut frame = start_frame(size);
    response_header
        .encode(&mut frame, header_version)
        .map_err(|e| failed(e.to_string()))?;
    response
        .encode(&mut frame, version)
        .map_err(|e| failed(e.to_string()))?;
    Ok(finish_frame(frame))
}

/// Answers one request that needs no ordering with others (everything but Produce): runs
/// its handler and encodes the response.
pub(crate) async fn handle(ctx: &Context, request: Request) -> Result<Frame, KafkaError> {
    let Request { key, header, body } = request;
    macro_rules! serve {
        ($handler:path, $request:expr) => {{
            let response = $handler(ctx, &header, $request).await;
            respond(key, &header, &response).map(Frame::from)
        }};
    }
    match body {
        RequestKind::ApiVersions(_) => api_versions::answer(&header).map(Frame::from),
        RequestKind::Metadata(r) => serve!(metadata::metadata, r),
        RequestKind::Fetch(r) => fetch_frame::encode(&header, fetch::fetch(ctx, &header, r).await),
        RequestKind::ListOffsets(r) => serve!(list_offsets::list_offsets, r),
        RequestKind::CreateTopics(r) => serve!(topics::create_topics, r),
        RequestKind::DeleteTopics(r) => serve!(topics::delete_topics, r),
        RequestKind::CreatePartitions(r) => serve!(topics::create_partitions, r),
        RequestKind::DescribeConfigs(r) => serve!(configs::describe_configs, r),
        RequestKind::AlterConfigs(r) => serve!(configs::alter_configs, r),
        RequestKind::IncrementalAlterConfigs(r) => serve!(configs::incremental_alter_configs, r),
        RequestKind::JoinGroup(r) => serve!(groups::join_group, r),
        RequestKind::SyncGroup(r) => serve!(groups::sync_group, r),
        RequestKind::Heartbeat(r) => serve!(groups::heartbeat, r),
        RequestKind::LeaveGroup(r) => serve!(groups::leave_group, r),
        RequestKind::OffsetCommit(r) => serve!(groups::offset_commit, r),
        RequestKind::OffsetFetch(r) => serve!(groups::offset_fetch, r),
        RequestKind::DescribeGroups(r) => serve!(groups::describe_groups, r),
        RequestKind::ListGroups(r) => serve!(groups::list_groups, r),
        RequestKind::DeleteGroups(r) => serve!(groups::delete_groups, r),
        RequestKind::InitProducerId(r) => serve!(producers::init_producer_id, r),
        RequestKind::FindCoordinator(r) => serve!(cluster::find_coordinator, r),
        RequestKind::DescribeCluster(r) => serve!(cluster::describe_cluster, r),
        RequestKind::ShareGroupHeartbeat(r) => serve!(share::share_group_heartbeat, r),
        RequestKind::ShareGroupDescribe(r) => serve!(share::share_group_describe, r),
        RequestKind::ShareFetch(r) => serve!(share::share_fetch, r),
        RequestKind::ShareAcknowledge(r) => serve!(share::share_acknowledge, r),
        RequestKind::DescribeAcls(r) => serve!(acls::describe_acls, r),
        RequestKind::CreateAcls(r) => serve!(acls::create_acls, r),
        RequestKind::DeleteAcls(r) => serve!(acls::delete_acls, r),
        // Produce is answered by the connection (it must be queued in order), and so are
        // SaslHandshake and SaslAuthenticate (they change its principal); an API in
        // SUPPORTED without a handler here would be a bug, answered like an unknown one.
        _ => Err(KafkaError::UnsupportedApi {
            key: key as i16,
            version: header.request_api_version,
        }),
    }
}

/// A broker in a temporary directory with topic `t` (one partition), and a context for
/// handlers to run against it (the directory must outlive the broker).
#[cfg(test)]
pub(crate) async fn test_context() -> (tempfile::TempDir, Arc<Broker>, Context) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::open(sluice_broker::BrokerConfig::new(dir.path())).expect("broker");
    broker
        .create_topic("t", 1, &std::collections::BTreeMap::new())
        .await
        .expect("topic");
    let ctx = Context::new(
        Arc::clone(&broker),
        Arc::new(KafkaConfig::default()),
        Arc::default(),
        "127.0.0.1:9092".parse().expect("addr"),
        "127.0.0.1:40000".parse().expect("addr"),
    );
    (dir, broker, ctx)
}

#[cfg(test)]
mod tests {
    //! Every served version of every API answers, on its success and its error paths: an
    //! answer holding a field its version lacks fails to encode, which would close the
    //! client's connection.

    use kafka_protocol::messages as m;

    use super::*;

    /// A request for `key` naming topic `t`, partition 0 and group `g` where it names any
    /// (`populated`), or the codec's default (empty names: the error paths).
    fn request(key: ApiKey, populated: bool) -> RequestKind {
        let topic = || m::TopicName(StrBytes::from_static_str("t"));
        let group = || m::GroupId(StrBytes::from_static_str("g"));
        if !populated {
            return match key {
                ApiKey::Produce => RequestKind::Produce(m::ProduceRequest::default()),
                ApiKey::Fetch => RequestKind::Fetch(m::FetchRequest::default()),
                ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
                ApiKey::Metadata => RequestKind::Metadata(Default::default()),
                ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
                ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
                ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
                ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
                ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
                ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
                ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
                ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
                ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
                ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
                ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
                ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
                ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
                ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
                ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
                ApiKey::IncrementalAlterConfigs => {
                    RequestKind::IncrementalAlterConfigs(Default::default())
                }
                ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
                ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
                ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
                ApiKey::ShareGroupHeartbeat => RequestKind::ShareGroupHeartbeat(Default::default()),
                ApiKey::ShareGroupDescribe => RequestKind::ShareGroupDescribe(Default::default()),
                ApiKey::ShareFetch => RequestKind::ShareFetch(Default::default()),
                ApiKey::ShareAcknowledge => RequestKind::ShareAcknowledge(Default::default()),
                ApiKey::DescribeAcls => RequestKind::DescribeAcls(Default::default()),
                ApiKey::CreateAcls => RequestKind::CreateAcls(Default::default()),
                ApiKey::DeleteAcls => RequestKind::DeleteAcls(Default::default()),
                other => panic!("no test request for {other:?}"),
            };
        }
        match key {
            ApiKey::Metadata => {
                RequestKind::Metadata(m::MetadataRequest::default().with_topics(Some(vec![
                    m::metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
                    m::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(m::TopicName(StrBytes::from_static_str("bad/name")))),
                ])))
            }
            ApiKey::Fetch => RequestKind::Fetch(
                m::FetchRequest::default()
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![
                        m::fetch_request::FetchTopic::default()
                            .with_topic(topic())
                            .with_partitions(vec![
                                m::fetch_request::FetchPartition::default()
                                    .with_partition_max_bytes(1 << 20),
                                m::fetch_request::FetchPartition::default().with_partition(7),
                            ]),
                    ]),
            ),
            ApiKey::ListOffsets => {
                RequestKind::ListOffsets(m::ListOffsetsRequest::default().with_topics(vec![
                    m::list_offsets_request::ListOffsetsTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            m::list_offsets_request::ListOffsetsPartition::default()
                                .with_timestamp(-2),
                            m::list_offsets_request::ListOffsetsPartition::default()
                                .with_timestamp(0),
                        ]),
                ]))
            }
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(
                m::OffsetFetchRequest::default()
                    .with_group_id(group())
                    .with_topics(Some(vec![
                        m::offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic())
                            .with_partition_indexes(vec![0]),
                    ])),
            ),
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(
                m::OffsetCommitRequest::default()
                    .with_group_id(group())
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![
                        m::offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(topic())
                            .with_partitions(vec![
                                m::offset_commit_request::OffsetCommitRequestPartition::default(),
                            ]),
                    ]),
            ),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(
                m::DescribeGroupsRequest::default().with_groups(vec![group()]),
            ),
            ApiKey::FindCoordinator => RequestKind::FindCoordinator(
                m::FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_static_str("g"))
                    .with_coordinator_keys(vec![StrBytes::from_static_str("g")]),
            ),
            ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(
                m::DescribeConfigsRequest::default().with_resources(vec![
                    m::describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("t")),
                    m::describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("missing")),
                ]),
            ),
            ApiKey::IncrementalAlterConfigs => {
                use m::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
                let config = |name: &'static str, operation: i8, value: Option<&'static str>| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_config_operation(operation)
                        .with_value(value.map(StrBytes::from_static_str))
                };
                let resource = |kind: i8, name: &'static str, configs| {
                    AlterConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(StrBytes::from_static_str(name))
                        .with_configs(configs)
                };
                RequestKind::IncrementalAlterConfigs(
                    m::IncrementalAlterConfigsRequest::default().with_resources(vec![
                        resource(
                            2,
                            "t",
                            vec![
                                config("retention.ms", 0, Some("600000")),
                                config("segment.ms", 1, None),
                            ],
                        ),
                        resource(2, "t", vec![config("segment.bytes", 0, Some("12"))]),
                        resource(2, "t", vec![config("retention.ms", 2, Some("1"))]),
                        resource(2, "missing", vec![config("retention.ms", 0, Some("1"))]),
                        resource(4, "0", vec![config("log.retention.ms", 0, Some("1"))]),
                    ]),
                )
            }
            ApiKey::AlterConfigs => {
                use m::alter_configs_request::{AlterConfigsResource, AlterableConfig};
                let resource = |kind: i8, name: &'static str, value: &'static str| {
                    AlterConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(StrBytes::from_static_str(name))
                        .with_configs(vec![
                            AlterableConfig::default()
                                .with_name(StrBytes::from_static_str("retention.ms"))
                                .with_value(Some(StrBytes::from_static_str(value))),
                        ])
                };
                RequestKind::AlterConfigs(m::AlterConfigsRequest::default().with_resources(vec![
                    resource(2, "t", "600000"),
                    resource(2, "t", "-5"),
                    resource(2, "missing", "1"),
                    resource(4, "0", "1"),
                ]))
            }
            ApiKey::CreateAcls => {
                RequestKind::CreateAcls(m::CreateAclsRequest::default().with_creations(vec![
                    m::create_acls_request::AclCreation::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("t"))
                        .with_resource_pattern_type(3)
                        .with_principal(StrBytes::from_static_str("User:alice"))
                        .with_host(StrBytes::from_static_str("*"))
                        .with_operation(3)
                        .with_permission_type(3),
                ]))
            }
            ApiKey::DescribeAcls => RequestKind::DescribeAcls(
                m::DescribeAclsRequest::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ),
            ApiKey::DeleteAcls => {
                RequestKind::DeleteAcls(m::DeleteAclsRequest::default().with_filters(vec![
                    m::delete_acls_request::DeleteAclsFilter::default()
                        .with_resource_type_filter(2)
                        .with_resource_name_filter(Some(StrBytes::from_static_str("t")))
                        .with_pattern_type_filter(2)
                        .with_operation(1)
                        .with_permission_type(1),
                ]))
            }
            ApiKey::CreateTopics => {
                RequestKind::CreateTopics(m::CreateTopicsRequest::default().with_topics(vec![
                    m::create_topics_request::CreatableTopic::default()
                        .with_name(topic())
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]))
            }
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(
                m::LeaveGroupRequest::default()
                    .with_group_id(group())
                    .with_member_id(StrBytes::from_static_str("nobody"))
                    .with_members(vec![
                        m::leave_group_request::MemberIdentity::default()
                            .with_member_id(StrBytes::from_static_str("nobody")),
                    ]),
            ),
            ApiKey::ShareGroupHeartbeat => RequestKind::ShareGroupHeartbeat(
                m::ShareGroupHeartbeatRequest::default()
                    .with_group_id(group())
                    .with_member_id(StrBytes::from_static_str("m-1"))
                    .with_subscribed_topic_names(Some(vec![topic()])),
            ),
            ApiKey::ShareGroupDescribe => RequestKind::ShareGroupDescribe(
                m::ShareGroupDescribeRequest::default()
                    .with_group_ids(vec![group(), m::GroupId(StrBytes::from_static_str("none"))]),
            ),
            ApiKey::ShareFetch => RequestKind::ShareFetch(
                m::ShareFetchRequest::default()
                    .with_group_id(Some(group()))
                    .with_member_id(Some(StrBytes::from_static_str("m-1")))
                    .with_topics(vec![
                        m::share_fetch_request::FetchTopic::default()
                            .with_topic_id(topic_ids::topic_id("t"))
                            .with_partitions(vec![
                                m::share_fetch_request::FetchPartition::default(),
                            ]),
                        m::share_fetch_request::FetchTopic::default().with_partitions(vec![
                            m::share_fetch_request::FetchPartition::default(),
                        ]),
                    ]),
            ),
            ApiKey::ShareAcknowledge => RequestKind::ShareAcknowledge(
                m::ShareAcknowledgeRequest::default()
                    .with_group_id(Some(group()))
                    .with_member_id(Some(StrBytes::from_static_str("m-1")))
                    .with_share_session_epoch(1)
                    .with_topics(vec![
                        m::share_acknowledge_request::AcknowledgeTopic::default()
                            .with_topic_id(topic_ids::topic_id("t"))
                            .with_partitions(vec![
                                m::share_acknowledge_request::AcknowledgePartition::default()
                                    .with_acknowledgement_batches(vec![
                                    m::share_acknowledge_request::AcknowledgementBatch::default()
                                        .with_acknowledge_types(vec![1]),
                                ]),
                            ]),
                    ]),
            ),
            other => request(other, false),
        }
    }

    #[tokio::test]
    async fn every_served_version_answers_success_and_error_paths() {
        let (_dir, broker, ctx) = test_context().await;
        // The connection answers the SASL APIs itself (they change its principal).
        let handled = SUPPORTED
            .iter()
            .filter(|(key, _, _)| !matches!(key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate));
        for &(key, min, max) in handled {
            for version in min..=max {
                for populated in [false, true] {
                    let header = RequestHeader::default()
                        .with_request_api_key(key as i16)
                        .with_request_api_version(version)
                        .with_correlation_id(7);
                    let answered = match request(key, populated) {
                        RequestKind::Produce(produce) => {
                            let mut produce = produce.with_acks(1);
                            if populated {
                                produce.topic_data = vec![
                                    m::produce_request::TopicProduceData::default()
                                        .with_name(m::TopicName(StrBytes::from_static_str(
                                            "missing",
                                        )))
                                        .with_partition_data(vec![
                                            m::produce_request::PartitionProduceData::default(),
                                        ]),
                                ];
                            }
                            produce::submit(&ctx, header, produce)
                                .answer(&ctx)
                                .await
                                .map(|frame| frame.expect("acks=1 is answered"))
                        }
                        body => handle(&ctx, Request { key, header, body })
                            .await
                            .map(|frame| frame.to_bytes()),
                    };
                    let frame = answered.unwrap_or_else(|e| {
                        panic!("{key:?} v{version} (populated: {populated}): {e}")
                    });
                    assert!(frame.len() > 8, "{key:?} v{version}: a frame");
                }
            }
        }
        broker.shutdown().await.expect("shutdown");
    }
}
