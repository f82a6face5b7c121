//! Inputs of the trail operations.

use opentrail_model::{AdvancedEventSelector, EventSelector, InsightSelector, Tag};
use serde::Deserialize;

/// The optional destinations CreateTrail and UpdateTrail share. For updates an empty string
/// clears a field.
#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct Settings {
    pub s3_key_prefix: Option<String>,
    pub sns_topic_name: Option<String>,
    pub cloud_watch_logs_log_group_arn: Option<String>,
    pub cloud_watch_logs_role_arn: Option<String>,
    pub kms_key_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateTrailInput {
    pub name: String,
    pub s3_bucket_name: String,
    pub include_global_service_events: Option<bool>,
    pub is_multi_region_trail: Option<bool>,
    pub enable_log_file_validation: Option<bool>,
    pub is_organization_trail: Option<bool>,
    pub tags_list: Option<Vec<Tag>>,
    #[serde(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateTrailInput {
    pub name: String,
    pub s3_bucket_name: Option<String>,
    pub include_global_service_events: Option<bool>,
    pub is_multi_region_trail: Option<bool>,
    pub enable_log_file_validation: Option<bool>,
    pub is_organization_trail: Option<bool>,
    #[serde(flatten)]
    pub settings: Settings,
}

/// A trail by name or ARN (DeleteTrail, GetTrail, GetTrailStatus, StartLogging, StopLogging).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NameInput {
    pub name: String,
}

// The model spells these two members in lower camel case.
#[derive(Debug, Deserialize)]
pub struct DescribeTrailsInput {
    #[serde(rename = "trailNameList")]
    pub trail_name_list: Option<Vec<String>>,
    #[serde(rename = "includeShadowTrails")]
    pub include_shadow_trails: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTrailsInput {
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutEventSelectorsInput {
    pub trail_name: String,
    pub event_selectors: Option<Vec<EventSelector>>,
    pub advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
}

/// GetEventSelectors and GetInsightSelectors: a trail (an event data store is refused).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrailNameInput {
    pub trail_name: Option<String>,
    pub event_data_store: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutInsightSelectorsInput {
    pub trail_name: Option<String>,
    pub insight_selectors: Vec<InsightSelector>,
    pub event_data_store: Option<String>,
    pub insights_destination: Option<String>,
}

/// AddTags and RemoveTags.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagsInput {
    pub resource_id: String,
    pub tags_list: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsInput {
    pub resource_id_list: Vec<String>,
    /// Reserved by the API; ListTags answers in one page.
    pub next_token: Option<String>,
}

/// `ListPublicKeys`, the digest keys. An unknown member is a SerializationException.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ListPublicKeysInput {
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub next_token: Option<String>,
}
