//! Event selectors, basic and advanced: their validation (the limits CloudTrail enforces) and
//! their evaluation against a record (which events a trail or event data store records).
//!
//! Combination rules: a record is chosen when it matches **any** selector; inside an advanced
//! selector every field selector must match; inside one field selector a value must match one
//! of the positive operators (when there are any) and none of the negative ones.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SelectorError(pub String);

fn invalid<T>(message: impl Into<String>) -> Result<T, SelectorError> {
    Err(SelectorError(message.into()))
}

pub const MAX_BASIC_SELECTORS: usize = 5;
pub const MAX_DATA_RESOURCES: usize = 250;
pub const MAX_ADVANCED_VALUES: usize = 500;
pub const MAX_EVENT_DATA_STORE_SELECTORS: usize = 5;

const DATA_RESOURCE_TYPES: [&str; 3] = ["AWS::S3::Object", "AWS::Lambda::Function", "AWS::DynamoDB::Table"];
const EXCLUDABLE_SOURCES: [&str; 2] = ["kms.amazonaws.com", "rdsdata.amazonaws.com"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DataResource {
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// A basic event selector, as `PutEventSelectors` takes it and `GetEventSelectors` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_write_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_management_events: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_resources: Option<Vec<DataResource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_management_event_sources: Option<Vec<String>>,
}

impl EventSelector {
    /// A new trail's selector: every management event, nothing else.
    pub fn default_management() -> Self {
        Self {
            read_write_type: Some("All".into()),
            include_management_events: Some(true),
            data_resources: Some(Vec::new()),
            exclude_management_event_sources: Some(Vec::new()),
        }
    }

    /// Fills in CloudTrail's defaults, as `GetEventSelectors` reports them.
    pub fn normalized(mut self) -> Self {
        self.read_write_type.get_or_insert_with(|| "All".into());
        self.include_management_events.get_or_insert(true);
        self.data_resources.get_or_insert_with(Vec::new);
        self.exclude_management_event_sources.get_or_insert_with(Vec::new);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AdvancedFieldSelector {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_starts_with: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ends_with: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdvancedEventSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub field_selectors: Vec<AdvancedFieldSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InsightSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insight_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_categories: Option<Vec<String>>,
}

/// What the selectors are for: trails and event data stores allow different fields and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorTarget {
    Trail,
    EventDataStore,
}

pub fn validate_basic(selectors: &[EventSelector]) -> Result<(), SelectorError> {
    if selectors.is_empty() || selectors.len() > MAX_BASIC_SELECTORS {
        return invalid(format!(
            "A trail can have between 1 and {MAX_BASIC_SELECTORS} event selectors; {} were given.",
            selectors.len()
        ));
    }
    let mut specific_resources = 0;
    for selector in selectors {
        if let Some(kind) = &selector.read_write_type
            && !matches!(kind.as_str(), "ReadOnly" | "WriteOnly" | "All")
        {
            return invalid(format!("Invalid ReadWriteType {kind}: use ReadOnly, WriteOnly or All."));
        }
        for source in selector.exclude_management_event_sources.iter().flatten() {
            if !EXCLUDABLE_SOURCES.contains(&source.as_str()) {
                return invalid(format!(
                    "ExcludeManagementEventSources can only contain {}; {source} is not supported.",
                    EXCLUDABLE_SOURCES.join(" or ")
                ));
            }
        }
        for resource in selector.data_resources.iter().flatten() {
            let Some(kind) = resource.resource_type.as_deref() else {
                return invalid("Every DataResource needs a Type.");
            };
            if !DATA_RESOURCE_TYPES.contains(&kind) {
                return invalid(format!(
                    "Invalid DataResource type {kind}: use one of {}.",
                    DATA_RESOURCE_TYPES.join(", ")
                ));
            }
            let values = resource.values.as_deref().unwrap_or_default();
            if values.is_empty() {
                return invalid(format!("The DataResource of type {kind} needs at least one value."));
            }
            let service_prefix = data_resource_service_prefix(kind);
            for value in values {
                if !value.starts_with(service_prefix) {
                    return invalid(format!("Value {value} is not valid for data resource type {kind}."));
                }
                if !is_all_resources_value(value) {
                    specific_resources += 1;
                }
            }
        }
    }
    if specific_resources > MAX_DATA_RESOURCES {
        return invalid(format!(
            "A trail can have at most {MAX_DATA_RESOURCES} data resources; {specific_resources} were given."
        ));
    }
    Ok(())
}

fn data_resource_service_prefix(kind: &str) -> &'static str {
    match kind {
        "AWS::S3::Object" => "arn:aws:s3",
        "AWS::Lambda::Function" => "arn:aws:lambda",
        _ => "arn:aws:dynamodb",
    }
}

/// `arn:aws:s3`, `arn:aws:s3:::`, `arn:aws:lambda` and the like select every resource of a type.
fn is_all_resources_value(value: &str) -> bool {
    matches!(value, "arn:aws:s3" | "arn:aws:s3:::" | "arn:aws:lambda" | "arn:aws:dynamodb")
}

const KNOWN_FIELDS: [&str; 11] = [
    "eventCategory",
    "eventSource",
    "eventName",
    "eventType",
    "readOnly",
    "resources.type",
    "resources.ARN",
    "sessionCredentialFromConsole",
    "userIdentity.arn",
    "errorCode",
    "vpcEndpointId",
];

pub fn validate_advanced(selectors: &[AdvancedEventSelector], target: SelectorTarget) -> Result<(), SelectorError> {
    if selectors.is_empty() {
        return invalid("At least one advanced event selector is required.");
    }
    if target == SelectorTarget::EventDataStore && selectors.len() > MAX_EVENT_DATA_STORE_SELECTORS {
        return invalid(format!(
            "An event data store can have at most {MAX_EVENT_DATA_STORE_SELECTORS} advanced event selectors."
        ));
    }
    let mut total_values = 0;
    for selector in selectors {
        if selector.name.as_ref().is_some_and(|name| name.len() > 1000) {
            return invalid("An advanced event selector name can be at most 1000 characters long.");
        }
        if selector.field_selectors.is_empty() {
            return invalid("Each advanced event selector needs at least one field selector.");
        }
        let mut seen_fields: Vec<&str> = Vec::new();
        for field in &selector.field_selectors {
            if seen_fields.contains(&field.field.as_str()) {
                return invalid(format!("Field {} appears more than once in one selector.", field.field));
            }
            seen_fields.push(&field.field);
            total_values += validate_field_selector(field)?;
        }
        validate_selector_fields(selector, target)?;
    }
    if total_values > MAX_ADVANCED_VALUES {
        return invalid(format!(
            "Advanced event selectors can have at most {MAX_ADVANCED_VALUES} values in total; {total_values} were given."
        ));
    }
    Ok(())
}

/// Checks one field selector's shape; returns how many values it holds.
fn validate_field_selector(field: &AdvancedFieldSelector) -> Result<usize, SelectorError> {
    let name = field.field.as_str();
    if name.is_empty()
        || name.len() > 1000
        || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '|')
    {
        return invalid(format!("Invalid field name {name}."));
    }
    if !KNOWN_FIELDS.contains(&name) {
        return invalid(format!("Field {name} is not supported; use one of {}.", KNOWN_FIELDS.join(", ")));
    }
    let mut values = 0;
    let mut operators = 0;
    for list in operator_lists(field) {
        let Some(list) = list else { continue };
        operators += 1;
        if list.is_empty() {
            return invalid(format!("An operator of field {name} has no values."));
        }
        for value in list {
            if value.is_empty() || value.chars().count() > 2048 {
                return invalid(format!("Values of field {name} must be 1 to 2048 characters long."));
            }
        }
        values += list.len();
    }
    if operators == 0 {
        return invalid(format!("Field {name} needs at least one operator."));
    }
    let only_equals = field.starts_with.is_none()
        && field.ends_with.is_none()
        && field.not_equals.is_none()
        && field.not_starts_with.is_none()
        && field.not_ends_with.is_none();
    if matches!(name, "eventCategory" | "readOnly" | "resources.type") && !only_equals {
        return invalid(format!("Field {name} only supports the Equals operator."));
    }
    if name == "readOnly" && field.equals.iter().flatten().any(|v| v != "true" && v != "false") {
        return invalid("Field readOnly only accepts the values true or false.");
    }
    Ok(values)
}

