//! Whether a member's protocols can go with the other members', and which protocol a
//! generation uses.

use crate::groups::classic::member::ClassicSpec;

/// Why a member bringing `spec` cannot join the `others` (every member but itself, or the
/// static member it replaces) of a group whose members speak `group_type`, if it cannot:
/// it must name a protocol type (the group's, when it has members) and at least one
/// protocol, and support one that every other member supports. So one protocol is always
/// common to all members.
pub(super) fn incompatibility(
    spec: &ClassicSpec,
    group_type: Option<&str>,
    others: &[&ClassicSpec],
) -> Option<String> {
    if spec.protocol_type.is_empty() || spec.protocols.is_empty() {
        return Some("a member must name its protocol type and at least one protocol".to_owned());
    }
    if let Some(group_type) = group_type
        && group_type != spec.protocol_type
    {
        return Some(format!(
            "protocol type {:?} differs from the group's {group_type:?}",
            spec.protocol_type
        ));
    }
    let shared = spec
        .protocols
        .iter()
        .any(|(name, _)| others.iter().all(|m| m.metadata(name).is_some()));
    if shared {
        return None;
    }
    let names: Vec<&str> = spec.protocols.iter().map(|(n, _)| n.as_str()).collect();
    Some(format!(
        "none of the protocols {names:?} is supported by every member"
    ))
}

/// The protocol every one of `members` supports that most of them prefer (each votes for the
/// first of its protocols that all support); ties go to the `leader`'s preference (the first
/// member's without a leader).
pub(super) fn select(members: &[&ClassicSpec], leader: Option<&ClassicSpec>) -> String {
    let supported_by_all = |name: &str| members.iter().all(|m| m.metadata(name).is_some());
    let mut votes: Vec<(&str, usize)> = Vec::new();
    for member in members {
        let Some((name, _)) = member
            .protocols
            .iter()
            .find(|(name, _)| supported_by_all(name))
        else {
            continue;
        };
        match votes.iter_mut().find(|(voted, _)| voted == name) {
            Some((_, count)) => *count += 1,
            None => votes.push((name, 1)),
        }
    }
    let preference = leader
        .or_else(|| members.first().copied())
        .map(|m| m.protocols.as_slice())
        .unwrap_or_default();
    let mut best: Option<(&str, usize)> = None;
    for (name, _) in preference {
        if let Some(&(_, count)) = votes.iter().find(|(voted, _)| voted == name)
            && best.is_none_or(|(_, most)| count > most)
        {
            best = Some((name, count));
        }
    }
    // Joins keep one protocol common to all members; the fallback is never needed.
    best.map(|(name, _)| name)
        .or_else(|| preference.first().map(|(name, _)| name.as_str()))
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn spec(protocol_type: &str, protocols: &[&str]) -> ClassicSpec {
        ClassicSpec {
            instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: protocol_type.to_owned(),
            protocols: protocols
                .iter()
                .map(|name| ((*name).to_owned(), Bytes::new()))
                .collect(),
            topics: Default::default(),
        }
    }

    #[test]
    fn the_most_preferred_common_protocol_wins_and_ties_go_to_the_leader() {
        let a = spec("consumer", &["range", "roundrobin", "sticky"]);
        let b = spec("consumer", &["roundrobin", "range"]);
        let c = spec("consumer", &["sticky", "roundrobin", "range"]);
        // sticky is not common; c votes for roundrobin: 2 against 1.
        assert_eq!(select(&[&a, &b, &c], Some(&a)), "roundrobin");
        // One vote each: the leader's order decides.
        assert_eq!(select(&[&a, &b], Some(&a)), "range");
        assert_eq!(select(&[&a, &b], Some(&b)), "roundrobin");
        assert_eq!(select(&[&b, &a], None), "roundrobin");
    }

    #[test]
    fn a_member_must_share_the_type_and_a_protocol_with_every_other() {
        let a = spec("consumer", &["range", "roundrobin"]);
        let b = spec("consumer", &["roundrobin"]);
        assert_eq!(
            incompatibility(
                &spec("consumer", &["roundrobin"]),
                Some("consumer"),
                &[&a, &b]
            ),
            None
        );
        let unshared = incompatibility(&spec("consumer", &["range"]), Some("consumer"), &[&a, &b]);
        assert!(unshared.is_some_and(|r| r.contains("[\"range\"]")));
        let other_type = incompatibility(&spec("connect", &["range"]), Some("consumer"), &[]);
        assert!(other_type.is_some_and(|r| r.contains("\"connect\"")));
        assert!(incompatibility(&spec("", &["range"]), None, &[]).is_some());
        assert!(incompatibility(&spec("consumer", &[]), None, &[]).is_some());
        // The first member sets the type.
        assert_eq!(incompatibility(&spec("connect", &["x"]), None, &[]), None);
    }
}
