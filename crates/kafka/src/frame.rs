//! Kafka's framing: every request and response is a 4-byte big-endian size, then that many
//! bytes.

use std::io::IoSlice;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::KafkaError;

/// Reads one request frame (without its size prefix). `Ok(None)` when the client closed the
/// connection between frames. The declared size is checked against `limit` before a byte
/// is allocated for the frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Bytes>, KafkaError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    let len = usize::try_from(size)
        .ok()
        .filter(|&len| len > 0 && len <= limit)
        .ok_or(KafkaError::FrameSize {
            size: i64::from(size),
            limit,
        })?;
    // Read into spare capacity: no zero-filling of a buffer about to be overwritten.
    let mut frame = BytesMut::with_capacity(len);
    let mut body = reader.take(len as u64);
    while frame.len() < len {
        if body.read_buf(&mut frame).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Some(frame.freeze()))
}

/// Starts a response frame: room for the size prefix, filled in by [`finish_frame`].
pub(crate) fn start_frame(capacity: usize) -> BytesMut {
    let mut frame = BytesMut::with_capacity(4 + capacity);
    frame.put_i32(0);
    frame
}

/// Writes the size prefix of a frame begun with [`start_frame`].
pub(crate) fn finish_frame(mut frame: BytesMut) -> Bytes {
    let len = i32::try_from(frame.len() - 4).unwrap_or(i32::MAX);
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame.freeze()
}

/// A response frame as the pieces to send, in order: encoded parts and, between them, stored
/// record batches that are written from where they lie instead of being copied into an
/// encoded buffer (see `api::fetch_frame`).
#[derive(Debug, Default)]
pub(crate) struct Frame(Vec<Bytes>);

impl From<Bytes> for Frame {
    fn from(encoded: Bytes) -> Self {
        Frame(vec![encoded])
    }
}

impl Frame {
    /// A frame of these pieces; the first starts with the size of the rest.
    pub(crate) fn from_pieces(pieces: Vec<Bytes>) -> Self {
        Frame(pieces)
    }

    /// How many pieces the frame is sent as.
    #[cfg(test)]
    pub(crate) fn pieces(&self) -> usize {
        self.0.len()
    }

    /// The frame in one buffer.
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Bytes {
        self.0.concat().into()
    }

    /// Writes every piece with vectored writes (one system call for the whole frame when the
    /// socket takes it).
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = self
            .0
            .iter()
            .filter(|piece| !piece.is_empty())
            .map(|piece| IoSlice::new(piece))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let written = writer.write_vectored(rest).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_and_sizes_checked_first() {
        let mut input: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c'];
        let frame = read_frame(&mut input, 10).await.expect("read");
        assert_eq!(frame.as_deref(), Some(&b"abc"[..]));
        assert!(read_frame(&mut input, 10).await.expect("eof").is_none());

        // A size over the limit is refused before the body is read (there is none here).
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        let err = read_frame(&mut huge, 100 << 20)
            .await
            .expect_err("too large");
        assert!(
            matches!(
                err,
                KafkaError::FrameSize {
                    size: 2_147_483_647,
                    ..
                }
            ),
            "{err}"
        );
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut negative, 10).await,
            Err(KafkaError::FrameSize { size: -1, .. })
        ));
        let mut empty: &[u8] = &[0, 0, 0, 0];
        assert!(read_frame(&mut empty, 10).await.is_err());

        // A frame cut short is an I/O error, not a hang or a partial frame.
        let mut truncated: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut truncated, 10).await,
            Err(KafkaError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_frame_of_pieces_is_written_whole_and_in_order() {
        let pieces = ["ab", "", "cde", "f"]
            .map(|s| Bytes::from_static(s.as_bytes()))
            .to_vec();
        let frame = Frame::from_pieces(pieces);
        let (mut client, mut server) = tokio::io::duplex(2);
        let write = async {
            frame.write_to(&mut client).await.expect("write");
            drop(client);
        };
        let mut read = Vec::new();
        let (_, n) = tokio::join!(write, server.read_to_end(&mut read));
        n.expect("read");
        assert_eq!(read, b"abcdef");
    }

    #[test]
    fn a_finished_frame_carries_its_length() {
        let mut frame = start_frame(3);
        frame.put_slice(b"xyz");
        assert_eq!(&finish_frame(frame)[..], &[0, 0, 0, 3, b'x', b'y', b'z']);
    }
}
