//! CloudTrail Lake's control-plane state: event data stores, channels, imports and queries, and
//! the rules that decide what is valid (names, retention bounds, which events a store takes).
//!
//! Times are milliseconds since the epoch; journal positions are byte offsets.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::selectors::{AdvancedEventSelector, AdvancedFieldSelector, InsightSelector, advanced_selects};
use crate::{AccountId, Region, Tag};

/// Days a deleted event data store can still be restored.
pub const PENDING_DELETION_DAYS: i64 = 7;
/// Event data stores per account and Region.
pub const MAX_EVENT_DATA_STORES: usize = 10;
/// Channels per account and Region.
pub const MAX_CHANNELS: usize = 25;
/// Queued plus running queries per account.
pub const MAX_CONCURRENT_QUERIES: usize = 10;
/// Days query results stay readable and ListQueries looks back.
pub const QUERY_RESULT_DAYS: i64 = 7;

pub const EXTENDABLE_RETENTION_PRICING: &str = "EXTENDABLE_RETENTION_PRICING";
pub const FIXED_RETENTION_PRICING: &str = "FIXED_RETENTION_PRICING";

/// What an event data store holds; one family per store, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreCategory {
    /// Management, Data and NetworkActivity events (the CloudTrail record schema).
    CloudTrailEvents,
    /// Events from outside AWS, sent through channels (the `eventData` schema).
    ActivityAuditLog,
    /// Insight events.
    Insight,
    /// AWS Config configuration items or Audit Manager evidence: accepted as stores, but
    /// OpenTrail has no source that produces them.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StoreStatus {
    Created,
    Enabled,
    PendingDeletion,
    StartingIngestion,
    StoppingIngestion,
    StoppedIngestion,
}

impl StoreStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Enabled => "ENABLED",
            Self::PendingDeletion => "PENDING_DELETION",
            Self::StartingIngestion => "STARTING_INGESTION",
            Self::StoppingIngestion => "STOPPING_INGESTION",
            Self::StoppedIngestion => "STOPPED_INGESTION",
        }
    }
}

/// A span of the journal during which a store was ingesting: `[from, to)`, open while ingesting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestionWindow {
    pub from: u64,
    pub to: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDataStore {
    /// The UUID that SQL names the table by.
    pub id: String,
    pub account: AccountId,
    pub region: Region,
    pub name: String,
    pub status: StoreStatus,
    pub advanced_event_selectors: Vec<AdvancedEventSelector>,
    pub multi_region_enabled: bool,
    pub organization_enabled: bool,
    pub retention_period_days: u32,
    pub termination_protection_enabled: bool,
    pub billing_mode: String,
    pub kms_key_id: Option<String>,
    pub tags: Vec<Tag>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub deleted_ms: Option<i64>,
    /// Which journal spans this store takes events from (ingestion started and stopped).
    pub ingestion: Vec<IngestionWindow>,
    /// On a source store (CloudTrail management events): the Insights it has enabled
    /// (`PutInsightSelectors`); empty when Insights are off. Defaulted so that documents
    /// stored before Insights existed still load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insight_selectors: Vec<InsightSelector>,
    /// On a source store with Insights enabled: the ARN of the store (of category `Insight`)
    /// that receives its Insights events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insights_destination: Option<String>,
}

pub fn event_data_store_arn(region: &Region, account: &AccountId, id: &str) -> String {
    format!("arn:aws:cloudtrail:{}:{}:eventdatastore/{id}", region.as_str(), account.as_str())
}

pub fn channel_arn(region: &Region, account: &AccountId, id: &str) -> String {
    format!("arn:aws:cloudtrail:{}:{}:channel/{id}", region.as_str(), account.as_str())
}

/// The selectors CloudTrail gives a store created without any: all management events.
pub fn default_store_selectors() -> Vec<AdvancedEventSelector> {
    vec![AdvancedEventSelector {
        name: Some("Default management events".into()),
        field_selectors: vec![AdvancedFieldSelector {
            field: "eventCategory".into(),
            equals: Some(vec!["Management".into()]),
            ..AdvancedFieldSelector::default()
        }],
    }]
}

