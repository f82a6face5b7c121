//! The Insights consumer's own SQLite file: its cursor and the detector's snapshot (saved
//! together, so a restart resumes exactly where the snapshot was taken), the metric series
//! (`ListInsightsMetricData`), and the outbox of Starts and Ends not yet known to be in the
//! journal. One transaction commits all three, so an insight is raised exactly once.

use std::path::Path;
use std::sync::Mutex;

use opentrail_journal::Position;
use rusqlite::{Connection, OptionalExtension, params};

use crate::InsightsError;
use crate::detector::{Point, SeriesKey};

/// The periods the series are kept at, with how long (AWS: 60-second points for 15 days,
/// 300-second for 63 days, 3600-second for 90 days).
pub const PERIODS: [(u32, i64); 3] = [(60, 15 * 86_400), (300, 63 * 86_400), (3600, 90 * 86_400)];

/// How long a period's points are kept, in seconds; `None` for a period that is not kept.
pub fn retention_seconds(period: u32) -> Option<i64> {
    PERIODS.iter().find(|(kept, _)| *kept == period).map(|(_, seconds)| *seconds)
}

/// A Start or End committed but not yet known to be durable in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub event_id: String,
    pub account: String,
    pub region: String,
    pub record: String,
    /// The journal's committed end when it was committed: if it was appended before a crash,
    /// it lies at or after this position.
    pub search_from: Position,
}

/// One series read back: the account and Region it belongs to, its key, and the range.
#[derive(Debug, Clone)]
pub struct SeriesQuery<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub key: &'a SeriesKey,
    pub period: u32,
    /// Seconds since the epoch, `[start, end)`.
    pub start: i64,
    pub end: i64,
}

