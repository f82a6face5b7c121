//! CloudTrail Lake operations: event data stores, queries, channels and resource policies.
//!
//! Like trails, an account's Lake resources are read with a version, decided on, and written back
//! conditioned on it, so name checks, quotas and cross-resource rules (a store a channel still
//! uses cannot be deleted) are atomic.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chrono::Utc;
use opentrail_control::{AccountLake, ControlStore, LakeChange, LakeDocument, LakeKind, StoreError};
use opentrail_journal::Journal;
use opentrail_lake::import::{FolderSource, ImportObserver, ImportSource, ObjectStoreSource, run_import};
use opentrail_lake::{LakeError, ParquetLake, QueryService, StartQueryError};
use opentrail_model::lake::{
    Channel, ChannelDestination, EXTENDABLE_RETENTION_PRICING, EventDataStore, FIXED_RETENTION_PRICING, Import,
    ImportStatistics, ImportStatus, IngestionWindow, MAX_CHANNELS, MAX_EVENT_DATA_STORES, PENDING_DELETION_DAYS,
    QUERY_RESULT_DAYS, Query, QueryStatus, StoreCategory, StoreStatus, category_of, default_store_selectors,
    retention_bounds, valid_store_name,
};
use opentrail_model::selectors::{SelectorTarget, validate_advanced};
use opentrail_model::{AdvancedEventSelector, Tag};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::paging::{decode_text_token, encode_text_token};
use crate::trails::validate_tags;
use crate::{Caller, Resource, decode_input, epoch_seconds};

pub const EVENT_DATA_STORE_RESOURCE_TYPE: &str = "AWS::CloudTrail::EventDataStore";
pub const CHANNEL_RESOURCE_TYPE: &str = "AWS::CloudTrail::Channel";

/// The Lake operations OpenTrail implements.
pub const OPERATIONS: [&str; 26] = [
    "StartImport",
    "GetImport",
    "ListImports",
    "StopImport",
    "ListImportFailures",
    "CreateEventDataStore",
    "GetEventDataStore",
    "ListEventDataStores",
    "UpdateEventDataStore",
    "DeleteEventDataStore",
    "RestoreEventDataStore",
    "StartEventDataStoreIngestion",
    "StopEventDataStoreIngestion",
    "StartQuery",
    "DescribeQuery",
    "GetQueryResults",
    "ListQueries",
    "CancelQuery",
    "CreateChannel",
    "GetChannel",
    "ListChannels",
    "UpdateChannel",
    "DeleteChannel",
    "PutResourcePolicy",
    "GetResourcePolicy",
    "DeleteResourcePolicy",
];

fn err(code: ErrorCode, message: impl Into<String>) -> ServiceError {
    ServiceError::new(code, message)
}

/// An account's Lake resources, decoded.
struct LakeState {
    version: i64,
    stores: Vec<EventDataStore>,
    channels: Vec<Channel>,
    imports: Vec<Import>,
}

fn decode_all<T: DeserializeOwned>(lake: &AccountLake, kind: LakeKind) -> ServiceResult<Vec<T>> {
    lake.documents
        .iter()
        .filter(|doc| doc.kind == kind)
        .map(|doc| serde_json::from_str(&doc.document).map_err(ServiceError::internal))
        .collect()
}

fn put_store(store: &EventDataStore) -> ServiceResult<LakeChange> {
    let document = serde_json::to_string(store).map_err(ServiceError::internal)?;
    Ok(LakeChange::Put(LakeDocument { kind: LakeKind::EventDataStore, id: store.id.clone(), document }))
}

fn put_channel(channel: &Channel) -> ServiceResult<LakeChange> {
    let document = serde_json::to_string(channel).map_err(ServiceError::internal)?;
    Ok(LakeChange::Put(LakeDocument { kind: LakeKind::Channel, id: channel.id.clone(), document }))
}

/// The latest time a request may name: a day ahead allows for clocks that run fast.
const TIME_SLACK_MS: i64 = 86_400_000;

/// An epoch-seconds time from a request as epoch milliseconds, if it is a time an event can
/// have: from 1970 to a day from now (years 0 and 9999 are mistakes, not times).
pub(crate) fn time_in_range(seconds: f64) -> Option<i64> {
    let ms = seconds * 1000.0;
    let latest = Utc::now().timestamp_millis() + TIME_SLACK_MS;
    (ms.is_finite() && ms >= 0.0 && ms <= latest as f64).then_some(ms as i64)
}

pub(crate) fn ms_in_range(ms: i64) -> bool {
    (0..=Utc::now().timestamp_millis() + TIME_SLACK_MS).contains(&ms)
}

fn time_range_message(seconds: f64) -> String {
    format!("{seconds} is not a valid time: it must be between 1970-01-01T00:00:00Z and one day from now.")
}

fn max_results(value: Option<i64>, default: usize) -> ServiceResult<usize> {
    match value {
        None => Ok(default),
        Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
        Some(_) => Err(err(ErrorCode::InvalidMaxResults, "MaxResults must be between 1 and 1000.")),
    }
}

/// The ID a store or channel is named by: the ARN's last part, or the ID itself.
fn id_of<'a>(text: &'a str, resource: &str) -> &'a str {
    match text.strip_prefix("arn:") {
        Some(_) => text.rsplit_once(&format!(":{resource}/")).map_or(text, |(_, id)| id),
        None => text,
    }
}

