//! The Sluice partition log.
//!
//! A partition is an ordered, append-only sequence of Kafka v2 record batches
//! ([`batch`]) kept in segment files with sparse offset and time indexes
//! (docs/storage-format.md describes the bytes). [`Log`] ties them together: it assigns dense offsets, serves
//! reads of whole batches as [`bytes::Bytes`], keeps the durability promise of
//! its [`FlushPolicy`], heals a torn tail after a crash and deletes old
//! segments by retention or below an offset the owner no longer needs.
//!
//! This crate is synchronous and knows nothing of the network: the broker
//! drives it from blocking threads and schedules the periodic work
//! ([`Log::flush`], [`Log::enforce_retention`], [`Log::delete_segments_below`]). All file I/O
//! goes through the [`io`] seam.
//!
//! Features: `fault-injection` (off by default) adds `io::FaultyIo`, the fault-injecting
//! [`io::FileIo`] the crash and I/O error tests use.
#![warn(missing_docs)]

pub mod batch;
mod config;
mod error;
mod index;
pub mod io;
mod log;
mod segment;

pub use config::{FlushPolicy, LogConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, TimestampType};
pub use error::{BatchError, StorageError};
pub use log::{AppendFilter, AppendInfo, Log, ReadResult, RetentionOutcome};

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
