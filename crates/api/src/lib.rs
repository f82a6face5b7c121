//! The HTTP face of OpenTrail: AWS JSON 1.1 on `POST /`, SigV4 authentication, AWS-shaped
//! errors, and `GET /health`.
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
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use opentrail_model::{Principal, Region};
use opentrail_service::{CallInfo, Caller, ErrorCode, OpenTrail};

use crate::sigv4::{AuthError, RequestToVerify, parse_authorization, verify};

/// The largest request body accepted (the largest CloudTrail request, PutEventSelectors with
/// 500 values of 2048 characters, fits well inside it).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

pub fn router(service: Arc<OpenTrail>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/", post(handle_json_call))
        .fallback(handle_unknown_route)
        .with_state(service)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<OpenTrail>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(service).into_make_service_with_connect_info::<SocketAddr>();
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

async fn handle_json_call(
    State(service): State<Arc<OpenTrail>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let request_id = new_request_id();
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return protocol::error_of(
            &request_id,
            ErrorCode::RequestEntityTooLarge,
            format!("The request body exceeds the limit of {MAX_BODY_BYTES} bytes."),
        );
    };
    let caller = match authenticate(&service, &parts, &body, "cloudtrail") {
        Ok(caller) => caller,
        Err(error) => {
            tracing::debug!(%error, "authentication failed");
            return auth_error_response(&request_id, &error);
        }
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
