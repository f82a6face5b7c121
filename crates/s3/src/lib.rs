//! The audited S3 endpoint: the S3 protocol (from the `s3s` crate) implemented directly over the
//! local bucket store ([`LocalBuckets`], keys are data, never paths), with every call recorded as
//! a CloudTrail event the way AWS records S3.
//!
//! Bucket-level calls (CreateBucket, DeleteBucket, ListBuckets, GetBucketLocation, HeadBucket)
//! are management events; object calls and object listings are data events
//! (`eventCategory: Data`, `managementEvent: false`) with the object and bucket as resources and
//! the bytes transferred in `additionalEventData`. Trails choose them with data event selectors.
//!
//! Invariants:
//! - Every request is authenticated with SigV4 against the configured credentials (`s3s`
//!   checks the signature); anonymous requests are refused.
//! - A bucket belongs to the account that created it; other accounts get `AccessDenied`, and
//!   such a cross-account call is recorded in the caller's account and in the bucket owner's
//!   (`recipientAccountId` the owner, both copies sharing a `sharedEventID`), as AWS does.
//! - A bucket name nobody owns has no objects: every object call on it is `NoSuchBucket`.
//! - Delivered CloudTrail files are write-once: clients cannot replace or delete them unless
//!   the operator allowed it (`StoreOptions::allow_overwriting_delivered_files`).
//! - A call's answer leaves only after its record is durable in the journal; if recording
//!   fails the caller gets `InternalError`, never a silent unrecorded success.
//! - Trail delivery writes to the same store in-process, not through here, so delivered files
//!   are never recorded as events (no feedback loop).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use opentrail_buckets::{
    BucketError, ListQuery, LocalBuckets, NewObject, ObjectInfo, Replace, Written, valid_bucket_name,
};
use opentrail_control::{BucketRecord, ControlStore};
use opentrail_model::record::{EVENT_VERSION, format_event_time};
use opentrail_model::{EventRecord, Principal, Region};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, s3_error};
use serde_json::{Map, Value, json};

/// The client's address, put in the request extensions by the HTTP layer.
#[derive(Debug, Clone)]
pub struct SourceIp(pub String);

/// Who owns an access key, and its secret.
pub trait PrincipalDirectory: Send + Sync + 'static {
    fn principal(&self, access_key_id: &str) -> Option<(Principal, String)>;
}

/// Where call records go: the journal, durably.
#[async_trait]
pub trait AuditSink: Send + Sync + 'static {
    async fn record(&self, record: EventRecord) -> Result<(), RecordError>;
}

/// Why a call record could not be made durable.
#[derive(Debug)]
pub enum RecordError {
    /// The journal's queue is full: the caller should slow down (`SlowDown`, 503).
    Overloaded,
    Failed(String),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Overloaded => f.write_str("the journal's append queue is full"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

/// `s3s` authentication over the configured credentials.
pub struct Auth(pub Arc<dyn PrincipalDirectory>);

#[async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.principal(access_key) {
            Some((_, secret)) => Ok(SecretKey::from(secret)),
            None => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
            }
        }
    }
}

pub struct AuditedS3 {
    buckets: Arc<LocalBuckets>,
    store: Arc<dyn ControlStore>,
    principals: Arc<dyn PrincipalDirectory>,
    sink: Arc<dyn AuditSink>,
    default_region: Region,
}

/// How long a call that changed something waits for the journal to take its record, when the
/// journal is overloaded, before it answers `InternalError` (as the CloudTrail API's outbox does).
const CHANGE_RECORD_WAIT: Duration = Duration::from_secs(10);

/// What a call touched, for its record.
struct Call {
    principal: Principal,
    region: Region,
    event_name: &'static str,
    data_event: bool,
    read_only: bool,
    bucket: Option<String>,
    key: Option<String>,
    source_ip: String,
    user_agent: Option<String>,
    host: Option<String>,
    request_id: String,
    /// The owning account of a bucket the call targeted but the caller does not own.
    foreign_owners: Vec<opentrail_model::AccountId>,
}

/// The bucket and key an input names.
trait Target {
    fn bucket(&self) -> Option<&str>;
    fn key(&self) -> Option<&str> {
        None
    }
    fn bytes_in(&self) -> i64 {
        0
    }
}

trait Transferred {
    fn bytes_out(&self) -> i64 {
        0
    }
}

macro_rules! bucket_target {
    ($($input:ty),*) => {$(
        impl Target for $input { fn bucket(&self) -> Option<&str> { Some(&self.bucket) } }
    )*};
}
macro_rules! object_target {
    ($($input:ty),*) => {$(
        impl Target for $input {
            fn bucket(&self) -> Option<&str> { Some(&self.bucket) }
            fn key(&self) -> Option<&str> { Some(&self.key) }
        }
    )*};
}
macro_rules! object_upload_target {
    ($($input:ty),*) => {$(
        impl Target for $input {
            fn bucket(&self) -> Option<&str> { Some(&self.bucket) }
            fn key(&self) -> Option<&str> { Some(&self.key) }
            fn bytes_in(&self) -> i64 { self.content_length.unwrap_or(0) }
        }
    )*};
}
macro_rules! no_bytes_out {
    ($($output:ty),*) => {$( impl Transferred for $output {} )*};
}

