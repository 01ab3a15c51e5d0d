//! One AMQP connection: the opening handshake (protocol header, start and the login,
//! tune, open), then frames read and dispatched to their channels until either side
//! closes. Every channel acts as the caller the login gave (see `access`).
//!
//! Everything the connection sends goes through one queue to a writer task, which also
//! sends heartbeats when nothing else went out for a heartbeat interval; consumers of the
//! connection's channels queue their deliveries there too. A peer silent for two heartbeat
//! intervals is disconnected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use sluice_broker::Broker;
use sluice_broker::security::{Caller, Principal};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::AmqpConfig;
use crate::access;
use crate::channel::Channel;
use crate::codec::{FrameReader, PROTOCOL_HEADER, ReadFailure, encode};
use crate::config::HANDSHAKE_TIMEOUT;
use crate::registry::{ConnectionId, Registry};
use crate::reply::{
    CHANNEL_ERROR, COMMAND_INVALID, CONNECTION_FORCED, Failure, NOT_ALLOWED, RESOURCE_ERROR, Scope,
};

/// What every connection of a listener shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The broker.
    pub(crate) broker: Arc<Broker>,
    /// The front end's settings.
    pub(crate) config: AmqpConfig,
    /// Exclusive owners and consumer counts.
    pub(crate) registry: Registry,
}

/// Frames queued for the writer, encoded.
pub(crate) type Outgoing = mpsc::Sender<Vec<u8>>;

/// Queued frames the writer may hold before senders wait.
const OUTGOING_QUEUE: usize = 256;
/// How often the memory budget is looked at for connection.blocked.
const BLOCKED_CHECK: Duration = Duration::from_millis(100);

/// What the connection negotiated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuned {
    /// The largest frame either side sends.
    pub(crate) frame_max: u32,
    /// The highest channel number.
    pub(crate) channel_max: u16,
    /// The heartbeat interval; zero: none.
    pub(crate) heartbeat: Duration,
    /// Whether the client understands connection.blocked.
    pub(crate) blocked_capability: bool,
}

/// Serves one client until it closes, breaks the protocol, or the broker drains.
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    certificate: Option<Principal>,
    shared: Arc<Shared>,
    id: ConnectionId,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut reader = FrameReader::new(read, shared.config.frame_max);
    let (out, queued) = mpsc::channel(OUTGOING_QUEUE);
    let heartbeat = Arc::new(AtomicU64::new(0));
    let writing = tokio::spawn(write_loop(write, queued, Arc::clone(&heartbeat)));
    let opened = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(&mut reader, &out, &shared, peer, certificate.as_ref()),
    )
    .await;
    let opened = match opened {
        Ok(Ok(Some(opened))) => Some(opened),
        Ok(Ok(None)) => None,
        Ok(Err(failure)) => {
            tracing::info!(%peer, reason = %failure.text, "AMQP connection refused");
            send_close(&out, &failure).await;
            None
        }
        Err(_) => {
            tracing::info!(%peer, "AMQP handshake timed out");
            None
        }
    };
    let Some((tuned, caller)) = opened else {
        drop(out);
        let _ = writing.await;
        return;
    };
    heartbeat.store(
        u64::try_from(tuned.heartbeat.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    reader.set_frame_max(tuned.frame_max);
    let mut connection = Connection {
        shared: Arc::clone(&shared),
        id,
        out: out.clone(),
        tuned,
        caller,
        channels: HashMap::new(),
        closing: false,
        blocked: false,
    };
    connection.run(&mut reader, peer).await;
    connection.close_channels().await;
    for queue in shared.registry.release_owned(id) {
        if let Err(err) = shared.broker.delete_queue(&queue, false).await {
            tracing::warn!(queue, error = %err, "deleting an exclusive queue failed");
        }
    }
    drop(connection);
    drop(out);
    let _ = writing.await;
}

/// Writes what is queued until every sender is gone, then closes the socket; a heartbeat
/// whenever nothing else went out for `heartbeat` ms (0: none, as before tuning).
async fn write_loop(
    mut writer: impl AsyncWrite + Unpin,
    mut queued: mpsc::Receiver<Vec<u8>>,
    heartbeat: Arc<AtomicU64>,
) {
    let mut beat = Vec::new();
    encode(&AMQPFrame::Heartbeat, &mut beat);
    loop {
        let interval = heartbeat.load(Ordering::Relaxed);
        let next = if interval == 0 {
            queued.recv().await
        } else {
            match tokio::time::timeout(Duration::from_millis(interval), queued.recv()).await {
                Ok(next) => next,
                Err(_) => Some(beat.clone()),
            }
        };
        let Some(bytes) = next else {
            break;
        };
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Queues one frame.
pub(crate) async fn send(out: &Outgoing, frame: AMQPFrame) {
    let mut bytes = Vec::new();
    encode(&frame, &mut bytes);
    // A closed queue: the connection is going away, nothing more can be told.
    let _ = out.send(bytes).await;
}

/// Queues a connection.close for `failure`.
async fn send_close(out: &Outgoing, failure: &Failure) {
    send(
        out,
        AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: failure.code,
                reply_text: ShortString::from(failure.text.as_str()),
                class_id: failure.class_id,
                method_id: failure.method_id,
            })),
        ),
    )
    .await;
}

