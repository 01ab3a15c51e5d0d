//! Produce requests: the record interface, partition assignment and batch building.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use sluice_storage::StorageError;
use sluice_storage::batch::RecordBatchBuilder;

use crate::BrokerError;
use sluice_partitioner::partition_for_key;

/// A record as the broker receives it. The server implements it for its wire
/// type; [`NewRecord`] is an owned implementation.
pub trait ProduceRecord {
    /// Iterator over the record's headers as `(key, value)`.
    type Headers<'a>: Iterator<Item = (&'a [u8], &'a [u8])> + Clone
    where
        Self: 'a;
    /// The key; keyed records are partitioned by it.
    fn key(&self) -> Option<&[u8]>;
    /// The value.
    fn value(&self) -> &[u8];
    /// Creation time in ms since the epoch; `0` means "stamp it with the broker's clock".
    fn timestamp_ms(&self) -> i64;
    /// The headers.
    fn headers(&self) -> Self::Headers<'_>;
}

/// An owned record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// Creation time in ms since the epoch; `0` lets the broker stamp it.
    pub timestamp_ms: i64,
    /// Headers as `(key, value)` pairs.
    pub headers: Vec<(Bytes, Bytes)>,
}

impl NewRecord {
    /// A keyless record with `value`, stamped by the broker.
    pub fn new(value: impl Into<Bytes>) -> NewRecord {
        NewRecord {
            value: value.into(),
            ..NewRecord::default()
        }
    }

    /// This record with `key`.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> NewRecord {
        self.key = Some(key.into());
        self
    }

    /// This record with an explicit timestamp.
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> NewRecord {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// This record with one more header.
    pub fn with_header(mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> NewRecord {
        self.headers.push((key.into(), value.into()));
        self
    }
}

type HeaderPair<'a> = (&'a [u8], &'a [u8]);

fn header_slices(header: &(Bytes, Bytes)) -> HeaderPair<'_> {
    (&header.0, &header.1)
}

impl ProduceRecord for NewRecord {
    type Headers<'a> = std::iter::Map<
        std::slice::Iter<'a, (Bytes, Bytes)>,
        fn(&'a (Bytes, Bytes)) -> HeaderPair<'a>,
    >;

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn value(&self) -> &[u8] {
        &self.value
    }

    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    fn headers(&self) -> Self::Headers<'_> {
        self.headers
            .iter()
            .map(header_slices as fn(&(Bytes, Bytes)) -> HeaderPair<'_>)
    }
}

/// Where one produce request puts its records.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Routing {
    /// Every record to this partition.
    Fixed(u32),
    /// Keyed records by Kafka's default partitioner over `partitions`; keyless ones to `sticky`.
    ByKey {
        /// Partitions of the topic.
        partitions: u32,
        /// The partition this request's keyless records go to.
        sticky: u32,
    },
}

impl Routing {
    fn partition_of<R: ProduceRecord>(self, record: &R) -> u32 {
        match self {
            Routing::Fixed(p) => p,
            Routing::ByKey { partitions, sticky } => record
                .key()
                .map_or(sticky, |key| partition_for_key(key, partitions)),
        }
    }
}

/// Limits a produce request is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProduceLimits {
    /// The topic's `max.message.bytes`.
    pub(crate) max_message_bytes: usize,
    /// The broker's `max_records_per_request`.
    pub(crate) max_records: usize,
}

/// One partition's share of a produce request, encoded as one record batch.
#[derive(Debug)]
pub(crate) struct PartitionBatch {
    pub(crate) partition: u32,
    pub(crate) batch: BytesMut,
    pub(crate) record_count: u32,
}

/// Bytes a record can take on top of its key, value and header bytes: length, attributes,
/// timestamp delta, offset delta, key length, value length and header count varints.
const RECORD_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
/// Bytes a header can take on top of its key and value: the two length varints.
const HEADER_OVERHEAD: usize = 10;
/// The record batch header.
const BATCH_OVERHEAD: usize = sluice_storage::batch::HEADER_LEN;

/// Checks a produce request and encodes it as one record batch per partition, sorted by
/// partition, records in request order. Records with timestamp 0 get `now_ms`.
///
/// Nothing is encoded unless every record passes: the request is empty
/// ([`BrokerError::EmptyBatch`]), has too many records ([`BrokerError::TooManyRecords`]) or
/// holds a record over `max.message.bytes` ([`BrokerError::RecordTooLarge`]).
pub(crate) fn build_batches<R, I>(
    records: I,
    routing: Routing,
    limits: ProduceLimits,
    now_ms: i64,
) -> Result<Vec<PartitionBatch>, BrokerError>
where
    I: IntoIterator<Item = R>,
    R: ProduceRecord,
{
    let mut iter = records.into_iter();
    let records: Vec<R> = iter
        .by_ref()
        .take(limits.max_records.saturating_add(1))
        .collect();
    if records.len() > limits.max_records {
        return Err(BrokerError::TooManyRecords {
            count: records.len() + iter.count(),
            limit: limits.max_records,
        });
    }
    if records.is_empty() {
        return Err(BrokerError::EmptyBatch);
    }

    // First pass: route, check sizes and size each partition's batch.
    let targets: Vec<u32> = records.iter().map(|r| routing.partition_of(r)).collect();
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for (record, target) in records.iter().zip(&targets) {
        let (payload, header_count) = payload_size(record);
        if payload > limits.max_message_bytes {
            return Err(BrokerError::RecordTooLarge {
                size: payload,
                limit: limits.max_message_bytes,
            });
        }
        let encoded = payload + RECORD_OVERHEAD + header_count * HEADER_OVERHEAD;
        *sizes.entry(*target).or_insert(BATCH_OVERHEAD) += encoded;
    }

    // Second pass: encode.
    let mut builders: BTreeMap<u32, RecordBatchBuilder> = sizes
        .into_iter()
        .map(|(partition, bytes)| (partition, RecordBatchBuilder::with_capacity(bytes)))
        .collect();
    for (record, target) in records.iter().zip(&targets) {
        let timestamp = match record.timestamp_ms() {
            0 => now_ms,
            ts => ts,
        };
        let headers = record.headers().map(|(k, v)| (k, Some(v)));
        if let Some(builder) = builders.get_mut(target) {
            // Fails only past the format's 2 GiB batch limit or for a headers iterator whose
            // clones disagree.
            builder
                .push(timestamp, record.key(), Some(record.value()), headers)
                .map_err(|e| BrokerError::from(StorageError::InvalidBatch(e)))?;
        }
    }
    Ok(builders
        .into_iter()
        .filter_map(|(partition, builder)| {
            let record_count = u32::try_from(builder.len()).unwrap_or(u32::MAX);
            builder.finish().map(|batch| PartitionBatch {
                partition,
                batch,
                record_count,
            })
        })
        .collect())
}

