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
    let mut reasons = Vec::new();
    let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let address_space = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .and_then(|line| line.split_whitespace().nth(3));
    if let Some(soft) = address_space.filter(|&soft| soft != "unlimited") {
        reasons.push(format!(
            "the address space is limited to {soft} bytes (ulimit -v)"
        ));
    }
    let overcommit = fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
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

    #[test]
    fn reasons_name_the_limit() {
        // Whatever this machine's settings, every reason names what limits reservations.
        for reason in reservation_limits() {
            assert!(
                reason.contains("ulimit -v") || reason.contains("overcommit"),
                "{reason}"
            );
        }
    }
}
