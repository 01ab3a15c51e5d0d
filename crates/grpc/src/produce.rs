//! `Log.Produce` and `Log.ProduceStream`.

use std::sync::Arc;

use bytes::BytesMut;

use sluice_broker::security::{Caller, Operation, QuotaKind, Resource};
use sluice_broker::{Broker, PendingProduce};
use sluice_proto::v1::{
    Error, ProduceRequest, ProduceResponse, ProduceStreamResponse, produce_stream_response,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::auth::authorize;
use crate::convert::{WireRecord, produce_response};
use crate::quota::throttle_message;
use crate::request_limit::request_error;
use crate::status::{invalid_field, require_topic, shutting_down, to_status};

/// Most requests of one ProduceStream being processed at once. Past it the server stops
/// reading the stream until an answer goes out, so a client cannot make it buffer
/// without bound.
const MAX_IN_FLIGHT: u32 = 64;

/// The responses of one ProduceStream.
pub(crate) type AnswerStream = ReceiverStream<Result<ProduceStreamResponse, Status>>;

/// Appends one request's records.
pub(crate) async fn produce(
    broker: &Broker,
    caller: &Caller,
    request: &ProduceRequest,
) -> Result<ProduceResponse, Status> {
    let answer = wait(submit(broker, caller, request)).await;
    throttle_message(broker, caller, QuotaKind::Produce, request).await;
    answer
}

/// Validates a request (the caller needs Write on the topic) and queues its appends (in
/// call order, per partition): its records, or its client-encoded batches (raw-batch
/// produce).
fn submit(
    broker: &Broker,
    caller: &Caller,
    request: &ProduceRequest,
) -> Result<PendingProduce, Status> {
    require_topic("topic", &request.topic)?;
    authorize(
        broker,
        caller,
        Operation::Write,
        &Resource::topic(&request.topic),
    )?;
    if request.record_batches.is_empty() {
        return broker
            .submit_produce(
                &request.topic,
                request.partition,
                request.records.iter().map(WireRecord),
            )
            .map_err(to_status);
    }
    if !request.records.is_empty() {
        return Err(invalid_field(
            "record_batches",
            "set either records or record_batches, not both",
        ));
    }
    let Some(partition) = request.partition else {
        return Err(invalid_field(
            "partition",
            "must be set when the request carries record_batches",
        ));
    };
    // The log rewrites each batch's base offset in place: the one copy of the bytes.
    let batches = BytesMut::from(&request.record_batches[..]);
    broker
        .submit_batches(&request.topic, partition, batches)
        .map_err(to_status)
}

/// Waits for a submitted request's appends.
async fn wait(pending: Result<PendingProduce, Status>) -> Result<ProduceResponse, Status> {
    let appends = pending?.wait().await.map_err(to_status)?;
    Ok(produce_response(appends))
}

/// Starts serving one ProduceStream (whose request messages are limited to
/// `max_request_bytes`) and returns its answers.
pub(crate) fn produce_stream(
    broker: Arc<Broker>,
    caller: Caller,
    requests: Streaming<ProduceRequest>,
    max_request_bytes: usize,
) -> AnswerStream {
    let (answers, stream) = mpsc::channel(MAX_IN_FLIGHT as usize);
    let requests = Requests {
        stream: requests,
        max_request_bytes,
    };
    tokio::spawn(drive(broker, caller, requests, answers));
    ReceiverStream::new(stream)
}

/// Reads requests and processes each in its own task, at most [`MAX_IN_FLIGHT`] at a
/// time. Ends when the client finishes sending (after the last answer), when it goes away,
/// on a broken request stream, or when the broker drains; the last two end the answers with
/// that status once every request already read has been answered. A caller over its
/// produce quota is not read from until the delay it owes has passed.
async fn drive(
    broker: Arc<Broker>,
    caller: Caller,
    mut requests: Requests,
    answers: mpsc::Sender<Result<ProduceStreamResponse, Status>>,
) {
    let draining = broker.draining();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize));
    let end = loop {
        let permit = tokio::select! {
            permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break None,
            },
            () = answers.closed() => break None,
            () = draining.wait() => break Some(shutting_down()),
        };
        let request = tokio::select! {
            request = requests.stream.message() => match request {
                Ok(Some(request)) => request,
                Ok(None) => break None,
                Err(status) => break Some(request_error(status, requests.max_request_bytes)),
            },
            () = answers.closed() => break None,
            () = draining.wait() => break Some(shutting_down()),
        };
        // Queue the appends here, in the order the requests arrived; only the waiting for
        // their results runs concurrently. So pipelined requests keep their order. A request
        // waiting for room in the in-flight budget is waited for before the next is read, so
        // a stream holds at most one request outside the budget.
        let pending = submit(&broker, &caller, &request);
        let request_id = request.request_id;
        let pending = match pending {
            Ok(pending) => pending.admitted().await.map_err(to_status),
            Err(status) => Err(status),
        };
        throttle_message(&broker, &caller, QuotaKind::Produce, &request).await;
        drop(request);
        let answers = answers.clone();
        tokio::spawn(async move {
            let answer = answer(request_id, wait(pending).await);
            // A send error means the client is gone; there is no one left to tell.
            let _ = answers.send(Ok(answer)).await;
            drop(permit);
        });
    };
    if let Some(status) = end {
        // Let the requests already read be answered before the stream's final status.
        let _ = in_flight.acquire_many(MAX_IN_FLIGHT).await;
        let _ = answers.send(Err(status)).await;
    }
}

/// The request side of a ProduceStream.
#[derive(Debug)]
struct Requests {
    stream: Streaming<ProduceRequest>,
    /// Decoding limit of each request message.
    max_request_bytes: usize,
}

/// The stream answer to request `request_id`; a failure is reported in the answer.
fn answer(request_id: u64, result: Result<ProduceResponse, Status>) -> ProduceStreamResponse {
    let result = match result {
        Ok(produced) => produce_stream_response::Result::Produced(produced),
        Err(status) => produce_stream_response::Result::Error(Error {
            code: status.code() as i32,
            message: status.message().to_owned(),
        }),
    };
    ProduceStreamResponse {
        request_id,
        result: Some(result),
    }
}
