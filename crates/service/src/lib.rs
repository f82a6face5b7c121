//! The CloudTrail service: operations on trails and Event History, and the recording of every
//! call as a CloudTrail management event.
//!
//! [`OpenTrail`] owns the journal, the history index and the control-plane store. The API layer
//! hands it authenticated calls ([`CallInfo`] plus operation name and body); it decodes the
//! body, runs the operation, and appends the call's own CloudTrail record to the journal. The
//! answer is returned only after that record is durable.
//!
//! Invariants:
//! - A call's response exists only once its audit record is durable (or the call fails with
//!   `InternalFailure`).
//! - Every operation acts on the caller's account only: the account comes from the verified
//!   access key, never from the request body.

mod audit_events;
pub mod config;
mod delivery;
pub mod error;
mod lake;
pub mod private_files;
pub use lake::import_local_folder;
mod lookup;
mod paging;
mod query_delivery;
mod trails;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use opentrail_buckets::{BucketError, LocalBuckets};
use opentrail_control::{ControlStore, LakeChange, LakeKind, SqliteStore, StoreError};
use opentrail_delivery::{DeliveryWorker, Destinations, MasterKey, Notifier, SigningKeys};
use opentrail_history::{HistoryError, HistoryIndex, run_indexer};
use opentrail_journal::{Journal, JournalError, LocalJournal, LocalJournalOptions, Position};
use opentrail_lake::{LakeWriter, ParquetLake, QueryEngine, QueryService};
use opentrail_model::record::format_event_time;
use opentrail_model::{EventRecord, Principal, Region};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

pub use crate::config::{Config, Credentials, LakeBucket, Secret, ServiceOptions};
use crate::delivery::DeliveryContext;
pub use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::trails::TrailOps;

pub use opentrail_model::record::EVENT_VERSION;
const EVENT_SOURCE: &str = "cloudtrail.amazonaws.com";
/// How long a lookup waits for the index to include everything already acknowledged.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

/// Operations OpenTrail implements.
const IMPLEMENTED: [&str; 18] = [
    "CreateTrail",
    "UpdateTrail",
    "DeleteTrail",
    "GetTrail",
    "DescribeTrails",
    "ListTrails",
    "GetTrailStatus",
    "StartLogging",
    "StopLogging",
    "PutEventSelectors",
    "GetEventSelectors",
    "PutInsightSelectors",
    "GetInsightSelectors",
    "AddTags",
    "RemoveTags",
    "ListTags",
    "LookupEvents",
    "ListPublicKeys",
];

/// CloudTrail operations that exist in the API model but not (yet) in OpenTrail: they answer
/// `UnsupportedOperationException`.
const NOT_YET_IMPLEMENTED: [&str; 16] = [
    "ListInsightsData",
    "ListInsightsMetricData",
    "GenerateQuery",
    "SearchSampleQueries",
    "CreateDashboard",
    "GetDashboard",
    "ListDashboards",
    "UpdateDashboard",
    "DeleteDashboard",
    "StartDashboardRefresh",
    "RegisterOrganizationDelegatedAdmin",
    "DeregisterOrganizationDelegatedAdmin",
    "EnableFederation",
    "DisableFederation",
    "PutEventConfiguration",
    "GetEventConfiguration",
];

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Buckets(#[from] BucketError),
    #[error(transparent)]
    Lake(#[from] opentrail_lake::LakeError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

/// Who is calling, in which Region.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub region: Region,
}

/// A resource a call acted on, for the record's `resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub arn: String,
    pub resource_type: String,
}

/// Everything about an authenticated call that its CloudTrail record needs.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub caller: Caller,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub request_id: String,
}

/// The answer to a call: the output document, or the error.
pub type CallOutcome = Result<Value, ServiceError>;

