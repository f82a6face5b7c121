//! Trail delivery: CloudTrail log files and signed digest chains, written to buckets, and the
//! validator that checks them (shared by `opentrail validate-logs`).
//!
//! The [`DeliveryWorker`] is a journal consumer per logging trail. It selects the events the
//! trail's selectors choose (and the Insights events its Insights selectors choose), writes them
//! as gzip log files in CloudTrail's key layout (Insights events in files of their own, under
//! `CloudTrail-Insight/`), and, with log file validation on, writes a digest per Region and
//! interval that lists those files with their SHA-256, chained to the previous digest and signed
//! with the Region's RSA key.
//!
//! Invariants:
//! - Every event a trail selects is in exactly one of its log files: batches are planned, then
//!   written, then committed with the cursor (see `worker`), and files are never overwritten.
//! - A digest lists exactly the files committed since the previous digest of its chain.
//! - Nothing here writes to the journal: delivery writes are not recorded as events.

pub mod digest;
pub mod keys;
pub mod layout;
pub mod logfile;
pub mod master_key;
pub mod notify;
pub mod validate;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentrail_buckets::{
    BucketError, Destination, LocalBuckets, LocalDestination, RemoteBucketConfig, RemoteDestination,
};

pub use crate::keys::SigningKeys;
pub use crate::master_key::{MasterKey, MasterKeyError, MasterKeySource};
pub use crate::notify::{NotificationStatus, NotificationTarget, Notifier};
pub use crate::worker::{
    BatchPlan, CONSUMER_NAME, Chain, DeliveryStatus, DeliveryWorker, DigestPlan, TrailDeliveryState, load_state,
};

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Store(#[from] opentrail_control::StoreError),
    #[error(transparent)]
    Journal(#[from] opentrail_journal::JournalError),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error(transparent)]
    Signing(#[from] digest::SigningError),
    #[error("delivery state cannot be decoded: {0}")]
    State(#[from] serde_json::Error),
    #[error("the signing key {0} is missing from the store")]
    MissingKey(String),
    #[error("a delivery task failed: {0}")]
    Task(String),
    /// The trail's bucket was deleted. Reported as S3 reports it (`NoSuchBucket`).
    #[error("NoSuchBucket: the bucket {0} no longer exists; update the trail to deliver again")]
    BucketDeleted(String),
    /// A bucket of the trail's bucket name exists but is not the one the trail was set up
    /// with (deleted and created again, perhaps by another account). Reported as S3 reports a
    /// bucket one may not write (`AccessDenied`).
    #[error("AccessDenied: the bucket {0} is not the bucket the trail was created or updated for")]
    BucketReplaced(String),
    /// Something else is stored at a key the trail was to write; it is left as it is.
    #[error("ObjectAlreadyExists: {key} in bucket {bucket} holds an object this trail did not write")]
    ObjectExists { bucket: String, key: String },
}

impl DeliveryError {
    /// The text `GetTrailStatus` shows as the latest delivery error: S3's error code where
    /// CloudTrail would show one, else the error itself.
    pub fn status_text(&self) -> String {
        match self {
            Self::BucketDeleted(_) => "NoSuchBucket".into(),
            Self::BucketReplaced(_) => "AccessDenied".into(),
            Self::Bucket(BucketError::NoSuchBucket(_)) => "NoSuchBucket".into(),
            other => other.to_string(),
        }
    }
}

/// Timing and size knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    /// How often a trail writes its log files (CloudTrail: about 5 minutes).
    pub delivery_interval: Duration,
    /// How long a digest covers (CloudTrail: one hour).
    pub digest_interval: Duration,
    /// Journal bytes that trigger a delivery before the interval, and the most one batch reads.
    pub max_batch_bytes: usize,
    /// How often the worker looks for due work.
    pub poll_interval: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            delivery_interval: Duration::from_secs(300),
            digest_interval: Duration::from_secs(3600),
            max_batch_bytes: 32 * 1024 * 1024,
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl DeliverySettings {
    /// The defaults with the intervals set; the poll keeps up with the shorter one.
    pub fn with_intervals(delivery_interval: Duration, digest_interval: Duration) -> Self {
        let poll_interval = Duration::from_secs(1).min(delivery_interval / 2).max(Duration::from_millis(50));
        Self { delivery_interval, digest_interval, poll_interval, ..Self::default() }
    }
}

/// Parses a duration such as `500ms`, `1s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let duration = match unit.trim() {
        "ms" => Duration::from_millis(number),
        "s" | "" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

/// Resolves a bucket name to where it lives: a configured remote bucket, or the local store.
pub struct Destinations {
    local: Arc<LocalBuckets>,
    remote: HashMap<String, Arc<RemoteDestination>>,
}

impl Destinations {
    pub fn new(local: Arc<LocalBuckets>, remote: &[RemoteBucketConfig]) -> Result<Self, BucketError> {
        let remote = remote
            .iter()
            .map(|config| Ok((config.bucket.clone(), Arc::new(RemoteDestination::new(config)?))))
            .collect::<Result<_, BucketError>>()?;
        Ok(Self { local, remote })
    }

    pub fn local(&self) -> &Arc<LocalBuckets> {
        &self.local
    }

    pub fn is_remote(&self, bucket: &str) -> bool {
        self.remote.contains_key(bucket)
    }

    pub fn remote(&self, bucket: &str) -> Option<&Arc<RemoteDestination>> {
        self.remote.get(bucket)
    }

    pub fn destination(&self, bucket: &str) -> Arc<dyn Destination> {
        match self.remote.get(bucket) {
            Some(remote) => remote.clone(),
            None => Arc::new(LocalDestination { buckets: self.local.clone(), bucket: bucket.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        for bad in ["", "0s", "s", "5x", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
