//! `cloudtrail-data` `PutAuditEvents`: events from outside AWS, sent to a channel, checked
//! against the Open Audit Events schema one by one, and made durable in the journal as
//! `ActivityAuditLog` records that the lake writer routes to the channel's event data stores.
//!
//! A request that fails as a whole (unknown channel, no permission, duplicate IDs, too many or
//! too large events) writes nothing; otherwise every valid event is written and every invalid
//! one is listed in `failed` with AWS's error code.

use base64::Engine;
use chrono::Utc;
use opentrail_model::lake::Channel;
use opentrail_model::record::format_event_time;
use opentrail_model::{AccountId, EventRecord, Region};
use opentrail_operations::inputs::{AuditEvent, PutAuditEventsInput};
use opentrail_operations::{decode_input, parse_body};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::{Caller, OpenTrail};

const MAX_EVENTS: usize = 100;
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// The eventVersion CloudTrail gives ActivityAuditLog records.
const ACTIVITY_EVENT_VERSION: &str = "1.0";

fn err(code: ErrorCode, message: impl Into<String>) -> ServiceError {
    ServiceError::new(code, message)
}

/// Why one event was refused: an AWS per-event error code and a message.
struct Refusal(&'static str, String);

fn text_field<'a>(
    data: &'a Map<String, Value>,
    name: &str,
    limit: usize,
    required: bool,
) -> Result<Option<&'a str>, Refusal> {
    match data.get(name) {
        None | Some(Value::Null) if required => {
            Err(Refusal("FieldNotFound", format!("The required field {name} is missing.")))
        }
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() > limit => {
            Err(Refusal("FieldTooLong", format!("The field {name} is longer than {limit} characters.")))
        }
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Refusal("InvalidData", format!("The field {name} must be a string."))),
    }
}

fn object_field(data: &Map<String, Value>, name: &str, limit: usize) -> Result<(), Refusal> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(value @ Value::Object(_)) if value.to_string().len() > limit => {
            Err(Refusal("FieldTooLong", format!("The field {name} is larger than {} KB.", limit / 1024)))
        }
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(Refusal("InvalidData", format!("The field {name} must be a JSON object."))),
    }
}

/// Checks one event's `eventData` against the Open Audit Events schema.
fn check_event_data(event: &AuditEvent, owner: &AccountId) -> Result<Map<String, Value>, Refusal> {
    if let Some(checksum) = &event.event_data_checksum {
        let actual = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(event.event_data.as_bytes()));
        if &actual != checksum {
            return Err(Refusal("InvalidChecksum", "eventDataChecksum is not the base64 SHA-256 of eventData.".into()));
        }
    }
    let Ok(Value::Object(data)) = serde_json::from_str::<Value>(&event.event_data) else {
        return Err(Refusal("InvalidData", "eventData must be a JSON object in a string.".into()));
    };
    text_field(&data, "version", 256, true)?;
    match data.get("userIdentity") {
        Some(Value::Object(identity)) => {
            text_field(identity, "type", 128, true)?;
            text_field(identity, "principalId", 1024, true)?;
            if identity.get("details").is_some_and(|d| !d.is_object() && !d.is_null()) {
                return Err(Refusal("InvalidData", "userIdentity.details must be a JSON object.".into()));
            }
        }
        None | Some(Value::Null) => {
            return Err(Refusal("FieldNotFound", "The required field userIdentity is missing.".into()));
        }
        Some(_) => return Err(Refusal("InvalidData", "userIdentity must be a JSON object.".into())),
    }
    text_field(&data, "userAgent", 1024, false)?;
    if text_field(&data, "eventSource", 1024, true)?.is_some_and(str::is_empty) {
        return Err(Refusal("InvalidEventSource", "eventSource must not be empty.".into()));
    }
    text_field(&data, "eventName", 1024, true)?;
    let time = text_field(&data, "eventTime", 64, true)?.unwrap_or_default();
    match opentrail_lake::schema::parse_time_ms(time) {
        None => {
            return Err(Refusal("InvalidData", format!("eventTime {time} is not a UTC time (yyyy-MM-ddTHH:mm:ssZ).")));
        }
        Some(ms) if !crate::lake::ms_in_range(ms) => {
            return Err(Refusal(
                "InvalidData",
                format!(
                    "eventTime {time} is out of range: it must be between 1970-01-01T00:00:00Z and one day from now."
                ),
            ));
        }
        Some(_) => {}
    }
    text_field(&data, "UID", 1024, true)?;
    object_field(&data, "requestParameters", 100 * 1024)?;
    object_field(&data, "responseElements", 100 * 1024)?;
    object_field(&data, "additionalEventData", 28 * 1024)?;
    text_field(&data, "errorCode", 256, false)?;
    text_field(&data, "errorMessage", 256, false)?;
    if let Some(ip) = text_field(&data, "sourceIPAddress", 64, false)?
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(Refusal("InvalidData", format!("sourceIPAddress {ip} is not an IPv4 or IPv6 address.")));
    }
    let recipient = text_field(&data, "recipientAccountId", 16, true)?.unwrap_or_default();
    if recipient != owner.as_str() {
        return Err(Refusal("InvalidRecipient", "recipientAccountId must be the channel owner's account ID.".into()));
    }
    Ok(data)
}

