//! The Lake at scale, next to DuckDB in the same run.
//!
//! Replays real CloudTrail records (`OPENTRAIL_BENCH_RECORDS`, else `../shared/data/real-events`,
//! each a `.jsonl` folder) into `OPENTRAIL_BENCH_EVENTS` events (default 10,000,000) spread over
//! 30 days, written as a trail writes them: gzip log files of one account, per Region and five
//! minutes. Each replayed event keeps its record's shape and gets its own time, event ID,
//! request ID, source IP address and one of 20,000 access keys; one in 50 is an AccessDenied.
//!
//! Then, against a real `opentrail serve`:
//! - ingest: `opentrail import` of all log files into an event data store (events/s);
//! - size: raw JSON, the gzip log files, the store's Parquet files;
//! - three queries (a time-bounded aggregate, a full-scan GROUP BY, a lookup by access key),
//!   each end to end through StartQuery, DescribeQuery and GetQueryResults, with the engine's
//!   own execution time from the query statistics; and the same questions to DuckDB (2 threads)
//!   over the gzip log files and over the store's Parquet files. Row counts must agree.
//!
//! `cargo bench -p opentrail --bench lake`; DuckDB comes from Python (`pip install duckdb`).
//! `OPENTRAIL_BENCH_DIR` names a folder for the log files, kept afterwards (else a temporary one).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_cloudtrail::types::QueryStatus;
use chrono::{DateTime, TimeZone, Utc};
use common::{ROOT_A, TestServer, client};
use serde_json::{Value, json};

const ACCOUNT: &str = "111122223333";
const DAYS: i64 = 30;
const ACCESS_KEYS: u64 = 20_000;
/// Consecutive events that share log files (one file per Region among them).
const EVENTS_PER_INTERVAL: u64 = 5_000;
const RUNS: usize = 3;

