//! A CloudTrail record (one element of a log file's `Records`), kept as JSON so that every field
//! a producer wrote survives byte for byte, with typed accessors for the fields OpenTrail reads.
//!
//! In the journal a record travels inside an [`EventRecord`] envelope that names the account and
//! Region whose history it belongs to, separately from the record's own fields.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
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
    /// An Insights record names the API it is about inside `insightDetails`, not at the top.
    #[error("the Insights record has no insightDetails.eventName")]
    NoInsightEventName,
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
    /// Wraps a record, checking the fields every consumer relies on. Events from outside AWS
    /// (`ActivityAuditLog`) carry their name inside `eventData`, Insights events inside
    /// `insightDetails` (they have no top-level eventName, eventSource or userIdentity).
    pub fn new(account: AccountId, region: Region, record: Value) -> Result<Self, RecordError> {
        let Value::Object(record) = record else { return Err(RecordError::NotAnObject) };
        let view = RecordView::from_map(&record);
        view.event_time().ok_or(RecordError::BadEventTime)?;
        if view.event_category.get() != Some("ActivityAuditLog") {
            if view.is_insight() {
                view.insight().and_then(InsightDetailsView::event_name).ok_or(RecordError::NoInsightEventName)?;
            } else {
                view.event_name().ok_or(RecordError::NoEventName)?;
            }
        }
        Ok(Self { account, region, record })
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
        let (account, region, json) = split_envelope(bytes)?;
        let record: Value = serde_json::from_slice(json).map_err(|_| RecordError::BadEnvelope("json"))?;
        Self::new(account, region, record)
    }

    /// The fields Event History reads, borrowed from this record.
    pub fn view(&self) -> RecordView<'_> {
        RecordView::from_map(&self.record)
    }

    pub fn event_id(&self) -> Option<&str> {
        self.record.get("eventID").and_then(Value::as_str)
    }
}

/// Visitor methods that read numbers and null as `$value` (for lenient field readers).
macro_rules! visit_numbers_and_null_as {
    ($value:expr) => {
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    };
}

/// A string field read leniently: text as it is, booleans as `true`/`false`, anything else as
/// absent. Lets the fast path parse any record without failing on an odd field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(if v { "true" } else { "false" }))))
            }
            visit_numbers_and_null_as!(Text(None));
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(TextVisitor(std::marker::PhantomData))
    }
}

impl<'a> Text<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IdentityView<'a> {
    #[serde(borrow, rename = "type")]
    pub identity_type: Text<'a>,
    #[serde(borrow)]
    pub arn: Text<'a>,
    #[serde(borrow, rename = "principalId")]
    pub principal_id: Text<'a>,
    #[serde(borrow, rename = "userName")]
    pub user_name: Text<'a>,
    #[serde(borrow, rename = "accessKeyId")]
    pub access_key_id: Text<'a>,
}

/// The `insightDetails` of an Insights record: which API the unusual activity is about.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InsightDetailsView<'a> {
    #[serde(borrow)]
    pub state: Text<'a>,
    #[serde(borrow, rename = "eventSource")]
    pub event_source: Text<'a>,
    #[serde(borrow, rename = "eventName")]
    pub event_name: Text<'a>,
    #[serde(borrow, rename = "insightType")]
    pub insight_type: Text<'a>,
    /// Only on `ApiErrorRateInsight` records: the error code whose rate is unusual.
    #[serde(borrow, rename = "errorCode")]
    pub error_code: Text<'a>,
}

impl InsightDetailsView<'_> {
    /// `Start` or `End`.
    pub fn state(&self) -> Option<&str> {
        non_empty(&self.state)
    }

    pub fn event_source(&self) -> Option<&str> {
        non_empty(&self.event_source)
    }

    pub fn event_name(&self) -> Option<&str> {
        non_empty(&self.event_name)
    }

    /// `ApiCallRateInsight` or `ApiErrorRateInsight`.
    pub fn insight_type(&self) -> Option<&str> {
        non_empty(&self.insight_type)
    }

    pub fn error_code(&self) -> Option<&str> {
        non_empty(&self.error_code)
    }
}

