//! Server settings and where they come from.
//!
//! Every setting can be given in a TOML file (`--config FILE` or `SLUICE_CONFIG`) and in
//! an environment variable named `SLUICE_` followed by the setting's path in upper case
//! with `_` between parts (`SLUICE_LISTEN`, `SLUICE_LIMITS_MAX_FETCH_BYTES`,
//! `SLUICE_TOPIC_DEFAULTS_RETENTION_MS` for `retention.ms` in `[topic_defaults]`), and
//! on the command line. Precedence: command line > environment > file > built-in default.
//! Topic defaults merge key by key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Deserializer};
use sluice_amqp::AmqpConfig;
use sluice_broker::{
    BrokerConfig, GroupConfig, Limits, ProducerConfig, ShareConfig, ShareGroupSettings,
    ShareOffsetReset, TopicConfig,
};
use sluice_kafka::{Advertised, KafkaConfig};

use crate::cli::ServeArgs;
use crate::error::ServerError;

/// Address the server listens on when none is configured.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50051));
/// Address the Kafka listener listens on when none is configured (Kafka's port).
pub const DEFAULT_KAFKA_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9092));
/// Address the AMQP listener listens on when none is configured (AMQP's port).
pub const DEFAULT_AMQP_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5672));
/// Address the metrics endpoint listens on when none is configured.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9644));
/// Data directory used when none is configured.
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";
/// Default largest gRPC request message accepted (`limits.max_request_bytes`): 64 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 20;
/// Default cap on one Subscribe message's records (`limits.max_subscribe_bytes`): 1 MiB.
pub const DEFAULT_MAX_SUBSCRIBE_BYTES: usize = 1 << 20;
/// Default cap on open subscriptions, server-wide (`limits.max_subscriptions`).
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 10_000;
/// Default cap on concurrent calls per connection (`limits.max_streams_per_connection`).
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Log filter used when neither the `log` setting nor `RUST_LOG` is set.
mod auth;
mod tls;

pub use auth::AuthSettings;
pub use tls::{TlsConfig, TlsSettings};

const DEFAULT_LOG_FILTER: &str = "info";

/// Prefix of the environment variables holding settings.
const ENV_PREFIX: &str = "SLUICE_";
/// Environment variable naming the config file (like `--config`).
const CONFIG_FILE_ENV: &str = "SLUICE_CONFIG";
/// The conventional log filter variable, used when the `log` setting is unset.
const RUST_LOG_ENV: &str = "RUST_LOG";

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where a listener (the metrics endpoint, the Kafka listener) listens, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddr {
    /// Not at all (for the metrics endpoint: and no metrics recorded).
    Off,
    /// This address; port 0 picks a free port.
    Addr(SocketAddr),
}

impl FromStr for ListenAddr {
    type Err = String;

    /// `off`, or a socket address such as `127.0.0.1:9644`.
    fn from_str(text: &str) -> Result<ListenAddr, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(ListenAddr::Off);
        }
        text.parse()
            .map(ListenAddr::Addr)
            .map_err(|e| format!("expected an address like 127.0.0.1:9644 or off ({e})"))
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The effective configuration of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address of the metrics endpoint; `None` when it is off.
    pub metrics_listen: Option<SocketAddr>,
    /// Address of the Kafka listener; `None` when it is off.
    pub kafka_listen: Option<SocketAddr>,
    /// How the Kafka front end behaves.
    pub kafka: KafkaConfig,
    /// Address of the AMQP listener; `None` when it is off.
    pub amqp_listen: Option<SocketAddr>,
    /// How the AMQP front end behaves.
    pub amqp: AmqpConfig,
    /// The certificate files and which listeners serve TLS; `None`: every listener is
    /// plaintext.
    pub tls: Option<TlsConfig>,
    /// Data directory, topic defaults, broker limits and retention interval.
    pub broker: BrokerConfig,
    /// Largest gRPC request message accepted (`limits.max_request_bytes`).
    pub max_request_bytes: usize,
    /// Most calls open at once on one HTTP/2 connection, announced to clients as
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (`limits.max_streams_per_connection`).
    pub max_streams_per_connection: u32,
    /// `tracing` filter directives (`log`, else `RUST_LOG`, else `info`).
    pub log_filter: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// `SLUICE_*` environment variables that name no setting (reported as warnings).
    pub unknown_env: Vec<String>,
}

impl ServerConfig {
    /// Builds the configuration from the command line, the environment `env` (pass
    /// `std::env::vars_os()`) and the config file named by `--config` or `SLUICE_CONFIG`.
    pub fn load(
        args: &ServeArgs,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<ServerConfig, ServerError> {
        let env = Environment::read(env)?;
        let file = match args.config.as_ref().or(env.config_file.as_ref()) {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        file.overlay(env.settings)
            .overlay(args.settings())
            .resolve(env.rust_log, env.unknown)
    }
}

/// One source of settings; unset fields defer to sources of lower precedence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `listen`: address to listen on.
    pub listen: Option<SocketAddr>,
    /// `metrics_listen`: address of the metrics endpoint, or `off`.
    pub metrics_listen: Option<ListenAddr>,
    /// `data_dir`: where topics are stored.
    pub data_dir: Option<PathBuf>,
    /// `log`: `tracing` filter directives, e.g. `info,sluice_broker=debug`.
    pub log: Option<String>,
    /// `log_format`: `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// `retention_check_interval_ms`: how often retention runs.
    pub retention_check_interval_ms: Option<u64>,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitSettings,
    /// `[groups]`: consumer group timing.
    #[serde(default)]
    pub groups: GroupSettings,
    /// `[share]`: share group defaults and limits.
    #[serde(default)]
    pub share: ShareSettings,
    /// `[kafka]`: the Kafka listener.
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// `[amqp]`: the AMQP listener.
    #[serde(default)]
    pub amqp: AmqpSettings,
    /// `[producers]`: how long and how many idempotent producers partitions remember.
    #[serde(default)]
    pub producers: ProducerSettings,
    /// `[auth]`: authentication and who bypasses ACLs.
    #[serde(default)]
    pub auth: AuthSettings,
    /// `[tls]`: certificates and which listeners serve TLS.
    #[serde(default)]
    pub tls: TlsSettings,
    /// `[topic_defaults]`: Kafka topic config keys and values for topics that do not
    /// override them.
    #[serde(default, deserialize_with = "scalar_map")]
    pub topic_defaults: BTreeMap<String, String>,
}

/// The `[limits]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Most partitions per topic.
    pub max_partitions: Option<u32>,
    /// Longest topic name.
    pub max_topic_name_len: Option<usize>,
    /// Cap on the `max_bytes` of one fetch.
    pub max_fetch_bytes: Option<usize>,
    /// Cap on how long a fetch waits for records, in milliseconds.
    pub max_wait_ms: Option<u64>,
    /// Most records in one produce request.
    pub max_records_per_request: Option<usize>,
    /// Largest gRPC request message.
    pub max_request_bytes: Option<usize>,
    /// Cap on the records of one Subscribe response message.
    pub max_subscribe_bytes: Option<usize>,
    /// Most subscriptions (Subscribe, SubscribeBatches, Consume) open at once.
    pub max_subscriptions: Option<usize>,
    /// Most calls open at once on one connection.
    pub max_streams_per_connection: Option<u32>,
    /// Bytes of record batches queued or being appended at once, server-wide.
    pub max_in_flight_bytes: Option<usize>,
    /// How long a produce may wait for room in `max_in_flight_bytes`, in milliseconds.
    pub produce_wait_ms: Option<u64>,
    /// Most bytes the records of one compressed batch may decompress to.
    pub max_decompressed_batch_bytes: Option<usize>,
}