bucket_target!(
    CreateBucketInput,
    DeleteBucketInput,
    HeadBucketInput,
    GetBucketLocationInput,
    ListObjectsInput,
    ListObjectsV2Input,
    DeleteObjectsInput
);
object_target!(
    GetObjectInput,
    DeleteObjectInput,
    HeadObjectInput,
    CreateMultipartUploadInput,
    CompleteMultipartUploadInput,
    AbortMultipartUploadInput,
    ListPartsInput,
    CopyObjectInput
);
object_upload_target!(PutObjectInput, UploadPartInput);
no_bytes_out!(
    DeleteBucketOutput,
    HeadBucketOutput,
    ListObjectsOutput,
    ListObjectsV2Output,
    DeleteObjectsOutput,
    DeleteObjectOutput,
    HeadObjectOutput,
    CreateMultipartUploadOutput,
    CompleteMultipartUploadOutput,
    AbortMultipartUploadOutput,
    ListPartsOutput,
    CopyObjectOutput,
    PutObjectOutput,
    UploadPartOutput,
    CreateBucketOutput,
    ListBucketsOutput,
    GetBucketLocationOutput
);

impl Transferred for GetObjectOutput {
    fn bytes_out(&self) -> i64 {
        self.content_length.unwrap_or(0)
    }
}

fn header(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn error_code(error: &S3Error) -> String {
    error.code().as_str().to_owned()
}

impl AuditedS3 {
    pub fn new(
        buckets: Arc<LocalBuckets>,
        store: Arc<dyn ControlStore>,
        principals: Arc<dyn PrincipalDirectory>,
        sink: Arc<dyn AuditSink>,
        default_region: Region,
    ) -> Self {
        Self { buckets, store, principals, sink, default_region }
    }

    /// Authenticates the caller and opens the call's record.
    fn begin<T: Target>(
        &self,
        req: &S3Request<T>,
        event_name: &'static str,
        data_event: bool,
        read_only: bool,
    ) -> S3Result<Call> {
        let Some(credentials) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "Anonymous requests are not allowed; sign the request with SigV4."));
        };
        let Some((principal, _)) = self.principals.principal(&credentials.access_key) else {
            return Err(s3_error!(InvalidAccessKeyId));
        };
        let region =
            req.region.as_ref().and_then(|r| Region::parse(r.as_str())).unwrap_or_else(|| self.default_region.clone());
        Ok(Call {
            principal,
            region,
            event_name,
            data_event,
            read_only,
            bucket: req.input.bucket().map(str::to_owned),
            key: req.input.key().map(str::to_owned),
            source_ip: req.extensions.get::<SourceIp>().map_or_else(|| "127.0.0.1".to_owned(), |ip| ip.0.clone()),
            user_agent: header(&req.headers, "user-agent"),
            host: header(&req.headers, "host"),
            request_id: uuid::Uuid::new_v4().simple().to_string().to_uppercase()[..16].to_owned(),
            foreign_owners: Vec::new(),
        })
    }

    /// Checks that the caller's account owns `bucket`.
    async fn check_owner(&self, call: &mut Call, bucket: &str) -> S3Result<BucketRecord> {
        let store = self.store.clone();
        let name = bucket.to_owned();
        let record = tokio::task::spawn_blocking(move || store.bucket(&name))
            .await
            .map_err(S3Error::internal_error)?
            .map_err(S3Error::internal_error)?;
        match record {
            Some(record) if record.account == call.principal.account => Ok(record),
            Some(record) => {
                if !call.foreign_owners.contains(&record.account) {
                    call.foreign_owners.push(record.account);
                }
                Err(s3_error!(AccessDenied, "Access Denied"))
            }
            None => Err(s3_error!(NoSuchBucket, "The specified bucket does not exist")),
        }
    }

    /// Records the call, then hands back its outcome (or `InternalError` if the record could
    /// not be made durable).
    async fn finish<O: Transferred>(
        &self,
        call: Call,
        result: S3Result<S3Response<O>>,
        bytes_in: i64,
    ) -> S3Result<S3Response<O>> {
        let bytes_out = result.as_ref().map_or(0, |response| response.output.bytes_out());
        let outcome = result.as_ref().map(|_| ()).map_err(|e| (error_code(e), e.message().unwrap_or("").to_owned()));
        // A call on another account's bucket is that account's event too (AWS delivers
        // cross-account S3 events to both), linked by one sharedEventID.
        let shared = (!call.foreign_owners.is_empty()).then(|| uuid::Uuid::new_v4().to_string());
        let mut records = vec![build_s3_record(&call, outcome.clone(), bytes_in, bytes_out, None, shared.as_deref())];
        for owner in &call.foreign_owners {
            records.push(build_s3_record(&call, outcome.clone(), bytes_in, bytes_out, Some(owner), shared.as_deref()));
        }
        // A call that changed something must be recorded: when the journal is overloaded it
        // waits for room a while longer. One that changed nothing can be refused (`SlowDown`)
        // and retried by the client.
        let changed = !call.read_only && result.is_ok();
        let deadline = tokio::time::Instant::now() + CHANGE_RECORD_WAIT;
        for record in records {
            loop {
                match self.sink.record(record.clone()).await {
                    Ok(()) => break,
                    Err(RecordError::Overloaded) if changed && tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(RecordError::Overloaded) if !changed => {
                        return Err(s3_error!(SlowDown, "Please reduce your request rate."));
                    }
                    Err(error) => {
                        tracing::error!(%error, event = call.event_name, "an S3 call could not be recorded");
                        return Err(s3_error!(InternalError, "The call could not be recorded."));
                    }
                }
            }
        }
        result
    }

    /// Runs an operation on a bucket the caller owns, recording it.
    async fn owned<I: Target, O: Transferred, F>(
        &self,
        req: S3Request<I>,
        event_name: &'static str,
        data_event: bool,
        read_only: bool,
        run: F,
    ) -> S3Result<S3Response<O>>
    where
        F: AsyncFnOnce(&LocalBuckets, String, S3Request<I>) -> S3Result<S3Response<O>>,
    {
        let mut call = self.begin(&req, event_name, data_event, read_only)?;
        let bytes_in = req.input.bytes_in();
        let bucket = call.bucket.clone().unwrap_or_default();
        let result = match self.check_owner(&mut call, &bucket).await {
            Ok(_) => run(&self.buckets, call.principal.account.as_str().to_owned(), req).await,
            Err(error) => Err(error),
        };
        self.finish(call, result, bytes_in).await
    }
}