pub struct InsightStore {
    connection: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cursor INTEGER NOT NULL,
    detector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    account TEXT NOT NULL, region TEXT NOT NULL, insight_type TEXT NOT NULL,
    event_source TEXT NOT NULL, event_name TEXT NOT NULL, error_code TEXT NOT NULL,
    period INTEGER NOT NULL, bucket INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (account, region, insight_type, event_source, event_name, error_code, period, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    event_id TEXT PRIMARY KEY,
    account TEXT NOT NULL, region TEXT NOT NULL,
    record TEXT NOT NULL,
    search_from INTEGER NOT NULL
);
";

fn position_column(position: Position) -> i64 {
    i64::try_from(position).expect("journal positions fit in SQLite's integers")
}

impl InsightStore {
    pub fn open(path: &Path) -> Result<Self, InsightsError> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before the round reports its cursor.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The durable cursor and the snapshot taken there, if any was ever saved.
    pub fn load(&self) -> Result<Option<(Position, Vec<u8>)>, InsightsError> {
        let row = self
            .lock()
            .query_row("SELECT cursor, detector FROM state WHERE id = 1", [], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        Ok(row.map(|(cursor, snapshot)| (cursor as Position, snapshot)))
    }

    /// The durable cursor alone (retention reads it).
    pub fn cursor(&self) -> Result<Option<Position>, InsightsError> {
        let cursor = self
            .lock()
            .query_row("SELECT cursor FROM state WHERE id = 1", [], |row| row.get::<_, i64>(0))
            .optional()?;
        Ok(cursor.map(|cursor| cursor as Position))
    }

    /// Saves, in one transaction, the cursor with the snapshot taken there, the minutes closed
    /// since the last commit, and the Starts and Ends raised meanwhile.
    pub fn commit(
        &self,
        cursor: Position,
        snapshot: &[u8],
        points: &[Point],
        outbox: &[Pending],
    ) -> Result<(), InsightsError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute(
            "INSERT INTO state (id, cursor, detector) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor, detector = excluded.detector",
            params![position_column(cursor), snapshot],
        )?;
        {
            let mut add = transaction.prepare_cached(
                "INSERT INTO series VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT DO UPDATE SET value = value + excluded.value",
            )?;
            for point in points {
                let seconds = point.minute * 60;
                for (period, _) in PERIODS {
                    let bucket = seconds - seconds.rem_euclid(i64::from(period));
                    add.execute(params![
                        point.account,
                        point.region,
                        point.key.insight_type.name(),
                        point.key.event_source,
                        point.key.event_name,
                        point.key.error_code.as_deref().unwrap_or_default(),
                        period,
                        bucket,
                        f64::from(point.count),
                    ])?;
                }
            }
            let mut queue = transaction.prepare_cached("INSERT OR IGNORE INTO outbox VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for pending in outbox {
                queue.execute(params![
                    pending.event_id,
                    pending.account,
                    pending.region,
                    pending.record,
                    position_column(pending.search_from)
                ])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// The outbox, oldest first.
    pub fn pending(&self) -> Result<Vec<Pending>, InsightsError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT event_id, account, region, record, search_from FROM outbox ORDER BY rowid")?;
        let rows = statement.query_map([], |row| {
            Ok(Pending {
                event_id: row.get(0)?,
                account: row.get(1)?,
                region: row.get(2)?,
                record: row.get(3)?,
                search_from: row.get::<_, i64>(4)? as Position,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets outbox entries now durable in the journal.
    pub fn delivered(&self, event_ids: &[String]) -> Result<(), InsightsError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        for id in event_ids {
            transaction.execute("DELETE FROM outbox WHERE event_id = ?1", [id])?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// The non-zero points of one series in `[start, end)`, oldest first, as (bucket start in
    /// seconds, calls).
    pub fn series(&self, query: &SeriesQuery<'_>) -> Result<Vec<(i64, f64)>, InsightsError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT bucket, value FROM series WHERE account = ?1 AND region = ?2 AND insight_type = ?3
             AND event_source = ?4 AND event_name = ?5 AND error_code = ?6 AND period = ?7
             AND bucket >= ?8 AND bucket < ?9 ORDER BY bucket",
        )?;
        let rows = statement.query_map(
            params![
                query.account,
                query.region,
                query.key.insight_type.name(),
                query.key.event_source,
                query.key.event_name,
                query.key.error_code.as_deref().unwrap_or_default(),
                query.period,
                query.start,
                query.end,
            ],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, f64>(1)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Drops points past their period's retention, measured back from `now` (seconds).
    pub fn expire(&self, now: i64) -> Result<usize, InsightsError> {
        let connection = self.lock();
        let mut dropped = 0;
        for (period, kept) in PERIODS {
            dropped += connection
                .execute("DELETE FROM series WHERE period = ?1 AND bucket < ?2", params![period, now - kept])?;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::InsightType;

    fn key() -> SeriesKey {
        SeriesKey {
            insight_type: InsightType::ApiCallRateInsight,
            event_source: "ec2.amazonaws.com".into(),
            event_name: "RunInstances".into(),
            error_code: None,
        }
    }

    #[test]
    fn a_commit_keeps_cursor_snapshot_series_and_outbox_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = InsightStore::open(&dir.path().join("insights.sqlite")).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let point = |minute, count| Point {
            account: "111111111111".into(),
            region: "us-east-1".into(),
            key: key(),
            minute,
            count,
        };
        let pending = Pending {
            event_id: "e1".into(),
            account: "111111111111".into(),
            region: "us-east-1".into(),
            record: "{}".into(),
            search_from: 7,
        };
        store.commit(42, b"snap", &[point(10, 2), point(11, 3)], std::slice::from_ref(&pending)).unwrap();
        store.commit(43, b"snap2", &[point(11, 1)], std::slice::from_ref(&pending)).unwrap();
        drop(store);
        let store = InsightStore::open(&dir.path().join("insights.sqlite")).unwrap();
        assert_eq!(store.load().unwrap(), Some((43, b"snap2".to_vec())));
        let key = key();
        let query = |period, start, end| SeriesQuery {
            account: "111111111111",
            region: "us-east-1",
            key: &key,
            period,
            start,
            end,
        };
        assert_eq!(store.series(&query(60, 0, 3600)).unwrap(), [(600, 2.0), (660, 4.0)]);
        assert_eq!(store.series(&query(300, 0, 3600)).unwrap(), [(600, 6.0)]);
        assert_eq!(store.series(&query(3600, 0, 7200)).unwrap(), [(0, 6.0)]);
        assert_eq!(store.pending().unwrap(), [pending]);
        store.delivered(&["e1".into()]).unwrap();
        assert!(store.pending().unwrap().is_empty());
        assert_eq!(store.expire(15 * 86_400 + 650).unwrap(), 1, "the 60 s point of minute 10 is past 15 days");
    }
}
