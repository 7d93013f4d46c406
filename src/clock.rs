//! Wall-clock time as shroud stores and prints it.
//!
//! Times are stored as Unix milliseconds (`i64`) and printed as RFC 3339 in
//! UTC with millisecond precision (`2026-11-24T05:30:00.123Z`), the one format
//! used by the CLI, JSON output, the audit log and the HTTP API.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// RFC 3339 with exactly three fractional digits, always UTC.
const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 text (UTC, milliseconds) of a Unix-milliseconds time.
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(RFC3339_MILLIS).ok())
        .unwrap_or_else(|| format!("@{ms}ms"))
}

/// A compact UTC timestamp for file names: `20261124T053000Z`.
pub fn file_stamp(ms: i64) -> String {
    let text = rfc3339(ms - ms.rem_euclid(1000));
    text.replace(['-', ':'], "").replace(".000", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_970), "2026-11-18T11:06:40.970Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(file_stamp(1_795_000_000_123), "20261118T110640Z");
    }
}
