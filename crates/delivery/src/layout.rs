//! Object keys, exactly as CloudTrail names its files in a bucket.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn with_prefix(prefix: Option<&str>, rest: String) -> String {
    match prefix.map(|p| p.trim_end_matches('/')).filter(|p| !p.is_empty()) {
        Some(prefix) => format!("{prefix}/{rest}"),
        None => rest,
    }
}

/// `[prefix/]AWSLogs/<account>/<kind>/<region>/` for a kind such as `CloudTrail-Digest`.
pub fn region_folder(prefix: Option<&str>, account: &str, kind: &str, region: &str) -> String {
    with_prefix(prefix, format!("AWSLogs/{account}/{kind}/{region}/"))
}

/// A 16-character alphanumeric string derived from `seed`: the "unique" part of a log file
/// name. Derived, not random, so a retried delivery produces the same key.
pub fn unique_suffix(seed: &str) -> String {
    Sha256::digest(seed.as_bytes()).iter().take(16).map(|byte| BASE62[*byte as usize % 62] as char).collect()
}

/// The kinds of log file a trail writes. Each has its own folder, and a file holds records of
/// one kind only: consumers (and Lake imports) read `CloudTrail/` as events and must never find
/// an Insights record there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogKind {
    /// Management, data and network activity events.
    Events,
    /// Insights events (unusual API call or error rates).
    Insights,
}

impl LogKind {
    pub const ALL: [LogKind; 2] = [LogKind::Events, LogKind::Insights];

    /// The folder under `AWSLogs/<acct>/`, which is also the kind's part of the file name.
    pub fn folder(self) -> &'static str {
        match self {
            LogKind::Events => "CloudTrail",
            LogKind::Insights => "CloudTrail-Insight",
        }
    }
}

/// `[prefix/]AWSLogs/<acct>/<folder>/<region>/<yyyy>/<mm>/<dd>/<acct>_<folder>_<region>_<yyyymmddThhmmZ>_<unique>.json.gz`,
/// where `<folder>` is `CloudTrail` for events and `CloudTrail-Insight` for Insights events.
pub fn log_file_key(
    prefix: Option<&str>,
    account: &str,
    kind: LogKind,
    region: &str,
    delivered: DateTime<Utc>,
    unique: &str,
) -> String {
    let name = kind.folder();
    let folder = region_folder(prefix, account, name, region);
    format!(
        "{folder}{}/{account}_{name}_{region}_{}_{unique}.json.gz",
        delivered.format("%Y/%m/%d"),
        delivered.format("%Y%m%dT%H%MZ")
    )
}

/// `[prefix/]AWSLogs/<acct>/CloudTrail-Digest/<region>/<yyyy>/<mm>/<dd>/<acct>_CloudTrail-Digest_<region>_<trail>_<home>_<yyyymmddThhmmssZ>.json.gz`,
/// dated by the digest's end time.
pub fn digest_key(
    prefix: Option<&str>,
    account: &str,
    region: &str,
    trail_name: &str,
    home_region: &str,
    end: DateTime<Utc>,
) -> String {
    let folder = region_folder(prefix, account, "CloudTrail-Digest", region);
    format!(
        "{folder}{}/{account}_CloudTrail-Digest_{region}_{trail_name}_{home_region}_{}.json.gz",
        end.format("%Y/%m/%d"),
        end.format("%Y%m%dT%H%M%SZ")
    )
}

/// The end time a digest key carries (`YYYYMMDDTHHMMSSZ` just before `.json.gz`, or before
/// `_backfill.json.gz`), read at the fixed position the aws CLI reads it from.
pub fn digest_key_time(key: &str) -> Option<DateTime<Utc>> {
    let stem = key.strip_suffix("_backfill.json.gz").or_else(|| key.strip_suffix(".json.gz"))?;
    let stamp = stem.get(stem.len().checked_sub(16)?..)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok().map(|time| time.and_utc())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn log_keys_match_cloudtrails_pattern() {
        let time = Utc.with_ymd_and_hms(2015, 8, 1, 2, 10, 33).unwrap();
        let key = log_file_key(None, "111122223333", LogKind::Events, "us-east-2", time, &unique_suffix("x"));
        assert!(key.starts_with(
            "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/01/111122223333_CloudTrail_us-east-2_20150801T0210Z_"
        ));
        let unique = &key[key.len() - 24..key.len() - 8];
        assert!(unique.chars().all(|c| c.is_ascii_alphanumeric()), "{unique}");
        assert_eq!(unique_suffix("x"), unique_suffix("x"));
        assert_ne!(unique_suffix("x"), unique_suffix("y"));
        let prefixed = log_file_key(Some("team/"), "111122223333", LogKind::Events, "us-east-2", time, "u");
        assert!(prefixed.starts_with("team/AWSLogs/"));
    }

    #[test]
    fn insights_keys_match_cloudtrails_pattern() {
        let time = Utc.with_ymd_and_hms(2019, 10, 15, 21, 14, 5).unwrap();
        let key = log_file_key(Some("team"), "123456789012", LogKind::Insights, "us-east-1", time, "Mu0KsOhtH1ar15ZZ");
        assert_eq!(
            key,
            "team/AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2019/10/15/\
             123456789012_CloudTrail-Insight_us-east-1_20191015T2114Z_Mu0KsOhtH1ar15ZZ.json.gz"
        );
    }

    #[test]
    fn digest_keys_carry_their_end_time() {
        let end = Utc.with_ymd_and_hms(2015, 8, 17, 15, 1, 31).unwrap();
        let key = digest_key(None, "111122223333", "us-east-2", "trail", "us-east-2", end);
        assert_eq!(
            key,
            "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_trail_us-east-2_20150817T150131Z.json.gz"
        );
        assert_eq!(digest_key_time(&key), Some(end));
        let backfill = key.replace(".json.gz", "_backfill.json.gz");
        assert_eq!(digest_key_time(&backfill), Some(end));
        assert_eq!(digest_key_time("short.json.gz"), None);
    }
}
