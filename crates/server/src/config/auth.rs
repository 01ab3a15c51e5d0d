//! The `[auth]` table: whether clients must log in, who bypasses ACLs, and the refusal to
//! listen beyond loopback without authentication.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use sluice_broker::security::SecurityConfig;

use super::parse;
use crate::error::ServerError;

/// The `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `auth.enabled`: every client must authenticate and ACLs are enforced (`--auth`).
    pub enabled: Option<bool>,
    /// `auth.insecure`: listen beyond loopback even without authentication (`--insecure`).
    pub insecure: Option<bool>,
    /// `auth.superusers`: user names that bypass ACLs (comma-separated in the environment).
    pub superusers: Option<Vec<String>>,
    /// `auth.scram_iterations`: PBKDF2 iterations of new SCRAM credentials.
    pub scram_iterations: Option<u32>,
    /// `auth.failed_login_delay_ms`: how long the first failed login from an address is
    /// held back (doubled for each further one).
    pub failed_login_delay_ms: Option<u64>,
    /// `auth.max_password_checks`: password checks (PBKDF2) run at once.
    pub max_password_checks: Option<usize>,
}

impl AuthSettings {
    /// These settings with every one of `higher` that is set taking precedence.
    pub(super) fn overlay(self, higher: AuthSettings) -> AuthSettings {
        AuthSettings {
            enabled: higher.enabled.or(self.enabled),
            insecure: higher.insecure.or(self.insecure),
            superusers: higher.superusers.or(self.superusers),
            scram_iterations: higher.scram_iterations.or(self.scram_iterations),
            failed_login_delay_ms: higher.failed_login_delay_ms.or(self.failed_login_delay_ms),
            max_password_checks: higher.max_password_checks.or(self.max_password_checks),
        }
    }

    /// Sets `name` (a field name) from text; `false` when there is no such field.
    pub(super) fn set(&mut self, key: &str, name: &str, value: &str) -> Result<bool, ServerError> {
        match name {
            "enabled" => self.enabled = Some(parse(key, value)?),
            "insecure" => self.insecure = Some(parse(key, value)?),
            "superusers" => {
                self.superusers = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "scram_iterations" => self.scram_iterations = Some(parse(key, value)?),
            "failed_login_delay_ms" => self.failed_login_delay_ms = Some(parse(key, value)?),
            "max_password_checks" => self.max_password_checks = Some(parse(key, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The broker's security settings, checked.
    pub(super) fn resolve(&self) -> Result<SecurityConfig, ServerError> {
        let defaults = SecurityConfig::default();
        let superusers = self.superusers.clone().unwrap_or_default();
        for name in &superusers {
            sluice_broker::security::users::validate_user_name(name).map_err(|e| {
                ServerError::InvalidSetting {
                    key: "auth.superusers".to_owned(),
                    value: name.clone(),
                    reason: e.to_string(),
                }
            })?;
        }
        let iterations = self.scram_iterations.unwrap_or(defaults.scram_iterations);
        let range = sluice_broker::security::scram::MIN_ITERATIONS
            ..=sluice_broker::security::scram::MAX_ITERATIONS;
        if !range.contains(&iterations) {
            return Err(ServerError::InvalidSetting {
                key: "auth.scram_iterations".to_owned(),
                value: iterations.to_string(),
                reason: format!("must be within {}..={}", range.start(), range.end()),
            });
        }
        Ok(SecurityConfig {
            auth: self.enabled.unwrap_or(false),
            superusers,
            scram_iterations: iterations,
            failed_login_delay: self
                .failed_login_delay_ms
                .map_or(defaults.failed_login_delay, Duration::from_millis),
            max_password_checks: match self.max_password_checks {
                Some(0) => {
                    return Err(ServerError::InvalidSetting {
                        key: "auth.max_password_checks".to_owned(),
                        value: "0".to_owned(),
                        reason: "must be at least 1".to_owned(),
                    });
                }
                Some(n) => n,
                None => defaults.max_password_checks,
            },
        })
    }

    /// Refuses a listener on an address other than loopback while clients need not
    /// authenticate, unless `insecure` says to serve anyway.
    pub(super) fn check_exposure<'a>(
        &self,
        listeners: impl IntoIterator<Item = (&'a str, SocketAddr)>,
    ) -> Result<(), ServerError> {
        if self.enabled.unwrap_or(false) || self.insecure.unwrap_or(false) {
            return Ok(());
        }
        match listeners
            .into_iter()
            .find(|(_, addr)| !addr.ip().is_loopback())
        {
            Some((listener, addr)) => Err(ServerError::Unauthenticated {
                listener: listener.to_owned(),
                addr,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;
    use crate::{ListenAddr, ServeArgs};

    #[test]
    fn a_listener_beyond_loopback_needs_auth_or_insecure() {
        let mut args = ServeArgs {
            kafka_listen: Some(ListenAddr::Addr("0.0.0.0:9092".parse().unwrap())),
            ..ServeArgs::default()
        };
        let err = load(&args, &[]).expect_err("open listener");
        let text = err.to_string();
        assert!(text.contains("kafka listener on 0.0.0.0:9092"), "{text}");
        assert!(
            text.contains("--auth") && text.contains("--insecure"),
            "{text}"
        );
        assert!(load(&args, &[("SLUICE_AUTH_INSECURE", "true")]).is_ok());
        args.auth = true;
        let config = load(&args, &[]).expect("with auth");
        assert!(config.broker.security.auth);
        assert!(
            load(&ServeArgs::default(), &[]).is_ok(),
            "loopback by default"
        );
    }

    #[test]
    fn superusers_and_iterations_come_from_flags_and_environment() {
        let args = ServeArgs {
            superusers: Some(vec!["admin".to_owned(), "ops".to_owned()]),
            ..ServeArgs::default()
        };
        let config = load(&args, &[("SLUICE_AUTH_SCRAM_ITERATIONS", "8192")]).unwrap();
        assert_eq!(config.broker.security.superusers, ["admin", "ops"]);
        assert_eq!(config.broker.security.scram_iterations, 8192);
        let config = load(&ServeArgs::default(), &[("SLUICE_AUTH_SUPERUSERS", "a, b")]).unwrap();
        assert_eq!(config.broker.security.superusers, ["a", "b"]);
        let err = load(
            &ServeArgs::default(),
            &[("SLUICE_AUTH_SCRAM_ITERATIONS", "10")],
        )
        .expect_err("too few iterations");
        assert!(err.to_string().contains("auth.scram_iterations"), "{err}");
        let err = load(&ServeArgs::default(), &[("SLUICE_AUTH_SUPERUSERS", "a:b")])
            .expect_err("bad name");
        assert!(err.to_string().contains("auth.superusers"), "{err}");
        let config = load(
            &ServeArgs::default(),
            &[("SLUICE_AUTH_MAX_PASSWORD_CHECKS", "3")],
        )
        .unwrap();
        assert_eq!(config.broker.security.max_password_checks, 3);
        let err = load(
            &ServeArgs::default(),
            &[("SLUICE_AUTH_MAX_PASSWORD_CHECKS", "0")],
        )
        .expect_err("no password checks");
        assert!(
            err.to_string().contains("auth.max_password_checks"),
            "{err}"
        );
    }
}
