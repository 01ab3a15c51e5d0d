//! The files security state lives in: `DATA_DIR/security/{users,acls,quotas}.json`, each
//! replaced whole and atomically on every change (changes are rare; reads are from
//! memory). The directory is readable by its owner only.

use std::fs;
use std::io::ErrorKind as IoErrorKind;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BrokerError;
use crate::metadata::write_atomically;

/// The directory under the data directory.
pub(crate) const SECURITY_DIR: &str = "security";

/// One JSON file of security state.
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    dir: PathBuf,
    name: &'static str,
}

impl StateFile {
    /// `DATA_DIR/security/NAME`.
    pub(crate) fn new(data_dir: &Path, name: &'static str) -> StateFile {
        StateFile {
            dir: data_dir.join(SECURITY_DIR),
            name,
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    /// The state kept in the file, or `T::default()` when there is no file yet.
    pub(crate) fn load<T: DeserializeOwned + Default>(&self) -> Result<T, BrokerError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BrokerError::SecurityState {
                path,
                reason: "cannot be parsed".to_owned(),
                source: Some(e),
            }),
            Err(e) if e.kind() == IoErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(BrokerError::io("read", path, e)),
        }
    }

    /// Replaces the file with `state`: a temporary file, fsync, rename, fsync of the
    /// directory.
    pub(crate) fn store<T: Serialize>(&self, state: &T) -> Result<(), BrokerError> {
        self.create_dir()?;
        let bytes = serde_json::to_vec_pretty(state).expect("security state serializes");
        let tmp = format!("{}.tmp", self.name);
        write_atomically(&self.dir, &tmp, self.name, &bytes)
    }

    fn create_dir(&self) -> Result<(), BrokerError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)
            .map_err(|e| BrokerError::io("create directory", &self.dir, e))?;
        owner_only(&self.dir)
    }
}

/// Makes `dir` readable, writable and listable by its owner only.
#[cfg(unix)]
fn owner_only(dir: &Path) -> Result<(), BrokerError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| BrokerError::io("set permissions of", dir, e))
}

#[cfg(not(unix))]
fn owner_only(_dir: &Path) -> Result<(), BrokerError> {
    Ok(())
}