/// The server's properties: who it is and what it can do.
fn server_properties() -> FieldTable {
    let mut capabilities = FieldTable::default();
    for capability in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        capabilities.insert(ShortString::from(capability), AMQPValue::Boolean(true));
    }
    let mut properties = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    properties.insert("product".into(), text("Sluice"));
    properties.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    properties.insert("platform".into(), text("Rust"));
    properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    properties
}

/// Opens the connection, logging the client in: what was negotiated and who the
/// connection acts as; `None` when the client went away or spoke another protocol
/// (answered with our protocol header, as AMQP asks).
async fn handshake<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    out: &Outgoing,
    shared: &Shared,
    peer: SocketAddr,
    certificate: Option<&Principal>,
) -> Result<Option<(Tuned, Caller)>, Failure> {
    match reader.protocol_header().await {
        Ok(Some(header)) if header == PROTOCOL_HEADER => {}
        Ok(Some(_)) => {
            let _ = out.send(PROTOCOL_HEADER.to_vec()).await;
            return Ok(None);
        }
        Ok(None) | Err(_) => return Ok(None),
    }
    send(
        out,
        AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: server_properties(),
                mechanisms: LongString::from(access::mechanisms(shared, certificate).join(" ")),
                locales: LongString::from("en_US"),
            })),
        ),
    )
    .await;
    let Some(connection::AMQPMethod::StartOk(start_ok)) = next_connection_method(reader).await?
    else {
        return Ok(None);
    };
    let blocked_capability = matches!(
        start_ok.client_properties.inner().get("capabilities"),
        Some(AMQPValue::FieldTable(c)) if matches!(c.inner().get("connection.blocked"), Some(AMQPValue::Boolean(true)))
    );
    let caller = access::login(
        shared,
        peer,
        certificate,
        start_ok.mechanism.as_str(),
        start_ok.response.as_bytes(),
    )
    .await?;
    let config = &shared.config;
    send(
        out,
        AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                channel_max: config.channel_max,
                frame_max: config.frame_max,
                heartbeat: u16::try_from(config.heartbeat.as_secs()).unwrap_or(u16::MAX),
            })),
        ),
    )
    .await;
    let Some(connection::AMQPMethod::TuneOk(tune_ok)) = next_connection_method(reader).await?
    else {
        return Ok(None);
    };
    let frame_max = match tune_ok.frame_max {
        0 => config.frame_max,
        n => n.clamp(4096, config.frame_max),
    };
    let channel_max = match tune_ok.channel_max {
        0 => config.channel_max,
        n => n.min(config.channel_max),
    };
    let Some(connection::AMQPMethod::Open(open)) = next_connection_method(reader).await? else {
        return Ok(None);
    };
    if open.virtual_host.as_str() != "/" {
        return Err(Failure::connection(
            NOT_ALLOWED,
            format!(
                "vhost {} not found (Sluice has the one vhost '/')",
                open.virtual_host
            ),
        )
        .on(10, 40));
    }
    send(
        out,
        AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        ),
    )
    .await;
    tracing::debug!(%peer, frame_max, channel_max, heartbeat = tune_ok.heartbeat, "AMQP connection open");
    let tuned = Tuned {
        frame_max,
        channel_max,
        heartbeat: Duration::from_secs(u64::from(tune_ok.heartbeat)),
        blocked_capability,
    };
    Ok(Some((tuned, caller)))
}

