//! Broker settings and per-topic configuration (Kafka's key names).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use sluice_storage::batch::DEFAULT_MAX_DECOMPRESSED_BYTES;
use sluice_storage::{FlushPolicy, LogConfig, TimestampType};

use crate::security::SecurityConfig;
use crate::{BrokerError, GroupConfig, ProducerConfig, ShareConfig};

/// `retention.ms`: delete sealed segments older than this; `-1` keeps them forever.
pub const RETENTION_MS: &str = "retention.ms";
/// `retention.bytes`: delete the oldest sealed segments while a partition is larger; `-1` = unlimited.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// `segment.bytes`: roll to a new segment at this size.
pub const SEGMENT_BYTES: &str = "segment.bytes";
/// `segment.ms`: roll to a new segment once the active one is this old; `-1` = never.
pub const SEGMENT_MS: &str = "segment.ms";
/// `max.message.bytes`: the largest single record (key, value and headers), and the largest
/// client-encoded batch as stored (compressed, if it is).
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// `message.timestamp.type`: `CreateTime` (the producer's) or `LogAppendTime` (the broker's).
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// `index.interval.bytes`: bytes of log between two sparse index entries.
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
/// `flush.policy`: `fsync`, `interval` or `none`.
pub const FLUSH_POLICY: &str = "flush.policy";
/// `flush.ms`: the flush interval under `flush.policy = interval`.
pub const FLUSH_MS: &str = "flush.ms";
/// `share.reclaim.enable`: `true` deletes a partition's whole segments once every share
/// group reading it is past them (its start offset); `false` (the default) keeps them for
/// retention alone.
pub const SHARE_RECLAIM_ENABLE: &str = "share.reclaim.enable";

/// Every topic config key, in the order [`TopicConfig::to_map`] would sort them.
pub const TOPIC_CONFIG_KEYS: [&str; 10] = [
    FLUSH_MS,
    FLUSH_POLICY,
    INDEX_INTERVAL_BYTES,
    MAX_MESSAGE_BYTES,
    MESSAGE_TIMESTAMP_TYPE,
    RETENTION_BYTES,
    RETENTION_MS,
    SEGMENT_BYTES,
    SEGMENT_MS,
    SHARE_RECLAIM_ENABLE,
];

/// Smallest `segment.bytes`.
const MIN_SEGMENT_BYTES: u64 = 1024;
/// Largest value of an `int`-typed Kafka config, and so of `segment.bytes`,
/// `max.message.bytes` and `index.interval.bytes`.
const MAX_INT_CONFIG: u64 = i32::MAX as u64;
/// Largest value of a `long`-typed Kafka config.
const MAX_LONG_CONFIG: u64 = i64::MAX as u64;
const WEEK_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// How a topic's appends are made durable (`flush.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// `fsync`: acknowledge an append only once it is on stable storage.
    Fsync,
    /// `interval`: fsync every `flush.ms`.
    Interval,
    /// `none`: leave write-back to the operating system.
    None,
}

impl FlushMode {
    fn parse(value: &str) -> Option<FlushMode> {
        match value {
            "fsync" => Some(FlushMode::Fsync),
            "interval" => Some(FlushMode::Interval),
            "none" => Some(FlushMode::None),
            _ => None,
        }
    }
}

impl fmt::Display for FlushMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlushMode::Fsync => "fsync",
            FlushMode::Interval => "interval",
            FlushMode::None => "none",
        })
    }
}

