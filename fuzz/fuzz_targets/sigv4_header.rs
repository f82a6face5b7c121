//! The SigV4 `Authorization` header parser, and verification of whatever it accepts.
//! Input: the header value, a newline, the request path, a newline, the body.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use opentrail_sigv4::{RequestToVerify, parse_amz_date, parse_authorization, verify};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let header = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or("/");
    let body = parts.next().unwrap_or_default();
    let _ = parse_amz_date(header);
    if let Ok(parsed) = parse_authorization(header) {
        let request = RequestToVerify {
            method: "POST",
            path_and_query: path,
            headers: vec![("host", "localhost:4590"), ("x-amz-date", "20250101T000000Z"), ("x-amz-target", path)],
            body: body.as_bytes(),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600);
        let _ = verify(&request, &parsed, "secret", now);
    }
});
