//! The share-partition window against a simple model: random sequences of appends,
//! acquires, accepts, releases, rejects, renewals, lock expiries, members leaving, dead-letter
//! appends, retention skips and restarts (restores from the durable view) must leave the
//! window exactly as a per-offset table of states says, and keep its invariants: no record
//! held by two members, delivery counts never decrease, an accepted record is never delivered
//! again, the start offset only moves forward, and the counts add up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::{ArchiveReason, Entry, Holder, Outcome, Released, Rules, SharePartition, Slot};

const MEMBERS: usize = 3;
const LOCK: Duration = Duration::from_millis(100);
const MAX_WINDOW: u64 = 6;
/// The window starts here, as if the group began reading mid-log.
const FIRST: u64 = 3;

#[derive(Debug, Clone)]
enum Op {
    Append(u64),
    Acquire { member: usize, max: u32 },
    Accept { member: usize, pick: usize },
    Release { member: usize, pick: usize },
    Reject { member: usize, pick: usize },
    Renew { member: usize, pick: usize },
    Advance(u64),
    Expire,
    Leave(usize),
    StartDeadLetters { one: Option<usize> },
    DeadLettered { pick: usize, appended: bool },
    SkipTo(u64),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let member = 0..MEMBERS;
    let pick = 0usize..64;
    prop_oneof![
        3 => (1u64..5).prop_map(Op::Append),
        6 => (member.clone(), 1u32..5).prop_map(|(member, max)| Op::Acquire { member, max }),
        5 => (member.clone(), pick.clone()).prop_map(|(member, pick)| Op::Accept { member, pick }),
        3 => (member.clone(), pick.clone()).prop_map(|(member, pick)| Op::Release { member, pick }),
        2 => (member.clone(), pick.clone()).prop_map(|(member, pick)| Op::Reject { member, pick }),
        1 => (member.clone(), pick.clone()).prop_map(|(member, pick)| Op::Renew { member, pick }),
        // Whole quarters of the lock often, so that deadlines and backoffs are hit exactly.
        3 => prop_oneof![(0u64..5).prop_map(|q| q * 25), 0u64..160].prop_map(Op::Advance),
        2 => Just(Op::Expire),
        1 => member.prop_map(Op::Leave),
        2 => proptest::option::of(pick.clone()).prop_map(|one| Op::StartDeadLetters { one }),
        2 => (pick, any::<bool>()).prop_map(|(pick, appended)| Op::DeadLettered { pick, appended }),
        1 => (0u64..4).prop_map(Op::SkipTo),
        1 => Just(Op::Restart),
    ]
}

fn rules() -> impl Strategy<Value = Rules> {
    (1u32..5, any::<bool>(), prop_oneof![Just(0u64), Just(50u64)]).prop_map(
        |(limit, dead_letter, backoff)| Rules {
            delivery_attempt_limit: limit,
            dead_letter,
            redelivery_backoff: Duration::from_millis(backoff),
        },
    )
}

/// One offset as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Available {
        not_before: Option<Instant>,
    },
    Held {
        member: usize,
        deadline: Instant,
    },
    DeadLettering {
        reason: ArchiveReason,
        started: bool,
    },
    Accepted,
    Archived,
}

impl State {
    fn is_done(&self) -> bool {
        matches!(self, State::Accepted | State::Archived)
    }
}

/// Every offset from the lowest still kept up to `next` (the first never delivered), with
/// its state and delivery count; the start is derived, not kept.
#[derive(Debug, Clone)]
struct Model {
    offsets: BTreeMap<u64, (State, u32)>,
    /// Offsets below are gone (before the group began, or skipped).
    floor: u64,
    next: u64,
    /// The high watermark.
    end: u64,
    accepted: u64,
    archived: u64,
}

impl Model {
    fn start(&self) -> u64 {
        self.offsets
            .range(self.floor..)
            .find(|(_, (state, _))| !state.is_done())
            .map_or(self.next, |(offset, _)| *offset)
    }

    /// An offset to acknowledge: mostly one some member holds, sometimes any offset.
    fn pick(&self, pick: usize, wanted: impl Fn(&State) -> bool) -> u64 {
        let candidates: Vec<u64> = self
            .offsets
            .iter()
            .filter(|(_, (s, _))| wanted(s))
            .map(|(o, _)| *o)
            .collect();
        if pick.is_multiple_of(5) || candidates.is_empty() {
            pick as u64 % (self.end + 2)
        } else {
            candidates[pick % candidates.len()]
        }
    }

    fn state(&self, offset: u64) -> Option<&State> {
        (offset >= self.start())
            .then(|| self.offsets.get(&offset).map(|(s, _)| s))
            .flatten()
    }

