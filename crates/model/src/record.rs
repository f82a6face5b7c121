//! A CloudTrail record (one element of a log file's `Records`), kept as JSON so that every field
//! a producer wrote survives byte for byte, with typed accessors for the fields OpenTrail reads.
//!
//! In the journal a record travels inside an [`EventRecord`] envelope that names the account and
//! Region whose history it belongs to, separately from the record's own fields.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{AccountId, Region};

/// The lookup attributes of `LookupEvents`, in the order CloudTrail documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LookupAttribute {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

impl LookupAttribute {
    pub const ALL: [LookupAttribute; 8] = [
        Self::EventId,
        Self::EventName,
        Self::ReadOnly,
        Self::Username,
        Self::ResourceType,
        Self::ResourceName,
        Self::EventSource,
        Self::AccessKeyId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EventId => "EventId",
            Self::EventName => "EventName",
            Self::ReadOnly => "ReadOnly",
            Self::Username => "Username",
            Self::ResourceType => "ResourceType",
            Self::ResourceName => "ResourceName",
            Self::EventSource => "EventSource",
            Self::AccessKeyId => "AccessKeyId",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|attribute| attribute.name() == name)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the record is not a JSON object")]
    NotAnObject,
    #[error("the record has no valid eventTime (YYYY-MM-DDTHH:MM:SSZ)")]
    BadEventTime,
    #[error("the record has no eventName")]
    NoEventName,
    #[error("malformed journal entry: {0}")]
    BadEnvelope(&'static str),
}

/// One journal entry: the account and Region it is filed under, and the record's JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub account: AccountId,
    pub region: Region,
    pub record: Map<String, Value>,
}

const ENVELOPE_VERSION: u8 = 1;

impl EventRecord {
    /// Wraps a record, checking the fields every consumer relies on.
    pub fn new(account: AccountId, region: Region, record: Value) -> Result<Self, RecordError> {
        let Value::Object(record) = record else { return Err(RecordError::NotAnObject) };
        let this = Self { account, region, record };
        this.event_time().ok_or(RecordError::BadEventTime)?;
        this.str_field("eventName").ok_or(RecordError::NoEventName)?;
        Ok(this)
    }

    /// Encodes as: version byte, account (12 bytes), Region length and bytes, record JSON.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(&self.record).expect("a JSON map always serialises");
        let region = self.region.as_str().as_bytes();
        let mut out = Vec::with_capacity(1 + 12 + 1 + region.len() + json.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(self.account.as_str().as_bytes());
        out.push(region.len() as u8);
        out.extend_from_slice(region);
        out.extend_from_slice(&json);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let (&version, rest) = bytes.split_first().ok_or(RecordError::BadEnvelope("empty"))?;
        if version != ENVELOPE_VERSION {
            return Err(RecordError::BadEnvelope("unknown version"));
        }
        if rest.len() < 13 {
            return Err(RecordError::BadEnvelope("truncated header"));
        }
        let account = std::str::from_utf8(&rest[..12]).map_err(|_| RecordError::BadEnvelope("account"))?;
        let account = AccountId::parse(account).map_err(|_| RecordError::BadEnvelope("account"))?;
        let region_len = rest[12] as usize;
        let rest = &rest[13..];
        if rest.len() < region_len {
            return Err(RecordError::BadEnvelope("truncated region"));
        }
        let region = std::str::from_utf8(&rest[..region_len]).map_err(|_| RecordError::BadEnvelope("region"))?;
        let region = Region::parse(region).ok_or(RecordError::BadEnvelope("region"))?;
        let record: Value =
            serde_json::from_slice(&rest[region_len..]).map_err(|_| RecordError::BadEnvelope("json"))?;
        Self::new(account, region, record)
    }

    pub fn record_json(&self) -> String {
        serde_json::to_string(&self.record).expect("a JSON map always serialises")
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.record.get(name).and_then(Value::as_str)
    }

    pub fn event_id(&self) -> Option<&str> {
        self.str_field("eventID")
    }

    pub fn event_time(&self) -> Option<DateTime<Utc>> {
        let text = self.str_field("eventTime")?;
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
    }

