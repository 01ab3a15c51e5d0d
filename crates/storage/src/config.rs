//! Per-log settings.

use std::time::Duration;

use crate::StorageError;
use crate::batch::DEFAULT_MAX_DECOMPRESSED_BYTES;

/// When appended data is forced to stable storage.
///
/// | policy | an acknowledged record survives a process crash | survives a power loss |
/// |---|---|---|
/// | `Fsync` | yes | yes: `append` returns only after `fdatasync` |
/// | `Interval(d)` | yes (the page cache outlives the process) | all but the last `d` |
/// | `None` | yes | only what the OS happened to write back |
///
/// Under `Fsync`, readers see a record only once it is durable, so no consumer
/// ever acts on a record that a power loss could take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// `fdatasync` before acknowledging; concurrent appends share one sync (group commit).
    Fsync,
    /// `fdatasync` every interval, driven by whoever owns the log (see [`crate::Log::flush`]).
    Interval(Duration),
    /// Leave write-back to the operating system.
    None,
}

/// Which time a log's batches carry as their records' timestamps (Kafka's
/// `message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's create time, as each batch carries it.
    #[default]
    CreateTime,
    /// The time the log appended the batch: the log marks each batch as log-append time
    /// (attribute bit 3) and writes the append time as its max timestamp, which readers then
    /// report for every record of the batch.
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's name for it: `CreateTime` or `LogAppendTime`.
    pub fn name(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }

    /// The type Kafka names `name` ([`TimestampType::name`]), if any.
    pub fn from_name(name: &str) -> Option<TimestampType> {
        [TimestampType::CreateTime, TimestampType::LogAppendTime]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

/// Settings of one partition log. Names follow Kafka's topic configs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll to a new segment once the active one would grow past this (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll once the active segment's first batch is this old, in ms (`segment.ms`); `None` = never.
    pub segment_ms: Option<u64>,
    /// Bytes of log between two sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Delete the oldest sealed segments while the log is larger than this (`retention.bytes`).
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this, in ms (`retention.ms`).
    pub retention_ms: Option<u64>,
    /// When appends are made durable.
    pub flush: FlushPolicy,
    /// The largest single call to [`crate::Log::append`], in bytes.
    pub max_append_bytes: usize,
    /// The timestamps appended batches carry (`message.timestamp.type`).
    pub timestamp_type: TimestampType,
    /// The most bytes the records of one compressed batch may decompress to when the log
    /// decodes them ([`crate::Log::offset_for_timestamp`]).
    pub max_decompressed_batch_bytes: usize,
}

/// Smallest accepted `segment_bytes`.
pub const MIN_SEGMENT_BYTES: u64 = 1024;
/// Largest accepted `segment_bytes`: positions in the index are 32-bit.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: None,
            index_interval_bytes: 4096,
            retention_bytes: None,
            retention_ms: None,
            flush: FlushPolicy::Fsync,
            max_append_bytes: 64 << 20,
            timestamp_type: TimestampType::CreateTime,
            max_decompressed_batch_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

impl LogConfig {
    /// Checks every value is in its allowed range.
    pub fn validate(&self) -> Result<(), StorageError> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(StorageError::InvalidConfig(format!(
                "segment.bytes = {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(StorageError::InvalidConfig(
                "index.interval.bytes must be at least 1".into(),
            ));
        }
        if self.segment_ms == Some(0) {
            return Err(StorageError::InvalidConfig(
                "segment.ms must be at least 1".into(),
            ));
        }
        if self.max_append_bytes == 0 {
            return Err(StorageError::InvalidConfig(
                "max_append_bytes must be at least 1".into(),
            ));
        }
        if self.max_decompressed_batch_bytes == 0 {
            return Err(StorageError::InvalidConfig(
                "max_decompressed_batch_bytes must be at least 1".into(),
            ));
        }
        if let FlushPolicy::Interval(d) = self.flush
            && d.is_zero()
        {
            return Err(StorageError::InvalidConfig(
                "flush.ms must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Entries an index of a full segment can need: one per interval, plus the tail.
    pub(crate) fn max_index_entries(&self) -> u64 {
        self.segment_bytes / u64::from(self.index_interval_bytes) + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_types_go_by_kafkas_names() {
        for t in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
            assert_eq!(TimestampType::from_name(t.name()), Some(t));
        }
        assert_eq!(TimestampType::from_name("createtime"), None);
        assert_eq!(TimestampType::default(), TimestampType::CreateTime);
    }

    #[test]
    fn a_zero_decompression_cap_is_refused() {
        let config = LogConfig {
            max_decompressed_batch_bytes: 0,
            ..LogConfig::default()
        };
        let err = config.validate().map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("max_decompressed_batch_bytes")),
            "{err:?}"
        );
        assert!(LogConfig::default().validate().is_ok());
    }
}
