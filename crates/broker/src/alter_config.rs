//! Changing a topic's config while it serves: what a change is, and how the broker applies
//! it to `topic.json`, the partition logs and produce.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::broker::join;
use crate::config::{TOPIC_CONFIG_KEYS, unknown_key};
use crate::{Broker, BrokerError, TopicInfo};

/// One change to a topic's config overrides (Kafka's `SET` and `DELETE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Override `key` with `value`.
    Set {
        /// The config key (Kafka's name).
        key: String,
        /// The new value, checked as at creation.
        value: String,
    },
    /// Drop the override of `key`, which then follows the broker's default again.
    Delete {
        /// The config key (Kafka's name).
        key: String,
    },
}

impl ConfigChange {
    fn key(&self) -> &str {
        match self {
            ConfigChange::Set { key, .. } | ConfigChange::Delete { key } => key,
        }
    }
}

/// What to do to a topic's config overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigUpdate {
    /// Apply these changes to the overrides the topic has (Kafka's IncrementalAlterConfigs);
    /// a key may appear once.
    Incremental(Vec<ConfigChange>),
    /// Make these the topic's only overrides, every other key following the broker's
    /// defaults (Kafka's legacy AlterConfigs).
    Replace(BTreeMap<String, String>),
}

impl ConfigUpdate {
    /// The overrides `current` becomes. Fails with [`BrokerError::InvalidConfig`] for a key
    /// changed twice or a deletion of a key no topic config has; the values are checked
    /// afterwards, over the defaults.
    pub(crate) fn apply_to(
        &self,
        current: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BrokerError> {
        let changes = match self {
            ConfigUpdate::Replace(overrides) => return Ok(overrides.clone()),
            ConfigUpdate::Incremental(changes) => changes,
        };
        let mut seen = BTreeSet::new();
        let mut next = current.clone();
        for change in changes {
            let key = change.key();
            if !seen.insert(key) {
                return Err(BrokerError::invalid_config(
                    key,
                    "",
                    "changed more than once in one request",
                ));
            }
            match change {
                ConfigChange::Set { key, value } => {
                    next.insert(key.clone(), value.clone());
                }
                ConfigChange::Delete { key } => {
                    if !TOPIC_CONFIG_KEYS.contains(&key.as_str()) {
                        return Err(unknown_key(key, ""));
                    }
                    next.remove(key);
                }
            }
        }
        Ok(next)
    }
}

impl Broker {
    /// Changes a topic's config overrides while it serves, and returns the topic as
    /// [`Broker::describe_topic`] then would.
    ///
    /// The resulting overrides are checked over the broker's defaults exactly as
    /// [`Broker::create_topic`] checks them (a [`BrokerError::InvalidConfig`] naming the
    /// key, the value and the accepted values), then written to the topic's metadata
    /// atomically, so they survive a restart, and only then applied: `max.message.bytes`
    /// from the next produce request, `flush.policy` from the next append (and `flush.ms`
    /// from the next flush, the background flusher starting or following the change),
    /// `segment.bytes`, `segment.ms`, `index.interval.bytes` and `message.timestamp.type`
    /// from the next append and roll, `retention.ms`, `retention.bytes` and
    /// `share.reclaim.enable` from the next retention pass. Every topic
    /// config key can change this way. Appends in progress finish under the settings they
    /// started with.
    ///
    /// With `validate_only`, only the checks run and nothing changes; the answer shows the
    /// config the change would give. Changes of one topic apply one at a time; a topic
    /// deleted meanwhile is [`BrokerError::TopicNotFound`]. The file work runs on a blocking
    /// thread.
    pub async fn alter_topic_config(
        self: &Arc<Self>,
        topic: &str,
        update: ConfigUpdate,
        validate_only: bool,
    ) -> Result<TopicInfo, BrokerError> {
        self.check_running()?;
        let target = self.topic(topic)?;
        if validate_only {
            // Nothing is written or swapped: no blocking thread, and no wait for a change in
            // progress. The check runs against the overrides in force now.
            let settings = target.plan_config(&self.config, &update)?;
            return Ok(target.info_with(&settings));
        }
        let broker = Arc::clone(self);
        let changed = Arc::clone(&target);
        let settings = join(tokio::task::spawn_blocking(move || {
            changed.alter_config(&broker.dirs, &broker.config, &update)
        }))
        .await??;
        self.background.watch_topic(&target);
        tracing::info!(topic, overrides = ?settings.overrides, "changed topic config");
        Ok(target.info_with(&settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn set(key: &str, value: &str) -> ConfigChange {
        ConfigChange::Set {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn delete(key: &str) -> ConfigChange {
        ConfigChange::Delete {
            key: key.to_owned(),
        }
    }

    #[test]
    fn incremental_changes_set_and_delete_keys() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let update = ConfigUpdate::Incremental(vec![
            set("retention.ms", "5"),
            delete("segment.bytes"),
            delete("flush.ms"),
            set("max.message.bytes", "10"),
        ]);
        let next = update.apply_to(&current).map_err(|e| e.to_string());
        assert_eq!(
            next,
            Ok(map(&[("max.message.bytes", "10"), ("retention.ms", "5")]))
        );
    }

    #[test]
    fn replace_drops_every_other_override() {
        let current = map(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let update = ConfigUpdate::Replace(map(&[("flush.policy", "none")]));
        let next = update.apply_to(&current).map_err(|e| e.to_string());
        assert_eq!(next, Ok(map(&[("flush.policy", "none")])));
    }

    #[test]
    fn a_key_twice_or_an_unknown_deletion_is_refused() {
        let twice =
            ConfigUpdate::Incremental(vec![set("retention.ms", "5"), delete("retention.ms")]);
        let err = twice.apply_to(&BTreeMap::new()).map(drop);
        assert!(
            matches!(&err, Err(BrokerError::InvalidConfig { key, reason, .. })
                if key == "retention.ms" && reason.contains("more than once")),
            "{err:?}"
        );
        let unknown = ConfigUpdate::Incremental(vec![delete("cleanup.policy")]);
        let err = unknown.apply_to(&BTreeMap::new()).map(drop);
        assert!(
            matches!(&err, Err(BrokerError::InvalidConfig { key, reason, .. })
                if key == "cleanup.policy" && reason.contains("known keys are")),
            "{err:?}"
        );
    }
}
