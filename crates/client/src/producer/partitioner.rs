//! Which partition a record goes to.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Chooses partitions like Kafka's default partitioner: the record's own partition if it
/// names one, else murmur2 of its key, else the topic's sticky partition. The sticky
/// partition takes every keyless record until a batch of it is closed, then moves on to the
/// next partition, so keyless records fill whole batches and still spread over the topic.
#[derive(Debug, Default)]
pub(crate) struct Partitioner {
    /// Per topic: the sticky partition and the topic's partition count.
    sticky: HashMap<Arc<str>, Sticky>,
}

/// The sticky partition of one topic.
#[derive(Debug, Clone, Copy)]
struct Sticky {
    current: u32,
    partitions: u32,
}

impl Partitioner {
    /// The partition of a record of `topic` (which has `partitions` partitions) with the
    /// given explicit partition and key.
    pub(crate) fn choose(
        &mut self,
        topic: &Arc<str>,
        partitions: u32,
        explicit: Option<u32>,
        key: Option<&[u8]>,
    ) -> Result<u32> {
        if partitions == 0 {
            return Err(Error::Protocol(format!(
                "topic '{topic}' is described with no partitions"
            )));
        }
        match (explicit, key) {
            (Some(partition), _) if partition < partitions => Ok(partition),
            (Some(partition), _) => Err(Error::InvalidArgument(format!(
                "topic '{topic}' has no partition {partition}: it has partitions 0..{partitions}"
            ))),
            (None, Some(key)) => Ok(sluice_partitioner::partition_for_key(key, partitions)),
            (None, None) => {
                let sticky = self.sticky.entry(Arc::clone(topic)).or_insert_with(|| {
                    // Producers start at different partitions, as Kafka's pick a random one.
                    let start = std::collections::hash_map::RandomState::new().hash_one(topic);
                    Sticky {
                        current: u32::try_from(start % u64::from(partitions)).unwrap_or(0),
                        partitions,
                    }
                });
                if sticky.partitions != partitions {
                    *sticky = Sticky {
                        current: sticky.current % partitions,
                        partitions,
                    };
                }
                Ok(sticky.current)
            }
        }
    }

    /// A batch of `topic`'s `partition` was closed: if it is the sticky one, move on.
    pub(crate) fn batch_closed(&mut self, topic: &str, partition: u32) {
        if let Some(sticky) = self.sticky.get_mut(topic)
            && sticky.current == partition
        {
            sticky.current = (partition + 1) % sticky.partitions;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Arc<str> {
        Arc::from("t")
    }

    #[test]
    fn an_explicit_partition_wins_and_is_checked() -> Result<()> {
        let mut p = Partitioner::default();
        assert_eq!(p.choose(&topic(), 4, Some(3), Some(b"key"))?, 3);
        let err = p.choose(&topic(), 4, Some(4), None);
        assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
        Ok(())
    }

    #[test]
    fn keys_use_kafkas_murmur2() -> Result<()> {
        let mut p = Partitioner::default();
        for key in ["21", "foobar", "abc", ""] {
            assert_eq!(
                p.choose(&topic(), 7, None, Some(key.as_bytes()))?,
                sluice_partitioner::partition_for_key(key.as_bytes(), 7)
            );
        }
        // murmur2("abc") = 479470107.
        assert_eq!(p.choose(&topic(), 1000, None, Some(b"abc"))?, 107);
        Ok(())
    }

    #[test]
    fn keyless_records_stick_until_a_batch_closes_then_rotate() -> Result<()> {
        let mut p = Partitioner::default();
        let first = p.choose(&topic(), 3, None, None)?;
        assert_eq!(p.choose(&topic(), 3, None, None)?, first);
        // Closing another partition's batch does not move the sticky partition.
        p.batch_closed("t", (first + 1) % 3);
        assert_eq!(p.choose(&topic(), 3, None, None)?, first);
        let mut seen = vec![first];
        for _ in 0..5 {
            let current = p.choose(&topic(), 3, None, None)?;
            p.batch_closed("t", current);
            seen.push(p.choose(&topic(), 3, None, None)?);
        }
        let expected: Vec<u32> = (0..6).map(|i| (first + i) % 3).collect();
        assert_eq!(seen, expected);
        Ok(())
    }

    #[test]
    fn a_topic_without_partitions_is_an_error() {
        let mut p = Partitioner::default();
        assert!(p.choose(&topic(), 0, None, None).is_err());
    }
}
