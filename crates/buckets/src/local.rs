//! The local bucket store: object bodies in files the store names (a random ID), and an index in
//! SQLite that maps `(bucket, key)` to the object's file and attributes.
//!
//! Layout of the store's folder:
//! - `index.sqlite` (WAL, `synchronous=FULL`): buckets, objects, multipart uploads and parts.
//! - `objects/<id>`: one file per object body or uploaded part, named by a random UUID.
//! - `LOCK`: every process that opens the store holds a shared `flock` on it; the orphan sweep
//!   runs only under an exclusive one (no other process can be mid-write).
//!
//! Keys are data. They are bound as SQL parameters and never become part of a path, so any
//! UTF-8 string of 1 to 1,024 bytes is an ordinary key (`a`, `a/b`, `a//b`, `../x`, `/etc/passwd`
//! and `%2F` are all distinct keys) and no request can name a file outside the store's own.
//!
//! Invariants:
//! - A write streams the body into a new file, syncs it and the folder, and only then publishes
//!   it in one index transaction. A crash before the commit leaves an unreferenced file, which the
//!   next open sweeps; a crash after it leaves the replaced object's file, swept the same way.
//!   Checksums are checked before the commit, so a mismatch never changes what readers see.
//! - A write-once object (a delivered log or digest file) is never replaced or deleted by a
//!   client operation unless the operator allowed it ([`StoreOptions`]).
//! - Keys are compared as bytes (`BLOB`), which for UTF-8 is the code-point order S3 lists in.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::io::AsyncWriteExt;

use crate::{BucketError, Metadata, valid_bucket_name};

/// The longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Operator choices for the local store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Lets a bucket's owner overwrite or delete delivered CloudTrail files through the S3
    /// endpoint (AWS allows it; OpenTrail refuses by default so a trail's files stay as
    /// delivered).
    pub allow_overwriting_delivered_files: bool,
}

/// What the index knows of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// The ETag without quotes: the body's MD5 in hex, or `<hex>-<parts>` after a multipart
    /// upload.
    pub etag: String,
    pub content_type: Option<String>,
    pub metadata: Metadata,
    /// The account that wrote it (`None` for files OpenTrail wrote itself or imported).
    pub owner: Option<String>,
    pub created_ms: i64,
    /// A delivered CloudTrail file.
    pub write_once: bool,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub owner: Option<String>,
    pub content_type: Option<String>,
    pub metadata: Metadata,
    pub created_ms: i64,
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: i32,
    pub size: u64,
    pub etag: String,
    pub created_ms: i64,
}

/// What a written body turned out to be, for checks before it is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub md5: [u8; 16],
}

/// The attributes a write gives its object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewObject {
    pub content_type: Option<String>,
    pub metadata: Metadata,
    pub owner: Option<String>,
}

/// How a write treats an object already at its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it, unless it is write-once and the operator did not allow that.
    Client,
    /// Never replace: fail with [`BucketError::AlreadyExists`] (conditional `If-None-Match: *`).
    IfAbsent,
}

/// A listing request, as ListObjects and ListObjectsV2 ask it.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Exclusive: only keys (and common prefixes) after this.
    pub after: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned (where the next page starts after).
    pub last: Option<String>,
}

/// The local bucket store.
pub struct LocalBuckets {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    objects: PathBuf,
    db: Mutex<Connection>,
    options: StoreOptions,
    /// Held (shared) for the store's lifetime; see the module notes.
    _lock: File,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    owner TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    file TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT,
    metadata TEXT NOT NULL,
    owner TEXT,
    created_ms INTEGER NOT NULL,
    write_once INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    owner TEXT,
    content_type TEXT,
    metadata TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    upload TEXT NOT NULL,
    number INTEGER NOT NULL,
    file TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (upload, number)
) WITHOUT ROWID;
";

pub(crate) const INDEX_FILE: &str = "index.sqlite";
const OBJECTS_FOLDER: &str = "objects";
const LOCK_FILE: &str = "LOCK";

fn sql(error: rusqlite::Error) -> BucketError {
    BucketError::Store(format!("the bucket index: {error}"))
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> BucketError + '_ {
    move |source| BucketError::Io { path: path.to_owned(), source }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// S3's key rule: 1 to 1,024 bytes of UTF-8 (the type already guarantees UTF-8).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES
}

fn check_key(key: &str) -> Result<(), BucketError> {
    match valid_key(key) {
        true => Ok(()),
        false => {
            Err(BucketError::InvalidKey(format!("a key has 1 to {MAX_KEY_BYTES} bytes; this one has {}", key.len())))
        }
    }
}

fn encode_metadata(metadata: &Metadata) -> String {
    serde_json::to_string(metadata).expect("pairs of strings serialise")
}

fn decode_metadata(text: &str) -> Metadata {
    // Written by `encode_metadata` only; an unreadable value would be a corrupted index.
    serde_json::from_str(text).unwrap_or_default()
}

