//! Headers exchange matching: a binding's `x-match` argument says whether all (`all`, the
//! default, or `all-with-x`) or any (`any`, `any-with-x`) of its other arguments must equal
//! the message header of the same name. Arguments starting with `x-` take part only with the
//! `-with-x` forms (`x-match` itself never). A header matches an argument when its name is
//! the argument's name and its value the bytes of the argument's UTF-8 value; a header
//! without a value matches no argument; of several headers of one name, any may match.
//! With no argument taking part, `all` matches every message and `any` none (RabbitMQ's
//! rule).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::BrokerError;

/// The binding argument naming the match mode.
pub(crate) const X_MATCH: &str = "x-match";

/// How a headers binding's arguments must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XMatch {
    /// Every argument taking part must match (else at least one).
    all: bool,
    /// Arguments starting with `x-` take part too.
    with_x: bool,
}

impl XMatch {
    /// The mode of a binding with `arguments`; `None` for an unknown `x-match` value.
    pub(crate) fn parse(arguments: &BTreeMap<String, String>) -> Option<XMatch> {
        let mode = |all, with_x| Some(XMatch { all, with_x });
        match arguments.get(X_MATCH).map(String::as_str) {
            None | Some("all") => mode(true, false),
            Some("any") => mode(false, false),
            Some("all-with-x") => mode(true, true),
            Some("any-with-x") => mode(false, true),
            Some(_) => None,
        }
    }

    /// [`XMatch::parse`], an unknown `x-match` value being an error naming the field.
    pub(crate) fn of(arguments: &BTreeMap<String, String>) -> Result<XMatch, BrokerError> {
        XMatch::parse(arguments).ok_or_else(|| {
            BrokerError::invalid_request(
                "arguments",
                format!(
                    "invalid x-match value {:?}: use all, any, all-with-x or any-with-x",
                    arguments.get(X_MATCH).map_or("", String::as_str)
                ),
            )
        })
    }

    /// Whether a message with `headers` matches a binding of this mode with `arguments`.
    /// Allocates nothing.
    pub(crate) fn matches(
        self,
        arguments: &BTreeMap<String, String>,
        headers: &[(Bytes, Option<Bytes>)],
    ) -> bool {
        let mut taking_part = arguments.iter().filter(|(name, _)| {
            name.as_str() != X_MATCH && (self.with_x || !name.starts_with("x-"))
        });
        let found = |(name, value): (&String, &String)| {
            headers.iter().any(|(header, header_value)| {
                header.as_ref() == name.as_bytes()
                    && header_value.as_deref() == Some(value.as_bytes())
            })
        };
        if self.all {
            taking_part.all(found)
        } else {
            taking_part.any(found)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn arguments(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn headers(pairs: &[(&str, Option<&str>)]) -> Vec<(Bytes, Option<Bytes>)> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    Bytes::copy_from_slice(k.as_bytes()),
                    v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                )
            })
            .collect()
    }

    fn routes(binding: &[(&str, &str)], message: &[(&str, Option<&str>)]) -> bool {
        let arguments = arguments(binding);
        XMatch::of(&arguments)
            .expect("valid x-match")
            .matches(&arguments, &headers(message))
    }

    #[test]
    fn all_needs_every_argument_and_is_the_default() {
        let binding = [("format", "pdf"), ("type", "report")];
        let both = [
            ("format", Some("pdf")),
            ("type", Some("report")),
            ("extra", Some("1")),
        ];
        assert!(routes(&binding, &both));
        assert!(!routes(&binding, &[("format", Some("pdf"))]));
        assert!(!routes(
            &binding,
            &[("format", Some("pdf")), ("type", Some("log"))]
        ));
        let mut all = binding.to_vec();
        all.push(("x-match", "all"));
        assert!(routes(&all, &both));
        assert!(!routes(&all, &[("type", Some("report"))]));
        // Nothing to match: every message.
        assert!(routes(&[], &[]));
        assert!(routes(&[("x-match", "all")], &[("a", Some("b"))]));
    }

    #[test]
    fn any_needs_one_argument() {
        let binding = [("x-match", "any"), ("format", "pdf"), ("type", "report")];
        assert!(routes(&binding, &[("format", Some("pdf"))]));
        assert!(routes(
            &binding,
            &[("type", Some("report")), ("format", Some("zip"))]
        ));
        assert!(!routes(&binding, &[("format", Some("zip"))]));
        assert!(!routes(&binding, &[]));
        // Nothing to match: no message.
        assert!(!routes(&[("x-match", "any")], &[("a", Some("b"))]));
    }

    #[test]
    fn x_arguments_take_part_only_with_the_with_x_forms() {
        let plain = [("x-match", "all"), ("x-tenant", "7"), ("kind", "a")];
        assert!(routes(&plain, &[("kind", Some("a"))]));
        let with_x = [("x-match", "all-with-x"), ("x-tenant", "7"), ("kind", "a")];
        assert!(!routes(&with_x, &[("kind", Some("a"))]));
        assert!(routes(
            &with_x,
            &[("kind", Some("a")), ("x-tenant", Some("7"))]
        ));
        let any = [("x-match", "any"), ("x-tenant", "7")];
        assert!(!routes(&any, &[("x-tenant", Some("7"))]));
        let any_with_x = [("x-match", "any-with-x"), ("x-tenant", "7"), ("kind", "a")];
        assert!(routes(&any_with_x, &[("x-tenant", Some("7"))]));
        // x-match is never a header to match, even with x.
        assert!(routes(&[("x-match", "all-with-x")], &[]));
    }

    #[test]
    fn values_compare_as_bytes_and_valueless_headers_match_nothing() {
        let binding = [("k", "v")];
        assert!(!routes(&binding, &[("k", None)]));
        assert!(!routes(&binding, &[("k", Some("V"))]));
        assert!(!routes(&binding, &[("K", Some("v"))]));
        assert!(!routes(&[("k", "")], &[("k", None)]));
        assert!(routes(&[("k", "")], &[("k", Some(""))]));
        // One of several headers of the name may match.
        assert!(routes(&binding, &[("k", Some("x")), ("k", Some("v"))]));
        let utf8 = [("name", "héllo")];
        let raw = vec![(
            Bytes::from_static(b"name"),
            Some(Bytes::from("héllo".as_bytes().to_vec())),
        )];
        let arguments = arguments(&utf8);
        assert!(
            XMatch::of(&arguments)
                .expect("valid")
                .matches(&arguments, &raw)
        );
    }

    #[test]
    fn an_unknown_mode_is_an_error_naming_the_field() {
        let err = XMatch::of(&arguments(&[("x-match", "some")])).expect_err("unknown");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(
            err.to_string()
                .starts_with("arguments: invalid x-match value \"some\""),
            "{err}"
        );
    }
}