/// The effective configuration of a topic.
///
/// [`Default`] gives Sluice's defaults (Kafka's, except that appends are
/// fsynced before they are acknowledged). An operator's defaults and a topic's
/// overrides are both applied with [`TopicConfig::set`], so they share one
/// parser and one set of ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// `retention.ms`; `None` keeps data forever.
    pub retention_ms: Option<u64>,
    /// `retention.bytes` per partition; `None` = unlimited.
    pub retention_bytes: Option<u64>,
    /// `segment.bytes`, `1024..=2147483647`.
    pub segment_bytes: u64,
    /// `segment.ms`; `None` = roll by size only.
    pub segment_ms: Option<u64>,
    /// `max.message.bytes`: the largest single record, and the largest client-encoded batch
    /// as stored, `1..=2147483647`.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`: which time the records' timestamps are.
    pub message_timestamp_type: TimestampType,
    /// `index.interval.bytes`, `1..=2147483647`.
    pub index_interval_bytes: u32,
    /// `flush.policy`.
    pub flush_policy: FlushMode,
    /// `flush.ms`, used when `flush_policy` is [`FlushMode::Interval`].
    pub flush_ms: u64,
    /// `share.reclaim.enable`: delete whole segments every share group reading the
    /// partition is past (at each retention check). A partition no share group reads keeps
    /// its segments.
    pub share_reclaim: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: Some(WEEK_MS),
            retention_bytes: None,
            segment_bytes: 1 << 30,
            segment_ms: Some(WEEK_MS),
            max_message_bytes: 1 << 20,
            message_timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            flush_policy: FlushMode::Fsync,
            flush_ms: 1000,
            share_reclaim: false,
        }
    }
}

impl TopicConfig {
    /// `defaults` with every entry of `overrides` applied by [`TopicConfig::set`].
    pub fn from_overrides(
        defaults: &TopicConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, BrokerError> {
        let mut config = defaults.clone();
        for (key, value) in overrides {
            config.set(key, value)?;
        }
        Ok(config)
    }

    /// Parses `value` for the Kafka config `key` and stores it.
    ///
    /// Fails with [`BrokerError::InvalidConfig`] naming the key, the value and
    /// the accepted values when the key is unknown or the value unparsable or out
    /// of range. Surrounding whitespace is ignored.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), BrokerError> {
        let text = value.trim();
        match key {
            RETENTION_MS => self.retention_ms = parse_optional(key, text, 0)?,
            RETENTION_BYTES => self.retention_bytes = parse_optional(key, text, 0)?,
            SEGMENT_BYTES => {
                self.segment_bytes = parse_range(key, text, MIN_SEGMENT_BYTES, MAX_INT_CONFIG)?;
            }
            SEGMENT_MS => self.segment_ms = parse_optional(key, text, 1)?,
            MAX_MESSAGE_BYTES => {
                self.max_message_bytes =
                    narrow(key, text, parse_range(key, text, 1, MAX_INT_CONFIG)?)?;
            }
            INDEX_INTERVAL_BYTES => {
                self.index_interval_bytes =
                    narrow(key, text, parse_range(key, text, 1, MAX_INT_CONFIG)?)?;
            }
            FLUSH_POLICY => {
                self.flush_policy = FlushMode::parse(text).ok_or_else(|| {
                    BrokerError::invalid_config(key, value, "expected fsync, interval or none")
                })?;
            }
            FLUSH_MS => self.flush_ms = parse_range(key, text, 1, MAX_LONG_CONFIG)?,
            MESSAGE_TIMESTAMP_TYPE => {
                self.message_timestamp_type = TimestampType::from_name(text).ok_or_else(|| {
                    BrokerError::invalid_config(key, value, "expected CreateTime or LogAppendTime")
                })?;
            }
            SHARE_RECLAIM_ENABLE => self.share_reclaim = parse_bool(key, value, text)?,
            _ => return Err(unknown_key(key, value)),
        }
        Ok(())
    }

