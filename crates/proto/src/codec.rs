//! The gRPC codec of every Sluice service: prost messages, each encoded into a buffer
//! reserved to its exact size up front.
//!
//! tonic's stock prost encoder lets the output buffer grow as the message is written, so a
//! megabyte of record batches is copied again at every doubling of the buffer. Reserving
//! `encoded_len()` first writes each byte once.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

/// Encodes `T` and decodes `U` with prost.
#[derive(Debug)]
pub struct SizedCodec<T, U>(PhantomData<fn(T) -> U>);

impl<T, U> Default for SizedCodec<T, U> {
    fn default() -> Self {
        SizedCodec(PhantomData)
    }
}

impl<T, U> Codec for SizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes `T` into a buffer reserved to its encoded length.
#[derive(Debug)]
pub struct SizedEncoder<T>(PhantomData<fn(T)>);

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a response failed: {e}")))
    }
}