/// A text field's value, with the empty string read as absent (producers write `""` for "none").
fn non_empty<'t>(text: &'t Text<'_>) -> Option<&'t str> {
    text.get().filter(|value| !value.is_empty())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResourceView<'a> {
    #[serde(borrow, rename = "type", deserialize_with = "cow_text")]
    pub resource_type: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "ARN")]
    pub arn_upper: Text<'a>,
    #[serde(borrow, rename = "arn")]
    pub arn_lower: Text<'a>,
}

fn cow_text<'de: 'a, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Text::deserialize(deserializer)?.0)
}

impl ResourceView<'_> {
    pub fn name(&self) -> Option<&str> {
        self.arn_upper.get().or(self.arn_lower.get())
    }
}

/// The fields of a record that Event History (and the Insights detector) reads, borrowed from
/// its JSON without building the rest: the indexer parses a record this way from the journal
/// bytes, about four times faster than a full parse.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RecordView<'a> {
    #[serde(borrow, rename = "eventID")]
    pub event_id: Text<'a>,
    #[serde(borrow, rename = "eventName")]
    pub event_name: Text<'a>,
    #[serde(borrow, rename = "eventSource")]
    pub event_source: Text<'a>,
    #[serde(borrow, rename = "eventTime")]
    pub event_time: Text<'a>,
    #[serde(borrow, rename = "eventType")]
    pub event_type: Text<'a>,
    #[serde(borrow, rename = "eventCategory")]
    pub event_category: Text<'a>,
    #[serde(borrow, rename = "managementEvent")]
    pub management_event: Text<'a>,
    #[serde(borrow, rename = "readOnly")]
    pub read_only: Text<'a>,
    #[serde(borrow, rename = "errorCode")]
    pub error_code: Text<'a>,
    #[serde(borrow, rename = "userAgent")]
    pub user_agent: Text<'a>,
    #[serde(borrow, rename = "userIdentity", deserialize_with = "object_or_none")]
    pub user_identity: Option<IdentityView<'a>>,
    #[serde(borrow, deserialize_with = "objects_or_empty")]
    pub resources: Vec<ResourceView<'a>>,
    #[serde(borrow, rename = "insightDetails", deserialize_with = "object_or_none")]
    pub insight_details: Option<InsightDetailsView<'a>>,
}

/// A JSON object read as `T`; any other JSON value reads as nothing.
struct ObjectOrNothing<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOrNothing<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = ObjectOrNothing<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|t| ObjectOrNothing(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ObjectOrNothing(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ObjectOrNothing(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ObjectOrNothing(None))
            }
            visit_numbers_and_null_as!(ObjectOrNothing(None));
        }
        deserializer.deserialize_any(ObjectVisitor(std::marker::PhantomData))
    }
}

fn object_or_none<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    Ok(ObjectOrNothing::deserialize(deserializer)?.0)
}

/// The objects of a JSON array (other elements and non-arrays are skipped).
fn objects_or_empty<'de: 'a, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ResourceView<'a>>, D::Error> {
    struct ArrayVisitor<'a>(std::marker::PhantomData<&'a ()>);
    impl<'de: 'a, 'a> Visitor<'de> for ArrayVisitor<'a> {
        type Value = Vec<ResourceView<'a>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(ObjectOrNothing(item)) = seq.next_element::<ObjectOrNothing<ResourceView<'a>>>()? {
                items.extend(item);
            }
            Ok(items)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Vec::new())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        visit_numbers_and_null_as!(Vec::new());
    }
    deserializer.deserialize_any(ArrayVisitor(std::marker::PhantomData))
}

impl<'a> RecordView<'a> {
    /// Parses the view from record JSON. Fields of unexpected types read as absent, so this
    /// fails only on text that is not JSON (journal records are objects: see [`EventRecord::new`]).
    pub fn from_json(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// Reads the view from an in-memory record, borrowing its strings.
    pub fn from_map(record: &'a Map<String, Value>) -> Self {
        // Every field reader is lenient, so reading a JSON map cannot fail.
        Self::deserialize(record).unwrap_or_default()
    }

    pub fn event_time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(self.event_time.get()?).ok().map(|t| t.with_timezone(&Utc))
    }

