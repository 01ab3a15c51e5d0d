//! Sluice's gRPC front end.
//!
//! The `sluice.v1.Admin`, `sluice.v1.Log`, `sluice.v1.Groups` and `sluice.v1.ShareGroups`
//! services map each call onto the [`sluice_broker::Broker`] and each broker error onto a
//! gRPC status ([`status`]); the broker holds every behaviour (produce, fetch, live follow,
//! group sessions, share groups, limits, draining), so nothing here streams or keeps state
//! of its own beyond turning broker events into messages. The host (`sluice-server`) adds
//! health, reflection and the listener; [`routes`] is what it serves.
#![warn(missing_docs)]

mod admin;
mod auth;
mod batch_route;
mod convert;
mod groups;
mod log_service;
mod observe;
mod produce;
mod quota;
mod request_limit;
mod security;
mod share;
mod status;
mod subscribe;

use std::sync::Arc;

use sluice_broker::Broker;
use sluice_proto::v1::admin_server::AdminServer;
use sluice_proto::v1::groups_server::GroupsServer;
use sluice_proto::v1::log_server::LogServer;
use sluice_proto::v1::security_server::SecurityServer;
use sluice_proto::v1::share_groups_server::ShareGroupsServer;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;

use crate::admin::AdminService;
use crate::batch_route::BatchRoute;
use crate::groups::GroupsService;
use crate::log_service::LogService;
use crate::request_limit::RequestLimit;
use crate::security::SecurityService;
use crate::share::ShareGroupsService;

pub use auth::{Authenticate, Authenticated, basic_credentials};
pub use observe::{Accept, Connection, ObserveCalls, Observed, PeerInfo};
pub use status::{shutting_down, to_status};

/// Conversions between `sluice.v1.Security` messages and the broker's users, ACLs and
/// quotas, for tools that edit a data directory's security state with no server running.
pub mod security_messages {
    pub use crate::security::{
        binding_from_proto, binding_to_proto, filter_from_proto, quotas_to_proto, users_to_proto,
    };
}

/// The checks the services run on request messages before they reach the broker, callable
/// without a server (the fuzz targets drive them with arbitrary messages).
pub mod validation {
    pub use crate::convert::position;
    pub use crate::groups::wire::join_request;
    pub use crate::status::require_topic;
}

/// The `sluice.v1` services over `broker`, decoding request messages of up to
/// `max_request_bytes` (larger ones get RESOURCE_EXHAUSTED naming the limit). Responses
/// are bounded by the broker's fetch and subscribe limits, so they are never refused;
/// both directions accept and send gzip.
pub fn routes(broker: &Arc<Broker>, max_request_bytes: usize) -> Routes {
    let admin = AdminServer::new(AdminService::new(Arc::clone(broker)))
        .max_decoding_message_size(max_request_bytes);
    let log = LogServer::new(LogService::new(Arc::clone(broker), max_request_bytes))
        .max_decoding_message_size(max_request_bytes)
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let groups = GroupsServer::new(GroupsService::new(Arc::clone(broker), max_request_bytes))
        .max_decoding_message_size(max_request_bytes)
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let share = ShareGroupsServer::new(ShareGroupsService::new(
        Arc::clone(broker),
        max_request_bytes,
    ))
    .max_decoding_message_size(max_request_bytes)
    .max_encoding_message_size(usize::MAX)
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip);
    let security = SecurityServer::new(SecurityService::new(Arc::clone(broker)))
        .max_decoding_message_size(max_request_bytes);
    Routes::new(RequestLimit::new(admin, max_request_bytes))
        .add_service(RequestLimit::new(
            BatchRoute::new(log, Arc::clone(broker), max_request_bytes),
            max_request_bytes,
        ))
        .add_service(RequestLimit::new(groups, max_request_bytes))
        .add_service(RequestLimit::new(share, max_request_bytes))
        .add_service(RequestLimit::new(security, max_request_bytes))
}
