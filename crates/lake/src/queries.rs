//! The query lifecycle: `QUEUED` -> `RUNNING` -> `FINISHED`, `FAILED`, `CANCELLED` or
//! `TIMED_OUT`, with at most ten queued or running queries per account, a timeout, and results
//! kept for seven days.
//!
//! Queries run on a runtime of their own so that a heavy scan never delays API calls. A query's
//! document (status, statistics) lives in the control store; its rows in a results file written
//! whole before the query is marked `FINISHED`. A query that was running when the server stopped
//! reads back as `FAILED`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use opentrail_control::ControlStore;
use opentrail_model::lake::{EventDataStore, MAX_CONCURRENT_QUERIES, Query, QueryStatistics, QueryStatus, StoreStatus};
use opentrail_model::{AccountId, Region};
use serde::{Deserialize, Serialize};

use crate::LakeError;
use crate::engine::{QueryEngine, QueryOutput};
use crate::sql::{BridgeError, bridge};

#[derive(Debug, thiserror::Error)]
pub enum StartQueryError {
    #[error("{0}")]
    InvalidStatement(String),
    #[error("{0}")]
    StoreNotFound(String),
    #[error("{0}")]
    InactiveStore(String),
    #[error("You have reached the maximum of {MAX_CONCURRENT_QUERIES} queued or running queries.")]
    TooManyQueries,
    #[error(transparent)]
    Internal(#[from] LakeError),
}

/// Rows of a finished query, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueryResults {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// A Tokio runtime on threads of its own, shut down (off any async context) when dropped.
struct QueryRuntime {
    handle: tokio::runtime::Handle,
    _stop: std::sync::mpsc::Sender<()>,
}

impl QueryRuntime {
    fn start(threads: usize) -> Self {
        let (handle_sender, handle_receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("lake-queries".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("lake-query")
                    .enable_all()
                    .build()
                    .expect("query runtime");
                let _ = handle_sender.send(runtime.handle().clone());
                // Wait until the owner goes away, then drop the runtime here, outside async code.
                let _ = stopped.recv();
            })
            .expect("query runtime thread");
        let handle = handle_receiver.recv().expect("query runtime handle");
        Self { handle, _stop: stop }
    }
}

pub struct QueryService {
    store: Arc<dyn ControlStore>,
    engine: Arc<QueryEngine>,
    results_dir: PathBuf,
    timeout: Duration,
    runtime: QueryRuntime,
    /// Queries queued or running in this process, by ID, with their account.
    running: Mutex<HashMap<String, (AccountId, tokio::task::AbortHandle)>>,
}

impl QueryService {
    pub fn new(
        store: Arc<dyn ControlStore>,
        engine: Arc<QueryEngine>,
        results_dir: PathBuf,
        timeout: Duration,
    ) -> Result<Self, LakeError> {
        std::fs::create_dir_all(&results_dir)
            .map_err(|source| LakeError::Io { path: results_dir.display().to_string(), source })?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            store,
            engine,
            results_dir,
            timeout,
            runtime: QueryRuntime::start(threads),
            running: Mutex::new(HashMap::new()),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, (AccountId, tokio::task::AbortHandle)>> {
        self.running.lock().expect("running queries lock")
    }

    fn results_path(&self, id: &str) -> PathBuf {
        self.results_dir.join(format!("{id}.json"))
    }

    fn save(&self, query: &Query) -> Result<(), LakeError> {
        self.store.put_query(&query.account, &query.id, query.created_ms, &serde_json::to_string(query)?)?;
        Ok(())
    }

    /// Validates, plans and queues a query over the caller's stores.
    pub async fn start(
        self: &Arc<Self>,
        account: &AccountId,
        region: &Region,
        statement: &str,
        delivery_s3_uri: Option<String>,
        stores: &[EventDataStore],
    ) -> Result<Query, StartQueryError> {
        let find =
            |name: &str| stores.iter().find(|s| s.id.eq_ignore_ascii_case(name) || s.arn().eq_ignore_ascii_case(name));
        let bridged = bridge(statement, |name| find(name).map(|s| s.id.clone())).map_err(|error| match error {
            BridgeError::InvalidStatement(message) => StartQueryError::InvalidStatement(message),
            BridgeError::UnknownTable(message) => StartQueryError::StoreNotFound(message),
        })?;
        let mut tables = Vec::new();
        for id in &bridged.store_ids {
            let store = find(id).expect("resolved above");
            if store.status == StoreStatus::PendingDeletion {
                return Err(StartQueryError::InactiveStore(format!(
                    "Event data store {} is pending deletion and cannot be queried.",
                    store.arn()
                )));
            }
            tables.push((store.id.clone(), store.category()));
        }
        let planned = self.engine.plan(&bridged, &tables).await.map_err(|error| {
            StartQueryError::InvalidStatement(format!("Query statement is not valid: {}", plain(&error)))
        })?;

        let query = Query {
            id: uuid::Uuid::new_v4().to_string(),
            account: account.clone(),
            region: region.clone(),
            statement: statement.to_string(),
            store_ids: bridged.store_ids.clone(),
            status: QueryStatus::Queued,
            created_ms: Utc::now().timestamp_millis(),
            delivery_s3_uri,
            delivery_status: None,
            error_message: None,
            statistics: QueryStatistics::default(),
        };
        let mut running = self.running();
        if running.values().filter(|(owner, _)| owner == account).count() >= MAX_CONCURRENT_QUERIES {
            return Err(StartQueryError::TooManyQueries);
        }
        self.save(&query)?;
        let this = self.clone();
        let mut task_query = query.clone();
        let task = self.runtime.handle.spawn(async move {
            {
                // `start` holds this lock until the query is registered; a cancelled query stays so.
                let running = this.running();
                if !running.contains_key(&task_query.id) {
                    return;
                }
                task_query.status = QueryStatus::Running;
                if let Err(error) = this.save(&task_query) {
                    tracing::error!(%error, "cannot record a query as running");
                }
            }
            let outcome = tokio::time::timeout(this.timeout, this.engine.execute(planned)).await;
            this.finish(task_query, outcome);
        });
        running.insert(query.id.clone(), (account.clone(), task.abort_handle()));
        Ok(query)
    }

    fn finish(&self, mut query: Query, outcome: Result<Result<QueryOutput, LakeError>, tokio::time::error::Elapsed>) {
        let mut running = self.running();
        if running.remove(&query.id).is_none() {
            return; // cancelled meanwhile: the cancellation is the final word
        }
        match outcome {
            Ok(Ok(output)) => match self.write_results(&query.id, &output) {
                Ok(()) => {
                    query.status = QueryStatus::Finished;
                    query.statistics = output.statistics;
                }
                Err(error) => {
                    query.status = QueryStatus::Failed;
                    query.error_message = Some(format!("The results could not be stored: {error}"));
                }
            },
            Ok(Err(error)) => {
                query.status = QueryStatus::Failed;
                query.error_message = Some(match &error {
                    LakeError::DataFusion(inner) => plain(inner),
                    other => other.to_string(),
                });
            }
            Err(_) => {
                query.status = QueryStatus::TimedOut;
                query.error_message = Some(format!("The query ran longer than {} seconds.", self.timeout.as_secs()));
            }
        }
        if let Err(error) = self.save(&query) {
            tracing::error!(%error, query = query.id, "cannot record a finished query");
        }
    }

    fn write_results(&self, id: &str, output: &QueryOutput) -> Result<(), LakeError> {
        let results = QueryResults { columns: output.columns.clone(), rows: output.rows.clone() };
        let path = self.results_path(id);
        let temporary = path.with_extension("tmp");
        let io = |source| LakeError::Io { path: path.display().to_string(), source };
        let bytes = serde_json::to_vec(&results)?;
        std::fs::write(&temporary, bytes).map_err(io)?;
        std::fs::File::open(&temporary).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
        Ok(())
    }

    /// A query of the account, with a status that is true even after a restart.
    pub fn get(&self, account: &AccountId, id: &str) -> Result<Option<Query>, LakeError> {
        // Read under the lock that `finish` holds while it stores the final status, so a query
        // between leaving `running` and being saved is never taken for an interrupted one.
        let running = self.running();
        let Some(document) = self.store.query(account, id)? else { return Ok(None) };
        let mut query: Query = serde_json::from_str(&document)?;
        if !query.status.is_terminal() && !running.contains_key(id) {
            query.status = QueryStatus::Failed;
            query.error_message = Some("The query was interrupted when OpenTrail stopped.".into());
            self.save(&query)?;
        }
        Ok(Some(query))
    }

    /// Records how delivering the results to a bucket went (`SUCCESS`, `FAILED`, ...).
    pub fn set_delivery_status(&self, account: &AccountId, id: &str, status: &str) -> Result<(), LakeError> {
        let _running = self.running();
        let Some(document) = self.store.query(account, id)? else { return Ok(()) };
        let mut query: Query = serde_json::from_str(&document)?;
        query.delivery_status = Some(status.to_string());
        self.save(&query)
    }

    pub fn list(&self, account: &AccountId, since_ms: i64) -> Result<Vec<Query>, LakeError> {
        let documents = self.store.list_queries(account, since_ms)?;
        let mut queries = Vec::with_capacity(documents.len());
        for document in documents {
            let query: Query = serde_json::from_str(&document)?;
            queries.push(if query.status.is_terminal() {
                query
            } else {
                self.get(account, &query.id)?.unwrap_or(query)
            });
        }
        Ok(queries)
    }

    /// Cancels a queued or running query; `None` if it is not running (already terminal).
    pub fn cancel(&self, account: &AccountId, id: &str) -> Result<Option<Query>, LakeError> {
        let mut running = self.running();
        let Some((owner, task)) = running.remove(id) else { return Ok(None) };
        if &owner != account {
            running.insert(id.to_string(), (owner, task));
            return Ok(None);
        }
        task.abort();
        drop(running);
        let Some(document) = self.store.query(account, id)? else { return Ok(None) };
        let mut query: Query = serde_json::from_str(&document)?;
        query.status = QueryStatus::Cancelled;
        self.save(&query)?;
        Ok(Some(query))
    }

    /// The stored rows of a finished query.
    pub fn results(&self, id: &str) -> Result<Option<QueryResults>, LakeError> {
        let path = self.results_path(id);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LakeError::Io { path: path.display().to_string(), source }),
        }
    }

    /// Forgets queries and results older than `before_ms`.
    pub fn expire(&self, before_ms: i64) -> Result<usize, LakeError> {
        let expired = self.store.expire_queries(before_ms)?;
        for id in &expired {
            let _ = std::fs::remove_file(self.results_path(id));
        }
        Ok(expired.len())
    }

    /// Waits until a query is terminal (for the CLI and tests).
    pub async fn wait(&self, account: &AccountId, id: &str, limit: Duration) -> Result<Option<Query>, LakeError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let query = self.get(account, id)?;
            if query.as_ref().is_none_or(|q| q.status.is_terminal()) || tokio::time::Instant::now() >= deadline {
                return Ok(query);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// DataFusion's message without its internal prefixes (`Error during planning: ...`).
fn plain(error: &datafusion::error::DataFusionError) -> String {
    let text = error.to_string();
    let text = text.strip_prefix("Error during planning: ").unwrap_or(&text);
    let text = text.strip_prefix("Schema error: ").unwrap_or(text);
    text.lines().next().unwrap_or(text).to_string()
}
