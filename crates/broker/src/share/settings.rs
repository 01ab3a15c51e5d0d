//! Share group settings: each group's own ([`ShareGroupSettings`]) and the broker-wide
//! defaults and limits ([`ShareConfig`]).

use std::time::Duration;

use crate::BrokerError;

/// Where a new share group starts reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareOffsetReset {
    /// The log start offset: everything still stored.
    Earliest,
    /// The high watermark when the group first reads the partition (Kafka's default).
    #[default]
    Latest,
}

/// Settings of one share group, persisted with the group; a new group takes them from its
/// first join or from [`ShareConfig::defaults`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupSettings {
    /// How long a member holds an acquired record before it is released again
    /// (`share.record.lock.duration.ms`, default 30 s).
    pub record_lock_duration: Duration,
    /// Deliveries after which a record is not delivered again but archived, and
    /// dead-lettered if the group has a dead-letter topic (`share.delivery.attempt.limit`,
    /// default 5, at least 1).
    pub delivery_attempt_limit: u32,
    /// Where rejected records and records past the delivery limit are appended
    /// (`share.dead.letter.topic`, default none).
    pub dead_letter_topic: Option<String>,
    /// How long a released record waits before it is offered again
    /// (`share.redelivery.backoff.ms`, default 0).
    pub redelivery_backoff: Duration,
    /// Where the group starts in a partition it has no state for.
    pub auto_offset_reset: ShareOffsetReset,
}

impl Default for ShareGroupSettings {
    fn default() -> Self {
        ShareGroupSettings {
            record_lock_duration: Duration::from_secs(30),
            delivery_attempt_limit: 5,
            dead_letter_topic: None,
            redelivery_backoff: Duration::ZERO,
            auto_offset_reset: ShareOffsetReset::Latest,
        }
    }
}

/// Broker-wide share group settings: defaults for new groups and the limits of requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfig {
    /// Settings of a group created without its own.
    pub defaults: ShareGroupSettings,
    /// The most unacknowledged records one member may hold (default 1000, at least 1).
    pub max_prefetch: u32,
    /// The most members of one share group (default 1000, at least 1).
    pub max_members: usize,
    /// The most records of one share-partition in flight at once: acquired, or released and
    /// waiting for redelivery, or acknowledged above the start offset (default 2000, at
    /// least 1; Kafka's `group.share.partition.max.record.locks`). Bounds the memory of
    /// each share-partition.
    pub max_in_flight_per_partition: u32,
    /// The longest lock duration a group may set (default 1 h).
    pub max_record_lock_duration: Duration,
    /// The highest delivery attempt limit a group may set (default 10, Kafka's
    /// `group.share.max.delivery.count`).
    pub max_delivery_attempt_limit: u32,
    /// The longest redelivery backoff a group may set (default 1 h).
    pub max_redelivery_backoff: Duration,
    /// The share state log is compacted once its files hold at least this many bytes
    /// (default 16 MiB, at least [`crate::MIN_OFFSETS_COMPACTION_BYTES`]).
    pub state_compaction_min_bytes: u64,
    /// The share state log is compacted once its files hold this many times the bytes of
    /// the live state (default 4, at least [`crate::MIN_OFFSETS_COMPACTION_RATIO`]).
    pub state_compaction_ratio: u64,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            defaults: ShareGroupSettings::default(),
            max_prefetch: 1000,
            max_members: 1000,
            max_in_flight_per_partition: 2000,
            max_record_lock_duration: Duration::from_secs(3600),
            max_delivery_attempt_limit: 10,
            max_redelivery_backoff: Duration::from_secs(3600),
            state_compaction_min_bytes: 16 << 20,
            state_compaction_ratio: 4,
        }
    }
}

impl ShareConfig {
    /// Checks the limits and that the defaults are within them.
    pub fn validate(&self) -> Result<(), BrokerError> {
        unimplemented!()
    }
}
