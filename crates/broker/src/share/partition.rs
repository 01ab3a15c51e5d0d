//! The in-flight state of one share-partition: a partition as one share group reads it.
//!
//! Every offset below the start offset (Kafka's SPSO) is done: accepted, archived, or before
//! the group began reading. Every offset in `[start, next)` has a [`Slot`]; `next` is the
//! first offset never acquired. The window `next - start` is at most
//! `share.max_in_flight_per_partition`, so the memory of a share-partition is bounded.
//!
//! Invariants: `start <= next`; `slots` holds exactly the offsets `start..next`; the slot at
//! `start`, if any, is not done (the start moves past done slots as soon as they are done).
//!
//! Pure state: no I/O and no clock of its own, so it can be tested (and model-tested) alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use crate::share::state_record::Outcome;

/// Who holds a record: a member's id.
pub(crate) type Holder = Arc<str>;

/// Why a record is archived rather than delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveReason {
    /// A member rejected it.
    Rejected,
    /// It was delivered `share.delivery.attempt.limit` times without being accepted.
    DeliveryLimit,
}

impl ArchiveReason {
    /// The value of the `sluice.dlq.reason` header.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ArchiveReason::Rejected => "rejected",
            ArchiveReason::DeliveryLimit => "delivery-limit",
        }
    }
}

/// The state of one offset of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Offered to the next acquire, once `not_before` (a redelivery backoff) has passed.
    Available {
        /// Not offered before this.
        not_before: Option<Instant>,
    },
    /// Held by a member until `deadline`.
    Acquired {
        /// The member.
        holder: Holder,
        /// When its lock expires.
        deadline: Instant,
    },
    /// To be appended to the dead-letter topic, then archived; `started` once the append is
    /// under way.
    DeadLettering {
        /// Why.
        reason: ArchiveReason,
        /// Whether an append is under way.
        started: bool,
    },
    /// Accepted: done.
    Accepted,
    /// Rejected or past the delivery limit (and dead-lettered, if the group has a
    /// dead-letter topic): done.
    Archived,
}

impl Slot {
    fn is_done(&self) -> bool {
        matches!(self, Slot::Accepted | Slot::Archived)
    }
}

/// One offset of the window: its state and how often it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its state.
    pub(crate) slot: Slot,
    /// Deliveries so far (the current one included while acquired).
    pub(crate) delivery_count: u32,
}

/// The outcome of a release (by a member, a lock expiry or a member leaving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// Available again.
    Available,
    /// Past the delivery limit: to be dead-lettered ([`Slot::DeadLettering`]).
    DeadLetter,
    /// Past the delivery limit without a dead-letter topic: archived at once.
    Archived,
}

/// What a share-partition's records may do: the group's settings that apply to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// Deliveries after which a released record is archived.
    pub(crate) delivery_attempt_limit: u32,
    /// Whether archived records go to a dead-letter topic first.
    pub(crate) dead_letter: bool,
    /// How long a released record waits before it is offered again.
    pub(crate) redelivery_backoff: std::time::Duration,
}

impl Rules {
    /// The rules of a group with `settings`.
    pub(crate) fn of(settings: &crate::share::ShareGroupSettings) -> Rules {
        Rules {
            delivery_attempt_limit: settings.delivery_attempt_limit,
            dead_letter: settings.dead_letter_topic.is_some(),
            redelivery_backoff: settings.redelivery_backoff,
        }
    }
}

/// Why an acknowledgement or renewal does not apply.
pub(crate) type NotHeld = &'static str;

/// A share-partition's in-flight state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SharePartition {
    start: u64,
    next: u64,
    slots: BTreeMap<u64, Entry>,
    /// Records accepted since the group was created.
    pub(crate) accepted: u64,
    /// Records archived (rejected or past the limit) since the group was created.
    pub(crate) dead_lettered: u64,
    /// Slots in `Acquired`.
    acquired: u64,
    /// Slots that are done (above the start, behind a slot that is not).
    done: u64,
    /// Slots in `DeadLettering`.
    dead_lettering: u64,
}

