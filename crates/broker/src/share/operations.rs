//! The broker's share group operations.

use std::sync::Arc;

use crate::share::{
    ShareGroupDescription, ShareGroupSettings, ShareGroupSummary, ShareJoin, ShareMember,
};
use crate::{Broker, BrokerError};

impl Broker {
    /// Joins (creating if needed) a share group reading every partition of `join.topics`.
    pub async fn share_join(self: &Arc<Self>, join: ShareJoin) -> Result<ShareMember, BrokerError> {
        let _ = join;
        unimplemented!()
    }

    /// Every share group, by name.
    pub fn list_share_groups(&self) -> Vec<ShareGroupSummary> {
        unimplemented!()
    }

    /// A share group's settings, members and share-partitions; O(partitions + members).
    pub fn describe_share_group(&self, group: &str) -> Result<ShareGroupDescription, BrokerError> {
        let _ = group;
        unimplemented!()
    }

    /// Deletes a share group and its state; only while it has no members.
    pub async fn delete_share_group(&self, group: &str) -> Result<(), BrokerError> {
        let _ = group;
        unimplemented!()
    }

    /// Replaces a share group's settings; applies to deliveries from now on.
    pub async fn alter_share_group(
        &self,
        group: &str,
        settings: ShareGroupSettings,
    ) -> Result<(), BrokerError> {
        let _ = (group, settings);
        unimplemented!()
    }
}
