//! Buckets: where trails deliver their files, and what the S3 endpoint serves.
//!
//! Two kinds of bucket, one [`Destination`] seam:
//! - **Local buckets** live in OpenTrail's own store ([`LocalBuckets`], module `local`): object
//!   bodies in files named by a random ID, and an SQLite index from `(bucket, key)` to the file,
//!   its size, ETag, content type, user metadata, writer and write-once flag. Keys are data,
//!   never paths. The audited S3 endpoint serves the same store, so a digest's signature
//!   metadata written here is exactly what `HeadObject` and `GetObject` return.
//! - **Remote buckets** live on any S3-compatible endpoint and are written with `object_store`'s
//!   S3 client.
//!
//! Invariants:
//! - [`Destination::put_new`] never replaces an object. If the key holds an identical body with
//!   identical user metadata, it answers `Ok(())` (a retry after a crash); if it holds anything
//!   else, [`BucketError::AlreadyExists`]. Log and digest files are written once, and local ones
//!   are marked write-once so clients cannot replace them either (unless the operator allows it).
//! - A local put returns only after the object and its index entry are durable, so a delivery
//!   cursor committed afterwards never points past a file a crash could lose.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

pub mod local;
mod migrate;
// The S3 client (object_store, reqwest, rustls) is a default feature, so that what needs only
// the local store (the s3_keys fuzz target) builds without it.
#[cfg(feature = "remote")]
mod remote;

pub use local::{
    ListPage, ListQuery, LocalBuckets, MAX_KEY_BYTES, NewObject, ObjectInfo, PartInfo, Replace, StoreOptions,
    UploadInfo, Written, same_metadata, valid_key,
};
#[cfg(feature = "remote")]
pub use remote::RemoteDestination;

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
    #[error("the bucket name {0} is not valid")]
    InvalidBucketName(String),
    #[error("the key is not valid: {0}")]
    InvalidKey(String),
    #[error("the key {0} does not exist")]
    NoSuchKey(String),
    #[error("the bucket {0} is not empty")]
    BucketNotEmpty(String),
    #[error("the multipart upload {0} does not exist")]
    NoSuchUpload(String),
    #[error("{0}")]
    InvalidPart(String),
    #[error("the list of parts was not in ascending order")]
    InvalidPartOrder,
    #[error("{0}")]
    BadDigest(String),
    #[error("{0}")]
    WriteOnce(String),
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

    /// Writes a new object. If the key already holds an identical body with identical user
    /// metadata, succeeds without writing (an idempotent retry); if it holds anything else,
    /// fails with [`BucketError::AlreadyExists`].
    async fn put_new(&self, key: &str, body: Bytes, metadata: &Metadata) -> Result<(), BucketError>;

    /// Checks that the bucket exists and is reachable.
    async fn check(&self) -> Result<(), BucketError>;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_objects_are_written_once_with_metadata() {
        let folder = tempfile::tempdir().unwrap();
        let buckets = Arc::new(LocalBuckets::open(folder.path()).unwrap());
        let destination = LocalDestination { buckets: buckets.clone(), bucket: "logs".into() };
        assert!(matches!(destination.check().await, Err(BucketError::NoSuchBucket(_))));
        buckets.create_bucket("logs", Some("111111111111")).await.unwrap();
        destination.check().await.unwrap();

        let metadata = vec![("signature".to_owned(), "abc".to_owned())];
        destination.put_new("a/b.json.gz", Bytes::from_static(b"first"), &metadata).await.unwrap();
        // The same file again is a retry, and succeeds without writing.
        destination.put_new("a/b.json.gz", Bytes::from_static(b"first"), &metadata).await.unwrap();
        let again = destination.put_new("a/b.json.gz", Bytes::from_static(b"second"), &metadata).await;
        assert!(matches!(again, Err(BucketError::AlreadyExists(_))), "{again:?}");
        let other_metadata = vec![("signature".to_owned(), "abd".to_owned())];
        let again = destination.put_new("a/b.json.gz", Bytes::from_static(b"first"), &other_metadata).await;
        assert!(matches!(again, Err(BucketError::AlreadyExists(_))), "{again:?}");
        let (info, body) = buckets.read_object("logs", "a/b.json.gz").await.unwrap().unwrap();
        assert_eq!(body, b"first");
        assert_eq!(info.metadata, metadata);
        assert!(info.write_once);
        assert_eq!(info.owner.as_deref(), Some("111111111111"));
        assert!(buckets.read_object("logs", "a/missing").await.unwrap().is_none());
        assert_eq!(buckets.file_count(), 1, "the retry and the refused writes left no files");
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