pub struct OpenTrail {
    journal: Arc<dyn Journal>,
    history: Arc<HistoryIndex>,
    store: Arc<dyn ControlStore>,
    buckets: Arc<LocalBuckets>,
    delivery: Arc<DeliveryContext>,
    worker: Arc<DeliveryWorker>,
    lake_writer: Arc<LakeWriter>,
    lake_tables: Arc<ParquetLake>,
    queries: Arc<QueryService>,
    pub credentials: Credentials,
}

fn epoch_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The ISO form some status fields use (`2026-01-01T00:00:00Z`).
fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(format_event_time).unwrap_or_default()
}

/// The lake's tables: the data directory's `lake/tables`, or a prefix of a configured remote
/// bucket.
fn lake_tables(
    data_dir: &Path,
    destinations: &Destinations,
    bucket: Option<&LakeBucket>,
) -> Result<ParquetLake, OpenError> {
    let Some(LakeBucket { bucket, prefix }) = bucket else {
        return Ok(ParquetLake::local(data_dir.join("lake").join("tables"))?);
    };
    let remote = destinations
        .remote(bucket)
        .ok_or_else(|| OpenError::Usage(format!("lake bucket {bucket} is not one of remote_buckets")))?;
    let store = object_store::prefix::PrefixStore::new(remote.object_store(), prefix.as_str());
    Ok(ParquetLake::remote(Arc::new(store)))
}

/// The digest signing keys, sealed under the master key (see `opentrail_delivery::master_key`
/// for where it comes from). Keys stored in plaintext by an older version are sealed now, and a
/// master key that does not open the sealed ones stops the start.
fn open_signing_keys(data_dir: &Path, store: &Arc<dyn ControlStore>) -> Result<Arc<SigningKeys>, OpenError> {
    let key_error = |error: opentrail_delivery::keys::KeyError| OpenError::Usage(error.to_string());
    let sealed = opentrail_delivery::keys::any_sealed(store.as_ref()).map_err(key_error)?;
    let (master, source) = MasterKey::resolve(data_dir, sealed).map_err(|error| OpenError::Usage(error.to_string()))?;
    tracing::info!("digest signing keys are sealed with the master key from {source}");
    let keys = SigningKeys::new(store.clone(), master);
    keys.seal_stored_keys().map_err(key_error)?;
    Ok(Arc::new(keys))
}

impl OpenTrail {
    /// Opens the data directory with default delivery settings.
    pub fn open(data_dir: &Path, credentials: Credentials) -> Result<Arc<Self>, OpenError> {
        Self::open_with(data_dir, credentials, ServiceOptions::default())
    }

    /// Opens the data directory: `journal/`, `history.redb`, `control.sqlite`, `buckets/`.
    pub fn open_with(
        data_dir: &Path,
        credentials: Credentials,
        options: ServiceOptions,
    ) -> Result<Arc<Self>, OpenError> {
        // The data directory is the server user's alone: new files get 0600 from the umask, and
        // what an older version or another tool left readable is fixed now.
        crate::private_files::restrict_new_files();
        let fixed = crate::private_files::make_private(data_dir)
            .map_err(|source| OpenError::DataDir { path: data_dir.display().to_string(), source })?;
        if fixed > 0 {
            tracing::warn!(files = fixed, "made the data directory's files private to this user (0700/0600)");
        }
        let journal: Arc<dyn Journal> =
            Arc::new(LocalJournal::open(data_dir.join("journal"), LocalJournalOptions::default())?);
        let history = Arc::new(HistoryIndex::open(&data_dir.join("history.redb"), journal.clone())?);
        let store: Arc<dyn ControlStore> = Arc::new(SqliteStore::open(&data_dir.join("control.sqlite"))?);
        let keys = open_signing_keys(data_dir, &store)?;
        let buckets = Arc::new(LocalBuckets::open_with(&data_dir.join("buckets"), options.bucket_store)?);
        let delivery = Arc::new(DeliveryContext {
            destinations: Arc::new(Destinations::new(buckets.clone(), &options.remote_buckets)?),
            notifier: Arc::new(Notifier::new(&options.notification_targets)),
            keys,
            journal: journal.clone(),
        });
        let worker = Arc::new(DeliveryWorker::new(
            store.clone(),
            journal.clone(),
            delivery.destinations.clone(),
            delivery.keys.clone(),
            delivery.notifier.clone(),
            options.settings,
        ));
        let lake_tables = Arc::new(lake_tables(data_dir, &delivery.destinations, options.lake_bucket.as_ref())?);
        let lake_writer = Arc::new(LakeWriter::new(store.clone(), journal.clone(), lake_tables.clone()));
        let queries = Arc::new(QueryService::new(
            store.clone(),
            Arc::new(QueryEngine::new(lake_tables.clone())),
            data_dir.join("lake").join("results"),
            lake::QUERY_TIMEOUT,
        )?);
        Ok(Arc::new(Self {
            journal,
            history,
            store,
            buckets,
            delivery,
            worker,
            lake_writer,
            lake_tables,
            queries,
            credentials,
        }))
    }

