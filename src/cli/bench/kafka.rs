//! `--kafka`: the same produce and replay runs spoken over the Kafka wire protocol, one
//! connection per producer or consumer, with the requests a Kafka client sends (Produce v9
//! with `acks=-1` and one record batch per request; Fetch v12 from the log start), encoded
//! with the `kafka-protocol` crate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use sluice_client::TopicDescription;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::consume::{Range, count_records, share_of};
use super::stats::{Clock, Stats};
use super::{ANSWER_TIMEOUT, BenchArgs, encoded_batch, finish_all, random_payload, seed, share};

/// Produce request version sent (flexible, as librdkafka 2.x sends).
const PRODUCE_VERSION: i16 = 9;
/// Fetch request version sent (the newest that names topics rather than topic ids).
const FETCH_VERSION: i16 = 12;
/// `max_bytes` of a fetch: the default of Kafka's consumers (`fetch.max.bytes`).
const FETCH_MAX_BYTES: i32 = 50 << 20;
/// `max_bytes` of one partition in a fetch: the default of Kafka's consumers
/// (`max.partition.fetch.bytes`).
const FETCH_PARTITION_BYTES: i32 = 1 << 20;
/// Largest response frame accepted.
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// One Kafka connection: requests written in order, responses read in order.
struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: i32,
}

impl Connection {
    async fn open(addr: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the Kafka listener at {addr}"))?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(Connection {
            reader: BufReader::with_capacity(1 << 20, read),
            writer,
            next_id: 0,
        })
    }

    /// Sends one request; returns its correlation id.
    async fn send<R: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &R,
    ) -> anyhow::Result<i32> {
        let id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-bench")));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header.encode(&mut frame, R::header_version(version))?;
        request.encode(&mut frame, version)?;
        let len = i32::try_from(frame.len() - 4).context("request too large")?;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        self.writer.write_all(&frame).await?;
        Ok(id)
    }

    /// Reads the next response, which must answer request `id`.
    async fn receive<R: Decodable + HeaderVersion>(
        &mut self,
        version: i16,
        id: i32,
    ) -> anyhow::Result<R> {
        let read = async {
            let len = usize::try_from(self.reader.read_i32().await?)?;
            if len > MAX_RESPONSE_BYTES {
                bail!("a {len}-byte response is over the {MAX_RESPONSE_BYTES}-byte limit");
            }
            let mut frame = BytesMut::zeroed(len);
            self.reader.read_exact(&mut frame).await?;
            Ok(frame.freeze())
        };
        let mut frame: Bytes = tokio::time::timeout(ANSWER_TIMEOUT, read)
            .await
            .with_context(|| format!("no answer within {ANSWER_TIMEOUT:?}"))??;
        let header = ResponseHeader::decode(&mut frame, R::header_version(version))?;
        if header.correlation_id != id {
            bail!("answer {} to request {id}", header.correlation_id);
        }
        let response = R::decode(&mut frame, version)?;
        if frame.has_remaining() {
            bail!("{} bytes after the response", frame.remaining());
        }
        Ok(response)
    }
}

/// Runs `--producers` Kafka producers to completion; like the gRPC ones, each sends requests
/// of `--batch-size` records with at most `--in-flight` unanswered, spread round-robin over
/// the partitions.
pub(super) async fn produce_all(
    addr: &str,
    args: &BenchArgs,
    topic: &TopicDescription,
    clock: &Clock,
    deadline: Option<Instant>,
    stats: &Arc<Stats>,
) -> anyhow::Result<Instant> {
    let mut producers = Vec::new();
    for index in 0..args.producers {
        let records = args
            .records
            .map_or(u64::MAX, |total| share(total, args.producers, index));
        let payload = random_payload(args.record_size, seed(clock.start, index));
        let plan = Plan {
            topic: topic.name.clone(),
            partitions: u32::try_from(topic.partitions.len()).unwrap_or(1).max(1),
            first_partition: index,
            records,
            batch: u64::from(args.batch_size),
            window: args.in_flight as usize,
            deadline,
            payload,
            clock: *clock,
        };
        let connection = Connection::open(addr).await?;
        producers.push(tokio::spawn(produce(connection, plan, Arc::clone(stats))));
    }
    finish_all(producers, "producer").await
}

/// What one Kafka producer sends.
struct Plan {
    topic: String,
    partitions: u32,
    first_partition: u32,
    records: u64,
    batch: u64,
    window: usize,
    deadline: Option<Instant>,
    payload: Bytes,
    clock: Clock,
}

