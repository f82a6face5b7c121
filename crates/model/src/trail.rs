//! A trail's stored state and the rules for trail names.

use serde::{Deserialize, Serialize};

use crate::selectors::{AdvancedEventSelector, EventSelector, InsightSelector};
use crate::{AccountId, Arn, Region};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TrailNameError(pub String);

/// CloudTrail's trail name rules: 3-128 characters of ASCII letters, digits, `.`, `_` and `-`;
/// starting and ending with a letter or digit; no two separators in a row; not an IP address.
pub fn validate_trail_name(name: &str) -> Result<(), TrailNameError> {
    let fail = |why: &str| Err(TrailNameError(format!("Trail name {why}.")));
    if !(3..=128).contains(&name.len()) {
        return fail("must be between 3 and 128 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return fail("can only contain ASCII letters, digits, periods, underscores and dashes");
    }
    let bytes = name.as_bytes();
    if !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return fail("must start and end with a letter or number");
    }
    let is_separator = |b: &u8| matches!(b, b'.' | b'_' | b'-');
    if bytes.windows(2).any(|pair| is_separator(&pair[0]) && is_separator(&pair[1])) {
        return fail("cannot have adjacent periods, underscores or dashes");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return fail("cannot be formatted as an IP address");
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Everything OpenTrail keeps about one trail. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trail {
    pub name: String,
    pub account: AccountId,
    pub home_region: Region,
    pub s3_bucket_name: String,
    pub s3_key_prefix: Option<String>,
    pub sns_topic_name: Option<String>,
    pub include_global_service_events: bool,
    pub is_multi_region_trail: bool,
    pub log_file_validation_enabled: bool,
    pub cloud_watch_logs_log_group_arn: Option<String>,
    pub cloud_watch_logs_role_arn: Option<String>,
    pub kms_key_id: Option<String>,
    pub is_organization_trail: bool,
    /// `None` means the default: all management events, read and write.
    pub event_selectors: Option<Vec<EventSelector>>,
    pub advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
    pub insight_selectors: Vec<InsightSelector>,
    pub tags: Vec<Tag>,
    pub is_logging: bool,
    pub start_logging_time_ms: Option<i64>,
    pub stop_logging_time_ms: Option<i64>,
    /// The journal position where the latest logging session began: delivery starts there.
    #[serde(default)]
    pub logging_started_at: Option<u64>,
    /// The journal position where logging last stopped: delivery ends there.
    #[serde(default)]
    pub logging_stopped_at: Option<u64>,
    pub created_ms: i64,
}

impl Trail {
    pub fn arn(&self) -> String {
        Arn::trail(&self.home_region, &self.account, &self.name)
    }

    pub fn has_custom_event_selectors(&self) -> bool {
        self.event_selectors.is_some() || self.advanced_event_selectors.is_some()
    }

    pub fn has_insight_selectors(&self) -> bool {
        !self.insight_selectors.is_empty()
    }

    /// Whether the trail appears in `region`: at home, or as a shadow of a multi-Region trail.
    pub fn is_visible_in(&self, region: &Region) -> bool {
        self.is_multi_region_trail || &self.home_region == region
    }

    /// The basic selectors a trail reports when none were set.
    pub fn effective_event_selectors(&self) -> Vec<EventSelector> {
        self.event_selectors.clone().unwrap_or_else(|| vec![EventSelector::default_management()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_spec_are_rejected() {
        for bad in ["ab", "-abc", "abc-", "a--b", "a-_b", "my-_ns", "192.168.5.4", "bad name", "é-trail"] {
            assert!(validate_trail_name(bad).is_err(), "{bad} should be invalid");
        }
        assert!(validate_trail_name(&"a".repeat(129)).is_err());
    }

    #[test]
    fn good_names_are_accepted() {
        for good in ["abc", "trail1", "My.Trail_1-x", "192.168.5", &"a".repeat(128)] {
            assert!(validate_trail_name(good).is_ok(), "{good} should be valid");
        }
    }
}
