//! Conversions between the wire types of `sluice.v1` and the broker's types.

use sluice_broker::{
    Fetched, OffsetSpec, PartitionAppend, PartitionInfo, Position, ProduceRecord, RecordView,
    TopicInfo,
};
use sluice_proto::v1::{
    self as proto, FetchedRecord, Header, PartitionDescription, PartitionProduced, ProduceResponse,
    TopicDescription, offset_spec,
};
use tonic::Status;

use crate::status::{invalid_field, to_status};

/// A wire record seen through the broker's [`ProduceRecord`] interface, without copying
/// its key, value or headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireRecord<'a>(pub(crate) &'a proto::Record);

/// A header's key and value as byte slices.
type HeaderBytes<'a> = (&'a [u8], &'a [u8]);

/// Borrows a wire header as byte slices.
fn header_bytes(header: &Header) -> HeaderBytes<'_> {
    (header.key.as_bytes(), &header.value)
}

impl ProduceRecord for WireRecord<'_> {
    type Headers<'b>
        = std::iter::Map<std::slice::Iter<'b, Header>, fn(&'b Header) -> HeaderBytes<'b>>
    where
        Self: 'b;

    fn key(&self) -> Option<&[u8]> {
        self.0.key.as_deref()
    }

    fn value(&self) -> &[u8] {
        &self.0.value
    }

    fn timestamp_ms(&self) -> i64 {
        self.0.timestamp_ms
    }

    fn headers(&self) -> Self::Headers<'_> {
        self.0.headers.iter().map(header_bytes)
    }
}

/// The answer to a produce request: where each partition's records went.
pub(crate) fn produce_response(appends: Vec<PartitionAppend>) -> ProduceResponse {
    ProduceResponse {
        partitions: appends
            .into_iter()
            .map(|append| PartitionProduced {
                partition: append.partition,
                base_offset: append.base_offset,
                record_count: append.record_count,
            })
            .collect(),
    }
}

/// The records of a fetch as wire records. Payloads are shared, not copied.
pub(crate) fn fetched_records(fetched: &Fetched) -> Result<Vec<FetchedRecord>, Status> {
    fetched
        .records()
        .map(|record| record.map(fetched_record).map_err(to_status))
        .collect()
}

/// One stored record as a wire record. A null value (which only other clients can
/// store) becomes an empty value; header keys are text on the wire.
pub(crate) fn fetched_record(record: RecordView) -> FetchedRecord {
    FetchedRecord {
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        key: record.key,
        value: record.value.unwrap_or_default(),
        headers: record
            .headers
            .into_iter()
            .map(|(key, value)| Header {
                key: String::from_utf8_lossy(&key).into_owned(),
                value: value.unwrap_or_default(),
            })
            .collect(),
    }
}

/// A topic's description on the wire.
pub(crate) fn topic_description(info: TopicInfo) -> TopicDescription {
    TopicDescription {
        name: info.name,
        partitions: info
            .partitions
            .into_iter()
            .map(partition_description)
            .collect(),
        config: info.config,
        overrides: info.overrides,
    }
}

/// A partition's state on the wire.
fn partition_description(info: PartitionInfo) -> PartitionDescription {
    PartitionDescription {
        id: info.id,
        log_start_offset: info.log_start_offset,
        high_watermark: info.high_watermark,
        log_end_offset: info.log_end_offset,
        size_bytes: info.size_bytes,
        segment_count: info.segment_count,
        failure: info.failure.unwrap_or_default(),
    }
}

/// The position `spec` asks for; `field` names the request field in errors.
pub fn position(spec: Option<proto::OffsetSpec>, field: &str) -> Result<Position, Status> {
    match spec.and_then(|spec| spec.kind) {
        Some(offset_spec::Kind::Earliest(_)) => Ok(Position::Lookup(OffsetSpec::Earliest)),
        Some(offset_spec::Kind::Latest(_)) => Ok(Position::Lookup(OffsetSpec::Latest)),
        Some(offset_spec::Kind::TimestampMs(ts)) => Ok(Position::Lookup(OffsetSpec::Timestamp(ts))),
        Some(offset_spec::Kind::Offset(offset)) => Ok(Position::Offset(offset)),
        None => Err(invalid_field(
            field,
            "required: set one of earliest, latest, timestamp_ms or offset",
        )),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn wire_record_exposes_fields_without_copying() {
        let record = proto::Record {
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"value"),
            headers: vec![
                Header {
                    key: "a".into(),
                    value: Bytes::from_static(b"1"),
                },
                Header {
                    key: "b".into(),
                    value: Bytes::new(),
                },
            ],
            timestamp_ms: 42,
        };
        let wire = WireRecord(&record);
        assert_eq!(wire.key(), Some(&b"k"[..]));
        assert_eq!(wire.value().as_ptr(), record.value.as_ptr());
        assert_eq!(wire.timestamp_ms(), 42);
        let headers: Vec<_> = wire.headers().collect();
        assert_eq!(headers, [(&b"a"[..], &b"1"[..]), (&b"b"[..], &b""[..])]);
        assert_eq!(WireRecord(&proto::Record::default()).key(), None);
    }

    #[test]
    fn stored_record_becomes_wire_record() {
        let view = RecordView {
            offset: 9,
            timestamp_ms: -5,
            key: None,
            value: None,
            headers: vec![(Bytes::from_static(b"h"), None)],
        };
        let wire = fetched_record(view);
        assert_eq!(wire.offset, 9);
        assert_eq!(wire.timestamp_ms, -5);
        assert_eq!(wire.key, None);
        assert!(wire.value.is_empty());
        assert_eq!(wire.headers.len(), 1);
        assert_eq!(wire.headers[0].key, "h");
    }

    #[test]
    fn positions_map_each_kind_and_require_one() {
        let spec = |kind| Some(proto::OffsetSpec { kind: Some(kind) });
        assert_eq!(
            position(
                spec(offset_spec::Kind::Earliest(proto::Earliest {})),
                "start"
            )
            .ok(),
            Some(Position::Lookup(OffsetSpec::Earliest))
        );
        assert_eq!(
            position(spec(offset_spec::Kind::Latest(proto::Latest {})), "start").ok(),
            Some(Position::Lookup(OffsetSpec::Latest))
        );
        assert_eq!(
            position(spec(offset_spec::Kind::TimestampMs(77)), "start").ok(),
            Some(Position::Lookup(OffsetSpec::Timestamp(77)))
        );
        assert_eq!(
            position(spec(offset_spec::Kind::Offset(3)), "start").ok(),
            Some(Position::Offset(3))
        );
        for missing in [None, Some(proto::OffsetSpec { kind: None })] {
            let status = position(missing, "start").expect_err("missing");
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().starts_with("start:"));
        }
    }
}