/// Whether the channel's resource policy lets `caller` send (with `external_id`).
fn policy_allows(policy: &str, caller: &Caller, external_id: Option<&str>) -> bool {
    let Ok(document) = serde_json::from_str::<Value>(policy) else { return false };
    let statements = match document.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single) => vec![single.clone()],
        None => return false,
    };
    let account = caller.principal.account.as_str();
    let root = format!("arn:aws:iam::{account}:root");
    statements.iter().any(|statement| {
        let allow = statement.get("Effect").and_then(Value::as_str) == Some("Allow");
        let principals: Vec<String> = match statement.get("Principal") {
            Some(Value::Object(map)) => map
                .values()
                .flat_map(|v| match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
                    _ => Vec::new(),
                })
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let named = principals.iter().any(|p| p == "*" || p == account || *p == root);
        let wanted_external_id =
            statement.pointer("/Condition/StringEquals/cloudtrail:ExternalId").and_then(Value::as_str);
        let external_ok = wanted_external_id.is_none_or(|wanted| external_id == Some(wanted));
        allow && named && external_ok
    })
}

/// Where a channel's latest ingestion is kept (for `GetChannel`'s `IngestionStatus`).
pub(crate) fn ingestion_state_key(channel_arn: &str) -> String {
    format!("channel-ingestion/{channel_arn}")
}

impl OpenTrail {
    /// Records the outcome of a PutAuditEvents call for `GetChannel`; best effort, as the events
    /// themselves are already durable.
    fn note_ingestion(&self, channel_arn: &str, now: chrono::DateTime<Utc>, successful: &[Value], failed: &[Value]) {
        let key = ingestion_state_key(channel_arn);
        let mut status = self
            .store
            .consumer_state(&key)
            .ok()
            .flatten()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .unwrap_or_else(|| json!({}));
        let seconds = now.timestamp_millis() as f64 / 1000.0;
        let last_attempt =
            successful.last().map(|s| s["eventID"].clone()).or_else(|| failed.last().map(|f| f["id"].clone()));
        status["LatestIngestionAttemptTime"] = json!(seconds);
        status["LatestIngestionAttemptEventID"] = last_attempt.unwrap_or(Value::Null);
        if let Some(last) = successful.last() {
            status["LatestIngestionSuccessTime"] = json!(seconds);
            status["LatestIngestionSuccessEventID"] = last["eventID"].clone();
        }
        match failed.first() {
            Some(failure) => status["LatestIngestionErrorCode"] = failure["errorCode"].clone(),
            None => {
                if let Some(map) = status.as_object_mut() {
                    map.remove("LatestIngestionErrorCode");
                }
            }
        }
        if let Err(error) = self.store.save_consumer_state(&key, Some(&status.to_string())) {
            tracing::warn!(%error, "cannot record a channel's ingestion status");
        }
    }

