//! Fetch answers sent without copying their record batches into the encoded response.
//!
//! The codec can only encode a `records` field by copying its bytes into the output buffer,
//! and a Fetch answer is almost all records. So each partition's batches (when large enough
//! to be worth it) are swapped for a 16-byte placeholder before encoding, the placeholders
//! are found again in the encoded answer, and the frame is sent as pieces: the encoded parts
//! between placeholders, each records field's length prefix, and the stored batches
//! themselves, written from the segment's memory with one vectored write.
//!
//! A placeholder is a nonce made once per process from the system's random source plus the
//! partition's place in the answer, so nothing a client sends can be mistaken for one; each is
//! also checked to sit right after the length prefix the codec writes for 16 bytes.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader};

use super::respond;
use crate::KafkaError;
use crate::frame::Frame;

/// Records fields shorter than this are left in the encoded answer: a piece of its own
/// would cost more than the copy.
const SPLICE_MIN_BYTES: usize = 16 * 1024;
/// Placeholder length: a 12-byte nonce and a 4-byte index.
const MARK_LEN: usize = 16;
/// The first Fetch version whose `records` is `COMPACT_RECORDS`.
const FIRST_FLEXIBLE_VERSION: i16 = 12;

/// Encodes `response` to `header`'s request as a frame whose large record sets are pieces
/// of their own.
pub(crate) fn encode(
    header: &RequestHeader,
    mut response: FetchResponse,
) -> Result<Frame, KafkaError> {
    let version = header.request_api_version;
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    let mut spliced: Vec<(Bytes, Bytes)> = Vec::new();
    let fields = response
        .responses
        .iter_mut()
        .flat_map(|topic| topic.partitions.iter_mut())
        .filter_map(|partition| partition.records.as_mut());
    for records in fields {
        if records.len() >= SPLICE_MIN_BYTES {
            let mark = placeholder(spliced.len());
            let stored = std::mem::replace(records, mark.clone());
            spliced.push((mark, stored));
        }
    }
    let encoded = respond(ApiKey::Fetch, header, &response)?;
    if spliced.is_empty() {
        return Ok(encoded.into());
    }
    let failed = |reason: &str| KafkaError::Encode {
        api: "Fetch".into(),
        version,
        reason: reason.into(),
    };
    let mark_prefix = length_prefix(MARK_LEN, flexible);
    let mut pieces = Vec::with_capacity(3 * spliced.len() + 2);
    pieces.push(Bytes::new()); // the frame's size, once known
    let mut cursor = 4; // past the size the encoder wrote for the frame with placeholders
    for (mark, stored) in spliced {
        let at = memchr::memmem::find(&encoded[cursor..], &mark)
            .map(|i| cursor + i)
            .filter(|&at| encoded[cursor..at].ends_with(&mark_prefix))
            .ok_or_else(|| failed("a record placeholder is missing from the encoded answer"))?;
        pieces.push(encoded.slice(cursor..at - mark_prefix.len()));
        pieces.push(length_prefix(stored.len(), flexible));
        pieces.push(stored);
        cursor = at + MARK_LEN;
    }
    pieces.push(encoded.slice(cursor..));
    let body: usize = pieces.iter().map(Bytes::len).sum();
    let size = i32::try_from(body).map_err(|_| failed("answer larger than 2 GiB"))?;
    pieces[0] = Bytes::copy_from_slice(&size.to_be_bytes());
    Ok(Frame::from_pieces(pieces))
}

/// The placeholder of the `index`-th spliced records field.
fn placeholder(index: usize) -> Bytes {
    static NONCE: OnceLock<[u8; 12]> = OnceLock::new();
    let nonce = NONCE.get_or_init(|| {
        let random = uuid::Uuid::new_v4().into_bytes();
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&random[..12]);
        nonce
    });
    let mut mark = BytesMut::with_capacity(MARK_LEN);
    mark.put_slice(nonce);
    mark.put_u32(u32::try_from(index).unwrap_or(u32::MAX));
    mark.freeze()
}

/// The length prefix of a non-null `records` field of `len` bytes: Kafka's `RECORDS` (a
/// 4-byte big-endian length) before version 12, `COMPACT_RECORDS` (an unsigned varint of the
/// length plus one) from then on.
fn length_prefix(len: usize, flexible: bool) -> Bytes {
    let mut prefix = BytesMut::with_capacity(5);
    if flexible {
        let mut value = u32::try_from(len).unwrap_or(u32::MAX - 1) + 1;
        while value >= 0x80 {
            prefix.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        prefix.put_u8(value as u8);
    } else {
        prefix.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
    }
    prefix.freeze()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    /// A response with a small and two large record sets across two topics.
    fn response() -> FetchResponse {
        let partition = |index: i32, records: usize| {
            PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(1000)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(Bytes::from(
                    (0..records).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
                )))
        };
        let topic = |name: &'static str, partitions| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str(name)))
                .with_partitions(partitions)
        };
        FetchResponse::default().with_responses(vec![
            topic("a", vec![partition(0, 100), partition(1, 20_000)]),
            topic("b", vec![partition(0, 300_000)]),
        ])
    }

    #[test]
    fn a_spliced_answer_is_byte_for_byte_the_encoded_one() {
        for version in 4..=12 {
            let header = RequestHeader::default()
                .with_request_api_key(ApiKey::Fetch as i16)
                .with_request_api_version(version)
                .with_correlation_id(9);
            let whole = respond(ApiKey::Fetch, &header, &response()).expect("encode");
            let frame = encode(&header, response()).expect("splice");
            assert_eq!(frame.to_bytes(), whole, "v{version}");
            // The size, then per large record set: what precedes it, its prefix, itself; the rest.
            assert_eq!(frame.pieces(), 1 + 2 * 3 + 1, "v{version}");
        }
    }

    #[test]
    fn length_prefixes_follow_the_codec() {
        assert_eq!(&length_prefix(16, true)[..], &[17]);
        assert_eq!(&length_prefix(127, true)[..], &[0x80, 0x01]);
        assert_eq!(&length_prefix(300_000, true)[..], &[0xe1, 0xa7, 0x12]);
        assert_eq!(&length_prefix(16, false)[..], &[0, 0, 0, 16]);
    }
}
