//! Topic, consumer group and share group administration, and offset lookups.

use std::collections::BTreeMap;

use crate::credentials::Transport;
use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::share_groups_client::ShareGroupsClient;
use sluice_proto::v1::{
    self as pb, CommittedOffset, DescribeGroupResponse, DescribeShareGroupResponse, GroupSummary,
    PartitionOffset, ShareGroupSettings, ShareGroupSummary, TopicDescription, TopicSummary,
};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::record::Position;

/// A topic to create: name, partition count and config overrides.
///
/// ```
/// use sluice_client::NewTopic;
///
/// let topic = NewTopic::new("orders", 3).config("retention.ms", "86400000");
/// assert_eq!(topic.partitions, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name: 1 to 249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
    pub name: String,
    /// Number of partitions, fixed for the life of the topic.
    pub partitions: u32,
    /// Config overrides with Kafka's key names (`retention.ms`, `segment.bytes`, ...).
    pub config: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the server's default config.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            config: BTreeMap::new(),
        }
    }

    /// Overrides one config entry.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }
}

/// Changes to a topic's config overrides, for [`Admin::alter_topic_config`].
///
/// ```
/// use sluice_client::TopicConfigChanges;
///
/// let changes = TopicConfigChanges::new()
///     .set("retention.ms", "3600000")
///     .delete("segment.bytes");
/// assert_eq!(changes.delete, ["segment.bytes"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigChanges {
    /// Keys to override (Kafka's key names) and their new values.
    pub set: BTreeMap<String, String>,
    /// Keys whose override to drop: they follow the server's topic defaults again.
    pub delete: Vec<String>,
    /// Only check the changes; nothing is written or applied.
    pub validate_only: bool,
}

impl TopicConfigChanges {
    /// No changes yet.
    pub fn new() -> Self {
        TopicConfigChanges::default()
    }

    /// Overrides `key` with `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.insert(key.into(), value.into());
        self
    }

    /// Drops the override of `key`.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.delete.push(key.into());
        self
    }

    /// Only checks the changes.
    pub fn validate_only(mut self) -> Self {
        self.validate_only = true;
        self
    }
}

/// Creates, deletes, lists and describes topics, consumer groups and share groups, resets
/// group offsets, changes share group settings and looks up offsets. Made by
/// [`Client::admin`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    admin: AdminClient<Transport>,
    log: LogClient<Transport>,
    groups: GroupsClient<Transport>,
    share: ShareGroupsClient<Transport>,
}

impl Admin {
    /// Admin calls over `client`'s connection.
    pub(crate) fn new(client: &Client) -> Self {
        Admin {
            admin: client.admin_service(),
            log: client.log_service(),
            groups: client.groups_service(),
            share: client.share_groups_service(),
        }
    }

