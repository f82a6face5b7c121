//! Log file integrity validation, as `aws cloudtrail validate-logs` does it, and stricter.
//!
//! Walks a trail's digest chain from the newest digest back to the start time, checking each
//! digest's signature and location and each listed log file's SHA-256. Beyond the aws CLI it
//! also reports digests missing between two that survive (two or more deleted in a row, which
//! the CLI passes over), and log files in the bucket that no digest lists (added files).
//!
//! A digest's `logFiles` may list Insights files (`CloudTrail-Insight/`) as well as log files:
//! each entry is checked by its bucket, key and hash alone, as the aws CLI checks it, and added
//! files are looked for in both folders.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest as _, Sha256};

use opentrail_model::record::format_event_time;

use crate::digest::{DigestDocument, signing_string, verify_signature};
use crate::layout::{LogKind, digest_key, digest_key_time, region_folder};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where the validator reads buckets from (an S3 client, or the local store).
#[async_trait]
pub trait ObjectSource: Send + Sync {
    /// All keys under `prefix` that sort after `marker`, in key order.
    async fn list(&self, bucket: &str, prefix: &str, marker: &str) -> Result<Vec<String>, SourceError>;
    /// An object's bytes and user metadata; `None` if there is no such key.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, HashMap<String, String>)>, SourceError>;
}

/// What to validate.
#[derive(Debug, Clone)]
pub struct ValidationTarget {
    pub bucket: String,
    pub prefix: Option<String>,
    pub account: String,
    pub trail_name: String,
    pub home_region: String,
    /// The Region whose files are validated (the CLI's `--region`).
    pub region: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Digest,
    Log,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Valid {
        kind: FileKind,
        url: String,
    },
    Invalid {
        kind: FileKind,
        url: String,
        reason: String,
    },
    /// The chain restarts: no digest covers this span (logging or validation was off).
    Gap {
        from: String,
        to: String,
    },
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Oldest digest start and newest digest end among the valid digests.
    pub found_range: Option<(String, String)>,
    pub digests_listed: usize,
}

impl Report {
    pub fn count(&self, kind: FileKind) -> (usize, usize) {
        let mut valid = 0;
        let mut invalid = 0;
        for finding in &self.findings {
            match finding {
                Finding::Valid { kind: k, .. } if *k == kind => valid += 1,
                Finding::Invalid { kind: k, .. } if *k == kind => invalid += 1,
                _ => {}
            }
        }
        (valid, invalid)
    }

    pub fn is_valid(&self) -> bool {
        !self.findings.iter().any(|f| matches!(f, Finding::Invalid { .. }))
    }
}

fn gunzip_single_member(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut decoder = flate2::bufread::GzDecoder::new(bytes);
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).map_err(|_| "invalid format".to_owned())?;
    if !decoder.into_inner().is_empty() {
        return Err("unexpected data after end of compressed stream".to_owned());
    }
    Ok(out)
}