    /// `readOnly` as CloudTrail's Event History reports it: the string `true` or `false`.
    pub fn read_only(&self) -> Option<&'static str> {
        match self.record.get("readOnly")? {
            Value::Bool(true) => Some("true"),
            Value::Bool(false) => Some("false"),
            Value::String(s) if s == "true" => Some("true"),
            Value::String(s) if s == "false" => Some("false"),
            _ => None,
        }
    }

    pub fn is_management_event(&self) -> bool {
        match self.str_field("eventCategory") {
            Some(category) => category == "Management",
            None => self.record.get("managementEvent").and_then(Value::as_bool) != Some(false),
        }
    }

    fn user_identity(&self) -> Option<&Map<String, Value>> {
        self.record.get("userIdentity").and_then(Value::as_object)
    }

    pub fn access_key_id(&self) -> Option<&str> {
        self.user_identity()?.get("accessKeyId").and_then(Value::as_str).filter(|k| !k.is_empty())
    }

    /// Event History's `Username`: the IAM user name, `root` for the root user, the session
    /// name for an assumed role.
    pub fn username(&self) -> Option<String> {
        let identity = self.user_identity()?;
        let text = |key: &str| identity.get(key).and_then(Value::as_str);
        match text("type") {
            Some("Root") => Some(text("userName").unwrap_or("root").to_owned()),
            Some("AssumedRole") => text("arn")
                .and_then(|arn| arn.rsplit('/').next())
                .map(str::to_owned)
                .or_else(|| text("principalId").and_then(|p| p.split(':').nth(1)).map(str::to_owned)),
            _ => text("userName").map(str::to_owned),
        }
    }

    /// `(ResourceType, ResourceName)` pairs from the record's `resources`.
    pub fn resources(&self) -> Vec<(Option<String>, Option<String>)> {
        self.record
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|resource| {
                let text = |key: &str| resource.get(key).and_then(Value::as_str).map(str::to_owned);
                (text("type"), text("ARN").or_else(|| text("arn")))
            })
            .collect()
    }

    /// Every (attribute, value) pair this record can be found by. A resource ARN also yields
    /// its short name (the part after the last `/` or `:`), so `ResourceName=trail1` finds
    /// calls on `arn:...:trail/trail1`.
    pub fn lookup_keys(&self) -> Vec<(LookupAttribute, String)> {
        let mut keys = Vec::new();
        let mut push = |attribute, value: Option<&str>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                keys.push((attribute, value.to_owned()));
            }
        };
        push(LookupAttribute::EventId, self.event_id());
        push(LookupAttribute::EventName, self.str_field("eventName"));
        push(LookupAttribute::ReadOnly, self.read_only());
        push(LookupAttribute::Username, self.username().as_deref());
        push(LookupAttribute::EventSource, self.str_field("eventSource"));
        push(LookupAttribute::AccessKeyId, self.access_key_id());
        for (resource_type, resource_name) in self.resources() {
            push(LookupAttribute::ResourceType, resource_type.as_deref());
            if let Some(name) = resource_name.as_deref() {
                push(LookupAttribute::ResourceName, Some(name));
                let short = name.rsplit(['/', ':']).next().filter(|short| *short != name);
                push(LookupAttribute::ResourceName, short);
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Formats a time as a record's `eventTime`: `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_event_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> EventRecord {
        EventRecord::new(
            AccountId::parse("123456789012").unwrap(),
            Region::parse("us-east-1").unwrap(),
            json!({
                "eventVersion": "1.08",
                "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/Admin/jane",
                                  "accessKeyId": "ASIAEXAMPLE"},
                "eventTime": "2024-03-01T10:00:00Z",
                "eventSource": "s3.amazonaws.com",
                "eventName": "CreateBucket",
                "readOnly": false,
                "eventID": "e1",
                "resources": [{"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::my-bucket"}]
            }),
        )
        .unwrap()
    }

    #[test]
    fn envelope_round_trips() {
        let record = sample();
        assert_eq!(EventRecord::decode(&record.encode()).unwrap(), record);
    }

    #[test]
    fn corrupt_envelopes_are_errors_not_panics() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            let _ = EventRecord::decode(&bytes[..cut]);
        }
        assert!(EventRecord::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn records_need_time_and_name() {
        let account = AccountId::parse("123456789012").unwrap();
        let region = Region::parse("us-east-1").unwrap();
        let no_time = json!({"eventName": "X"});
        assert_eq!(EventRecord::new(account.clone(), region.clone(), no_time), Err(RecordError::BadEventTime));
        assert_eq!(EventRecord::new(account, region, json!([])), Err(RecordError::NotAnObject));
    }

    #[test]
    fn lookup_keys_cover_every_attribute() {
        let keys = sample().lookup_keys();
        let has = |attribute, value: &str| keys.contains(&(attribute, value.to_owned()));
        assert!(has(LookupAttribute::EventId, "e1"));
        assert!(has(LookupAttribute::EventName, "CreateBucket"));
        assert!(has(LookupAttribute::ReadOnly, "false"));
        assert!(has(LookupAttribute::Username, "jane"));
        assert!(has(LookupAttribute::EventSource, "s3.amazonaws.com"));
        assert!(has(LookupAttribute::AccessKeyId, "ASIAEXAMPLE"));
        assert!(has(LookupAttribute::ResourceType, "AWS::S3::Bucket"));
        assert!(has(LookupAttribute::ResourceName, "arn:aws:s3:::my-bucket"));
        assert!(has(LookupAttribute::ResourceName, "my-bucket"));
    }

    #[test]
    fn root_username_is_root() {
        let mut record = sample();
        record.record.insert("userIdentity".into(), json!({"type": "Root", "arn": "arn:aws:iam::1:root"}));
        assert_eq!(record.username().as_deref(), Some("root"));
    }
}
