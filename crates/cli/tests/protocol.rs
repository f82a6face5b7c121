//! AWS JSON 1.1 wire behaviour and authentication edge cases, with raw signed requests.

mod common;

use std::time::{Duration, SystemTime};

use common::*;

const LONG: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";
const SHORT: &str = "CloudTrail_20131101.";

fn call(server: &TestServer, operation: &str, body: &str) -> RawResponse {
    raw_call(server, Some(&format!("{SHORT}{operation}")), body.as_bytes(), Some(Signing::now()))
}

#[test]
fn both_target_forms_answer_with_aws_headers() {
    let server = TestServer::start();
    for prefix in [SHORT, LONG] {
        let response = raw_call(&server, Some(&format!("{prefix}ListTrails")), b"{}", Some(Signing::now()));
        assert_eq!(response.status, 200, "{prefix}");
        assert_eq!(response.body, serde_json::json!({"Trails": []}));
        assert_eq!(response.header("content-type"), Some("application/x-amz-json-1.1"));
        assert!(response.header("x-amzn-requestid").is_some_and(|id| id.len() == 36));
    }
    // An empty body is an empty input.
    assert_eq!(raw_call(&server, Some(&format!("{SHORT}DescribeTrails")), b"", Some(Signing::now())).status, 200);
}

#[test]
fn timestamps_are_epoch_numbers() {
    let server = TestServer::start();
    call(&server, "CreateTrail", r#"{"Name":"t-num","S3BucketName":"test-bucket"}"#);
    call(&server, "StartLogging", r#"{"Name":"t-num"}"#);
    let status = call(&server, "GetTrailStatus", r#"{"Name":"t-num"}"#);
    assert!(status.body["StartLoggingTime"].is_number(), "{:?}", status.body);
    let events = call(&server, "LookupEvents", "{}");
    assert!(events.body["Events"][0]["EventTime"].is_number());
}

#[test]
fn malformed_requests_get_aws_errors_and_change_nothing() {
    let server = TestServer::start();
    let cases: [(&str, &str, u16, &str); 8] = [
        ("CreateTrail", "{not json", 400, "SerializationException"),
        ("CreateTrail", "[1,2]", 400, "SerializationException"),
        ("CreateTrail", r#"{"Name": 5, "S3BucketName": "test-bucket"}"#, 400, "SerializationException"),
        ("CreateTrail", r#"{"Name": "t-x"}"#, 400, "ValidationException"),
        ("LookupEvents", r#"{"MaxResults": "ten"}"#, 400, "SerializationException"),
        ("NoSuchOperation", "{}", 400, "UnknownOperationException"),
        ("CreateDashboard", "{}", 400, "UnsupportedOperationException"),
        ("CreateEventDataStore", r#"{"Name":"x"}"#, 400, "InvalidParameterException"),
    ];
    for (operation, body, status, error_type) in cases {
        let response = call(&server, operation, body);
        assert_eq!((response.status, response.error_type()), (status, error_type), "{operation} {body}");
        assert!(response.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(response.header("x-amzn-errortype"), Some(error_type));
    }
    let unknown_target = raw_call(&server, Some("DynamoDB_20120810.ListTables"), b"{}", Some(Signing::now()));
    assert_eq!(unknown_target.error_type(), "UnknownOperationException");
    let no_target = raw_call(&server, None, b"{}", Some(Signing::now()));
    assert_eq!(no_target.error_type(), "UnknownOperationException");
    assert_eq!(call(&server, "DescribeTrails", "{}").body["trailList"], serde_json::json!([]));
}

#[test]
fn oversize_bodies_are_refused() {
    let server = TestServer::start();
    let body = format!(r#"{{"Name":"t","S3BucketName":"{}"}}"#, "b".repeat(3 * 1024 * 1024));
    let response = call(&server, "CreateTrail", &body);
    assert_eq!(response.status, 413);
    assert_eq!(response.error_type(), "RequestEntityTooLargeException");
}

#[test]
fn authentication_edge_cases() {
    let server = TestServer::start();
    let target = Some("CloudTrail_20131101.ListTrails");

    let missing = raw_call(&server, target, b"{}", None);
    assert_eq!((missing.status, missing.error_type()), (403, "MissingAuthenticationTokenException"));

    let stale = Signing { time: SystemTime::now() - Duration::from_secs(20 * 60), ..Signing::now() };
    let response = raw_call(&server, target, b"{}", Some(stale));
    assert_eq!(response.error_type(), "InvalidSignatureException");
    assert!(response.body["message"].as_str().unwrap().starts_with("Signature expired"));

    let future = Signing { time: SystemTime::now() + Duration::from_secs(20 * 60), ..Signing::now() };
    assert_eq!(raw_call(&server, target, b"{}", Some(future)).error_type(), "InvalidSignatureException");

    let wrong_service = Signing { service: "dynamodb", ..Signing::now() };
    assert_eq!(raw_call(&server, target, b"{}", Some(wrong_service)).error_type(), "InvalidSignatureException");

    let unknown = Signing { key: ("AKIANOBODY0000000000", "x"), ..Signing::now() };
    assert_eq!(raw_call(&server, target, b"{}", Some(unknown)).error_type(), "UnrecognizedClientException");

    let wrong_secret = Signing { key: (ROOT_A.0, "wrong"), ..Signing::now() };
    assert_eq!(raw_call(&server, target, b"{}", Some(wrong_secret)).error_type(), "InvalidSignatureException");
}

#[test]
fn a_tampered_body_is_rejected() {
    let server = TestServer::start();
    // Sign one body, send another: the payload hash is part of the signature.
    let target = Some("CloudTrail_20131101.CreateTrail");
    let headers =
        signed_headers(&server, target, br#"{"Name":"t-ok","S3BucketName":"test-bucket"}"#, Some(Signing::now()));
    let response = send(&server, &headers, br#"{"Name":"t-evil","S3BucketName":"test-bucket"}"#);
    assert_eq!(response.error_type(), "InvalidSignatureException");
    assert_eq!(call(&server, "DescribeTrails", "{}").body["trailList"], serde_json::json!([]));
}

#[test]
fn health_and_unknown_routes() {
    let server = TestServer::start();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let health = agent.get(format!("{}/health", server.endpoint)).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let mut other = agent.get(format!("{}/nothing-here", server.endpoint)).call().unwrap();
    assert_eq!(other.status().as_u16(), 404);
    assert!(other.body_mut().read_to_string().unwrap().contains("UnknownOperationException"));
}
