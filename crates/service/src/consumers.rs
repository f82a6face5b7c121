//! The journal consumers of the composition root: the one list of them ([`register`]),
//! starting them, journal retention over their cursors, Lake housekeeping, and the status the
//! API shows.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use opentrail_consumer::{Consumers, RetentionError, RetentionReport, Status};
use opentrail_control::{LakeChange, LakeKind};
use opentrail_delivery::DeliveryWorker;
use opentrail_history::HistoryIndex;
use opentrail_insights::InsightsConsumer;
use opentrail_journal::{Journal, Position};
use opentrail_lake::LakeWriter;
use opentrail_model::AccountId;
use opentrail_model::record::{RecordView, split_envelope};
use serde_json::{Value, json};

use crate::{OpenTrail, ServiceError, iso_time, lake, lookup};

/// Every journal consumer, registered here and nowhere else: supervision, retention and status
/// cover exactly this list. A new consumer (alarms) is one more `register` line.
pub(crate) fn register(
    journal: Arc<dyn Journal>,
    history: &Arc<HistoryIndex>,
    worker: &Arc<DeliveryWorker>,
    lake_writer: &Arc<LakeWriter>,
    insights: &Arc<InsightsConsumer>,
) -> Consumers {
    Consumers::new(journal)
        .with_record_time(Arc::new(record_time))
        .register(history.clone())
        .register(worker.clone())
        .register(lake_writer.clone())
        .register(insights.clone())
}

/// A journal record's `eventTime`, for the age of a consumer's oldest unconsumed record.
fn record_time(payload: &[u8]) -> Option<SystemTime> {
    let (_, _, json) = split_envelope(payload).ok()?;
    Some(RecordView::from_json(json).ok()?.event_time()?.into())
}

/// How often journal retention and Lake housekeeping run.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);

impl OpenTrail {
    /// The registered journal consumers (status, retention, supervision).
    pub fn consumers(&self) -> &Arc<Consumers> {
        &self.consumers
    }

    /// Starts every registered journal consumer under supervision, and hourly retention.
    /// Needs a Tokio runtime.
    pub fn spawn_background_tasks(self: &Arc<Self>) {
        self.consumers.spawn();
        let this = self.clone();
        let housekeeping = tokio::spawn(async move {
            let mut every_hour = tokio::time::interval(HOUSEKEEPING_EVERY);
            loop {
                every_hour.tick().await;
                if let Err(error) = this.apply_lake_retention().await {
                    tracing::error!(%error, "Lake retention failed");
                }
                let worker = this.clone();
                match tokio::task::spawn_blocking(move || worker.apply_retention()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::error!(%error, "journal retention did not run"),
                    Err(error) => tracing::error!(%error, "journal retention task failed"),
                }
            }
        });
        self.consumers.keep_task("retention", housekeeping);
    }

    /// Journal retention: each consumer forgets what is past its own retention (Event History
    /// keeps 90 days), then segments older than that which no registered consumer needs are
    /// dropped. Blocking.
    pub fn apply_retention(&self) -> Result<RetentionReport, RetentionError> {
        let cutoff = Utc::now() - chrono::Duration::days(lookup::HISTORY_DAYS);
        let report = self.consumers.apply_retention(cutoff.into())?;
        tracing::info!(
            expired = report.expired,
            keep_from = report.keep_from,
            dropped_segments = report.dropped_segments,
            "retention applied"
        );
        Ok(report)
    }

    /// Lake housekeeping: drops day partitions past each store's retention, purges stores whose
    /// seven days of pending deletion are over, and forgets query results older than seven days.
    pub async fn apply_lake_retention(&self) -> Result<(), opentrail_lake::LakeError> {
        use opentrail_lake::LakeTables;
        let now = Utc::now().timestamp_millis();
        let store = self.store.clone();
        let documents = tokio::task::spawn_blocking(move || store.all_lake_documents(LakeKind::EventDataStore))
            .await
            .map_err(|error| opentrail_lake::LakeError::Io {
                path: "lake retention".into(),
                source: std::io::Error::other(error),
            })??;
        for document in documents {
            let event_store: opentrail_model::lake::EventDataStore = serde_json::from_str(&document)?;
            if lake::pending_deletion_expired(&event_store, now) {
                self.lake_tables.drop_store(&event_store.id).await?;
                let lake = self.store.load_lake(&event_store.account)?;
                let delete = LakeChange::Delete { kind: LakeKind::EventDataStore, id: event_store.id.clone() };
                // A conflict means someone acted on the account meanwhile: the next round retries.
                let _ = self.store.apply_lake_changes(&event_store.account, lake.version, &[delete]);
                continue;
            }
            let first_kept = now - i64::from(event_store.retention_period_days) * 86_400_000;
            let dropped =
                self.lake_tables.drop_days_before(&event_store.id, &opentrail_lake::schema::day_of(first_kept)).await?;
            if dropped > 0 {
                tracing::info!(store = event_store.id, days = dropped, "Lake retention dropped day partitions");
            }
        }
        self.queries.expire(now - opentrail_model::lake::QUERY_RESULT_DAYS * 86_400_000)?;
        Ok(())
    }

