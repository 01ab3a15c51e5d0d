//! Errors of the broker.

use std::io;
use std::path::PathBuf;

use sluice_storage::{BatchError, StorageError};

/// Everything a broker operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No topic of that name exists.
    #[error("topic {topic:?} does not exist")]
    TopicNotFound {
        /// The topic asked for.
        topic: String,
    },
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition}: it has partitions 0..{partitions}")]
    PartitionNotFound {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// A topic of that name already exists.
    #[error("topic {topic:?} already exists")]
    TopicExists {
        /// The topic.
        topic: String,
    },
    /// The name breaks the topic naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The partition count is outside `1..=max`.
    #[error("partition count {requested} is outside the allowed range 1..={max}")]
    InvalidPartitionCount {
        /// The count asked for.
        requested: u32,
        /// The largest count accepted (`max_partitions`).
        max: u32,
    },
    /// A config key is unknown or its value unparsable or out of range.
    #[error("invalid config {key} = {value:?}: {reason}")]
    InvalidConfig {
        /// The config key.
        key: String,
        /// The rejected value.
        value: String,
        /// Why, with the accepted values.
        reason: String,
    },
    /// A produce request carried no records.
    #[error("produce request carries no records")]
    EmptyBatch,
    /// One record is larger than the topic's `max.message.bytes`.
    #[error("record of {size} bytes exceeds max.message.bytes = {limit}")]
    RecordTooLarge {
        /// Key, value and header bytes of the record.
        size: usize,
        /// The topic's `max.message.bytes`.
        limit: usize,
    },
    /// A produce request carried more records than allowed.
    #[error("request of {count} records exceeds max_records_per_request = {limit}")]
    TooManyRecords {
        /// Records in the request.
        count: usize,
        /// The configured `max_records_per_request`.
        limit: usize,
    },
    /// The offset is outside `[log_start_offset, high_watermark]`.
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
    /// The broker is shutting down and takes no new requests.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// Stored data failed its checks (CRC or record structure); it is never served.
    #[error("corrupt data: {source}")]
    Corrupt {
        /// The storage error ([`StorageError::Corrupt`]) or the record decode error.
        #[source]
        source: CorruptSource,
    },
    /// The partition log failed an earlier write or fsync and refuses writes until restart.
    #[error("partition log failed: {0}")]
    LogFailed(#[source] StorageError),
    /// Any other storage failure.
    #[error("storage error: {0}")]
    Storage(#[source] StorageError),
    /// Reading or writing broker metadata failed.
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
    /// A topic metadata file could not be parsed or does not match its directory.
    #[error("invalid topic metadata in {}: {reason}", path.display())]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The parse error, if parsing failed.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// Another broker process holds the data directory.
    #[error("data directory {} is in use by another broker", path.display())]
    DataDirLocked {
        /// The lock file.
        path: PathBuf,
    },
}

/// Where corrupt data was detected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptSource {
    /// The log found a bad batch on disk ([`StorageError::Corrupt`]).
    #[error(transparent)]
    Stored(StorageError),
    /// Fetched data passed its CRC checks but does not decode into records.
    #[error("in records fetched from offset {fetch_offset}: {source}")]
    Record {
        /// The offset the fetch started at.
        fetch_offset: u64,
        /// The decode error.
        #[source]
        source: BatchError,
    },
}

impl BrokerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BrokerError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid_config(key: &str, value: &str, reason: impl Into<String>) -> Self {
        BrokerError::InvalidConfig {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<StorageError> for BrokerError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Corrupt { .. } => BrokerError::Corrupt {
                source: CorruptSource::Stored(err),
            },
            StorageError::Failed { .. } => BrokerError::LogFailed(err),
            StorageError::OffsetOutOfRange {
                requested,
                log_start_offset,
                high_watermark,
            } => BrokerError::OffsetOutOfRange {
                requested,
                log_start_offset,
                high_watermark,
            },
            other => BrokerError::Storage(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_their_broker_variants() {
        let path = PathBuf::from("p");
        let corrupt = StorageError::Corrupt {
            path: path.clone(),
            position: 7,
            reason: "CRC mismatch".into(),
        };
        assert!(matches!(
            BrokerError::from(corrupt),
            BrokerError::Corrupt {
                source: CorruptSource::Stored(StorageError::Corrupt { position: 7, .. })
            }
        ));
        let failed = StorageError::Failed {
            path: path.clone(),
            reason: "disk on fire".into(),
        };
        let failed = BrokerError::from(failed);
        assert!(matches!(
            failed,
            BrokerError::LogFailed(StorageError::Failed { .. })
        ));
        assert!(failed.to_string().contains("disk on fire"));
        let range = StorageError::OffsetOutOfRange {
            requested: 9,
            log_start_offset: 2,
            high_watermark: 5,
        };
        assert!(matches!(
            BrokerError::from(range),
            BrokerError::OffsetOutOfRange {
                requested: 9,
                log_start_offset: 2,
                high_watermark: 5
            }
        ));
        let io = StorageError::Io {
            op: "read",
            path,
            source: io::Error::other("boom"),
        };
        let io = BrokerError::from(io);
        assert!(matches!(io, BrokerError::Storage(StorageError::Io { .. })));
        // The chain keeps the underlying error.
        let source = std::error::Error::source(&io).and_then(std::error::Error::source);
        assert_eq!(source.map(ToString::to_string), Some("boom".to_owned()));
    }
}
