//! The Insights consumer over a real journal: Starts and Ends go into the journal once, a
//! restart in the middle of an insight neither loses nor repeats it and still ends it, and an
//! outbox a crash left behind is appended exactly once.

use std::sync::Arc;

use opentrail_consumer::Progress;
use opentrail_insights::store::Pending;
use opentrail_insights::{InsightParams, InsightStore, InsightType, InsightsConsumer, SelectionSource, Selections};
use opentrail_journal::{Journal, LocalJournal, LocalJournalOptions};
use opentrail_model::record::{RecordView, split_envelope};
use opentrail_model::{AccountId, EventRecord, Region};
use serde_json::{Value, json};

const ACCOUNT: &str = "111111111111";

struct Everything;

impl SelectionSource for Everything {
    fn selections(&self) -> Result<Selections, Box<dyn std::error::Error + Send + Sync>> {
        let mut selections = Selections::default();
        for insight_type in InsightType::ALL {
            selections.allow(ACCOUNT, None, insight_type);
        }
        Ok(selections)
    }
}

/// A one-hour baseline, so a test needs hours of traffic, not weeks.
fn params() -> InsightParams {
    InsightParams { baseline_minutes: 60, ..Default::default() }
}

fn call(minute: i64, serial: usize) -> Vec<u8> {
    let time =
        chrono::DateTime::from_timestamp(1_700_000_000 / 60 * 60 + minute * 60 + (serial % 60) as i64, 0).unwrap();
    let record = json!({
        "eventVersion": "1.08", "eventTime": opentrail_model::record::format_event_time(time),
        "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "readOnly": false,
        "eventType": "AwsApiCall", "managementEvent": true, "eventCategory": "Management",
        "eventID": format!("call-{minute}-{serial}"), "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111111111111:user/alice"},
        "userAgent": "aws-cli/2",
    });
    EventRecord::new(AccountId::parse(ACCOUNT).unwrap(), Region::parse("us-east-1").unwrap(), record).unwrap().encode()
}

/// Calls of minutes `[from, to)`: 3 a minute, 60 a minute during the burst.
fn traffic(from: i64, to: i64) -> Vec<Vec<u8>> {
    (from..to)
        .flat_map(|minute| {
            let count = if (130..140).contains(&minute) { 60 } else { 3 };
            (0..count).map(move |serial| call(minute, serial))
        })
        .collect()
}

fn open(dir: &std::path::Path) -> (Arc<LocalJournal>, Arc<InsightsConsumer>) {
    let options = LocalJournalOptions { scrub: false, ..Default::default() };
    let journal = Arc::new(LocalJournal::open(dir.join("journal"), options).unwrap());
    let store = Arc::new(InsightStore::open(&dir.join("insights.sqlite")).unwrap());
    let consumer = InsightsConsumer::new(
        journal.clone(),
        store,
        Arc::new(Everything),
        params(),
        Arc::new(|| 0), // the wall clock never moves the records' clock here
    );
    (journal, Arc::new(consumer))
}

async fn run_until_idle(consumer: &Arc<InsightsConsumer>) {
    for _ in 0..10_000 {
        if consumer.round().await.unwrap() == Progress::Idle {
            return;
        }
    }
    panic!("the consumer never became idle");
}

