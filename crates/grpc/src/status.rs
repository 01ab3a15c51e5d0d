//! The one mapping from broker errors to gRPC statuses, and the statuses of request
//! validation.

use sluice_broker::{BrokerError, ErrorKind};
use tonic::{Code, Status};

/// Longest status message sent, in bytes. Messages echo request fields (names, ids), which
/// a client can make megabytes long; a status travels in an HTTP/2 header block, and
/// clients refuse a block that large by closing the whole connection.
const MAX_MESSAGE_BYTES: usize = 1024;

/// `message`, cut to [`MAX_MESSAGE_BYTES`] (at a character boundary) when longer.
fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... ({} more bytes)",
        &message[..end],
        message.len() - end
    )
}

/// The gRPC status a broker error is reported with. The message is the error's text,
/// which names the topic, partition, field or limit involved (for OUT_OF_RANGE, the
/// valid offset range).
pub fn to_status(err: BrokerError) -> Status {
    let code = broker_code(&err);
    match code {
        // Draining is the expected end of long-running calls, not a failure.
        Code::Unavailable if matches!(err, BrokerError::ShuttingDown) => {
            tracing::debug!(error = %err, "call ended by shutdown");
        }
        Code::Internal | Code::DataLoss | Code::Unavailable => {
            tracing::error!(error = &err as &dyn std::error::Error, "request failed");
        }
        _ => tracing::debug!(error = %err, "request rejected"),
    }
    Status::new(code, bounded(err.to_string()))
}

/// The code a broker error is reported with: one per [`ErrorKind`].
fn broker_code(err: &BrokerError) -> Code {
    match err.kind() {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::OutOfRange => Code::OutOfRange,
        ErrorKind::TooLarge | ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::FailedPrecondition | ErrorKind::Fenced => Code::FailedPrecondition,
        ErrorKind::RebalanceInProgress => Code::Aborted,
        // gRPC's code for "a sequencer check failed": retrying the same call will not help.
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DataLoss => Code::DataLoss,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        _ => Code::Internal,
    }
}

/// INVALID_ARGUMENT for a request field: `"<field>: <problem>"`.
pub(crate) fn invalid_field(field: &str, problem: &str) -> Status {
    Status::invalid_argument(bounded(format!("{field}: {problem}")))
}

/// Checks that a request's topic field is set.
pub fn require_topic(field: &str, topic: &str) -> Result<(), Status> {
    if topic.is_empty() {
        return Err(invalid_field(field, "must not be empty"));
    }
    Ok(())
}

