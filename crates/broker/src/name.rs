//! Topic name rules (Kafka's).

use crate::BrokerError;

/// Checks `name` against Kafka's topic naming rules: 1 to `max_len` characters
/// from `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
///
/// A valid name is also a safe directory name.
pub fn validate_topic_name(name: &str, max_len: usize) -> Result<(), BrokerError> {
    let reject = |reason: String| {
        Err(BrokerError::InvalidTopicName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return reject("the name is empty".to_owned());
    }
    if name.len() > max_len {
        return reject(format!(
            "{} characters exceed max_topic_name_len = {max_len}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return reject("\".\" and \"..\" are reserved".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return reject(format!(
            "character {bad:?} is not allowed: use only ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str, max: usize) -> Option<String> {
        match validate_topic_name(name, max) {
            Ok(()) => None,
            Err(BrokerError::InvalidTopicName { name: n, reason }) => {
                assert_eq!(n, name);
                Some(reason)
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn accepts_kafka_names() {
        for name in ["a", "orders", "Orders.v2", "my_topic-1", "...", ".a", "0"] {
            assert_eq!(reason(name, 249), None, "{name}");
        }
        assert_eq!(reason(&"x".repeat(249), 249), None);
    }

    #[test]
    fn rejects_bad_names() {
        assert!(reason("", 249).is_some_and(|r| r.contains("empty")));
        assert!(reason(".", 249).is_some_and(|r| r.contains("reserved")));
        assert!(reason("..", 249).is_some_and(|r| r.contains("reserved")));
        assert!(reason(&"x".repeat(250), 249).is_some_and(|r| r.contains("249")));
        assert!(reason("abc", 2).is_some_and(|r| r.contains("max_topic_name_len = 2")));
        for name in ["a/b", "a b", "a\\b", "tópico", "a:b", "a\0b", "../x"] {
            assert!(reason(name, 249).is_some(), "{name:?} accepted");
        }
    }
}
