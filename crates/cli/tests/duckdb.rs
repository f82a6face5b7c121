//! Lake answers checked against DuckDB, a SQL engine nobody here wrote: the same records are
//! imported into OpenTrail (as CloudTrail log files, through `opentrail import`) and read by
//! DuckDB as raw JSON; the same questions must get the same answers. DuckDB also reads the
//! store's Parquet files directly and agrees.
//!
//! The core tier uses generated records; the real-data tier imports every record of
//! `../shared/data/real-events/*.jsonl` when that folder exists (and says it skipped otherwise).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_cloudtrail::Client;
use aws_sdk_cloudtrail::types::QueryStatus;
use common::*;
use serde_json::{Value, json};

/// Oldest events the comparison stores keep (their retention, in days).
const RETENTION_DAYS: i64 = 3653;

fn duckdb_available() -> bool {
    let found = Command::new("python3").args(["-c", "import duckdb"]).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("OPENTRAIL_REQUIRE_DUCKDB").is_none(), "DuckDB (pip install duckdb) is required");
        eprintln!("SKIPPED: DuckDB for Python is not installed (pip install duckdb)");
    }
    found
}

/// Rows of a DuckDB query, every value as text (None for NULL), as Lake prints them.
fn duckdb(sql: &str) -> Vec<Vec<Option<String>>> {
    let script = r#"
import duckdb, json, sys
rows = duckdb.connect().execute(sys.argv[1]).fetchall()
print(json.dumps([[None if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in row] for row in rows]))
"#;
    let output = Command::new("python3").args(["-c", script, sql]).output().expect("python3 runs");
    assert!(output.status.success(), "DuckDB failed on {sql}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn lake(ct: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let id = ct.start_query().query_statement(sql).send().await.unwrap().query_id().unwrap().to_string();
    loop {
        let described = ct.describe_query().query_id(&id).send().await.unwrap();
        match described.query_status().unwrap() {
            QueryStatus::Finished => break,
            QueryStatus::Queued | QueryStatus::Running => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{sql} ended {other:?}: {:?}", described.error_message()),
        }
    }
    let mut rows = Vec::new();
    let mut token = None;
    loop {
        let page = ct.get_query_results().query_id(&id).set_next_token(token).send().await.unwrap();
        for row in page.query_result_rows() {
            // A NULL value is left out of its row; the queries below name every column.
            rows.push(row.iter().flat_map(|cell| cell.values().map(|v| Some(v.clone()))).collect());
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return rows;
        }
    }
}

/// Writes records as CloudTrail log files (one per account, Region and day, as trails do) and as
/// JSON lines for DuckDB.
fn pack(records: &[Value], folder: &Path) -> PathBuf {
    let mut files: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for record in records {
        let time = record["eventTime"].as_str().unwrap_or("2020-01-01T00:00:00Z");
        let (y, m, d) = (&time[0..4], &time[5..7], &time[8..10]);
        let account = record["recipientAccountId"].as_str().unwrap_or("123456789012");
        let region = record["awsRegion"].as_str().unwrap_or("us-east-1");
        let key = format!(
            "AWSLogs/{account}/CloudTrail/{region}/{y}/{m}/{d}/{account}_CloudTrail_{region}_{y}{m}{d}T0000Z_x.json.gz"
        );
        files.entry(key).or_default().push(record.clone());
    }
    for (key, records) in files {
        let path = folder.join("logs").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, json!({ "Records": records }).to_string().as_bytes()).unwrap();
        std::fs::write(path, gz.finish().unwrap()).unwrap();
    }
    let lines = folder.join("records.jsonl");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&lines, text).unwrap();
    lines
}

