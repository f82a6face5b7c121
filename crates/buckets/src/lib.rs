//! Buckets: where trails deliver their files, and what the S3 endpoint serves.
//!
//! Two kinds of bucket, one [`Destination`] seam:
//! - **Local buckets** are folders under `<data>/buckets/`, in the layout of the `s3s-fs` crate
//!   (an object is a file at `<bucket>/<key>`; its user metadata a JSON sidecar). The same
//!   `s3s-fs` file system serves them over the S3 protocol, so a digest's signature metadata
//!   written here is exactly what `HeadObject` and `GetObject` return. (object_store's local
//!   file system cannot keep user metadata, which digests need, so local buckets are written
//!   through the store that serves them.)
//! - **Remote buckets** live on any S3-compatible endpoint and are written with `object_store`'s
//!   S3 client.
//!
//! Invariants:
//! - [`Destination::put_new`] never replaces an object: an existing key is left untouched and
//!   reported as [`BucketError::AlreadyExists`]. Log and digest files are written once.
//! - A local put returns only after the object and its metadata are on disk (`syncfs`), so a
//!   delivery cursor committed afterwards never points past a file a crash could lose.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::{Attribute, Attributes, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig};
use s3s::dto::{PutObjectInput, StreamingBlob};
use s3s::{S3, S3Request};
use serde::Deserialize;

pub use s3s_fs::FileSystem;

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("the bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("the object {0} already exists")]
    AlreadyExists(String),
    #[error("the bucket store failed: {0}")]
    Store(String),
    #[error("the bucket store's folder {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A string that never appears in logs.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// User metadata of an object (`x-amz-meta-<name>: <value>`).
pub type Metadata = Vec<(String, String)>;

/// A bucket that files are delivered to.
#[async_trait]
pub trait Destination: Send + Sync {
    /// The bucket's name.
    fn bucket(&self) -> &str;

    /// Writes a new object. Fails with [`BucketError::AlreadyExists`] if the key exists.
    async fn put_new(&self, key: &str, body: Bytes, metadata: &Metadata) -> Result<(), BucketError>;

    /// Checks that the bucket exists and is reachable.
    async fn check(&self) -> Result<(), BucketError>;
}

/// The local bucket store: a folder of buckets served by `s3s-fs`.
pub struct LocalBuckets {
    file_system: Arc<FileSystem>,
    root: PathBuf,
}

fn internal_request<T>(input: T) -> S3Request<T> {
    S3Request {
        input,
        method: http::Method::PUT,
        uri: http::Uri::from_static("/"),
        headers: http::HeaderMap::new(),
        extensions: http::Extensions::new(),
        credentials: None,
        region: None,
        service: None,
        trailing_headers: None,
    }
}

fn store_error(error: impl fmt::Display) -> BucketError {
    BucketError::Store(error.to_string())
}

impl LocalBuckets {
    pub fn open(root: &Path) -> Result<Self, BucketError> {
        let io = |source| BucketError::Io { path: root.to_owned(), source };
        std::fs::create_dir_all(root).map_err(io)?;
        let file_system = FileSystem::new(root).map_err(|error| store_error(format!("{error:?}")))?;
        Ok(Self { file_system: Arc::new(file_system), root: root.canonicalize().map_err(io)? })
    }

    /// The `s3s` implementation that serves these buckets.
    pub fn file_system(&self) -> Arc<FileSystem> {
        self.file_system.clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn bucket_path(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    pub fn bucket_exists(&self, bucket: &str) -> bool {
        valid_bucket_name(bucket) && self.bucket_path(bucket).is_dir()
    }

    /// Writes a new object in-process (not through the audited endpoint, so not recorded) and
    /// syncs it to disk.
    pub async fn put_new(&self, bucket: &str, key: &str, body: Bytes, metadata: &Metadata) -> Result<(), BucketError> {
        if !self.bucket_exists(bucket) {
            return Err(BucketError::NoSuchBucket(bucket.to_owned()));
        }
        let length = body.len() as i64;
        let input = PutObjectInput::builder()
            .bucket(bucket.to_owned())
            .key(key.to_owned())
            .content_length(Some(length))
            .if_none_match(Some(s3s::dto::ETagCondition::Any))
            .metadata((!metadata.is_empty()).then(|| metadata.iter().cloned().collect::<HashMap<_, _>>()))
            .body(Some(StreamingBlob::from(s3s::Body::from(body))))
            .build()
            .map_err(store_error)?;
        match self.file_system.put_object(internal_request(input)).await {
            Ok(_) => {}
            Err(error) if error.code() == &s3s::S3ErrorCode::PreconditionFailed => {
                return Err(BucketError::AlreadyExists(format!("s3://{bucket}/{key}")));
            }
            Err(error) => return Err(store_error(format!("{:?}: {}", error.code(), error.message().unwrap_or("")))),
        }
        self.sync().await
    }

    /// Flushes the file system that holds the buckets (object, sidecar and folders at once).
    async fn sync(&self) -> Result<(), BucketError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let folder = std::fs::File::open(&root)?;
            rustix::fs::syncfs(&folder).map_err(std::io::Error::from)
        })
        .await
        .map_err(store_error)?
        .map_err(|source| BucketError::Io { path: self.root.clone(), source })
    }
}

/// S3's bucket naming rules: 3-63 characters of lower-case letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, no `..`, not an IP address.
pub fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// A bucket of the local store.
pub struct LocalDestination {
    pub buckets: Arc<LocalBuckets>,
    pub bucket: String,
}

