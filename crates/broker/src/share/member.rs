//! The handle of one share group member.

use std::sync::Arc;
use std::time::Duration;

use crate::share::{Ack, AcquiredRecord};
use crate::{Broker, BrokerError};

/// A live member of a share group, from [`Broker::share_join`].
///
/// Dropping it (or [`ShareMember::leave`]) releases every record it still holds, their
/// delivery counts kept, exactly like a lock expiry.
#[derive(Debug)]
pub struct ShareMember {
    broker: Arc<Broker>,
    group: String,
    id: String,
}

impl ShareMember {
    /// The member's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Waits up to `max_wait` for at least one available record, then acquires up to
    /// `max_records` (bounded by the prefetch minus the records held). Empty on timeout.
    pub async fn acquire(
        &self,
        max_records: u32,
        max_wait: Duration,
    ) -> Result<Vec<AcquiredRecord>, BrokerError> {
        let _ = (&self.broker, max_records, max_wait);
        unimplemented!()
    }

    /// Applies acknowledgements of records this member holds and returns once they are
    /// durable. Each ack has its own outcome: `Ok`, or an error naming why it was not
    /// applied (not held by this member, lock expired, unknown partition).
    pub async fn acknowledge(
        &self,
        acks: Vec<Ack>,
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let _ = acks;
        unimplemented!()
    }

    /// Extends the locks of these held records (topic, partition, offset) by the group's
    /// lock duration.
    pub fn renew(&self, records: &[(String, u32, u64)]) -> Vec<Result<(), BrokerError>> {
        let _ = records;
        unimplemented!()
    }

    /// Leaves the group, releasing every record still held.
    pub async fn leave(self) {
        unimplemented!()
    }
}
