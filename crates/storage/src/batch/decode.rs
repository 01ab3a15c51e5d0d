//! Reading record batches: the records of one batch, and the batches of a buffer.

use std::iter::FusedIterator;
use std::ops::Range;

use bytes::Bytes;

use super::HEADER_LEN;
use super::compression::{self, Compression, DEFAULT_MAX_DECOMPRESSED_BYTES};
use super::header::BatchHeader;
use super::varint::{VarintError, read_varint, read_varlong};
use crate::BatchError;

/// One record decoded from a batch. The key, value and header values are zero-copy slices of
/// the batch's [`Bytes`], or of its decompressed records when the batch is compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// The record's offset: the batch's base offset plus the record's offset delta.
    pub offset: u64,
    /// Create time in ms (or the batch's max timestamp for log-append-time batches).
    pub timestamp_ms: i64,
    /// The key, or `None` for a null key.
    pub key: Option<Bytes>,
    /// The value, or `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in stored order: (key, value or `None`). Keys may repeat.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Iterates over the records of one whole batch (`batch.len()` must equal its total length),
/// decompressing them first if the batch is compressed, up to
/// [`DEFAULT_MAX_DECOMPRESSED_BYTES`]; see [`records_within`].
pub fn records(batch: Bytes) -> Result<RecordIter, BatchError> {
    records_within(batch, DEFAULT_MAX_DECOMPRESSED_BYTES)
}

/// Iterates over the records of one whole batch (`batch.len()` must equal its total length).
///
/// Validates the header (see [`BatchHeader::parse`]) but not the CRC. An uncompressed batch's
/// records are read in place, without copying or allocating. A compressed batch's records are
/// decompressed here, once, into one buffer of at most `max_decompressed_bytes`
/// ([`BatchError::DecompressedTooLarge`] past it, [`BatchError::Decompress`] when they do not
/// decompress), and viewed in it.
///
/// Each item is a result: a malformed record (bad varint, a length past the end, an offset
/// delta out of sequence, fewer or more bytes than the record count accounts for) yields one
/// error, after which the iterator ends.
pub fn records_within(
    batch: Bytes,
    max_decompressed_bytes: usize,
) -> Result<RecordIter, BatchError> {
    let header = whole_batch(&batch)?;
    let (data, pos) = match decompressed(&header, &batch, max_decompressed_bytes)? {
        Some(records) => (Bytes::from(records), 0),
        None => (batch, HEADER_LEN),
    };
    Ok(RecordIter {
        remaining: header.record_count as usize,
        data,
        header,
        pos,
        next_index: 0,
    })
}

/// Checks that every record of one whole batch frames correctly and that there are exactly
/// as many as its header counts, decompressing them first (into one buffer of at most
/// `max_decompressed_bytes`) if the batch is compressed. Allocates nothing per record.
///
/// Fails as [`records_within`] and its iterator would: a consumer can decode every batch that
/// passes.
pub fn validate_records(batch: &[u8], max_decompressed_bytes: usize) -> Result<(), BatchError> {
    let header = whole_batch(batch)?;
    let decompressed = decompressed(&header, batch, max_decompressed_bytes)?;
    let (data, mut pos) = match &decompressed {
        Some(records) => (&records[..], 0),
        None => (batch, HEADER_LEN),
    };
    let count = header.record_count as usize;
    for index in 0..count {
        let record = parse_record(data, pos, index, index + 1 == count, &mut ())
            .map_err(|reason| BatchError::BadRecord { index, reason })?;
        pos = record.end;
    }
    Ok(())
}

/// Parses the header of `batch` and checks that `batch` is exactly the whole batch.
fn whole_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_len();
    if batch.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: batch.len(),
        });
    }
    if batch.len() > total {
        return Err(BatchError::BadLength(header.batch_length));
    }
    Ok(header)
}

