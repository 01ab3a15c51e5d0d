//! Messages as records: an AMQP message's properties, exchange and routing key travel as
//! record headers, so gRPC and Kafka readers see them and a delivery gives them back.
//!
//! A published message becomes one record: its body is the value, its arrival time the
//! record timestamp, and its headers:
//!
//! - `amqp.properties`: every property, in AMQP's own content-header encoding, so a
//!   delivery hands back exactly what was published (field types included);
//! - `amqp.exchange` and `amqp.routing-key`: where it was published;
//! - `amqp.content-type`, `amqp.content-encoding`, `amqp.delivery-mode`, `amqp.priority`,
//!   `amqp.correlation-id`, `amqp.reply-to`, `amqp.expiration`, `amqp.message-id`,
//!   `amqp.timestamp`, `amqp.type`, `amqp.user-id`, `amqp.app-id`: each property set, as
//!   text, for other readers;
//! - each entry of the `headers` table whose value is text, a number or a boolean, under
//!   its own name, as text (what a headers exchange matches on).
//!
//! A record written by another protocol is delivered with its headers as the `headers`
//! table (long strings), its timestamp as the `timestamp` property, exchange "" and the
//! queue's name as routing key.

use amq_protocol::protocol::basic::{AMQPProperties, gen_properties, parse_properties};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::Bytes;
use sluice_broker::NewRecord;
use sluice_broker::RecordView;

/// Header holding the encoded properties.
pub(crate) const PROPERTIES: &str = "amqp.properties";
/// Header naming the exchange a message was published to.
pub(crate) const EXCHANGE: &str = "amqp.exchange";
/// Header holding the routing key a message was published with.
pub(crate) const ROUTING_KEY: &str = "amqp.routing-key";

/// A message as published: where to, its properties and body.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The exchange it was published to.
    pub(crate) exchange: String,
    /// Its routing key.
    pub(crate) routing_key: String,
    /// Its properties.
    pub(crate) properties: AMQPProperties,
    /// Its body.
    pub(crate) body: Bytes,
}

impl Message {
    /// The record holding this message.
    pub(crate) fn to_record(&self) -> NewRecord {
        let p = &self.properties;
        let mut headers: Vec<(Bytes, Bytes)> = Vec::with_capacity(8);
        let mut put = |k: &str, v: String| {
            headers.push((Bytes::copy_from_slice(k.as_bytes()), Bytes::from(v)))
        };
        put(EXCHANGE, self.exchange.clone());
        put(ROUTING_KEY, self.routing_key.clone());
        let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
        let named = [
            ("amqp.content-type", text(p.content_type())),
            ("amqp.content-encoding", text(p.content_encoding())),
            (
                "amqp.delivery-mode",
                p.delivery_mode().map(|m| m.to_string()),
            ),
            ("amqp.priority", p.priority().map(|m| m.to_string())),
            ("amqp.correlation-id", text(p.correlation_id())),
            ("amqp.reply-to", text(p.reply_to())),
            ("amqp.expiration", text(p.expiration())),
            ("amqp.message-id", text(p.message_id())),
            ("amqp.timestamp", p.timestamp().map(|t| t.to_string())),
            ("amqp.type", text(p.kind())),
            ("amqp.user-id", text(p.user_id())),
            ("amqp.app-id", text(p.app_id())),
        ];
        for (name, value) in named {
            if let Some(value) = value {
                put(name, value);
            }
        }
        if let Some(table) = p.headers() {
            for (key, value) in table {
                if let Some(text) = value_text(value) {
                    put(key.as_str(), text);
                }
            }
        }
        let mut encoded = Vec::new();
        if let Ok(bytes) = cookie_factory::gen_simple(gen_properties(p), Vec::new()) {
            encoded = bytes;
        }
        headers.push((
            Bytes::from_static(PROPERTIES.as_bytes()),
            Bytes::from(encoded),
        ));
        NewRecord {
            key: None,
            value: self.body.clone(),
            // The broker's clock: a queue's TTL counts from arrival, as RabbitMQ's does.
            timestamp_ms: 0,
            headers,
        }
    }

    /// The message a record of queue `queue` holds.
    pub(crate) fn from_record(record: &RecordView, queue: &str) -> Message {
        let header = |name: &str| {
            record
                .headers
                .iter()
                .find(|(k, _)| &k[..] == name.as_bytes())
                .and_then(|(_, v)| v.as_ref())
        };
        let text = |name: &str| header(name).map(|v| String::from_utf8_lossy(v).into_owned());
        let properties = header(PROPERTIES)
            .and_then(|bytes| parse_properties(&bytes[..]).ok().map(|(_, p)| p))
            .unwrap_or_else(|| foreign_properties(record));
        Message {
            exchange: text(EXCHANGE).unwrap_or_default(),
            routing_key: text(ROUTING_KEY).unwrap_or_else(|| queue.to_owned()),
            properties,
            body: record.value.clone().unwrap_or_default(),
        }
    }

    /// When the message expires at the latest, in ms since the epoch, from its
    /// `expiration` property and the queue's `x-message-ttl`; `None`: never.
    pub(crate) fn expires_at(&self, timestamp_ms: i64, queue_ttl_ms: Option<u64>) -> Option<i64> {
        let own = self
            .properties
            .expiration()
            .as_ref()
            .and_then(|e| e.as_str().parse::<u64>().ok());
        let ttl = match (own, queue_ttl_ms) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(timestamp_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)))
    }
}

/// The properties of a record another protocol wrote: its headers as the headers table,
/// its timestamp.
fn foreign_properties(record: &RecordView) -> AMQPProperties {
    let mut table = FieldTable::default();
    for (key, value) in &record.headers {
        let (Ok(key), Some(value)) = (std::str::from_utf8(key), value) else {
            continue;
        };
        if let Ok(key) = ShortString::try_new(key) {
            table.insert(key, AMQPValue::LongString(LongString::from(value.to_vec())));
        }
    }
    let mut properties = AMQPProperties::default().with_headers(table);
    if let Ok(secs) = u64::try_from(record.timestamp_ms / 1000) {
        properties = properties.with_timestamp(secs);
    }
    properties
}

/// A header table value as text, when it is text, a number or a boolean.
pub(crate) fn value_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => return None,
    })
}

/// A field table as `name -> text` (entries that are not text, numbers or booleans left
/// out), the broker's form of queue, exchange and binding arguments.
pub(crate) fn arguments(table: &FieldTable) -> std::collections::BTreeMap<String, String> {
    table
        .into_iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), value_text(v)?)))
        .collect()
}
