//! Byte-rate quotas per user (`security/quotas.json`), enforced as Kafka does: a request
//! that takes a user past its rate is served, and its answer is held back for as long as
//! brings the user's rate back under the quota (`throttle_time_ms`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::file::StateFile;
use super::principal::Principal;
use crate::BrokerError;

/// The entity name of the quota that applies to users without one of their own.
pub const DEFAULT_QUOTA_USER: &str = "<default>";
/// Longest throttle handed out for one request.
pub const MAX_THROTTLE: Duration = Duration::from_secs(30);
/// How much traffic above the rate a user may send at once before throttling starts: the
/// rate times this window (Kafka measures rates over windows of about this length).
const BURST_WINDOW: Duration = Duration::from_secs(1);

/// Which traffic a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QuotaKind {
    /// Bytes produced per second (Kafka's `producer_byte_rate`).
    #[serde(rename = "producer_byte_rate")]
    Produce,
    /// Bytes fetched per second (Kafka's `consumer_byte_rate`).
    #[serde(rename = "consumer_byte_rate")]
    Fetch,
}

impl QuotaKind {
    /// Kafka's name of the quota key.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
        }
    }
}

impl fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QuotaKind {
    type Err = BrokerError;

    fn from_str(text: &str) -> Result<QuotaKind, BrokerError> {
        match text {
            "producer_byte_rate" | "produce" => Ok(QuotaKind::Produce),
            "consumer_byte_rate" | "fetch" => Ok(QuotaKind::Fetch),
            _ => Err(BrokerError::invalid_request(
                "quota",
                format!("{text:?} is neither producer_byte_rate nor consumer_byte_rate"),
            )),
        }
    }
}

/// What `quotas.json` holds: per user (or [`DEFAULT_QUOTA_USER`]), bytes per second.
#[derive(Debug, Default, Serialize, Deserialize)]
struct QuotasFile {
    #[serde(default)]
    version: u32,
    users: BTreeMap<String, BTreeMap<QuotaKind, u64>>,
}

/// The quotas of a data directory and each user's recent traffic.
#[derive(Debug)]
pub(crate) struct Quotas {
    file: StateFile,
    limits: RwLock<BTreeMap<String, BTreeMap<QuotaKind, u64>>>,
    write: Mutex<()>,
    /// Per user and kind, when its traffic so far would have been sent at exactly its
    /// rate (the generic cell rate algorithm's theoretical arrival time).
    meters: Mutex<HashMap<(Principal, QuotaKind), Instant>>,
}

impl Quotas {
    pub(crate) fn open(data_dir: &Path) -> Result<Quotas, BrokerError> {
        let file = StateFile::new(data_dir, "quotas.json");
        let state: QuotasFile = file.load()?;
        Ok(Quotas {
            file,
            limits: RwLock::new(state.users),
            write: Mutex::new(()),
            meters: Mutex::default(),
        })
    }

    /// Sets (or with `None` removes) the quota of `kind` for `user`.
    pub(crate) fn set(
        &self,
        user: &str,
        kind: QuotaKind,
        rate: Option<u64>,
    ) -> Result<(), BrokerError> {
        if user != DEFAULT_QUOTA_USER {
            super::users::validate_user_name(user)?;
        }
        if rate == Some(0) {
            return Err(BrokerError::invalid_request(
                kind.as_str(),
                "must be at least 1 byte per second",
            ));
        }
        let _writing = self.write.lock();
        let mut limits = self.limits.read().clone();
        match rate {
            Some(rate) => {
                limits
                    .entry(user.to_owned())
                    .or_default()
                    .insert(kind, rate);
            }
            None => {
                if let Some(of_user) = limits.get_mut(user) {
                    of_user.remove(&kind);
                    if of_user.is_empty() {
                        limits.remove(user);
                    }
                }
            }
        }
        self.file.store(&QuotasFile {
            version: 1,
            users: limits.clone(),
        })?;
        *self.limits.write() = limits;
        Ok(())
    }

    /// Every quota: per user (or [`DEFAULT_QUOTA_USER`]), bytes per second per kind.
    pub(crate) fn list(&self) -> BTreeMap<String, BTreeMap<QuotaKind, u64>> {
        self.limits.read().clone()
    }

    fn rate(&self, principal: &Principal, kind: QuotaKind) -> Option<u64> {
        let limits = self.limits.read();
        limits
            .get(principal.name())
            .or_else(|| limits.get(DEFAULT_QUOTA_USER))
            .and_then(|l| l.get(&kind).copied())
    }

    /// Counts `bytes` of `kind` traffic by `principal`; gives how long its answer must be
    /// held back (zero while within the quota, at most [`MAX_THROTTLE`]).
    pub(crate) fn record(&self, principal: &Principal, kind: QuotaKind, bytes: u64) -> Duration {
        let Some(rate) = self.rate(principal, kind) else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let mut meters = self.meters.lock();
        let tat = meters.entry((principal.clone(), kind)).or_insert(now);
        let start = (*tat).max(now);
        *tat = start + cost.min(MAX_THROTTLE + BURST_WINDOW);
        tat.saturating_duration_since(now)
            .saturating_sub(BURST_WINDOW)
            .min(MAX_THROTTLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_past_the_rate_is_throttled_and_the_default_applies_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let quotas = Quotas::open(dir.path()).unwrap();
        let alice = Principal::user("alice");
        assert_eq!(
            quotas.record(&alice, QuotaKind::Produce, 1 << 30),
            Duration::ZERO
        );
        quotas
            .set("alice", QuotaKind::Produce, Some(1_000_000))
            .unwrap();
        assert_eq!(
            quotas.record(&alice, QuotaKind::Produce, 500_000),
            Duration::ZERO,
            "within the burst"
        );
        let throttle = quotas.record(&alice, QuotaKind::Produce, 2_000_000);
        assert!(
            throttle >= Duration::from_millis(1400) && throttle <= Duration::from_millis(1500),
            "{throttle:?}"
        );
        assert_eq!(
            quotas.record(&alice, QuotaKind::Fetch, 1 << 30),
            Duration::ZERO
        );

        quotas
            .set(DEFAULT_QUOTA_USER, QuotaKind::Fetch, Some(1000))
            .unwrap();
        let bob = Principal::user("bob");
        assert!(quotas.record(&bob, QuotaKind::Fetch, 1 << 30) == MAX_THROTTLE);
        let reopened = Quotas::open(dir.path()).unwrap();
        assert_eq!(reopened.list().len(), 2);
        reopened.set("alice", QuotaKind::Produce, None).unwrap();
        assert_eq!(reopened.list().len(), 1);
        assert!(reopened.set("alice", QuotaKind::Produce, Some(0)).is_err());
    }
}
