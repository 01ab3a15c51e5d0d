//! Sluice's gRPC contract, generated from `proto/sluice/v1/*.proto`.
//!
//! [`v1`] holds the messages of package `sluice.v1`, a client per service
//! (`admin_client::AdminClient`, `log_client::LogClient`) and a server trait per
//! service (`admin_server::Admin`, `log_server::Log`). `bytes` fields are
//! [`bytes::Bytes`], so payloads are shared rather than copied.
#![warn(missing_docs)]

pub mod codec;

/// Package `sluice.v1`: messages, clients and servers.
pub mod v1 {
    tonic::include_proto!("sluice.v1");
}

/// The encoded `FileDescriptorSet` of package `sluice.v1` (with source comments), for
/// gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sluice_descriptor.bin"));
