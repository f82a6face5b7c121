//! Issue 9's HTTP findings against the real binary: connection floods and slow headers, made-up
//! Regions, over-long presigned URLs, error shapes on the shared port, and what the log holds.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use common::*;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Status, headers and body text of a plain request.
fn request(method: &str, url: &str, headers: &[(String, String)]) -> (u16, Vec<(String, String)>, String) {
    let request = http::Request::builder().method(method).uri(url);
    let request = headers.iter().fold(request, |request, (name, value)| request.header(name, value));
    let mut response = agent().run(request.body(()).unwrap()).expect("the server answers");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    (status, headers, response.body_mut().read_to_string().unwrap())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A request to the S3 endpoint signed the way S3 clients sign: in headers, or presigned in the
/// query for `presigned_for`. Returns the URL, the headers to send and the signature.
fn s3_signed(
    server: &TestServer,
    method: &str,
    path: &str,
    key: (&str, &str),
    region: &str,
    presigned_for: Option<Duration>,
) -> (String, Vec<(String, String)>, String) {
    let url = format!("{}{path}", server.endpoint);
    let host = server.endpoint.trim_start_matches("http://").to_owned();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    if let Some(expires) = presigned_for {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
    }
    let identity = Credentials::new(key.0, key.1, None, None, "tests").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut headers = vec![("host".to_owned(), host)];
    if presigned_for.is_none() {
        headers.push(("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
    }
    let signable = SignableRequest::new(
        method,
        &url,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let output = sign(signable, &params).unwrap();
    let signature = output.signature().to_owned();
    let (signed_headers, query) = output.into_parts().0.into_parts();
    let mut url = url;
    if !query.is_empty() {
        let encoded: Vec<String> =
            query.iter().map(|(name, value)| format!("{name}={}", percent_encode(value))).collect();
        url = format!("{url}?{}", encoded.join("&"));
    }
    for signed in signed_headers {
        headers.push((signed.name().to_owned(), signed.value().to_owned()));
    }
    headers.retain(|(name, _)| name != "host");
    (url, headers, signature)
}

/// RFC 3986 encoding of a query value (everything but the unreserved characters).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn s3_client_in(server: &TestServer, key: (&str, &str), region: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(aws_sdk_s3::config::Region::new(region.to_owned()))
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(key.0, key.1, None, None, "tests"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Finding 6: 300 idle unauthenticated connections exhausted the server's file descriptors and
/// it stopped accepting. Here the server runs with only 256 descriptors, 500 connections sit
/// idle, and a signed SDK call must still be answered.
#[test]
fn idle_connections_do_not_stop_the_server() {
    let server = TestServer::start_custom(Launch { open_files: Some(256), ..Launch::default() });
    let address = server.endpoint.trim_start_matches("http://").to_owned();
    let idle: Vec<TcpStream> = (0..500).map(|_| TcpStream::connect(&address).expect("loopback connect")).collect();
    let started = Instant::now();
    let trails = runtime().block_on(client(&server, ROOT_A, "us-east-1").list_trails().send());
    assert!(trails.is_ok(), "a signed call during the flood failed: {trails:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "answered only after {:?}", started.elapsed());
    drop(idle);
}

/// Finding 6 (slowloris): a client that sends its header a byte at a time is cut off once the
/// header-read timeout has passed, instead of holding the connection for ever.
#[test]
fn a_slow_header_connection_is_closed_after_the_header_timeout() {
    let server =
        TestServer::start_custom(Launch { env: &[("OPENTRAIL_HEADER_READ_TIMEOUT", "1s")], ..Launch::default() });
    let mut stream = TcpStream::connect(server.endpoint.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let started = Instant::now();
    let closed_after = loop {
        assert!(started.elapsed() < Duration::from_secs(8), "the slow connection is still open");
        // One more header byte now and then, never the blank line that ends the header.
        if stream.write_all(b"X").is_err() {
            break started.elapsed();
        }
        let mut buffer = [0u8; 512];
        match stream.read(&mut buffer) {
            Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            // End of stream, a reset, or hyper's answer: the server gave up on the header.
            _ => break started.elapsed(),
        }
    };
    assert!(closed_after >= Duration::from_millis(900), "closed too early: {closed_after:?}");
    // The server still serves everyone else.
    let (status, _, _) = request("GET", &format!("{}/health", server.endpoint), &[]);
    assert_eq!(status, 200);
}

/// Finding 7: any well-formed Region was accepted. CloudTrail's Regions and the configured extra
/// ones are served; a made-up one is refused before anything runs, with AWS's answers: the JSON
/// API's InvalidSignatureException, S3's AuthorizationHeaderMalformed (header-signed) and
/// AuthorizationQueryParametersError (presigned).
#[test]
fn a_made_up_region_is_refused() {
    let server =
        TestServer::start_custom(Launch { root_config: "extra_regions = [\"lab-north-1\"]", ..Launch::default() });
    let target = Some("CloudTrail_20131101.ListTrails");
    let fake = Signing { region: "us-fake-1", ..Signing::now() };
    let refused = raw_call(&server, target, b"{}", Some(fake));
    assert_eq!(refused.error_type(), "InvalidSignatureException", "{:?}", refused.body);
    let message = refused.body["message"].as_str().unwrap();
    assert!(message.starts_with("Credential should be scoped to a valid region, not 'us-fake-1'"), "{message}");

    runtime().block_on(async {
        let error = client(&server, ROOT_A, "eu-fake-7").create_trail().name("t").s3_bucket_name("test-bucket").send();
        assert_eq!(error_code(error.await.unwrap_err()), "InvalidSignatureException");
        // Real and configured Regions are served.
        for region in ["ap-southeast-7", "lab-north-1"] {
            client(&server, ROOT_A, region).list_trails().send().await.unwrap();
        }
        let s3_error = s3_client_in(&server, ROOT_A, "us-fake-1").list_buckets().send().await.unwrap_err();
        assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&s3_error), Some("AuthorizationHeaderMalformed"));
        s3_client_in(&server, ROOT_A, "lab-north-1").list_buckets().send().await.unwrap();
    });

    let (url, headers, _) =
        s3_signed(&server, "GET", "/test-bucket", ROOT_A, "us-fake-1", Some(Duration::from_secs(60)));
    let (status, _, body) = request("GET", &url, &headers);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>AuthorizationQueryParametersError</Code>"), "{body}");
    assert!(body.contains("the region &apos;us-fake-1&apos; is wrong; expecting &apos;us-east-1&apos;"), "{body}");
}

/// Finding 7: presigned URLs valid for more than 7 days were accepted. S3 refuses them with
/// AuthorizationQueryParametersError; a 7-day URL still works.
#[test]
fn a_presigned_url_valid_for_eight_days_is_refused() {
    let server = TestServer::start();
    runtime().block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        s3.put_object().bucket("test-bucket").key("report.txt").body(b"hello".to_vec().into()).send().await.unwrap();
    });
    let day = Duration::from_secs(24 * 3600);
    let (url, headers, _) = s3_signed(&server, "GET", "/test-bucket/report.txt", ROOT_A, "us-east-1", Some(7 * day));
    let (status, _, body) = request("GET", &url, &headers);
    assert_eq!((status, body.as_str()), (200, "hello"));

    let (url, headers, _) = s3_signed(&server, "GET", "/test-bucket/report.txt", ROOT_A, "us-east-1", Some(8 * day));
    let (status, response_headers, body) = request("GET", &url, &headers);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>AuthorizationQueryParametersError</Code>"), "{body}");
    assert!(body.contains("X-Amz-Expires must be less than a week (in seconds) that is 604800"), "{body}");
    assert!(header(&response_headers, "x-amz-request-id").is_some());
}

/// Finding 7: some errors on the shared port were not AWS-shaped (a bare 405, JSON for S3
/// callers). The JSON side answers unknown paths and methods with AWS JSON errors; anything
/// signed for S3 gets S3's XML.
#[test]
fn unknown_paths_and_methods_get_aws_shaped_errors() {
    let server = TestServer::start();
    let json_error = |method: &str, path: &str, status: u16| {
        let (got, headers, body) = request(method, &format!("{}{path}", server.endpoint), &[]);
        assert_eq!(got, status, "{method} {path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{method} {path}: {body}"));
        assert_eq!(body["__type"], "UnknownOperationException", "{method} {path}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(header(&headers, "x-amzn-errortype"), Some("UnknownOperationException"));
        assert_eq!(header(&headers, "content-type"), Some("application/x-amz-json-1.1"));
        assert!(header(&headers, "x-amzn-requestid").is_some());
        headers
    };
    json_error("GET", "/nothing-here", 404);
    json_error("DELETE", "/PutAuditEvents/x", 404);
    let headers = json_error("GET", "/", 405);
    assert_eq!(header(&headers, "allow"), Some("POST"));
    json_error("PUT", "/PutAuditEvents", 405);
    json_error("POST", "/health", 405);

    // Signed for S3: S3's XML, whatever the failure.
    for (path, status, code) in [("/no-such-bucket", 404, "NoSuchBucket"), ("/test-bucket/missing", 404, "NoSuchKey")] {
        let (url, headers, _) = s3_signed(&server, "GET", path, ROOT_A, "us-east-1", None);
        let (got, _, body) = request("GET", &url, &headers);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(&format!("<Code>{code}</Code>")), "{path}: {body}");
    }
    let (url, headers, _) = s3_signed(&server, "GET", "/test-bucket", (ROOT_A.0, "wrong-secret"), "us-east-1", None);
    let (got, _, body) = request("GET", &url, &headers);
    assert_eq!(got, 403, "{body}");
    assert!(body.contains("<Code>SignatureDoesNotMatch</Code>"), "{body}");
}

/// Finding 7 and "what to build" 4: at debug level, signed Authorization headers and presigned
/// URLs were logged. With RUST_LOG=trace the log must hold no secret and no signature after
/// signed, presigned and wrongly signed calls to both APIs.
#[test]
fn no_secrets_or_signatures_in_a_trace_level_log() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("server.log");
    let server = TestServer::start_custom(Launch {
        env: &[("RUST_LOG", "trace")],
        stderr_to: Some(log.clone()),
        ..Launch::default()
    });
    let mut signatures = Vec::new();
    // The CloudTrail API: a good call and one signed with the wrong secret.
    let target = Some("CloudTrail_20131101.ListTrails");
    for key in [ROOT_A, (ROOT_A.0, "not-the-secret")] {
        let headers = signed_headers(&server, target, b"{}", Some(Signing { key, ..Signing::now() }));
        let authorization = header(&headers, "authorization").unwrap();
        signatures.push(authorization.rsplit("Signature=").next().unwrap().to_owned());
        send(&server, &headers, b"{}");
    }
    // The S3 endpoint: header-signed, presigned, and wrongly signed (s3s would log the
    // signature it expected, which is the right one).
    for (key, presigned) in [(ROOT_A, None), (ROOT_A, Some(Duration::from_secs(300))), ((ROOT_A.0, "nope"), None)] {
        let (url, headers, signature) = s3_signed(&server, "GET", "/test-bucket", key, "us-east-1", presigned);
        let (status, _, body) = request("GET", &url, &headers);
        assert!(status == 200 || status == 403, "{status} {body}");
        signatures.push(signature);
    }
    runtime().block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        s3.put_object().bucket("test-bucket").key("k").body(b"v".to_vec().into()).send().await.unwrap();
    });
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    // The log did run at trace level: our own debug events are in it.
    assert!(text.contains("authentication failed"), "no debug output at RUST_LOG=trace:\n{text}");
    for secret in [ROOT_A.1, ALICE_A.1, ROOT_B.1, "not-the-secret"] {
        assert!(!text.contains(secret), "the log holds the secret {secret}");
    }
    for signature in &signatures {
        assert_eq!(signature.len(), 64);
        assert!(!text.contains(signature.as_str()), "the log holds the signature {signature}");
    }
    for leak in ["X-Amz-Signature", "Signature=", "AWS4-HMAC-SHA256 Credential"] {
        assert!(!text.contains(leak), "the log holds {leak:?}");
    }
}

fn assert_no_ansi(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("HTTP limits"), "the log is empty:\n{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escape codes in a piped log:\n{text}");
}

/// Issue 10: `serve` wrote ANSI colour codes into its log when stderr was a file or a pipe.
#[test]
fn a_piped_log_has_no_colour_codes() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("server.log");
    let server = TestServer::start_custom(Launch {
        env: &[("RUST_LOG", "info")],
        stderr_to: Some(log.clone()),
        ..Launch::default()
    });
    drop(server);
    assert_no_ansi(&log);
}

/// Issue 10: `opentrail lookup ... | head` printed `Error: Broken pipe` and failed once the
/// reader went away; like ripgrep, it now ends quietly and successfully.
#[test]
fn lookup_into_a_closed_pipe_ends_quietly() {
    let server = TestServer::start();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_opentrail"))
        .args(["lookup", "--endpoint-url", &server.endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", ROOT_A.0)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_A.1)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the first line is written (`head -0`).
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}: {stderr}", output.status);
    assert!(!stderr.contains("Broken pipe") && !stderr.contains("panicked"), "{stderr}");
}
