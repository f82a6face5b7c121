//! CloudTrail Lake through the official AWS SDK for Rust against a real server process: event
//! data stores fill from the server's own management events, SQL in CloudTrail Lake's dialect
//! answers with the right rows, and bad statements get AWS's errors.

mod common;

use std::time::Duration;

use aws_sdk_cloudtrail::Client;
use aws_sdk_cloudtrail::types::{AdvancedEventSelector, AdvancedFieldSelector, QueryStatus};
use common::*;

fn selector(category: &str) -> AdvancedEventSelector {
    let field = AdvancedFieldSelector::builder().field("eventCategory").equals(category).build().unwrap();
    AdvancedEventSelector::builder().name(category).field_selectors(field).build().unwrap()
}

/// Runs a statement to the end; returns its rows as (column, value) lists, in order.
async fn query(ct: &Client, sql: &str) -> Vec<Vec<(String, String)>> {
    let started = ct.start_query().query_statement(sql).send().await.unwrap();
    let id = started.query_id().unwrap().to_string();
    assert_eq!(id.len(), 36);
    for _ in 0..300 {
        let described = ct.describe_query().query_id(&id).send().await.unwrap();
        match described.query_status().unwrap() {
            QueryStatus::Finished => break,
            QueryStatus::Queued | QueryStatus::Running => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("query {sql} ended {other:?}: {:?}", described.error_message()),
        }
    }
    let mut rows = Vec::new();
    let mut token = None;
    loop {
        let page =
            ct.get_query_results().query_id(&id).max_query_results(2).set_next_token(token).send().await.unwrap();
        assert_eq!(page.query_status(), Some(&QueryStatus::Finished));
        for row in page.query_result_rows() {
            rows.push(row.iter().flat_map(|cell| cell.iter().map(|(k, v)| (k.clone(), v.clone()))).collect());
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return rows;
        }
    }
}

