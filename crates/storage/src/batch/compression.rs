//! The compression codecs of a batch (attribute bits 0-2) and decompressing a batch's records.
//!
//! Kafka compresses the records section of a batch (everything after the 61-byte header) as
//! one stream; the header itself stays uncompressed. Sluice stores such batches as they come
//! and decompresses only to decode their records, always into one buffer whose size is capped
//! (a few bytes of gzip or zstd can claim gigabytes).

use std::fmt;
use std::io::Read;

use crate::BatchError;

/// Attribute bits 0-2: the compression codec.
pub(super) const COMPRESSION_MASK: i16 = 0b111;

/// The default cap on the decompressed size of one batch's records: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// The stream header of the xerial snappy framing the Java client writes: the magic bytes,
/// then two big-endian `i32`s (the format version and the oldest compatible one).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = XERIAL_MAGIC.len() + 8;

/// How a batch's records are compressed (attribute bits 0-2), as Kafka numbers the codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// 0: records stored as they are.
    None,
    /// 1: a gzip stream.
    Gzip,
    /// 2: snappy, as one raw block or in the xerial framing of the Java client.
    Snappy,
    /// 3: an LZ4 frame.
    Lz4,
    /// 4: a zstd frame.
    Zstd,
}

impl Compression {
    /// The codec of a batch with these attributes, or `None` for codecs 5-7, which Kafka
    /// does not define.
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        match attributes & COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The codec's attribute bits (its number, 0-4).
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec's name as Kafka's `compression.type` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decompresses the records section `input` of a batch compressed with `codec` into one
/// buffer of at most `limit` bytes. `codec` is not [`Compression::None`].
pub(super) fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, BatchError> {
    let failed = |reason: String| BatchError::Decompress { codec, reason };
    let too_large = BatchError::DecompressedTooLarge { codec, limit };
    // Compressed records are rarely more than a few times their compressed size; the buffer
    // grows past this guess when they are.
    let guess = input.len().saturating_mul(4).min(limit);
    let out = match codec {
        Compression::None => return Ok(input.to_vec()),
        Compression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(input), guess, limit),
        Compression::Lz4 => {
            lz4_frame_is_whole(input).map_err(|what| failed(what.to_owned()))?;
            read_capped(lz4_flex::frame::FrameDecoder::new(input), guess, limit)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| failed(e.to_string()))?;
            read_capped(decoder, guess, limit)
        }
        Compression::Snappy => return snappy(input, limit).map_err(|e| e.into_error(codec, limit)),
    };
    match out {
        Ok(Some(out)) => Ok(out),
        Ok(None) => Err(too_large),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// Checks that an LZ4 frame ends with its end mark (a zero block size), followed by the
/// content checksum when its descriptor announces one. The decoder takes a frame cut at a
/// block boundary for a whole one; Kafka's own reader does not, so neither does Sluice.
fn lz4_frame_is_whole(frame: &[u8]) -> Result<(), &'static str> {
    // Bit 2 of the descriptor's FLG byte (after the 4-byte magic): a content checksum follows.
    let flags = *frame.get(4).ok_or("the LZ4 frame is cut short")?;
    let trailer = if flags & 0b100 != 0 { 8 } else { 4 };
    let end_mark = frame
        .len()
        .checked_sub(trailer)
        .and_then(|at| frame.get(at..at + 4));
    if end_mark != Some(&[0; 4][..]) {
        return Err("the LZ4 frame has no end mark: it is cut short");
    }
    Ok(())
}

