//! The definitions routing operations take and return: exchanges, queues and bindings, and
//! how a redeclaration is told equivalent to what exists.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::BrokerError;

/// An exchange's routing rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// To the queues bound with a binding key equal to the routing key.
    Direct,
    /// To every bound queue.
    Fanout,
    /// To the queues bound with a pattern the routing key matches: words split on `.`, `*`
    /// one word, `#` zero or more words.
    Topic,
    /// To the queues bound with arguments the message headers match (`x-match`).
    Headers,
}

impl ExchangeKind {
    /// The kind's AMQP name: `"direct"`, `"fanout"`, `"topic"` or `"headers"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExchangeKind {
    type Err = BrokerError;

    /// Parses an AMQP exchange type; anything else is [`BrokerError::InvalidRequest`] naming
    /// the field `type`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(ExchangeKind::Direct),
            "fanout" => Ok(ExchangeKind::Fanout),
            "topic" => Ok(ExchangeKind::Topic),
            "headers" => Ok(ExchangeKind::Headers),
            other => Err(BrokerError::invalid_request(
                "type",
                format!("unknown exchange type {other:?}: use direct, fanout, topic or headers"),
            )),
        }
    }
}

/// An exchange definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    /// Its name: at most 255 bytes of ASCII letters, digits, `-`, `_`, `.` and `:`; `""` is
    /// the default exchange.
    pub name: String,
    /// Its routing rule.
    pub kind: ExchangeKind,
    /// Kept across restarts.
    pub durable: bool,
    /// Deleted once its last binding goes.
    pub auto_delete: bool,
    /// Not for clients to publish to (kept and compared; routing does not refuse it).
    pub internal: bool,
    /// Further arguments (such as `alternate-exchange`), kept and compared as given.
    pub arguments: BTreeMap<String, String>,
}

impl ExchangeSpec {
    /// A durable exchange of `kind` without flags or arguments.
    pub fn new(name: impl Into<String>, kind: ExchangeKind) -> ExchangeSpec {
        ExchangeSpec {
            name: name.into(),
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: BTreeMap::new(),
        }
    }

    /// The first field in which `requested` differs from this (the existing exchange), as
    /// [`BrokerError::Inequivalent`]; `None` when they are equivalent.
    pub(crate) fn inequivalence(&self, requested: &ExchangeSpec) -> Option<BrokerError> {
        let differs = |field: &str, current: String, received: String| {
            Some(BrokerError::Inequivalent {
                entity: "exchange",
                name: self.name.clone(),
                field: field.to_owned(),
                current,
                received,
            })
        };
        if self.kind != requested.kind {
            return differs("type", quoted(self.kind), quoted(requested.kind));
        }
        for (field, current, received) in [
            ("durable", self.durable, requested.durable),
            ("auto_delete", self.auto_delete, requested.auto_delete),
            ("internal", self.internal, requested.internal),
        ] {
            if current != received {
                return differs(field, quoted(current), quoted(received));
            }
        }
        arguments_inequivalence(
            "exchange",
            &self.name,
            &self.arguments,
            &requested.arguments,
        )
    }
}

/// A queue definition. The queue's records live in the topic of the same name, read by the
/// share group of the same name; defining it creates neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Its name: a valid topic name.
    pub name: String,
    /// Kept across restarts.
    pub durable: bool,
    /// Used by one connection only (kept and compared; the front end enforces it).
    pub exclusive: bool,
    /// Deleted once its last consumer goes (kept and compared; the front end enforces it).
    pub auto_delete: bool,
    /// Further arguments (such as `x-message-ttl`), kept and compared as given.
    pub arguments: BTreeMap<String, String>,
}

impl QueueSpec {
    /// A durable queue without flags or arguments.
    pub fn new(name: impl Into<String>) -> QueueSpec {
        QueueSpec {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: BTreeMap::new(),
        }
    }

    /// The first field in which `requested` differs from this (the existing definition), as
    /// [`BrokerError::Inequivalent`]; `None` when they are equal.
    pub(crate) fn inequivalence(&self, requested: &QueueSpec) -> Option<BrokerError> {
        for (field, current, received) in [
            ("durable", self.durable, requested.durable),
            ("exclusive", self.exclusive, requested.exclusive),
            ("auto_delete", self.auto_delete, requested.auto_delete),
        ] {
            if current != received {
                return Some(BrokerError::Inequivalent {
                    entity: "queue",
                    name: self.name.clone(),
                    field: field.to_owned(),
                    current: quoted(current),
                    received: quoted(received),
                });
            }
        }
        arguments_inequivalence("queue", &self.name, &self.arguments, &requested.arguments)
    }
}

