//! The AWS JSON 1.1 request decoder: `X-Amz-Target` then body, into a typed, validated input.
//! Input: the target header, a newline, the body. Builds on `opentrail-operations` alone (no
//! DataFusion, no storage).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentrail_operations::{decode_request, operation_from_target};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (target, body) = data.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    let target = String::from_utf8_lossy(target);
    let operation = operation_from_target(&target).unwrap_or("LookupEvents");
    if let Ok(request) = decode_request(operation, body) {
        // A decoded request names the operation it was decoded for.
        assert_eq!(request.operation().name(), operation);
    }
});
