//! The frames every journal file holds after its header: `body_len u32, crc u32 (CRC-32C
//! of the body), body` (big-endian), the body being one or more records of the journal's
//! kind. One frame is one write, so the records of a frame survive a crash together or not
//! at all.

/// Length and CRC of a frame.
pub(crate) const FRAME_HEADER_LEN: usize = 4 + 4;

/// Appends one frame holding whatever `body` writes to `out`; the error says which field
/// does not fit.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    body(out)?;
    let body = &out[start + FRAME_HEADER_LEN..];
    let body_len = u32::try_from(body.len())
        .map_err(|_| format!("a frame of {} bytes exceeds 4 GiB", body.len()))?;
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&body_len.to_be_bytes());
    out[start + 4..start + FRAME_HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Appends a string as `len u16, UTF-8 bytes`; `what` names it in the error.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str, what: &str) -> Result<(), String> {
    let len = u16::try_from(s.len())
        .map_err(|_| format!("{what} of {} bytes exceeds {} bytes", s.len(), u16::MAX))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// What is found at a position of a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A frame whose CRC matches: its body, and the bytes it takes with its header.
    Intact { body: &'a [u8], len: usize },
    /// Fewer bytes remain than the frame's header or its stated length needs.
    Incomplete,
    /// The stated length is 0 (no frame is empty).
    EmptyLength,
    /// The body does not match its CRC; `ends_at_eof` when it is the last thing in the file.
    BadCrc {
        stored: u32,
        computed: u32,
        ends_at_eof: bool,
    },
}

/// Reads the frame at the start of `bytes` (the rest of a file).
pub(crate) fn read_frame(bytes: &[u8]) -> Frame<'_> {
    let Some((header, rest)) = bytes.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Frame::Incomplete;
    };
    let body_len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let stored = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if body_len == 0 {
        return Frame::EmptyLength;
    }
    let Some(body) = rest.get(..body_len) else {
        return Frame::Incomplete;
    };
    let computed = crc32c::crc32c(body);
    if computed != stored {
        return Frame::BadCrc {
            stored,
            computed,
            ends_at_eof: rest.len() == body_len,
        };
    }
    Frame::Intact {
        body,
        len: FRAME_HEADER_LEN + body_len,
    }
}

/// Reads the bytes of a frame body front to back; each error names the field it ended in.
#[derive(Debug)]
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// The bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.0.len()
    }

    /// Takes the next `len` bytes.
    pub(crate) fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err(format!("frame ends inside a {what}"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    /// Takes the next `N` bytes.
    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    /// Takes a big-endian `u32`.
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_be_bytes)
    }

    /// Takes a big-endian `u64`.
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_be_bytes)
    }

    /// Takes a big-endian `i64`.
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, String> {
        self.array(what).map(i64::from_be_bytes)
    }

    /// Takes a string written by [`put_str`].
    pub(crate) fn string(&mut self, what: &str) -> Result<String, String> {
        let len = usize::from(u16::from_be_bytes(self.array(what)?));
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| format!("{what} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, |out| {
            out.extend_from_slice(body);
            Ok(())
        })
        .expect("encode");
        out
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_detected() {
        let bytes = frame(b"some records of a journal");
        let Frame::Intact { body, len } = read_frame(&bytes) else {
            panic!("not intact");
        };
        assert_eq!(
            (body, len),
            (&b"some records of a journal"[..], bytes.len())
        );
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    !matches!(read_frame(&bad), Frame::Intact { .. }),
                    "byte {i} bit {bit} accepted"
                );
            }
        }
        for len in 0..bytes.len() {
            let cut = read_frame(&bytes[..len]);
            assert!(
                matches!(cut, Frame::Incomplete | Frame::EmptyLength),
                "cut to {len}: {cut:?}"
            );
        }
        let mut followed = bytes.clone();
        followed[FRAME_HEADER_LEN] ^= 1;
        followed.extend_from_slice(&bytes);
        assert!(matches!(
            read_frame(&followed),
            Frame::BadCrc {
                ends_at_eof: false,
                ..
            }
        ));
    }

    #[test]
    fn strings_too_long_for_the_format_are_refused() {
        let long = "t".repeat(usize::from(u16::MAX) + 1);
        let err = put_str(&mut Vec::new(), &long, "topic name");
        assert!(err.is_err_and(|e| e.contains("topic name of 65536 bytes exceeds 65535")));
        let mut out = Vec::new();
        put_str(&mut out, "héllo", "name").expect("fits");
        let mut reader = Reader(&out);
        assert_eq!(reader.string("name").as_deref(), Ok("héllo"));
        assert_eq!(reader.remaining(), 0);
        assert!(
            Reader(&[0, 3, b'a'])
                .string("name")
                .is_err_and(|e| e.contains("inside a name"))
        );
    }
}
