//! The Kafka APIs served: which versions ([`SUPPORTED`], what ApiVersions answers) and the
//! handler of each, one module per API family.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use sluice_broker::Broker;

use crate::frame::{finish_frame, start_frame};
use crate::{KafkaConfig, KafkaError};

mod api_versions;
mod cluster;
mod configs;
mod fetch;
mod list_offsets;
mod metadata;
pub(crate) mod produce;
mod topics;

/// Every API served, with the oldest and newest version: exactly what ApiVersions answers.
/// An API missing here (or a version outside its range) ends the connection, as in Kafka.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
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
}

impl Context {
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

/// A decoded request header and the body still to decode.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) key: ApiKey,
    pub(crate) header: RequestHeader,
    pub(crate) body: Bytes,
}

/// Reads the header of a request frame and checks the API and version are served. An
/// ApiVersions request in a version newer than served is let through: Kafka answers it
/// with UNSUPPORTED_VERSION in version 0 (see [`api_versions`]).
pub(crate) fn parse_header(mut frame: Bytes) -> Result<Incoming, KafkaError> {
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
    // A newer ApiVersions request is read with the newest header we know; only the
    // correlation id matters for the answer.
    let header_version = key.request_header_version(version.min(max));
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| KafkaError::Malformed {
            api: format!("{key:?}"),
            version,
            reason: e.to_string(),
        })?;
    Ok(Incoming {
        key,
        header,
        body: frame,
    })
}

/// Decodes the body of `incoming` as `R`.
pub(crate) fn decode<R: Decodable>(incoming: &mut Incoming) -> Result<R, KafkaError> {
    let version = incoming.header.request_api_version;
    R::decode(&mut incoming.body, version).map_err(|e| KafkaError::Malformed {
        api: format!("{:?}", incoming.key),
        version,
        reason: e.to_string(),
    })
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

/// Answers one request that needs no ordering with others (everything but Produce): decodes
/// it, runs its handler and encodes the response.
pub(crate) async fn handle(ctx: &Context, mut incoming: Incoming) -> Result<Bytes, KafkaError> {
    let header = incoming.header.clone();
    macro_rules! serve {
        ($request:ty, $handler:path) => {{
            let request: $request = decode(&mut incoming)?;
            let response = $handler(ctx, &header, request).await;
            respond(incoming.key, &header, &response)
        }};
    }
    use kafka_protocol::messages as m;
    match incoming.key {
        ApiKey::ApiVersions => api_versions::answer(&header),
        ApiKey::Metadata => serve!(m::MetadataRequest, metadata::metadata),
        ApiKey::Fetch => serve!(m::FetchRequest, fetch::fetch),
        ApiKey::ListOffsets => serve!(m::ListOffsetsRequest, list_offsets::list_offsets),
        ApiKey::CreateTopics => serve!(m::CreateTopicsRequest, topics::create_topics),
        ApiKey::DeleteTopics => serve!(m::DeleteTopicsRequest, topics::delete_topics),
        ApiKey::CreatePartitions => {
            serve!(m::CreatePartitionsRequest, topics::create_partitions)
        }
        ApiKey::DescribeConfigs => serve!(m::DescribeConfigsRequest, configs::describe_configs),
        ApiKey::FindCoordinator => serve!(m::FindCoordinatorRequest, cluster::find_coordinator),
        ApiKey::DescribeCluster => serve!(m::DescribeClusterRequest, cluster::describe_cluster),
        key => Err(KafkaError::UnsupportedApi {
            key: key as i16,
            version: header.request_api_version,
        }),
    }
}
