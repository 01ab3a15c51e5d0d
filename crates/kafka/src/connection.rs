//! One client connection: requests read in order, answered in order.
//!
//! The reader decodes one request at a time. A Produce is queued with the broker at once, so
//! pipelined produce requests are appended in the order they came (if it must wait for room
//! in the broker's in-flight budget, the next request is read only once it has room), and its
//! answer (which waits for the appends) is handed to the writer to send when its turn comes; every other
//! request is answered before the next one is read, as a Kafka broker does. At most
//! `max_in_flight_requests` answers wait for the writer; past that the connection is not
//! read. A frame that is too large, malformed, or names an API or version not served ends
//! the connection with one log line, as in Kafka.
//!
//! SaslHandshake and SaslAuthenticate are answered here, since a login changes the
//! connection's principal; under `--auth` any other request before a login (except
//! ApiVersions) ends the connection. A quota throttle mutes the connection: the next
//! request is read once it has passed (KIP-219).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use kafka_protocol::messages::RequestKind;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::KafkaError;
use crate::api::sasl::{self, Login};
use crate::api::{self, Context, produce};
use crate::frame::{Frame, read_frame};

/// An answer on its way: resolves to the frame to send (`None`: nothing to send).
type Answer = Pin<Box<dyn Future<Output = Result<Option<Frame>, KafkaError>> + Send>>;

/// Serves one connection until the client closes it, an error ends it, or the broker
/// drains.
pub(crate) async fn serve<S>(stream: S, peer: SocketAddr, mut ctx: Context)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let draining = ctx.broker.draining();
    let (mut reader, writer) = tokio::io::split(stream);
    let (answers, queue) = mpsc::channel::<Answer>(ctx.config.max_in_flight_requests.max(1));
    let writing = tokio::spawn(write_answers(writer, queue));
    let read = async {
        let mut login = Login::default();
        loop {
            // A quota throttle mutes the connection (KIP-219): the answer went out at once.
            let mute = ctx.take_mute();
            if !mute.is_zero() {
                tokio::time::sleep(mute).await;
            }
            let limit = if sasl::must_log_in(&ctx, &ctx.caller.principal) {
                ctx.config.max_login_request_bytes
            } else {
                ctx.config.max_request_bytes
            };
            let Some(frame) = read_frame(&mut reader, limit).await? else {
                return Ok(());
            };
            let request = api::decode_request(frame)?;
            let (answer, close) = match request.body {
                RequestKind::SaslHandshake(body) => {
                    let answered = sasl::handshake(&ctx, &mut login, &request.header, body).await?;
                    (ready(answered.frame), answered.close)
                }
                RequestKind::SaslAuthenticate(body) => {
                    let answered =
                        sasl::authenticate(&mut ctx, &mut login, &request.header, body).await?;
                    (ready(answered.frame), answered.close)
                }
                body if sasl::must_log_in(&ctx, &ctx.caller.principal)
                    && !sasl::allowed_before_login(request.key) =>
                {
                    let api = format!("{:?}", request.key);
                    let reason = format!("{api} request before authenticating");
                    drop(body);
                    ctx.broker
                        .security()
                        .refuse_login(peer.ip(), api::PROTOCOL, "", &reason)
                        .await;
                    return Err(KafkaError::Unauthenticated { api });
                }
                body => {
                    let request = api::Request { body, ..request };
                    (answer(&ctx, request).await?, None)
                }
            };
            if answers.send(answer).await.is_err() {
                // The writer stopped: it logs why.
                return Ok(());
            }
            if let Some(close) = close {
                return Err(close);
            }
        }
    };
    let ended: Result<(), KafkaError> = tokio::select! {
        ended = read => ended,
        () = draining.wait() => Ok(()),
    };
    drop(answers);
    let written = writing.await.unwrap_or(Ok(()));
    match ended.and(written) {
        Ok(()) => tracing::debug!(%peer, "Kafka connection closed"),
        Err(KafkaError::Io(e)) => tracing::debug!(%peer, error = %e, "Kafka connection lost"),
        // The broker's audit log has these already.
        Err(err @ (KafkaError::AuthenticationFailed(_) | KafkaError::Unauthenticated { .. })) => {
            tracing::debug!(%peer, error = %err, "Kafka connection closed");
        }
        Err(err) => tracing::warn!(%peer, error = %err, "Kafka connection closed"),
    }
}

/// An answer that is ready now.
fn ready(frame: Bytes) -> Answer {
    Box::pin(std::future::ready(Ok(Some(Frame::from(frame)))))
}

/// Starts the answer of one request.
async fn answer(ctx: &Context, request: api::Request) -> Result<Answer, KafkaError> {
    if let RequestKind::Produce(produce) = request.body {
        let submitted = produce::submit(ctx, request.header, produce)
            .admitted()
            .await;
        let ctx = ctx.clone();
        return Ok(Box::pin(async move {
            Ok(submitted.answer(&ctx).await?.map(Frame::from))
        }));
    }
    let frame = api::handle(ctx, request).await?;
    Ok(Box::pin(std::future::ready(Ok(Some(frame)))))
}

/// Sends the answers in the order they were queued.
async fn write_answers(
    mut writer: impl AsyncWrite + Unpin,
    mut queue: mpsc::Receiver<Answer>,
) -> Result<(), KafkaError> {
    while let Some(answer) = queue.recv().await {
        if let Some(frame) = answer.await? {
            frame.write_to(&mut writer).await?;
        }
    }
    writer.shutdown().await?;
    Ok(())
}