fn operator_lists(field: &AdvancedFieldSelector) -> [Option<&Vec<String>>; 6] {
    [
        field.equals.as_ref(),
        field.starts_with.as_ref(),
        field.ends_with.as_ref(),
        field.not_equals.as_ref(),
        field.not_starts_with.as_ref(),
        field.not_ends_with.as_ref(),
    ]
}

/// Event data store categories whose selectors may name no field but `eventCategory`.
const SINGLE_FIELD_CATEGORIES: [&str; 4] = ["Insight", "ConfigurationItem", "Evidence", "ActivityAuditLog"];

fn validate_selector_fields(selector: &AdvancedEventSelector, target: SelectorTarget) -> Result<(), SelectorError> {
    let field = |name: &str| selector.field_selectors.iter().find(|f| f.field == name);
    let Some(category) = field("eventCategory") else {
        return invalid("Each advanced event selector must have an eventCategory field selector.");
    };
    let categories = category.equals.as_deref().unwrap_or_default();
    let allowed: &[&str] = match target {
        SelectorTarget::Trail => &["Management", "Data", "NetworkActivity"],
        SelectorTarget::EventDataStore => {
            &["Management", "Data", "NetworkActivity", "Insight", "ConfigurationItem", "Evidence", "ActivityAuditLog"]
        }
    };
    if let Some(bad) = categories.iter().find(|c| !allowed.contains(&c.as_str())) {
        return invalid(format!("Invalid eventCategory {bad}: use one of {}.", allowed.join(", ")));
    }
    // Stores of Insights events, Config items, Audit Manager evidence and outside events hold
    // one kind of record each, chosen by eventCategory alone (as CloudTrail documents).
    if let Some(only) = categories.iter().find(|c| SINGLE_FIELD_CATEGORIES.contains(&c.as_str())) {
        if categories.len() != 1 {
            return invalid(format!("eventCategory {only} cannot be combined with other event categories."));
        }
        if selector.field_selectors.len() != 1 {
            return invalid(format!("For eventCategory {only}, the only supported field is eventCategory."));
        }
    }
    let is_data = categories.iter().any(|c| c == "Data");
    let is_management = categories.iter().any(|c| c == "Management");
    if is_data && field("resources.type").is_none() {
        return invalid("Selectors for data events need a resources.type field selector.");
    }
    if let Some(types) = field("resources.type")
        && types.equals.as_ref().is_none_or(|v| v.len() != 1)
    {
        return invalid("The resources.type field selector takes exactly one value.");
    }
    if is_management && target == SelectorTarget::Trail {
        for field in &selector.field_selectors {
            match field.field.as_str() {
                "eventCategory" | "readOnly" => {}
                "eventSource" => {
                    let only_not_equals = operator_lists(field).iter().flatten().count() == 1
                        && field
                            .not_equals
                            .as_ref()
                            .is_some_and(|values| values.iter().all(|v| EXCLUDABLE_SOURCES.contains(&v.as_str())));
                    if !only_not_equals {
                        return invalid(
                            "For management events on a trail, eventSource only supports NotEquals kms.amazonaws.com or rdsdata.amazonaws.com.",
                        );
                    }
                }
                other => {
                    return invalid(format!("Field {other} is not supported for management events on a trail."));
                }
            }
        }
    }
    Ok(())
}

