//! The AWS JSON 1.1 protocol: operation names from `X-Amz-Target`, and responses shaped the
//! way AWS shapes them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use opentrail_service::{ErrorCode, ServiceError};
use serde_json::{Value, json};

pub const JSON_1_1: &str = "application/x-amz-json-1.1";
const SHORT_PREFIX: &str = "CloudTrail_20131101.";
const LONG_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";

/// The operation named by an `X-Amz-Target` header, in either form clients send:
/// `CloudTrail_20131101.<Op>` (Smithy SDKs) or the long botocore form.
pub fn operation_from_target(target: &str) -> Option<&str> {
    let operation = target.strip_prefix(LONG_PREFIX).or_else(|| target.strip_prefix(SHORT_PREFIX))?;
    let valid = (1..=128).contains(&operation.len()) && operation.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(operation)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_target_forms_are_accepted() {
        assert_eq!(operation_from_target("CloudTrail_20131101.ListTrails"), Some("ListTrails"));
        assert_eq!(
            operation_from_target("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.CreateTrail"),
            Some("CreateTrail")
        );
        assert_eq!(operation_from_target("DynamoDB_20120810.ListTables"), None);
        assert_eq!(operation_from_target("CloudTrail_20131101."), None);
        assert_eq!(operation_from_target("CloudTrail_20131101.Bad Name"), None);
    }
}