fn main() {
    let events: u64 = std::env::var("OPENTRAIL_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(events));
}

async fn run(events: u64) {
    let templates = templates();
    // OPENTRAIL_BENCH_DIR keeps the log files (for a look with other tools afterwards).
    let work = tempfile::tempdir().unwrap();
    let logs = std::env::var_os("OPENTRAIL_BENCH_DIR").map_or_else(|| work.path().join("logs"), PathBuf::from);
    let _ = std::fs::remove_dir_all(&logs);
    let first = Utc.from_utc_datetime(&(Utc::now() - chrono::Duration::days(DAYS + 1)).date_naive().into());
    println!(
        "lake benchmark: {events} events replayed from {} real records, {DAYS} days from {first}",
        templates.len()
    );

    let started = Instant::now();
    let sizes = replay(&templates, events, first, &logs);
    println!(
        "replayed into {} gzip log files in {:.1} s: raw JSON {}, gzip {}",
        sizes.files,
        started.elapsed().as_secs_f64(),
        mib(sizes.raw_json),
        mib(sizes.gzip)
    );

    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let store =
        ct.create_event_data_store().name("bench").retention_period(3653).start_ingestion(false).send().await.unwrap();
    let id = store.event_data_store_arn().unwrap().rsplit('/').next().unwrap().to_string();

    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_opentrail"))
        .args(["import", logs.to_str().unwrap(), "--event-data-store", &id, "--data-dir"])
        .arg(server.server_data_dir())
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains(&format!(" {events} events")), "not every event was imported: {summary}");
    let parquet_dir = server.server_data_dir().join("lake").join("tables").join(&id);
    let parquet = folder_bytes(&parquet_dir);
    println!("ingest (opentrail import): {:.0} events/s ({seconds:.1} s)", events as f64 / seconds);
    println!(
        "size: Parquet {} = {:.1}% of raw JSON ({:.1}% of the gzip log files)",
        mib(parquet),
        100.0 * parquet as f64 / sizes.raw_json as f64,
        100.0 * parquet as f64 / sizes.gzip as f64
    );

    let largest = Command::new("python3")
        .args(["-c", "import duckdb, sys\nfor name, size in duckdb.sql(sys.argv[1]).fetchall(): print(f'  {name}: {size / 1048576:.1f} MiB')"])
        .arg(format!(
            "SELECT path_in_schema, SUM(total_compressed_size) AS bytes FROM parquet_metadata('{}/*/*.parquet') \
             GROUP BY 1 ORDER BY 2 DESC LIMIT 6",
            parquet_dir.display()
        ))
        .output()
        .unwrap();
    print!("largest columns:\n{}", String::from_utf8_lossy(&largest.stdout));

    let day = (first + chrono::Duration::days(DAYS / 2)).format("%Y-%m-%d").to_string();
    let next_day = (first + chrono::Duration::days(DAYS / 2 + 1)).format("%Y-%m-%d").to_string();
    let key = access_key(7);
    let questions = [
        Question {
            name: "time-bounded aggregate (one day)",
            lake: format!(
                "SELECT eventSource, eventName, COUNT(*) AS calls FROM {id} WHERE eventTime >= '{day} 00:00:00' \
                 AND eventTime < '{next_day} 00:00:00' GROUP BY eventSource, eventName ORDER BY calls DESC"
            ),
            duck_json: format!(
                "SELECT r.eventSource, r.eventName, COUNT(*) AS calls FROM {{records}} \
                 WHERE CAST(r.eventTime AS TIMESTAMP) >= '{day} 00:00:00' AND CAST(r.eventTime AS TIMESTAMP) < '{next_day} 00:00:00' \
                 GROUP BY 1, 2 ORDER BY calls DESC"
            ),
            duck_parquet: format!(
                "SELECT eventsource, eventname, COUNT(*) AS calls FROM {{parquet}} \
                 WHERE eventtime >= TIMESTAMP '{day} 00:00:00' AND eventtime < TIMESTAMP '{next_day} 00:00:00' \
                 GROUP BY 1, 2 ORDER BY calls DESC"
            ),
        },
        Question {
            name: "full-scan GROUP BY",
            lake: format!("SELECT eventName, COUNT(*) AS calls FROM {id} GROUP BY eventName ORDER BY calls DESC"),
            duck_json: "SELECT r.eventName, COUNT(*) AS calls FROM {records} GROUP BY 1 ORDER BY calls DESC".into(),
            duck_parquet: "SELECT eventname, COUNT(*) AS calls FROM {parquet} GROUP BY 1 ORDER BY calls DESC".into(),
        },
        Question {
            name: "lookup by access key",
            lake: format!(
                "SELECT eventTime, eventName, sourceIPAddress FROM {id} \
                 WHERE userIdentity.accessKeyId = '{key}' ORDER BY eventTime"
            ),
            duck_json: format!(
                "SELECT r.eventTime, r.eventName, r.sourceIPAddress FROM {{records}} \
                 WHERE r.userIdentity.accessKeyId = '{key}' ORDER BY 1"
            ),
            duck_parquet: format!(
                "SELECT eventtime, eventname, sourceipaddress FROM {{parquet}} \
                 WHERE useridentity.accesskeyid = '{key}' ORDER BY 1"
            ),
        },
    ];

    let glob = format!("{}/**/*.json.gz", logs.display());
    let parquet_glob = format!("read_parquet('{}/*/*.parquet')", parquet_dir.display());
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>14} {:>16} {:>8} {:>10}",
        "query (median of 3)", "end to end", "engine", "DuckDB gzip", "DuckDB Parquet", "rows", "x gzip"
    );
    for question in &questions {
        let mut end_to_end = Vec::new();
        let mut engine = Vec::new();
        let mut rows = 0;
        for _ in 0..RUNS {
            let (total, execution, count) = lake_query(&ct, &question.lake).await;
            end_to_end.push(total);
            engine.push(execution);
            rows = count;
        }
        let records = format!("(SELECT unnest(Records) AS r FROM read_json('{glob}'))");
        let (json_time, json_rows) = duckdb(&question.duck_json.replace("{records}", &records), 1);
        let (parquet_time, parquet_rows) = duckdb(&question.duck_parquet.replace("{parquet}", &parquet_glob), RUNS);
        assert_eq!((rows, rows), (json_rows, parquet_rows), "row counts differ for {}", question.name);
        let (end_to_end, engine) = (median(end_to_end), median(engine));
        println!(
            "{:<34} {:>9.0} ms {:>9.0} ms {:>11.0} ms {:>13.1} ms {:>8} {:>9.0}x",
            question.name,
            ms(end_to_end),
            ms(engine),
            ms(json_time),
            ms(parquet_time),
            rows,
            json_time.as_secs_f64() / end_to_end.as_secs_f64()
        );
    }
}