/// UNAVAILABLE for requests cut short by server shutdown.
pub fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn check(err: BrokerError, code: Code, needles: &[&str]) {
        let text = err.to_string();
        let status = to_status(err);
        assert_eq!(status.code(), code, "{text}");
        for needle in needles {
            assert!(
                status.message().contains(needle),
                "{:?} lacks {needle:?}",
                status.message()
            );
        }
    }

    #[test]
    fn broker_errors_map_to_codes() {
        check(
            BrokerError::TopicNotFound { topic: "t".into() },
            Code::NotFound,
            &["\"t\""],
        );
        check(
            BrokerError::PartitionNotFound {
                topic: "t".into(),
                partition: 7,
                partitions: 3,
            },
            Code::NotFound,
            &["7"],
        );
        check(
            BrokerError::TopicExists { topic: "t".into() },
            Code::AlreadyExists,
            &["\"t\""],
        );
        check(
            BrokerError::InvalidTopicName {
                name: "a/b".into(),
                reason: "bad character".into(),
            },
            Code::InvalidArgument,
            &["a/b"],
        );
        check(
            BrokerError::InvalidPartitionCount {
                requested: 0,
                max: 1024,
            },
            Code::InvalidArgument,
            &["1024"],
        );
        check(
            BrokerError::InvalidConfig {
                key: "segment.bytes".into(),
                value: "1".into(),
                reason: "too small".into(),
            },
            Code::InvalidArgument,
            &["segment.bytes"],
        );
        check(BrokerError::EmptyBatch, Code::InvalidArgument, &[]);
        check(
            BrokerError::OffsetOutOfRange {
                requested: 50,
                log_start_offset: 10,
                high_watermark: 20,
            },
            Code::OutOfRange,
            &["50", "10", "20"],
        );
        check(
            BrokerError::RecordTooLarge {
                size: 2_000_000,
                limit: 1_048_576,
            },
            Code::ResourceExhausted,
            &["max.message.bytes", "1048576"],
        );
        check(
            BrokerError::TooManyRecords { count: 5, limit: 4 },
            Code::ResourceExhausted,
            &["max_records_per_request"],
        );
        check(
            BrokerError::DecompressedTooLarge {
                codec: sluice_broker::Compression::Zstd,
                limit: 4096,
            },
            Code::ResourceExhausted,
            &["zstd", "max_decompressed_batch_bytes = 4096"],
        );
        check(BrokerError::ShuttingDown, Code::Unavailable, &[]);
    }

    #[test]
    fn group_errors_map_to_codes() {
        let group = || "g".to_owned();
        check(
            BrokerError::GroupNotFound { group: group() },
            Code::NotFound,
            &["\"g\""],
        );
        check(
            BrokerError::InvalidGroupName {
                name: "a b".into(),
                reason: "bad character".into(),
            },
            Code::InvalidArgument,
            &["a b"],
        );
        check(
            BrokerError::InvalidJoin {
                group: group(),
                reason: "session timeout of 5 ms".into(),
            },
            Code::InvalidArgument,
            &["5 ms"],
        );
        check(
            BrokerError::StaleGeneration {
                group: group(),
                generation: 2,
                valid_from: 4,
                current: 5,
            },
            Code::FailedPrecondition,
            &["generation 2", "4..=5"],
        );
        check(
            BrokerError::UnknownMember {
                group: group(),
                member_id: "m-1".into(),
            },
            Code::FailedPrecondition,
            &["m-1"],
        );
        check(
            BrokerError::NotPartitionOwner {
                group: group(),
                member_id: "m-1".into(),
                topic: "t".into(),
                partition: 3,
            },
            Code::FailedPrecondition,
            &["partition 3"],
        );
        check(
            BrokerError::GroupNotEmpty {
                group: group(),
                members: 2,
            },
            Code::FailedPrecondition,
            &["2 member"],
        );
        check(
            BrokerError::SessionExpired {
                group: group(),
                member_id: "m-1".into(),
            },
            Code::FailedPrecondition,
            &["expired"],
        );
        check(
            BrokerError::MemberFenced {
                group: group(),
                member_id: "m-1".into(),
                instance_id: "i".into(),
            },
            Code::FailedPrecondition,
            &["replaced"],
        );
        check(
            BrokerError::GroupKindMismatch {
                group: group(),
                kind: sluice_broker::GroupKind::ClientAssigned,
            },
            Code::FailedPrecondition,
            &["client-assigned", "once they have all left"],
        );
        check(
            BrokerError::GroupFull {
                group: group(),
                limit: 3,
            },
            Code::ResourceExhausted,
            &["groups.max_members = 3"],
        );
        check(
            BrokerError::RebalanceInProgress { group: group() },
            Code::Aborted,
            &["rebalancing"],
        );
        check(
            BrokerError::CommitOutOfRange {
                topic: "t".into(),
                partition: 0,
                offset: 9,
                high_watermark: 4,
            },
            Code::OutOfRange,
            &["9", "4"],
        );
        check(
            BrokerError::OffsetsCorrupt {
                path: PathBuf::from("groups/g.offsets"),
                reason: "CRC mismatch".into(),
            },
            Code::DataLoss,
            &["g.offsets", "CRC mismatch"],
        );
        let failed_write = BrokerError::CommitFailed {
            group: group(),
            source: std::sync::Arc::new(BrokerError::ShuttingDown),
        };
        check(failed_write, Code::Unavailable, &["\"g\""]);
    }

    #[test]
    fn idempotent_producer_errors_map_to_codes() {
        check(
            BrokerError::ProducerFenced {
                topic: "t".into(),
                partition: 1,
                producer_id: 7,
                epoch: 0,
                current_epoch: 2,
            },
            Code::FailedPrecondition,
            &["producer 7", "fenced"],
        );
        check(
            BrokerError::OutOfOrderSequence {
                topic: "t".into(),
                partition: 1,
                producer_id: 7,
                epoch: 0,
                sequence: 9,
                expected: 4,
            },
            Code::Aborted,
            &["sequence 9", "4 was expected"],
        );
        check(
            BrokerError::TransactionsUnsupported {
                transactional_id: "tx".into(),
            },
            Code::Unimplemented,
            &["transactions are not supported"],
        );
    }

    #[test]
    fn validation_statuses_name_the_field() {
        let status = require_topic("topic", "").expect_err("empty topic");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("topic:"),
            "{}",
            status.message()
        );
        assert!(require_topic("topic", "orders").is_ok());
        let long = invalid_field("join.topics", &"é".repeat(10_000));
        assert!(
            long.message().len() <= MAX_MESSAGE_BYTES + 30,
            "{}",
            long.message()
        );
        assert!(
            long.message().ends_with(" more bytes)"),
            "{}",
            long.message()
        );
        assert_eq!(shutting_down().code(), Code::Unavailable);
    }
}
