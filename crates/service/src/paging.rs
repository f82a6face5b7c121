//! Opaque `NextToken`s for list operations that page by a sort key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{ErrorCode, ServiceError, ServiceResult};

const PREFIX: &str = "ot1:";

pub fn encode_text_token(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PREFIX}{last_key}"))
}

pub fn decode_text_token(token: &str) -> ServiceResult<String> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(PREFIX).map(str::to_owned))
        .ok_or_else(|| ServiceError::new(ErrorCode::InvalidNextToken, "The NextToken is not valid."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        assert_eq!(decode_text_token(&encode_text_token("arn:x")).unwrap(), "arn:x");
        assert_eq!(decode_text_token("!!!").unwrap_err().code, ErrorCode::InvalidNextToken);
        assert_eq!(decode_text_token("aGVsbG8").unwrap_err().code, ErrorCode::InvalidNextToken);
    }
}