/// Waits until a query over the store sees at least `count` events of `name`.
async fn wait_for_events(ct: &Client, store_id: &str, name: &str, count: usize) {
    let sql = format!("SELECT COUNT(*) AS n FROM {store_id} WHERE eventName = '{name}'");
    for _ in 0..100 {
        let rows = query(ct, &sql).await;
        if rows[0][0].1.parse::<usize>().unwrap() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store never received {count} {name} events");
}

#[tokio::test]
async fn event_data_store_lifecycle_and_errors() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");

    let created = ct.create_event_data_store().name("my-store").send().await.unwrap();
    let arn = created.event_data_store_arn().unwrap().to_string();
    assert!(arn.starts_with("arn:aws:cloudtrail:us-east-1:111111111111:eventdatastore/"));
    assert_eq!(created.status().unwrap().as_str(), "ENABLED");
    assert_eq!(created.retention_period(), Some(366));
    assert_eq!(created.termination_protection_enabled(), Some(true));
    assert_eq!(created.multi_region_enabled(), Some(true));
    assert_eq!(created.billing_mode().unwrap().as_str(), "EXTENDABLE_RETENTION_PRICING");
    let id = arn.rsplit('/').next().unwrap().to_string();

    let by_id = ct.get_event_data_store().event_data_store(&id).send().await.unwrap();
    assert_eq!(by_id.name(), Some("my-store"));
    assert_eq!(by_id.advanced_event_selectors().len(), 1);

    let duplicate = ct.create_event_data_store().name("my-store").send().await.unwrap_err();
    assert_eq!(error_code(duplicate), "EventDataStoreAlreadyExistsException");
    let short = ct.create_event_data_store().name("s2").retention_period(3).send().await.unwrap_err();
    assert_eq!(error_code(short), "InvalidParameterException");

    let listed = ct.list_event_data_stores().send().await.unwrap();
    assert_eq!(listed.event_data_stores().len(), 1);

    let protected = ct.delete_event_data_store().event_data_store(&arn).send().await.unwrap_err();
    assert_eq!(error_code(protected), "EventDataStoreTerminationProtectedException");
    let empty_update = ct.update_event_data_store().event_data_store(&arn).send().await.unwrap_err();
    assert_eq!(error_code(empty_update), "InvalidParameterException");
    let updated = ct
        .update_event_data_store()
        .event_data_store(&arn)
        .termination_protection_enabled(false)
        .retention_period(30)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.retention_period(), Some(30));

    ct.stop_event_data_store_ingestion().event_data_store(&id).send().await.unwrap();
    let stopped = ct.get_event_data_store().event_data_store(&id).send().await.unwrap();
    assert_eq!(stopped.status().unwrap().as_str(), "STOPPED_INGESTION");
    let again = ct.stop_event_data_store_ingestion().event_data_store(&id).send().await.unwrap_err();
    assert_eq!(error_code(again), "InvalidEventDataStoreStatusException");
    ct.start_event_data_store_ingestion().event_data_store(&id).send().await.unwrap();

    ct.delete_event_data_store().event_data_store(&arn).send().await.unwrap();
    let pending = ct.get_event_data_store().event_data_store(&id).send().await.unwrap();
    assert_eq!(pending.status().unwrap().as_str(), "PENDING_DELETION");
    let query_deleted = ct.start_query().query_statement(format!("SELECT * FROM {id}")).send().await.unwrap_err();
    assert_eq!(error_code(query_deleted), "InactiveEventDataStoreException");
    ct.restore_event_data_store().event_data_store(&arn).send().await.unwrap();
    let not_pending = ct.restore_event_data_store().event_data_store(&arn).send().await.unwrap_err();
    assert_eq!(error_code(not_pending), "InvalidEventDataStoreStatusException");

    let missing = ct.get_event_data_store().event_data_store("00000000-0000-4000-8000-000000000000").send().await;
    assert_eq!(error_code(missing.unwrap_err()), "EventDataStoreNotFoundException");
    let other_account = client(&server, ROOT_B, "us-east-1");
    let hidden = other_account.get_event_data_store().event_data_store(&arn).send().await.unwrap_err();
    assert_eq!(error_code(hidden), "EventDataStoreNotFoundException");
    let hidden_query = other_account.start_query().query_statement(format!("SELECT * FROM {id}")).send().await;
    assert_eq!(error_code(hidden_query.unwrap_err()), "EventDataStoreNotFoundException");

    for (sql, expected) in [
        (format!("DELETE FROM {id}"), "InvalidQueryStatementException"),
        (format!("DROP TABLE {id}"), "InvalidQueryStatementException"),
        (format!("INSERT INTO {id} SELECT * FROM {id}"), "InvalidQueryStatementException"),
        (format!("SELEC eventName FROM {id}"), "InvalidQueryStatementException"),
        (format!("SELECT noSuchColumn FROM {id}"), "InvalidQueryStatementException"),
        ("SELECT * FROM 00000000-0000-4000-8000-000000000000".to_string(), "EventDataStoreNotFoundException"),
    ] {
        let error = ct.start_query().query_statement(&sql).send().await.unwrap_err();
        assert_eq!(error_code(error), expected, "{sql}");
    }
    let unknown_query = ct.describe_query().query_id("00000000-0000-4000-8000-000000000000").send().await;
    assert_eq!(error_code(unknown_query.unwrap_err()), "QueryIdNotFoundException");
}

