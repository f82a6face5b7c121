//! Insights records, shaped exactly as AWS writes them (`../shared/data/insight-events/`):
//! no userIdentity, eventSource, eventName or userAgent at the top level; what the insight is
//! about lives in `insightDetails`, and `eventCategory` comes last.

use chrono::DateTime;
use serde_json::{Map, Value, json};

use crate::detector::{InsightEvent, InsightType, Minute};

/// The `eventVersion` of the Insights records OpenTrail writes (AWS's current one for them).
pub const INSIGHT_EVENT_VERSION: &str = "1.08";

/// A minute as a record's `eventTime`.
pub fn minute_time(minute: Minute) -> String {
    DateTime::from_timestamp(minute * 60, 0).map_or_else(String::new, opentrail_model::record::format_event_time)
}

fn averages(values: &[(String, f64)]) -> Value {
    values.iter().map(|(value, average)| json!({"value": value, "average": average})).collect()
}

impl InsightEvent {
    /// The CloudTrail record of this Start or End.
    pub fn to_record(&self) -> Value {
        let mut details = Map::new();
        details.insert("state".into(), json!(self.state.name()));
        details.insert("eventSource".into(), json!(self.key.event_source));
        details.insert("eventName".into(), json!(self.key.event_name));
        details.insert("insightType".into(), json!(self.key.insight_type.name()));
        if self.key.insight_type == InsightType::ApiErrorRateInsight {
            details.insert("errorCode".into(), json!(self.key.error_code.as_deref().unwrap_or_default()));
        }
        let attributions: Vec<Value> = self
            .attributions
            .iter()
            .map(|row| {
                json!({"attribute": row.attribute, "insight": averages(&row.insight), "baseline": averages(&row.baseline)})
            })
            .collect();
        details.insert(
            "insightContext".into(),
            json!({
                "statistics": {
                    "baseline": {"average": self.baseline_average},
                    "insight": {"average": self.insight_average},
                    "insightDuration": self.insight_duration,
                    "baselineDuration": self.baseline_duration,
                },
                "attributions": attributions,
            }),
        );
        json!({
            "eventVersion": INSIGHT_EVENT_VERSION,
            "eventTime": minute_time(self.minute),
            "awsRegion": self.region,
            "eventID": self.event_id,
            "eventType": "AwsCloudTrailInsight",
            "recipientAccountId": self.account,
            "sharedEventID": self.shared_event_id,
            "insightDetails": Value::Object(details),
            "eventCategory": "Insight",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Attribution, InsightState, SeriesKey};

    /// The Start of AWS's documented example (view-insights-events-cli.md), as AWS wrote it.
    const AWS_START: &str = r#"{"eventVersion": "1.07", "eventTime": "2019-10-15T21:13:00Z", "awsRegion": "us-east-1", "eventID": "EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7", "eventType": "AwsCloudTrailInsight", "recipientAccountId": "123456789012", "sharedEventID": "EXAMPLE8-02b2-4e93-9aab-08ed47ea5fd3", "insightDetails": {"state": "Start", "eventSource": "autoscaling.amazonaws.com", "eventName": "CompleteLifecycleAction", "insightType": "ApiCallRateInsight", "insightContext": {"statistics": {"baseline": {"average": 8.82145e-05}, "insight": {"average": 0.6}, "insightDuration": 5, "baselineDuration": 11336}, "attributions": [{"attribute": "userIdentityArn", "insight": [{"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1", "average": 0.6}], "baseline": [{"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1", "average": 8.82145e-05}]}, {"attribute": "userAgent", "insight": [{"value": "codedeploy.amazonaws.com", "average": 0.6}], "baseline": [{"value": "codedeploy.amazonaws.com", "average": 8.82145e-05}]}, {"attribute": "errorCode", "insight": [{"value": "null", "average": 0.6}], "baseline": [{"value": "null", "average": 8.82145e-05}]}]}}, "eventCategory": "Insight"}"#;

    fn shape(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
            Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
            Value::String(_) => json!("s"),
            Value::Number(_) => json!(0),
            other => other.clone(),
        }
    }

    #[test]
    fn a_start_has_the_keys_and_order_of_aws_records() {
        let row = |attribute, value: &str| Attribution {
            attribute,
            insight: vec![(value.to_owned(), 0.6)],
            baseline: vec![(value.to_owned(), 0.0000882145)],
        };
        let event = InsightEvent {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            key: SeriesKey {
                insight_type: InsightType::ApiCallRateInsight,
                event_source: "autoscaling.amazonaws.com".into(),
                event_name: "CompleteLifecycleAction".into(),
                error_code: None,
            },
            state: InsightState::Start,
            shared_event_id: "EXAMPLE8-02b2-4e93-9aab-08ed47ea5fd3".into(),
            event_id: "EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7".into(),
            minute: 1_571_173_980 / 60,
            baseline_average: 0.0000882145,
            insight_average: 0.6,
            insight_duration: 5,
            baseline_duration: 11336,
            attributions: vec![
                row("userIdentityArn", "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1"),
                row("userAgent", "codedeploy.amazonaws.com"),
                row("errorCode", "null"),
            ],
        };
        let ours = event.to_record();
        let theirs: Value = serde_json::from_str(AWS_START).unwrap();
        assert_eq!(shape(&ours).to_string(), shape(&theirs).to_string(), "same keys in the same order");
        assert_eq!(ours["eventTime"], theirs["eventTime"]);
        assert_eq!(ours["insightDetails"], theirs["insightDetails"]);
        let mut error = event.clone();
        error.key.insight_type = InsightType::ApiErrorRateInsight;
        error.key.error_code = Some("AccessDenied".into());
        assert_eq!(error.to_record()["insightDetails"]["errorCode"], "AccessDenied");
    }
}
