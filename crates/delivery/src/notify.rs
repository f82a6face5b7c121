//! Notifications: each delivered batch of log files is announced to the trail's notification
//! target (its `SnsTopicName`), an HTTP webhook defined in the configuration, in the shape of
//! an SNS notification whose `Message` is CloudTrail's `{"s3Bucket", "s3ObjectKey": [...]}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use opentrail_buckets::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

/// The header that carries `sha256=<hex HMAC-SHA256 of the body>` when the target has a secret.
pub const SIGNATURE_HEADER: &str = "x-opentrail-signature";
const ATTEMPTS: u32 = 5;

/// A webhook that receives notifications, from the configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotificationTarget {
    /// What trails put in `SnsTopicName` (or the last part of an SNS topic ARN).
    pub name: String,
    pub url: String,
    /// Key of the HMAC signature header; without it, messages are unsigned.
    #[serde(default)]
    pub secret: Option<SecretString>,
}

/// What `GetTrailStatus` reports about notifications.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotificationStatus {
    pub latest_notification_ms: Option<i64>,
    pub latest_notification_error: Option<String>,
    pub latest_attempt_ms: Option<i64>,
    pub latest_attempt_succeeded: Option<bool>,
}

pub struct Notifier {
    targets: HashMap<String, NotificationTarget>,
    client: reqwest::Client,
    status: Mutex<HashMap<String, NotificationStatus>>,
}

/// The topic name in `SnsTopicName`, which may be a name or an SNS topic ARN.
fn topic_name(topic: &str) -> &str {
    if topic.starts_with("arn:") { topic.rsplit(':').next().unwrap_or(topic) } else { topic }
}

/// The signature header value for a body.
pub fn sign_body(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Notifier {
    pub fn new(targets: &[NotificationTarget]) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
        let targets = targets.iter().map(|t| (t.name.clone(), t.clone())).collect();
        Self { targets, client, status: Mutex::new(HashMap::new()) }
    }

    pub fn knows(&self, topic: &str) -> bool {
        self.targets.contains_key(topic_name(topic))
    }

    pub fn status(&self, trail_arn: &str) -> Option<NotificationStatus> {
        self.status.lock().expect("status lock").get(trail_arn).cloned()
    }

    fn update(&self, trail_arn: &str, change: impl FnOnce(&mut NotificationStatus)) {
        change(self.status.lock().expect("status lock").entry(trail_arn.to_owned()).or_default());
    }

    /// Sends the notification in the background, retrying with backoff.
    pub fn notify(
        self: &Arc<Self>,
        trail_arn: &str,
        topic: &str,
        region: &str,
        account: &str,
        bucket: &str,
        keys: Vec<String>,
    ) {
        let Some(target) = self.targets.get(topic_name(topic)).cloned() else {
            self.update(trail_arn, |s| {
                s.latest_attempt_ms = Some(Utc::now().timestamp_millis());
                s.latest_attempt_succeeded = Some(false);
                s.latest_notification_error = Some(format!("No notification target named {topic}."));
            });
            return;
        };
        let message = json!({ "s3Bucket": bucket, "s3ObjectKey": keys }).to_string();
        let body = json!({
            "Type": "Notification",
            "MessageId": uuid::Uuid::new_v4().to_string(),
            "TopicArn": format!("arn:aws:sns:{region}:{account}:{}", target.name),
            "Message": message,
            "Timestamp": Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "SignatureVersion": "opentrail-hmac-sha256",
        })
        .to_string();
        let this = self.clone();
        let trail_arn = trail_arn.to_owned();
        tokio::spawn(async move { this.send_with_retries(&trail_arn, &target, body).await });
    }

    async fn send_with_retries(&self, trail_arn: &str, target: &NotificationTarget, body: String) {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .client
                .post(&target.url)
                .header("content-type", "text/plain; charset=UTF-8")
                .header("x-amz-sns-message-type", "Notification");
            if let Some(secret) = &target.secret {
                request = request.header(SIGNATURE_HEADER, sign_body(&secret.0, body.as_bytes()));
            }
            let outcome = match request.body(body.clone()).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("the notification target answered {}", response.status())),
                Err(error) => Err(format!("the notification target is unreachable: {error}")),
            };
            let now = Utc::now().timestamp_millis();
            match outcome {
                Ok(()) => {
                    self.update(trail_arn, |s| {
                        s.latest_attempt_ms = Some(now);
                        s.latest_attempt_succeeded = Some(true);
                        s.latest_notification_ms = Some(now);
                        s.latest_notification_error = None;
                    });
                    return;
                }
                Err(error) => {
                    tracing::warn!(trail = trail_arn, attempt, %error, "notification failed");
                    self.update(trail_arn, |s| {
                        s.latest_attempt_ms = Some(now);
                        s.latest_attempt_succeeded = Some(false);
                        s.latest_notification_error = Some(error);
                    });
                }
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_by_name_or_arn() {
        let notifier =
            Notifier::new(&[NotificationTarget { name: "ops".into(), url: "http://x".into(), secret: None }]);
        assert!(notifier.knows("ops"));
        assert!(notifier.knows("arn:aws:sns:us-east-1:123456789012:ops"));
        assert!(!notifier.knows("other"));
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign_body("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
