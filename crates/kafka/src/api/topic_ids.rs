//! Topic ids: the UUIDs Kafka's newer APIs name topics by (Metadata from version 10, the
//! share APIs).
//!
//! Sluice names topics only by name, so a topic's id is derived from its name: FNV-1a (128
//! bits) of the name, with the UUID version (8, custom) and variant bits set. The same name
//! always has the same id, across restarts and listeners; unlike Kafka, a topic deleted and
//! created again under the same name keeps its id.

use std::collections::HashMap;

use parking_lot::Mutex;
use sluice_broker::Broker;
use uuid::Uuid;

/// FNV-1a's 128-bit offset basis and prime.
const FNV_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// The id of the topic `name`.
pub(crate) fn topic_id(name: &str) -> Uuid {
    let hash = name.bytes().fold(FNV_OFFSET, |h, b| {
        (h ^ u128::from(b)).wrapping_mul(FNV_PRIME)
    });
    uuid::Builder::from_custom_bytes(hash.to_be_bytes()).into_uuid()
}

/// Topic names by id, filled from the broker's topic list when an id is not known yet.
#[derive(Debug, Default)]
pub(crate) struct TopicIds {
    /// Invariant: `names[id] = name` only when `topic_id(name) == id`.
    names: Mutex<HashMap<Uuid, String>>,
}

impl TopicIds {
    /// The name of the topic with this id, if such a topic exists (or existed since it was
    /// last looked up: a deleted topic's name is still returned, and the broker then says it
    /// is not found).
    pub(crate) fn name(&self, broker: &Broker, id: Uuid) -> Option<String> {
        if let Some(name) = self.names.lock().get(&id) {
            return Some(name.clone());
        }
        let found: HashMap<Uuid, String> = broker
            .list_topics()
            .into_iter()
            .map(|t| (topic_id(&t.name), t.name))
            .collect();
        let mut names = self.names.lock();
        *names = found;
        names.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_distinct_and_not_reserved() {
        let a = topic_id("orders");
        assert_eq!(a, topic_id("orders"));
        assert_ne!(a, topic_id("orders2"));
        assert_ne!(a, Uuid::nil());
        assert_eq!(a.get_version_num(), 8);
        // Pinned: a change would hand running clients new ids for their topics.
        assert_eq!(a.to_string(), "1649593a-2e3c-84bf-aeee-83a12169a874");
    }
}
