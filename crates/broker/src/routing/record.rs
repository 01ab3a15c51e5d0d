//! The records of the routing journal (`crate::journal`, files `routing-<N>.log` under
//! `data_dir/routing`), and their bytes.
//!
//! ```text
//! file       header, then frames
//! header     magic "SLRT" (4 bytes), version u16 = 1
//! frame      body_len u32, crc u32 (CRC-32C of the body), body: one or more records
//! record     kind u8, then by kind:
//!            1 exchange         name str, type u8 (1 direct, 2 fanout, 3 topic,
//!                               4 headers), flags u8 (bit 0 durable, bit 1 auto_delete,
//!                               bit 2 internal), arguments
//!                               (declares the exchange)
//!            2 delete exchange  name str  (drops it and every binding from it)
//!            3 queue            name str, flags u8 (bit 0 durable, bit 1 exclusive,
//!                               bit 2 auto_delete), arguments  (defines the queue)
//!            4 forget queue     name str  (drops it and every binding to it)
//!            5 bind             exchange str, queue str, routing_key str, arguments
//!            6 unbind           exchange str, queue str, routing_key str, arguments
//! str        len u16, UTF-8 bytes
//! arguments  count u16, count x { name str, value str }, sorted by name
//! ```
//!
//! Integers are big-endian. One frame is one write: the records of one operation (an unbind
//! and the deletion of the auto-delete exchange it emptied) survive a crash together or not
//! at all.

use std::collections::BTreeMap;

use crate::journal::frame::{Reader, put_str};
use crate::routing::{BindingSpec, ExchangeKind, ExchangeSpec, QueueSpec};

/// Magic and version at the start of every routing journal file.
pub(crate) const FILE_HEADER: [u8; 6] = *b"SLRT\x00\x01";

const EXCHANGE: u8 = 1;
const DELETE_EXCHANGE: u8 = 2;
const QUEUE: u8 = 3;
const FORGET_QUEUE: u8 = 4;
const BIND: u8 = 5;
const UNBIND: u8 = 6;

/// A change of the routing state: a record of the journal, and how operations change the
/// in-memory state too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Declares an exchange.
    Exchange(ExchangeSpec),
    /// Deletes an exchange and its bindings.
    DeleteExchange(String),
    /// Defines a queue.
    Queue(QueueSpec),
    /// Forgets a queue and its bindings.
    ForgetQueue(String),
    /// Binds a queue to an exchange.
    Bind(BindingSpec),
    /// Removes a binding.
    Unbind(BindingSpec),
}

/// Bytes of `s` written by [`put_str`].
fn str_len(s: &str) -> usize {
    2 + s.len()
}

fn arguments_len(arguments: &BTreeMap<String, String>) -> usize {
    2 + arguments
        .iter()
        .map(|(k, v)| str_len(k) + str_len(v))
        .sum::<usize>()
}

/// Bytes [`encode`] writes for the record declaring `spec`.
pub(crate) fn exchange_len(spec: &ExchangeSpec) -> usize {
    1 + str_len(&spec.name) + 2 + arguments_len(&spec.arguments)
}

/// Bytes [`encode`] writes for the record defining `spec`.
pub(crate) fn queue_len(spec: &QueueSpec) -> usize {
    1 + str_len(&spec.name) + 1 + arguments_len(&spec.arguments)
}

/// Bytes [`encode`] writes for the record binding (or unbinding) `binding`.
pub(crate) fn binding_len(binding: &BindingSpec) -> usize {
    1 + str_len(&binding.exchange)
        + str_len(&binding.queue)
        + str_len(&binding.routing_key)
        + arguments_len(&binding.arguments)
}

fn flags(bits: [bool; 3]) -> u8 {
    bits.iter()
        .enumerate()
        .fold(0, |flags, (bit, set)| flags | (u8::from(*set) << bit))
}

