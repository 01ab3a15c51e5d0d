//! What a connection's principal may do, and how much it may move: the checks every handler
//! makes through its [`Context`], with the broker's ACLs and quotas.
//!
//! The operations asked for are Kafka's own for each API: Write on a topic to produce, Read
//! to fetch, commit offsets and join groups (on the group and its topics), Describe to see
//! a topic in Metadata or a group in lists, Create on the cluster or the topic, Delete,
//! Alter to change partitions, DescribeConfigs and AlterConfigs, Alter on the cluster to
//! manage ACLs. A denied partition or group gets TOPIC_AUTHORIZATION_FAILED or
//! GROUP_AUTHORIZATION_FAILED; Metadata and lists leave out what may not be described.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_broker::BrokerError;
use sluice_broker::security::{Operation, QuotaKind, Resource};

use super::Context;
use crate::errors;

impl Context {
    /// Fails (logged and counted by the broker) unless the connection's principal may do
    /// `operation` on `resource`.
    pub(crate) fn authorize(
        &self,
        operation: Operation,
        resource: &Resource<'_>,
    ) -> Result<(), BrokerError> {
        self.broker
            .security()
            .authorize(&self.caller, operation, resource)
    }

    /// Whether the principal may do `operation` on `resource`, without logging a denial
    /// (for leaving out of lists what the principal may not see).
    pub(crate) fn permits(&self, operation: Operation, resource: &Resource<'_>) -> bool {
        self.broker
            .security()
            .permits(&self.caller, operation, resource)
    }

    /// Fails unless the principal may do `operation` on topic `name`.
    pub(crate) fn authorize_topic(
        &self,
        operation: Operation,
        name: &str,
    ) -> Result<(), BrokerError> {
        self.authorize(operation, &Resource::topic(name))
    }

    /// Fails unless the principal may create topic `name`: Create on the cluster or on the
    /// topic.
    pub(crate) fn authorize_create(&self, name: &str) -> Result<(), BrokerError> {
        self.broker
            .security()
            .authorize_create_topic(&self.caller, name)
    }

    /// Fails unless the principal may do `operation` on group `name`.
    pub(crate) fn authorize_group(
        &self,
        operation: Operation,
        name: &str,
    ) -> Result<(), BrokerError> {
        self.authorize(operation, &Resource::group(name))
    }

    /// The error code a denied `operation` on topic `name` is answered with (logged and
    /// counted), or `None` when it is allowed.
    pub(crate) fn topic_refusal(&self, operation: Operation, name: &str) -> Option<i16> {
        let denied = self.authorize_topic(operation, name).err()?;
        Some(errors::answer(&denied).0)
    }

    /// The error code a denied `operation` on group `name` is answered with (logged and
    /// counted), or `None` when it is allowed.
    pub(crate) fn group_refusal(&self, operation: Operation, name: &str) -> Option<i16> {
        let denied = self.authorize_group(operation, name).err()?;
        Some(errors::answer(&denied).0)
    }

    /// Counts `bytes` of `kind` traffic against the principal's quota. Gives the answer's
    /// `throttle_time_ms`, and (as Kafka does since KIP-219) mutes the connection for that
    /// long: its next request is read only once the throttle has passed.
    pub(crate) fn throttle(&self, kind: QuotaKind, bytes: usize) -> i32 {
        let security = self.broker.security();
        if !security.quotas_in_force() {
            return 0;
        }
        let delay = security.throttle(&self.caller, kind, u64::try_from(bytes).unwrap_or(u64::MAX));
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.mute.fetch_max(ms, Ordering::Relaxed);
        i32::try_from(ms).unwrap_or(i32::MAX)
    }

    /// How long the connection must wait before it reads its next request (the largest
    /// throttle since it last asked), and forgets it.
    pub(crate) fn take_mute(&self) -> Duration {
        Duration::from_millis(self.mute.swap(0, Ordering::Relaxed))
    }
}
