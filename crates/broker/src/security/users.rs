//! Users and their SCRAM credentials (`security/users.json`): the only form a password is
//! kept in.

use std::collections::BTreeMap;
use std::path::Path;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::file::StateFile;
use super::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramCredential, ScramMechanism};
use crate::BrokerError;

/// Longest user name accepted.
pub const MAX_USER_NAME_LEN: usize = 255;
/// Longest password accepted, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// What `users.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    /// Format version, 1.
    #[serde(default = "version_one")]
    version: u32,
    /// Each user's credential per mechanism.
    users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

fn version_one() -> u32 {
    1
}

/// The users of a data directory, kept in memory and written through to its file.
#[derive(Debug)]
pub(crate) struct Users {
    file: StateFile,
    /// The file's content. Held across a write of the file, so changes are written in the
    /// order they are made.
    state: Mutex<UsersFile>,
    iterations: u32,
}

impl Users {
    /// Loads the users of `data_dir`; new credentials get `iterations` PBKDF2 rounds.
    pub(crate) fn open(data_dir: &Path, iterations: u32) -> Result<Users, BrokerError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(BrokerError::invalid_request(
                "scram_iterations",
                format!("{iterations} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"),
            ));
        }
        let file = StateFile::new(data_dir, "users.json");
        let state: UsersFile = file.load()?;
        for (name, credentials) in &state.users {
            if let Some((m, _)) = credentials.iter().find(|(m, c)| !c.is_valid(**m)) {
                return Err(BrokerError::SecurityState {
                    path: file.path(),
                    reason: format!("user {name:?} has a malformed {m} credential"),
                    source: None,
                });
            }
        }
        Ok(Users {
            file,
            state: Mutex::new(state),
            iterations,
        })
    }

    /// Creates user `name`, or (with `replace`) sets the password of an existing one.
    pub(crate) fn upsert(
        &self,
        name: &str,
        password: &str,
        replace: bool,
    ) -> Result<(), BrokerError> {
        validate_user_name(name)?;
        if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
            return Err(BrokerError::invalid_request(
                "password",
                format!("must be 1 to {MAX_PASSWORD_LEN} bytes"),
            ));
        }
        let credentials: BTreeMap<_, _> = ScramMechanism::ALL
            .into_iter()
            .map(|m| (m, ScramCredential::new(m, password, self.iterations)))
            .collect();
        let mut state = self.state.lock();
        match (state.users.contains_key(name), replace) {
            (true, false) => {
                return Err(BrokerError::UserExists {
                    user: name.to_owned(),
                });
            }
            (false, true) => {
                return Err(BrokerError::UserNotFound {
                    user: name.to_owned(),
                });
            }
            _ => {}
        }
        let previous = state.users.insert(name.to_owned(), credentials);
        if let Err(e) = self.file.store(&*state) {
            match previous {
                Some(p) => state.users.insert(name.to_owned(), p),
                None => state.users.remove(name),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Deletes user `name`.
    pub(crate) fn delete(&self, name: &str) -> Result<(), BrokerError> {
        let mut state = self.state.lock();
        let Some(previous) = state.users.remove(name) else {
            return Err(BrokerError::UserNotFound {
                user: name.to_owned(),
            });
        };
        if let Err(e) = self.file.store(&*state) {
            state.users.insert(name.to_owned(), previous);
            return Err(e);
        }
        Ok(())
    }

    /// The user names, sorted, with the mechanisms each has a credential for.
    pub(crate) fn list(&self) -> Vec<(String, Vec<ScramMechanism>)> {
        self.state
            .lock()
            .users
            .iter()
            .map(|(name, c)| (name.clone(), c.keys().copied().collect()))
            .collect()
    }

    /// The credential of `name` for `mechanism`, if the user exists.
    pub(crate) fn credential(
        &self,
        name: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        self.state.lock().users.get(name)?.get(&mechanism).cloned()
    }
}

/// Checks a user name: 1 to 255 characters, no control characters and no `:` (which
/// separates user and password in HTTP basic credentials).
pub fn validate_user_name(name: &str) -> Result<(), BrokerError> {
    let reason = if name.is_empty() || name.chars().count() > MAX_USER_NAME_LEN {
        format!("must be 1 to {MAX_USER_NAME_LEN} characters")
    } else if name.chars().any(|c| c.is_control() || c == ':') {
        "may not hold control characters or ':'".to_owned()
    } else {
        return Ok(());
    };
    Err(BrokerError::invalid_request("user", reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_survive_a_reopen_and_the_file_holds_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(dir.path(), MIN_ITERATIONS).unwrap();
        users.upsert("alice", "correct horse", false).unwrap();
        assert!(matches!(
            users.upsert("alice", "x", false),
            Err(BrokerError::UserExists { .. })
        ));
        assert!(matches!(
            users.upsert("bob", "x", true),
            Err(BrokerError::UserNotFound { .. })
        ));
        let text = std::fs::read_to_string(dir.path().join("security/users.json")).unwrap();
        assert!(!text.contains("correct horse"), "{text}");
        let reopened = Users::open(dir.path(), MIN_ITERATIONS).unwrap();
        let c = reopened
            .credential("alice", ScramMechanism::Sha256)
            .unwrap();
        assert!(c.verify(ScramMechanism::Sha256, "correct horse"));
        reopened.upsert("alice", "new", true).unwrap();
        assert!(
            !reopened
                .credential("alice", ScramMechanism::Sha512)
                .unwrap()
                .verify(ScramMechanism::Sha512, "correct horse")
        );
        reopened.delete("alice").unwrap();
        assert!(reopened.list().is_empty());
    }

    #[test]
    fn bad_names_and_passwords_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(dir.path(), MIN_ITERATIONS).unwrap();
        for name in ["", "a:b", "a\nb"] {
            assert!(users.upsert(name, "pw", false).is_err(), "{name:?}");
        }
        assert!(users.upsert("a", "", false).is_err());
        assert!(Users::open(dir.path(), 10).is_err());
    }
}
