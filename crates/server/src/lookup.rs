//! Partition and offset lookups shared by the requests that name partitions.

use std::sync::Arc;

use sluice_broker::{Broker, BrokerError, OffsetSpec};
use tonic::Status;

use crate::status::to_status;

/// The partitions a request names, or every partition of the topic when it names none.
pub(crate) fn partitions(
    broker: &Broker,
    topic: &str,
    requested: Vec<u32>,
) -> Result<Vec<u32>, Status> {
    if requested.is_empty() {
        let count = broker.partition_count(topic).map_err(to_status)?;
        Ok((0..count).collect())
    } else {
        Ok(requested)
    }
}

/// Looks up `spec` in each partition, in order. Runs on a blocking thread because a
/// timestamp lookup reads the log.
pub(crate) async fn offsets(
    broker: &Arc<Broker>,
    topic: &str,
    partitions: Vec<u32>,
    spec: OffsetSpec,
) -> Result<Vec<(u32, Option<u64>)>, Status> {
    per_partition(
        broker,
        topic,
        partitions,
        move |broker, topic, partition| broker.list_offset(topic, partition, spec),
    )
    .await
}

/// Where reading from `spec` starts in each partition, in order: see
/// [`Broker::start_offset`]. Runs on a blocking thread, as [`offsets`] does.
pub(crate) async fn start_offsets(
    broker: &Arc<Broker>,
    topic: &str,
    partitions: Vec<u32>,
    spec: OffsetSpec,
) -> Result<Vec<(u32, u64)>, Status> {
    per_partition(
        broker,
        topic,
        partitions,
        move |broker, topic, partition| broker.start_offset(topic, partition, spec),
    )
    .await
}

/// `lookup` of each partition, in order, on a blocking thread.
async fn per_partition<T: Send + 'static>(
    broker: &Arc<Broker>,
    topic: &str,
    partitions: Vec<u32>,
    lookup: impl Fn(&Broker, &str, u32) -> Result<T, BrokerError> + Send + 'static,
) -> Result<Vec<(u32, T)>, Status> {
    let broker = Arc::clone(broker);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        partitions
            .into_iter()
            .map(|partition| {
                lookup(&broker, &topic, partition)
                    .map(|found| (partition, found))
                    .map_err(to_status)
            })
            .collect()
    })
    .await
    .map_err(|err| Status::internal(format!("offset lookup task failed: {err}")))?
}
