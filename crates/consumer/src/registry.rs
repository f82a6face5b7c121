//! The registry of journal consumers: supervision, retention and status for all of them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentrail_journal::{DamageSummary, Journal, JournalError, Position};
use tokio::task::JoinHandle;

use crate::{Backoff, Consumer, ConsumerError, Cursor, Progress};

/// When a journal payload's record happened, for the age of the oldest unconsumed record. The
/// journal stores opaque bytes, so the composition root (which knows the record format) says.
pub type RecordTime = Arc<dyn Fn(&[u8]) -> Option<SystemTime> + Send + Sync>;

/// Records behind a position, whether that count is exact, and the age of the record there.
type Behind = (u64, bool, Option<Duration>);

/// How much journal one status request reads to count records behind cursors, for all of them
/// together. Beyond it the counts are lower bounds: a status request must stay cheap however
/// far behind consumers are and however many trails there are (bytes are always exact).
const LAG_SCAN_BYTES: usize = 16 * 1024 * 1024;

/// What a consumer's supervisor is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Registered, not yet started.
    Starting,
    /// A round is running.
    Working,
    /// The last round succeeded and found nothing more to do now.
    Idle,
    /// The last round failed; the next one waits out the backoff.
    Retrying,
    /// The supervisor task ended (the registry was stopped).
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Working => "working",
            Self::Idle => "idle",
            Self::Retrying => "retrying",
            Self::Stopped => "stopped",
        }
    }
}

/// A consumer's supervision record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    /// Failed rounds (errors and panics) that were restarted, since the process started.
    pub restarts: u64,
    /// Failed rounds since the last successful one.
    pub failures_in_a_row: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub last_success_at: Option<SystemTime>,
}

impl Health {
    fn new() -> Self {
        Self {
            state: State::Starting,
            restarts: 0,
            failures_in_a_row: 0,
            last_error: None,
            last_error_at: None,
            last_success_at: None,
        }
    }
}

/// One cursor and how far behind the journal's committed end it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorLag {
    pub cursor: Cursor,
    pub bytes_behind: u64,
    /// Records at or after the cursor and below the committed end (a lower bound unless
    /// `records_exact`: counting reads at most a bounded stretch of the journal).
    pub records_behind: u64,
    pub records_exact: bool,
    /// How old the oldest record not yet consumed is; `None` when caught up or unknown.
    pub oldest_unconsumed_age: Option<Duration>,
    pub caught_up: bool,
}

/// A consumer's status: supervision and, per cursor, lag.
#[derive(Debug, Clone)]
pub struct ConsumerStatus {
    pub name: String,
    pub health: Health,
    /// The cursors with their lag, or why they cannot be read (which also holds retention).
    pub cursors: Result<Vec<CursorLag>, String>,
}

impl ConsumerStatus {
    /// Caught up: every cursor is at the committed end and the last round did not fail.
    pub fn caught_up(&self) -> bool {
        self.health.failures_in_a_row == 0
            && self.cursors.as_ref().is_ok_and(|cursors| cursors.iter().all(|lag| lag.caught_up))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStatus {
    pub start: Position,
    pub committed_end: Position,
    /// Bytes readers step over because no intact frame is there (consumers see past them).
    pub damage: DamageSummary,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub journal: JournalStatus,
    pub consumers: Vec<ConsumerStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// A consumer could not say what it needs, so nothing was dropped.
    #[error("the journal is kept whole: consumer {consumer} cannot report its cursors: {source}")]
    Blocked { consumer: String, source: ConsumerError },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    /// Items the consumers forgot past their own retention.
    pub expired: usize,
    /// The lowest position any consumer still needs; the journal is kept from there.
    pub keep_from: Position,
    pub dropped_segments: usize,
}

struct Registered {
    consumer: Arc<dyn Consumer>,
    health: Arc<Mutex<Health>>,
}

/// Every journal consumer, registered in one place (the composition root). Build it with
/// [`Consumers::register`], then [`Consumers::spawn`] starts one supervised task per consumer.
pub struct Consumers {
    journal: Arc<dyn Journal>,
    registered: Vec<Registered>,
    record_time: Option<RecordTime>,
    /// Every task started for the consumers (supervisors and housekeeping), by name: kept so
    /// that a task that ended shows in the status and `stop` can end them all.
    tasks: Mutex<Vec<(String, JoinHandle<()>)>>,
}

impl Consumers {
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        Self { journal, registered: Vec::new(), record_time: None, tasks: Mutex::new(Vec::new()) }
    }

    /// How to read a record's time, for the age of the oldest unconsumed record.
    pub fn with_record_time(mut self, record_time: RecordTime) -> Self {
        self.record_time = Some(record_time);
        self
    }

    /// Registers a consumer. Names are unique: two consumers under one name would share a
    /// status line and hide each other's failures.
    pub fn register(mut self, consumer: Arc<dyn Consumer>) -> Self {
        assert!(
            self.registered.iter().all(|r| r.consumer.name() != consumer.name()),
            "two journal consumers are named {}",
            consumer.name()
        );
        self.registered.push(Registered { consumer, health: Arc::new(Mutex::new(Health::new())) });
        self
    }

    /// Starts one supervisor per consumer. Needs a Tokio runtime; a second call does nothing.
    pub fn spawn(&self) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        if tasks.iter().any(|(name, _)| self.registered.iter().any(|r| r.consumer.name() == name)) {
            tracing::warn!("journal consumers are already running");
            return;
        }
        for registered in &self.registered {
            let task = supervise(self.journal.clone(), registered.consumer.clone(), registered.health.clone());
            tasks.push((registered.consumer.name().to_owned(), tokio::spawn(task)));
        }
    }

