//! Settings of the Kafka front end.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Default largest request frame (Kafka's `socket.request.max.bytes`): 100 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 << 20;
/// Default most requests one connection may have in flight (decoded, not yet answered).
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS: usize = 64;
/// Default of `kafka.max_login_request_bytes` (Kafka's `sasl.server.max.receive.size`).
pub const DEFAULT_MAX_LOGIN_REQUEST_BYTES: usize = 512 * 1024;
/// Default time a share group member stays without a heartbeat (Kafka's
/// `group.share.session.timeout.ms`): 45 s.
pub const DEFAULT_SHARE_SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Default heartbeat interval handed to share group members (Kafka's
/// `group.share.heartbeat.interval.ms`): 5 s.
pub const DEFAULT_SHARE_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// The host and port Metadata hands out as this broker's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// Host name or address, as clients should dial it.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl FromStr for Advertised {
    type Err = String;

    /// `HOST:PORT`, e.g. `kafka.example.com:9092` or `[::1]:9092`.
    fn from_str(text: &str) -> Result<Advertised, String> {
        let text = text.trim();
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("expected HOST:PORT, got {text:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("expected HOST:PORT, got {text:?} (no host)"));
        }
        let port = port
            .parse()
            .map_err(|e| format!("expected HOST:PORT, got {text:?} (port: {e})"))?;
        Ok(Advertised {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Advertised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How the Kafka front end behaves; the listen address belongs to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// What Metadata returns as this broker's address (`kafka.advertised`); `None`: the
    /// address the client connected to, so `localhost` and `127.0.0.1` both work.
    pub advertised: Option<Advertised>,
    /// Create a topic that Metadata or Produce names and that does not exist
    /// (`kafka.auto_create_topics_enable`, Kafka's `auto.create.topics.enable`, default true).
    pub auto_create_topics: bool,
    /// Partitions of a topic created automatically, or by CreateTopics with -1
    /// (`kafka.num_partitions`, Kafka's `num.partitions`, default 1).
    pub num_partitions: u32,
    /// Largest request frame accepted (`kafka.max_request_bytes`, Kafka's
    /// `socket.request.max.bytes`, default 100 MiB). A larger frame closes the connection
    /// before anything is allocated for it.
    pub max_request_bytes: usize,
    /// Largest request frame accepted from a connection that has not logged in yet, under
    /// `--auth` (`kafka.max_login_request_bytes`, Kafka's `sasl.server.max.receive.size`,
    /// default 512 KiB): a stranger cannot make the server hold large frames.
    pub max_login_request_bytes: usize,
    /// Most requests one connection may have decoded and not yet answered
    /// (`kafka.max_in_flight_requests`, default 64); the connection is not read further
    /// until a response goes out.
    pub max_in_flight_requests: usize,
    /// How long a share group member may go without a heartbeat before it is removed and
    /// the records it holds are released (`kafka.share_session_timeout_ms`, Kafka's
    /// `group.share.session.timeout.ms`, default 45 s).
    pub share_session_timeout: Duration,
    /// The heartbeat interval ShareGroupHeartbeat hands to members
    /// (`kafka.share_heartbeat_interval_ms`, Kafka's `group.share.heartbeat.interval.ms`,
    /// default 5 s).
    pub share_heartbeat_interval: Duration,
}

impl Default for KafkaConfig {
    fn default() -> KafkaConfig {
        KafkaConfig {
            advertised: None,
            auto_create_topics: true,
            num_partitions: 1,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_login_request_bytes: DEFAULT_MAX_LOGIN_REQUEST_BYTES,
            max_in_flight_requests: DEFAULT_MAX_IN_FLIGHT_REQUESTS,
            share_session_timeout: DEFAULT_SHARE_SESSION_TIMEOUT,
            share_heartbeat_interval: DEFAULT_SHARE_HEARTBEAT_INTERVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_parse_and_print() {
        let plain: Advertised = "kafka.example.com:9093".parse().expect("parse");
        assert_eq!(
            (plain.host.as_str(), plain.port),
            ("kafka.example.com", 9093)
        );
        assert_eq!(plain.to_string(), "kafka.example.com:9093");
        let v6: Advertised = "[::1]:9092".parse().expect("parse");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:9092");
        for bad in ["localhost", ":9092", "host:port", "host:70000"] {
            assert!(bad.parse::<Advertised>().is_err(), "{bad} accepted");
        }
    }
}