/// The Insights records in the journal: (state, sharedEventID, eventID).
fn insights_in(journal: &LocalJournal) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut position = journal.start();
    while position < journal.committed_end() {
        let batch = journal.read_from(position, 1 << 20).unwrap();
        for entry in &batch.entries {
            let (_, _, json) = split_envelope(&entry.payload).unwrap();
            if RecordView::from_json(json).unwrap().is_insight() {
                let record: Value = serde_json::from_slice(json).unwrap();
                found.push((
                    record["insightDetails"]["state"].as_str().unwrap().to_owned(),
                    record["sharedEventID"].as_str().unwrap().to_owned(),
                    record["eventID"].as_str().unwrap().to_owned(),
                ));
            }
        }
        position = batch.next;
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insight_is_journaled_once_and_a_restart_in_its_middle_still_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, consumer) = open(dir.path());
    journal.append(traffic(0, 135)).await.unwrap();
    run_until_idle(&consumer).await;
    let started = insights_in(&journal);
    assert_eq!(started.iter().map(|(state, ..)| state.as_str()).collect::<Vec<_>>(), ["Start"], "{started:?}");

    // A restart: everything in memory is gone; the store and the journal remain.
    drop(consumer);
    drop(journal);
    let (journal, consumer) = open(dir.path());
    journal.append(traffic(135, 170)).await.unwrap();
    run_until_idle(&consumer).await;
    let all = insights_in(&journal);
    assert_eq!(all.iter().map(|(state, ..)| state.as_str()).collect::<Vec<_>>(), ["Start", "End"], "{all:?}");
    assert_eq!(all[0].1, all[1].1, "Start and End share the sharedEventID");
    assert_eq!(all[0], started[0]);

    // The metric series has the burst's minutes.
    let series = consumer
        .store()
        .series(&opentrail_insights::SeriesQuery {
            account: ACCOUNT,
            region: "us-east-1",
            key: &opentrail_insights::SeriesKey {
                insight_type: InsightType::ApiCallRateInsight,
                event_source: "ec2.amazonaws.com".into(),
                event_name: "RunInstances".into(),
                error_code: None,
            },
            period: 60,
            start: 0,
            end: i64::MAX,
        })
        .unwrap();
    assert_eq!(series.iter().filter(|(_, value)| *value == 60.0).count(), 10, "{series:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_left_by_a_crash_is_appended_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, consumer) = open(dir.path());
    journal.append(traffic(0, 10)).await.unwrap();
    run_until_idle(&consumer).await;
    drop(consumer);
    let record = |id: &str| {
        json!({"eventVersion": "1.08", "eventTime": "2023-11-14T22:00:00Z", "awsRegion": "us-east-1",
               "eventID": id, "eventType": "AwsCloudTrailInsight", "recipientAccountId": ACCOUNT,
               "sharedEventID": "s1", "insightDetails": {"state": "Start", "eventSource": "ec2.amazonaws.com",
               "eventName": "RunInstances", "insightType": "ApiCallRateInsight"}, "eventCategory": "Insight"})
    };
    let pending = |id: &str, search_from| Pending {
        event_id: id.into(),
        account: ACCOUNT.into(),
        region: "us-east-1".into(),
        record: record(id).to_string(),
        search_from,
    };
    // "appended" made it into the journal before the crash; "lost" did not.
    let end = journal.committed_end();
    let snapshot = consumer_snapshot(dir.path());
    let store = InsightStore::open(&dir.path().join("insights.sqlite")).unwrap();
    store.commit(end, &snapshot, &[], &[pending("appended", end), pending("lost", end)]).unwrap();
    let appended =
        EventRecord::new(AccountId::parse(ACCOUNT).unwrap(), Region::parse("us-east-1").unwrap(), record("appended"))
            .unwrap()
            .encode();
    journal.append(vec![appended]).await.unwrap();
    drop(store);

    let consumer = open_consumer(dir.path(), journal.clone());
    run_until_idle(&consumer).await;
    let ids: Vec<String> = insights_in(&journal).into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(ids, ["appended", "lost"]);
    assert!(consumer.store().pending().unwrap().is_empty());
}

fn consumer_snapshot(dir: &std::path::Path) -> Vec<u8> {
    InsightStore::open(&dir.join("insights.sqlite")).unwrap().load().unwrap().expect("a snapshot was committed").1
}

fn open_consumer(dir: &std::path::Path, journal: Arc<LocalJournal>) -> Arc<InsightsConsumer> {
    let store = Arc::new(InsightStore::open(&dir.join("insights.sqlite")).unwrap());
    Arc::new(InsightsConsumer::new(journal, store, Arc::new(Everything), params(), Arc::new(|| 0)))
}