/// The CloudTrail record of one S3 call.
fn build_s3_record(
    call: &Call,
    outcome: Result<(), (String, String)>,
    bytes_in: i64,
    bytes_out: i64,
    owner_copy: Option<&opentrail_model::AccountId>,
    shared_event_id: Option<&str>,
) -> EventRecord {
    let recipient = owner_copy.unwrap_or(&call.principal.account);
    let account = recipient.as_str();
    let bucket_owner = call.foreign_owners.first().unwrap_or(&call.principal.account).as_str();
    let mut parameters = Map::new();
    if let Some(bucket) = &call.bucket {
        parameters.insert("bucketName".into(), json!(bucket));
    }
    parameters.insert("Host".into(), json!(call.host.clone().unwrap_or_default()));
    if let Some(key) = &call.key {
        parameters.insert("key".into(), json!(key));
    }
    let mut record = Map::new();
    record.insert("eventVersion".into(), json!(EVENT_VERSION));
    let identity = call.principal.user_identity();
    match owner_copy {
        // The bucket owner sees the caller as another AWS account, as S3 records it.
        Some(_) => record.insert(
            "userIdentity".into(),
            json!({
                "type": "AWSAccount",
                "principalId": identity.get("principalId").cloned().unwrap_or(Value::Null),
                "accountId": call.principal.account.as_str(),
            }),
        ),
        None => record.insert("userIdentity".into(), identity),
    };
    record.insert("eventTime".into(), json!(format_event_time(Utc::now())));
    record.insert("eventSource".into(), json!("s3.amazonaws.com"));
    record.insert("eventName".into(), json!(call.event_name));
    record.insert("awsRegion".into(), json!(call.region.as_str()));
    record.insert("sourceIPAddress".into(), json!(call.source_ip));
    if let Some(agent) = &call.user_agent {
        record.insert("userAgent".into(), json!(agent.chars().take(1024).collect::<String>()));
    }
    if let Err((code, message)) = &outcome {
        record.insert("errorCode".into(), json!(code));
        record.insert("errorMessage".into(), json!(message.chars().take(1024).collect::<String>()));
    }
    record.insert("requestParameters".into(), Value::Object(parameters));
    record.insert("responseElements".into(), Value::Null);
    record.insert(
        "additionalEventData".into(),
        json!({
            "SignatureVersion": "SigV4",
            "AuthenticationMethod": "AuthHeader",
            "bytesTransferredIn": bytes_in,
            "bytesTransferredOut": bytes_out,
        }),
    );
    record.insert("requestID".into(), json!(call.request_id));
    record.insert("eventID".into(), json!(uuid::Uuid::new_v4().to_string()));
    record.insert("readOnly".into(), json!(call.read_only));
    let mut resources = Vec::new();
    if let (Some(bucket), Some(key)) = (&call.bucket, &call.key) {
        resources.push(json!({"type": "AWS::S3::Object", "ARN": format!("arn:aws:s3:::{bucket}/{key}")}));
    }
    if let Some(bucket) = &call.bucket {
        resources.push(
            json!({"accountId": bucket_owner, "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}),
        );
    }
    if !resources.is_empty() {
        record.insert("resources".into(), json!(resources));
    }
    record.insert("eventType".into(), json!("AwsApiCall"));
    record.insert("managementEvent".into(), json!(!call.data_event));
    record.insert("recipientAccountId".into(), json!(account));
    if let Some(shared) = shared_event_id {
        record.insert("sharedEventID".into(), json!(shared));
    }
    record.insert("eventCategory".into(), json!(if call.data_event { "Data" } else { "Management" }));
    EventRecord::new(recipient.clone(), call.region.clone(), Value::Object(record))
        .expect("an S3 record has eventTime and eventName")
}

impl Target for ListBucketsInput {
    fn bucket(&self) -> Option<&str> {
        None
    }
}

/// The S3 error a store failure answers with.
fn s3_failure(error: BucketError) -> S3Error {
    match error {
        BucketError::NoSuchBucket(_) => s3_error!(NoSuchBucket, "The specified bucket does not exist"),
        BucketError::AlreadyExists(_) => {
            s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
        }
        BucketError::InvalidBucketName(_) => s3_error!(InvalidBucketName, "The specified bucket is not valid."),
        BucketError::InvalidKey(message) => s3_error!(KeyTooLongError, "{message}"),
        BucketError::NoSuchKey(_) => s3_error!(NoSuchKey, "The specified key does not exist."),
        BucketError::BucketNotEmpty(_) => s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty"),
        BucketError::NoSuchUpload(_) => s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        BucketError::InvalidPart(message) => s3_error!(InvalidPart, "{message}"),
        BucketError::InvalidPartOrder => {
            s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number."
            )
        }
        BucketError::BadDigest(message) => s3_error!(BadDigest, "{message}"),
        BucketError::WriteOnce(message) => s3_error!(AccessDenied, "Access Denied: {message}"),
        error @ (BucketError::Store(_) | BucketError::Io { .. }) => {
            tracing::error!(%error, "the bucket store failed");
            s3_error!(InternalError, "We encountered an internal error. Please try again.")
        }
    }
}

fn timestamp(ms: i64) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| Timestamp::from(std::time::SystemTime::from(t)))
}