/// User metadata compared as S3 compares it: names case-insensitively, order irrelevant.
pub fn same_metadata(a: &Metadata, b: &Metadata) -> bool {
    let normal = |m: &Metadata| {
        let mut pairs: Vec<(String, String)> = m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        pairs.sort();
        pairs
    };
    normal(a) == normal(b)
}

fn new_file_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

const OBJECT_COLUMNS: &str = "key, size, etag, content_type, metadata, owner, created_ms, write_once, file";

fn object_row(bucket: &str, row: &rusqlite::Row<'_>) -> rusqlite::Result<(ObjectInfo, String)> {
    let key: Vec<u8> = row.get(0)?;
    let size: i64 = row.get(1)?;
    let metadata: String = row.get(4)?;
    Ok((
        ObjectInfo {
            bucket: bucket.to_owned(),
            // Keys enter the index only as `&str`, so they are UTF-8.
            key: String::from_utf8_lossy(&key).into_owned(),
            size: u64::try_from(size).unwrap_or(0),
            etag: row.get(2)?,
            content_type: row.get(3)?,
            metadata: decode_metadata(&metadata),
            owner: row.get(5)?,
            created_ms: row.get(6)?,
            write_once: row.get::<_, i64>(7)? != 0,
        },
        row.get(8)?,
    ))
}

fn lookup(db: &Connection, bucket: &str, key: &str) -> Result<Option<(ObjectInfo, String)>, BucketError> {
    db.query_row(
        &format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ?1 AND key = ?2"),
        params![bucket, key.as_bytes()],
        |row| object_row(bucket, row),
    )
    .optional()
    .map_err(sql)
}

fn bucket_row_exists(db: &Connection, bucket: &str) -> Result<bool, BucketError> {
    db.query_row("SELECT 1 FROM buckets WHERE name = ?1", [bucket], |_| Ok(()))
        .optional()
        .map_err(sql)
        .map(|r| r.is_some())
}

fn delivered_file(bucket: &str, key: &str) -> BucketError {
    BucketError::WriteOnce(format!(
        "s3://{bucket}/{key} is a CloudTrail file delivered by a trail; OpenTrail keeps delivered files as written \
         (the operator can allow changes with [buckets] allow_overwriting_delivered_files = true)"
    ))
}

/// The next byte string after every string that starts with `prefix`: no UTF-8 string holds
/// the byte 0xFF, so `prefix ++ [0xFF]` is greater than all of them and less than anything else
/// greater than `prefix`.
fn past_prefix(prefix: &str) -> Vec<u8> {
    let mut bound = prefix.as_bytes().to_vec();
    bound.push(0xFF);
    bound
}

impl LocalBuckets {
    pub fn open(root: &Path) -> Result<Self, BucketError> {
        Self::open_with(root, StoreOptions::default())
    }

    /// Opens (creating, or migrating from the old `s3s-fs` layout) the store at `root`.
    pub fn open_with(root: &Path, options: StoreOptions) -> Result<Self, BucketError> {
        crate::migrate::finish_or_migrate(root)?;
        let store = Self::open_layout(root, options)?;
        Ok(store)
    }