impl SharePartition {
    /// A share-partition starting at `start`, with nothing in flight.
    pub(crate) fn new(start: u64) -> SharePartition {
        SharePartition {
            start,
            next: start,
            slots: BTreeMap::new(),
            accepted: 0,
            dead_lettered: 0,
            acquired: 0,
            done: 0,
            dead_lettering: 0,
        }
    }

    /// A share-partition as the durable state left it: `entries` (offset, delivery count,
    /// outcome once acknowledged) are the offsets at and above `start` that were delivered.
    /// Records that were in flight are available again with their delivery counts, or
    /// headed for archiving when they reached the limit; rejected ones still headed for the
    /// dead-letter topic stay headed there. Also returns the offsets archived here (past the
    /// limit or rejected, without a dead-letter topic), for the caller to write down.
    pub(crate) fn restore(
        start: u64,
        accepted: u64,
        dead_lettered: u64,
        entries: impl IntoIterator<Item = (u64, u32, Option<Outcome>)>,
        rules: &Rules,
    ) -> (SharePartition, Vec<u64>) {
        let mut partition = SharePartition {
            accepted,
            dead_lettered,
            ..SharePartition::new(start)
        };
        let mut archived = Vec::new();
        for (offset, delivery_count, done) in entries {
            if offset < partition.next {
                continue;
            }
            // Offsets never delivered (a gap) are available with no deliveries.
            while partition.next < offset {
                partition.push(Slot::Available { not_before: None }, 0);
            }
            let reason = match done {
                Some(Outcome::Rejected) => Some(ArchiveReason::Rejected),
                None if delivery_count >= rules.delivery_attempt_limit => {
                    Some(ArchiveReason::DeliveryLimit)
                }
                _ => None,
            };
            let slot = match (done, reason) {
                (Some(Outcome::Accepted), _) => Slot::Accepted,
                (Some(Outcome::Archived), _) => Slot::Archived,
                (_, Some(reason)) if rules.dead_letter => Slot::DeadLettering {
                    reason,
                    started: false,
                },
                // Archived for want of a dead-letter topic: the caller writes it down.
                (_, Some(_)) => {
                    archived.push(offset);
                    partition.dead_lettered += 1;
                    Slot::Archived
                }
                (_, None) => Slot::Available { not_before: None },
            };
            match slot {
                Slot::Accepted | Slot::Archived => partition.done += 1,
                Slot::DeadLettering { .. } => partition.dead_lettering += 1,
                _ => {}
            }
            partition.push(slot, delivery_count);
        }
        partition.advance();
        (partition, archived)
    }

    fn push(&mut self, slot: Slot, delivery_count: u32) {
        self.slots.insert(
            self.next,
            Entry {
                slot,
                delivery_count,
            },
        );
        self.next += 1;
    }

