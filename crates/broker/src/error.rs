//! Errors of the broker.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_storage::batch::Compression;
use sluice_storage::{BatchError, StorageError};

use crate::groups::GroupKind;

/// Everything a broker operation can fail with.
///
/// The consumer group variants say which Kafka error code a Kafka front end answers them
/// with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// No topic of that name exists.
    #[error("topic {topic:?} does not exist")]
    TopicNotFound {
        /// The topic asked for.
        topic: String,
    },
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition}: it has partitions 0..{partitions}")]
    PartitionNotFound {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// A topic of that name already exists.
    #[error("topic {topic:?} already exists")]
    TopicExists {
        /// The topic.
        topic: String,
    },
    /// The name breaks the topic naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The partition count is outside `1..=max`.
    #[error("partition count {requested} is outside the allowed range 1..={max}")]
    InvalidPartitionCount {
        /// The count asked for.
        requested: u32,
        /// The largest count accepted (`max_partitions`).
        max: u32,
    },
    /// A config key is unknown or its value unparsable or out of range.
    #[error("invalid config {key} = {value:?}: {reason}")]
    InvalidConfig {
        /// The config key.
        key: String,
        /// The rejected value.
        value: String,
        /// Why, with the accepted values.
        reason: String,
    },
    /// A produce request carried no records.
    #[error("produce request carries no records")]
    EmptyBatch,
    /// One record is larger than the topic's `max.message.bytes`.
    #[error("record of {size} bytes exceeds max.message.bytes = {limit}")]
    RecordTooLarge {
        /// Key, value and header bytes of the record.
        size: usize,
        /// The topic's `max.message.bytes`.
        limit: usize,
    },
    /// A produce request carried more records than allowed.
    #[error("request of {count} records exceeds max_records_per_request = {limit}")]
    TooManyRecords {
        /// Records in the request.
        count: usize,
        /// The configured `max_records_per_request`.
        limit: usize,
    },
    /// The offset is outside `[log_start_offset, high_watermark]`.
    #[error(
        "offset {requested} is out of range: valid offsets are {log_start_offset}..={high_watermark}"
    )]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// First offset still in the log.
        log_start_offset: u64,
        /// First offset not yet readable.
        high_watermark: u64,
    },
    /// The records of a compressed batch decompress to more than the broker allows.
    #[error(
        "the {codec} compressed records of a batch decompress to more than \
         limits.max_decompressed_batch_bytes = {limit} bytes"
    )]
    DecompressedTooLarge {
        /// The batch's codec.
        codec: Compression,
        /// The broker's `limits.max_decompressed_batch_bytes`.
        limit: usize,
    },
    /// The broker is shutting down and takes no new requests.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// Stored data failed its checks (CRC or record structure); it is never served.
    #[error("corrupt data: {source}")]
    Corrupt {
        /// The storage error ([`StorageError::Corrupt`]) or the record decode error.
        #[source]
        source: CorruptSource,
    },
    /// The partition's log could not be opened at start, or its append task failed (a panic);
    /// the partition serves nothing until a restart after the cause is fixed. The other
    /// partitions are unaffected.
    #[error("partition {partition} of topic {topic:?} is unavailable: {reason}")]
    PartitionUnavailable {
        /// The partition's topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why: the open error, or the fault of its append task.
        reason: String,
    },
    /// The partition log failed an earlier write or fsync and refuses writes until restart.
    #[error("partition log failed: {0}")]
    LogFailed(#[source] StorageError),
    /// Any other storage failure.
    #[error("storage error: {0}")]
    Storage(#[source] StorageError),
    /// Reading or writing broker metadata failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A topic metadata file could not be parsed or does not match its directory.
    #[error("invalid topic metadata in {}: {reason}", path.display())]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The parse error, if parsing failed.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// Another broker process holds the data directory.
    #[error("data directory {} is in use by another broker", path.display())]
    DataDirLocked {
        /// The lock file.
        path: PathBuf,
    },
    /// The name breaks the consumer group naming rules (Kafka's `INVALID_GROUP_ID`).
    #[error("invalid group name {name:?}: {reason}")]
    InvalidGroupName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A join request asks for something the broker does not allow; from a client-assigned
    /// member, a session or rebalance timeout outside the limits (Kafka's
    /// `INVALID_SESSION_TIMEOUT`).
    #[error("invalid join request for group {group:?}: {reason}")]
    InvalidJoin {
        /// The group.
        group: String,
        /// What is wrong, with the accepted values.
        reason: String,
    },
    /// No group of that name exists: it has no members and no committed offsets (Kafka's
    /// `GROUP_ID_NOT_FOUND`; DescribeGroups shows it as `Dead`).
    #[error("group {group:?} does not exist")]
    GroupNotFound {
        /// The group asked for.
        group: String,
    },
    /// The operation needs a group without members (Kafka's `NON_EMPTY_GROUP`).
    #[error(
        "group {group:?} has {members} member(s); stop its consumers (and wait out the session timeout of static ones) first"
    )]
    GroupNotEmpty {
        /// The group.
        group: String,
        /// How many members it has.
        members: usize,
    },
    /// The member is not (or no longer) in the group: it left, expired or was replaced
    /// (Kafka's `UNKNOWN_MEMBER_ID`).
    #[error(
        "group {group:?} has no member {member_id:?}; it left, expired or was replaced: rejoin"
    )]
    UnknownMember {
        /// The group.
        group: String,
        /// The member id given.
        member_id: String,
    },
    /// A commit carries a generation in which the member did not own its partitions.
    #[error(
        "generation {generation} is stale in group {group:?}: this commit needs a generation in {valid_from}..={current}"
    )]
    StaleGeneration {
        /// The group.
        group: String,
        /// The generation the commit carried.
        generation: u64,
        /// The generation in which the member was given the partition.
        valid_from: u64,
        /// The group's current generation.
        current: u64,
    },
    /// A commit names a partition the member does not own.
    #[error(
        "member {member_id:?} of group {group:?} does not own partition {partition} of topic {topic:?}"
    )]
    NotPartitionOwner {
        /// The group.
        group: String,
        /// The committing member.
        member_id: String,
        /// The partition's topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A commit names an offset past the partition's high watermark.
    #[error(
        "cannot commit offset {offset} for partition {partition} of topic {topic:?}: it is past the high watermark {high_watermark}"
    )]
    CommitOutOfRange {
        /// The partition's topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset given.
        offset: u64,
        /// The partition's high watermark.
        high_watermark: u64,
    },
    /// The member was not heard from within its session timeout and lost its partitions.
    #[error(
        "member {member_id:?} of group {group:?} expired: nothing heard from it within its session timeout"
    )]
    SessionExpired {
        /// The group.
        group: String,
        /// The expired member.
        member_id: String,
    },
    /// A newer member with the same instance id took this member's place (Kafka's
    /// `FENCED_INSTANCE_ID`).
    #[error(
        "member {member_id:?} of group {group:?} was replaced by a newer member with instance id {instance_id:?}"
    )]
    MemberFenced {
        /// The group.
        group: String,
        /// The replaced member.
        member_id: String,
        /// The instance id both used.
        instance_id: String,
    },
    /// A client-assigned member's request carries another generation than the group's
    /// (Kafka's `ILLEGAL_GENERATION`): it must rejoin.
    #[error(
        "generation {generation} is not the current generation {current} of group {group:?}: rejoin"
    )]
    IllegalGeneration {
        /// The group.
        group: String,
        /// The generation the request carried.
        generation: i32,
        /// The group's current generation.
        current: i32,
    },
    /// A client-assigned group is rebalancing (Kafka's `REBALANCE_IN_PROGRESS`): the member
    /// must rejoin, or wait until the leader's assignment is in before it commits.
    #[error("group {group:?} is rebalancing: rejoin")]
    RebalanceInProgress {
        /// The group.
        group: String,
    },
    /// A new client-assigned member must join again with the id it was given (Kafka's
    /// `MEMBER_ID_REQUIRED`, KIP-394).
    #[error("group {group:?} requires a known member id: join again as {member_id:?}")]
    MemberIdRequired {
        /// The group.
        group: String,
        /// The id to join with.
        member_id: String,
    },
    /// A client-assigned member's protocols cannot go with the group's (Kafka's
    /// `INCONSISTENT_GROUP_PROTOCOL`).
    #[error("inconsistent group protocol in group {group:?}: {reason}")]
    InconsistentGroupProtocol {
        /// The group.
        group: String,
        /// What does not match.
        reason: String,
    },
    /// The group has members of the other kind: a group takes members of one kind at a time
    /// (Kafka's `INCONSISTENT_GROUP_PROTOCOL`).
    #[error(
        "group {group:?} has {kind} members; members of another kind may join once they have all left"
    )]
    GroupKindMismatch {
        /// The group.
        group: String,
        /// The kind of members it has.
        kind: GroupKind,
    },
    /// The group has `groups.max_members` members already (Kafka's
    /// `GROUP_MAX_SIZE_REACHED`).
    #[error("group {group:?} has the most members allowed, groups.max_members = {limit}")]
    GroupFull {
        /// The group.
        group: String,
        /// The configured `groups.max_members`.
        limit: usize,
    },
    /// A group's offsets file failed its checks.
    #[error("corrupt offsets file {}: {reason}; remove it to start the group afresh", path.display())]
    OffsetsCorrupt {
        /// The offsets file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A request field breaks a rule that no more specific variant covers.
    #[error("{field}: {reason}")]
    InvalidRequest {
        /// The request field.
        field: &'static str,
        /// What is wrong, with the accepted values.
        reason: String,
    },
    /// Every `limits.max_subscriptions` slot is taken.
    #[error(
        "too many open subscriptions: the server allows max_subscriptions = {limit} (subscriptions and group sessions of every protocol together)"
    )]
    TooManySubscriptions {
        /// The configured `max_subscriptions`.
        limit: usize,
    },
    /// The group session a command was sent to has ended.
    #[error("the group session has ended")]
    SessionClosed,
    /// Writing a group's committed offsets failed; the commits that write carried were not
    /// made.
    #[error("committing offsets of group {group:?} failed: {source}")]
    CommitFailed {
        /// The group.
        group: String,
        /// Why the write failed (shared by every commit of the write).
        #[source]
        source: Arc<BrokerError>,
    },
    /// A client-encoded record batch breaks the RecordBatch v2 format or what the log stores.
    #[error("invalid record batch: {field} {reason}")]
    InvalidBatch {
        /// The header field at fault (`magic`, `batch_length`, `crc`, `attributes`,
        /// `record_count`, `base_timestamp`, `max_timestamp`).
        field: &'static str,
        /// What is wrong with it: which batch, the value found and the value expected.
        reason: String,
    },
    /// A client-encoded record batch is larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes = {limit}")]
    BatchTooLarge {
        /// The batch's total size, header included.
        size: usize,
        /// The topic's `max.message.bytes`.
        limit: usize,
    },
    /// A produce request waited `produce_wait` for room in the broker's in-flight budget and
    /// was refused; none of it was appended. Retry later.
    #[error(
        "produce of {size} bytes waited {waited:?} (produce_wait) for room within \
         max_in_flight_bytes = {limit}: the broker is overloaded, retry later"
    )]
    Overloaded {
        /// The request's encoded bytes.
        size: usize,
        /// The broker's `max_in_flight_bytes`.
        limit: usize,
        /// How long it waited: `produce_wait`.
        waited: Duration,
    },
    /// An idempotent producer's batch carries an epoch older than the latest the partition
    /// has from that producer id: a newer instance of the producer took over, and this one
    /// is fenced. Nothing of the request was stored. Kafka: `INVALID_PRODUCER_EPOCH` (47).
    #[error(
        "producer {producer_id} is fenced on partition {partition} of topic {topic:?}: its          batch has epoch {epoch}, older than the epoch {current_epoch} the partition has seen"
    )]
    ProducerFenced {
        /// The partition's topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The producer's latest epoch on the partition.
        current_epoch: i16,
    },
    /// An idempotent producer's batch does not start at the sequence number after the last
    /// one the partition stored from it (or at 0, for a new epoch), and repeats none of its
    /// last five batches. Nothing of the request was stored. Kafka:
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    #[error(
        "out-of-order sequence from producer {producer_id} (epoch {epoch}) on partition          {partition} of topic {topic:?}: the batch starts at sequence {sequence}, but          {expected} was expected"
    )]
    OutOfOrderSequence {
        /// The partition's topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The batch's first sequence number.
        sequence: i32,
        /// The sequence number it had to start at.
        expected: i32,
    },
    /// A producer asked for a transactional id: transactions are not supported.
    #[error(
        "transactions are not supported (transactional id {transactional_id:?}): use an          idempotent producer without a transactional id"
    )]
    TransactionsUnsupported {
        /// The transactional id asked for.
        transactional_id: String,
    },
    /// The data directory's producer id allocation (`producer-ids`) is unreadable or used
    /// up, so no id can be handed out without risking one handed out before.
    #[error("producer ids in {}: {reason}", path.display())]
    ProducerIds {
        /// The allocation file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No share group of that name exists.
    #[error("share group {group:?} does not exist")]
    ShareGroupNotFound {
        /// The group asked for.
        group: String,
    },
    /// A queue deleted only when empty still holds messages.
    #[error("queue {queue:?} holds {messages} message(s) and was to be deleted only if empty")]
    QueueNotEmpty {
        /// The queue.
        queue: String,
        /// Messages waiting.
        messages: u64,
    },
    /// The operation needs a share group without members.
    #[error("share group {group:?} has {members} member(s); stop its consumers first")]
    ShareGroupHasMembers {
        /// The group.
        group: String,
        /// How many members it has.
        members: usize,
    },
    /// The share group has `share.max_members` members already.
    #[error("share group {group:?} has the most members allowed, share.max_members = {limit}")]
    ShareGroupFull {
        /// The group.
        group: String,
        /// The configured `share.max_members`.
        limit: usize,
    },
    /// An acknowledgement or renewal names a record the member does not hold: never
    /// acquired by it, already acknowledged, or its lock expired and it was released.
    #[error(
        "member {member_id:?} of share group {group:?} does not hold offset {offset} of partition {partition} of topic {topic:?}: {reason}"
    )]
    RecordNotHeld {
        /// The group.
        group: String,
        /// The member.
        member_id: String,
        /// The record's topic.
        topic: String,
        /// Its partition.
        partition: u32,
        /// Its offset.
        offset: u64,
        /// Why: not acquired by this member, acknowledged already, lock expired, or the
        /// group does not read the partition.
        reason: &'static str,
    },
    /// The share state journal failed its checks.
    #[error("corrupt share state file {}: {reason}", path.display())]
    ShareStateCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The share member has left the group (or the group was deleted, or the broker is
    /// shutting down).
    #[error("member {member_id:?} of share group {group:?} has left")]
    ShareMemberGone {
        /// The group.
        group: String,
        /// The member.
        member_id: String,
    },
    /// No exchange of that name exists (AMQP's 404 NOT_FOUND).
    #[error("no exchange {exchange:?}")]
    ExchangeNotFound {
        /// The exchange asked for.
        exchange: String,
    },
    /// No queue of that name is defined (AMQP's 404 NOT_FOUND).
    #[error("no queue {queue:?}")]
    QueueNotFound {
        /// The queue asked for.
        queue: String,
    },
    /// A redeclared exchange or queue differs from the one that exists (AMQP's 406
    /// PRECONDITION_FAILED "inequivalent arg").
    #[error(
        "inequivalent arg '{field}' for {entity} '{name}' in vhost '/': received {received} but current is {current}"
    )]
    Inequivalent {
        /// `exchange` or `queue`.
        entity: &'static str,
        /// Its name.
        name: String,
        /// The first field that differs: `type`, `durable`, `auto_delete`, `internal`,
        /// `exclusive`, or the name of an argument.
        field: String,
        /// The value in force, quoted (`none` for an absent argument).
        current: String,
        /// The value asked for, quoted (`none` for an absent argument).
        received: String,
    },
    /// An exchange deleted with `if_unused` has bindings (AMQP's 406 PRECONDITION_FAILED).
    #[error("exchange {exchange:?} is in use: it has {bindings} binding(s)")]
    ExchangeInUse {
        /// The exchange.
        exchange: String,
        /// How many bindings it has.
        bindings: usize,
    },
    /// The operation is never allowed on that exchange: the default exchange, a built-in
    /// one, or a new name with the reserved prefix `amq.` (AMQP's 403 ACCESS_REFUSED).
    #[error("access to exchange {exchange:?} refused: {reason}")]
    ExchangeAccessRefused {
        /// The exchange.
        exchange: String,
        /// Why.
        reason: &'static str,
    },
    /// A login failed: unknown user, wrong password or a malformed exchange (the message
    /// never tells which user names exist).
    #[error("authentication failed ({mechanism}): {reason}")]
    AuthenticationFailed {
        /// The mechanism tried.
        mechanism: String,
        /// Why, safe to show the client.
        reason: String,
    },
    /// The caller's principal may not do the operation on the resource.
    #[error("{principal} is not authorized to {operation} {resource_type} {resource:?}")]
    NotAuthorized {
        /// `User:NAME`.
        principal: String,
        /// What was asked.
        operation: crate::security::Operation,
        /// The kind of resource.
        resource_type: crate::security::ResourceType,
        /// Its name.
        resource: String,
    },
    /// A user of that name already exists.
    #[error("user {user:?} already exists")]
    UserExists {
        /// The name.
        user: String,
    },
    /// No user of that name exists.
    #[error("user {user:?} does not exist")]
    UserNotFound {
        /// The name.
        user: String,
    },
    /// A security state file (users, ACLs, quotas) failed its checks.
    #[error("invalid security state in {}: {reason}", path.display())]
    SecurityState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The parse error, if parsing failed.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The routing journal failed its checks.
    #[error("corrupt routing state file {}: {reason}", path.display())]
    RoutingStateCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing a routing change to its journal failed: the change may be in force until a
    /// restart but may not survive one, and every later routing change is refused until
    /// the broker restarts.
    #[error(
        "writing the routing state failed: {source}; routing changes are refused until the broker restarts"
    )]
    RoutingWriteFailed {
        /// Why the write failed.
        #[source]
        source: Arc<BrokerError>,
    },
    /// A produce request is larger than the broker's whole in-flight budget, so it could
    /// never be admitted.
    #[error("produce of {size} bytes exceeds max_in_flight_bytes = {limit}")]
    ProduceTooLarge {
        /// The request's encoded bytes.
        size: usize,
        /// The broker's `max_in_flight_bytes`.
        limit: usize,
    },
}

