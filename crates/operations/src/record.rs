//! Who called, and the CloudTrail record of a call to OpenTrail's own API.

use chrono::Utc;
use opentrail_model::record::{EVENT_VERSION, format_event_time};
use opentrail_model::{EventRecord, Principal, Region};
use serde_json::{Map, Value, json};

use crate::error::ServiceError;
use crate::registry::Operation;

const EVENT_SOURCE: &str = "cloudtrail.amazonaws.com";

/// Who is calling, in which Region.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub region: Region,
}

/// A resource a call acted on, for the record's `resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub arn: String,
    pub resource_type: String,
}

/// Everything about an authenticated call that its CloudTrail record needs.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub caller: Caller,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub request_id: String,
}

/// The answer to a call: the output document, or the error.
pub type CallOutcome = Result<Value, ServiceError>;

/// How records were classified before the registry declared it, kept for names CloudTrail does
/// not have (an unknown operation is recorded too) and to check the declared values against.
pub(crate) fn read_only_by_verb(operation: &str) -> bool {
    ["Get", "Describe", "List", "Lookup"].iter().any(|prefix| operation.starts_with(prefix))
}

fn is_read_only(operation: &str) -> bool {
    Operation::from_name(operation).map_or_else(|| read_only_by_verb(operation), Operation::read_only)
}

/// CloudTrail writes request and response members in lower camel case (`S3BucketName` ->
/// `s3BucketName`, `TrailARN` -> `trailARN`).
fn lower_camel(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let mut chars = key.chars();
                    let key = match chars.next() {
                        Some(first) => first.to_lowercase().chain(chars).collect(),
                        None => String::new(),
                    };
                    (key, lower_camel(value))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lower_camel).collect()),
        other => other.clone(),
    }
}

fn non_empty_object(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Object(map)) if !map.is_empty() => lower_camel(&Value::Object(map.clone())),
        _ => Value::Null,
    }
}

/// The CloudTrail record of one call to OpenTrail's own API, field for field as AWS writes it.
pub fn build_record(
    info: &CallInfo,
    operation: &str,
    input: Option<&Value>,
    outcome: &CallOutcome,
    resources: &[Resource],
) -> EventRecord {
    let read_only = is_read_only(operation);
    let event_name: String = operation.chars().take(128).collect();
    let mut record = Map::new();
    record.insert("eventVersion".into(), json!(EVENT_VERSION));
    record.insert("userIdentity".into(), info.caller.principal.user_identity());
    record.insert("eventTime".into(), json!(format_event_time(Utc::now())));
    record.insert("eventSource".into(), json!(EVENT_SOURCE));
    record.insert("eventName".into(), json!(event_name));
    record.insert("awsRegion".into(), json!(info.caller.region.as_str()));
    record.insert("sourceIPAddress".into(), json!(info.source_ip));
    if let Some(agent) = &info.user_agent {
        record.insert("userAgent".into(), json!(agent.chars().take(1024).collect::<String>()));
    }
    if let Err(error) = outcome {
        record.insert("errorCode".into(), json!(error.code.aws_type()));
        record.insert("errorMessage".into(), json!(error.message.chars().take(1024).collect::<String>()));
    }
    record.insert("requestParameters".into(), non_empty_object(input));
    let response = match outcome {
        Ok(output) if !read_only => non_empty_object(Some(output)),
        _ => Value::Null,
    };
    record.insert("responseElements".into(), response);
    record.insert("requestID".into(), json!(info.request_id));
    record.insert("eventID".into(), json!(uuid::Uuid::new_v4().to_string()));
    record.insert("readOnly".into(), json!(read_only));
    if !resources.is_empty() {
        let list: Vec<Value> = resources
            .iter()
            .map(
                |r| json!({"accountId": info.caller.principal.account.as_str(), "type": r.resource_type, "ARN": r.arn}),
            )
            .collect();
        record.insert("resources".into(), json!(list));
    }
    record.insert("eventType".into(), json!("AwsApiCall"));
    record.insert("managementEvent".into(), json!(true));
    record.insert("recipientAccountId".into(), json!(info.caller.principal.account.as_str()));
    record.insert("eventCategory".into(), json!("Management"));
    EventRecord::new(info.caller.principal.account.clone(), info.caller.region.clone(), Value::Object(record))
        .expect("a record built here has eventTime and eventName")
}

#[cfg(test)]
mod tests {
    use opentrail_model::{AccountId, PrincipalKind};

    use super::*;
    use crate::error::ErrorCode;

    fn info() -> CallInfo {
        CallInfo {
            caller: Caller {
                principal: Principal {
                    account: AccountId::parse("123456789012").unwrap(),
                    access_key_id: "AKIAEXAMPLE".into(),
                    kind: PrincipalKind::User { name: "alice".into(), user_id: "AIDAEXAMPLE".into() },
                },
                region: Region::parse("eu-west-1").unwrap(),
            },
            source_ip: "127.0.0.1".into(),
            user_agent: Some("aws-cli/2".into()),
            request_id: "req-1".into(),
        }
    }

    #[test]
    fn successful_write_call_record() {
        let input = json!({"Name": "t1", "S3BucketName": "b"});
        let output = Ok(json!({"Name": "t1", "TrailARN": "arn:aws:cloudtrail:eu-west-1:123456789012:trail/t1"}));
        let resources = [Resource { arn: "arn:x".into(), resource_type: "AWS::CloudTrail::Trail".into() }];
        let record = build_record(&info(), "CreateTrail", Some(&input), &output, &resources);
        let r = &record.record;
        assert_eq!(r["eventSource"], "cloudtrail.amazonaws.com");
        assert_eq!(r["eventName"], "CreateTrail");
        assert_eq!(r["awsRegion"], "eu-west-1");
        assert_eq!(r["readOnly"], false);
        assert_eq!(r["requestParameters"], json!({"name": "t1", "s3BucketName": "b"}));
        assert_eq!(r["responseElements"]["trailARN"], "arn:aws:cloudtrail:eu-west-1:123456789012:trail/t1");
        assert_eq!(r["userIdentity"]["userName"], "alice");
        assert_eq!(r["resources"][0]["type"], "AWS::CloudTrail::Trail");
        assert_eq!(r["eventType"], "AwsApiCall");
        assert_eq!(r["managementEvent"], true);
        assert_eq!(r["recipientAccountId"], "123456789012");
        assert!(r.get("errorCode").is_none());
        let keys: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(&keys[..5], ["eventVersion", "userIdentity", "eventTime", "eventSource", "eventName"]);
    }

    #[test]
    fn failed_read_call_record() {
        let error = Err(ServiceError::new(ErrorCode::TrailNotFound, "Unknown trail"));
        let record = build_record(&info(), "GetTrail", Some(&json!({"Name": "x"})), &error, &[]);
        assert_eq!(record.record["errorCode"], "TrailNotFoundException");
        assert_eq!(record.record["errorMessage"], "Unknown trail");
        assert_eq!(record.record["responseElements"], Value::Null);
        assert_eq!(record.record["readOnly"], true);
        assert!(record.record.get("resources").is_none());
    }

    #[test]
    fn unknown_operations_are_classified_by_their_verb() {
        let unknown = Err(ServiceError::new(ErrorCode::UnknownOperation, "Unknown operation GetNothing."));
        assert_eq!(build_record(&info(), "GetNothing", None, &unknown, &[]).record["readOnly"], true);
        assert_eq!(build_record(&info(), "MakeNothing", None, &unknown, &[]).record["readOnly"], false);
    }
}