    /// The control-plane store (bucket ownership for the S3 endpoint).
    pub fn store(&self) -> &Arc<dyn ControlStore> {
        &self.store
    }

    /// The local bucket store the S3 endpoint serves.
    pub fn buckets(&self) -> &Arc<LocalBuckets> {
        &self.buckets
    }

    /// The trail delivery worker (its `deliver_round` runs one pass, for tests and benches).
    pub fn delivery_worker(&self) -> &Arc<DeliveryWorker> {
        &self.worker
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    pub fn history(&self) -> &Arc<HistoryIndex> {
        &self.history
    }

    /// The journal consumer that fills event data stores (its `round` runs one pass).
    pub fn lake_writer(&self) -> &Arc<LakeWriter> {
        &self.lake_writer
    }

    /// Lake queries (the CLI waits on them).
    pub fn queries(&self) -> &Arc<QueryService> {
        &self.queries
    }

    /// Starts the journal consumers: the history indexer, trail delivery and retention. Needs a
    /// Tokio runtime.
    pub fn spawn_background_tasks(self: &Arc<Self>) {
        tokio::spawn(run_indexer(self.history.clone(), self.journal.clone()));
        tokio::spawn(self.worker.clone().run());
        tokio::spawn(self.lake_writer.clone().run());
        let this = self.clone();
        tokio::spawn(async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every_hour.tick().await;
                if let Err(error) = this.apply_lake_retention().await {
                    tracing::error!(%error, "Lake retention failed");
                }
                let worker = this.clone();
                match tokio::task::spawn_blocking(move || worker.apply_retention()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "retention failed"),
                    Err(error) => tracing::error!(%error, "retention task failed"),
                }
            }
        });
    }

    /// Drops history older than 90 days, then journal segments no consumer needs any more
    /// (neither the history index nor any trail still delivering).
    pub fn apply_retention(&self) -> Result<(), HistoryError> {
        let cutoff = Utc::now() - chrono::Duration::days(lookup::HISTORY_DAYS);
        let expired = self.history.expire(cutoff)?;
        let mut keep_from = self.history.oldest_needed_position()?;
        match opentrail_delivery::oldest_needed_position(self.store.as_ref()) {
            Ok(Some(cursor)) => keep_from = keep_from.min(cursor),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "cannot read delivery cursors; keeping the journal");
                return Ok(());
            }
        }
        match opentrail_lake::oldest_needed_position(self.store.as_ref()) {
            Ok(Some(cursor)) => keep_from = keep_from.min(cursor),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "cannot read the lake writer's cursor; keeping the journal");
                return Ok(());
            }
        }
        let dropped = self.journal.drop_segments_before(keep_from, cutoff.into())?;
        tracing::info!(expired, dropped_segments = dropped, "retention applied");
        Ok(())
    }

    /// Lake housekeeping: drops day partitions past each store's retention, purges stores whose
    /// seven days of pending deletion are over, and forgets query results older than seven days.
    pub async fn apply_lake_retention(&self) -> Result<(), opentrail_lake::LakeError> {
        use opentrail_lake::LakeTables;
        let now = Utc::now().timestamp_millis();
        let store = self.store.clone();
        let documents = tokio::task::spawn_blocking(move || store.all_lake_documents(LakeKind::EventDataStore))
            .await
            .map_err(|error| opentrail_lake::LakeError::Io {
                path: "lake retention".into(),
                source: std::io::Error::other(error),
            })??;
        for document in documents {
            let event_store: opentrail_model::lake::EventDataStore = serde_json::from_str(&document)?;
            if lake::pending_deletion_expired(&event_store, now) {
                self.lake_tables.drop_store(&event_store.id).await?;
                let lake = self.store.load_lake(&event_store.account)?;
                let delete = LakeChange::Delete { kind: LakeKind::EventDataStore, id: event_store.id.clone() };
                // A conflict means someone acted on the account meanwhile: the next round retries.
                let _ = self.store.apply_lake_changes(&event_store.account, lake.version, &[delete]);
                continue;
            }
            let first_kept = now - i64::from(event_store.retention_period_days) * 86_400_000;
            let dropped =
                self.lake_tables.drop_days_before(&event_store.id, &opentrail_lake::schema::day_of(first_kept)).await?;
            if dropped > 0 {
                tracing::info!(store = event_store.id, days = dropped, "Lake retention dropped day partitions");
            }
        }
        self.queries.expire(now - opentrail_model::lake::QUERY_RESULT_DAYS * 86_400_000)?;
        Ok(())
    }

    /// Appends records durably; resolves once they are on disk.
    pub async fn append_records(&self, records: &[EventRecord]) -> Result<Vec<Position>, JournalError> {
        let encoded = records.iter().map(EventRecord::encode).collect();
        self.journal.append(encoded).await.map_err(|_| JournalError::Stopped)?
    }

    /// Runs one authenticated call and records it. The error case of the outer `Result` means
    /// the record could not be made durable: answer `InternalFailure`.
    pub async fn handle_call(
        self: &Arc<Self>,
        info: CallInfo,
        operation: &str,
        body: &[u8],
    ) -> Result<CallOutcome, ServiceError> {
        let parsed = parse_body(body);
        let (outcome, resources) = match &parsed {
            Ok(input) => self.dispatch(&info.caller, operation, input.clone()).await,
            Err(error) => (Err(error.clone()), Vec::new()),
        };
        let record = build_record(&info, operation, parsed.as_ref().ok(), &outcome, &resources);
        match self.append_records(&[record]).await {
            Ok(_) => Ok(outcome),
            Err(error) => Err(ServiceError::internal(error)),
        }
    }

    async fn dispatch(
        self: &Arc<Self>,
        caller: &Caller,
        operation: &str,
        input: Value,
    ) -> (CallOutcome, Vec<Resource>) {
        if operation == "LookupEvents" {
            return (self.lookup_events(caller, input).await, Vec::new());
        }
        if lake::OPERATIONS.contains(&operation) {
            return self.dispatch_lake(caller, operation, input).await;
        }
        if !IMPLEMENTED.contains(&operation) {
            let error = if NOT_YET_IMPLEMENTED.contains(&operation) {
                ServiceError::new(
                    ErrorCode::UnsupportedOperation,
                    format!("OpenTrail does not support {operation} in this version."),
                )
            } else {
                ServiceError::new(ErrorCode::UnknownOperation, format!("Unknown operation {operation}."))
            };
            return (Err(error), Vec::new());
        }
        let this = self.clone();
        let caller = caller.clone();
        let operation = operation.to_owned();
        let joined = tokio::task::spawn_blocking(move || {
            let mut resources = Vec::new();
            let mut ops = TrailOps {
                store: this.store.as_ref(),
                caller: &caller,
                resources: &mut resources,
                delivery: &this.delivery,
            };
            let outcome = run_trail_operation(&mut ops, &operation, input);
            (outcome, resources)
        })
        .await;
        joined.unwrap_or_else(|error| (Err(ServiceError::internal(error)), Vec::new()))
    }

    async fn dispatch_lake(&self, caller: &Caller, operation: &str, input: Value) -> (CallOutcome, Vec<Resource>) {
        let (store, journal, queries) = (self.store.clone(), self.journal.clone(), self.queries.clone());
        let (tables, delivery) = (self.lake_tables.clone(), self.delivery.clone());
        let caller = caller.clone();
        let operation = operation.to_owned();
        let joined = tokio::task::spawn_blocking(move || {
            let mut resources = Vec::new();
            let mut ops = lake::LakeOps {
                shared_store: &store,
                delivery: &delivery,
                tables: &tables,
                store: store.as_ref(),
                journal: journal.as_ref(),
                queries: &queries,
                caller: &caller,
                resources: &mut resources,
            };
            let outcome = run_lake_operation(&mut ops, &operation, input);
            (outcome, resources)
        })
        .await;
        joined.unwrap_or_else(|error| (Err(ServiceError::internal(error)), Vec::new()))
    }

    /// Answers a `LookupEvents` input for `caller` (without recording a call: the API path
    /// records; benchmarks and tools read).
    pub async fn lookup_events(&self, caller: &Caller, input: Value) -> CallOutcome {
        let input: lookup::LookupEventsInput = decode_input(input)?;
        let query = lookup::build_query(caller, &input, Utc::now())?;
        // Read your writes: include everything acknowledged before this lookup began.
        self.history.wait_for(self.journal.committed_end(), READ_YOUR_WRITES_WAIT).await;
        let history = self.history.clone();
        let page = tokio::task::spawn_blocking(move || history.lookup(&query))
            .await
            .map_err(ServiceError::internal)?
            .map_err(|error| match error {
            HistoryError::InvalidToken => lookup::invalid_token(),
            other => ServiceError::internal(other),
        })?;
        let mut output = json!({ "Events": page.events.iter().map(lookup::event_shape).collect::<Vec<_>>() });
        if let Some(next) = page.next {
            output["NextToken"] = json!(next.encode());
        }
        Ok(output)
    }
}

