//! CloudTrail Lake's column schemas, and the conversion of CloudTrail records into rows of them.
//!
//! Column names are lower case, as CloudTrail Lake documents them (and as Hive, Athena and
//! Trino store them); SQL resolves names case-insensitively and `canonical_name` gives result
//! columns the camelCase spelling CloudTrail uses. `requestParameters` and the other free-form
//! objects are `map<string,string>`: a nested value becomes its JSON text, so
//! `element_at(requestParameters, 'ipPermissions')` returns JSON that `json_extract` reads.

use std::sync::{Arc, LazyLock};

use arrow_json::reader::ReaderBuilder;
use chrono::{DateTime, NaiveDateTime};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use opentrail_model::lake::StoreCategory;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::LakeError;

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn timestamp(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, None), true)
}

fn boolean(name: &str) -> Field {
    Field::new(name, DataType::Boolean, true)
}

fn structure(name: &str, fields: Vec<Field>) -> Field {
    Field::new(name, DataType::Struct(Fields::from(fields)), true)
}

/// `map<string,string>` with Arrow's conventional entry names (what Parquet writers expect).
fn string_map(name: &str) -> Field {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![Field::new("key", DataType::Utf8, false), text("value")])),
        false,
    );
    Field::new(name, DataType::Map(Arc::new(entries), false), true)
}

fn texts(names: &[&str]) -> Vec<Field> {
    names.iter().map(|name| text(name)).collect()
}

/// The schema of stores for CloudTrail events (management, data, network activity).
pub static CLOUDTRAIL_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let session_issuer = structure("sessionissuer", texts(&["type", "principalid", "arn", "accountid", "username"]));
    let attributes = structure("attributes", vec![timestamp("creationdate"), text("mfaauthenticated")]);
    let web_identity = structure("webidfederationdata", vec![text("federatedprovider"), string_map("attributes")]);
    let session_context = structure(
        "sessioncontext",
        vec![
            attributes,
            session_issuer,
            web_identity,
            text("sourceidentity"),
            text("ec2roledelivery"),
            text("ec2issuedinvpc"),
        ],
    );
    let mut identity = texts(&["type", "principalid", "arn", "accountid", "accesskeyid", "username"]);
    identity.extend([session_context, text("invokedby"), text("identityprovider")]);
    let resource =
        Field::new("item", DataType::Struct(Fields::from(texts(&["accountid", "type", "arn", "arnprefix"]))), true);
    let fields = vec![
        text("eventversion"),
        structure("useridentity", identity),
        timestamp("eventtime"),
        text("eventsource"),
        text("eventname"),
        text("awsregion"),
        text("sourceipaddress"),
        text("useragent"),
        text("errorcode"),
        text("errormessage"),
        string_map("requestparameters"),
        string_map("responseelements"),
        string_map("additionaleventdata"),
        text("requestid"),
        text("eventid"),
        boolean("readonly"),
        Field::new("resources", DataType::List(Arc::new(resource)), true),
        text("eventtype"),
        text("apiversion"),
        boolean("managementevent"),
        text("recipientaccountid"),
        text("sharedeventid"),
        text("annotation"),
        text("vpcendpointid"),
        text("vpcendpointaccountid"),
        string_map("serviceeventdetails"),
        string_map("addendum"),
        string_map("edgedevicedetails"),
        string_map("insightdetails"),
        text("eventcategory"),
        structure("tlsdetails", texts(&["tlsversion", "ciphersuite", "clientprovidedhostheader"])),
        text("sessioncredentialfromconsole"),
        text("eventjson"),
        text("eventjsonchecksum"),
    ];
    Arc::new(Schema::new(fields))
});

/// The schema of stores for events from outside AWS (`ActivityAuditLog`, sent to channels).
pub static ACTIVITY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let identity = structure("useridentity", vec![text("type"), text("principalid"), string_map("details")]);
    let mut event_data = vec![text("version"), identity];
    event_data.extend(texts(&["useragent", "eventsource", "eventname", "eventtime", "uid"]));
    event_data.extend([string_map("requestparameters"), string_map("responseelements")]);
    event_data.extend(texts(&["errorcode", "errormessage", "sourceipaddress", "recipientaccountid"]));
    event_data.push(string_map("additionaleventdata"));
    let fields = vec![
        text("eventversion"),
        text("eventcategory"),
        text("eventtype"),
        text("eventid"),
        timestamp("eventtime"),
        text("awsregion"),
        text("recipientaccountid"),
        string_map("addendum"),
        structure("metadata", texts(&["ingestiontime", "channelarn"])),
        structure("eventdata", event_data),
    ];
    Arc::new(Schema::new(fields))
});

