//! Running an import: on the server as a task of its own, or from the command line into a
//! data directory (`opentrail import`).

use chrono::Utc;
use opentrail_control::{ControlStore, LakeChange, LakeDocument, LakeKind, StoreError};

use super::imports::RunningImport;
use super::*;

/// Saves an import's progress with the account's other Lake state, retrying on conflict, and
/// answers whether it was stopped meanwhile.
pub(super) struct ImportTracker {
    store: Arc<dyn ControlStore>,
    account: opentrail_model::AccountId,
    id: String,
}

impl ImportTracker {
    pub(super) fn load(&self) -> Result<Option<(i64, Import)>, LakeError> {
        let lake = self.store.load_lake(&self.account)?;
        let found = lake.documents.iter().find(|d| d.kind == LakeKind::Import && d.id == self.id);
        Ok(match found {
            Some(document) => Some((lake.version, serde_json::from_str(&document.document)?)),
            None => None,
        })
    }

    /// Stores `import` unless the stored one was stopped; returns the stored status.
    pub(super) fn save(&self, import: &Import) -> Result<ImportStatus, LakeError> {
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

/// Runs `work` on a blocking thread (the control store is SQLite: every call may wait on disk).
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, LakeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| LakeError::Io { path: "import".into(), source: std::io::Error::other(error) })
}

/// Runs an import to its end as a task of its own. Its store reads and writes run on blocking
/// threads; `run_import` parses on blocking threads too. The progress saved after each batch is
/// one short SQLite transaction, made where the import's task runs (the observer is not async).
pub(super) fn spawn_import(
    store: Arc<dyn ControlStore>,
    tables: Arc<ParquetLake>,
    source: Arc<dyn ImportSource>,
    import: Import,
    retention: u32,
) {
    let running_here = RunningImport::register(&import.id);
    tokio::spawn(async move {
        let _running_here = running_here;
        let tracker = Arc::new(ImportTracker { store, account: import.account.clone(), id: import.id.clone() });
        let mut running = import.clone();
        running.status = ImportStatus::InProgress;
        let (saver, first) = (tracker.clone(), running.clone());
        if let Err(error) = off_runtime(move || saver.save(&first)).await.and_then(|saved| saved) {
            tracing::error!(%error, import = running.id, "cannot start the import");
            return;
        }
        let outcome = run_import(&tables, source.as_ref(), running.clone(), retention, tracker.as_ref()).await;
        let mut finished = match outcome {
            Ok(mut done) => {
                done.status = ImportStatus::Completed;
                done
            }
            Err(error) => {
                tracing::error!(%error, import = running.id, "import failed");
                let loader = tracker.clone();
                let stored = off_runtime(move || loader.load()).await.ok().and_then(Result::ok).flatten();
                let mut failed = stored.map_or(running, |(_, stored)| stored);
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
        finished.updated_ms = Utc::now().timestamp_millis();
        let id = finished.id.clone();
        if let Err(error) = off_runtime(move || tracker.save(&finished)).await.and_then(|saved| saved) {
            tracing::error!(%error, import = id, "cannot record the import's end");
        }
    });
}

/// Reports the progress of an import run from the command line, and saves it.
pub(super) struct LocalImport<'a> {
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
    let tables = Arc::new(crate::open::lake_tables(data_dir, &destinations, options.lake_bucket.as_ref())?);
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
pub(super) struct LocalBucketSource {
    pub(super) buckets: Arc<opentrail_buckets::LocalBuckets>,
    pub(super) bucket: String,
    pub(super) prefix: String,
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
pub(super) fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    opentrail_buckets::valid_bucket_name(bucket).then(|| (bucket.to_string(), prefix.to_string()))
}
