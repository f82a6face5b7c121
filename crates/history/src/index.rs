use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use opentrail_consumer::{Consumer, ConsumerError, Cursor, Progress, RoundFuture};
use opentrail_journal::{Journal, JournalError, Position};
use opentrail_model::record::{LookupAttribute, RecordView, split_envelope};
use opentrail_model::{AccountId, Region};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::PageToken;

/// `(hash of the scope or of scope + attribute + value, reversed event time, reversed position)`.
/// Fixed-width keys keep the B-trees small and fast; a lookup re-checks every record it reads
/// against its query, so a hash collision can cost a read but never return a wrong event.
type IndexKey = (u64, u64, u64);

/// Every indexed event, by scope.
const BY_TIME: TableDefinition<IndexKey, ()> = TableDefinition::new("by_time");
/// Every indexed event, once per lookup attribute value it has.
const BY_ATTRIBUTE: TableDefinition<IndexKey, ()> = TableDefinition::new("by_attribute");
/// Journal position of each indexed event -> (when it was indexed, ms; its reversed time).
const INDEXED: TableDefinition<u64, (u64, u64)> = TableDefinition::new("indexed");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CURSOR_KEY: &str = "journal_cursor";

/// How many candidate keys one lookup page examines at most before it returns what it has
/// (with a `NextToken`), so that a lookup whose extra attributes rarely match stays fast.
const MAX_CANDIDATES_PER_PAGE: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history index storage error: {0}")]
    Storage(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the NextToken does not belong to this query")]
    InvalidToken,
}

