//! Lake query results delivered to a bucket (`StartQuery` with `DeliveryS3Uri`): the rows as
//! gzip CSV under `<prefix>/AWSLogs/<account>/CloudTrail-Lake/Query/<yyyy>/<mm>/<dd>/<query id>/`
//! with a `result_sign.json` that signs the files' SHA-256 with the Region's digest key, as
//! `aws cloudtrail verify-query-results` checks them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use opentrail_delivery::digest::sign_string;
use opentrail_lake::{QueryResults, QueryService};
use opentrail_model::lake::QueryStatus;
use opentrail_model::{AccountId, Region};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::delivery::DeliveryContext;

/// How long delivery waits for a query: past the query timeout.
const WAIT: Duration = Duration::from_secs(3700);

/// What is wrong with a `DeliveryS3Uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryUriError {
    /// Not `s3://` followed by a valid bucket name (`InvalidS3BucketNameException`).
    Bucket(String),
    /// A prefix with an empty, `.` or `..` segment, a backslash or a control character
    /// (`InvalidS3PrefixException`): keys are joined from it, so it must name one place only.
    Prefix(String),
}

/// `s3://bucket[/prefix]` split into bucket and prefix (without slashes at its ends). One
/// slash may end the URI; the prefix's segments are otherwise non-empty and neither `.` nor
/// `..`.
pub fn check_delivery_uri(uri: &str) -> Result<(String, String), DeliveryUriError> {
    let not_uri = || DeliveryUriError::Bucket(format!("DeliveryS3Uri {uri} is not s3://bucket[/prefix]."));
    let rest = uri.strip_prefix("s3://").ok_or_else(not_uri)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !opentrail_buckets::valid_bucket_name(bucket) {
        return Err(not_uri());
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    let bad_segment = |segment: &str| segment.is_empty() || segment == "." || segment == "..";
    if !prefix.is_empty()
        && (prefix.split('/').any(bad_segment) || prefix.contains('\\') || prefix.chars().any(char::is_control))
    {
        return Err(DeliveryUriError::Prefix(format!(
            "The prefix of DeliveryS3Uri {uri} is not valid: its segments must not be empty, \".\" or \"..\"."
        )));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

pub fn parse_delivery_uri(uri: &str) -> Option<(String, String)> {
    check_delivery_uri(uri).ok()
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv(results: &QueryResults) -> String {
    let mut text = results.columns.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",");
    text.push('\n');
    for row in &results.rows {
        let fields: Vec<String> = row.iter().map(|v| csv_field(v.as_deref().unwrap_or(""))).collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    text
}

/// Writes a finished query's files; returns the delivery status to report.
async fn deliver(
    queries: &QueryService,
    delivery: &DeliveryContext,
    account: &AccountId,
    region: &Region,
    query_id: &str,
    uri: &str,
) -> &'static str {
    let Some((bucket, prefix)) = parse_delivery_uri(uri) else { return "FAILED" };
    let results = match queries.results(query_id) {
        Ok(Some(results)) => results,
        _ => return "FAILED",
    };
    let now = Utc::now();
    let folder = format!(
        "{}AWSLogs/{}/CloudTrail-Lake/Query/{}/{query_id}",
        if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
        account.as_str(),
        now.format("%Y/%m/%d")
    );
    let gzipped = opentrail_delivery::logfile::gzip(csv(&results).as_bytes());
    let file_hash = hex::encode(Sha256::digest(&gzipped));
    let destination = delivery.destinations.destination(&bucket);
    if destination.put_new(&format!("{folder}/result_1.csv.gz"), Bytes::from(gzipped), &Vec::new()).await.is_err() {
        return "FAILED";
    }
    let Ok(key) = delivery.keys.current(region.as_str(), now) else { return "FAILED_SIGNING_FILE" };
    let Ok(signature) = sign_string(&key.private_der, &file_hash) else { return "FAILED_SIGNING_FILE" };
    let sign = json!({
        "version": "1.0",
        "region": region.as_str(),
        "files": [{"fileHashValue": file_hash, "fileName": "result_1.csv.gz"}],
        "hashAlgorithm": "SHA-256",
        "signatureAlgorithm": "SHA256withRSA",
        "queryCompleteTime": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "hashSignature": signature,
        "publicKeyFingerprint": key.fingerprint,
    });
    let body = Bytes::from(sign.to_string());
    match destination.put_new(&format!("{folder}/result_sign.json"), body, &Vec::new()).await {
        Ok(()) => "SUCCESS",
        Err(_) => "FAILED_SIGNING_FILE",
    }
}

/// Waits for the query in the background, then delivers its results and records the outcome.
pub fn spawn(
    queries: Arc<QueryService>,
    delivery: Arc<DeliveryContext>,
    account: AccountId,
    region: Region,
    query_id: String,
    uri: String,
) {
    tokio::spawn(async move {
        let status = match queries.wait(&account, &query_id, WAIT).await {
            Ok(Some(query)) if query.status == QueryStatus::Finished => {
                deliver(&queries, &delivery, &account, &region, &query_id, &uri).await
            }
            Ok(Some(query)) if query.status == QueryStatus::Cancelled => "CANCELLED",
            _ => "FAILED",
        };
        if let Err(error) = queries.set_delivery_status(&account, &query_id, status) {
            tracing::error!(%error, query = query_id, "cannot record the delivery status");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_uris_name_one_bucket_and_a_plain_prefix() {
        assert_eq!(check_delivery_uri("s3://my-bucket"), Ok(("my-bucket".into(), String::new())));
        assert_eq!(check_delivery_uri("s3://my-bucket/"), Ok(("my-bucket".into(), String::new())));
        assert_eq!(check_delivery_uri("s3://my-bucket/a/b/"), Ok(("my-bucket".into(), "a/b".into())));
        for bad in ["my-bucket", "s3://", "s3://Bad_Bucket/x", "https://my-bucket/x", "s3://a..b/x"] {
            assert!(matches!(check_delivery_uri(bad), Err(DeliveryUriError::Bucket(_))), "{bad}");
        }
        for bad in [
            "s3://my-bucket/../other-bucket",
            "s3://my-bucket/a/../../b",
            "s3://my-bucket//a",
            "s3://my-bucket/a//b",
            "s3://my-bucket/./a",
            "s3://my-bucket/a\\..\\b",
            "s3://my-bucket/a\nb",
        ] {
            assert!(matches!(check_delivery_uri(bad), Err(DeliveryUriError::Prefix(_))), "{bad}");
        }
    }
}
