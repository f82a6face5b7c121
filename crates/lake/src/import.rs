//! Imports: copying CloudTrail log files (a bucket of a trail, an organization trail, or a local
//! folder) into an event data store.
//!
//! Only log files are read: `.../CloudTrail/<region>/<yyyy>/<mm>/<dd>/<name>.json.gz` (or
//! `.json`); digests, Insights files and anything else are skipped, not failures. With a time
//! range, files are chosen by the date in their path before any is opened, then each record by
//! its `eventTime`. Files are imported in key order in batches, each batch one Parquet file
//! `i-<import id>-<sequence>` per day; the import's document records which files are done and
//! the next sequence only after the batch is durable, so a crash or a retry re-imports exactly
//! the unfinished files into the same file names.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::path::Path as ObjectPath;
use datafusion::object_store::{ObjectStore, ObjectStoreExt};
use flate2::read::MultiGzDecoder;
use futures::TryStreamExt;
use opentrail_model::lake::{Import, ImportFailure, StoreCategory};
use serde_json::{Map, Value};

use crate::LakeError;
use crate::schema::{batch, day_of, parse_time_ms, row};
use crate::tables::{LakeTables, ParquetLake, import_file_name};

/// Records per batch (one Parquet file per day of the batch).
const BATCH_RECORDS: usize = 200_000;

/// Where an import reads from: keys and their bytes.
#[async_trait]
pub trait ImportSource: Send + Sync {
    /// Every key under the source, sorted.
    async fn keys(&self) -> Result<Vec<String>, LakeError>;
    async fn read(&self, key: &str) -> Result<Vec<u8>, LakeError>;
    /// How a key is named in failures (`s3://bucket/key` or a path).
    fn location(&self, key: &str) -> String;
}

/// `s3://bucket/key` or `folder/key`, as failures name a file.
fn location(display: &str, key: &str) -> String {
    format!("{}/{key}", display.trim_end_matches('/'))
}

/// A folder on disk: a local bucket of the bucket store, or any folder of log files.
pub struct FolderSource {
    root: PathBuf,
    prefix: String,
    /// For failures: `s3://bucket` for a bucket, else the folder's path.
    display: String,
}

impl FolderSource {
    pub fn new(root: PathBuf, prefix: &str, display: String) -> Self {
        Self { root, prefix: prefix.trim_start_matches('/').to_string(), display }
    }
}

fn walk(root: &Path, folder: &Path, keys: &mut Vec<String>) -> Result<(), LakeError> {
    let io = |source| LakeError::Io { path: folder.display().to_string(), source };
    for entry in std::fs::read_dir(folder).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            walk(root, &path, keys)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            keys.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[async_trait]
impl ImportSource for FolderSource {
    async fn keys(&self) -> Result<Vec<String>, LakeError> {
        let mut keys = Vec::new();
        if self.root.is_dir() {
            walk(&self.root, &self.root, &mut keys)?;
        }
        keys.retain(|key| key.starts_with(&self.prefix));
        keys.sort();
        Ok(keys)
    }

    async fn read(&self, key: &str) -> Result<Vec<u8>, LakeError> {
        let path = self.root.join(key);
        std::fs::read(&path).map_err(|source| LakeError::Io { path: path.display().to_string(), source })
    }

    fn location(&self, key: &str) -> String {
        location(&self.display, key)
    }
}

/// A bucket on an S3-compatible endpoint (or any object store).
pub struct ObjectStoreSource {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// For failures: `s3://bucket`.
    display: String,
}

impl ObjectStoreSource {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, display: String) -> Self {
        Self { store, prefix: prefix.trim_start_matches('/').to_string(), display }
    }
}

#[async_trait]
impl ImportSource for ObjectStoreSource {
    async fn keys(&self) -> Result<Vec<String>, LakeError> {
        // Listing goes by whole path segments: list the prefix's folder, then match the rest.
        let folder = self.prefix.rsplit_once('/').map(|(folder, _)| folder).filter(|f| !f.is_empty());
        let mut keys: Vec<String> = self
            .store
            .list(folder.map(ObjectPath::from).as_ref())
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        keys.retain(|key| key.starts_with(&self.prefix));
        keys.sort();
        Ok(keys)
    }

    async fn read(&self, key: &str) -> Result<Vec<u8>, LakeError> {
        Ok(self.store.get(&ObjectPath::from(key)).await?.bytes().await?.to_vec())
    }

    fn location(&self, key: &str) -> String {
        location(&self.display, key)
    }
}

/// A CloudTrail log file's key, understood: its `<region>/<yyyy>/<mm>/<dd>` prefix and day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileKey {
    pub prefix: String,
    pub day: String,
}