fn valid_reference(text: &str, resource: &str) -> bool {
    let id = id_of(text, resource);
    let arn_ok = !text.starts_with("arn:") || text.contains(&format!(":{resource}/"));
    arn_ok
        && (3..=256).contains(&text.len())
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEventDataStoreInput {
    name: String,
    advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
    multi_region_enabled: Option<bool>,
    organization_enabled: Option<bool>,
    retention_period: Option<i64>,
    termination_protection_enabled: Option<bool>,
    tags_list: Option<Vec<Tag>>,
    kms_key_id: Option<String>,
    start_ingestion: Option<bool>,
    billing_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreInput {
    event_data_store: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateEventDataStoreInput {
    event_data_store: String,
    name: Option<String>,
    advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
    multi_region_enabled: Option<bool>,
    organization_enabled: Option<bool>,
    retention_period: Option<i64>,
    termination_protection_enabled: Option<bool>,
    kms_key_id: Option<String>,
    billing_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInput {
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartQueryInput {
    query_statement: Option<String>,
    query_alias: Option<String>,
    query_parameters: Option<Vec<String>>,
    delivery_s3_uri: Option<String>,
    event_data_store_owner_account_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryIdInput {
    query_id: Option<String>,
    query_alias: Option<String>,
    event_data_store_owner_account_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetQueryResultsInput {
    query_id: String,
    next_token: Option<String>,
    max_query_results: Option<i64>,
    event_data_store_owner_account_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListQueriesInput {
    event_data_store: String,
    next_token: Option<String>,
    max_results: Option<i64>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    query_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateChannelInput {
    name: String,
    source: String,
    destinations: Vec<ChannelDestination>,
    tags: Option<Vec<Tag>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelInput {
    channel: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateChannelInput {
    channel: String,
    destinations: Option<Vec<ChannelDestination>>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourcePolicyInput {
    resource_arn: String,
    resource_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3ImportSource {
    s3_location_uri: String,
    s3_bucket_region: String,
    s3_bucket_access_role_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportSourceInput {
    s3: S3ImportSource,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartImportInput {
    destinations: Option<Vec<String>>,
    import_source: Option<ImportSourceInput>,
    start_event_time: Option<f64>,
    end_event_time: Option<f64>,
    import_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportIdInput {
    import_id: String,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListImportsInput {
    max_results: Option<i64>,
    destination: Option<String>,
    import_status: Option<String>,
    next_token: Option<String>,
}

/// Decodes the input of a Lake operation without running it (for the fuzz target).
pub fn decode(operation: &str, input: Value) -> ServiceResult<()> {
    match operation {
        "CreateEventDataStore" => decode_input::<CreateEventDataStoreInput>(input).map(drop),
        "GetEventDataStore"
        | "DeleteEventDataStore"
        | "RestoreEventDataStore"
        | "StartEventDataStoreIngestion"
        | "StopEventDataStoreIngestion" => decode_input::<StoreInput>(input).map(drop),
        "UpdateEventDataStore" => decode_input::<UpdateEventDataStoreInput>(input).map(drop),
        "ListEventDataStores" | "ListChannels" => decode_input::<ListInput>(input).map(drop),
        "StartQuery" => decode_input::<StartQueryInput>(input).map(drop),
        "DescribeQuery" | "CancelQuery" => decode_input::<QueryIdInput>(input).map(drop),
        "GetQueryResults" => decode_input::<GetQueryResultsInput>(input).map(drop),
        "ListQueries" => decode_input::<ListQueriesInput>(input).map(drop),
        "CreateChannel" => decode_input::<CreateChannelInput>(input).map(drop),
        "GetChannel" | "DeleteChannel" => decode_input::<ChannelInput>(input).map(drop),
        "UpdateChannel" => decode_input::<UpdateChannelInput>(input).map(drop),
        "StartImport" => decode_input::<StartImportInput>(input).map(drop),
        "GetImport" | "StopImport" | "ListImportFailures" => decode_input::<ImportIdInput>(input).map(drop),
        "ListImports" => decode_input::<ListImportsInput>(input).map(drop),
        _ => decode_input::<ResourcePolicyInput>(input).map(drop),
    }
}

fn store_shape(store: &EventDataStore, with_tags: bool, with_federation: bool) -> Value {
    let mut shape = json!({
        "EventDataStoreArn": store.arn(),
        "Name": store.name,
        "Status": store.status.as_str(),
        "AdvancedEventSelectors": store.advanced_event_selectors,
        "MultiRegionEnabled": store.multi_region_enabled,
        "OrganizationEnabled": store.organization_enabled,
        "RetentionPeriod": store.retention_period_days,
        "TerminationProtectionEnabled": store.termination_protection_enabled,
        "CreatedTimestamp": epoch_seconds(store.created_ms),
        "UpdatedTimestamp": epoch_seconds(store.updated_ms),
        "BillingMode": store.billing_mode,
    });
    if let Some(key) = &store.kms_key_id {
        shape["KmsKeyId"] = json!(key);
    }
    if with_tags {
        shape["TagsList"] = json!(store.tags);
    }
    if with_federation {
        shape["FederationStatus"] = json!("DISABLED");
    }
    shape
}

fn channel_shape(channel: &Channel) -> Value {
    json!({
        "ChannelArn": channel.arn(),
        "Name": channel.name,
        "Source": channel.source,
        "Destinations": channel.destinations,
    })
}

fn query_status_filter(text: Option<&str>) -> ServiceResult<Option<QueryStatus>> {
    match text {
        None => Ok(None),
        Some(text) => QueryStatus::parse(text)
            .map(Some)
            .ok_or_else(|| err(ErrorCode::InvalidQueryStatus, format!("Query status {text} is not valid."))),
    }
}

pub struct LakeOps<'a> {
    pub shared_store: &'a Arc<dyn ControlStore>,
    pub delivery: &'a Arc<crate::delivery::DeliveryContext>,
    pub tables: &'a Arc<ParquetLake>,
    pub store: &'a dyn ControlStore,
    pub journal: &'a dyn Journal,
    pub queries: &'a Arc<QueryService>,
    pub caller: &'a Caller,
    pub resources: &'a mut Vec<Resource>,
}

/// Imports running in this process. An import that is active in the store but runs nowhere
/// here, and that has not progressed since this process started, was cut short by a stop or a
/// crash: it is marked `FAILED` when next read, and `StartImport` with its `ImportId` resumes
/// it from the files it had completed.
static RUNNING_IMPORTS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);
/// When this process first looked at imports (before it can have started any).
static IMPORTS_SEEN_FROM_MS: LazyLock<i64> = LazyLock::new(|| Utc::now().timestamp_millis());

fn running_imports() -> std::sync::MutexGuard<'static, HashSet<String>> {
    RUNNING_IMPORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps an import listed as running here until its thread ends, however it ends.
struct RunningImport(String);

impl RunningImport {
    fn register(id: &str) -> Self {
        running_imports().insert(id.to_string());
        Self(id.to_string())
    }
}

impl Drop for RunningImport {
    fn drop(&mut self) {
        running_imports().remove(&self.0);
    }
}

fn interrupted(import: &Import) -> bool {
    import.status.is_active() && import.updated_ms < *IMPORTS_SEEN_FROM_MS && !running_imports().contains(&import.id)
}

impl LakeOps<'_> {
    /// The account's Lake state, with imports that a stop or crash cut short marked `FAILED`.
    fn load(&self) -> ServiceResult<LakeState> {
        for _ in 0..4 {
            let state = self.load_once()?;
            let now = Utc::now().timestamp_millis();
            let changes = state
                .imports
                .iter()
                .filter(|import| interrupted(import))
                .map(|import| {
                    let mut failed = import.clone();
                    failed.status = ImportStatus::Failed;
                    failed.updated_ms = now;
                    failed.failures.push(opentrail_model::lake::ImportFailure {
                        location: failed.source_uri.clone(),
                        error_type: "ImportInterrupted".into(),
                        error_message: "The import was interrupted when OpenTrail stopped. Call StartImport with \
                                        its ImportId to resume it."
                            .into(),
                        last_updated_ms: now,
                    });
                    tracing::warn!(import = failed.id, "an import interrupted by a stop is marked failed");
                    put_import(&failed)
                })
                .collect::<ServiceResult<Vec<_>>>()?;
            if changes.is_empty() {
                return Ok(state);
            }
            match self.store.apply_lake_changes(&self.caller.principal.account, state.version, &changes) {
                Ok(()) | Err(StoreError::Conflict) => continue,
                Err(other) => return Err(ServiceError::internal(other)),
            }
        }
        self.load_once()
    }

    fn load_once(&self) -> ServiceResult<LakeState> {
        let lake = self.store.load_lake(&self.caller.principal.account).map_err(ServiceError::internal)?;
        let region = &self.caller.region;
        let mut stores: Vec<EventDataStore> = decode_all(&lake, LakeKind::EventDataStore)?;
        stores.retain(|s| &s.region == region);
        let mut channels: Vec<Channel> = decode_all(&lake, LakeKind::Channel)?;
        channels.retain(|c| &c.region == region);
        let imports = decode_all(&lake, LakeKind::Import)?;
        Ok(LakeState { version: lake.version, stores, channels, imports })
    }

    /// Runs `decide` on fresh state and applies its changes atomically, retrying on conflict.
    fn mutate<T>(
        &mut self,
        mut decide: impl FnMut(&LakeState, &mut Vec<Resource>) -> ServiceResult<(Vec<LakeChange>, T)>,
    ) -> ServiceResult<T> {
        for _ in 0..16 {
            let state = self.load()?;
            let mut resources = Vec::new();
            let (changes, result) = decide(&state, &mut resources)?;
            match self.store.apply_lake_changes(&self.caller.principal.account, state.version, &changes) {
                Ok(()) => {
                    self.resources.extend(resources);
                    return Ok(result);
                }
                Err(StoreError::Conflict) => continue,
                Err(other) => return Err(ServiceError::internal(other)),
            }
        }
        Err(ServiceError::internal("too many concurrent changes to one account's Lake"))
    }

    fn find_store<'s>(stores: &'s [EventDataStore], reference: &str) -> ServiceResult<&'s EventDataStore> {
        if !valid_reference(reference, "eventdatastore") {
            return Err(err(
                ErrorCode::EventDataStoreArnInvalid,
                format!("The event data store ARN or ID {reference} is not valid."),
            ));
        }
        let id = id_of(reference, "eventdatastore");
        stores.iter().find(|s| s.id == id && (!reference.starts_with("arn:") || s.arn() == reference)).ok_or_else(
            || {
                err(
                    ErrorCode::EventDataStoreNotFound,
                    format!("The specified event data store {reference} was not found."),
                )
            },
        )
    }

    fn find_channel<'s>(channels: &'s [Channel], reference: &str) -> ServiceResult<&'s Channel> {
        if !valid_reference(reference, "channel") {
            return Err(err(ErrorCode::ChannelArnInvalid, format!("The channel ARN or ID {reference} is not valid.")));
        }
        let id = id_of(reference, "channel");
        channels
            .iter()
            .find(|c| c.id == id && (!reference.starts_with("arn:") || c.arn() == reference))
            .ok_or_else(|| err(ErrorCode::ChannelNotFound, format!("The specified channel {reference} was not found.")))
    }

    fn note_store(resources: &mut Vec<Resource>, store: &EventDataStore) {
        resources.push(Resource { arn: store.arn(), resource_type: EVENT_DATA_STORE_RESOURCE_TYPE.into() });
    }

    fn check_retention(billing_mode: &str, retention: i64) -> ServiceResult<u32> {
        let (low, high) = retention_bounds(billing_mode);
        if retention < i64::from(low) || retention > i64::from(high) {
            return Err(err(
                ErrorCode::InvalidParameter,
                format!("RetentionPeriod must be between {low} and {high} days for {billing_mode}."),
            ));
        }
        Ok(retention as u32)
    }

    fn check_billing_mode(mode: &str) -> ServiceResult<()> {
        if mode == EXTENDABLE_RETENTION_PRICING || mode == FIXED_RETENTION_PRICING {
            Ok(())
        } else {
            Err(err(ErrorCode::InvalidParameter, format!("BillingMode {mode} is not valid.")))
        }
    }

    fn check_selectors(selectors: &[AdvancedEventSelector]) -> ServiceResult<()> {
        validate_advanced(selectors, SelectorTarget::EventDataStore)
            .map_err(|error| err(ErrorCode::InvalidEventSelectors, error.0))?;
        let categories: std::collections::HashSet<StoreCategory> =
            selectors.iter().map(|s| category_of(std::slice::from_ref(s))).collect();
        if categories.len() > 1 {
            return Err(err(
                ErrorCode::InvalidEventSelectors,
                "All selectors of an event data store must select one category family (CloudTrail events, Insights, ActivityAuditLog, ...).",
            ));
        }
        Ok(())
    }

    fn check_name(name: &str) -> ServiceResult<()> {
        if valid_store_name(name) {
            Ok(())
        } else {
            Err(err(
                ErrorCode::InvalidParameter,
                "Name must be 3 to 128 characters of letters, digits, periods, underscores and dashes.",
            ))
        }
    }

    fn organization(enabled: Option<bool>) -> ServiceResult<()> {
        if enabled == Some(true) {
            return Err(err(
                ErrorCode::OrganizationsNotInUse,
                "This account is not part of an organization; OpenTrail does not run organization event data stores.",
            ));
        }
        Ok(())
    }

    pub fn create_event_data_store(&mut self, input: CreateEventDataStoreInput) -> ServiceResult<Value> {
        Self::check_name(&input.name)?;
        Self::organization(input.organization_enabled)?;
        let billing_mode = input.billing_mode.clone().unwrap_or_else(|| EXTENDABLE_RETENTION_PRICING.into());
        Self::check_billing_mode(&billing_mode)?;
        let default_retention = if billing_mode == FIXED_RETENTION_PRICING { 2557 } else { 366 };
        let retention = Self::check_retention(&billing_mode, input.retention_period.unwrap_or(default_retention))?;
        let selectors = input.advanced_event_selectors.clone().unwrap_or_else(default_store_selectors);
        Self::check_selectors(&selectors)?;
        let tags = input.tags_list.clone().unwrap_or_default();
        validate_tags(&tags)?;
        if tags.len() > 50 {
            return Err(err(ErrorCode::TagsLimitExceeded, "A resource can have at most 50 tags."));
        }
        let now = Utc::now().timestamp_millis();
        let start_ingestion = input.start_ingestion.unwrap_or(true);
        let position = self.journal.committed_end();
        let caller = self.caller.clone();
        self.mutate(|state, resources| {
            if state.stores.iter().any(|s| s.name == input.name) {
                return Err(err(
                    ErrorCode::EventDataStoreAlreadyExists,
                    format!("An event data store named {} already exists.", input.name),
                ));
            }
            if state.stores.len() >= MAX_EVENT_DATA_STORES {
                return Err(err(
                    ErrorCode::EventDataStoreMaxLimitExceeded,
                    format!("An account can have at most {MAX_EVENT_DATA_STORES} event data stores per Region."),
                ));
            }
            let store = EventDataStore {
                id: uuid::Uuid::new_v4().to_string(),
                account: caller.principal.account.clone(),
                region: caller.region.clone(),
                name: input.name.clone(),
                status: if start_ingestion { StoreStatus::Enabled } else { StoreStatus::StoppedIngestion },
                advanced_event_selectors: selectors.clone(),
                multi_region_enabled: input.multi_region_enabled.unwrap_or(true),
                organization_enabled: false,
                retention_period_days: retention,
                termination_protection_enabled: input.termination_protection_enabled.unwrap_or(true),
                billing_mode: billing_mode.clone(),
                kms_key_id: input.kms_key_id.clone(),
                tags: tags.clone(),
                created_ms: now,
                updated_ms: now,
                deleted_ms: None,
                ingestion: if start_ingestion {
                    vec![IngestionWindow { from: position, to: None }]
                } else {
                    Vec::new()
                },
            };
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], store_shape(&store, true, false)))
        })
    }

    pub fn get_event_data_store(&mut self, input: StoreInput) -> ServiceResult<Value> {
        let state = self.load()?;
        let store = Self::find_store(&state.stores, &input.event_data_store)?;
        Ok(store_shape(store, false, true))
    }

    pub fn list_event_data_stores(&mut self, input: ListInput) -> ServiceResult<Value> {
        let limit = max_results(input.max_results, 1000)?;
        let after = input.next_token.as_deref().map(decode_text_token).transpose()?;
        let mut stores = self.load()?.stores;
        stores.sort_by_key(EventDataStore::arn);
        let page: Vec<&EventDataStore> =
            stores.iter().filter(|s| after.as_ref().is_none_or(|after| &s.arn() > after)).take(limit).collect();
        let mut output = json!({
            "EventDataStores": page.iter().map(|s| json!({"EventDataStoreArn": s.arn(), "Name": s.name})).collect::<Vec<_>>()
        });
        if page.len() == limit
            && let Some(last) = page.last()
            && stores.iter().any(|s| s.arn() > last.arn())
        {
            output["NextToken"] = json!(encode_text_token(&last.arn()));
        }
        Ok(output)
    }

    pub fn update_event_data_store(&mut self, input: UpdateEventDataStoreInput) -> ServiceResult<Value> {
        let nothing = input.name.is_none()
            && input.advanced_event_selectors.is_none()
            && input.multi_region_enabled.is_none()
            && input.organization_enabled.is_none()
            && input.retention_period.is_none()
            && input.termination_protection_enabled.is_none()
            && input.kms_key_id.is_none()
            && input.billing_mode.is_none();
        if nothing {
            return Err(err(
                ErrorCode::InvalidParameter,
                "At least one parameter other than EventDataStore must be given.",
            ));
        }
        if let Some(name) = &input.name {
            Self::check_name(name)?;
        }
        Self::organization(input.organization_enabled)?;
        if let Some(selectors) = &input.advanced_event_selectors {
            Self::check_selectors(selectors)?;
        }
        if let Some(mode) = &input.billing_mode {
            Self::check_billing_mode(mode)?;
        }
        let now = Utc::now().timestamp_millis();
        let reference = input.event_data_store.clone();
        self.mutate(|state, resources| {
            let mut store = Self::find_store(&state.stores, &reference)?.clone();
            if store.status == StoreStatus::PendingDeletion {
                return Err(err(ErrorCode::InactiveEventDataStore, format!("Event data store {} is pending deletion.", store.arn())));
            }
            if state.imports.iter().any(|i| i.store_id == store.id && i.status.is_active()) {
                return Err(err(ErrorCode::InvalidParameter, "The event data store has an import in progress."));
            }
            if let Some(name) = &input.name
                && state.stores.iter().any(|s| &s.name == name && s.id != store.id)
            {
                return Err(err(ErrorCode::EventDataStoreAlreadyExists, format!("An event data store named {name} already exists.")));
            }
            if let Some(selectors) = &input.advanced_event_selectors
                && category_of(selectors) != store.category()
            {
                return Err(err(
                    ErrorCode::InvalidEventSelectors,
                    "An event data store's category cannot change: events from outside AWS and CloudTrail events live in different stores.",
                ));
            }
            if let Some(mode) = &input.billing_mode {
                if store.billing_mode == EXTENDABLE_RETENTION_PRICING && mode == FIXED_RETENTION_PRICING {
                    return Err(err(ErrorCode::InvalidParameter, "EXTENDABLE_RETENTION_PRICING cannot be changed to FIXED_RETENTION_PRICING."));
                }
                store.billing_mode = mode.clone();
            }
            if let Some(key) = &input.kms_key_id
                && store.kms_key_id.as_ref().is_some_and(|current| current != key)
            {
                return Err(err(ErrorCode::InvalidParameter, "An event data store's KMS key cannot be changed once set."));
            }
            let retention = input.retention_period.unwrap_or(i64::from(store.retention_period_days));
            store.retention_period_days = Self::check_retention(&store.billing_mode, retention)?;
            if let Some(name) = &input.name {
                store.name = name.clone();
            }
            if let Some(selectors) = &input.advanced_event_selectors {
                store.advanced_event_selectors = selectors.clone();
            }
            if let Some(multi) = input.multi_region_enabled {
                store.multi_region_enabled = multi;
            }
            if let Some(protection) = input.termination_protection_enabled {
                store.termination_protection_enabled = protection;
            }
            if input.kms_key_id.is_some() {
                store.kms_key_id = input.kms_key_id.clone();
            }
            store.updated_ms = now;
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], store_shape(&store, false, true)))
        })
    }

    pub fn delete_event_data_store(&mut self, input: StoreInput) -> ServiceResult<Value> {
        let now = Utc::now().timestamp_millis();
        let position = self.journal.committed_end();
        self.mutate(|state, resources| {
            let mut store = Self::find_store(&state.stores, &input.event_data_store)?.clone();
            if store.status == StoreStatus::PendingDeletion {
                return Err(err(ErrorCode::InactiveEventDataStore, format!("Event data store {} is already pending deletion.", store.arn())));
            }
            if store.termination_protection_enabled {
                return Err(err(
                    ErrorCode::EventDataStoreTerminationProtected,
                    "The event data store has termination protection enabled; disable it with UpdateEventDataStore first.",
                ));
            }
            let arn = store.arn();
            if state.channels.iter().any(|c| c.destinations.iter().any(|d| d.location == arn || d.location == store.id)) {
                return Err(err(ErrorCode::ChannelExistsForEds, "A channel still sends events to this event data store; delete or update the channel first."));
            }
            if state.imports.iter().any(|i| i.store_id == store.id && i.status.is_active()) {
                return Err(err(ErrorCode::InvalidParameter, "The event data store has an import in progress."));
            }
            close_ingestion(&mut store, position);
            store.status = StoreStatus::PendingDeletion;
            store.deleted_ms = Some(now);
            store.updated_ms = now;
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], json!({})))
        })
    }

    pub fn restore_event_data_store(&mut self, input: StoreInput) -> ServiceResult<Value> {
        let now = Utc::now().timestamp_millis();
        let position = self.journal.committed_end();
        self.mutate(|state, resources| {
            let mut store = Self::find_store(&state.stores, &input.event_data_store)?.clone();
            if store.status != StoreStatus::PendingDeletion {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreStatus,
                    "Only an event data store pending deletion can be restored.",
                ));
            }
            let live = state.stores.iter().filter(|s| s.status != StoreStatus::PendingDeletion).count();
            if live >= MAX_EVENT_DATA_STORES {
                return Err(err(
                    ErrorCode::EventDataStoreMaxLimitExceeded,
                    "Restoring would exceed the event data store quota.",
                ));
            }
            store.status = StoreStatus::Enabled;
            store.deleted_ms = None;
            store.updated_ms = now;
            store.ingestion.push(IngestionWindow { from: position, to: None });
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], store_shape(&store, false, false)))
        })
    }

    pub fn set_ingestion(&mut self, input: StoreInput, start: bool) -> ServiceResult<Value> {
        let now = Utc::now().timestamp_millis();
        let position = self.journal.committed_end();
        self.mutate(|state, resources| {
            let mut store = Self::find_store(&state.stores, &input.event_data_store)?.clone();
            if !matches!(store.category(), StoreCategory::CloudTrailEvents) {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreCategory,
                    "Ingestion can only be started or stopped on stores of CloudTrail events.",
                ));
            }
            let expected = if start { StoreStatus::StoppedIngestion } else { StoreStatus::Enabled };
            if store.status != expected {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreStatus,
                    format!(
                        "The event data store's status is {}; this needs {}.",
                        store.status.as_str(),
                        expected.as_str()
                    ),
                ));
            }
            if start {
                store.ingestion.push(IngestionWindow { from: position, to: None });
                store.status = StoreStatus::Enabled;
            } else {
                close_ingestion(&mut store, position);
                store.status = StoreStatus::StoppedIngestion;
            }
            store.updated_ms = now;
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], json!({})))
        })
    }

    fn check_owner(&self, owner: Option<&str>) -> ServiceResult<()> {
        match owner {
            Some(owner) if owner != self.caller.principal.account.as_str() => Err(err(
                ErrorCode::EventDataStoreNotFound,
                format!("No event data store of account {owner} is shared with this account."),
            )),
            _ => Ok(()),
        }
    }

    pub fn start_query(&mut self, input: StartQueryInput) -> ServiceResult<Value> {
        self.check_owner(input.event_data_store_owner_account_id.as_deref())?;
        if input.query_alias.is_some() || input.query_parameters.is_some() {
            return Err(err(
                ErrorCode::InvalidParameter,
                "QueryAlias and QueryParameters run dashboard queries, which OpenTrail does not have; send QueryStatement.",
            ));
        }
        let Some(statement) = input.query_statement.clone() else {
            return Err(err(ErrorCode::InvalidParameter, "QueryStatement is required."));
        };
        if statement.chars().count() > 10_000 {
            return Err(err(
                ErrorCode::InvalidQueryStatement,
                "A query statement can be at most 10000 characters long.",
            ));
        }
        if let Some(uri) = &input.delivery_s3_uri {
            use crate::query_delivery::{DeliveryUriError, check_delivery_uri};
            let bucket = match check_delivery_uri(uri) {
                Ok((bucket, _)) => bucket,
                Err(DeliveryUriError::Bucket(message)) => return Err(err(ErrorCode::InvalidS3BucketName, message)),
                Err(DeliveryUriError::Prefix(message)) => return Err(err(ErrorCode::InvalidS3Prefix, message)),
            };
            if uri.len() > 1024 {
                return Err(err(ErrorCode::InvalidS3Prefix, "DeliveryS3Uri can be at most 1024 characters long."));
            }
            self.delivery.check_bucket(self.store, &self.caller.principal.account, &bucket)?;
        }
        let state = self.load()?;
        let started = tokio::runtime::Handle::current().block_on(self.queries.start(
            &self.caller.principal.account,
            &self.caller.region,
            &statement,
            input.delivery_s3_uri.clone(),
            &state.stores,
        ));
        let query = started.map_err(|error| match error {
            StartQueryError::InvalidStatement(message) => err(ErrorCode::InvalidQueryStatement, message),
            StartQueryError::StoreNotFound(message) => err(ErrorCode::EventDataStoreNotFound, message),
            StartQueryError::InactiveStore(message) => err(ErrorCode::InactiveEventDataStore, message),
            StartQueryError::TooManyQueries => err(ErrorCode::MaxConcurrentQueries, error.to_string()),
            StartQueryError::Internal(inner) => ServiceError::internal(inner),
        })?;
        for id in &query.store_ids {
            if let Some(store) = state.stores.iter().find(|s| &s.id == id) {
                Self::note_store(self.resources, store);
            }
        }
        if let Some(uri) = &query.delivery_s3_uri {
            crate::query_delivery::spawn(
                self.queries.clone(),
                self.delivery.clone(),
                query.account.clone(),
                query.region.clone(),
                query.id.clone(),
                uri.clone(),
            );
        }
        Ok(json!({"QueryId": query.id, "EventDataStoreOwnerAccountId": self.caller.principal.account.as_str()}))
    }

    fn find_query(&self, id: &str) -> ServiceResult<Query> {
        let not_found = || err(ErrorCode::QueryIdNotFound, format!("The query ID {id} was not found."));
        if id.len() != 36 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(not_found());
        }
        let query = self.queries.get(&self.caller.principal.account, id).map_err(ServiceError::internal)?;
        query.filter(|q| q.region == self.caller.region).ok_or_else(not_found)
    }

    pub fn describe_query(&mut self, input: QueryIdInput) -> ServiceResult<Value> {
        self.check_owner(input.event_data_store_owner_account_id.as_deref())?;
        let Some(id) = input.query_id.as_deref() else {
            let message = match input.query_alias {
                Some(_) => "QueryAlias names dashboard queries, which OpenTrail does not have; send QueryId.",
                None => "QueryId is required.",
            };
            return Err(err(ErrorCode::InvalidParameter, message));
        };
        let query = self.find_query(id)?;
        let statistics = &query.statistics;
        let mut output = json!({
            "QueryId": query.id,
            "QueryString": query.statement,
            "QueryStatus": query.status.as_str(),
            "QueryStatistics": {
                "EventsMatched": statistics.events_matched,
                "EventsScanned": statistics.events_scanned,
                "BytesScanned": statistics.bytes_scanned,
                "ExecutionTimeInMillis": statistics.execution_time_ms,
                "CreationTime": epoch_seconds(query.created_ms),
            },
            "EventDataStoreOwnerAccountId": query.account.as_str(),
        });
        if let Some(message) = &query.error_message {
            output["ErrorMessage"] = json!(message);
        }
        if let Some(uri) = &query.delivery_s3_uri {
            output["DeliveryS3Uri"] = json!(uri);
            output["DeliveryStatus"] = json!(query.delivery_status.as_deref().unwrap_or("PENDING"));
        }
        Ok(output)
    }

    pub fn get_query_results(&mut self, input: GetQueryResultsInput) -> ServiceResult<Value> {
        self.check_owner(input.event_data_store_owner_account_id.as_deref())?;
        let limit = match input.max_query_results {
            None => 1000,
            Some(n) if (1..=1000).contains(&n) => n as usize,
            Some(_) => return Err(err(ErrorCode::InvalidMaxResults, "MaxQueryResults must be between 1 and 1000.")),
        };
        let query = self.find_query(&input.query_id)?;
        let offset = match input.next_token.as_deref() {
            None => 0,
            Some(token) => decode_text_token(token)?
                .strip_prefix(&format!("{}:", query.id))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| err(ErrorCode::InvalidNextToken, "The NextToken is not valid."))?,
        };
        let mut output = json!({
            "QueryStatus": query.status.as_str(),
            "QueryStatistics": {
                "ResultsCount": 0,
                "TotalResultsCount": query.statistics.results_count,
                "BytesScanned": query.statistics.bytes_scanned,
            },
            "QueryResultRows": [],
        });
        if let Some(message) = &query.error_message {
            output["ErrorMessage"] = json!(message);
        }
        if query.status != QueryStatus::Finished {
            return Ok(output);
        }
        // Only this page's rows are read: the results file has an index of where each row starts.
        let results = self
            .queries
            .results_page(&query.id, offset as u64, limit)
            .map_err(ServiceError::internal)?
            .unwrap_or_default();
        let page: Vec<Value> = results
            .rows
            .iter()
            .map(|row| {
                let cells: Vec<Value> = results
                    .columns
                    .iter()
                    .zip(row)
                    .filter_map(|(column, value)| value.as_ref().map(|value| json!({ column.as_str(): value })))
                    .collect();
                Value::Array(cells)
            })
            .collect();
        output["QueryStatistics"]["ResultsCount"] = json!(page.len());
        if ((offset + page.len()) as u64) < results.total {
            output["NextToken"] = json!(encode_text_token(&format!("{}:{}", query.id, offset + page.len())));
        }
        output["QueryResultRows"] = Value::Array(page);
        Ok(output)
    }

    pub fn list_queries(&mut self, input: ListQueriesInput) -> ServiceResult<Value> {
        let limit = max_results(input.max_results, 1000)?;
        let status = query_status_filter(input.query_status.as_deref())?;
        let state = self.load()?;
        let store = Self::find_store(&state.stores, &input.event_data_store)?;
        if store.status == StoreStatus::PendingDeletion {
            return Err(err(
                ErrorCode::InactiveEventDataStore,
                format!("Event data store {} is pending deletion.", store.arn()),
            ));
        }
        let window_start = Utc::now().timestamp_millis() - QUERY_RESULT_DAYS * 86_400_000;
        let bounded = |name: &str, time: Option<f64>| {
            time.map(|t| {
                time_in_range(t)
                    .ok_or_else(|| err(ErrorCode::InvalidDateRange, format!("{name} {}", time_range_message(t))))
            })
            .transpose()
        };
        let start_ms = bounded("StartTime", input.start_time)?;
        let end_ms = bounded("EndTime", input.end_time)?;
        if let (Some(start), Some(end)) = (start_ms, end_ms)
            && start > end
        {
            return Err(err(ErrorCode::InvalidDateRange, "StartTime must be before EndTime."));
        }
        let after = input.next_token.as_deref().map(decode_text_token).transpose()?;
        let queries = self
            .queries
            .list(&self.caller.principal.account, start_ms.unwrap_or(window_start).max(window_start))
            .map_err(ServiceError::internal)?;
        let matching: Vec<&Query> = queries
            .iter()
            .filter(|q| q.store_ids.contains(&store.id))
            .filter(|q| end_ms.is_none_or(|end| q.created_ms <= end))
            .filter(|q| status.is_none_or(|s| q.status == s))
            .collect();
        let start_index = match &after {
            Some(last) => matching
                .iter()
                .position(|q| &q.id == last)
                .map(|i| i + 1)
                .ok_or_else(|| err(ErrorCode::InvalidNextToken, "The NextToken is not valid."))?,
            None => 0,
        };
        let page: Vec<&&Query> = matching.iter().skip(start_index).take(limit).collect();
        let mut output = json!({
            "Queries": page.iter().map(|q| json!({
                "QueryId": q.id, "QueryStatus": q.status.as_str(), "CreationTime": epoch_seconds(q.created_ms)
            })).collect::<Vec<_>>()
        });
        if start_index + page.len() < matching.len()
            && let Some(last) = page.last()
        {
            output["NextToken"] = json!(encode_text_token(&last.id));
        }
        Ok(output)
    }

    pub fn cancel_query(&mut self, input: QueryIdInput) -> ServiceResult<Value> {
        self.check_owner(input.event_data_store_owner_account_id.as_deref())?;
        let Some(id) = input.query_id.as_deref() else {
            return Err(err(ErrorCode::InvalidParameter, "QueryId is required."));
        };
        let query = self.find_query(id)?;
        let cancelled =
            self.queries.cancel(&self.caller.principal.account, &query.id).map_err(ServiceError::internal)?;
        match cancelled {
            Some(query) => Ok(json!({
                "QueryId": query.id,
                "QueryStatus": query.status.as_str(),
                "EventDataStoreOwnerAccountId": query.account.as_str(),
            })),
            None => Err(err(
                ErrorCode::InactiveQuery,
                format!("The query {} is {} and cannot be cancelled.", query.id, query.status.as_str()),
            )),
        }
    }

    fn check_destinations(
        stores: &[EventDataStore],
        destinations: &[ChannelDestination],
    ) -> ServiceResult<Vec<ChannelDestination>> {
        if destinations.is_empty() || destinations.len() > 200 {
            return Err(err(ErrorCode::InvalidParameter, "A channel needs 1 to 200 destinations."));
        }
        let mut resolved = Vec::with_capacity(destinations.len());
        for destination in destinations {
            if destination.destination_type != "EVENT_DATA_STORE" {
                return Err(err(
                    ErrorCode::InvalidParameter,
                    format!(
                        "Destination type {} is not supported; use EVENT_DATA_STORE.",
                        destination.destination_type
                    ),
                ));
            }
            let store = Self::find_store(stores, &destination.location)?;
            if store.status == StoreStatus::PendingDeletion {
                return Err(err(
                    ErrorCode::InactiveEventDataStore,
                    format!("Event data store {} is pending deletion.", store.arn()),
                ));
            }
            if store.category() != StoreCategory::ActivityAuditLog
                || store.multi_region_enabled
                || store.organization_enabled
            {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreCategory,
                    "A channel's destinations must be single-Region event data stores for ActivityAuditLog events.",
                ));
            }
            resolved.push(ChannelDestination { destination_type: "EVENT_DATA_STORE".into(), location: store.arn() });
        }
        Ok(resolved)
    }

    fn note_channel(resources: &mut Vec<Resource>, channel: &Channel) {
        resources.push(Resource { arn: channel.arn(), resource_type: CHANNEL_RESOURCE_TYPE.into() });
    }

    pub fn create_channel(&mut self, input: CreateChannelInput) -> ServiceResult<Value> {
        Self::check_name(&input.name)?;
        if input.source != "Custom" {
            return Err(err(
                ErrorCode::InvalidSource,
                format!("Source {} is not valid; OpenTrail channels take the source Custom.", input.source),
            ));
        }
        let tags = input.tags.clone().unwrap_or_default();
        validate_tags(&tags)?;
        let caller = self.caller.clone();
        let now = Utc::now().timestamp_millis();
        self.mutate(|state, resources| {
            if state.channels.iter().any(|c| c.name == input.name) {
                return Err(err(
                    ErrorCode::ChannelAlreadyExists,
                    format!("A channel named {} already exists.", input.name),
                ));
            }
            if state.channels.len() >= MAX_CHANNELS {
                return Err(err(
                    ErrorCode::ChannelMaxLimitExceeded,
                    format!("An account can have at most {MAX_CHANNELS} channels."),
                ));
            }
            let destinations = Self::check_destinations(&state.stores, &input.destinations)?;
            let channel = Channel {
                id: uuid::Uuid::new_v4().to_string(),
                account: caller.principal.account.clone(),
                region: caller.region.clone(),
                name: input.name.clone(),
                source: input.source.clone(),
                destinations,
                tags: tags.clone(),
                resource_policy: None,
                created_ms: now,
            };
            Self::note_channel(resources, &channel);
            let mut output = channel_shape(&channel);
            output["Tags"] = json!(channel.tags);
            Ok((vec![put_channel(&channel)?], output))
        })
    }

    pub fn get_channel(&mut self, input: ChannelInput) -> ServiceResult<Value> {
        let state = self.load()?;
        let channel = Self::find_channel(&state.channels, &input.channel)?;
        let mut output = channel_shape(channel);
        let key = crate::audit_events::ingestion_state_key(&channel.arn());
        let status = self.store.consumer_state(&key).map_err(ServiceError::internal)?;
        output["IngestionStatus"] =
            status.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_else(|| json!({}));
        Ok(output)
    }

    pub fn list_channels(&mut self, input: ListInput) -> ServiceResult<Value> {
        let limit = max_results(input.max_results, 1000)?;
        let after = input.next_token.as_deref().map(decode_text_token).transpose()?;
        let mut channels = self.load()?.channels;
        channels.sort_by_key(Channel::arn);
        let remaining: Vec<&Channel> =
            channels.iter().filter(|c| after.as_ref().is_none_or(|after| &c.arn() > after)).collect();
        let page = &remaining[..remaining.len().min(limit)];
        let mut output = json!({"Channels": page.iter().map(|c| json!({"ChannelArn": c.arn(), "Name": c.name})).collect::<Vec<_>>()});
        if remaining.len() > page.len()
            && let Some(last) = page.last()
        {
            output["NextToken"] = json!(encode_text_token(&last.arn()));
        }
        Ok(output)
    }

    pub fn update_channel(&mut self, input: UpdateChannelInput) -> ServiceResult<Value> {
        if let Some(name) = &input.name {
            Self::check_name(name)?;
        }
        self.mutate(|state, resources| {
            let mut channel = Self::find_channel(&state.channels, &input.channel)?.clone();
            if let Some(name) = &input.name {
                if state.channels.iter().any(|c| &c.name == name && c.id != channel.id) {
                    return Err(err(
                        ErrorCode::ChannelAlreadyExists,
                        format!("A channel named {name} already exists."),
                    ));
                }
                channel.name = name.clone();
            }
            if let Some(destinations) = &input.destinations {
                channel.destinations = Self::check_destinations(&state.stores, destinations)?;
            }
            Self::note_channel(resources, &channel);
            Ok((vec![put_channel(&channel)?], channel_shape(&channel)))
        })
    }

    pub fn delete_channel(&mut self, input: ChannelInput) -> ServiceResult<Value> {
        self.mutate(|state, resources| {
            let channel = Self::find_channel(&state.channels, &input.channel)?;
            Self::note_channel(resources, channel);
            Ok((vec![LakeChange::Delete { kind: LakeKind::Channel, id: channel.id.clone() }], json!({})))
        })
    }

    /// Resource policies exist for channels (who may call PutAuditEvents).
    fn policy_channel<'s>(state: &'s LakeState, arn: &str) -> ServiceResult<&'s Channel> {
        if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
            return Err(err(ErrorCode::ResourceArnNotValid, format!("The resource ARN {arn} is not valid.")));
        }
        if arn.contains(":eventdatastore/") || arn.contains(":dashboard/") {
            return Err(err(
                ErrorCode::ResourceTypeNotSupported,
                "OpenTrail keeps resource policies for channels only; event data stores are not shared across accounts.",
            ));
        }
        if !arn.contains(":channel/") {
            return Err(err(ErrorCode::ResourceTypeNotSupported, "Resource policies can be attached to channels."));
        }
        state
            .channels
            .iter()
            .find(|c| c.arn() == arn)
            .ok_or_else(|| err(ErrorCode::ResourceNotFound, format!("The resource {arn} was not found.")))
    }

    pub fn put_resource_policy(&mut self, input: ResourcePolicyInput) -> ServiceResult<Value> {
        let Some(policy) = input.resource_policy.clone() else {
            return Err(err(ErrorCode::InvalidParameter, "ResourcePolicy is required."));
        };
        validate_channel_policy(&policy, &input.resource_arn)?;
        self.mutate(|state, resources| {
            let mut channel = Self::policy_channel(state, &input.resource_arn)?.clone();
            channel.resource_policy = Some(policy.clone());
            Self::note_channel(resources, &channel);
            Ok((vec![put_channel(&channel)?], json!({"ResourceArn": channel.arn(), "ResourcePolicy": policy})))
        })
    }

    pub fn get_resource_policy(&mut self, input: ResourcePolicyInput) -> ServiceResult<Value> {
        let state = self.load()?;
        let channel = Self::policy_channel(&state, &input.resource_arn)?;
        match &channel.resource_policy {
            Some(policy) => Ok(json!({"ResourceArn": channel.arn(), "ResourcePolicy": policy})),
            None => Err(err(ErrorCode::ResourcePolicyNotFound, "The channel has no resource policy.")),
        }
    }

    pub fn delete_resource_policy(&mut self, input: ResourcePolicyInput) -> ServiceResult<Value> {
        self.mutate(|state, resources| {
            let mut channel = Self::policy_channel(state, &input.resource_arn)?.clone();
            if channel.resource_policy.is_none() {
                return Err(err(ErrorCode::ResourcePolicyNotFound, "The channel has no resource policy."));
            }
            channel.resource_policy = None;
            Self::note_channel(resources, &channel);
            Ok((vec![put_channel(&channel)?], json!({})))
        })
    }
}