    pub fn event_id(&self) -> Option<&str> {
        self.event_id.get()
    }

    /// The top-level `eventName` only (an Insights record has its name in [`Self::insight`]).
    pub fn event_name(&self) -> Option<&str> {
        self.event_name.get()
    }

    /// The top-level `eventSource` only (an Insights record has its source in [`Self::insight`]).
    pub fn event_source(&self) -> Option<&str> {
        self.event_source.get()
    }

    /// The call's error code. CloudTrail writes none on success, but producers also write
    /// `null` or `""`; all three mean the call succeeded.
    pub fn error_code(&self) -> Option<&str> {
        non_empty(&self.error_code)
    }

    pub fn user_agent(&self) -> Option<&str> {
        non_empty(&self.user_agent)
    }

    /// `userIdentity.arn`, the caller Insights attributions name (`userIdentityArn`).
    pub fn user_arn(&self) -> Option<&str> {
        non_empty(&self.user_identity.as_ref()?.arn)
    }

    /// The `insightDetails` of an Insights record; `None` for every other record, even one that
    /// happens to carry a field of that name.
    pub fn insight(&self) -> Option<&InsightDetailsView<'_>> {
        if self.is_insight() { self.insight_details.as_ref() } else { None }
    }

    pub fn access_key_id(&self) -> Option<&str> {
        self.user_identity.as_ref()?.access_key_id.get().filter(|key| !key.is_empty())
    }

    pub fn read_only(&self) -> Option<&'static str> {
        match self.read_only.get()? {
            "true" => Some("true"),
            "false" => Some("false"),
            _ => None,
        }
    }

    pub fn is_management_event(&self) -> bool {
        match self.event_category.get() {
            Some(category) => category == "Management",
            None => self.management_event.get() != Some("false"),
        }
    }

    pub fn is_insight(&self) -> bool {
        self.event_type.get() == Some("AwsCloudTrailInsight") || self.event_category.get() == Some("Insight")
    }

    pub fn username(&self) -> Option<Cow<'_, str>> {
        let identity = self.user_identity.as_ref()?;
        match identity.identity_type.get() {
            Some("Root") => Some(Cow::Borrowed(identity.user_name.get().unwrap_or("root"))),
            Some("AssumedRole") => identity
                .arn
                .get()
                .and_then(|arn| arn.rsplit('/').next())
                .or_else(|| identity.principal_id.get().and_then(|p| p.split(':').nth(1)))
                .map(Cow::Borrowed),
            _ => identity.user_name.get().map(Cow::Borrowed),
        }
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
        push(LookupAttribute::EventId, self.event_id.get());
        // An Insights event is found by the API it is about (LookupEvents with
        // EventCategory=insight and EventName=CompleteLifecycleAction).
        match self.insight() {
            Some(insight) => {
                push(LookupAttribute::EventName, insight.event_name());
                push(LookupAttribute::EventSource, insight.event_source());
            }
            None => {
                push(LookupAttribute::EventName, self.event_name.get());
                push(LookupAttribute::EventSource, self.event_source.get());
            }
        }
        push(LookupAttribute::ReadOnly, self.read_only());
        push(LookupAttribute::Username, self.username().as_deref());
        push(LookupAttribute::AccessKeyId, self.access_key_id());
        for resource in &self.resources {
            push(LookupAttribute::ResourceType, resource.resource_type.as_deref());
            if let Some(name) = resource.name() {
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

/// Splits a journal entry into its routing header and the record's JSON bytes, without
/// parsing the JSON.
pub fn split_envelope(bytes: &[u8]) -> Result<(AccountId, Region, &[u8]), RecordError> {
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
    Ok((account, region, &rest[region_len..]))
}

/// The record format version OpenTrail writes.
pub const EVENT_VERSION: &str = "1.11";

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
        let keys = sample().view().lookup_keys();
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
    fn the_fast_view_agrees_with_the_full_parse() {
        let record = sample();
        let json = serde_json::to_vec(&record.record).unwrap();
        let fast = RecordView::from_json(&json).unwrap();
        assert_eq!(fast.lookup_keys(), record.view().lookup_keys());
        assert_eq!(fast.event_time(), record.view().event_time());
        // Odd field types are read leniently, not rejected.
        let odd = br#"{"eventName": 5, "readOnly": "true", "eventTime": null, "extra": {"a": [1, {"b": 2}]},
                        "userIdentity": "someone", "resources": [7, {"type": "T", "ARN": "arn:x"}, null]}"#;
        let view = RecordView::from_json(odd).unwrap();
        assert_eq!(view.event_name, Text(None));
        assert_eq!(view.read_only(), Some("true"));
        assert!(view.user_identity.is_none());
        assert_eq!(view.resources.len(), 1);
        assert_eq!(view.resources[0].name(), Some("arn:x"));
        let not_an_array = RecordView::from_json(br#"{"resources": {"type": "T"}, "userIdentity": [1]}"#).unwrap();
        assert!(not_an_array.resources.is_empty() && not_an_array.user_identity.is_none());
        assert!(RecordView::from_json(b"{not json").is_err());
    }

    /// A real Insights record (the CloudTrail User Guide's `ApiCallRateInsight` Start event).
    fn insight_json() -> Value {
        json!({
            "eventVersion": "1.07",
            "eventTime": "2019-10-15T21:13:00Z",
            "awsRegion": "us-east-1",
            "eventID": "EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7",
            "eventType": "AwsCloudTrailInsight",
            "recipientAccountId": "123456789012",
            "sharedEventID": "EXAMPLE8-02b2-4e93-9aab-08ed47ea5fd3",
            "insightDetails": {
                "state": "Start",
                "eventSource": "autoscaling.amazonaws.com",
                "eventName": "CompleteLifecycleAction",
                "insightType": "ApiCallRateInsight",
                "insightContext": {
                    "statistics": {"baseline": {"average": 0.0000882145}, "insight": {"average": 0.6},
                                   "insightDuration": 5, "baselineDuration": 11336},
                    "attributions": [
                        {"attribute": "userIdentityArn",
                         "insight": [{"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1", "average": 0.2}],
                         "baseline": [{"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1", "average": 0.0000882145}]},
                        {"attribute": "errorCode", "insight": [{"value": "null", "average": 0.6}],
                         "baseline": [{"value": "null", "average": 0.0000882145}]}
                    ]
                }
            },
            "eventCategory": "Insight"
        })
    }

    fn wrap(record: Value) -> Result<EventRecord, RecordError> {
        EventRecord::new(AccountId::parse("123456789012").unwrap(), Region::parse("us-east-1").unwrap(), record)
    }

    #[test]
    fn insights_records_are_named_by_their_insight_details() {
        let record = wrap(insight_json()).unwrap();
        let view = record.view();
        assert!(view.is_insight());
        assert_eq!(view.event_name(), None, "event_name is the top-level field only");
        assert_eq!(view.event_source(), None);
        let insight = view.insight().unwrap();
        assert_eq!(insight.state(), Some("Start"));
        assert_eq!(insight.event_source(), Some("autoscaling.amazonaws.com"));
        assert_eq!(insight.event_name(), Some("CompleteLifecycleAction"));
        assert_eq!(insight.insight_type(), Some("ApiCallRateInsight"));
        assert_eq!(insight.error_code(), None, "only ApiErrorRateInsight records name an error code");
        assert_eq!(view.user_arn(), None);
        assert_eq!(view.user_agent(), None);

        let mut errors = insight_json();
        errors["insightDetails"]["insightType"] = json!("ApiErrorRateInsight");
        errors["insightDetails"]["errorCode"] = json!("AccessDenied");
        let errors = wrap(errors).unwrap();
        assert_eq!(errors.view().insight().unwrap().error_code(), Some("AccessDenied"));

        // Either marker makes a record an Insights record (older records lack eventCategory).
        let mut by_type = insight_json();
        by_type.as_object_mut().unwrap().remove("eventCategory");
        assert!(wrap(by_type).unwrap().view().insight().is_some());
        let mut by_category = insight_json();
        by_category.as_object_mut().unwrap().remove("eventType");
        assert!(wrap(by_category).unwrap().view().insight().is_some());
    }

    #[test]
    fn an_insights_record_needs_the_name_of_its_api() {
        let mut nameless = insight_json();
        nameless["insightDetails"].as_object_mut().unwrap().remove("eventName");
        assert_eq!(wrap(nameless), Err(RecordError::NoInsightEventName));
        let mut no_details = insight_json();
        no_details.as_object_mut().unwrap().remove("insightDetails");
        assert_eq!(wrap(no_details), Err(RecordError::NoInsightEventName));
        // A top-level eventName does not stand in for the Insights one.
        let mut top_level = insight_json();
        top_level["eventName"] = json!("CompleteLifecycleAction");
        top_level["insightDetails"] = json!("not an object");
        assert_eq!(wrap(top_level), Err(RecordError::NoInsightEventName));
        // Outside events keep their exemption.
        let activity = json!({"eventTime": "2024-03-01T10:00:00Z", "eventCategory": "ActivityAuditLog"});
        assert!(wrap(activity).is_ok());
        assert_eq!(wrap(json!({"eventTime": "2024-03-01T10:00:00Z"})), Err(RecordError::NoEventName));
    }

    #[test]
    fn insights_events_are_looked_up_by_the_api_they_are_about() {
        let record = wrap(insight_json()).unwrap();
        let keys = record.view().lookup_keys();
        assert_eq!(
            keys,
            vec![
                (LookupAttribute::EventId, "EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7".to_owned()),
                (LookupAttribute::EventName, "CompleteLifecycleAction".to_owned()),
                (LookupAttribute::EventSource, "autoscaling.amazonaws.com".to_owned()),
            ]
        );
        let json = serde_json::to_vec(&record.record).unwrap();
        assert_eq!(RecordView::from_json(&json).unwrap().lookup_keys(), keys);
        // insightDetails on a record that is not an Insights record is just an odd field.
        let mut odd = sample();
        odd.record.insert("insightDetails".into(), json!({"eventName": "Other"}));
        assert!(odd.view().insight().is_none());
        assert!(odd.view().lookup_keys().contains(&(LookupAttribute::EventName, "CreateBucket".to_owned())));
    }

    #[test]
    fn error_code_user_agent_and_caller_arn() {
        let view = RecordView::from_json(
            br#"{"errorCode": "AccessDenied", "userAgent": "aws-cli/2.15",
                 "userIdentity": {"arn": "arn:aws:iam::123456789012:user/bob"}}"#,
        )
        .unwrap();
        assert_eq!(view.error_code(), Some("AccessDenied"));
        assert_eq!(view.user_agent(), Some("aws-cli/2.15"));
        assert_eq!(view.user_arn(), Some("arn:aws:iam::123456789012:user/bob"));
        // No error: absent, JSON null or empty.
        for no_error in [&br#"{}"#[..], br#"{"errorCode": null}"#, br#"{"errorCode": ""}"#, br#"{"errorCode": {}}"#] {
            assert_eq!(RecordView::from_json(no_error).unwrap().error_code(), None);
        }
        // The fields borrow from the JSON text: reading them allocates nothing.
        assert!(matches!(view.error_code.0, Some(Cow::Borrowed(_))));
        assert!(matches!(view.user_identity.as_ref().unwrap().arn.0, Some(Cow::Borrowed(_))));
        let sample = sample();
        assert_eq!(sample.view().user_arn(), Some("arn:aws:sts::123456789012:assumed-role/Admin/jane"));
        assert_eq!(sample.view().error_code(), None);
    }

    #[test]
    fn root_username_is_root() {
        let mut record = sample();
        record.record.insert("userIdentity".into(), json!({"type": "Root", "arn": "arn:aws:iam::1:root"}));
        assert_eq!(record.view().username().as_deref(), Some("root"));
    }
}