/// The `[kafka]` table: the Kafka wire-protocol listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// `kafka.listen`: address of the Kafka listener, or `off`.
    pub listen: Option<ListenAddr>,
    /// `kafka.advertised`: `HOST:PORT` that Metadata hands out.
    #[serde(default, deserialize_with = "from_text")]
    pub advertised: Option<Advertised>,
    /// `kafka.auto_create_topics_enable`: Kafka's `auto.create.topics.enable`.
    pub auto_create_topics_enable: Option<bool>,
    /// `kafka.num_partitions`: Kafka's `num.partitions`.
    pub num_partitions: Option<u32>,
    /// `kafka.max_request_bytes`: Kafka's `socket.request.max.bytes`.
    pub max_request_bytes: Option<usize>,
    /// `kafka.max_login_request_bytes`: Kafka's `sasl.server.max.receive.size`.
    pub max_login_request_bytes: Option<usize>,
    /// `kafka.max_in_flight_requests`: requests one connection may have waiting for answers.
    pub max_in_flight_requests: Option<usize>,
    /// `kafka.share_session_timeout_ms`: Kafka's `group.share.session.timeout.ms`.
    pub share_session_timeout_ms: Option<u64>,
    /// `kafka.share_heartbeat_interval_ms`: Kafka's `group.share.heartbeat.interval.ms`.
    pub share_heartbeat_interval_ms: Option<u64>,
}

impl KafkaSettings {
    /// These settings with every one of `higher` that is set taking precedence.
    fn overlay(self, higher: KafkaSettings) -> KafkaSettings {
        KafkaSettings {
            listen: higher.listen.or(self.listen),
            advertised: higher.advertised.or(self.advertised),
            auto_create_topics_enable: higher
                .auto_create_topics_enable
                .or(self.auto_create_topics_enable),
            num_partitions: higher.num_partitions.or(self.num_partitions),
            max_request_bytes: higher.max_request_bytes.or(self.max_request_bytes),
            max_login_request_bytes: higher
                .max_login_request_bytes
                .or(self.max_login_request_bytes),
            max_in_flight_requests: higher
                .max_in_flight_requests
                .or(self.max_in_flight_requests),
            share_session_timeout_ms: higher
                .share_session_timeout_ms
                .or(self.share_session_timeout_ms),
            share_heartbeat_interval_ms: higher
                .share_heartbeat_interval_ms
                .or(self.share_heartbeat_interval_ms),
        }
    }

