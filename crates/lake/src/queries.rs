//! The query lifecycle: `QUEUED` -> `RUNNING` -> `FINISHED`, `FAILED`, `CANCELLED` or
//! `TIMED_OUT`, with at most ten queued or running queries per account, a timeout, and results
//! kept for seven days.
//!
//! Queries run on a runtime of their own so that a heavy scan never delays API calls. A query's
//! document (status, statistics) lives in the control store; its rows in a results file written
//! whole before the query is marked `FINISHED`. A query that was running when the server stopped
//! reads back as `FAILED`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use opentrail_control::ControlStore;
use opentrail_model::lake::{EventDataStore, MAX_CONCURRENT_QUERIES, Query, QueryStatistics, QueryStatus, StoreStatus};
use opentrail_model::{AccountId, Region};
use serde::{Deserialize, Serialize};

use crate::LakeError;
use crate::engine::{QueryEngine, QueryOutput};
use crate::limits::{QUERY_STACK_BYTES, QueryLimits};
use crate::sql::{BridgeError, bridge};
use crate::stop::StopSignal;

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

/// One page of a finished query's rows, and how many rows there are in all.
#[derive(Debug, Clone, Default)]
pub struct ResultsPage {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub total: u64,
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
                    .thread_stack_size(QUERY_STACK_BYTES)
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
    limits: QueryLimits,
    runtime: QueryRuntime,
    /// Queries queued or running in this process, by ID.
    running: Mutex<HashMap<String, RunningQuery>>,
}

/// A query queued or running in this process.
struct RunningQuery {
    account: AccountId,
    task: tokio::task::AbortHandle,
    /// Ends work that runs inside one poll, which aborting the task cannot reach.
    stop: StopSignal,
}

impl QueryService {
    /// `timeout` is the default; the limits' environment variables override it and the rest
    /// ([`QueryLimits::from_env`]).
    pub fn new(
        store: Arc<dyn ControlStore>,
        engine: Arc<QueryEngine>,
        results_dir: PathBuf,
        timeout: Duration,
    ) -> Result<Self, LakeError> {
        let limits =
            QueryLimits::from_lookup(|name| std::env::var(name).ok(), QueryLimits { timeout, ..Default::default() })
                .map_err(|error| LakeError::Limits(error.to_string()))?;
        Self::with_limits(store, engine, results_dir, limits)
    }

