//! Frames on the wire, through the `amq-protocol` codec: reading them with the negotiated
//! `frame_max` checked before anything is buffered for a frame, and writing them.

use amq_protocol::frame::{AMQPFrame, gen_frame, parse_frame};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::reply::{FRAME_ERROR, Failure, SYNTAX_ERROR};

/// Bytes of a frame's header (type, channel, size) and of its end marker.
const FRAME_OVERHEAD: usize = 8;
/// The protocol header a client opens with.
pub(crate) const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// Reads frames from a connection.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    /// The largest frame accepted, header and end included.
    frame_max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader accepting frames of up to `frame_max` bytes.
    pub(crate) fn new(reader: R, frame_max: u32) -> FrameReader<R> {
        FrameReader {
            reader,
            buf: BytesMut::with_capacity(8 * 1024),
            frame_max: frame_max as usize,
        }
    }

    /// Sets the largest frame accepted (after tuning).
    pub(crate) fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max as usize;
    }

    /// Reads the 8-byte protocol header; `None` at end of stream.
    pub(crate) async fn protocol_header(&mut self) -> std::io::Result<Option<[u8; 8]>> {
        while self.buf.len() < PROTOCOL_HEADER.len() {
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
        let mut header = [0; 8];
        self.buf.copy_to_slice(&mut header);
        Ok(Some(header))
    }

    /// The next frame; `Ok(None)` at a clean end of stream. A frame over `frame_max` or one
    /// that does not parse is a connection failure.
    pub(crate) async fn next(&mut self) -> Result<Option<AMQPFrame>, ReadFailure> {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]]);
                let total = (size as usize).saturating_add(FRAME_OVERHEAD);
                if total > self.frame_max {
                    return Err(ReadFailure::Protocol(Failure::connection(
                        FRAME_ERROR,
                        format!(
                            "frame of {total} bytes exceeds the negotiated frame_max of {}",
                            self.frame_max
                        ),
                    )));
                }
                if self.buf.len() >= total {
                    let frame = match parse_frame(&self.buf[..total]) {
                        Ok((_, frame)) => frame,
                        Err(err) => {
                            return Err(ReadFailure::Protocol(Failure::connection(
                                SYNTAX_ERROR,
                                format!("malformed frame: {err}"),
                            )));
                        }
                    };
                    self.buf.advance(total);
                    return Ok(Some(frame));
                }
                self.buf.reserve(total - self.buf.len());
            }
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    return Err(ReadFailure::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed inside a frame",
                    )));
                }
                Ok(_) => {}
                Err(err) => return Err(ReadFailure::Io(err)),
            }
        }
    }
}

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The socket failed or closed mid-frame: nothing can be answered.
    Io(std::io::Error),
    /// The peer broke the protocol: answered with connection.close.
    Protocol(Failure),
}

/// Appends `frame`'s bytes to `out`.
pub(crate) fn encode(frame: &AMQPFrame, out: &mut Vec<u8>) {
    let buffer = std::mem::take(out);
    *out = match cookie_factory::gen_simple(gen_frame(frame), buffer) {
        Ok(buffer) => buffer,
        // Writing to a Vec cannot run out of room; a frame that cannot be encoded (a field
        // over its size) is a bug, logged rather than sent half-written.
        Err(err) => {
            tracing::error!(error = ?err, frame = %frame, "an AMQP frame could not be encoded");
            Vec::new()
        }
    };
}

/// The largest body frame payload under `frame_max`.
pub(crate) fn body_chunk(frame_max: u32) -> usize {
    (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1)
}

#[cfg(test)]
mod tests {
    use amq_protocol::protocol::{AMQPClass, channel};

    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let frame = AMQPFrame::Method(
            3,
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
        );
        let mut bytes = Vec::new();
        encode(&frame, &mut bytes);
        encode(&AMQPFrame::Heartbeat, &mut bytes);
        let mut reader = FrameReader::new(&bytes[..], 4096);
        assert_eq!(reader.next().await.ok().flatten(), Some(frame));
        assert_eq!(
            reader.next().await.ok().flatten(),
            Some(AMQPFrame::Heartbeat)
        );
        assert!(matches!(reader.next().await, Ok(None)));

        let mut big = Vec::new();
        encode(&AMQPFrame::Body(1, vec![0; 5000]), &mut big);
        let mut reader = FrameReader::new(&big[..], 4096);
        assert!(matches!(
            reader.next().await,
            Err(ReadFailure::Protocol(Failure {
                code: FRAME_ERROR,
                ..
            }))
        ));
    }
}