    /// Opens a folder already in this store's layout (or an empty one).
    pub(crate) fn open_layout(root: &Path, options: StoreOptions) -> Result<Self, BucketError> {
        std::fs::create_dir_all(root).map_err(io_at(root))?;
        let root = root.canonicalize().map_err(io_at(root))?;
        let objects = root.join(OBJECTS_FOLDER);
        std::fs::create_dir_all(&objects).map_err(io_at(&objects))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        let db = Connection::open(root.join(INDEX_FILE)).map_err(sql)?;
        db.busy_timeout(std::time::Duration::from_secs(30)).map_err(sql)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        db.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        db.execute_batch(SCHEMA).map_err(sql)?;
        let inner = Inner { root, objects, db: Mutex::new(db), options, _lock: lock };
        // Sweep only when no other process has the store open: another process's unpublished
        // file looks exactly like a crash's orphan.
        use rustix::fs::{FlockOperation, flock};
        if flock(&inner._lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            inner.sweep_orphans()?;
        }
        flock(&inner._lock, FlockOperation::LockShared).map_err(|e| io_at(&lock_path)(e.into()))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn options(&self) -> StoreOptions {
        self.inner.options
    }

    /// Creates a bucket in the store (ownership lives in the control store; `owner` is kept
    /// for delivered files' records). Returns whether it was new; an existing one is left as is.
    pub async fn create_bucket(&self, bucket: &str, owner: Option<&str>) -> Result<bool, BucketError> {
        if !valid_bucket_name(bucket) {
            return Err(BucketError::InvalidBucketName(bucket.to_owned()));
        }
        let (bucket, owner) = (bucket.to_owned(), owner.map(str::to_owned));
        self.blocking(move |inner| {
            let db = inner.db()?;
            let changed = db
                .execute(
                    "INSERT OR IGNORE INTO buckets (name, owner, created_ms) VALUES (?1, ?2, ?3)",
                    params![bucket, owner, now_ms()],
                )
                .map_err(sql)?;
            Ok(changed == 1)
        })
        .await
    }

    /// Deletes an empty bucket (aborting its multipart uploads, as S3 does).
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), BucketError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            let mut db = inner.db()?;
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            if !bucket_row_exists(&tx, &bucket)? {
                return Err(BucketError::NoSuchBucket(bucket));
            }
            let any = tx.query_row("SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1", [&bucket], |_| Ok(())).optional();
            if any.map_err(sql)?.is_some() {
                return Err(BucketError::BucketNotEmpty(bucket));
            }
            let files: Vec<String> = {
                let mut statement = tx
                    .prepare("SELECT p.file FROM parts p JOIN uploads u ON p.upload = u.id WHERE u.bucket = ?1")
                    .map_err(sql)?;
                statement.query_map([&bucket], |row| row.get(0)).map_err(sql)?.collect::<Result<_, _>>().map_err(sql)?
            };
            tx.execute("DELETE FROM parts WHERE upload IN (SELECT id FROM uploads WHERE bucket = ?1)", [&bucket])
                .map_err(sql)?;
            tx.execute("DELETE FROM uploads WHERE bucket = ?1", [&bucket]).map_err(sql)?;
            tx.execute("DELETE FROM buckets WHERE name = ?1", [&bucket]).map_err(sql)?;
            tx.commit().map_err(sql)?;
            drop(db);
            inner.remove_files(&files);
            Ok(())
        })
        .await
    }

    pub fn bucket_exists(&self, bucket: &str) -> bool {
        valid_bucket_name(bucket) && self.inner.db().and_then(|db| bucket_row_exists(&db, bucket)).unwrap_or(false)
    }

    /// The attributes of an object, if it exists.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, BucketError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| {
            let db = inner.db()?;
            if !bucket_row_exists(&db, &bucket)? {
                return Err(BucketError::NoSuchBucket(bucket));
            }
            Ok(lookup(&db, &bucket, &key)?.map(|(info, _)| info))
        })
        .await
    }

    /// An object's attributes and its body, opened. The file is opened under the index lock, so a
    /// concurrent replacement (which unlinks the old file only after its commit) cannot pull it
    /// away; the reader keeps the version it found.
    pub async fn open_object(&self, bucket: &str, key: &str) -> Result<Option<(ObjectInfo, File)>, BucketError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| {
            let db = inner.db()?;
            if !bucket_row_exists(&db, &bucket)? {
                return Err(BucketError::NoSuchBucket(bucket));
            }
            let Some((info, file)) = lookup(&db, &bucket, &key)? else { return Ok(None) };
            let path = inner.file_path(&file);
            let opened = File::open(&path).map_err(io_at(&path))?;
            Ok(Some((info, opened)))
        })
        .await
    }

    /// A whole object's body (delivered files and tests; the endpoint streams instead).
    pub async fn read_object(&self, bucket: &str, key: &str) -> Result<Option<(ObjectInfo, Vec<u8>)>, BucketError> {
        let Some((info, mut file)) = self.open_object(bucket, key).await? else { return Ok(None) };
        let root = self.inner.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut body = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0));
            file.read_to_end(&mut body).map_err(io_at(&root))?;
            Ok(Some((info, body)))
        })
        .await
        .map_err(|e| BucketError::Store(e.to_string()))?
    }

    /// Writes an object from a stream of chunks. `check` sees the written body's size and MD5
    /// before anything is published; an error from it (or from the stream) leaves the key as it
    /// was.
    pub async fn put_object<S, E>(
        &self,
        bucket: &str,
        key: &str,
        body: S,
        attributes: NewObject,
        replace: Replace,
        check: impl FnOnce(&Written) -> Result<(), BucketError>,
    ) -> Result<ObjectInfo, BucketError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        check_key(key)?;
        // Fail early rather than after receiving a body nobody may store.
        self.precheck_write(bucket, key, replace).await?;
        let (file, written) = self.write_file(body).await?;
        if let Err(error) = check(&written) {
            self.inner.remove_files(std::slice::from_ref(&file));
            return Err(error);
        }
        let etag = hex::encode(written.md5);
        self.publish(bucket, key, file, written.size, etag, attributes, replace, false).await
    }

    /// Writes a delivered file: never replaces a different object, and marks it write-once.
    pub async fn put_new(&self, bucket: &str, key: &str, body: Bytes, metadata: &Metadata) -> Result<(), BucketError> {
        check_key(key)?;
        let chunks = futures::stream::iter([Ok::<_, std::convert::Infallible>(body.clone())]);
        // The bucket's owner first: it also refuses a missing bucket before any file is written.
        let owner = self.bucket_owner(bucket).await?;
        let (file, written) = self.write_file(chunks).await?;
        let etag = hex::encode(written.md5);
        let attributes = NewObject { content_type: None, metadata: metadata.clone(), owner };
        match self.publish(bucket, key, file, written.size, etag, attributes, Replace::IfAbsent, true).await {
            Ok(_) => Ok(()),
            // Something is at the key already (a retry after a crash, a racing writer, or a
            // client's object): only an identical object counts as written. Publish removed our
            // copy, so the usual case (a new key) costs one index transaction.
            Err(BucketError::AlreadyExists(_)) => match self.same_as_existing(bucket, key, &body, metadata).await? {
                Some(outcome) => outcome,
                None => Err(BucketError::AlreadyExists(format!("s3://{bucket}/{key}"))),
            },
            Err(error) => Err(error),
        }
    }

    /// `None` if nothing is at the key; else whether `put_new` of this body counts as done.
    async fn same_as_existing(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        metadata: &Metadata,
    ) -> Result<Option<Result<(), BucketError>>, BucketError> {
        let Some((info, existing)) = self.read_object(bucket, key).await? else { return Ok(None) };
        if existing == body && same_metadata(&info.metadata, metadata) {
            tracing::debug!(bucket, key, "a delivered file was already written (a retry)");
            Ok(Some(Ok(())))
        } else {
            Ok(Some(Err(BucketError::AlreadyExists(format!("s3://{bucket}/{key} (with different content)")))))
        }
    }

    async fn bucket_owner(&self, bucket: &str) -> Result<Option<String>, BucketError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            let db = inner.db()?;
            let owner = db.query_row("SELECT owner FROM buckets WHERE name = ?1", [&bucket], |row| row.get(0));
            owner.optional().map_err(sql)?.ok_or(BucketError::NoSuchBucket(bucket))
        })
        .await
    }

    /// Deletes an object; `Ok(false)` if there was none (S3 answers both the same).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<bool, BucketError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| {
            let mut db = inner.db()?;
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            if !bucket_row_exists(&tx, &bucket)? {
                return Err(BucketError::NoSuchBucket(bucket));
            }
            let Some((info, file)) = lookup(&tx, &bucket, &key)? else { return Ok(false) };
            if info.write_once && !inner.options.allow_overwriting_delivered_files {
                return Err(delivered_file(&bucket, &key));
            }
            tx.execute("DELETE FROM objects WHERE bucket = ?1 AND key = ?2", params![bucket, key.as_bytes()])
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
            drop(db);
            inner.remove_files(&[file]);
            Ok(true)
        })
        .await
    }

    /// Copies an object's body to another key (possibly another bucket). `attributes: None`
    /// keeps the source's content type and metadata (`x-amz-metadata-directive: COPY`).
    pub async fn copy_object(
        &self,
        (source_bucket, source_key): (&str, &str),
        (bucket, key): (&str, &str),
        attributes: Option<NewObject>,
        owner: Option<String>,
    ) -> Result<ObjectInfo, BucketError> {
        check_key(source_key)?;
        check_key(key)?;
        self.precheck_write(bucket, key, Replace::Client).await?;
        let Some((source, mut reader)) = self.open_object(source_bucket, source_key).await? else {
            return Err(BucketError::NoSuchKey(source_key.to_owned()));
        };
        let inner = self.inner.clone();
        let (file, size) = tokio::task::spawn_blocking(move || inner.write_file(|out| std::io::copy(&mut reader, out)))
            .await
            .map_err(|e| BucketError::Store(e.to_string()))??;
        debug_assert_eq!(size, source.size, "a copy has the source's size");
        let attributes = attributes.unwrap_or(NewObject {
            content_type: source.content_type.clone(),
            metadata: source.metadata.clone(),
            owner: None,
        });
        let attributes = NewObject { owner, ..attributes };
        self.publish(bucket, key, file, size, source.etag, attributes, Replace::Client, false).await
    }

    /// Lists a bucket as S3 does: keys under `prefix` in byte order, rolled up into common
    /// prefixes at `delimiter`, after `after`, at most `max_keys` entries (keys and prefixes).
    pub async fn list_objects(&self, bucket: &str, query: ListQuery) -> Result<ListPage, BucketError> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| {
            let db = inner.db()?;
            if !bucket_row_exists(&db, &bucket)? {
                return Err(BucketError::NoSuchBucket(bucket));
            }
            list(&db, &bucket, &query)
        })
        .await
    }

    /// Starts a multipart upload; returns its ID.
    pub async fn create_upload(&self, bucket: &str, key: &str, attributes: NewObject) -> Result<String, BucketError> {
        check_key(key)?;
        self.precheck_write(bucket, key, Replace::Client).await?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| {
            let db = inner.db()?;
            if !bucket_row_exists(&db, &bucket)? {
                return Err(BucketError::NoSuchBucket(bucket));
            }
            let id = new_file_id();
            db.execute(
                "INSERT INTO uploads (id, bucket, key, owner, content_type, metadata, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    bucket,
                    key.as_bytes(),
                    attributes.owner,
                    attributes.content_type,
                    encode_metadata(&attributes.metadata),
                    now_ms()
                ],
            )
            .map_err(sql)?;
            Ok(id)
        })
        .await
    }

    /// An upload in progress, if there is one with this ID.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadInfo>, BucketError> {
        let id = id.to_owned();
        self.blocking(move |inner| upload_row(&*inner.db()?, &id)).await
    }

    /// Stores one part of an upload (replacing an earlier part of the same number).
    pub async fn upload_part<S, E>(
        &self,
        id: &str,
        number: i32,
        body: S,
        check: impl FnOnce(&Written) -> Result<(), BucketError>,
    ) -> Result<PartInfo, BucketError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        if !(1..=10_000).contains(&number) {
            return Err(BucketError::InvalidPart(format!("part numbers are 1 to 10000, not {number}")));
        }
        if self.upload(id).await?.is_none() {
            return Err(BucketError::NoSuchUpload(id.to_owned()));
        }
        let (file, written) = self.write_file(body).await?;
        if let Err(error) = check(&written) {
            self.inner.remove_files(std::slice::from_ref(&file));
            return Err(error);
        }
        let part = PartInfo { number, size: written.size, etag: hex::encode(written.md5), created_ms: now_ms() };
        let (id, published) = (id.to_owned(), part.clone());
        self.blocking(move |inner| {
            let mut db = inner.db()?;
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            if upload_row(&tx, &id)?.is_none() {
                drop(tx);
                drop(db);
                inner.remove_files(&[file]);
                return Err(BucketError::NoSuchUpload(id));
            }
            let old: Option<String> = tx
                .query_row("SELECT file FROM parts WHERE upload = ?1 AND number = ?2", params![id, number], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql)?;
            tx.execute(
                "INSERT OR REPLACE INTO parts (upload, number, file, size, etag, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, number, file, published.size as i64, published.etag, published.created_ms],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            drop(db);
            inner.remove_files(&old.into_iter().collect::<Vec<_>>());
            Ok(())
        })
        .await?;
        Ok(part)
    }

    pub async fn list_parts(&self, id: &str) -> Result<Vec<PartInfo>, BucketError> {
        let id = id.to_owned();
        self.blocking(move |inner| {
            let db = inner.db()?;
            if upload_row(&db, &id)?.is_none() {
                return Err(BucketError::NoSuchUpload(id));
            }
            parts_of(&db, &id).map(|parts| parts.into_iter().map(|(part, _)| part).collect())
        })
        .await
    }

    /// Completes an upload into its object: the named parts, in ascending order, each with the
    /// ETag it was uploaded with. The upload must be for exactly `bucket`/`key`.
    pub async fn complete_upload(
        &self,
        (bucket, key): (&str, &str),
        id: &str,
        chosen: &[(i32, Option<String>)],
    ) -> Result<ObjectInfo, BucketError> {
        let upload = match self.upload(id).await? {
            Some(upload) if upload.bucket == bucket && upload.key == key => upload,
            _ => return Err(BucketError::NoSuchUpload(id.to_owned())),
        };
        self.precheck_write(bucket, key, Replace::Client).await?;
        if chosen.is_empty() {
            return Err(BucketError::InvalidPart("name at least one part".into()));
        }
        if chosen.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(BucketError::InvalidPartOrder);
        }
        let id_owned = id.to_owned();
        let stored = self
            .blocking(move |inner| {
                let db = inner.db()?;
                parts_of(&db, &id_owned)
            })
            .await?;
        let mut files = Vec::with_capacity(chosen.len());
        let mut part_md5s = Vec::with_capacity(chosen.len() * 16);
        for (number, etag) in chosen {
            let Some((part, file)) = stored.iter().find(|(part, _)| part.number == *number) else {
                return Err(BucketError::InvalidPart(format!("part {number} was not uploaded")));
            };
            if let Some(etag) = etag
                && etag.trim_matches('"') != part.etag
            {
                return Err(BucketError::InvalidPart(format!("part {number} has a different ETag")));
            }
            part_md5s.extend(hex::decode(&part.etag).map_err(|e| BucketError::Store(e.to_string()))?);
            files.push(file.clone());
        }
        let inner = self.inner.clone();
        let (file, size) = tokio::task::spawn_blocking(move || {
            inner.write_file(|out| {
                let mut size = 0;
                for part in &files {
                    size += std::io::copy(&mut File::open(inner.file_path(part))?, out)?;
                }
                Ok(size)
            })
        })
        .await
        .map_err(|e| BucketError::Store(e.to_string()))??;
        let etag = format!("{}-{}", hex::encode(Md5::digest(&part_md5s)), chosen.len());
        let attributes = NewObject {
            content_type: upload.content_type.clone(),
            metadata: upload.metadata.clone(),
            owner: upload.owner,
        };
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), id.to_owned());
        let options = self.inner.options;
        self.blocking(move |inner| {
            let mut db = inner.db()?;
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            let fail = |inner: &Inner, error| {
                inner.remove_files(std::slice::from_ref(&file));
                Err(error)
            };
            if upload_row(&tx, &id)?.is_none() {
                drop(tx);
                drop(db);
                return fail(&inner, BucketError::NoSuchUpload(id));
            }
            if !bucket_row_exists(&tx, &bucket)? {
                drop(tx);
                drop(db);
                return fail(&inner, BucketError::NoSuchBucket(bucket));
            }
            let existing = lookup(&tx, &bucket, &key)?;
            if let Some((info, _)) = &existing
                && info.write_once
                && !options.allow_overwriting_delivered_files
            {
                drop(tx);
                drop(db);
                return fail(&inner, delivered_file(&bucket, &key));
            }
            let part_files: Vec<String> = parts_of(&tx, &id)?.into_iter().map(|(_, file)| file).collect();
            tx.execute("DELETE FROM parts WHERE upload = ?1", [&id]).map_err(sql)?;
            tx.execute("DELETE FROM uploads WHERE id = ?1", [&id]).map_err(sql)?;
            let info = insert_object(&tx, &bucket, &key, &file, size, &etag, &attributes, false)?;
            tx.commit().map_err(sql)?;
            drop(db);
            let mut doomed = part_files;
            doomed.extend(existing.map(|(_, old)| old));
            inner.remove_files(&doomed);
            Ok(info)
        })
        .await
    }

    /// Abandons an upload and its parts.
    pub async fn abort_upload(&self, id: &str) -> Result<(), BucketError> {
        let id = id.to_owned();
        self.blocking(move |inner| {
            let mut db = inner.db()?;
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            if upload_row(&tx, &id)?.is_none() {
                return Err(BucketError::NoSuchUpload(id));
            }
            let files: Vec<String> = parts_of(&tx, &id)?.into_iter().map(|(_, file)| file).collect();
            tx.execute("DELETE FROM parts WHERE upload = ?1", [&id]).map_err(sql)?;
            tx.execute("DELETE FROM uploads WHERE id = ?1", [&id]).map_err(sql)?;
            tx.commit().map_err(sql)?;
            drop(db);
            inner.remove_files(&files);
            Ok(())
        })
        .await
    }

    /// Every file name the store's folder holds that is not its own (for tests and the fuzz
    /// target: nothing but the index, the lock and ID-named files may ever appear).
    pub fn foreign_entries(&self) -> Vec<PathBuf> {
        let mut foreign = Vec::new();
        let own = |name: &str| {
            name == LOCK_FILE || name == OBJECTS_FOLDER || name.starts_with(INDEX_FILE) // -wal, -shm
        };
        if let Ok(entries) = std::fs::read_dir(&self.inner.root) {
            for entry in entries.flatten() {
                if !own(&entry.file_name().to_string_lossy()) {
                    foreign.push(entry.path());
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.inner.objects) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let id_like = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit());
                if !id_like || !entry.file_type().is_ok_and(|t| t.is_file()) {
                    foreign.push(entry.path());
                }
            }
        }
        foreign
    }

    /// The number of body files on disk (tests: replaced and deleted objects leave none behind).
    pub fn file_count(&self) -> usize {
        std::fs::read_dir(&self.inner.objects).map_or(0, |entries| entries.count())
    }

    /// Fails early when a write could never be published: no such bucket, or a write-once
    /// object the operator did not open up. (Checked again in the publishing transaction.)
    async fn precheck_write(&self, bucket: &str, key: &str, replace: Replace) -> Result<(), BucketError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| {
            let db = inner.db()?;
            if !bucket_row_exists(&db, &bucket)? {
                return Err(BucketError::NoSuchBucket(bucket));
            }
            match lookup(&db, &bucket, &key)? {
                Some(_) if replace == Replace::IfAbsent => {
                    Err(BucketError::AlreadyExists(format!("s3://{bucket}/{key}")))
                }
                Some((info, _)) if info.write_once && !inner.options.allow_overwriting_delivered_files => {
                    Err(delivered_file(&bucket, &key))
                }
                _ => Ok(()),
            }
        })
        .await
    }

    /// Streams `body` into a new ID-named file and syncs it; returns its ID and what was
    /// written. On failure nothing is left behind.
    async fn write_file<S, E>(&self, body: S) -> Result<(String, Written), BucketError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let id = new_file_id();
        let path = self.inner.file_path(&id);
        let result = async {
            let mut out = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
            let mut md5 = Md5::new();
            let mut size = 0u64;
            let mut body = std::pin::pin!(body);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| std::io::Error::other(format!("the request body: {e}")))?;
                md5.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
            out.sync_all().await?;
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || inner.sync_objects_folder()).await.map_err(std::io::Error::other)??;
            Ok::<_, std::io::Error>(Written { size, md5: md5.finalize().into() })
        }
        .await;
        match result {
            Ok(written) => Ok((id, written)),
            Err(source) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(BucketError::Io { path, source })
            }
        }
    }

    /// Publishes a written file at `bucket`/`key` in one transaction; the replaced object's
    /// file is removed after the commit (or by the next open's sweep if we crash first).
    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &self,
        bucket: &str,
        key: &str,
        file: String,
        size: u64,
        etag: String,
        attributes: NewObject,
        replace: Replace,
        write_once: bool,
    ) -> Result<ObjectInfo, BucketError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| {
            let outcome = (|| {
                let mut db = inner.db()?;
                let tx = db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
                if !bucket_row_exists(&tx, &bucket)? {
                    return Err(BucketError::NoSuchBucket(bucket.clone()));
                }
                let existing = lookup(&tx, &bucket, &key)?;
                match &existing {
                    Some(_) if replace == Replace::IfAbsent => {
                        return Err(BucketError::AlreadyExists(format!("s3://{bucket}/{key}")));
                    }
                    Some((info, _)) if info.write_once && !inner.options.allow_overwriting_delivered_files => {
                        return Err(delivered_file(&bucket, &key));
                    }
                    _ => {}
                }
                let info = insert_object(&tx, &bucket, &key, &file, size, &etag, &attributes, write_once)?;
                tx.commit().map_err(sql)?;
                Ok((info, existing.map(|(_, old)| old)))
            })();
            match outcome {
                Ok((info, old)) => {
                    inner.remove_files(&old.into_iter().collect::<Vec<_>>());
                    Ok(info)
                }
                Err(error) => {
                    inner.remove_files(std::slice::from_ref(&file));
                    Err(error)
                }
            }
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Arc<Inner>) -> Result<T, BucketError> + Send + 'static,
    ) -> Result<T, BucketError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(inner)).await.map_err(|e| BucketError::Store(e.to_string()))?
    }

    /// Imports one object (migration): the body is read from `source` into a new file.
    pub(crate) fn import_object_blocking(
        &self,
        bucket: &str,
        key: &str,
        source: &Path,
        content_type: Option<String>,
        metadata: Metadata,
    ) -> Result<(), BucketError> {
        check_key(key)?;
        let inner = &self.inner;
        let id = new_file_id();
        let path = inner.file_path(&id);
        let mut md5 = Md5::new();
        let size = (|| {
            let mut input = File::open(source)?;
            let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
            let mut buffer = vec![0u8; 64 * 1024];
            let mut size = 0u64;
            loop {
                let n = input.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                md5.update(&buffer[..n]);
                out.write_all(&buffer[..n])?;
                size += n as u64;
            }
            out.sync_all()?;
            Ok(size)
        })()
        .map_err(|source| BucketError::Io { path: path.clone(), source })?;
        let etag = hex::encode(md5.finalize());
        let db = inner.db()?;
        db.execute(
            "INSERT OR IGNORE INTO buckets (name, owner, created_ms) VALUES (?1, NULL, ?2)",
            params![bucket, now_ms()],
        )
        .map_err(sql)?;
        let attributes = NewObject { content_type, metadata, owner: None };
        // Delivered files are recognisable by their key; keep them write-once after migration.
        let delivered = key.starts_with("AWSLogs/") || key.contains("/AWSLogs/");
        insert_object(&db, bucket, key, &id, size, &etag, &attributes, delivered)?;
        Ok(())
    }

    pub(crate) fn import_bucket_blocking(&self, bucket: &str) -> Result<(), BucketError> {
        let db = self.inner.db()?;
        db.execute(
            "INSERT OR IGNORE INTO buckets (name, owner, created_ms) VALUES (?1, NULL, ?2)",
            params![bucket, now_ms()],
        )
        .map_err(sql)?;
        Ok(())
    }

    pub(crate) fn sync_all_blocking(&self) -> Result<(), BucketError> {
        self.inner.sync_objects_folder().map_err(io_at(&self.inner.objects))
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_object(
    db: &Connection,
    bucket: &str,
    key: &str,
    file: &str,
    size: u64,
    etag: &str,
    attributes: &NewObject,
    write_once: bool,
) -> Result<ObjectInfo, BucketError> {
    let created_ms = now_ms();
    db.execute(
        "INSERT OR REPLACE INTO objects (bucket, key, file, size, etag, content_type, metadata, owner, created_ms, write_once)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            bucket,
            key.as_bytes(),
            file,
            i64::try_from(size).unwrap_or(i64::MAX),
            etag,
            attributes.content_type,
            encode_metadata(&attributes.metadata),
            attributes.owner,
            created_ms,
            i64::from(write_once)
        ],
    )
    .map_err(sql)?;
    Ok(ObjectInfo {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size,
        etag: etag.to_owned(),
        content_type: attributes.content_type.clone(),
        metadata: attributes.metadata.clone(),
        owner: attributes.owner.clone(),
        created_ms,
        write_once,
    })
}