    /// The start offset: everything below is done.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// The first offset never acquired.
    #[cfg(test)]
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// Records acquired and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> u64 {
        self.acquired
    }

    /// Records waiting to be dead-lettered (or under way).
    pub(crate) fn dead_lettering(&self) -> u64 {
        self.dead_lettering
    }

    /// Records above the start that are done already.
    #[cfg(test)]
    pub(crate) fn done_in_window(&self) -> u64 {
        self.done
    }

    /// Records waiting up to `end` (the high watermark): available, in backoff, or never
    /// delivered yet. Records being dead-lettered do not count.
    pub(crate) fn waiting(&self, end: u64) -> u64 {
        end.saturating_sub(self.start)
            .saturating_sub(self.acquired + self.done + self.dead_lettering)
    }

    /// The oldest waiting offset, if any below `end`.
    pub(crate) fn oldest_waiting(&self, end: u64) -> Option<u64> {
        self.slots
            .iter()
            .find(|(_, e)| matches!(e.slot, Slot::Available { .. }))
            .map(|(offset, _)| *offset)
            .or_else(|| (self.next < end).then_some(self.next))
    }

    /// The entry of `offset`, if in the window.
    #[cfg(test)]
    pub(crate) fn entry(&self, offset: u64) -> Option<&Entry> {
        self.slots.get(&offset)
    }

    /// Moves the start to `log_start` when retention deleted records the group had not
    /// finished with; returns `None` when it did not move, else the holders of the records
    /// dropped (one per record).
    pub(crate) fn skip_to(&mut self, log_start: u64) -> Option<Vec<Holder>> {
        if log_start <= self.start {
            return None;
        }
        let kept = self.slots.split_off(&log_start);
        let mut holders = Vec::new();
        for entry in std::mem::replace(&mut self.slots, kept).into_values() {
            match entry.slot {
                Slot::Acquired { holder, .. } => {
                    self.acquired -= 1;
                    holders.push(holder);
                }
                Slot::Accepted | Slot::Archived => self.done -= 1,
                Slot::DeadLettering { .. } => self.dead_lettering -= 1,
                Slot::Available { .. } => {}
            }
        }
        self.start = log_start;
        self.next = self.next.max(log_start);
        self.advance();
        Some(holders)
    }

    /// Acquires up to `max` records for `holder`, locked until `deadline`: first the
    /// available ones (past their backoff at `now`) in offset order, then new ones from
    /// `next`, while below `end` (the high watermark) and the window holds fewer than
    /// `max_window`. Returns each with its delivery count, this delivery included.
    pub(crate) fn acquire(
        &mut self,
        holder: &Holder,
        max: u32,
        now: Instant,
        deadline: Instant,
        end: u64,
        max_window: u64,
    ) -> Vec<(u64, u32)> {
        let mut got = Vec::new();
        let max = max as usize;
        for (offset, entry) in self.slots.iter_mut() {
            if got.len() >= max {
                break;
            }
            if let Slot::Available { not_before } = entry.slot
                && not_before.is_none_or(|t| t <= now)
            {
                entry.slot = Slot::Acquired {
                    holder: Arc::clone(holder),
                    deadline,
                };
                entry.delivery_count = entry.delivery_count.saturating_add(1);
                got.push((*offset, entry.delivery_count));
            }
        }
        while got.len() < max && self.next < end && self.next - self.start < max_window {
            got.push((self.next, 1));
            self.push(
                Slot::Acquired {
                    holder: Arc::clone(holder),
                    deadline,
                },
                1,
            );
        }
        self.acquired += got.len() as u64;
        got
    }

    /// Whether an acquire at `now` would find anything below `end` within `max_window`.
    #[cfg(test)]
    pub(crate) fn has_available(&self, now: Instant, end: u64, max_window: u64) -> bool {
        (self.next < end && self.next - self.start < max_window)
            || self.slots.values().any(|e| {
                matches!(e.slot, Slot::Available { not_before } if not_before.is_none_or(|t| t <= now))
            })
    }

    /// The earliest end of a redelivery backoff, if any record waits for one.
    pub(crate) fn next_backoff_end(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|e| match e.slot {
                Slot::Available { not_before } => not_before,
                _ => None,
            })
            .min()
    }

    /// Checks that `holder` holds `offset`, locked at `now`.
    fn held(&self, holder: &str, offset: u64, now: Instant) -> Result<(), NotHeld> {
        match self.slots.get(&offset).map(|e| &e.slot) {
            Some(Slot::Acquired {
                holder: h,
                deadline,
            }) if &**h == holder => {
                if *deadline <= now {
                    Err("its lock expired")
                } else {
                    Ok(())
                }
            }
            Some(Slot::Acquired { .. }) => Err("another member holds it"),
            Some(Slot::Accepted | Slot::Archived | Slot::DeadLettering { .. }) => {
                Err("it is acknowledged already")
            }
            Some(Slot::Available { .. }) => {
                Err("it is not acquired (its lock expired, or it was released)")
            }
            None if offset < self.start => Err("it is acknowledged already"),
            None => Err("it was never delivered"),
        }
    }

    /// Accepts a record `holder` holds.
    pub(crate) fn accept(
        &mut self,
        holder: &str,
        offset: u64,
        now: Instant,
    ) -> Result<(), NotHeld> {
        self.held(holder, offset, now)?;
        self.finish(offset, Slot::Accepted);
        Ok(())
    }

    /// Rejects a record `holder` holds: to be dead-lettered when `rules.dead_letter`,
    /// archived at once otherwise (the returned value says which).
    pub(crate) fn reject(
        &mut self,
        holder: &str,
        offset: u64,
        now: Instant,
        rules: &Rules,
    ) -> Result<Released, NotHeld> {
        self.held(holder, offset, now)?;
        self.acquired -= 1;
        Ok(self.archive(offset, ArchiveReason::Rejected, rules))
    }

    /// Releases a record `holder` holds (see [`SharePartition::release_slot`]).
    pub(crate) fn release(
        &mut self,
        holder: &str,
        offset: u64,
        now: Instant,
        rules: &Rules,
    ) -> Result<Released, NotHeld> {
        self.held(holder, offset, now)?;
        Ok(self.release_slot(offset, now, rules))
    }

    /// Extends `holder`'s lock of `offset` to `deadline`.
    pub(crate) fn renew(
        &mut self,
        holder: &str,
        offset: u64,
        now: Instant,
        deadline: Instant,
    ) -> Result<(), NotHeld> {
        self.held(holder, offset, now)?;
        if let Some(Entry {
            slot: Slot::Acquired { deadline: d, .. },
            ..
        }) = self.slots.get_mut(&offset)
        {
            *d = deadline;
        }
        Ok(())
    }

    /// Releases every record whose lock expired by `now`, and with `leaving`, every record
    /// that member holds. Returns each with its holder and outcome.
    pub(crate) fn release_expired(
        &mut self,
        now: Instant,
        leaving: Option<&str>,
        rules: &Rules,
    ) -> Vec<(u64, Holder, Released)> {
        let due: Vec<(u64, Holder)> = self
            .slots
            .iter()
            .filter_map(|(offset, e)| match &e.slot {
                Slot::Acquired { holder, deadline }
                    if *deadline <= now || leaving == Some(&**holder) =>
                {
                    Some((*offset, Arc::clone(holder)))
                }
                _ => None,
            })
            .collect();
        due.into_iter()
            .map(|(offset, holder)| {
                let released = self.release_slot(offset, now, rules);
                (offset, holder, released)
            })
            .collect()
    }

    /// Makes an acquired slot available again, or archives it when its delivery count has
    /// reached the limit.
    fn release_slot(&mut self, offset: u64, now: Instant, rules: &Rules) -> Released {
        self.acquired -= 1;
        let count = self.slots.get(&offset).map_or(0, |e| e.delivery_count);
        if count >= rules.delivery_attempt_limit {
            return self.archive(offset, ArchiveReason::DeliveryLimit, rules);
        }
        let not_before =
            (!rules.redelivery_backoff.is_zero()).then(|| now + rules.redelivery_backoff);
        if let Some(entry) = self.slots.get_mut(&offset) {
            entry.slot = Slot::Available { not_before };
        }
        Released::Available
    }

    fn archive(&mut self, offset: u64, reason: ArchiveReason, rules: &Rules) -> Released {
        if rules.dead_letter {
            if let Some(entry) = self.slots.get_mut(&offset) {
                entry.slot = Slot::DeadLettering {
                    reason,
                    started: false,
                };
                self.dead_lettering += 1;
            }
            Released::DeadLetter
        } else {
            self.acquired += 1; // finish counts it out again
            self.finish(offset, Slot::Archived);
            Released::Archived
        }
    }

    /// Records waiting to be dead-lettered and not under way yet, marked under way.
    pub(crate) fn start_dead_letters(&mut self) -> Vec<(u64, u32, ArchiveReason)> {
        let mut started = Vec::new();
        for (offset, entry) in self.slots.iter_mut() {
            if let Slot::DeadLettering {
                reason,
                started: s @ false,
            } = &mut entry.slot
            {
                *s = true;
                started.push((*offset, entry.delivery_count, *reason));
            }
        }
        started
    }

    /// Archives the records waiting to be dead-lettered and not under way (the group no
    /// longer has a dead-letter topic); returns their offsets.
    pub(crate) fn archive_dead_letters(&mut self) -> Vec<u64> {
        if self.dead_lettering == 0 {
            return Vec::new();
        }
        let waiting: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, e)| matches!(e.slot, Slot::DeadLettering { started: false, .. }))
            .map(|(offset, _)| *offset)
            .collect();
        for &offset in &waiting {
            self.dead_lettering -= 1;
            self.acquired += 1; // finish counts it out again
            self.finish(offset, Slot::Archived);
        }
        waiting
    }

    /// Archives the waiting records delivered `rules.delivery_attempt_limit` times or more
    /// (the limit was lowered): to be dead-lettered when `rules.dead_letter`, at once
    /// otherwise. Returns the offsets archived at once.
    pub(crate) fn enforce_limit(&mut self, rules: &Rules) -> Vec<u64> {
        let over: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, e)| {
                matches!(e.slot, Slot::Available { .. })
                    && e.delivery_count >= rules.delivery_attempt_limit
            })
            .map(|(offset, _)| *offset)
            .collect();
        over.into_iter()
            .filter(|&offset| {
                self.archive(offset, ArchiveReason::DeliveryLimit, rules) == Released::Archived
            })
            .collect()
    }

    /// Archives every record waiting below `end` (RabbitMQ's queue purge), counted as
    /// dead-lettered; records in flight stay. With none in flight the start moves to `end`;
    /// otherwise the never-delivered records are archived as far as `max_window` reaches.
    /// Returns the offsets archived inside the window (the caller writes them down with the
    /// new start) and how many records were purged.
    pub(crate) fn purge(&mut self, end: u64, max_window: u64) -> (Vec<u64>, u64) {
        if self.acquired == 0 && self.dead_lettering == 0 {
            let purged = self.waiting(end);
            self.slots.clear();
            self.done = 0;
            self.start = self.start.max(end);
            self.next = self.start;
            self.dead_lettered += purged;
            return (Vec::new(), purged);
        }
        let mut archived: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, e)| matches!(e.slot, Slot::Available { .. }))
            .map(|(offset, _)| *offset)
            .collect();
        for &offset in &archived {
            self.acquired += 1; // finish counts it out again
            self.finish(offset, Slot::Archived);
        }
        while self.next < end && self.next - self.start < max_window {
            archived.push(self.next);
            self.push(Slot::Archived, 0);
            self.done += 1;
            self.dead_lettered += 1;
        }
        self.advance();
        let purged = archived.len() as u64;
        archived.retain(|offset| *offset >= self.start);
        (archived, purged)
    }

    /// Marks one record under way to the dead-letter topic (after a reject), if it is
    /// waiting for it.
    pub(crate) fn start_dead_letter(&mut self, offset: u64) -> Option<(u32, ArchiveReason)> {
        let entry = self.slots.get_mut(&offset)?;
        match &mut entry.slot {
            Slot::DeadLettering {
                reason,
                started: s @ false,
            } => {
                *s = true;
                Some((entry.delivery_count, *reason))
            }
            _ => None,
        }
    }

    /// How a dead-letter append went: archived on success, back to waiting for the next
    /// try on failure. Returns whether the record was archived.
    pub(crate) fn dead_lettered(&mut self, offset: u64, appended: bool) -> bool {
        let Some(entry) = self.slots.get_mut(&offset) else {
            return false;
        };
        let Slot::DeadLettering { started, .. } = &mut entry.slot else {
            return false;
        };
        if !appended {
            *started = false;
            return false;
        }
        self.dead_lettering -= 1;
        self.acquired += 1; // finish counts it out again
        self.finish(offset, Slot::Archived);
        true
    }

    /// Marks an acquired slot done and moves the start past the done slots at its front.
    fn finish(&mut self, offset: u64, done: Slot) {
        match done {
            Slot::Accepted => self.accepted += 1,
            _ => self.dead_lettered += 1,
        }
        self.acquired -= 1;
        if let Some(entry) = self.slots.get_mut(&offset) {
            entry.slot = done;
            self.done += 1;
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(entry) = self.slots.first_entry() {
            if *entry.key() != self.start || !entry.get().slot.is_done() {
                break;
            }
            entry.remove();
            self.done -= 1;
            self.start += 1;
        }
        if self.slots.is_empty() {
            self.start = self.start.max(self.next);
            self.next = self.start;
        }
    }
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const RULES: Rules = Rules {
        delivery_attempt_limit: 3,
        dead_letter: false,
        redelivery_backoff: Duration::ZERO,
    };

    fn holder(name: &str) -> Holder {
        Arc::from(name)
    }

    #[test]
    fn accepting_moves_the_start_past_the_done_prefix() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let a = holder("a");
        let mut p = SharePartition::new(10);
        assert_eq!(
            p.acquire(&a, 3, now, later, 100, 1000),
            [(10, 1), (11, 1), (12, 1)]
        );
        assert_eq!((p.in_flight(), p.waiting(100)), (3, 87));
        assert_eq!(p.accept("a", 11, now), Ok(()));
        assert_eq!(p.start(), 10, "10 is still in flight");
        assert_eq!(p.accept("a", 10, now), Ok(()));
        assert_eq!(p.start(), 12);
        assert_eq!(p.accept("a", 10, now), Err("it is acknowledged already"));
        assert_eq!(p.accept("b", 12, now), Err("another member holds it"));
        assert_eq!(p.accept("a", 13, now), Err("it was never delivered"));
        assert_eq!(p.accept("a", 12, now), Ok(()));
        assert_eq!((p.start(), p.next(), p.in_flight()), (13, 13, 0));
        assert_eq!(p.accepted, 3);
    }

    #[test]
    fn released_records_come_back_with_their_count_until_the_limit() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let a = holder("a");
        let mut p = SharePartition::new(0);
        for delivery in 1..=3 {
            assert_eq!(p.acquire(&a, 1, now, later, 1, 10), [(0, delivery)]);
            let released = p.release("a", 0, now, &RULES);
            let expected = if delivery < 3 {
                Released::Available
            } else {
                Released::Archived
            };
            assert_eq!(released, Ok(expected));
        }
        assert_eq!((p.start(), p.dead_lettered), (1, 1));
        assert!(p.acquire(&a, 1, now, later, 1, 10).is_empty());
    }

    #[test]
    fn expired_locks_and_leaving_members_release() {
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let later = now + Duration::from_secs(30);
        let (a, b) = (holder("a"), holder("b"));
        let mut p = SharePartition::new(0);
        p.acquire(&a, 2, now, soon, 10, 10);
        p.acquire(&b, 2, now, later, 10, 10);
        assert_eq!(p.renew("a", 1, now, later), Ok(()));
        let released = p.release_expired(soon, None, &RULES);
        assert_eq!(released, [(0, a.clone(), Released::Available)]);
        assert_eq!(
            p.accept("a", 0, soon),
            Err("it is not acquired (its lock expired, or it was released)")
        );
        let left = p.release_expired(soon, Some("b"), &RULES);
        assert_eq!(left.len(), 2);
        assert_eq!(p.in_flight(), 1);
        // Redelivered: the lowest offsets first, counts kept.
        assert_eq!(
            p.acquire(&a, 10, soon, later, 5, 10),
            [(0, 2), (2, 2), (3, 2), (4, 1)]
        );
    }

    #[test]
    fn the_window_bounds_what_is_acquired_and_backoff_delays_redelivery() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let a = holder("a");
        let mut p = SharePartition::new(0);
        assert_eq!(p.acquire(&a, 10, now, later, 100, 4).len(), 4);
        assert!(!p.has_available(now, 100, 4));
        let rules = Rules {
            redelivery_backoff: Duration::from_secs(5),
            ..RULES
        };
        assert_eq!(p.release("a", 1, now, &rules), Ok(Released::Available));
        assert!(p.acquire(&a, 10, now, later, 100, 4).is_empty());
        assert_eq!(p.next_backoff_end(), Some(now + Duration::from_secs(5)));
        let after = now + Duration::from_secs(5);
        assert!(p.has_available(after, 100, 4));
        assert_eq!(p.acquire(&a, 10, after, later, 100, 4), [(1, 2)]);
    }

    #[test]
    fn rejects_with_a_dead_letter_topic_wait_for_the_append() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let a = holder("a");
        let rules = Rules {
            dead_letter: true,
            ..RULES
        };
        let mut p = SharePartition::new(0);
        p.acquire(&a, 2, now, later, 2, 10);
        assert_eq!(p.reject("a", 0, now, &rules), Ok(Released::DeadLetter));
        assert_eq!(p.start(), 0);
        assert_eq!(p.start_dead_letter(0), Some((1, ArchiveReason::Rejected)));
        assert_eq!(p.start_dead_letter(0), None, "under way already");
        assert!(!p.dead_lettered(0, false));
        assert_eq!(
            p.start_dead_letters(),
            [(0, 1, ArchiveReason::Rejected)],
            "retried"
        );
        assert!(p.dead_lettered(0, true));
        assert_eq!((p.start(), p.dead_lettered, p.in_flight()), (1, 1, 1));
    }

    #[test]
    fn restore_makes_in_flight_records_available_with_their_counts() {
        let entries = [
            (5, 1, Some(Outcome::Accepted)),
            (6, 2, None),
            (7, 3, None),
            (8, 1, Some(Outcome::Archived)),
        ];
        let (p, archived) = SharePartition::restore(5, 4, 2, entries, &RULES);
        assert_eq!(archived, [7]);
        assert_eq!(p.dead_lettered, 3);
        assert_eq!((p.start(), p.next()), (6, 9));
        assert_eq!(
            p.entry(6),
            Some(&Entry {
                slot: Slot::Available { not_before: None },
                delivery_count: 2
            })
        );
        assert_eq!(p.entry(7).map(|e| &e.slot), Some(&Slot::Archived));
        assert_eq!(p.done_in_window(), 2);
    }

    #[test]
    fn restore_keeps_rejects_headed_for_the_dead_letter_topic() {
        let entries = [(0, 1, Some(Outcome::Rejected)), (1, 3, None)];
        let with_dlq = Rules {
            dead_letter: true,
            ..RULES
        };
        let (mut p, archived) = SharePartition::restore(0, 0, 0, entries, &with_dlq);
        assert!(archived.is_empty());
        assert_eq!(
            p.start_dead_letters(),
            [
                (0, 1, ArchiveReason::Rejected),
                (1, 3, ArchiveReason::DeliveryLimit)
            ]
        );
        // Without a dead-letter topic (it was removed), both are archived at once.
        let (p, archived) = SharePartition::restore(0, 0, 0, entries, &RULES);
        assert_eq!(archived, [0, 1]);
        assert_eq!((p.start(), p.dead_lettered), (2, 2));
    }

    #[test]
    fn a_lowered_limit_archives_the_records_that_reached_it() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let a = holder("a");
        let mut p = SharePartition::new(0);
        p.acquire(&a, 3, now, later, 3, 10);
        for offset in [0, 1] {
            assert_eq!(p.release("a", offset, now, &RULES), Ok(Released::Available));
        }
        let lowered = Rules {
            delivery_attempt_limit: 1,
            ..RULES
        };
        // 0 and 1 wait with one delivery each; 2 is held and keeps its lock.
        assert_eq!(p.enforce_limit(&lowered), [0, 1]);
        assert_eq!((p.start(), p.dead_lettered, p.in_flight()), (2, 2, 1));
    }

    #[test]
    fn a_purge_archives_what_waits_and_keeps_what_is_in_flight() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let a = holder("a");
        let mut p = SharePartition::new(0);
        assert_eq!(p.purge(5, 10), (Vec::new(), 5));
        assert_eq!((p.start(), p.next(), p.dead_lettered), (5, 5, 5));
        p.acquire(&a, 2, now, later, 10, 10);
        assert_eq!(p.release("a", 6, now, &RULES), Ok(Released::Available));
        // 5 is held; 6 (released) and 7..10 wait; the window reaches 9.
        let (archived, purged) = p.purge(10, 4);
        assert_eq!((archived, purged), (vec![6, 7, 8], 3));
        assert_eq!((p.start(), p.next(), p.in_flight()), (5, 9, 1));
        assert_eq!(p.waiting(10), 1);
    }

    #[test]
    fn retention_skips_the_start_forward() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let a = holder("a");
        let mut p = SharePartition::new(0);
        p.acquire(&a, 5, now, later, 10, 10);
        assert_eq!(p.skip_to(3).map(|h| h.len()), Some(3));
        assert_eq!((p.start(), p.next(), p.in_flight()), (3, 5, 2));
        assert!(p.skip_to(2).is_none());
        assert!(p.skip_to(20).is_some());
        assert_eq!((p.start(), p.next(), p.in_flight()), (20, 20, 0));
    }
}
