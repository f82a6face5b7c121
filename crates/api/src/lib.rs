//! The HTTP face of OpenTrail: AWS JSON 1.1 on `POST /`, SigV4 authentication, AWS-shaped
//! errors, `GET /health`, and the audited S3 endpoint on the same port.
//!
//! Requests are routed by the service their SigV4 credential scope names: `s3` goes to the S3
//! endpoint (the `s3s` service over the local buckets), everything else to the CloudTrail API.
//!
//! Invariants:
//! - No operation runs before its request is authenticated; authentication failures change
//!   nothing and are not recorded (there is no verified caller to record).
//! - Every error leaves as an AWS error type with a message and the right status; a panic or a
//!   bare 500 is a bug.

pub mod protocol;
pub mod sigv4;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use opentrail_model::{EventRecord, Principal, Region};
use opentrail_s3::{AuditSink, AuditedS3, PrincipalDirectory, SourceIp};
use opentrail_service::{CallInfo, Caller, ErrorCode, OpenTrail};
use s3s::service::S3Service;

use crate::sigv4::{AuthError, RequestToVerify, parse_authorization, verify};

/// The largest request body accepted (the largest CloudTrail request, PutEventSelectors with
/// 500 values of 2048 characters, fits well inside it).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

pub fn router(service: Arc<OpenTrail>) -> Router {
    let s3 = Arc::new(s3_service(&service));
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/", post(handle_json_call))
        .route("/PutAuditEvents", post(handle_put_audit_events))
        .fallback(handle_unknown_route)
        .layer(axum::middleware::from_fn_with_state(s3, route_s3_requests))
        .with_state(service)
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
    async fn record(&self, record: EventRecord) -> Result<(), String> {
        self.0.append_records(&[record]).await.map(drop).map_err(|error| error.to_string())
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

async fn route_s3_requests(
    State(s3): State<Arc<S3Service>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if signed_service(&parts).as_deref() != Some("s3") {
        return next.run(Request::from_parts(parts, body)).await;
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().cloned() {
        parts.extensions.insert(SourceIp(peer.ip().to_string()));
    }
    let request = http::Request::from_parts(parts, s3s::Body::http_body_unsync(body));
    match s3.call(request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            tracing::error!(?error, "the S3 endpoint failed");
            let mut response = Response::new(Body::from("internal error"));
            *response.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<OpenTrail>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(service).into_make_service_with_connect_info::<SocketAddr>();
    // Small responses leave at once instead of waiting out Nagle's delay for an ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
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
    let region = Region::parse(header.region).ok_or_else(|| {
        AuthError::BadSignature(format!("Credential should be scoped to a valid Region, not '{}'.", header.region))
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
            tracing::debug!(%error, "authentication failed");
            Err(auth_error_response(request_id, &error))
        }
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