fn run_trail_operation(ops: &mut TrailOps<'_>, operation: &str, input: Value) -> CallOutcome {
    match operation {
        "CreateTrail" => ops.create_trail(decode_input(input)?),
        "UpdateTrail" => ops.update_trail(decode_input(input)?),
        "DeleteTrail" => ops.delete_trail(decode_input(input)?),
        "GetTrail" => ops.get_trail(decode_input(input)?),
        "DescribeTrails" => ops.describe_trails(decode_input(input)?),
        "ListTrails" => ops.list_trails(decode_input(input)?),
        "GetTrailStatus" => ops.get_trail_status(decode_input(input)?),
        "StartLogging" => ops.set_logging(decode_input(input)?, true),
        "StopLogging" => ops.set_logging(decode_input(input)?, false),
        "PutEventSelectors" => ops.put_event_selectors(decode_input(input)?),
        "GetEventSelectors" => ops.get_event_selectors(decode_input(input)?),
        "PutInsightSelectors" => ops.put_insight_selectors(decode_input(input)?),
        "GetInsightSelectors" => ops.get_insight_selectors(decode_input(input)?),
        "AddTags" => ops.add_tags(decode_input(input)?),
        "RemoveTags" => ops.remove_tags(decode_input(input)?),
        "ListTags" => ops.list_tags(decode_input(input)?),
        "ListPublicKeys" => ops.list_public_keys(decode_input(input)?),
        other => Err(ServiceError::new(ErrorCode::UnknownOperation, format!("Unknown operation {other}."))),
    }
}