struct Question {
    name: &'static str,
    lake: String,
    /// Over `{records}`: one row `r` per record of the gzip log files (schema as DuckDB detects
    /// it, which is faster than naming the fields).
    duck_json: String,
    /// Over `{parquet}`: the store's Parquet files.
    duck_parquet: String,
}

/// The records to replay: every `.jsonl` file of the folder (or, without one, a generated
/// record in the shape of a CloudTrail management event).
fn templates() -> Vec<Value> {
    let folder = std::env::var_os("OPENTRAIL_BENCH_RECORDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real-events"));
    let mut records = Vec::new();
    for path in std::fs::read_dir(&folder).into_iter().flatten().flatten().map(|entry| entry.path()) {
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                if let Ok(record @ Value::Object(_)) = serde_json::from_str::<Value>(line)
                    && record.get("eventName").is_some()
                {
                    records.push(record);
                }
            }
        }
    }
    if records.is_empty() {
        println!("(no records in {}: replaying a generated record; set OPENTRAIL_BENCH_RECORDS)", folder.display());
        records.push(json!({
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::111122223333:user/alice",
                             "accountId": "111122223333", "accessKeyId": "AKIAEXAMPLE", "userName": "alice"},
            "eventTime": "2024-01-01T00:00:00Z", "eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances",
            "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.1", "userAgent": "aws-cli/2.15.0",
            "requestParameters": {"instancesSet": {}, "filterSet": {}}, "responseElements": null,
            "requestID": "r", "eventID": "e", "readOnly": true, "eventType": "AwsApiCall",
            "managementEvent": true, "recipientAccountId": "111122223333", "eventCategory": "Management"
        }));
    }
    records
}

fn access_key(n: u64) -> String {
    format!("AKIA{n:016}")
}

/// A cheap, well-mixed hash (SplitMix64), so replayed fields vary without a random source.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn replayed(template: &Value, i: u64, time: DateTime<Utc>) -> Value {
    let mut record = template.clone();
    let h = mix(i);
    record["eventTime"] = json!(time.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    record["eventID"] = json!(format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        h & 0xffff,
        i >> 48 & 0xfff,
        i >> 36 & 0xfff,
        i & 0xfff_ffff_ffff
    ));
    record["requestID"] = json!(format!("{:016X}", mix(h)));
    record["sourceIPAddress"] = json!(format!("198.51.{}.{}", h >> 8 & 0xff, h & 0xff));
    record["recipientAccountId"] = json!(ACCOUNT);
    if h.is_multiple_of(50) {
        record["errorCode"] = json!("AccessDenied");
        record["errorMessage"] = json!("User is not authorized to perform this operation");
    }
    if let Some(identity) = record.get_mut("userIdentity").and_then(Value::as_object_mut) {
        identity.insert("accessKeyId".into(), json!(access_key(h % ACCESS_KEYS)));
    }
    record
}

#[derive(Default)]
struct Sizes {
    files: u64,
    raw_json: u64,
    gzip: u64,
}