pub fn schema_for(category: StoreCategory) -> SchemaRef {
    match category {
        StoreCategory::ActivityAuditLog => ACTIVITY_SCHEMA.clone(),
        _ => CLOUDTRAIL_SCHEMA.clone(),
    }
}

/// CloudTrail's spelling of a column name (`eventname` -> `eventName`), for result columns of
/// `SELECT *`. Unknown names come back unchanged.
pub fn canonical_name(lower: &str) -> &str {
    const NAMES: [&str; 45] = [
        "eventVersion",
        "userIdentity",
        "eventTime",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "errorCode",
        "errorMessage",
        "requestParameters",
        "responseElements",
        "additionalEventData",
        "requestID",
        "eventID",
        "readOnly",
        "resources",
        "eventType",
        "apiVersion",
        "managementEvent",
        "recipientAccountId",
        "sharedEventID",
        "annotation",
        "vpcEndpointId",
        "vpcEndpointAccountId",
        "serviceEventDetails",
        "addendum",
        "edgeDeviceDetails",
        "insightDetails",
        "eventCategory",
        "tlsDetails",
        "sessionCredentialFromConsole",
        "eventJson",
        "eventJsonChecksum",
        "metadata",
        "eventData",
        "principalId",
        "accountId",
        "accessKeyId",
        "userName",
        "sessionContext",
        "invokedBy",
        "identityProvider",
        "tlsVersion",
        "cipherSuite",
    ];
    NAMES.iter().find(|name| name.eq_ignore_ascii_case(lower)).copied().unwrap_or(lower)
}

/// Parses CloudTrail's `eventTime` (`2026-01-02T03:04:05Z`, also with fractions or an offset)
/// or a Lake literal (`2026-01-02 03:04:05[.mmm]`) into epoch milliseconds.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc().timestamp_millis());
        }
        if let Ok(date) = chrono::NaiveDate::parse_from_str(text, format) {
            return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
        }
    }
    None
}

/// The members of `object` that `fields` name (matched without regard to case), shaped.
fn shape_object(object: &Map<String, Value>, fields: &Fields) -> Map<String, Value> {
    let mut shaped = Map::new();
    for field in fields {
        let member = object.iter().find(|(key, _)| key.eq_ignore_ascii_case(field.name()));
        if let Some((_, member)) = member {
            shaped.insert(field.name().clone(), shape(member, field.data_type()));
        }
    }
    shaped
}