fn put_import(import: &Import) -> ServiceResult<LakeChange> {
    let document = serde_json::to_string(import).map_err(ServiceError::internal)?;
    Ok(LakeChange::Put(LakeDocument { kind: LakeKind::Import, id: import.id.clone(), document }))
}

fn import_shape(import: &Import, with_statistics: bool) -> Value {
    let mut shape = json!({
        "ImportId": import.id,
        "Destinations": [import.destination_arn],
        "ImportSource": {"S3": {
            "S3LocationUri": import.source_uri,
            "S3BucketRegion": import.source_region,
            "S3BucketAccessRoleArn": import.source_role_arn,
        }},
        "ImportStatus": import.status.as_str(),
        "CreatedTimestamp": epoch_seconds(import.created_ms),
        "UpdatedTimestamp": epoch_seconds(import.updated_ms),
    });
    if let Some(start) = import.start_event_ms {
        shape["StartEventTime"] = json!(epoch_seconds(start));
    }
    if let Some(end) = import.end_event_ms {
        shape["EndEventTime"] = json!(epoch_seconds(end));
    }
    if with_statistics {
        let s = &import.statistics;
        shape["ImportStatistics"] = json!({
            "PrefixesFound": s.prefixes_found,
            "PrefixesCompleted": s.prefixes_completed,
            "FilesCompleted": s.files_completed,
            "EventsCompleted": s.events_completed,
            "FailedEntries": s.failed_entries,
        });
    }
    shape
}

