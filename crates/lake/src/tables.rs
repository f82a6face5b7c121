//! Event data stores as tables of Parquet files on an object store, one Hive-style folder per
//! day: `<store id>/eventdate=YYYY-MM-DD/<file>.parquet`. DuckDB, Trino, Spark or Athena read
//! the same folders (`read_parquet('<root>/<id>/*/*.parquet', hive_partitioning = true)`).
//!
//! A file's name says where its rows came from, and that is the whole manifest:
//! - `j-<from>-<to>.parquet`: the journal consumer's rows for journal positions `[from, to)`;
//! - `c-<from>-<to>.parquet`: a compaction of the `j-`/`c-` files inside `[from, to)`;
//! - `i-<import id>-<sequence>.parquet`: one batch of an import.
//!
//! Files are written whole under a deterministic name (a retry rewrites the same bytes under the
//! same name) and a compaction deletes its inputs only after its output is durable. A reader
//! that finds both a compaction and its inputs (a crash in between) reads the compaction only,
//! so no row is ever counted twice and none is lost.
//!
//! A query lists a store's files once and reads them for as long as it runs, so a file that
//! leaves a table (a compaction's input, a day past retention, a purged store) is first
//! *retired*: hidden from listings at once, deleted only when no query that began before it
//! was retired still runs (see [`ReadLease`]). A crash forgets the retirements; what they held
//! is found again by the next compaction (superseded files) or retention pass (expired days).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::compute::{SortOptions, concat_batches, sort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DataFusionResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path as ObjectPath;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::TryStreamExt;

use crate::LakeError;
use crate::pruning::{DayRange, day_range};

/// The URL under which queries find the lake's object store.
pub const LAKE_URL: &str = "opentrail-lake://lake/";
/// Rows per Parquet row group: small enough that time-sorted groups prune well.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// zstd level of the `eventjson` column (3 elsewhere).
const EVENT_JSON_ZSTD_LEVEL: i32 = 9;

/// One Parquet file of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    pub path: String,
    pub day: String,
    pub size: u64,
}

/// Where a file's rows came from, read back from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Journal { from: u64, to: u64, compacted: bool },
    Import,
}

fn origin(file_name: &str) -> Option<Origin> {
    let stem = file_name.strip_suffix(".parquet")?;
    let (kind, rest) = stem.split_once('-')?;
    match kind {
        "j" | "c" => {
            let (from, to) = rest.split_once('-')?;
            Some(Origin::Journal { from: from.parse().ok()?, to: to.parse().ok()?, compacted: kind == "c" })
        }
        "i" => Some(Origin::Import),
        _ => None,
    }
}

pub fn journal_file_name(from: u64, to: u64) -> String {
    format!("j-{from:020}-{to:020}.parquet")
}

fn compacted_file_name(from: u64, to: u64) -> String {
    format!("c-{from:020}-{to:020}.parquet")
}

pub fn import_file_name(import_id: &str, sequence: u64) -> String {
    format!("i-{import_id}-{sequence:08}.parquet")
}

/// Whether journal range `inner` is covered by a different file's range `outer`.
fn superseded_by(inner: Origin, outer: Origin) -> bool {
    match (inner, outer) {
        (
            Origin::Journal { from: a, to: b, compacted: inner_compacted },
            Origin::Journal { from: c, to: d, compacted: true },
        ) => c <= a && b <= d && ((c, d) != (a, b) || !inner_compacted),
        _ => false,
    }
}

