//! The sticky, balanced assignor: which member of a group should own each partition.

use std::collections::{BTreeMap, BTreeSet};

use crate::groups::TopicPartition;

/// Member id → the partitions it is given.
type Loads<'a> = BTreeMap<&'a str, BTreeSet<TopicPartition>>;

/// Assigns every partition of `partitions` (topic → partition count) to a member of
/// `members` (member id → subscribed topics) subscribed to its topic, starting from
/// `previous` (partition → member).
///
/// 1. Every previous pair still valid (the partition exists, the member is present and
///    subscribed to its topic) is kept.
/// 2. Each other partition goes to the eligible member with the fewest partitions (ties by
///    member id), in (topic, partition) order.
/// 3. While a member owns a partition that an eligible member with at least two fewer
///    partitions could take, one such partition moves from the most to the least loaded.
///
/// With equal subscriptions the result is balanced (counts differ by at most one) and moves
/// the fewest previously assigned partitions possible. Partitions of topics no member
/// subscribes to are left out.
pub(crate) fn assign(
    previous: &BTreeMap<TopicPartition, String>,
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<TopicPartition, String> {
    let exists = |tp: &TopicPartition| partitions.get(&tp.topic).is_some_and(|&n| tp.partition < n);
    let eligible = |member: &str, tp: &TopicPartition| {
        members
            .get(member)
            .is_some_and(|topics| topics.contains(&tp.topic))
    };
    let mut loads: Loads<'_> = members
        .keys()
        .map(|id| (id.as_str(), BTreeSet::new()))
        .collect();
    for (tp, member) in previous {
        if exists(tp)
            && eligible(member, tp)
            && let Some(owned) = loads.get_mut(member.as_str())
        {
            owned.insert(tp.clone());
        }
    }
    let kept: BTreeSet<TopicPartition> = loads.values().flatten().cloned().collect();
    for (topic, &count) in partitions {
        for partition in 0..count {
            let tp = TopicPartition::new(topic.clone(), partition);
            if kept.contains(&tp) {
                continue;
            }
            let least_loaded = loads
                .iter_mut()
                .filter(|(member, _)| eligible(member, &tp))
                .min_by_key(|(_, owned)| owned.len());
            if let Some((_, owned)) = least_loaded {
                owned.insert(tp);
            }
        }
    }
    while let Some((from, to, tp)) = next_move(&loads, &eligible) {
        if let Some(owned) = loads.get_mut(from) {
            owned.remove(&tp);
        }
        if let Some(owned) = loads.get_mut(to) {
            owned.insert(tp);
        }
    }
    loads
        .into_iter()
        .flat_map(|(member, owned)| owned.into_iter().map(move |tp| (tp, member.to_owned())))
        .collect()
}

/// The next balancing move: a partition of the most loaded member that a member with at
/// least two fewer partitions can take (the least loaded such one), if any.
fn next_move<'a>(
    loads: &Loads<'a>,
    eligible: &impl Fn(&str, &TopicPartition) -> bool,
) -> Option<(&'a str, &'a str, TopicPartition)> {
    let mut by_load: Vec<(&'a str, usize)> = loads
        .iter()
        .map(|(member, owned)| (*member, owned.len()))
        .collect();
    // Least loaded first; ties by member id (the map order, kept by the stable sort).
    by_load.sort_by_key(|(_, load)| *load);
    for &(donor, donor_load) in by_load.iter().rev() {
        for &(receiver, receiver_load) in &by_load {
            if receiver_load + 1 >= donor_load {
                break;
            }
            let movable = loads
                .get(donor)
                .and_then(|owned| owned.iter().rev().find(|tp| eligible(receiver, tp)));
            if let Some(tp) = movable {
                return Some((donor, receiver, tp.clone()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn members(ids: &[&str], topics: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        let topics: BTreeSet<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        ids.iter()
            .map(|id| ((*id).to_owned(), topics.clone()))
            .collect()
    }

    fn counts(assignment: &BTreeMap<TopicPartition, String>) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for member in assignment.values() {
            *counts.entry(member.as_str()).or_default() += 1;
        }
        counts
    }

    /// Previously assigned partitions that changed member, counting only those whose
    /// previous member is still present.
    fn moved(
        before: &BTreeMap<TopicPartition, String>,
        after: &BTreeMap<TopicPartition, String>,
        present: &BTreeMap<String, BTreeSet<String>>,
    ) -> usize {
        before
            .iter()
            .filter(|(tp, member)| {
                present.contains_key(*member) && after.get(*tp).is_some_and(|m| m != *member)
            })
            .count()
    }

    #[test]
    fn splits_evenly_and_moves_only_what_it_must() {
        let topics = BTreeMap::from([("t".to_owned(), 6)]);
        let one = assign(&BTreeMap::new(), &members(&["a"], &["t"]), &topics);
        assert_eq!(counts(&one), BTreeMap::from([("a", 6)]));

        let two_members = members(&["a", "b"], &["t"]);
        let two = assign(&one, &two_members, &topics);
        assert_eq!(counts(&two), BTreeMap::from([("a", 3), ("b", 3)]));
        assert_eq!(moved(&one, &two, &two_members), 3);

        let three_members = members(&["a", "b", "c"], &["t"]);
        let three = assign(&two, &three_members, &topics);
        assert_eq!(
            counts(&three),
            BTreeMap::from([("a", 2), ("b", 2), ("c", 2)])
        );
        assert_eq!(moved(&two, &three, &three_members), 2);
        // Nobody but the newcomer gains a partition.
        for (tp, member) in &three {
            assert!(
                member == "c" || two.get(tp) == Some(member),
                "{tp} moved to {member}"
            );
        }

        // Removing b moves exactly b's partitions.
        let without_b = members(&["a", "c"], &["t"]);
        let after = assign(&three, &without_b, &topics);
        assert_eq!(counts(&after), BTreeMap::from([("a", 3), ("c", 3)]));
        assert_eq!(moved(&three, &after, &without_b), 0);

        // Running it again changes nothing.
        assert_eq!(assign(&after, &without_b, &topics), after);
    }

    #[test]
    fn respects_subscriptions_and_drops_vanished_partitions() {
        let mut subscriptions = members(&["a"], &["x", "y"]);
        subscriptions.insert("b".to_owned(), ["y".to_owned()].into());
        let topics = BTreeMap::from([("x".to_owned(), 3), ("y".to_owned(), 3)]);
        let result = assign(&BTreeMap::new(), &subscriptions, &topics);
        assert_eq!(result.len(), 6);
        for (tp, member) in &result {
            assert!(
                subscriptions[member].contains(&tp.topic),
                "{tp} to {member}"
            );
        }
        assert_eq!(counts(&result), BTreeMap::from([("a", 3), ("b", 3)]));

        // Topic x deleted: its partitions leave the assignment.
        let fewer = BTreeMap::from([("y".to_owned(), 3)]);
        let result = assign(&result, &subscriptions, &fewer);
        assert!(result.keys().all(|tp| tp.topic == "y"));
        assert_eq!(result.len(), 3);
    }

    #[test]
    fn no_members_assign_nothing() {
        let topics = BTreeMap::from([("t".to_owned(), 4)]);
        assert!(assign(&BTreeMap::new(), &BTreeMap::new(), &topics).is_empty());
    }

    /// The fewest moves any balanced assignment needs: members keep at most their quota,
    /// and the larger quotas go to the members that had the most.
    fn fewest_moves(
        before: &BTreeMap<TopicPartition, String>,
        present: &BTreeMap<String, BTreeSet<String>>,
        total: usize,
    ) -> usize {
        let mut had: Vec<usize> = present
            .keys()
            .map(|m| before.values().filter(|b| *b == m).count())
            .collect();
        had.sort_unstable_by(|a, b| b.cmp(a));
        let (floor, extra) = (total / had.len(), total % had.len());
        had.iter()
            .enumerate()
            .map(|(i, &n)| n.saturating_sub(floor + usize::from(i < extra)))
            .sum()
    }

    proptest! {
        #[test]
        fn balanced_valid_and_minimal(
            partition_counts in proptest::collection::vec(1u32..12, 1..4),
            previous_members in 1usize..8,
            owners in proptest::collection::vec(0usize..8, 0..40),
            current in proptest::collection::btree_set(0usize..10, 1..9),
        ) {
            let topics: BTreeMap<String, u32> = partition_counts
                .iter()
                .enumerate()
                .map(|(i, &n)| (format!("t{i}"), n))
                .collect();
            let names: Vec<String> = topics.keys().cloned().collect();
            let all: Vec<TopicPartition> = topics
                .iter()
                .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
                .collect();
            // An arbitrary, possibly unbalanced previous assignment by members m0..mN.
            let before: BTreeMap<TopicPartition, String> = all
                .iter()
                .zip(&owners)
                .map(|(tp, &o)| (tp.clone(), format!("m{}", o % previous_members)))
                .collect();
            let present: BTreeMap<String, BTreeSet<String>> = current
                .iter()
                .map(|i| (format!("m{i}"), names.iter().cloned().collect()))
                .collect();

            let after = assign(&before, &present, &topics);

            // Valid and complete.
            prop_assert_eq!(after.keys().cloned().collect::<Vec<_>>(), all.clone());
            prop_assert!(after.values().all(|m| present.contains_key(m)));
            // Balanced.
            let loads: Vec<usize> = present
                .keys()
                .map(|m| after.values().filter(|a| *a == m).count())
                .collect();
            let (min, max) = (loads.iter().min(), loads.iter().max());
            prop_assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1), "{:?}", loads);
            // Sticky: exactly the fewest moves possible.
            let retained: BTreeMap<TopicPartition, String> = before
                .iter()
                .filter(|(_, m)| present.contains_key(*m))
                .map(|(tp, m)| (tp.clone(), m.clone()))
                .collect();
            prop_assert_eq!(
                moved(&before, &after, &present),
                fewest_moves(&retained, &present, all.len())
            );
            // Stable: assigning again changes nothing.
            prop_assert_eq!(assign(&after, &present, &topics), after);
        }

        #[test]
        fn mixed_subscriptions_stay_valid_and_locally_balanced(
            subscriptions in proptest::collection::vec(proptest::collection::btree_set(0usize..3, 1..4), 1..6),
            partition_counts in proptest::collection::vec(1u32..8, 3),
        ) {
            let topics: BTreeMap<String, u32> = partition_counts
                .iter()
                .enumerate()
                .map(|(i, &n)| (format!("t{i}"), n))
                .collect();
            let present: BTreeMap<String, BTreeSet<String>> = subscriptions
                .iter()
                .enumerate()
                .map(|(i, set)| (format!("m{i}"), set.iter().map(|t| format!("t{t}")).collect()))
                .collect();
            let after = assign(&BTreeMap::new(), &present, &topics);
            let subscribed: BTreeSet<&String> = present.values().flatten().collect();
            for (topic, &n) in &topics {
                for p in 0..n {
                    let tp = TopicPartition::new(topic.clone(), p);
                    let owner = after.get(&tp);
                    prop_assert_eq!(owner.is_some(), subscribed.contains(topic));
                    if let Some(owner) = owner {
                        prop_assert!(present[owner].contains(topic));
                    }
                }
            }
            // No partition could move to an eligible member with two fewer.
            let load = |m: &str| after.values().filter(|a| *a == m).count();
            for (tp, owner) in &after {
                for (member, topics) in &present {
                    if topics.contains(&tp.topic) {
                        prop_assert!(load(member) + 1 >= load(owner), "{} could go to {}", tp, member);
                    }
                }
            }
        }
    }
}