    /// Keeps a housekeeping task's handle with the consumers' (retention, for one), so `stop`
    /// ends it too.
    pub fn keep_task(&self, name: &str, handle: JoinHandle<()>) {
        self.tasks.lock().expect("tasks lock").push((name.to_owned(), handle));
    }

    /// Ends every task started here (their handles stay, so status shows them stopped).
    /// Durable cursors make this safe at any point.
    pub fn stop(&self) {
        for (_, handle) in self.tasks.lock().expect("tasks lock").iter() {
            handle.abort();
        }
    }

    /// A consumer's supervision record.
    pub fn health(&self, name: &str) -> Option<Health> {
        let registered = self.registered.iter().find(|r| r.consumer.name() == name)?;
        let mut health = registered.health.lock().expect("health lock").clone();
        let tasks = self.tasks.lock().expect("tasks lock");
        let task = tasks.iter().find(|(task, _)| task == name);
        if task.is_some_and(|(_, handle)| handle.is_finished()) {
            health.state = State::Stopped;
        }
        Some(health)
    }

    /// The lowest position any registered consumer still needs (the committed end if none
    /// needs anything). Blocking.
    pub fn keep_from(&self) -> Result<Position, RetentionError> {
        let mut keep_from = self.journal.committed_end();
        for registered in &self.registered {
            let consumer = registered.consumer.name().to_owned();
            let cursors =
                registered.consumer.cursors().map_err(|source| RetentionError::Blocked { consumer, source })?;
            keep_from = cursors.iter().map(|cursor| cursor.keep_from.min(cursor.next)).fold(keep_from, Position::min);
        }
        Ok(keep_from)
    }

    /// Journal retention: each consumer forgets what is past its own retention, then whole
    /// segments older than `older_than` that end at or before every consumer's cursors are
    /// dropped. Blocking.
    pub fn apply_retention(&self, older_than: SystemTime) -> Result<RetentionReport, RetentionError> {
        let mut expired = 0;
        for registered in &self.registered {
            match registered.consumer.expire(older_than) {
                Ok(count) => expired += count,
                // Safe to go on: a consumer that forgot nothing still needs what it reports.
                Err(error) => tracing::error!(consumer = registered.consumer.name(), %error, "expiry failed"),
            }
        }
        let keep_from = self.keep_from()?;
        let dropped_segments = self.journal.drop_segments_before(keep_from, older_than)?;
        Ok(RetentionReport { expired, keep_from, dropped_segments })
    }

    /// Every consumer's supervision record and lag. Blocking (reads the consumers' cursors and
    /// a bounded stretch of the journal after each).
    pub fn status(&self) -> Status {
        let journal = JournalStatus {
            start: self.journal.start(),
            committed_end: self.journal.committed_end(),
            damage: self.journal.damage_summary(),
        };
        let reported: Vec<(String, Health, Result<Vec<Cursor>, String>)> = self
            .registered
            .iter()
            .map(|registered| {
                let name = registered.consumer.name().to_owned();
                let health = self.health(&name).unwrap_or_else(Health::new);
                (name, health, registered.consumer.cursors().map_err(|error| error.to_string()))
            })
            .collect();
        let positions = reported.iter().filter_map(|(_, _, cursors)| cursors.as_ref().ok()).flatten().map(|c| c.next);
        let counted = self.count_behind(positions.collect(), journal.committed_end);
        let consumers = reported
            .into_iter()
            .map(|(name, health, cursors)| {
                let cursors = cursors.map(|cursors| {
                    cursors
                        .into_iter()
                        .map(|cursor| {
                            let (records_behind, records_exact, oldest_unconsumed_age) =
                                counted.get(&cursor.next).copied().unwrap_or((0, false, None));
                            CursorLag {
                                bytes_behind: journal.committed_end.saturating_sub(cursor.next),
                                caught_up: cursor.next >= journal.committed_end,
                                records_behind,
                                records_exact,
                                oldest_unconsumed_age,
                                cursor,
                            }
                        })
                        .collect()
                });
                ConsumerStatus { name, health, cursors }
            })
            .collect();
        Status { journal, consumers }
    }

