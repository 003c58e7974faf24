//! Times as callbacks carry them: ISO 8601 in UTC with microseconds, the one formatter of
//! every timestamp in a body (`callback._iso()` in SQL writes the same text).

/// 2000-01-01, where Postgres counts timestamps from, in microseconds since 1970.
const POSTGRES_EPOCH_IN_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A time as bodies carry it: ISO 8601 in UTC with microseconds, as `callback._iso()` writes it.
pub fn iso(unix_micros: i64) -> String {
    use chrono::{Datelike, Timelike};
    match chrono::DateTime::from_timestamp_micros(unix_micros) {
        // Written field by field: a format string is parsed at each call (recording writes two).
        Some(t) if (0..=9999).contains(&t.year()) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_micros()
        ),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => String::new(),
    }
}

/// A Postgres `timestamptz` (microseconds since 2000-01-01) in seconds since 1970.
pub fn unix_seconds_of_postgres(at: i64) -> f64 {
    (at as f64 + POSTGRES_EPOCH_IN_UNIX_MICROS as f64) / 1e6
}

/// A Postgres `timestamptz` (microseconds since 2000-01-01) as bodies write it; empty for
/// infinity.
pub fn iso_of_postgres(at: i64) -> String {
    at.checked_add(POSTGRES_EPOCH_IN_UNIX_MICROS)
        .map_or_else(String::new, iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_callback_iso_writes_them() {
        // SELECT callback._iso('2026-11-23 01:02:03.000045+00') gives the same text.
        assert_eq!(iso(1_795_395_723_000_045), "2026-11-23T01:02:03.000045Z");
        assert_eq!(iso(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(iso(253_402_300_800_000_000), "+10000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn postgres_timestamps_count_from_2000() {
        assert_eq!(iso_of_postgres(0), "2000-01-01T00:00:00.000000Z");
        assert_eq!(iso_of_postgres(-1), "1999-12-31T23:59:59.999999Z");
        assert_eq!(iso_of_postgres(i64::MAX), "");
        assert_eq!(iso_of_postgres(i64::MIN), "");
    }
}
