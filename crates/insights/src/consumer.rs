//! The Insights detector as a journal consumer.
//!
//! A round reads the journal from the in-memory cursor, feeds every management call to the
//! detector and, every second or when the detector raised something, commits cursor, snapshot,
//! closed minutes and new Starts/Ends in one SQLite transaction ([`InsightStore::commit`]).
//! Then the new records are appended to the journal, and once durable there they leave the
//! outbox. A crash before the commit repeats the rounds from the last snapshot (the same
//! records raise the same insights with the same IDs); a crash after it finds the outbox at
//! start and, before appending an entry, searches the journal from the position it was
//! committed at for its `eventID`, so a record appended just before the crash is not appended
//! again. Insights records are never counted (the detector skips its own output).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentrail_consumer::{Consumer, ConsumerError, Cursor, Idle, Progress, RoundFuture, blocking};
use opentrail_journal::{Journal, Position};
use opentrail_model::record::{RecordView, split_envelope};
use opentrail_model::{AccountId, EventRecord, Region};

use crate::InsightsError;
use crate::detector::{Call, Detector, Gate, InsightType, Point};
use crate::params::InsightParams;
use crate::store::{InsightStore, Pending};

/// The Insights consumer's name among the journal consumers.
pub const CONSUMER_NAME: &str = "insights";
/// How much journal one round reads at most.
const ROUND_BYTES: usize = 8 * 1024 * 1024;
/// How often the detector's state is committed while records keep coming (catching up): the
/// snapshot is the whole detector, so committing it costs about as much as a second of counting;
/// a crash repeats at most this much work. A caught-up round, or one that raised an insight,
/// commits at once.
const COMMIT_EVERY: Duration = Duration::from_secs(10);
/// A Region whose latest call is this recent (minutes) follows the wall clock when idle.
const LIVE_WITHIN_MINUTES: i64 = 60;
/// How long a loaded set of selections is trusted.
const SELECTIONS_FOR: Duration = Duration::from_secs(2);

/// Which (account, Region, type) want insights: the trails and event data stores with insight
/// selectors. `None` as Region means every Region (a multi-Region trail, an event data store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selections {
    wanted: HashSet<(String, Option<String>, InsightType)>,
}

impl Selections {
    pub fn allow(&mut self, account: &str, region: Option<&str>, insight_type: InsightType) {
        self.wanted.insert((account.to_owned(), region.map(str::to_owned), insight_type));
    }

    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }
}

impl Gate for Selections {
    fn enabled(&self, account: &str, region: &str, insight_type: InsightType) -> bool {
        // Allocation only on the rare path: a candidate insight.
        self.wanted.contains(&(account.to_owned(), None, insight_type))
            || self.wanted.contains(&(account.to_owned(), Some(region.to_owned()), insight_type))
    }
}

/// Where the consumer learns the current selections (the control store, in the service).
pub trait SelectionSource: Send + Sync + 'static {
    /// Blocking.
    fn selections(&self) -> Result<Selections, Box<dyn std::error::Error + Send + Sync>>;
}

/// The wall clock, in seconds since the epoch; tests pass their own.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp())
}

struct Working {
    detector: Detector,
    /// Where the next read starts; at or past `durable`.
    cursor: Position,
    durable: Position,
    points: Vec<Point>,
    outbox: Vec<Pending>,
    last_commit: Instant,
    selections: Option<(Instant, Selections)>,
}

pub struct InsightsConsumer {
    journal: Arc<dyn Journal>,
    store: Arc<InsightStore>,
    source: Arc<dyn SelectionSource>,
    params: InsightParams,
    clock: Clock,
    working: Mutex<Option<Working>>,
}

/// What one blocking step found.
struct Step {
    /// Committed records to append, when the step committed.
    to_append: Vec<Pending>,
    more: bool,
}

impl InsightsConsumer {
    pub fn new(
        journal: Arc<dyn Journal>,
        store: Arc<InsightStore>,
        source: Arc<dyn SelectionSource>,
        params: InsightParams,
        clock: Clock,
    ) -> Self {
        Self { journal, store, source, params, clock, working: Mutex::new(None) }
    }

