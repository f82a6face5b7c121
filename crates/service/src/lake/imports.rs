//! Imports: the operations on them, and which imports run in this process.

use chrono::Utc;
use opentrail_control::{ControlStore, LakeChange, LakeDocument, LakeKind};
use opentrail_operations::inputs::{ImportIdInput, ListImportsInput, StartImportInput};
use serde_json::{Value, json};

use super::import_runs::{LocalBucketSource, parse_s3_uri, spawn_import};
use super::*;
use crate::error::{ErrorCode, ServiceError, ServiceResult};

/// Imports running in this process. An import that is active in the store but runs nowhere
/// here, and that has not progressed since this process started, was cut short by a stop or a
/// crash: it is marked `FAILED` when next read, and `StartImport` with its `ImportId` resumes
/// it from the files it had completed.
pub(super) static RUNNING_IMPORTS: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);
/// When this process first looked at imports (before it can have started any).
pub(super) static IMPORTS_SEEN_FROM_MS: LazyLock<i64> = LazyLock::new(|| Utc::now().timestamp_millis());

pub(super) fn running_imports() -> std::sync::MutexGuard<'static, HashSet<String>> {
    RUNNING_IMPORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps an import listed as running here until its thread ends, however it ends.
pub(super) struct RunningImport(String);

impl RunningImport {
    pub(super) fn register(id: &str) -> Self {
        running_imports().insert(id.to_string());
        Self(id.to_string())
    }
}

impl Drop for RunningImport {
    fn drop(&mut self) {
        running_imports().remove(&self.0);
    }
}

pub(super) fn interrupted(import: &Import) -> bool {
    import.status.is_active() && import.updated_ms < *IMPORTS_SEEN_FROM_MS && !running_imports().contains(&import.id)
}

pub(super) fn put_import(import: &Import) -> ServiceResult<LakeChange> {
    let document = serde_json::to_string(import).map_err(ServiceError::internal)?;
    Ok(LakeChange::Put(LakeDocument { kind: LakeKind::Import, id: import.id.clone(), document }))
}

pub(super) fn import_shape(import: &Import, with_statistics: bool) -> Value {
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

impl LakeOps<'_> {
    pub(super) fn find_import(state: &LakeState, id: &str) -> ServiceResult<Import> {
        state
            .imports
            .iter()
            .find(|i| i.id == id)
            .cloned()
            .ok_or_else(|| err(ErrorCode::ImportNotFound, format!("The import {id} was not found.")))
    }

    /// A configured remote bucket (any account may import from it, as trails may deliver to
    /// it), or a bucket of the local store that the caller's account owns.
    pub(super) fn import_source(
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
        let (mut source, mut started) = (None, None);
        let (control, delivery) = (self.store, self.delivery);
        let output = self.mutate(|state, resources| {
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
            let output = import_shape(&import, false);
            let change = put_import(&import)?;
            started = Some((import, store.retention_period_days));
            Ok((vec![change], output))
        })?;
        let source = source.expect("set by the decision that succeeded");
        let (import, retention) = started.expect("set by the decision that succeeded");
        // Started only once the import is committed (with the call's record).
        spawn_import(self.shared_store.clone(), self.tables.clone(), source, import, retention);
        Ok(output)
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
