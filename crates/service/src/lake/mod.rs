//! CloudTrail Lake operations: event data stores, queries, channels, resource policies,
//! imports and Insights on event data stores.
//!
//! Like trails, an account's Lake resources are read with a version, decided on, and written back
//! conditioned on it, so name checks, quotas and cross-resource rules (a store a channel still
//! uses cannot be deleted) are atomic.
//!
//! One file per family of operations: `stores` (event data stores), `queries`, `channels`,
//! `policy` (channels' resource policies), `imports` (the operations), `import_runs` (running
//! an import: on the server as a task, or from the command line) and `insights` (Insights
//! selectors of a source store and its destination). They share [`LakeOps`] and its
//! read-decide-write loop, here.

mod channels;
mod import_runs;
mod imports;
mod insights;
mod policy;
mod queries;
mod stores;

pub use import_runs::import_local_folder;
use imports::{interrupted, put_import};

// What the files of this module share: they `use super::*`.
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use chrono::Utc;
use opentrail_control::{AccountLake, ControlStore, LakeChange, LakeDocument, LakeKind, StoreError};
use opentrail_journal::Journal;
use opentrail_lake::import::{FolderSource, ImportObserver, ImportSource, ObjectStoreSource, run_import};
use opentrail_lake::{LakeError, ParquetLake, QueryService, StartQueryError};
use opentrail_model::AdvancedEventSelector;
use opentrail_model::lake::{
    Channel, ChannelDestination, EXTENDABLE_RETENTION_PRICING, EventDataStore, FIXED_RETENTION_PRICING, Import,
    ImportStatistics, ImportStatus, IngestionWindow, MAX_CHANNELS, MAX_EVENT_DATA_STORES, PENDING_DELETION_DAYS,
    QUERY_RESULT_DAYS, Query, QueryStatus, StoreCategory, StoreStatus, category_of, default_store_selectors,
    retention_bounds, valid_store_name,
};
use opentrail_model::selectors::{SelectorTarget, validate_advanced};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::delivery::RemoteBucketChecks;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::outbox::CallRecorder;
use crate::paging::{decode_text_token, encode_text_token};
use crate::trails::validate_tags;
use crate::{Caller, Resource, epoch_seconds};

pub const EVENT_DATA_STORE_RESOURCE_TYPE: &str = "AWS::CloudTrail::EventDataStore";
pub const CHANNEL_RESOURCE_TYPE: &str = "AWS::CloudTrail::Channel";

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

pub struct LakeOps<'a> {
    pub shared_store: &'a Arc<dyn ControlStore>,
    pub delivery: &'a Arc<crate::delivery::DeliveryContext>,
    pub tables: &'a Arc<ParquetLake>,
    pub store: &'a dyn ControlStore,
    pub journal: &'a dyn Journal,
    pub queries: &'a Arc<QueryService>,
    pub caller: &'a Caller,
    pub resources: &'a mut Vec<Resource>,
    /// What the remote buckets the input names answered (asked before this blocking part ran).
    pub remote_buckets: &'a RemoteBucketChecks,
    /// Writes a change together with the call's record (see `outbox`).
    pub recorder: &'a CallRecorder,
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

    /// Runs `decide` on fresh state and applies its changes atomically, retrying on conflict,
    /// together with the call's record (which says the call answered `decide`'s output: the
    /// operation answers exactly that).
    fn mutate(
        &mut self,
        mut decide: impl FnMut(&LakeState, &mut Vec<Resource>) -> ServiceResult<(Vec<LakeChange>, Value)>,
    ) -> ServiceResult<Value> {
        let account = &self.caller.principal.account;
        for _ in 0..16 {
            let state = self.load()?;
            let mut resources = Vec::new();
            let (changes, output) = decide(&state, &mut resources)?;
            let touched: Vec<Resource> = self.resources.iter().chain(&resources).cloned().collect();
            match self.recorder.apply_lake_changes(self.store, account, state.version, &changes, &output, &touched) {
                Ok(()) => {
                    self.resources.extend(resources);
                    return Ok(output);
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
}

/// How long results stay and queries may run.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn pending_deletion_expired(store: &EventDataStore, now_ms: i64) -> bool {
    store.deleted_ms.is_some_and(|deleted| now_ms - deleted >= PENDING_DELETION_DAYS * 86_400_000)
}
