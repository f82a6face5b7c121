//! The compatibility target: the real CloudTrail Lake queries in `../shared/data/lake-queries/`
//! (or the folder `OPENTRAIL_LAKE_QUERIES` names). Each is bridged, planned and run over a
//! store of CloudTrail events; each is listed by name with its outcome. Queries over AWS Config
//! stores, which OpenTrail has no source for, are listed as skipped with that reason. The tier
//! says it was skipped when the folder is not there.

use std::path::PathBuf;
use std::sync::Arc;

use opentrail_lake::schema::{batch, row};
use opentrail_lake::sql::{BridgeError, bridge};
use opentrail_lake::{LakeTables, ParquetLake, QueryEngine};
use opentrail_model::lake::StoreCategory;
use serde_json::json;

const STORE_ID: &str = "0b2c0d4e-1111-4222-8333-444455556666";

/// Fills in the placeholders the published queries use for the store, times and IDs.
fn substitute(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find(['<', '$']) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (token, length) = if let Some(inner) = tail.strip_prefix("<") {
            match inner.find('>') {
                Some(end) if end < 60 && !inner[..end].contains(['\'', '=', '<']) => (&inner[..end], end + 2),
                _ => ("", 0),
            }
        } else {
            let inner = tail[1..].trim_start_matches('{');
            let end = inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
            let braces = tail[1..].len() - inner.len();
            let closing = usize::from(inner[end..].starts_with('}'));
            (&inner[..end], 1 + braces + end + closing)
        };
        if length == 0 || token.is_empty() {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
            continue;
        }
        let lower = token.to_ascii_lowercase();
        let inside_quotes = out.ends_with('\'');
        let value = if lower.contains("date") || lower.contains("time") {
            "2024-01-01 00:00:00".to_string()
        } else if lower.contains("eds") || lower.contains("event data store") || lower.contains("event_data_store") {
            STORE_ID.to_string()
        } else if inside_quotes {
            "example".to_string()
        } else {
            "'example'".to_string()
        };
        out.push_str(&value);
        rest = &tail[length..];
    }
    out.push_str(rest);
    out
}

/// Queries that need an AWS Config event data store.
fn needs_config_store(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    ["eventdata.configuration", "eventdata.resourcetype", "eventdata.configurationitem", "eventdata.resourceid"]
        .iter()
        .any(|marker| lower.contains(marker))
}

async fn store_with_events(dir: &std::path::Path) -> Arc<ParquetLake> {
    let tables = Arc::new(ParquetLake::local(dir.to_path_buf()).unwrap());
    let records: Vec<_> = (0..50)
        .map(|i| {
            let source = ["s3.amazonaws.com", "iam.amazonaws.com", "sts.amazonaws.com"][i % 3];
            let name = ["GetObject", "CreateUser", "AssumeRole", "CreateTags", "PutEvaluations"][i % 5];
            let category = if name == "GetObject" { "Data" } else { "Management" };
            json!({
                "eventVersion": "1.09", "eventTime": format!("2024-01-0{}T10:00:00Z", 1 + i % 5),
                "eventSource": source,
                "eventName": name,
                "awsRegion": "us-east-1", "eventCategory": category, "recipientAccountId": "111122223333",
                "additionalEventData": {"configRuleName": "rule", "configRuleArn": "arn:aws:config:us-east-1:111122223333:config-rule/r"},
                "userIdentity": {"type": "AssumedRole", "principalId": format!("AROA:{i}"), "arn": "arn:aws:sts::111122223333:assumed-role/r/s",
                                 "accountId": "111122223333", "accessKeyId": "ASIA1",
                                 "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/r", "userName": "r"},
                                                    "attributes": {"creationDate": "2024-01-01T09:00:00Z", "mfaAuthenticated": "false"}}},
                "requestParameters": {"bucketName": "b", "key": format!("k{}", i % 3), "tagSet": {"items": [{"key": "k", "value": "v"}]}},
                "responseElements": {"instancesSet": {"items": [{"instanceId": "i-1"}]}},
                "resources": [{"accountId": "111122223333", "type": "AWS::IAM::Role", "ARN": "arn:aws:iam::111122223333:role/r"}],
                "tlsDetails": {"tlsVersion": "TLSv1.2", "cipherSuite": "x", "clientProvidedHostHeader": "h"},
                "errorCode": if i % 7 == 0 { json!("AccessDenied") } else { json!(null) },
                "eventID": format!("id-{i}"), "readOnly": i % 2 == 0, "managementEvent": true
            })
        })
        .collect();
    let rows: Vec<_> = records.iter().map(|r| row(r.as_object().unwrap(), StoreCategory::CloudTrailEvents)).collect();
    let day_batch = batch(&rows, StoreCategory::CloudTrailEvents).unwrap();
    tables.write(STORE_ID, "2024-01-01", "i-fixture-00000000.parquet", &day_batch).await.unwrap();
    tables
}

