//! The HTTP face of OpenTrail: AWS JSON 1.1 on `POST /`, SigV4 authentication, AWS-shaped
//! errors, `GET /health`, `GET /opentrail/status` (the journal consumers, signed), and the
//! audited S3 endpoint on the same port.
//!
//! Requests are routed by the service their SigV4 credential scope names: `s3` goes to the S3
//! endpoint (the `s3s` service over the local buckets), everything else to the CloudTrail API.
//!
//! Invariants:
//! - No operation runs before its request is authenticated; authentication failures change
//!   nothing and are not recorded (there is no verified caller to record).
//! - Every error leaves as an AWS error type with a message and the right status; a panic or a
//!   bare 500 is a bug.

pub mod net;
pub mod protocol;
/// SigV4 verification lives in its own crate, which the fuzz targets build without the API's
/// query engine; `opentrail_api::sigv4` paths keep working.
pub use opentrail_sigv4 as sigv4;

pub use net::HttpLimits;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};
use bytes::Bytes;
use opentrail_model::{EventRecord, Principal, Region};
use opentrail_s3::{AuditSink, AuditedS3, PrincipalDirectory, RecordError, SourceIp};
use opentrail_service::{CallInfo, Caller, ErrorCode, OpenTrail};
use s3s::service::S3Service;
use s3s::{S3Error, S3ErrorCode};

use crate::sigv4::{AuthError, RequestToVerify, parse_authorization, verify};

/// The largest request body accepted (the largest CloudTrail request, PutEventSelectors with
/// 500 values of 2048 characters, fits well inside it).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The longest validity a presigned URL may claim, as S3 allows (7 days).
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

pub fn router(service: Arc<OpenTrail>) -> Router {
    let s3 = S3Endpoint { s3s: Arc::new(s3_service(&service)), service: service.clone() };
    Router::new()
        .route("/health", only(get(|| async { "ok" }), "GET"))
        .route("/", only(post(handle_json_call), "POST"))
        .route("/PutAuditEvents", only(post(handle_put_audit_events), "POST"))
        .route("/opentrail/status", only(get(handle_status), "GET"))
        .fallback(handle_unknown_route)
        .layer(axum::middleware::from_fn_with_state(s3, route_s3_requests))
        .with_state(service)
}

/// A route whose other methods get an AWS-shaped 405 instead of axum's empty one.
fn only(route: MethodRouter<Arc<OpenTrail>>, allowed: &'static str) -> MethodRouter<Arc<OpenTrail>> {
    route.fallback(move |request: Request| async move {
        let message = format!("{} is not supported on {}; use {allowed}.", request.method(), request.uri().path());
        let mut response = protocol::error_of(&new_request_id(), ErrorCode::UnknownOperation, message);
        *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
        response.headers_mut().insert("allow", axum::http::HeaderValue::from_static(allowed));
        response
    })
}

/// The S3 endpoint: the s3s service, and what it needs to refuse requests before they reach it.
#[derive(Clone)]
struct S3Endpoint {
    s3s: Arc<S3Service>,
    service: Arc<OpenTrail>,
}

/// Access keys for the S3 endpoint: the same credentials as the CloudTrail API.
struct CredentialsDirectory(Arc<OpenTrail>);

impl PrincipalDirectory for CredentialsDirectory {
    fn principal(&self, access_key_id: &str) -> Option<(Principal, String)> {
        let (principal, secret) = self.0.credentials.lookup(access_key_id)?;
        Some((principal.clone(), secret.expose().to_owned()))
    }
}

/// S3 call records go to the journal like every other event.
struct JournalSink(Arc<OpenTrail>);

#[async_trait::async_trait]
impl AuditSink for JournalSink {
    async fn record(&self, record: EventRecord) -> Result<(), RecordError> {
        self.0.append_records(&[record]).await.map(drop).map_err(|error| match error {
            opentrail_journal::JournalError::Overloaded => RecordError::Overloaded,
            other => RecordError::Failed(other.to_string()),
        })
    }
}

fn s3_service(service: &Arc<OpenTrail>) -> S3Service {
    let principals: Arc<dyn PrincipalDirectory> = Arc::new(CredentialsDirectory(service.clone()));
    let audited = AuditedS3::new(
        service.buckets().clone(),
        service.store().clone(),
        principals.clone(),
        Arc::new(JournalSink(service.clone())),
        service.credentials.default_region.clone(),
    );
    opentrail_s3::service(audited, principals)
}

/// The service a request's SigV4 credential scope names, from the `Authorization` header or a
/// presigned URL's `X-Amz-Credential`.
fn signed_service(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) {
        return parse_authorization(value).ok().map(|header| header.service.to_owned());
    }
    let query = parts.uri.query()?;
    let credential = query.split('&').find_map(|pair| pair.strip_prefix("X-Amz-Credential="))?;
    let decoded = credential.replace("%2F", "/").replace("%2f", "/");
    decoded.split('/').nth(3).map(str::to_owned)
}