/// The seam for lake tables: Hive-partitioned Parquet now, a table format such as Delta Lake
/// later.
#[async_trait]
pub trait LakeTables: Send + Sync + 'static {
    /// Writes `batch` as the file `name` of `store_id`'s day `day`, durably, replacing a file of
    /// the same name (a retry writes the same rows). Returns the file's size.
    async fn write(&self, store_id: &str, day: &str, name: &str, batch: &RecordBatch) -> Result<u64, LakeError>;
    /// The live files of a store within `days`, superseded ones left out.
    async fn files(&self, store_id: &str, days: &DayRange) -> Result<Vec<LakeFile>, LakeError>;
    /// Merges a day's journal files into one when there are at least `min_files`.
    async fn compact(&self, store_id: &str, day: &str, min_files: usize) -> Result<bool, LakeError>;
    /// Deletes every file of the days before `first_kept_day`; returns how many days went.
    async fn drop_days_before(&self, store_id: &str, first_kept_day: &str) -> Result<usize, LakeError>;
    /// Deletes all of a store's files.
    async fn drop_store(&self, store_id: &str) -> Result<(), LakeError>;
    /// A DataFusion table over the store.
    fn table(self: Arc<Self>, store_id: &str, schema: SchemaRef) -> Arc<dyn TableProvider>;
    /// The object store the tables live on, to register with a query engine under [`LAKE_URL`].
    fn object_store(&self) -> Arc<dyn ObjectStore>;
}

/// Hive-partitioned Parquet tables on an object store.
#[derive(Debug)]
pub struct ParquetLake {
    store: Arc<dyn ObjectStore>,
    /// For a local store: its root, to fsync what was written (object_store does not).
    local_root: Option<PathBuf>,
    retired: Mutex<Retirements>,
}

/// Files that left their table, waiting for the queries that may still read them.
#[derive(Debug, Default)]
struct Retirements {
    /// Advanced by every retirement; a lease remembers the value it began at.
    epoch: u64,
    /// Leases held, by the epoch each began at, and how many began then.
    readers: BTreeMap<u64, usize>,
    /// Retired paths and the epoch each was retired at.
    pending: BTreeMap<String, u64>,
}

impl Retirements {
    /// Paths no held lease may still read: a lease that began at epoch `e` may have listed
    /// anything retired at an epoch `>= e`.
    fn deletable(&self) -> impl Iterator<Item = &String> {
        let oldest_reader = self.readers.keys().next().copied();
        self.pending
            .iter()
            .filter(move |(_, retired_at)| oldest_reader.is_none_or(|oldest| **retired_at < oldest))
            .map(|(path, _)| path)
    }
}

/// Held by a query while it lists and reads a lake's files: nothing it may have listed is
/// deleted until it is dropped.
#[must_use = "a lease protects reads only while it is held"]
pub struct ReadLease {
    lake: Arc<ParquetLake>,
    epoch: u64,
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        let sweep_now = {
            let mut retired = self.lake.retired.lock().expect("retirements lock");
            let count = retired.readers.get_mut(&self.epoch).expect("a lease is counted while held");
            *count -= 1;
            if *count == 0 {
                retired.readers.remove(&self.epoch);
            }
            retired.deletable().next().is_some()
        };
        if sweep_now && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let lake = self.lake.clone();
            runtime.spawn(async move {
                if let Err(error) = lake.sweep().await {
                    tracing::warn!(%error, "retired Lake files are kept for the next sweep");
                }
            });
        }
    }
}