    /// Checks every field is in the range [`TopicConfig::set`] accepts, for
    /// configs built field by field.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let mut probe = TopicConfig::default();
        for (key, value) in self.to_map() {
            probe.set(&key, &value)?;
        }
        Ok(())
    }

    /// Every key with its effective value, in Kafka's notation (`-1` for "no limit").
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let optional = |v: Option<u64>| v.map_or_else(|| "-1".to_owned(), |v| v.to_string());
        [
            (RETENTION_MS, optional(self.retention_ms)),
            (RETENTION_BYTES, optional(self.retention_bytes)),
            (SEGMENT_BYTES, self.segment_bytes.to_string()),
            (SEGMENT_MS, optional(self.segment_ms)),
            (MAX_MESSAGE_BYTES, self.max_message_bytes.to_string()),
            (
                MESSAGE_TIMESTAMP_TYPE,
                self.message_timestamp_type.name().to_owned(),
            ),
            (INDEX_INTERVAL_BYTES, self.index_interval_bytes.to_string()),
            (FLUSH_POLICY, self.flush_policy.to_string()),
            (FLUSH_MS, self.flush_ms.to_string()),
            (SHARE_RECLAIM_ENABLE, self.share_reclaim.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The flush interval, when the policy is [`FlushMode::Interval`].
    pub fn flush_interval(&self) -> Option<Duration> {
        (self.flush_policy == FlushMode::Interval).then(|| Duration::from_millis(self.flush_ms))
    }

    /// The storage settings for each partition log of the topic (the broker-wide limits that
    /// also reach the logs are at their defaults).
    pub fn to_log_config(&self) -> LogConfig {
        let flush = match self.flush_policy {
            FlushMode::Fsync => FlushPolicy::Fsync,
            FlushMode::Interval => FlushPolicy::Interval(Duration::from_millis(self.flush_ms)),
            FlushMode::None => FlushPolicy::None,
        };
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            index_interval_bytes: self.index_interval_bytes,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            flush,
            timestamp_type: self.message_timestamp_type,
            ..LogConfig::default()
        }
    }
}

/// The error for a key no topic config has.
pub(crate) fn unknown_key(key: &str, value: &str) -> BrokerError {
    BrokerError::invalid_config(
        key,
        value,
        format!(
            "unknown key; known keys are {}",
            TOPIC_CONFIG_KEYS.join(", ")
        ),
    )
}

/// Parses an integer in `min..=max`.
fn parse_range(key: &str, value: &str, min: u64, max: u64) -> Result<u64, BrokerError> {
    let out_of_range =
        || BrokerError::invalid_config(key, value, format!("expected an integer in {min}..={max}"));
    let parsed: i128 = value.parse().map_err(|_| out_of_range())?;
    u64::try_from(parsed)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(out_of_range)
}

/// Parses `-1` (no limit, `None`) or an integer in `min..=i64::MAX`.
fn parse_optional(key: &str, value: &str, min: u64) -> Result<Option<u64>, BrokerError> {
    if value == "-1" {
        return Ok(None);
    }
    parse_range(key, value, min, MAX_LONG_CONFIG)
        .map(Some)
        .map_err(|_| {
            BrokerError::invalid_config(
                key,
                value,
                format!("expected -1 (no limit) or an integer in {min}..={MAX_LONG_CONFIG}"),
            )
        })
}

/// Parses `true` or `false`, in any case (as Kafka does).
fn parse_bool(key: &str, value: &str, text: &str) -> Result<bool, BrokerError> {
    if text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(BrokerError::invalid_config(
            key,
            value,
            "expected true or false",
        ))
    }
}

/// Converts a range-checked value into its field type.
fn narrow<T: TryFrom<u64>>(key: &str, value: &str, parsed: u64) -> Result<T, BrokerError> {
    T::try_from(parsed)
        .map_err(|_| BrokerError::invalid_config(key, value, "value does not fit this platform"))
}

