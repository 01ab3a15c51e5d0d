//! Space reclaim (`share.reclaim.enable`): how far the share groups reading a topic are done
//! with each of its partitions, so that the retention check can delete the segments wholly
//! below (`Log::delete_segments_below`).

use std::collections::BTreeMap;

use crate::share::coordinator::ShareCoordinator;

impl ShareCoordinator {
    /// For each partition of `topic` that some share group reads, the lowest start offset
    /// among those groups: every record below it is accepted or archived (dead-lettered
    /// first, when the group has a dead-letter topic) by every group reading the partition,
    /// and durably so. A partition no share group reads is absent: its segments stay.
    ///
    /// Both the groups in memory and the durable state count, the lower start winning: a
    /// group's durable start trails its start in memory while acknowledgements are being
    /// written (a crash would deliver those records again, so they must stay), and a group
    /// just created is in memory before it is durable. A start only moves forward, so a
    /// start read a moment ago is never past the group's start now.
    ///
    /// Takes the registry, then each group's state in turn, then (alone) the journal's log;
    /// blocking, since it waits for a journal write in progress: call it on a blocking thread.
    pub(crate) fn reclaim_floors(&self, topic: &str) -> BTreeMap<u32, u64> {
        let mut floors = BTreeMap::new();
        let mut lower = |partition: u32, start: u64| {
            floors
                .entry(partition)
                .and_modify(|floor: &mut u64| *floor = (*floor).min(start))
                .or_insert(start);
        };
        for group in self.snapshot() {
            let state = group.state.lock();
            for (partition, share) in state.partitions.get(topic).into_iter().flatten() {
                lower(*partition, share.start());
            }
        }
        let range = (topic.to_owned(), 0)..=(topic.to_owned(), u32::MAX);
        self.journal.with_durable_state(|durable| {
            for group in durable.groups().values() {
                for ((_, partition), state) in group.partitions.range(range.clone()) {
                    lower(*partition, state.start);
                }
            }
        });
        floors
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::share::coordinator::{ShareCoordinator, wait_durable};
    use crate::share::group::{GroupState, ShareGroup};
    use crate::share::partition::SharePartition;
    use crate::share::state_record::Change;
    use crate::share::{ShareConfig, ShareGroupSettings};

    fn partition(topic: &str, partition: u32, start: u64) -> Change {
        Change::Partition {
            topic: topic.to_owned(),
            partition,
            start,
            accepted: 0,
            dead_lettered: 0,
        }
    }

    /// Puts group `name` in the registry (in memory only) reading `topic` at `starts`.
    fn in_memory(coordinator: &ShareCoordinator, name: &str, topic: &str, starts: &[(u32, u64)]) {
        let partitions = starts
            .iter()
            .map(|(p, start)| (*p, SharePartition::new(*start)))
            .collect();
        let state = GroupState::new(
            ShareGroupSettings::default(),
            BTreeMap::from([(Arc::from(topic), partitions)]),
        );
        coordinator.with_registry(|groups| {
            groups.insert(
                name.to_owned(),
                Arc::new(ShareGroup::new(name.to_owned(), state)),
            );
        });
    }

    #[tokio::test]
    async fn the_lowest_start_in_memory_or_durable_wins_per_partition() {
        let dir = tempfile::tempdir().expect("temp dir");
        let coordinator = ShareCoordinator::open(dir.path(), ShareConfig::default()).expect("open");
        assert!(
            coordinator.reclaim_floors("jobs").is_empty(),
            "no group reads it"
        );

        // Durably, "a" is at 10 on partition 0 and 7 on partition 1 of "jobs"; in memory it
        // is further on (acknowledgements not yet durable), which must not count.
        let settings = Change::Settings(ShareGroupSettings::default());
        let durables = coordinator.write(vec![
            ("a".to_owned(), settings),
            ("a".to_owned(), partition("jobs", 0, 10)),
            ("a".to_owned(), partition("jobs", 1, 7)),
            ("a".to_owned(), partition("other", 2, 1)),
        ]);
        wait_durable("a", durables).await.expect("durable");
        in_memory(&coordinator, "a", "jobs", &[(0, 30), (1, 40)]);
        // "b" is in memory only (just created): it counts too, and alone reads partition 3.
        in_memory(&coordinator, "b", "jobs", &[(1, 5), (3, 12)]);

        let floors = coordinator.reclaim_floors("jobs");
        assert_eq!(floors, BTreeMap::from([(0, 10), (1, 5), (3, 12)]));
        assert_eq!(
            coordinator.reclaim_floors("other"),
            BTreeMap::from([(2, 1)])
        );
    }
}