impl ParquetLake {
    /// Tables in a local folder.
    pub fn local(root: PathBuf) -> Result<Self, LakeError> {
        std::fs::create_dir_all(&root).map_err(|source| LakeError::Io { path: root.display().to_string(), source })?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self { store: Arc::new(store), local_root: Some(root), retired: Mutex::default() })
    }

    /// Tables on any object store (an S3-compatible bucket).
    pub fn remote(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, local_root: None, retired: Mutex::default() }
    }

    /// Taken before a query plans its scans and held until its last batch is read.
    pub fn read_lease(self: &Arc<Self>) -> ReadLease {
        let mut retired = self.retired.lock().expect("retirements lock");
        let epoch = retired.epoch;
        *retired.readers.entry(epoch).or_default() += 1;
        ReadLease { lake: self.clone(), epoch }
    }

    /// Takes `paths` out of their tables now and deletes them once no lease needs them.
    async fn retire(&self, paths: impl IntoIterator<Item = String>) -> Result<(), LakeError> {
        {
            let mut retired = self.retired.lock().expect("retirements lock");
            let epoch = retired.epoch;
            for path in paths {
                retired.pending.entry(path).or_insert(epoch);
            }
            retired.epoch += 1;
        }
        self.sweep().await
    }

    /// Deletes the retired files no lease needs. A path leaves `pending` (and so may be listed
    /// again) only once it is gone; a failed delete is tried again at the next sweep.
    async fn sweep(&self) -> Result<(), LakeError> {
        let deletable: Vec<String> = self.retired.lock().expect("retirements lock").deletable().cloned().collect();
        let mut first_error = None;
        for path in deletable {
            match self.store.delete(&ObjectPath::from(path.as_str())).await {
                Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => {
                    self.retired.lock().expect("retirements lock").pending.remove(&path);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), |error| Err(error.into()))
    }

    /// `files` less the retired ones.
    fn unretired(&self, mut files: Vec<LakeFile>) -> Vec<LakeFile> {
        let retired = self.retired.lock().expect("retirements lock");
        files.retain(|file| !retired.pending.contains_key(&file.path));
        files
    }

    fn sync_local(&self, path: &str) -> Result<(), LakeError> {
        let Some(root) = &self.local_root else { return Ok(()) };
        let file = root.join(path);
        let io = |source| LakeError::Io { path: file.display().to_string(), source };
        std::fs::File::open(&file).and_then(|f| f.sync_all()).map_err(io)?;
        // The rename that made the file visible is durable once its folder is synced.
        if let Some(parent) = file.parent() {
            std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LakeFile>, LakeError> {
        let prefix = ObjectPath::from(prefix);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let path = meta.location.to_string();
                let day = path.split('/').find_map(|part| part.strip_prefix("eventdate="))?.to_string();
                path.ends_with(".parquet").then_some(LakeFile { path, day, size: meta.size })
            })
            .collect())
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Leaves out files whose rows a compaction also holds.
fn live(files: Vec<LakeFile>) -> Vec<LakeFile> {
    split_superseded(files).0
}

/// Splits a listing into its live files and the journal files a compaction superseded (files
/// of no known origin are in neither).
fn split_superseded(files: Vec<LakeFile>) -> (Vec<LakeFile>, Vec<LakeFile>) {
    let origins: Vec<Option<Origin>> = files.iter().map(|f| origin(file_name(&f.path))).collect();
    let (mut live, mut superseded) = (Vec::new(), Vec::new());
    for (index, file) in files.into_iter().enumerate() {
        let Some(inner) = origins[index] else { continue };
        let covered = origins
            .iter()
            .enumerate()
            .any(|(other, outer)| other != index && outer.is_some_and(|o| superseded_by(inner, o)));
        if covered { superseded.push(file) } else { live.push(file) }
    }
    (live, superseded)
}

/// Sorts a batch by `eventtime` so each row group covers a narrow time span.
fn sorted_by_time(batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
    let Some(time) = batch.column_by_name("eventtime") else { return Ok(batch.clone()) };
    let indices = sort_to_indices(time, Some(SortOptions { descending: false, nulls_first: true }), None)?;
    Ok(take_record_batch(batch, &indices)?)
}

fn encode_parquet(batch: &RecordBatch) -> Result<Vec<u8>, LakeError> {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    // Values unique to each event gain nothing from a dictionary; the record's own JSON, the
    // bulk of a file, compresses better in larger pages at a higher level.
    for unique in ["eventjson", "eventjsonchecksum", "eventid", "requestid"] {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(unique), false);
    }
    let event_json_level = ZstdLevel::try_new(EVENT_JSON_ZSTD_LEVEL)?;
    let properties = properties
        .set_column_compression(ColumnPath::from("eventjson"), Compression::ZSTD(event_json_level))
        .set_column_data_page_size_limit(ColumnPath::from("eventjson"), 8 * 1024 * 1024)
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))?;
    writer.write(&sorted_by_time(batch)?)?;
    writer.close()?;
    Ok(bytes)
}