    pub fn with_limits(
        store: Arc<dyn ControlStore>,
        engine: Arc<QueryEngine>,
        results_dir: PathBuf,
        limits: QueryLimits,
    ) -> Result<Self, LakeError> {
        std::fs::create_dir_all(&results_dir)
            .map_err(|source| LakeError::Io { path: results_dir.display().to_string(), source })?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        tracing::info!(?limits, "Lake query limits");
        Ok(Self {
            store,
            engine,
            results_dir,
            limits,
            runtime: QueryRuntime::start(threads),
            running: Mutex::new(HashMap::new()),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningQuery>> {
        self.running.lock().expect("running queries lock")
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Rows as JSON lines (the first line holds the column names) ...
    fn rows_path(&self, id: &str) -> PathBuf {
        self.results_dir.join(format!("{id}.rows"))
    }

    /// ... and where each row starts (little-endian u64s, one per row, then the end), so a
    /// page is read without reading the rows before it.
    fn index_path(&self, id: &str) -> PathBuf {
        self.results_dir.join(format!("{id}.index"))
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
        // Bridging and planning recurse over the statement: they run on the query threads,
        // whose stacks fit any statement within the depth limit.
        let (engine, limits, statement_text, stores) =
            (self.engine.clone(), self.limits.clone(), statement.to_string(), stores.to_vec());
        let planning = self.runtime.handle.spawn(async move {
            let find = |name: &str| {
                stores.iter().find(|s| s.id.eq_ignore_ascii_case(name) || s.arn().eq_ignore_ascii_case(name))
            };
            let bridged =
                bridge(&statement_text, |name| find(name).map(|s| s.id.clone())).map_err(|error| match error {
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
            let planned = engine.plan_limited(&bridged, &tables, &limits).await.map_err(|error| {
                StartQueryError::InvalidStatement(format!(
                    "Query statement is not valid: {}",
                    describe(&error, &limits)
                ))
            })?;
            Ok((bridged.store_ids, planned))
        });
        let (store_ids, planned) = planning.await.map_err(|error| {
            tracing::error!(%error, "planning a query failed");
            StartQueryError::InvalidStatement("Query statement could not be planned.".into())
        })??;

        let query = Query {
            id: uuid::Uuid::new_v4().to_string(),
            account: account.clone(),
            region: region.clone(),
            statement: statement.to_string(),
            store_ids,
            status: QueryStatus::Queued,
            created_ms: Utc::now().timestamp_millis(),
            delivery_s3_uri,
            delivery_status: None,
            error_message: None,
            statistics: QueryStatistics::default(),
        };
        let mut running = self.running();
        if running.values().filter(|query| &query.account == account).count() >= MAX_CONCURRENT_QUERIES {
            return Err(StartQueryError::TooManyQueries);
        }
        self.save(&query)?;
        let this = self.clone();
        let mut task_query = query.clone();
        let stop = StopSignal::new(std::time::Instant::now() + self.limits.timeout);
        let planned = planned.stopped_by(stop.clone());
        let task_stop = stop.clone();
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
            // On timeout the execution is dropped, and with it every partition's stream.
            let outcome = tokio::time::timeout(this.limits.timeout, this.engine.execute(planned)).await;
            this.finish(task_query, outcome, &task_stop);
        });
        running.insert(query.id.clone(), RunningQuery { account: account.clone(), task: task.abort_handle(), stop });
        Ok(query)
    }

    fn finish(
        &self,
        mut query: Query,
        outcome: Result<Result<QueryOutput, LakeError>, tokio::time::error::Elapsed>,
        stop: &StopSignal,
    ) {
        let mut running = self.running();
        if running.remove(&query.id).is_none() {
            return; // cancelled meanwhile: the cancellation is the final word
        }
        // The stop check ends a query whose time ran out inside one poll, before the timer fires.
        let timed_out = match &outcome {
            Ok(Err(_)) => stop.timed_out(),
            Ok(Ok(_)) => false,
            Err(_) => true,
        };
        match outcome {
            Ok(Ok(output)) if !timed_out => match self.write_results(&query.id, &output) {
                Ok(()) => {
                    query.status = QueryStatus::Finished;
                    query.statistics = output.statistics;
                }
                Err(error) => {
                    query.status = QueryStatus::Failed;
                    query.error_message = Some(format!("The results could not be stored: {error}"));
                }
            },
            Ok(Err(error)) if !timed_out => {
                query.status = QueryStatus::Failed;
                query.error_message = Some(match &error {
                    LakeError::DataFusion(inner) => describe(inner, &self.limits),
                    LakeError::ResultsTooLarge(message) => message.clone(),
                    other => {
                        tracing::warn!(%other, query = query.id, "query failed");
                        "The query failed inside OpenTrail; see the server log.".to_string()
                    }
                });
            }
            _ => {
                query.status = QueryStatus::TimedOut;
                query.error_message =
                    Some(format!("The query ran longer than {} seconds, the limit.", self.limits.timeout.as_secs()));
            }
        }
        if let Err(error) = self.save(&query) {
            tracing::error!(%error, query = query.id, "cannot record a finished query");
        }
    }

    fn write_results(&self, id: &str, output: &QueryOutput) -> Result<(), LakeError> {
        let (rows_path, index_path) = (self.rows_path(id), self.index_path(id));
        let write = |path: &Path, fill: &dyn Fn(&mut BufWriter<std::fs::File>) -> std::io::Result<()>| {
            let temporary = path.with_extension("tmp");
            let io = |source| LakeError::Io { path: path.display().to_string(), source };
            let mut file = BufWriter::new(std::fs::File::create(&temporary).map_err(io)?);
            fill(&mut file).map_err(io)?;
            file.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
            std::fs::rename(&temporary, path).map_err(io)
        };
        let mut lines = Vec::with_capacity(output.rows.len() + 1);
        lines.push(serde_json::to_vec(&output.columns)?);
        for row in &output.rows {
            lines.push(serde_json::to_vec(row)?);
        }
        write(&rows_path, &|file| {
            for line in &lines {
                file.write_all(line)?;
                file.write_all(b"\n")?;
            }
            Ok(())
        })?;
        // The index goes last: a rows file without one was never finished.
        write(&index_path, &|file| {
            let mut offset = (lines[0].len() + 1) as u64;
            for line in &lines[1..] {
                file.write_all(&offset.to_le_bytes())?;
                offset += (line.len() + 1) as u64;
            }
            file.write_all(&offset.to_le_bytes())
        })
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
        let Some(entry) = running.remove(id) else { return Ok(None) };
        if &entry.account != account {
            running.insert(id.to_string(), entry);
            return Ok(None);
        }
        entry.stop.raise();
        entry.task.abort();
        drop(running);
        let Some(document) = self.store.query(account, id)? else { return Ok(None) };
        let mut query: Query = serde_json::from_str(&document)?;
        query.status = QueryStatus::Cancelled;
        self.save(&query)?;
        Ok(Some(query))
    }

    /// The stored rows of a finished query, all of them (for delivery to a bucket).
    pub fn results(&self, id: &str) -> Result<Option<QueryResults>, LakeError> {
        Ok(self.results_page(id, 0, usize::MAX)?.map(|page| QueryResults { columns: page.columns, rows: page.rows }))
    }

    /// `limit` rows from row `offset` of a finished query, reading only those rows.
    pub fn results_page(&self, id: &str, offset: u64, limit: usize) -> Result<Option<ResultsPage>, LakeError> {
        let (rows_path, index_path) = (self.rows_path(id), self.index_path(id));
        fn io(path: &Path) -> impl Fn(std::io::Error) -> LakeError + '_ {
            move |source| LakeError::Io { path: path.display().to_string(), source }
        }
        let mut index = match std::fs::File::open(&index_path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io(&index_path)(source)),
        };
        let total = index.metadata().map_err(io(&index_path))?.len() / 8 - 1;
        let mut read_offset = |row: u64| -> Result<u64, LakeError> {
            let mut bytes = [0u8; 8];
            index.seek(SeekFrom::Start(row * 8)).map_err(io(&index_path))?;
            index.read_exact(&mut bytes).map_err(io(&index_path))?;
            Ok(u64::from_le_bytes(bytes))
        };
        let first = offset.min(total);
        let last = first.saturating_add(limit as u64).min(total);
        let (start, end) = (read_offset(first)?, read_offset(last)?);
        let mut rows_file = BufReader::new(std::fs::File::open(&rows_path).map_err(io(&rows_path))?);
        let mut header = Vec::new();
        rows_file.read_until(b'\n', &mut header).map_err(io(&rows_path))?;
        let columns: Vec<String> = serde_json::from_slice(&header)?;
        rows_file.seek(SeekFrom::Start(start)).map_err(io(&rows_path))?;
        let mut rows = Vec::with_capacity((last - first) as usize);
        let mut chunk = (&mut rows_file).take(end - start);
        let mut line = Vec::new();
        while chunk.read_until(b'\n', &mut line).map_err(io(&rows_path))? > 0 {
            rows.push(serde_json::from_slice(&line)?);
            line.clear();
        }
        Ok(Some(ResultsPage { columns, rows, total }))
    }

    /// Forgets queries and results older than `before_ms`.
    pub fn expire(&self, before_ms: i64) -> Result<usize, LakeError> {
        let expired = self.store.expire_queries(before_ms)?;
        for id in &expired {
            let _ = std::fs::remove_file(self.index_path(id));
            let _ = std::fs::remove_file(self.rows_path(id));
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

/// What went wrong, in CloudTrail Lake's terms: the innermost cause without DataFusion's
/// prefixes and contexts (`type_coercion`, `Optimizer rule ... failed`), and the memory limit
/// by name when the pool ran out.
pub fn describe(error: &datafusion::error::DataFusionError, limits: &QueryLimits) -> String {
    use datafusion::error::DataFusionError;
    let root = error.find_root();
    if matches!(root, DataFusionError::ResourcesExhausted(_)) {
        return limits.memory_message();
    }
    if let DataFusionError::Internal(message) = root {
        tracing::warn!(message, "query engine internal error");
        return "The query could not be run (an internal error of the query engine).".into();
    }
    let text = root.to_string();
    let mut text = text.as_str();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "Execution error: ",
        "Arrow error: ",
        "Invalid argument error: ",
        "Compute error: ",
        "Cast error: ",
        "This feature is not implemented: ",
        "SQL error: ",
    ] {
        text = text.strip_prefix(prefix).unwrap_or(text);
    }
    text = text.strip_prefix("Internal error: ").unwrap_or(text);
    let first = text.lines().find(|line| !line.trim().is_empty()).unwrap_or(text).trim();
    // "Function 'sum' failed to match any signature, errors: ... but received String ...":
    // the function and the type it was given are what the user needs.
    if let Some((head, rest)) = first.split_once(" failed to match any signature") {
        let received = rest.split_once("but received ").map(|(_, r)| r.split([' ', ',', '(']).next().unwrap_or(r));
        return match received {
            Some(kind) => format!("{head} cannot be applied to a value of type {kind}."),
            None => format!("{head} cannot be applied to arguments of these types."),
        };
    }
    first.to_string()
}
