//! The connection to a server, shared by admin, producers and consumers.

use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::groups_client::GroupsClient;
use sluice_proto::v1::log_client::LogClient;
use sluice_proto::v1::security_client::SecurityClient;
use sluice_proto::v1::share_groups_client::ShareGroupsClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::admin::Admin;
use crate::consumer::ConsumerBuilder;
use crate::credentials::{Credentials, Transport};
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
/// Largest HTTP/2 frame the server may send: a megabyte of replayed batches goes out in one
/// frame, one socket write, rather than in 64 frames of the default 16 KiB.
const MAX_FRAME_BYTES: u32 = 1 << 20;
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
    credentials: Credentials,
    url: Arc<str>,
}

/// How to connect: made by [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    url: String,
    credentials: Credentials,
    /// PEM CA certificates the server's certificate must chain to.
    ca_certificate: Option<Vec<u8>>,
    /// PEM certificate chain and private key presented to the server (mutual TLS).
    client_certificate: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientBuilder {
    /// Authenticates every call as `user` with `password` (HTTP basic credentials; use
    /// TLS beyond loopback so they do not cross the network in clear).
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Credentials::basic(user, password);
        self
    }

    /// Trusts the CA certificates in `pem` (PEM text) for the server's certificate, instead
    /// of the well-known web CAs (for an `https://` URL).
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate = Some(pem.into());
        self
    }

    /// Presents the certificate chain `cert_pem` with its private key `key_pem` (PEM text)
    /// to a server that asks for client certificates (mutual TLS); its subject's common
    /// name is the principal the server knows the client by (for an `https://` URL).
    pub fn client_certificate(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.client_certificate = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Connects to the server: over TLS with an `https://` URL. A CA or client certificate
    /// with an `http://` URL is refused rather than ignored.
    pub async fn connect(self) -> Result<Client> {
        let ClientBuilder {
            url,
            credentials,
            ca_certificate,
            client_certificate,
        } = self;
        let mut endpoint =
            Endpoint::from_shared(url.clone()).map_err(|source| Error::InvalidUrl {
                url: url.clone(),
                source: Arc::new(source),
            })?;
        let https = endpoint.uri().scheme_str() == Some("https");
        if !https && (ca_certificate.is_some() || client_certificate.is_some()) {
            return Err(Error::InvalidArgument(format!(
                "{url}: a CA or client certificate needs an https:// URL"
            )));
        }
        if https {
            let mut tls = ClientTlsConfig::new();
            tls = match ca_certificate {
                Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                None => tls.with_webpki_roots(),
            };
            if let Some((cert, key)) = client_certificate {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(|source| Error::Tls {
                url: url.clone(),
                source: Arc::new(source),
            })?;
        }
        let endpoint = endpoint
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_BYTES)
            .http2_keep_alive_interval(KEEP_ALIVE);
        let channel = endpoint.connect().await.map_err(|source| Error::Connect {
            url: url.clone(),
            source: Arc::new(source),
        })?;
        Ok(Client {
            channel,
            credentials,
            url: url.into(),
        })
    }
}

impl Client {
    /// Connects to the server at `url` (`http://host:port`, or `https://host:port` for a
    /// server whose certificate a well-known web CA signed) without credentials.
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Client::builder(url).connect().await
    }

    /// A builder for a connection to `url` with options (credentials, TLS).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            credentials: Credentials::default(),
            ca_certificate: None,
            client_certificate: None,
        }
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

    /// The shared connection with this client's credentials.
    fn transport(&self) -> Transport {
        Transport::new(self.channel.clone(), self.credentials.clone())
    }

    /// A client of the `Security` service (users, ACLs, quotas) on the shared connection.
    pub fn security_service(&self) -> SecurityClient<Transport> {
        SecurityClient::new(self.transport())
    }

    /// A client of the `ShareGroups` service on the shared connection.
    pub(crate) fn share_groups_service(&self) -> ShareGroupsClient<Transport> {
        ShareGroupsClient::new(self.transport()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A client of the raw `Log` service on the shared connection (for load generators and
    /// tools that build their own requests; the producer and consumers wrap it).
    pub fn log_service(&self) -> LogClient<Transport> {
        LogClient::new(self.transport()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A client of the `Groups` service on the shared connection.
    pub(crate) fn groups_service(&self) -> GroupsClient<Transport> {
        GroupsClient::new(self.transport()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A client of the `Admin` service on the shared connection.
    pub(crate) fn admin_service(&self) -> AdminClient<Transport> {
        AdminClient::new(self.transport()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }
}
