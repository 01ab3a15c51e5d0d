//! The broker's identity: a cluster id made once per data directory and kept in it, and the
//! node id of this (single) broker.
//!
//! Front ends report both where their protocol has them (Kafka's Metadata and
//! DescribeCluster), so a client sees the same cluster across restarts.

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::BrokerError;
use crate::metadata::write_atomically;

/// The file holding the cluster id, under the data directory.
const CLUSTER_ID_FILE: &str = "cluster.id";
/// Where the cluster id is written before it is renamed into place.
const CLUSTER_ID_TMP_FILE: &str = "cluster.id.tmp";

/// The node id of this broker: Sluice runs as one node.
pub const NODE_ID: i32 = 0;

/// Reads the cluster id of the data directory `root`, making one first if there is none: 16
/// random bytes in URL-safe base64 without padding (22 characters, the form Kafka uses).
pub(crate) fn load_or_create(root: &Path) -> Result<String, BrokerError> {
    let path = root.join(CLUSTER_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(BrokerError::Metadata {
                    path,
                    reason: format!("holds {id:?}, not a cluster id"),
                    source: None,
                });
            }
            Ok(id.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
            write_atomically(root, CLUSTER_ID_TMP_FILE, CLUSTER_ID_FILE, id.as_bytes())?;
            tracing::info!(cluster_id = %id, "made a cluster id for a new data directory");
            Ok(id)
        }
        Err(e) => Err(BrokerError::io("read", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path()).expect("create");
        assert_eq!(first.len(), 22, "{first}");
        assert_eq!(load_or_create(dir.path()).expect("load"), first);
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(load_or_create(other.path()).expect("create"), first);
    }

    #[test]
    fn a_damaged_cluster_id_file_is_an_error_not_a_new_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(CLUSTER_ID_FILE), "not an id!\n").expect("write");
        let err = load_or_create(dir.path()).expect_err("damaged");
        assert!(err.to_string().contains("cluster.id"), "{err}");
    }
}
