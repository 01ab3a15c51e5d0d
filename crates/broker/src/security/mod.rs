//! Authentication, authorization and quotas, the same for every front end.
//!
//! - [`users`]: users and their SCRAM credentials, the only form a password is kept in;
//!   PLAIN logins are checked against the SCRAM-SHA-256 credential.
//! - [`scram`]: the server's side of SCRAM-SHA-256 and SCRAM-SHA-512.
//! - [`acl`]: Kafka's ACL model; deny wins, no allowing binding denies.
//! - [`quota`]: produce and fetch byte rates per user, answered with a throttle time.
//! - [`Grant`]: what an open stream was allowed by, checked again when the ACLs change.
//! - [`QueueAccess`]: what the ACLs ask of each operation on queues and exchanges.
//!
//! Front ends authenticate a connection once ([`Security::login_plain`],
//! [`Security::scram_first`] and [`Security::scram_final`], or a client certificate's
//! principal) and ask [`Security::authorize`] before each operation; every failed login
//! and every denial is logged once on the `sluice::audit` target and counted. Without
//! [`SecurityConfig::auth`] every caller may do everything and logins are not asked for.
//! State lives in `DATA_DIR/security/`, each file replaced atomically on a change.

pub mod acl;
mod file;
mod grant;
mod logins;
mod principal;
mod queue_access;
pub mod quota;
pub mod scram;
pub mod users;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use metrics::counter;

pub use acl::{
    AclBinding, AclFilter, CLUSTER_RESOURCE, Operation, PatternType, Permission, Resource,
    ResourceType, WILDCARD,
};
pub use grant::{Grant, Need};
pub use principal::{ANONYMOUS, Caller, Principal};
pub use queue_access::QueueAccess;
pub use quota::{DEFAULT_QUOTA_USER, QuotaKind};
pub use scram::{ScramError, ScramExchange, ScramMechanism};

use crate::BrokerError;
use crate::metadata::{DataDir, lock_data_dir};
use acl::Acls;
use logins::{FailedLogins, VerifiedLogins};
use quota::Quotas;
use scram::{ClientFirst, Decoy};
use users::Users;

/// The SASL mechanisms a front end may offer, in order of preference.
pub const MECHANISMS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];

/// Security settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Whether every client must authenticate and ACLs are enforced (`--auth`).
    pub auth: bool,
    /// Principals that bypass ACLs (user names, without `User:`).
    pub superusers: Vec<String>,
    /// PBKDF2 iterations of new SCRAM credentials (4096 to 16384; default 4096).
    pub scram_iterations: u32,
    /// How long the answer to a failed login is held back; doubled for each further
    /// failure from the same address (up to 64 times), reset by a success (default 100 ms,
    /// Kafka's `connection.failed.authentication.delay.ms`).
    pub failed_login_delay: Duration,
    /// Most password checks (PBKDF2, milliseconds of CPU each) run at once; further logins
    /// wait their turn, so a flood of logins cannot take every core (default: the cores).
    pub max_password_checks: usize,
}

