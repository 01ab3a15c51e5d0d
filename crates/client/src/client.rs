//! The connection to a server, shared by admin, producers and consumers.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::share_groups_client::ShareGroupsClient;
use tonic::transport::{Channel, Endpoint};

use crate::admin::Admin;
use crate::consumer::ConsumerBuilder;
use crate::error::{Error, Result};
use crate::group_consumer::GroupConsumerBuilder;
use crate::producer::ProducerBuilder;
use crate::share_consumer::ShareConsumerBuilder;

/// Largest message the client accepts from the server (fetches may be large).
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// HTTP/2 flow-control window per stream: large, so one stream can carry many batches.
const STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 flow-control window of the connection.
const CONNECTION_WINDOW: u32 = 32 << 20;
/// How long establishing the connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of HTTP/2 pings that detect a dead connection.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// A connection to a Sluice server.
///
/// Cloning is cheap: every clone, and every [`Admin`], producer and consumer made from it,
/// shares one HTTP/2 connection, which is re-established on demand after it breaks (for
/// example when the server restarts).
///
/// ```no_run
/// # async fn example() -> sluice_client::Result<()> {
/// let client = sluice_client::Client::connect("http://127.0.0.1:50051").await?;
/// for topic in client.admin().list_topics().await? {
///     println!("{} ({} partitions)", topic.name, topic.partitions);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    url: Arc<str>,
}

impl Client {
    /// Connects to the server at `url` (`http://host:port`).
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        let url = url.into();
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|source| Error::InvalidUrl {
                url: url.clone(),
                source: Arc::new(source),
            })?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .http2_keep_alive_interval(KEEP_ALIVE);
        let channel = endpoint.connect().await.map_err(|source| Error::Connect {
            url: url.clone(),
            source: Arc::new(source),
        })?;
        Ok(Client {
            channel,
            url: url.into(),
        })
    }

    /// The URL this client connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Topic administration.
    pub fn admin(&self) -> Admin {
        Admin::new(self)
    }

    /// A producer builder; [`ProducerBuilder::build`] starts the producer.
    pub fn producer(&self) -> ProducerBuilder {
        ProducerBuilder::new(self.clone())
    }

    /// A consumer builder for `topic`; [`ConsumerBuilder::build`] makes the consumer.
    pub fn consumer(&self, topic: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder::new(self.clone(), topic.into())
    }

    /// A builder of a member of consumer group `group`; [`GroupConsumerBuilder::build`]
    /// makes the consumer.
    pub fn group_consumer(&self, group: impl Into<String>) -> GroupConsumerBuilder {
        GroupConsumerBuilder::new(self.clone(), group.into())
    }

    /// A builder of a member of share group `group`; [`ShareConsumerBuilder::build`] makes
    /// the consumer.
    pub fn share_consumer(&self, group: impl Into<String>) -> ShareConsumerBuilder {
        ShareConsumerBuilder::new(self.clone(), group.into())
    }

    /// A client of the `ShareGroups` service on the shared connection.
    pub(crate) fn share_groups_service(&self) -> ShareGroupsClient<Channel> {
        ShareGroupsClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A client of the `Log` service on the shared connection.
    pub(crate) fn log_service(&self) -> LogClient<Channel> {
        LogClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A client of the `Groups` service on the shared connection.
    pub(crate) fn groups_service(&self) -> GroupsClient<Channel> {
        GroupsClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A client of the `Admin` service on the shared connection.
    pub(crate) fn admin_service(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }
}
