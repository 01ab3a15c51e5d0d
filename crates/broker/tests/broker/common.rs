//! Helpers shared by the broker's integration tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_broker::{Broker, BrokerConfig, Fetched, NewRecord};
use tempfile::TempDir;

/// A broker on a fresh temporary directory.
pub(crate) struct TestBroker {
    pub(crate) dir: TempDir,
    pub(crate) broker: Arc<Broker>,
}

impl TestBroker {
    pub(crate) fn new() -> TestBroker {
        TestBroker::with(|_| {})
    }

    pub(crate) fn with(adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(dir.path());
        adjust(&mut config);
        let broker = Broker::open(config).expect("open broker");
        TestBroker { dir, broker }
    }

    /// Drops the broker without shutting it down and opens a new one on the same directory.
    pub(crate) fn restart(self) -> TestBroker {
        self.restart_with(|_| {})
    }

    /// [`TestBroker::restart`] with the default config changed by `adjust`.
    pub(crate) fn restart_with(self, adjust: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
        let TestBroker { dir, broker } = self;
        drop(broker);
        let mut config = config(dir.path());
        adjust(&mut config);
        let broker = Broker::open(config).expect("reopen broker");
        TestBroker { dir, broker }
    }
}

/// The default broker config on `dir`.
pub(crate) fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig::new(dir)
}

/// A config override map from pairs.
pub(crate) fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Keyless records with the given values.
pub(crate) fn values(values: &[&str]) -> Vec<NewRecord> {
    values
        .iter()
        .map(|v| NewRecord::new(v.as_bytes().to_vec()))
        .collect()
}

/// `(offset, key, value)` of every fetched record, as UTF-8.
pub(crate) fn decoded(fetched: &Fetched) -> Vec<(u64, Option<String>, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    fetched
        .records()
        .map(|r| {
            let r = r.expect("valid record");
            (
                r.offset,
                r.key.as_deref().map(text),
                text(r.value.as_deref().unwrap_or_default()),
            )
        })
        .collect()
}

/// Everything from `offset` to the high watermark, without waiting.
pub(crate) async fn fetch_all(
    broker: &Broker,
    topic: &str,
    partition: u32,
    offset: u64,
) -> Vec<(u64, Option<String>, String)> {
    let mut out = Vec::new();
    let mut next = offset;
    loop {
        let fetched = broker
            .fetch(topic, partition, next, 0, Duration::ZERO)
            .await
            .expect("fetch");
        let records = decoded(&fetched);
        if records.is_empty() {
            return out;
        }
        next = fetched.next_offset();
        out.extend(records);
    }
}
