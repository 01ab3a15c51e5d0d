//! The `sluice.v1.Log` service: produce, fetch, subscribe and offset lookups. Producing
//! needs Write on the topic, fetching and subscribing Read, offset lookups Describe;
//! produced and fetched bytes count against the caller's quotas.

use std::sync::Arc;
use std::time::Duration;

use sluice_broker::security::{Caller, Operation, QuotaKind, Resource};
use sluice_broker::{Broker, Fetched, Position};
use sluice_proto::v1::log_server::Log;
use sluice_proto::v1::{
    FetchBatchesResponse, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    PartitionOffset, ProduceRequest, ProduceResponse, SubscribeRequest,
};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{authorize, caller};
use crate::convert::{fetched_records, position};
use crate::produce::{AnswerStream, produce, produce_stream};
use crate::quota::throttle;
use crate::status::{invalid_field, require_topic, shutting_down, to_status};
use crate::subscribe::{BatchSubscriptionStream, SubscriptionStream, subscribe, subscribe_batches};

/// Implements `sluice.v1.Log` on a broker.
#[derive(Debug)]
pub(crate) struct LogService {
    broker: Arc<Broker>,
    max_request_bytes: usize,
}

impl LogService {
    /// The service for `broker`, decoding requests of up to `max_request_bytes`.
    pub(crate) fn new(broker: Arc<Broker>, max_request_bytes: usize) -> Self {
        LogService {
            broker,
            max_request_bytes,
        }
    }

    /// Runs a fetch (long-polling as asked) and returns the stored batches, which `Fetch`
    /// decodes and `FetchBatches` passes on as they are.
    /// The caller needs Read on the topic; the answer counts against its fetch quota.
    async fn read(&self, caller: &Caller, request: FetchRequest) -> Result<Fetched, Status> {
        require_topic("topic", &request.topic)?;
        authorize(
            &self.broker,
            caller,
            Operation::Read,
            &Resource::topic(&request.topic),
        )?;
        let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
        let wait = Duration::from_millis(request.max_wait_ms.into());
        let draining = self.broker.draining();
        let fetched = tokio::select! {
            biased;
            fetched = self.broker.fetch(
                &request.topic, request.partition, request.offset, max_bytes, wait,
            ) => fetched.map_err(to_status)?,
            () = draining.wait() => return Err(shutting_down()),
        };
        throttle(
            &self.broker,
            caller,
            QuotaKind::Fetch,
            fetched.batches.len(),
        )
        .await;
        Ok(fetched)
    }
}

#[tonic::async_trait]
impl Log for LogService {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        produce(&self.broker, &caller(&request), request.get_ref())
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
            caller(&request),
            request.into_inner(),
            self.max_request_bytes,
        )))
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let fetched = self.read(&caller(&request), request.into_inner()).await?;
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
        let fetched = self.read(&caller(&request), request.into_inner()).await?;
        Ok(Response::new(FetchBatchesResponse {
            next_offset: fetched.next_offset(),
            record_batches: fetched.batches,
            high_watermark: fetched.high_watermark,
            log_start_offset: fetched.log_start_offset,
        }))
    }

    type SubscribeBatchesStream = BatchSubscriptionStream;

    async fn subscribe_batches(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<BatchSubscriptionStream>, Status> {
        subscribe_batches(&self.broker, caller(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    type SubscribeStream = SubscriptionStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<SubscriptionStream>, Status> {
        subscribe(&self.broker, caller(&request), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        require_topic("topic", &request.topic)?;
        authorize(
            &self.broker,
            &caller,
            Operation::Describe,
            &Resource::topic(&request.topic),
        )?;
        let spec = match position(request.spec, "spec")? {
            Position::Lookup(spec) => spec,
            Position::Offset(_) => {
                return Err(invalid_field(
                    "spec",
                    "an explicit offset cannot be looked up; use earliest, latest or timestamp_ms",
                ));
            }
        };
        let partitions = if request.partitions.is_empty() {
            let count = self
                .broker
                .partition_count(&request.topic)
                .map_err(to_status)?;
            (0..count).collect()
        } else {
            request.partitions
        };
        let offsets = self
            .broker
            .list_offsets(&request.topic, partitions, spec)
            .await
            .map_err(to_status)?
            .into_iter()
            .map(|(partition, offset)| PartitionOffset { partition, offset })
            .collect();
        Ok(Response::new(ListOffsetsResponse { offsets }))
    }
}
