//! Command-line flags of `sluice serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_kafka::Advertised;

use crate::config::{
    AmqpSettings, AuthSettings, GroupSettings, KafkaSettings, LimitSettings, ListenAddr, LogFormat,
    ProducerSettings, Settings, ShareSettings, TlsSettings,
};

/// Flags of `sluice serve`. Each overrides the same setting from the environment and the
/// config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Directory holding topics and their partition logs [env: SLUICE_DATA_DIR] [default: ./sluice-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [env: SLUICE_LISTEN] [default: 127.0.0.1:50051]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the metrics endpoint (/metrics, /healthz, /readyz), or `off`
    /// [env: SLUICE_METRICS_LISTEN] [default: 127.0.0.1:9644]
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_listen: Option<ListenAddr>,
    /// Address of the Kafka wire-protocol listener, or `off` [env: SLUICE_KAFKA_LISTEN] [default: 127.0.0.1:9092]
    #[arg(long, value_name = "ADDR|off")]
    pub kafka_listen: Option<ListenAddr>,
    /// HOST:PORT that Kafka Metadata hands out as this broker's address [env: SLUICE_KAFKA_ADVERTISED] [default: the address each client connected to]
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka_advertised: Option<Advertised>,
    /// Address of the AMQP 0-9-1 listener, or `off` [env: SLUICE_AMQP_LISTEN] [default: 127.0.0.1:5672]
    #[arg(long, value_name = "ADDR|off")]
    pub amqp_listen: Option<ListenAddr>,
    /// TOML file with settings [env: SLUICE_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info,sluice_broker=debug` [env: SLUICE_LOG, then RUST_LOG] [default: info]
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log line format [env: SLUICE_LOG_FORMAT] [default: text]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// How often retention runs, in ms [env: SLUICE_RETENTION_CHECK_INTERVAL_MS] [default: 300000]
    #[arg(long, value_name = "MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// A topic default in Kafka's notation, e.g. `retention.ms=86400000`; repeatable
    /// [env: SLUICE_TOPIC_DEFAULTS_<KEY>, e.g. SLUICE_TOPIC_DEFAULTS_RETENTION_MS]
    #[arg(long = "topic-default", value_name = "KEY=VALUE", value_parser = key_value)]
    pub topic_defaults: Vec<(String, String)>,

    /// Every client must authenticate (SASL, AMQP login, gRPC credentials or a client
    /// certificate) and ACLs are enforced [env: SLUICE_AUTH_ENABLED]
    #[arg(long, help_heading = "Security")]
    pub auth: bool,
    /// Serve addresses beyond loopback even without --auth [env: SLUICE_AUTH_INSECURE]
    #[arg(long, help_heading = "Security")]
    pub insecure: bool,
    /// Users that bypass ACLs, comma-separated [env: SLUICE_AUTH_SUPERUSERS]
    #[arg(
        long,
        value_name = "NAME[,NAME...]",
        value_delimiter = ',',
        help_heading = "Security"
    )]
    pub superusers: Option<Vec<String>>,
    /// PEM certificate chain: every listener serves TLS with it (unless `tls.<listener>`
    /// is false in the config file) [env: SLUICE_TLS_CERT]
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; one needs the other [env: SLUICE_TLS_KEY]
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: TLS clients must present a certificate they signed, whose
    /// subject's common name becomes the client's principal [env: SLUICE_TLS_CLIENT_CA]
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub tls_client_ca: Option<PathBuf>,

    /// Most partitions per topic [env: SLUICE_LIMITS_MAX_PARTITIONS] [default: 1024]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_partitions: Option<u32>,
    /// Longest topic name [env: SLUICE_LIMITS_MAX_TOPIC_NAME_LEN] [default: 249]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_topic_name_len: Option<usize>,
    /// Cap on the max_bytes of one fetch [env: SLUICE_LIMITS_MAX_FETCH_BYTES] [default: 67108864]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_fetch_bytes: Option<usize>,
    /// Cap on how long a fetch waits for records, in ms [env: SLUICE_LIMITS_MAX_WAIT_MS] [default: 30000]
    #[arg(long, value_name = "MS", help_heading = "Limits")]
    pub max_wait_ms: Option<u64>,
    /// Most records in one produce request [env: SLUICE_LIMITS_MAX_RECORDS_PER_REQUEST] [default: 100000]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_records_per_request: Option<usize>,
    /// Largest request message [env: SLUICE_LIMITS_MAX_REQUEST_BYTES] [default: 67108864]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_request_bytes: Option<usize>,
    /// Cap on the records of one Subscribe message [env: SLUICE_LIMITS_MAX_SUBSCRIBE_BYTES] [default: 1048576]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_subscribe_bytes: Option<usize>,
    /// Most Subscribe, SubscribeBatches and Consume calls open at once, server-wide [env: SLUICE_LIMITS_MAX_SUBSCRIPTIONS] [default: 10000]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_subscriptions: Option<usize>,
    /// Most calls open at once on one connection (HTTP/2 max concurrent streams) [env: SLUICE_LIMITS_MAX_STREAMS_PER_CONNECTION] [default: 1024]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_streams_per_connection: Option<u32>,
    /// Bytes of record batches queued or being appended at once, server-wide; producers wait past it [env: SLUICE_LIMITS_MAX_IN_FLIGHT_BYTES] [default: 268435456]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_in_flight_bytes: Option<usize>,
    /// How long a produce may wait for room in max_in_flight_bytes before it fails [env: SLUICE_LIMITS_PRODUCE_WAIT_MS] [default: 30000]
    #[arg(long, value_name = "MS", help_heading = "Limits")]
    pub produce_wait_ms: Option<u64>,
    /// Most bytes the records of one compressed batch may decompress to; produce refuses past it [env: SLUICE_LIMITS_MAX_DECOMPRESSED_BATCH_BYTES] [default: 67108864]
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_decompressed_batch_bytes: Option<usize>,
}

