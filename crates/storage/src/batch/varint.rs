//! Kafka's variable-length integers: zigzag-encoded base-128 (protobuf `sint32`/`sint64`).
//!
//! A varint (32-bit) takes 1 to 5 bytes, a varlong (64-bit) 1 to 10; each byte carries 7 bits,
//! least significant group first, with the high bit set on every byte but the last.

use bytes::{BufMut, BytesMut};

/// Why a varint could not be read; becomes the `reason` of a [`crate::BatchError::BadRecord`].
pub(super) type VarintError = &'static str;

/// Maps a signed 32-bit value to unsigned so that small magnitudes encode short.
fn zigzag32(n: i32) -> u64 {
    u64::from(((n << 1) ^ (n >> 31)).cast_unsigned())
}

/// Maps a signed 64-bit value to unsigned so that small magnitudes encode short.
fn zigzag64(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)).cast_unsigned()
}

/// Bytes needed to encode `v` as unsigned base-128.
fn unsigned_len(v: u64) -> usize {
    let bits = u64::BITS - (v | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Bytes needed to encode `n` as a varint.
pub(super) fn varint_len(n: i32) -> usize {
    unsigned_len(zigzag32(n))
}

/// Bytes needed to encode `n` as a varlong.
pub(super) fn varlong_len(n: i64) -> usize {
    unsigned_len(zigzag64(n))
}

/// Bytes needed to encode the non-negative length `n` as a varint (saturating: the caller checks
/// that `n` fits an `i32` before writing it).
pub(super) fn length_len(n: usize) -> usize {
    unsigned_len(u64::try_from(n).unwrap_or(u64::MAX).saturating_mul(2))
}

fn put_unsigned(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Appends `n` as a varint.
pub(super) fn put_varint(buf: &mut BytesMut, n: i32) {
    put_unsigned(buf, zigzag32(n));
}

/// Appends `n` as a varlong.
pub(super) fn put_varlong(buf: &mut BytesMut, n: i64) {
    put_unsigned(buf, zigzag64(n));
}

/// Appends the non-negative length `n` (at most `i32::MAX`) as a varint.
pub(super) fn put_length(buf: &mut BytesMut, n: usize) {
    put_unsigned(buf, u64::try_from(n).unwrap_or(u64::MAX).saturating_mul(2));
}

/// Reads an unsigned base-128 value of at most `bits` bits at `*pos`, advancing `*pos`.
/// Rejects encodings longer than the width allows and bits beyond it.
fn read_unsigned(buf: &[u8], pos: &mut usize, bits: u32) -> Result<u64, VarintError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = buf.get(*pos) else {
            return Err("varint runs past the end");
        };
        *pos += 1;
        let group = u64::from(byte & 0x7f);
        if bits - shift < 7 && group >> (bits - shift) != 0 {
            return Err("varint overflows its width");
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift >= bits {
            return Err("varint is too long");
        }
    }
}

/// Reads a varint at `*pos`, advancing `*pos` past it.
pub(super) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let u = read_unsigned(buf, pos, 32)? as u32;
    Ok((u >> 1).cast_signed() ^ -((u & 1).cast_signed()))
}

/// Reads a varlong at `*pos`, advancing `*pos` past it.
pub(super) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let u = read_unsigned(buf, pos, 64)?;
    Ok((u >> 1).cast_signed() ^ -((u & 1).cast_signed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_varint(n: i32) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, n);
        buf.to_vec()
    }

    fn encode_varlong(n: i64) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_varlong(&mut buf, n);
        buf.to_vec()
    }

    /// Vectors from Kafka's `ByteUtilsTest`.
    const VARINTS: &[(i32, &[u8])] = &[
        (0, &[0x00]),
        (-1, &[0x01]),
        (1, &[0x02]),
        (63, &[0x7e]),
        (-64, &[0x7f]),
        (64, &[0x80, 0x01]),
        (-65, &[0x81, 0x01]),
        (8191, &[0xfe, 0x7f]),
        (-8192, &[0xff, 0x7f]),
        (8192, &[0x80, 0x80, 0x01]),
        (-8193, &[0x81, 0x80, 0x01]),
        (1_048_575, &[0xfe, 0xff, 0x7f]),
        (-1_048_576, &[0xff, 0xff, 0x7f]),
        (1_048_576, &[0x80, 0x80, 0x80, 0x01]),
        (-1_048_577, &[0x81, 0x80, 0x80, 0x01]),
        (134_217_727, &[0xfe, 0xff, 0xff, 0x7f]),
        (-134_217_728, &[0xff, 0xff, 0xff, 0x7f]),
        (134_217_728, &[0x80, 0x80, 0x80, 0x80, 0x01]),
        (-134_217_729, &[0x81, 0x80, 0x80, 0x80, 0x01]),
        (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
        (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
    ];

    #[test]
    fn varint_matches_kafka_vectors() {
        for &(n, bytes) in VARINTS {
            assert_eq!(encode_varint(n), bytes, "encoding {n}");
            assert_eq!(varint_len(n), bytes.len(), "length of {n}");
            let mut pos = 0;
            assert_eq!(read_varint(bytes, &mut pos), Ok(n), "decoding {n}");
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn varlong_round_trips_edge_values() {
        let max = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let min = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(encode_varlong(i64::MAX), max);
        assert_eq!(encode_varlong(i64::MIN), min);
        for n in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::from(i32::MAX) + 1,
            1 << 62,
            -(1 << 62),
            i64::MAX,
            i64::MIN,
        ] {
            let bytes = encode_varlong(n);
            assert_eq!(varlong_len(n), bytes.len(), "length of {n}");
            let mut pos = 0;
            assert_eq!(read_varlong(&bytes, &mut pos), Ok(n), "decoding {n}");
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn lengths_encode_as_non_negative_varints() {
        for n in [0usize, 1, 63, 64, 8191, 8192, i32::MAX as usize] {
            let mut buf = BytesMut::new();
            put_length(&mut buf, n);
            assert_eq!(buf.to_vec(), encode_varint(n as i32));
            assert_eq!(length_len(n), buf.len());
        }
    }

    #[test]
    fn rejects_truncated_varints() {
        for bytes in [&[][..], &[0x80], &[0xff, 0xff, 0xff, 0xff]] {
            let mut pos = 0;
            assert!(read_varint(bytes, &mut pos).is_err(), "{bytes:?}");
            let mut pos = 0;
            assert!(read_varlong(bytes, &mut pos).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn rejects_overlong_varints() {
        // Six bytes for a varint, eleven for a varlong.
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut pos),
            Err("varint is too long")
        );
        let mut pos = 0;
        assert_eq!(
            read_varlong(&[0x80; 11], &mut pos),
            Err("varint is too long")
        );
    }

    #[test]
    fn rejects_bits_beyond_the_width() {
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos),
            Err("varint overflows its width")
        );
        let mut long = [0xff; 10];
        long[9] = 0x02;
        let mut pos = 0;
        assert_eq!(
            read_varlong(&long, &mut pos),
            Err("varint overflows its width")
        );
        // The widest legal last bytes are accepted.
        let mut pos = 0;
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f], &mut pos).is_ok());
    }

    #[test]
    fn reads_from_the_given_position() {
        let bytes = [0xaa, 0x80, 0x01, 0x03];
        let mut pos = 1;
        assert_eq!(read_varint(&bytes, &mut pos), Ok(64));
        assert_eq!(read_varint(&bytes, &mut pos), Ok(-2));
        assert_eq!(pos, 4);
    }
}