/// Saves an import's progress with the account's other Lake state, retrying on conflict, and
/// answers whether it was stopped meanwhile.
struct ImportTracker {
    store: Arc<dyn ControlStore>,
    account: opentrail_model::AccountId,
    id: String,
}

impl ImportTracker {
    fn load(&self) -> Result<Option<(i64, Import)>, LakeError> {
        let lake = self.store.load_lake(&self.account)?;
        let found = lake.documents.iter().find(|d| d.kind == LakeKind::Import && d.id == self.id);
        Ok(match found {
            Some(document) => Some((lake.version, serde_json::from_str(&document.document)?)),
            None => None,
        })
    }

    /// Stores `import` unless the stored one was stopped; returns the stored status.
    fn save(&self, import: &Import) -> Result<ImportStatus, LakeError> {
        for _ in 0..16 {
            let Some((version, stored)) = self.load()? else { return Ok(ImportStatus::Stopped) };
            let mut next = import.clone();
            if stored.status == ImportStatus::Stopped {
                next.status = ImportStatus::Stopped;
            }
            let document =
                LakeDocument { kind: LakeKind::Import, id: self.id.clone(), document: serde_json::to_string(&next)? };
            match self.store.apply_lake_changes(&self.account, version, &[LakeChange::Put(document)]) {
                Ok(()) => return Ok(next.status),
                Err(StoreError::Conflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(LakeError::Io {
            path: "import progress".into(),
            source: std::io::Error::other("too many concurrent changes"),
        })
    }
}

impl ImportObserver for ImportTracker {
    fn progressed(&self, import: &Import) -> Result<(), LakeError> {
        self.save(import).map(drop)
    }

    fn stopped(&self) -> bool {
        matches!(self.load(), Ok(Some((_, stored))) if stored.status == ImportStatus::Stopped)
    }
}

/// Runs an import to its end on a blocking thread (it parses and compresses: CPU work).
fn spawn_import(
    store: Arc<dyn ControlStore>,
    tables: Arc<ParquetLake>,
    source: Arc<dyn ImportSource>,
    import: Import,
    retention: u32,
) {
    let handle = tokio::runtime::Handle::current();
    let running_here = RunningImport::register(&import.id);
    tokio::task::spawn_blocking(move || {
        let _running_here = running_here;
        let tracker = ImportTracker { store, account: import.account.clone(), id: import.id.clone() };
        let mut running = import.clone();
        running.status = ImportStatus::InProgress;
        if let Err(error) = tracker.save(&running) {
            tracing::error!(%error, import = running.id, "cannot start the import");
            return;
        }
        let outcome = handle.block_on(run_import(&tables, source.as_ref(), running.clone(), retention, &tracker));
        let finished = match outcome {
            Ok(mut done) => {
                done.status = ImportStatus::Completed;
                done
            }
            Err(error) => {
                tracing::error!(%error, import = running.id, "import failed");
                let mut failed = tracker.load().ok().flatten().map_or(running, |(_, stored)| stored);
                failed.status = ImportStatus::Failed;
                failed.failures.push(opentrail_model::lake::ImportFailure {
                    location: failed.source_uri.clone(),
                    error_type: "ImportFailed".into(),
                    error_message: error.to_string(),
                    last_updated_ms: Utc::now().timestamp_millis(),
                });
                failed
            }
        };
        let mut finished = finished;
        finished.updated_ms = Utc::now().timestamp_millis();
        if let Err(error) = tracker.save(&finished) {
            tracing::error!(%error, import = finished.id, "cannot record the import's end");
        }
    });
}

/// Reports the progress of an import run from the command line, and saves it.
struct LocalImport<'a> {
    tracker: ImportTracker,
    on_plan: &'a (dyn Fn(u64) + Send + Sync),
    on_progress: &'a (dyn Fn(&Import) + Send + Sync),
}

impl ImportObserver for LocalImport<'_> {
    fn planned(&self, files: u64) {
        (self.on_plan)(files);
    }

    fn progressed(&self, import: &Import) -> Result<(), LakeError> {
        self.tracker.save(import)?;
        (self.on_progress)(import);
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.tracker.stopped()
    }
}

/// Imports CloudTrail log files from a local folder into an event data store (given by ID or
/// ARN), writing straight into the data directory: the import is listed by `ListImports` like
/// one started through the API. Works whether or not a server is running on the directory.
/// Events outside `(start_ms, end_ms)` (epoch milliseconds, either open) are left out.
pub async fn import_local_folder(
    data_dir: &std::path::Path,
    options: &crate::ServiceOptions,
    folder: &std::path::Path,
    store_reference: &str,
    (start_ms, end_ms): (Option<i64>, Option<i64>),
    on_plan: &(dyn Fn(u64) + Send + Sync),
    on_progress: &(dyn Fn(&Import) + Send + Sync),
) -> Result<Import, crate::OpenError> {
    let store: Arc<dyn ControlStore> =
        Arc::new(opentrail_control::SqliteStore::open(&data_dir.join("control.sqlite"))?);
    let buckets = Arc::new(opentrail_buckets::LocalBuckets::open(&data_dir.join("buckets"))?);
    let destinations = opentrail_delivery::Destinations::new(buckets, &options.remote_buckets)?;
    let tables = Arc::new(crate::lake_tables(data_dir, &destinations, options.lake_bucket.as_ref())?);
    let id = id_of(store_reference, "eventdatastore").to_string();
    let stores: Vec<EventDataStore> = store
        .all_lake_documents(LakeKind::EventDataStore)?
        .iter()
        .filter_map(|document| serde_json::from_str(document).ok())
        .collect();
    let Some(target) = stores.into_iter().find(|s| s.id == id) else {
        return Err(crate::OpenError::Usage(format!(
            "no event data store {store_reference} in {}",
            data_dir.display()
        )));
    };
    if target.status == StoreStatus::PendingDeletion || target.category() != StoreCategory::CloudTrailEvents {
        return Err(crate::OpenError::Usage(format!(
            "event data store {store_reference} does not take CloudTrail events (or is pending deletion)"
        )));
    }
    let now = Utc::now().timestamp_millis();
    let import = Import {
        id: uuid::Uuid::new_v4().to_string(),
        account: target.account.clone(),
        region: target.region.clone(),
        store_id: target.id.clone(),
        destination_arn: target.arn(),
        source_uri: format!("file://{}", folder.display()),
        source_region: target.region.as_str().to_string(),
        source_role_arn: String::new(),
        start_event_ms: start_ms,
        end_event_ms: end_ms,
        status: ImportStatus::InProgress,
        created_ms: now,
        updated_ms: now,
        statistics: ImportStatistics::default(),
        completed_files: Vec::new(),
        next_sequence: 0,
        failures: Vec::new(),
    };
    let tracker = ImportTracker { store: store.clone(), account: import.account.clone(), id: import.id.clone() };
    tracker.save(&import)?;
    let observer = LocalImport { tracker, on_plan, on_progress };
    let source = FolderSource::new(folder.to_path_buf(), "", folder.display().to_string());
    let mut done = run_import(&tables, &source, import, target.retention_period_days, &observer).await?;
    done.status = if observer.stopped() { ImportStatus::Stopped } else { ImportStatus::Completed };
    done.updated_ms = Utc::now().timestamp_millis();
    observer.tracker.save(&done)?;
    Ok(done)
}

/// A bucket of the local bucket store as an import source: keys from its index, bodies by key
/// (never a path built from the key).
struct LocalBucketSource {
    buckets: Arc<opentrail_buckets::LocalBuckets>,
    bucket: String,
    prefix: String,
}

#[async_trait::async_trait]
impl ImportSource for LocalBucketSource {
    async fn keys(&self) -> Result<Vec<String>, LakeError> {
        let failed = |error: opentrail_buckets::BucketError| LakeError::Io {
            path: format!("s3://{}/{}", self.bucket, self.prefix),
            source: std::io::Error::other(error.to_string()),
        };
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let query = opentrail_buckets::ListQuery {
                prefix: self.prefix.clone(),
                delimiter: None,
                after: after.take(),
                max_keys: 1000,
            };
            let page = self.buckets.list_objects(&self.bucket, query).await.map_err(failed)?;
            keys.extend(page.objects.into_iter().map(|object| object.key));
            if !page.truncated {
                return Ok(keys);
            }
            after = page.last;
        }
    }

