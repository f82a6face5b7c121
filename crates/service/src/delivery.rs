//! What the trail operations need from delivery: destination checks, the truth for
//! `GetTrailStatus`, and the digest public keys for `ListPublicKeys`.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use chrono::Utc;
use opentrail_buckets::BucketError;
use opentrail_control::ControlStore;
use opentrail_delivery::{Destinations, Notifier, SigningKeys, load_state};
use opentrail_journal::Journal;
use opentrail_model::{AccountId, Region, Trail};
use opentrail_operations::inputs::ListPublicKeysInput;
use serde_json::{Map, Value, json};

use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::{epoch_seconds, iso_time};

/// Delivery's parts, shared by the service and the delivery worker.
pub struct DeliveryContext {
    pub destinations: Arc<Destinations>,
    pub notifier: Arc<Notifier>,
    pub keys: Arc<SigningKeys>,
    pub journal: Arc<dyn Journal>,
}

/// What remote buckets answered when asked whether they exist, by name.
#[derive(Default)]
pub struct RemoteBucketChecks(HashMap<String, ServiceResult<()>>);

fn err(code: ErrorCode, message: impl Into<String>) -> ServiceError {
    ServiceError::new(code, message)
}

fn bucket_missing(bucket: &str) -> ServiceError {
    err(ErrorCode::S3BucketDoesNotExist, format!("S3 bucket {bucket} does not exist."))
}

impl DeliveryContext {
    /// Asks the remote buckets among `names` whether they answer. This is the network part of
    /// [`Self::check_bucket`], done in async code before an operation's blocking part runs,
    /// which then reports the answer where the check belongs in its order of validation.
    pub async fn check_remote_buckets<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> RemoteBucketChecks {
        let mut checks = RemoteBucketChecks::default();
        for bucket in names {
            if !self.destinations.is_remote(bucket) || checks.0.contains_key(bucket) {
                continue;
            }
            let answer = match self.destinations.destination(bucket).check().await {
                Ok(()) => Ok(()),
                Err(BucketError::NoSuchBucket(_)) => Err(bucket_missing(bucket)),
                Err(error) => {
                    Err(err(ErrorCode::S3BucketDoesNotExist, format!("S3 bucket {bucket} cannot be reached: {error}")))
                }
            };
            checks.0.insert(bucket.to_string(), answer);
        }
        checks
    }

    /// A trail may deliver to a bucket that exists and that its account may write: its own
    /// local bucket, or a configured remote one that answered (`remote` holds the answers).
    pub fn check_bucket(
        &self,
        store: &dyn ControlStore,
        account: &AccountId,
        bucket: &str,
        remote: &RemoteBucketChecks,
    ) -> ServiceResult<()> {
        if self.destinations.is_remote(bucket) {
            return remote.0.get(bucket).cloned().unwrap_or_else(|| {
                Err(ServiceError::internal(format!("the remote bucket {bucket} was not checked before the operation")))
            });
        }
        self.check_local_bucket(store, account, bucket)
    }

    /// A bucket of the local store must exist and belong to `account`.
    pub fn check_local_bucket(&self, store: &dyn ControlStore, account: &AccountId, bucket: &str) -> ServiceResult<()> {
        match store.bucket(bucket).map_err(ServiceError::internal)? {
            None => Err(bucket_missing(bucket)),
            Some(record) if &record.account != account => Err(err(
                ErrorCode::InsufficientS3BucketPolicy,
                format!("Incorrect S3 bucket policy is detected for bucket: {bucket}"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// A notification target must be configured under the topic's name.
    pub fn check_topic(&self, topic: &str) -> ServiceResult<()> {
        if self.notifier.knows(topic) {
            Ok(())
        } else {
            Err(err(
                ErrorCode::InsufficientSnsTopicPolicy,
                format!("Incorrect SNS topic policy is detected for topic: {topic}"),
            ))
        }
    }

    /// Adds the delivery, digest and notification fields of `GetTrailStatus`: epoch times,
    /// the ISO-text attempt times, and the latest errors.
    pub fn add_status_fields(
        &self,
        store: &dyn ControlStore,
        trail: &Trail,
        out: &mut Map<String, Value>,
    ) -> ServiceResult<()> {
        let arn = trail.arn();
        let mut put = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                out.insert(name.into(), value);
            }
        };
        let epoch = |ms: Option<i64>| ms.map(|ms| json!(epoch_seconds(ms)));
        let text = |ms: Option<i64>| ms.map(|ms| json!(iso_time(ms)));
        let flag = |succeeded: Option<bool>| succeeded.map(|s| json!(s.to_string()));
        if let Some(state) = load_state(store, &arn).map_err(ServiceError::internal)? {
            let status = state.status;
            put("LatestDeliveryTime", epoch(status.latest_delivery_ms));
            put("LatestDeliveryError", status.latest_delivery_error.map(Value::from));
            put("LatestDigestDeliveryTime", epoch(status.latest_digest_ms));
            put("LatestDigestDeliveryError", status.latest_digest_error.map(Value::from));
            put("LatestDeliveryAttemptTime", text(status.latest_delivery_attempt_ms));
            put("LatestDeliveryAttemptSucceeded", flag(status.latest_delivery_attempt_succeeded));
        }
        if let Some(notification) = self.notifier.status(&arn) {
            put("LatestNotificationTime", epoch(notification.latest_notification_ms));
            put("LatestNotificationError", notification.latest_notification_error.map(Value::from));
            put("LatestNotificationAttemptTime", text(notification.latest_attempt_ms));
            put("LatestNotificationAttemptSucceeded", flag(notification.latest_attempt_succeeded));
        }
        Ok(())
    }

    /// `ListPublicKeys`: the caller Region's keys whose validity overlaps the range.
    pub fn list_public_keys(&self, region: &Region, input: ListPublicKeysInput) -> ServiceResult<Value> {
        let now = Utc::now();
        let start_ms = input.start_time.map_or(now.timestamp_millis(), |s| (s * 1000.0) as i64);
        let end_ms = input.end_time.map_or(now.timestamp_millis(), |s| (s * 1000.0) as i64);
        if start_ms > end_ms {
            return Err(err(ErrorCode::InvalidTimeRange, "Start time must be before end time."));
        }
        if input.next_token.is_some() {
            return Err(err(ErrorCode::InvalidToken, "The NextToken is not valid."));
        }
        // There is always a current key, so a validator finds one even before the first digest.
        self.keys.current(region.as_str(), now).map_err(ServiceError::internal)?;
        let keys = self.keys.overlapping(region.as_str(), start_ms, end_ms).map_err(ServiceError::internal)?;
        let list: Vec<Value> = keys
            .iter()
            .map(|key| {
                json!({
                    "Value": base64::engine::general_purpose::STANDARD.encode(&key.public_der),
                    "ValidityStartTime": epoch_seconds(key.valid_from_ms),
                    "ValidityEndTime": epoch_seconds(key.valid_to_ms),
                    "Fingerprint": key.fingerprint,
                })
            })
            .collect();
        Ok(json!({ "PublicKeyList": list }))
    }
}
