//! What one partition knows of each idempotent producer: its epoch and its last batches, and
//! how a new batch is judged against them (Kafka's rules, from its headers alone).

use std::collections::{HashMap, VecDeque};

use sluice_storage::AppendInfo;
use sluice_storage::batch::BatchHeader;

/// Batches remembered per producer: Kafka's bound on a producer's requests in flight
/// (`max.in.flight.requests.per.connection` may be at most 5 with idempotence), so every
/// batch a producer may retry is among them.
pub(crate) const TRACKED_BATCHES: usize = 5;

/// Where one batch of a producer was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    /// Sequence number of its first record.
    pub(crate) first_seq: i32,
    /// Sequence number of its last record.
    pub(crate) last_seq: i32,
    /// Offset of its first record.
    pub(crate) base_offset: u64,
    /// Its records minus one.
    pub(crate) last_offset_delta: i32,
    /// Its largest record timestamp.
    pub(crate) max_timestamp: i64,
}

impl BatchMeta {
    fn of(header: &BatchHeader) -> BatchMeta {
        BatchMeta {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset_delta: header.last_offset_delta,
            max_timestamp: header.max_timestamp,
        }
    }

    /// Offset of its last record.
    pub(crate) fn last_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.last_offset_delta.unsigned_abs()))
    }
}

/// One producer as a partition knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    /// Its latest epoch.
    pub(crate) epoch: i16,
    /// Its last batches of `epoch`, oldest first; never empty, at most [`TRACKED_BATCHES`].
    pub(crate) batches: VecDeque<BatchMeta>,
    /// Broker wall-clock ms of its last batch (of the recovery, for batches found by a scan).
    pub(crate) last_seen_ms: i64,
}

impl ProducerEntry {
    /// Its last batch.
    fn last(&self) -> Option<&BatchMeta> {
        self.batches.back()
    }

    /// The sequence its next batch must start at.
    fn next_seq(&self) -> i32 {
        self.last().map_or(0, |b| next_seq(b.last_seq))
    }
}

/// The sequence number after `seq`: Kafka's sequences wrap from `i32::MAX` to 0.
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

/// How long producers are remembered and how many are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// `producer.id.expiration.ms`.
    pub(crate) expiration_ms: i64,
    /// Most producers tracked.
    pub(crate) max_producers: usize,
}

/// Why a batch was refused, before it is named with its topic and partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its epoch is older than the producer's latest.
    Fenced {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// Its first sequence does not follow the producer's last (0 for a new epoch).
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        expected: i32,
    },
    /// One append mixes batches stored before with new ones.
    Mixed {
        producer_id: i64,
        duplicate: usize,
        new: usize,
    },
}

/// What to do with an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its batches are new: write them.
    Write,
    /// Every batch of it was stored before: answer with where, write nothing.
    Duplicate(AppendInfo),
    /// Write nothing and answer with the refusal.
    Refuse(Refusal),
}

/// Every idempotent producer one partition tracks.
#[derive(Debug)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    bounds: Bounds,
    /// Changed by every change of `producers`: snapshots are written only when it moved.
    version: u64,
}

impl ProducerState {
    /// No producers yet.
    pub(crate) fn new(bounds: Bounds) -> ProducerState {
        ProducerState {
            producers: HashMap::new(),
            bounds,
            version: 0,
        }
    }

    /// The state a snapshot held, less producers expired by `now_ms` (the newest kept when
    /// there are more than the cap).
    pub(crate) fn from_entries(
        bounds: Bounds,
        entries: Vec<(i64, ProducerEntry)>,
        now_ms: i64,
    ) -> ProducerState {
        let mut state = ProducerState::new(bounds);
        let mut live: Vec<_> = entries
            .into_iter()
            .filter(|(_, e)| !state.expired(e, now_ms) && !e.batches.is_empty())
            .collect();
        if live.len() > bounds.max_producers {
            live.sort_unstable_by_key(|(_, e)| std::cmp::Reverse(e.last_seen_ms));
            live.truncate(bounds.max_producers);
        }
        state.producers.extend(live);
        state
    }

