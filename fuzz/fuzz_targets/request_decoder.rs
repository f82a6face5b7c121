//! The AWS JSON 1.1 request decoder: `X-Amz-Target` then body, into a typed, validated input.
//! Input: the target header, a newline, the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentrail_api::protocol::operation_from_target;
use opentrail_service::decode_request;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (target, body) = data.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    let target = String::from_utf8_lossy(target);
    let operation = operation_from_target(&target).unwrap_or("LookupEvents");
    let _ = decode_request(operation, body);
});
