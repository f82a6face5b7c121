//! A trail's stored state and the rules for trail names.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::RecordView;
use crate::regions::is_cloudtrail_region;
use crate::selectors::{AdvancedEventSelector, EventSelector, InsightSelector, advanced_selects, basic_selects};
use crate::{AccountId, Arn, Region};

/// What a trail takes a record as: one of the events it logs, or an Insights event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selected {
    Event,
    Insight,
}

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

    /// Whether the trail takes a record of `account` and `region`, and as what. Only records of
    /// the trail's account and of a Region it covers; then events by the event selectors, and
    /// Insights events by the Insights selectors alone. Insights records never pass through
    /// event selectors: they are not calls the trail logs but CloudTrail's analysis of them,
    /// and they have no eventName, eventSource or readOnly at the top level for a selector to
    /// match. Log files and the trail's CloudWatch Logs log group take the same records.
    pub fn selects(&self, account: &str, region: &str, record: &Value) -> Option<Selected> {
        if account != self.account.as_str() || !(self.is_multi_region_trail || region == self.home_region.as_str()) {
            return None;
        }
        // A Region CloudTrail does not have would open a digest chain nobody can ever validate.
        if !is_cloudtrail_region(region) {
            return None;
        }
        // Read after the cheap checks above, which turn away most records of other trails.
        if record.as_object().is_some_and(|map| RecordView::from_map(map).is_insight()) {
            let insight_type = record.pointer("/insightDetails/insightType").and_then(Value::as_str)?;
            let wanted =
                self.insight_selectors.iter().any(|selector| selector.insight_type.as_deref() == Some(insight_type));
            return wanted.then_some(Selected::Insight);
        }
        let selected = match &self.advanced_event_selectors {
            Some(advanced) => advanced_selects(advanced, record),
            None => basic_selects(&self.effective_event_selectors(), record),
        };
        selected.then_some(Selected::Event)
    }

    /// Whether the record at `position` falls in the trail's logging: at or after the start of
    /// its latest logging session and, once logging stopped, before the stop.
    pub fn logs_at(&self, position: u64) -> bool {
        let Some(started) = self.logging_started_at else { return false };
        if position < started {
            return false;
        }
        self.is_logging || self.logging_stopped_at.is_some_and(|stopped| stopped >= started && position < stopped)
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

    fn trail() -> Trail {
        Trail {
            name: "t".into(),
            account: AccountId::parse("123456789012").unwrap(),
            home_region: Region::parse("us-east-1").unwrap(),
            s3_bucket_name: "b".into(),
            s3_key_prefix: None,
            sns_topic_name: None,
            include_global_service_events: true,
            is_multi_region_trail: false,
            log_file_validation_enabled: false,
            cloud_watch_logs_log_group_arn: None,
            cloud_watch_logs_role_arn: None,
            kms_key_id: None,
            is_organization_trail: false,
            event_selectors: None,
            advanced_event_selectors: None,
            insight_selectors: Vec::new(),
            tags: Vec::new(),
            is_logging: true,
            start_logging_time_ms: None,
            stop_logging_time_ms: None,
            logging_started_at: Some(100),
            logging_stopped_at: None,
            created_ms: 0,
        }
    }

    #[test]
    fn a_trail_logs_from_its_session_start_until_it_stops() {
        let logging = trail();
        assert!(!logging.logs_at(99));
        assert!(logging.logs_at(100) && logging.logs_at(u64::MAX));
        let stopped = Trail { is_logging: false, logging_stopped_at: Some(200), ..trail() };
        assert!(stopped.logs_at(100) && stopped.logs_at(199));
        assert!(!stopped.logs_at(200));
        // A stop from before the latest start belongs to an earlier session.
        let stale = Trail { is_logging: false, logging_stopped_at: Some(50), ..trail() };
        assert!(!stale.logs_at(150));
        assert!(!Trail { logging_started_at: None, ..trail() }.logs_at(150));
    }

    #[test]
    fn a_trail_selects_its_accounts_calls_in_its_regions() {
        let record = serde_json::json!({"eventName": "StopLogging", "eventSource": "cloudtrail.amazonaws.com",
            "readOnly": false, "managementEvent": true, "eventCategory": "Management", "eventType": "AwsApiCall"});
        let home = trail();
        assert_eq!(home.selects("123456789012", "us-east-1", &record), Some(Selected::Event));
        assert_eq!(home.selects("123456789012", "eu-west-1", &record), None);
        assert_eq!(home.selects("210987654321", "us-east-1", &record), None);
        let everywhere = Trail { is_multi_region_trail: true, ..trail() };
        assert_eq!(everywhere.selects("123456789012", "eu-west-1", &record), Some(Selected::Event));
        assert_eq!(everywhere.selects("123456789012", "sagov-westsouth-1r", &record), None);
    }

    #[test]
    fn good_names_are_accepted() {
        for good in ["abc", "trail1", "My.Trail_1-x", "192.168.5", &"a".repeat(128)] {
            assert!(validate_trail_name(good).is_ok(), "{good} should be valid");
        }
    }
}