fn run_lake_operation(ops: &mut lake::LakeOps<'_>, operation: &str, input: Value) -> CallOutcome {
    match operation {
        "CreateEventDataStore" => ops.create_event_data_store(decode_input(input)?),
        "GetEventDataStore" => ops.get_event_data_store(decode_input(input)?),
        "ListEventDataStores" => ops.list_event_data_stores(decode_input(input)?),
        "UpdateEventDataStore" => ops.update_event_data_store(decode_input(input)?),
        "DeleteEventDataStore" => ops.delete_event_data_store(decode_input(input)?),
        "RestoreEventDataStore" => ops.restore_event_data_store(decode_input(input)?),
        "StartEventDataStoreIngestion" => ops.set_ingestion(decode_input(input)?, true),
        "StopEventDataStoreIngestion" => ops.set_ingestion(decode_input(input)?, false),
        "StartQuery" => ops.start_query(decode_input(input)?),
        "DescribeQuery" => ops.describe_query(decode_input(input)?),
        "GetQueryResults" => ops.get_query_results(decode_input(input)?),
        "ListQueries" => ops.list_queries(decode_input(input)?),
        "CancelQuery" => ops.cancel_query(decode_input(input)?),
        "CreateChannel" => ops.create_channel(decode_input(input)?),
        "GetChannel" => ops.get_channel(decode_input(input)?),
        "ListChannels" => ops.list_channels(decode_input(input)?),
        "UpdateChannel" => ops.update_channel(decode_input(input)?),
        "DeleteChannel" => ops.delete_channel(decode_input(input)?),
        "PutResourcePolicy" => ops.put_resource_policy(decode_input(input)?),
        "GetResourcePolicy" => ops.get_resource_policy(decode_input(input)?),
        "DeleteResourcePolicy" => ops.delete_resource_policy(decode_input(input)?),
        "StartImport" => ops.start_import(decode_input(input)?),
        "GetImport" => ops.get_import(decode_input(input)?),
        "ListImports" => ops.list_imports(decode_input(input)?),
        "StopImport" => ops.stop_import(decode_input(input)?),
        "ListImportFailures" => ops.list_import_failures(decode_input(input)?),
        other => Err(ServiceError::new(ErrorCode::UnknownOperation, format!("Unknown operation {other}."))),
    }
}

