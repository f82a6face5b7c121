//! The journal consumer that fills event data stores.
//!
//! Each round takes the journal span `[cursor, to)`, chooses for every record the stores that
//! take it (their selectors, Region and ingestion windows; for events sent to a channel, the
//! channel's destinations), and writes one Parquet file per store and day named after the span.
//! The span is recorded before any file is written and the cursor moves past it only after every
//! file is durable, so a crash at any point repeats the same span into the same file names:
//! each event lands in a store exactly once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use opentrail_consumer::{Consumer, ConsumerError, Cursor, Progress, RoundFuture};
use opentrail_control::{ControlStore, LakeKind};
use opentrail_journal::{Entry, Journal, Position};
use opentrail_model::EventRecord;
use opentrail_model::lake::{Channel, EventDataStore, StoreCategory};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LakeError;
use crate::schema::{batch, day_of, parse_time_ms, row};
use crate::tables::{LakeTables, ParquetLake, journal_file_name};

const CONSUMER: &str = "lake/writer";
/// The Lake writer's name among the journal consumers.
pub const CONSUMER_NAME: &str = "lake-writer";
/// How much journal one round reads at most.
const ROUND_BYTES: usize = 32 * 1024 * 1024;
/// Journal files of the current day merged once there are this many.
const COMPACT_TODAY_AT: usize = 24;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct WriterState {
    cursor: Position,
    /// The end of the span being written, once chosen.
    pending_to: Option<Position>,
}

pub struct LakeWriter {
    store: Arc<dyn ControlStore>,
    journal: Arc<dyn Journal>,
    tables: Arc<ParquetLake>,
}

fn load_state(store: &dyn ControlStore) -> Result<Option<WriterState>, LakeError> {
    match store.consumer_state(CONSUMER)? {
        Some(text) => Ok(Some(serde_json::from_str(&text)?)),
        None => Ok(None),
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, LakeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| LakeError::Io { path: "lake writer task".into(), source: std::io::Error::other(error) })
}

/// The stores a record goes to, grouped by store ID.
struct Routing {
    stores: Vec<EventDataStore>,
    channels: HashMap<String, Channel>,
}

impl Routing {
    fn load(store: &dyn ControlStore) -> Result<Self, LakeError> {
        let stores = store
            .all_lake_documents(LakeKind::EventDataStore)?
            .iter()
            .map(|doc| serde_json::from_str(doc))
            .collect::<Result<Vec<EventDataStore>, _>>()?;
        let channels = store
            .all_lake_documents(LakeKind::Channel)?
            .iter()
            .map(|doc| serde_json::from_str::<Channel>(doc).map(|channel| (channel.arn(), channel)))
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Self { stores, channels })
    }

    fn destinations(&self, position: Position, entry: &EventRecord, record: &Value) -> Vec<&EventDataStore> {
        let category = record.get("eventCategory").and_then(Value::as_str);
        if category == Some("ActivityAuditLog") {
            let channel_arn = record.pointer("/metadata/channelARN").and_then(Value::as_str).unwrap_or_default();
            let Some(channel) = self.channels.get(channel_arn) else { return Vec::new() };
            return self
                .stores
                .iter()
                .filter(|store| {
                    store.account == channel.account
                        && store.category() == StoreCategory::ActivityAuditLog
                        && store.ingesting_at(position)
                        && channel.destinations.iter().any(|d| d.location == store.arn() || d.location == store.id)
                })
                .collect();
        }
        let insight_type = opentrail_model::lake::is_insight_record(record)
            .then(|| record.pointer("/insightDetails/insightType").and_then(Value::as_str));
        self.stores
            .iter()
            .filter(|store| store.account == entry.account && store.takes(position, &entry.region, record))
            .filter(|store| insight_type.is_none_or(|kind| self.is_insights_destination(store, kind)))
            .collect()
    }

    /// Whether a source store of the account sends Insights of `kind` to `destination` (an
    /// Insights store holds its sources' insights, not every insight of its account).
    fn is_insights_destination(&self, destination: &EventDataStore, kind: Option<&str>) -> bool {
        let arn = destination.arn();
        self.stores.iter().any(|source| {
            source.account == destination.account
                && source.insights_destination.as_deref().is_some_and(|to| to == arn || to == destination.id)
                && source.insight_selectors.iter().any(|selector| selector.insight_type.as_deref() == kind)
        })
    }
}

