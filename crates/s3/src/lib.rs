//! The audited S3 endpoint: the S3 protocol (from the `s3s` crate) over the local bucket store,
//! with every call recorded as a CloudTrail event the way AWS records S3.
//!
//! Bucket-level calls (CreateBucket, DeleteBucket, ListBuckets, GetBucketLocation, HeadBucket)
//! are management events; object calls and object listings are data events
//! (`eventCategory: Data`, `managementEvent: false`) with the object and bucket as resources and
//! the bytes transferred in `additionalEventData`. Trails choose them with data event selectors.
//!
//! Invariants:
//! - Every request is authenticated with SigV4 against the configured credentials (`s3s`
//!   checks the signature); anonymous requests are refused.
//! - A bucket belongs to the account that created it; other accounts get `AccessDenied`.
//! - A call's answer leaves only after its record is durable in the journal; if recording
//!   fails the caller gets `InternalError`, never a silent unrecorded success.
//! - Trail delivery writes to the same store in-process, not through here, so delivered files
//!   are never recorded as events (no feedback loop).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use opentrail_buckets::{FileSystem, LocalBuckets, valid_bucket_name};
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
    async fn record(&self, record: EventRecord) -> Result<(), String>;
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
    inner: Arc<FileSystem>,
    buckets: Arc<LocalBuckets>,
    store: Arc<dyn ControlStore>,
    principals: Arc<dyn PrincipalDirectory>,
    sink: Arc<dyn AuditSink>,
    default_region: Region,
}

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
        Self { inner: buckets.file_system(), buckets, store, principals, sink, default_region }
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
        })
    }

    /// Checks that the caller's account owns `bucket`.
    async fn check_owner(&self, call: &Call, bucket: &str) -> S3Result<BucketRecord> {
        let store = self.store.clone();
        let name = bucket.to_owned();
        let record = tokio::task::spawn_blocking(move || store.bucket(&name))
            .await
            .map_err(S3Error::internal_error)?
            .map_err(S3Error::internal_error)?;
        match record {
            Some(record) if record.account == call.principal.account => Ok(record),
            Some(_) => Err(s3_error!(AccessDenied, "Access Denied")),
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
        let record = build_s3_record(&call, outcome, bytes_in, bytes_out);
        if let Err(error) = self.sink.record(record).await {
            tracing::error!(%error, "an S3 call could not be recorded");
            return Err(s3_error!(InternalError, "The call could not be recorded."));
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
        F: AsyncFnOnce(&FileSystem, S3Request<I>) -> S3Result<S3Response<O>>,
    {
        let call = self.begin(&req, event_name, data_event, read_only)?;
        let bytes_in = req.input.bytes_in();
        let bucket = call.bucket.clone().unwrap_or_default();
        let result = match self.check_owner(&call, &bucket).await {
            Ok(_) => run(&self.inner, req).await,
            Err(error) => Err(error),
        };
        self.finish(call, result, bytes_in).await
    }
}

/// The CloudTrail record of one S3 call.
fn build_s3_record(call: &Call, outcome: Result<(), (String, String)>, bytes_in: i64, bytes_out: i64) -> EventRecord {
    let account = call.principal.account.as_str();
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
    record.insert("userIdentity".into(), call.principal.user_identity());
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
        resources
            .push(json!({"accountId": account, "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}));
    }
    if !resources.is_empty() {
        record.insert("resources".into(), json!(resources));
    }
    record.insert("eventType".into(), json!("AwsApiCall"));
    record.insert("managementEvent".into(), json!(!call.data_event));
    record.insert("recipientAccountId".into(), json!(account));
    record.insert("eventCategory".into(), json!(if call.data_event { "Data" } else { "Management" }));
    EventRecord::new(call.principal.account.clone(), call.region.clone(), Value::Object(record))
        .expect("an S3 record has eventTime and eventName")
}

impl Target for ListBucketsInput {
    fn bucket(&self) -> Option<&str> {
        None
    }
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
            match inserted {
                (true, _) => {}
                (false, Some(existing)) if existing.account == call.principal.account => {
                    return Err(s3_error!(BucketAlreadyOwnedByYou));
                }
                (false, _) => return Err(s3_error!(BucketAlreadyExists)),
            }
            // The folder may survive from a crash between the two steps of an earlier call.
            std::fs::create_dir_all(self.buckets.bucket_path(&bucket)).map_err(S3Error::internal_error)?;
            Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{bucket}")) }))
        }
        .await;
        self.finish(call, result, 0).await
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let store = self.store.clone();
        let path = self.buckets.bucket_path(&req.input.bucket);
        self.owned(req, "DeleteBucket", false, false, async move |_, req| {
            let empty = std::fs::read_dir(&path).map(|mut entries| entries.next().is_none()).unwrap_or(true);
            if !empty {
                return Err(s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty"));
            }
            let name = req.input.bucket.clone();
            tokio::task::spawn_blocking(move || store.delete_bucket(&name))
                .await
                .map_err(S3Error::internal_error)?
                .map_err(S3Error::internal_error)?;
            let _ = std::fs::remove_dir(&path);
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
                        creation_date: chrono::DateTime::from_timestamp_millis(r.created_ms)
                            .map(|t| Timestamp::from(std::time::SystemTime::from(t))),
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
        let call = self.begin(&req, "GetBucketLocation", false, true)?;
        let bucket = req.input.bucket.clone();
        let result = self.check_owner(&call, &bucket).await.map(|record| {
            // S3 reports us-east-1 as an empty location.
            let location = (record.region != "us-east-1").then(|| BucketLocationConstraint::from(record.region));
            S3Response::new(GetBucketLocationOutput { location_constraint: location })
        });
        self.finish(call, result, 0).await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.owned(req, "HeadBucket", false, true, async |fs, req| fs.head_bucket(req).await).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        self.owned(req, "ListObjects", true, true, async |fs, req| fs.list_objects(req).await).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.owned(req, "ListObjectsV2", true, true, async |fs, req| fs.list_objects_v2(req).await).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.owned(req, "GetObject", true, true, async |fs, req| fs.get_object(req).await).await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        self.owned(req, "HeadObject", true, true, async |fs, req| fs.head_object(req).await).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        self.owned(req, "PutObject", true, false, async |fs, req| fs.put_object(req).await).await
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.owned(req, "DeleteObject", true, false, async |fs, req| fs.delete_object(req).await).await
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.owned(req, "DeleteObjects", true, false, async |fs, req| fs.delete_objects(req).await).await
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let source_bucket = match &req.input.copy_source {
            CopySource::Bucket { bucket, .. } => Some(bucket.to_string()),
            _ => None,
        };
        let call = self.begin(&req, "CopyObject", true, false)?;
        let result = async {
            let Some(source_bucket) = source_bucket else {
                return Err(s3_error!(NotImplemented, "Copying from an access point is not supported."));
            };
            self.check_owner(&call, &source_bucket).await?;
            self.check_owner(&call, call.bucket.as_deref().unwrap_or_default()).await?;
            self.inner.copy_object(req).await
        }
        .await;
        self.finish(call, result, 0).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.owned(req, "CreateMultipartUpload", true, false, async |fs, req| fs.create_multipart_upload(req).await)
            .await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        self.owned(req, "UploadPart", true, false, async |fs, req| fs.upload_part(req).await).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.owned(req, "CompleteMultipartUpload", true, false, async |fs, req| fs.complete_multipart_upload(req).await)
            .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.owned(req, "AbortMultipartUpload", true, false, async |fs, req| fs.abort_multipart_upload(req).await).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.owned(req, "ListParts", true, true, async |fs, req| fs.list_parts(req).await).await
    }
}

/// Builds the `s3s` service: SigV4 auth over `principals`, our audited implementation.
pub fn service(s3: AuditedS3, principals: Arc<dyn PrincipalDirectory>) -> s3s::service::S3Service {
    let mut builder = s3s::service::S3ServiceBuilder::new(s3);
    builder.set_auth(Auth(principals));
    builder.build()
}