impl ServeArgs {
    /// The settings these flags give.
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            data_dir: self.data_dir.clone(),
            log: self.log.clone(),
            log_format: self.log_format,
            retention_check_interval_ms: self.retention_check_interval_ms,
            limits: LimitSettings {
                max_partitions: self.max_partitions,
                max_topic_name_len: self.max_topic_name_len,
                max_fetch_bytes: self.max_fetch_bytes,
                max_wait_ms: self.max_wait_ms,
                max_records_per_request: self.max_records_per_request,
                max_request_bytes: self.max_request_bytes,
                max_subscribe_bytes: self.max_subscribe_bytes,
                max_subscriptions: self.max_subscriptions,
                max_streams_per_connection: self.max_streams_per_connection,
                max_in_flight_bytes: self.max_in_flight_bytes,
                produce_wait_ms: self.produce_wait_ms,
                max_decompressed_batch_bytes: self.max_decompressed_batch_bytes,
            },
            // Group timing, share group settings and producer memory are set in the config
            // file or the environment only.
            groups: GroupSettings::default(),
            share: ShareSettings::default(),
            kafka: KafkaSettings {
                listen: self.kafka_listen,
                advertised: self.kafka_advertised.clone(),
                ..KafkaSettings::default()
            },
            amqp: AmqpSettings {
                listen: self.amqp_listen,
                ..AmqpSettings::default()
            },
            producers: ProducerSettings::default(),
            auth: AuthSettings {
                enabled: self.auth.then_some(true),
                insecure: self.insecure.then_some(true),
                superusers: self.superusers.clone(),
                ..AuthSettings::default()
            },
            tls: TlsSettings {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                client_ca: self.tls_client_ca.clone(),
                ..TlsSettings::default()
            },
            topic_defaults: self.topic_defaults.iter().cloned().collect(),
        }
    }
}

/// Parses a `KEY=VALUE` command-line argument (clap value parser).
pub fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {arg:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        Command::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map(|command| command.serve)
    }

    #[test]
    fn flags_become_settings() -> Result<(), clap::Error> {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--max-request-bytes",
            "4096",
            "--max-wait-ms",
            "10",
            "--topic-default",
            "retention.ms=1000",
            "--topic-default",
            "flush.policy=none",
            "--log-format",
            "json",
        ])?;
        let settings = args.settings();
        assert_eq!(settings.listen.map(|addr| addr.port()), Some(0));
        assert_eq!(settings.limits.max_request_bytes, Some(4096));
        assert_eq!(settings.limits.max_wait_ms, Some(10));
        assert_eq!(settings.log_format, Some(LogFormat::Json));
        assert_eq!(
            settings
                .topic_defaults
                .get("retention.ms")
                .map(String::as_str),
            Some("1000")
        );
        assert_eq!(
            settings
                .topic_defaults
                .get("flush.policy")
                .map(String::as_str),
            Some("none")
        );
        assert_eq!(parse(&[])?.settings(), Settings::default());
        Ok(())
    }

    #[test]
    fn malformed_flags_are_rejected() {
        assert!(parse(&["--topic-default", "retention.ms"]).is_err());
        assert!(parse(&["--topic-default", "=1"]).is_err());
        assert!(parse(&["--max-request-bytes", "-1"]).is_err());
        assert!(parse(&["--log-format", "xml"]).is_err());
    }
}