impl LakeWriter {
    pub fn new(store: Arc<dyn ControlStore>, journal: Arc<dyn Journal>, tables: Arc<ParquetLake>) -> Self {
        Self { store, journal, tables }
    }

    /// Writes one journal span into the stores; `false` when there was nothing to write.
    pub async fn round(&self) -> Result<bool, LakeError> {
        let store = self.store.clone();
        let mut state = blocking(move || load_state(store.as_ref()))
            .await??
            .unwrap_or(WriterState { cursor: self.journal.start(), pending_to: None });
        if state.cursor < self.journal.start() {
            tracing::warn!(
                cursor = state.cursor,
                start = self.journal.start(),
                "lake writer cursor was behind retention"
            );
            state = WriterState { cursor: self.journal.start(), pending_to: None };
        }
        let bound = state.pending_to.unwrap_or_else(|| self.journal.committed_end());
        if bound <= state.cursor {
            return Ok(false);
        }
        let journal = self.journal.clone();
        // A recorded span is re-read whole, whatever its size: its files must come out the same.
        let budget = if state.pending_to.is_some() { usize::MAX } else { ROUND_BYTES };
        let (entries, to) = blocking(move || read_span(journal.as_ref(), state.cursor, bound, budget)).await??;
        if state.pending_to.is_none() {
            state.pending_to = Some(to);
            self.save(state).await?;
        }

        let store = self.store.clone();
        let routing = blocking(move || Routing::load(store.as_ref())).await??;
        let mut groups: BTreeMap<(String, String), (StoreCategory, Vec<Value>)> = BTreeMap::new();
        for Entry { position, payload } in entries {
            let Ok(entry) = EventRecord::decode(&payload) else {
                tracing::warn!(position, "skipping an undecodable journal entry");
                continue;
            };
            let record = Value::Object(entry.record.clone());
            let destinations = routing.destinations(position, &entry, &record);
            if destinations.is_empty() {
                continue;
            }
            let time = record.get("eventTime").and_then(Value::as_str).and_then(parse_time_ms).unwrap_or_default();
            let day = day_of(time);
            for destination in destinations {
                let category = destination.category();
                let group =
                    groups.entry((destination.id.clone(), day.clone())).or_insert_with(|| (category, Vec::new()));
                group.1.push(row(&entry.record, category));
            }
        }

        let name = journal_file_name(state.cursor, to);
        let today = day_of(chrono::Utc::now().timestamp_millis());
        for ((store_id, day), (category, rows)) in &groups {
            let batch = batch(rows, *category)?;
            self.tables.write(store_id, day, &name, &batch).await?;
        }
        self.save(WriterState { cursor: to, pending_to: None }).await?;
        for (store_id, day) in groups.keys() {
            let threshold = if *day < today { 2 } else { COMPACT_TODAY_AT };
            if let Err(error) = self.tables.compact(store_id, day, threshold).await {
                tracing::warn!(%error, store_id, day, "compaction failed; the day keeps its files");
            }
        }
        Ok(true)
    }

    async fn save(&self, state: WriterState) -> Result<(), LakeError> {
        let store = self.store.clone();
        let text = serde_json::to_string(&state)?;
        blocking(move || store.save_consumer_state(CONSUMER, Some(&text))).await??;
        Ok(())
    }
}

/// The Lake writer as a journal consumer. Its cursor is where its next span starts (a span
/// recorded but not yet written starts there too), so retention keeps that span readable.
impl Consumer for LakeWriter {
    fn name(&self) -> &str {
        CONSUMER_NAME
    }

    fn round(self: Arc<Self>) -> RoundFuture {
        Box::pin(async move {
            let wrote = LakeWriter::round(&self).await.map_err(ConsumerError::new)?;
            Ok(if wrote { Progress::More } else { Progress::Idle })
        })
    }