fn upload_row(db: &Connection, id: &str) -> Result<Option<UploadInfo>, BucketError> {
    db.query_row(
        "SELECT bucket, key, owner, content_type, metadata, created_ms FROM uploads WHERE id = ?1",
        [id],
        |row| {
            let key: Vec<u8> = row.get(1)?;
            let metadata: String = row.get(4)?;
            Ok(UploadInfo {
                id: id.to_owned(),
                bucket: row.get(0)?,
                key: String::from_utf8_lossy(&key).into_owned(),
                owner: row.get(2)?,
                content_type: row.get(3)?,
                metadata: decode_metadata(&metadata),
                created_ms: row.get(5)?,
            })
        },
    )
    .optional()
    .map_err(sql)
}

fn parts_of(db: &Connection, id: &str) -> Result<Vec<(PartInfo, String)>, BucketError> {
    let mut statement = db
        .prepare("SELECT number, size, etag, created_ms, file FROM parts WHERE upload = ?1 ORDER BY number")
        .map_err(sql)?;
    let rows = statement
        .query_map([id], |row| {
            let size: i64 = row.get(1)?;
            Ok((
                PartInfo {
                    number: row.get(0)?,
                    size: u64::try_from(size).unwrap_or(0),
                    etag: row.get(2)?,
                    created_ms: row.get(3)?,
                },
                row.get(4)?,
            ))
        })
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

fn list(db: &Connection, bucket: &str, query: &ListQuery) -> Result<ListPage, BucketError> {
    let mut page = ListPage::default();
    if query.max_keys == 0 {
        return Ok(page);
    }
    let prefix = query.prefix.as_bytes();
    let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
    // Exclusive lower bound; the prefix itself is an inclusive one.
    let mut after: Vec<u8> = query.after.as_deref().map(|a| a.as_bytes().to_vec()).unwrap_or_default();
    let mut statement = db
        .prepare(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ?1 AND key > ?2 AND key >= ?3 ORDER BY key LIMIT ?4"
        ))
        .map_err(sql)?;
    let batch = (query.max_keys + 1).min(1001) as i64;
    'pages: loop {
        let rows: Vec<(ObjectInfo, String)> = statement
            .query_map(params![bucket, after, prefix, batch], |row| object_row(bucket, row))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        let exhausted = (rows.len() as i64) < batch;
        for (info, _) in rows {
            let key = info.key.as_bytes();
            debug_assert!(key > after.as_slice(), "rows come after the bound");
            if !key.starts_with(prefix) {
                break 'pages;
            }
            let rolled = delimiter.and_then(|d| {
                let rest = &info.key[query.prefix.len()..];
                rest.find(d).map(|at| info.key[..query.prefix.len() + at + d.len()].to_owned())
            });
            if page.objects.len() + page.common_prefixes.len() == query.max_keys {
                page.truncated = true;
                break 'pages;
            }
            match rolled {
                Some(common) => {
                    after = past_prefix(&common);
                    let marker_inside = query.after.as_deref().is_some_and(|a| a.as_bytes() >= common.as_bytes());
                    if !marker_inside {
                        page.last = Some(common.clone());
                        page.common_prefixes.push(common);
                    }
                    // Re-seek past everything under this common prefix.
                    continue 'pages;
                }
                None => {
                    after = key.to_vec();
                    page.last = Some(info.key.clone());
                    page.objects.push(info);
                }
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(page)
}

impl Inner {
    fn db(&self) -> Result<MutexGuard<'_, Connection>, BucketError> {
        self.db.lock().map_err(|_| BucketError::Store("the bucket index lock is poisoned".into()))
    }

    /// Writes a new object file with `fill` and syncs it and the folder, so the index may
    /// publish it; a partial file is removed on failure. Returns the file's ID and size.
    fn write_file(&self, fill: impl FnOnce(&mut File) -> std::io::Result<u64>) -> Result<(String, u64), BucketError> {
        let id = new_file_id();
        let path = self.file_path(&id);
        let result = (|| {
            let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
            let size = fill(&mut out)?;
            out.sync_all()?;
            self.sync_objects_folder()?;
            Ok(size)
        })();
        match result {
            Ok(size) => Ok((id, size)),
            Err(source) => {
                let _ = std::fs::remove_file(&path);
                Err(BucketError::Io { path, source })
            }
        }
    }

    fn file_path(&self, id: &str) -> PathBuf {
        debug_assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "file names are IDs: {id}");
        self.objects.join(id)
    }

    fn sync_objects_folder(&self) -> std::io::Result<()> {
        File::open(&self.objects)?.sync_all()
    }

    /// Best effort: a file that cannot be removed now is an orphan the next open sweeps.
    fn remove_files(&self, files: &[String]) {
        for file in files {
            if let Err(error) = std::fs::remove_file(self.file_path(file))
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%error, file, "a bucket store file could not be removed; the next start sweeps it");
            }
        }
    }

    /// Removes files no index row names: bodies of writes a crash interrupted, and replaced
    /// objects' files a crash kept.
    fn sweep_orphans(&self) -> Result<(), BucketError> {
        let db = self.db()?;
        let mut referenced = std::collections::HashSet::new();
        for table in ["objects", "parts"] {
            let mut statement = db.prepare(&format!("SELECT file FROM {table}")).map_err(sql)?;
            for file in statement.query_map([], |row| row.get::<_, String>(0)).map_err(sql)? {
                referenced.insert(file.map_err(sql)?);
            }
        }
        let mut swept = 0usize;
        for entry in std::fs::read_dir(&self.objects).map_err(io_at(&self.objects))? {
            let entry = entry.map_err(io_at(&self.objects))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) {
                let path = entry.path();
                let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                removed.map_err(io_at(&path))?;
                swept += 1;
            }
        }
        if swept > 0 {
            tracing::info!(swept, "removed bucket store files no object refers to (left by an interrupted write)");
        }
        Ok(())
    }
}