/// Shapes `value` to `data_type`: objects take the fields the schema names (matched without
/// regard to case), maps take every member as text, and anything of an unexpected type becomes
/// its JSON text or null, never an error: a record is stored whatever a producer put in it.
fn shape(value: &Value, data_type: &DataType) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    match data_type {
        DataType::Utf8 => match value {
            Value::String(_) => value.clone(),
            other => Value::String(other.to_string()),
        },
        DataType::Boolean => match value {
            Value::Bool(_) => value.clone(),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => Value::Null,
        },
        DataType::Timestamp(..) => match value {
            Value::String(s) => parse_time_ms(s).map_or(Value::Null, Value::from),
            _ => Value::Null,
        },
        DataType::Struct(fields) => match value {
            Value::Object(object) => Value::Object(shape_object(object, fields)),
            _ => Value::Null,
        },
        DataType::Map(..) => match value {
            Value::Object(object) => Value::Object(
                object
                    .iter()
                    .map(|(key, member)| {
                        let text = match member {
                            Value::Null => Value::Null,
                            Value::String(_) => member.clone(),
                            other => Value::String(other.to_string()),
                        };
                        (key.clone(), text)
                    })
                    .collect(),
            ),
            _ => Value::Null,
        },
        DataType::List(item) => match value {
            Value::Array(items) => Value::Array(items.iter().map(|v| shape(v, item.data_type())).collect()),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// One row of a store: the record shaped to the store's schema (plus, for CloudTrail events,
/// the record's own JSON text and its SHA-256 in `eventjson`/`eventjsonchecksum`).
pub fn row(record: &Map<String, Value>, category: StoreCategory) -> Value {
    let mut row = shape_object(record, schema_for(category).fields());
    if category != StoreCategory::ActivityAuditLog {
        let json = serde_json::to_string(record).unwrap_or_default();
        row.insert("eventjsonchecksum".into(), Value::String(hex::encode(Sha256::digest(json.as_bytes()))));
        row.insert("eventjson".into(), Value::String(json));
    }
    Value::Object(row)
}

/// Rows to an Arrow batch of the category's schema.
pub fn batch(rows: &[Value], category: StoreCategory) -> Result<RecordBatch, LakeError> {
    let schema = schema_for(category);
    let mut decoder = ReaderBuilder::new(schema.clone()).with_batch_size(rows.len().max(1)).build_decoder()?;
    decoder.serialize(rows)?;
    Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// The day partition (`YYYY-MM-DD`) of an epoch-milliseconds time.
pub fn day_of(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray, MapArray};
    use datafusion::arrow::datatypes::TimestampMillisecondType;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_record_becomes_a_row_of_the_lake_schema() {
        let record = json!({
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "principalId": "AIDA", "arn": "arn:aws:iam::1:user/bob",
                             "accountId": "111122223333", "accessKeyId": "AKIA1", "userName": "bob",
                             "sessionContext": {"attributes": {"creationDate": "2023-01-01T00:00:00Z", "mfaAuthenticated": "false"}}},
            "eventTime": "2023-01-22T16:53:53Z",
            "eventSource": "s3.amazonaws.com",
            "eventName": "PutObject",
            "requestParameters": {"bucketName": "b", "key": "k", "nested": {"a": [1, 2]}, "count": 3},
            "readOnly": false,
            "resources": [{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::b/k"}],
            "managementEvent": "false",
            "unknownField": 1
        });
        let record = record.as_object().unwrap();
        let batch = batch(&[row(record, StoreCategory::CloudTrailEvents)], StoreCategory::CloudTrailEvents).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let time = batch.column_by_name("eventtime").unwrap().as_primitive::<TimestampMillisecondType>();
        assert_eq!(time.value(0), 1_674_406_433_000);
        let params = batch.column_by_name("requestparameters").unwrap().as_any().downcast_ref::<MapArray>().unwrap();
        let entries = params.value(0);
        let keys = entries.column(0).as_string::<i32>();
        let values = entries.column(1).as_string::<i32>();
        let pairs: Vec<(&str, &str)> = (0..keys.len()).map(|i| (keys.value(i), values.value(i))).collect();
        assert_eq!(pairs, vec![("bucketName", "b"), ("key", "k"), ("nested", r#"{"a":[1,2]}"#), ("count", "3")]);
        assert!(!batch.column_by_name("managementevent").unwrap().as_boolean().value(0));
        let json = batch.column_by_name("eventjson").unwrap().as_string::<i32>().value(0).to_string();
        assert!(json.contains("\"unknownField\":1"));
    }

    #[test]
    fn odd_values_become_null_not_errors() {
        let record = json!({"eventTime": "not a time", "eventName": 5, "readOnly": "maybe", "resources": "x"});
        let rows = [row(record.as_object().unwrap(), StoreCategory::CloudTrailEvents)];
        let batch = batch(&rows, StoreCategory::CloudTrailEvents).unwrap();
        assert!(batch.column_by_name("eventtime").unwrap().is_null(0));
        assert_eq!(batch.column_by_name("eventname").unwrap().as_string::<i32>().value(0), "5");
        assert!(batch.column_by_name("readonly").unwrap().is_null(0));
    }

    #[test]
    fn times_parse_in_both_spellings() {
        assert_eq!(parse_time_ms("2023-01-22T00:00:00Z"), Some(1_674_345_600_000));
        assert_eq!(parse_time_ms("2023-01-22 00:00:00"), Some(1_674_345_600_000));
        assert_eq!(parse_time_ms("2023-01-22 00:00:00.500"), Some(1_674_345_600_500));
        assert_eq!(parse_time_ms("2023-01-22"), Some(1_674_345_600_000));
        assert_eq!(day_of(1_674_345_600_000), "2023-01-22");
        assert_eq!(canonical_name("sourceipaddress"), "sourceIPAddress");
    }
}