/// Decodes and validates a request as the server would before running it: the body, then the
/// operation's typed input. Pure (no state is touched); the fuzz target drives it.
pub fn decode_request(operation: &str, body: &[u8]) -> ServiceResult<()> {
    let input = parse_body(body)?;
    match operation {
        "CreateTrail" => decode_input::<trails::CreateTrailInput>(input).map(drop),
        "UpdateTrail" => decode_input::<trails::UpdateTrailInput>(input).map(drop),
        "DeleteTrail" | "GetTrail" | "GetTrailStatus" | "StartLogging" | "StopLogging" => {
            decode_input::<trails::NameInput>(input).map(drop)
        }
        "DescribeTrails" => decode_input::<trails::DescribeTrailsInput>(input).map(drop),
        "ListTrails" => decode_input::<trails::ListTrailsInput>(input).map(drop),
        "PutEventSelectors" => decode_input::<trails::PutEventSelectorsInput>(input).map(drop),
        "GetEventSelectors" | "GetInsightSelectors" => decode_input::<trails::TrailNameInput>(input).map(drop),
        "PutInsightSelectors" => decode_input::<trails::PutInsightSelectorsInput>(input).map(drop),
        "AddTags" | "RemoveTags" => decode_input::<trails::TagsInput>(input).map(drop),
        "ListTags" => decode_input::<trails::ListTagsInput>(input).map(drop),
        "ListPublicKeys" => decode_input::<delivery::ListPublicKeysInput>(input).map(drop),
        lake_operation if lake::OPERATIONS.contains(&lake_operation) => lake::decode(lake_operation, input),
        "LookupEvents" => {
            let input: lookup::LookupEventsInput = decode_input(input)?;
            let caller = Caller {
                principal: Principal {
                    account: opentrail_model::AccountId::parse("000000000000").expect("valid"),
                    access_key_id: "fuzz".into(),
                    kind: opentrail_model::PrincipalKind::Root,
                },
                region: Region::parse("us-east-1").expect("valid"),
            };
            lookup::build_query(&caller, &input, Utc::now()).map(drop)
        }
        other => Err(ServiceError::new(ErrorCode::UnknownOperation, format!("Unknown operation {other}."))),
    }
}