pub fn validate_insight_selectors(selectors: &[InsightSelector]) -> Result<(), SelectorError> {
    let mut seen = Vec::new();
    for selector in selectors {
        let Some(kind) = selector.insight_type.as_deref() else {
            return invalid("Each insight selector needs an InsightType.");
        };
        if !matches!(kind, "ApiCallRateInsight" | "ApiErrorRateInsight") {
            return invalid(format!("Invalid InsightType {kind}: use ApiCallRateInsight or ApiErrorRateInsight."));
        }
        if seen.contains(&kind) {
            return invalid(format!("InsightType {kind} appears more than once."));
        }
        seen.push(kind);
        for category in selector.event_categories.iter().flatten() {
            if !matches!(category.as_str(), "Management" | "Data") {
                return invalid(format!("Invalid insight event category {category}: use Management or Data."));
            }
        }
    }
    Ok(())
}

/// A record's category, with CloudTrail's defaults for records older than `eventCategory`.
fn event_category(record: &Value) -> &str {
    if let Some(category) = record.get("eventCategory").and_then(Value::as_str) {
        return category;
    }
    match record.get("managementEvent").and_then(Value::as_bool) {
        Some(false) => "Data",
        _ => "Management",
    }
}

fn read_only(record: &Value) -> Option<bool> {
    match record.get("readOnly")? {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// The values a field has in a record (several for `resources.*`).
fn field_values<'a>(record: &'a Value, field: &str) -> Vec<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    let text = |value: Option<&'a Value>| -> Vec<Cow<'a, str>> {
        match value {
            Some(Value::String(s)) => vec![Cow::Borrowed(s.as_str())],
            Some(Value::Bool(b)) => vec![Cow::Owned(b.to_string())],
            _ => Vec::new(),
        }
    };
    match field {
        "eventCategory" => vec![Cow::Borrowed(event_category(record))],
        "readOnly" => read_only(record).map(|b| Cow::Owned(b.to_string())).into_iter().collect(),
        "userIdentity.arn" => text(record.get("userIdentity").and_then(|u| u.get("arn"))),
        "resources.type" | "resources.ARN" => {
            let key = if field == "resources.type" { "type" } else { "ARN" };
            record
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|resource| resource.get(key).and_then(Value::as_str))
                .map(Cow::Borrowed)
                .collect()
        }
        plain => text(record.get(plain)),
    }
}

