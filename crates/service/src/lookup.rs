//! `LookupEvents`: validation of the request and the Event shape of the response.

use std::time::Duration;

use chrono::{DateTime, Utc};
use opentrail_history::{FoundEvent, HistoryError, LookupQuery, PageToken, fingerprint};
use opentrail_operations::decode_input;
use opentrail_operations::inputs::{LookupCriteria, LookupEventsInput};
use serde_json::{Value, json};

use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::{CallOutcome, Caller, OpenTrail};

/// Event History covers this many days by default.
pub const HISTORY_DAYS: i64 = 90;
/// How long a lookup waits for the index to include everything already acknowledged.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

/// Validates a request into an index query: the input's own checks, then its page token.
pub fn build_query(caller: &Caller, input: &LookupEventsInput, now: DateTime<Utc>) -> ServiceResult<LookupQuery> {
    let LookupCriteria { attributes, start, end, insights, max_results } = input.criteria(now)?;
    // Bind tokens to the parameters as given (defaults move with the clock, so they are left out).
    let mut parts = vec![
        caller.principal.account.to_string(),
        caller.region.to_string(),
        format!("{:?}", input.start_time),
        format!("{:?}", input.end_time),
        format!("{insights}"),
    ];
    parts.extend(attributes.iter().map(|(key, value)| format!("{}={value}", key.name())));
    let parameters_fingerprint = fingerprint(&parts.iter().map(String::as_str).collect::<Vec<_>>());
    let after = match &input.next_token {
        Some(token) => Some(PageToken::decode(token).ok_or_else(invalid_token)?),
        None => None,
    };
    Ok(LookupQuery {
        account: caller.principal.account.clone(),
        region: caller.region.clone(),
        attributes,
        start,
        end,
        insights,
        max_results,
        parameters_fingerprint,
        after,
    })
}

pub fn invalid_token() -> ServiceError {
    ServiceError::new(ErrorCode::InvalidNextToken, "The NextToken is not valid for this request.")
}

/// The `Event` shape of a LookupEvents response. `CloudTrailEvent` is the stored JSON itself.
///
/// An Insights event is about another API's call rate: its EventName and EventSource are that
/// API's (from `insightDetails`), and it has no caller, access key, read-only flag or resources
/// of its own, so those are left out (Resources is empty), as CloudTrail answers.
pub fn event_shape(found: &FoundEvent) -> Value {
    let view = found.view();
    let mut event = serde_json::Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            event.insert(key.into(), value);
        }
    };
    put("EventId", view.event_id().map(|v| json!(v)));
    put("EventTime", view.event_time().map(|t| json!(t.timestamp())));
    let resources: Vec<Value> = if view.is_insight() {
        let insight = view.insight();
        put("EventName", insight.and_then(|i| i.event_name()).map(|v| json!(v)));
        put("EventSource", insight.and_then(|i| i.event_source()).map(|v| json!(v)));
        Vec::new()
    } else {
        put("EventName", view.event_name().map(|v| json!(v)));
        put("ReadOnly", view.read_only().map(|v| json!(v)));
        put("AccessKeyId", view.access_key_id().map(|v| json!(v)));
        put("EventSource", view.event_source().map(|v| json!(v)));
        put("Username", view.username().map(|v| json!(v)));
        view.resources
            .iter()
            .map(|resource| {
                let mut shape = serde_json::Map::new();
                if let Some(resource_type) = &resource.resource_type {
                    shape.insert("ResourceType".into(), json!(resource_type));
                }
                if let Some(resource_name) = resource.name() {
                    shape.insert("ResourceName".into(), json!(resource_name));
                }
                Value::Object(shape)
            })
            .collect()
    };
    put("Resources", Some(json!(resources)));
    put("CloudTrailEvent", Some(json!(String::from_utf8_lossy(&found.json))));
    Value::Object(event)
}

impl OpenTrail {
    /// Answers a `LookupEvents` input for `caller` (without recording a call: the API path
    /// records; benchmarks and tools read).
    pub async fn lookup_events(&self, caller: &Caller, input: Value) -> CallOutcome {
        self.lookup(caller, decode_input(input)?).await
    }

    pub(crate) async fn lookup(&self, caller: &Caller, input: LookupEventsInput) -> CallOutcome {
        let query = build_query(caller, &input, Utc::now())?;
        // Read your writes: include everything acknowledged before this lookup began.
        self.wait_for_history(self.journal.committed_end(), READ_YOUR_WRITES_WAIT).await;
        let history = self.history.clone();
        let page = tokio::task::spawn_blocking(move || history.lookup(&query))
            .await
            .map_err(ServiceError::internal)?
            .map_err(|error| match error {
            HistoryError::InvalidToken => invalid_token(),
            other => ServiceError::internal(other),
        })?;
        let mut output = json!({ "Events": page.events.iter().map(event_shape).collect::<Vec<_>>() });
        if let Some(next) = page.next {
            output["NextToken"] = json!(next.encode());
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use opentrail_model::{AccountId, Region};

    use super::*;

    fn found(record: Value) -> FoundEvent {
        FoundEvent {
            account: AccountId::parse("123456789012").unwrap(),
            region: Region::parse("us-east-1").unwrap(),
            json: serde_json::to_vec(&record).unwrap(),
        }
    }

    #[test]
    fn an_insights_event_is_named_after_the_api_it_is_about() {
        let record = json!({
            "eventVersion": "1.07", "eventTime": "2019-10-15T21:13:00Z", "awsRegion": "us-east-1",
            "eventID": "EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7", "eventType": "AwsCloudTrailInsight",
            "recipientAccountId": "123456789012", "sharedEventID": "EXAMPLE8-02b2-4e93-9aab-08ed47ea5fd3",
            "insightDetails": {"state": "Start", "eventSource": "autoscaling.amazonaws.com",
                               "eventName": "CompleteLifecycleAction", "insightType": "ApiCallRateInsight",
                               "insightContext": {"statistics": {"baseline": {"average": 0.0000882145},
                                                                 "insight": {"average": 0.6}, "insightDuration": 5}}},
            "eventCategory": "Insight"
        });
        let found = found(record);
        let shape = event_shape(&found);
        assert_eq!(
            shape,
            json!({
                "EventId": "EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7",
                "EventName": "CompleteLifecycleAction",
                "EventSource": "autoscaling.amazonaws.com",
                "EventTime": 1_571_173_980,
                "Resources": [],
                "CloudTrailEvent": String::from_utf8(found.json.clone()).unwrap(),
            })
        );
    }

    #[test]
    fn an_api_call_keeps_its_caller_and_resources() {
        let record = json!({
            "eventVersion": "1.08", "eventTime": "2024-03-01T10:00:00Z", "eventSource": "s3.amazonaws.com",
            "eventName": "CreateBucket", "readOnly": false, "eventID": "e1",
            "userIdentity": {"type": "IAMUser", "userName": "bob", "accessKeyId": "AKIAEXAMPLE"},
            "resources": [{"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::my-bucket"}]
        });
        let shape = event_shape(&found(record));
        assert_eq!(shape["EventName"], "CreateBucket");
        assert_eq!(shape["EventSource"], "s3.amazonaws.com");
        assert_eq!(shape["Username"], "bob");
        assert_eq!(shape["AccessKeyId"], "AKIAEXAMPLE");
        assert_eq!(shape["ReadOnly"], "false");
        assert_eq!(
            shape["Resources"],
            json!([{"ResourceType": "AWS::S3::Bucket", "ResourceName": "arn:aws:s3:::my-bucket"}])
        );
    }
}
