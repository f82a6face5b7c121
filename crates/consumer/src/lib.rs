//! Journal consumers as one abstraction.
//!
//! Everything but the producers is a consumer of the journal that keeps its own durable cursor:
//! Event History, trail delivery, the Lake writer, and whatever comes next (Insights, alarms).
//! [`Consumer`] is that idea as a type; [`Consumers`] is the one place they are registered, and
//! from that registration every consumer gets, without naming it anywhere else:
//!
//! - supervision: its rounds run in a task whose handle is kept; a round that fails (an error or
//!   a panic) is retried from the durable cursor after one backoff policy ([`Backoff`]), and the
//!   failure is counted in its status;
//! - retention: the journal is truncated only below the lowest position any registered consumer
//!   still needs, and not at all while a consumer cannot say what it needs;
//! - status: state, restarts, last error, and lag (records and bytes behind the committed end,
//!   the age of the oldest record not yet consumed) for every cursor it reports.
//!
//! Invariants:
//! - A consumer's cursor is durable before it is reported: retention trusts what `cursors`
//!   says, so a consumer must never report a position past work it has not committed.
//! - Retention keeps the journal whenever any registered consumer's cursors cannot be read.

mod backoff;
mod registry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use backoff::Backoff;
use opentrail_journal::{JournalError, Position};
pub use registry::{
    ConsumerStatus, Consumers, CursorLag, Health, JournalStatus, RecordTime, RetentionError, RetentionReport, State,
    Status,
};

/// What one round of a consumer returns. It owns what it uses (the round gets an `Arc` of its
/// consumer), so the supervisor can run it in a task of its own.
pub type RoundFuture = Pin<Box<dyn Future<Output = Result<Progress, ConsumerError>> + Send>>;

/// What a successful round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// It did work and there may be more: the next round starts at once.
    More,
    /// Nothing more is due now: the next round waits (see [`Consumer::idle`]).
    Idle,
}

/// How an idle consumer waits for its next round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idle {
    /// Whether new durable records wake it before `at_most` passes. Consumers that work on a
    /// clock (delivery batches by interval) say no, so every append does not wake them.
    pub wake_on_append: bool,
    pub at_most: Duration,
}

/// One durable cursor a consumer reports. Most consumers have one; trail delivery has one per
/// logging trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Which part of the consumer this is (a trail's ARN); `None` for a consumer's only cursor.
    pub part: Option<String>,
    /// The account the part belongs to, so status shows it to that account only; `None` for a
    /// part shared by every account.
    pub account: Option<String>,
    /// The next position to consume: everything below it is done, durably.
    pub next: Position,
    /// The oldest position still needed, at most `next` (Event History reads the records it
    /// indexed back from the journal); retention keeps the journal from here.
    pub keep_from: Position,
    /// The part's own latest error, when the consumer keeps one per part (a trail's delivery
    /// error), shown to the part's account.
    pub error: Option<String>,
}

impl Cursor {
    /// A consumer's only cursor, needing nothing below `next`.
    pub fn at(next: Position) -> Self {
        Self { part: None, account: None, next, keep_from: next, error: None }
    }
}

/// A journal consumer. Implement it, register it in the composition root's `Consumers`, and
/// supervision, retention and status come with the registration.
pub trait Consumer: Send + Sync + 'static {
    /// A stable name, unique among the registered consumers (status and logs show it).
    fn name(&self) -> &str;

    /// One round: read from the cursor, do the work, advance the cursor durably. A round that
    /// fails is run again from the durable cursor, so it must be safe to repeat.
    fn round(self: Arc<Self>) -> RoundFuture;

    /// Every durable cursor the consumer has now. Blocking (reads its store). An error keeps
    /// the whole journal, since nobody then knows what this consumer still needs.
    fn cursors(&self) -> Result<Vec<Cursor>, ConsumerError>;

    /// How to wait after an idle round.
    fn idle(&self) -> Idle {
        Idle { wake_on_append: true, at_most: Duration::from_secs(1) }
    }

    /// Forgets what the consumer keeps past its retention (records older than `older_than`), so
    /// its cursors then ask for less of the journal. Runs just before retention reads the
    /// cursors. Blocking. Returns how many items were forgotten.
    fn expire(&self, older_than: SystemTime) -> Result<usize, ConsumerError> {
        let _ = older_than;
        Ok(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The consumer's own error.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A round (or blocking work inside it) panicked.
    #[error("panicked: {0}")]
    Panicked(String),
    /// A round's task was cancelled (the runtime is shutting down).
    #[error("the task was cancelled")]
    Cancelled,
}

impl ConsumerError {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Failed(Box::new(error))
    }

    fn from_join(error: tokio::task::JoinError) -> Self {
        match error.try_into_panic() {
            Ok(payload) => Self::Panicked(panic_text(payload.as_ref())),
            Err(_) => Self::Cancelled,
        }
    }
}

/// The message a panic carried (`panic!("...")` gives a `&str` or a `String`).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs blocking work (file or store I/O) off the async threads; a panic there becomes
/// [`ConsumerError::Panicked`], so the supervisor counts it like any failed round.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ConsumerError> {
    tokio::task::spawn_blocking(work).await.map_err(ConsumerError::from_join)
}