/// Recognises log file keys (trail and organization trail layouts); `None` for anything else.
pub fn log_file_key(key: &str) -> Option<LogFileKey> {
    let parts: Vec<&str> = key.split('/').collect();
    let at = parts.iter().position(|part| *part == "CloudTrail")?;
    let [region, year, month, day, file] = parts.get(at + 1..)? else { return None };
    let numeric = |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_digit());
    let is_log = file.ends_with(".json.gz") || file.ends_with(".json");
    if region.is_empty() || !numeric(year, 4) || !numeric(month, 2) || !numeric(day, 2) || !is_log {
        return None;
    }
    let prefix = parts[..at + 5].join("/");
    Some(LogFileKey { prefix, day: format!("{year}-{month}-{day}") })
}

/// The records of a log file (`{"Records":[...]}`, gzipped or not).
pub fn parse_log_file(bytes: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    let mut text = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        MultiGzDecoder::new(bytes).read_to_end(&mut text).map_err(|e| format!("not a valid gzip file: {e}"))?;
    } else {
        text = bytes.to_vec();
    }
    let document: Value = serde_json::from_slice(&text).map_err(|e| format!("not a CloudTrail log file: {e}"))?;
    let Value::Object(mut document) = document else {
        return Err("not a CloudTrail log file: no Records array".into());
    };
    let Some(Value::Array(records)) = document.remove("Records") else {
        return Err("not a CloudTrail log file: no Records array".into());
    };
    Ok(records
        .into_iter()
        .filter_map(|record| match record {
            Value::Object(record) => Some(record),
            _ => None,
        })
        .collect())
}

/// What an import reports as it goes.
pub trait ImportObserver: Send + Sync {
    /// Called once the files to import are known.
    fn planned(&self, _files: u64) {}
    /// Called after each batch is durable, with the import as saved.
    fn progressed(&self, _import: &Import) -> Result<(), LakeError> {
        Ok(())
    }
    /// Whether the import should stop (StopImport).
    fn stopped(&self) -> bool {
        false
    }
}

/// Runs (or resumes) an import into `tables`, calling `observer` after every batch. Returns the
/// import with its final statistics; its status is left to the caller.
pub async fn run_import(
    tables: &Arc<ParquetLake>,
    source: &dyn ImportSource,
    mut import: Import,
    retention_days: u32,
    observer: &dyn ImportObserver,
) -> Result<Import, LakeError> {
    let first_day = import.start_event_ms.map(day_of);
    let last_day = import.end_event_ms.map(day_of);
    let in_days = |day: &str| {
        first_day.as_deref().is_none_or(|first| day >= first) && last_day.as_deref().is_none_or(|last| day <= last)
    };
    let keys = source.keys().await?;
    let files: Vec<(String, LogFileKey)> = keys
        .into_iter()
        .filter_map(|key| log_file_key(&key).map(|parsed| (key, parsed)))
        .filter(|(_, parsed)| in_days(&parsed.day))
        .collect();
    let mut prefixes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (key, parsed) in &files {
        let entry = prefixes.entry(parsed.prefix.as_str()).or_default();
        entry.0 += 1;
        if import.completed_files.binary_search(key).is_ok() {
            entry.1 += 1;
        }
    }
    import.statistics.prefixes_found = prefixes.len() as u64;
    observer.planned(files.len() as u64);
    let window = Window {
        from: import.start_event_ms.unwrap_or(i64::MIN),
        to: import.end_event_ms.unwrap_or(i64::MAX),
        oldest_kept: Utc::now().timestamp_millis() - i64::from(retention_days) * 86_400_000,
    };
    let pending: Vec<&String> =
        files.iter().map(|(key, _)| key).filter(|key| import.completed_files.binary_search(key).is_err()).collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut position = 0;
    while position < pending.len() {
        if observer.stopped() {
            break;
        }
        let mut by_day: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
        let mut batch_files = Vec::new();
        let mut records_in_batch = 0;
        let mut failures = Vec::new();
        while position < pending.len() && records_in_batch < BATCH_RECORDS {
            // A few files at a time: read together, then parsed on every core.
            let group = &pending[position..(position + 2 * threads).min(pending.len())];
            position += group.len();
            let contents = futures::future::join_all(group.iter().map(|key| source.read(key))).await;
            let inputs: Vec<(String, Result<Vec<u8>, String>)> = group
                .iter()
                .zip(contents)
                .map(|(key, content)| (source.location(key), content.map_err(|e| e.to_string())))
                .collect();
            // Parsing is CPU work that takes every core: off the async threads.
            let parsed_files = tokio::task::spawn_blocking(move || parse_files(inputs, &window, threads))
                .await
                .map_err(|error| LakeError::Io { path: "import".into(), source: std::io::Error::other(error) })?;
            for (key, parsed) in group.iter().zip(parsed_files) {
                let parsed = parsed?;
                batch_files.push((*key).clone());
                records_in_batch += parsed.events;
                failures.extend(parsed.failures);
                for (day, rows) in parsed.days {
                    by_day.entry(day).or_default().push(rows);
                }
            }
        }
        let name = import_file_name(&import.id, import.next_sequence);
        let mut events = 0;
        for (day, batches) in &by_day {
            let rows = concat_batches(&batches[0].schema(), batches)?;
            tables.write(&import.store_id, day, &name, &rows).await?;
            events += rows.num_rows() as u64;
        }
        import.next_sequence += 1;
        for key in batch_files {
            if let Err(at) = import.completed_files.binary_search(&key) {
                import.completed_files.insert(at, key);
            }
        }
        import.statistics.files_completed = import.completed_files.len() as u64;
        import.statistics.events_completed += events;
        import.statistics.failed_entries += failures.len() as u64;
        import.failures.extend(failures);
        import.statistics.prefixes_completed = prefixes_completed(&files, &import.completed_files);
        import.updated_ms = Utc::now().timestamp_millis();
        observer.progressed(&import)?;
    }
    import.statistics.prefixes_completed = prefixes_completed(&files, &import.completed_files);
    Ok(import)
}