/// A query parameter, percent-decoded.
fn query_parameter(parts: &Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// What the S3 endpoint refuses before s3s runs anything, with S3's own codes and messages: a
/// Region CloudTrail does not have (S3 names the Region it expected), and a presigned URL that
/// claims more than 7 days.
fn s3_precheck(service: &OpenTrail, parts: &Parts) -> Result<(), S3Error> {
    let expecting = service.credentials.default_region.as_str();
    if let Some(value) = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) {
        if let Ok(header) = parse_authorization(value)
            && !service.credentials.serves_region(header.region)
        {
            return Err(S3Error::with_message(
                S3ErrorCode::AuthorizationHeaderMalformed,
                format!(
                    "The authorization header is malformed; the region '{}' is wrong; expecting '{expecting}'",
                    header.region
                ),
            ));
        }
        return Ok(());
    }
    let query_error = |message: String| S3Error::with_message(S3ErrorCode::AuthorizationQueryParametersError, message);
    if let Some(credential) = query_parameter(parts, "X-Amz-Credential")
        && let Some(region) = credential.split('/').nth(2)
        && !service.credentials.serves_region(region)
    {
        return Err(query_error(format!(
            "Error parsing the X-Amz-Credential parameter; the region '{region}' is wrong; expecting '{expecting}'"
        )));
    }
    if let Some(expires) = query_parameter(parts, "X-Amz-Expires") {
        match expires.parse::<i64>() {
            Ok(seconds) if seconds < 0 => return Err(query_error("X-Amz-Expires must be non-negative".into())),
            Ok(seconds) if seconds.unsigned_abs() > MAX_PRESIGNED_EXPIRES_SECS => {
                return Err(query_error(format!(
                    "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES_SECS}"
                )));
            }
            Ok(_) => {}
            Err(_) => return Err(query_error("X-Amz-Expires should be a number".into())),
        }
    }
    Ok(())
}

/// An S3 error as S3 sends it: XML with the code, message and request ID, and S3's status.
fn s3_error_response(mut error: S3Error) -> Response {
    let request_id = new_request_id();
    error.set_request_id(request_id.clone());
    let mut response = match error.to_http_response() {
        Ok(response) => response.map(Body::new),
        // Serialising a code and two strings cannot fail; answer in the same shape regardless.
        Err(_) => {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>{request_id}</RequestId></Error>"
            );
            let mut response = Response::new(Body::from(xml));
            *response.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/xml"));
            response
        }
    };
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amz-request-id", value);
    }
    response
}

async fn route_s3_requests(State(s3): State<S3Endpoint>, request: Request, next: axum::middleware::Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if signed_service(&parts).as_deref() != Some("s3") {
        return next.run(Request::from_parts(parts, body)).await;
    }
    if let Err(error) = s3_precheck(&s3.service, &parts) {
        tracing::debug!(code = error.code().as_str(), "S3 request refused before authentication");
        return s3_error_response(error);
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned() {
        parts.extensions.insert(SourceIp(peer.ip().to_string()));
    }
    let request = http::Request::from_parts(parts, s3s::Body::http_body_unsync(body));
    match s3.s3s.call(request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            // s3s answers every S3 error itself; an error here is its own failure (for
            // instance a response it could not serialise), so it leaves as S3's InternalError.
            tracing::error!(?error, "the S3 endpoint failed");
            s3_error_response(S3Error::with_message(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            ))
        }
    }
}

/// Serves until `shutdown` resolves, within `limits` (the connection cap lowered to what the
/// open-file limit allows, after raising that limit to its hard maximum).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<OpenTrail>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let file_limit = net::raise_file_limit();
    let max_connections = net::effective_max_connections(limits.max_connections, file_limit);
    if max_connections < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            max_connections,
            open_file_limit = file_limit,
            "the connection cap is lowered to fit the open-file limit"
        );
    }
    net::serve_router(listener, router(service), HttpLimits { max_connections, ..limits }, shutdown).await
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn handle_unknown_route(request: Request) -> Response {
    let message = format!("No operation at {} {}.", request.method(), request.uri().path());
    let mut response = protocol::error_of(&new_request_id(), ErrorCode::UnknownOperation, message);
    *response.status_mut() = axum::http::StatusCode::NOT_FOUND;
    response
}

fn auth_error_response(request_id: &str, error: &AuthError) -> Response {
    let code = match error {
        AuthError::Missing => ErrorCode::MissingAuthenticationToken,
        AuthError::Incomplete(_) => ErrorCode::IncompleteSignature,
        AuthError::UnknownAccessKey => ErrorCode::UnrecognizedClient,
        AuthError::BadSignature(_) => ErrorCode::InvalidSignature,
    };
    protocol::error_of(request_id, code, error.to_string())
}