#[tokio::test]
async fn queries_answer_in_cloudtrail_lake_dialect() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let created = ct.create_event_data_store().name("audit").send().await.unwrap();
    let arn = created.event_data_store_arn().unwrap().to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    // A store that takes only data events does not see management events.
    let data_field =
        |name: &str, value: &str| AdvancedFieldSelector::builder().field(name).equals(value).build().unwrap();
    let data_selector = AdvancedEventSelector::builder()
        .field_selectors(data_field("eventCategory", "Data"))
        .field_selectors(data_field("resources.type", "AWS::S3::Object"))
        .build()
        .unwrap();
    let data_store =
        ct.create_event_data_store().name("data-only").advanced_event_selectors(data_selector).send().await.unwrap();
    let data_id = data_store.event_data_store_arn().unwrap().rsplit('/').next().unwrap().to_string();

    for name in ["lake-trail-1", "lake-trail-2", "lake-trail-3"] {
        ct.create_trail().name(name).s3_bucket_name("bucket-1").send().await.unwrap();
    }
    let failed = ct.get_trail().name("no-such-trail").send().await.unwrap_err();
    assert_eq!(error_code(failed), "TrailNotFoundException");
    wait_for_events(&ct, &id, "CreateTrail", 3).await;

    let sql = format!(
        "SELECT eventName, COUNT(*) AS apiCount FROM {id} WHERE eventTime > '2020-01-01 00:00:00' \
         AND eventName IN ('CreateTrail', 'GetTrail') GROUP BY eventName ORDER BY apiCount DESC"
    );
    let rows = query(&ct, &sql).await;
    assert_eq!(rows[0], vec![("eventName".into(), "CreateTrail".into()), ("apiCount".into(), "3".into())]);
    assert_eq!(rows[1], vec![("eventName".into(), "GetTrail".into()), ("apiCount".into(), "1".into())]);

    let sql = format!(
        "SELECT userIdentity.accountId, element_at(requestParameters, 'name'), eventTime, readOnly \
         FROM \"{arn}\" WHERE eventname = 'CreateTrail' ORDER BY eventTime, element_at(requestParameters, 'name') LIMIT 1"
    );
    let rows = query(&ct, &sql).await;
    let row: std::collections::HashMap<_, _> = rows[0].iter().cloned().collect();
    assert_eq!(row["accountId"], ACCOUNT_A);
    assert_eq!(row["_col1"], "lake-trail-1");
    assert_eq!(row["readOnly"], "false");
    let time = &row["eventTime"];
    assert!(time.len() == 23 && time.as_bytes()[10] == b' ' && time.ends_with(".000"), "{time}");

    let sql = format!(
        "SELECT errorCode, json_extract_scalar(eventJson, '$.requestParameters.name') AS trail \
         FROM {id} WHERE errorCode IS NOT NULL AND eventName = 'GetTrail'"
    );
    let rows = query(&ct, &sql).await;
    assert_eq!(
        rows,
        vec![vec![("errorCode".into(), "TrailNotFoundException".into()), ("trail".into(), "no-such-trail".into())]]
    );

    // Trino functions, CTEs, window functions and a time window.
    let sql = format!(
        "WITH calls AS (SELECT eventName, eventTime FROM {id} WHERE eventTime >= date_add('day', -1, now())) \
         SELECT eventName, row_number() OVER (PARTITION BY eventName ORDER BY eventTime) AS n, \
         date_diff('second', eventTime, now()) < 600 AS recent, day_of_week(eventTime) BETWEEN 1 AND 7 AS dow \
         FROM calls WHERE eventName = 'CreateTrail' ORDER BY n"
    );
    let rows = query(&ct, &sql).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2][1], ("n".into(), "3".into()));
    assert!(rows.iter().all(|row| row[2].1 == "true" && row[3].1 == "true"));

    // A time window in the past prunes every partition away.
    let rows = query(&ct, &format!("SELECT COUNT(*) FROM {id} WHERE eventTime < '2001-01-01 00:00:00'")).await;
    assert_eq!(rows, vec![vec![("_col0".into(), "0".into())]]);
    let rows = query(&ct, &format!("SELECT COUNT(*) FROM {data_id}")).await;
    assert_eq!(rows, vec![vec![("_col0".into(), "0".into())]]);

    // ListQueries shows this store's queries; CancelQuery on a finished one is refused.
    let listed = ct.list_queries().event_data_store(&id).send().await.unwrap();
    assert!(listed.queries().len() >= 5);
    let finished = listed.queries()[0].query_id().unwrap().to_string();
    let cancel = ct.cancel_query().query_id(&finished).send().await.unwrap_err();
    assert_eq!(error_code(cancel), "InactiveQueryException");
    let bad_status = ct.list_queries().event_data_store(&id).query_status("DONE".into()).send().await.unwrap_err();
    assert_eq!(error_code(bad_status), "InvalidQueryStatusException");
}

