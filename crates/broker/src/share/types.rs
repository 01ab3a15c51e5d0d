//! The values share group operations take and return.

use std::sync::Arc;

use sluice_storage::batch::RecordView;

use crate::share::ShareGroupSettings;

/// What a consumer asks for when it joins a share group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareJoin {
    /// The group; created by the first join.
    pub group: String,
    /// The topics to read; every partition of each is read. Each must exist.
    pub topics: Vec<String>,
    /// The most records the member holds unacknowledged, `1..=share.max_prefetch`.
    pub prefetch: u32,
    /// Settings applied only when this join creates the group; `None` = the broker's
    /// defaults.
    pub settings: Option<ShareGroupSettings>,
}

/// One record handed to a member under a lock.
#[derive(Debug, Clone)]
pub struct AcquiredRecord {
    /// The record's topic.
    pub topic: Arc<str>,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// How many times it has been delivered, this delivery included (1 on the first).
    pub delivery_count: u32,
    /// Key, value, headers and timestamp.
    pub record: RecordView,
}

/// What a member says about a record it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// Processed: never delivered again.
    Accept,
    /// Not processed: delivered again (to any member), its delivery count kept.
    Release,
    /// Unprocessable: never delivered again; dead-lettered if the group has a dead-letter
    /// topic.
    Reject,
}

/// An acknowledgement of one held record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The record's topic.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// What happens to it.
    pub kind: AckKind,
}

/// A share group in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupSummary {
    /// The group.
    pub name: String,
    /// The topics it reads, sorted.
    pub topics: Vec<String>,
    /// How many members it has.
    pub members: usize,
}

/// A share group's settings, members and the state of each of its share-partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupDescription {
    /// The group.
    pub name: String,
    /// Its settings.
    pub settings: ShareGroupSettings,
    /// Its members, by id.
    pub members: Vec<ShareMemberDescription>,
    /// Its share-partitions, by topic and partition.
    pub partitions: Vec<SharePartitionState>,
}

/// One member of a share group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMemberDescription {
    /// The member's id.
    pub id: String,
    /// Records it holds unacknowledged.
    pub held: u32,
    /// The most it may hold.
    pub prefetch: u32,
}

/// The state of one share-partition: a partition as one share group reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionState {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Every record below it is accepted, rejected or dead-lettered (or was before the
    /// group started reading).
    pub start_offset: u64,
    /// The partition's high watermark.
    pub end_offset: u64,
    /// Records available or waiting for redelivery: the queue's length.
    pub waiting: u64,
    /// Records acquired and not yet acknowledged.
    pub in_flight: u64,
    /// Records accepted since the group was created.
    pub accepted: u64,
    /// Records rejected or past the delivery limit since the group was created.
    pub dead_lettered: u64,
    /// The timestamp of the oldest waiting record, when it is known (the queue's delay).
    pub oldest_waiting_timestamp_ms: Option<i64>,
}

impl SharePartitionState {
    /// The queue's delay at `now_ms`: how long its oldest waiting record has waited, in ms
    /// (0 when nothing waits or its timestamp is in the future).
    pub fn delay_ms(&self, now_ms: i64) -> i64 {
        self.oldest_waiting_timestamp_ms
            .map_or(0, |oldest| now_ms.saturating_sub(oldest).max(0))
    }
}
