//! Times given on the command line.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Parses an RFC 3339 time into milliseconds since the Unix epoch.
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    let time = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|err| format!("{err} (expected RFC 3339, e.g. 2026-01-31T12:00:00Z)"))?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_become_epoch_milliseconds() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_time("2026-01-01T00:00:00.250Z"),
            Ok(1_767_225_600_250)
        );
        assert_eq!(
            parse_time("2026-01-01T01:00:00+01:00"),
            Ok(1_767_225_600_000)
        );
        assert!(parse_time("2026-01-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }
}
