//! Share group settings: each group's own ([`ShareGroupSettings`]) and the broker-wide
//! defaults and limits ([`ShareConfig`]).

use std::time::Duration;

use crate::groups::{MIN_OFFSETS_COMPACTION_BYTES, MIN_OFFSETS_COMPACTION_RATIO};
use crate::{BrokerError, validate_topic_name};

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
    /// Checks the limits are at least their minimums and the defaults within them.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let at_least = |key: &str, value: u64, min: u64| {
            if value < min {
                Err(BrokerError::invalid_config(
                    key,
                    &value.to_string(),
                    format!("must be at least {min}"),
                ))
            } else {
                Ok(())
            }
        };
        at_least("share.max_prefetch", self.max_prefetch.into(), 1)?;
        at_least("share.max_members", self.max_members as u64, 1)?;
        at_least(
            "share.max_in_flight_per_partition",
            self.max_in_flight_per_partition.into(),
            1,
        )?;
        at_least(
            "share.max_record_lock_duration_ms",
            millis(self.max_record_lock_duration),
            1,
        )?;
        at_least(
            "share.max_delivery_attempt_limit",
            self.max_delivery_attempt_limit.into(),
            1,
        )?;
        at_least(
            "share.state_compaction_min_bytes",
            self.state_compaction_min_bytes,
            MIN_OFFSETS_COMPACTION_BYTES,
        )?;
        at_least(
            "share.state_compaction_ratio",
            self.state_compaction_ratio,
            MIN_OFFSETS_COMPACTION_RATIO,
        )?;
        self.check_settings(&self.defaults).map_err(|e| match e {
            BrokerError::InvalidConfig { key, value, reason } => BrokerError::InvalidConfig {
                key: key.replacen("share.", "share.default.", 1),
                value,
                reason,
            },
            other => other,
        })
    }

    /// Checks a group's settings against the limits; the error names the setting (Kafka's
    /// key) and the accepted range.
    pub fn check_settings(&self, settings: &ShareGroupSettings) -> Result<(), BrokerError> {
        let lock = millis(settings.record_lock_duration);
        let max_lock = millis(self.max_record_lock_duration);
        if !(1..=max_lock).contains(&lock) {
            return Err(BrokerError::invalid_config(
                "share.record.lock.duration.ms",
                &lock.to_string(),
                format!("must be within 1..={max_lock} (share.max_record_lock_duration_ms)"),
            ));
        }
        let limit = settings.delivery_attempt_limit;
        if !(1..=self.max_delivery_attempt_limit).contains(&limit) {
            return Err(BrokerError::invalid_config(
                "share.delivery.attempt.limit",
                &limit.to_string(),
                format!(
                    "must be within 1..={} (share.max_delivery_attempt_limit)",
                    self.max_delivery_attempt_limit
                ),
            ));
        }
        let backoff = millis(settings.redelivery_backoff);
        let max_backoff = millis(self.max_redelivery_backoff);
        if backoff > max_backoff {
            return Err(BrokerError::invalid_config(
                "share.redelivery.backoff.ms",
                &backoff.to_string(),
                format!("must be within 0..={max_backoff} (share.max_redelivery_backoff_ms)"),
            ));
        }
        if let Some(topic) = &settings.dead_letter_topic {
            validate_topic_name(topic, usize::from(u16::MAX)).map_err(|e| {
                BrokerError::invalid_config("share.dead.letter.topic", topic, e.to_string())
            })?;
        }
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected_key(config: &ShareConfig) -> String {
        match config.validate() {
            Err(BrokerError::InvalidConfig { key, .. }) => key,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_every_limit_is_checked() {
        assert!(ShareConfig::default().validate().is_ok());
        let with = |f: fn(&mut ShareConfig)| {
            let mut config = ShareConfig::default();
            f(&mut config);
            rejected_key(&config)
        };
        assert_eq!(with(|c| c.max_prefetch = 0), "share.max_prefetch");
        assert_eq!(with(|c| c.max_members = 0), "share.max_members");
        assert_eq!(
            with(|c| c.max_in_flight_per_partition = 0),
            "share.max_in_flight_per_partition"
        );
        assert_eq!(
            with(|c| c.state_compaction_ratio = 1),
            "share.state_compaction_ratio"
        );
        assert_eq!(
            with(|c| c.defaults.delivery_attempt_limit = 0),
            "share.default.delivery.attempt.limit"
        );
        assert_eq!(
            with(|c| c.defaults.record_lock_duration = Duration::from_secs(7200)),
            "share.default.record.lock.duration.ms"
        );
    }

    #[test]
    fn group_settings_are_checked_against_the_limits() {
        let config = ShareConfig::default();
        let check = |settings: ShareGroupSettings| config.check_settings(&settings);
        let err = check(ShareGroupSettings {
            delivery_attempt_limit: 11,
            ..ShareGroupSettings::default()
        });
        assert!(
            matches!(&err, Err(BrokerError::InvalidConfig { key, reason, .. })
                if key == "share.delivery.attempt.limit" && reason.contains("1..=10")),
            "{err:?}"
        );
        assert!(
            check(ShareGroupSettings {
                redelivery_backoff: Duration::from_secs(3601),
                ..ShareGroupSettings::default()
            })
            .is_err()
        );
        assert!(
            check(ShareGroupSettings {
                dead_letter_topic: Some("bad name".into()),
                ..ShareGroupSettings::default()
            })
            .is_err()
        );
        assert!(
            check(ShareGroupSettings {
                dead_letter_topic: Some("jobs.dlq".into()),
                redelivery_backoff: Duration::from_secs(1),
                ..ShareGroupSettings::default()
            })
            .is_ok()
        );
    }
}