    /// Whether `member` holds `offset` under a lock that has not expired at `now`.
    fn holds(&self, member: usize, offset: u64, now: Instant) -> bool {
        matches!(self.state(offset), Some(State::Held { member: m, deadline }) if *m == member && *deadline > now)
    }

    fn set(&mut self, offset: u64, state: State) {
        if let Some(entry) = self.offsets.get_mut(&offset) {
            if state == State::Accepted {
                self.accepted += 1;
            } else if state == State::Archived {
                self.archived += 1;
            }
            entry.0 = state;
        }
    }

    /// What becomes of a held record released at `now`.
    fn release(&mut self, offset: u64, now: Instant, rules: &Rules) -> Released {
        let count = self.offsets.get(&offset).map_or(0, |(_, c)| *c);
        if count >= rules.delivery_attempt_limit {
            return self.archive(offset, ArchiveReason::DeliveryLimit, rules);
        }
        let not_before =
            (!rules.redelivery_backoff.is_zero()).then(|| now + rules.redelivery_backoff);
        self.set(offset, State::Available { not_before });
        Released::Available
    }

    fn archive(&mut self, offset: u64, reason: ArchiveReason, rules: &Rules) -> Released {
        if rules.dead_letter {
            self.set(
                offset,
                State::DeadLettering {
                    reason,
                    started: false,
                },
            );
            Released::DeadLetter
        } else {
            self.set(offset, State::Archived);
            Released::Archived
        }
    }

    /// The slot the implementation must hold for a model state.
    fn slot(state: &State, holders: &[Holder]) -> Slot {
        match state {
            State::Available { not_before } => Slot::Available {
                not_before: *not_before,
            },
            State::Held { member, deadline } => Slot::Acquired {
                holder: Arc::clone(&holders[*member]),
                deadline: *deadline,
            },
            State::DeadLettering { reason, started } => Slot::DeadLettering {
                reason: *reason,
                started: *started,
            },
            State::Accepted => Slot::Accepted,
            State::Archived => Slot::Archived,
        }
    }
}

/// What the model and the implementation must agree on after every step, and the
/// invariants that hold across steps.
fn check(
    p: &SharePartition,
    m: &Model,
    holders: &[Holder],
    last_start: &mut u64,
    counts: &mut BTreeMap<u64, u32>,
) -> Result<(), TestCaseError> {
    let start = m.start();
    prop_assert_eq!(p.start(), start, "start");
    prop_assert!(
        start >= *last_start,
        "the start moved back from {} to {}",
        last_start,
        start
    );
    *last_start = start;
    prop_assert_eq!(p.next(), m.next, "next");
    prop_assert!(start <= m.next && m.next <= m.end.max(start));
    prop_assert!(m.next - start <= MAX_WINDOW, "the window is bounded");
    // The whole window, slot by slot. A slot names one holder, and an acquire must return
    // exactly the records the model has available, so no record is ever held by two.
    for offset in start..m.next {
        let (state, count) = &m.offsets[&offset];
        let expected = Entry {
            slot: Model::slot(state, holders),
            delivery_count: *count,
        };
        prop_assert_eq!(p.entry(offset), Some(&expected), "offset {}", offset);
    }
    prop_assert_eq!(p.entry(start.wrapping_sub(1)), None);
    prop_assert_eq!(p.entry(m.next), None);
    // Delivery counts never decrease while an offset is in the window.
    for (offset, (_, count)) in m.offsets.range(start..m.next) {
        let seen = counts.entry(*offset).or_insert(0);
        prop_assert!(
            *count >= *seen,
            "count of {} went from {} to {}",
            offset,
            seen,
            count
        );
        *seen = *count;
    }
    // The counts add up: every offset of [start, end) is waiting, in flight, being
    // dead-lettered or done.
    let window = m.offsets.range(start..m.next).map(|(_, (s, _))| s);
    let (mut available, mut held, mut dead_lettering, mut done) = (0, 0, 0, 0);
    for state in window {
        match state {
            State::Available { .. } => available += 1,
            State::Held { .. } => held += 1,
            State::DeadLettering { .. } => dead_lettering += 1,
            State::Accepted | State::Archived => done += 1,
        }
    }
    let never_delivered = m.end.saturating_sub(m.next);
    prop_assert_eq!(p.in_flight(), held);
    prop_assert_eq!(p.done_in_window(), done);
    prop_assert_eq!(p.waiting(m.end), available + never_delivered);
    prop_assert_eq!(
        p.waiting(m.end) + p.in_flight() + dead_lettering + p.done_in_window(),
        m.end.saturating_sub(start)
    );
    prop_assert_eq!(p.accepted, m.accepted);
    prop_assert_eq!(p.dead_lettered, m.archived);
    Ok(())
}

