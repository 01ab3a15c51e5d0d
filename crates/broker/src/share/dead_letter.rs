//! Dead letters: records rejected, or released past the delivery limit, appended to the
//! group's dead-letter topic through the broker's produce path before they are archived.
//!
//! The append comes first and the archive record after it, so no dead letter is lost: a
//! crash in between leaves the record in flight, and it is dead-lettered again after the
//! restart (a dead letter may be appended twice, never lost); a reject is written down as
//! headed for the dead-letter topic before its append, so it is not delivered again after a
//! crash either. A failed append leaves the record waiting (it is not delivered again) and
//! a sweep tries again after [`RETRY_PAUSE`]. A group whose dead-letter topic is removed
//! archives the records waiting for it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_storage::batch::RecordView;
use tokio::time::Instant;

use crate::journal::queue::Durable;
use crate::share::coordinator::{ShareCoordinator, wait_durable};
use crate::share::group::{DeadLetter, ShareGroup};
use crate::share::reader::{ends, read_offsets};
use crate::{Broker, BrokerError, NewRecord};

/// How long a share group waits after a failed dead-letter append before trying again.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Header naming the source topic.
pub const DLQ_TOPIC_HEADER: &str = "sluice.dlq.topic";
/// Header naming the source partition.
pub const DLQ_PARTITION_HEADER: &str = "sluice.dlq.partition";
/// Header naming the source offset.
pub const DLQ_OFFSET_HEADER: &str = "sluice.dlq.offset";
/// Header giving the delivery count.
pub const DLQ_DELIVERY_COUNT_HEADER: &str = "sluice.dlq.delivery.count";
/// Header giving the reason: `rejected` or `delivery-limit`.
pub const DLQ_REASON_HEADER: &str = "sluice.dlq.reason";

/// The dead letter of `record`: its key, value (a null value becomes empty), timestamp and
/// headers (a null header value becomes empty), plus the `sluice.dlq.*` headers.
fn dead_letter_record(letter: &DeadLetter, record: RecordView) -> NewRecord {
    let mut headers: Vec<(Bytes, Bytes)> = record
        .headers
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let header = |k: &'static str, v: String| (Bytes::from_static(k.as_bytes()), Bytes::from(v));
    headers.extend([
        header(DLQ_TOPIC_HEADER, letter.topic.to_string()),
        header(DLQ_PARTITION_HEADER, letter.partition.to_string()),
        header(DLQ_OFFSET_HEADER, letter.offset.to_string()),
        header(DLQ_DELIVERY_COUNT_HEADER, letter.delivery_count.to_string()),
        header(DLQ_REASON_HEADER, letter.reason.as_str().to_owned()),
    ]);
    NewRecord {
        key: record.key,
        value: record.value.unwrap_or_default(),
        timestamp_ms: record.timestamp_ms,
        headers,
    }
}

/// Dead letters of one partition under way to the dead-letter topic. Settled once: archived
/// when appended, waiting for the next try otherwise, and waiting too when the append is
/// dropped before it finishes (a cancelled call, a runtime shutting down), so no record is
/// left under way for ever.
struct UnderWay {
    coordinator: Arc<ShareCoordinator>,
    group: Arc<ShareGroup>,
    topic: Arc<str>,
    partition: u32,
    /// Empty once settled.
    offsets: Vec<u64>,
}

impl UnderWay {
    /// Settles the letters; returns the writes making an archive durable.
    fn settle(&mut self, appended: bool) -> Vec<Durable> {
        let offsets = std::mem::take(&mut self.offsets);
        if offsets.is_empty() {
            return Vec::new();
        }
        let mut state = self.group.state.lock();
        let record = state.dead_lettered(
            &self.group.name,
            &self.topic,
            self.partition,
            &offsets,
            appended,
            Instant::now(),
        );
        // Written under the lock, so the journal sees the group's changes in order.
        self.coordinator.write(record.into_iter().collect())
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.settle(false);
    }
}

/// Appends `letters` (of one partition, marked under way) to `dlq`, then archives them
/// durably. On failure they wait for the sweep to try again, and the error is returned.
/// The letters are settled even when the returned future is dropped unfinished.
pub(crate) fn append(
    broker: Arc<Broker>,
    coordinator: Arc<ShareCoordinator>,
    group: Arc<ShareGroup>,
    dlq: String,
    letters: Vec<DeadLetter>,
) -> impl Future<Output = Result<(), BrokerError>> + Send + 'static {
    let mut under_way = letters.first().map(|first| UnderWay {
        coordinator,
        group: Arc::clone(&group),
        topic: Arc::clone(&first.topic),
        partition: first.partition,
        offsets: letters.iter().map(|l| l.offset).collect(),
    });
    async move {
        let Some(under_way) = &mut under_way else {
            return Ok(());
        };
        let appended = async {
            let records = read_offsets(
                &broker,
                &under_way.topic,
                under_way.partition,
                &under_way.offsets,
            )
            .await?;
            let letters: Vec<NewRecord> = records
                .into_iter()
                .filter_map(|record| {
                    let letter = letters.iter().find(|l| l.offset == record.offset)?;
                    Some(dead_letter_record(letter, record))
                })
                .collect();
            if !letters.is_empty() {
                broker.produce(&dlq, None, letters).await?;
            }
            Ok::<(), BrokerError>(())
        }
        .await;
        if let Err(e) = &appended {
            tracing::warn!(group = %group.name, topic = %under_way.topic, partition = under_way.partition, dead_letter_topic = dlq, error = %e, "appending dead letters failed; retrying in {} ms", RETRY_PAUSE.as_millis());
        }
        let durables = under_way.settle(appended.is_ok());
        appended?;
        wait_durable(&group.name, durables).await
    }
}

/// Sweeps `group` at `now` (with `leaving`, releasing what that member holds): writes what
/// changed, wakes waiting members if records became available, and starts the dead-letter
/// appends that are due, in the background.
pub(crate) fn sweep(
    broker: &Arc<Broker>,
    coordinator: &Arc<ShareCoordinator>,
    group: &Arc<ShareGroup>,
    now: Instant,
    leaving: Option<&str>,
) {
    let (swept, dlq) = {
        let mut state = group.state.lock();
        let swept = state.sweep(&group.name, now, leaving, &|t, p| ends(broker, t, p));
        // Written under the lock, so the journal sees the group's changes in order.
        let _durable = coordinator.write(swept.records.clone());
        (swept, state.settings.dead_letter_topic.clone())
    };
    if swept.available {
        group.wake.notify_waiters();
    }
    let Some(dlq) = dlq else {
        return;
    };
    let mut by_partition: Vec<Vec<DeadLetter>> = Vec::new();
    for letter in swept.dead_letters {
        match by_partition
            .iter_mut()
            .find(|l| l[0].topic == letter.topic && l[0].partition == letter.partition)
        {
            Some(letters) => letters.push(letter),
            None => by_partition.push(vec![letter]),
        }
    }
    for letters in by_partition {
        let (broker, coordinator, group, dlq) = (
            Arc::clone(broker),
            Arc::clone(coordinator),
            Arc::clone(group),
            dlq.clone(),
        );
        let appended = append(broker, coordinator, group, dlq, letters);
        // A failure is logged by `append` and retried by a later sweep. Outside a runtime
        // (a member dropped there) the future is dropped unrun: the letters wait.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = appended.await;
            });
        }
    }
}
