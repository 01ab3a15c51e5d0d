//! Structured logs with `tracing`, written to stderr.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;
use crate::error::ServerError;

/// Installs the process-wide log subscriber: `filter` is a `tracing` filter (e.g.
/// `info,sluice_broker=debug`), lines go to stderr in `format`. Spans the filter enables
/// (the broker's `produce`, `produce_wait` and `fetch` spans at `debug`, with their topic
/// and partition) log one line when they close, with their busy and idle time.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), ServerError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|source| ServerError::LogFilter {
        filter: filter.to_owned(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(ServerError::Logging)
}