#[tokio::test]
async fn channels_and_resource_policies() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let management = ct.create_event_data_store().name("management").send().await.unwrap();
    let activity = ct
        .create_event_data_store()
        .name("activity")
        .multi_region_enabled(false)
        .advanced_event_selectors(selector("ActivityAuditLog"))
        .send()
        .await
        .unwrap();
    let destination = |arn: &str| {
        aws_sdk_cloudtrail::types::Destination::builder()
            .r#type(aws_sdk_cloudtrail::types::DestinationType::EventDataStore)
            .location(arn)
            .build()
            .unwrap()
    };
    let wrong = ct
        .create_channel()
        .name("app-channel")
        .source("Custom")
        .destinations(destination(management.event_data_store_arn().unwrap()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(wrong), "InvalidEventDataStoreCategoryException");
    let bad_source = ct
        .create_channel()
        .name("app-channel")
        .source("NoSuchPartner")
        .destinations(destination(activity.event_data_store_arn().unwrap()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(bad_source), "InvalidSourceException");
    let channel = ct
        .create_channel()
        .name("app-channel")
        .source("Custom")
        .destinations(destination(activity.event_data_store_arn().unwrap()))
        .send()
        .await
        .unwrap();
    let channel_arn = channel.channel_arn().unwrap().to_string();
    let got = ct.get_channel().channel(&channel_arn).send().await.unwrap();
    assert_eq!(got.name(), Some("app-channel"));
    assert_eq!(ct.list_channels().send().await.unwrap().channels().len(), 1);

    let in_use = ct
        .update_event_data_store()
        .event_data_store(activity.event_data_store_arn().unwrap())
        .termination_protection_enabled(false)
        .send()
        .await;
    assert!(in_use.is_ok());
    let blocked = ct.delete_event_data_store().event_data_store(activity.event_data_store_arn().unwrap()).send().await;
    assert_eq!(error_code(blocked.unwrap_err()), "ChannelExistsForEDSException");

    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":["{ACCOUNT_B}"]}},"Action":"cloudtrail-data:PutAuditEvents","Resource":"{channel_arn}"}}]}}"#
    );
    let missing = ct.get_resource_policy().resource_arn(&channel_arn).send().await.unwrap_err();
    assert_eq!(error_code(missing), "ResourcePolicyNotFoundException");
    let invalid =
        ct.put_resource_policy().resource_arn(&channel_arn).resource_policy("{\"Statement\":[]}").send().await;
    assert_eq!(error_code(invalid.unwrap_err()), "ResourcePolicyNotValidException");
    ct.put_resource_policy().resource_arn(&channel_arn).resource_policy(&policy).send().await.unwrap();
    let read = ct.get_resource_policy().resource_arn(&channel_arn).send().await.unwrap();
    assert_eq!(read.resource_policy(), Some(policy.as_str()));
    ct.delete_resource_policy().resource_arn(&channel_arn).send().await.unwrap();

    ct.delete_channel().channel(&channel_arn).send().await.unwrap();
    let gone = ct.get_channel().channel(&channel_arn).send().await.unwrap_err();
    assert_eq!(error_code(gone), "ChannelNotFoundException");
}

