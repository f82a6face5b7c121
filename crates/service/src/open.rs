//! The composition root: opening a data directory and building the parts that serve it.
//!
//! [`OpenTrail::open_with`] builds the whole service; [`EventLog::open`] only the journal and
//! the history index, for tools (`put-events`) that append records to a stopped server's data
//! directory and must not start the Lake's query runtime or touch the signing keys.

use std::path::Path;
use std::sync::Arc;

use opentrail_buckets::{BucketError, LocalBuckets};
use opentrail_control::{ControlStore, SqliteStore, StoreError};
use opentrail_delivery::{DeliveryWorker, Destinations, MasterKey, Notifier, SigningKeys};
use opentrail_history::{HistoryError, HistoryIndex};
use opentrail_insights::{InsightStore, InsightsConsumer};
use opentrail_journal::{Journal, JournalError, LocalJournal, LocalJournalOptions, Position};
use opentrail_lake::{LakeWriter, ParquetLake, QueryEngine, QueryService};
use opentrail_model::EventRecord;

use crate::config::{Credentials, LakeBucket, ServiceOptions};
use crate::delivery::DeliveryContext;
use crate::{OpenTrail, lake};

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
    #[error(transparent)]
    Insights(#[from] opentrail_insights::InsightsError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

/// The journal and the Event History index of a data directory.
pub struct EventLog {
    journal: Arc<dyn Journal>,
    history: Arc<HistoryIndex>,
}

impl EventLog {
    /// Opens `journal/` and `history.redb`, after making the data directory private.
    pub fn open(data_dir: &Path) -> Result<Self, OpenError> {
        // The data directory is the server user's alone: new files get 0600 from the umask, and
        // what an older version or another tool left readable is fixed now.
        crate::private_files::restrict_new_files();
        let fixed = crate::private_files::make_private(data_dir)
            .map_err(|source| OpenError::DataDir { path: data_dir.display().to_string(), source })?;
        if fixed > 0 {
            tracing::warn!(files = fixed, "made the data directory's files private to this user (0700/0600)");
        }
        let journal: Arc<dyn Journal> =
            Arc::new(LocalJournal::open(data_dir.join("journal"), LocalJournalOptions::from_env())?);
        let history = Arc::new(HistoryIndex::open(&data_dir.join("history.redb"), journal.clone())?);
        Ok(Self { journal, history })
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    pub fn history(&self) -> &Arc<HistoryIndex> {
        &self.history
    }

    /// Appends records durably; resolves once they are on disk.
    pub async fn append_records(&self, records: &[EventRecord]) -> Result<Vec<Position>, JournalError> {
        let encoded = records.iter().map(EventRecord::encode).collect();
        self.journal.append(encoded).await
    }
}

/// The lake's tables: the data directory's `lake/tables`, or a prefix of a configured remote
/// bucket.
pub(crate) fn lake_tables(
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

    /// Opens the data directory: `journal/`, `history.redb`, `control.sqlite`, `buckets/`,
    /// `lake/`, `insights.sqlite`.
    pub fn open_with(
        data_dir: &Path,
        credentials: Credentials,
        options: ServiceOptions,
    ) -> Result<Arc<Self>, OpenError> {
        let EventLog { journal, history } = EventLog::open(data_dir)?;
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
        let insight_store = Arc::new(InsightStore::open(&data_dir.join("insights.sqlite"))?);
        let insights = Arc::new(InsightsConsumer::new(
            journal.clone(),
            insight_store.clone(),
            Arc::new(crate::insights::ControlSelections { store: store.clone() }),
            options.insights.clone(),
            opentrail_insights::system_clock(),
        ));
        let consumers =
            Arc::new(crate::consumers::register(journal.clone(), &history, &worker, &lake_writer, &insights));
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
            insight_store,
            consumers,
            credentials,
        }))
    }
}
