//! Kafka record batches (format v2, magic 2): the unit Sluice stores on disk and sends on the
//! wire, byte for byte what a Kafka broker would store. Batches may be compressed (gzip,
//! snappy, lz4 or zstd, see [`Compression`]); they are stored as they came and their records
//! decompressed only to decode them.
//!
//! A batch is a 61-byte [`BatchHeader`] followed by its records. Integers in the header are
//! big-endian; record fields are zigzag varints (see `docs/storage-format.md`). The CRC-32C in
//! the header covers everything from the attributes field to the end of the batch, so the
//! base offset can be rewritten ([`set_base_offset`]) without touching it.
//!
//! - [`RecordBatchBuilder`] writes an uncompressed batch from records in one buffer.
//! - [`records`] decodes the records of one batch as [`RecordView`]s: zero-copy slices of an
//!   uncompressed batch, or of the one buffer a compressed batch's records decompress into.
//! - [`validate_records`] checks every record of a batch without keeping any.
//! - [`batches`] splits a buffer of concatenated batches.
//!
//! Decoding never panics and never allocates more than the input justifies: every length and
//! count is checked against the bytes actually present, and decompressed records against a
//! cap ([`DEFAULT_MAX_DECOMPRESSED_BYTES`] unless [`records_within`] is given another).

mod builder;
mod compression;
mod decode;
mod header;
mod varint;

pub use builder::RecordBatchBuilder;
pub use compression::{Compression, DEFAULT_MAX_DECOMPRESSED_BYTES};
pub use decode::{
    BatchIter, RecordIter, RecordView, batches, records, records_within, validate_records,
};
pub(crate) use header::set_log_append_time;
pub use header::{BatchHeader, set_base_offset, verify_crc};

/// Bytes of the batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;

/// Bytes before the batch length's scope: the base offset and the batch length itself.
pub const LOG_OVERHEAD: usize = 12;

/// The magic byte of record batch format v2, the only one supported.
pub const MAGIC: i8 = 2;

/// The largest batch the format can describe: its length field is an `i32`.
pub const MAX_BATCH_LEN: usize = LOG_OVERHEAD + i32::MAX as usize;

/// The smallest possible record: one byte each for the length, attributes, timestamp delta,
/// offset delta, key length, value length and header count.
const MIN_RECORD_LEN: usize = 7;