/// The decompressed records of a compressed batch, or `None` for an uncompressed one.
fn decompressed(
    header: &BatchHeader,
    batch: &[u8],
    limit: usize,
) -> Result<Option<Vec<u8>>, BatchError> {
    let codec = match header.compression() {
        Some(Compression::None) => return Ok(None),
        Some(codec) => codec,
        None => return Err(BatchError::UnsupportedAttributes(header.attributes)),
    };
    // Every record takes at least `MIN_RECORD_LEN` bytes once decompressed.
    let least = (header.record_count as usize).saturating_mul(super::MIN_RECORD_LEN);
    if least > limit {
        return Err(BatchError::DecompressedTooLarge { codec, limit });
    }
    compression::decompress(codec, &batch[HEADER_LEN..], limit).map(Some)
}

/// Iterator over the records of one batch, made by [`records`] or [`records_within`].
#[derive(Debug, Clone)]
pub struct RecordIter {
    /// The bytes the records are in: the batch itself, or its decompressed records.
    data: Bytes,
    header: BatchHeader,
    /// Where the next record starts in `data`.
    pos: usize,
    /// Index of the next record in the batch (its offset delta).
    next_index: usize,
    /// Records still to be yielded; 0 once an error has been.
    remaining: usize,
}

/// Where the fields of one record lie in the bytes it was parsed from.
struct ParsedRecord {
    timestamp_delta: i64,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    /// Where the record ends (and the next one starts).
    end: usize,
}

/// Receives the headers of a record as [`parse_record`] reads them.
trait HeaderSink {
    /// Called once, before the headers, with how many there are (checked against the bytes).
    fn expect(&mut self, count: usize);
    /// One header: the key's and the value's ranges.
    fn header(&mut self, key: Range<usize>, value: Option<Range<usize>>);
}

/// Checks the headers' framing and keeps nothing.
impl HeaderSink for () {
    fn expect(&mut self, _count: usize) {}
    fn header(&mut self, _key: Range<usize>, _value: Option<Range<usize>>) {}
}

/// Collects the headers as slices of the bytes they were read from.
struct HeaderSlices<'a> {
    data: &'a Bytes,
    headers: Vec<(Bytes, Option<Bytes>)>,
}

impl HeaderSink for HeaderSlices<'_> {
    fn expect(&mut self, count: usize) {
        self.headers.reserve_exact(count);
    }

    fn header(&mut self, key: Range<usize>, value: Option<Range<usize>>) {
        self.headers
            .push((self.data.slice(key), value.map(|v| self.data.slice(v))));
    }
}

/// Parses the record at `pos` of `data`, the record with offset delta `index`; `last` says
/// whether it is the last record counted, which must end exactly at the end of `data`.
fn parse_record(
    data: &[u8],
    pos: usize,
    index: usize,
    last: bool,
    headers: &mut impl HeaderSink,
) -> Result<ParsedRecord, &'static str> {
    let mut pos = pos;
    let len =
        usize::try_from(read_varint(data, &mut pos)?).map_err(|_| "negative record length")?;
    let end = pos
        .checked_add(len)
        .filter(|&end| end <= data.len())
        .ok_or("record runs past the end of the batch")?;
    let mut r = Reader {
        data: &data[..end],
        pos,
    };
    r.take(1)?; // attributes: unused in v2
    let timestamp_delta = r.varlong()?;
    if usize::try_from(r.varint()?) != Ok(index) {
        return Err("offset delta out of sequence");
    }
    let key = r.nullable()?;
    let value = r.nullable()?;
    let header_count = usize::try_from(r.varint()?).map_err(|_| "negative header count")?;
    // Each header takes at least two bytes, which bounds what the sink may reserve.
    if header_count > r.remaining() / 2 {
        return Err("header count exceeds the record length");
    }
    headers.expect(header_count);
    for _ in 0..header_count {
        let key_len =
            usize::try_from(r.varint()?).map_err(|_| "null or negative header key length")?;
        let key = r.take(key_len)?;
        let value = r.nullable()?;
        headers.header(key, value);
    }
    if r.pos != end {
        return Err("record length does not match its fields");
    }
    if last && end != data.len() {
        return Err("bytes left after the last record");
    }
    Ok(ParsedRecord {
        timestamp_delta,
        key,
        value,
        end,
    })
}