/// Event data store names: 3-128 characters of letters, digits, `.`, `_` and `-`.
pub fn valid_store_name(name: &str) -> bool {
    (3..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The retention bounds of a billing mode, in days.
pub fn retention_bounds(billing_mode: &str) -> (u32, u32) {
    if billing_mode == FIXED_RETENTION_PRICING { (7, 2557) } else { (7, 3653) }
}

impl EventDataStore {
    pub fn arn(&self) -> String {
        event_data_store_arn(&self.region, &self.account, &self.id)
    }

    pub fn category(&self) -> StoreCategory {
        category_of(&self.advanced_event_selectors)
    }

    pub fn is_ingesting(&self) -> bool {
        self.ingestion.last().is_some_and(|window| window.to.is_none())
    }

    /// Whether the store takes the record at journal `position`, filed under `region`.
    ///
    /// Insights events go to stores of category `Insight` only, and those take nothing else:
    /// an Insights record is told apart by `eventType` as well as by `eventCategory`, because a
    /// record without `eventCategory` would otherwise read as a management event.
    pub fn takes(&self, position: u64, region: &Region, record: &Value) -> bool {
        let family_matches = match self.category() {
            StoreCategory::CloudTrailEvents => !is_insight_record(record),
            StoreCategory::Insight => is_insight_record(record),
            StoreCategory::ActivityAuditLog | StoreCategory::Other => false,
        };
        family_matches
            && self.status != StoreStatus::PendingDeletion
            && self.ingestion.iter().any(|w| position >= w.from && w.to.is_none_or(|to| position < to))
            && (self.multi_region_enabled || region == &self.region)
            && (self.category() == StoreCategory::Insight || advanced_selects(&self.advanced_event_selectors, record))
    }

    /// Whether the store's selectors take management events (of either kind, or write events
    /// only when `write` is set): what a source of Insights needs (`ApiErrorRateInsight` counts
    /// every management call, `ApiCallRateInsight` write calls).
    pub fn logs_management_events(&self, write: bool) -> bool {
        self.category() == StoreCategory::CloudTrailEvents
            && self.advanced_event_selectors.iter().any(|selector| {
                let equals = |name: &str, value: &str| {
                    selector
                        .field_selectors
                        .iter()
                        .find(|f| f.field == name)
                        .map(|f| f.equals.iter().flatten().any(|v| v == value))
                };
                equals("eventCategory", "Management") == Some(true)
                    && (!write || equals("readOnly", "false") != Some(false))
            })
    }

    /// Whether events at `position` fall into an ingestion window (for channel events).
    pub fn ingesting_at(&self, position: u64) -> bool {
        self.status != StoreStatus::PendingDeletion
            && self.ingestion.iter().any(|w| position >= w.from && w.to.is_none_or(|to| position < to))
    }
}

/// Whether a record is an Insights event (`eventType` `AwsCloudTrailInsight` or
/// `eventCategory` `Insight`).
pub fn is_insight_record(record: &Value) -> bool {
    record.get("eventType").and_then(Value::as_str) == Some("AwsCloudTrailInsight")
        || record.get("eventCategory").and_then(Value::as_str) == Some("Insight")
}

/// The store family the selectors' `eventCategory` values name.
pub fn category_of(selectors: &[AdvancedEventSelector]) -> StoreCategory {
    let categories: Vec<&str> = selectors
        .iter()
        .flat_map(|s| &s.field_selectors)
        .filter(|f| f.field == "eventCategory")
        .flat_map(|f| f.equals.iter().flatten())
        .map(String::as_str)
        .collect();
    if categories.contains(&"ActivityAuditLog") {
        StoreCategory::ActivityAuditLog
    } else if categories.contains(&"Insight") {
        StoreCategory::Insight
    } else if categories.iter().any(|c| matches!(*c, "ConfigurationItem" | "Evidence")) {
        StoreCategory::Other
    } else {
        StoreCategory::CloudTrailEvents
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDestination {
    #[serde(rename = "Type")]
    pub destination_type: String,
    #[serde(rename = "Location")]
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    pub account: AccountId,
    pub region: Region,
    pub name: String,
    pub source: String,
    /// Event data store ARNs.
    pub destinations: Vec<ChannelDestination>,
    pub tags: Vec<Tag>,
    pub resource_policy: Option<String>,
    pub created_ms: i64,
}

impl Channel {
    pub fn arn(&self) -> String {
        channel_arn(&self.region, &self.account, &self.id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImportStatus {
    Initializing,
    InProgress,
    Failed,
    Stopped,
    Completed,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "INITIALIZING",
            Self::InProgress => "IN_PROGRESS",
            Self::Failed => "FAILED",
            Self::Stopped => "STOPPED",
            Self::Completed => "COMPLETED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Initializing, Self::InProgress, Self::Failed, Self::Stopped, Self::Completed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    pub fn is_active(self) -> bool {
        matches!(self, Self::Initializing | Self::InProgress)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportStatistics {
    pub prefixes_found: u64,
    pub prefixes_completed: u64,
    pub files_completed: u64,
    pub events_completed: u64,
    pub failed_entries: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFailure {
    pub location: String,
    pub error_type: String,
    pub error_message: String,
    pub last_updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Import {
    pub id: String,
    pub account: AccountId,
    pub region: Region,
    /// The destination event data store's ID.
    pub store_id: String,
    pub destination_arn: String,
    pub source_uri: String,
    pub source_region: String,
    pub source_role_arn: String,
    pub start_event_ms: Option<i64>,
    pub end_event_ms: Option<i64>,
    pub status: ImportStatus,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub statistics: ImportStatistics,
    /// Source objects already imported (their keys, sorted), so a retry resumes.
    pub completed_files: Vec<String>,
    /// The sequence number of the next batch file.
    #[serde(default)]
    pub next_sequence: u64,
    pub failures: Vec<ImportFailure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueryStatus {
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
    TimedOut,
}

impl QueryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::TimedOut => "TIMED_OUT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Finished, Self::Failed, Self::Cancelled, Self::TimedOut]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryStatistics {
    pub events_matched: u64,
    pub events_scanned: u64,
    pub bytes_scanned: u64,
    pub execution_time_ms: u64,
    pub results_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub id: String,
    pub account: AccountId,
    pub region: Region,
    pub statement: String,
    /// The event data stores the statement reads (IDs).
    pub store_ids: Vec<String>,
    pub status: QueryStatus,
    pub created_ms: i64,
    pub delivery_s3_uri: Option<String>,
    pub delivery_status: Option<String>,
    pub error_message: Option<String>,
    pub statistics: QueryStatistics,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store(selectors: Vec<AdvancedEventSelector>) -> EventDataStore {
        EventDataStore {
            id: "0b2c0d4e-0000-4000-8000-000000000000".into(),
            account: AccountId::parse("123456789012").unwrap(),
            region: Region::parse("us-east-1").unwrap(),
            name: "store".into(),
            status: StoreStatus::Enabled,
            advanced_event_selectors: selectors,
            multi_region_enabled: false,
            organization_enabled: false,
            retention_period_days: 366,
            termination_protection_enabled: true,
            billing_mode: EXTENDABLE_RETENTION_PRICING.into(),
            kms_key_id: None,
            tags: Vec::new(),
            created_ms: 0,
            updated_ms: 0,
            deleted_ms: None,
            ingestion: vec![IngestionWindow { from: 100, to: Some(200) }, IngestionWindow { from: 300, to: None }],
            insight_selectors: Vec::new(),
            insights_destination: None,
        }
    }

    fn insight_store() -> EventDataStore {
        store(vec![AdvancedEventSelector {
            name: Some("Insights events".into()),
            field_selectors: vec![AdvancedFieldSelector {
                field: "eventCategory".into(),
                equals: Some(vec!["Insight".into()]),
                ..AdvancedFieldSelector::default()
            }],
        }])
    }

    fn insight_record() -> Value {
        json!({"eventVersion": "1.08", "eventTime": "2019-10-15T21:13:00Z", "eventType": "AwsCloudTrailInsight",
               "eventCategory": "Insight", "eventID": "i1",
               "insightDetails": {"state": "Start", "eventSource": "autoscaling.amazonaws.com",
                                  "eventName": "CompleteLifecycleAction", "insightType": "ApiCallRateInsight"}})
    }

    #[test]
    fn insights_go_to_insight_stores_only() {
        let home = Region::parse("us-east-1").unwrap();
        let insights = insight_store();
        assert_eq!(insights.category(), StoreCategory::Insight);
        assert!(insights.takes(300, &home, &insight_record()));
        assert!(!insights.takes(250, &home, &insight_record()), "ingestion was stopped");
        let management = json!({"eventCategory": "Management", "eventName": "CreateTrail"});
        assert!(!insights.takes(300, &home, &management), "an Insight store takes nothing else");
        // An Insights record without eventCategory is still one (and not a management event).
        let mut uncategorised = insight_record();
        uncategorised.as_object_mut().unwrap().remove("eventCategory");
        assert!(insights.takes(300, &home, &uncategorised));
        let management_store = store(default_store_selectors());
        assert!(!management_store.takes(300, &home, &insight_record()));
        assert!(!management_store.takes(300, &home, &uncategorised));
        assert!(management_store.takes(300, &home, &management));
    }

    #[test]
    fn which_stores_log_management_and_write_events() {
        let management = store(default_store_selectors());
        assert!(management.logs_management_events(false) && management.logs_management_events(true));
        let read_only = store(vec![AdvancedEventSelector {
            name: None,
            field_selectors: vec![
                AdvancedFieldSelector {
                    field: "eventCategory".into(),
                    equals: Some(vec!["Management".into()]),
                    ..AdvancedFieldSelector::default()
                },
                AdvancedFieldSelector {
                    field: "readOnly".into(),
                    equals: Some(vec!["true".into()]),
                    ..AdvancedFieldSelector::default()
                },
            ],
        }]);
        assert!(read_only.logs_management_events(false));
        assert!(!read_only.logs_management_events(true), "read-only calls only");
        let data = store(vec![AdvancedEventSelector {
            name: None,
            field_selectors: vec![
                AdvancedFieldSelector {
                    field: "eventCategory".into(),
                    equals: Some(vec!["Data".into()]),
                    ..AdvancedFieldSelector::default()
                },
                AdvancedFieldSelector {
                    field: "resources.type".into(),
                    equals: Some(vec!["AWS::S3::Object".into()]),
                    ..AdvancedFieldSelector::default()
                },
            ],
        }]);
        assert!(!data.logs_management_events(false));
        assert!(!insight_store().logs_management_events(false));
    }

    #[test]
    fn documents_stored_before_insights_still_load() {
        let mut document = serde_json::to_value(store(default_store_selectors())).unwrap();
        assert!(document.get("insight_selectors").is_none(), "empty selectors are left out");
        assert!(document.get("insights_destination").is_none());
        let loaded: EventDataStore = serde_json::from_value(document.clone()).unwrap();
        assert!(loaded.insight_selectors.is_empty() && loaded.insights_destination.is_none());
        document["insight_selectors"] = json!([{"InsightType": "ApiCallRateInsight"}]);
        document["insights_destination"] = json!(insight_store().arn());
        let loaded: EventDataStore = serde_json::from_value(document).unwrap();
        assert_eq!(loaded.insight_selectors[0].insight_type.as_deref(), Some("ApiCallRateInsight"));
        assert_eq!(loaded.insights_destination, Some(insight_store().arn()));
    }

    #[test]
    fn takes_selected_events_inside_ingestion_windows_and_its_region() {
        let store = store(default_store_selectors());
        let management = json!({"eventCategory": "Management", "eventName": "CreateTrail"});
        let home = Region::parse("us-east-1").unwrap();
        let other = Region::parse("eu-west-1").unwrap();
        assert!(store.takes(150, &home, &management));
        assert!(!store.takes(250, &home, &management), "ingestion was stopped");
        assert!(store.takes(300, &home, &management));
        assert!(!store.takes(99, &home, &management), "before the store existed");
        assert!(!store.takes(300, &other, &management), "single-Region store");
        let data = json!({"eventCategory": "Data", "eventName": "GetObject"});
        assert!(!store.takes(300, &home, &data));
    }

    #[test]
    fn category_follows_selectors() {
        assert_eq!(category_of(&default_store_selectors()), StoreCategory::CloudTrailEvents);
        let activity = vec![AdvancedEventSelector {
            name: None,
            field_selectors: vec![AdvancedFieldSelector {
                field: "eventCategory".into(),
                equals: Some(vec!["ActivityAuditLog".into()]),
                ..AdvancedFieldSelector::default()
            }],
        }];
        assert_eq!(category_of(&activity), StoreCategory::ActivityAuditLog);
        assert!(!store(activity).takes(
            300,
            &Region::parse("us-east-1").unwrap(),
            &json!({"eventCategory": "ActivityAuditLog"})
        ));
    }

    #[test]
    fn names_and_retention() {
        assert!(valid_store_name("my-store_1.x"));
        assert!(!valid_store_name("ab"));
        assert!(!valid_store_name("has space"));
        assert_eq!(retention_bounds(FIXED_RETENTION_PRICING), (7, 2557));
        assert_eq!(retention_bounds(EXTENDABLE_RETENTION_PRICING), (7, 3653));
    }
}