    /// Finds the channel a `channelArn` parameter names (an ARN, or an ID of the caller's).
    fn audit_channel(&self, caller: &Caller, channel: &str) -> ServiceResult<Channel> {
        let invalid = || err(ErrorCode::InvalidChannelArn, format!("The channel ARN {channel} is not valid."));
        let (owner, id) = match channel.strip_prefix("arn:") {
            Some(_) => {
                let parts: Vec<&str> = channel.splitn(6, ':').collect();
                let [_, _, "cloudtrail", region, account, resource] = parts.as_slice() else { return Err(invalid()) };
                let id = resource.strip_prefix("channel/").ok_or_else(invalid)?;
                Region::parse(region).ok_or_else(invalid)?;
                (AccountId::parse(account).map_err(|_| invalid())?, id.to_string())
            }
            None => (caller.principal.account.clone(), channel.to_string()),
        };
        let lake = self.store.load_lake(&owner).map_err(ServiceError::internal)?;
        lake.documents
            .iter()
            .filter(|doc| doc.kind == opentrail_control::LakeKind::Channel && doc.id == id)
            .find_map(|doc| serde_json::from_str::<Channel>(&doc.document).ok())
            .filter(|found| !channel.starts_with("arn:") || found.arn() == channel)
            .ok_or_else(|| err(ErrorCode::ChannelNotFoundData, format!("The channel {channel} was not found.")))
    }

    /// Runs `PutAuditEvents` for an authenticated caller.
    pub async fn put_audit_events(
        &self,
        caller: &Caller,
        channel: Option<&str>,
        external_id: Option<&str>,
        body: &[u8],
    ) -> ServiceResult<Value> {
        let Some(channel) = channel.filter(|c| !c.is_empty()) else {
            return Err(err(ErrorCode::Validation, "The channelArn query parameter is required."));
        };
        if let Some(external_id) = external_id {
            let valid_character = |c: char| c.is_alphanumeric() || "_+=,.@:/-".contains(c);
            if !(2..=1224).contains(&external_id.chars().count()) || !external_id.chars().all(valid_character) {
                return Err(err(ErrorCode::Validation, "externalId must be 2 to 1224 characters of [\\w+=,.@:/-]."));
            }
        }
        if body.len() > MAX_REQUEST_BYTES {
            return Err(err(ErrorCode::Validation, "A PutAuditEvents request can be at most 1 MB."));
        }
        let channel = self.audit_channel(caller, channel)?;
        let is_owner = channel.account == caller.principal.account;
        let allowed =
            is_owner || channel.resource_policy.as_deref().is_some_and(|p| policy_allows(p, caller, external_id));
        if !allowed {
            return Err(err(
                ErrorCode::ChannelInsufficientPermission,
                "The channel's resource policy does not allow this account to send events to it.",
            ));
        }
        let input: PutAuditEventsInput = decode_input(parse_body(body)?)?;
        if input.audit_events.is_empty() || input.audit_events.len() > MAX_EVENTS {
            return Err(err(ErrorCode::Validation, format!("auditEvents must hold 1 to {MAX_EVENTS} events.")));
        }
        let mut ids = std::collections::HashSet::new();
        for event in &input.audit_events {
            let valid_id = (1..=128).contains(&event.id.len())
                && event.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                return Err(err(
                    ErrorCode::Validation,
                    format!("Event id {} must be 1 to 128 of [-_A-Za-z0-9].", event.id),
                ));
            }
            if !ids.insert(event.id.as_str()) {
                return Err(err(ErrorCode::DuplicatedAuditEventId, format!("Two events share the id {}.", event.id)));
            }
        }

        let now = Utc::now();
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        let mut records = Vec::new();
        for event in &input.audit_events {
            match check_event_data(event, &channel.account) {
                Ok(data) => {
                    let event_id = uuid::Uuid::new_v4().to_string();
                    let event_time = data.get("eventTime").cloned().unwrap_or(Value::Null);
                    let record = json!({
                        "eventVersion": ACTIVITY_EVENT_VERSION,
                        "eventCategory": "ActivityAuditLog",
                        "eventType": "ActivityLog",
                        "eventID": event_id,
                        "eventTime": event_time,
                        "awsRegion": caller.region.as_str(),
                        "recipientAccountId": channel.account.as_str(),
                        "metadata": {
                            "ingestionTime": now.format("%Y-%m-%dT%H:%M:%S").to_string(),
                            "channelARN": channel.arn(),
                        },
                        "eventData": Value::Object(data),
                    });
                    let record = EventRecord::new(channel.account.clone(), channel.region.clone(), record)
                        .map_err(ServiceError::internal)?;
                    records.push(record);
                    successful.push(json!({"id": event.id, "eventID": event_id}));
                }
                Err(Refusal(code, message)) => {
                    failed.push(json!({"id": event.id, "errorCode": code, "errorMessage": message}))
                }
            }
        }
        if !records.is_empty() {
            self.append_records(&records).await.map_err(crate::error::append_failed)?;
        }
        self.note_ingestion(&channel.arn(), now, &successful, &failed);
        tracing::debug!(accepted = records.len(), refused = failed.len(), at = %format_event_time(now), "PutAuditEvents");
        Ok(json!({"successful": successful, "failed": failed}))
    }
}