/// Where corrupt data was detected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptSource {
    /// The log found a bad batch on disk ([`StorageError::Corrupt`]).
    #[error(transparent)]
    Stored(StorageError),
    /// Fetched data passed its CRC checks but does not decode into records.
    #[error("in records fetched from offset {fetch_offset}: {source}")]
    Record {
        /// The offset the fetch started at.
        fetch_offset: u64,
        /// The decode error.
        #[source]
        source: BatchError,
    },
}

/// What kind of failure a [`BrokerError`] is, for front ends to map to their protocol's codes
/// (a gRPC status, a Kafka error code, an AMQP reply code) without matching on storage errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A topic, partition or group that does not exist.
    NotFound,
    /// A topic that already exists.
    AlreadyExists,
    /// A request field or setting that breaks a rule (the message names it).
    InvalidArgument,
    /// An offset outside the valid range.
    OutOfRange,
    /// A record, batch or request over a size or count limit (the message names the limit).
    TooLarge,
    /// A server-wide resource ran out (disk space, memory budget, subscriptions); the same
    /// request may succeed later.
    ResourceExhausted,
    /// The state does not allow the operation (for example a group that still has members).
    FailedPrecondition,
    /// The operation is not allowed: never on that object (a reserved or built-in name),
    /// or not to this caller (an ACL).
    PermissionDenied,
    /// The caller did not prove who it is (a failed login).
    Unauthenticated,
    /// A group member that is stale (unknown, expired, replaced or of an old generation), or
    /// an idempotent producer of an older epoch than the latest.
    Fenced,
    /// A group is rebalancing: the member must rejoin (or retry once the rebalance is over).
    RebalanceInProgress,
    /// The request conflicts with what the same client sent before, in a way a plain retry
    /// cannot fix (an idempotent producer's sequence gap): the client must resynchronise.
    Conflict,
    /// A feature the broker does not offer (transactions).
    Unsupported,
    /// The broker or the partition cannot serve now (shutting down, failed log); retry later.
    Unavailable,
    /// Stored data failed its checks and is not served.
    DataLoss,
    /// Anything else: a bug or an unexpected I/O failure.
    Internal,
}

