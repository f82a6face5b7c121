//! Control-plane state: trails (with their selectors, tags and logging status) per account,
//! bucket ownership, digest signing keys, the durable state of journal consumers (trail
//! delivery and lake writer cursors and plans), and the Lake's event data stores, channels,
//! imports and queries.
//!
//! The service reads an account's trails with a version number, decides, and writes its
//! changes back conditioned on that version (optimistic concurrency). A conflicting writer
//! gets [`StoreError::Conflict`] and the service retries with fresh state, so the check for a
//! duplicate name or the trail quota and the write are one atomic decision, also once several
//! servers share a PostgreSQL store behind the same trait.
//!
//! A change a client's call makes can carry that call's CloudTrail record into the same
//! transaction (the `*_recorded` writes): the record waits in an `outbox` table until the
//! service has it durable in the journal, so a crash between the two leaves a record to
//! deliver, never a change without one. [`outbox`] holds the drain that delivers what a crash
//! left behind.
//!
//! Invariant: every mutation is one transaction; a crash leaves the state before or after it.

pub mod crash;
pub mod outbox;

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
    #[error("no signing key has the fingerprint {0}")]
    UnknownKey(String),
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
    /// Binds a trail to the identity its bucket has now (replacing any earlier binding).
    BindBucket(TrailBucket),
}

/// The bucket a trail was created or updated for: its name, owner and creation time. Delivery
/// writes only while the bucket of that name is still this one, so a bucket deleted and
/// created again (by anyone) under the same name is never a destination by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailBucket {
    pub trail_arn: String,
    pub bucket: String,
    pub owner: AccountId,
    pub created_ms: i64,
}

/// A bucket of the local bucket store and who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRecord {
    pub name: String,
    pub account: AccountId,
    pub region: String,
    pub created_ms: i64,
}

/// An RSA key pair that signs digest files of one Region during its validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub region: String,
    /// Lower-case hex MD5 of `public_der`.
    pub fingerprint: String,
    /// PKCS#1 `RSAPublicKey` DER.
    pub public_der: Vec<u8>,
    /// PKCS#1 `RSAPrivateKey` DER, or (as stored) that DER sealed by the delivery crate's
    /// master key; the store keeps whichever bytes it is given.
    pub private_der: Vec<u8>,
    pub valid_from_ms: i64,
    pub valid_to_ms: i64,
}

/// The kinds of Lake resources kept per account (queries have their own table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LakeKind {
    EventDataStore,
    Channel,
    Import,
}

impl LakeKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::EventDataStore => "event-data-store",
            Self::Channel => "channel",
            Self::Import => "import",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::EventDataStore, Self::Channel, Self::Import].into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One stored Lake resource: a JSON document the Lake defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeDocument {
    pub kind: LakeKind,
    pub id: String,
    pub document: String,
}

/// An account's Lake resources as read, with the version to condition a write on.
#[derive(Debug, Clone, Default)]
pub struct AccountLake {
    pub version: i64,
    pub documents: Vec<LakeDocument>,
}

#[derive(Debug, Clone)]
pub enum LakeChange {
    Put(LakeDocument),
    Delete { kind: LakeKind, id: String },
}

/// The CloudTrail record of the call that makes a change, committed in the change's own
/// transaction (a transactional outbox): the change and its record are durable together, or
/// neither is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// The record's `eventID` (for logs; the drain compares whole payloads).
    pub event_id: String,
    /// Exactly the bytes the journal is to hold (`EventRecord::encode`).
    pub payload: Vec<u8>,
    /// The journal's committed end when the change was decided. The record is appended only
    /// after its change commits, so if it reached the journal at all it lies at or past this
    /// position: a drain looks for it from here instead of reading the whole journal.
    pub journal_floor: u64,
}

/// An outbox row's key. Keys increase with commit order and are never reused, so removing a
/// row by a key held since its insertion can only ever remove that row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxId(pub i64);