    async fn read(&self, key: &str) -> Result<Vec<u8>, LakeError> {
        let failed = |source| LakeError::Io { path: format!("s3://{}/{key}", self.bucket), source };
        match self.buckets.read_object(&self.bucket, key).await {
            Ok(Some((_, body))) => Ok(body),
            Ok(None) => Err(failed(std::io::Error::from(std::io::ErrorKind::NotFound))),
            Err(error) => Err(failed(std::io::Error::other(error.to_string()))),
        }
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// `s3://bucket[/prefix]` split.
fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    opentrail_buckets::valid_bucket_name(bucket).then(|| (bucket.to_string(), prefix.to_string()))
}

impl LakeOps<'_> {
    fn find_import(state: &LakeState, id: &str) -> ServiceResult<Import> {
        state
            .imports
            .iter()
            .find(|i| i.id == id)
            .cloned()
            .ok_or_else(|| err(ErrorCode::ImportNotFound, format!("The import {id} was not found.")))
    }

    /// A configured remote bucket (any account may import from it, as trails may deliver to
    /// it), or a bucket of the local store that the caller's account owns.
    fn import_source(
        store: &dyn ControlStore,
        delivery: &crate::delivery::DeliveryContext,
        caller: &Caller,
        import: &Import,
    ) -> ServiceResult<Arc<dyn ImportSource>> {
        let invalid = |why: &str| {
            err(ErrorCode::InvalidImportSource, format!("The import source {} is not valid: {why}", import.source_uri))
        };
        let (bucket, prefix) = parse_s3_uri(&import.source_uri).ok_or_else(|| invalid("use s3://bucket/prefix/"))?;
        if let Some(remote) = delivery.destinations.remote(&bucket) {
            return Ok(Arc::new(ObjectStoreSource::new(remote.object_store(), &prefix, format!("s3://{bucket}"))));
        }
        let owner = store.bucket(&bucket).map_err(ServiceError::internal)?;
        match owner {
            Some(record) if record.account == caller.principal.account => {}
            Some(_) => return Err(invalid("the bucket belongs to another account")),
            None => return Err(invalid("no such bucket in OpenTrail's bucket store")),
        }
        Ok(Arc::new(LocalBucketSource {
            buckets: delivery.destinations.local().clone(),
            bucket: bucket.clone(),
            prefix: prefix.trim_start_matches('/').to_string(),
        }))
    }