fn etag(value: &str) -> Option<ETag> {
    Some(ETag::Strong(value.to_owned()))
}

fn metadata_of(info: &ObjectInfo) -> Option<s3s::dto::Metadata> {
    (!info.metadata.is_empty()).then(|| info.metadata.iter().cloned().collect())
}

fn new_metadata(metadata: Option<s3s::dto::Metadata>) -> opentrail_buckets::Metadata {
    let mut pairs: opentrail_buckets::Metadata = metadata.unwrap_or_default().into_iter().collect();
    pairs.sort();
    pairs
}

/// The [`BodyCheck`] of an upload's input: PutObject and UploadPart carry the same checksum
/// fields, moved out of the input here.
macro_rules! body_check {
    ($input:ident, $trailers:expr) => {
        BodyCheck::new(
            $input.content_md5.as_deref(),
            $input.checksum_algorithm.as_ref(),
            $input.checksum_crc32,
            $input.checksum_crc32c,
            $input.checksum_sha1,
            $input.checksum_sha256,
            $input.checksum_crc64nvme,
            $trailers,
        )
    };
}

/// Verifies a written body against what the request claimed (Content-MD5, `x-amz-checksum-*` in
/// headers or trailers) before the store publishes it.
struct BodyCheck {
    content_md5: Option<Vec<u8>>,
    expected: Checksum,
    hasher: Arc<std::sync::Mutex<s3s::checksum::ChecksumHasher>>,
    trailers: Option<s3s::TrailingHeaders>,
}