    fn cursors(&self) -> Result<Vec<Cursor>, ConsumerError> {
        // Before its first round it starts at the journal's start, and so needs all of it.
        let state = load_state(self.store.as_ref()).map_err(ConsumerError::new)?;
        Ok(vec![Cursor::at(state.map_or_else(|| self.journal.start(), |state| state.cursor))])
    }
}

/// Reads the records of `[from, bound)`, about `budget` bytes at most; returns them with the
/// span's actual end.
fn read_span(
    journal: &dyn Journal,
    from: Position,
    bound: Position,
    budget: usize,
) -> Result<(Vec<Entry>, Position), LakeError> {
    let mut entries = Vec::new();
    let mut position = from;
    let mut read = 0;
    while position < bound && read < budget {
        let batch = journal.read_from(position, (budget - read).min(8 * 1024 * 1024))?;
        if batch.entries.is_empty() {
            // Past a damaged range or the gap of a cut torn tail there may be nothing more.
            position = position.max(batch.next);
            break;
        }
        for entry in batch.entries {
            if entry.position >= bound {
                return Ok((entries, bound));
            }
            read += entry.payload.len();
            entries.push(entry);
        }
        position = batch.next;
    }
    Ok((entries, position.min(bound)))
}

#[cfg(test)]
mod tests {
    use opentrail_control::{LakeChange, LakeDocument, SqliteStore};
    use opentrail_journal::{LocalJournal, LocalJournalOptions};
    use opentrail_model::lake::{
        EXTENDABLE_RETENTION_PRICING, IngestionWindow, StoreStatus, default_store_selectors, event_data_store_arn,
    };
    use opentrail_model::selectors::{AdvancedEventSelector, AdvancedFieldSelector, InsightSelector};
    use opentrail_model::{AccountId, Region};
    use serde_json::json;

    use super::*;
    use crate::QueryEngine;
    use crate::sql::bridge;

    const SOURCE_ID: &str = "0b2c0d4e-1111-4222-8333-444455556666";
    const INSIGHTS_ID: &str = "0b2c0d4e-7777-4888-8999-aaaabbbbcccc";

    fn store(id: &str, selectors: Vec<AdvancedEventSelector>) -> EventDataStore {
        EventDataStore {
            id: id.into(),
            account: AccountId::parse("123456789012").unwrap(),
            region: Region::parse("us-east-1").unwrap(),
            name: id.into(),
            status: StoreStatus::Enabled,
            advanced_event_selectors: selectors,
            multi_region_enabled: true,
            organization_enabled: false,
            retention_period_days: 3653,
            termination_protection_enabled: false,
            billing_mode: EXTENDABLE_RETENTION_PRICING.into(),
            kms_key_id: None,
            tags: Vec::new(),
            created_ms: 0,
            updated_ms: 0,
            deleted_ms: None,
            ingestion: vec![IngestionWindow { from: 0, to: None }],
            insight_selectors: Vec::new(),
            insights_destination: None,
        }
    }

