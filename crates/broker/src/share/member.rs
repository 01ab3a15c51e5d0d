//! The handle of one share group member.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::journal::queue::Durable;
use crate::share::coordinator::wait_durable;
use crate::share::dead_letter;
use crate::share::group::{DeadLetter, Grab, ShareGroup};
use crate::share::partition::Holder;
use crate::share::reader::{appends, ends, read_offsets};
use crate::share::{Ack, AcquiredRecord};
use crate::{Broker, BrokerError};

/// A live member of a share group, from [`Broker::share_join`].
///
/// Dropping it (or [`ShareMember::leave`]) releases every record it still holds, their
/// delivery counts kept, exactly like a lock expiry.
#[derive(Debug)]
pub struct ShareMember {
    broker: Arc<Broker>,
    group: Arc<ShareGroup>,
    id: Holder,
}

impl ShareMember {
    pub(crate) fn new(broker: Arc<Broker>, group: Arc<ShareGroup>, id: Holder) -> ShareMember {
        ShareMember { broker, group, id }
    }

    /// The member's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group.name
    }

    /// The group's record lock duration now (what a lock taken now lasts).
    pub fn record_lock_duration(&self) -> Duration {
        self.group.state.lock().settings.record_lock_duration
    }

    fn gone(&self) -> BrokerError {
        BrokerError::ShareMemberGone {
            group: self.group.name.clone(),
            member_id: self.id.to_string(),
        }
    }

    /// Waits up to `max_wait` (capped by `limits.max_wait`) for at least one available
    /// record, then acquires up to `max_records` (bounded by the prefetch minus the records
    /// held), each locked for the group's lock duration. Empty on timeout, or when the
    /// member holds its whole prefetch and none of its locks ends meanwhile.
    ///
    /// The delivery counts are durable before the records are returned, so a crash never
    /// lets a record be delivered more often than the limit.
    pub async fn acquire(
        &self,
        max_records: u32,
        max_wait: Duration,
    ) -> Result<Vec<AcquiredRecord>, BrokerError> {
        self.acquire_from(max_records, max_wait, &|_, _| true).await
    }

    /// [`ShareMember::acquire`] from only the partitions (topic, partition) `only` admits,
    /// such as those of a Kafka share session.
    pub async fn acquire_from(
        &self,
        max_records: u32,
        max_wait: Duration,
        only: &(dyn Fn(&str, u32) -> bool + Sync),
    ) -> Result<Vec<AcquiredRecord>, BrokerError> {
        if max_records == 0 {
            return Err(BrokerError::invalid_request(
                "max_records",
                "must be at least 1",
            ));
        }
        let broker = &self.broker;
        let coordinator = &broker.share;
        let max_window = u64::from(coordinator.config.max_in_flight_per_partition);
        let deadline = Instant::now() + max_wait.min(broker.config.limits.max_wait);
        let draining = broker.draining();
        loop {
            coordinator.check_running()?;
            // Watch before looking, so a release or an append right after still wakes us.
            let woken = self.group.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let partitions: Vec<(Arc<str>, u32)> = {
                let state = self.group.state.lock();
                state
                    .partitions
                    .iter()
                    .flat_map(|(t, ps)| ps.keys().map(move |p| (Arc::clone(t), *p)))
                    .collect()
            };
            let mut appended = appends(broker, partitions);
            let now = Instant::now();
            let (grabs, durables, wake_at) = {
                let mut state = self.group.state.lock();
                if state.deleted || !state.members.contains_key(&self.id) {
                    return Err(self.gone());
                }
                let ends = |t: &str, p: u32| only(t, p).then(|| ends(broker, t, p)).flatten();
                let (grabs, records) = state.acquire(
                    &self.group.name,
                    &self.id,
                    max_records,
                    now,
                    &ends,
                    max_window,
                );
                let durables = coordinator.write(records);
                (grabs, durables, state.next_backoff_end())
            };
            if !grabs.is_empty() {
                if let Err(e) = wait_durable(&self.group.name, durables).await {
                    self.abandon(&grabs);
                    return Err(e);
                }
                return self.read(grabs).await;
            }
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = wake_at.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                () = &mut woken => {}
                _ = appended.next() => {}
                () = tokio::time::sleep_until(until) => {}
                () = draining.wait() => return Err(BrokerError::ShuttingDown),
            }
        }
    }

    /// Reads the records of `grabs`; those that cannot be read are released again.
    async fn read(&self, grabs: Vec<Grab>) -> Result<Vec<AcquiredRecord>, BrokerError> {
        let mut out = Vec::new();
        let mut failed = None;
        for (i, grab) in grabs.iter().enumerate() {
            let offsets: Vec<u64> = grab.offsets.iter().map(|(o, _)| *o).collect();
            match read_offsets(&self.broker, &grab.topic, grab.partition, &offsets).await {
                Ok(records) => {
                    let mut counts = grab.offsets.iter().peekable();
                    for record in records {
                        while counts.next_if(|(o, _)| *o < record.offset).is_some() {}
                        let delivery_count = counts
                            .next_if(|(o, _)| *o == record.offset)
                            .map_or(1, |(_, c)| *c);
                        out.push(AcquiredRecord {
                            topic: Arc::clone(&grab.topic),
                            partition: grab.partition,
                            offset: record.offset,
                            delivery_count,
                            record,
                        });
                    }
                }
                Err(e) => {
                    self.abandon(&grabs[i..i + 1]);
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// Releases records acquired but not handed out.
    fn abandon(&self, grabs: &[Grab]) {
        let acks = grabs
            .iter()
            .flat_map(|g| {
                g.offsets.iter().map(|(offset, _)| Ack {
                    topic: g.topic.to_string(),
                    partition: g.partition,
                    offset: *offset,
                    kind: crate::share::AckKind::Release,
                })
            })
            .collect();
        let _ = self.apply(acks);
    }

    /// Applies acks under the group's lock.
    fn apply(&self, acks: Vec<Ack>) -> Applied {
        let now = Instant::now();
        let coordinator = &self.broker.share;
        let mut results = Vec::with_capacity(acks.len());
        let mut letters = Vec::new();
        let mut available = false; // whether to wake waiting members
        let (durables, dlq) = {
            let mut state = self.group.state.lock();
            let mut records = Vec::new();
            for (i, ack) in acks.into_iter().enumerate() {
                let applied = if state.members.contains_key(&self.id) && !state.deleted {
                    state.acknowledge(&self.group.name, &self.id, &ack, now)
                } else {
                    Err("the member has left the group")
                };
                match applied {
                    Ok(acked) => {
                        records.extend(acked.record);
                        // A release offers a record again; any ack frees prefetch room.
                        available = true;
                        if let Some(letter) = acked.dead_letter {
                            letters.push((i, letter));
                        }
                        results.push(Ok(()));
                    }
                    Err(reason) => results.push(Err(self.not_held(&ack, reason))),
                }
            }
            (
                coordinator.write(records),
                state.settings.dead_letter_topic.clone(),
            )
        };
        if available {
            self.group.wake.notify_waiters();
        }
        Applied {
            results,
            durables,
            letters,
            dlq,
        }
    }

    fn not_held(&self, ack: &Ack, reason: &'static str) -> BrokerError {
        BrokerError::RecordNotHeld {
            group: self.group.name.clone(),
            member_id: self.id.to_string(),
            topic: ack.topic.clone(),
            partition: ack.partition,
            offset: ack.offset,
            reason,
        }
    }

    /// Applies acknowledgements of records this member holds and returns once they are
    /// durable: accepted and rejected records are never delivered again, released ones are
    /// (after the group's redelivery backoff, or archived when past the delivery limit). A
    /// rejected record of a group with a dead-letter topic is appended there first.
    ///
    /// Each ack has its own outcome: `Ok`, or why it was not applied
    /// ([`BrokerError::RecordNotHeld`]: not held by this member, lock expired, unknown
    /// partition), or why its dead letter could not be appended (then it is tried again in
    /// the background; the record is not delivered again meanwhile). The call fails as a
    /// whole when the state cannot be made durable.
    pub async fn acknowledge(
        &self,
        acks: Vec<Ack>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        self.broker.share.check_running()?;
        let Applied {
            mut results,
            durables,
            letters,
            dlq,
        } = self.apply(acks);
        if let Some(dlq) = dlq {
            for (i, letter) in letters {
                let appended = dead_letter::append(
                    Arc::clone(&self.broker),
                    Arc::clone(&self.broker.share),
                    Arc::clone(&self.group),
                    dlq.clone(),
                    vec![letter],
                )
                .await;
                if let Err(e) = appended {
                    results[i] = Err(e);
                }
            }
        }
        wait_durable(&self.group.name, durables).await?;
        Ok(results)
    }

    /// Extends the locks of these held records (topic, partition, offset) by the group's
    /// lock duration, from now.
    pub fn renew(&self, records: &[(String, u32, u64)]) -> Vec<Result<(), BrokerError>> {
        let now = Instant::now();
        let mut state = self.group.state.lock();
        records
            .iter()
            .map(|(topic, partition, offset)| {
                state
                    .renew(&self.id, topic, *partition, *offset, now)
                    .map_err(|reason| {
                        self.not_held(
                            &Ack {
                                topic: topic.clone(),
                                partition: *partition,
                                offset: *offset,
                                kind: crate::share::AckKind::Release,
                            },
                            reason,
                        )
                    })
            })
            .collect()
    }

    /// Leaves the group, releasing every record still held.
    pub async fn leave(self) {
        drop(self);
    }
}

/// What applying acks under the group's lock gave.
struct Applied {
    /// Each ack's outcome.
    results: Vec<Result<(), BrokerError>>,
    /// The writes to wait for.
    durables: Vec<Durable>,
    /// Dead letters to append, with the index of their ack.
    letters: Vec<(usize, DeadLetter)>,
    /// The group's dead-letter topic.
    dlq: Option<String>,
}

impl Drop for ShareMember {
    fn drop(&mut self) {
        let broker = &self.broker;
        let coordinator = &broker.share;
        dead_letter::sweep(
            broker,
            coordinator,
            &self.group,
            Instant::now(),
            Some(&self.id),
        );
        self.group.state.lock().members.remove(&self.id);
        self.group.wake.notify_waiters();
    }
}