macro_rules! storage_errors {
    ($($kind:ty),*) => {$(
        impl From<$kind> for HistoryError {
            fn from(error: $kind) -> Self {
                Self::Storage(error.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// One `LookupEvents` request, already validated.
#[derive(Debug, Clone)]
pub struct LookupQuery {
    pub account: AccountId,
    pub region: Region,
    /// All must match (AWS allows one; OpenTrail ANDs several).
    pub attributes: Vec<(LookupAttribute, String)>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Insights events instead of management events.
    pub insights: bool,
    pub max_results: usize,
    /// Fingerprints the parameters the caller gave, so a token only continues its own query.
    pub parameters_fingerprint: u64,
    pub after: Option<PageToken>,
}

/// An event a lookup found: where it is filed, and its record's JSON exactly as stored.
#[derive(Debug, Clone)]
pub struct FoundEvent {
    pub account: AccountId,
    pub region: Region,
    pub json: Vec<u8>,
}

impl FoundEvent {
    pub fn view(&self) -> RecordView<'_> {
        RecordView::from_json(&self.json).unwrap_or_default()
    }
}

#[derive(Debug, Default)]
pub struct LookupPage {
    pub events: Vec<FoundEvent>,
    pub next: Option<PageToken>,
    /// Indexed records this page skipped because their journal bytes are damaged.
    pub damaged: usize,
}

pub struct HistoryIndex {
    db: Database,
    journal: Arc<dyn Journal>,
    indexed: watch::Sender<Position>,
    /// Index commits since the last synced one.
    unsynced_commits: AtomicU32,
}

/// While catching up, one commit in this many is synced to disk.
const COMMITS_PER_SYNC: u32 = 16;

/// FNV-1a, 64 bits: stable across builds and platforms (the hashes are stored on disk).
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(&[0xff]) {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// An index scope: one account's management or Insights events in one Region.
#[derive(Clone, Copy)]
struct Scope<'a> {
    account: &'a AccountId,
    region: &'a Region,
    insights: bool,
}

impl Scope<'_> {
    fn parts(&self) -> [&[u8]; 3] {
        let kind: &[u8] = if self.insights { b"insight" } else { b"management" };
        [self.account.as_str().as_bytes(), self.region.as_str().as_bytes(), kind]
    }

    fn time_key(&self) -> u64 {
        stable_hash(&self.parts())
    }

    fn attribute_key(&self, attribute: LookupAttribute, value: &str) -> u64 {
        let [account, region, kind] = self.parts();
        stable_hash(&[account, region, kind, attribute.name().as_bytes(), value.as_bytes()])
    }
}

fn reversed_time(time: DateTime<Utc>) -> u64 {
    u64::MAX - time.timestamp().max(0) as u64
}

/// A stable fingerprint of query parameters (for binding tokens to their query).
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    u64::from_be_bytes(hasher.finalize()[..8].try_into().expect("eight bytes"))
}

/// The index keys of one journal entry, derived the same way for indexing and for expiry (so
/// expiry removes exactly what indexing inserted).
struct EntryKeys {
    reversed_time: u64,
    time_key: IndexKey,
    attribute_keys: Vec<IndexKey>,
}

impl EntryKeys {
    /// `None` for entries Event History does not hold: data events, and undecodable payloads.
    fn of(position: Position, payload: &[u8]) -> Option<Self> {
        let (account, region, json) = split_envelope(payload)
            .inspect_err(|error| tracing::warn!(position, %error, "skipping undecodable journal record"))
            .ok()?;
        let view = RecordView::from_json(json)
            .inspect_err(|_| tracing::warn!(position, "skipping a journal record that is not JSON"))
            .ok()?;
        let insights = view.is_insight();
        if !insights && !view.is_management_event() {
            return None; // Event History holds management and Insights events only.
        }
        let reversed_time = reversed_time(view.event_time()?);
        let reversed_position = u64::MAX - position;
        let scope = Scope { account: &account, region: &region, insights };
        let attribute_keys = view
            .lookup_keys()
            .into_iter()
            .map(|(attribute, value)| (scope.attribute_key(attribute, &value), reversed_time, reversed_position))
            .collect();
        Some(Self { reversed_time, time_key: (scope.time_key(), reversed_time, reversed_position), attribute_keys })
    }
}

impl HistoryIndex {
    /// Opens the index, rebuilding it from the journal if the file is missing or unreadable.
    pub fn open(path: &Path, journal: Arc<dyn Journal>) -> Result<Self, HistoryError> {
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(error) => {
                let aside = PathBuf::from(format!("{}.damaged", path.display()));
                tracing::warn!(%error, "history index unreadable; moving it aside and rebuilding from the journal");
                std::fs::rename(path, &aside).map_err(|e| HistoryError::Storage(e.to_string()))?;
                Database::create(path)?
            }
        };
        let txn = db.begin_write()?;
        let cursor = {
            txn.open_table(BY_TIME)?;
            txn.open_table(BY_ATTRIBUTE)?;
            txn.open_table(INDEXED)?;
            let meta = txn.open_table(META)?;
            meta.get(CURSOR_KEY)?.map(|v| v.value()).unwrap_or(0)
        };
        txn.commit()?;
        let (indexed, _) = watch::channel(cursor);
        Ok(Self { db, journal, indexed, unsynced_commits: AtomicU32::new(0) })
    }

    /// The journal position up to which every event is indexed.
    pub fn cursor(&self) -> Position {
        *self.indexed.borrow()
    }

    /// Indexes the next stretch of the journal. Blocking; returns how many records it read.
    pub fn catch_up_once(&self, max_bytes: usize) -> Result<usize, HistoryError> {
        let batch = self.journal.read_from(self.cursor(), max_bytes)?;
        if batch.entries.is_empty() {
            if batch.next != self.cursor() {
                self.commit_cursor_only(batch.next)?;
            }
            return Ok(0);
        }
        let now_ms = Utc::now().timestamp_millis().max(0) as u64;
        let mut txn = self.db.begin_write()?;
        // Sync only when caught up, or every few batches while catching up. Safe: a crash rolls
        // the entries and the cursor back together, and indexing resumes from the journal.
        let caught_up = batch.next >= self.journal.committed_end();
        let unsynced = self.unsynced_commits.fetch_add(1, Ordering::Relaxed) + 1;
        if caught_up || unsynced >= COMMITS_PER_SYNC {
            self.unsynced_commits.store(0, Ordering::Relaxed);
        } else {
            txn.set_durability(Durability::None)?;
        }
        {
            let mut by_time = txn.open_table(BY_TIME)?;
            let mut by_attribute = txn.open_table(BY_ATTRIBUTE)?;
            let mut indexed = txn.open_table(INDEXED)?;
            let mut time_keys: Vec<IndexKey> = Vec::with_capacity(batch.entries.len());
            let mut attribute_keys: Vec<IndexKey> = Vec::with_capacity(batch.entries.len() * 10);
            for entry in &batch.entries {
                let Some(keys) = EntryKeys::of(entry.position, &entry.payload) else { continue };
                time_keys.push(keys.time_key);
                attribute_keys.extend(keys.attribute_keys);
                indexed.insert(entry.position, (now_ms, keys.reversed_time))?;
            }
            // Hashed keys land all over the trees: inserting them in order touches each page once.
            time_keys.sort_unstable();
            attribute_keys.sort_unstable();
            for key in time_keys {
                by_time.insert(key, ())?;
            }
            for key in attribute_keys {
                by_attribute.insert(key, ())?;
            }
            txn.open_table(META)?.insert(CURSOR_KEY, batch.next)?;
        }
        txn.commit()?;
        self.indexed.send_replace(batch.next);
        Ok(batch.entries.len())
    }

    fn commit_cursor_only(&self, cursor: Position) -> Result<(), HistoryError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(CURSOR_KEY, cursor)?;
        txn.commit()?;
        self.indexed.send_replace(cursor);
        Ok(())
    }

    /// Waits until everything below `position` is indexed, or the timeout passes.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let mut receiver = self.indexed.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|&indexed| indexed >= position))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    /// One page of `LookupEvents`. Blocking (reads the index and the journal).
    pub fn lookup(&self, query: &LookupQuery) -> Result<LookupPage, HistoryError> {
        if let Some(token) = &query.after
            && token.query_fingerprint != query.parameters_fingerprint
        {
            return Err(HistoryError::InvalidToken);
        }
        let scope = Scope { account: &query.account, region: &query.region, insights: query.insights };
        let (prefix, table) = match query.attributes.first() {
            None => (scope.time_key(), BY_TIME),
            Some((attribute, value)) => (scope.attribute_key(*attribute, value), BY_ATTRIBUTE),
        };
        if query.start > query.end {
            return Ok(LookupPage::default());
        }
        let newest = reversed_time(query.end);
        let oldest = reversed_time(query.start);
        let lower = match &query.after {
            Some(token) => std::ops::Bound::Excluded((prefix, token.reversed_time, token.reversed_position)),
            None => std::ops::Bound::Included((prefix, newest, 0)),
        };
        let upper = std::ops::Bound::Included((prefix, oldest, u64::MAX));

        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        let mut page = LookupPage::default();
        let mut last_key = None;
        for (examined, item) in table.range((lower, upper))?.enumerate() {
            let (key, _) = item?;
            let (_, reversed, reversed_position) = key.value();
            if page.events.len() == query.max_results || examined == MAX_CANDIDATES_PER_PAGE {
                // There is more: continue after the last key this page looked at.
                let (reversed_time, reversed_position) = last_key.expect("a page that is full has a last key");
                page.next = Some(PageToken {
                    reversed_time,
                    reversed_position,
                    query_fingerprint: query.parameters_fingerprint,
                });
                break;
            }
            last_key = Some((reversed, reversed_position));
            let position = u64::MAX - reversed_position;
            let bytes = match self.journal.read_at(position) {
                Ok(bytes) => bytes,
                // Dropped by retention after the index entry was read: skip it.
                Err(JournalError::NoSuchPosition(_)) => continue,
                // One damaged record costs that record, not the lookup (the journal has
                // recorded and reported the range).
                Err(JournalError::Damaged { position }) => {
                    tracing::warn!(position, "Event History skipped a record in a damaged journal range");
                    page.damaged += 1;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let (account, region, json) = split_envelope(&bytes).map_err(|e| HistoryError::Storage(e.to_string()))?;
            let Ok(view) = RecordView::from_json(json) else { continue };
            // Re-check everything the keys only hashed: scope and every attribute.
            let in_scope = account == query.account
                && region == query.region
                && view.is_insight() == query.insights
                && (query.insights || view.is_management_event());
            let keys = view.lookup_keys();
            if in_scope && query.attributes.iter().all(|filter| keys.contains(filter)) {
                page.events.push(FoundEvent { account, region, json: json.to_vec() });
            }
        }
        Ok(page)
    }

    /// Removes events indexed before `cutoff` (Event History keeps 90 days). Blocking.
    pub fn expire(&self, cutoff: DateTime<Utc>) -> Result<usize, HistoryError> {
        let cutoff_ms = cutoff.timestamp_millis().max(0) as u64;
        let txn = self.db.begin_write()?;
        let mut removed = 0;
        {
            let mut indexed = txn.open_table(INDEXED)?;
            let mut by_time = txn.open_table(BY_TIME)?;
            let mut by_attribute = txn.open_table(BY_ATTRIBUTE)?;
            let expired: Vec<u64> = indexed
                .iter()?
                .map_while(|item| {
                    let (position, value) = item.ok()?;
                    let (indexed_ms, _) = value.value();
                    (indexed_ms < cutoff_ms).then_some(position.value())
                })
                .collect();
            for position in expired {
                indexed.remove(position)?;
                removed += 1;
                let Ok(payload) = self.journal.read_at(position) else { continue };
                let Some(keys) = EntryKeys::of(position, &payload) else { continue };
                by_time.remove(keys.time_key)?;
                for key in keys.attribute_keys {
                    by_attribute.remove(key)?;
                }
            }
        }
        txn.commit()?;
        Ok(removed)
    }

    /// The oldest journal position the index still needs (for journal retention).
    pub fn oldest_needed_position(&self) -> Result<Position, HistoryError> {
        let txn = self.db.begin_read()?;
        let indexed = txn.open_table(INDEXED)?;
        Ok(indexed.first()?.map(|(position, _)| position.value()).unwrap_or_else(|| self.cursor()))
    }
}

/// Event History's name among the journal consumers.
pub const CONSUMER_NAME: &str = "event-history";

/// How much journal one indexing round reads at most.
const ROUND_BYTES: usize = 4 * 1024 * 1024;

/// Event History as a journal consumer: each round indexes the next stretch of the journal.
/// Its cursor keeps the journal from the oldest record still indexed, because lookups read the
/// records they return back from the journal.
impl Consumer for HistoryIndex {
    fn name(&self) -> &str {
        CONSUMER_NAME
    }

    fn round(self: Arc<Self>) -> RoundFuture {
        let index = self;
        Box::pin(async move {
            let journal = index.journal.clone();
            opentrail_consumer::blocking(move || index.catch_up_once(ROUND_BYTES).map(|_| index.cursor()))
                .await?
                .map_err(ConsumerError::new)
                .map(|cursor| if cursor < journal.committed_end() { Progress::More } else { Progress::Idle })
        })
    }

    fn cursors(&self) -> Result<Vec<Cursor>, ConsumerError> {
        let keep_from = self.oldest_needed_position().map_err(ConsumerError::new)?;
        Ok(vec![Cursor { keep_from, ..Cursor::at(self.cursor()) }])
    }

    /// Event History keeps 90 days (the caller's `older_than`): older entries are forgotten.
    fn expire(&self, older_than: std::time::SystemTime) -> Result<usize, ConsumerError> {
        HistoryIndex::expire(self, older_than.into()).map_err(ConsumerError::new)
    }
}

#[cfg(test)]
mod tests {
    use opentrail_journal::{LocalJournal, LocalJournalOptions};
    use opentrail_model::EventRecord;
    use serde_json::json;

    use super::*;

    fn account(id: &str) -> AccountId {
        AccountId::parse(id).unwrap()
    }

    fn region() -> Region {
        Region::parse("us-east-1").unwrap()
    }

    fn record(account_id: &str, id: usize, name: &str, seconds: i64) -> Vec<u8> {
        let time = DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap();
        EventRecord::new(
            account(account_id),
            region(),
            json!({
                "eventVersion": "1.11",
                "eventTime": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "eventName": name,
                "eventSource": "cloudtrail.amazonaws.com",
                "eventID": format!("id-{id}"),
                "readOnly": name.starts_with("Get"),
                "eventCategory": "Management",
                "userIdentity": {"type": "IAMUser", "userName": "alice", "accessKeyId": "AKIA1"}
            }),
        )
        .unwrap()
        .encode()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        journal: Arc<LocalJournal>,
        index: HistoryIndex,
    }

    async fn fixture(records: Vec<Vec<u8>>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(LocalJournal::open(dir.path().join("journal"), LocalJournalOptions::default()).unwrap());
        journal.append(records).await.unwrap();
        let index = HistoryIndex::open(&dir.path().join("history.redb"), journal.clone()).unwrap();
        while index.catch_up_once(1 << 20).unwrap() > 0 {}
        Fixture { _dir: dir, journal, index }
    }

    fn query(account_id: &str) -> LookupQuery {
        LookupQuery {
            account: account(account_id),
            region: region(),
            attributes: Vec::new(),
            start: DateTime::from_timestamp(0, 0).unwrap(),
            end: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            insights: false,
            max_results: 50,
            parameters_fingerprint: 7,
            after: None,
        }
    }

    fn ids(page: &LookupPage) -> Vec<String> {
        page.events.iter().map(|e| e.view().event_id().unwrap().to_owned()).collect()
    }

    #[tokio::test]
    async fn newest_first_and_paged_exactly_once() {
        let records = (0..23).map(|i| record("111111111111", i, "GetTrail", (i / 3) as i64)).collect();
        let f = fixture(records).await;
        let mut q = query("111111111111");
        q.max_results = 5;
        let mut seen = Vec::new();
        loop {
            let page = f.index.lookup(&q).unwrap();
            seen.extend(ids(&page));
            match page.next {
                Some(token) => q.after = Some(token),
                None => break,
            }
        }
        let expected: Vec<String> = (0..23).rev().map(|i| format!("id-{i}")).collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn attributes_filter_and_combine() {
        let records = vec![
            record("111111111111", 0, "GetTrail", 0),
            record("111111111111", 1, "CreateTrail", 1),
            record("111111111111", 2, "GetTrail", 2),
        ];
        let f = fixture(records).await;
        let mut q = query("111111111111");
        q.attributes = vec![(LookupAttribute::EventName, "GetTrail".into())];
        assert_eq!(ids(&f.index.lookup(&q).unwrap()), vec!["id-2", "id-0"]);
        q.attributes.push((LookupAttribute::EventId, "id-0".into()));
        assert_eq!(ids(&f.index.lookup(&q).unwrap()), vec!["id-0"]);
        q.attributes = vec![(LookupAttribute::ReadOnly, "false".into())];
        assert_eq!(ids(&f.index.lookup(&q).unwrap()), vec!["id-1"]);
        q.attributes =
            vec![(LookupAttribute::Username, "alice".into()), (LookupAttribute::AccessKeyId, "AKIA1".into())];
        assert_eq!(f.index.lookup(&q).unwrap().events.len(), 3);
    }

    #[tokio::test]
    async fn insights_events_only_come_back_when_asked_for() {
        let mut insight: serde_json::Value = serde_json::from_slice(
            opentrail_model::record::split_envelope(&record("111111111111", 9, "CreateTrail", 5)).unwrap().2,
        )
        .unwrap();
        insight["eventType"] = json!("AwsCloudTrailInsight");
        insight["eventCategory"] = json!("Insight");
        // An Insights record names the API it is about in insightDetails, not at the top level.
        let insight_object = insight.as_object_mut().unwrap();
        insight_object.remove("eventName");
        insight_object.remove("eventSource");
        insight["insightDetails"] = json!({"state": "Start", "eventSource": "cloudtrail.amazonaws.com",
                                           "eventName": "CreateTrail", "insightType": "ApiCallRateInsight"});
        let insight = EventRecord::new(account("111111111111"), region(), insight).unwrap().encode();
        let f = fixture(vec![record("111111111111", 0, "GetTrail", 0), insight]).await;
        assert_eq!(ids(&f.index.lookup(&query("111111111111")).unwrap()), vec!["id-0"]);
        let mut q = query("111111111111");
        q.insights = true;
        assert_eq!(ids(&f.index.lookup(&q).unwrap()), vec!["id-9"]);
        q.attributes = vec![(LookupAttribute::EventName, "CreateTrail".into())];
        assert_eq!(ids(&f.index.lookup(&q).unwrap()), vec!["id-9"]);
    }

    #[tokio::test]
    async fn time_range_is_inclusive() {
        let records = (0..5).map(|i| record("111111111111", i, "GetTrail", i as i64 * 10)).collect();
        let f = fixture(records).await;
        let mut q = query("111111111111");
        q.start = DateTime::from_timestamp(1_700_000_010, 0).unwrap();
        q.end = DateTime::from_timestamp(1_700_000_030, 0).unwrap();
        assert_eq!(ids(&f.index.lookup(&q).unwrap()), vec!["id-3", "id-2", "id-1"]);
    }

    #[tokio::test]
    async fn accounts_do_not_see_each_other() {
        let records = vec![record("111111111111", 0, "GetTrail", 0), record("222222222222", 1, "GetTrail", 0)];
        let f = fixture(records).await;
        assert_eq!(ids(&f.index.lookup(&query("111111111111")).unwrap()), vec!["id-0"]);
        assert_eq!(ids(&f.index.lookup(&query("222222222222")).unwrap()), vec!["id-1"]);
    }

    #[tokio::test]
    async fn a_token_from_another_query_is_refused() {
        let f = fixture((0..3).map(|i| record("111111111111", i, "GetTrail", 0)).collect()).await;
        let mut q = query("111111111111");
        q.max_results = 1;
        let token = f.index.lookup(&q).unwrap().next.unwrap();
        q.after = Some(PageToken { query_fingerprint: 8, ..token });
        assert!(matches!(f.index.lookup(&q), Err(HistoryError::InvalidToken)));
    }

    #[tokio::test]
    async fn reopening_resumes_from_the_cursor_and_does_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let journal: Arc<LocalJournal> =
            Arc::new(LocalJournal::open(dir.path().join("journal"), LocalJournalOptions::default()).unwrap());
        journal.append((0..3).map(|i| record("111111111111", i, "GetTrail", 0)).collect()).await.unwrap();
        {
            let index = HistoryIndex::open(&dir.path().join("h.redb"), journal.clone()).unwrap();
            index.catch_up_once(1 << 20).unwrap();
        }
        journal.append(vec![record("111111111111", 3, "GetTrail", 0)]).await.unwrap();
        let index = HistoryIndex::open(&dir.path().join("h.redb"), journal.clone()).unwrap();
        assert_eq!(index.catch_up_once(1 << 20).unwrap(), 1);
        assert_eq!(index.lookup(&query("111111111111")).unwrap().events.len(), 4);
    }

    #[tokio::test]
    async fn a_damaged_index_is_rebuilt_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let journal: Arc<LocalJournal> =
            Arc::new(LocalJournal::open(dir.path().join("journal"), LocalJournalOptions::default()).unwrap());
        journal.append((0..5).map(|i| record("111111111111", i, "GetTrail", 0)).collect()).await.unwrap();
        let path = dir.path().join("h.redb");
        std::fs::write(&path, b"this is not a redb file, it is garbage left by a bad disk").unwrap();
        let index = HistoryIndex::open(&path, journal.clone()).unwrap();
        assert_eq!(index.cursor(), 0);
        while index.catch_up_once(1 << 20).unwrap() > 0 {}
        assert_eq!(index.lookup(&query("111111111111")).unwrap().events.len(), 5);
        assert!(dir.path().join("h.redb.damaged").exists(), "the damaged file is kept for inspection");
    }

    #[tokio::test]
    async fn expiry_removes_old_entries_and_moves_the_retention_boundary() {
        let f = fixture((0..4).map(|i| record("111111111111", i, "GetTrail", 0)).collect()).await;
        assert_eq!(f.index.oldest_needed_position().unwrap(), 0);
        assert_eq!(f.index.expire(Utc::now() - chrono::Duration::days(1)).unwrap(), 0);
        assert_eq!(f.index.expire(Utc::now() + chrono::Duration::seconds(1)).unwrap(), 4);
        assert!(f.index.lookup(&query("111111111111")).unwrap().events.is_empty());
        let mut q = query("111111111111");
        q.attributes = vec![(LookupAttribute::EventName, "GetTrail".into())];
        assert!(f.index.lookup(&q).unwrap().events.is_empty());
        assert_eq!(f.index.oldest_needed_position().unwrap(), f.journal.committed_end());
    }

    #[tokio::test]
    async fn a_damaged_record_is_skipped_and_counted_not_the_lookup_failed() {
        let dir = tempfile::tempdir().unwrap();
        let positions = {
            let journal =
                Arc::new(LocalJournal::open(dir.path().join("journal"), LocalJournalOptions::default()).unwrap());
            let positions = journal
                .append((0..5).map(|i| record("111111111111", i, "GetTrail", i as i64)).collect())
                .await
                .unwrap();
            let index = HistoryIndex::open(&dir.path().join("history.redb"), journal.clone()).unwrap();
            while index.catch_up_once(1 << 20).unwrap() > 0 {}
            assert_eq!(index.lookup(&query("111111111111")).unwrap().events.len(), 5);
            positions
        };
        // One byte of record 2's payload flips on disk (past the 8-byte segment and frame headers).
        let segment = dir.path().join("journal").join(format!("{:020}.seg", 0));
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[(8 + positions[2] + 8 + 5) as usize] ^= 0x20;
        std::fs::write(&segment, bytes).unwrap();

        let journal = Arc::new(LocalJournal::open(dir.path().join("journal"), LocalJournalOptions::default()).unwrap());
        assert_eq!(journal.damage().len(), 1);
        let index = HistoryIndex::open(&dir.path().join("history.redb"), journal.clone()).unwrap();
        let page = index.lookup(&query("111111111111")).unwrap();
        assert_eq!(ids(&page), vec!["id-4", "id-3", "id-1", "id-0"]);
        assert_eq!(page.damaged, 1);
    }
}
