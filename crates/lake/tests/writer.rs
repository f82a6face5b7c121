//! The lake writer against a real journal and control store: every selected event lands in its
//! store exactly once, also when a span is written again after a crash and when days are
//! compacted, and queries see exactly those events.

use std::sync::Arc;

use opentrail_control::{ControlStore, LakeChange, LakeDocument, LakeKind, SqliteStore};
use opentrail_journal::{Journal, LocalJournal, LocalJournalOptions};
use opentrail_lake::sql::bridge;
use opentrail_lake::{LakeWriter, ParquetLake, QueryEngine};
use opentrail_model::lake::{
    EXTENDABLE_RETENTION_PRICING, EventDataStore, IngestionWindow, StoreStatus, default_store_selectors,
};
use opentrail_model::{AccountId, EventRecord, Region};
use serde_json::json;

const STORE_ID: &str = "0b2c0d4e-1111-4222-8333-444455556666";

struct Fixture {
    _dir: tempfile::TempDir,
    journal: Arc<LocalJournal>,
    store: Arc<SqliteStore>,
    tables: Arc<ParquetLake>,
    writer: LakeWriter,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(LocalJournal::open(dir.path().join("journal"), LocalJournalOptions::default()).unwrap());
    let store = Arc::new(SqliteStore::open(&dir.path().join("control.sqlite")).unwrap());
    let tables = Arc::new(ParquetLake::local(dir.path().join("lake")).unwrap());
    let event_store = EventDataStore {
        id: STORE_ID.into(),
        account: AccountId::parse("111111111111").unwrap(),
        region: Region::parse("us-east-1").unwrap(),
        name: "store".into(),
        status: StoreStatus::Enabled,
        advanced_event_selectors: default_store_selectors(),
        multi_region_enabled: true,
        organization_enabled: false,
        insight_selectors: Vec::new(),
        insights_destination: None,
        retention_period_days: 366,
        termination_protection_enabled: false,
        billing_mode: EXTENDABLE_RETENTION_PRICING.into(),
        kms_key_id: None,
        tags: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
        deleted_ms: None,
        ingestion: vec![IngestionWindow { from: 0, to: None }],
    };
    let document = LakeDocument {
        kind: LakeKind::EventDataStore,
        id: STORE_ID.into(),
        document: serde_json::to_string(&event_store).unwrap(),
    };
    store.apply_lake_changes(&event_store.account, 0, &[LakeChange::Put(document)]).unwrap();
    let writer = LakeWriter::new(store.clone(), journal.clone(), tables.clone());
    Fixture { _dir: dir, journal, store, tables, writer }
}

async fn append(journal: &LocalJournal, day: &str, count: usize, account: &str) {
    let records = (0..count)
        .map(|i| {
            let record = json!({
                "eventVersion": "1.08", "eventTime": format!("{day}T10:{:02}:00Z", i % 60),
                "eventSource": "s3.amazonaws.com", "eventName": if i % 2 == 0 { "CreateBucket" } else { "DeleteBucket" },
                "eventCategory": "Management", "managementEvent": true, "readOnly": false,
                "eventID": uuid::Uuid::new_v4().to_string(), "awsRegion": "us-east-1",
                "userIdentity": {"type": "IAMUser", "accessKeyId": format!("AKIA{i}")}
            });
            EventRecord::new(AccountId::parse(account).unwrap(), Region::parse("us-east-1").unwrap(), record)
                .unwrap()
                .encode()
        })
        .collect();
    journal.append(records).await.unwrap();
}

async fn count(tables: &Arc<ParquetLake>, sql: &str) -> String {
    let store_categories = [(STORE_ID.to_string(), opentrail_model::lake::StoreCategory::CloudTrailEvents)];
    let bridged = bridge(sql, |name| (name == STORE_ID).then(|| STORE_ID.to_string())).unwrap();
    let engine = QueryEngine::new(tables.clone());
    let planned = engine.plan(&bridged, &store_categories).await.unwrap();
    let output = engine.execute(planned).await.unwrap();
    output.rows[0][0].clone().unwrap()
}

#[tokio::test]
async fn a_span_written_twice_after_a_crash_counts_once() {
    let f = fixture();
    append(&f.journal, "2024-03-01", 40, "111111111111").await;
    append(&f.journal, "2024-03-01", 7, "222222222222").await; // another account's: not taken
    assert!(f.writer.round().await.unwrap());
    assert!(!f.writer.round().await.unwrap(), "nothing new");
    // A crash after the files were written but before the cursor moved: the span is redone.
    let state = f.store.consumer_state("lake/writer").unwrap().unwrap();
    let to = serde_json::from_str::<serde_json::Value>(&state).unwrap()["cursor"].clone();
    f.store.save_consumer_state("lake/writer", Some(&json!({"cursor": 0, "pending_to": to}).to_string())).unwrap();
    assert!(f.writer.round().await.unwrap());
    assert_eq!(count(&f.tables, &format!("SELECT COUNT(*) FROM {STORE_ID}")).await, "40");
    assert_eq!(
        count(&f.tables, &format!("SELECT COUNT(*) FROM {STORE_ID} WHERE eventName = 'CreateBucket'")).await,
        "20"
    );
}

#[tokio::test]
async fn finished_days_are_compacted_without_losing_or_doubling_rows() {
    let f = fixture();
    for round in 0..4 {
        append(&f.journal, "2024-03-02", 10 + round, "111111111111").await;
        assert!(f.writer.round().await.unwrap());
    }
    append(&f.journal, "2024-03-03", 5, "111111111111").await;
    assert!(f.writer.round().await.unwrap());
    let files = std::fs::read_dir(f._dir.path().join("lake").join(STORE_ID).join("eventdate=2024-03-02"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(files.len(), 1, "one compacted file: {files:?}");
    assert!(files[0].starts_with("c-"), "{files:?}");
    assert_eq!(
        count(&f.tables, &format!("SELECT COUNT(*) FROM {STORE_ID}")).await,
        (10 + 11 + 12 + 13 + 5).to_string()
    );
    let one_day = format!(
        "SELECT COUNT(*) FROM {STORE_ID} WHERE eventTime >= '2024-03-03 00:00:00' AND eventTime < '2024-03-04 00:00:00'"
    );
    assert_eq!(count(&f.tables, &one_day).await, "5");
}
