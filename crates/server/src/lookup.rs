//! Partition and offset lookups shared by the requests that name partitions.

use std::sync::Arc;

use sluice_broker::{Broker, OffsetSpec};
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
    let broker = Arc::clone(broker);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        partitions
            .into_iter()
            .map(|partition| {
                broker
                    .list_offset(&topic, partition, spec)
                    .map(|offset| (partition, offset))
                    .map_err(to_status)
            })
            .collect()
    })
    .await
    .map_err(|err| Status::internal(format!("offset lookup task failed: {err}")))?
}
