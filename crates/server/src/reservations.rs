//! A start-up check for what the Kafka codec needs of the operating system.
//!
//! The `kafka-protocol` crate reserves a vector for an array's declared length before it
//! reads the elements, so a tiny malformed request can ask for tens of gigabytes. Sluice's
//! allocator (mimalloc) reserves such a block lazily, without committing memory, and the
//! decoder fails on the missing bytes right after; nothing becomes resident. That holds only
//! while the kernel lets a process reserve more address space than it has memory: not under
//! an address-space limit (`ulimit -v`, systemd's `LimitAS=`) nor with
//! `vm.overcommit_memory = 2`. There, such a request aborts the process; this check says so
//! in the log when the Kafka listener starts in such an environment.

use std::fs;

/// Why large reservations may fail here, if they may: one line per reason.
pub(crate) fn reservation_limits() -> Vec<String> {
    reasons(
        &fs::read_to_string("/proc/self/limits").unwrap_or_default(),
        &fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default(),
    )
}

/// The reasons the texts of `/proc/self/limits` and `/proc/sys/vm/overcommit_memory` give.
fn reasons(limits: &str, overcommit: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    let address_space = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .and_then(|line| line.split_whitespace().nth(3));
    if let Some(soft) = address_space.filter(|&soft| soft != "unlimited") {
        reasons.push(format!(
            "the address space is limited to {soft} bytes (ulimit -v)"
        ));
    }
    if overcommit.trim() == "2" {
        reasons.push("vm.overcommit_memory is 2 (strict accounting)".to_owned());
    }
    reasons
}

/// Logs a warning for each reason [`reservation_limits`] finds.
pub(crate) fn warn_for_kafka() {
    for reason in reservation_limits() {
        tracing::warn!(
            reason = %reason,
            "the Kafka listener needs large untouched reservations to succeed: a malformed Kafka request declaring a huge array can abort the server here (docs/kafka.md)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNLIMITED: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
        Max address space         unlimited            unlimited            bytes\n";
    const LIMITED: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
        Max address space         4096000000           unlimited            bytes\n";

    #[test]
    fn an_address_space_limit_and_strict_overcommit_are_named() {
        assert!(reasons(UNLIMITED, "0\n").is_empty());
        assert!(reasons(UNLIMITED, "1\n").is_empty());
        assert_eq!(
            reasons(LIMITED, "0\n"),
            ["the address space is limited to 4096000000 bytes (ulimit -v)"]
        );
        let both = reasons(LIMITED, "2\n");
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[1].contains("overcommit_memory is 2"), "{both:?}");
        // Unreadable files (not Linux) give no reason.
        assert!(reasons("", "").is_empty());
    }
}
