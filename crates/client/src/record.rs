//! Records as producers send them and consumers receive them, and positions in a partition.

use std::sync::Arc;

use bytes::Bytes;
use sluice_proto::v1::{self as pb, Header};

/// A record to produce.
///
/// ```
/// use sluice_client::ProducerRecord;
///
/// let record = ProducerRecord::new("orders", "42 widgets")
///     .key("customer-7")
///     .header("trace-id", "abc123");
/// assert_eq!(record.partition, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProducerRecord {
    /// The topic to append to.
    pub topic: String,
    /// The partition to append to. `None`: a keyed record goes to the partition Kafka's
    /// default partitioner picks for its key (murmur2), a keyless one to the producer's
    /// current "sticky" partition, which moves on, round-robin, with every batch.
    pub partition: Option<u32>,
    /// The record key; `None` means no key (an empty key is a key).
    pub key: Option<Bytes>,
    /// The record value.
    pub value: Bytes,
    /// Headers, in order; keys may repeat.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; 0 lets the server stamp the record.
    pub timestamp_ms: i64,
}

impl ProducerRecord {
    /// A record with `value` for `topic`, without key, headers or timestamp.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: value.into(),
            ..ProducerRecord::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends the record to `partition` instead of letting the partitioner choose.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Appends a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = timestamp_ms;
        self
    }

    /// The wire record, without topic and partition.
    pub(crate) fn into_wire(self) -> pb::Record {
        pb::Record {
            key: self.key,
            value: self.value,
            headers: self.headers,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordMetadata {
    /// The partition it went to.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
}

/// A record as a consumer receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerRecord {
    /// The topic it was read from.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch, as produced or as stamped by the server.
    pub timestamp_ms: i64,
    /// The key; `None` when the record has none.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// Headers, in the order they were produced.
    pub headers: Vec<Header>,
}

impl ConsumerRecord {
    /// The record `fetched` from `topic`'s `partition`.
    pub(crate) fn from_wire(topic: &Arc<str>, partition: u32, fetched: pb::FetchedRecord) -> Self {
        ConsumerRecord {
            topic: Arc::clone(topic),
            partition,
            offset: fetched.offset,
            timestamp_ms: fetched.timestamp_ms,
            key: fetched.key,
            value: fetched.value,
            headers: fetched.headers,
        }
    }
}

/// A position in a partition: where a consumer starts, or an offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// An explicit offset.
    Offset(u64),
    /// The earliest offset still retained.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// The first record whose timestamp is at or after this many milliseconds since the
    /// Unix epoch (the high watermark when there is none).
    Timestamp(i64),
}

impl Position {
    /// The wire form.
    pub(crate) fn to_wire(self) -> pb::OffsetSpec {
        use pb::offset_spec::Kind;
        let kind = match self {
            Position::Offset(offset) => Kind::Offset(offset),
            Position::Earliest => Kind::Earliest(pb::Earliest {}),
            Position::Latest => Kind::Latest(pb::Latest {}),
            Position::Timestamp(ms) => Kind::TimestampMs(ms),
        };
        pb::OffsetSpec { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_fills_the_wire_record() {
        let record = ProducerRecord::new("t", "v")
            .key("k")
            .partition(3)
            .header("h", "1")
            .header("h", "2")
            .timestamp_ms(17);
        assert_eq!(record.partition, Some(3));
        let wire = record.into_wire();
        assert_eq!(wire.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(wire.value, Bytes::from_static(b"v"));
        let headers: Vec<_> = wire
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.clone()))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("h", Bytes::from_static(b"1")),
                ("h", Bytes::from_static(b"2"))
            ]
        );
        assert_eq!(wire.timestamp_ms, 17);
    }

    #[test]
    fn positions_map_to_offset_specs() {
        use pb::offset_spec::Kind;
        assert_eq!(Position::Offset(9).to_wire().kind, Some(Kind::Offset(9)));
        assert_eq!(
            Position::Timestamp(-1).to_wire().kind,
            Some(Kind::TimestampMs(-1))
        );
        assert!(matches!(
            Position::Earliest.to_wire().kind,
            Some(Kind::Earliest(_))
        ));
        assert!(matches!(
            Position::Latest.to_wire().kind,
            Some(Kind::Latest(_))
        ));
    }
}
