//! What exchange names, queue names, binding keys and arguments may hold (RabbitMQ's rules
//! where it has them, the journal's field sizes where it does not), and the built-in
//! exchanges.

use std::collections::BTreeMap;

use crate::routing::{ExchangeKind, ExchangeSpec};
use crate::{BrokerError, validate_topic_name};

/// The most bytes of an exchange name, and of a binding key (AMQP short strings).
pub(crate) const MAX_SHORT_STR: usize = 255;
/// The most arguments of one exchange, queue or binding.
pub(crate) const MAX_ARGUMENTS: usize = 256;
/// The most bytes of one argument's value.
pub(crate) const MAX_ARGUMENT_VALUE: usize = u16::MAX as usize;

/// The prefix of the built-in exchanges' names, reserved for them.
pub(crate) const RESERVED_PREFIX: &str = "amq.";

/// The exchanges that always exist, all durable: the default exchange `""` (direct), and
/// one of each kind under the reserved prefix.
pub(crate) const BUILT_IN: [(&str, ExchangeKind); 6] = [
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// Whether `name` is a built-in exchange.
pub(crate) fn is_built_in(name: &str) -> bool {
    BUILT_IN.iter().any(|(built_in, _)| *built_in == name)
}

/// The built-in exchanges' definitions.
pub(crate) fn built_in_exchanges() -> impl Iterator<Item = ExchangeSpec> {
    BUILT_IN
        .iter()
        .map(|(name, kind)| ExchangeSpec::new(*name, *kind))
}

/// Checks an exchange name: at most 255 bytes of ASCII letters, digits, `-`, `_`, `.` and
/// `:` (`""`, the default exchange, included). The error names `field`.
pub(crate) fn validate_exchange_name(field: &'static str, name: &str) -> Result<(), BrokerError> {
    if name.len() > MAX_SHORT_STR {
        return Err(BrokerError::invalid_request(
            field,
            format!(
                "an exchange name of {} bytes exceeds {MAX_SHORT_STR} bytes",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(BrokerError::invalid_request(
            field,
            format!(
                "character {bad:?} is not allowed in exchange name {name:?}: use only ASCII letters, digits, '-', '_', '.' and ':'"
            ),
        ));
    }
    Ok(())
}

/// Checks a queue name: the name of the topic holding its records, so a valid topic name.
/// The error names `field`.
pub(crate) fn validate_queue_name(
    field: &'static str,
    name: &str,
    max_len: usize,
) -> Result<(), BrokerError> {
    validate_topic_name(name, max_len).map_err(|e| match e {
        BrokerError::InvalidTopicName { name, reason } => BrokerError::invalid_request(
            field,
            format!("invalid queue name {name:?} (a queue's records are the topic of its name): {reason}"),
        ),
        other => other,
    })
}

/// Checks a binding key: at most 255 bytes.
pub(crate) fn validate_routing_key(key: &str) -> Result<(), BrokerError> {
    if key.len() > MAX_SHORT_STR {
        return Err(BrokerError::invalid_request(
            "routing_key",
            format!(
                "a binding key of {} bytes exceeds {MAX_SHORT_STR} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// Checks arguments: at most [`MAX_ARGUMENTS`], each name 1 to 255 bytes, each value at
/// most [`MAX_ARGUMENT_VALUE`] bytes.
pub(crate) fn validate_arguments(arguments: &BTreeMap<String, String>) -> Result<(), BrokerError> {
    let refuse = |reason: String| Err(BrokerError::invalid_request("arguments", reason));
    if arguments.len() > MAX_ARGUMENTS {
        return refuse(format!(
            "{} arguments exceed {MAX_ARGUMENTS}",
            arguments.len()
        ));
    }
    for (key, value) in arguments {
        if key.is_empty() || key.len() > MAX_SHORT_STR {
            return refuse(format!(
                "argument name {key:?} of {} bytes is outside 1..={MAX_SHORT_STR} bytes",
                key.len()
            ));
        }
        if value.len() > MAX_ARGUMENT_VALUE {
            return refuse(format!(
                "the value of argument {key:?} of {} bytes exceeds {MAX_ARGUMENT_VALUE} bytes",
                value.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<(), BrokerError>) -> Option<String> {
        result.err().map(|e| e.to_string())
    }

    #[test]
    fn exchange_names_follow_rabbitmq_rules() {
        for ok in ["", "logs", "amq.direct", "a-b_c.d:e", &"x".repeat(255)] {
            assert_eq!(reason(validate_exchange_name("exchange", ok)), None, "{ok}");
        }
        let long = reason(validate_exchange_name("exchange", &"x".repeat(256)));
        assert!(long.is_some_and(|r| r.starts_with("exchange: ") && r.contains("256 bytes")));
        for bad in ["a b", "a/b", "é", "a\n"] {
            let r = reason(validate_exchange_name("exchange", bad)).expect(bad);
            assert!(r.starts_with("exchange: character"), "{r}");
        }
    }

    #[test]
    fn queue_names_are_topic_names_and_errors_name_the_field() {
        assert_eq!(reason(validate_queue_name("queue", "jobs.v2", 249)), None);
        assert_eq!(
            reason(validate_queue_name("queue", "amq.gen-abc_1", 249)),
            None
        );
        for bad in ["", "a:b", "..", &"q".repeat(250)] {
            let r = reason(validate_queue_name("queue", bad, 249)).expect(bad);
            assert!(r.starts_with("queue: invalid queue name"), "{r}");
        }
    }

    #[test]
    fn arguments_and_keys_fit_the_journal() {
        assert_eq!(reason(validate_routing_key(&"k".repeat(255))), None);
        assert!(
            reason(validate_routing_key(&"k".repeat(256)))
                .is_some_and(|r| r.contains("routing_key"))
        );
        let args = |pairs: Vec<(String, String)>| pairs.into_iter().collect::<BTreeMap<_, _>>();
        assert_eq!(
            reason(validate_arguments(&args(vec![(
                "x-match".into(),
                "v".repeat(MAX_ARGUMENT_VALUE)
            )]))),
            None
        );
        let too_many = args(
            (0..=MAX_ARGUMENTS)
                .map(|i| (format!("k{i}"), String::new()))
                .collect(),
        );
        assert!(reason(validate_arguments(&too_many)).is_some_and(|r| r.contains("257 arguments")));
        for bad in [
            args(vec![(String::new(), "v".into())]),
            args(vec![("k".repeat(256), "v".into())]),
            args(vec![("k".into(), "v".repeat(MAX_ARGUMENT_VALUE + 1))]),
        ] {
            assert!(
                reason(validate_arguments(&bad)).is_some_and(|r| r.starts_with("arguments: ")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn built_ins_are_durable_and_of_their_kind() {
        let specs: Vec<ExchangeSpec> = built_in_exchanges().collect();
        assert_eq!(specs.len(), 6);
        assert!(
            specs
                .iter()
                .all(|s| s.durable && !s.auto_delete && !s.internal)
        );
        assert!(is_built_in("") && is_built_in("amq.match") && !is_built_in("amq.other"));
        assert!(
            BUILT_IN[1..]
                .iter()
                .all(|(n, _)| n.starts_with(RESERVED_PREFIX))
        );
    }
}
