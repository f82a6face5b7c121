//! AWS's own SigV4 test-suite cases: the verifier accepts each signed request, and rejects it
//! once any signed part changes.

use std::path::Path;
use std::time::SystemTime;

use chrono::DateTime;
use opentrail_sigv4::{AuthError, RequestToVerify, parse_authorization, verify};

struct Case {
    name: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    secret: String,
    time: SystemTime,
}

fn load_cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigv4");
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let context: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("context.json")).unwrap()).unwrap();
        let text = std::fs::read_to_string(dir.join("header-signed-request.txt")).unwrap();
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let request_line: Vec<&str> = lines.next().unwrap().split(' ').collect();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let time = DateTime::parse_from_rfc3339(context["timestamp"].as_str().unwrap()).unwrap();
        cases.push(Case {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            method: request_line[0].to_owned(),
            path: request_line[1].to_owned(),
            headers,
            body: body.as_bytes().to_vec(),
            secret: context["credentials"]["secret_access_key"].as_str().unwrap().to_owned(),
            time: time.into(),
        });
    }
    assert!(cases.len() >= 5, "the fixture cases are missing");
    cases
}

fn check(case: &Case, headers: &[(String, String)], body: &[u8], secret: &str) -> Result<(), AuthError> {
    let authorization = headers.iter().find(|(n, _)| n == "Authorization").unwrap().1.clone();
    let parsed = parse_authorization(&authorization)?;
    let request = RequestToVerify {
        method: &case.method,
        path_and_query: &case.path,
        headers: headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
        body,
    };
    verify(&request, &parsed, secret, case.time)
}

#[test]
fn every_official_case_verifies() {
    for case in load_cases() {
        assert_eq!(check(&case, &case.headers, &case.body, &case.secret), Ok(()), "case {}", case.name);
    }
}

#[test]
fn a_wrong_secret_is_rejected() {
    for case in load_cases() {
        let result = check(&case, &case.headers, &case.body, "not-the-secret");
        assert!(matches!(result, Err(AuthError::BadSignature(_))), "case {}", case.name);
    }
}

#[test]
fn a_changed_signed_header_is_rejected() {
    for case in load_cases() {
        let mut headers = case.headers.clone();
        let target = headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case("host")).unwrap();
        target.1 = "attacker.example.com".into();
        assert!(check(&case, &headers, &case.body, &case.secret).is_err(), "case {}", case.name);
    }
}

#[test]
fn a_changed_body_is_rejected() {
    for case in load_cases().into_iter().filter(|c| !c.body.is_empty()) {
        let mut body = case.body.clone();
        body[0] ^= 1;
        assert!(check(&case, &case.headers, &body, &case.secret).is_err(), "case {}", case.name);
    }
}

#[test]
fn a_stale_request_is_rejected() {
    let case = load_cases().remove(0);
    let late = Case { time: case.time + std::time::Duration::from_secs(16 * 60), ..case };
    let result = check(&late, &late.headers, &late.body, &late.secret);
    assert!(matches!(&result, Err(AuthError::BadSignature(m)) if m.starts_with("Signature expired")), "{result:?}");
}