struct ValidDigest {
    document: DigestDocument,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

fn url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// Fetches and checks one digest. `Err` carries the reason it is invalid.
async fn check_digest(
    source: &dyn ObjectSource,
    public_keys: &HashMap<String, Vec<u8>>,
    target: &ValidationTarget,
    bucket: &str,
    key: &str,
) -> Result<Result<ValidDigest, String>, SourceError> {
    let Some((bytes, metadata)) = source.get(bucket, key).await? else { return Ok(Err("not found".into())) };
    let uncompressed = match gunzip_single_member(&bytes) {
        Ok(uncompressed) => uncompressed,
        Err(reason) => return Ok(Err(reason)),
    };
    let Ok(document) = serde_json::from_slice::<DigestDocument>(&uncompressed) else {
        return Ok(Err("invalid format".into()));
    };
    let (Some(signature), Some(_)) = (metadata.get("signature"), metadata.get("signature-algorithm")) else {
        return Ok(Err("signature verification failed".into()));
    };
    if document.digest_s3_bucket != bucket || document.digest_s3_object != key {
        return Ok(Err(format!(
            "invalid format: has been moved from its original location s3://{}/{}",
            document.digest_s3_bucket, document.digest_s3_object
        )));
    }
    let fingerprint = &document.digest_public_key_fingerprint;
    let Some(public_key) = public_keys.get(fingerprint) else {
        return Ok(Err(format!("public key not found in region {} for fingerprint {fingerprint}", target.home_region)));
    };
    let string = signing_string(&document, &hex::encode(Sha256::digest(&uncompressed)));
    if verify_signature(public_key, &string, signature).is_err() {
        return Ok(Err("signature verification failed".into()));
    }
    let (Some(start), Some(end)) = (parse_time(&document.digest_start_time), parse_time(&document.digest_end_time))
    else {
        return Ok(Err("invalid format".into()));
    };
    Ok(Ok(ValidDigest { document, start, end }))
}

async fn check_log_file(
    source: &dyn ObjectSource,
    bucket: &str,
    key: &str,
    expected_sha256: &str,
) -> Result<Option<String>, SourceError> {
    let Some((bytes, _)) = source.get(bucket, key).await? else { return Ok(Some("not found".into())) };
    Ok(match gunzip_single_member(&bytes) {
        Err(reason) => Some(reason),
        Ok(uncompressed) if hex::encode(Sha256::digest(&uncompressed)) != expected_sha256 => {
            Some("hash value doesn't match".into())
        }
        Ok(_) => None,
    })
}

/// The digest keys of the trail in range, oldest first, as the aws CLI lists them.
async fn list_digests(source: &dyn ObjectSource, target: &ValidationTarget) -> Result<Vec<String>, SourceError> {
    let prefix = region_folder(target.prefix.as_deref(), &target.account, "CloudTrail-Digest", &target.region);
    let marker = digest_key(
        target.prefix.as_deref(),
        &target.account,
        &target.region,
        &target.trail_name,
        &target.home_region,
        target.start - Duration::minutes(1),
    );
    let name_part = format!("_CloudTrail-Digest_{}_{}_{}_", target.region, target.trail_name, target.home_region);
    let until = target.end + Duration::hours(1);
    let mut keys = Vec::new();
    for key in source.list(&target.bucket, &prefix, &marker).await? {
        let Some(time) = digest_key_time(&key) else { continue };
        if !key.contains(&name_part) || key.ends_with("_backfill.json.gz") {
            continue;
        }
        if time > until {
            break;
        }
        if time >= target.start {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Validates the trail's digests and log files in `[start, end]`.
pub async fn validate(
    source: &dyn ObjectSource,
    public_keys: &HashMap<String, Vec<u8>>,
    target: &ValidationTarget,
) -> Result<Report, SourceError> {
    let mut listed = list_digests(source, target).await?;
    let mut report = Report { digests_listed: listed.len(), ..Report::default() };
    let mut referenced_logs = BTreeSet::new();
    let mut widest_window = Duration::zero();
    // The digest to check next, and the time its end must have (from the newer digest's start).
    let mut next: Option<(String, String, Option<DateTime<Utc>>)> =
        listed.pop().map(|key| (target.bucket.clone(), key, None));
    let (mut oldest_start, mut newest_end) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    while let Some((bucket, key, expected_end)) = next.take() {
        listed.retain(|k| !(bucket == target.bucket && *k == key));
        let checked = check_digest(source, public_keys, target, &bucket, &key).await?;
        let digest = match checked {
            Ok(digest) => digest,
            Err(reason) => {
                let missing = reason == "not found";
                report.findings.push(Finding::Invalid { kind: FileKind::Digest, url: url(&bucket, &key), reason });
                let older = listed.pop();
                if missing
                    && let (Some(missing_end), Some(older_key)) =
                        (expected_end.or_else(|| digest_key_time(&key)), &older)
                    && let Some(older_end) = digest_key_time(older_key)
                    && !widest_window.is_zero()
                    && missing_end - older_end > widest_window + widest_window / 2
                {
                    // More than one digest's span is missing: at least two digests in a row.
                    report.findings.push(Finding::Invalid {
                        kind: FileKind::Digest,
                        url: url(
                            &bucket,
                            &region_folder(
                                target.prefix.as_deref(),
                                &target.account,
                                "CloudTrail-Digest",
                                &target.region,
                            ),
                        ),
                        reason: format!(
                            "not found: more digest files are missing between {} and {}",
                            format_event_time(older_end),
                            format_event_time(missing_end)
                        ),
                    });
                }
                next = older.map(|k| (target.bucket.clone(), k, None));
                continue;
            }
        };
        report.findings.push(Finding::Valid { kind: FileKind::Digest, url: url(&bucket, &key) });
        widest_window = widest_window.max(digest.end - digest.start);
        oldest_start = Some(oldest_start.map_or(digest.start, |o| o.min(digest.start)));
        newest_end = Some(newest_end.map_or(digest.end, |n| n.max(digest.end)));
        for file in &digest.document.log_files {
            referenced_logs.insert((file.s3_bucket.clone(), file.s3_object.clone()));
            let file_url = url(&file.s3_bucket, &file.s3_object);
            match check_log_file(source, &file.s3_bucket, &file.s3_object, &file.hash_value).await? {
                None => report.findings.push(Finding::Valid { kind: FileKind::Log, url: file_url }),
                Some(reason) => report.findings.push(Finding::Invalid { kind: FileKind::Log, url: file_url, reason }),
            }
        }
        if digest.start < target.start {
            break;
        }
        let document = &digest.document;
        next = match (&document.previous_digest_s3_bucket, &document.previous_digest_s3_object) {
            (Some(previous_bucket), Some(previous_key)) => {
                Some((previous_bucket.clone(), previous_key.clone(), Some(digest.start)))
            }
            _ => {
                let older = listed.pop();
                if let Some(older_key) = &older {
                    report.findings.push(Finding::Gap {
                        from: digest_key_time(older_key).map(format_event_time).unwrap_or_default(),
                        to: document.digest_start_time.clone(),
                    });
                }
                older.map(|k| (target.bucket.clone(), k, None))
            }
        };
    }
    if let (Some(oldest), Some(newest)) = (oldest_start, newest_end) {
        report.found_range = Some((format_event_time(oldest), format_event_time(newest)));
        find_unlisted_logs(source, target, &referenced_logs, oldest, newest, widest_window, &mut report).await?;
    }
    Ok(report)
}

/// Log and Insights files in the covered span that no digest lists: added to the bucket after
/// the fact.
async fn find_unlisted_logs(
    source: &dyn ObjectSource,
    target: &ValidationTarget,
    referenced: &BTreeSet<(String, String)>,
    oldest: DateTime<Utc>,
    newest: DateTime<Utc>,
    widest_window: Duration,
    report: &mut Report,
) -> Result<(), SourceError> {
    // A file delivered in the newest digest's window may not be digested yet; anything older
    // must be in a digest.
    let covered_until = newest - widest_window;
    for kind in LogKind::ALL {
        let folder = region_folder(target.prefix.as_deref(), &target.account, kind.folder(), &target.region);
        let marker = format!("{folder}{}", (oldest - Duration::days(1)).format("%Y/%m/%d"));
        for key in source.list(&target.bucket, &folder, &marker).await? {
            let Some(stamp) = key.rsplit('_').nth(1) else { continue };
            let Ok(delivered) = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%MZ") else { continue };
            let delivered = delivered.and_utc();
            if delivered > newest {
                break;
            }
            if delivered >= oldest
                && delivered + Duration::minutes(1) <= covered_until
                && !referenced.contains(&(target.bucket.clone(), key.clone()))
            {
                report.findings.push(Finding::Invalid {
                    kind: FileKind::Log,
                    url: url(&target.bucket, &key),
                    reason: "not listed in any digest file".into(),
                });
            }
        }
    }
    Ok(())
}
