//! The one mapping from broker errors to Kafka error codes.

use kafka_protocol::ResponseError;
use sluice_broker::security::ResourceType;
use sluice_broker::{BrokerError, ErrorKind};

/// The Kafka error code a broker error is answered with, by its [`ErrorKind`], refined where
/// Kafka has a more precise code.
pub(crate) fn code(err: &BrokerError) -> ResponseError {
    match err {
        BrokerError::InvalidTopicName { .. } => return ResponseError::InvalidTopicException,
        BrokerError::InvalidPartitionCount { .. } => return ResponseError::InvalidPartitions,
        BrokerError::InvalidConfig { .. } => return ResponseError::InvalidConfig,
        BrokerError::RecordTooLarge { .. } | BrokerError::BatchTooLarge { .. } => {
            return ResponseError::MessageTooLarge;
        }
        BrokerError::TooManyRecords { .. } | BrokerError::ProduceTooLarge { .. } => {
            return ResponseError::RecordListTooLarge;
        }
        BrokerError::InvalidBatch { .. } | BrokerError::EmptyBatch => {
            return ResponseError::CorruptMessage;
        }
        BrokerError::InvalidGroupName { .. } => return ResponseError::InvalidGroupId,
        BrokerError::GroupNotEmpty { .. } => return ResponseError::NonEmptyGroup,
        BrokerError::GroupNotFound { .. } => return ResponseError::GroupIdNotFound,
        BrokerError::UnknownMember { .. } | BrokerError::SessionExpired { .. } => {
            return ResponseError::UnknownMemberId;
        }
        BrokerError::IllegalGeneration { .. } | BrokerError::StaleGeneration { .. } => {
            return ResponseError::IllegalGeneration;
        }
        BrokerError::RebalanceInProgress { .. } => return ResponseError::RebalanceInProgress,
        BrokerError::MemberIdRequired { .. } => return ResponseError::MemberIdRequired,
        BrokerError::MemberFenced { .. } => return ResponseError::FencedInstanceId,
        BrokerError::InconsistentGroupProtocol { .. } | BrokerError::GroupKindMismatch { .. } => {
            return ResponseError::InconsistentGroupProtocol;
        }
        BrokerError::GroupFull { .. } => return ResponseError::GroupMaxSizeReached,
        BrokerError::InvalidJoin { .. } => return ResponseError::InvalidSessionTimeout,
        BrokerError::ProducerFenced { .. } => return ResponseError::InvalidProducerEpoch,
        BrokerError::OutOfOrderSequence { .. } => return ResponseError::OutOfOrderSequenceNumber,
        BrokerError::ShareGroupNotFound { .. } => return ResponseError::GroupIdNotFound,
        BrokerError::ShareGroupHasMembers { .. } => return ResponseError::NonEmptyGroup,
        BrokerError::ShareGroupFull { .. } => return ResponseError::GroupMaxSizeReached,
        BrokerError::RecordNotHeld { .. } => return ResponseError::InvalidRecordState,
        BrokerError::ShareMemberGone { .. } => return ResponseError::UnknownMemberId,
        BrokerError::TransactionsUnsupported { .. } => {
            return ResponseError::TransactionalIdAuthorizationFailed;
        }
        BrokerError::NotAuthorized { resource_type, .. } => {
            return match resource_type {
                ResourceType::Topic => ResponseError::TopicAuthorizationFailed,
                ResourceType::Group => ResponseError::GroupAuthorizationFailed,
                ResourceType::Cluster => ResponseError::ClusterAuthorizationFailed,
                ResourceType::TransactionalId => ResponseError::TransactionalIdAuthorizationFailed,
            };
        }
        BrokerError::AuthenticationFailed { .. } => {
            return ResponseError::SaslAuthenticationFailed;
        }
        _ => {}
    }
    match err.kind() {
        ErrorKind::NotFound => ResponseError::UnknownTopicOrPartition,
        ErrorKind::AlreadyExists => ResponseError::TopicAlreadyExists,
        ErrorKind::InvalidArgument => ResponseError::InvalidRequest,
        ErrorKind::OutOfRange => ResponseError::OffsetOutOfRange,
        ErrorKind::TooLarge => ResponseError::MessageTooLarge,
        ErrorKind::ResourceExhausted => ResponseError::ThrottlingQuotaExceeded,
        ErrorKind::FailedPrecondition => ResponseError::InvalidRequest,
        ErrorKind::Fenced => ResponseError::UnknownMemberId,
        ErrorKind::RebalanceInProgress => ResponseError::RebalanceInProgress,
        ErrorKind::Unavailable | ErrorKind::DataLoss => ResponseError::KafkaStorageError,
        _ => ResponseError::UnknownServerError,
    }
}

/// A broker error as a Kafka error code and message, logged once at the level it deserves.
pub(crate) fn answer(err: &BrokerError) -> (i16, String) {
    let code = code(err);
    match err.kind() {
        ErrorKind::Internal | ErrorKind::DataLoss => {
            tracing::error!(
                error = err as &dyn std::error::Error,
                "Kafka request failed"
            );
        }
        ErrorKind::Unavailable if !matches!(err, BrokerError::ShuttingDown) => {
            tracing::warn!(error = %err, "Kafka request failed");
        }
        _ => tracing::debug!(error = %err, "Kafka request refused"),
    }
    (code.code(), err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_map_to_the_codes_kafka_clients_expect() {
        let missing = BrokerError::TopicNotFound {
            topic: "t".to_owned(),
        };
        assert_eq!(code(&missing), ResponseError::UnknownTopicOrPartition);
        let exists = BrokerError::TopicExists {
            topic: "t".to_owned(),
        };
        assert_eq!(code(&exists), ResponseError::TopicAlreadyExists);
        let large = BrokerError::BatchTooLarge { size: 2, limit: 1 };
        assert_eq!(code(&large), ResponseError::MessageTooLarge);
        assert_eq!(
            code(&BrokerError::ShuttingDown),
            ResponseError::KafkaStorageError
        );
        let (code, message) = answer(&missing);
        assert_eq!(code, 3);
        assert!(message.contains('t'), "{message}");
    }
}