/// Writes `events` replayed records as gzip log files, two threads taking alternate intervals.
fn replay(templates: &[Value], events: u64, first: DateTime<Utc>, logs: &Path) -> Sizes {
    let step_ms = (DAYS * 86_400_000) as f64 / events as f64;
    let intervals = events.div_ceil(EVENTS_PER_INTERVAL);
    let totals: Vec<Sizes> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|worker| {
                scope.spawn(move || {
                    let mut sizes = Sizes::default();
                    for interval in (worker..intervals).step_by(2) {
                        let start = interval * EVENTS_PER_INTERVAL;
                        let end = (start + EVENTS_PER_INTERVAL).min(events);
                        let mut by_region: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
                        for i in start..end {
                            let time = first + chrono::Duration::milliseconds((i as f64 * step_ms) as i64);
                            let template = &templates[(mix(i ^ 0x5555) % templates.len() as u64) as usize];
                            let record = replayed(template, i, time);
                            let region = record["awsRegion"].as_str().unwrap_or("us-east-1").to_string();
                            by_region.entry(region).or_default().push(record);
                        }
                        let time = first + chrono::Duration::milliseconds((start as f64 * step_ms) as i64);
                        for (region, records) in by_region {
                            let (raw, gzip) = write_log_file(logs, &region, time, interval, &records);
                            sizes.files += 1;
                            sizes.raw_json += raw;
                            sizes.gzip += gzip;
                        }
                    }
                    sizes
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().unwrap()).collect()
    });
    totals.into_iter().fold(Sizes::default(), |a, b| Sizes {
        files: a.files + b.files,
        raw_json: a.raw_json + b.raw_json,
        gzip: a.gzip + b.gzip,
    })
}

/// One log file in CloudTrail's layout; returns (raw JSON bytes of its records, file bytes).
fn write_log_file(logs: &Path, region: &str, time: DateTime<Utc>, interval: u64, records: &[Value]) -> (u64, u64) {
    let (date, stamp) = (time.format("%Y/%m/%d"), time.format("%Y%m%dT%H%MZ"));
    let path = logs.join(format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/{region}/{date}/{ACCOUNT}_CloudTrail_{region}_{stamp}_{interval:08x}.json.gz"
    ));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut raw = 0;
    let mut text = Vec::new();
    gz.write_all(b"{\"Records\":[").unwrap();
    for (n, record) in records.iter().enumerate() {
        text.clear();
        serde_json::to_writer(&mut text, record).unwrap();
        raw += text.len() as u64;
        if n > 0 {
            gz.write_all(b",").unwrap();
        }
        gz.write_all(&text).unwrap();
    }
    gz.write_all(b"]}").unwrap();
    let bytes = gz.finish().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    (raw, bytes.len() as u64)
}

fn folder_bytes(folder: &Path) -> u64 {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                folder_bytes(&entry.path())
            } else {
                entry.metadata().unwrap().len()
            }
        })
        .sum()
}

/// (end to end, engine execution time, rows) of one query through the API.
async fn lake_query(ct: &aws_sdk_cloudtrail::Client, sql: &str) -> (Duration, Duration, usize) {
    let started = Instant::now();
    let id = ct.start_query().query_statement(sql).send().await.unwrap().query_id().unwrap().to_string();
    let execution = loop {
        let described = ct.describe_query().query_id(&id).send().await.unwrap();
        match described.query_status().unwrap() {
            QueryStatus::Finished => {
                let statistics = described.query_statistics().unwrap();
                break Duration::from_millis(statistics.execution_time_in_millis().unwrap_or_default() as u64);
            }
            QueryStatus::Queued | QueryStatus::Running => tokio::time::sleep(Duration::from_millis(5)).await,
            other => panic!("{sql} ended {other:?}: {:?}", described.error_message()),
        }
    };
    let mut rows = 0;
    let mut token = None;
    loop {
        let page = ct.get_query_results().query_id(&id).set_next_token(token).send().await.unwrap();
        rows += page.query_result_rows().len();
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return (started.elapsed(), execution, rows);
        }
    }
}

/// (median time, rows) of a DuckDB query run `runs` times with two threads.
fn duckdb(sql: &str, runs: usize) -> (Duration, usize) {
    let script = r#"
import duckdb, json, sys, time
db = duckdb.connect()
db.execute("SET threads = 2")
db.execute("SET enable_progress_bar = false")
times, rows = [], 0
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    rows = len(db.execute(sys.argv[1]).fetchall())
    times.append(time.perf_counter() - started)
times.sort()
print(json.dumps([times[len(times) // 2], rows]))
"#;
    let output = Command::new("python3").args(["-c", script, sql, &runs.to_string()]).output().expect("python3 runs");
    assert!(output.status.success(), "DuckDB failed on {sql}: {}", String::from_utf8_lossy(&output.stderr));
    let (seconds, rows): (f64, usize) = serde_json::from_slice(&output.stdout).unwrap();
    (Duration::from_secs_f64(seconds), rows)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