    /// Sets `name` (a field name) from text; `false` when there is no such field.
    fn set(&mut self, key: &str, name: &str, value: &str) -> Result<bool, ServerError> {
        match name {
            "listen" => self.listen = Some(parse(key, value)?),
            "advertised" => self.advertised = Some(parse(key, value)?),
            "auto_create_topics_enable" => {
                self.auto_create_topics_enable = Some(parse(key, value)?);
            }
            "num_partitions" => self.num_partitions = Some(parse(key, value)?),
            "max_request_bytes" => self.max_request_bytes = Some(parse(key, value)?),
            "max_login_request_bytes" => {
                self.max_login_request_bytes = Some(parse(key, value)?);
            }
            "max_in_flight_requests" => self.max_in_flight_requests = Some(parse(key, value)?),
            "share_session_timeout_ms" => {
                self.share_session_timeout_ms = Some(parse(key, value)?);
            }
            "share_heartbeat_interval_ms" => {
                self.share_heartbeat_interval_ms = Some(parse(key, value)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The listen address (`None`: off) and the front end's config, checked.
    fn resolve(&self) -> Result<(Option<SocketAddr>, KafkaConfig), ServerError> {
        let defaults = KafkaConfig::default();
        let listen = match self.listen {
            None => Some(DEFAULT_KAFKA_LISTEN),
            Some(ListenAddr::Off) => None,
            Some(ListenAddr::Addr(addr)) => Some(addr),
        };
        let config = KafkaConfig {
            advertised: self.advertised.clone(),
            auto_create_topics: self
                .auto_create_topics_enable
                .unwrap_or(defaults.auto_create_topics),
            num_partitions: positive(
                "kafka.num_partitions",
                self.num_partitions,
                defaults.num_partitions,
            )?,
            max_request_bytes: positive(
                "kafka.max_request_bytes",
                self.max_request_bytes,
                defaults.max_request_bytes,
            )?,
            max_login_request_bytes: positive(
                "kafka.max_login_request_bytes",
                self.max_login_request_bytes,
                defaults.max_login_request_bytes,
            )?,
            max_in_flight_requests: positive(
                "kafka.max_in_flight_requests",
                self.max_in_flight_requests,
                defaults.max_in_flight_requests,
            )?,
            share_session_timeout: Duration::from_millis(positive(
                "kafka.share_session_timeout_ms",
                self.share_session_timeout_ms,
                millis(defaults.share_session_timeout),
            )?),
            share_heartbeat_interval: Duration::from_millis(positive(
                "kafka.share_heartbeat_interval_ms",
                self.share_heartbeat_interval_ms,
                millis(defaults.share_heartbeat_interval),
            )?),
        };
        if config.share_heartbeat_interval >= config.share_session_timeout {
            return Err(invalid(
                "kafka.share_heartbeat_interval_ms",
                &millis(config.share_heartbeat_interval).to_string(),
                &format!(
                    "must be less than kafka.share_session_timeout_ms ({})",
                    millis(config.share_session_timeout)
                ),
            ));
        }
        Ok((listen, config))
    }
}

/// The `[amqp]` table: the AMQP 0-9-1 listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// `amqp.listen`: address of the AMQP listener, or `off`.
    pub listen: Option<ListenAddr>,
    /// `amqp.frame_max`: the largest frame, in bytes.
    pub frame_max: Option<u32>,
    /// `amqp.channel_max`: the most channels per connection.
    pub channel_max: Option<u16>,
    /// `amqp.heartbeat_secs`: the heartbeat interval the server proposes (0: none).
    pub heartbeat_secs: Option<u64>,
    /// `amqp.max_message_bytes`: the largest message body.
    pub max_message_bytes: Option<u64>,
}

impl AmqpSettings {
    /// These settings with every one of `higher` that is set taking precedence.
    fn overlay(self, higher: AmqpSettings) -> AmqpSettings {
        AmqpSettings {
            listen: higher.listen.or(self.listen),
            frame_max: higher.frame_max.or(self.frame_max),
            channel_max: higher.channel_max.or(self.channel_max),
            heartbeat_secs: higher.heartbeat_secs.or(self.heartbeat_secs),
            max_message_bytes: higher.max_message_bytes.or(self.max_message_bytes),
        }
    }

    /// Sets `name` (a field name) from text; `false` when there is no such field.
    fn set(&mut self, key: &str, name: &str, value: &str) -> Result<bool, ServerError> {
        match name {
            "listen" => self.listen = Some(parse(key, value)?),
            "frame_max" => self.frame_max = Some(parse(key, value)?),
            "channel_max" => self.channel_max = Some(parse(key, value)?),
            "heartbeat_secs" => self.heartbeat_secs = Some(parse(key, value)?),
            "max_message_bytes" => self.max_message_bytes = Some(parse(key, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The listen address (`None`: off) and the front end's config, checked.
    fn resolve(&self) -> Result<(Option<SocketAddr>, AmqpConfig), ServerError> {
        let defaults = AmqpConfig::default();
        let listen = match self.listen {
            None => Some(DEFAULT_AMQP_LISTEN),
            Some(ListenAddr::Off) => None,
            Some(ListenAddr::Addr(addr)) => Some(addr),
        };
        let config = AmqpConfig {
            frame_max: self.frame_max.unwrap_or(defaults.frame_max),
            channel_max: self.channel_max.unwrap_or(defaults.channel_max),
            heartbeat: self
                .heartbeat_secs
                .map_or(defaults.heartbeat, Duration::from_secs),
            max_message_bytes: self.max_message_bytes.unwrap_or(defaults.max_message_bytes),
        };
        config.validate().map_err(|reason| {
            let (key, rest) = reason.split_once(": ").unwrap_or(("amqp", &reason));
            invalid(key, "", rest)
        })?;
        Ok((listen, config))
    }
}

/// Deserializes an optional setting written as text and parsed with [`FromStr`].
fn from_text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    Option::<String>::deserialize(deserializer)?
        .map(|text| text.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// The `[groups]` table: consumer group timing, in milliseconds, and when the offsets log is
/// compacted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    /// Shortest session timeout a member may ask for.
    pub min_session_timeout_ms: Option<u64>,
    /// Longest session timeout a member may ask for.
    pub max_session_timeout_ms: Option<u64>,
    /// Session timeout of a member that asks for none.
    pub default_session_timeout_ms: Option<u64>,
    /// Time a member that asks for none gets to release a revoked partition.
    pub default_rebalance_timeout_ms: Option<u64>,
    /// How often the server asks a member for a sign of life.
    pub heartbeat_interval_ms: Option<u64>,
    /// How long the first rebalance of an empty client-assigned group waits for more
    /// members.
    pub initial_rebalance_delay_ms: Option<u64>,
    /// Most members a group may have.
    pub max_members: Option<usize>,
    /// Bytes the offsets log must hold before it is compacted.
    pub offsets_compaction_min_bytes: Option<u64>,
    /// Times the live offsets the offsets log must hold before it is compacted.
    pub offsets_compaction_ratio: Option<u64>,
}

impl GroupSettings {
    /// These settings with every one of `higher` that is set taking precedence.
    fn overlay(self, higher: GroupSettings) -> GroupSettings {
        GroupSettings {
            min_session_timeout_ms: higher
                .min_session_timeout_ms
                .or(self.min_session_timeout_ms),
            max_session_timeout_ms: higher
                .max_session_timeout_ms
                .or(self.max_session_timeout_ms),
            default_session_timeout_ms: higher
                .default_session_timeout_ms
                .or(self.default_session_timeout_ms),
            default_rebalance_timeout_ms: higher
                .default_rebalance_timeout_ms
                .or(self.default_rebalance_timeout_ms),
            heartbeat_interval_ms: higher.heartbeat_interval_ms.or(self.heartbeat_interval_ms),
            initial_rebalance_delay_ms: higher
                .initial_rebalance_delay_ms
                .or(self.initial_rebalance_delay_ms),
            max_members: higher.max_members.or(self.max_members),
            offsets_compaction_min_bytes: higher
                .offsets_compaction_min_bytes
                .or(self.offsets_compaction_min_bytes),
            offsets_compaction_ratio: higher
                .offsets_compaction_ratio
                .or(self.offsets_compaction_ratio),
        }
    }

    /// The broker's group config: the defaults with these settings applied, checked.
    fn resolve(&self) -> Result<GroupConfig, ServerError> {
        let defaults = GroupConfig::default();
        let ms = |set: Option<u64>, default: Duration| set.map_or(default, Duration::from_millis);
        let config = GroupConfig {
            min_session_timeout: ms(self.min_session_timeout_ms, defaults.min_session_timeout),
            max_session_timeout: ms(self.max_session_timeout_ms, defaults.max_session_timeout),
            default_session_timeout: ms(
                self.default_session_timeout_ms,
                defaults.default_session_timeout,
            ),
            default_rebalance_timeout: ms(
                self.default_rebalance_timeout_ms,
                defaults.default_rebalance_timeout,
            ),
            heartbeat_interval: ms(self.heartbeat_interval_ms, defaults.heartbeat_interval),
            initial_rebalance_delay: ms(
                self.initial_rebalance_delay_ms,
                defaults.initial_rebalance_delay,
            ),
            max_members: self.max_members.unwrap_or(defaults.max_members),
            offsets_compaction_min_bytes: self
                .offsets_compaction_min_bytes
                .unwrap_or(defaults.offsets_compaction_min_bytes),
            offsets_compaction_ratio: self
                .offsets_compaction_ratio
                .unwrap_or(defaults.offsets_compaction_ratio),
        };
        config.validate().map_err(ServerError::Groups)?;
        Ok(config)
    }

    /// Sets `name` (a field name) from text; `false` when there is no such field.
    fn set(&mut self, key: &str, name: &str, value: &str) -> Result<bool, ServerError> {
        let field = match name {
            "min_session_timeout_ms" => &mut self.min_session_timeout_ms,
            "max_session_timeout_ms" => &mut self.max_session_timeout_ms,
            "default_session_timeout_ms" => &mut self.default_session_timeout_ms,
            "default_rebalance_timeout_ms" => &mut self.default_rebalance_timeout_ms,
            "heartbeat_interval_ms" => &mut self.heartbeat_interval_ms,
            "initial_rebalance_delay_ms" => &mut self.initial_rebalance_delay_ms,
            "offsets_compaction_min_bytes" => &mut self.offsets_compaction_min_bytes,
            "offsets_compaction_ratio" => &mut self.offsets_compaction_ratio,
            "max_members" => {
                self.max_members = Some(parse(key, value)?);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *field = Some(parse(key, value)?);
        Ok(true)
    }
}

/// The `[share]` table: defaults of new share groups (durations in milliseconds) and the
/// limits of share group requests and state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareSettings {
    /// Default `share.record.lock.duration.ms` of new groups.
    pub record_lock_duration_ms: Option<u64>,
    /// Default `share.delivery.attempt.limit` of new groups.
    pub delivery_attempt_limit: Option<u32>,
    /// Default `share.redelivery.backoff.ms` of new groups.
    pub redelivery_backoff_ms: Option<u64>,
    /// Where new groups start: `earliest` or `latest`.
    pub auto_offset_reset: Option<String>,
    /// Most records one member may hold unacknowledged.
    pub max_prefetch: Option<u32>,
    /// Most members of one share group.
    pub max_members: Option<usize>,
    /// Most records of one share-partition in flight at once.
    pub max_in_flight_per_partition: Option<u32>,
    /// Longest lock duration a group may set.
    pub max_record_lock_duration_ms: Option<u64>,
    /// Highest delivery attempt limit a group may set.
    pub max_delivery_attempt_limit: Option<u32>,
    /// Longest redelivery backoff a group may set.
    pub max_redelivery_backoff_ms: Option<u64>,
    /// Bytes the share state journal must hold before it is compacted.
    pub state_compaction_min_bytes: Option<u64>,
    /// Times the live state the share state journal must hold before it is compacted.
    pub state_compaction_ratio: Option<u64>,
}

impl ShareSettings {
    /// These settings with every one of `higher` that is set taking precedence.
    fn overlay(self, higher: ShareSettings) -> ShareSettings {
        ShareSettings {
            record_lock_duration_ms: higher
                .record_lock_duration_ms
                .or(self.record_lock_duration_ms),
            delivery_attempt_limit: higher
                .delivery_attempt_limit
                .or(self.delivery_attempt_limit),
            redelivery_backoff_ms: higher.redelivery_backoff_ms.or(self.redelivery_backoff_ms),
            auto_offset_reset: higher.auto_offset_reset.or(self.auto_offset_reset),
            max_prefetch: higher.max_prefetch.or(self.max_prefetch),
            max_members: higher.max_members.or(self.max_members),
            max_in_flight_per_partition: higher
                .max_in_flight_per_partition
                .or(self.max_in_flight_per_partition),
            max_record_lock_duration_ms: higher
                .max_record_lock_duration_ms
                .or(self.max_record_lock_duration_ms),
            max_delivery_attempt_limit: higher
                .max_delivery_attempt_limit
                .or(self.max_delivery_attempt_limit),
            max_redelivery_backoff_ms: higher
                .max_redelivery_backoff_ms
                .or(self.max_redelivery_backoff_ms),
            state_compaction_min_bytes: higher
                .state_compaction_min_bytes
                .or(self.state_compaction_min_bytes),
            state_compaction_ratio: higher
                .state_compaction_ratio
                .or(self.state_compaction_ratio),
        }
    }

    /// The broker's share config: the defaults with these settings applied, checked.
    fn resolve(&self) -> Result<ShareConfig, ServerError> {
        let defaults = ShareConfig::default();
        let ms = |set: Option<u64>, default: Duration| set.map_or(default, Duration::from_millis);
        let auto_offset_reset = match self.auto_offset_reset.as_deref() {
            None => defaults.defaults.auto_offset_reset,
            Some("earliest") => ShareOffsetReset::Earliest,
            Some("latest") => ShareOffsetReset::Latest,
            Some(other) => {
                return Err(invalid(
                    "share.auto_offset_reset",
                    other,
                    "expected earliest or latest",
                ));
            }
        };
        let config = ShareConfig {
            defaults: ShareGroupSettings {
                record_lock_duration: ms(
                    self.record_lock_duration_ms,
                    defaults.defaults.record_lock_duration,
                ),
                delivery_attempt_limit: self
                    .delivery_attempt_limit
                    .unwrap_or(defaults.defaults.delivery_attempt_limit),
                dead_letter_topic: None,
                redelivery_backoff: ms(
                    self.redelivery_backoff_ms,
                    defaults.defaults.redelivery_backoff,
                ),
                auto_offset_reset,
            },
            max_prefetch: self.max_prefetch.unwrap_or(defaults.max_prefetch),
            max_members: self.max_members.unwrap_or(defaults.max_members),
            max_in_flight_per_partition: self
                .max_in_flight_per_partition
                .unwrap_or(defaults.max_in_flight_per_partition),
            max_record_lock_duration: ms(
                self.max_record_lock_duration_ms,
                defaults.max_record_lock_duration,
            ),
            max_delivery_attempt_limit: self
                .max_delivery_attempt_limit
                .unwrap_or(defaults.max_delivery_attempt_limit),
            max_redelivery_backoff: ms(
                self.max_redelivery_backoff_ms,
                defaults.max_redelivery_backoff,
            ),
            state_compaction_min_bytes: self
                .state_compaction_min_bytes
                .unwrap_or(defaults.state_compaction_min_bytes),
            state_compaction_ratio: self
                .state_compaction_ratio
                .unwrap_or(defaults.state_compaction_ratio),
        };
        config.validate().map_err(ServerError::Share)?;
        Ok(config)
    }

    /// Sets `name` (a field name) from text; `false` when there is no such field.
    fn set(&mut self, key: &str, name: &str, value: &str) -> Result<bool, ServerError> {
        match name {
            "record_lock_duration_ms" => self.record_lock_duration_ms = Some(parse(key, value)?),
            "delivery_attempt_limit" => self.delivery_attempt_limit = Some(parse(key, value)?),
            "redelivery_backoff_ms" => self.redelivery_backoff_ms = Some(parse(key, value)?),
            "auto_offset_reset" => self.auto_offset_reset = Some(value.to_owned()),
            "max_prefetch" => self.max_prefetch = Some(parse(key, value)?),
            "max_members" => self.max_members = Some(parse(key, value)?),
            "max_in_flight_per_partition" => {
                self.max_in_flight_per_partition = Some(parse(key, value)?);
            }
            "max_record_lock_duration_ms" => {
                self.max_record_lock_duration_ms = Some(parse(key, value)?);
            }
            "max_delivery_attempt_limit" => {
                self.max_delivery_attempt_limit = Some(parse(key, value)?);
            }
            "max_redelivery_backoff_ms" => {
                self.max_redelivery_backoff_ms = Some(parse(key, value)?);
            }
            "state_compaction_min_bytes" => {
                self.state_compaction_min_bytes = Some(parse(key, value)?);
            }
            "state_compaction_ratio" => self.state_compaction_ratio = Some(parse(key, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The `[producers]` table: how partitions remember idempotent producers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// How long a partition remembers a producer it has not heard from, in milliseconds
    /// (Kafka's `producer.id.expiration.ms`).
    pub id_expiration_ms: Option<u64>,
    /// Most producers one partition remembers.
    pub max_per_partition: Option<usize>,
}

impl ProducerSettings {
    /// These settings with every one of `higher` that is set taking precedence.
    fn overlay(self, higher: ProducerSettings) -> ProducerSettings {
        ProducerSettings {
            id_expiration_ms: higher.id_expiration_ms.or(self.id_expiration_ms),
            max_per_partition: higher.max_per_partition.or(self.max_per_partition),
        }
    }

    /// The broker's producer config: the defaults with these settings applied, checked.
    fn resolve(&self) -> Result<ProducerConfig, ServerError> {
        let defaults = ProducerConfig::default();
        let config = ProducerConfig {
            id_expiration: self
                .id_expiration_ms
                .map_or(defaults.id_expiration, Duration::from_millis),
            max_per_partition: self.max_per_partition.unwrap_or(defaults.max_per_partition),
        };
        config.validate().map_err(ServerError::Producers)?;
        Ok(config)
    }

    /// Sets `name` (a field name) from text; `false` when there is no such field.
    fn set(&mut self, key: &str, name: &str, value: &str) -> Result<bool, ServerError> {
        match name {
            "id_expiration_ms" => self.id_expiration_ms = Some(parse(key, value)?),
            "max_per_partition" => self.max_per_partition = Some(parse(key, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl Settings {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Settings, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ServerError::ConfigParse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// These settings with every setting of `higher` that is set taking precedence.
    pub fn overlay(self, higher: Settings) -> Settings {
        let mut topic_defaults = self.topic_defaults;
        topic_defaults.extend(higher.topic_defaults);
        Settings {
            listen: higher.listen.or(self.listen),
            metrics_listen: higher.metrics_listen.or(self.metrics_listen),
            data_dir: higher.data_dir.or(self.data_dir),
            log: higher.log.or(self.log),
            log_format: higher.log_format.or(self.log_format),
            retention_check_interval_ms: higher
                .retention_check_interval_ms
                .or(self.retention_check_interval_ms),
            limits: self.limits.overlay(higher.limits),
            groups: self.groups.overlay(higher.groups),
            share: self.share.overlay(higher.share),
            kafka: self.kafka.overlay(higher.kafka),
            amqp: self.amqp.overlay(higher.amqp),
            producers: self.producers.overlay(higher.producers),
            auth: self.auth.overlay(higher.auth),
            tls: self.tls.overlay(higher.tls),
            topic_defaults,
        }
    }

    /// Sets the setting at `key` (its path, e.g. `limits.max_fetch_bytes` or
    /// `topic_defaults.retention.ms`) from text. Returns `false` for a key that names
    /// no setting.
    fn set(&mut self, key: &str, value: &str) -> Result<bool, ServerError> {
        let limits = &mut self.limits;
        match key {
            "listen" => self.listen = Some(parse(key, value)?),
            "metrics_listen" => self.metrics_listen = Some(parse(key, value)?),
            "data_dir" => self.data_dir = Some(PathBuf::from(value)),
            "log" => self.log = Some(value.to_owned()),
            "log_format" => {
                let format = LogFormat::from_str(value, true)
                    .map_err(|_| invalid(key, value, "expected text or json"))?;
                self.log_format = Some(format);
            }
            "retention_check_interval_ms" => {
                self.retention_check_interval_ms = Some(parse(key, value)?);
            }
            "limits.max_partitions" => limits.max_partitions = Some(parse(key, value)?),
            "limits.max_topic_name_len" => limits.max_topic_name_len = Some(parse(key, value)?),
            "limits.max_fetch_bytes" => limits.max_fetch_bytes = Some(parse(key, value)?),
            "limits.max_wait_ms" => limits.max_wait_ms = Some(parse(key, value)?),
            "limits.max_in_flight_bytes" => {
                limits.max_in_flight_bytes = Some(parse(key, value)?);
            }
            "limits.produce_wait_ms" => limits.produce_wait_ms = Some(parse(key, value)?),
            "limits.max_decompressed_batch_bytes" => {
                limits.max_decompressed_batch_bytes = Some(parse(key, value)?);
            }
            "limits.max_records_per_request" => {
                limits.max_records_per_request = Some(parse(key, value)?);
            }
            "limits.max_request_bytes" => limits.max_request_bytes = Some(parse(key, value)?),
            "limits.max_subscribe_bytes" => {
                limits.max_subscribe_bytes = Some(parse(key, value)?);
            }
            "limits.max_subscriptions" => limits.max_subscriptions = Some(parse(key, value)?),
            "limits.max_streams_per_connection" => {
                limits.max_streams_per_connection = Some(parse(key, value)?);
            }
            _ => {
                if let Some(topic_key) = key.strip_prefix("topic_defaults.") {
                    self.topic_defaults
                        .insert(topic_key.to_owned(), value.to_owned());
                } else if let Some(name) = key.strip_prefix("groups.") {
                    return self.groups.set(key, name, value);
                } else if let Some(name) = key.strip_prefix("share.") {
                    return self.share.set(key, name, value);
                } else if let Some(name) = key.strip_prefix("kafka.") {
                    return self.kafka.set(key, name, value);
                } else if let Some(name) = key.strip_prefix("amqp.") {
                    return self.amqp.set(key, name, value);
                } else if let Some(name) = key.strip_prefix("producers.") {
                    return self.producers.set(key, name, value);
                } else if let Some(name) = key.strip_prefix("auth.") {
                    return self.auth.set(key, name, value);
                } else if let Some(name) = key.strip_prefix("tls.") {
                    return self.tls.set(key, name, value);
                } else {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Fills unset settings with defaults and checks every value.
    fn resolve(
        self,
        rust_log: Option<String>,
        unknown_env: Vec<String>,
    ) -> Result<ServerConfig, ServerError> {
        let defaults = Limits::default();
        let settings = &self.limits;
        let limits = Limits {
            max_partitions: positive(
                "limits.max_partitions",
                settings.max_partitions,
                defaults.max_partitions,
            )?,
            max_topic_name_len: positive(
                "limits.max_topic_name_len",
                settings.max_topic_name_len,
                defaults.max_topic_name_len,
            )?,
            max_fetch_bytes: positive(
                "limits.max_fetch_bytes",
                settings.max_fetch_bytes,
                defaults.max_fetch_bytes,
            )?,
            max_wait: settings
                .max_wait_ms
                .map_or(defaults.max_wait, Duration::from_millis),
            max_records_per_request: positive(
                "limits.max_records_per_request",
                settings.max_records_per_request,
                defaults.max_records_per_request,
            )?,
            max_subscribe_bytes: positive(
                "limits.max_subscribe_bytes",
                settings.max_subscribe_bytes,
                DEFAULT_MAX_SUBSCRIBE_BYTES,
            )?,
            max_subscriptions: positive(
                "limits.max_subscriptions",
                settings.max_subscriptions,
                DEFAULT_MAX_SUBSCRIPTIONS,
            )?,
            max_in_flight_bytes: positive(
                "limits.max_in_flight_bytes",
                settings.max_in_flight_bytes,
                defaults.max_in_flight_bytes,
            )?,
            produce_wait: settings
                .produce_wait_ms
                .map_or(defaults.produce_wait, Duration::from_millis),
            max_decompressed_batch_bytes: positive(
                "limits.max_decompressed_batch_bytes",
                settings.max_decompressed_batch_bytes,
                defaults.max_decompressed_batch_bytes,
            )?,
        };
        let max_request_bytes = positive(
            "limits.max_request_bytes",
            settings.max_request_bytes,
            DEFAULT_MAX_REQUEST_BYTES,
        )?;
        let max_streams_per_connection = positive(
            "limits.max_streams_per_connection",
            settings.max_streams_per_connection,
            DEFAULT_MAX_STREAMS_PER_CONNECTION,
        )?;

        let mut broker = BrokerConfig::new(
            self.data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        );
        broker.topic_defaults =
            TopicConfig::from_overrides(&TopicConfig::default(), &self.topic_defaults)
                .map_err(ServerError::TopicDefaults)?;
        broker.limits = limits;
        broker.groups = self.groups.resolve()?;
        broker.share = self.share.resolve()?;
        let (kafka_listen, kafka) = self.kafka.resolve()?;
        let (amqp_listen, amqp) = self.amqp.resolve()?;
        broker.producers = self.producers.resolve()?;
        broker.security = self.auth.resolve()?;
        let tls = self.tls.resolve()?;
        broker.retention_check_interval = match self.retention_check_interval_ms {
            None => broker.retention_check_interval,
            Some(0) => {
                return Err(invalid(
                    "retention_check_interval_ms",
                    "0",
                    "must be at least 1",
                ));
            }
            Some(ms) => Duration::from_millis(ms),
        };

        let listen = self.listen.unwrap_or(DEFAULT_LISTEN);
        let metrics_listen = match self.metrics_listen {
            None => Some(DEFAULT_METRICS_LISTEN),
            Some(ListenAddr::Off) => None,
            Some(ListenAddr::Addr(addr)) => Some(addr),
        };
        let listeners = [
            ("grpc", Some(listen)),
            ("metrics", metrics_listen),
            ("kafka", kafka_listen),
            ("amqp", amqp_listen),
        ];
        self.auth.check_exposure(
            listeners
                .into_iter()
                .filter_map(|(name, addr)| Some((name, addr?))),
        )?;
        Ok(ServerConfig {
            listen,
            metrics_listen,
            kafka_listen,
            kafka,
            amqp_listen,
            amqp,
            tls,
            broker,
            max_request_bytes,
            max_streams_per_connection,
            log_filter: self
                .log
                .or(rust_log)
                .unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned()),
            log_format: self.log_format.unwrap_or_default(),
            unknown_env,
        })
    }
}

impl LimitSettings {
    /// These limits with every limit of `higher` that is set taking precedence.
    fn overlay(self, higher: LimitSettings) -> LimitSettings {
        LimitSettings {
            max_partitions: higher.max_partitions.or(self.max_partitions),
            max_topic_name_len: higher.max_topic_name_len.or(self.max_topic_name_len),
            max_fetch_bytes: higher.max_fetch_bytes.or(self.max_fetch_bytes),
            max_wait_ms: higher.max_wait_ms.or(self.max_wait_ms),
            max_records_per_request: higher
                .max_records_per_request
                .or(self.max_records_per_request),
            max_request_bytes: higher.max_request_bytes.or(self.max_request_bytes),
            max_subscribe_bytes: higher.max_subscribe_bytes.or(self.max_subscribe_bytes),
            max_subscriptions: higher.max_subscriptions.or(self.max_subscriptions),
            max_streams_per_connection: higher
                .max_streams_per_connection
                .or(self.max_streams_per_connection),
            max_in_flight_bytes: higher.max_in_flight_bytes.or(self.max_in_flight_bytes),
            produce_wait_ms: higher.produce_wait_ms.or(self.produce_wait_ms),
            max_decompressed_batch_bytes: higher
                .max_decompressed_batch_bytes
                .or(self.max_decompressed_batch_bytes),
        }
    }
}

/// What the process environment contributes.
#[derive(Debug, Default)]
struct Environment {
    /// Settings from `SLUICE_*` variables.
    settings: Settings,
    /// `SLUICE_CONFIG`.
    config_file: Option<PathBuf>,
    /// `RUST_LOG`.
    rust_log: Option<String>,
    /// `SLUICE_*` variables naming no setting.
    unknown: Vec<String>,
}

impl Environment {
    /// Picks the variables Sluice reads out of `vars`.
    fn read(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Self, ServerError> {
        let mut env = Environment::default();
        for (name, value) in vars {
            let Some(name) = name.to_str() else { continue };
            if name != RUST_LOG_ENV && !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let Some(value) = value.to_str() else {
                return Err(invalid(
                    name,
                    &value.to_string_lossy(),
                    "value is not valid UTF-8",
                ));
            };
            if name == RUST_LOG_ENV {
                env.rust_log = Some(value.to_owned());
            } else if name == CONFIG_FILE_ENV {
                env.config_file = Some(PathBuf::from(value));
            } else if !env.settings.set(&setting_key(name), value)? {
                env.unknown.push(name.to_owned());
            }
        }
        env.unknown.sort();
        Ok(env)
    }
}

/// The setting path an environment variable name stands for:
/// `SLUICE_LIMITS_MAX_WAIT_MS` -> `limits.max_wait_ms`,
/// `SLUICE_TOPIC_DEFAULTS_MAX_MESSAGE_BYTES` -> `topic_defaults.max.message.bytes`,
/// `SLUICE_GROUPS_HEARTBEAT_INTERVAL_MS` -> `groups.heartbeat_interval_ms`,
/// `SLUICE_SHARE_MAX_PREFETCH` -> `share.max_prefetch`,
/// `SLUICE_KAFKA_LISTEN` -> `kafka.listen`,
/// `SLUICE_AMQP_LISTEN` -> `amqp.listen`,
/// `SLUICE_PRODUCERS_ID_EXPIRATION_MS` -> `producers.id_expiration_ms`,
/// `SLUICE_AUTH_ENABLED` -> `auth.enabled`,
/// `SLUICE_TLS_CLIENT_CA` -> `tls.client_ca`.
fn setting_key(env_name: &str) -> String {
    let name = env_name
        .strip_prefix(ENV_PREFIX)
        .unwrap_or(env_name)
        .to_ascii_lowercase();
    if let Some(topic_key) = name.strip_prefix("topic_defaults_") {
        format!("topic_defaults.{}", topic_key.replace('_', "."))
    } else if let Some(limit) = name.strip_prefix("limits_") {
        format!("limits.{limit}")
    } else if let Some(group) = name.strip_prefix("groups_") {
        format!("groups.{group}")
    } else if let Some(share) = name.strip_prefix("share_") {
        format!("share.{share}")
    } else if let Some(kafka) = name.strip_prefix("kafka_") {
        format!("kafka.{kafka}")
    } else if let Some(amqp) = name.strip_prefix("amqp_") {
        format!("amqp.{amqp}")
    } else if let Some(producer) = name.strip_prefix("producers_") {
        format!("producers.{producer}")
    } else if let Some(auth) = name.strip_prefix("auth_") {
        format!("auth.{auth}")
    } else if let Some(tls) = name.strip_prefix("tls_") {
        format!("tls.{tls}")
    } else {
        name
    }
}

/// Parses a setting's text value.
fn parse<T>(key: &str, value: &str) -> Result<T, ServerError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .trim()
        .parse()
        .map_err(|err: T::Err| invalid(key, value, &err.to_string()))
}

/// `value` (or `default` when unset), refusing zero.
fn positive<T>(key: &str, value: Option<T>, default: T) -> Result<T, ServerError>
where
    T: Copy + Default + PartialEq + Display,
{
    let value = value.unwrap_or(default);
    if value == T::default() {
        return Err(invalid(key, &value.to_string(), "must be at least 1"));
    }
    Ok(value)
}

/// A duration in whole milliseconds, as the `*_ms` settings give it.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A [`ServerError::InvalidSetting`].
fn invalid(key: &str, value: &str, reason: &str) -> ServerError {
    ServerError::InvalidSetting {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Deserializes a table of Kafka config values written as TOML strings, integers or booleans.
fn scalar_map<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    /// A TOML value a Kafka config value may be written as.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Integer(i64),
        Boolean(bool),
        Text(String),
    }
    let table = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
    Ok(table
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Scalar::Integer(n) => n.to_string(),
                Scalar::Boolean(b) => b.to_string(),
                Scalar::Text(text) => text,
            };
            (key, value)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use sluice_broker::{FlushMode, TimestampType};

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    /// The configuration `args` and the environment `pairs` give (for the tests of the
    /// submodules too).
    pub(super) fn load(
        args: &ServeArgs,
        pairs: &[(&str, &str)],
    ) -> Result<ServerConfig, ServerError> {
        ServerConfig::load(args, env(pairs))
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write config");
        file
    }

    fn args_with_file(file: &tempfile::NamedTempFile) -> ServeArgs {
        ServeArgs {
            config: Some(file.path().to_owned()),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = ServerConfig::load(&ServeArgs::default(), env(&[])).expect("load");
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.metrics_listen, Some(DEFAULT_METRICS_LISTEN));
        assert_eq!(config.broker.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.broker.limits, Limits::default());
        assert_eq!(config.broker.topic_defaults, TopicConfig::default());
        assert_eq!(config.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        assert_eq!(
            config.broker.limits.max_subscribe_bytes,
            DEFAULT_MAX_SUBSCRIBE_BYTES
        );
        assert_eq!(
            config.broker.limits.max_subscriptions,
            DEFAULT_MAX_SUBSCRIPTIONS
        );
        assert_eq!(
            config.max_streams_per_connection,
            DEFAULT_MAX_STREAMS_PER_CONNECTION
        );
        assert_eq!(config.log_filter, DEFAULT_LOG_FILTER);
        assert_eq!(config.log_format, LogFormat::Text);
        assert!(config.unknown_env.is_empty());
    }

    #[test]
    fn file_sets_every_kind_of_setting() {
        let file = config_file(
            r#"
            listen = "127.0.0.1:7000"
            data_dir = "from-file"
            log = "debug"
            log_format = "json"
            retention_check_interval_ms = 1000

            [limits]
            max_partitions = 8
            max_wait_ms = 250
            max_request_bytes = 4096
            max_subscribe_bytes = 2048
            max_subscriptions = 30
            max_streams_per_connection = 40
            max_in_flight_bytes = 1000000
            produce_wait_ms = 1500
            max_decompressed_batch_bytes = 8192

            [topic_defaults]
            "retention.ms" = 60000
            "flush.policy" = "none"
            "message.timestamp.type" = "LogAppendTime"
            "share.reclaim.enable" = true
            "#,
        );
        let config = ServerConfig::load(&args_with_file(&file), env(&[])).expect("load");
        assert_eq!(
            config.listen,
            "127.0.0.1:7000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(config.broker.data_dir, PathBuf::from("from-file"));
        assert_eq!(config.log_filter, "debug");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.broker.retention_check_interval,
            Duration::from_secs(1)
        );
        assert_eq!(config.broker.limits.max_partitions, 8);
        assert_eq!(config.broker.limits.max_wait, Duration::from_millis(250));
        assert_eq!(config.max_request_bytes, 4096);
        assert_eq!(config.broker.limits.max_subscribe_bytes, 2048);
        assert_eq!(config.broker.limits.max_subscriptions, 30);
        assert_eq!(config.max_streams_per_connection, 40);
        assert_eq!(config.broker.limits.max_in_flight_bytes, 1_000_000);
        assert_eq!(
            config.broker.limits.produce_wait,
            Duration::from_millis(1500)
        );
        assert_eq!(config.broker.topic_defaults.retention_ms, Some(60_000));
        assert_eq!(config.broker.topic_defaults.flush_policy, FlushMode::None);
        assert_eq!(config.broker.limits.max_decompressed_batch_bytes, 8192);
        assert_eq!(
            config.broker.topic_defaults.message_timestamp_type,
            TimestampType::LogAppendTime
        );
        assert!(config.broker.topic_defaults.share_reclaim);
    }

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        let file = config_file(
            r#"
            listen = "127.0.0.1:7000"
            data_dir = "from-file"
            log = "warn"
            [limits]
            max_fetch_bytes = 100
            max_partitions = 3
            "#,
        );
        let vars = env(&[
            ("SLUICE_LISTEN", "127.0.0.1:7001"),
            ("SLUICE_DATA_DIR", "from-env"),
            ("SLUICE_LIMITS_MAX_FETCH_BYTES", "200"),
        ]);
        let from_env = ServerConfig::load(&args_with_file(&file), vars.clone()).expect("load");
        assert_eq!(from_env.listen.port(), 7001);
        assert_eq!(from_env.broker.data_dir, PathBuf::from("from-env"));
        assert_eq!(from_env.broker.limits.max_fetch_bytes, 200);
        // Settings the environment leaves unset still come from the file.
        assert_eq!(from_env.log_filter, "warn");
        assert_eq!(from_env.broker.limits.max_partitions, 3);

        let args = ServeArgs {
            listen: Some("127.0.0.1:7002".parse().expect("addr")),
            data_dir: Some(PathBuf::from("from-cli")),
            max_partitions: Some(5),
            ..args_with_file(&file)
        };
        let from_cli = ServerConfig::load(&args, vars).expect("load");
        assert_eq!(from_cli.listen.port(), 7002);
        assert_eq!(from_cli.broker.data_dir, PathBuf::from("from-cli"));
        assert_eq!(from_cli.broker.limits.max_partitions, 5);
        // Settings the command line leaves unset still come from the environment.
        assert_eq!(from_cli.broker.limits.max_fetch_bytes, 200);
    }

    #[test]
    fn config_file_can_be_named_by_env_and_cli_wins() {
        let env_file = config_file("data_dir = \"env-file\"");
        let cli_file = config_file("data_dir = \"cli-file\"");
        let path = env_file.path().to_str().expect("utf-8 temp path");
        let vars = env(&[("SLUICE_CONFIG", path)]);
        let config = ServerConfig::load(&ServeArgs::default(), vars.clone()).expect("load");
        assert_eq!(config.broker.data_dir, PathBuf::from("env-file"));
        let config = ServerConfig::load(&args_with_file(&cli_file), vars).expect("load");
        assert_eq!(config.broker.data_dir, PathBuf::from("cli-file"));
    }

    #[test]
    fn topic_defaults_merge_key_by_key() {
        let file = config_file(
            r#"
            [topic_defaults]
            "retention.ms" = "1000"
            "segment.bytes" = 4096
            "#,
        );
        let vars = env(&[
            ("SLUICE_TOPIC_DEFAULTS_RETENTION_MS", "2000"),
            ("SLUICE_TOPIC_DEFAULTS_SEGMENT_MS", "3000"),
            ("SLUICE_TOPIC_DEFAULTS_SHARE_RECLAIM_ENABLE", "true"),
        ]);
        let config = ServerConfig::load(&args_with_file(&file), vars.clone()).expect("load");
        assert!(config.broker.topic_defaults.share_reclaim);
        assert_eq!(config.broker.topic_defaults.retention_ms, Some(2000));
        assert_eq!(config.broker.topic_defaults.segment_bytes, 4096);
        assert_eq!(config.broker.topic_defaults.segment_ms, Some(3000));

        let args = ServeArgs {
            topic_defaults: vec![("retention.ms".into(), "-1".into())],
            ..args_with_file(&file)
        };
        let config = ServerConfig::load(&args, vars).expect("load");
        assert_eq!(config.broker.topic_defaults.retention_ms, None);
        assert_eq!(config.broker.topic_defaults.segment_bytes, 4096);
        assert_eq!(config.broker.topic_defaults.segment_ms, Some(3000));
    }

    #[test]
    fn amqp_settings_come_from_file_environment_and_flags() {
        let config = ServerConfig::load(&ServeArgs::default(), env(&[])).expect("defaults");
        assert_eq!(config.amqp_listen, Some(DEFAULT_AMQP_LISTEN));
        assert_eq!(config.amqp, AmqpConfig::default());

        let file = config_file(
            "[amqp]\nlisten = \"127.0.0.1:5000\"\nframe_max = 8192\nchannel_max = 16\n\
             heartbeat_secs = 10\nmax_message_bytes = 1024\n",
        );
        let config = ServerConfig::load(&args_with_file(&file), env(&[])).expect("file");
        assert_eq!(config.amqp_listen.map(|a| a.port()), Some(5000));
        assert_eq!(
            (
                config.amqp.frame_max,
                config.amqp.channel_max,
                config.amqp.max_message_bytes
            ),
            (8192, 16, 1024)
        );
        assert_eq!(config.amqp.heartbeat, Duration::from_secs(10));

        let vars = env(&[
            ("SLUICE_AMQP_LISTEN", "off"),
            ("SLUICE_AMQP_CHANNEL_MAX", "3"),
        ]);
        let config = ServerConfig::load(&args_with_file(&file), vars.clone()).expect("env");
        assert_eq!((config.amqp_listen, config.amqp.channel_max), (None, 3));
        let mut args = args_with_file(&file);
        args.amqp_listen = Some(ListenAddr::Addr("127.0.0.1:5001".parse().expect("addr")));
        let config = ServerConfig::load(&args, vars).expect("flags");
        assert_eq!(config.amqp_listen.map(|a| a.port()), Some(5001));

        let small = env(&[("SLUICE_AMQP_FRAME_MAX", "100")]);
        let err = ServerConfig::load(&ServeArgs::default(), small).expect_err("too small");
        assert!(err.to_string().contains("amqp.frame_max"), "{err}");
    }

    #[test]
    fn kafka_settings_come_from_file_environment_and_flags() {
        let config = ServerConfig::load(&ServeArgs::default(), env(&[])).expect("defaults");
        assert_eq!(config.kafka_listen, Some(DEFAULT_KAFKA_LISTEN));
        assert_eq!(config.kafka, KafkaConfig::default());

        let file = config_file(
            "[kafka]\nlisten = \"127.0.0.1:9000\"\nadvertised = \"kafka.example.com:9093\"\n\
             auto_create_topics_enable = false\nnum_partitions = 3\nmax_request_bytes = 1024\n",
        );
        let config = ServerConfig::load(&args_with_file(&file), env(&[])).expect("file");
        assert_eq!(config.kafka_listen.map(|a| a.port()), Some(9000));
        let advertised = config.kafka.advertised.expect("advertised");
        assert_eq!(
            (advertised.host.as_str(), advertised.port),
            ("kafka.example.com", 9093)
        );
        assert!(!config.kafka.auto_create_topics);
        assert_eq!(config.kafka.num_partitions, 3);
        assert_eq!(config.kafka.max_request_bytes, 1024);

        let vars = env(&[
            ("SLUICE_KAFKA_LISTEN", "off"),
            ("SLUICE_KAFKA_NUM_PARTITIONS", "5"),
        ]);
        let config = ServerConfig::load(&args_with_file(&file), vars).expect("env");
        assert_eq!(config.kafka_listen, None);
        assert_eq!(config.kafka.num_partitions, 5);

        let vars = env(&[
            ("SLUICE_KAFKA_SHARE_SESSION_TIMEOUT_MS", "2000"),
            ("SLUICE_KAFKA_SHARE_HEARTBEAT_INTERVAL_MS", "500"),
        ]);
        let config = ServerConfig::load(&ServeArgs::default(), vars).expect("share env");
        assert_eq!(
            (
                config.kafka.share_session_timeout,
                config.kafka.share_heartbeat_interval
            ),
            (Duration::from_secs(2), Duration::from_millis(500))
        );

        let mut args = args_with_file(&file);
        args.kafka_listen = Some(ListenAddr::Addr("127.0.0.1:9001".parse().expect("addr")));
        args.kafka_advertised = Some("localhost:9001".parse().expect("advertised"));
        let config =
            ServerConfig::load(&args, env(&[("SLUICE_KAFKA_LISTEN", "off")])).expect("flags");
        assert_eq!(config.kafka_listen.map(|a| a.port()), Some(9001));
        assert_eq!(
            config.kafka.advertised.map(|a| a.host),
            Some("localhost".to_owned())
        );

        for (name, value, key) in [
            ("SLUICE_KAFKA_NUM_PARTITIONS", "0", "kafka.num_partitions"),
            ("SLUICE_KAFKA_ADVERTISED", "no-port", "kafka.advertised"),
            ("SLUICE_KAFKA_LISTEN", "nowhere", "kafka.listen"),
            (
                "SLUICE_KAFKA_SHARE_SESSION_TIMEOUT_MS",
                "0",
                "kafka.share_session_timeout_ms",
            ),
            // The default heartbeat interval (5 s) is not less than this timeout.
            (
                "SLUICE_KAFKA_SHARE_SESSION_TIMEOUT_MS",
                "5000",
                "kafka.share_heartbeat_interval_ms",
            ),
        ] {
            let err = ServerConfig::load(&ServeArgs::default(), env(&[(name, value)]))
                .expect_err("bad setting");
            assert!(err.to_string().contains(key), "{name}: {err}");
        }
    }

    #[test]
    fn metrics_listen_takes_an_address_or_off() {
        let file = config_file("metrics_listen = \"127.0.0.1:9000\"");
        let config = ServerConfig::load(&args_with_file(&file), env(&[])).expect("load");
        assert_eq!(config.metrics_listen.map(|a| a.port()), Some(9000));
        let vars = env(&[("SLUICE_METRICS_LISTEN", "off")]);
        let config = ServerConfig::load(&args_with_file(&file), vars).expect("load");
        assert_eq!(config.metrics_listen, None);
        let bad = env(&[("SLUICE_METRICS_LISTEN", "nowhere")]);
        let err = ServerConfig::load(&ServeArgs::default(), bad).expect_err("bad address");
        assert!(err.to_string().contains("metrics_listen"), "{err}");
    }

    #[test]
    fn log_filter_falls_back_to_rust_log() {
        let vars = env(&[("RUST_LOG", "trace")]);
        let config = ServerConfig::load(&ServeArgs::default(), vars.clone()).expect("load");
        assert_eq!(config.log_filter, "trace");
        let mut vars = vars;
        vars.extend(env(&[("SLUICE_LOG", "error")]));
        let config = ServerConfig::load(&ServeArgs::default(), vars).expect("load");
        assert_eq!(config.log_filter, "error");
    }

    #[test]
    fn unknown_env_vars_are_collected_and_others_ignored() {
        let vars = env(&[
            ("SLUICE_LISTN", "127.0.0.1:1"),
            ("SLUICE_LIMITS_MAX_BOGUS", "1"),
            ("HOME", "/root"),
        ]);
        let config = ServerConfig::load(&ServeArgs::default(), vars).expect("load");
        assert_eq!(
            config.unknown_env,
            ["SLUICE_LIMITS_MAX_BOGUS", "SLUICE_LISTN"]
        );
        assert_eq!(config.listen, DEFAULT_LISTEN);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            ("SLUICE_LISTEN", "not-an-address", "listen"),
            (
                "SLUICE_LIMITS_MAX_FETCH_BYTES",
                "lots",
                "limits.max_fetch_bytes",
            ),
            ("SLUICE_LIMITS_MAX_PARTITIONS", "0", "limits.max_partitions"),
            (
                "SLUICE_LIMITS_MAX_SUBSCRIPTIONS",
                "0",
                "limits.max_subscriptions",
            ),
            (
                "SLUICE_LIMITS_MAX_DECOMPRESSED_BATCH_BYTES",
                "0",
                "limits.max_decompressed_batch_bytes",
            ),
            (
                "SLUICE_LIMITS_MAX_STREAMS_PER_CONNECTION",
                "-1",
                "limits.max_streams_per_connection",
            ),
            ("SLUICE_LOG_FORMAT", "xml", "log_format"),
            (
                "SLUICE_RETENTION_CHECK_INTERVAL_MS",
                "0",
                "retention_check_interval_ms",
            ),
        ];
        for (name, value, key) in cases {
            let err =
                ServerConfig::load(&ServeArgs::default(), env(&[(name, value)])).expect_err(name);
            match err {
                ServerError::InvalidSetting { key: got, .. } => assert_eq!(got, key, "{name}"),
                other => panic!("{name}: unexpected error {other}"),
            }
        }
    }

    #[test]
    fn bad_topic_default_is_rejected_by_the_broker_parser() {
        let vars = env(&[("SLUICE_TOPIC_DEFAULTS_SEGMENT_BYTES", "10")]);
        let err = ServerConfig::load(&ServeArgs::default(), vars).expect_err("too small");
        assert!(matches!(err, ServerError::TopicDefaults(_)), "{err}");
        assert!(err.to_string().contains("segment.bytes"), "{err}");
    }

    #[test]
    fn unknown_file_keys_and_missing_files_are_errors() {
        let file = config_file("listen_addr = \"127.0.0.1:1\"");
        let err = ServerConfig::load(&args_with_file(&file), env(&[])).expect_err("unknown key");
        assert!(matches!(err, ServerError::ConfigParse { .. }), "{err}");

        let dir = tempfile::tempdir().expect("temp dir");
        let args = ServeArgs {
            config: Some(dir.path().join("missing.toml")),
            ..ServeArgs::default()
        };
        let err = ServerConfig::load(&args, env(&[])).expect_err("missing file");
        assert!(matches!(err, ServerError::ConfigRead { .. }), "{err}");
    }

    #[test]
    fn env_names_map_to_setting_paths() {
        assert_eq!(setting_key("SLUICE_DATA_DIR"), "data_dir");
        assert_eq!(
            setting_key("SLUICE_LIMITS_MAX_WAIT_MS"),
            "limits.max_wait_ms"
        );
        assert_eq!(
            setting_key("SLUICE_TOPIC_DEFAULTS_MAX_MESSAGE_BYTES"),
            "topic_defaults.max.message.bytes"
        );
        assert_eq!(
            setting_key("SLUICE_PRODUCERS_ID_EXPIRATION_MS"),
            "producers.id_expiration_ms"
        );
    }

    #[test]
    fn producer_settings_come_from_file_and_env_and_are_checked() {
        let config = ServerConfig::load(&ServeArgs::default(), env(&[])).expect("load");
        assert_eq!(config.broker.producers, ProducerConfig::default());
        let file = config_file(
            r#"
            [producers]
            id_expiration_ms = 60000
            max_per_partition = 50
            "#,
        );
        let vars = env(&[("SLUICE_PRODUCERS_MAX_PER_PARTITION", "70")]);
        let config = ServerConfig::load(&args_with_file(&file), vars).expect("load");
        assert_eq!(
            config.broker.producers.id_expiration,
            Duration::from_secs(60)
        );
        assert_eq!(config.broker.producers.max_per_partition, 70);
        for (name, needle) in [
            (
                "SLUICE_PRODUCERS_ID_EXPIRATION_MS",
                "producers.id_expiration",
            ),
            (
                "SLUICE_PRODUCERS_MAX_PER_PARTITION",
                "producers.max_per_partition",
            ),
        ] {
            let err = ServerConfig::load(&ServeArgs::default(), env(&[(name, "0")]))
                .expect_err("0 refused");
            assert!(matches!(err, ServerError::Producers(_)), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn group_timing_comes_from_file_and_env_and_is_checked() {
        let file = config_file(
            r#"
            [groups]
            heartbeat_interval_ms = 500
            "#,
        );
        let vars = env(&[("SLUICE_GROUPS_DEFAULT_SESSION_TIMEOUT_MS", "10000")]);
        let config = ServerConfig::load(&args_with_file(&file), vars).expect("load");
        assert_eq!(
            config.broker.groups.heartbeat_interval,
            Duration::from_millis(500)
        );
        assert_eq!(
            config.broker.groups.default_session_timeout,
            Duration::from_secs(10)
        );
        let bad = env(&[("SLUICE_GROUPS_MIN_SESSION_TIMEOUT_MS", "0")]);
        let err = ServerConfig::load(&ServeArgs::default(), bad).expect_err("0 ms refused");
        assert!(err.to_string().contains("min_session_timeout"), "{err}");
    }

    #[test]
    fn client_assigned_group_settings_come_from_file_and_env_and_are_checked() {
        let defaults = ServerConfig::load(&ServeArgs::default(), env(&[])).expect("load");
        assert_eq!(
            defaults.broker.groups.initial_rebalance_delay,
            Duration::from_secs(3)
        );
        assert_eq!(defaults.broker.groups.max_members, 1000);
        let file = config_file(
            r#"
            [groups]
            initial_rebalance_delay_ms = 0
            "#,
        );
        let vars = env(&[("SLUICE_GROUPS_MAX_MEMBERS", "50")]);
        let config = ServerConfig::load(&args_with_file(&file), vars).expect("load");
        assert_eq!(config.broker.groups.initial_rebalance_delay, Duration::ZERO);
        assert_eq!(config.broker.groups.max_members, 50);
        let bad = env(&[("SLUICE_GROUPS_MAX_MEMBERS", "0")]);
        let err = ServerConfig::load(&ServeArgs::default(), bad).expect_err("0 members refused");
        assert!(err.to_string().contains("max_members"), "{err}");
    }

    #[test]
    fn offsets_compaction_settings_come_from_file_and_env_and_are_checked() {
        let file = config_file(
            r#"
            [groups]
            offsets_compaction_ratio = 8
            "#,
        );
        let vars = env(&[("SLUICE_GROUPS_OFFSETS_COMPACTION_MIN_BYTES", "65536")]);
        let config = ServerConfig::load(&args_with_file(&file), vars).expect("load");
        assert_eq!(config.broker.groups.offsets_compaction_ratio, 8);
        assert_eq!(config.broker.groups.offsets_compaction_min_bytes, 65536);
        let bad = env(&[("SLUICE_GROUPS_OFFSETS_COMPACTION_RATIO", "1")]);
        let err = ServerConfig::load(&ServeArgs::default(), bad).expect_err("ratio 1 refused");
        assert!(
            err.to_string().contains("offsets_compaction_ratio"),
            "{err}"
        );
    }

    #[test]
    fn share_settings_come_from_file_and_env_and_are_checked() {
        let defaults = ServerConfig::load(&ServeArgs::default(), env(&[])).expect("load");
        assert_eq!(defaults.broker.share, ShareConfig::default());
        let file = config_file(
            r#"
            [share]
            record_lock_duration_ms = 5000
            auto_offset_reset = "earliest"
            max_in_flight_per_partition = 500
            "#,
        );
        let vars = env(&[("SLUICE_SHARE_MAX_PREFETCH", "64")]);
        let config = ServerConfig::load(&args_with_file(&file), vars).expect("load");
        let share = &config.broker.share;
        assert_eq!(share.defaults.record_lock_duration, Duration::from_secs(5));
        assert_eq!(share.defaults.auto_offset_reset, ShareOffsetReset::Earliest);
        assert_eq!(
            (share.max_prefetch, share.max_in_flight_per_partition),
            (64, 500)
        );
        let bad = env(&[("SLUICE_SHARE_DELIVERY_ATTEMPT_LIMIT", "0")]);
        let err = ServerConfig::load(&ServeArgs::default(), bad).expect_err("limit 0 refused");
        assert!(err.to_string().contains("delivery.attempt.limit"), "{err}");
        let bad = env(&[("SLUICE_SHARE_AUTO_OFFSET_RESET", "middle")]);
        let err = ServerConfig::load(&ServeArgs::default(), bad).expect_err("refused");
        assert!(err.to_string().contains("earliest or latest"), "{err}");
    }
}