/// The acceptance flow with the aws CLI alone: a store for outside events, a channel,
/// `put-audit-events`, then `start-query` and `get-query-results`; `opentrail query` agrees.
#[test]
fn aws_cli_sends_audit_events_through_a_channel_and_queries_them() {
    if !aws_cli_available() {
        return;
    }
    let server = TestServer::start();
    let (store_arn, channel_arn) = outside_events_channel(&server);
    let store_id = store_arn.rsplit('/').next().unwrap().to_string();

    let event = |uid: &str, name: &str| {
        serde_json::json!({
            "version": "1.0", "userIdentity": {"type": "CustomUser", "principalId": "alice", "details": {"team": "blue"}},
            "eventSource": "app.example.com", "eventName": name, "eventTime": "2026-11-30T10:00:00Z",
            "UID": uid, "recipientAccountId": ACCOUNT_A, "requestParameters": {"door": "front", "tries": 2}
        })
        .to_string()
    };
    let events = serde_json::json!([
        {"id": "one", "eventData": event("u1", "OpenDoor")},
        {"id": "two", "eventData": event("u2", "OpenDoor")},
        {"id": "three", "eventData": event("u3", "CloseDoor")},
        {"id": "bad", "eventData": "{\"version\":\"1.0\"}"},
    ])
    .to_string();
    let put = aws(
        &server,
        &["cloudtrail-data", "put-audit-events", "--channel-arn", &channel_arn, "--audit-events", &events],
    );
    assert_eq!(put["successful"].as_array().unwrap().len(), 3, "{put}");
    assert_eq!(put["failed"][0]["id"], "bad");
    assert_eq!(put["failed"][0]["errorCode"], "FieldNotFound");
    let channel_now = aws(&server, &["cloudtrail", "get-channel", "--channel", &channel_arn]);
    let status = &channel_now["IngestionStatus"];
    assert_eq!(status["LatestIngestionSuccessEventID"], put["successful"][2]["eventID"], "{channel_now}");
    assert_eq!(status["LatestIngestionErrorCode"], "FieldNotFound");

    let sql = format!(
        "SELECT eventData.eventName AS name, COUNT(*) AS n, element_at(eventData.requestParameters, 'tries') AS tries \
         FROM {store_id} WHERE eventData.eventSource = 'app.example.com' GROUP BY 1, 3 ORDER BY name"
    );
    let mut rows = serde_json::Value::Null;
    for _ in 0..100 {
        let started = aws(&server, &["cloudtrail", "start-query", "--query-statement", &sql]);
        let id = started["QueryId"].as_str().unwrap().to_string();
        let mut results = aws(&server, &["cloudtrail", "get-query-results", "--query-id", &id]);
        while matches!(results["QueryStatus"].as_str(), Some("QUEUED" | "RUNNING")) {
            std::thread::sleep(Duration::from_millis(50));
            results = aws(&server, &["cloudtrail", "get-query-results", "--query-id", &id]);
        }
        assert_eq!(results["QueryStatus"], "FINISHED", "{results}");
        if results["QueryResultRows"].as_array().unwrap().len() == 2 {
            rows = results["QueryResultRows"].clone();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        rows,
        serde_json::json!([
            [{"name": "CloseDoor"}, {"n": "1"}, {"tries": "2"}],
            [{"name": "OpenDoor"}, {"n": "2"}, {"tries": "2"}]
        ])
    );

    let csv = std::process::Command::new(env!("CARGO_BIN_EXE_opentrail"))
        .args(["query", &sql, "--format", "csv", "--endpoint-url", &server.endpoint])
        .env("AWS_ACCESS_KEY_ID", ROOT_A.0)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_A.1)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(csv.status.success(), "{}", String::from_utf8_lossy(&csv.stderr));
    assert_eq!(String::from_utf8(csv.stdout).unwrap(), "name,n,tries\nCloseDoor,1,2\nOpenDoor,2,2\n");
}