#[tokio::test]
async fn every_published_lake_query_runs() {
    let folder = std::env::var_os("OPENTRAIL_LAKE_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/lake-queries"));
    if !folder.is_dir() {
        eprintln!("SKIPPED: real-data tier: {} is not here", folder.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tables = store_with_events(dir.path()).await;
    let engine = QueryEngine::new(tables);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let (mut ran, mut skipped, mut failed) = (0, 0, Vec::new());
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let sql = substitute(&std::fs::read_to_string(path).unwrap());
        if needs_config_store(&sql) {
            println!("SKIP {name}: reads an AWS Config event data store, which OpenTrail has no source for");
            skipped += 1;
            continue;
        }
        // Stores of outside events are read through `eventData`; everything else is CloudTrail events.
        let category = if sql.to_ascii_lowercase().contains("eventdata.") {
            StoreCategory::ActivityAuditLog
        } else {
            StoreCategory::CloudTrailEvents
        };
        let bridged = match bridge(&sql, |table| (table == STORE_ID).then(|| STORE_ID.to_string())) {
            Ok(bridged) => bridged,
            Err(BridgeError::UnknownTable(message)) => {
                println!("SKIP {name}: its table is not an event data store here ({message})");
                skipped += 1;
                continue;
            }
            Err(BridgeError::InvalidStatement(message)) if message.starts_with("Only SELECT") => {
                println!("SKIP {name}: not a query (an Athena statement; CloudTrail Lake refuses it too)");
                skipped += 1;
                continue;
            }
            Err(error) => {
                println!("FAIL {name}: {error}");
                failed.push(name);
                continue;
            }
        };
        let outcome = async {
            let planned =
                engine.plan(&bridged, &[(STORE_ID.to_string(), category)]).await.map_err(|e| e.to_string())?;
            engine.execute(planned).await.map_err(|e| e.to_string())
        }
        .await;
        match outcome {
            Ok(output) => {
                println!("ok   {name}: {} rows", output.rows.len());
                ran += 1;
            }
            Err(error) => {
                println!("FAIL {name}: {error}");
                failed.push(name);
            }
        }
    }
    println!("{ran} ran, {skipped} skipped, {} failed of {} queries", failed.len(), files.len());
    assert!(failed.is_empty(), "queries that did not run: {failed:?}");
}

#[test]
fn placeholders_are_filled() {
    assert_eq!(substitute("SELECT * FROM $EDS_ID WHERE a = 1"), format!("SELECT * FROM {STORE_ID} WHERE a = 1"));
    assert_eq!(
        substitute("FROM <Event data store Id> WHERE t >= '${date_filter}'"),
        format!("FROM {STORE_ID} WHERE t >= '2024-01-01 00:00:00'")
    );
    assert_eq!(
        substitute("FROM <EDS ID> WHERE id = $EVENT_ID AND x < 3"),
        format!("FROM {STORE_ID} WHERE id = 'example' AND x < 3")
    );
    assert_eq!(substitute("WHERE a <> b AND c <= 'x'"), "WHERE a <> b AND c <= 'x'");
}

/// Trino's lateral UNNEST gives one row per element, with the element's fields readable.
#[tokio::test]
async fn cross_join_unnest_gives_a_row_per_element() {
    let dir = tempfile::tempdir().unwrap();
    let engine = QueryEngine::new(store_with_events(dir.path()).await);
    let stores = [(STORE_ID.to_string(), StoreCategory::CloudTrailEvents)];
    for sql in [
        format!("SELECT t.r.arn, COUNT(*) FROM {STORE_ID} CROSS JOIN UNNEST(resources) AS t(r) GROUP BY 1"),
        format!("SELECT r.arn, COUNT(*) FROM {STORE_ID} e, UNNEST(e.resources) AS t(r) GROUP BY r.arn"),
    ] {
        let bridged = bridge(&sql, |table| (table == STORE_ID).then(|| STORE_ID.to_string())).unwrap();
        let output = engine.execute(engine.plan(&bridged, &stores).await.unwrap()).await.unwrap();
        let expected = vec![vec![Some("arn:aws:iam::111122223333:role/r".to_string()), Some("50".to_string())]];
        assert_eq!(output.rows, expected, "{sql}");
    }
}
