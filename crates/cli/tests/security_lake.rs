//! Issue 9's findings on CloudTrail Lake, each against a real server process with the official
//! AWS SDK: no query can stop the server or outlive its cancellation, results are bounded and
//! paged, a crash cannot strand an import, and times and delivery URIs are checked as AWS
//! checks them. Each test is named after its finding.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_cloudtrail::Client;
use aws_sdk_cloudtrail::primitives::DateTime;
use aws_sdk_cloudtrail::types::QueryStatus;
use common::*;

/// A gzipped CloudTrail log file of `count` records on `day`, named `name-<file>-<i>`.
fn log_file(day: &str, file: usize, count: usize) -> Vec<u8> {
    let records: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.08", "eventTime": format!("{day}T12:{:02}:{:02}Z", i / 60 % 60, i % 60),
                "eventSource": "iam.amazonaws.com", "eventName": "CreateUser", "awsRegion": "us-east-1",
                "eventID": format!("event-{file}-{i}"), "eventType": "AwsApiCall", "eventCategory": "Management",
                "managementEvent": true, "readOnly": false, "recipientAccountId": ACCOUNT_A,
                "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAIMPORTED", "userName": "carol"},
                "requestParameters": {"userName": format!("user-{file}-{i}"), "path": "/engineering/"}
            })
        })
        .collect();
    let text = serde_json::json!({ "Records": records }).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