/// Generated records: several users, keys, Regions, errors and days.
fn generated_records() -> Vec<Value> {
    let names =
        ["CreateBucket", "PutObject", "GetObject", "DeleteBucket", "AssumeRole", "ConsoleLogin", "RunInstances"];
    let now = chrono::Utc::now();
    (0..3000)
        .map(|i: i64| {
            let time = now - chrono::Duration::minutes(i * 7 + 30);
            let region = ["us-east-1", "eu-west-1", "ap-south-1"][(i % 3) as usize];
            let mut record = json!({
                "eventVersion": "1.08",
                "userIdentity": {"type": "IAMUser", "principalId": format!("AIDA{}", i % 13), "userName": format!("user{}", i % 13),
                                 "accessKeyId": format!("AKIA{:016}", i % 29), "accountId": "123456789012"},
                "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "eventSource": if i % 3 == 0 { "s3.amazonaws.com" } else { "ec2.amazonaws.com" },
                "eventName": names[(i as usize * 7 + i as usize / 5) % names.len()],
                "awsRegion": region,
                "sourceIPAddress": format!("10.0.{}.{}", i % 7, i % 250),
                "requestParameters": {"bucketName": format!("bucket-{}", i % 5), "nested": {"n": i}},
                "eventID": format!("00000000-0000-4000-8000-{i:012}"),
                "readOnly": i % 2 == 0,
                "eventType": "AwsApiCall", "managementEvent": true, "eventCategory": "Management",
                "recipientAccountId": "123456789012"
            });
            if i % 11 == 0 {
                record["errorCode"] = json!(if i % 2 == 0 { "AccessDenied" } else { "NoSuchBucket" });
            }
            record
        })
        .collect()
}

/// The questions, each in Lake's dialect (table `{id}`) and DuckDB's over raw JSON (`{json}`,
/// restricted to the same retention window as the store).
fn questions(access_key: &str, day: &str) -> Vec<(String, String)> {
    let j = |path: &str| format!("json_extract_string(json, '$.{path}')");
    let time = format!("TRY_CAST({} AS TIMESTAMP)", j("eventTime"));
    vec![
        (
            "SELECT eventName, COUNT(*) AS n FROM {id} GROUP BY eventName ORDER BY n DESC, eventName".into(),
            format!("SELECT {n} AS eventName, COUNT(*) AS n FROM {{json}} GROUP BY 1 ORDER BY n DESC, 1", n = j("eventName")),
        ),
        (
            "SELECT awsRegion, COUNT(DISTINCT userIdentity.userName) AS users, COUNT(*) AS n FROM {id} GROUP BY awsRegion ORDER BY awsRegion".into(),
            format!(
                "SELECT {r}, COUNT(DISTINCT {u}), COUNT(*) FROM {{json}} GROUP BY 1 ORDER BY 1",
                r = j("awsRegion"),
                u = j("userIdentity.userName")
            ),
        ),
        (
            "SELECT errorCode, COUNT(*) AS n FROM {id} WHERE errorCode IS NOT NULL GROUP BY errorCode ORDER BY n DESC, errorCode LIMIT 10".into(),
            format!("SELECT {e}, COUNT(*) AS n FROM {{json}} WHERE {e} IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10", e = j("errorCode")),
        ),
        (
            format!(
                "SELECT eventSource, COUNT(*) AS n FROM {{id}} WHERE eventTime >= '{day} 00:00:00' AND eventTime < '{day} 12:00:00' GROUP BY eventSource ORDER BY eventSource"
            ),
            format!(
                "SELECT {s}, COUNT(*) FROM {{json}} WHERE {time} >= '{day} 00:00:00' AND {time} < '{day} 12:00:00' GROUP BY 1 ORDER BY 1",
                s = j("eventSource")
            ),
        ),
        (
            format!("SELECT eventID, eventName FROM {{id}} WHERE userIdentity.accessKeyId = '{access_key}' ORDER BY eventID, eventName"),
            format!("SELECT {i}, {n} FROM {{json}} WHERE {k} = '{access_key}' ORDER BY 1, 2", i = j("eventID"), n = j("eventName"), k = j("userIdentity.accessKeyId")),
        ),
        (
            "SELECT element_at(requestParameters, 'bucketName') AS bucket, COUNT(*) AS n FROM {id} WHERE eventSource = 's3.amazonaws.com' GROUP BY 1 ORDER BY 1".into(),
            format!(
                "SELECT {b}, COUNT(*) FROM {{json}} WHERE {s} = 's3.amazonaws.com' GROUP BY 1 ORDER BY 1",
                b = j("requestParameters.bucketName"),
                s = j("eventSource")
            ),
        ),
    ]
}

