//! The Kafka APIs served: which versions ([`SUPPORTED`], what ApiVersions answers) and the
//! handler of each, one module per API family.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
pub use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, RequestKind, ResponseHeader};
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
pub(crate) async fn handle(ctx: &Context, request: Request) -> Result<Bytes, KafkaError> {
    let Request { key, header, body } = request;
    macro_rules! serve {
        ($handler:path, $request:expr) => {{
            let response = $handler(ctx, &header, $request).await;
            respond(key, &header, &response)
        }};
    }
    match body {
        RequestKind::ApiVersions(_) => api_versions::answer(&header),
        RequestKind::Metadata(r) => serve!(metadata::metadata, r),
        RequestKind::Fetch(r) => serve!(fetch::fetch, r),
        RequestKind::ListOffsets(r) => serve!(list_offsets::list_offsets, r),
        RequestKind::CreateTopics(r) => serve!(topics::create_topics, r),
        RequestKind::DeleteTopics(r) => serve!(topics::delete_topics, r),
        RequestKind::CreatePartitions(r) => serve!(topics::create_partitions, r),
        RequestKind::DescribeConfigs(r) => serve!(configs::describe_configs, r),
        RequestKind::FindCoordinator(r) => serve!(cluster::find_coordinator, r),
        RequestKind::DescribeCluster(r) => serve!(cluster::describe_cluster, r),
        // Produce is answered by the connection (it must be queued in order); an API in
        // SUPPORTED without a handler here would be a bug, answered like an unknown one.
        _ => Err(KafkaError::UnsupportedApi {
            key: key as i16,
            version: header.request_api_version,
        }),
    }
}