    pub fn start_import(&mut self, input: StartImportInput) -> ServiceResult<Value> {
        // Imports this process starts are newer than the moment it began to look at imports.
        LazyLock::force(&IMPORTS_SEEN_FROM_MS);
        let now = Utc::now().timestamp_millis();
        let caller = self.caller.clone();
        let retry = input.import_id.clone();
        let new_source = input.import_source.as_ref().map(|source| &source.s3);
        if retry.is_none() && (new_source.is_none() || input.destinations.is_none()) {
            return Err(err(
                ErrorCode::InvalidParameter,
                "StartImport needs Destinations and ImportSource, or an ImportId to retry.",
            ));
        }
        let bounded = |name: &str, time: Option<f64>| {
            time.map(|t| {
                time_in_range(t)
                    .ok_or_else(|| err(ErrorCode::InvalidParameter, format!("{name} {}", time_range_message(t))))
            })
            .transpose()
        };
        let start_ms = bounded("StartEventTime", input.start_event_time)?;
        let end_ms = bounded("EndEventTime", input.end_event_time)?;
        if let (Some(start), Some(end)) = (start_ms, end_ms)
            && start > end
        {
            return Err(err(ErrorCode::InvalidParameter, "StartEventTime must not be after EndEventTime."));
        }
        let mut source = None;
        let (control, delivery) = (self.store, self.delivery);
        let (import, retention) = self.mutate(|state, resources| {
            if state.imports.iter().any(|i| i.status.is_active() && i.account == caller.principal.account) {
                return Err(err(ErrorCode::AccountHasOngoingImport, "The account already has an import in progress."));
            }
            let mut import = match &retry {
                Some(id) => {
                    let mut import = Self::find_import(state, id)?;
                    if import.status == ImportStatus::Completed {
                        return Err(err(ErrorCode::InvalidParameter, "A completed import cannot be retried."));
                    }
                    import.status = ImportStatus::Initializing;
                    import
                }
                None => {
                    let destinations = input.destinations.clone().unwrap_or_default();
                    let [destination] = destinations.as_slice() else {
                        return Err(err(ErrorCode::InvalidParameter, "An import has exactly one destination."));
                    };
                    let s3 = new_source.expect("checked above");
                    let destination = Self::find_store(&state.stores, destination)?;
                    Import {
                        id: uuid::Uuid::new_v4().to_string(),
                        account: caller.principal.account.clone(),
                        region: caller.region.clone(),
                        store_id: destination.id.clone(),
                        destination_arn: destination.arn(),
                        source_uri: s3.s3_location_uri.clone(),
                        source_region: s3.s3_bucket_region.clone(),
                        source_role_arn: s3.s3_bucket_access_role_arn.clone(),
                        start_event_ms: start_ms,
                        end_event_ms: end_ms,
                        status: ImportStatus::Initializing,
                        created_ms: now,
                        updated_ms: now,
                        statistics: ImportStatistics::default(),
                        completed_files: Vec::new(),
                        next_sequence: 0,
                        failures: Vec::new(),
                    }
                }
            };
            let store = Self::find_store(&state.stores, &import.destination_arn)?;
            if store.status == StoreStatus::PendingDeletion {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreStatus,
                    "The destination event data store is pending deletion.",
                ));
            }
            if store.category() != StoreCategory::CloudTrailEvents {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreCategory,
                    "Imports go to event data stores of CloudTrail events.",
                ));
            }
            source = Some(Self::import_source(control, delivery, &caller, &import)?);
            import.updated_ms = now;
            Self::note_store(resources, store);
            Ok((vec![put_import(&import)?], (import, store.retention_period_days)))
        })?;
        let source = source.expect("set by the decision that succeeded");
        spawn_import(self.shared_store.clone(), self.tables.clone(), source, import.clone(), retention);
        Ok(import_shape(&import, false))
    }

    pub fn get_import(&mut self, input: ImportIdInput) -> ServiceResult<Value> {
        let import = Self::find_import(&self.load()?, &input.import_id)?;
        Ok(import_shape(&import, true))
    }

    pub fn stop_import(&mut self, input: ImportIdInput) -> ServiceResult<Value> {
        let now = Utc::now().timestamp_millis();
        self.mutate(|state, _| {
            let mut import = Self::find_import(state, &input.import_id)?;
            if import.status.is_active() {
                import.status = ImportStatus::Stopped;
                import.updated_ms = now;
            }
            Ok((vec![put_import(&import)?], import_shape(&import, true)))
        })
    }

    pub fn list_imports(&mut self, input: ListImportsInput) -> ServiceResult<Value> {
        let limit = max_results(input.max_results, 1000)?;
        let status = match input.import_status.as_deref() {
            Some(text) => Some(
                ImportStatus::parse(text)
                    .ok_or_else(|| err(ErrorCode::InvalidParameter, format!("Import status {text} is not valid.")))?,
            ),
            None => None,
        };
        let after = input.next_token.as_deref().map(decode_text_token).transpose()?;
        let state = self.load()?;
        let destination = match &input.destination {
            Some(reference) => Some(Self::find_store(&state.stores, reference)?.id.clone()),
            None => None,
        };
        let mut imports: Vec<&Import> = state
            .imports
            .iter()
            .filter(|i| i.region == self.caller.region)
            .filter(|i| status.is_none_or(|s| i.status == s))
            .filter(|i| destination.as_ref().is_none_or(|d| &i.store_id == d))
            .collect();
        imports.sort_by_key(|i| i.id.clone());
        let remaining: Vec<&&Import> = imports.iter().filter(|i| after.as_ref().is_none_or(|a| &i.id > a)).collect();
        let page = &remaining[..remaining.len().min(limit)];
        let mut output = json!({"Imports": page.iter().map(|i| json!({
            "ImportId": i.id, "ImportStatus": i.status.as_str(), "Destinations": [i.destination_arn],
            "CreatedTimestamp": epoch_seconds(i.created_ms), "UpdatedTimestamp": epoch_seconds(i.updated_ms),
        })).collect::<Vec<_>>()});
        if remaining.len() > page.len()
            && let Some(last) = page.last()
        {
            output["NextToken"] = json!(encode_text_token(&last.id));
        }
        Ok(output)
    }

    pub fn list_import_failures(&mut self, input: ImportIdInput) -> ServiceResult<Value> {
        let limit = max_results(input.max_results, 1000)?;
        let import = Self::find_import(&self.load()?, &input.import_id)?;
        let offset = match input.next_token.as_deref() {
            Some(token) => decode_text_token(token)?
                .parse::<usize>()
                .map_err(|_| err(ErrorCode::InvalidNextToken, "The NextToken is not valid."))?,
            None => 0,
        };
        let page: Vec<Value> = import
            .failures
            .iter()
            .skip(offset)
            .take(limit)
            .map(|f| {
                json!({
                    "Location": f.location, "Status": "FAILED", "ErrorType": f.error_type,
                    "ErrorMessage": f.error_message, "LastUpdatedTime": epoch_seconds(f.last_updated_ms),
                })
            })
            .collect();
        let mut output = json!({"Failures": page});
        if offset + limit < import.failures.len() {
            output["NextToken"] = json!(encode_text_token(&(offset + limit).to_string()));
        }
        Ok(output)
    }
}