/// Verifies the request's signature for `service_name` and returns the caller.
fn authenticate(service: &OpenTrail, parts: &Parts, body: &[u8], service_name: &str) -> Result<Caller, AuthError> {
    let authorization = parts
        .headers
        .get("authorization")
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Incomplete("The Authorization header is not ASCII.".into()))?;
    let header = parse_authorization(authorization)?;
    if header.service != service_name {
        return Err(AuthError::BadSignature(format!(
            "Credential should be scoped to correct service: '{service_name}'."
        )));
    }
    // AWS's answer for a Region the endpoint does not serve; checked before the key, so a
    // made-up Region never reaches an operation (nor opens an Event History scope or a digest
    // chain nobody will read).
    let region = Region::parse(header.region).filter(|region| service.credentials.serves_region(region.as_str()));
    let region = region.ok_or_else(|| {
        AuthError::BadSignature(format!("Credential should be scoped to a valid region, not '{}'. ", header.region))
    })?;
    let (principal, secret): &(Principal, _) =
        service.credentials.lookup(header.access_key_id).ok_or(AuthError::UnknownAccessKey)?;
    let headers =
        parts.headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let request = RequestToVerify { method: parts.method.as_str(), path_and_query, headers, body };
    verify(&request, &header, secret.expose(), SystemTime::now())?;
    Ok(Caller { principal: principal.clone(), region })
}

/// Most of an oversize body that is read (and dropped) before answering: a client still sending
/// would otherwise see a broken pipe instead of the 413.
const OVERSIZE_DRAIN_BYTES: usize = 16 * MAX_BODY_BYTES;

/// The body if it fits in [`MAX_BODY_BYTES`]; `None` (after draining a bounded amount) if not.
async fn read_limited_body(body: Body) -> Option<Bytes> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut collected = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return None };
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len();
        if seen > OVERSIZE_DRAIN_BYTES {
            return None;
        }
        if seen <= MAX_BODY_BYTES {
            collected.extend_from_slice(&data);
        }
    }
    (seen <= MAX_BODY_BYTES).then(|| Bytes::from(collected))
}

/// Reads a request's body within the size limit and authenticates it for `service_name`; the
/// error case is the response to send.
async fn authenticated(
    service: &OpenTrail,
    request: Request<Body>,
    service_name: &str,
    request_id: &str,
) -> Result<(Parts, Bytes, Caller), Response> {
    let (parts, body) = request.into_parts();
    let Some(body) = read_limited_body(body).await else {
        return Err(protocol::error_of(
            request_id,
            ErrorCode::RequestEntityTooLarge,
            format!("The request body exceeds the limit of {MAX_BODY_BYTES} bytes."),
        ));
    };
    match authenticate(service, &parts, &body, service_name) {
        Ok(caller) => Ok((parts, body, caller)),
        Err(error) => {
            let response = auth_error_response(request_id, &error);
            // Only the error type: the message can quote parts of the Authorization header.
            let code = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::debug!(code, "authentication failed");
            Err(response)
        }
    }
}

/// `GET /opentrail/status`: the journal consumers' status (state, restarts, lag) as the
/// caller's account may see it, signed like a CloudTrail call (SigV4, service `cloudtrail`). Not
/// recorded as an event: it is OpenTrail's own operations view, not a CloudTrail API call, and
/// recording every poll would keep the consumers it reports on from ever being caught up.
async fn handle_status(State(service): State<Arc<OpenTrail>>, request: Request<Body>) -> Response {
    let request_id = new_request_id();
    let caller = match authenticated(&service, request, "cloudtrail", &request_id).await {
        Ok((_, _, caller)) => caller,
        Err(response) => return response,
    };
    match service.consumer_status(&caller.principal.account).await {
        Ok(output) => protocol::success(&request_id, &output),
        Err(error) => protocol::error(&request_id, &error),
    }
}

/// `cloudtrail-data` `PutAuditEvents` (REST-JSON, SigV4 service `cloudtrail-data`).
async fn handle_put_audit_events(State(service): State<Arc<OpenTrail>>, request: Request<Body>) -> Response {
    let request_id = new_request_id();
    let (parts, body, caller) = match authenticated(&service, request, "cloudtrail-data", &request_id).await {
        Ok(authenticated) => authenticated,
        Err(response) => return response,
    };
    let parameters: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|query| url::form_urlencoded::parse(query.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let parameter = |name: &str| parameters.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    match service.put_audit_events(&caller, parameter("channelArn"), parameter("externalId"), &body).await {
        Ok(output) => protocol::success(&request_id, &output),
        Err(error) => protocol::error(&request_id, &error),
    }
}

async fn handle_json_call(
    State(service): State<Arc<OpenTrail>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let request_id = new_request_id();
    let (parts, body, caller) = match authenticated(&service, request, "cloudtrail", &request_id).await {
        Ok(authenticated) => authenticated,
        Err(response) => return response,
    };
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let operation = protocol::operation_from_target(target).unwrap_or(target);
    let info = CallInfo {
        caller,
        source_ip: peer.ip().to_string(),
        user_agent: parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_owned),
        request_id: request_id.clone(),
    };
    match service.handle_call(info, operation, &body).await {
        Ok(Ok(output)) => protocol::success(&request_id, &output),
        Ok(Err(error)) | Err(error) => protocol::error(&request_id, &error),
    }
}
