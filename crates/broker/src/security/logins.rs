//! What logins leave behind: failures per address (each answered more slowly than the
//! last) and recently verified passwords (so a client that sends credentials with every
//! call pays for PBKDF2 once).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

use super::scram::random_bytes;

/// Addresses remembered at most; past it the oldest memories are dropped.
const MAX_REMEMBERED: usize = 65_536;
/// A failure older than this no longer slows the next login down.
const FAILURE_MEMORY: Duration = Duration::from_secs(300);
/// The delay doubles per failure up to 2^this times the base.
const MAX_DOUBLINGS: u32 = 6;

/// Recent failed logins per client address.
#[derive(Debug)]
pub(crate) struct FailedLogins {
    base: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailedLogins {
    pub(crate) fn new(base: Duration) -> FailedLogins {
        FailedLogins {
            base,
            failures: Mutex::default(),
        }
    }

    /// Counts a failure from `host`; gives how long to hold its answer back.
    pub(crate) fn record(&self, host: IpAddr) -> Duration {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_REMEMBERED {
            failures.retain(|_, (_, at)| now.duration_since(*at) < FAILURE_MEMORY);
            if failures.len() >= MAX_REMEMBERED {
                failures.clear();
            }
        }
        let entry = failures.entry(host).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        *entry = (entry.0 + 1, now);
        self.base * 2u32.pow((entry.0 - 1).min(MAX_DOUBLINGS))
    }

    /// Forgets the failures of `host` after it logged in.
    pub(crate) fn forget(&self, host: IpAddr) {
        self.failures.lock().remove(&host);
    }
}

/// Passwords verified since the users last changed, kept as keyed hashes (a key made at
/// start-up and never written anywhere), in memory only.
#[derive(Debug)]
pub(crate) struct VerifiedLogins {
    key: Vec<u8>,
    verified: Mutex<Verified>,
}

/// The remembered logins, and how many times they were forgotten.
#[derive(Debug, Default)]
struct Verified {
    /// Bumped by every [`VerifiedLogins::clear`]: a login checked against the users of an
    /// older generation is not remembered (its credential may have changed meanwhile).
    generation: u64,
    tags: HashSet<[u8; 32]>,
}

impl VerifiedLogins {
    pub(crate) fn new() -> VerifiedLogins {
        VerifiedLogins {
            key: random_bytes(32),
            verified: Mutex::default(),
        }
    }

    fn tag(&self, user: &str, password: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub(crate) fn contains(&self, user: &str, password: &str) -> bool {
        let tag = self.tag(user, password);
        self.verified.lock().tags.contains(&tag)
    }

    /// The current generation: read it before looking up the credential a login is
    /// checked against, and hand it to [`VerifiedLogins::insert`].
    pub(crate) fn generation(&self) -> u64 {
        self.verified.lock().generation
    }

    /// Remembers a verified login, unless the users changed since `generation`.
    pub(crate) fn insert(&self, user: &str, password: &str, generation: u64) {
        let tag = self.tag(user, password);
        let mut verified = self.verified.lock();
        if verified.generation != generation {
            return;
        }
        if verified.tags.len() >= MAX_REMEMBERED {
            verified.tags.clear();
        }
        verified.tags.insert(tag);
    }

    pub(crate) fn clear(&self) {
        let mut verified = self.verified.lock();
        verified.generation += 1;
        verified.tags.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn each_failure_doubles_the_delay_up_to_a_cap_and_a_success_resets_it() {
        let failed = FailedLogins::new(Duration::from_millis(100));
        let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let delays: Vec<_> = (0..9).map(|_| failed.record(host).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 6400, 6400]);
        failed.forget(host);
        assert_eq!(failed.record(host), Duration::from_millis(100));
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(failed.record(other), Duration::from_millis(100));
    }

    #[test]
    fn verified_logins_match_the_same_password_only_until_cleared() {
        let verified = VerifiedLogins::new();
        verified.insert("alice", "pw", verified.generation());
        assert!(verified.contains("alice", "pw"));
        assert!(!verified.contains("alice", "pw2"));
        assert!(!verified.contains("alicep", "w"));
        verified.clear();
        assert!(!verified.contains("alice", "pw"));
        // A login checked before the users changed is not remembered after.
        let before = verified.generation();
        verified.clear();
        verified.insert("alice", "old", before);
        assert!(!verified.contains("alice", "old"));
    }
}