    /// Waits until Event History includes everything below `position`, at most `timeout`. A
    /// failing indexer is not waited on: the lookup answers from the index as it is, and the
    /// log says why (the indexer itself is being restarted by its supervisor).
    pub(crate) async fn wait_for_history(&self, position: Position, timeout: Duration) {
        if let Some(health) = self.consumers.health(opentrail_history::CONSUMER_NAME)
            && health.failures_in_a_row > 0
        {
            tracing::warn!(
                restarts = health.restarts,
                last_error = health.last_error.as_deref().unwrap_or_default(),
                "Event History's indexer is failing; lookups answer from the index as it is"
            );
            return;
        }
        if !self.history.wait_for(position, timeout).await {
            tracing::warn!(
                position,
                indexed = self.history.cursor(),
                "Event History is behind; the lookup may miss events"
            );
        }
    }

    /// The journal consumers' status as `account` may see it (`GET /opentrail/status`).
    pub async fn consumer_status(&self, account: &AccountId) -> Result<Value, ServiceError> {
        let consumers = self.consumers.clone();
        let status = tokio::task::spawn_blocking(move || consumers.status()).await.map_err(ServiceError::internal)?;
        Ok(status_document(&status, account.as_str(), SystemTime::now()))
    }
}

fn time_text(time: Option<SystemTime>) -> Value {
    let ms = |time: SystemTime| time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    time.map_or(Value::Null, |time| json!(iso_time(ms(time))))
}

/// The status document for one account. Shared consumers (Event History, the Lake writer) are
/// shown whole, since they name nobody; per-account parts (a trail's delivery) only to their
/// account. Error texts of shared consumers are left out (the server log has them): a store
/// path or a panic message may name another account's resources.
fn status_document(status: &Status, account: &str, now: SystemTime) -> Value {
    let consumers: Vec<Value> = status
        .consumers
        .iter()
        .map(|consumer| {
            let health = &consumer.health;
            let mut document = json!({
                "Name": consumer.name,
                "State": health.state.as_str(),
                "Restarts": health.restarts,
                "FailuresInARow": health.failures_in_a_row,
                "LastErrorTime": time_text(health.last_error_at),
                "LastSuccessTime": time_text(health.last_success_at),
            });
            let cursors = match &consumer.cursors {
                Ok(cursors) => cursors,
                Err(_) => {
                    document["CursorsReadable"] = json!(false);
                    document["CaughtUp"] = json!(false);
                    return document;
                }
            };
            let visible: Vec<_> = cursors
                .iter()
                .filter(|lag| lag.cursor.account.as_deref().is_none_or(|owner| owner == account))
                .collect();
            document["CursorsReadable"] = json!(true);
            document["CaughtUp"] = json!(health.failures_in_a_row == 0 && visible.iter().all(|lag| lag.caught_up));
            document["Cursors"] = visible
                .iter()
                .map(|lag| {
                    let mut cursor = json!({
                        "Position": lag.cursor.next,
                        "KeepFrom": lag.cursor.keep_from,
                        "RecordsBehind": lag.records_behind,
                        "RecordsBehindExact": lag.records_exact,
                        "BytesBehind": lag.bytes_behind,
                        "OldestUnconsumedAgeSeconds": lag.oldest_unconsumed_age.map(|age| age.as_secs()),
                        "CaughtUp": lag.caught_up,
                    });
                    if let Some(part) = &lag.cursor.part {
                        cursor["Part"] = json!(part);
                    }
                    // A part's own error belongs to its account, the only one that sees the part.
                    if lag.cursor.account.is_some() {
                        cursor["LastError"] = json!(lag.cursor.error);
                    }
                    cursor
                })
                .collect();
            document
        })
        .collect();
    let journal = &status.journal;
    json!({
        "Time": time_text(Some(now)),
        "Journal": {
            "Start": journal.start,
            "CommittedEnd": journal.committed_end,
            "DamagedRanges": journal.damage.ranges,
            "DamagedBytes": journal.damage.bytes,
            "FullyVerified": journal.damage.fully_verified,
        },
        "Consumers": consumers,
    })
}