/// A gzipped CloudTrail log file of `count` records on `day` (`YYYY-MM-DD`).
fn log_file(day: &str, count: usize, name: &str) -> Vec<u8> {
    let records: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.08", "eventTime": format!("{day}T12:{:02}:00Z", i % 60),
                "eventSource": "iam.amazonaws.com", "eventName": name, "awsRegion": "us-east-1",
                "eventID": format!("{name}-{day}-{i}"), "eventType": "AwsApiCall", "eventCategory": "Management",
                "managementEvent": true, "readOnly": false, "recipientAccountId": ACCOUNT_A,
                "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAIMPORTED", "userName": "carol"},
                "requestParameters": {"userName": format!("user{i}")}
            })
        })
        .collect();
    let text = serde_json::json!({ "Records": records }).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

fn log_key(day: &str, name: &str) -> String {
    let (y, rest) = day.split_at(4);
    let (m, d) = (&rest[1..3], &rest[4..6]);
    format!(
        "AWSLogs/{ACCOUNT_A}/CloudTrail/us-east-1/{y}/{m}/{d}/{ACCOUNT_A}_CloudTrail_us-east-1_{y}{m}{d}T1200Z_{name}.json.gz"
    )
}

async fn completed_import(ct: &Client, import_id: &str) -> aws_sdk_cloudtrail::operation::get_import::GetImportOutput {
    for _ in 0..400 {
        let got = ct.get_import().import_id(import_id).send().await.unwrap();
        match got.import_status().unwrap().as_str() {
            "COMPLETED" => return got,
            "INITIALIZING" | "IN_PROGRESS" => tokio::time::sleep(Duration::from_millis(50)).await,
            other => {
                panic!("the import ended {other}: {:?}", ct.list_import_failures().import_id(import_id).send().await)
            }
        }
    }
    panic!("the import did not complete");
}