/// Which records an import keeps (epoch milliseconds).
#[derive(Clone, Copy)]
struct Window {
    from: i64,
    to: i64,
    oldest_kept: i64,
}

/// What one log file gave: its records in the window as a batch per day, and what failed.
struct ParsedFile {
    days: Vec<(String, RecordBatch)>,
    events: usize,
    failures: Vec<ImportFailure>,
}

fn failure(location: &str, error_type: &str, message: String) -> ImportFailure {
    ImportFailure {
        location: location.to_string(),
        error_type: error_type.into(),
        error_message: message,
        last_updated_ms: Utc::now().timestamp_millis(),
    }
}

fn parse_file(location: &str, content: Result<Vec<u8>, String>, window: &Window) -> Result<ParsedFile, LakeError> {
    let mut parsed = ParsedFile { days: Vec::new(), events: 0, failures: Vec::new() };
    let records = match content.and_then(|bytes| parse_log_file(&bytes)) {
        Ok(records) => records,
        Err(message) => {
            parsed.failures.push(failure(location, "InvalidLogFile", message));
            return Ok(parsed);
        }
    };
    let mut by_day: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for record in records {
        let Some(time) = record.get("eventTime").and_then(Value::as_str).and_then(parse_time_ms) else {
            parsed.failures.push(failure(location, "InvalidRecord", "a record has no valid eventTime".into()));
            continue;
        };
        if time < window.from || time > window.to || time < window.oldest_kept {
            continue;
        }
        parsed.events += 1;
        by_day.entry(day_of(time)).or_default().push(row(&record, StoreCategory::CloudTrailEvents));
    }
    for (day, rows) in by_day {
        parsed.days.push((day, batch(&rows, StoreCategory::CloudTrailEvents)?));
    }
    Ok(parsed)
}

/// Parses log files (location, bytes) on `threads` threads; results in the files' order.
fn parse_files(
    inputs: Vec<(String, Result<Vec<u8>, String>)>,
    window: &Window,
    threads: usize,
) -> Vec<Result<ParsedFile, LakeError>> {
    let mut shares: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, input) in inputs.into_iter().enumerate() {
        shares[index % threads].push((index, input));
    }
    let mut results: Vec<(usize, Result<ParsedFile, LakeError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .map(|(index, (location, content))| (index, parse_file(&location, content, window)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("a parser thread panicked")).collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

fn prefixes_completed(files: &[(String, LogFileKey)], completed: &[String]) -> u64 {
    let mut prefixes: BTreeMap<&str, bool> = BTreeMap::new();
    for (key, parsed) in files {
        let done = completed.binary_search(key).is_ok();
        let entry = prefixes.entry(parsed.prefix.as_str()).or_insert(true);
        *entry &= done;
    }
    prefixes.values().filter(|done| **done).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_keys_of_trails_and_organization_trails() {
        let key = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/03/01/111122223333_CloudTrail_us-east-1_20240301T0000Z_abc.json.gz";
        assert_eq!(
            log_file_key(key),
            Some(LogFileKey {
                prefix: "AWSLogs/111122223333/CloudTrail/us-east-1/2024/03/01".into(),
                day: "2024-03-01".into()
            })
        );
        let org = "p/AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2024/03/02/x.json.gz";
        assert_eq!(log_file_key(org).unwrap().day, "2024-03-02");
        assert_eq!(log_file_key("AWSLogs/1/CloudTrail-Digest/us-east-1/2024/03/01/d.json.gz"), None);
        assert_eq!(log_file_key("AWSLogs/1/CloudTrail-Insight/us-east-1/2024/03/01/i.json.gz"), None);
        assert_eq!(log_file_key("AWSLogs/1/CloudTrail/us-east-1/2024/03/01/readme.txt"), None);
        assert_eq!(log_file_key("notes.json.gz"), None);
    }

    #[test]
    fn log_files_parse_gzipped_or_plain() {
        let text = br#"{"Records":[{"eventName":"A"},{"eventName":"B"}]}"#;
        assert_eq!(parse_log_file(text).unwrap().len(), 2);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text).unwrap();
        assert_eq!(parse_log_file(&gz.finish().unwrap()).unwrap().len(), 2);
        assert!(parse_log_file(b"{\"x\":1}").is_err());
        assert!(parse_log_file(&[0x1f, 0x8b, 0, 1]).is_err());
    }
}