    /// Changes so far (see `version`).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// How many producers are tracked.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// The largest producer id tracked.
    pub(crate) fn max_producer_id(&self) -> Option<i64> {
        self.producers.keys().copied().max()
    }

    /// Every producer not expired by `now_ms`, for a snapshot.
    pub(crate) fn entries(&self, now_ms: i64) -> Vec<(i64, ProducerEntry)> {
        self.producers
            .iter()
            .filter(|(_, e)| !self.expired(e, now_ms))
            .map(|(id, e)| (*id, e.clone()))
            .collect()
    }

    fn expired(&self, entry: &ProducerEntry, now_ms: i64) -> bool {
        now_ms.saturating_sub(entry.last_seen_ms) >= self.bounds.expiration_ms
    }

    /// The producer, unless it is unknown or expired.
    fn live(&self, producer_id: i64, now_ms: i64) -> Option<&ProducerEntry> {
        self.producers
            .get(&producer_id)
            .filter(|e| !self.expired(e, now_ms))
    }

    /// Judges the batches of one append (already validated) in order, each against the
    /// producer as the batches before it in the append would leave it, as Kafka does:
    ///
    /// - a batch without a producer id is always new;
    /// - a producer unknown here (or expired) may start at any sequence (Kafka 2.5 and later,
    ///   KIP-360);
    /// - an epoch older than the producer's latest is fenced;
    /// - a batch of the latest epoch whose first and last sequences equal those of one of
    ///   the producer's last [`TRACKED_BATCHES`] batches is a duplicate of it;
    /// - a newer epoch must start at sequence 0; the latest epoch must continue at the
    ///   sequence after the last one (with wrap from `i32::MAX` to 0).
    ///
    /// The append is written only when every batch is new, answered as a duplicate only when
    /// every batch is one, and refused otherwise.
    pub(crate) fn judge(&self, batches: &[u8], now_ms: i64) -> Verdict {
        // (producer id, epoch, last sequence) of the new batches so far.
        let mut pending: Vec<(i64, i16, i32)> = Vec::new();
        let mut duplicates: Vec<(usize, i64, BatchMeta)> = Vec::new();
        let mut first_new = None;
        for (index, header) in headers(batches).enumerate() {
            let id = header.producer_id;
            if id < 0 {
                first_new.get_or_insert((index, id));
                continue;
            }
            let (epoch, first) = (header.producer_epoch, header.base_sequence);
            let out_of_order = |expected| {
                Verdict::Refuse(Refusal::OutOfOrder {
                    producer_id: id,
                    epoch,
                    sequence: first,
                    expected,
                })
            };
            let before = pending.iter().rev().find(|(p, ..)| *p == id);
            let (known_epoch, expected) = match (before, self.live(id, now_ms)) {
                (Some(&(_, known, last)), _) => (known, next_seq(last)),
                (None, Some(entry)) => {
                    if epoch == entry.epoch
                        && let Some(stored) = entry
                            .batches
                            .iter()
                            .find(|b| b.first_seq == first && b.last_seq == header.last_sequence())
                    {
                        duplicates.push((index, id, *stored));
                        continue;
                    }
                    (entry.epoch, entry.next_seq())
                }
                // Unknown: any sequence starts it.
                (None, None) => (epoch, first),
            };
            if epoch < known_epoch {
                return Verdict::Refuse(Refusal::Fenced {
                    producer_id: id,
                    epoch,
                    current_epoch: known_epoch,
                });
            }
            if epoch > known_epoch && first != 0 {
                return out_of_order(0);
            }
            if epoch == known_epoch && first != expected {
                return out_of_order(expected);
            }
            pending.push((id, epoch, header.last_sequence()));
            first_new.get_or_insert((index, id));
        }
        match (duplicates.first(), first_new) {
            (None, _) => Verdict::Write,
            (Some(&(duplicate, producer_id, _)), Some((new, _))) => {
                Verdict::Refuse(Refusal::Mixed {
                    producer_id,
                    duplicate,
                    new,
                })
            }
            (Some(&(_, _, first)), None) => {
                let last = duplicates.last().map_or(first, |d| d.2);
                Verdict::Duplicate(AppendInfo {
                    base_offset: first.base_offset,
                    last_offset: last.last_offset(),
                    record_count: duplicates
                        .iter()
                        .map(|d| u64::from(d.2.last_offset_delta.unsigned_abs()) + 1)
                        .sum(),
                    max_timestamp: duplicates
                        .iter()
                        .map(|d| d.2.max_timestamp)
                        .max()
                        .unwrap_or(first.max_timestamp),
                })
            }
        }
    }

