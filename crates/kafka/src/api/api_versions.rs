//! ApiVersions: the APIs and versions this server serves.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader};

use super::{SUPPORTED, respond_in, served};
use crate::KafkaError;

/// Answers ApiVersions with [`SUPPORTED`]. A version newer than served gets
/// UNSUPPORTED_VERSION in version 0 with the list, so the client retries with one it finds
/// there (Kafka's rule, KIP-511).
pub(crate) fn answer(header: &RequestHeader) -> Result<Bytes, KafkaError> {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    let mut response = ApiVersionsResponse::default().with_api_keys(api_keys);
    let newest = served(ApiKey::ApiVersions).map_or(0, |(_, max)| max);
    let version = if header.request_api_version > newest {
        response.error_code = ResponseError::UnsupportedVersion.code();
        0
    } else {
        header.request_api_version
    };
    respond_in(
        ApiKey::ApiVersions,
        header.correlation_id,
        version,
        &response,
    )
}
