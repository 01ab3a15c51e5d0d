//! Settings of the AMQP front end.

use std::time::Duration;

/// Default largest frame (RabbitMQ's `frame_max`): 128 KiB.
pub const DEFAULT_FRAME_MAX: u32 = 131_072;
/// Default most channels per connection (RabbitMQ's `channel_max`).
pub const DEFAULT_CHANNEL_MAX: u16 = 2047;
/// Default heartbeat the server proposes (RabbitMQ's `heartbeat`): 60 s.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);
/// Default largest message body (RabbitMQ's `max_message_size` is 128 MiB; Sluice's topics
/// take 1 MiB records by default, so the body limit follows the topic's).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 16 << 20;
/// Time a client has to open its connection (RabbitMQ's `handshake_timeout`): 10 s.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the AMQP front end behaves; the listen address belongs to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpConfig {
    /// The largest frame the server accepts and proposes (`amqp.frame_max`, at least 4096).
    pub frame_max: u32,
    /// The most channels a connection may open (`amqp.channel_max`, at least 1).
    pub channel_max: u16,
    /// The heartbeat interval the server proposes (`amqp.heartbeat_secs`; 0 proposes none,
    /// the client decides). A peer silent for two intervals is disconnected.
    pub heartbeat: Duration,
    /// The largest message body accepted (`amqp.max_message_bytes`); a larger one closes
    /// the channel with 406 PRECONDITION_FAILED. The queue's topic may refuse smaller ones
    /// (its `max.message.bytes`).
    pub max_message_bytes: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            frame_max: DEFAULT_FRAME_MAX,
            channel_max: DEFAULT_CHANNEL_MAX,
            heartbeat: DEFAULT_HEARTBEAT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl AmqpConfig {
    /// Checks the settings; the error names the setting and the rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.frame_max < 4096 {
            return Err(format!(
                "amqp.frame_max: {} is below 4096, the smallest frame AMQP 0-9-1 allows",
                self.frame_max
            ));
        }
        if self.channel_max == 0 {
            return Err("amqp.channel_max: must be at least 1".to_owned());
        }
        if self.heartbeat.as_secs() > u64::from(u16::MAX) {
            return Err(format!(
                "amqp.heartbeat_secs: {} exceeds {}",
                self.heartbeat.as_secs(),
                u16::MAX
            ));
        }
        if self.max_message_bytes == 0 {
            return Err("amqp.max_message_bytes: must be at least 1".to_owned());
        }
        Ok(())
    }
}
