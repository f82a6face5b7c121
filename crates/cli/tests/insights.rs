//! Insights end to end against a real server: traffic built from the real records
//! (`../shared/data/real-events`) goes into the journal with `put-events`, the server's Insights
//! consumer raises a write-rate and an AccessDenied insight, and every reader finds them:
//! LookupEvents (`EventCategory=insight`), the trail's bucket under `CloudTrail-Insight/` with
//! the digest chain covering those files, an event data store selecting Insights events read
//! with Lake SQL, `ListInsightsData` and `ListInsightsMetricData`. Then a SIGKILL in the middle
//! of an insight, and the same flow with the aws CLI only. Skipped, and says so, where the data
//! is not there.
//!
//! The server runs with a one-day baseline (`[insights] baseline_minutes`): the week's
//! arithmetic is pinned by `crates/insights/tests/replay.rs`; here a day keeps the debug server's
//! work small.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_cloudtrail::types::{
    AdvancedEventSelector, AdvancedFieldSelector, EventCategory, InsightSelector, InsightType, InsightsMetricDataType,
    QueryStatus,
};
use common::*;
use opentrail_insights::replay::{Injection, Pool, Traffic, generate};
use serde_json::Value;

const REGION: &str = "eu-west-1";
const BUCKET: &str = "insights-logs";
const DAY: i64 = 1440;
const ATTACKER: &str = "arn:aws:iam::111111111111:user/mallory";
const FAST: [(&str, &str); 2] = [("OPENTRAIL_DELIVERY_INTERVAL", "1s"), ("OPENTRAIL_DIGEST_INTERVAL", "2s")];
const CONFIG: &str = "[insights]\nbaseline_minutes = 1440\n";

fn pool() -> Option<Pool> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real-events");
    let pool = Pool::load(&dir).unwrap();
    if pool.is_empty() {
        println!("skipped: {} not found (the real-data tier runs where it exists)", dir.display());
        return None;
    }
    Some(pool)
}

/// A day and some hours of steady traffic ending five minutes ago, with a 10-minute burst of
/// one write API by one principal and, later, a 10-minute burst of AccessDenied on a read API.
struct Scenario {
    records: Vec<Value>,
    burst_at: i64,
    burst: (String, String),
    denied: (String, String),
}

fn scenario(pool: &Pool) -> Scenario {
    let now = chrono::Utc::now().timestamp() / 60;
    let (from, to) = (now - DAY - 6 * 60, now - 5);
    let mut traffic = Traffic::steady(pool, ACCOUNT_A, REGION, from, to, 2);
    traffic.background_per_minute = 4.0;
    let burst_template = pool.distinct_writes()[20];
    let read = (0..pool.templates.len())
        .find(|&i| !pool.templates[i].write && pool.templates[i].error_code.is_none())
        .unwrap();
    let burst_at = to - 150;
    let burst = |template, start, error_code| Injection::Burst {
        template,
        start,
        minutes: 10,
        per_minute: 40,
        error_code,
        user_arn: ATTACKER.into(),
    };
    traffic.injections =
        vec![burst(burst_template, burst_at, None), burst(read, to - 100, Some("AccessDenied".into()))];
    let mut records = Vec::new();
    generate(pool, &traffic, |record| records.push(record));
    let name = |i: usize| (pool.templates[i].event_source().to_owned(), pool.templates[i].event_name().to_owned());
    Scenario { records, burst_at, burst: name(burst_template), denied: name(read) }
}

/// Writes records with `put-events` into the (stopped) server's data directory.
fn put_events(server: &TestServer, records: &[Value]) {
    let file = server.data_dir.path().join(format!("traffic-{}.jsonl", records.len()));
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_opentrail"))
        .arg("put-events")
        .arg(&file)
        .args(["--account", ACCOUNT_A, "--data-dir"])
        .arg(server.server_data_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "put-events: {}", String::from_utf8_lossy(&output.stderr));
}

/// The Insights records LookupEvents returns in `REGION` (all pages).
async fn insight_records(ct: &aws_sdk_cloudtrail::Client) -> Vec<Value> {
    let mut records = Vec::new();
    let mut token = None;
    loop {
        let page =
            ct.lookup_events().event_category(EventCategory::Insight).set_next_token(token).send().await.unwrap();
        records.extend(page.events().iter().map(|e| serde_json::from_str(e.cloud_trail_event().unwrap()).unwrap()));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return records;
        }
    }
}

async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn state(record: &Value) -> &str {
    record["insightDetails"]["state"].as_str().unwrap()
}