async fn compare(records: Vec<Value>, access_key: &str, day: &str) {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let store = ct
        .create_event_data_store()
        .name("compared")
        .retention_period(RETENTION_DAYS as i32)
        .start_ingestion(false) // only the imported records, not the server's own calls
        .send()
        .await
        .unwrap();
    let id = store.event_data_store_arn().unwrap().rsplit('/').next().unwrap().to_string();
    let folder = tempfile::tempdir().unwrap();
    let lines = pack(&records, folder.path());
    let output = Command::new(env!("CARGO_BIN_EXE_opentrail"))
        .args(["import", folder.path().join("logs").to_str().unwrap(), "--event-data-store", &id, "--data-dir"])
        .arg(server.server_data_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("{}", String::from_utf8_lossy(&output.stdout).trim());

    let oldest = (chrono::Utc::now() - chrono::Duration::days(RETENTION_DAYS - 1)).format("%Y-%m-%d");
    let raw = format!(
        "(SELECT json FROM read_json_objects('{}', format = 'newline_delimited') \
         WHERE TRY_CAST(json_extract_string(json, '$.eventTime') AS TIMESTAMP) >= '{oldest}')",
        lines.display()
    );
    for (lake_sql, duck_sql) in questions(access_key, day) {
        let lake_sql = lake_sql.replace("{id}", &id);
        let duck_sql = duck_sql.replace("{json}", &raw);
        let ours = lake(&ct, &lake_sql).await;
        // Lake leaves NULL values out of a row; so does this side of the comparison.
        let theirs: Vec<Vec<Option<String>>> =
            duckdb(&duck_sql).into_iter().map(|row| row.into_iter().filter(Option::is_some).collect()).collect();
        assert_eq!(ours, theirs, "{lake_sql}");
        eprintln!("agrees with DuckDB ({} rows): {lake_sql}", ours.len());
    }

    // DuckDB reads the store's Parquet files directly, and counts what we count.
    let parquet = server.server_data_dir().join("lake").join("tables").join(&id);
    let direct = duckdb(&format!(
        "SELECT eventname, COUNT(*) AS n FROM read_parquet('{}/*/*.parquet') GROUP BY 1 ORDER BY n DESC, 1",
        parquet.display()
    ));
    let ours =
        lake(&ct, &format!("SELECT eventName, COUNT(*) AS n FROM {id} GROUP BY eventName ORDER BY n DESC, eventName"))
            .await;
    let direct: Vec<Vec<Option<String>>> =
        direct.into_iter().map(|row| row.into_iter().filter(Option::is_some).collect()).collect();
    assert_eq!(direct, ours);
}

#[tokio::test]
async fn lake_answers_equal_duckdb_on_generated_records() {
    if !duckdb_available() {
        return;
    }
    let day = (chrono::Utc::now() - chrono::Duration::days(3)).format("%Y-%m-%d").to_string();
    compare(generated_records(), "AKIA0000000000000007", &day).await;
}

#[tokio::test]
async fn lake_answers_equal_duckdb_on_real_records() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real-events");
    if !folder.is_dir() {
        eprintln!("SKIPPED: real-data tier: {} is not here", folder.display());
        return;
    }
    if !duckdb_available() {
        return;
    }
    let mut records = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "jsonl")) {
        for line in std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(record @ Value::Object(_)) = serde_json::from_str::<Value>(line)
                && record["eventTime"].as_str().is_some_and(|t| t.len() >= 10)
            {
                records.push(record);
            }
        }
    }
    eprintln!("real-data tier: {} records from {} files", records.len(), entries.len());
    let key = records
        .iter()
        .find_map(|r| r["userIdentity"]["accessKeyId"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "AKIANONE".into());
    let day = records.iter().find_map(|r| r["eventTime"].as_str().map(|t| t[..10].to_string())).unwrap_or_default();
    compare(records, &key, &day).await;
}