#[async_trait]
impl LakeTables for ParquetLake {
    async fn write(&self, store_id: &str, day: &str, name: &str, batch: &RecordBatch) -> Result<u64, LakeError> {
        let path = format!("{store_id}/eventdate={day}/{name}");
        let bytes = encode_parquet(batch)?;
        let size = bytes.len() as u64;
        self.store.put(&ObjectPath::from(path.as_str()), PutPayload::from(bytes)).await?;
        self.sync_local(&path)?;
        Ok(size)
    }

    async fn files(&self, store_id: &str, days: &DayRange) -> Result<Vec<LakeFile>, LakeError> {
        let files = self.list(&format!("{store_id}/")).await?;
        let mut files = live(files);
        files.retain(|file| days.contains(&file.day));
        Ok(self.unretired(files))
    }

    async fn compact(&self, store_id: &str, day: &str, min_files: usize) -> Result<bool, LakeError> {
        let files = self.list(&format!("{store_id}/eventdate={day}/")).await?;
        let (live_files, leftovers) = split_superseded(files);
        // Inputs of an earlier compaction that a crash left behind.
        if !leftovers.is_empty() {
            self.retire(leftovers.into_iter().map(|file| file.path)).await?;
        }
        let journal_files: Vec<(LakeFile, u64, u64)> = self
            .unretired(live_files)
            .into_iter()
            .filter_map(|file| match origin(file_name(&file.path))? {
                Origin::Journal { from, to, .. } => Some((file, from, to)),
                Origin::Import => None,
            })
            .collect();
        if journal_files.len() < min_files.max(2) {
            return Ok(false);
        }
        let from = journal_files.iter().map(|(_, from, _)| *from).min().unwrap_or_default();
        let to = journal_files.iter().map(|(_, _, to)| *to).max().unwrap_or_default();
        let mut batches = Vec::new();
        let mut schema = None;
        for (file, _, _) in &journal_files {
            let bytes = self.store.get(&ObjectPath::from(file.path.as_str())).await?.bytes().await?;
            let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 8192)?;
            for batch in reader {
                let batch = batch?;
                schema.get_or_insert_with(|| batch.schema());
                batches.push(batch);
            }
        }
        let Some(schema) = schema else { return Ok(false) };
        let merged = concat_batches(&schema, &batches)?;
        self.write(store_id, day, &compacted_file_name(from, to), &merged).await?;
        self.retire(journal_files.into_iter().map(|(file, _, _)| file.path)).await?;
        Ok(true)
    }

    async fn drop_days_before(&self, store_id: &str, first_kept_day: &str) -> Result<usize, LakeError> {
        let mut expired = self.unretired(self.list(&format!("{store_id}/")).await?);
        expired.retain(|f| f.day.as_str() < first_kept_day);
        let days: HashSet<&str> = expired.iter().map(|f| f.day.as_str()).collect();
        let dropped = days.len();
        self.retire(expired.into_iter().map(|f| f.path)).await?;
        Ok(dropped)
    }

    async fn drop_store(&self, store_id: &str) -> Result<(), LakeError> {
        let prefix = ObjectPath::from(format!("{store_id}/"));
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        self.retire(objects.into_iter().map(|object| object.location.to_string())).await
    }

    fn table(self: Arc<Self>, store_id: &str, schema: SchemaRef) -> Arc<dyn TableProvider> {
        Arc::new(StoreTable { lake: self, store_id: store_id.to_string(), schema })
    }

    fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }
}

