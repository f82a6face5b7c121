//! Insights delivery end to end: a journal, a control store, a local bucket and the worker's
//! rounds, then the repository's validator over what was written.

use std::collections::HashMap;
use std::io::Read;

use async_trait::async_trait;
use chrono::Duration;
use opentrail_buckets::{ListQuery, LocalBuckets, StoreOptions};
use opentrail_control::{BucketRecord, SqliteStore, TrailChange};
use opentrail_journal::{LocalJournal, LocalJournalOptions};
use opentrail_model::record::EventRecord;
use opentrail_model::selectors::InsightSelector;
use opentrail_model::{AccountId, Region};
use serde_json::json;

use super::tests::trail;
use super::*;
use crate::MasterKey;
use crate::layout::region_folder;
use crate::validate::{FileKind, Finding, ObjectSource, SourceError, ValidationTarget, validate};

const ACCOUNT: &str = "123456789012";
const BUCKET: &str = "trail-bucket";

/// An Insights record as CloudTrail delivers it (the user guide's ApiCallRateInsight Start
/// example), in `region`.
fn insight_record(region: &str, event_id: &str) -> Value {
    json!({
        "eventVersion": "1.07",
        "eventTime": "2026-01-01T00:02:00Z",
        "awsRegion": region,
        "eventID": event_id,
        "eventType": "AwsCloudTrailInsight",
        "recipientAccountId": ACCOUNT,
        "sharedEventID": "EXAMPLE8-02b2-4e93-9aab-08ed47ea5fd3",
        "insightDetails": {
            "state": "Start",
            "eventSource": "autoscaling.amazonaws.com",
            "eventName": "CompleteLifecycleAction",
            "insightType": "ApiCallRateInsight",
            "insightContext": {
                "statistics": {
                    "baseline": {"average": 0.0000882145},
                    "insight": {"average": 0.6},
                    "insightDuration": 5,
                    "baselineDuration": 11336
                },
                "attributions": [
                    {
                        "attribute": "userIdentityArn",
                        "insight": [
                            {"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1", "average": 0.2},
                            {"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole2", "average": 0.2},
                            {"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole3", "average": 0.2}
                        ],
                        "baseline": [
                            {"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1", "average": 0.0000882145}
                        ]
                    },
                    {
                        "attribute": "userAgent",
                        "insight": [{"value": "codedeploy.amazonaws.com", "average": 0.6}],
                        "baseline": [{"value": "codedeploy.amazonaws.com", "average": 0.0000882145}]
                    },
                    {
                        "attribute": "errorCode",
                        "insight": [{"value": "null", "average": 0.6}],
                        "baseline": [{"value": "null", "average": 0.0000882145}]
                    }
                ]
            }
        },
        "eventCategory": "Insight"
    })
}

fn management_event(region: &str, event_id: &str) -> Value {
    json!({
        "eventVersion": "1.11",
        "userIdentity": {"type": "Root", "principalId": ACCOUNT, "arn": format!("arn:aws:iam::{ACCOUNT}:root"),
            "accountId": ACCOUNT},
        "eventTime": "2026-01-01T00:01:00Z",
        "eventSource": "autoscaling.amazonaws.com",
        "eventName": "CompleteLifecycleAction",
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {"autoScalingGroupName": "web"},
        "responseElements": null,
        "requestID": "8c4b5f37-0a32-4bd2-a7b7-3f0d0b2e6a11",
        "eventID": event_id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    })
}

/// Reads a local bucket as `validate-logs` reads S3.
struct LocalSource(Arc<LocalBuckets>);

fn source_error(error: impl std::fmt::Display) -> SourceError {
    SourceError(error.to_string())
}