fn run(rules: Rules, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let holders: Vec<Holder> = (0..MEMBERS).map(|i| Arc::from(format!("m{i}"))).collect();
    let mut now = Instant::now();
    let mut p = SharePartition::new(FIRST);
    let mut m = Model {
        offsets: BTreeMap::new(),
        floor: FIRST,
        next: FIRST,
        end: FIRST,
        accepted: 0,
        archived: 0,
    };
    let mut ever_accepted = BTreeSet::new();
    let mut last_start = FIRST;
    let mut counts = BTreeMap::new();
    for op in ops {
        match op {
            Op::Append(n) => m.end += n,
            Op::Acquire { member, max } => {
                let start = m.start();
                let mut expected: Vec<(u64, u32)> = m
                    .offsets
                    .range(start..m.next)
                    .filter(|(_, (s, _))| matches!(s, State::Available { not_before } if not_before.is_none_or(|t| t <= now)))
                    .map(|(o, (_, c))| (*o, c + 1))
                    .take(max as usize)
                    .collect();
                let mut next = m.next;
                while expected.len() < max as usize && next < m.end && next - start < MAX_WINDOW {
                    expected.push((next, 1));
                    next += 1;
                }
                let got = p.acquire(&holders[member], max, now, now + LOCK, m.end, MAX_WINDOW);
                prop_assert_eq!(&got, &expected, "acquire by m{}", member);
                for (offset, count) in got {
                    prop_assert!(
                        !ever_accepted.contains(&offset),
                        "accepted {} delivered again",
                        offset
                    );
                    m.offsets.insert(
                        offset,
                        (
                            State::Held {
                                member,
                                deadline: now + LOCK,
                            },
                            count,
                        ),
                    );
                }
                m.next = next;
            }
            Op::Accept { member, pick } => {
                let offset = m.pick(pick, |s| matches!(s, State::Held { .. }));
                let ok = m.holds(member, offset, now);
                prop_assert_eq!(
                    p.accept(&holders[member], offset, now).is_ok(),
                    ok,
                    "accept {}",
                    offset
                );
                if ok {
                    m.set(offset, State::Accepted);
                    ever_accepted.insert(offset);
                }
            }
            Op::Release { member, pick } => {
                let offset = m.pick(pick, |s| matches!(s, State::Held { .. }));
                let expected = m
                    .holds(member, offset, now)
                    .then(|| m.release(offset, now, &rules));
                prop_assert_eq!(
                    p.release(&holders[member], offset, now, &rules).ok(),
                    expected
                );
            }
            Op::Reject { member, pick } => {
                let offset = m.pick(pick, |s| matches!(s, State::Held { .. }));
                let expected = m
                    .holds(member, offset, now)
                    .then(|| m.archive(offset, ArchiveReason::Rejected, &rules));
                prop_assert_eq!(
                    p.reject(&holders[member], offset, now, &rules).ok(),
                    expected
                );
            }
            Op::Renew { member, pick } => {
                let offset = m.pick(pick, |s| matches!(s, State::Held { .. }));
                let ok = m.holds(member, offset, now);
                prop_assert_eq!(
                    p.renew(&holders[member], offset, now, now + LOCK).is_ok(),
                    ok
                );
                if ok {
                    m.set(
                        offset,
                        State::Held {
                            member,
                            deadline: now + LOCK,
                        },
                    );
                }
            }
            Op::Advance(ms) => now += Duration::from_millis(ms),
            Op::Expire | Op::Leave(_) => {
                let leaving = match op {
                    Op::Leave(member) => Some(member),
                    _ => None,
                };
                let due: Vec<(u64, usize)> = m
                    .offsets
                    .iter()
                    .filter_map(|(o, (s, _))| match s {
                        State::Held { member, deadline }
                            if *deadline <= now || leaving == Some(*member) =>
                        {
                            Some((*o, *member))
                        }
                        _ => None,
                    })
                    .collect();
                let expected: Vec<(u64, Holder, Released)> = due
                    .into_iter()
                    .map(|(o, member)| (o, Arc::clone(&holders[member]), m.release(o, now, &rules)))
                    .collect();
                let leaving = leaving.map(|member| &*holders[member]);
                prop_assert_eq!(p.release_expired(now, leaving, &rules), expected);
            }
            Op::StartDeadLetters { one } => {
                let waiting = |s: &State| matches!(s, State::DeadLettering { started: false, .. });
                let targets: Vec<u64> = match one {
                    Some(pick) => vec![m.pick(pick, waiting)],
                    None => m
                        .offsets
                        .iter()
                        .filter(|(_, (s, _))| waiting(s))
                        .map(|(o, _)| *o)
                        .collect(),
                };
                let mut expected = Vec::new();
                for offset in &targets {
                    if let Some((
                        State::DeadLettering {
                            reason,
                            started: false,
                        },
                        count,
                    )) = m.offsets.get(offset).cloned()
                    {
                        expected.push((*offset, count, reason));
                        m.set(
                            *offset,
                            State::DeadLettering {
                                reason,
                                started: true,
                            },
                        );
                    }
                }
                if one.is_some() {
                    let got = p.start_dead_letter(targets[0]);
                    prop_assert_eq!(got, expected.first().map(|(_, c, r)| (*c, *r)));
                } else {
                    prop_assert_eq!(p.start_dead_letters(), expected);
                }
            }
            Op::DeadLettered { pick, appended } => {
                let offset = m.pick(pick, |s| matches!(s, State::DeadLettering { .. }));
                let expected = match m.offsets.get(&offset) {
                    Some((State::DeadLettering { reason, .. }, _)) if offset >= m.start() => {
                        let reason = *reason;
                        if appended {
                            m.set(offset, State::Archived);
                        } else {
                            m.set(
                                offset,
                                State::DeadLettering {
                                    reason,
                                    started: false,
                                },
                            );
                        }
                        appended
                    }
                    _ => false,
                };
                prop_assert_eq!(p.dead_lettered(offset, appended), expected);
            }
            Op::SkipTo(k) => {
                // Retention or reclaim: never past the high watermark.
                let start = m.start();
                let log_start = (start + k).min(m.end);
                let expected: Option<Vec<Holder>> = (log_start > start).then(|| {
                    m.offsets
                        .range(start..log_start)
                        .filter_map(|(_, (s, _))| match s {
                            State::Held { member, .. } => Some(Arc::clone(&holders[*member])),
                            _ => None,
                        })
                        .collect()
                });
                prop_assert_eq!(p.skip_to(log_start), expected.clone());
                if expected.is_some() {
                    m.offsets = m.offsets.split_off(&log_start);
                    m.floor = log_start;
                    m.next = m.next.max(log_start);
                }
            }
            Op::Restart => {
                // The durable view: the start, the counters, and each delivered offset of
                // the window with its count and, once done, how it ended.
                let start = m.start();
                let entries: Vec<(u64, u32, Option<Outcome>)> = m
                    .offsets
                    .range(start..m.next)
                    .filter(|(_, (s, c))| *c > 0 || s.is_done())
                    .map(|(o, (s, c))| {
                        let done = match s {
                            State::Accepted => Some(Outcome::Accepted),
                            State::Archived => Some(Outcome::Archived),
                            State::DeadLettering {
                                reason: ArchiveReason::Rejected,
                                ..
                            } => Some(Outcome::Rejected),
                            _ => None,
                        };
                        (*o, *c, done)
                    })
                    .collect();
                let (restored, archived) =
                    SharePartition::restore(start, m.accepted, m.archived, entries.clone(), &rules);
                // In flight, released, or awaiting a dead-letter append: available again with
                // its count, unless the count reached the limit.
                let mut expected_archived = Vec::new();
                let last = entries.last().map_or(start, |e| e.0 + 1);
                m.offsets = m.offsets.split_off(&start);
                m.offsets.retain(|o, _| *o < last);
                m.floor = start;
                m.next = last;
                let offsets: Vec<u64> = m.offsets.keys().copied().collect();
                for offset in offsets {
                    let (state, count) = m.offsets[&offset].clone();
                    if state.is_done() {
                        continue;
                    }
                    let state = if let State::DeadLettering {
                        reason: ArchiveReason::Rejected,
                        ..
                    } = state
                    {
                        // Rejected: its dead letter still to be appended.
                        State::DeadLettering {
                            reason: ArchiveReason::Rejected,
                            started: false,
                        }
                    } else if count > 0 && count >= rules.delivery_attempt_limit {
                        if rules.dead_letter {
                            State::DeadLettering {
                                reason: ArchiveReason::DeliveryLimit,
                                started: false,
                            }
                        } else {
                            expected_archived.push(offset);
                            State::Archived
                        }
                    } else {
                        State::Available { not_before: None }
                    };
                    m.set(offset, state);
                }
                prop_assert_eq!(archived, expected_archived);
                p = restored;
            }
        }
        check(&p, &m, &holders, &mut last_start, &mut counts)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_window_matches_the_model(rules in rules(), ops in proptest::collection::vec(op(), 1..120)) {
        run(rules, ops)?;
    }
}