    /// Records the idempotent batches of a written append (their base offsets set), seen at
    /// `now_ms`.
    pub(crate) fn record_append(&mut self, batches: &[u8], now_ms: i64) {
        for header in headers(batches) {
            if header.producer_id >= 0 {
                self.record(&header, now_ms);
            }
        }
    }

    /// Records a batch found by a recovery scan, unless the state already knows it or a
    /// later batch of its producer (a snapshot may be a little ahead of where its scan
    /// starts).
    pub(crate) fn restore(&mut self, header: &BatchHeader, now_ms: i64) {
        let known = self
            .producers
            .get(&header.producer_id)
            .and_then(ProducerEntry::last)
            .is_some_and(|last| last.base_offset >= header.base_offset);
        if !known {
            self.record(header, now_ms);
        }
    }

    /// Makes `header`'s batch the producer's last one. A new epoch starts its list of batches
    /// afresh, as does a producer that had expired; a new producer beyond the cap takes the
    /// place of the least recently seen one.
    fn record(&mut self, header: &BatchHeader, now_ms: i64) {
        let id = header.producer_id;
        let expired = self.producers.get(&id).map(|e| self.expired(e, now_ms));
        match expired {
            None => self.make_room(now_ms),
            Some(true) => {
                self.producers.remove(&id);
            }
            Some(false) => {}
        }
        let entry = self.producers.entry(id).or_insert_with(|| ProducerEntry {
            epoch: header.producer_epoch,
            batches: VecDeque::with_capacity(TRACKED_BATCHES),
            last_seen_ms: now_ms,
        });
        if entry.epoch != header.producer_epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == TRACKED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta::of(header));
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        self.version += 1;
    }

    /// Makes room for one more producer: drops the expired ones, then the least recently
    /// seen while the cap is reached.
    fn make_room(&mut self, now_ms: i64) {
        if self.producers.len() < self.bounds.max_producers {
            return;
        }
        self.expire(now_ms);
        while self.producers.len() >= self.bounds.max_producers {
            let Some(oldest) = self
                .producers
                .iter()
                .min_by_key(|(_, e)| e.last_seen_ms)
                .map(|(id, _)| *id)
            else {
                return;
            };
            self.producers.remove(&oldest);
            self.version += 1;
        }
    }

    /// Forgets producers not heard from within `producer.id.expiration.ms` of `now_ms`;
    /// returns how many.
    pub(crate) fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        let bounds = self.bounds;
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) < bounds.expiration_ms);
        let expired = before - self.producers.len();
        if expired > 0 {
            self.version += 1;
        }
        expired
    }

    /// Forgets batches at or past `end` (a log end that recovery cut back below what a
    /// snapshot had seen), and producers left without batches. A producer's epoch is that of
    /// its remaining batches: an epoch is only ever learned with a batch.
    pub(crate) fn forget_from(&mut self, end: u64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.last_offset() < end);
            !e.batches.is_empty()
        });
    }
}