fn put_arguments(out: &mut Vec<u8>, arguments: &BTreeMap<String, String>) -> Result<(), String> {
    let count = u16::try_from(arguments.len())
        .map_err(|_| format!("{} arguments exceed {}", arguments.len(), u16::MAX))?;
    out.extend_from_slice(&count.to_be_bytes());
    for (name, value) in arguments {
        put_str(out, name, "argument name")?;
        put_str(out, value, "argument value")?;
    }
    Ok(())
}

fn put_binding(out: &mut Vec<u8>, binding: &BindingSpec) -> Result<(), String> {
    put_str(out, &binding.exchange, "exchange name")?;
    put_str(out, &binding.queue, "queue name")?;
    put_str(out, &binding.routing_key, "routing key")?;
    put_arguments(out, &binding.arguments)
}

/// Appends one record; the error says which field does not fit.
pub(crate) fn encode(change: &Change, out: &mut Vec<u8>) -> Result<(), String> {
    match change {
        Change::Exchange(spec) => {
            out.push(EXCHANGE);
            put_str(out, &spec.name, "exchange name")?;
            out.push(match spec.kind {
                ExchangeKind::Direct => 1,
                ExchangeKind::Fanout => 2,
                ExchangeKind::Topic => 3,
                ExchangeKind::Headers => 4,
            });
            out.push(flags([spec.durable, spec.auto_delete, spec.internal]));
            put_arguments(out, &spec.arguments)
        }
        Change::DeleteExchange(name) => {
            out.push(DELETE_EXCHANGE);
            put_str(out, name, "exchange name")
        }
        Change::Queue(spec) => {
            out.push(QUEUE);
            put_str(out, &spec.name, "queue name")?;
            out.push(flags([spec.durable, spec.exclusive, spec.auto_delete]));
            put_arguments(out, &spec.arguments)
        }
        Change::ForgetQueue(name) => {
            out.push(FORGET_QUEUE);
            put_str(out, name, "queue name")
        }
        Change::Bind(binding) => {
            out.push(BIND);
            put_binding(out, binding)
        }
        Change::Unbind(binding) => {
            out.push(UNBIND);
            put_binding(out, binding)
        }
    }
}

fn read_flags(reader: &mut Reader<'_>, index: usize) -> Result<[bool; 3], String> {
    let flags = reader.array::<1>("flags")?[0];
    if flags >> 3 != 0 {
        return Err(format!("record {index}: unknown flags {flags:#04x}"));
    }
    Ok([flags & 1 != 0, flags & 2 != 0, flags & 4 != 0])
}

fn read_arguments(
    reader: &mut Reader<'_>,
    index: usize,
) -> Result<BTreeMap<String, String>, String> {
    let count = u16::from_be_bytes(reader.array("argument count")?);
    let mut arguments = BTreeMap::new();
    for _ in 0..count {
        let name = reader.string("argument name")?;
        let value = reader.string("argument value")?;
        if arguments.insert(name, value).is_some() {
            return Err(format!("record {index}: an argument appears twice"));
        }
    }
    Ok(arguments)
}

fn read_binding(reader: &mut Reader<'_>, index: usize) -> Result<BindingSpec, String> {
    Ok(BindingSpec {
        exchange: reader.string("exchange name")?,
        queue: reader.string("queue name")?,
        routing_key: reader.string("routing key")?,
        arguments: read_arguments(reader, index)?,
    })
}

