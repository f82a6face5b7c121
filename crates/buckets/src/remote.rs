//! Remote buckets: any S3-compatible endpoint, written with `object_store`'s S3 client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig};

use crate::{BucketError, Destination, Metadata, RemoteBucketConfig, same_metadata};

fn store_error(error: impl fmt::Display) -> BucketError {
    BucketError::Store(error.to_string())
}

/// A bucket on an S3-compatible endpoint, written with `object_store`.
pub struct RemoteDestination {
    bucket: String,
    store: Arc<AmazonS3>,
}

impl RemoteDestination {
    /// After a conditional put found the key taken: `Ok(())` if the object there is this very
    /// file (our own earlier attempt, which a crash or timeout hid from us), else
    /// `AlreadyExists`.
    async fn same_as_existing(&self, key: &str, body: &Bytes, metadata: &Metadata) -> Result<(), BucketError> {
        let taken = || BucketError::AlreadyExists(format!("s3://{}/{key} (with different content)", self.bucket));
        let location = object_store::path::Path::from(key);
        let existing = match self.store.get(&location).await {
            Ok(existing) => existing,
            // Deleted in between: still not ours to write over; the caller retries.
            Err(object_store::Error::NotFound { .. }) => return Err(taken()),
            Err(error) => return Err(store_error(error)),
        };
        let found: Metadata = existing
            .attributes
            .iter()
            .filter_map(|(attribute, value)| match attribute {
                Attribute::Metadata(name) => Some((name.to_string(), value.to_string())),
                _ => None,
            })
            .collect();
        let existing_body = existing.bytes().await.map_err(store_error)?;
        if existing_body == *body && same_metadata(&found, metadata) {
            tracing::debug!(bucket = %self.bucket, key, "a delivered file was already written (a retry)");
            Ok(())
        } else {
            Err(taken())
        }
    }

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
        match self.store.put_opts(&location, PutPayload::from_bytes(body.clone()), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => self.same_as_existing(key, &body, metadata).await,
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