/// One event data store as a DataFusion table. Its scan reads only the day folders that the
/// query's `eventtime` predicates allow, then lets Parquet statistics prune row groups.
#[derive(Debug)]
pub struct StoreTable {
    lake: Arc<ParquetLake>,
    store_id: String,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DataFusionResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        let days = day_range(filters);
        let files = self
            .lake
            .files(&self.store_id, &days)
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        if files.is_empty() {
            let projected = match projection {
                Some(indices) => Arc::new(self.schema.project(indices)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        // The files are known: no listing (nor a HEAD per file) before the scan. Filters reach
        // the Parquet reader through the physical optimizer (row groups and pages pruned).
        let format = ParquetFormat::default();
        let source = format.file_source(TableSchema::from(self.schema.clone()));
        let files = files.iter().map(|file| PartitionedFile::new(file.path.clone(), file.size)).collect();
        let groups = FileGroup::new(files).split_files(state.config().target_partitions());
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(LAKE_URL)?, source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> LakeFile {
        LakeFile { path: format!("s/eventdate=2026-01-01/{name}"), day: "2026-01-01".into(), size: 1 }
    }

    #[test]
    fn compactions_supersede_their_inputs_and_nothing_else() {
        let files = vec![
            file(&journal_file_name(0, 10)),
            file(&journal_file_name(10, 20)),
            file(&compacted_file_name(0, 20)),
            file(&journal_file_name(20, 30)),
            file(&import_file_name("abc", 1)),
            file("stray.parquet"),
        ];
        let names: Vec<String> = live(files).into_iter().map(|f| file_name(&f.path).to_string()).collect();
        assert_eq!(names, vec![compacted_file_name(0, 20), journal_file_name(20, 30), import_file_name("abc", 1)]);
    }

    #[test]
    fn a_larger_compaction_supersedes_a_smaller_one() {
        let files = vec![file(&compacted_file_name(0, 20)), file(&compacted_file_name(0, 40))];
        let names: Vec<String> = live(files).into_iter().map(|f| file_name(&f.path).to_string()).collect();
        assert_eq!(names, vec![compacted_file_name(0, 40)]);
    }

    fn batch() -> RecordBatch {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap()
    }

    async fn names(lake: &ParquetLake) -> Vec<String> {
        let files = lake.files("s", &DayRange::default()).await.unwrap();
        files.iter().map(|f| file_name(&f.path).to_string()).collect()
    }

    async fn gone(path: &std::path::Path) -> bool {
        for _ in 0..100 {
            if !path.exists() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn files_a_running_query_may_read_outlive_their_table_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Arc::new(ParquetLake::local(dir.path().to_path_buf()).unwrap());
        let day = "2026-01-01";
        for (from, to) in [(0, 10), (10, 20)] {
            lake.write("s", day, &journal_file_name(from, to), &batch()).await.unwrap();
        }
        lake.write("s", "2025-12-31", &journal_file_name(20, 30), &batch()).await.unwrap();
        let input = dir.path().join(format!("s/eventdate={day}/{}", journal_file_name(0, 10)));
        let expired = dir.path().join(format!("s/eventdate=2025-12-31/{}", journal_file_name(20, 30)));

        let query = lake.read_lease();
        assert!(lake.compact("s", day, 2).await.unwrap());
        assert_eq!(lake.drop_days_before("s", day).await.unwrap(), 1);
        // Listings at once show the tables as they now are...
        assert_eq!(names(&lake).await, vec![compacted_file_name(0, 20)]);
        // ...while what the query may have listed is still readable.
        assert!(input.exists() && expired.exists());

        // A query that began after the retirements does not hold them back.
        let later = lake.read_lease();
        drop(query);
        assert!(gone(&input).await, "a compaction's input outlived every query that could read it");
        assert!(gone(&expired).await, "an expired day outlived every query that could read it");
        drop(later);
        assert_eq!(names(&lake).await, vec![compacted_file_name(0, 20)]);
    }

    #[tokio::test]
    async fn a_compaction_finds_the_inputs_a_crash_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let lake = ParquetLake::local(dir.path().to_path_buf()).unwrap();
        let day = "2026-01-01";
        // As if a crash came between a compaction's output and the deletion of its inputs.
        for name in [journal_file_name(0, 10), journal_file_name(10, 20), compacted_file_name(0, 20)] {
            lake.write("s", day, &name, &batch()).await.unwrap();
        }
        lake.write("s", day, "stray.parquet", &batch()).await.unwrap();
        assert!(!lake.compact("s", day, 2).await.unwrap(), "one live journal file: nothing to merge");
        let folder = dir.path().join(format!("s/eventdate={day}"));
        let mut left: Vec<String> =
            std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, vec![compacted_file_name(0, 20), "stray.parquet".to_string()]);
    }
}