impl BodyCheck {
    #[allow(clippy::too_many_arguments)]
    fn new(
        content_md5: Option<&str>,
        algorithm: Option<&ChecksumAlgorithm>,
        crc32: Option<String>,
        crc32c: Option<String>,
        sha1: Option<String>,
        sha256: Option<String>,
        crc64nvme: Option<String>,
        trailers: Option<s3s::TrailingHeaders>,
    ) -> S3Result<Self> {
        use base64::Engine as _;
        let content_md5 = match content_md5 {
            Some(text) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?,
            ),
            None => None,
        };
        let mut hasher = s3s::checksum::ChecksumHasher::default();
        let wants = |value: &Option<String>, name: &str| {
            value.is_some() || algorithm.is_some_and(|a| a.as_str().eq_ignore_ascii_case(name))
        };
        if wants(&crc32, "CRC32") {
            hasher.crc32 = Some(Default::default());
        }
        if wants(&crc32c, "CRC32C") {
            hasher.crc32c = Some(Default::default());
        }
        if wants(&sha1, "SHA1") {
            hasher.sha1 = Some(Default::default());
        }
        if wants(&sha256, "SHA256") {
            hasher.sha256 = Some(Default::default());
        }
        if wants(&crc64nvme, "CRC64NVME") {
            hasher.crc64nvme = Some(Default::default());
        }
        let expected = Checksum {
            checksum_crc32: crc32,
            checksum_crc32c: crc32c,
            checksum_sha1: sha1,
            checksum_sha256: sha256,
            checksum_crc64nvme: crc64nvme,
            ..Default::default()
        };
        Ok(Self { content_md5, expected, hasher: Arc::new(std::sync::Mutex::new(hasher)), trailers })
    }

    /// The body, hashed as it streams.
    fn hashed(
        &self,
        body: StreamingBlob,
    ) -> impl futures::Stream<Item = Result<bytes::Bytes, s3s::StdError>> + Send + use<> {
        let hasher = self.hasher.clone();
        futures::TryStreamExt::inspect_ok(body, move |chunk| {
            if let Ok(mut hasher) = hasher.lock() {
                hasher.update(chunk);
            }
        })
    }

    fn verify(self, written: &Written) -> Result<(), BucketError> {
        if let Some(md5) = &self.content_md5
            && md5.as_slice() != written.md5
        {
            return Err(BucketError::BadDigest("The Content-MD5 you specified did not match what we received.".into()));
        }
        let hasher = std::mem::take(&mut *self.hasher.lock().map_err(|_| BucketError::Store("poisoned".into()))?);
        let computed = hasher.finalize();
        let mut expected = self.expected;
        if let Some(trailers) = self.trailers.and_then(|t| t.take()) {
            let value = |name: &str| trailers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            expected.checksum_crc32 = expected.checksum_crc32.or(value("x-amz-checksum-crc32"));
            expected.checksum_crc32c = expected.checksum_crc32c.or(value("x-amz-checksum-crc32c"));
            expected.checksum_sha1 = expected.checksum_sha1.or(value("x-amz-checksum-sha1"));
            expected.checksum_sha256 = expected.checksum_sha256.or(value("x-amz-checksum-sha256"));
            expected.checksum_crc64nvme = expected.checksum_crc64nvme.or(value("x-amz-checksum-crc64nvme"));
        }
        let pairs = [
            ("CRC32", &expected.checksum_crc32, &computed.checksum_crc32),
            ("CRC32C", &expected.checksum_crc32c, &computed.checksum_crc32c),
            ("SHA1", &expected.checksum_sha1, &computed.checksum_sha1),
            ("SHA256", &expected.checksum_sha256, &computed.checksum_sha256),
            ("CRC64NVME", &expected.checksum_crc64nvme, &computed.checksum_crc64nvme),
        ];
        for (name, claimed, actual) in pairs {
            if let Some(claimed) = claimed
                && Some(claimed) != actual.as_ref()
            {
                return Err(BucketError::BadDigest(format!(
                    "The {name} you specified did not match the calculated checksum."
                )));
            }
        }
        Ok(())
    }
}

fn delete_marker_free(key: String) -> DeletedObject {
    DeletedObject { key: Some(key), ..Default::default() }
}

