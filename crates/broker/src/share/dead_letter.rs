//! Dead letters: records rejected, or released past the delivery limit, appended to the
//! group's dead-letter topic through the broker's produce path before they are archived.
//!
//! The append comes first and the archive record after it, so no dead letter is lost: a
//! crash in between leaves the record in flight, and it is dead-lettered again after the
//! restart (a dead letter may be appended twice, never lost). A failed append leaves the
//! record waiting (it is not delivered again) and the sweep tries again.

use std::sync::Arc;

use bytes::Bytes;
use sluice_storage::batch::RecordView;
use tokio::time::Instant;

use crate::share::coordinator::{ShareCoordinator, wait_durable};
use crate::share::group::{DeadLetter, ShareGroup};
use crate::share::reader::{ends, read_offsets};
use crate::{Broker, BrokerError, NewRecord};

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

/// Appends `letters` (of one partition) to `dlq`, then archives them durably. On failure
/// they wait for the sweep to try again, and the error is returned.
pub(crate) async fn append(
    broker: &Broker,
    coordinator: &Arc<ShareCoordinator>,
    group: &Arc<ShareGroup>,
    dlq: &str,
    letters: &[DeadLetter],
) -> Result<(), BrokerError> {
    let Some(first) = letters.first() else {
        return Ok(());
    };
    let offsets: Vec<u64> = letters.iter().map(|l| l.offset).collect();
    let appended = async {
        let records = read_offsets(broker, &first.topic, first.partition, &offsets).await?;
        let letters: Vec<NewRecord> = records
            .into_iter()
            .filter_map(|record| {
                let letter = letters.iter().find(|l| l.offset == record.offset)?;
                Some(dead_letter_record(letter, record))
            })
            .collect();
        if !letters.is_empty() {
            broker.produce(dlq, None, letters).await?;
        }
        Ok::<(), BrokerError>(())
    }
    .await;
    if let Err(e) = &appended {
        tracing::warn!(group = %group.name, topic = %first.topic, partition = first.partition, dead_letter_topic = dlq, error = %e, "appending dead letters failed; retrying later");
    }
    let durables = {
        let mut state = group.state.lock();
        let record = state.dead_lettered(
            &group.name,
            &first.topic,
            first.partition,
            &offsets,
            appended.is_ok(),
        );
        coordinator.write(record.into_iter().collect())
    };
    appended?;
    wait_durable(&group.name, durables).await
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
        let task = async move {
            // A failure is logged by `append` and retried by the next sweep.
            let _ = append(&broker, &coordinator, &group, &dlq, &letters).await;
        };
        // Outside a runtime (a member dropped there) the letters wait for the next sweep.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(task);
        }
    }
}
