//! From bytes to a typed input: the AWS JSON 1.1 body rules and the `X-Amz-Target` header.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ErrorCode, ServiceError, ServiceResult};

const SHORT_PREFIX: &str = "CloudTrail_20131101.";
const LONG_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";

/// The operation named by an `X-Amz-Target` header, in either form clients send:
/// `CloudTrail_20131101.<Op>` (Smithy SDKs) or the long botocore form.
pub fn operation_from_target(target: &str) -> Option<&str> {
    let operation = target.strip_prefix(LONG_PREFIX).or_else(|| target.strip_prefix(SHORT_PREFIX))?;
    let valid = (1..=128).contains(&operation.len()) && operation.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(operation)
}

/// Parses a request body: empty means `{}`; anything but a JSON object is a SerializationException.
pub fn parse_body(body: &[u8]) -> Result<Value, ServiceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ServiceError::new(ErrorCode::Serialization, "The request body must be a JSON object.")),
        Err(error) => {
            Err(ServiceError::new(ErrorCode::Serialization, format!("The request body is not valid JSON: {error}")))
        }
    }
}

/// Turns a JSON object into an operation's input. A missing required member is a
/// ValidationException; a member of the wrong type is a SerializationException.
pub fn decode_input<T: DeserializeOwned>(input: Value) -> ServiceResult<T> {
    serde_json::from_value(input).map_err(|error| {
        let text = error.to_string();
        match text.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
            Some(member) => ServiceError::new(
                ErrorCode::Validation,
                format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
            ),
            None => ServiceError::new(ErrorCode::Serialization, format!("Invalid request: {text}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::NameInput;

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

    #[test]
    fn body_errors() {
        assert_eq!(parse_body(b"").unwrap(), json!({}));
        assert_eq!(parse_body(b"{").unwrap_err().code, ErrorCode::Serialization);
        assert_eq!(parse_body(b"[1]").unwrap_err().code, ErrorCode::Serialization);
        let missing: ServiceResult<NameInput> = decode_input(json!({}));
        assert_eq!(missing.err().unwrap().code, ErrorCode::Validation);
        let wrong: ServiceResult<NameInput> = decode_input(json!({"Name": 5}));
        assert_eq!(wrong.err().unwrap().code, ErrorCode::Serialization);
    }
}