impl RecordIter {
    /// The header of the batch being iterated.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Decodes the record at `self.pos` and advances past it.
    fn decode_next(&mut self) -> Result<RecordView, &'static str> {
        let mut headers = HeaderSlices {
            data: &self.data,
            headers: Vec::new(),
        };
        let record = parse_record(
            &self.data,
            self.pos,
            self.next_index,
            self.remaining == 1,
            &mut headers,
        )?;
        let timestamp_ms = if self.header.is_log_append_time() {
            self.header.max_timestamp
        } else {
            self.header
                .base_timestamp
                .wrapping_add(record.timestamp_delta)
        };
        let view = RecordView {
            offset: self.header.base_offset.wrapping_add(self.next_index as u64),
            timestamp_ms,
            key: record.key.map(|k| self.data.slice(k)),
            value: record.value.map(|v| self.data.slice(v)),
            headers: headers.headers,
        };
        self.pos = record.end;
        Ok(view)
    }
}

impl Iterator for RecordIter {
    type Item = Result<RecordView, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let index = self.next_index;
        match self.decode_next() {
            Ok(record) => {
                self.remaining -= 1;
                self.next_index += 1;
                Some(Ok(record))
            }
            Err(reason) => {
                self.remaining = 0;
                Some(Err(BatchError::BadRecord { index, reason }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // An error ends the iteration early, so only one more item is certain.
        (self.remaining.min(1), Some(self.remaining))
    }
}

impl FusedIterator for RecordIter {}

/// Reads the fields of one record, never past its end.
struct Reader<'a> {
    /// The records' bytes up to the end of the record.
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The range of the next `len` bytes.
    fn take(&mut self, len: usize) -> Result<Range<usize>, &'static str> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.data.len())
            .ok_or("field runs past the end of its record")?;
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    fn varint(&mut self) -> Result<i32, VarintError> {
        read_varint(self.data, &mut self.pos)
    }

    fn varlong(&mut self) -> Result<i64, VarintError> {
        read_varlong(self.data, &mut self.pos)
    }

    /// A byte string with a varint length, -1 meaning null.
    fn nullable(&mut self) -> Result<Option<Range<usize>>, &'static str> {
        match self.varint()? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len).map_err(|_| "length below -1")?;
                self.take(len).map(Some)
            }
        }
    }
}

/// Splits a buffer of concatenated whole batches into (header, batch bytes) without copying.
///
/// Each header is validated ([`BatchHeader::parse`]); CRCs and records are not. An invalid
/// header or a trailing partial batch ([`BatchError::Truncated`]) yields one error, after which
/// the iterator ends.
pub fn batches(buf: Bytes) -> BatchIter {
    BatchIter { rest: buf }
}

/// Iterator over the batches of a buffer, made by [`batches`].
#[derive(Debug, Clone)]
pub struct BatchIter {
    /// The bytes not yet split off; empty once an error has been yielded.
    rest: Bytes,
}

impl Iterator for BatchIter {
    type Item = Result<(BatchHeader, Bytes), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = BatchHeader::parse(&self.rest).and_then(|header| {
            let total = header.total_len();
            if self.rest.len() < total {
                Err(BatchError::Truncated {
                    needed: total,
                    available: self.rest.len(),
                })
            } else {
                Ok((header, self.rest.split_to(total)))
            }
        });
        if result.is_err() {
            self.rest.clear();
        }
        Some(result)
    }
}

impl FusedIterator for BatchIter {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{LOG_OVERHEAD, MAGIC};

    /// A batch of `count` records whose bytes are `body`, with a valid header (CRC unset).
    fn batch_of(count: i32, attributes: i16, body: &[u8]) -> Bytes {
        let header = BatchHeader {
            base_offset: 100,
            batch_length: (HEADER_LEN - LOG_OVERHEAD + body.len()) as i32,
            partition_leader_epoch: 0,
            magic: MAGIC,
            crc: 0,
            attributes,
            last_offset_delta: count - 1,
            base_timestamp: 1000,
            max_timestamp: 2000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: count,
        };
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(body);
        Bytes::from(bytes)
    }