/// Parses a request body: empty means `{}`; anything but a JSON object is a SerializationException.
pub fn parse_body(body: &[u8]) -> Result<Value, ServiceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ServiceError::new(ErrorCode::Serialization, "The request body must be a JSON object.")),
        Err(error) => {
            Err(ServiceError::new(ErrorCode::Serialization, format!("The request body is not valid JSON: {error}")))
        }
    }
}

/// Turns a JSON object into an operation's input. A missing required member is a
/// ValidationException; a member of the wrong type is a SerializationException.
pub fn decode_input<T: DeserializeOwned>(input: Value) -> ServiceResult<T> {
    serde_json::from_value(input).map_err(|error| {
        let text = error.to_string();
        match text.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
            Some(member) => ServiceError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
            ),
            None => ServiceError::new(ErrorCode::Serialization, format!("Invalid request: {text}")),
        }
    })
}

fn is_read_only(operation: &str) -> bool {
    ["Get", "Describe", "List", "Lookup"].iter().any(|prefix| operation.starts_with(prefix))
}

/// CloudTrail writes request and response members in lower camel case (`S3BucketName` ->
/// `s3BucketName`, `TrailARN` -> `trailARN`).
fn lower_camel(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let mut chars = key.chars();
                    let key = match chars.next() {
                        Some(first) => first.to_lowercase().chain(chars).collect(),
                        None => String::new(),
                    };
                    (key, lower_camel(value))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lower_camel).collect()),
        other => other.clone(),
    }
}

fn non_empty_object(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Object(map)) if !map.is_empty() => lower_camel(&Value::Object(map.clone())),
        _ => Value::Null,
    }
}

/// The CloudTrail record of one call to OpenTrail's own API, field for field as AWS writes it.
pub fn build_record(
    info: &CallInfo,
    operation: &str,
    input: Option<&Value>,
    outcome: &CallOutcome,
    resources: &[Resource],
) -> EventRecord {
    let read_only = is_read_only(operation);
    let event_name: String = operation.chars().take(128).collect();
    let mut record = Map::new();
    record.insert("eventVersion".into(), json!(EVENT_VERSION));
    record.insert("userIdentity".into(), info.caller.principal.user_identity());
    record.insert("eventTime".into(), json!(format_event_time(Utc::now())));
    record.insert("eventSource".into(), json!(EVENT_SOURCE));
    record.insert("eventName".into(), json!(event_name));
    record.insert("awsRegion".into(), json!(info.caller.region.as_str()));
    record.insert("sourceIPAddress".into(), json!(info.source_ip));
    if let Some(agent) = &info.user_agent {
        record.insert("userAgent".into(), json!(agent.chars().take(1024).collect::<String>()));
    }
    if let Err(error) = outcome {
        record.insert("errorCode".into(), json!(error.code.aws_type()));
        record.insert("errorMessage".into(), json!(error.message.chars().take(1024).collect::<String>()));
    }
    record.insert("requestParameters".into(), non_empty_object(input));
    let response = match outcome {
        Ok(output) if !read_only => non_empty_object(Some(output)),
        _ => Value::Null,
    };
    record.insert("responseElements".into(), response);
    record.insert("requestID".into(), json!(info.request_id));
    record.insert("eventID".into(), json!(uuid::Uuid::new_v4().to_string()));
    record.insert("readOnly".into(), json!(read_only));
    if !resources.is_empty() {
        let list: Vec<Value> = resources
            .iter()
            .map(
                |r| json!({"accountId": info.caller.principal.account.as_str(), "type": r.resource_type, "ARN": r.arn}),
            )
            .collect();
        record.insert("resources".into(), json!(list));
    }
    record.insert("eventType".into(), json!("AwsApiCall"));
    record.insert("managementEvent".into(), json!(true));
    record.insert("recipientAccountId".into(), json!(info.caller.principal.account.as_str()));
    record.insert("eventCategory".into(), json!("Management"));
    EventRecord::new(info.caller.principal.account.clone(), info.caller.region.clone(), Value::Object(record))
        .expect("a record built here has eventTime and eventName")
}