/// The records of an intact frame's body, in order; the error says what is malformed.
pub(crate) fn decode(body: &[u8]) -> Result<Vec<Change>, String> {
    let mut reader = Reader(body);
    let mut records = Vec::new();
    while reader.remaining() > 0 {
        let index = records.len();
        let change = match reader.array::<1>("record kind")?[0] {
            EXCHANGE => {
                let name = reader.string("exchange name")?;
                let kind = match reader.array::<1>("exchange type")?[0] {
                    1 => ExchangeKind::Direct,
                    2 => ExchangeKind::Fanout,
                    3 => ExchangeKind::Topic,
                    4 => ExchangeKind::Headers,
                    other => return Err(format!("record {index}: unknown exchange type {other}")),
                };
                let [durable, auto_delete, internal] = read_flags(&mut reader, index)?;
                Change::Exchange(ExchangeSpec {
                    name,
                    kind,
                    durable,
                    auto_delete,
                    internal,
                    arguments: read_arguments(&mut reader, index)?,
                })
            }
            DELETE_EXCHANGE => Change::DeleteExchange(reader.string("exchange name")?),
            QUEUE => {
                let name = reader.string("queue name")?;
                let [durable, exclusive, auto_delete] = read_flags(&mut reader, index)?;
                Change::Queue(QueueSpec {
                    name,
                    durable,
                    exclusive,
                    auto_delete,
                    arguments: read_arguments(&mut reader, index)?,
                })
            }
            FORGET_QUEUE => Change::ForgetQueue(reader.string("queue name")?),
            BIND => Change::Bind(read_binding(&mut reader, index)?),
            UNBIND => Change::Unbind(read_binding(&mut reader, index)?),
            other => return Err(format!("record {index}: unknown record kind {other}")),
        };
        records.push(change);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::frame::{Frame, encode_frame, read_frame};

    fn sample() -> Vec<Change> {
        let arguments: BTreeMap<String, String> = [("alternate-exchange", "ae"), ("x-é", "")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let binding = BindingSpec {
            arguments: arguments.clone(),
            ..BindingSpec::new("logs", "jobs", "a.*.#")
        };
        vec![
            Change::Exchange(ExchangeSpec {
                auto_delete: true,
                internal: true,
                arguments: arguments.clone(),
                ..ExchangeSpec::new("logs", ExchangeKind::Topic)
            }),
            Change::Exchange(ExchangeSpec::new("h", ExchangeKind::Headers)),
            Change::Exchange(ExchangeSpec::new("f", ExchangeKind::Fanout)),
            Change::Exchange(ExchangeSpec::new("d", ExchangeKind::Direct)),
            Change::Queue(QueueSpec {
                exclusive: true,
                auto_delete: true,
                arguments,
                ..QueueSpec::new("jobs")
            }),
            Change::Bind(binding.clone()),
            Change::Bind(BindingSpec::new("d", "jobs", "")),
            Change::Unbind(binding),
            Change::ForgetQueue("jobs".into()),
            Change::DeleteExchange("logs".into()),
        ]
    }

    #[test]
    fn records_round_trip_and_their_length_is_known() {
        let records = sample();
        let mut out = Vec::new();
        encode_frame(&mut out, |body| {
            records.iter().try_for_each(|r| encode(r, body))
        })
        .expect("encode");
        let Frame::Intact { body, .. } = read_frame(&out) else {
            panic!("not intact");
        };
        assert_eq!(decode(body), Ok(records.clone()));
        for record in &records {
            let mut one = Vec::new();
            encode(record, &mut one).expect("encode");
            let len = match record {
                Change::Exchange(spec) => exchange_len(spec),
                Change::Queue(spec) => queue_len(spec),
                Change::Bind(binding) | Change::Unbind(binding) => binding_len(binding),
                Change::DeleteExchange(name) | Change::ForgetQueue(name) => 1 + str_len(name),
            };
            assert_eq!(one.len(), len, "{record:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(decode(&[9]).is_err_and(|e| e.contains("unknown record kind 9")));
        assert!(
            decode(&[EXCHANGE, 0, 1, b'x', 7, 0, 0, 0])
                .is_err_and(|e| e.contains("unknown exchange type 7"))
        );
        assert!(
            decode(&[QUEUE, 0, 1, b'q', 0x08, 0, 0]).is_err_and(|e| e.contains("unknown flags"))
        );
        assert!(
            decode(&[
                QUEUE, 0, 1, b'q', 1, 0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0
            ])
            .is_err_and(|e| e.contains("appears twice"))
        );
        assert!(
            decode(&[BIND, 0, 1, b'e', 0, 1]).is_err_and(|e| e.contains("inside a queue name"))
        );
    }
}