/// Broker-wide limits on requests and topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most partitions per topic (default 1024).
    pub max_partitions: u32,
    /// Longest topic name (default 249, Kafka's).
    pub max_topic_name_len: usize,
    /// Cap on the `max_bytes` of one fetch (default 64 MiB).
    pub max_fetch_bytes: usize,
    /// Cap on how long a fetch waits for data (default 30 s).
    pub max_wait: Duration,
    /// Most records in one produce request (default 100 000).
    pub max_records_per_request: usize,
    /// Cap on (and default of) the stored bytes of one subscription or group session
    /// delivery (default 1 MiB).
    pub max_subscribe_bytes: usize,
    /// Most subscriptions and group sessions open at once, over every front end (default
    /// 10 000).
    pub max_subscriptions: usize,
    /// Bytes of encoded record batches that may be queued for appending or being appended at
    /// once, across every partition (default 256 MiB, at least 1). Past it produce requests
    /// wait for room, in submit order; one larger than the whole budget is refused.
    pub max_in_flight_bytes: usize,
    /// How long a produce request may wait for room in `max_in_flight_bytes` before it is
    /// refused as overloaded (default 30 s; zero refuses at once when there is no room).
    pub produce_wait: Duration,
    /// The most bytes the records of one compressed batch may decompress to (default 64
    /// MiB, at least 1): client-encoded batches that decompress to more are refused at
    /// produce, and decoding a stored one past it fails with
    /// [`BrokerError::DecompressedTooLarge`].
    pub max_decompressed_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_partitions: 1024,
            max_topic_name_len: 249,
            max_fetch_bytes: 64 << 20,
            max_wait: Duration::from_secs(30),
            max_records_per_request: 100_000,
            max_subscribe_bytes: 1 << 20,
            max_subscriptions: 10_000,
            max_in_flight_bytes: 256 << 20,
            produce_wait: Duration::from_secs(30),
            max_decompressed_batch_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Settings of a [`crate::Broker`].
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where topics and their partition logs live.
    pub data_dir: PathBuf,
    /// Effective config for every key a topic does not override.
    pub topic_defaults: TopicConfig,
    /// Request and topic limits.
    pub limits: Limits,
    /// How often retention is enforced (default 5 min, Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// Consumer group session, rebalance and heartbeat timing.
    pub groups: GroupConfig,
    /// How long and how many idempotent producers each partition remembers.
    pub producers: ProducerConfig,
    /// Share group defaults and limits.
    pub share: ShareConfig,
    /// Authentication, ACLs and their settings.
    pub security: SecurityConfig,
}