#[cfg(test)]
mod tests {
    use opentrail_consumer::{ConsumerStatus, Cursor, CursorLag, Health, JournalStatus, State};

    use super::*;

    fn lag(cursor: Cursor, end: Position) -> CursorLag {
        CursorLag {
            bytes_behind: end - cursor.next,
            records_behind: u64::from(cursor.next < end),
            records_exact: true,
            oldest_unconsumed_age: (cursor.next < end).then_some(Duration::from_secs(5)),
            caught_up: cursor.next == end,
            cursor,
        }
    }

    fn health(failures: u32) -> Health {
        Health {
            state: if failures > 0 { State::Retrying } else { State::Idle },
            restarts: u64::from(failures),
            failures_in_a_row: failures,
            last_error: (failures > 0).then(|| "redb: /srv/opentrail/lake/111111111111-secret".to_owned()),
            last_error_at: (failures > 0).then(SystemTime::now),
            last_success_at: Some(SystemTime::now()),
        }
    }

    fn trail(account: &str, name: &str, next: Position, error: Option<&str>) -> Cursor {
        Cursor {
            part: Some(format!("arn:aws:cloudtrail:us-east-1:{account}:trail/{name}")),
            account: Some(account.to_owned()),
            error: error.map(str::to_owned),
            ..Cursor::at(next)
        }
    }

    fn status() -> Status {
        Status {
            journal: JournalStatus { start: 0, committed_end: 100, damage: Default::default() },
            consumers: vec![
                ConsumerStatus {
                    name: "event-history".into(),
                    health: health(2),
                    cursors: Ok(vec![lag(Cursor::at(100), 100)]),
                },
                ConsumerStatus {
                    name: "trail-delivery".into(),
                    health: health(0),
                    cursors: Ok(vec![
                        lag(trail("111111111111", "mine", 100, None), 100),
                        lag(trail("222222222222", "theirs", 40, Some("NoSuchBucket")), 100),
                    ]),
                },
                ConsumerStatus { name: "lake-writer".into(), health: health(0), cursors: Err("unreadable".into()) },
            ],
        }
    }

    #[test]
    fn an_account_sees_its_own_trails_and_shared_consumers_without_other_accounts() {
        let document = status_document(&status(), "111111111111", SystemTime::now());
        let text = document.to_string();
        assert!(!text.contains("222222222222") && !text.contains("theirs") && !text.contains("NoSuchBucket"), "{text}");
        assert!(!text.contains("secret"), "shared consumers' error texts stay in the log: {text}");
        let consumers = document["Consumers"].as_array().unwrap();
        let names: Vec<&str> = consumers.iter().map(|c| c["Name"].as_str().unwrap()).collect();
        assert_eq!(names, ["event-history", "trail-delivery", "lake-writer"]);
        let (history, delivery, lake) = (&consumers[0], &consumers[1], &consumers[2]);
        assert_eq!((history["State"].as_str(), history["Restarts"].as_u64()), (Some("retrying"), Some(2)));
        assert_eq!(history["CaughtUp"], false, "failing is not caught up");
        assert!(history["LastErrorTime"].is_string());
        let trails = delivery["Cursors"].as_array().unwrap();
        assert_eq!(trails.len(), 1);
        assert_eq!(trails[0]["Part"], "arn:aws:cloudtrail:us-east-1:111111111111:trail/mine");
        assert_eq!(delivery["CaughtUp"], true, "the other account's lagging trail does not show");
        assert_eq!((lake["CursorsReadable"].as_bool(), lake["CaughtUp"].as_bool()), (Some(false), Some(false)));

        let theirs = status_document(&status(), "222222222222", SystemTime::now());
        let trails = theirs["Consumers"][1]["Cursors"].as_array().unwrap();
        assert_eq!(trails.len(), 1);
        assert_eq!(trails[0]["LastError"], "NoSuchBucket");
        assert_eq!((trails[0]["RecordsBehind"].as_u64(), trails[0]["BytesBehind"].as_u64()), (Some(1), Some(60)));
        assert_eq!(trails[0]["OldestUnconsumedAgeSeconds"], 5);
        assert_eq!(theirs["Consumers"][1]["CaughtUp"], false);
    }
}
