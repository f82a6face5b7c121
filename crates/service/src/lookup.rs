//! `LookupEvents`: validation of the request and the Event shape of the response.

use chrono::{DateTime, Utc};
use opentrail_history::{FoundEvent, LookupQuery, PageToken, fingerprint};
use opentrail_model::record::LookupAttribute;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Caller;
use crate::error::{ErrorCode, ServiceError, ServiceResult};

/// Event History covers this many days by default.
pub const HISTORY_DAYS: i64 = 90;
pub const MAX_LOOKUP_RESULTS: i64 = 50;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupAttributeInput {
    attribute_key: String,
    attribute_value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEventsInput {
    lookup_attributes: Option<Vec<LookupAttributeInput>>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    event_category: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn from_epoch(seconds: f64) -> ServiceResult<DateTime<Utc>> {
    if !seconds.is_finite() {
        return Err(ServiceError::new(ErrorCode::InvalidTimeRange, "Times must be finite numbers."));
    }
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
        .ok_or_else(|| ServiceError::new(ErrorCode::InvalidTimeRange, "Time is out of range."))
}

/// Validates a request into an index query. Several attributes are accepted and ANDed (AWS
/// allows only one); each must be a known key with a 1-2000 character value.
pub fn build_query(caller: &Caller, input: &LookupEventsInput, now: DateTime<Utc>) -> ServiceResult<LookupQuery> {
    let mut attributes = Vec::new();
    for attribute in input.lookup_attributes.iter().flatten() {
        let key = LookupAttribute::parse(&attribute.attribute_key).ok_or_else(|| {
            ServiceError::new(
                ErrorCode::InvalidLookupAttributes,
                format!("Unknown lookup attribute key: {}", attribute.attribute_key),
            )
        })?;
        let length = attribute.attribute_value.chars().count();
        if !(1..=2000).contains(&length) {
            return Err(ServiceError::new(
                ErrorCode::InvalidLookupAttributes,
                "An AttributeValue must be between 1 and 2000 characters long.",
            ));
        }
        attributes.push((key, attribute.attribute_value.clone()));
    }
    let max_results = input.max_results.unwrap_or(MAX_LOOKUP_RESULTS);
    if !(1..=MAX_LOOKUP_RESULTS).contains(&max_results) {
        return Err(ServiceError::new(
            ErrorCode::InvalidMaxResults,
            format!("MaxResults must be between 1 and {MAX_LOOKUP_RESULTS}."),
        ));
    }
    let insights = match input.event_category.as_deref() {
        None => false,
        Some("insight") => true,
        Some(other) => {
            return Err(ServiceError::new(
                ErrorCode::InvalidEventCategory,
                format!("Unknown EventCategory {other}; the only category is insight."),
            ));
        }
    };
    let start = match input.start_time {
        Some(seconds) => from_epoch(seconds)?,
        // CloudTrail's default: from the oldest available event (retention keeps 90 days).
        None => DateTime::UNIX_EPOCH,
    };
    let end = match input.end_time {
        Some(seconds) => from_epoch(seconds)?,
        None => now,
    };
    if start > end {
        return Err(ServiceError::new(ErrorCode::InvalidTimeRange, "StartTime must not be later than EndTime."));
    }
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
        max_results: max_results as usize,
        parameters_fingerprint,
        after,
    })
}

pub fn invalid_token() -> ServiceError {
    ServiceError::new(ErrorCode::InvalidNextToken, "The NextToken is not valid for this request.")
}

/// The `Event` shape of a LookupEvents response. `CloudTrailEvent` is the stored JSON itself.
pub fn event_shape(found: &FoundEvent) -> Value {
    let view = found.view();
    let mut event = serde_json::Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            event.insert(key.into(), value);
        }
    };
    put("EventId", view.event_id().map(|v| json!(v)));
    put("EventName", view.event_name().map(|v| json!(v)));
    put("ReadOnly", view.read_only().map(|v| json!(v)));
    put("AccessKeyId", view.access_key_id().map(|v| json!(v)));
    put("EventTime", view.event_time().map(|t| json!(t.timestamp())));
    put("EventSource", view.event_source().map(|v| json!(v)));
    put("Username", view.username().map(|v| json!(v)));
    let resources: Vec<Value> = view
        .resources
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
        .collect();
    put("Resources", Some(json!(resources)));
    put("CloudTrailEvent", Some(json!(String::from_utf8_lossy(&found.json))));
    Value::Object(event)
}
