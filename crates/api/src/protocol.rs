//! The AWS JSON 1.1 protocol: responses shaped the way AWS shapes them (operation names from
//! `X-Amz-Target` are read by `opentrail-operations`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opentrail_service::{ErrorCode, ServiceError};
use serde_json::{Value, json};

pub const JSON_1_1: &str = "application/x-amz-json-1.1";
/// Operation names come from `X-Amz-Target`; the rule is the request decoder's, declared with it.
pub use opentrail_service::operation_from_target;

fn with_common_headers(mut response: Response, request_id: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(JSON_1_1));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

pub fn success(request_id: &str, output: &Value) -> Response {
    with_common_headers((StatusCode::OK, output.to_string()).into_response(), request_id)
}

/// `{"__type": ..., "message": ...}` with the error's status and an `X-Amzn-ErrorType` header.
pub fn error(request_id: &str, error: &ServiceError) -> Response {
    let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({ "__type": error.code.aws_type(), "message": error.message });
    let mut response = with_common_headers((status, body.to_string()).into_response(), request_id);
    if let Ok(value) = HeaderValue::from_str(error.code.aws_type()) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

pub fn error_of(request_id: &str, code: ErrorCode, message: impl Into<String>) -> Response {
    error(request_id, &ServiceError::new(code, message))
}
