//! The `sluice.v1.Log` service: produce, fetch, subscribe and offset lookups.

use std::sync::Arc;
use std::time::Duration;

use sluice_broker::{Broker, Fetched};
use sluice_proto::v1::log_server::Log;
use sluice_proto::v1::{
    FetchBatchesResponse, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    PartitionOffset, ProduceRequest, ProduceResponse, SubscribeRequest,
};
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{Position, fetched_records, position};
use crate::lookup::{offsets, partitions};
use crate::produce::{AnswerStream, produce, produce_stream};
use crate::shutdown::Shutdown;
use crate::status::{invalid_field, require_topic, shutting_down, to_status};
use crate::subscribe::{
    BatchSubscriptionStream, SubscribeLimits, SubscriptionStream, subscribe, subscribe_batches,
};
use crate::subscriptions::{Held, SubscriptionSlots};

/// Implements `sluice.v1.Log` on a broker.
#[derive(Debug)]
pub(crate) struct LogService {
    broker: Arc<Broker>,
    subscribe_limits: SubscribeLimits,
    max_request_bytes: usize,
    slots: SubscriptionSlots,
    shutdown: Shutdown,
}

impl LogService {
    /// The service for `broker`, decoding requests of up to `max_request_bytes`; each
    /// subscription takes one of `slots`, and `shutdown` cuts long-running calls short.
    pub(crate) fn new(
        broker: Arc<Broker>,
        subscribe_limits: SubscribeLimits,
        max_request_bytes: usize,
        slots: SubscriptionSlots,
        shutdown: Shutdown,
    ) -> Self {
        LogService {
            broker,
            subscribe_limits,
            max_request_bytes,
            slots,
            shutdown,
        }
    }

    /// Runs a fetch (long-polling as asked) and returns the stored batches, which `Fetch`
    /// decodes and `FetchBatches` passes on as they are.
    async fn read(&self, request: FetchRequest) -> Result<Fetched, Status> {
        require_topic("topic", &request.topic)?;
        let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
        let wait = Duration::from_millis(request.max_wait_ms.into());
        tokio::select! {
            biased;
            fetched = self.broker.fetch(
                &request.topic, request.partition, request.offset, max_bytes, wait,
            ) => fetched.map_err(to_status),
            () = self.shutdown.wait() => Err(shutting_down()),
        }
    }
}

#[tonic::async_trait]
impl Log for LogService {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        produce(&self.broker, request.get_ref())
            .await
            .map(Response::new)
    }

    type ProduceStreamStream = AnswerStream;

    async fn produce_stream(
        &self,
        request: Request<Streaming<ProduceRequest>>,
    ) -> Result<Response<AnswerStream>, Status> {
        Ok(Response::new(produce_stream(
            Arc::clone(&self.broker),
            request.into_inner(),
            self.max_request_bytes,
            self.shutdown.clone(),
        )))
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let fetched = self.read(request.into_inner()).await?;
        Ok(Response::new(FetchResponse {
            records: fetched_records(&fetched)?,
            high_watermark: fetched.high_watermark,
            log_start_offset: fetched.log_start_offset,
            next_offset: fetched.next_offset(),
        }))
    }

    async fn fetch_batches(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchBatchesResponse>, Status> {
        let fetched = self.read(request.into_inner()).await?;
        Ok(Response::new(FetchBatchesResponse {
            next_offset: fetched.next_offset(),
            record_batches: fetched.batches,
            high_watermark: fetched.high_watermark,
            log_start_offset: fetched.log_start_offset,
        }))
    }

    type SubscribeBatchesStream = Held<BatchSubscriptionStream>;

    async fn subscribe_batches(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Held<BatchSubscriptionStream>>, Status> {
        let slot = self.slots.take()?;
        subscribe_batches(
            &self.broker,
            request.into_inner(),
            self.subscribe_limits,
            &self.shutdown,
        )
        .await
        .map(|stream| Response::new(Held::new(stream, slot)))
    }

    type SubscribeStream = Held<SubscriptionStream>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Held<SubscriptionStream>>, Status> {
        let slot = self.slots.take()?;
        subscribe(
            &self.broker,
            request.into_inner(),
            self.subscribe_limits,
            &self.shutdown,
        )
        .await
        .map(|stream| Response::new(Held::new(stream, slot)))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let request = request.into_inner();
        require_topic("topic", &request.topic)?;
        let spec = match position(request.spec, "spec")? {
            Position::Lookup(spec) => spec,
            Position::Exact(_) => {
                return Err(invalid_field(
                    "spec",
                    "an explicit offset cannot be looked up; use earliest, latest or timestamp_ms",
                ));
            }
        };
        let partitions = partitions(&self.broker, &request.topic, request.partitions)?;
        let offsets = offsets(&self.broker, &request.topic, partitions, spec)
            .await?
            .into_iter()
            .map(|(partition, offset)| PartitionOffset { partition, offset })
            .collect();
        Ok(Response::new(ListOffsetsResponse { offsets }))
    }
}