#[async_trait]
impl Destination for LocalDestination {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_new(&self, key: &str, body: Bytes, metadata: &Metadata) -> Result<(), BucketError> {
        self.buckets.put_new(&self.bucket, key, body, metadata).await
    }

    async fn check(&self) -> Result<(), BucketError> {
        match self.buckets.bucket_exists(&self.bucket) {
            true => Ok(()),
            false => Err(BucketError::NoSuchBucket(self.bucket.clone())),
        }
    }
}

/// A bucket on an S3-compatible endpoint, from the configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteBucketConfig {
    /// The bucket name trails use in `S3BucketName`.
    pub bucket: String,
    /// For example `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint_url: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// Path-style addressing (`endpoint/bucket/key`), which most self-hosted stores need.
    #[serde(default = "default_true")]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_true() -> bool {
    true
}

/// A bucket on an S3-compatible endpoint, written with `object_store`.
pub struct RemoteDestination {
    bucket: String,
    store: Arc<AmazonS3>,
}

impl RemoteDestination {
    pub fn new(config: &RemoteBucketConfig) -> Result<Self, BucketError> {
        // Few quick retries inside object_store; the delivery worker retries with its own backoff
        // and reports the failure meanwhile.
        let retry = RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(10), ..RetryConfig::default() };
        let store = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint_url)
            .with_allow_http(config.endpoint_url.starts_with("http://"))
            .with_region(&config.region)
            .with_bucket_name(&config.bucket)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key.0)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(retry)
            .build()
            .map_err(store_error)?;
        Ok(Self { bucket: config.bucket.clone(), store: Arc::new(store) })
    }

    /// The bucket as an object store (imports read log files through it).
    pub fn object_store(&self) -> Arc<dyn object_store::ObjectStore> {
        self.store.clone()
    }
}

#[async_trait]
impl Destination for RemoteDestination {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_new(&self, key: &str, body: Bytes, metadata: &Metadata) -> Result<(), BucketError> {
        let mut attributes = Attributes::new();
        for (name, value) in metadata {
            attributes.insert(Attribute::Metadata(name.clone().into()), value.clone().into());
        }
        let options = PutOptions { mode: PutMode::Create, attributes, ..PutOptions::default() };
        let location = object_store::path::Path::from(key);
        match self.store.put_opts(&location, PutPayload::from_bytes(body), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(BucketError::AlreadyExists(format!("s3://{}/{key}", self.bucket)))
            }
            Err(error) => Err(store_error(error)),
        }
    }

    async fn check(&self) -> Result<(), BucketError> {
        match self.store.list_with_delimiter(Some(&object_store::path::Path::from("AWSLogs"))).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(BucketError::NoSuchBucket(self.bucket.clone())),
            Err(error) => Err(store_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use s3s::dto::GetObjectInput;

    use super::*;

    /// Reads a whole object back through the file system that serves it.
    async fn get(buckets: &LocalBuckets, bucket: &str, key: &str) -> Result<Option<Bytes>, BucketError> {
        let input =
            GetObjectInput::builder().bucket(bucket.to_owned()).key(key.to_owned()).build().map_err(store_error)?;
        let output = match buckets.file_system.get_object(internal_request(input)).await {
            Ok(response) => response.output,
            Err(error) if error.code() == &s3s::S3ErrorCode::NoSuchKey => return Ok(None),
            Err(error) => return Err(store_error(format!("{:?}", error.code()))),
        };
        let Some(body) = output.body else { return Ok(Some(Bytes::new())) };
        let chunks: Vec<Bytes> = futures::TryStreamExt::try_collect(body).await.map_err(store_error)?;
        Ok(Some(chunks.concat().into()))
    }

    #[tokio::test]
    async fn local_objects_are_written_once_with_metadata() {
        let folder = tempfile::tempdir().unwrap();
        let buckets = Arc::new(LocalBuckets::open(folder.path()).unwrap());
        let destination = LocalDestination { buckets: buckets.clone(), bucket: "logs".into() };
        assert!(matches!(destination.check().await, Err(BucketError::NoSuchBucket(_))));
        std::fs::create_dir(buckets.bucket_path("logs")).unwrap();
        destination.check().await.unwrap();

        let metadata = vec![("signature".to_owned(), "abc".to_owned())];
        destination.put_new("a/b.json.gz", Bytes::from_static(b"first"), &metadata).await.unwrap();
        let again = destination.put_new("a/b.json.gz", Bytes::from_static(b"second"), &metadata).await;
        assert!(matches!(again, Err(BucketError::AlreadyExists(_))), "{again:?}");
        assert_eq!(get(&buckets, "logs", "a/b.json.gz").await.unwrap().unwrap(), Bytes::from_static(b"first"));
        assert_eq!(get(&buckets, "logs", "a/missing").await.unwrap(), None);
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-logs.2026", "a1b"] {
            assert!(valid_bucket_name(good), "{good}");
        }
        for bad in ["ab", "ABC", "-abc", "abc-", "a..b", "a/b", ".abc", "192.168.5.4", &"a".repeat(64)] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let config: RemoteBucketConfig = toml_like();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    fn toml_like() -> RemoteBucketConfig {
        RemoteBucketConfig {
            bucket: "b".into(),
            endpoint_url: "http://127.0.0.1:1".into(),
            region: default_region(),
            access_key_id: "k".into(),
            secret_access_key: SecretString("hunter2".into()),
            path_style: true,
        }
    }
}