/// A record whose change has committed and that is not known to be in the journal yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecord {
    pub id: OutboxId,
    pub record: OutboxRecord,
}

/// The control-plane repository seam: SQLite now, PostgreSQL for a cluster later.
pub trait ControlStore: Send + Sync + 'static {
    fn load_trails(&self, account: &AccountId) -> Result<AccountTrails, StoreError>;

    /// Every trail of every account (for the delivery worker).
    fn all_trails(&self) -> Result<Vec<Trail>, StoreError>;

    /// Registers a bucket; `false` if the name is taken (by anyone).
    fn insert_bucket(&self, bucket: &BucketRecord) -> Result<bool, StoreError>;
    fn bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError>;
    fn delete_bucket(&self, name: &str) -> Result<(), StoreError>;
    fn list_buckets(&self, account: &AccountId) -> Result<Vec<BucketRecord>, StoreError>;

    /// Signing keys of a Region, oldest first.
    fn signing_keys(&self, region: &str) -> Result<Vec<SigningKey>, StoreError>;
    fn add_signing_key(&self, key: &SigningKey) -> Result<(), StoreError>;
    /// Every signing key of every Region.
    fn all_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError>;
    /// Replaces the stored private halves `(fingerprint, bytes)` in one transaction (sealing and
    /// re-sealing); nothing changes if any fingerprint is unknown. The old bytes are overwritten
    /// on disk, not just unlinked.
    fn replace_private_keys(&self, replacements: &[(String, Vec<u8>)]) -> Result<(), StoreError>;

    /// The bucket identity a trail is bound to, if any.
    fn trail_bucket(&self, trail_arn: &str) -> Result<Option<TrailBucket>, StoreError>;
    /// Binds a trail that has no binding yet (trails created before bindings existed); `false`
    /// if it already had one, which is then left as it is.
    fn bind_unbound_trail(&self, binding: &TrailBucket) -> Result<bool, StoreError>;

    /// A journal consumer's durable state (an opaque document the consumer defines).
    fn consumer_state(&self, consumer: &str) -> Result<Option<String>, StoreError>;
    /// Replaces a consumer's state in one transaction; `None` deletes it.
    fn save_consumer_state(&self, consumer: &str, state: Option<&str>) -> Result<(), StoreError>;
    /// Every stored consumer whose name starts with `prefix`, with its state.
    fn consumer_states(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// An account's event data stores, channels and imports.
    fn load_lake(&self, account: &AccountId) -> Result<AccountLake, StoreError>;
    /// Every account's documents of one kind (for the Lake's workers).
    fn all_lake_documents(&self, kind: LakeKind) -> Result<Vec<String>, StoreError>;
    /// Applies all changes atomically if the account's Lake is still at `expected_version`.
    fn apply_lake_changes(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[LakeChange],
    ) -> Result<(), StoreError>;

    /// Inserts or replaces a query's document.
    fn put_query(&self, account: &AccountId, id: &str, created_ms: i64, document: &str) -> Result<(), StoreError>;
    fn query(&self, account: &AccountId, id: &str) -> Result<Option<String>, StoreError>;
    /// An account's queries created at or after `since_ms`, newest first.
    fn list_queries(&self, account: &AccountId, since_ms: i64) -> Result<Vec<String>, StoreError>;
    /// Forgets queries created before `before_ms`; returns their IDs.
    fn expire_queries(&self, before_ms: i64) -> Result<Vec<String>, StoreError>;

    /// Applies all changes atomically if the account is still at `expected_version`.
    fn apply_trail_changes(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[TrailChange],
    ) -> Result<(), StoreError>;

    /// [`Self::apply_trail_changes`], and in the same transaction queues `record` (the record of
    /// the call making the change) in the outbox. On [`StoreError::Conflict`] or any other error
    /// neither the changes nor the record are stored.
    fn apply_trail_changes_recorded(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[TrailChange],
        record: &OutboxRecord,
    ) -> Result<OutboxId, StoreError>;

    /// [`Self::apply_lake_changes`] with the call's record queued in the same transaction, as
    /// [`Self::apply_trail_changes_recorded`].
    fn apply_lake_changes_recorded(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[LakeChange],
        record: &OutboxRecord,
    ) -> Result<OutboxId, StoreError>;

    /// The outbox: records whose changes committed and whose journal append is not confirmed,
    /// in commit order.
    fn pending_records(&self) -> Result<Vec<PendingRecord>, StoreError>;

    /// Forgets outbox rows whose records are durable in the journal (unknown keys are ignored).
    /// This write need not be durable itself: a row that outlives a crash is found in the
    /// journal by the next drain and removed then.
    fn remove_pending_records(&self, ids: &[OutboxId]) -> Result<(), StoreError>;
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
        // Deleted and overwritten content is zeroed, so a private key that was re-sealed does
        // not live on in a free page.
        connection.pragma_update(None, "secure_delete", "ON")?;
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
             );
             CREATE TABLE IF NOT EXISTS buckets (
                 name TEXT PRIMARY KEY,
                 account_id TEXT NOT NULL,
                 region TEXT NOT NULL,
                 created_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS signing_keys (
                 fingerprint TEXT PRIMARY KEY,
                 region TEXT NOT NULL,
                 public_der BLOB NOT NULL,
                 private_der BLOB NOT NULL,
                 valid_from_ms INTEGER NOT NULL,
                 valid_to_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS trail_buckets (
                 trail_arn TEXT PRIMARY KEY,
                 bucket TEXT NOT NULL,
                 account_id TEXT NOT NULL,
                 created_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS consumer_states (
                 consumer TEXT PRIMARY KEY,
                 state TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS lake_versions (
                 account_id TEXT PRIMARY KEY,
                 version INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS lake_resources (
                 account_id TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 id TEXT NOT NULL,
                 document TEXT NOT NULL,
                 PRIMARY KEY (account_id, kind, id)
             );
             CREATE TABLE IF NOT EXISTS lake_queries (
                 account_id TEXT NOT NULL,
                 id TEXT NOT NULL,
                 created_ms INTEGER NOT NULL,
                 document TEXT NOT NULL,
                 PRIMARY KEY (account_id, id)
             );
             -- AUTOINCREMENT: keys are never reused, so a stale key never names a newer row.
             CREATE TABLE IF NOT EXISTS outbox (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 event_id TEXT NOT NULL,
                 journal_floor INTEGER NOT NULL,
                 payload BLOB NOT NULL
             );",
        )?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::open(Path::new(":memory:"))
    }
}

fn bucket_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn signing_key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SigningKey> {
    Ok(SigningKey {
        region: row.get(0)?,
        fingerprint: row.get(1)?,
        public_der: row.get(2)?,
        private_der: row.get(3)?,
        valid_from_ms: row.get(4)?,
        valid_to_ms: row.get(5)?,
    })
}

fn to_bucket((name, account, region, created_ms): (String, String, String, i64)) -> Option<BucketRecord> {
    Some(BucketRecord { name, account: AccountId::parse(&account).ok()?, region, created_ms })
}

impl SqliteStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().expect("control store lock")
    }

    /// Runs `apply` in one transaction if the account's version in `versions` (a table of ours)
    /// is still `expected`, and moves the version on with it; [`StoreError::Conflict`] otherwise.
    /// With a `record`, the same transaction queues it in the outbox and returns its key.
    fn versioned_change(
        &self,
        versions: &'static str,
        account: &AccountId,
        expected: i64,
        record: Option<&OutboxRecord>,
        apply: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<Option<OutboxId>, StoreError> {
        let mut connection = self.lock();
        let txn = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = account_version(&txn, versions, account)?;
        if current != expected {
            return Err(StoreError::Conflict);
        }
        apply(&txn)?;
        txn.execute(
            &format!(
                "INSERT INTO {versions} (account_id, version) VALUES (?1, ?2)
                 ON CONFLICT (account_id) DO UPDATE SET version = excluded.version"
            ),
            params![account.as_str(), current + 1],
        )?;
        let id = match record {
            Some(record) => {
                txn.execute(
                    "INSERT INTO outbox (event_id, journal_floor, payload) VALUES (?1, ?2, ?3)",
                    params![record.event_id, journal_floor_column(record.journal_floor), record.payload],
                )?;
                // Everything is written and nothing is committed: a crash here must leave
                // neither the change nor its record.
                crash::crash_point(crash::BEFORE_CONTROL_COMMIT);
                Some(OutboxId(txn.last_insert_rowid()))
            }
            None => None,
        };
        txn.commit()?;
        Ok(id)
    }

    fn apply_trail_changes_in(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[TrailChange],
        record: Option<&OutboxRecord>,
    ) -> Result<Option<OutboxId>, StoreError> {
        self.versioned_change("account_versions", account, expected_version, record, |txn| {
            for change in changes {
                match change {
                    TrailChange::Put(trail) => txn.execute(
                        "INSERT INTO trails (account_id, arn, document) VALUES (?1, ?2, ?3)
                         ON CONFLICT (account_id, arn) DO UPDATE SET document = excluded.document",
                        params![account.as_str(), trail.arn(), serde_json::to_string(trail)?],
                    )?,
                    TrailChange::Delete { arn } => {
                        txn.execute("DELETE FROM trail_buckets WHERE trail_arn = ?1", [arn])?;
                        txn.execute(
                            "DELETE FROM trails WHERE account_id = ?1 AND arn = ?2",
                            params![account.as_str(), arn],
                        )?
                    }
                    TrailChange::BindBucket(binding) => txn.execute(
                        "INSERT INTO trail_buckets (trail_arn, bucket, account_id, created_ms) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (trail_arn) DO UPDATE SET bucket = excluded.bucket,
                             account_id = excluded.account_id, created_ms = excluded.created_ms",
                        params![binding.trail_arn, binding.bucket, binding.owner.as_str(), binding.created_ms],
                    )?,
                };
            }
            Ok(())
        })
    }

    fn apply_lake_changes_in(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[LakeChange],
        record: Option<&OutboxRecord>,
    ) -> Result<Option<OutboxId>, StoreError> {
        self.versioned_change("lake_versions", account, expected_version, record, |txn| {
            for change in changes {
                match change {
                    LakeChange::Put(document) => txn.execute(
                        "INSERT INTO lake_resources (account_id, kind, id, document) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (account_id, kind, id) DO UPDATE SET document = excluded.document",
                        params![account.as_str(), document.kind.as_str(), document.id, document.document],
                    )?,
                    LakeChange::Delete { kind, id } => txn.execute(
                        "DELETE FROM lake_resources WHERE account_id = ?1 AND kind = ?2 AND id = ?3",
                        params![account.as_str(), kind.as_str(), id],
                    )?,
                };
            }
            Ok(())
        })
    }
}

/// SQLite integers are signed; journal positions stay far below `i64::MAX` (8 EiB).
fn journal_floor_column(floor: u64) -> i64 {
    i64::try_from(floor).expect("a journal position fits in an SQLite integer")
}

/// The key a recorded write returned: it always queues its record.
fn queued(id: Option<OutboxId>) -> OutboxId {
    id.expect("a recorded change queues its record")
}

/// An account's version in a versions table; 0 before its first change.
fn account_version(connection: &Connection, versions: &'static str, account: &AccountId) -> rusqlite::Result<i64> {
    Ok(connection
        .query_row(&format!("SELECT version FROM {versions} WHERE account_id = ?1"), [account.as_str()], |row| {
            row.get(0)
        })
        .optional()?
        .unwrap_or(0))
}

impl ControlStore for SqliteStore {
    fn all_trails(&self) -> Result<Vec<Trail>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare("SELECT document FROM trails ORDER BY account_id, arn")?;
        let documents = statement.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(documents.iter().map(|document| serde_json::from_str(document)).collect::<Result<Vec<Trail>, _>>()?)
    }

    fn insert_bucket(&self, bucket: &BucketRecord) -> Result<bool, StoreError> {
        let inserted = self.lock().execute(
            "INSERT INTO buckets (name, account_id, region, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
            params![bucket.name, bucket.account.as_str(), bucket.region, bucket.created_ms],
        )?;
        Ok(inserted == 1)
    }

    fn bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError> {
        let row = self
            .lock()
            .query_row(
                "SELECT name, account_id, region, created_ms FROM buckets WHERE name = ?1",
                [name],
                bucket_from_row,
            )
            .optional()?;
        Ok(row.and_then(to_bucket))
    }

    fn delete_bucket(&self, name: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM buckets WHERE name = ?1", [name])?;
        Ok(())
    }

    fn list_buckets(&self, account: &AccountId) -> Result<Vec<BucketRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare("SELECT name, account_id, region, created_ms FROM buckets WHERE account_id = ?1 ORDER BY name")?;
        let rows = statement.query_map([account.as_str()], bucket_from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows.into_iter().filter_map(to_bucket).collect())
    }

    fn signing_keys(&self, region: &str) -> Result<Vec<SigningKey>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT region, fingerprint, public_der, private_der, valid_from_ms, valid_to_ms
             FROM signing_keys WHERE region = ?1 ORDER BY valid_from_ms",
        )?;
        let keys = statement.query_map([region], signing_key_from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(keys)
    }

    fn add_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO signing_keys (fingerprint, region, public_der, private_der, valid_from_ms, valid_to_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key.fingerprint, key.region, key.public_der, key.private_der, key.valid_from_ms, key.valid_to_ms],
        )?;
        Ok(())
    }

    fn all_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT region, fingerprint, public_der, private_der, valid_from_ms, valid_to_ms
             FROM signing_keys ORDER BY region, valid_from_ms",
        )?;
        let keys = statement.query_map([], signing_key_from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(keys)
    }

    fn replace_private_keys(&self, replacements: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let txn = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (fingerprint, private) in replacements {
            let changed = txn.execute(
                "UPDATE signing_keys SET private_der = ?2 WHERE fingerprint = ?1",
                params![fingerprint, private],
            )?;
            // The fingerprint is the primary key: one row or none.
            assert!(changed <= 1, "fingerprint {fingerprint} names {changed} keys");
            if changed == 0 {
                return Err(StoreError::UnknownKey(fingerprint.clone()));
            }
        }
        txn.commit()?;
        // Copy the new pages into the main file and empty the WAL, so the replaced bytes are
        // gone from both files (secure_delete zeroes the freed ones).
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn trail_bucket(&self, trail_arn: &str) -> Result<Option<TrailBucket>, StoreError> {
        let row = self
            .lock()
            .query_row(
                "SELECT trail_arn, bucket, account_id, created_ms FROM trail_buckets WHERE trail_arn = ?1",
                [trail_arn],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get(3)?)),
            )
            .optional()?;
        Ok(row.and_then(|(trail_arn, bucket, account, created_ms)| {
            Some(TrailBucket { trail_arn, bucket, owner: AccountId::parse(&account).ok()?, created_ms })
        }))
    }

    fn bind_unbound_trail(&self, binding: &TrailBucket) -> Result<bool, StoreError> {
        let inserted = self.lock().execute(
            "INSERT INTO trail_buckets (trail_arn, bucket, account_id, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (trail_arn) DO NOTHING",
            params![binding.trail_arn, binding.bucket, binding.owner.as_str(), binding.created_ms],
        )?;
        Ok(inserted == 1)
    }

    fn consumer_state(&self, consumer: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT state FROM consumer_states WHERE consumer = ?1", [consumer], |row| row.get(0))
            .optional()?)
    }

    fn save_consumer_state(&self, consumer: &str, state: Option<&str>) -> Result<(), StoreError> {
        let connection = self.lock();
        match state {
            Some(state) => connection.execute(
                "INSERT INTO consumer_states (consumer, state) VALUES (?1, ?2)
                 ON CONFLICT (consumer) DO UPDATE SET state = excluded.state",
                params![consumer, state],
            )?,
            None => connection.execute("DELETE FROM consumer_states WHERE consumer = ?1", [consumer])?,
        };
        Ok(())
    }

    fn consumer_states(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT consumer, state FROM consumer_states WHERE substr(consumer, 1, ?2) = ?1")?;
        let rows = statement
            .query_map(params![prefix, prefix.len() as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn load_lake(&self, account: &AccountId) -> Result<AccountLake, StoreError> {
        let connection = self.lock();
        let version = account_version(&connection, "lake_versions", account)?;
        let mut statement = connection
            .prepare("SELECT kind, id, document FROM lake_resources WHERE account_id = ?1 ORDER BY kind, id")?;
        let rows = statement
            .query_map([account.as_str()], |row| Ok((row.get::<_, String>(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let documents = rows
            .into_iter()
            .filter_map(|(kind, id, document)| Some(LakeDocument { kind: LakeKind::parse(&kind)?, id, document }))
            .collect();
        Ok(AccountLake { version, documents })
    }

    fn all_lake_documents(&self, kind: LakeKind) -> Result<Vec<String>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT document FROM lake_resources WHERE kind = ?1 ORDER BY account_id, id")?;
        let rows = statement.query_map([kind.as_str()], |row| row.get(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn apply_lake_changes(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[LakeChange],
    ) -> Result<(), StoreError> {
        self.apply_lake_changes_in(account, expected_version, changes, None).map(drop)
    }

    fn put_query(&self, account: &AccountId, id: &str, created_ms: i64, document: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO lake_queries (account_id, id, created_ms, document) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id, id) DO UPDATE SET document = excluded.document",
            params![account.as_str(), id, created_ms, document],
        )?;
        Ok(())
    }

    fn query(&self, account: &AccountId, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT document FROM lake_queries WHERE account_id = ?1 AND id = ?2",
                params![account.as_str(), id],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn list_queries(&self, account: &AccountId, since_ms: i64) -> Result<Vec<String>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT document FROM lake_queries WHERE account_id = ?1 AND created_ms >= ?2 ORDER BY created_ms DESC, id",
        )?;
        let rows = statement
            .query_map(params![account.as_str(), since_ms], |row| row.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn expire_queries(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut connection = self.lock();
        let txn = connection.transaction()?;
        let ids = {
            let mut statement = txn.prepare("SELECT id FROM lake_queries WHERE created_ms < ?1")?;
            statement.query_map([before_ms], |row| row.get(0))?.collect::<Result<Vec<String>, _>>()?
        };
        txn.execute("DELETE FROM lake_queries WHERE created_ms < ?1", [before_ms])?;
        txn.commit()?;
        Ok(ids)
    }

    fn load_trails(&self, account: &AccountId) -> Result<AccountTrails, StoreError> {
        let connection = self.lock();
        let version = account_version(&connection, "account_versions", account)?;
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
        self.apply_trail_changes_in(account, expected_version, changes, None).map(drop)
    }

    fn apply_trail_changes_recorded(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[TrailChange],
        record: &OutboxRecord,
    ) -> Result<OutboxId, StoreError> {
        self.apply_trail_changes_in(account, expected_version, changes, Some(record)).map(queued)
    }

    fn apply_lake_changes_recorded(
        &self,
        account: &AccountId,
        expected_version: i64,
        changes: &[LakeChange],
        record: &OutboxRecord,
    ) -> Result<OutboxId, StoreError> {
        self.apply_lake_changes_in(account, expected_version, changes, Some(record)).map(queued)
    }

    fn pending_records(&self) -> Result<Vec<PendingRecord>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT id, event_id, journal_floor, payload FROM outbox ORDER BY id")?;
        let rows = statement
            .query_map([], |row| {
                Ok(PendingRecord {
                    id: OutboxId(row.get(0)?),
                    record: OutboxRecord {
                        event_id: row.get(1)?,
                        // Written from a u64 by `journal_floor_column`, so never negative.
                        journal_floor: row.get::<_, i64>(2)?.unsigned_abs(),
                        payload: row.get(3)?,
                    },
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn remove_pending_records(&self, ids: &[OutboxId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut connection = self.lock();
        // No sync for this commit (WAL with synchronous=NORMAL): losing it in a crash only
        // leaves rows whose records the next drain finds in the journal, and it saves an fsync
        // on every recorded call. The next FULL commit makes it durable along with its own.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        let removed = (|| {
            let txn = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for id in ids {
                txn.execute("DELETE FROM outbox WHERE id = ?1", [id.0])?;
            }
            txn.commit()
        })();
        // Restored whatever happened: every other write on this connection must be durable.
        connection.pragma_update(None, "synchronous", "FULL")?;
        Ok(removed?)
    }
}

#[cfg(test)]
mod tests {
    use opentrail_model::Region;

    use super::*;

    pub(crate) fn trail(name: &str) -> Trail {
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
            logging_started_at: None,
            logging_stopped_at: None,
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
    fn buckets_have_one_owner() {
        let store = SqliteStore::in_memory().unwrap();
        let account = AccountId::parse("123456789012").unwrap();
        let bucket =
            BucketRecord { name: "logs".into(), account: account.clone(), region: "eu-west-1".into(), created_ms: 5 };
        assert!(store.insert_bucket(&bucket).unwrap());
        let other = BucketRecord { account: AccountId::parse("210987654321").unwrap(), ..bucket.clone() };
        assert!(!store.insert_bucket(&other).unwrap());
        assert_eq!(store.bucket("logs").unwrap(), Some(bucket.clone()));
        assert_eq!(store.list_buckets(&account).unwrap(), vec![bucket]);
        store.delete_bucket("logs").unwrap();
        assert_eq!(store.bucket("logs").unwrap(), None);
    }

    #[test]
    fn trail_bindings_follow_their_trail() {
        let store = SqliteStore::in_memory().unwrap();
        let account = AccountId::parse("123456789012").unwrap();
        let arn = trail("a").arn();
        let binding =
            TrailBucket { trail_arn: arn.clone(), bucket: "bucket".into(), owner: account.clone(), created_ms: 7 };
        store
            .apply_trail_changes(
                &account,
                0,
                &[TrailChange::Put(Box::new(trail("a"))), TrailChange::BindBucket(binding.clone())],
            )
            .unwrap();
        assert_eq!(store.trail_bucket(&arn).unwrap(), Some(binding.clone()));
        // A binding that exists is not replaced by the first-use path, only by a change.
        let later = TrailBucket { created_ms: 9, ..binding.clone() };
        assert!(!store.bind_unbound_trail(&later).unwrap());
        assert_eq!(store.trail_bucket(&arn).unwrap(), Some(binding));
        store.apply_trail_changes(&account, 1, &[TrailChange::BindBucket(later.clone())]).unwrap();
        assert_eq!(store.trail_bucket(&arn).unwrap(), Some(later.clone()));
        store.apply_trail_changes(&account, 2, &[TrailChange::Delete { arn: arn.clone() }]).unwrap();
        assert_eq!(store.trail_bucket(&arn).unwrap(), None);
        assert!(store.bind_unbound_trail(&later).unwrap());
    }

    #[test]
    fn private_keys_are_replaced_in_place_and_wholly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sqlite");
        let store = SqliteStore::open(&path).unwrap();
        let key = |fingerprint: &str, private: &[u8]| SigningKey {
            region: "us-east-1".into(),
            fingerprint: fingerprint.into(),
            public_der: vec![1],
            private_der: private.to_vec(),
            valid_from_ms: 0,
            valid_to_ms: 10,
        };
        let secret = b"PLAINTEXT-PRIVATE-KEY-BYTES-0123456789";
        store.add_signing_key(&key("f1", secret)).unwrap();
        store.add_signing_key(&key("f2", b"other")).unwrap();
        let unknown = store.replace_private_keys(&[("f1".into(), b"sealed".to_vec()), ("nope".into(), vec![])]);
        assert!(matches!(unknown, Err(StoreError::UnknownKey(f)) if f == "nope"));
        assert_eq!(store.all_signing_keys().unwrap()[0].private_der, secret.to_vec(), "rolled back");
        store.replace_private_keys(&[("f1".into(), b"sealed-bytes".to_vec())]).unwrap();
        let keys = store.all_signing_keys().unwrap();
        assert_eq!(keys.iter().map(|k| k.private_der.as_slice()).collect::<Vec<_>>(), [&b"sealed-bytes"[..], b"other"]);
        let mut on_disk = std::fs::read(&path).unwrap();
        on_disk.extend(std::fs::read(dir.path().join("control.sqlite-wal")).unwrap_or_default());
        assert!(!on_disk.windows(secret.len()).any(|w| w == secret), "the replaced bytes are gone from disk");
    }

    #[test]
    fn consumer_states_replace_list_and_delete() {
        let store = SqliteStore::in_memory().unwrap();
        store.save_consumer_state("delivery/a", Some("1")).unwrap();
        store.save_consumer_state("delivery/a", Some("2")).unwrap();
        store.save_consumer_state("lake/x", Some("3")).unwrap();
        assert_eq!(store.consumer_state("delivery/a").unwrap().as_deref(), Some("2"));
        assert_eq!(store.consumer_states("delivery/").unwrap(), vec![("delivery/a".to_owned(), "2".to_owned())]);
        store.save_consumer_state("delivery/a", None).unwrap();
        assert_eq!(store.consumer_state("delivery/a").unwrap(), None);
    }

    #[test]
    fn lake_changes_are_versioned_and_queries_expire() {
        let store = SqliteStore::in_memory().unwrap();
        let account = AccountId::parse("123456789012").unwrap();
        let put = |id: &str| {
            LakeChange::Put(LakeDocument {
                kind: LakeKind::EventDataStore,
                id: id.into(),
                document: format!("{{\"id\":\"{id}\"}}"),
            })
        };
        store.apply_lake_changes(&account, 0, &[put("a")]).unwrap();
        assert!(matches!(store.apply_lake_changes(&account, 0, &[put("b")]), Err(StoreError::Conflict)));
        let lake = store.load_lake(&account).unwrap();
        assert_eq!((lake.version, lake.documents.len()), (1, 1));
        assert_eq!(store.all_lake_documents(LakeKind::EventDataStore).unwrap().len(), 1);
        assert!(store.all_lake_documents(LakeKind::Channel).unwrap().is_empty());
        store
            .apply_lake_changes(&account, 1, &[LakeChange::Delete { kind: LakeKind::EventDataStore, id: "a".into() }])
            .unwrap();
        assert!(store.load_lake(&account).unwrap().documents.is_empty());

        store.put_query(&account, "q1", 1_000, "old").unwrap();
        store.put_query(&account, "q2", 5_000, "new").unwrap();
        store.put_query(&account, "q2", 5_000, "newer").unwrap();
        assert_eq!(store.list_queries(&account, 0).unwrap(), vec!["newer".to_string(), "old".to_string()]);
        assert_eq!(store.expire_queries(2_000).unwrap(), vec!["q1".to_string()]);
        assert_eq!(store.query(&account, "q1").unwrap(), None);
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