#[cfg(test)]
mod tests {
    use opentrail_model::{AccountId, PrincipalKind};

    use super::*;

    fn info() -> CallInfo {
        CallInfo {
            caller: Caller {
                principal: Principal {
                    account: AccountId::parse("123456789012").unwrap(),
                    access_key_id: "AKIAEXAMPLE".into(),
                    kind: PrincipalKind::User { name: "alice".into(), user_id: "AIDAEXAMPLE".into() },
                },
                region: Region::parse("eu-west-1").unwrap(),
            },
            source_ip: "127.0.0.1".into(),
            user_agent: Some("aws-cli/2".into()),
            request_id: "req-1".into(),
        }
    }

    #[test]
    fn successful_write_call_record() {
        let input = json!({"Name": "t1", "S3BucketName": "b"});
        let output = Ok(json!({"Name": "t1", "TrailARN": "arn:aws:cloudtrail:eu-west-1:123456789012:trail/t1"}));
        let resources = [Resource { arn: "arn:x".into(), resource_type: "AWS::CloudTrail::Trail".into() }];
        let record = build_record(&info(), "CreateTrail", Some(&input), &output, &resources);
        let r = &record.record;
        assert_eq!(r["eventSource"], "cloudtrail.amazonaws.com");
        assert_eq!(r["eventName"], "CreateTrail");
        assert_eq!(r["awsRegion"], "eu-west-1");
        assert_eq!(r["readOnly"], false);
        assert_eq!(r["requestParameters"], json!({"name": "t1", "s3BucketName": "b"}));
        assert_eq!(r["responseElements"]["trailARN"], "arn:aws:cloudtrail:eu-west-1:123456789012:trail/t1");
        assert_eq!(r["userIdentity"]["userName"], "alice");
        assert_eq!(r["resources"][0]["type"], "AWS::CloudTrail::Trail");
        assert_eq!(r["eventType"], "AwsApiCall");
        assert_eq!(r["managementEvent"], true);
        assert_eq!(r["recipientAccountId"], "123456789012");
        assert!(r.get("errorCode").is_none());
        let keys: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(&keys[..5], ["eventVersion", "userIdentity", "eventTime", "eventSource", "eventName"]);
    }

    #[test]
    fn failed_read_call_record() {
        let error = Err(ServiceError::new(ErrorCode::TrailNotFound, "Unknown trail"));
        let record = build_record(&info(), "GetTrail", Some(&json!({"Name": "x"})), &error, &[]);
        assert_eq!(record.record["errorCode"], "TrailNotFoundException");
        assert_eq!(record.record["errorMessage"], "Unknown trail");
        assert_eq!(record.record["responseElements"], Value::Null);
        assert_eq!(record.record["readOnly"], true);
        assert!(record.record.get("resources").is_none());
    }

    #[test]
    fn body_errors() {
        assert_eq!(parse_body(b"").unwrap(), json!({}));
        assert_eq!(parse_body(b"{").unwrap_err().code, ErrorCode::Serialization);
        assert_eq!(parse_body(b"[1]").unwrap_err().code, ErrorCode::Serialization);
        let missing: ServiceResult<trails::NameInput> = decode_input(json!({}));
        assert_eq!(missing.err().unwrap().code, ErrorCode::Validation);
        let wrong: ServiceResult<trails::NameInput> = decode_input(json!({"Name": 5}));
        assert_eq!(wrong.err().unwrap().code, ErrorCode::Serialization);
    }

    #[test]
    fn every_model_operation_is_classified_once() {
        assert_eq!(IMPLEMENTED.len() + lake::OPERATIONS.len() + NOT_YET_IMPLEMENTED.len(), 60);
        for operation in IMPLEMENTED.iter().chain(&lake::OPERATIONS) {
            assert!(!NOT_YET_IMPLEMENTED.contains(operation));
        }
    }
}