/// The next connection-class method on channel 0 during the handshake; heartbeats are
/// skipped, anything else is a protocol failure.
async fn next_connection_method<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<Option<connection::AMQPMethod>, Failure> {
    loop {
        match reader.next().await {
            Ok(Some(AMQPFrame::Heartbeat)) => continue,
            Ok(Some(AMQPFrame::Method(0, AMQPClass::Connection(method)))) => {
                return Ok(Some(method));
            }
            Ok(Some(other)) => {
                return Err(Failure::connection(
                    COMMAND_INVALID,
                    format!("expected a connection method on channel 0 while opening, got {other}"),
                ));
            }
            Ok(None) | Err(ReadFailure::Io(_)) => return Ok(None),
            Err(ReadFailure::Protocol(failure)) => return Err(failure),
        }
    }
}

/// An open connection.
struct Connection {
    shared: Arc<Shared>,
    id: ConnectionId,
    out: Outgoing,
    tuned: Tuned,
    /// Who the connection acts as.
    caller: Caller,
    channels: HashMap<u16, Channel>,
    /// Set once the server sent connection.close: only close-ok is awaited.
    closing: bool,
    /// Whether connection.blocked was sent and not yet undone.
    blocked: bool,
}

impl Connection {
    async fn run<R: AsyncRead + Unpin>(&mut self, reader: &mut FrameReader<R>, peer: SocketAddr) {
        let draining = self.shared.broker.draining();
        let silence = self.tuned.heartbeat * 2;
        let mut last_heard = Instant::now();
        let mut blocked_check = tokio::time::interval(BLOCKED_CHECK);
        blocked_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut close_deadline: Option<Instant> = None;
        loop {
            let watchdog = async {
                if let Some(deadline) = close_deadline {
                    tokio::time::sleep_until(deadline).await;
                } else if silence.is_zero() {
                    std::future::pending::<()>().await;
                } else {
                    tokio::time::sleep_until(last_heard + silence).await;
                }
            };
            let frame = tokio::select! {
                frame = reader.next() => frame,
                () = watchdog => {
                    if close_deadline.is_none() {
                        tracing::info!(%peer, "AMQP peer silent for two heartbeat intervals: disconnected");
                    }
                    return;
                }
                () = draining.wait(), if !self.closing => {
                    self.fail(Failure::connection(CONNECTION_FORCED, "broker shutting down")).await;
                    close_deadline = Some(Instant::now() + Duration::from_secs(1));
                    continue;
                }
                _ = blocked_check.tick(), if self.tuned.blocked_capability => {
                    self.check_blocked().await;
                    continue;
                }
            };
            last_heard = Instant::now();
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(ReadFailure::Io(err)) => {
                    tracing::debug!(%peer, error = %err, "AMQP connection lost");
                    return;
                }
                Err(ReadFailure::Protocol(failure)) => {
                    self.fail(failure).await;
                    return;
                }
            };
            match self.dispatch(frame).await {
                Flow::Continue => {}
                Flow::Closed => return,
                Flow::Fail(failure) if failure.scope == Scope::Connection => {
                    self.fail(failure).await;
                    close_deadline = Some(Instant::now() + Duration::from_secs(1));
                }
                Flow::Fail(_) => {}
            }
        }
    }

    /// Sends connection.close (once) and stops serving the channels.
    async fn fail(&mut self, failure: Failure) {
        if self.closing {
            return;
        }
        self.closing = true;
        tracing::info!(code = failure.code, reason = %failure.text, "closing an AMQP connection");
        send_close(&self.out, &failure).await;
        self.close_channels().await;
    }

    async fn close_channels(&mut self) {
        for (_, channel) in self.channels.drain() {
            channel.close(&self.shared).await;
        }
    }

    /// Tells the client whether publishing must pause: the broker's in-flight budget is
    /// (nearly) used up.
    async fn check_blocked(&mut self) {
        let broker = &self.shared.broker;
        let limit = broker.limits().max_in_flight_bytes;
        let used = broker.in_flight_bytes();
        let blocked = used >= limit / 10 * 9;
        if blocked == self.blocked || self.closing {
            return;
        }
        self.blocked = blocked;
        let method = if blocked {
            connection::AMQPMethod::Blocked(connection::Blocked {
                reason: ShortString::from("low on memory: the in-flight produce budget is used up"),
            })
        } else {
            connection::AMQPMethod::Unblocked(connection::Unblocked {})
        };
        send(
            &self.out,
            AMQPFrame::Method(0, AMQPClass::Connection(method)),
        )
        .await;
    }

    async fn dispatch(&mut self, frame: AMQPFrame) -> Flow {
        let channel_id = frame.channel_id();
        if self.closing {
            // Only close-ok (or the client's own close) matters now.
            return match frame {
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {
                    Flow::Closed
                }
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                    self.close_ok().await;
                    Flow::Closed
                }
                _ => Flow::Continue,
            };
        }
        match frame {
            AMQPFrame::Heartbeat => Flow::Continue,
            AMQPFrame::Method(0, AMQPClass::Connection(method)) => match method {
                connection::AMQPMethod::Close(close) => {
                    tracing::debug!(code = close.reply_code, reason = %close.reply_text, "client closed the AMQP connection");
                    self.close_channels().await;
                    self.close_ok().await;
                    Flow::Closed
                }
                connection::AMQPMethod::CloseOk(_) => Flow::Closed,
                connection::AMQPMethod::UpdateSecret(_) => Flow::Fail(
                    Failure::connection(
                        crate::reply::NOT_IMPLEMENTED,
                        "connection.update-secret: Sluice has no tokens yet",
                    )
                    .on(10, 70),
                ),
                other => Flow::Fail(Failure::connection(
                    COMMAND_INVALID,
                    format!("connection method {other:?} is not allowed on an open connection"),
                )),
            },
            AMQPFrame::Method(0, _) | AMQPFrame::Header(0, _) | AMQPFrame::Body(0, _) => {
                Flow::Fail(Failure::connection(
                    CHANNEL_ERROR,
                    "channel 0 carries connection methods only",
                ))
            }
            AMQPFrame::InvalidHeartbeat(_) => Flow::Fail(Failure::connection(
                crate::reply::FRAME_ERROR,
                "heartbeat frames must be on channel 0",
            )),
            AMQPFrame::ProtocolHeader(_) => Flow::Fail(Failure::connection(
                COMMAND_INVALID,
                "protocol header inside an open connection",
            )),
            AMQPFrame::Method(
                _,
                AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Open(_)),
            ) => self.open_channel(channel_id).await,
            frame => {
                let Some(channel) = self.channels.get_mut(&channel_id) else {
                    return Flow::Fail(Failure::connection(
                        CHANNEL_ERROR,
                        format!("channel {channel_id} is not open"),
                    ));
                };
                match channel.handle(frame, &self.shared, self.id).await {
                    Ok(true) => Flow::Continue,
                    Ok(false) => {
                        // Closed by the client, or its close-ok to ours arrived.
                        if let Some(channel) = self.channels.remove(&channel_id) {
                            channel.close(&self.shared).await;
                        }
                        Flow::Continue
                    }
                    Err(failure) if failure.scope == Scope::Connection => Flow::Fail(failure),
                    Err(failure) => {
                        channel.fail(failure.clone()).await;
                        Flow::Fail(failure)
                    }
                }
            }
        }
    }

    async fn open_channel(&mut self, id: u16) -> Flow {
        if id > self.tuned.channel_max {
            return Flow::Fail(Failure::connection(
                CHANNEL_ERROR,
                format!(
                    "channel {id} is above the negotiated channel_max {}",
                    self.tuned.channel_max
                ),
            ));
        }
        if self.channels.contains_key(&id) {
            return Flow::Fail(Failure::connection(
                CHANNEL_ERROR,
                format!("channel {id} is open already"),
            ));
        }
        if self.shared.broker.draining().is_draining() {
            return Flow::Fail(Failure::connection(RESOURCE_ERROR, "broker shutting down"));
        }
        self.channels.insert(
            id,
            Channel::new(
                id,
                self.out.clone(),
                self.tuned,
                self.caller.clone(),
                Arc::clone(&self.shared.broker),
            ),
        );
        send(
            &self.out,
            AMQPFrame::Method(
                id,
                AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::OpenOk(
                    amq_protocol::protocol::channel::OpenOk {},
                )),
            ),
        )
        .await;
        Flow::Continue
    }

    async fn close_ok(&self) {
        send(
            &self.out,
            AMQPFrame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
            ),
        )
        .await;
    }
}

/// What the connection does after a frame.
enum Flow {
    /// Go on reading.
    Continue,
    /// The connection is closed.
    Closed,
    /// A failure: a connection failure closes the connection, a channel one was answered.
    Fail(Failure),
}