    /// Creates a topic and returns its description. Fails with code `ALREADY_EXISTS` if it
    /// exists, `INVALID_ARGUMENT` for a bad name, partition count or config entry.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicDescription> {
        let response = self
            .admin
            .clone()
            .create_topic(pb::CreateTopicRequest {
                name: topic.name,
                partitions: topic.partitions,
                config: topic.config,
            })
            .await?
            .into_inner();
        described(response.topic)
    }

    /// Deletes a topic and all of its data. Fails with code `NOT_FOUND` if it does not exist.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.admin
            .clone()
            .delete_topic(pb::DeleteTopicRequest { name: name.into() })
            .await?;
        Ok(())
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let response = self
            .admin
            .clone()
            .list_topics(pb::ListTopicsRequest {})
            .await?
            .into_inner();
        Ok(response.topics)
    }

    /// A topic's partitions (offsets and sizes) and effective config. Fails with code
    /// `NOT_FOUND` if it does not exist.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let response = self
            .admin
            .clone()
            .describe_topic(pb::DescribeTopicRequest { name: name.into() })
            .await?
            .into_inner();
        described(response.topic)
    }

    /// Changes a topic's config overrides while it serves and returns its description
    /// afterwards (with [`TopicConfigChanges::validate_only`], as it would be). Every other
    /// override stays. Fails with code `NOT_FOUND` if the topic does not exist,
    /// `INVALID_ARGUMENT` for an unknown key, a bad value or a key both set and deleted.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        changes: TopicConfigChanges,
    ) -> Result<TopicDescription> {
        let response = self
            .admin
            .clone()
            .alter_topic_config(pb::AlterTopicConfigRequest {
                name: name.into(),
                set: changes.set,
                delete: changes.delete,
                validate_only: changes.validate_only,
            })
            .await?
            .into_inner();
        described(response.topic)
    }

    /// Looks up `position` in `partitions` of `topic` (every partition when empty), in the
    /// order asked (partition order for all). [`Position::Offset`] is refused by the server;
    /// a timestamp lookup leaves the offset unset in partitions without a record that recent.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[u32],
        position: Position,
    ) -> Result<Vec<PartitionOffset>> {
        let response = self
            .log
            .clone()
            .list_offsets(pb::ListOffsetsRequest {
                topic: topic.into(),
                partitions: partitions.to_vec(),
                spec: Some(position.to_wire()),
            })
            .await?
            .into_inner();
        Ok(response.offsets)
    }
    /// Every consumer group that has members or committed offsets, sorted by name.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let response = self
            .groups
            .clone()
            .list_groups(pb::ListGroupsRequest {})
            .await?
            .into_inner();
        Ok(response.groups)
    }

    /// A group's state, members with their partitions, and per partition the committed
    /// offset, high watermark and lag. Fails with code `NOT_FOUND` for an unknown group.
    pub async fn describe_group(&self, group: &str) -> Result<DescribeGroupResponse> {
        let response = self
            .groups
            .clone()
            .describe_group(pb::DescribeGroupRequest {
                group: group.into(),
            })
            .await?
            .into_inner();
        Ok(response)
    }

    /// The group's committed offsets for every partition of `topic` (unset where none is
    /// committed), or every offset it committed when `topic` is `None`.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<Vec<CommittedOffset>> {
        let response = self
            .groups
            .clone()
            .fetch_offsets(pb::FetchOffsetsRequest {
                group: group.into(),
                topic: topic.unwrap_or_default().into(),
            })
            .await?
            .into_inner();
        Ok(response.offsets)
    }

    /// Sets the group's committed offsets of `partitions` of `topic` (every partition when
    /// empty) to `to`, and returns the offsets now committed. A timestamp with no record
    /// that recent gives the high watermark. Fails with code `FAILED_PRECONDITION` while
    /// the group has members.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
        to: Position,
    ) -> Result<Vec<CommittedOffset>> {
        let response = self
            .groups
            .clone()
            .reset_offsets(pb::ResetOffsetsRequest {
                group: group.into(),
                topic: topic.into(),
                partitions: partitions.to_vec(),
                to: Some(to.to_wire()),
            })
            .await?
            .into_inner();
        Ok(response.offsets)
    }

    /// Deletes a group and its committed offsets. Fails with code `FAILED_PRECONDITION`
    /// while the group has members, `NOT_FOUND` for an unknown group.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        self.groups
            .clone()
            .delete_group(pb::DeleteGroupRequest {
                group: group.into(),
            })
            .await?;
        Ok(())
    }

    /// Every share group, sorted by name.
    pub async fn list_share_groups(&self) -> Result<Vec<ShareGroupSummary>> {
        let response = self
            .share
            .clone()
            .list_share_groups(pb::ListShareGroupsRequest {})
            .await?
            .into_inner();
        Ok(response.groups)
    }

    /// A share group's settings, members and, per partition, records waiting, in flight,
    /// accepted and dead-lettered and the delay of the oldest waiting record. Fails with
    /// code `NOT_FOUND` for an unknown group.
    pub async fn describe_share_group(&self, group: &str) -> Result<DescribeShareGroupResponse> {
        let response = self
            .share
            .clone()
            .describe_share_group(pb::DescribeShareGroupRequest {
                group: group.into(),
            })
            .await?
            .into_inner();
        Ok(response)
    }

    /// Deletes a share group and its acknowledgement state. Fails with code
    /// `FAILED_PRECONDITION` while the group has members, `NOT_FOUND` for an unknown group.
    pub async fn delete_share_group(&self, group: &str) -> Result<()> {
        self.share
            .clone()
            .delete_share_group(pb::DeleteShareGroupRequest {
                group: group.into(),
            })
            .await?;
        Ok(())
    }

    /// Changes the settings `changes` sets (the others keep their values) and returns the
    /// settings now in force. Fails with code `NOT_FOUND` for an unknown group,
    /// `INVALID_ARGUMENT` for a value out of the server's limits.
    ///
    /// ```no_run
    /// # async fn example(admin: sluice_client::Admin) -> sluice_client::Result<()> {
    /// use sluice_client::ShareGroupSettings;
    ///
    /// let changes = ShareGroupSettings {
    ///     delivery_attempt_limit: Some(3),
    ///     dead_letter_topic: Some("orders.dlq".into()),
    ///     ..ShareGroupSettings::default()
    /// };
    /// let now = admin.alter_share_group("workers", changes).await?;
    /// assert_eq!(now.delivery_attempt_limit, Some(3));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn alter_share_group(
        &self,
        group: &str,
        changes: ShareGroupSettings,
    ) -> Result<ShareGroupSettings> {
        let response = self
            .share
            .clone()
            .alter_share_group(pb::AlterShareGroupRequest {
                group: group.into(),
                settings: Some(changes),
            })
            .await?
            .into_inner();
        response
            .settings
            .ok_or_else(|| Error::Protocol("share group settings missing".into()))
    }
}

/// The description a create or describe call answered with.
fn described(topic: Option<TopicDescription>) -> Result<TopicDescription> {
    topic.ok_or_else(|| Error::Protocol("topic description missing".into()))
}
