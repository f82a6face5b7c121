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

use std::path::PathBuf;
use std::sync::Arc;

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
fn superseded(inner: Origin, outer: Origin) -> bool {
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
}

impl ParquetLake {
    /// Tables in a local folder.
    pub fn local(root: PathBuf) -> Result<Self, LakeError> {
        std::fs::create_dir_all(&root).map_err(|source| LakeError::Io { path: root.display().to_string(), source })?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self { store: Arc::new(store), local_root: Some(root) })
    }

    /// Tables on any object store (an S3-compatible bucket).
    pub fn remote(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, local_root: None }
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
    let origins: Vec<Option<Origin>> = files.iter().map(|f| origin(file_name(&f.path))).collect();
    files
        .into_iter()
        .enumerate()
        .filter(|(index, _)| {
            let Some(inner) = origins[*index] else { return false };
            !origins
                .iter()
                .enumerate()
                .any(|(other, outer)| other != *index && outer.is_some_and(|o| superseded(inner, o)))
        })
        .map(|(_, file)| file)
        .collect()
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
        Ok(live(files).into_iter().filter(|file| days.contains(&file.day)).collect())
    }

    async fn compact(&self, store_id: &str, day: &str, min_files: usize) -> Result<bool, LakeError> {
        let files = self.list(&format!("{store_id}/eventdate={day}/")).await?;
        let journal_files: Vec<(LakeFile, u64, u64)> = live(files)
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
        for (file, _, _) in &journal_files {
            self.store.delete(&ObjectPath::from(file.path.as_str())).await?;
        }
        Ok(true)
    }

    async fn drop_days_before(&self, store_id: &str, first_kept_day: &str) -> Result<usize, LakeError> {
        let files = self.list(&format!("{store_id}/")).await?;
        let mut days: Vec<&str> =
            files.iter().filter(|f| f.day.as_str() < first_kept_day).map(|f| f.day.as_str()).collect();
        days.dedup();
        for file in files.iter().filter(|f| f.day.as_str() < first_kept_day) {
            self.store.delete(&ObjectPath::from(file.path.as_str())).await?;
        }
        Ok(days.len())
    }

    async fn drop_store(&self, store_id: &str) -> Result<(), LakeError> {
        let prefix = ObjectPath::from(format!("{store_id}/"));
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        for object in objects {
            self.store.delete(&object.location).await?;
        }
        Ok(())
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
}