    pub fn store(&self) -> &Arc<InsightStore> {
        &self.store
    }

    /// Loads the snapshot (first round after a start) and appends what a crash left in the
    /// outbox. Blocking.
    fn start(&self) -> Result<Working, InsightsError> {
        let (cursor, detector) = match self.store.load()? {
            Some((cursor, snapshot)) => (cursor, Detector::restore(&snapshot, self.params.clone())?),
            None => (self.journal.start(), Detector::new(self.params.clone())),
        };
        let cursor = if cursor < self.journal.start() {
            tracing::warn!(cursor, start = self.journal.start(), "insights cursor was behind journal retention");
            self.journal.start()
        } else {
            cursor
        };
        Ok(Working {
            detector,
            cursor,
            durable: cursor,
            points: Vec::new(),
            outbox: Vec::new(),
            last_commit: Instant::now(),
            selections: None,
        })
    }

    /// Outbox entries from before a crash that the journal does not hold yet. Blocking.
    fn unappended_leftovers(&self) -> Result<Vec<Pending>, InsightsError> {
        let pending = self.store.pending()?;
        let Some(from) = pending.iter().map(|entry| entry.search_from).min() else { return Ok(pending) };
        let mut wanted: HashSet<&str> = pending.iter().map(|entry| entry.event_id.as_str()).collect();
        let mut found = Vec::new();
        let mut position = from.max(self.journal.start());
        let end = self.journal.committed_end();
        while position < end && !wanted.is_empty() {
            let batch = self.journal.read_from(position, ROUND_BYTES)?;
            if batch.entries.is_empty() {
                break;
            }
            for entry in &batch.entries {
                let Ok((_, _, json)) = split_envelope(&entry.payload) else { continue };
                let Ok(view) = RecordView::from_json(json) else { continue };
                if view.is_insight()
                    && let Some(id) = view.event_id()
                    && wanted.remove(id)
                {
                    found.push(id.to_owned());
                }
            }
            position = batch.next;
        }
        if !found.is_empty() {
            tracing::info!(records = found.len(), "insights records a crash left in the outbox were already journaled");
            self.store.delivered(&found)?;
        }
        Ok(pending.into_iter().filter(|entry| !found.contains(&entry.event_id)).collect())
    }

    /// Reads and counts one batch, committing when due. Blocking.
    fn step(&self) -> Result<Step, InsightsError> {
        let mut guard = self.working.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut leftovers = Vec::new();
        if guard.is_none() {
            let working = self.start()?;
            leftovers = self.unappended_leftovers()?;
            *guard = Some(working);
        }
        let working = guard.as_mut().expect("started above");
        if working.selections.as_ref().is_none_or(|(at, _)| at.elapsed() > SELECTIONS_FOR) {
            let selections = self.source.selections().map_err(InsightsError::Selections)?;
            working.selections = Some((Instant::now(), selections));
        }
        let selections = &working.selections.as_ref().expect("loaded above").1;

        let end = self.journal.committed_end();
        let mut more = false;
        if working.cursor < end {
            let batch = self.journal.read_from(working.cursor, ROUND_BYTES)?;
            for entry in &batch.entries {
                if entry.position >= end {
                    break;
                }
                observe(&mut working.detector, &entry.payload, selections);
            }
            // Past a damaged range or a cut tail the batch may be empty but still move on.
            assert!(batch.next >= working.cursor, "the journal never reads backwards");
            working.cursor = batch.next.min(end).max(working.cursor);
            more = working.cursor < self.journal.committed_end();
        }
        if !more {
            let now_minute = (self.clock)().div_euclid(60);
            working.detector.advance_live(now_minute, LIVE_WITHIN_MINUTES, selections);
        }
        let (events, points) = working.detector.take_output();
        working.points.extend(points);
        let search_from = self.journal.committed_end();
        for event in events {
            tracing::info!(
                account = event.account,
                region = event.region,
                state = event.state.name(),
                insight_type = event.key.insight_type.name(),
                event_source = event.key.event_source,
                event_name = event.key.event_name,
                "insight"
            );
            working.outbox.push(Pending {
                event_id: event.event_id.clone(),
                account: event.account.clone(),
                region: event.region.clone(),
                record: event.to_record().to_string(),
                search_from,
            });
        }
        let dirty = working.cursor != working.durable || !working.points.is_empty();
        let due = !working.outbox.is_empty() || (dirty && (!more || working.last_commit.elapsed() >= COMMIT_EVERY));
        let mut to_append = leftovers;
        if due {
            self.store.commit(working.cursor, &working.detector.snapshot(), &working.points, &working.outbox)?;
            working.durable = working.cursor;
            working.points.clear();
            working.last_commit = Instant::now();
            to_append.append(&mut working.outbox);
        }
        Ok(Step { to_append, more })
    }