impl BrokerError {
    /// The kind of failure, for front ends to map to their protocol's codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BrokerError::TopicNotFound { .. }
            | BrokerError::PartitionNotFound { .. }
            | BrokerError::GroupNotFound { .. }
            | BrokerError::ShareGroupNotFound { .. }
            | BrokerError::ExchangeNotFound { .. }
            | BrokerError::QueueNotFound { .. } => ErrorKind::NotFound,
            BrokerError::TopicExists { .. } => ErrorKind::AlreadyExists,
            BrokerError::InvalidTopicName { .. }
            | BrokerError::InvalidPartitionCount { .. }
            | BrokerError::InvalidConfig { .. }
            | BrokerError::EmptyBatch
            | BrokerError::InvalidGroupName { .. }
            | BrokerError::InvalidJoin { .. }
            | BrokerError::InvalidRequest { .. }
            | BrokerError::InvalidBatch { .. } => ErrorKind::InvalidArgument,
            BrokerError::OffsetOutOfRange { .. } | BrokerError::CommitOutOfRange { .. } => {
                ErrorKind::OutOfRange
            }
            BrokerError::RecordTooLarge { .. }
            | BrokerError::TooManyRecords { .. }
            | BrokerError::BatchTooLarge { .. }
            | BrokerError::DecompressedTooLarge { .. }
            | BrokerError::ProduceTooLarge { .. } => ErrorKind::TooLarge,
            BrokerError::GroupNotEmpty { .. }
            | BrokerError::NotPartitionOwner { .. }
            | BrokerError::MemberIdRequired { .. }
            | BrokerError::InconsistentGroupProtocol { .. }
            | BrokerError::GroupKindMismatch { .. }
            | BrokerError::ShareGroupHasMembers { .. }
            | BrokerError::QueueNotEmpty { .. }
            | BrokerError::RecordNotHeld { .. }
            | BrokerError::Inequivalent { .. }
            | BrokerError::ExchangeInUse { .. } => ErrorKind::FailedPrecondition,
            BrokerError::ExchangeAccessRefused { .. } | BrokerError::NotAuthorized { .. } => {
                ErrorKind::PermissionDenied
            }
            BrokerError::AuthenticationFailed { .. } => ErrorKind::Unauthenticated,
            BrokerError::UserExists { .. } => ErrorKind::AlreadyExists,
            BrokerError::UserNotFound { .. } => ErrorKind::NotFound,
            BrokerError::UnknownMember { .. }
            | BrokerError::StaleGeneration { .. }
            | BrokerError::IllegalGeneration { .. }
            | BrokerError::SessionExpired { .. }
            | BrokerError::MemberFenced { .. }
            | BrokerError::ProducerFenced { .. } => ErrorKind::Fenced,
            BrokerError::RebalanceInProgress { .. } => ErrorKind::RebalanceInProgress,
            BrokerError::OutOfOrderSequence { .. } => ErrorKind::Conflict,
            BrokerError::TransactionsUnsupported { .. } => ErrorKind::Unsupported,
            BrokerError::TooManySubscriptions { .. }
            | BrokerError::Overloaded { .. }
            | BrokerError::GroupFull { .. }
            | BrokerError::ShareGroupFull { .. } => ErrorKind::ResourceExhausted,
            BrokerError::ShuttingDown
            | BrokerError::SessionClosed
            | BrokerError::ShareMemberGone { .. }
            | BrokerError::LogFailed(_)
            | BrokerError::PartitionUnavailable { .. } => ErrorKind::Unavailable,
            BrokerError::Corrupt { .. }
            | BrokerError::OffsetsCorrupt { .. }
            | BrokerError::ShareStateCorrupt { .. }
            | BrokerError::RoutingStateCorrupt { .. } => ErrorKind::DataLoss,
            BrokerError::Storage(storage) => storage_kind(storage),
            BrokerError::Io { source, .. } => io_kind(source),
            BrokerError::CommitFailed { source, .. }
            | BrokerError::RoutingWriteFailed { source } => source.kind(),
            BrokerError::Metadata { .. }
            | BrokerError::SecurityState { .. }
            | BrokerError::DataDirLocked { .. }
            | BrokerError::ProducerIds { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BrokerError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid_request(field: &'static str, reason: impl Into<String>) -> Self {
        BrokerError::InvalidRequest {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_config(key: &str, value: &str, reason: impl Into<String>) -> Self {
        BrokerError::InvalidConfig {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The kind of a storage error the broker passes on as [`BrokerError::Storage`].
fn storage_kind(err: &StorageError) -> ErrorKind {
    match err {
        StorageError::BatchTooLarge { .. } => ErrorKind::TooLarge,
        StorageError::OffsetOutOfRange { .. } => ErrorKind::OutOfRange,
        StorageError::InvalidConfig(_) | StorageError::InvalidBatch(_) => {
            ErrorKind::InvalidArgument
        }
        StorageError::Corrupt { .. } => ErrorKind::DataLoss,
        StorageError::Failed { .. } | StorageError::Closed { .. } => ErrorKind::Unavailable,
        StorageError::Io { source, .. } => io_kind(source),
        _ => ErrorKind::Internal,
    }
}

/// The kind of a failed file operation: resource exhaustion when the disk (or the quota) is
/// full, since the request may succeed once space is freed; internal otherwise.
fn io_kind(err: &io::Error) -> ErrorKind {
    match err.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::ResourceExhausted,
        _ => ErrorKind::Internal,
    }
}

impl From<StorageError> for BrokerError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Corrupt { .. } => BrokerError::Corrupt {
                source: CorruptSource::Stored(err),
            },
            StorageError::Failed { .. } => BrokerError::LogFailed(err),
            StorageError::OffsetOutOfRange {
                requested,
                log_start_offset,
                high_watermark,
            } => BrokerError::OffsetOutOfRange {
                requested,
                log_start_offset,
                high_watermark,
            },
            other => BrokerError::Storage(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `err`'s kind and that its message names every needle.
    fn check(err: BrokerError, kind: ErrorKind, needles: &[&str]) {
        let text = err.to_string();
        assert_eq!(err.kind(), kind, "{text}");
        for needle in needles {
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    }

    #[test]
    fn storage_failures_map_to_kinds() {
        let path = PathBuf::from("topic/0");
        check(
            BrokerError::Corrupt {
                source: CorruptSource::Stored(StorageError::Corrupt {
                    path: path.clone(),
                    position: 4096,
                    reason: "CRC mismatch".into(),
                }),
            },
            ErrorKind::DataLoss,
            &["4096"],
        );
        check(
            BrokerError::LogFailed(StorageError::Failed {
                path: path.clone(),
                reason: "fsync failed".into(),
            }),
            ErrorKind::Unavailable,
            &["fsync failed"],
        );
        check(
            BrokerError::Storage(StorageError::BatchTooLarge { size: 10, limit: 5 }),
            ErrorKind::TooLarge,
            &["10", "5"],
        );
        check(
            BrokerError::Storage(StorageError::Closed { path: path.clone() }),
            ErrorKind::Unavailable,
            &[],
        );
        check(
            BrokerError::Storage(StorageError::Io {
                op: "read",
                path,
                source: std::io::Error::other("disk on fire"),
            }),
            ErrorKind::Internal,
            &["disk on fire"],
        );
    }

    #[test]
    fn a_full_disk_is_resource_exhausted() {
        let enospc = || std::io::Error::from_raw_os_error(28);
        check(
            BrokerError::Storage(StorageError::Io {
                op: "append to segment",
                path: PathBuf::from("topic/0/00000000000000000000.log"),
                source: enospc(),
            }),
            ErrorKind::ResourceExhausted,
            &["append to segment", "00000000000000000000.log"],
        );
        let quota = std::io::Error::from_raw_os_error(122); // EDQUOT
        check(
            BrokerError::Storage(StorageError::Io {
                op: "create segment",
                path: PathBuf::from("topic/0"),
                source: quota,
            }),
            ErrorKind::ResourceExhausted,
            &["create segment"],
        );
        check(
            BrokerError::CommitFailed {
                group: "g".into(),
                source: std::sync::Arc::new(BrokerError::Io {
                    op: "write",
                    path: PathBuf::from("groups/g.offsets.tmp"),
                    source: enospc(),
                }),
            },
            ErrorKind::ResourceExhausted,
            &["g.offsets.tmp"],
        );
    }

    #[test]
    fn client_assigned_group_errors_map_to_kinds() {
        let group = || "g".to_owned();
        check(
            BrokerError::IllegalGeneration {
                group: group(),
                generation: 3,
                current: 4,
            },
            ErrorKind::Fenced,
            &["generation 3", "generation 4", "rejoin"],
        );
        check(
            BrokerError::RebalanceInProgress { group: group() },
            ErrorKind::RebalanceInProgress,
            &["\"g\"", "rejoin"],
        );
        check(
            BrokerError::MemberIdRequired {
                group: group(),
                member_id: "client-1".into(),
            },
            ErrorKind::FailedPrecondition,
            &["\"client-1\""],
        );
        check(
            BrokerError::InconsistentGroupProtocol {
                group: group(),
                reason: "protocol type \"connect\" differs".into(),
            },
            ErrorKind::FailedPrecondition,
            &["connect"],
        );
        check(
            BrokerError::GroupKindMismatch {
                group: group(),
                kind: GroupKind::ServerAssigned,
            },
            ErrorKind::FailedPrecondition,
            &["server-assigned members"],
        );
        check(
            BrokerError::GroupFull {
                group: group(),
                limit: 1000,
            },
            ErrorKind::ResourceExhausted,
            &["groups.max_members = 1000"],
        );
    }

    #[test]
    fn idempotent_producer_errors_map_to_kinds() {
        check(
            BrokerError::ProducerFenced {
                topic: "t".into(),
                partition: 2,
                producer_id: 7,
                epoch: 1,
                current_epoch: 3,
            },
            ErrorKind::Fenced,
            &["producer 7", "partition 2", "\"t\"", "epoch 1", "epoch 3"],
        );
        check(
            BrokerError::OutOfOrderSequence {
                topic: "t".into(),
                partition: 0,
                producer_id: 7,
                epoch: 0,
                sequence: 12,
                expected: 5,
            },
            ErrorKind::Conflict,
            &["producer 7", "sequence 12", "5 was expected"],
        );
        check(
            BrokerError::TransactionsUnsupported {
                transactional_id: "tx-1".into(),
            },
            ErrorKind::Unsupported,
            &["transactions are not supported", "tx-1"],
        );
        check(
            BrokerError::ProducerIds {
                path: PathBuf::from("data/producer-ids"),
                reason: "garbled".into(),
            },
            ErrorKind::Internal,
            &["data/producer-ids", "garbled"],
        );
    }

    #[test]
    fn storage_errors_map_to_their_broker_variants() {
        let path = PathBuf::from("p");
        let corrupt = StorageError::Corrupt {
            path: path.clone(),
            position: 7,
            reason: "CRC mismatch".into(),
        };
        assert!(matches!(
            BrokerError::from(corrupt),
            BrokerError::Corrupt {
                source: CorruptSource::Stored(StorageError::Corrupt { position: 7, .. })
            }
        ));
        let failed = StorageError::Failed {
            path: path.clone(),
            reason: "disk on fire".into(),
        };
        let failed = BrokerError::from(failed);
        assert!(matches!(
            failed,
            BrokerError::LogFailed(StorageError::Failed { .. })
        ));
        assert!(failed.to_string().contains("disk on fire"));
        let range = StorageError::OffsetOutOfRange {
            requested: 9,
            log_start_offset: 2,
            high_watermark: 5,
        };
        assert!(matches!(
            BrokerError::from(range),
            BrokerError::OffsetOutOfRange {
                requested: 9,
                log_start_offset: 2,
                high_watermark: 5
            }
        ));
        let io = StorageError::Io {
            op: "read",
            path,
            source: io::Error::other("boom"),
        };
        let io = BrokerError::from(io);
        assert!(matches!(io, BrokerError::Storage(StorageError::Io { .. })));
        // The chain keeps the underlying error.
        let source = std::error::Error::source(&io).and_then(std::error::Error::source);
        assert_eq!(source.map(ToString::to_string), Some("boom".to_owned()));
    }
}