    /// For each position: the records in `[position, end)` (exact, or a lower bound once the
    /// scan budget is spent) and the age of the record there. One pass over the journal serves
    /// every position: from the one nearest the end down, each counts its stretch up to the
    /// next and adds that one's count.
    fn count_behind(&self, positions: BTreeSet<Position>, end: Position) -> HashMap<Position, Behind> {
        let mut counted = HashMap::new();
        let (mut budget, mut above, mut records, mut exact) = (LAG_SCAN_BYTES, end, 0u64, true);
        for &position in positions.iter().rev() {
            if position >= end {
                counted.insert(position, (0, true, None));
                continue;
            }
            let (stretch, complete) = self.count_records(position, above, &mut budget);
            records += stretch;
            exact &= complete;
            above = position;
            counted.insert(position, (records, exact, self.age_at(position)));
        }
        counted
    }

    /// Records in `[from, to)`, reading at most `budget` bytes (taken from it); whether all
    /// were counted.
    fn count_records(&self, from: Position, to: Position, budget: &mut usize) -> (u64, bool) {
        let (mut position, mut records) = (from, 0u64);
        while position < to {
            if *budget == 0 {
                return (records, false);
            }
            let batch = match self.journal.read_from(position, (*budget).min(1024 * 1024)) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(position, %error, "cannot count a consumer's lag");
                    return (records, false);
                }
            };
            for entry in batch.entries.iter().take_while(|entry| entry.position < to) {
                records += 1;
                *budget = budget.saturating_sub(entry.payload.len());
            }
            if batch.entries.is_empty() || batch.next <= position {
                break;
            }
            position = batch.next;
        }
        (records, true)
    }

    /// How old the first record at or after `position` is, if the record says.
    fn age_at(&self, position: Position) -> Option<Duration> {
        let record_time = self.record_time.as_ref()?;
        let batch = self.journal.read_from(position, 1).ok()?;
        let time = record_time(&batch.entries.first()?.payload)?;
        Some(time.elapsed().unwrap_or_default())
    }
}

/// Runs a consumer's rounds until the registry stops: each round in a task of its own, so a
/// panic ends the round and not the supervisor; a failed round waits out the backoff and runs
/// again from the durable cursor.
async fn supervise(journal: Arc<dyn Journal>, consumer: Arc<dyn Consumer>, health: Arc<Mutex<Health>>) {
    let name = consumer.name().to_owned();
    let mut backoff = Backoff::new(&name);
    let mut appended = journal.subscribe();
    loop {
        // Marks the committed end seen before the round: anything durable after this wakes an
        // idle wait at once, so a record appended during a round is never slept on.
        appended.borrow_and_update();
        health.lock().expect("health lock").state = State::Working;
        let outcome = match tokio::spawn(consumer.clone().round()).await {
            Ok(outcome) => outcome,
            Err(join_error) => Err(ConsumerError::from_join(join_error)),
        };
        match outcome {
            Ok(progress) => {
                backoff.reset();
                {
                    let mut health = health.lock().expect("health lock");
                    health.failures_in_a_row = 0;
                    health.last_success_at = Some(SystemTime::now());
                    health.state = if progress == Progress::Idle { State::Idle } else { State::Working };
                }
                if progress == Progress::Idle {
                    let idle = consumer.idle();
                    if !idle.wake_on_append {
                        tokio::time::sleep(idle.at_most).await;
                    } else if let Ok(Err(_)) = tokio::time::timeout(idle.at_most, appended.changed()).await {
                        // The journal's watch is gone (it is shutting down): poll on the clock.
                        tokio::time::sleep(idle.at_most).await;
                    }
                }
            }
            Err(error) => {
                let delay = backoff.next_delay();
                let restarts = {
                    let mut health = health.lock().expect("health lock");
                    health.state = State::Retrying;
                    health.restarts += 1;
                    health.failures_in_a_row = backoff.failures();
                    health.last_error = Some(error.to_string());
                    health.last_error_at = Some(SystemTime::now());
                    health.restarts
                };
                tracing::error!(consumer = name, %error, restarts, ?delay, "journal consumer failed; restarting it");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
