//! The journal consumers as an operator sees them: `GET /opentrail/status` and `opentrail
//! status` against the real binary report every registered consumer's state and lag, a logging
//! trail appears as a consumer of its own, and an account sees only its own trails.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The consumers every account shares (they name nobody).
const SHARED: [&str; 3] = ["event-history", "lake-writer", "insights"];

fn status(server: &TestServer, key: (&str, &str)) -> Value {
    let response = signed_get(server, "/opentrail/status", Some(Signing { key, ..Signing::now() }));
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body
}

fn consumer<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["Consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|consumer| consumer["Name"] == name)
        .unwrap_or_else(|| panic!("no consumer {name} in {status}"))
}

fn opentrail_status(server: &TestServer, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_opentrail"))
        .arg("status")
        .args(args)
        .args(["--endpoint-url", &server.endpoint])
        .env("AWS_ACCESS_KEY_ID", ROOT_A.0)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_A.1)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(output.status.success(), "opentrail status: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_each_consumers_lag_and_each_logging_trail() {
    // The default delivery interval (five minutes): the trail's events wait, so it lags.
    let server = TestServer::start();
    let cloudtrail = client(&server, ROOT_A, "us-east-1");
    let trail = cloudtrail.create_trail().name("watched").s3_bucket_name("test-bucket").send().await.unwrap();
    let arn = trail.trail_arn().unwrap().to_owned();
    cloudtrail.start_logging().name("watched").send().await.unwrap();
    for _ in 0..3 {
        cloudtrail.list_trails().send().await.unwrap();
    }

    // Event History, the Lake writer and Insights follow the journal; status reads are not recorded, so
    // they stay caught up while the test polls.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mine = loop {
        let mine = status(&server, ROOT_A);
        if SHARED.iter().all(|name| consumer(&mine, name)["CaughtUp"] == true) {
            break mine;
        }
        assert!(Instant::now() < deadline, "the shared consumers never caught up: {mine}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let end = mine["Journal"]["CommittedEnd"].as_u64().unwrap();
    assert!(end > 0);
    for name in SHARED {
        let shared = consumer(&mine, name);
        assert_eq!(shared["Restarts"], 0, "{shared}");
        let cursor = &shared["Cursors"][0];
        assert_eq!((cursor["Position"].as_u64(), cursor["RecordsBehind"].as_u64()), (Some(end), Some(0)), "{shared}");
        assert_eq!((cursor["BytesBehind"].as_u64(), cursor["CaughtUp"].as_bool()), (Some(0), Some(true)), "{shared}");
        assert!(cursor["OldestUnconsumedAgeSeconds"].is_null());
    }

    // The logging trail is a consumer of its own: StartLogging's record and the three
    // ListTrails calls after it are behind its cursor until its interval comes.
    let delivery = consumer(&mine, "trail-delivery");
    let trails = delivery["Cursors"].as_array().unwrap();
    assert_eq!(trails.len(), 1, "{delivery}");
    let watched = &trails[0];
    assert_eq!(watched["Part"], arn.as_str());
    let behind = watched["RecordsBehind"].as_u64().unwrap();
    assert!(behind >= 4 && watched["RecordsBehindExact"] == true, "{watched}");
    let bytes = watched["BytesBehind"].as_u64().unwrap();
    assert!(bytes > 0 && bytes == end - watched["Position"].as_u64().unwrap(), "{watched}");
    assert_eq!(watched["CaughtUp"], false);
    assert!(watched["OldestUnconsumedAgeSeconds"].as_u64().unwrap() < 600, "{watched}");
    assert_eq!(delivery["CaughtUp"], false);

    // Account B sees the same shared consumers and none of account A's trails.
    let theirs = status(&server, ROOT_B);
    assert_eq!(consumer(&theirs, "trail-delivery")["Cursors"], serde_json::json!([]));
    assert_eq!(consumer(&theirs, "event-history")["Cursors"][0]["Position"].as_u64(), Some(end));
    let text = theirs.to_string();
    assert!(!text.contains(ACCOUNT_A) && !text.contains("watched"), "{text}");

    // Only a valid signature of a configured account gets an answer.
    let unsigned = signed_get(&server, "/opentrail/status", None);
    assert_eq!((unsigned.status, unsigned.error_type()), (403, "MissingAuthenticationTokenException"));
    let forged = signed_get(&server, "/opentrail/status", Some(Signing { key: (ROOT_A.0, "wrong"), ..Signing::now() }));
    assert_eq!((forged.status, forged.error_type()), (400, "InvalidSignatureException"), "{:?}", forged.body);

    // `opentrail status` prints the same consumers, the trail among them.
    let table = opentrail_status(&server, &[]);
    let trail_line = table.lines().find(|line| line.contains(&arn)).unwrap_or_else(|| panic!("{table}"));
    assert!(trail_line.starts_with("trail-delivery") && trail_line.contains(" no "), "{table}");
    for name in SHARED {
        let line = table.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{table}"));
        assert!(line.contains(" yes "), "{table}");
    }
    let printed: Value = serde_json::from_str(&opentrail_status(&server, &["--json"])).unwrap();
    assert_eq!(consumer(&printed, "trail-delivery")["Cursors"][0]["Part"], arn.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivered_trail_catches_up_and_a_stopped_one_leaves_the_consumers() {
    let server =
        TestServer::start_with("", &[("OPENTRAIL_DELIVERY_INTERVAL", "1s"), ("OPENTRAIL_DIGEST_INTERVAL", "2s")]);
    let s3 = s3_client(&server.endpoint, ROOT_A);
    s3.create_bucket().bucket("fast-logs").send().await.unwrap();
    let cloudtrail = client(&server, ROOT_A, "us-east-1");
    let arn = cloudtrail
        .create_trail()
        .name("fast")
        .s3_bucket_name("fast-logs")
        .send()
        .await
        .unwrap()
        .trail_arn()
        .unwrap()
        .to_owned();
    cloudtrail.start_logging().name("fast").send().await.unwrap();
    let trail_cursor = |status: &Value| -> Option<Value> {
        consumer(status, "trail-delivery")["Cursors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Part"] == arn.as_str())
            .cloned()
    };
    // Delivered every second: its cursor reaches the committed end once the calls stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mine = status(&server, ROOT_A);
        let cursor = trail_cursor(&mine).expect("a logging trail is a consumer");
        if cursor["CaughtUp"] == true {
            assert_eq!(cursor["RecordsBehind"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "the trail never caught up: {mine}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stopped and its last events delivered, it needs nothing more from the journal.
    cloudtrail.stop_logging().name("fast").send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while trail_cursor(&status(&server, ROOT_A)).is_some() {
        assert!(Instant::now() < deadline, "a stopped trail stayed a consumer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