/// Key, value and header bytes of a record, and its header count.
fn payload_size<R: ProduceRecord>(record: &R) -> (usize, usize) {
    let mut size = record.key().map_or(0, <[u8]>::len) + record.value().len();
    let mut count = 0;
    for (key, value) in record.headers() {
        size += key.len() + value.len();
        count += 1;
    }
    (size, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::batch::{RecordView, batches, records};

    const LIMITS: ProduceLimits = ProduceLimits {
        max_message_bytes: 100,
        max_records: 10,
    };

    fn decode(batch: &PartitionBatch) -> Vec<RecordView> {
        let mut out = Vec::new();
        for item in batches(batch.batch.clone().freeze()) {
            let (_, bytes) = item.expect("valid batch");
            for record in records(bytes).expect("valid records") {
                out.push(record.expect("valid record"));
            }
        }
        out
    }

    fn values(records: &[RecordView]) -> Vec<&[u8]> {
        records
            .iter()
            .map(|r| r.value.as_deref().unwrap_or_default())
            .collect()
    }

    #[test]
    fn fixed_routing_keeps_order_and_fields() {
        let input = vec![
            NewRecord::new("a").with_key("k").with_header("h", "v"),
            NewRecord::new("b").with_timestamp(42),
            NewRecord::new("c"),
        ];
        let out = build_batches(input, Routing::Fixed(3), LIMITS, 1_000).expect("valid request");
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].partition, out[0].record_count), (3, 3));
        let decoded = decode(&out[0]);
        assert_eq!(values(&decoded), [b"a", b"b", b"c"]);
        assert_eq!(
            decoded.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(),
            [1_000, 42, 1_000]
        );
        assert_eq!(decoded[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(decoded[1].key, None);
        assert_eq!(
            decoded[0].headers,
            vec![(Bytes::from("h"), Some(Bytes::from("v")))]
        );
        assert_eq!(
            decoded.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn keyed_records_follow_murmur2_and_keyless_stick_together() {
        let partitions = 4;
        let keys: Vec<String> = (0..10).map(|i| format!("key-{i}")).collect();
        let mut input: Vec<NewRecord> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| NewRecord::new(format!("v{i}")).with_key(k.clone()))
            .collect();
        input.insert(3, NewRecord::new("free-1"));
        input.push(NewRecord::new("free-2"));
        let routing = Routing::ByKey {
            partitions,
            sticky: 2,
        };
        let limits = ProduceLimits {
            max_records: 100,
            ..LIMITS
        };
        let out = build_batches(input, routing, limits, 1).expect("valid request");
        let order: Vec<u32> = out.iter().map(|b| b.partition).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(order, sorted, "batches sorted by partition, one each");
        let mut total = 0;
        for batch in &out {
            let decoded = decode(batch);
            assert_eq!(decoded.len(), batch.record_count as usize);
            total += decoded.len();
            let mut last_index = None;
            for record in &decoded {
                match &record.key {
                    Some(key) => assert_eq!(partition_for_key(key, partitions), batch.partition),
                    None => assert_eq!(batch.partition, 2),
                }
                let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                    .into_owned();
                if let Some(index) = value.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
                    assert!(last_index < Some(index), "order kept within partition");
                    last_index = Some(index);
                }
            }
        }
        assert_eq!(total, 12);
    }

    #[test]
    fn rejects_empty_oversized_and_too_many() {
        let none: Vec<NewRecord> = Vec::new();
        assert!(matches!(
            build_batches(none, Routing::Fixed(0), LIMITS, 1),
            Err(BrokerError::EmptyBatch)
        ));

        let many: Vec<NewRecord> = (0..25).map(|_| NewRecord::new("x")).collect();
        let err = build_batches(many, Routing::Fixed(0), LIMITS, 1);
        assert!(
            matches!(
                err,
                Err(BrokerError::TooManyRecords {
                    count: 25,
                    limit: 10
                })
            ),
            "{err:?}"
        );

        // 40 key + 50 value + 5 + 6 header bytes = 101 > 100.
        let big = NewRecord::new(vec![0u8; 50])
            .with_key(vec![1u8; 40])
            .with_header("hhhhh", "vvvvvv");
        let err = build_batches(
            vec![NewRecord::new("ok"), big],
            Routing::Fixed(0),
            LIMITS,
            1,
        );
        assert!(
            matches!(
                err,
                Err(BrokerError::RecordTooLarge {
                    size: 101,
                    limit: 100
                })
            ),
            "{err:?}"
        );
        let exact = NewRecord::new(vec![0u8; 100]);
        assert!(build_batches(vec![exact], Routing::Fixed(0), LIMITS, 1).is_ok());
    }
}