/// The headers of validated concatenated batches.
fn headers(batches: &[u8]) -> impl Iterator<Item = BatchHeader> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let header = BatchHeader::parse(batches.get(pos..)?).ok()?;
        pos += header.total_len();
        Some(header)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::RecordBatchBuilder;

    const BOUNDS: Bounds = Bounds {
        expiration_ms: 1_000,
        max_producers: 3,
    };

    /// A batch of `count` records from producer `id`, its header's base offset `offset`.
    fn batch(id: i64, epoch: i16, seq: i32, count: usize, offset: u64) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new().with_producer(id, epoch, seq);
        for i in 0..count {
            builder
                .push(100 + i as i64, None, Some(b"v"), std::iter::empty())
                .expect("push");
        }
        let mut bytes = builder.finish().expect("a batch").to_vec();
        sluice_storage::batch::set_base_offset(&mut bytes, offset);
        bytes
    }

    /// `state` after recording `bytes` at `now`.
    fn written(state: &mut ProducerState, bytes: &[u8], now: i64) {
        assert_eq!(state.judge(bytes, now), Verdict::Write);
        state.record_append(bytes, now);
    }

    fn refusal(verdict: Verdict) -> Refusal {
        match verdict {
            Verdict::Refuse(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_producer_starts_anywhere_then_continues_in_order() {
        let mut state = ProducerState::new(BOUNDS);
        written(&mut state, &batch(7, 0, 40, 3, 0), 0);
        written(&mut state, &batch(7, 0, 43, 2, 3), 0);
        assert_eq!(
            refusal(state.judge(&batch(7, 0, 46, 1, 0), 0)),
            Refusal::OutOfOrder {
                producer_id: 7,
                epoch: 0,
                sequence: 46,
                expected: 45
            }
        );
        // Below the expected sequence but not a batch it remembers: out of order too.
        assert!(matches!(
            refusal(state.judge(&batch(7, 0, 41, 2, 0), 0)),
            Refusal::OutOfOrder { expected: 45, .. }
        ));
    }

    #[test]
    fn a_remembered_batch_is_a_duplicate_with_its_offsets() {
        let mut state = ProducerState::new(BOUNDS);
        for i in 0..7 {
            written(&mut state, &batch(1, 2, i * 10, 10, 100 * i as u64), 0);
        }
        // The last five are remembered; the first two are forgotten.
        for i in 2..7 {
            let verdict = state.judge(&batch(1, 2, i * 10, 10, 0), 0);
            let Verdict::Duplicate(info) = verdict else {
                panic!("batch {i}: {verdict:?}");
            };
            assert_eq!(info.base_offset, 100 * i as u64);
            assert_eq!(info.last_offset, 100 * i as u64 + 9);
            assert_eq!(info.record_count, 10);
            assert_eq!(info.max_timestamp, 109);
        }
        assert!(matches!(
            refusal(state.judge(&batch(1, 2, 10, 10, 0), 0)),
            Refusal::OutOfOrder { expected: 70, .. }
        ));
        // Same first sequence, other last sequence: not the same batch.
        assert!(matches!(
            refusal(state.judge(&batch(1, 2, 60, 4, 0), 0)),
            Refusal::OutOfOrder { .. }
        ));
    }

    #[test]
    fn epochs_fence_older_ones_and_restart_at_zero() {
        let mut state = ProducerState::new(BOUNDS);
        written(&mut state, &batch(3, 5, 0, 2, 0), 0);
        assert_eq!(
            refusal(state.judge(&batch(3, 4, 2, 1, 0), 0)),
            Refusal::Fenced {
                producer_id: 3,
                epoch: 4,
                current_epoch: 5
            }
        );
        // A duplicate must be of the latest epoch: an older one's retry is fenced.
        assert!(matches!(
            refusal(state.judge(&batch(3, 4, 0, 2, 0), 0)),
            Refusal::Fenced { .. }
        ));
        assert_eq!(
            refusal(state.judge(&batch(3, 6, 2, 1, 0), 0)),
            Refusal::OutOfOrder {
                producer_id: 3,
                epoch: 6,
                sequence: 2,
                expected: 0
            }
        );
        written(&mut state, &batch(3, 6, 0, 1, 2), 0);
        assert!(matches!(
            refusal(state.judge(&batch(3, 5, 2, 1, 0), 0)),
            Refusal::Fenced {
                current_epoch: 6,
                ..
            }
        ));
        // The new epoch forgot the old epoch's batches.
        assert!(matches!(
            refusal(state.judge(&batch(3, 5, 0, 2, 0), 0)),
            Refusal::Fenced { .. }
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut state = ProducerState::new(BOUNDS);
        written(&mut state, &batch(9, 0, i32::MAX - 1, 2, 0), 0);
        written(&mut state, &batch(9, 0, 0, 3, 2), 0);
        let straddling = batch(9, 0, i32::MAX - 1, 4, 0);
        let mut fresh = ProducerState::new(BOUNDS);
        written(&mut fresh, &straddling, 0);
        assert!(matches!(
            refusal(fresh.judge(&batch(9, 0, 3, 1, 0), 0)),
            Refusal::OutOfOrder { expected: 2, .. }
        ));
        written(&mut fresh, &batch(9, 0, 2, 1, 4), 0);
        assert!(matches!(
            fresh.judge(&straddling, 0),
            Verdict::Duplicate(AppendInfo { base_offset: 0, .. })
        ));
    }

    #[test]
    fn an_append_of_several_batches_is_judged_batch_by_batch() {
        let mut state = ProducerState::new(BOUNDS);
        let mut two = batch(4, 0, 0, 2, 0);
        two.extend(batch(4, 0, 2, 3, 2));
        written(&mut state, &two, 0);
        let mut gap = batch(4, 0, 5, 1, 0);
        gap.extend(batch(4, 0, 7, 1, 0));
        assert!(matches!(
            refusal(state.judge(&gap, 0)),
            Refusal::OutOfOrder {
                sequence: 7,
                expected: 6,
                ..
            }
        ));
        let Verdict::Duplicate(info) = state.judge(&two, 0) else {
            panic!("a whole retry is a duplicate");
        };
        assert_eq!(
            (info.base_offset, info.last_offset, info.record_count),
            (0, 4, 5)
        );
        let mut mixed = batch(4, 0, 2, 3, 0);
        mixed.extend(batch(4, 0, 5, 1, 0));
        assert_eq!(
            refusal(state.judge(&mixed, 0)),
            Refusal::Mixed {
                producer_id: 4,
                duplicate: 0,
                new: 1
            }
        );
        // A batch without a producer beside idempotent ones is new.
        let mut plain = batch(-1, -1, -1, 1, 0);
        plain.extend(batch(4, 0, 5, 1, 0));
        assert_eq!(state.judge(&plain, 0), Verdict::Write);
    }

    #[test]
    fn producers_expire_and_the_cap_drops_the_least_recently_seen() {
        let mut state = ProducerState::new(BOUNDS);
        written(&mut state, &batch(1, 0, 0, 1, 0), 0);
        written(&mut state, &batch(2, 0, 0, 1, 1), 10);
        written(&mut state, &batch(3, 0, 0, 1, 2), 20);
        // Producer 4 takes the place of 1, the least recently seen.
        written(&mut state, &batch(4, 0, 0, 1, 3), 30);
        assert_eq!(state.len(), 3);
        assert_eq!(state.judge(&batch(1, 0, 77, 1, 0), 30), Verdict::Write);
        assert!(matches!(
            state.judge(&batch(2, 0, 77, 1, 0), 30),
            Verdict::Refuse(_)
        ));
        // Expired producers are unknown again, then forgotten.
        assert_eq!(state.judge(&batch(2, 0, 77, 1, 0), 1_010), Verdict::Write);
        assert_eq!(state.expire(1_025), 2);
        assert_eq!(state.len(), 1);
        assert_eq!(state.entries(1_025).len(), 1);
        assert_eq!(state.entries(1_030).len(), 0, "expired by then");
    }

    #[test]
    fn restoring_skips_batches_already_known_and_forget_from_trims() {
        let mut state = ProducerState::new(BOUNDS);
        let headers: Vec<BatchHeader> = (0..4)
            .map(|i| {
                BatchHeader::parse(&batch(5, 1, i * 2, 2, u64::from(i.unsigned_abs()) * 2))
                    .expect("header")
            })
            .collect();
        for header in &headers[..3] {
            state.restore(header, 0);
        }
        let before = state.entries(0);
        state.restore(&headers[1], 0);
        assert_eq!(
            state.entries(0),
            before,
            "a batch seen again changes nothing"
        );
        state.restore(&headers[3], 0);
        assert_eq!(state.entries(0)[0].1.batches.len(), 4);
        state.forget_from(5);
        let entries = state.entries(0);
        assert_eq!(entries[0].1.batches.len(), 2);
        assert_eq!(entries[0].1.next_seq(), 4);
        state.forget_from(0);
        assert_eq!(state.len(), 0);
    }
}
