//! Consumer group timing settings, the limits on what a member may ask for, and when the
//! offsets log is compacted.

use std::time::Duration;

use crate::BrokerError;

/// Consumer group settings of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Shortest session timeout a member may ask for (default 1 s).
    pub min_session_timeout: Duration,
    /// Longest session timeout a member may ask for (default 30 min, Kafka's).
    pub max_session_timeout: Duration,
    /// Session timeout of a member that asks for none (default 45 s, Kafka's).
    pub default_session_timeout: Duration,
    /// Time a member that asks for none gets to release a revoked partition before it is
    /// handed over anyway (default 30 s). Members may ask for any value within the session
    /// timeout limits.
    pub default_rebalance_timeout: Duration,
    /// How often the server asks a member for a sign of life (default 3 s); a member with a
    /// short session timeout is asked three times per session timeout.
    pub heartbeat_interval: Duration,
    /// How long the first rebalance of a client-assigned group that was empty waits for
    /// more members, extended by as much while they keep joining, up to the rebalance
    /// timeout (default 3 s, Kafka's `group.initial.rebalance.delay.ms`; at most
    /// [`GroupConfig::max_session_timeout`]).
    pub initial_rebalance_delay: Duration,
    /// Most members a group may have, of either kind; for client-assigned groups, member
    /// ids handed out and not yet used count too (default 1000, at least 1; Kafka's
    /// `group.max.size`).
    pub max_members: usize,
    /// The offsets log is compacted once its files hold at least this many bytes (default
    /// 16 MiB, at least [`MIN_OFFSETS_COMPACTION_BYTES`]) and at least
    /// [`GroupConfig::offsets_compaction_ratio`] times the live offsets.
    pub offsets_compaction_min_bytes: u64,
    /// The offsets log is compacted once its files hold this many times the bytes of the
    /// live offsets (default 4, at least 2), and at least
    /// [`GroupConfig::offsets_compaction_min_bytes`].
    pub offsets_compaction_ratio: u64,
}

/// The smallest [`GroupConfig::offsets_compaction_min_bytes`].
pub const MIN_OFFSETS_COMPACTION_BYTES: u64 = 4096;
/// The smallest [`GroupConfig::offsets_compaction_ratio`]: after a compaction the files hold
/// about the live offsets, so a ratio of 1 would compact again and again.
pub const MIN_OFFSETS_COMPACTION_RATIO: u64 = 2;

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout: Duration::from_secs(1),
            max_session_timeout: Duration::from_secs(30 * 60),
            default_session_timeout: Duration::from_secs(45),
            default_rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            initial_rebalance_delay: Duration::from_secs(3),
            max_members: 1000,
            offsets_compaction_min_bytes: 16 << 20,
            offsets_compaction_ratio: 4,
        }
    }
}

