//! Times on the command line: RFC 3339, epoch seconds, a UTC date or date-time without zone,
//! or a time ago (`30m`, `2h`, `7d`).

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return DateTime::from_timestamp_millis((seconds * 1000.0) as i64).context("time out of range");
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y%m%dT%H%M%SZ"] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let amount: i64 = number.parse().with_context(|| format!("cannot read the time '{text}'"))?;
    let ago = match unit {
        "m" => chrono::Duration::minutes(amount),
        "h" => chrono::Duration::hours(amount),
        "d" => chrono::Duration::days(amount),
        _ => bail!("cannot read the time '{text}': use RFC 3339, epoch seconds, or 30m / 2h / 7d"),
    };
    Ok(now - ago)
}

/// As the aws CLI prints times.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_several_ways() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("2026-11-25T10:00:00Z", now).unwrap(), parse_time("2h", now).unwrap());
        assert_eq!(parse_time("90m", now).unwrap().timestamp(), now.timestamp() - 5400);
        assert_eq!(parse_time("1700000000", now).unwrap().timestamp(), 1_700_000_000);
        assert_eq!(parse_time("2026-11-25", now).unwrap(), parse_time("12h", now).unwrap());
        assert_eq!(parse_time("2026-11-25 12:00:00", now).unwrap(), now);
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("5w", now).is_err());
    }
}