#[async_trait]
impl ObjectSource for LocalSource {
    async fn list(&self, bucket: &str, prefix: &str, marker: &str) -> Result<Vec<String>, SourceError> {
        let (mut keys, mut after) = (Vec::new(), marker.to_owned());
        loop {
            let query =
                ListQuery { prefix: prefix.to_owned(), after: Some(after), max_keys: 1000, ..ListQuery::default() };
            let page = self.0.list_objects(bucket, query).await.map_err(source_error)?;
            keys.extend(page.objects.into_iter().map(|object| object.key));
            match (page.truncated, page.last) {
                (true, Some(last)) => after = last,
                _ => return Ok(keys),
            }
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, HashMap<String, String>)>, SourceError> {
        let object = self.0.read_object(bucket, key).await.map_err(source_error)?;
        Ok(object.map(|(info, body)| (body, info.metadata.into_iter().collect())))
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    journal: Arc<LocalJournal>,
    buckets: Arc<LocalBuckets>,
    keys: Arc<SigningKeys>,
    worker: DeliveryWorker,
    /// When logging started; rounds are run at offsets from it.
    t0: DateTime<Utc>,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = LocalJournalOptions { scrub: false, ..LocalJournalOptions::default() };
        let journal = Arc::new(LocalJournal::open(dir.path().join("journal"), options).unwrap());
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        // Deleting a delivered file stands for tampering with the bucket.
        let bucket_options = StoreOptions { allow_overwriting_delivered_files: true };
        let buckets = Arc::new(LocalBuckets::open_with(&dir.path().join("buckets"), bucket_options).unwrap());
        buckets.create_bucket(BUCKET, Some(ACCOUNT)).await.unwrap();
        let account = AccountId::parse(ACCOUNT).unwrap();
        let record = BucketRecord { name: BUCKET.into(), account, region: "us-east-1".into(), created_ms: 0 };
        assert!(store.insert_bucket(&record).unwrap());
        let keys = Arc::new(SigningKeys::new(store.clone(), MasterKey::generate()));
        let worker = DeliveryWorker::new(
            store.clone(),
            journal.clone(),
            Arc::new(Destinations::new(buckets.clone(), &[]).unwrap()),
            keys.clone(),
            Arc::new(Notifier::new(&[])),
            DeliverySettings::with_intervals(std::time::Duration::from_secs(300), std::time::Duration::from_secs(3600)),
        );
        let t0 = "2026-01-01T00:00:00Z".parse().unwrap();
        Self { _dir: dir, store, journal, buckets, keys, worker, t0 }
    }

    /// A trail logging from the journal's current end, to `prefix` in the bucket, with these
    /// Insights selectors.
    fn logging_trail(&self, name: &str, multi_region: bool, insight_types: &[&str]) -> Trail {
        let mut trail = trail(name);
        trail.s3_bucket_name = BUCKET.into();
        trail.s3_key_prefix = Some(name.into());
        trail.is_multi_region_trail = multi_region;
        trail.insight_selectors = insight_types
            .iter()
            .map(|insight_type| InsightSelector { insight_type: Some((*insight_type).into()), event_categories: None })
            .collect();
        trail.logging_started_at = Some(self.journal.committed_end());
        trail.start_logging_time_ms = Some(self.t0.timestamp_millis());
        trail
    }

    fn put_trails(&self, trails: &[&Trail]) {
        let changes: Vec<TrailChange> = trails.iter().map(|t| TrailChange::Put(Box::new((*t).clone()))).collect();
        self.store.apply_trail_changes(&AccountId::parse(ACCOUNT).unwrap(), 0, &changes).unwrap();
    }

    async fn append(&self, records: &[(&str, Value)]) {
        let entries = records
            .iter()
            .map(|(region, record)| {
                let Value::Object(record) = record.clone() else { panic!("records are objects") };
                // Built directly: the envelope is all the journal needs.
                let account = AccountId::parse(ACCOUNT).unwrap();
                EventRecord { account, region: Region::parse(region).unwrap(), record }.encode()
            })
            .collect();
        self.journal.append(entries).await.unwrap();
    }

    async fn round(&self, after: Duration) {
        self.worker.deliver_round(self.t0 + after).await.unwrap();
    }

    async fn keys_under(&self, prefix: &str) -> Vec<String> {
        LocalSource(self.buckets.clone()).list(BUCKET, prefix, "").await.unwrap()
    }

    /// The `Records` of a delivered file.
    async fn records(&self, key: &str) -> Vec<Value> {
        let (_, body) = self.buckets.read_object(BUCKET, key).await.unwrap().expect("the file exists");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        let document: Value = serde_json::from_str(&text).unwrap();
        document["Records"].as_array().expect("a Records array").clone()
    }

    /// The uncompressed digest documents under a trail's digest folder for `region`.
    async fn digests(&self, trail: &Trail, region: &str) -> Vec<Value> {
        let folder = region_folder(trail.s3_key_prefix.as_deref(), ACCOUNT, "CloudTrail-Digest", region);
        let mut documents = Vec::new();
        for key in self.keys_under(&folder).await {
            let (_, body) = self.buckets.read_object(BUCKET, &key).await.unwrap().unwrap();
            let mut text = String::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
            documents.push(serde_json::from_str(&text).unwrap());
        }
        documents
    }

    async fn validate(&self, trail: &Trail, region: &str) -> crate::validate::Report {
        let public_keys: HashMap<String, Vec<u8>> = self
            .keys
            .overlapping(region, 0, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|key| (key.fingerprint, key.public_der))
            .collect();
        let target = ValidationTarget {
            bucket: BUCKET.into(),
            prefix: trail.s3_key_prefix.clone(),
            account: ACCOUNT.into(),
            trail_name: trail.name.clone(),
            home_region: trail.home_region.as_str().into(),
            region: region.into(),
            start: self.t0,
            end: self.t0 + Duration::hours(3),
        };
        validate(&LocalSource(self.buckets.clone()), &public_keys, &target).await.unwrap()
    }
}

fn folder(trail: &Trail, kind: LogKind, region: &str) -> String {
    region_folder(trail.s3_key_prefix.as_deref(), ACCOUNT, kind.folder(), region)
}

/// Checks a delivered file's name against CloudTrail's pattern for its kind and Region.
fn assert_named_as_delivered(key: &str, trail: &Trail, kind: LogKind, region: &str, delivered: DateTime<Utc>) {
    let name = kind.folder();
    let expected_start = format!(
        "{}{}/{ACCOUNT}_{name}_{region}_{}_",
        folder(trail, kind, region),
        delivered.format("%Y/%m/%d"),
        delivered.format("%Y%m%dT%H%MZ")
    );
    let unique = key.strip_prefix(&expected_start).and_then(|rest| rest.strip_suffix(".json.gz"));
    let unique = unique.unwrap_or_else(|| panic!("{key} is not named {expected_start}<unique>.json.gz"));
    assert!(unique.len() == 16 && unique.chars().all(|c| c.is_ascii_alphanumeric()), "{key}");
}

#[tokio::test]
async fn insights_go_to_their_own_files_of_trails_that_select_their_type() {
    let harness = Harness::new().await;
    let calls = harness.logging_trail("calls", false, &["ApiCallRateInsight"]);
    let plain = harness.logging_trail("plain", false, &[]);
    let errors = harness.logging_trail("errors", false, &["ApiErrorRateInsight"]);
    let everywhere = harness.logging_trail("everywhere", true, &["ApiCallRateInsight", "ApiErrorRateInsight"]);
    harness.put_trails(&[&calls, &plain, &errors, &everywhere]);
    harness
        .append(&[
            ("us-east-1", management_event("us-east-1", "e-east")),
            ("us-east-1", insight_record("us-east-1", "i-east")),
            ("eu-west-1", insight_record("eu-west-1", "i-west")),
        ])
        .await;
    harness.round(Duration::minutes(6)).await;
    let delivered = harness.t0 + Duration::minutes(6);

    // The trail with the call-rate selector: its Region's event in a CloudTrail/ file, the
    // Insights record in a CloudTrail-Insight/ file, each holding only its own kind.
    let events = harness.keys_under(&folder(&calls, LogKind::Events, "us-east-1")).await;
    let insights = harness.keys_under(&folder(&calls, LogKind::Insights, "us-east-1")).await;
    assert_eq!((events.len(), insights.len()), (1, 1), "{events:?} {insights:?}");
    assert_named_as_delivered(&events[0], &calls, LogKind::Events, "us-east-1", delivered);
    assert_named_as_delivered(&insights[0], &calls, LogKind::Insights, "us-east-1", delivered);
    let event_ids = |records: Vec<Value>| -> Vec<String> {
        records.iter().map(|record| record["eventID"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(event_ids(harness.records(&events[0]).await), ["e-east"]);
    let insight_records = harness.records(&insights[0]).await;
    assert_eq!(insight_records, [insight_record("us-east-1", "i-east")], "delivered exactly as journaled");
    // A single-Region trail gets nothing of another Region, Insights included.
    assert_eq!(harness.keys_under(&format!("calls/AWSLogs/{ACCOUNT}/")).await.len(), 2);

    // Trails without the record's Insights type get the event alone.
    for trail in [&plain, &errors] {
        let all = harness.keys_under(&format!("{}/AWSLogs/{ACCOUNT}/", trail.name)).await;
        assert_eq!(all.len(), 1, "{all:?}");
        assert_named_as_delivered(&all[0], trail, LogKind::Events, "us-east-1", delivered);
    }

    // A multi-Region trail gets each Region's Insights in that Region's folder.
    for region in ["us-east-1", "eu-west-1"] {
        let insights = harness.keys_under(&folder(&everywhere, LogKind::Insights, region)).await;
        assert_eq!(insights.len(), 1, "{region}: {insights:?}");
        assert_named_as_delivered(&insights[0], &everywhere, LogKind::Insights, region, delivered);
    }
    assert!(harness.keys_under(&folder(&everywhere, LogKind::Events, "eu-west-1")).await.is_empty());
}

#[tokio::test]
async fn digests_list_insights_files_and_validate() {
    let harness = Harness::new().await;
    let calls = harness.logging_trail("calls", true, &["ApiCallRateInsight"]);
    let plain = harness.logging_trail("plain", true, &[]);
    harness.put_trails(&[&calls, &plain]);
    harness
        .append(&[
            ("us-east-1", management_event("us-east-1", "e-east")),
            ("us-east-1", insight_record("us-east-1", "i-east")),
            ("eu-west-1", insight_record("eu-west-1", "i-west")),
        ])
        .await;
    harness.round(Duration::minutes(6)).await;
    // Two digest windows pass, so the validator also looks for files no digest lists.
    harness.round(Duration::minutes(61)).await;
    harness.round(Duration::minutes(121)).await;

    let events = harness.keys_under(&folder(&calls, LogKind::Events, "us-east-1")).await;
    let insights = harness.keys_under(&folder(&calls, LogKind::Insights, "us-east-1")).await;
    let digests = harness.digests(&calls, "us-east-1").await;
    assert_eq!(digests.len(), 2);
    let listed: Vec<&str> =
        digests[0]["logFiles"].as_array().unwrap().iter().map(|file| file["s3Object"].as_str().unwrap()).collect();
    assert_eq!(listed, [events[0].as_str(), insights[0].as_str()], "the Region's log and Insights files");
    assert_eq!(digests[0]["oldestEventTime"], "2026-01-01T00:01:00Z");
    assert_eq!(digests[0]["newestEventTime"], "2026-01-01T00:02:00Z", "the Insights record's time counts");
    assert_eq!(digests[1]["logFiles"], json!([]));

    let report = harness.validate(&calls, "us-east-1").await;
    assert!(report.is_valid(), "{:?}", report.findings);
    assert_eq!((report.count(FileKind::Digest), report.count(FileKind::Log)), ((2, 0), (2, 0)));
    // A Region with Insights alone has its own chain, listing its Insights file.
    let west = harness.keys_under(&folder(&calls, LogKind::Insights, "eu-west-1")).await;
    let west_digests = harness.digests(&calls, "eu-west-1").await;
    assert_eq!(west_digests[0]["logFiles"][0]["s3Object"], west[0].as_str());
    let report = harness.validate(&calls, "eu-west-1").await;
    assert!(report.is_valid(), "{:?}", report.findings);
    assert_eq!(report.count(FileKind::Log), (1, 0));

    // The trail without Insights: its digests are as before, listing its one log file.
    let plain_events = harness.keys_under(&folder(&plain, LogKind::Events, "us-east-1")).await;
    let plain_digests = harness.digests(&plain, "us-east-1").await;
    let fields: Vec<&str> = plain_digests[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "awsAccountId",
            "digestStartTime",
            "digestEndTime",
            "digestS3Bucket",
            "digestS3Object",
            "digestPublicKeyFingerprint",
            "digestSignatureAlgorithm",
            "newestEventTime",
            "oldestEventTime",
            "previousDigestS3Bucket",
            "previousDigestS3Object",
            "previousDigestHashValue",
            "previousDigestHashAlgorithm",
            "previousDigestSignature",
            "logFiles"
        ]
    );
    let plain_files = plain_digests[0]["logFiles"].as_array().unwrap();
    assert_eq!(plain_files.len(), 1);
    let file_fields: Vec<&str> = plain_files[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        file_fields,
        ["s3Bucket", "s3Object", "hashValue", "hashAlgorithm", "newestEventTime", "oldestEventTime"]
    );
    assert_eq!(plain_files[0]["s3Object"], plain_events[0].as_str());
    assert_eq!(plain_digests[0]["newestEventTime"], "2026-01-01T00:01:00Z");
    assert!(harness.digests(&plain, "eu-west-1").await.is_empty(), "no events there, so no chain");
    assert!(harness.validate(&plain, "us-east-1").await.is_valid());

    // Coverage is what makes Insights files verifiable: a deleted one and an added one are
    // both reported.
    assert!(harness.buckets.delete_object(BUCKET, &insights[0]).await.unwrap());
    let added = insights[0].replace("_20260101T0006Z_", "_20260101T0010Z_");
    harness.buckets.put_new(BUCKET, &added, bytes::Bytes::from_static(b"stranger"), &Vec::new()).await.unwrap();
    let report = harness.validate(&calls, "us-east-1").await;
    let invalid: Vec<(&str, &str)> = report
        .findings
        .iter()
        .filter_map(|finding| match finding {
            Finding::Invalid { url, reason, .. } => Some((url.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    let (deleted_url, added_url) = (format!("s3://{BUCKET}/{}", insights[0]), format!("s3://{BUCKET}/{added}"));
    assert_eq!(
        invalid,
        [(deleted_url.as_str(), "not found"), (added_url.as_str(), "not listed in any digest file")],
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn a_retried_batch_writes_the_same_insights_file() {
    let harness = Harness::new().await;
    let calls = harness.logging_trail("calls", false, &["ApiCallRateInsight"]);
    harness.put_trails(&[&calls]);
    let from = harness.journal.committed_end();
    harness
        .append(&[
            ("us-east-1", management_event("us-east-1", "e-east")),
            ("us-east-1", insight_record("us-east-1", "i-east")),
        ])
        .await;
    harness.round(Duration::minutes(6)).await;
    let delivered = load_state(harness.store.as_ref(), &calls.arn()).unwrap().unwrap();
    let insights = harness.keys_under(&folder(&calls, LogKind::Insights, "us-east-1")).await;
    let events = harness.keys_under(&folder(&calls, LogKind::Events, "us-east-1")).await;
    let (_, insights_body) = harness.buckets.read_object(BUCKET, &insights[0]).await.unwrap().unwrap();
    assert_eq!(delivered.chains["us-east-1"].files.len(), 2);

    // A crash after the plan was stored and the events file written, before the Insights file
    // and the commit: the state as it was then, and the bucket without the Insights file.
    let plan = BatchPlan {
        from,
        to: delivered.cursor,
        delivered_ms: (harness.t0 + Duration::minutes(6)).timestamp_millis(),
        renamed: BTreeMap::new(),
    };
    let mut crashed = TrailDeliveryState::new_session(from, harness.t0.timestamp_millis(), DeliveryStatus::default());
    crashed.batch_plan = Some(plan);
    let text = serde_json::to_string(&crashed).unwrap();
    harness.store.save_consumer_state(&consumer_name(&calls.arn()), Some(&text)).unwrap();
    assert!(harness.buckets.delete_object(BUCKET, &insights[0]).await.unwrap());

    // The retry, later: the same range, so the same names and bytes, and the same chain.
    harness.round(Duration::minutes(9)).await;
    assert_eq!(harness.keys_under(&folder(&calls, LogKind::Insights, "us-east-1")).await, insights);
    assert_eq!(harness.keys_under(&folder(&calls, LogKind::Events, "us-east-1")).await, events);
    let (_, again) = harness.buckets.read_object(BUCKET, &insights[0]).await.unwrap().unwrap();
    assert_eq!(again, insights_body);
    let retried = load_state(harness.store.as_ref(), &calls.arn()).unwrap().unwrap();
    assert_eq!(retried.batch_plan, None);
    assert_eq!((retried.cursor, &retried.chains), (delivered.cursor, &delivered.chains));
}