impl BrokerConfig {
    /// Default settings for a broker storing its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> BrokerConfig {
        BrokerConfig {
            data_dir: data_dir.into(),
            topic_defaults: TopicConfig::default(),
            limits: Limits::default(),
            retention_check_interval: Duration::from_secs(300),
            groups: GroupConfig::default(),
            producers: ProducerConfig::default(),
            share: ShareConfig::default(),
            security: SecurityConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn rejection(key: &str, value: &str) -> String {
        match TopicConfig::default().set(key, value) {
            Err(BrokerError::InvalidConfig {
                key: k,
                value: v,
                reason,
            }) => {
                assert_eq!((k.as_str(), v.as_str()), (key, value));
                reason
            }
            other => panic!("{key} = {value:?} gave {other:?}"),
        }
    }

    #[test]
    fn overrides_apply_onto_defaults() {
        let defaults = TopicConfig {
            segment_bytes: 4096,
            ..TopicConfig::default()
        };
        let config = TopicConfig::from_overrides(
            &defaults,
            &overrides(&[
                ("retention.ms", "-1"),
                ("retention.bytes", "1000000"),
                ("segment.ms", " 60000 "),
                ("max.message.bytes", "2048"),
                ("index.interval.bytes", "128"),
                ("flush.policy", "interval"),
                ("flush.ms", "250"),
                ("message.timestamp.type", "LogAppendTime"),
                ("share.reclaim.enable", "TRUE"),
            ]),
        )
        .map_err(|e| e.to_string());
        assert_eq!(
            config,
            Ok(TopicConfig {
                retention_ms: None,
                retention_bytes: Some(1_000_000),
                segment_bytes: 4096,
                segment_ms: Some(60_000),
                max_message_bytes: 2048,
                message_timestamp_type: TimestampType::LogAppendTime,
                index_interval_bytes: 128,
                flush_policy: FlushMode::Interval,
                flush_ms: 250,
                share_reclaim: true,
            })
        );
    }

    #[test]
    fn map_round_trips_every_key() {
        let config = TopicConfig {
            retention_ms: None,
            retention_bytes: Some(5),
            segment_bytes: 2048,
            segment_ms: None,
            max_message_bytes: 77,
            message_timestamp_type: TimestampType::LogAppendTime,
            index_interval_bytes: 9,
            flush_policy: FlushMode::None,
            flush_ms: 3,
            share_reclaim: true,
        };
        let map = config.to_map();
        assert_eq!(
            map.keys().map(String::as_str).collect::<Vec<_>>(),
            TOPIC_CONFIG_KEYS.to_vec()
        );
        assert_eq!(map["retention.ms"], "-1");
        assert_eq!(map["flush.policy"], "none");
        assert_eq!(map["message.timestamp.type"], "LogAppendTime");
        assert_eq!(map["share.reclaim.enable"], "true");
        assert_eq!(
            TopicConfig::default().to_map()["share.reclaim.enable"],
            "false"
        );
        assert_eq!(
            TopicConfig::default().to_map()["message.timestamp.type"],
            "CreateTime"
        );
        let back = TopicConfig::from_overrides(&TopicConfig::default(), &map);
        assert!(matches!(back, Ok(ref c) if *c == config), "{back:?}");
        assert!(config.validate().is_ok());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(rejection("cleanup.policy", "compact").contains("known keys are flush.ms"));
        assert!(rejection("segment.bytes", "1023").contains("1024..=2147483647"));
        assert!(rejection("segment.bytes", "2147483648").contains("1024..=2147483647"));
        assert!(rejection("segment.bytes", "-1").contains("1024..=2147483647"));
        assert!(rejection("segment.bytes", "1e6").contains("integer"));
        assert!(rejection("retention.ms", "-2").contains("-1 (no limit)"));
        assert!(rejection("retention.ms", "forever").contains("-1 (no limit)"));
        assert!(
            rejection("retention.bytes", "9223372036854775808").contains("9223372036854775807")
        );
        assert!(rejection("segment.ms", "0").contains("1..=9223372036854775807"));
        assert!(rejection("max.message.bytes", "0").contains("1..=2147483647"));
        assert!(rejection("index.interval.bytes", "").contains("integer"));
        assert!(rejection("flush.policy", "always").contains("fsync, interval or none"));
        assert!(rejection("flush.ms", "0").contains("1..="));
        assert!(
            rejection("message.timestamp.type", "logappendtime")
                .contains("CreateTime or LogAppendTime")
        );
        assert!(rejection("share.reclaim.enable", "yes").contains("true or false"));
        assert!(rejection("share.reclaim.enable", "1").contains("true or false"));
        let err = TopicConfig::default().set("segment.bytes", "12");
        assert!(
            err.as_ref().is_err_and(|e| e.to_string()
                == "invalid config segment.bytes = \"12\": expected an integer in 1024..=2147483647"),
            "{err:?}"
        );
    }

    #[test]
    fn validate_catches_fields_set_directly() {
        let config = TopicConfig {
            segment_bytes: 10,
            ..TopicConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(BrokerError::InvalidConfig { ref key, .. }) if key == "segment.bytes"
        ));
        assert!(TopicConfig::default().validate().is_ok());
    }

    #[test]
    fn log_config_follows_topic_config() {
        let mut config = TopicConfig::default();
        assert_eq!(config.to_log_config().flush, FlushPolicy::Fsync);
        assert_eq!(config.flush_interval(), None);
        config.flush_policy = FlushMode::Interval;
        config.flush_ms = 20;
        config.retention_bytes = Some(99);
        config.segment_bytes = 5000;
        let log = config.to_log_config();
        assert_eq!(log.flush, FlushPolicy::Interval(Duration::from_millis(20)));
        assert_eq!(config.flush_interval(), Some(Duration::from_millis(20)));
        assert_eq!(
            (log.retention_bytes, log.retention_ms, log.segment_bytes),
            (Some(99), Some(WEEK_MS), 5000)
        );
        assert_eq!(log.segment_ms, Some(WEEK_MS));
        assert_eq!(log.index_interval_bytes, 4096);
        assert_eq!(log.timestamp_type, TimestampType::CreateTime);
        assert!(log.validate().is_ok());
        config.message_timestamp_type = TimestampType::LogAppendTime;
        assert_eq!(
            config.to_log_config().timestamp_type,
            TimestampType::LogAppendTime
        );
    }
}