    /// One round: a step, then the journal appends of what it committed.
    pub async fn round(self: &Arc<Self>) -> Result<Progress, InsightsError> {
        let this = self.clone();
        let step = blocking(move || this.step()).await.map_err(InsightsError::Task)??;
        if !step.to_append.is_empty() {
            let mut records = Vec::with_capacity(step.to_append.len());
            for pending in &step.to_append {
                records.push(encode(pending)?);
            }
            if let Err(error) = self.journal.append(records).await {
                // The records wait in the outbox: the next round starts afresh from the store
                // (its snapshot is this state) and appends what the journal does not hold.
                *self.working.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                return Err(error.into());
            }
            let ids: Vec<String> = step.to_append.into_iter().map(|pending| pending.event_id).collect();
            let store = self.store.clone();
            blocking(move || store.delivered(&ids)).await.map_err(InsightsError::Task)??;
            return Ok(Progress::More);
        }
        Ok(if step.more { Progress::More } else { Progress::Idle })
    }
}

fn encode(pending: &Pending) -> Result<Vec<u8>, InsightsError> {
    let account = AccountId::parse(&pending.account).map_err(|_| InsightsError::Outbox("account"))?;
    let region = Region::parse(&pending.region).ok_or(InsightsError::Outbox("region"))?;
    let record: serde_json::Value = serde_json::from_str(&pending.record)?;
    Ok(EventRecord::new(account, region, record)?.encode())
}

/// Feeds one journal entry to the detector if it is a management call.
pub fn observe(detector: &mut Detector, payload: &[u8], gate: &dyn Gate) {
    let Ok((account, region, json)) = split_envelope(payload) else { return };
    let Ok(view) = RecordView::from_json(json) else { return };
    if view.is_insight() || !view.is_management_event() {
        return;
    }
    let (Some(time), Some(event_source), Some(event_name)) =
        (view.event_time(), view.event_source(), view.event_name())
    else {
        return;
    };
    let call = Call {
        minute: time.timestamp().div_euclid(60),
        event_source,
        event_name,
        write: view.read_only() == Some("false"),
        error_code: view.error_code(),
        user_arn: view.user_arn(),
        user_agent: view.user_agent(),
    };
    detector.observe(account.as_str(), region.as_str(), &call, gate);
}

impl Consumer for InsightsConsumer {
    fn name(&self) -> &str {
        CONSUMER_NAME
    }

    fn round(self: Arc<Self>) -> RoundFuture {
        Box::pin(async move { InsightsConsumer::round(&self).await.map_err(ConsumerError::new) })
    }

    fn cursors(&self) -> Result<Vec<Cursor>, ConsumerError> {
        let cursor = self.store.cursor().map_err(ConsumerError::new)?;
        Ok(vec![Cursor::at(cursor.unwrap_or_else(|| self.journal.start()))])
    }

    fn idle(&self) -> Idle {
        // Idle rounds also move live Regions' clocks, so they run at least every few seconds.
        Idle { wake_on_append: true, at_most: Duration::from_secs(5) }
    }

    fn expire(&self, _older_than: std::time::SystemTime) -> Result<usize, ConsumerError> {
        self.store.expire((self.clock)()).map_err(ConsumerError::new)
    }
}
