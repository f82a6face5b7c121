//! CloudTrail Insights: unusual rates of write calls and of errors, found by a journal
//! consumer and written back to the journal as AWS-shaped Insights records.
//!
//! # What is counted
//!
//! Every management call in the journal, for every account and Region, whether or not anyone
//! selects Insights there: `ApiCallRateInsight` counts write calls (`readOnly` false) per
//! `eventSource`/`eventName`, `ApiErrorRateInsight` counts calls that carry an `errorCode` per
//! `eventSource`/`eventName`/`errorCode`. Counting everything is what makes the baseline a
//! backfill: the consumer reads the journal from its start (90 days are kept), so a trail that
//! adds an insight selector has a baseline at once and can raise insights within minutes, not
//! after AWS's 36 hours. Only raising an insight asks whether a trail or event data store of the
//! account selects that type in that Region ([`Gate`]).
//!
//! # Time
//!
//! The detector's clock is the records' `eventTime`, per Region: minute `m` closes when a counted
//! call (a write or an error) of minute `m + 1 + lateness_minutes` arrives. A replay or an import of old records is then the
//! same computation as live traffic (the tests run weeks of traffic in seconds), and a late
//! record only reaches the metric series. When a Region falls quiet while its latest call is
//! recent, idle rounds close its minutes by the wall clock, so a burst that simply stops still
//! ends, and a silence still reads as a drop.
//!
//! # The baseline
//!
//! Each series keeps its last few closed minutes one by one, the hour in progress as a sum, and
//! the completed hours of the last `baseline_minutes` (7 days) as (count, sum of squared
//! per-minute counts). Rolling an hour adds it and subtracts the hour that left the window, so
//! the baseline's mean and variance per minute cost O(1) per minute. At each hour the series also
//! computes its *seasonal* rate: the mean per minute of the same hour of day over the baseline's
//! days, which carries daily rhythm (busy mornings, quiet nights). The expected rate is the larger
//! of the two. Memory per series: the recent minutes, at most 168 hours, bounded attribution
//! tallies. A series with nothing in its baseline, its recent minutes or an open insight is
//! forgotten.
//!
//! # Starting and ending
//!
//! No insight before a Region has been observed for `baseline_minutes`.
//! - A **burst** starts when the mean of the last `window_minutes` is at least the largest of
//!   `min_rate`, `spike_factor` x expected, and expected + `spike_sigmas` x (the baseline's
//!   per-minute standard deviation / sqrt(window)). The variance term keeps naturally spiky APIs
//!   (a nightly batch) quiet; the factor keeps smooth ones from alarming on small swings; the
//!   minimum keeps rare APIs (baseline near zero) from alarming on a handful of calls.
//! - A **drop** (call rate only; fewer errors is good news) starts when the mean of the last
//!   `drop_window_minutes` is at most `drop_fraction` x expected, where expected is at least
//!   `drop_min_rate`: quiet hours and sparse APIs cannot drop.
//! - An insight ends when the mean of the last `cooldown_minutes` is back on the usual side of
//!   its end level (a burst: `end_level` of the way from expected to the start threshold; a
//!   drop: `end_level` x expected). The End's time is the first of those calm minutes; the
//!   series then raises nothing for another `cooldown_minutes`.
//!
//! The Start's `insight.average` is the window's rate at onset and its `insightDuration` the
//! window; the End's are the episode's average and length. `baseline.average` is the 7-day
//! mean per minute (AWS's definition) taken at the Start. Attributions: the top five values of
//! `userIdentityArn`, `userAgent` and `errorCode` (`"null"` for none) in the insight's minutes,
//! and over the baseline from counts decayed with the baseline's length as time constant.
//!
//! # Durability
//!
//! See [`consumer`]: a Start or an End is committed with the cursor and snapshot that raised it,
//! then appended; IDs are derived from the insight's identity, and an outbox left by a crash is
//! checked against the journal before appending. An insight is never lost nor raised twice, and
//! a restart in the middle of one still ends it.

pub mod consumer;
pub mod detector;
pub mod params;
pub mod record;
pub mod replay;
pub mod store;

pub use consumer::{CONSUMER_NAME, Clock, InsightsConsumer, SelectionSource, Selections, system_clock};
pub use detector::{Detector, Gate, InsightEvent, InsightState, InsightType, Minute, Point, SeriesKey};
pub use params::{InsightParams, ParamError};
pub use store::{InsightStore, PERIODS, SeriesQuery, retention_seconds};

#[derive(Debug, thiserror::Error)]
pub enum InsightsError {
    #[error("insights store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("insights snapshot or record: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Journal(#[from] opentrail_journal::JournalError),
    #[error("insights record: {0}")]
    Record(#[from] opentrail_model::record::RecordError),
    #[error("an outbox entry has a bad {0}")]
    Outbox(&'static str),
    #[error("reading the insight selectors: {0}")]
    Selections(Box<dyn std::error::Error + Send + Sync>),
    #[error("insights task: {0}")]
    Task(opentrail_consumer::ConsumerError),
}