impl Default for SecurityConfig {
    fn default() -> SecurityConfig {
        SecurityConfig {
            auth: false,
            superusers: Vec::new(),
            scram_iterations: scram::MIN_ITERATIONS,
            failed_login_delay: Duration::from_millis(100),
            max_password_checks: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Users, ACLs and quotas of a broker, and the checks made with them.
#[derive(Debug)]
pub struct Security {
    config: SecurityConfig,
    superusers: HashSet<String>,
    users: Users,
    acls: Acls,
    quotas: Quotas,
    /// Whether any quota is set: traffic is not metered until one is.
    any_quota: AtomicBool,
    /// Bumped by every change of users, ACLs or quotas: open streams check their
    /// [`Grant`] again when it moved.
    generation: AtomicU64,
    failed: FailedLogins,
    verified: VerifiedLogins,
    /// What logins of unknown users are checked against.
    decoy: Decoy,
    /// Turns to run a password check (`max_password_checks`).
    password_checks: tokio::sync::Semaphore,
}

impl Security {
    /// Loads the security state of the data directory `data_dir`.
    pub(crate) fn open(data_dir: &Path, config: SecurityConfig) -> Result<Security, BrokerError> {
        let quotas = Quotas::open(data_dir)?;
        Ok(Security {
            superusers: config.superusers.iter().cloned().collect(),
            users: Users::open(data_dir, config.scram_iterations)?,
            acls: Acls::open(data_dir)?,
            any_quota: AtomicBool::new(!quotas.list().is_empty()),
            generation: AtomicU64::new(0),
            quotas,
            failed: FailedLogins::new(config.failed_login_delay),
            verified: VerifiedLogins::new(),
            decoy: Decoy::new(config.scram_iterations),
            password_checks: tokio::sync::Semaphore::new(config.max_password_checks.max(1)),
            config,
        })
    }

    /// Whether clients must authenticate and ACLs are enforced.
    pub fn auth_required(&self) -> bool {
        self.config.auth
    }

    /// Checks `user`'s `password` (SASL PLAIN, AMQP PLAIN, HTTP basic credentials). A
    /// failure is logged and counted, and answered only after the failed-login delay of
    /// `host`.
    pub async fn login_plain(
        &self,
        host: IpAddr,
        protocol: &'static str,
        user: &str,
        password: &str,
    ) -> Result<Principal, BrokerError> {
        if self.verified.contains(user, password) {
            return Ok(Principal::user(user));
        }
        let generation = self.verified.generation();
        // An unknown user costs the same PBKDF2 as a known one, so timing tells nothing.
        let credential = self.users.credential(user, ScramMechanism::Sha256);
        let known = credential.is_some();
        let credential = credential.unwrap_or_else(|| self.decoy.credential());
        let check = {
            let password = password.to_owned();
            move || credential.verify(ScramMechanism::Sha256, &password) && known
        };
        // PBKDF2 takes milliseconds: off the async threads when there are some, a bounded
        // number at a time.
        let valid = match tokio::runtime::Handle::try_current() {
            Ok(_) => {
                let _turn = self.password_checks.acquire().await;
                tokio::task::spawn_blocking(check).await.unwrap_or(false)
            }
            Err(_) => check(),
        };
        if valid {
            self.failed.forget(host);
            self.verified.insert(user, password, generation);
            tracing::debug!(target: "sluice::audit", %host, protocol, user, mechanism = "PLAIN", "authenticated");
            Ok(Principal::user(user))
        } else {
            Err(self
                .login_failed(host, protocol, "PLAIN", user, ScramError::Credentials)
                .await)
        }
    }

    /// Starts a SCRAM exchange with the client's first message; gives the server-first
    /// message to send back. An unknown user gets an exchange like any other that fails
    /// at the proof, so user names cannot be probed.
    pub async fn scram_first(
        &self,
        host: IpAddr,
        protocol: &'static str,
        mechanism: ScramMechanism,
        client_first: &[u8],
    ) -> Result<(ScramExchange, Vec<u8>), BrokerError> {
        match ClientFirst::parse(client_first) {
            Ok(first) => {
                let credential = self.users.credential(&first.user, mechanism);
                Ok(ScramExchange::start(
                    mechanism,
                    first,
                    credential,
                    &self.decoy,
                ))
            }
            Err(e) => Err(self
                .login_failed(host, protocol, mechanism.name(), "", e)
                .await),
        }
    }

    /// Finishes a SCRAM exchange with the client's final message; gives the principal and
    /// the server-final message.
    pub async fn scram_final(
        &self,
        host: IpAddr,
        protocol: &'static str,
        exchange: ScramExchange,
        client_final: &[u8],
    ) -> Result<(Principal, Vec<u8>), BrokerError> {
        let user = exchange.user().to_owned();
        let mechanism = exchange.mechanism();
        match exchange.finish(client_final) {
            Ok(answer) => {
                self.failed.forget(host);
                tracing::debug!(target: "sluice::audit", %host, protocol, user, mechanism = mechanism.name(), "authenticated");
                Ok((Principal::user(&user), answer))
            }
            Err(e) => Err(self
                .login_failed(host, protocol, mechanism.name(), &user, e)
                .await),
        }
    }

    /// Logs and counts a failed login, waits out the address's delay and gives the error
    /// to answer with.
    async fn login_failed(
        &self,
        host: IpAddr,
        protocol: &'static str,
        mechanism: &str,
        user: &str,
        reason: ScramError,
    ) -> BrokerError {
        tracing::warn!(target: "sluice::audit", %host, protocol, mechanism, user, reason = %reason, "authentication failed");
        counter!("sluice_authentication_failures_total", "protocol" => protocol).increment(1);
        tokio::time::sleep(self.failed.record(host)).await;
        BrokerError::AuthenticationFailed {
            mechanism: mechanism.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Logs and counts a login a front end refused before any credential was checked
    /// (no mechanism in common, a connection without credentials), and waits out the
    /// address's delay.
    pub async fn refuse_login(
        &self,
        host: IpAddr,
        protocol: &'static str,
        mechanism: &str,
        reason: &str,
    ) {
        tracing::warn!(target: "sluice::audit", %host, protocol, mechanism, reason, "authentication failed");
        counter!("sluice_authentication_failures_total", "protocol" => protocol).increment(1);
        tokio::time::sleep(self.failed.record(host)).await;
    }

    /// Whether `caller` may do `operation` on `resource`, without logging a denial (for
    /// filtering lists to what a caller may see).
    pub fn permits(&self, caller: &Caller, operation: Operation, resource: &Resource<'_>) -> bool {
        !self.config.auth
            || caller.is_internal()
            || self.superusers.contains(caller.principal.name())
            || self
                .acls
                .allows(&caller.principal, caller.host, operation, resource)
    }

    /// Fails with [`BrokerError::NotAuthorized`] (logged and counted) unless `caller` may
    /// do `operation` on `resource`.
    pub fn authorize(
        &self,
        caller: &Caller,
        operation: Operation,
        resource: &Resource<'_>,
    ) -> Result<(), BrokerError> {
        if self.permits(caller, operation, resource) {
            return Ok(());
        }
        tracing::warn!(
            target: "sluice::audit",
            principal = %caller.principal,
            host = %caller.host,
            protocol = caller.protocol,
            resource_type = resource.kind.as_str(),
            resource = resource.name,
            operation = operation.as_str(),
            "denied"
        );
        counter!(
            "sluice_authorization_denied_total",
            "protocol" => caller.protocol,
            "resource_type" => resource.kind.as_str(),
            "operation" => operation.as_str()
        )
        .increment(1);
        Err(BrokerError::NotAuthorized {
            principal: caller.principal.to_string(),
            operation,
            resource_type: resource.kind,
            resource: resource.name.to_owned(),
        })
    }

    /// Whether any quota is set (when none is, [`Security::throttle`] never delays, and
    /// callers may skip measuring what they send).
    pub fn quotas_in_force(&self) -> bool {
        self.any_quota.load(Ordering::Relaxed)
    }

    /// Counts `bytes` of `kind` traffic by `caller` against its quota; gives how long the
    /// answer must be held back (zero within the quota).
    pub fn throttle(&self, caller: &Caller, kind: QuotaKind, bytes: u64) -> Duration {
        if !self.quotas_in_force() {
            return Duration::ZERO;
        }
        let name = caller.principal.name().to_owned();
        counter!("sluice_quota_bytes_total", "user" => name.clone(), "quota" => kind.as_str())
            .increment(bytes);
        let throttle = self.quotas.record(&caller.principal, kind, bytes);
        if !throttle.is_zero() {
            counter!("sluice_quota_throttle_ms_total", "user" => name, "quota" => kind.as_str())
                .increment(throttle.as_millis() as u64);
        }
        throttle
    }

    /// Creates user `name` (needs Alter on the cluster).
    pub async fn add_user(
        &self,
        caller: &Caller,
        name: &str,
        password: &str,
    ) -> Result<(), BrokerError> {
        self.authorize(caller, Operation::Alter, &Resource::cluster())?;
        self.blocking(|s| s.users.upsert(name, password, false))
            .await
    }

    /// Sets the password of user `name` (needs Alter on the cluster, or to be that user).
    pub async fn set_password(
        &self,
        caller: &Caller,
        name: &str,
        password: &str,
    ) -> Result<(), BrokerError> {
        if caller.principal.name() != name || caller.principal.is_anonymous() {
            self.authorize(caller, Operation::Alter, &Resource::cluster())?;
        }
        self.blocking(|s| s.users.upsert(name, password, true))
            .await
    }

    /// Deletes user `name` (needs Alter on the cluster).
    pub async fn delete_user(&self, caller: &Caller, name: &str) -> Result<(), BrokerError> {
        self.authorize(caller, Operation::Alter, &Resource::cluster())?;
        self.blocking(|s| s.users.delete(name)).await
    }

    /// The users, sorted, with their mechanisms (needs Describe on the cluster).
    pub fn users(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(String, Vec<ScramMechanism>)>, BrokerError> {
        self.authorize(caller, Operation::Describe, &Resource::cluster())?;
        Ok(self.users.list())
    }

    /// Adds ACL bindings (needs Alter on the cluster).
    pub async fn add_acls(
        &self,
        caller: &Caller,
        bindings: Vec<AclBinding>,
    ) -> Result<(), BrokerError> {
        self.authorize(caller, Operation::Alter, &Resource::cluster())?;
        self.blocking(|s| s.acls.add(bindings)).await
    }

    /// Removes the ACL bindings `filter` matches, giving them back (needs Alter on the
    /// cluster).
    pub async fn remove_acls(
        &self,
        caller: &Caller,
        filter: &AclFilter,
    ) -> Result<Vec<AclBinding>, BrokerError> {
        self.authorize(caller, Operation::Alter, &Resource::cluster())?;
        self.blocking(|s| s.acls.remove(filter)).await
    }

    /// The ACL bindings `filter` matches (needs Describe on the cluster).
    pub fn acls(
        &self,
        caller: &Caller,
        filter: &AclFilter,
    ) -> Result<Vec<AclBinding>, BrokerError> {
        self.authorize(caller, Operation::Describe, &Resource::cluster())?;
        Ok(self.acls.list(filter))
    }

    /// Sets (or with `None` removes) a byte-rate quota of `user`, or of every user
    /// without one when `user` is [`DEFAULT_QUOTA_USER`] (needs AlterConfigs on the
    /// cluster).
    pub async fn set_quota(
        &self,
        caller: &Caller,
        user: &str,
        kind: QuotaKind,
        rate: Option<u64>,
    ) -> Result<(), BrokerError> {
        self.authorize(caller, Operation::AlterConfigs, &Resource::cluster())?;
        self.blocking(|s| s.quotas.set(user, kind, rate)).await?;
        self.any_quota
            .store(!self.quotas.list().is_empty(), Ordering::Relaxed);
        Ok(())
    }

    /// Every quota, per user (needs DescribeConfigs on the cluster).
    pub fn quotas(
        &self,
        caller: &Caller,
    ) -> Result<BTreeMap<String, BTreeMap<QuotaKind, u64>>, BrokerError> {
        self.authorize(caller, Operation::DescribeConfigs, &Resource::cluster())?;
        Ok(self.quotas.list())
    }

    /// Runs a change that writes a state file; users change, so remembered logins are
    /// forgotten, and ACLs change, so open streams check their grants again.
    async fn blocking<T>(
        &self,
        change: impl FnOnce(&Security) -> Result<T, BrokerError>,
    ) -> Result<T, BrokerError> {
        // The files are small and changes rare: the write (and its fsync) runs in place.
        let result = change(self);
        self.verified.clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
        result
    }
}

/// Security state edited with no server running (`sluice user add --data-dir`): holds the
/// data directory's lock, so it fails while a broker has the directory open.
#[derive(Debug)]
pub struct OfflineSecurity {
    security: Security,
    _lock: std::fs::File,
}

impl OfflineSecurity {
    /// Opens the security state of `data_dir` (created if missing).
    pub fn open(data_dir: &Path) -> Result<OfflineSecurity, BrokerError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| BrokerError::io("create directory", data_dir, e))?;
        let lock = lock_data_dir(&DataDir::new(data_dir.to_owned()).lock_file())?;
        Ok(OfflineSecurity {
            security: Security::open(data_dir, SecurityConfig::default())?,
            _lock: lock,
        })
    }

    /// The security state, changed as [`Caller::internal`] (which every check lets by).
    pub fn security(&self) -> &Security {
        &self.security
    }
}