impl GroupConfig {
    /// Checks the limits are consistent: `0 < min <= default <= max` for the session
    /// timeout, the default rebalance timeout within the limits, a non-zero heartbeat
    /// interval, an initial rebalance delay of at most the longest session timeout, room for
    /// one member, and the compaction settings at least their minimums.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let millis = |d: Duration| d.as_millis().to_string();
        let limits = self.min_session_timeout..=self.max_session_timeout;
        if self.min_session_timeout.is_zero() || limits.is_empty() {
            return Err(BrokerError::invalid_config(
                "groups.min_session_timeout",
                &millis(self.min_session_timeout),
                format!(
                    "must be at least 1 ms and at most groups.max_session_timeout ({} ms)",
                    millis(self.max_session_timeout)
                ),
            ));
        }
        let range = format!(
            "must be within {}..={} ms",
            millis(self.min_session_timeout),
            millis(self.max_session_timeout)
        );
        if !limits.contains(&self.default_session_timeout) {
            return Err(BrokerError::invalid_config(
                "groups.default_session_timeout",
                &millis(self.default_session_timeout),
                range,
            ));
        }
        if !limits.contains(&self.default_rebalance_timeout) {
            return Err(BrokerError::invalid_config(
                "groups.default_rebalance_timeout",
                &millis(self.default_rebalance_timeout),
                range,
            ));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(BrokerError::invalid_config(
                "groups.heartbeat_interval",
                "0",
                "must be at least 1 ms",
            ));
        }
        if self.initial_rebalance_delay > self.max_session_timeout {
            return Err(BrokerError::invalid_config(
                "groups.initial_rebalance_delay",
                &millis(self.initial_rebalance_delay),
                format!(
                    "must be at most groups.max_session_timeout ({} ms)",
                    millis(self.max_session_timeout)
                ),
            ));
        }
        if self.max_members == 0 {
            return Err(BrokerError::invalid_config(
                "groups.max_members",
                "0",
                "must be at least 1",
            ));
        }
        if self.offsets_compaction_min_bytes < MIN_OFFSETS_COMPACTION_BYTES {
            return Err(BrokerError::invalid_config(
                "groups.offsets_compaction_min_bytes",
                &self.offsets_compaction_min_bytes.to_string(),
                format!("must be at least {MIN_OFFSETS_COMPACTION_BYTES}"),
            ));
        }
        if self.offsets_compaction_ratio < MIN_OFFSETS_COMPACTION_RATIO {
            return Err(BrokerError::invalid_config(
                "groups.offsets_compaction_ratio",
                &self.offsets_compaction_ratio.to_string(),
                format!("must be at least {MIN_OFFSETS_COMPACTION_RATIO}"),
            ));
        }
        Ok(())
    }

    /// The session timeout for a member asking for `requested`.
    pub(crate) fn session_timeout(
        &self,
        group: &str,
        requested: Option<Duration>,
    ) -> Result<Duration, BrokerError> {
        self.within_limits(group, "session", requested, self.default_session_timeout)
    }

    /// The rebalance timeout for a member asking for `requested`.
    pub(crate) fn rebalance_timeout(
        &self,
        group: &str,
        requested: Option<Duration>,
    ) -> Result<Duration, BrokerError> {
        self.within_limits(
            group,
            "rebalance",
            requested,
            self.default_rebalance_timeout,
        )
    }

    /// How often a member with this session timeout is asked for a sign of life.
    pub(crate) fn heartbeat_interval(&self, session_timeout: Duration) -> Duration {
        self.heartbeat_interval.min(session_timeout / 3)
    }

    fn within_limits(
        &self,
        group: &str,
        which: &str,
        requested: Option<Duration>,
        default: Duration,
    ) -> Result<Duration, BrokerError> {
        let Some(requested) = requested else {
            return Ok(default);
        };
        if (self.min_session_timeout..=self.max_session_timeout).contains(&requested) {
            return Ok(requested);
        }
        Err(BrokerError::InvalidJoin {
            group: group.to_owned(),
            reason: format!(
                "{which} timeout of {} ms is outside the allowed range {}..={} ms",
                requested.as_millis(),
                self.min_session_timeout.as_millis(),
                self.max_session_timeout.as_millis()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_requests_are_bounded() {
        let config = GroupConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.initial_rebalance_delay, Duration::from_secs(3));
        assert_eq!(config.max_members, 1000);
        assert_eq!(
            config.session_timeout("g", None).ok(),
            Some(Duration::from_secs(45))
        );
        assert_eq!(
            config
                .session_timeout("g", Some(Duration::from_millis(1500)))
                .ok(),
            Some(Duration::from_millis(1500))
        );
        let err = config.session_timeout("g", Some(Duration::from_millis(999)));
        assert!(
            matches!(&err, Err(BrokerError::InvalidJoin { reason, .. })
                if reason.contains("999 ms") && reason.contains("1000..=1800000")),
            "{err:?}"
        );
        assert!(
            config
                .rebalance_timeout("g", Some(Duration::from_secs(3600)))
                .is_err()
        );
        assert_eq!(
            config.heartbeat_interval(Duration::from_millis(1500)),
            Duration::from_millis(500)
        );
        assert_eq!(
            config.heartbeat_interval(Duration::from_secs(45)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn inconsistent_limits_are_rejected() {
        let mut config = GroupConfig {
            min_session_timeout: Duration::from_secs(60),
            ..GroupConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(BrokerError::InvalidConfig { ref key, .. }) if key == "groups.default_session_timeout"
        ));
        config.min_session_timeout = Duration::ZERO;
        assert!(matches!(
            config.validate(),
            Err(BrokerError::InvalidConfig { ref key, .. }) if key == "groups.min_session_timeout"
        ));
        config = GroupConfig {
            heartbeat_interval: Duration::ZERO,
            ..GroupConfig::default()
        };
        assert!(config.validate().is_err());
        config = GroupConfig {
            initial_rebalance_delay: Duration::from_secs(31 * 60),
            ..GroupConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(BrokerError::InvalidConfig { ref key, ref reason, .. })
                if key == "groups.initial_rebalance_delay" && reason.contains("1800000")
        ));
        config = GroupConfig {
            max_members: 0,
            ..GroupConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(BrokerError::InvalidConfig { ref key, .. }) if key == "groups.max_members"
        ));
        config = GroupConfig {
            offsets_compaction_min_bytes: 4095,
            ..GroupConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(BrokerError::InvalidConfig { ref key, ref value, ref reason })
                if key == "groups.offsets_compaction_min_bytes" && value == "4095" && reason.contains("4096")
        ));
        config = GroupConfig {
            offsets_compaction_ratio: 1,
            ..GroupConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(BrokerError::InvalidConfig { ref key, .. }) if key == "groups.offsets_compaction_ratio"
        ));
    }
}