    /// The CloudTrail User Guide's `ApiCallRateInsight` Start event, as CloudTrail writes it
    /// (no top-level eventName, eventSource, userIdentity or userAgent).
    fn insight_record() -> Value {
        json!({
            "eventVersion": "1.07",
            "eventTime": "2019-10-15T21:13:00Z",
            "awsRegion": "us-east-1",
            "eventID": "EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7",
            "eventType": "AwsCloudTrailInsight",
            "recipientAccountId": "123456789012",
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
                        {"attribute": "userIdentityArn",
                         "insight": [{"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1", "average": 0.2},
                                     {"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole2", "average": 0.2},
                                     {"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole3", "average": 0.2}],
                         "baseline": [{"value": "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1", "average": 0.0000882145}]},
                        {"attribute": "userAgent",
                         "insight": [{"value": "codedeploy.amazonaws.com", "average": 0.6}],
                         "baseline": [{"value": "codedeploy.amazonaws.com", "average": 0.0000882145}]},
                        {"attribute": "errorCode",
                         "insight": [{"value": "null", "average": 0.6}],
                         "baseline": [{"value": "null", "average": 0.0000882145}]}
                    ]
                }
            },
            "eventCategory": "Insight"
        })
    }

    async fn query(
        tables: &Arc<ParquetLake>,
        store_id: &str,
        category: StoreCategory,
        sql: &str,
    ) -> Vec<Vec<Option<String>>> {
        let bridged = bridge(sql, |name| (name == store_id).then(|| store_id.to_string())).unwrap();
        let engine = QueryEngine::new(tables.clone());
        let planned = engine.plan(&bridged, &[(store_id.to_string(), category)]).await.unwrap();
        engine.execute(planned).await.unwrap().rows
    }

    #[tokio::test]
    async fn insights_events_land_in_the_insights_store_and_read_back_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(LocalJournal::open(dir.path().join("journal"), LocalJournalOptions::default()).unwrap());
        let control = Arc::new(SqliteStore::open(&dir.path().join("control.sqlite")).unwrap());
        let tables = Arc::new(ParquetLake::local(dir.path().join("lake")).unwrap());
        let account = AccountId::parse("123456789012").unwrap();
        let region = Region::parse("us-east-1").unwrap();
        let insights = store(
            INSIGHTS_ID,
            vec![AdvancedEventSelector {
                name: None,
                field_selectors: vec![AdvancedFieldSelector {
                    field: "eventCategory".into(),
                    equals: Some(vec!["Insight".into()]),
                    ..AdvancedFieldSelector::default()
                }],
            }],
        );
        let mut source = store(SOURCE_ID, default_store_selectors());
        source.insight_selectors =
            vec![InsightSelector { insight_type: Some("ApiCallRateInsight".into()), event_categories: None }];
        source.insights_destination = Some(event_data_store_arn(&region, &account, INSIGHTS_ID));
        let changes = [&source, &insights]
            .iter()
            .map(|s| {
                let document = serde_json::to_string(s).unwrap();
                LakeChange::Put(LakeDocument { kind: LakeKind::EventDataStore, id: s.id.clone(), document })
            })
            .collect::<Vec<_>>();
        control.apply_lake_changes(&account, 0, &changes).unwrap();

        let management = json!({
            "eventVersion": "1.08", "eventTime": "2019-10-15T21:12:00Z", "eventSource": "autoscaling.amazonaws.com",
            "eventName": "CompleteLifecycleAction", "eventCategory": "Management", "managementEvent": true,
            "readOnly": false, "eventID": "m1", "awsRegion": "us-east-1", "userIdentity": {"type": "IAMUser"}
        });
        let entries = [management, insight_record()]
            .into_iter()
            .map(|record| EventRecord::new(account.clone(), region.clone(), record).unwrap().encode())
            .collect();
        journal.append(entries).await.unwrap();
        let writer = LakeWriter::new(control.clone(), journal.clone(), tables.clone());
        assert!(writer.round().await.unwrap());

        let sql = format!(
            "SELECT insightDetails['state'], element_at(insightDetails, 'insightType'), \
             insightDetails['eventName'], json_extract_scalar(insightDetails['insightContext'], \
             '$.statistics.baselineDuration'), eventName, userIdentity.arn, eventID FROM {INSIGHTS_ID}"
        );
        let rows = query(&tables, INSIGHTS_ID, StoreCategory::Insight, &sql).await;
        let text = |values: &[&str]| values.iter().map(|v| Some(v.to_string())).collect::<Vec<_>>();
        let mut expected = text(&["Start", "ApiCallRateInsight", "CompleteLifecycleAction", "11336"]);
        expected.extend([None, None, Some("EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7".into())]);
        assert_eq!(rows, vec![expected], "the Insights store holds the Insights event only");

        let source_rows =
            query(&tables, SOURCE_ID, StoreCategory::CloudTrailEvents, &format!("SELECT eventID FROM {SOURCE_ID}"))
                .await;
        assert_eq!(source_rows, vec![text(&["m1"])], "the management store holds no Insights event");
    }
}