/// One producer: pipelined Produce requests, each answered in order.
async fn produce(mut connection: Connection, plan: Plan, stats: Arc<Stats>) -> anyhow::Result<()> {
    let record_size = plan.payload.len() as u64;
    let mut in_flight: VecDeque<(i32, Instant, u64)> = VecDeque::with_capacity(plan.window);
    let (mut sent, mut requests) = (0u64, 0u32);
    loop {
        let more = sent < plan.records && plan.deadline.is_none_or(|d| Instant::now() < d);
        if more && in_flight.len() < plan.window {
            let count = plan.batch.min(plan.records - sent);
            let timestamp_ms = plan.clock.epoch_us(Instant::now()) / 1000;
            let batch = encoded_batch(&plan.payload, count, timestamp_ms)?;
            let partition = (plan.first_partition + requests) % plan.partitions;
            let request = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(plan.topic.clone())))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(i32::try_from(partition)?)
                                .with_records(Some(batch)),
                        ]),
                ]);
            let id = connection
                .send(ApiKey::Produce, PRODUCE_VERSION, &request)
                .await?;
            in_flight.push_back((id, Instant::now(), count));
            sent += count;
            requests = requests.wrapping_add(1);
            continue;
        }
        let Some((id, at, count)) = in_flight.pop_front() else {
            return Ok(());
        };
        let response: ProduceResponse = connection.receive(PRODUCE_VERSION, id).await?;
        for partition in response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
        {
            if partition.error_code != 0 {
                bail!(
                    "produce failed (Kafka error {}): {}",
                    partition.error_code,
                    partition.error_message.as_ref().map_or("", |m| m.as_str())
                );
            }
        }
        stats.latency(at.elapsed());
        stats.add(count, count * record_size);
    }
}

/// Replays every partition of `topic` from its log start to its high watermark with Fetch
/// requests, `--consumers` consumers splitting the partitions; one fetch at a time per
/// consumer, as Kafka clients do per broker.
pub(super) async fn consume_all(
    addr: &str,
    args: &BenchArgs,
    topic: &TopicDescription,
    deadline: Option<Instant>,
    stats: &Arc<Stats>,
) -> anyhow::Result<Instant> {
    let mut consumers = Vec::new();
    for index in 0..args.consumers() {
        let mut ranges = share_of(topic, args.consumers(), index);
        ranges.retain(|r| r.from < r.end);
        if ranges.is_empty() {
            continue;
        }
        let connection = Connection::open(addr).await?;
        let name = topic.name.clone();
        let stats = Arc::clone(stats);
        consumers.push(tokio::spawn(async move {
            replay(connection, &name, ranges, deadline, &stats).await
        }));
    }
    finish_all(consumers, "consumer").await
}

/// Fetches `ranges` (partition, next offset, end) until each reached its end or the
/// deadline passed. Latency is per fetch.
async fn replay(
    mut connection: Connection,
    topic: &str,
    mut ranges: Vec<Range>,
    deadline: Option<Instant>,
    stats: &Stats,
) -> anyhow::Result<()> {
    let name = TopicName(StrBytes::from_string(topic.to_owned()));
    while !ranges.is_empty() && deadline.is_none_or(|d| Instant::now() < d) {
        let partitions = ranges
            .iter()
            .map(|r| {
                Ok(FetchPartition::default()
                    .with_partition(i32::try_from(r.partition)?)
                    .with_fetch_offset(i64::try_from(r.from)?)
                    .with_partition_max_bytes(FETCH_PARTITION_BYTES))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let request = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name.clone())
                    .with_partitions(partitions),
            ]);
        let at = Instant::now();
        let id = connection
            .send(ApiKey::Fetch, FETCH_VERSION, &request)
            .await?;
        let response: FetchResponse = connection.receive(FETCH_VERSION, id).await?;
        stats.latency(at.elapsed());
        if response.error_code != 0 {
            bail!("fetch failed (Kafka error {})", response.error_code);
        }
        for data in response.responses.iter().flat_map(|t| &t.partitions) {
            if data.error_code != 0 {
                bail!(
                    "fetch of partition {} failed (Kafka error {})",
                    data.partition_index,
                    data.error_code
                );
            }
            let Some(range) = ranges
                .iter_mut()
                .find(|r| i64::from(r.partition) == i64::from(data.partition_index))
            else {
                continue;
            };
            let batches = data.records.clone().unwrap_or_default();
            let records = count_records(&batches, range.from, range.end)?;
            stats.add(records, batches.len() as u64);
            let next = next_offset(&batches)?.max(range.from);
            if next == range.from && batches.is_empty() && range.from < range.end {
                continue;
            }
            range.from = next;
        }
        ranges.retain(|r| r.from < r.end);
    }
    Ok(())
}

/// The offset after the last record of `batches` (0 when there are none).
fn next_offset(batches: &Bytes) -> anyhow::Result<u64> {
    let mut next = 0;
    for item in sluice_storage::batch::batches(batches.clone()) {
        let (header, _) = item.context("damaged record batch")?;
        next = header.last_offset().saturating_add(1);
    }
    Ok(next)
}