fn selectors() -> Vec<InsightSelector> {
    [InsightType::ApiCallRateInsight, InsightType::ApiErrorRateInsight]
        .into_iter()
        .map(|kind| InsightSelector::builder().insight_type(kind).build())
        .collect()
}

async fn bucket_files(s3: &aws_sdk_s3::Client, folder: &str) -> Vec<(String, Value)> {
    let (keys, _) = log_records(s3, BUCKET).await;
    let mut files = Vec::new();
    for key in keys.iter().filter(|k| k.contains(folder)) {
        let body = s3.get_object().bucket(BUCKET).key(key).send().await.unwrap().body.collect().await.unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body.into_bytes()[..]).read_to_string(&mut text).unwrap();
        files.push((key.clone(), serde_json::from_str(&text).unwrap()));
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_are_raised_from_real_traffic_and_every_reader_finds_them() {
    let Some(pool) = pool() else { return };
    let mut server = TestServer::start_with(CONFIG, &FAST);
    s3_client(&server.endpoint, ROOT_A).create_bucket().bucket(BUCKET).send().await.unwrap();
    let home = client(&server, ROOT_A, "us-east-1");
    let trail = home
        .create_trail()
        .name("insights")
        .s3_bucket_name(BUCKET)
        .is_multi_region_trail(true)
        .enable_log_file_validation(true)
        .send()
        .await
        .unwrap();
    let trail_arn = trail.trail_arn().unwrap().to_owned();
    home.start_logging().name("insights").send().await.unwrap();
    let put = home.put_insight_selectors().trail_name("insights").set_insight_selectors(Some(selectors())).send();
    assert_eq!(put.await.unwrap().insight_selectors().len(), 2);
    let got = home.get_trail().name("insights").send().await.unwrap();
    assert_eq!(got.trail().unwrap().has_insight_selectors(), Some(true));
    // A Lake source store with Insights, sending them to a store that selects Insights events.
    let insight_only = AdvancedEventSelector::builder()
        .name("insights")
        .field_selectors(AdvancedFieldSelector::builder().field("eventCategory").equals("Insight").build().unwrap())
        .build()
        .unwrap();
    let destination =
        home.create_event_data_store().name("insights").advanced_event_selectors(insight_only).send().await.unwrap();
    let destination_arn = destination.event_data_store_arn().unwrap().to_owned();
    let source = home.create_event_data_store().name("source").send().await.unwrap();
    let put = home
        .put_insight_selectors()
        .event_data_store(source.event_data_store_arn().unwrap())
        .insights_destination(&destination_arn)
        .insight_selectors(InsightSelector::builder().insight_type(InsightType::ApiCallRateInsight).build())
        .send()
        .await
        .unwrap();
    assert_eq!(put.insights_destination(), Some(destination_arn.as_str()));

    let scenario = scenario(&pool);
    server.kill();
    put_events(&server, &scenario.records);
    server.restart();

    // The restarted server listens on a new port.
    let (home, s3) = (client(&server, ROOT_A, "us-east-1"), s3_client(&server.endpoint, ROOT_A));
    let ct = client(&server, ROOT_A, REGION);
    let insights = wait_for("two insights to open and close", Duration::from_secs(240), async || {
        let found = insight_records(&ct).await;
        (found.len() >= 4).then_some(found)
    })
    .await;
    let summary: Vec<String> = insights
        .iter()
        .map(|r| format!("{} {} {}", state(r), r["insightDetails"]["insightType"], r["insightDetails"]["eventName"]))
        .collect();
    assert_eq!(insights.len(), 4, "{summary:#?}");
    let find = |kind: &str, state_name: &str| {
        insights
            .iter()
            .find(|r| r["insightDetails"]["insightType"] == kind && state(r) == state_name)
            .unwrap_or_else(|| panic!("no {kind} {state_name}: {summary:#?}"))
    };
    let (write_start, write_end) = (find("ApiCallRateInsight", "Start"), find("ApiCallRateInsight", "End"));
    let (error_start, error_end) = (find("ApiErrorRateInsight", "Start"), find("ApiErrorRateInsight", "End"));
    assert_eq!(write_start["sharedEventID"], write_end["sharedEventID"]);
    assert_eq!(error_start["sharedEventID"], error_end["sharedEventID"]);
    assert_eq!(write_start["insightDetails"]["eventName"], scenario.burst.1.as_str());
    assert_eq!(write_start["insightDetails"]["eventSource"], scenario.burst.0.as_str());
    assert_eq!(error_start["insightDetails"]["eventName"], scenario.denied.1.as_str());
    assert_eq!(error_start["insightDetails"]["errorCode"], "AccessDenied");
    assert_eq!(write_start["eventType"], "AwsCloudTrailInsight");
    assert_eq!(write_start["awsRegion"], REGION);
    assert!(write_start.get("userIdentity").is_none() && write_start.get("eventName").is_none());
    let attributions = &write_start["insightDetails"]["insightContext"]["attributions"];
    assert_eq!(attributions[0]["attribute"], "userIdentityArn");
    assert_eq!(attributions[0]["insight"][0]["value"], ATTACKER);
    let started = chrono::DateTime::parse_from_rfc3339(write_start["eventTime"].as_str().unwrap()).unwrap();
    assert_eq!(started.timestamp() / 60, scenario.burst_at, "the Start is the burst's first minute");
    let statistics = &write_end["insightDetails"]["insightContext"]["statistics"];
    assert!(statistics["insight"]["average"].as_f64().unwrap() > 30.0, "{statistics}");
    assert!(statistics["insightDuration"].as_u64().unwrap() >= 10, "{statistics}");
    // Without EventCategory, Insights events stay out of LookupEvents.
    let plain = ct.lookup_events().max_results(50).send().await.unwrap();
    assert!(plain.events().iter().all(|e| !e.cloud_trail_event().unwrap().contains("AwsCloudTrailInsight")));

    // ListInsightsData by EventName, and ListInsightsMetricData's series around the burst.
    let data = ct
        .list_insights_data()
        .insight_source(&trail_arn)
        .data_type(aws_sdk_cloudtrail::types::ListInsightsDataType::InsightsEvents)
        .dimensions(aws_sdk_cloudtrail::types::ListInsightsDataDimensionKey::EventName, scenario.burst.1.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(data.events().len(), 2, "{:?}", data.events());
    let series_start = aws_smithy_types_time((scenario.burst_at - 30) * 60);
    let series_end = aws_smithy_types_time((scenario.burst_at + 30) * 60);
    let metric = |data_type| {
        ct.list_insights_metric_data()
            .trail_name(&trail_arn)
            .event_source(scenario.burst.0.as_str())
            .event_name(scenario.burst.1.as_str())
            .insight_type(InsightType::ApiCallRateInsight)
            .period(60)
            .data_type(data_type)
            .start_time(series_start)
            .end_time(series_end)
            .send()
    };
    let filled = metric(InsightsMetricDataType::FillWithZeros).await.unwrap();
    assert_eq!(filled.trail_arn(), Some(trail_arn.as_str()));
    assert_eq!(filled.timestamps().len(), 60, "a point a minute");
    assert_eq!(filled.values().len(), 60);
    let burst_values: Vec<f64> = filled.values()[30..40].to_vec();
    assert!(burst_values.iter().all(|v| *v >= 40.0), "{burst_values:?}");
    let non_zero = metric(InsightsMetricDataType::NonZeroData).await.unwrap();
    assert!(non_zero.values().iter().all(|v| *v > 0.0) && non_zero.values().len() <= 60);
    let missing_code = ct
        .list_insights_metric_data()
        .event_source(scenario.denied.0.as_str())
        .event_name(scenario.denied.1.as_str())
        .insight_type(InsightType::ApiErrorRateInsight)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(missing_code), "InvalidParameterException");

    // The trail's bucket: CloudTrail-Insight/ files with the four records, listed by digests.
    let insight_files = wait_for("Insights log files", Duration::from_secs(60), async || {
        let files = bucket_files(&s3, "/CloudTrail-Insight/").await;
        let records: usize = files.iter().map(|(_, f)| f["Records"].as_array().unwrap().len()).sum();
        (records == 4).then_some(files)
    })
    .await;
    for (key, _) in &insight_files {
        assert!(key.starts_with(&format!("AWSLogs/{ACCOUNT_A}/CloudTrail-Insight/{REGION}/")), "{key}");
        assert!(key.contains(&format!("_CloudTrail-Insight_{REGION}_")), "{key}");
    }
    wait_for("digests listing the Insights files", Duration::from_secs(60), async || {
        let digests = bucket_files(&s3, "/CloudTrail-Digest/").await;
        let listed: Vec<String> = digests
            .iter()
            .flat_map(|(_, d)| d["logFiles"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f["s3Object"].as_str().map(str::to_owned))
            .collect();
        insight_files.iter().all(|(key, _)| listed.contains(key)).then_some(())
    })
    .await;

    // The event data store that selects Insights events holds them; SQL reads insightDetails.
    let id = destination_arn.rsplit('/').next().unwrap();
    let sql = format!(
        "SELECT insightDetails['state'], insightDetails['insightType'], insightDetails['eventName'] \
         FROM {id} ORDER BY eventTime"
    );
    let rows = wait_for("the Insights store", Duration::from_secs(60), async || {
        let rows = lake_rows(&home, &sql).await;
        (rows.len() >= 2).then_some(rows)
    })
    .await;
    assert_eq!(
        rows,
        [
            vec!["Start".to_owned(), "ApiCallRateInsight".into(), scenario.burst.1.clone()],
            vec!["End".to_owned(), "ApiCallRateInsight".into(), scenario.burst.1.clone()],
        ],
        "only the call-rate insights the source selects"
    );
}

fn aws_smithy_types_time(seconds: i64) -> aws_sdk_cloudtrail::primitives::DateTime {
    aws_sdk_cloudtrail::primitives::DateTime::from_secs(seconds)
}

/// The rows of a Lake query, as text.
async fn lake_rows(ct: &aws_sdk_cloudtrail::Client, sql: &str) -> Vec<Vec<String>> {
    let id = ct.start_query().query_statement(sql).send().await.unwrap().query_id().unwrap().to_owned();
    loop {
        let described = ct.describe_query().query_id(&id).send().await.unwrap();
        match described.query_status().unwrap() {
            QueryStatus::Finished => break,
            QueryStatus::Failed | QueryStatus::Cancelled | QueryStatus::TimedOut => {
                panic!("{sql}: {:?}", described.error_message())
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let results = ct.get_query_results().query_id(&id).send().await.unwrap();
    results
        .query_result_rows()
        .iter()
        .map(|row| row.iter().flat_map(|column| column.values().cloned()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_in_the_middle_of_an_insight_neither_loses_nor_repeats_it() {
    let Some(pool) = pool() else { return };
    let mut server = TestServer::start_with(CONFIG, &[]);
    let home = client(&server, ROOT_A, "us-east-1");
    let s3 = s3_client(&server.endpoint, ROOT_A);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    home.create_trail().name("sigkill").s3_bucket_name(BUCKET).is_multi_region_trail(true).send().await.unwrap();
    home.put_insight_selectors().trail_name("sigkill").set_insight_selectors(Some(selectors())).send().await.unwrap();
    let scenario = scenario(&pool);
    // The first part ends five minutes into the write burst: its insight is open.
    let cut = chrono::DateTime::from_timestamp((scenario.burst_at + 5) * 60, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ");
    let cut = cut.to_string();
    let (before, after): (Vec<Value>, Vec<Value>) =
        scenario.records.into_iter().partition(|r| r["eventTime"].as_str().unwrap() < cut.as_str());
    server.kill();
    put_events(&server, &before);
    server.restart();
    let ct = client(&server, ROOT_A, REGION);
    let opened = wait_for("the Start", Duration::from_secs(240), async || {
        let found = insight_records(&ct).await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(opened.iter().map(state).collect::<Vec<_>>(), ["Start"]);
    // SIGKILL while the insight is open, then the rest of the traffic.
    server.kill();
    put_events(&server, &after);
    server.restart();
    let ct = client(&server, ROOT_A, REGION);
    let all = wait_for("both insights to close", Duration::from_secs(240), async || {
        let found = insight_records(&ct).await;
        (found.len() >= 4).then_some(found)
    })
    .await;
    let shared = opened[0]["sharedEventID"].as_str().unwrap();
    let same: Vec<&Value> = all.iter().filter(|r| r["sharedEventID"] == shared).collect();
    let mut states: Vec<&str> = same.iter().map(|r| state(r)).collect();
    states.sort();
    assert_eq!(states, ["End", "Start"], "opened once, closed once");
    assert!(same.iter().any(|r| r["eventID"] == opened[0]["eventID"]));
    assert_eq!(all.len(), 4, "{all:#?}");
}

#[test]
fn the_same_flow_with_the_aws_cli() {
    let Some(pool) = pool() else { return };
    if !aws_cli_available() {
        return;
    }
    let mut server = TestServer::start_with(CONFIG, &FAST);
    let start = (chrono::Utc::now() - chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    aws(&server, &["s3api", "create-bucket", "--bucket", BUCKET]);
    let trail = aws(
        &server,
        &[
            "cloudtrail",
            "create-trail",
            "--name",
            "cli",
            "--s3-bucket-name",
            BUCKET,
            "--is-multi-region-trail",
            "--enable-log-file-validation",
        ],
    );
    let trail_arn = trail["TrailARN"].as_str().unwrap().to_owned();
    aws(&server, &["cloudtrail", "start-logging", "--name", "cli"]);
    let selectors = aws(
        &server,
        &[
            "cloudtrail",
            "put-insight-selectors",
            "--trail-name",
            "cli",
            "--insight-selectors",
            r#"[{"InsightType":"ApiCallRateInsight"},{"InsightType":"ApiErrorRateInsight"}]"#,
        ],
    );
    assert_eq!(selectors["InsightSelectors"].as_array().unwrap().len(), 2);
    let got = aws(&server, &["cloudtrail", "get-insight-selectors", "--trail-name", "cli"]);
    assert_eq!(got["TrailARN"], trail_arn.as_str());

    let scenario = scenario(&pool);
    server.kill();
    put_events(&server, &scenario.records);
    server.restart();

    let in_region = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--region", REGION]);
        aws(&server, &all)
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    let found = loop {
        let page = in_region(&[
            "cloudtrail",
            "lookup-events",
            "--event-category",
            "insight",
            "--lookup-attributes",
            &format!("AttributeKey=EventName,AttributeValue={}", scenario.burst.1),
        ]);
        let events = page["Events"].as_array().cloned().unwrap_or_default();
        if events.len() >= 2 {
            break events;
        }
        assert!(Instant::now() < deadline, "timed out waiting for the insight");
        std::thread::sleep(Duration::from_millis(500));
    };
    let states: Vec<String> = found
        .iter()
        .map(|e| {
            let record: Value = serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
            record["insightDetails"]["state"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.contains(&"Start".to_owned()) && states.contains(&"End".to_owned()));
    assert!(found.iter().all(|e| e["EventName"] == scenario.burst.1.as_str()));

    // The operator's view: `opentrail insights list` and `show`.
    let opentrail_cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_opentrail"))
            .args(args)
            .args(["--region", REGION, "--endpoint-url", &server.endpoint])
            .env("AWS_ACCESS_KEY_ID", ROOT_A.0)
            .env("AWS_SECRET_ACCESS_KEY", ROOT_A.1)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(output.status.success(), "opentrail {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = opentrail_cli(&["insights", "list", "--since", "7d"]);
    assert!(listed.contains(&scenario.burst.1) && listed.contains("AccessDenied"), "{listed}");
    assert!(listed.contains("2 insights (0 open)"), "{listed}");
    let record: Value = serde_json::from_str(found[0]["CloudTrailEvent"].as_str().unwrap()).unwrap();
    let shown = opentrail_cli(&["insights", "show", record["sharedEventID"].as_str().unwrap()]);
    assert!(shown.contains("<- insight starts") && shown.contains(ATTACKER), "{shown}");

    let metric = in_region(&[
        "cloudtrail",
        "list-insights-metric-data",
        "--trail-name",
        &trail_arn,
        "--event-source",
        &scenario.burst.0,
        "--event-name",
        &scenario.burst.1,
        "--insight-type",
        "ApiCallRateInsight",
        "--period",
        "60",
        "--data-type",
        "FillWithZeros",
        "--start-time",
        &((scenario.burst_at - 10) * 60).to_string(),
        "--end-time",
        &((scenario.burst_at + 20) * 60).to_string(),
    ]);
    let values: Vec<f64> = metric["Values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(values.len(), 30, "{metric}");
    assert!(values[10..20].iter().all(|v| *v >= 40.0), "{values:?}");
    let errors = in_region(&[
        "cloudtrail",
        "list-insights-metric-data",
        "--event-source",
        &scenario.denied.0,
        "--event-name",
        &scenario.denied.1,
        "--insight-type",
        "ApiErrorRateInsight",
        "--error-code",
        "AccessDenied",
        "--data-type",
        "NonZeroData",
        "--period",
        "300",
    ]);
    let total: f64 = errors["Values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
    assert!(total >= 400.0, "{errors}");

    // The aws CLI's own validator checks the chain that covers the Insights files.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let output = std::process::Command::new("aws")
            .args(["cloudtrail", "validate-logs", "--endpoint-url", &server.endpoint, "--trail-arn", &trail_arn])
            .args(["--start-time", &start, "--verbose", "--region", REGION])
            .env("AWS_ACCESS_KEY_ID", ROOT_A.0)
            .env("AWS_SECRET_ACCESS_KEY", ROOT_A.1)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL_S3", &server.endpoint)
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && text.contains("CloudTrail-Insight/") {
            assert!(!text.contains("INVALID"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "validate-logs: {text}{}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_secs(2));
    }
}