/// Ends a store's open ingestion window at `position`.
fn close_ingestion(store: &mut EventDataStore, position: u64) {
    if let Some(window) = store.ingestion.last_mut()
        && window.to.is_none()
    {
        window.to = Some(position);
    }
}

/// CloudTrail's rules for a channel's resource policy: JSON, 1-20 statements, each allowing only
/// `cloudtrail-data:PutAuditEvents` on the channel to 1-50 principals.
fn validate_channel_policy(policy: &str, channel_arn: &str) -> ServiceResult<()> {
    let invalid =
        |why: &str| err(ErrorCode::ResourcePolicyNotValid, format!("The resource policy is not valid: {why}"));
    if policy.is_empty() || policy.chars().count() > 8192 {
        return Err(invalid("it must be 1 to 8192 characters long."));
    }
    let document: Value = serde_json::from_str(policy).map_err(|_| invalid("it is not JSON."))?;
    let statements = match document.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => return Err(invalid("it has no Statement.")),
    };
    if statements.is_empty() || statements.len() > 20 {
        return Err(invalid("it must have 1 to 20 statements."));
    }
    let as_list = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    };
    for statement in &statements {
        let actions = as_list(statement.get("Action"));
        if actions.is_empty() || actions.iter().any(|a| a != "cloudtrail-data:PutAuditEvents") {
            return Err(invalid("the only action allowed is cloudtrail-data:PutAuditEvents."));
        }
        let resources = as_list(statement.get("Resource"));
        if !resources.is_empty() && resources.iter().any(|r| r != channel_arn) {
            return Err(invalid("the Resource must be the channel's ARN."));
        }
        let principals = match statement.get("Principal") {
            Some(Value::Object(map)) => map.values().flat_map(|v| as_list(Some(v))).count(),
            Some(Value::String(_)) => 1,
            _ => 0,
        };
        if principals == 0 || principals > 50 {
            return Err(invalid("each statement needs 1 to 50 principals."));
        }
    }
    Ok(())
}

/// How long results stay and queries may run.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn pending_deletion_expired(store: &EventDataStore, now_ms: i64) -> bool {
    store.deleted_ms.is_some_and(|deleted| now_ms - deleted >= PENDING_DELETION_DAYS * 86_400_000)
}
