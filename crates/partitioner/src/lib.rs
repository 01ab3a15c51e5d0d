//! Kafka's default partitioner for keyed records, shared by the broker and the client so that a
//! key maps to the same partition everywhere (and the same one as in Kafka).
#![warn(missing_docs)]

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`): 32-bit
/// MurmurHash2 with seed `0x9747b28c`, reading the input as little-endian words.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Kafka hashes Java arrays, whose length is an `int`; the truncation matches it.
    let mut h = SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    i32::from_be_bytes(h.to_be_bytes())
}

/// The partition Kafka's default partitioner picks for `key`:
/// `(murmur2(key) & 0x7fffffff) % partitions`. `partitions` must be at least 1.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let positive = u32::from_be_bytes(murmur2(key).to_be_bytes()) & 0x7fff_ffff;
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` vectors.
    const KAFKA_VECTORS: [(&str, i32); 10] = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        ("abc", 479_470_107),
        ("string-f-24-chars-length", 124_730_809),
        ("string-fo-25-chars-length", 1_269_511_650),
        ("string-foo-26-chars-length", 119_165_628),
        ("string-last-27-chars-length", 1_089_971_754),
    ];

    /// librdkafka's murmur2 vectors (it matches Kafka's Java client), covering every tail length.
    const LIBRDKAFKA_VECTORS: [(&str, u32); 9] = [
        ("kafka", 0xd067_cf64),
        ("giberish123456789", 0x8f55_2b0c),
        ("1234", 0x9fc9_7b14),
        ("234", 0xe7c0_09ca),
        ("34", 0x8739_30da),
        ("4", 0x5a4b_5ca1),
        ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
        ("reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62_b377),
        ("", 0x106e_08d9),
    ];

    #[test]
    fn murmur2_matches_kafka() {
        for (input, expected) in KAFKA_VECTORS {
            assert_eq!(murmur2(input.as_bytes()), expected, "{input}");
        }
        for (input, expected) in LIBRDKAFKA_VECTORS {
            assert_eq!(
                u32::from_be_bytes(murmur2(input.as_bytes()).to_be_bytes()),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn partition_masks_the_sign_bit_like_kafka() {
        // murmur2("21") = -973932308 = 0xc5f2_f8ec; masked: 0x45f2_f8ec = 1173551340.
        assert_eq!(partition_for_key(b"21", u32::MAX), 1_173_551_340);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        // murmur2("abc") is positive and kept as is.
        assert_eq!(partition_for_key(b"abc", 1000), 479_470_107 % 1000);
        for (input, _) in KAFKA_VECTORS {
            assert_eq!(partition_for_key(input.as_bytes(), 1), 0);
            assert!(partition_for_key(input.as_bytes(), 3) < 3);
        }
    }
}