    fn decode(count: i32, body: &[u8]) -> Result<Vec<RecordView>, BatchError> {
        records(batch_of(count, 0, body))?.collect()
    }

    fn bad_record(index: usize, reason: &'static str) -> Result<Vec<RecordView>, BatchError> {
        Err(BatchError::BadRecord { index, reason })
    }

    #[test]
    fn decodes_hand_written_records() -> Result<(), BatchError> {
        let body = [
            // ts delta -1, key "ab", value null, one header "h" => "xyz"
            0x1c, 0, 0x01, 0x00, 0x04, b'a', b'b', 0x01, 0x02, 0x02, b'h', 0x06, b'x', b'y', b'z',
            // ts delta +64, key null, value "", no headers
            0x0e, 0, 0x80, 0x01, 0x02, 0x01, 0x00, 0x00,
        ];
        let records = decode(2, &body)?;
        let expected = vec![
            RecordView {
                offset: 100,
                timestamp_ms: 999,
                key: Some(Bytes::from_static(b"ab")),
                value: None,
                headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"xyz")))],
            },
            RecordView {
                offset: 101,
                timestamp_ms: 1064,
                key: None,
                value: Some(Bytes::new()),
                headers: vec![],
            },
        ];
        assert_eq!(records, expected);
        Ok(())
    }

    #[test]
    fn log_append_time_overrides_record_timestamps() -> Result<(), BatchError> {
        let body = [0x0c, 0, 0x04, 0, 0x01, 0x01, 0];
        let records: Vec<_> = records(batch_of(1, 8, &body))?.collect::<Result<_, _>>()?;
        assert_eq!(records[0].timestamp_ms, 2000);
        Ok(())
    }

    #[test]
    fn rejects_malformed_records() {
        let pad = [0u8; 7];
        let cases: [(&[u8], &'static str); 10] = [
            (&[0x01, 0, 0, 0, 0x01, 0x01, 0], "negative record length"),
            (
                &[0x7e, 0, 0, 0, 0x01, 0x01, 0],
                "record runs past the end of the batch",
            ),
            (
                &[0x0c, 0, 0, 0x02, 0x01, 0x01, 0],
                "offset delta out of sequence",
            ),
            (&[0x0c, 0, 0, 0, 0x03, 0x01, 0], "length below -1"),
            (
                &[0x0c, 0, 0, 0, 0x14, 0x01, 0],
                "field runs past the end of its record",
            ),
            (
                &[0x14, 0, 0, 0, 0x01, 0x01, 0xfe, 0xff, 0xff, 0xff, 0x0f],
                "header count exceeds the record length",
            ),
            (
                &[0x14, 0, 0, 0, 0x01, 0x01, 0x06, 0, 0x01, 0, 0x01],
                "header count exceeds the record length",
            ),
            (&[0x0c, 0, 0, 0, 0x01, 0x01, 0x01], "negative header count"),
            (
                &[0x10, 0, 0, 0, 0x01, 0x01, 0x02, 0x01, 0x01],
                "null or negative header key length",
            ),
            (
                &[0x0e, 0, 0, 0, 0x01, 0x01, 0, 0],
                "record length does not match its fields",
            ),
        ];
        for (body, reason) in cases {
            let mut padded = body.to_vec();
            padded.extend_from_slice(&pad);
            // The padding would be "bytes left after the last record": give it a second
            // record slot so the first record's own error is the one reported.
            assert_eq!(decode(2, &padded), bad_record(0, reason), "{body:02x?}");
        }
    }

    #[test]
    fn rejects_bad_varints_inside_records() {
        let mut body = vec![0x16, 0];
        body.extend_from_slice(&[0xff; 9]);
        body.push(0x02);
        assert_eq!(
            decode(1, &body),
            bad_record(0, "varint overflows its width")
        );
        let mut body = vec![0x18, 0];
        body.extend_from_slice(&[0x80; 10]);
        body.push(0);
        assert_eq!(decode(1, &body), bad_record(0, "varint is too long"));
        let body = [0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0];
        assert_eq!(decode(1, &body), bad_record(0, "varint is too long"));
    }

    #[test]
    fn record_count_must_match_the_bytes() {
        let one = [0x0c, 0, 0, 0, 0x01, 0x01, 0];
        // Bytes after the last counted record.
        let mut extra = one.to_vec();
        extra.extend_from_slice(&[0x0c, 0, 0, 0x02, 0x01, 0x01, 0]);
        assert_eq!(
            decode(1, &extra),
            bad_record(0, "bytes left after the last record")
        );
        // A counted record that is not there.
        let mut short = one.to_vec();
        short.extend_from_slice(&[0x00; 7]);
        short[7] = 0x7e;
        assert_eq!(
            decode(2, &short),
            bad_record(1, "record runs past the end of the batch")
        );
    }

    #[test]
    fn stops_after_the_first_error() -> Result<(), BatchError> {
        let body = [
            0x01, 0, 0, 0, 0x01, 0x01, 0, 0x0c, 0, 0, 0x01, 0x01, 0x01, 0,
        ];
        let mut iter = records(batch_of(2, 0, &body))?;
        assert_eq!(iter.size_hint(), (1, Some(2)));
        assert!(matches!(iter.next(), Some(Err(_))));
        assert_eq!(iter.size_hint(), (0, Some(0)));
        assert!(iter.next().is_none());
        assert!(iter.next().is_none());
        Ok(())
    }

    #[test]
    fn needs_exactly_one_whole_batch() {
        let batch = batch_of(1, 0, &[0x0c, 0, 0, 0, 0x01, 0x01, 0]);
        let total = batch.len();
        assert_eq!(
            records(batch.slice(..total - 1)).err(),
            Some(BatchError::Truncated {
                needed: total,
                available: total - 1
            })
        );
        let mut longer = batch.to_vec();
        longer.push(0);
        assert_eq!(
            records(Bytes::from(longer)).err(),
            Some(BatchError::BadLength((total - LOG_OVERHEAD) as i32))
        );
        let mut header = batch.to_vec();
        header[16] = 1;
        assert_eq!(
            records(Bytes::from(header)).err(),
            Some(BatchError::BadMagic(1))
        );
    }

    #[test]
    fn splits_concatenated_batches() -> Result<(), BatchError> {
        let first = batch_of(1, 0, &[0x0c, 0, 0, 0, 0x01, 0x01, 0]);
        let second = batch_of(1, 0, &[0x0e, 0, 0, 0, 0x02, 0x00, 0x01, 0]);
        let mut buf = first.to_vec();
        buf.extend_from_slice(&second);
        let whole = Bytes::from(buf.clone());
        let split: Vec<_> = batches(whole).collect::<Result<_, _>>()?;
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].1, first);
        assert_eq!(split[1].1, second);
        assert_eq!(split[1].0, BatchHeader::parse(&second)?);

        // A partial batch at the end.
        buf.extend_from_slice(&first[..HEADER_LEN + 2]);
        let mut iter = batches(Bytes::from(buf));
        assert!(matches!(iter.next(), Some(Ok(_))));
        assert!(matches!(iter.next(), Some(Ok(_))));
        assert_eq!(
            iter.next(),
            Some(Err(BatchError::Truncated {
                needed: first.len(),
                available: HEADER_LEN + 2
            }))
        );
        assert!(iter.next().is_none());
        Ok(())
    }

    #[test]
    fn batch_split_stops_at_a_bad_header() {
        assert!(batches(Bytes::new()).next().is_none());
        let mut iter = batches(Bytes::from_static(&[0xff; 100]));
        assert!(matches!(iter.next(), Some(Err(BatchError::BadLength(-1)))));
        assert!(iter.next().is_none());
        let mut iter = batches(Bytes::from_static(&[0; 10]));
        assert_eq!(
            iter.next(),
            Some(Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: 10
            }))
        );
        assert!(iter.next().is_none());
    }
}