fn field_matches(field: &AdvancedFieldSelector, values: &[std::borrow::Cow<'_, str>]) -> bool {
    let any = |list: &Option<Vec<String>>, test: &dyn Fn(&str, &str) -> bool| {
        list.iter().flatten().any(|pattern| values.iter().any(|v| test(v, pattern)))
    };
    let has_positive = field.equals.is_some() || field.starts_with.is_some() || field.ends_with.is_some();
    let positive = any(&field.equals, &|v, p| v == p)
        || any(&field.starts_with, &|v, p| v.starts_with(p))
        || any(&field.ends_with, &|v, p| v.ends_with(p));
    let negative = any(&field.not_equals, &|v, p| v == p)
        || any(&field.not_starts_with, &|v, p| v.starts_with(p))
        || any(&field.not_ends_with, &|v, p| v.ends_with(p));
    (!has_positive || positive) && !negative
}

pub fn advanced_selects(selectors: &[AdvancedEventSelector], record: &Value) -> bool {
    selectors.iter().any(|selector| {
        selector.field_selectors.iter().all(|field| field_matches(field, &field_values(record, &field.field)))
    })
}

pub fn basic_selects(selectors: &[EventSelector], record: &Value) -> bool {
    let category = event_category(record);
    let read_only = read_only(record);
    selectors.iter().any(|selector| {
        let read_write_ok = match selector.read_write_type.as_deref().unwrap_or("All") {
            "ReadOnly" => read_only == Some(true),
            "WriteOnly" => read_only == Some(false),
            _ => true,
        };
        if !read_write_ok {
            return false;
        }
        match category {
            "Management" => {
                let source = record.get("eventSource").and_then(Value::as_str).unwrap_or_default();
                selector.include_management_events.unwrap_or(true)
                    && !selector.exclude_management_event_sources.iter().flatten().any(|s| s == source)
            }
            "Data" => selector.data_resources.iter().flatten().any(|resource| data_resource_matches(resource, record)),
            _ => false,
        }
    })
}

fn data_resource_matches(resource: &DataResource, record: &Value) -> bool {
    let Some(kind) = resource.resource_type.as_deref() else { return false };
    let arns: Vec<&str> = record
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("type").and_then(Value::as_str) == Some(kind))
        .filter_map(|r| r.get("ARN").and_then(Value::as_str))
        .collect();
    resource.values.iter().flatten().any(|value| {
        arns.iter().any(|arn| {
            if is_all_resources_value(value) {
                return true;
            }
            match kind {
                // S3 values are bucket or key prefixes.
                "AWS::S3::Object" => arn.starts_with(value.as_str()),
                _ => arn == value,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(name: &str, equals: &[&str]) -> AdvancedFieldSelector {
        AdvancedFieldSelector {
            field: name.into(),
            equals: Some(equals.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn s3_object_event(key_arn: &str, read_only: bool) -> Value {
        json!({
            "eventCategory": "Data", "managementEvent": false, "readOnly": read_only,
            "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
            "resources": [
                {"type": "AWS::S3::Object", "ARN": key_arn},
                {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::b1"}
            ]
        })
    }

    #[test]
    fn six_basic_selectors_are_too_many() {
        let selectors = vec![EventSelector::default_management(); 6];
        assert!(validate_basic(&selectors).is_err());
        assert!(validate_basic(&selectors[..5]).is_ok());
    }

    #[test]
    fn basic_selector_rejects_bad_values() {
        let mut selector = EventSelector::default_management();
        selector.read_write_type = Some("Sometimes".into());
        assert!(validate_basic(std::slice::from_ref(&selector)).is_err());
        let mut selector = EventSelector::default_management();
        selector.exclude_management_event_sources = Some(vec!["s3.amazonaws.com".into()]);
        assert!(validate_basic(&[selector]).is_err());
        let mut selector = EventSelector::default_management();
        selector.data_resources = Some(vec![DataResource {
            resource_type: Some("AWS::S3::Object".into()),
            values: Some(vec!["arn:aws:lambda:::x".into()]),
        }]);
        assert!(validate_basic(&[selector]).is_err());
    }

    #[test]
    fn too_many_data_resources() {
        let mut selector = EventSelector::default_management();
        selector.data_resources = Some(vec![DataResource {
            resource_type: Some("AWS::S3::Object".into()),
            values: Some((0..251).map(|i| format!("arn:aws:s3:::bucket{i}/")).collect()),
        }]);
        assert!(validate_basic(&[selector]).is_err());
    }

    #[test]
    fn advanced_selector_needs_event_category() {
        let selector = AdvancedEventSelector { name: None, field_selectors: vec![field("eventName", &["x"])] };
        assert!(validate_advanced(&[selector], SelectorTarget::Trail).is_err());
    }

    #[test]
    fn advanced_data_selector_needs_resource_type() {
        let selector = AdvancedEventSelector { name: None, field_selectors: vec![field("eventCategory", &["Data"])] };
        assert!(validate_advanced(std::slice::from_ref(&selector), SelectorTarget::Trail).is_err());
        let with_type = AdvancedEventSelector {
            name: Some("s3".into()),
            field_selectors: vec![field("eventCategory", &["Data"]), field("resources.type", &["AWS::S3::Object"])],
        };
        assert!(validate_advanced(&[with_type], SelectorTarget::Trail).is_ok());
    }

    #[test]
    fn advanced_value_limit() {
        let values: Vec<String> = (0..501).map(|i| format!("Event{i}")).collect();
        let selector = AdvancedEventSelector {
            name: None,
            field_selectors: vec![
                field("eventCategory", &["Data"]),
                field("resources.type", &["AWS::S3::Object"]),
                AdvancedFieldSelector { field: "eventName".into(), equals: Some(values), ..Default::default() },
            ],
        };
        assert!(validate_advanced(&[selector], SelectorTarget::Trail).is_err());
    }

    #[test]
    fn management_trail_selector_only_excludes_sources() {
        let selector = AdvancedEventSelector {
            name: None,
            field_selectors: vec![field("eventCategory", &["Management"]), field("eventName", &["CreateTrail"])],
        };
        assert!(validate_advanced(std::slice::from_ref(&selector), SelectorTarget::Trail).is_err());
        assert!(validate_advanced(&[selector], SelectorTarget::EventDataStore).is_ok());
    }

    #[test]
    fn an_insights_store_selects_by_event_category_alone() {
        let insight = AdvancedEventSelector { name: None, field_selectors: vec![field("eventCategory", &["Insight"])] };
        assert!(validate_advanced(std::slice::from_ref(&insight), SelectorTarget::EventDataStore).is_ok());
        assert!(validate_advanced(std::slice::from_ref(&insight), SelectorTarget::Trail).is_err());
        let mixed = AdvancedEventSelector {
            name: None,
            field_selectors: vec![field("eventCategory", &["Insight", "Management"])],
        };
        assert!(validate_advanced(&[mixed], SelectorTarget::EventDataStore).is_err());
        let narrowed = AdvancedEventSelector {
            name: None,
            field_selectors: vec![field("eventCategory", &["Insight"]), field("eventName", &["CreateTrail"])],
        };
        assert!(validate_advanced(&[narrowed], SelectorTarget::EventDataStore).is_err());
        let outside =
            AdvancedEventSelector { name: None, field_selectors: vec![field("eventCategory", &["ActivityAuditLog"])] };
        assert!(validate_advanced(&[outside], SelectorTarget::EventDataStore).is_ok());
    }

    #[test]
    fn basic_default_selects_management_only() {
        let selectors = [EventSelector::default_management()];
        assert!(basic_selects(&selectors, &json!({"eventCategory": "Management", "readOnly": true})));
        assert!(!basic_selects(&selectors, &s3_object_event("arn:aws:s3:::b1/k", true)));
    }

    #[test]
    fn basic_s3_prefix_selects_matching_keys() {
        let selector = EventSelector {
            read_write_type: Some("ReadOnly".into()),
            include_management_events: Some(false),
            data_resources: Some(vec![DataResource {
                resource_type: Some("AWS::S3::Object".into()),
                values: Some(vec!["arn:aws:s3:::b1/logs/".into()]),
            }]),
            exclude_management_event_sources: None,
        };
        let selectors = [selector];
        assert!(basic_selects(&selectors, &s3_object_event("arn:aws:s3:::b1/logs/a", true)));
        assert!(!basic_selects(&selectors, &s3_object_event("arn:aws:s3:::b1/other", true)));
        assert!(!basic_selects(&selectors, &s3_object_event("arn:aws:s3:::b1/logs/a", false)));
        assert!(!basic_selects(&selectors, &json!({"eventCategory": "Management"})));
    }

    #[test]
    fn basic_excluded_sources_are_skipped() {
        let mut selector = EventSelector::default_management();
        selector.exclude_management_event_sources = Some(vec!["kms.amazonaws.com".into()]);
        let selectors = [selector];
        assert!(!basic_selects(&selectors, &json!({"eventSource": "kms.amazonaws.com"})));
        assert!(basic_selects(&selectors, &json!({"eventSource": "iam.amazonaws.com"})));
    }

    #[test]
    fn advanced_operators_combine() {
        let selector = AdvancedEventSelector {
            name: None,
            field_selectors: vec![
                field("eventCategory", &["Data"]),
                field("resources.type", &["AWS::S3::Object"]),
                AdvancedFieldSelector {
                    field: "resources.ARN".into(),
                    starts_with: Some(vec!["arn:aws:s3:::b1/".into()]),
                    not_ends_with: Some(vec![".tmp".into()]),
                    ..Default::default()
                },
                field("readOnly", &["true"]),
            ],
        };
        let selectors = [selector];
        assert!(advanced_selects(&selectors, &s3_object_event("arn:aws:s3:::b1/a.txt", true)));
        assert!(!advanced_selects(&selectors, &s3_object_event("arn:aws:s3:::b1/a.tmp", true)));
        assert!(!advanced_selects(&selectors, &s3_object_event("arn:aws:s3:::b2/a.txt", true)));
        assert!(!advanced_selects(&selectors, &s3_object_event("arn:aws:s3:::b1/a.txt", false)));
    }

    #[test]
    fn insight_selector_validation() {
        let good = InsightSelector { insight_type: Some("ApiCallRateInsight".into()), event_categories: None };
        assert!(validate_insight_selectors(std::slice::from_ref(&good)).is_ok());
        assert!(validate_insight_selectors(&[good.clone(), good]).is_err());
        let bad = InsightSelector { insight_type: Some("Nope".into()), event_categories: None };
        assert!(validate_insight_selectors(&[bad]).is_err());
    }
}