#[tokio::test]
async fn imports_from_a_bucket_and_from_a_folder() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let store = ct.create_event_data_store().name("imported").send().await.unwrap();
    let arn = store.event_data_store_arn().unwrap().to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let day = |ago: i64| (chrono::Utc::now() - chrono::Duration::days(ago)).format("%Y-%m-%d").to_string();
    let objects = [
        (log_key(&day(2), "a"), log_file(&day(2), 30, "CreateUser")),
        (log_key(&day(3), "b"), log_file(&day(3), 20, "DeleteUser")),
        (log_key(&day(3), "c"), b"not gzip at all".to_vec()),
        (format!("AWSLogs/{ACCOUNT_A}/CloudTrail-Digest/us-east-1/2026/01/01/digest.json.gz"), b"{}".to_vec()),
        ("README.txt".to_string(), b"hello".to_vec()),
    ];
    for (key, body) in objects {
        s3.put_object().bucket("test-bucket").key(key).body(body.into()).send().await.unwrap();
    }
    let started =
        ct.start_import().destinations(&arn).import_source(s3_source("s3://test-bucket/")).send().await.unwrap();
    let import_id = started.import_id().unwrap().to_string();
    let finished = completed_import(&ct, &import_id).await;
    let statistics = finished.import_statistics().unwrap();
    assert_eq!(statistics.files_completed(), Some(3));
    assert_eq!(statistics.events_completed(), Some(50));
    assert_eq!(statistics.prefixes_found(), Some(2));
    assert_eq!(statistics.prefixes_completed(), Some(2));
    assert_eq!(statistics.failed_entries(), Some(1));
    let failures = ct.list_import_failures().import_id(&import_id).send().await.unwrap();
    assert_eq!(failures.failures().len(), 1);
    assert!(failures.failures()[0].location().unwrap().ends_with("_c.json.gz"));
    let listed = ct.list_imports().send().await.unwrap();
    assert_eq!(listed.imports().len(), 1);
    let unknown = ct.get_import().import_id("00000000-0000-4000-8000-000000000000").send().await.unwrap_err();
    assert_eq!(error_code(unknown), "ImportNotFoundException");
    let refused = ct
        .start_import()
        .destinations(&arn)
        .import_source(s3_source("s3://no-such-bucket-here/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(refused), "InvalidImportSourceException");

    let sql = format!(
        "SELECT eventName, COUNT(*) AS n FROM {id} WHERE userIdentity.accessKeyId = 'AKIAIMPORTED' GROUP BY 1 ORDER BY 1"
    );
    let rows = query(&ct, &sql).await;
    assert_eq!(
        rows,
        vec![
            vec![("eventName".into(), "CreateUser".into()), ("n".into(), "30".into())],
            vec![("eventName".into(), "DeleteUser".into()), ("n".into(), "20".into())],
        ]
    );

    // The command line imports a local folder into the same store, next to the running server.
    let folder = tempfile::tempdir().unwrap();
    let key = log_key(&day(4), "d");
    let path = folder.path().join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, log_file(&day(4), 15, "AttachUserPolicy")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_opentrail"))
        .args(["import", folder.path().to_str().unwrap(), "--event-data-store", &id, "--data-dir"])
        .arg(server.server_data_dir())
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(summary.contains("COMPLETED: 1 files, 15 events"), "{summary}");
    let rows = query(&ct, &format!("SELECT COUNT(*) FROM {id} WHERE eventName = 'AttachUserPolicy'")).await;
    assert_eq!(rows, vec![vec![("_col0".into(), "15".into())]]);
}

/// Another S3-compatible server (`s3s-fs`) holds both a trail's old log files, which StartImport
/// reads (under the prefix only), and the lake itself (`[lake] bucket`): imported and live
/// events are written there as Parquet and queried from there.
#[tokio::test]
async fn imports_from_and_keeps_the_lake_on_an_s3_compatible_server() {
    let Some(binary) = s3s_fs_binary() else { return };
    let folder = tempfile::tempdir().unwrap();
    let external = ExternalS3::start(binary, folder.path());
    let outside = s3_client(&external.endpoint(), ("ext-key", "ext-secret"));
    let mut config = String::from("[lake]\nbucket = \"lake-tables\"\n");
    for bucket in ["old-trail-logs", "lake-tables"] {
        outside.create_bucket().bucket(bucket).send().await.unwrap();
        config.push_str(&format!(
            "[[remote_buckets]]\nbucket = \"{bucket}\"\nendpoint_url = \"{}\"\naccess_key_id = \"ext-key\"\nsecret_access_key = \"ext-secret\"\n",
            external.endpoint()
        ));
    }
    let server = TestServer::start_with(&config, &[]);
    let ct = client(&server, ROOT_A, "us-east-1");
    let day = |ago: i64| (chrono::Utc::now() - chrono::Duration::days(ago)).format("%Y-%m-%d").to_string();
    let objects = [
        (format!("org/{}", log_key(&day(5), "a")), log_file(&day(5), 12, "RunInstances")),
        (format!("org/{}", log_key(&day(6), "b")), log_file(&day(6), 8, "StopInstances")),
        (format!("elsewhere/{}", log_key(&day(6), "c")), log_file(&day(6), 99, "TerminateInstances")),
    ];
    for (key, body) in objects {
        outside.put_object().bucket("old-trail-logs").key(key).body(body.into()).send().await.unwrap();
    }
    let store = ct.create_event_data_store().name("from-outside").start_ingestion(false).send().await.unwrap();
    let arn = store.event_data_store_arn().unwrap().to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let started =
        ct.start_import().destinations(&arn).import_source(s3_source("s3://old-trail-logs/org/")).send().await.unwrap();
    let finished = completed_import(&ct, started.import_id().unwrap()).await;
    let statistics = finished.import_statistics().unwrap();
    assert_eq!((statistics.files_completed(), statistics.events_completed()), (Some(2), Some(20)));
    assert_eq!(statistics.failed_entries(), Some(0));
    let rows = query(&ct, &format!("SELECT eventName, COUNT(*) AS n FROM {id} GROUP BY 1 ORDER BY 1")).await;
    assert_eq!(
        rows,
        vec![
            vec![("eventName".into(), "RunInstances".into()), ("n".into(), "12".into())],
            vec![("eventName".into(), "StopInstances".into()), ("n".into(), "8".into())],
        ]
    );

    let live = ct.create_event_data_store().name("live").send().await.unwrap();
    let live_id = live.event_data_store_arn().unwrap().rsplit('/').next().unwrap().to_string();
    ct.describe_trails().send().await.unwrap();
    wait_for_events(&ct, &live_id, "DescribeTrails", 1).await;
    let listed = outside.list_objects_v2().bucket("lake-tables").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    for store_id in [&id, &live_id] {
        let prefix = format!("opentrail-lake/{store_id}/eventdate=");
        assert!(keys.iter().any(|k| k.starts_with(&prefix) && k.ends_with(".parquet")), "{store_id}: {keys:?}");
    }
    let local = server.server_data_dir().join("lake").join("tables");
    assert!(std::fs::read_dir(&local).map_or(true, |mut entries| entries.next().is_none()), "nothing is kept locally");
}

#[tokio::test]
async fn query_results_are_delivered_to_a_bucket_with_a_signature_file() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let store = ct.create_event_data_store().name("delivered").send().await.unwrap();
    let id = store.event_data_store_arn().unwrap().rsplit('/').next().unwrap().to_string();
    ct.describe_trails().send().await.unwrap();
    wait_for_events(&ct, &id, "DescribeTrails", 1).await;

    let missing = ct
        .start_query()
        .query_statement(format!("SELECT eventName FROM {id}"))
        .delivery_s3_uri("s3://no-such-bucket-here/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(missing), "S3BucketDoesNotExistException");

    let sql =
        format!("SELECT eventName, COUNT(*) AS n FROM {id} WHERE eventName = 'DescribeTrails' GROUP BY eventName");
    let started =
        ct.start_query().query_statement(&sql).delivery_s3_uri("s3://test-bucket/lake-results/").send().await.unwrap();
    let query_id = started.query_id().unwrap().to_string();
    let mut delivered = false;
    for _ in 0..200 {
        let described = ct.describe_query().query_id(&query_id).send().await.unwrap();
        match described.delivery_status().map(|s| s.as_str()) {
            Some("SUCCESS") => {
                delivered = true;
                assert_eq!(described.delivery_s3_uri(), Some("s3://test-bucket/lake-results/"));
                break;
            }
            Some("PENDING") | None => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("delivery ended {other:?}"),
        }
    }
    assert!(delivered, "the results were delivered");
    let listed = s3.list_objects_v2().bucket("test-bucket").prefix("lake-results/").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    let folder = format!("lake-results/AWSLogs/{ACCOUNT_A}/CloudTrail-Lake/Query/");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(&folder) && k.contains(&query_id)), "{keys:?}");
    let csv_key = keys.iter().find(|k| k.ends_with("/result_1.csv.gz")).unwrap();
    let object = async |key: &str| {
        let response = s3.get_object().bucket("test-bucket").key(key).send().await.unwrap();
        response.body.collect().await.unwrap().into_bytes()
    };
    let gzipped = object(csv_key).await;
    let mut csv = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut csv).unwrap();
    assert_eq!(csv, "eventName,n\nDescribeTrails,1\n");
    let sign_key = keys.iter().find(|k| k.ends_with("/result_sign.json")).unwrap();
    let sign = object(sign_key).await;
    let sign: serde_json::Value = serde_json::from_slice(&sign).unwrap();
    use sha2::Digest;
    assert_eq!(sign["files"][0]["fileHashValue"], hex::encode(sha2::Sha256::digest(&gzipped)));
    assert_eq!(sign["signatureAlgorithm"], "SHA256withRSA");
    let keys = ct.list_public_keys().send().await.unwrap();
    let fingerprints: Vec<&str> = keys.public_key_list().iter().filter_map(|k| k.fingerprint()).collect();
    assert!(fingerprints.contains(&sign["publicKeyFingerprint"].as_str().unwrap()));
}
