//! Control-plane state: trails (with their selectors, tags and logging status) per account.
//!
//! The service reads an account's trails with a version number, decides, and writes its
//! changes back conditioned on that version (optimistic concurrency). A conflicting writer
//! gets [`StoreError::Conflict`] and the service retries with fresh state, so the check for a
//! duplicate name or the trail quota and the write are one atomic decision, also once several
//! servers share a PostgreSQL store behind the same trait.
//!
//! Invariant: every mutation is one transaction; a crash leaves the state before or after it.

use std::path::Path;
use std::sync::Mutex;

use opentrail_model::{AccountId, Trail};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("control-plane database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored trail could not be decoded: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the account's state changed concurrently")]
    Conflict,
}

/// An account's trails as read, with the version to condition a write on.
#[derive(Debug, Clone)]
pub struct AccountTrails {
    pub version: i64,
    pub trails: Vec<Trail>,
}

#[derive(Debug, Clone)]
pub enum TrailChange {
    /// Insert or replace the trail with this ARN.
    Put(Box<Trail>),
    Delete {
        arn: String,
    },
}

/// The control-plane repository seam: SQLite now, PostgreSQL for a cluster later.
pub trait ControlStore: Send + Sync + 'static {
    fn load_trails(&self, account: &AccountId) -> Result<AccountTrails, StoreError>;

    /// Applies all changes atomically if the account is still at `expected_version`.
    fn apply_trail_changes(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[TrailChange],
    ) -> Result<(), StoreError>;
}

pub struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        // WAL with full sync: a committed mutation survives a crash of the process or machine.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS account_versions (
                 account_id TEXT PRIMARY KEY,
                 version INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS trails (
                 account_id TEXT NOT NULL,
                 arn TEXT NOT NULL,
                 document TEXT NOT NULL,
                 PRIMARY KEY (account_id, arn)
             );",
        )?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::open(Path::new(":memory:"))
    }
}

impl ControlStore for SqliteStore {
    fn load_trails(&self, account: &AccountId) -> Result<AccountTrails, StoreError> {
        let connection = self.connection.lock().expect("lock");
        let version = connection
            .query_row("SELECT version FROM account_versions WHERE account_id = ?1", [account.as_str()], |row| {
                row.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let mut statement = connection.prepare("SELECT document FROM trails WHERE account_id = ?1 ORDER BY arn")?;
        let documents =
            statement.query_map([account.as_str()], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        let trails =
            documents.iter().map(|document| serde_json::from_str(document)).collect::<Result<Vec<Trail>, _>>()?;
        Ok(AccountTrails { version, trails })
    }

    fn apply_trail_changes(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[TrailChange],
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.lock().expect("lock");
        let txn = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = txn
            .query_row("SELECT version FROM account_versions WHERE account_id = ?1", [account.as_str()], |row| {
                row.get(0)
            })
            .optional()?
            .unwrap_or(0);
        if current != expected_version {
            return Err(StoreError::Conflict);
        }
        for change in changes {
            match change {
                TrailChange::Put(trail) => {
                    txn.execute(
                        "INSERT INTO trails (account_id, arn, document) VALUES (?1, ?2, ?3)
                         ON CONFLICT (account_id, arn) DO UPDATE SET document = excluded.document",
                        params![account.as_str(), trail.arn(), serde_json::to_string(trail)?],
                    )?;
                }
                TrailChange::Delete { arn } => {
                    txn.execute(
                        "DELETE FROM trails WHERE account_id = ?1 AND arn = ?2",
                        params![account.as_str(), arn],
                    )?;
                }
            }
        }
        txn.execute(
            "INSERT INTO account_versions (account_id, version) VALUES (?1, ?2)
             ON CONFLICT (account_id) DO UPDATE SET version = excluded.version",
            params![account.as_str(), current + 1],
        )?;
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentrail_model::Region;

    use super::*;

    fn trail(name: &str) -> Trail {
        Trail {
            name: name.into(),
            account: AccountId::parse("123456789012").unwrap(),
            home_region: Region::parse("us-east-1").unwrap(),
            s3_bucket_name: "bucket".into(),
            s3_key_prefix: None,
            sns_topic_name: None,
            include_global_service_events: true,
            is_multi_region_trail: false,
            log_file_validation_enabled: false,
            cloud_watch_logs_log_group_arn: None,
            cloud_watch_logs_role_arn: None,
            kms_key_id: None,
            is_organization_trail: false,
            event_selectors: None,
            advanced_event_selectors: None,
            insight_selectors: Vec::new(),
            tags: Vec::new(),
            is_logging: false,
            start_logging_time_ms: None,
            stop_logging_time_ms: None,
            created_ms: 0,
        }
    }

    #[test]
    fn changes_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sqlite");
        let account = AccountId::parse("123456789012").unwrap();
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .apply_trail_changes(
                    &account,
                    0,
                    &[TrailChange::Put(Box::new(trail("a"))), TrailChange::Put(Box::new(trail("b")))],
                )
                .unwrap();
            store.apply_trail_changes(&account, 1, &[TrailChange::Delete { arn: trail("a").arn() }]).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let loaded = store.load_trails(&account).unwrap();
        assert_eq!(loaded.version, 2);
        assert_eq!(loaded.trails, vec![trail("b")]);
    }

    #[test]
    fn stale_versions_conflict_and_change_nothing() {
        let store = SqliteStore::in_memory().unwrap();
        let account = AccountId::parse("123456789012").unwrap();
        store.apply_trail_changes(&account, 0, &[TrailChange::Put(Box::new(trail("a")))]).unwrap();
        let stale = store.apply_trail_changes(&account, 0, &[TrailChange::Put(Box::new(trail("b")))]);
        assert!(matches!(stale, Err(StoreError::Conflict)));
        assert_eq!(store.load_trails(&account).unwrap().trails.len(), 1);
    }

    #[test]
    fn accounts_are_separate() {
        let store = SqliteStore::in_memory().unwrap();
        let account = AccountId::parse("123456789012").unwrap();
        let other = AccountId::parse("210987654321").unwrap();
        store.apply_trail_changes(&account, 0, &[TrailChange::Put(Box::new(trail("a")))]).unwrap();
        assert!(store.load_trails(&other).unwrap().trails.is_empty());
    }
}
