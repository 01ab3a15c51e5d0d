//! Errors of the storage layer.

use std::io;
use std::path::PathBuf;

use crate::batch::Compression;

/// Why a byte sequence is not a valid Kafka v2 record batch.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than the structure being read needs.
    #[error("truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The magic byte is not 2.
    #[error("unsupported magic byte {0} (only record batch v2 is supported)")]
    BadMagic(i8),
    /// The batch length field is impossible.
    #[error("invalid batch length {0}")]
    BadLength(i32),
    /// The stored CRC does not match the bytes.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the batch header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
    /// Unsupported attributes: a codec other than 0-4, or a transactional, control or other
    /// flag.
    #[error(
        "unsupported batch attributes {0:#06x} (only compression codecs 0-4 and the timestamp \
         type may be set: codecs 5-7, transactional and control batches are not supported)"
    )]
    UnsupportedAttributes(i16),
    /// The compressed records of a batch do not decompress.
    #[error("the {codec} compressed records do not decompress: {reason}")]
    Decompress {
        /// The batch's codec.
        codec: Compression,
        /// What the decompressor reported.
        reason: String,
    },
    /// The compressed records of a batch decompress to more bytes than allowed.
    #[error(
        "the {codec} compressed records decompress to more than the limit of {limit} bytes per batch"
    )]
    DecompressedTooLarge {
        /// The batch's codec.
        codec: Compression,
        /// The limit on the decompressed records of one batch.
        limit: usize,
    },
    /// Record count and last offset delta disagree, or the count is out of range.
    #[error("inconsistent record count {count} with last offset delta {last_offset_delta}")]
    BadRecordCount {
        /// Record count from the header.
        count: i32,
        /// Last offset delta from the header.
        last_offset_delta: i32,
    },
    /// A record inside the batch is malformed.
    #[error("malformed record {index}: {reason}")]
    BadRecord {
        /// Index of the record in its batch.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A batch being built would be larger than the format's 32-bit length field allows.
    #[error("record batch would be {size} bytes, over the format's limit of {limit}")]
    TooLarge {
        /// Bytes the batch would have had.
        size: usize,
        /// The largest batch the format can describe.
        limit: usize,
    },
}

/// Errors returned by [`crate::Log`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk fail validation; they are never served.
    #[error("corrupt data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The segment or index file.
        path: PathBuf,
        /// Byte position of the bad batch in that file.
        position: u64,
        /// What failed.
        reason: String,
    },
    /// A batch handed to [`crate::Log::append`] is invalid.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The append is larger than the log accepts.
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge {
        /// Size of the rejected append.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A read asked for an offset outside `[log_start_offset, high_watermark]`.
    #[error(
        "offset {requested} is out of range: valid offsets are {log_start_offset}..={high_watermark}"
    )]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// First offset still in the log.
        log_start_offset: u64,
        /// First offset not yet readable.
        high_watermark: u64,
    },
    /// An earlier write or fsync failed; the log refuses further appends until reopened.
    #[error("log {} is in a failed state and refuses writes until restart: {reason}", path.display())]
    Failed {
        /// The partition directory.
        path: PathBuf,
        /// The first failure.
        reason: String,
    },
    /// The log was closed; it accepts no more appends.
    #[error("log {} is closed", path.display())]
    Closed {
        /// The partition directory.
        path: PathBuf,
    },
    /// The configuration is invalid.
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