fn yesterday() -> String {
    (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string()
}

fn log_key(day: &str, file: usize) -> String {
    let compact = day.replace('-', "");
    let path = day.replace('-', "/");
    format!(
        "AWSLogs/{ACCOUNT_A}/CloudTrail/us-east-1/{path}/{ACCOUNT_A}_CloudTrail_us-east-1_{compact}T1200Z_f{file:04}.json.gz"
    )
}

/// Puts `files` log files of `per_file` events each into `bucket` (created here).
async fn put_log_files(server: &TestServer, bucket: &str, files: usize, per_file: usize) {
    let s3 = s3_client(&server.endpoint, ROOT_A);
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let day = yesterday();
    for file in 0..files {
        let body = log_file(&day, file, per_file);
        s3.put_object().bucket(bucket).key(log_key(&day, file)).body(body.into()).send().await.unwrap();
    }
}

async fn import_status(ct: &Client, import_id: &str) -> String {
    let got = ct.get_import().import_id(import_id).send().await.unwrap();
    got.import_status().unwrap().as_str().to_string()
}

async fn wait_for_import(ct: &Client, import_id: &str) -> String {
    for _ in 0..1200 {
        let status = import_status(ct, import_id).await;
        if status != "INITIALIZING" && status != "IN_PROGRESS" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the import did not end");
}

/// A store holding `files * per_file` imported events; returns its ID.
async fn filled_store(server: &TestServer, ct: &Client, files: usize, per_file: usize) -> String {
    put_log_files(server, "source-logs", files, per_file).await;
    let store = ct.create_event_data_store().name("probe").send().await.unwrap();
    let arn = store.event_data_store_arn().unwrap().to_string();
    let started =
        ct.start_import().destinations(&arn).import_source(s3_source("s3://source-logs/")).send().await.unwrap();
    assert_eq!(wait_for_import(ct, started.import_id().unwrap()).await, "COMPLETED");
    arn.rsplit('/').next().unwrap().to_string()
}

/// Waits for a query's end; returns its status and error message.
async fn finished(ct: &Client, id: &str, limit: Duration) -> (QueryStatus, Option<String>) {
    let deadline = Instant::now() + limit;
    loop {
        let described = ct.describe_query().query_id(id).send().await.unwrap();
        let status = described.query_status().unwrap().clone();
        if !matches!(status, QueryStatus::Queued | QueryStatus::Running) {
            return (status, described.error_message().map(str::to_owned));
        }
        assert!(Instant::now() < deadline, "query {id} still {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(ct: &Client, sql: &str) -> String {
    ct.start_query().query_statement(sql).send().await.unwrap().query_id().unwrap().to_string()
}

/// The server answers another account's call quickly.
async fn still_answers(server: &TestServer) {
    let other = client(server, ROOT_B, "us-east-1");
    let started = Instant::now();
    other.list_event_data_stores().send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the server took {:?} to answer", started.elapsed());
}

/// CPU the server uses over `window`.
async fn cpu_over(server: &TestServer, window: Duration) -> Duration {
    let before = server_cpu_time(server);
    tokio::time::sleep(window).await;
    server_cpu_time(server) - before
}

/// A statement that keeps the query threads busy for minutes in a debug build: 9,000,000
/// pairs of events, each pair's records joined and searched.
fn endless(id: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM {id} a CROSS JOIN {id} b WHERE strpos(a.eventjson || b.eventjson, 'not-in-any-record') > 0"
    )
}

#[tokio::test]
async fn finding_3_a_1000_term_expression_is_refused_before_planning() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let store = ct.create_event_data_store().name("deep").send().await.unwrap();
    let id = store.event_data_store_arn().unwrap().rsplit('/').next().unwrap().to_string();
    let terms = |n: usize| vec!["1"; n].join("+");

    let deep = format!("SELECT {} FROM {id}", terms(1000));
    assert!(deep.len() < 2100);
    let error = ct.start_query().query_statement(&deep).send().await.unwrap_err();
    let message = error.as_service_error().and_then(|e| e.meta().message()).unwrap_or_default().to_string();
    assert_eq!(error_code(error), "InvalidQueryStatementException");
    assert!(message.contains("128 levels"), "{message}");
    still_answers(&server).await;

    // Just inside the limit, the statement plans and runs on the query threads.
    let id_query = start(&ct, &format!("SELECT {} AS n FROM {id}", terms(120))).await;
    assert_eq!(finished(&ct, &id_query, Duration::from_secs(60)).await.0, QueryStatus::Finished);
    let many = format!("SELECT {} AS n FROM {id}", terms(4_900));
    assert_eq!(
        error_code(ct.start_query().query_statement(many).send().await.unwrap_err()),
        "InvalidQueryStatementException"
    );
    still_answers(&server).await;
}

#[tokio::test]
async fn finding_4_a_cross_join_of_a_3000_event_store_fails_clearly() {
    // Small limits keep the debug build quick; the defaults behave the same, only later.
    let server =
        TestServer::start_with("", &[("OPENTRAIL_LAKE_QUERY_MEMORY_MB", "64"), ("OPENTRAIL_LAKE_MAX_RESULT_MB", "8")]);
    let ct = client(&server, ROOT_A, "us-east-1");
    let id = filled_store(&server, &ct, 3, 1000).await;

    // A join that must hold every combination (sorted) meets the memory pool.
    let sorted = start(
        &ct,
        &format!("SELECT a.eventjson, b.eventjson FROM {id} a CROSS JOIN {id} b ORDER BY a.eventjson, b.eventjson"),
    )
    .await;
    still_answers(&server).await;
    let (status, message) = finished(&ct, &sorted, Duration::from_secs(120)).await;
    assert_eq!(status, QueryStatus::Failed);
    let message = message.unwrap();
    assert!(message.contains("more than 64 MB of memory"), "{message}");
    assert!(!message.contains("Resources exhausted") && !message.contains("SortExec"), "{message}");

    // One that streams every combination out meets the result cap.
    let streamed = start(&ct, &format!("SELECT a.eventjson, b.eventid FROM {id} a CROSS JOIN {id} b")).await;
    let (status, message) = finished(&ct, &streamed, Duration::from_secs(120)).await;
    assert_eq!(status, QueryStatus::Failed);
    assert!(message.as_deref().unwrap().contains("exceed the limit of 1000000 rows or 8 MB"), "{message:?}");

    // The server is alive and still runs ordinary queries.
    still_answers(&server).await;
    // The store also holds the server's own management events: count the imported ones.
    let count = start(&ct, &format!("SELECT COUNT(*) FROM {id} WHERE userIdentity.accessKeyId = 'AKIAIMPORTED'")).await;
    let (status, message) = finished(&ct, &count, Duration::from_secs(60)).await;
    assert_eq!(status, QueryStatus::Finished, "{message:?}");
    let rows = ct.get_query_results().query_id(&count).send().await.unwrap();
    assert_eq!(rows.query_result_rows()[0][0].get("_col0").map(String::as_str), Some("3000"));
}

#[tokio::test]
async fn finding_6_cancel_query_stops_the_work() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let id = filled_store(&server, &ct, 3, 1000).await;
    let query = start(&ct, &endless(&id)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let busy = cpu_over(&server, Duration::from_secs(1)).await;
    assert!(busy > Duration::from_millis(500), "the query was not running: {busy:?} of CPU in a second");

    let cancelled = ct.cancel_query().query_id(&query).send().await.unwrap();
    assert_eq!(cancelled.query_status(), &QueryStatus::Cancelled);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = cpu_over(&server, Duration::from_secs(1)).await;
    assert!(idle < Duration::from_millis(250), "the cancelled query kept {idle:?} of CPU per second");
    assert_eq!(finished(&ct, &query, Duration::from_secs(5)).await.0, QueryStatus::Cancelled);
    still_answers(&server).await;
}

#[tokio::test]
async fn finding_6_the_query_timeout_stops_the_work() {
    let server = TestServer::start_with("", &[("OPENTRAIL_LAKE_QUERY_TIMEOUT_SECONDS", "3")]);
    let ct = client(&server, ROOT_A, "us-east-1");
    let id = filled_store(&server, &ct, 3, 1000).await;
    let query = start(&ct, &endless(&id)).await;
    let (status, message) = finished(&ct, &query, Duration::from_secs(30)).await;
    assert_eq!(status, QueryStatus::TimedOut);
    assert!(message.unwrap().contains("longer than 3 seconds"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = cpu_over(&server, Duration::from_secs(1)).await;
    assert!(idle < Duration::from_millis(250), "the timed-out query kept {idle:?} of CPU per second");
}

#[tokio::test]
async fn finding_6_delivery_s3_uri_must_name_one_of_the_callers_buckets_plainly() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let store = ct.create_event_data_store().name("deliver").send().await.unwrap();
    let id = store.event_data_store_arn().unwrap().rsplit('/').next().unwrap().to_string();
    s3_client(&server.endpoint, ROOT_B).create_bucket().bucket("bucket-of-b").send().await.unwrap();
    let sql = format!("SELECT eventName FROM {id}");
    for (uri, expected) in [
        ("s3://test-bucket/../bucket-of-b", "InvalidS3PrefixException"),
        ("s3://test-bucket/results/../../bucket-of-b", "InvalidS3PrefixException"),
        ("s3://test-bucket//results", "InvalidS3PrefixException"),
        ("s3://test-bucket/./results", "InvalidS3PrefixException"),
        ("s3://../bucket-of-b", "InvalidS3BucketNameException"),
        ("test-bucket/results", "InvalidS3BucketNameException"),
        ("s3://bucket-of-b/results", "InsufficientS3BucketPolicyException"),
        ("s3://no-such-bucket-anywhere", "S3BucketDoesNotExistException"),
    ] {
        let error = ct.start_query().query_statement(&sql).delivery_s3_uri(uri).send().await.unwrap_err();
        assert_eq!(error_code(error), expected, "{uri}");
    }
    let query = ct.start_query().query_statement(&sql).delivery_s3_uri("s3://test-bucket/results/").send().await;
    assert!(query.is_ok(), "{query:?}");
}

#[tokio::test]
async fn finding_7_results_are_paged_and_capped() {
    let server = TestServer::start_with("", &[("OPENTRAIL_LAKE_MAX_RESULT_ROWS", "2500")]);
    let ct = client(&server, ROOT_A, "us-east-1");
    let id = filled_store(&server, &ct, 3, 1000).await;

    let imported = format!("FROM {id} WHERE userIdentity.accessKeyId = 'AKIAIMPORTED'");
    let query = start(&ct, &format!("SELECT eventID {imported} ORDER BY eventID LIMIT 2500")).await;
    assert_eq!(finished(&ct, &query, Duration::from_secs(60)).await.0, QueryStatus::Finished);
    let (mut seen, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let page =
            ct.get_query_results().query_id(&query).max_query_results(1000).set_next_token(token).send().await.unwrap();
        let statistics = page.query_statistics().unwrap();
        assert_eq!(statistics.total_results_count(), Some(2500));
        assert_eq!(statistics.results_count(), Some(page.query_result_rows().len() as i32));
        seen.extend(page.query_result_rows().iter().map(|row| row[0]["eventID"].clone()));
        pages += 1;
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    let mut expected = seen.clone();
    expected.sort();
    expected.dedup();
    assert_eq!((seen.len(), &seen), (2500, &expected), "pages repeat or skip rows");

    let over = start(&ct, &format!("SELECT eventID {imported}")).await;
    let (status, message) = finished(&ct, &over, Duration::from_secs(60)).await;
    assert_eq!(status, QueryStatus::Failed);
    assert!(message.unwrap().contains("limit of 2500 rows"));
}

#[tokio::test]
async fn finding_7_an_import_cut_by_a_crash_is_marked_failed_and_resumes() {
    let mut server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    put_log_files(&server, "many-logs", 60, 2000).await;
    let store = ct.create_event_data_store().name("crash").send().await.unwrap();
    let arn = store.event_data_store_arn().unwrap().to_string();
    let started =
        ct.start_import().destinations(&arn).import_source(s3_source("s3://many-logs/")).send().await.unwrap();
    let import_id = started.import_id().unwrap().to_string();
    for _ in 0..400 {
        if import_status(&ct, &import_id).await == "IN_PROGRESS" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    server.restart();
    let ct = client(&server, ROOT_A, "us-east-1");
    let got = ct.get_import().import_id(&import_id).send().await.unwrap();
    assert_eq!(got.import_status().unwrap().as_str(), "FAILED", "an import cut by the crash reads {got:?}");
    let failures = ct.list_import_failures().import_id(&import_id).send().await.unwrap();
    assert!(failures.failures().iter().any(|f| f.error_type() == Some("ImportInterrupted")), "{failures:?}");
    // Another import is not blocked by the stranded one, and the stranded one resumes.
    let listed = ct.list_imports().send().await.unwrap();
    assert!(listed.imports().iter().all(|i| i.import_status().unwrap().as_str() == "FAILED"));
    ct.start_import().import_id(&import_id).send().await.unwrap();
    assert_eq!(wait_for_import(&ct, &import_id).await, "COMPLETED");
    let id = arn.rsplit('/').next().unwrap();
    let sql = format!("SELECT COUNT(DISTINCT eventID) FROM {id} WHERE userIdentity.accessKeyId = 'AKIAIMPORTED'");
    let count = start(&ct, &sql).await;
    assert_eq!(finished(&ct, &count, Duration::from_secs(120)).await.0, QueryStatus::Finished);
    let rows = ct.get_query_results().query_id(&count).send().await.unwrap();
    assert_eq!(rows.query_result_rows()[0][0]["_col0"], "120000");
}

#[tokio::test]
async fn finding_7_times_in_year_0_or_9999_are_refused() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let store = ct.create_event_data_store().name("times").send().await.unwrap();
    let arn = store.event_data_store_arn().unwrap().to_string();
    let year_0 = DateTime::from_secs(-62_167_219_200);
    let year_9999 = DateTime::from_secs(253_370_764_800);
    let now = DateTime::from_secs(chrono::Utc::now().timestamp());

    for (start, end) in [(year_0, now), (now, year_9999)] {
        let error = ct
            .start_import()
            .destinations(&arn)
            .import_source(s3_source("s3://test-bucket/"))
            .start_event_time(start)
            .end_event_time(end)
            .send()
            .await
            .unwrap_err();
        assert_eq!(error_code(error), "InvalidParameterException", "{start:?}..{end:?}");
        let error = ct.list_queries().event_data_store(&arn).start_time(start).end_time(end).send().await.unwrap_err();
        assert_eq!(error_code(error), "InvalidDateRangeException", "{start:?}..{end:?}");
    }
    let fine = ct.list_queries().event_data_store(&arn).start_time(DateTime::from_secs(0)).end_time(now).send().await;
    assert!(fine.is_ok(), "{fine:?}");
}

#[tokio::test]
async fn finding_7_put_audit_events_refuses_times_in_year_0_or_9999() {
    if !aws_cli_available() {
        return;
    }
    let server = TestServer::start();
    let (_, channel_arn) = outside_events_channel(&server);
    let event = |time: &str| {
        serde_json::json!({
            "version": "1.0", "userIdentity": {"type": "CustomUser", "principalId": "alice"},
            "eventSource": "app.example.com", "eventName": "OpenDoor", "eventTime": time,
            "UID": time, "recipientAccountId": ACCOUNT_A
        })
        .to_string()
    };
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let events = serde_json::json!([
        {"id": "year-0", "eventData": event("0000-01-01T00:00:00Z")},
        {"id": "year-9999", "eventData": event("9999-12-31T23:59:59Z")},
        {"id": "now", "eventData": event(&now)},
    ])
    .to_string();
    let put = aws(
        &server,
        &["cloudtrail-data", "put-audit-events", "--channel-arn", &channel_arn, "--audit-events", &events],
    );
    let failed: Vec<&str> = put["failed"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(failed, ["year-0", "year-9999"], "{put}");
    assert_eq!(put["successful"][0]["id"], "now", "{put}");
}