/// A binding of a queue to an exchange. Two bindings of the same queue and exchange with
/// another routing key or other arguments are two bindings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BindingSpec {
    /// The exchange (the source).
    pub exchange: String,
    /// The queue (the destination).
    pub queue: String,
    /// The binding key: compared with routing keys by direct exchanges, a pattern for topic
    /// exchanges, ignored by fanout and headers exchanges. At most 255 bytes.
    pub routing_key: String,
    /// For headers exchanges, `x-match` and the headers to match; kept by every kind.
    pub arguments: BTreeMap<String, String>,
}

impl BindingSpec {
    /// A binding of `queue` to `exchange` with `routing_key` and no arguments.
    pub fn new(
        exchange: impl Into<String>,
        queue: impl Into<String>,
        routing_key: impl Into<String>,
    ) -> BindingSpec {
        BindingSpec {
            exchange: exchange.into(),
            queue: queue.into(),
            routing_key: routing_key.into(),
            arguments: BTreeMap::new(),
        }
    }
}

fn quoted(value: impl fmt::Display) -> String {
    format!("'{value}'")
}

/// The first argument (by name) whose presence or value differs, as
/// [`BrokerError::Inequivalent`] naming it.
fn arguments_inequivalence(
    entity: &'static str,
    name: &str,
    current: &BTreeMap<String, String>,
    received: &BTreeMap<String, String>,
) -> Option<BrokerError> {
    let field = current
        .keys()
        .chain(received.keys())
        .filter(|key| current.get(*key) != received.get(*key))
        .min()?;
    let shown = |value: Option<&String>| value.map_or_else(|| "none".to_owned(), quoted);
    Some(BrokerError::Inequivalent {
        entity,
        name: name.to_owned(),
        field: field.clone(),
        current: shown(current.get(field)),
        received: shown(received.get(field)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn kinds_parse_from_their_names_and_nothing_else() {
        for kind in [
            ExchangeKind::Direct,
            ExchangeKind::Fanout,
            ExchangeKind::Topic,
            ExchangeKind::Headers,
        ] {
            assert_eq!(kind.as_str().parse::<ExchangeKind>().ok(), Some(kind));
        }
        for bad in ["Direct", "x-delayed-message", ""] {
            let err = bad.parse::<ExchangeKind>().expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
            assert!(err.to_string().starts_with("type: "), "{err}");
        }
    }

    #[test]
    fn the_first_differing_field_is_named() {
        let current = ExchangeSpec::new("logs", ExchangeKind::Direct);
        assert!(current.inequivalence(&current.clone()).is_none());
        let fanout = ExchangeSpec {
            kind: ExchangeKind::Fanout,
            durable: false,
            ..current.clone()
        };
        let err = current.inequivalence(&fanout).expect("differs");
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(
            err.to_string(),
            "inequivalent arg 'type' for exchange 'logs' in vhost '/': received 'fanout' but current is 'direct'"
        );
        let transient = ExchangeSpec {
            durable: false,
            ..current.clone()
        };
        assert!(
            current
                .inequivalence(&transient)
                .is_some_and(|e| e.to_string().contains("'durable'"))
        );

        let queue = QueueSpec::new("q");
        let mut with_ttl = queue.clone();
        with_ttl
            .arguments
            .insert("x-message-ttl".into(), "60000".into());
        with_ttl.arguments.insert("a".into(), "1".into());
        with_ttl.arguments.insert("z".into(), "1".into());
        let mut other = with_ttl.clone();
        other.arguments.insert("z".into(), "2".into());
        other.arguments.remove("a");
        let err = with_ttl.inequivalence(&other).expect("differs");
        assert_eq!(
            err.to_string(),
            "inequivalent arg 'a' for queue 'q' in vhost '/': received none but current is '1'"
        );
        assert!(
            queue
                .inequivalence(&with_ttl)
                .is_some_and(|e| e.to_string().contains("received '1' but current is none"))
        );
        let exclusive = QueueSpec {
            exclusive: true,
            ..queue.clone()
        };
        assert!(
            queue
                .inequivalence(&exclusive)
                .is_some_and(|e| e.to_string().contains("'exclusive'"))
        );
    }
}