#[cfg(test)]
mod tests {
    use opentrail_model::{Principal, PrincipalKind};

    use super::*;

    fn owner() -> AccountId {
        AccountId::parse("111111111111").unwrap()
    }

    fn event(data: Value, checksum: Option<String>) -> AuditEvent {
        AuditEvent { id: "e1".into(), event_data: data.to_string(), event_data_checksum: checksum }
    }

    fn valid() -> Value {
        json!({
            "version": "1.0", "userIdentity": {"type": "User", "principalId": "u1", "details": {"team": "a"}},
            "eventSource": "app.example.com", "eventName": "Login", "eventTime": "2026-11-30T10:00:00Z",
            "UID": "req-1", "recipientAccountId": "111111111111", "sourceIPAddress": "10.0.0.1",
            "requestParameters": {"user": "bob"}
        })
    }

    #[test]
    fn the_open_audit_events_schema_is_enforced() {
        assert!(check_event_data(&event(valid(), None), &owner()).is_ok());
        let code = |data: Value| check_event_data(&event(data, None), &owner()).err().map(|r| r.0);
        let mut missing = valid();
        missing.as_object_mut().unwrap().remove("UID");
        assert_eq!(code(missing), Some("FieldNotFound"));
        let mut long = valid();
        long["eventName"] = json!("x".repeat(1025));
        assert_eq!(code(long), Some("FieldTooLong"));
        let mut recipient = valid();
        recipient["recipientAccountId"] = json!("222222222222");
        assert_eq!(code(recipient), Some("InvalidRecipient"));
        let mut ip = valid();
        ip["sourceIPAddress"] = json!("not-an-ip");
        assert_eq!(code(ip), Some("InvalidData"));
        let mut time = valid();
        time["eventTime"] = json!("yesterday");
        assert_eq!(code(time), Some("InvalidData"));
        for out_of_range in ["0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T00:00:00Z"] {
            let mut time = valid();
            time["eventTime"] = json!(out_of_range);
            assert_eq!(code(time), Some("InvalidData"), "{out_of_range}");
        }
    }

    #[test]
    fn checksums_are_base64_sha256_of_the_event_data() {
        let data = valid().to_string();
        let good = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data.as_bytes()));
        let with = |checksum: &str| AuditEvent {
            id: "e".into(),
            event_data: data.clone(),
            event_data_checksum: Some(checksum.into()),
        };
        assert!(check_event_data(&with(&good), &owner()).is_ok());
        assert_eq!(check_event_data(&with("AAAA"), &owner()).err().map(|r| r.0), Some("InvalidChecksum"));
    }

    #[test]
    fn policies_name_accounts_and_external_ids() {
        let caller = Caller {
            principal: Principal {
                account: AccountId::parse("222222222222").unwrap(),
                access_key_id: "AKIA".into(),
                kind: PrincipalKind::Root,
            },
            region: Region::parse("us-east-1").unwrap(),
        };
        let policy = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["222222222222"]},
            "Action": "cloudtrail-data:PutAuditEvents",
            "Condition": {"StringEquals": {"cloudtrail:ExternalId": "ext-1"}}}]})
        .to_string();
        assert!(policy_allows(&policy, &caller, Some("ext-1")));
        assert!(!policy_allows(&policy, &caller, Some("ext-2")));
        assert!(!policy_allows(&policy, &caller, None));
        let other = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": "333333333333"}}}).to_string();
        assert!(!policy_allows(&other, &caller, None));
    }
}