/// Reads `reader` to its end into a buffer presized to `guess`; `None` once it yields more
/// than `limit` bytes.
fn read_capped(reader: impl Read, guess: usize, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(guess);
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

/// Why snappy input did not decompress.
enum SnappyError {
    /// The framing or a block is damaged.
    Damaged(String),
    /// The blocks declare more than the limit.
    TooLarge,
}

impl SnappyError {
    fn into_error(self, codec: Compression, limit: usize) -> BatchError {
        match self {
            SnappyError::Damaged(reason) => BatchError::Decompress { codec, reason },
            SnappyError::TooLarge => BatchError::DecompressedTooLarge { codec, limit },
        }
    }
}

impl From<snap::Error> for SnappyError {
    fn from(e: snap::Error) -> Self {
        SnappyError::Damaged(e.to_string())
    }
}

/// Snappy as Kafka clients write it: one raw block (librdkafka and most others), or the
/// xerial framing (the Java client): [`XERIAL_MAGIC`], the two version numbers, then blocks
/// each preceded by its big-endian `i32` length. The blocks' decompressed lengths are read
/// from their preambles and checked against `limit` before anything is allocated.
fn snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, SnappyError> {
    let blocks = match input.strip_prefix(&XERIAL_MAGIC) {
        Some(_) => xerial_blocks(input)?,
        None => vec![input],
    };
    let mut total = 0usize;
    for block in &blocks {
        total = total.saturating_add(snap::raw::decompress_len(block)?);
        if total > limit {
            return Err(SnappyError::TooLarge);
        }
    }
    let mut out = vec![0; total];
    let mut decoder = snap::raw::Decoder::new();
    let mut at = 0;
    for block in blocks {
        at += decoder.decompress(block, &mut out[at..])?;
    }
    Ok(out)
}

/// The snappy blocks of a xerial stream (which starts with [`XERIAL_MAGIC`]).
fn xerial_blocks(input: &[u8]) -> Result<Vec<&[u8]>, SnappyError> {
    let damaged = |what: &str| SnappyError::Damaged(format!("xerial snappy framing: {what}"));
    let mut rest = input
        .get(XERIAL_HEADER_LEN..)
        .ok_or_else(|| damaged("the stream header is cut short"))?;
    let mut blocks = Vec::new();
    while let Some((len, after)) = rest.split_first_chunk::<4>() {
        let len = usize::try_from(i32::from_be_bytes(*len))
            .map_err(|_| damaged("a block length is negative"))?;
        let block = after
            .get(..len)
            .ok_or_else(|| damaged("a block runs past the end of the records"))?;
        blocks.push(block);
        rest = &after[len..];
    }
    if !rest.is_empty() {
        return Err(damaged("bytes left after the last block"));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn sample() -> Vec<u8> {
        (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
        match codec {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                w.write_all(data).expect("gzip");
                w.finish().expect("gzip")
            }
            Compression::Snappy => snap::raw::Encoder::new()
                .compress_vec(data)
                .expect("snappy"),
            Compression::Lz4 => {
                let mut w = lz4_flex::frame::FrameEncoder::new(Vec::new());
                w.write_all(data).expect("lz4");
                w.finish().expect("lz4")
            }
            Compression::Zstd => zstd::encode_all(data, 3).expect("zstd"),
        }
    }

    const CODECS: [Compression; 4] = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn codecs_round_trip_their_attribute_bits() {
        for bits in 0..8i16 {
            let codec = Compression::from_attributes(bits | 0b1000);
            assert_eq!(
                codec.map(Compression::attribute_bits),
                (bits < 5).then_some(bits)
            );
        }
        assert_eq!(Compression::Lz4.to_string(), "lz4");
        assert_eq!(Compression::None.name(), "none");
    }

    #[test]
    fn every_codec_decompresses_what_its_crate_compresses() {
        let data = sample();
        for codec in CODECS {
            let compressed = compress(codec, &data);
            assert!(compressed.len() < data.len(), "{codec}");
            assert_eq!(
                decompress(codec, &compressed, data.len()).as_deref(),
                Ok(&data[..]),
                "{codec}"
            );
        }
    }

    #[test]
    fn the_limit_applies_to_the_decompressed_size() {
        let data = sample();
        for codec in CODECS {
            let compressed = compress(codec, &data);
            assert_eq!(
                decompress(codec, &compressed, data.len() - 1),
                Err(BatchError::DecompressedTooLarge {
                    codec,
                    limit: data.len() - 1
                }),
                "{codec}"
            );
        }
    }

    #[test]
    fn damaged_input_is_an_error_naming_the_codec() {
        let data = sample();
        for codec in CODECS {
            let mut compressed = compress(codec, &data);
            let cut = compressed.len() / 2;
            compressed.truncate(cut);
            let err = decompress(codec, &compressed, data.len());
            assert!(
                matches!(&err, Err(BatchError::Decompress { codec: c, .. }) if *c == codec),
                "{codec}: {err:?}"
            );
            let err = decompress(codec, &[0xff; 40], data.len());
            assert!(
                matches!(&err, Err(BatchError::Decompress { codec: c, .. }) if *c == codec),
                "{codec}: {err:?}"
            );
        }
    }

    #[test]
    fn an_lz4_frame_cut_at_a_block_boundary_is_refused() {
        let data = sample();
        for checksum in [false, true] {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .content_checksum(checksum);
            let mut w = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            w.write_all(&data).expect("lz4");
            let whole = w.finish().expect("lz4");
            assert_eq!(
                decompress(Compression::Lz4, &whole, data.len()).as_deref(),
                Ok(&data[..])
            );
            let trailer = if checksum { 8 } else { 4 };
            let cut = &whole[..whole.len() - trailer];
            let err = decompress(Compression::Lz4, cut, data.len());
            assert!(
                matches!(&err, Err(BatchError::Decompress { reason, .. }) if reason.contains("end mark")),
                "{err:?}"
            );
        }
        assert!(decompress(Compression::Lz4, &[0x04, 0x22], 10).is_err());
    }

    /// The Java client's framing of `data` in blocks of `block` bytes.
    fn xerial(data: &[u8], block: usize) -> Vec<u8> {
        let mut out = XERIAL_MAGIC.to_vec();
        out.extend(1i32.to_be_bytes());
        out.extend(1i32.to_be_bytes());
        for chunk in data.chunks(block) {
            let compressed = compress(Compression::Snappy, chunk);
            out.extend(
                i32::try_from(compressed.len())
                    .expect("small")
                    .to_be_bytes(),
            );
            out.extend(compressed);
        }
        out
    }

    #[test]
    fn snappy_reads_the_xerial_framing() {
        let data = sample();
        let framed = xerial(&data, 32 * 1024);
        assert_eq!(
            decompress(Compression::Snappy, &framed, data.len()).as_deref(),
            Ok(&data[..])
        );
        assert_eq!(
            decompress(Compression::Snappy, &framed, data.len() - 1),
            Err(BatchError::DecompressedTooLarge {
                codec: Compression::Snappy,
                limit: data.len() - 1
            })
        );
        // An empty stream has no blocks.
        assert_eq!(
            decompress(Compression::Snappy, &framed[..XERIAL_HEADER_LEN], 10),
            Ok(Vec::new())
        );
    }

    #[test]
    fn damaged_xerial_framing_is_refused() {
        let framed = xerial(&sample(), 32 * 1024);
        let mut negative = framed.clone();
        negative[XERIAL_HEADER_LEN..XERIAL_HEADER_LEN + 4].copy_from_slice(&(-1i32).to_be_bytes());
        let mut trailing = framed.clone();
        trailing.extend([0, 0, 1]);
        for (input, what) in [
            (&framed[..10], "stream header"),
            (&framed[..framed.len() - 1], "past the end"),
            (&negative[..], "negative"),
            (&trailing[..], "bytes left"),
        ] {
            let err = decompress(Compression::Snappy, input, 1 << 20);
            assert!(
                matches!(&err, Err(BatchError::Decompress { reason, .. }) if reason.contains(what)),
                "{what}: {err:?}"
            );
        }
    }
}