#[async_trait]
impl S3 for AuditedS3 {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let call = self.begin(&req, "CreateBucket", false, false)?;
        let bucket = req.input.bucket.clone();
        let region = req
            .input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            .map(|l| l.as_str().to_owned())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| call.region.as_str().to_owned());
        let result = async {
            if !valid_bucket_name(&bucket) {
                return Err(s3_error!(InvalidBucketName, "The specified bucket is not valid."));
            }
            let record = BucketRecord {
                name: bucket.clone(),
                account: call.principal.account.clone(),
                region,
                created_ms: Utc::now().timestamp_millis(),
            };
            let store = self.store.clone();
            let inserted = tokio::task::spawn_blocking(move || {
                let inserted = store.insert_bucket(&record)?;
                Ok::<_, opentrail_control::StoreError>((inserted, store.bucket(&record.name)?))
            })
            .await
            .map_err(S3Error::internal_error)?
            .map_err(S3Error::internal_error)?;
            let owner = call.principal.account.as_str();
            match inserted {
                (true, _) => {}
                (false, Some(existing)) if existing.account == call.principal.account => {
                    // A crash between the two steps of an earlier call may have left the
                    // bucket only in the control store; finish it.
                    self.buckets.create_bucket(&bucket, Some(owner)).await.map_err(s3_failure)?;
                    return Err(s3_error!(BucketAlreadyOwnedByYou));
                }
                (false, _) => return Err(s3_error!(BucketAlreadyExists)),
            }
            self.buckets.create_bucket(&bucket, Some(owner)).await.map_err(s3_failure)?;
            Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
        }
        .await;
        self.finish(call, result, 0).await
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let store = self.store.clone();
        self.owned(req, "DeleteBucket", false, false, async move |buckets, _, req| {
            let name = req.input.bucket.clone();
            // The store refuses a bucket that still has objects, in the same transaction that
            // deletes it; only then is the name released for others.
            match buckets.delete_bucket(&name).await {
                Ok(()) | Err(BucketError::NoSuchBucket(_)) => {}
                Err(error) => return Err(s3_failure(error)),
            }
            tokio::task::spawn_blocking(move || store.delete_bucket(&name))
                .await
                .map_err(S3Error::internal_error)?
                .map_err(S3Error::internal_error)?;
            Ok(S3Response::new(DeleteBucketOutput {}))
        })
        .await
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let call = self.begin(&req, "ListBuckets", false, true)?;
        let store = self.store.clone();
        let account = call.principal.account.clone();
        let result = tokio::task::spawn_blocking(move || store.list_buckets(&account))
            .await
            .map_err(S3Error::internal_error)
            .and_then(|r| r.map_err(S3Error::internal_error))
            .map(|records| {
                let buckets = records
                    .into_iter()
                    .map(|r| Bucket {
                        name: Some(r.name),
                        creation_date: timestamp(r.created_ms),
                        bucket_region: Some(r.region),
                    })
                    .collect();
                S3Response::new(ListBucketsOutput {
                    buckets: Some(buckets),
                    owner: Some(Owner { display_name: None, id: Some(call.principal.account.as_str().to_owned()) }),
                    ..Default::default()
                })
            });
        self.finish(call, result, 0).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let mut call = self.begin(&req, "GetBucketLocation", false, true)?;
        let bucket = req.input.bucket.clone();
        let result = self.check_owner(&mut call, &bucket).await.map(|record| {
            // S3 reports us-east-1 as an empty location.
            let location = (record.region != "us-east-1").then(|| BucketLocationConstraint::from(record.region));
            S3Response::new(GetBucketLocationOutput { location_constraint: location })
        });
        self.finish(call, result, 0).await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.owned(req, "HeadBucket", false, true, async |buckets, _, req| {
            match buckets.bucket_exists(&req.input.bucket) {
                true => Ok(S3Response::new(HeadBucketOutput::default())),
                false => Err(s3_error!(NoSuchBucket, "The specified bucket does not exist")),
            }
        })
        .await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        self.owned(req, "ListObjects", true, true, async |buckets, _, req| {
            let input = req.input;
            let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
            let query = ListQuery {
                prefix: input.prefix.clone().unwrap_or_default(),
                delimiter: input.delimiter.clone(),
                after: input.marker.clone().filter(|m| !m.is_empty()),
                max_keys: max_keys as usize,
            };
            let page = buckets.list_objects(&input.bucket, query).await.map_err(s3_failure)?;
            let next_marker = (page.truncated && input.delimiter.is_some()).then(|| page.last.clone()).flatten();
            Ok(S3Response::new(ListObjectsOutput {
                name: Some(input.bucket),
                prefix: Some(input.prefix.unwrap_or_default()),
                marker: input.marker,
                max_keys: Some(max_keys),
                is_truncated: Some(page.truncated),
                contents: Some(page.objects.iter().map(object_entry).collect()),
                common_prefixes: Some(
                    page.common_prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect(),
                ),
                delimiter: input.delimiter,
                next_marker,
                ..Default::default()
            }))
        })
        .await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.owned(req, "ListObjectsV2", true, true, async |buckets, _, req| {
            let input = req.input;
            let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
            // The token is the last key or prefix returned, hex-encoded (keys may hold any
            // character; the token must survive a query string).
            let after = match &input.continuation_token {
                Some(token) => Some(
                    hex::decode(token)
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))?,
                ),
                None => input.start_after.clone().filter(|s| !s.is_empty()),
            };
            let query = ListQuery {
                prefix: input.prefix.clone().unwrap_or_default(),
                delimiter: input.delimiter.clone(),
                after,
                max_keys: max_keys as usize,
            };
            let page = buckets.list_objects(&input.bucket, query).await.map_err(s3_failure)?;
            let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
            let next = page.truncated.then(|| page.last.as_deref().map(hex::encode)).flatten();
            Ok(S3Response::new(ListObjectsV2Output {
                name: Some(input.bucket),
                prefix: Some(input.prefix.unwrap_or_default()),
                max_keys: Some(max_keys),
                key_count: Some(key_count),
                continuation_token: input.continuation_token,
                is_truncated: Some(page.truncated),
                next_continuation_token: next,
                contents: Some(page.objects.iter().map(object_entry).collect()),
                common_prefixes: Some(
                    page.common_prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect(),
                ),
                delimiter: input.delimiter,
                start_after: input.start_after,
                ..Default::default()
            }))
        })
        .await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.owned(req, "GetObject", true, true, async |buckets, _, req| {
            let input = req.input;
            let Some((info, mut file)) = buckets.open_object(&input.bucket, &input.key).await.map_err(s3_failure)?
            else {
                return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
            };
            let (start, length, content_range) = match &input.range {
                None => (0, info.size, None),
                Some(range) => {
                    let span = range.check(info.size)?;
                    let range_text = format!("bytes {}-{}/{}", span.start, span.end - 1, info.size);
                    (span.start, span.end - span.start, Some(range_text))
                }
            };
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).map_err(S3Error::internal_error)?;
            let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), length);
            let body = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
            Ok(S3Response::new(GetObjectOutput {
                body: Some(StreamingBlob::wrap(body)),
                content_length: Some(i64::try_from(length).unwrap_or(i64::MAX)),
                content_range,
                accept_ranges: Some("bytes".into()),
                last_modified: timestamp(info.created_ms),
                metadata: metadata_of(&info),
                content_type: info.content_type.clone(),
                e_tag: etag(&info.etag),
                ..Default::default()
            }))
        })
        .await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        self.owned(req, "HeadObject", true, true, async |buckets, _, req| {
            let input = req.input;
            let Some(info) = buckets.head_object(&input.bucket, &input.key).await.map_err(s3_failure)? else {
                return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
            };
            Ok(S3Response::new(HeadObjectOutput {
                content_length: Some(i64::try_from(info.size).unwrap_or(i64::MAX)),
                accept_ranges: Some("bytes".into()),
                last_modified: timestamp(info.created_ms),
                metadata: metadata_of(&info),
                content_type: info.content_type.clone(),
                e_tag: etag(&info.etag),
                ..Default::default()
            }))
        })
        .await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        self.owned(req, "PutObject", true, false, async |buckets, account, req| {
            let trailers = req.trailing_headers;
            let input = req.input;
            let Some(body) = input.body else { return Err(s3_error!(IncompleteBody)) };
            let check = body_check!(input, trailers)?;
            let replace = match &input.if_none_match {
                Some(condition) if condition.is_any() => Replace::IfAbsent,
                _ => Replace::Client,
            };
            let attributes = NewObject {
                content_type: input.content_type.clone(),
                metadata: new_metadata(input.metadata),
                owner: Some(account),
            };
            let stream = check.hashed(body);
            let info = buckets
                .put_object(&input.bucket, &input.key, stream, attributes, replace, move |written| {
                    check.verify(written)
                })
                .await
                .map_err(s3_failure)?;
            Ok(S3Response::new(PutObjectOutput { e_tag: etag(&info.etag), ..Default::default() }))
        })
        .await
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.owned(req, "DeleteObject", true, false, async |buckets, _, req| {
            buckets.delete_object(&req.input.bucket, &req.input.key).await.map_err(s3_failure)?;
            Ok(S3Response::new(DeleteObjectOutput::default()))
        })
        .await
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.owned(req, "DeleteObjects", true, false, async |buckets, _, req| {
            let input = req.input;
            let quiet = input.delete.quiet.unwrap_or(false);
            let (mut deleted, mut errors) = (Vec::new(), Vec::new());
            // Every entry is a key of the request's bucket, whatever characters it holds.
            for object in input.delete.objects {
                match buckets.delete_object(&input.bucket, &object.key).await {
                    Ok(_) => {
                        if !quiet {
                            deleted.push(delete_marker_free(object.key));
                        }
                    }
                    Err(error) => {
                        let error = s3_failure(error);
                        errors.push(Error {
                            code: Some(error.code().as_str().to_owned()),
                            key: Some(object.key),
                            message: error.message().map(str::to_owned),
                            version_id: None,
                        });
                    }
                }
            }
            Ok(S3Response::new(DeleteObjectsOutput {
                deleted: Some(deleted),
                errors: Some(errors),
                ..Default::default()
            }))
        })
        .await
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let source = match &req.input.copy_source {
            CopySource::Bucket { bucket, key, .. } => Some((bucket.to_string(), key.to_string())),
            _ => None,
        };
        let mut call = self.begin(&req, "CopyObject", true, false)?;
        let result = async {
            let Some((source_bucket, source_key)) = source else {
                return Err(s3_error!(NotImplemented, "Copying from an access point is not supported."));
            };
            // Both ends must be the caller's; the source key is data within its bucket.
            self.check_owner(&mut call, &source_bucket).await?;
            let destination = call.bucket.clone().unwrap_or_default();
            self.check_owner(&mut call, &destination).await?;
            let input = req.input;
            let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
            let attributes = replace.then(|| NewObject {
                content_type: input.content_type.clone(),
                metadata: new_metadata(input.metadata.clone()),
                owner: None,
            });
            let owner = Some(call.principal.account.as_str().to_owned());
            let info = self
                .buckets
                .copy_object((&source_bucket, &source_key), (&input.bucket, &input.key), attributes, owner)
                .await
                .map_err(s3_failure)?;
            Ok(S3Response::new(CopyObjectOutput {
                copy_object_result: Some(CopyObjectResult {
                    e_tag: etag(&info.etag),
                    last_modified: timestamp(info.created_ms),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        }
        .await;
        self.finish(call, result, 0).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.owned(req, "CreateMultipartUpload", true, false, async |buckets, account, req| {
            let input = req.input;
            let attributes = NewObject {
                content_type: input.content_type.clone(),
                metadata: new_metadata(input.metadata),
                owner: Some(account),
            };
            let id = buckets.create_upload(&input.bucket, &input.key, attributes).await.map_err(s3_failure)?;
            Ok(S3Response::new(CreateMultipartUploadOutput {
                bucket: Some(input.bucket),
                key: Some(input.key),
                upload_id: Some(id),
                ..Default::default()
            }))
        })
        .await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.owned(req, "UploadPart", true, false, async |buckets, _, req| {
            let trailers = req.trailing_headers;
            let input = req.input;
            self.upload_of(buckets, &input.bucket, &input.key, &input.upload_id).await?;
            let Some(body) = input.body else { return Err(s3_error!(IncompleteBody)) };
            let check = body_check!(input, trailers)?;
            let stream = check.hashed(body);
            let part = buckets
                .upload_part(&input.upload_id, input.part_number, stream, move |written| check.verify(written))
                .await
                .map_err(s3_failure)?;
            Ok(S3Response::new(UploadPartOutput { e_tag: etag(&part.etag), ..Default::default() }))
        })
        .await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.owned(req, "CompleteMultipartUpload", true, false, async |buckets, _, req| {
            let input = req.input;
            self.upload_of(buckets, &input.bucket, &input.key, &input.upload_id).await?;
            let parts: Vec<(i32, Option<String>)> = input
                .multipart_upload
                .and_then(|upload| upload.parts)
                .unwrap_or_default()
                .into_iter()
                .map(|part| {
                    let tag = part.e_tag.map(|tag| match tag {
                        ETag::Strong(value) | ETag::Weak(value) => value,
                    });
                    (part.part_number.unwrap_or(0), tag)
                })
                .collect();
            let info = buckets
                .complete_upload((&input.bucket, &input.key), &input.upload_id, &parts)
                .await
                .map_err(s3_failure)?;
            Ok(S3Response::new(CompleteMultipartUploadOutput {
                bucket: Some(input.bucket),
                key: Some(input.key),
                e_tag: etag(&info.etag),
                ..Default::default()
            }))
        })
        .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.owned(req, "AbortMultipartUpload", true, false, async |buckets, _, req| {
            let input = req.input;
            self.upload_of(buckets, &input.bucket, &input.key, &input.upload_id).await?;
            buckets.abort_upload(&input.upload_id).await.map_err(s3_failure)?;
            Ok(S3Response::new(AbortMultipartUploadOutput::default()))
        })
        .await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.owned(req, "ListParts", true, true, async |buckets, _, req| {
            let input = req.input;
            self.upload_of(buckets, &input.bucket, &input.key, &input.upload_id).await?;
            let parts = buckets.list_parts(&input.upload_id).await.map_err(s3_failure)?;
            Ok(S3Response::new(ListPartsOutput {
                bucket: Some(input.bucket),
                key: Some(input.key),
                upload_id: Some(input.upload_id),
                is_truncated: Some(false),
                parts: Some(
                    parts
                        .into_iter()
                        .map(|part| Part {
                            e_tag: etag(&part.etag),
                            last_modified: timestamp(part.created_ms),
                            part_number: Some(part.number),
                            size: Some(i64::try_from(part.size).unwrap_or(i64::MAX)),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }))
        })
        .await
    }
}

fn object_entry(info: &ObjectInfo) -> Object {
    Object {
        key: Some(info.key.clone()),
        size: Some(i64::try_from(info.size).unwrap_or(i64::MAX)),
        e_tag: etag(&info.etag),
        last_modified: timestamp(info.created_ms),
        storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
        ..Default::default()
    }
}

impl AuditedS3 {
    /// The upload an upload-ID call names: it must be for this very bucket and key (whose owner
    /// the caller is, checked before), else it does not exist as far as the caller can tell.
    async fn upload_of(&self, buckets: &LocalBuckets, bucket: &str, key: &str, id: &str) -> S3Result<()> {
        match buckets.upload(id).await.map_err(s3_failure)? {
            Some(upload) if upload.bucket == bucket && upload.key == key => Ok(()),
            _ => Err(s3_failure(BucketError::NoSuchUpload(id.to_owned()))),
        }
    }
}

/// Builds the `s3s` service: SigV4 auth over `principals`, our audited implementation.
pub fn service(s3: AuditedS3, principals: Arc<dyn PrincipalDirectory>) -> s3s::service::S3Service {
    let mut builder = s3s::service::S3ServiceBuilder::new(s3);
    builder.set_auth(Auth(principals));
    builder.build()
}
