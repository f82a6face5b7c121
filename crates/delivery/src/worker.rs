//! The delivery worker: one journal consumer per logging trail, writing log files and digests.
//!
//! Exactly-once per trail rests on plan, write, commit:
//! 1. A batch is planned as a journal range `[from, to)` and a delivery time, and the plan is
//!    stored before any file is written.
//! 2. The files are built from that range alone. Names and bytes are functions of the plan (the
//!    "unique" part of a name is derived from the trail and `from`; gzip carries no time), so a
//!    retry after a crash or a failed write produces the same objects, and an object that is
//!    already there is left as it is.
//! 3. The cursor moves to `to` in the same store transaction that clears the plan and adds the
//!    files to the digest chain.
//!
//! Digests follow the same pattern: plan (Region, end time, key fingerprint), write, commit the
//! new chain head. PKCS#1 v1.5 signatures are deterministic, so a retried digest is identical.
//!
//! Misdirection is refused, never absorbed:
//! - Each batch and digest first checks that the trail's bucket is still the bucket the trail
//!   was bound to (owner and creation time): a deleted bucket is `NoSuchBucket`, a bucket of the
//!   same name created again (by anyone) is `AccessDenied`, and nothing is written to it.
//! - `put_new` answers `Ok` for an identical object already there (a retry after a crash), so
//!   `AlreadyExists` means something else holds the key. That is a delivery error in the status,
//!   the object is left as it is, and the plan moves to a key nobody took (a log file gets a new
//!   unique part, a digest ends one second later), so the chain goes on and still lists exactly
//!   what was delivered.
//! - Only Regions CloudTrail has get log files and digest chains.
//!
//! Insights records (which the Insights detector appends to the journal) are delivered by the
//! same batches: a batch writes, per Region, one file of events (`CloudTrail/`) and one of
//! Insights events (`CloudTrail-Insight/`), each only when it has records. Both kinds are
//! listed in the Region's digest, so Insights files are as verifiable as log files.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use opentrail_buckets::BucketError;
use opentrail_consumer::{Backoff, Consumer, ConsumerError, Cursor, Idle, Progress, RoundFuture};
use opentrail_control::ControlStore;
use opentrail_control::TrailBucket;
use opentrail_journal::{Journal, Position};
use opentrail_model::Trail;
use opentrail_model::record::{RecordView, format_event_time, split_envelope};
use opentrail_model::regions::is_cloudtrail_region;
use opentrail_model::trail::Selected;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::{DigestDocument, DigestLogFile, HASH_ALGORITHM, SIGNATURE_ALGORITHM, sign_digest, time_bounds};
use crate::layout::{LogKind, digest_key, log_file_key, unique_suffix};
use crate::logfile::build_log_file;
use crate::{DeliveryError, DeliverySettings, Destinations, SigningKeys, notify::Notifier};

const CONSUMER_PREFIX: &str = "delivery/";
/// Trail delivery's name among the journal consumers.
pub const CONSUMER_NAME: &str = "trail-delivery";

fn consumer_name(trail_arn: &str) -> String {
    format!("{CONSUMER_PREFIX}{trail_arn}")
}

/// A planned batch of log files: the journal range and the delivery time that name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    pub from: Position,
    pub to: Position,
    pub delivered_ms: i64,
    /// Files whose key was found taken by another object (by [`file_name_in_plan`]), with how
    /// many times: the file's unique part then also derives from this count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub renamed: BTreeMap<String, u32>,
}

/// A planned digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestPlan {
    pub region: String,
    pub end_ms: i64,
    pub fingerprint: String,
}

/// The head of a Region's digest chain and the files delivered since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub window_start_ms: i64,
    pub previous: Option<PreviousDigest>,
    pub files: Vec<DigestLogFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousDigest {
    pub bucket: String,
    pub key: String,
    pub sha256_hex: String,
    pub signature_hex: String,
}

/// What `GetTrailStatus` reports about deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    pub latest_delivery_ms: Option<i64>,
    pub latest_delivery_error: Option<String>,
    pub latest_delivery_attempt_ms: Option<i64>,
    pub latest_delivery_attempt_succeeded: Option<bool>,
    pub latest_digest_ms: Option<i64>,
    pub latest_digest_error: Option<String>,
}

/// A trail's durable delivery state, stored as one document per trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailDeliveryState {
    /// The journal position where the current logging session began.
    pub session_start: Position,
    /// The next journal position to deliver.
    pub cursor: Position,
    pub last_flush_ms: i64,
    pub batch_plan: Option<BatchPlan>,
    pub digest_plan: Option<DigestPlan>,
    /// Digest chains by Region.
    pub chains: BTreeMap<String, Chain>,
    /// Set once a stopped session's last events and final digests are delivered.
    pub session_closed: bool,
    pub status: DeliveryStatus,
}

impl TrailDeliveryState {
    fn new_session(start: Position, started_ms: i64, status: DeliveryStatus) -> Self {
        Self {
            session_start: start,
            cursor: start,
            last_flush_ms: started_ms,
            batch_plan: None,
            digest_plan: None,
            chains: BTreeMap::new(),
            session_closed: false,
            status,
        }
    }
}

/// The delivery state of a trail, for `GetTrailStatus`.
pub fn load_state(store: &dyn ControlStore, trail_arn: &str) -> Result<Option<TrailDeliveryState>, DeliveryError> {
    match store.consumer_state(&consumer_name(trail_arn))? {
        Some(text) => Ok(Some(serde_json::from_str(&text)?)),
        None => Ok(None),
    }
}

/// Where each trail that still delivers stands: trails logging now, and stopped trails whose
/// last events or final digests are not delivered yet. A trail that logs but has no state yet
/// (its first round has not run) needs the journal from where its logging began.
fn trail_cursors(store: &dyn ControlStore) -> Result<Vec<Cursor>, DeliveryError> {
    let states: HashMap<String, TrailDeliveryState> = store
        .consumer_states(CONSUMER_PREFIX)?
        .into_iter()
        .map(|(consumer, text)| Ok((consumer[CONSUMER_PREFIX.len()..].to_owned(), serde_json::from_str(&text)?)))
        .collect::<Result<_, serde_json::Error>>()?;
    let mut cursors = Vec::new();
    for trail in store.all_trails()? {
        let arn = trail.arn();
        let session = trail.logging_started_at.filter(|_| trail.is_logging);
        let (next, error) = match (states.get(&arn), session) {
            // A stopped trail whose last events are delivered needs nothing more: its next
            // session starts wherever logging starts again.
            (Some(state), None) if state.session_closed => continue,
            // Logging started again after a closed session: the new session starts there.
            (Some(state), Some(start)) if state.session_closed => (start, state.status.latest_delivery_error.clone()),
            // A session still delivering; if logging began again since, the next one's start.
            (Some(state), session) => {
                let next = match session {
                    Some(start) if start != state.session_start => state.cursor.min(start),
                    _ => state.cursor,
                };
                (next, state.status.latest_delivery_error.clone())
            }
            (None, Some(start)) => (start, None),
            (None, None) => continue,
        };
        let account = Some(trail.account.as_str().to_owned());
        cursors.push(Cursor { part: Some(arn), account, error, ..Cursor::at(next) });
    }
    // States of trails deleted since the last round: still held until the round forgets them.
    for (arn, state) in &states {
        if !state.session_closed && !cursors.iter().any(|cursor| cursor.part.as_deref() == Some(arn.as_str())) {
            let account = arn.split(':').nth(4).map(str::to_owned);
            cursors.push(Cursor { part: Some(arn.clone()), account, ..Cursor::at(state.cursor) });
        }
    }
    Ok(cursors)
}

pub struct DeliveryWorker {
    store: Arc<dyn ControlStore>,
    journal: Arc<dyn Journal>,
    destinations: Arc<Destinations>,
    keys: Arc<SigningKeys>,
    notifier: Arc<Notifier>,
    settings: DeliverySettings,
    /// Trails whose last attempt failed: when to try again, and the backoff toward that. One
    /// trail's broken bucket must not hold the others back, so each trail retries on its own
    /// (with the consumers' one policy); the round itself fails only when the store does.
    backoff: Mutex<HashMap<String, (Instant, Backoff)>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, DeliveryError> {
    tokio::task::spawn_blocking(f).await.map_err(|error| DeliveryError::Task(error.to_string()))
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Which of the trail's files a record goes to, if any ([`Trail::selects`]).
fn trail_selects(trail: &Trail, account: &str, region: &str, record: &Value) -> Option<LogKind> {
    trail.selects(account, region, record).map(|selected| match selected {
        Selected::Event => LogKind::Events,
        Selected::Insight => LogKind::Insights,
    })
}

/// Selected records by Region and kind of file, as (JSON bytes, event time). Ordered by Region
/// first, so a Region's files are listed together in its digest.
type SelectedRecords = BTreeMap<(String, LogKind), Vec<(Vec<u8>, Option<DateTime<Utc>>)>>;

/// The name a batch's file for one Region and kind goes by in its plan's `renamed` and in the
/// seed of its unique part. Events files keep the Region alone, as every file had before
/// Insights files existed: a plan stored by an earlier version is retried under the names it
/// was planned with. Insights files are `CloudTrail-Insight/<region>`, which no Region name
/// equals (Region names have no `/`).
fn file_name_in_plan(region: &str, kind: LogKind) -> String {
    debug_assert!(!region.contains('/'), "Region names have no '/': {region}");
    match kind {
        LogKind::Events => region.to_owned(),
        LogKind::Insights => format!("{}/{region}", kind.folder()),
    }
}

/// Reads the journal from `from` until `limit` or until about `budget` bytes are read, and
/// returns what the trail selects there with the position reached. Planning passes the batch
/// size as the budget; a retried plan passes its `to` as the limit and no budget, and so reads
/// exactly the same range.
fn select_range(
    journal: &dyn Journal,
    trail: &Trail,
    from: Position,
    limit: Position,
    budget: usize,
) -> Result<(SelectedRecords, Position), DeliveryError> {
    let mut selected = SelectedRecords::new();
    let (mut position, mut read) = (from, 0usize);
    while position < limit && read < budget {
        let batch = journal.read_from(position, (budget - read).min(8 * 1024 * 1024))?;
        if batch.entries.is_empty() {
            if batch.next > position {
                // Only a damaged range or the gap of a cut torn tail lies here: nothing to select.
                position = batch.next.min(limit);
                continue;
            }
            return Err(DeliveryError::Journal(opentrail_journal::JournalError::NoSuchPosition(position)));
        }
        for entry in batch.entries.iter().take_while(|entry| entry.position < limit) {
            read += entry.payload.len();
            let Ok((account, region, json)) = split_envelope(&entry.payload) else { continue };
            let Ok(record) = serde_json::from_slice::<Value>(json) else { continue };
            if let Some(kind) = trail_selects(trail, account.as_str(), region.as_str(), &record) {
                let time = RecordView::from_json(json).ok().and_then(|view| view.event_time());
                selected.entry((region.as_str().to_owned(), kind)).or_default().push((json.to_vec(), time));
            }
        }
        position = batch.next.min(limit);
    }
    Ok((selected, position))
}

impl DeliveryWorker {
    pub fn new(
        store: Arc<dyn ControlStore>,
        journal: Arc<dyn Journal>,
        destinations: Arc<Destinations>,
        keys: Arc<SigningKeys>,
        notifier: Arc<Notifier>,
        settings: DeliverySettings,
    ) -> Self {
        Self { store, journal, destinations, keys, notifier, settings, backoff: Mutex::new(HashMap::new()) }
    }

    /// One pass over all trails; returns after each has delivered what is due.
    pub async fn deliver_round(&self, now: DateTime<Utc>) -> Result<(), DeliveryError> {
        let store = self.store.clone();
        let (trails, states) =
            blocking(move || Ok::<_, DeliveryError>((store.all_trails()?, store.consumer_states(CONSUMER_PREFIX)?)))
                .await??;
        let loaded: HashMap<&str, &str> =
            states.iter().map(|(consumer, state)| (&consumer[CONSUMER_PREFIX.len()..], state.as_str())).collect();
        for trail in &trails {
            let arn = trail.arn();
            if let Some((retry_at, _)) = self.backoff.lock().expect("backoff lock").get(&arn)
                && Instant::now() < *retry_at
            {
                continue;
            }
            let state = match loaded.get(arn.as_str()) {
                Some(text) => Some(serde_json::from_str(text)?),
                None => None,
            };
            match self.advance(trail, state, now).await {
                Ok(()) => {
                    self.backoff.lock().expect("backoff lock").remove(&arn);
                }
                Err(error) => {
                    tracing::warn!(trail = arn, %error, "delivery failed; will retry");
                    let mut backoff = self.backoff.lock().expect("backoff lock");
                    let (retry_at, policy) =
                        backoff.entry(arn).or_insert_with_key(|arn| (Instant::now(), Backoff::new(arn)));
                    *retry_at = Instant::now() + policy.next_delay();
                }
            }
        }
        // Trails that were deleted deliver nothing more.
        for (consumer, _) in states {
            let arn = &consumer[CONSUMER_PREFIX.len()..];
            if !trails.iter().any(|trail| trail.arn() == arn) {
                let store = self.store.clone();
                blocking(move || store.save_consumer_state(&consumer, None)).await??;
            }
        }
        Ok(())
    }

    async fn save(&self, trail_arn: &str, state: &TrailDeliveryState) -> Result<(), DeliveryError> {
        let store = self.store.clone();
        let name = consumer_name(trail_arn);
        let text = serde_json::to_string(state)?;
        blocking(move || store.save_consumer_state(&name, Some(&text))).await??;
        Ok(())
    }

    /// Records a failed write in the status (best effort) and passes the error on. Any failed
    /// write to the bucket is the trail's latest delivery error (log files wait behind a pending
    /// digest); a digest's is also its latest digest error.
    async fn failed(
        &self,
        trail: &Trail,
        state: &mut TrailDeliveryState,
        digest: bool,
        error: DeliveryError,
    ) -> DeliveryError {
        let text = error.status_text();
        if digest {
            state.status.latest_digest_error = Some(text.clone());
        }
        state.status.latest_delivery_error = Some(text);
        state.status.latest_delivery_attempt_ms = Some(Utc::now().timestamp_millis());
        state.status.latest_delivery_attempt_succeeded = Some(false);
        if let Err(save_error) = self.save(&trail.arn(), state).await {
            tracing::warn!(%save_error, "cannot record the delivery error");
        }
        error
    }

    /// Delivers what is due for one trail, starting from its stored state.
    async fn advance(
        &self,
        trail: &Trail,
        loaded: Option<TrailDeliveryState>,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        let Some(session_start) = trail.logging_started_at else { return Ok(()) };
        let arn = trail.arn();
        let started_ms = trail.start_logging_time_ms.unwrap_or_else(|| now.timestamp_millis());
        let mut state = loaded
            .clone()
            .unwrap_or_else(|| TrailDeliveryState::new_session(session_start, started_ms, DeliveryStatus::default()));
        // Chains of Regions CloudTrail does not have (opened before they were refused) end here.
        state.chains.retain(|region, _| is_cloudtrail_region(region));
        if state.cursor < self.journal.start() {
            tracing::error!(trail = arn, cursor = state.cursor, "events expired before delivery");
            state.cursor = self.journal.start();
        }

        // Finish whatever a crash or a failure interrupted.
        if let Some(plan) = state.batch_plan.clone() {
            self.write_batch(trail, &mut state, plan, None).await?;
        }
        if let Some(plan) = state.digest_plan.clone() {
            self.write_digest(trail, &mut state, plan).await?;
        }

        let same_session = state.session_start == session_start;
        let (bound, session_ends) = match (same_session, trail.is_logging) {
            (true, true) => (self.journal.committed_end(), false),
            _ => (trail.logging_stopped_at.filter(|stop| *stop >= state.session_start).unwrap_or(state.cursor), true),
        };
        while state.cursor < bound {
            let interval_elapsed =
                now.timestamp_millis() - state.last_flush_ms >= self.settings.delivery_interval.as_millis() as i64;
            let size_reached = bound - state.cursor >= self.settings.max_batch_bytes as u64;
            if !(interval_elapsed || size_reached || session_ends) {
                break;
            }
            let (journal, for_selection) = (self.journal.clone(), trail.clone());
            let (from, budget) = (state.cursor, self.settings.max_batch_bytes);
            let (selected, to) =
                blocking(move || select_range(journal.as_ref(), &for_selection, from, bound, budget)).await??;
            if to <= from {
                break;
            }
            let plan = BatchPlan { from, to, delivered_ms: now.timestamp_millis(), renamed: BTreeMap::new() };
            state.batch_plan = Some(plan.clone());
            self.save(&arn, &state).await?;
            self.write_batch(trail, &mut state, plan, Some(selected)).await?;
        }

        if !trail.log_file_validation_enabled {
            state.chains.clear();
        } else if state.cursor >= bound && session_ends && !state.session_closed {
            // Logging stopped: one final digest per Region closes the chain.
            state.chains.entry(trail.home_region.as_str().to_owned()).or_insert_with(|| Chain {
                window_start_ms: started_ms,
                previous: None,
                files: Vec::new(),
            });
            // Whole seconds: the digest's times and its key carry seconds only. The final digest
            // ends on the next whole second, so it covers the stop and is later than any digest
            // written before it (which would otherwise hold the same second's key).
            let end_ms = (now.timestamp_millis() + 999).div_euclid(1000) * 1000;
            let ends: Vec<(String, i64)> = state
                .chains
                .iter()
                .map(|(region, chain)| {
                    let after_previous = chain.window_start_ms - chain.window_start_ms.rem_euclid(1000) + 1000;
                    (region.clone(), end_ms.max(after_previous))
                })
                .collect();
            for (region, end_ms) in ends {
                self.plan_and_write_digest(trail, &mut state, region, end_ms, now).await?;
            }
        } else if !session_ends {
            state.chains.entry(trail.home_region.as_str().to_owned()).or_insert_with(|| Chain {
                window_start_ms: state.last_flush_ms.min(now.timestamp_millis()),
                previous: None,
                files: Vec::new(),
            });
            // Digest windows end on a grid of the interval, so every full window has the same
            // width (the validator relies on it to see several missing digests in a row).
            let interval = (self.settings.digest_interval.as_millis() as i64).max(1000);
            let end_ms = now.timestamp_millis() - now.timestamp_millis().rem_euclid(interval);
            let due: Vec<String> = state
                .chains
                .iter()
                .filter(|(_, chain)| end_ms > chain.window_start_ms)
                .map(|(region, _)| region.clone())
                .collect();
            for region in due {
                self.plan_and_write_digest(trail, &mut state, region, end_ms, now).await?;
            }
        }

        if session_ends && state.cursor >= bound {
            if !same_session {
                tracing::info!(trail = arn, "logging restarted: a new delivery session begins");
                state = TrailDeliveryState::new_session(session_start, started_ms, state.status.clone());
            } else {
                state.session_closed = true;
            }
        }
        // Most rounds find nothing due: write only what changed.
        if loaded.as_ref() == Some(&state) { Ok(()) } else { self.save(&arn, &state).await }
    }

    /// Writes a planned batch and commits it. `selected` is the planning read's result; a
    /// retried plan reads its range again.
    async fn write_batch(
        &self,
        trail: &Trail,
        state: &mut TrailDeliveryState,
        plan: BatchPlan,
        selected: Option<SelectedRecords>,
    ) -> Result<(), DeliveryError> {
        let selected = match selected {
            Some(selected) => selected,
            None => {
                let (journal, for_selection) = (self.journal.clone(), trail.clone());
                blocking(move || select_range(journal.as_ref(), &for_selection, plan.from, plan.to, usize::MAX))
                    .await??
                    .0
            }
        };
        if let Err(error) = self.check_bucket(trail).await {
            return Err(self.failed(trail, state, false, error).await);
        }
        let destination = self.destinations.destination(&trail.s3_bucket_name);
        let delivered = ms_to_time(plan.delivered_ms);
        let arn = trail.arn();
        let mut written: Vec<(String, LogKind, DigestLogFile)> = Vec::new();
        for ((region, kind), records) in &selected {
            let file = build_log_file(records.iter().map(|(json, time)| (json.as_slice(), *time)));
            let name = file_name_in_plan(region, *kind);
            let unique = match plan.renamed.get(&name) {
                None => unique_suffix(&format!("{arn}|{name}|{}", plan.from)),
                Some(renamed) => unique_suffix(&format!("{arn}|{name}|{}|{renamed}", plan.from)),
            };
            let prefix = trail.s3_key_prefix.as_deref();
            let key = log_file_key(prefix, trail.account.as_str(), *kind, region, delivered, &unique);
            match destination.put_new(&key, Bytes::from(file.gzipped), &Vec::new()).await {
                Ok(()) => {}
                Err(BucketError::AlreadyExists(_)) => {
                    tracing::warn!(
                        trail = arn,
                        key,
                        "a log file's key holds another object; the file takes a new name"
                    );
                    let mut renamed = plan.clone();
                    *renamed.renamed.entry(name).or_default() += 1;
                    state.batch_plan = Some(renamed);
                    let error = DeliveryError::ObjectExists { bucket: trail.s3_bucket_name.clone(), key };
                    return Err(self.failed(trail, state, false, error).await);
                }
                Err(error) => return Err(self.failed(trail, state, false, error.into()).await),
            }
            let entry = DigestLogFile {
                s3_bucket: trail.s3_bucket_name.clone(),
                s3_object: key,
                hash_value: file.sha256_hex,
                hash_algorithm: HASH_ALGORITHM.into(),
                newest_event_time: file.newest_event_time.map(format_event_time),
                oldest_event_time: file.oldest_event_time.map(format_event_time),
            };
            written.push((region.clone(), *kind, entry));
        }
        state.cursor = plan.to;
        state.batch_plan = None;
        if !written.is_empty() {
            state.last_flush_ms = plan.delivered_ms;
            state.status.latest_delivery_ms = Some(plan.delivered_ms);
        }
        state.status.latest_delivery_attempt_ms = Some(plan.delivered_ms);
        state.status.latest_delivery_attempt_succeeded = Some(true);
        state.status.latest_delivery_error = None;
        if trail.log_file_validation_enabled {
            // Insights files join their Region's chain like log files: one digest lists both.
            for (region, _, entry) in &written {
                let window_start_ms = state.last_flush_ms;
                let chain = state.chains.entry(region.clone()).or_insert_with(|| Chain {
                    window_start_ms,
                    previous: None,
                    files: Vec::new(),
                });
                chain.files.push(entry.clone());
            }
        }
        self.save(&arn, state).await?;
        if let Some(topic) = &trail.sns_topic_name {
            // One notification per Region and kind, so a subscriber that fetches every key it
            // is sent as events never gets an Insights file in the same message.
            let mut keys_by_file = BTreeMap::<(&str, LogKind), Vec<String>>::new();
            for (region, kind, entry) in &written {
                keys_by_file.entry((region, *kind)).or_default().push(entry.s3_object.clone());
            }
            for ((region, _), keys) in keys_by_file {
                self.notifier.notify(&arn, topic, region, trail.account.as_str(), &trail.s3_bucket_name, keys);
            }
        }
        Ok(())
    }

    /// Checks that the trail's bucket is still the one it was bound to when it was created or
    /// last updated. Trails from before bindings existed are bound to their bucket on first use,
    /// if their own account owns it. Remote buckets are the operator's configuration and are
    /// trusted as configured.
    async fn check_bucket(&self, trail: &Trail) -> Result<(), DeliveryError> {
        let name = trail.s3_bucket_name.clone();
        if self.destinations.is_remote(&name) {
            return Ok(());
        }
        let (store, arn, account) = (self.store.clone(), trail.arn(), trail.account.clone());
        blocking(move || {
            let bucket = store.bucket(&name)?;
            let binding = match store.trail_bucket(&arn)? {
                Some(binding) => binding,
                None => {
                    let Some(bucket) = &bucket else { return Err(DeliveryError::BucketDeleted(name)) };
                    if bucket.account != account {
                        return Err(DeliveryError::BucketReplaced(name));
                    }
                    let binding = TrailBucket {
                        trail_arn: arn.clone(),
                        bucket: name.clone(),
                        owner: bucket.account.clone(),
                        created_ms: bucket.created_ms,
                    };
                    if store.bind_unbound_trail(&binding)? {
                        tracing::info!(trail = arn, bucket = name, "trail bound to its bucket");
                    }
                    store.trail_bucket(&arn)?.unwrap_or(binding)
                }
            };
            match bucket {
                None => Err(DeliveryError::BucketDeleted(name)),
                Some(bucket)
                    if binding.bucket != bucket.name
                        || binding.owner != bucket.account
                        || binding.created_ms != bucket.created_ms =>
                {
                    Err(DeliveryError::BucketReplaced(name))
                }
                Some(_) => Ok(()),
            }
        })
        .await?
    }

    async fn plan_and_write_digest(
        &self,
        trail: &Trail,
        state: &mut TrailDeliveryState,
        region: String,
        end_ms: i64,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        // A digest is signed with the key of the Region it covers: validate-logs run in that
        // Region asks that Region's ListPublicKeys for it.
        let keys = self.keys.clone();
        let signing_region = region.clone();
        let key = blocking(move || keys.current(&signing_region, now)).await??;
        let plan = DigestPlan { region, end_ms, fingerprint: key.fingerprint };
        state.digest_plan = Some(plan.clone());
        self.save(&trail.arn(), state).await?;
        self.write_digest(trail, state, plan).await
    }

    async fn write_digest(
        &self,
        trail: &Trail,
        state: &mut TrailDeliveryState,
        plan: DigestPlan,
    ) -> Result<(), DeliveryError> {
        let chain = state.chains.get(&plan.region).cloned().unwrap_or(Chain {
            window_start_ms: plan.end_ms,
            previous: None,
            files: Vec::new(),
        });
        let end = ms_to_time(plan.end_ms);
        let key = digest_key(
            trail.s3_key_prefix.as_deref(),
            trail.account.as_str(),
            &plan.region,
            &trail.name,
            trail.home_region.as_str(),
            end,
        );
        let (newest, oldest) = time_bounds(chain.files.iter().map(|f| (&f.newest_event_time, &f.oldest_event_time)));
        let previous = chain.previous.as_ref();
        let document = DigestDocument {
            aws_account_id: trail.account.as_str().to_owned(),
            digest_start_time: format_event_time(ms_to_time(chain.window_start_ms)),
            digest_end_time: format_event_time(end),
            digest_s3_bucket: trail.s3_bucket_name.clone(),
            digest_s3_object: key.clone(),
            digest_public_key_fingerprint: plan.fingerprint.clone(),
            digest_signature_algorithm: SIGNATURE_ALGORITHM.into(),
            newest_event_time: newest,
            oldest_event_time: oldest,
            previous_digest_s3_bucket: previous.map(|p| p.bucket.clone()),
            previous_digest_s3_object: previous.map(|p| p.key.clone()),
            previous_digest_hash_value: previous.map(|p| p.sha256_hex.clone()),
            previous_digest_hash_algorithm: previous.map(|_| HASH_ALGORITHM.to_owned()),
            previous_digest_signature: previous.map(|p| p.signature_hex.clone()),
            log_files: chain.files.clone(),
        };
        let keys = self.keys.clone();
        let (region, home, fingerprint) =
            (plan.region.clone(), trail.home_region.as_str().to_owned(), plan.fingerprint.clone());
        // Plans made before digests were signed per Region name a key of the home Region.
        let signing_key = blocking(move || match keys.by_fingerprint(&region, &fingerprint)? {
            Some(key) => Ok(Some(key)),
            None => keys.by_fingerprint(&home, &fingerprint),
        })
        .await??;
        let Some(signing_key) = signing_key else {
            return Err(DeliveryError::MissingKey(plan.fingerprint.clone()));
        };
        if let Err(error) = self.check_bucket(trail).await {
            return Err(self.failed(trail, state, true, error).await);
        }
        let signed = sign_digest(&document, &signing_key.private_der)?;
        let metadata = vec![
            ("signature".to_owned(), signed.signature_hex.clone()),
            ("signature-algorithm".to_owned(), SIGNATURE_ALGORITHM.to_owned()),
        ];
        let destination = self.destinations.destination(&trail.s3_bucket_name);
        match destination.put_new(&key, Bytes::from(signed.gzipped.clone()), &metadata).await {
            Ok(()) => {}
            Err(BucketError::AlreadyExists(_)) => {
                // The key is taken by an object this trail did not write (an identical retry
                // is `Ok`). The digest moves to the next second's key, which the document names
                // as its own, so the chain stays whole and validate-logs sees the stranger.
                tracing::warn!(trail = trail.arn(), key, "a digest's key holds another object; the digest moves on");
                state.digest_plan = Some(DigestPlan { end_ms: plan.end_ms + 1000, ..plan.clone() });
                let error = DeliveryError::ObjectExists { bucket: trail.s3_bucket_name.clone(), key };
                return Err(self.failed(trail, state, true, error).await);
            }
            Err(error) => return Err(self.failed(trail, state, true, error.into()).await),
        }
        state.chains.insert(
            plan.region.clone(),
            Chain {
                window_start_ms: plan.end_ms,
                previous: Some(PreviousDigest {
                    bucket: trail.s3_bucket_name.clone(),
                    key,
                    sha256_hex: signed.sha256_hex,
                    signature_hex: signed.signature_hex,
                }),
                files: Vec::new(),
            },
        );
        state.digest_plan = None;
        state.status.latest_digest_ms = Some(plan.end_ms);
        state.status.latest_digest_error = None;
        // The bucket takes writes again.
        if state.status.latest_delivery_attempt_succeeded == Some(false) {
            state.status.latest_delivery_error = None;
            state.status.latest_delivery_attempt_succeeded = Some(true);
        }
        self.save(&trail.arn(), state).await
    }
}

/// Trail delivery as a journal consumer: a round delivers what is due for every trail, and its
/// cursors are the logging trails', one each (so status shows every logging trail's lag, to
/// the trail's account).
impl Consumer for DeliveryWorker {
    fn name(&self) -> &str {
        CONSUMER_NAME
    }

    fn round(self: Arc<Self>) -> RoundFuture {
        Box::pin(async move {
            self.deliver_round(Utc::now()).await.map_err(ConsumerError::new)?;
            // Batches are due by time, not by journal growth: the next round comes on the clock.
            Ok(Progress::Idle)
        })
    }

    fn cursors(&self) -> Result<Vec<Cursor>, ConsumerError> {
        trail_cursors(self.store.as_ref()).map_err(ConsumerError::new)
    }

    fn idle(&self) -> Idle {
        Idle { wake_on_append: false, at_most: self.settings.poll_interval }
    }
}

#[cfg(test)]
mod insights_tests;

#[cfg(test)]
mod tests {
    use opentrail_control::{SqliteStore, TrailChange};
    use opentrail_model::selectors::{EventSelector, InsightSelector};
    use opentrail_model::{AccountId, Region};

    use super::*;

    pub(super) fn trail(name: &str) -> Trail {
        Trail {
            name: name.into(),
            account: AccountId::parse("123456789012").unwrap(),
            home_region: Region::parse("us-east-1").unwrap(),
            s3_bucket_name: "bucket".into(),
            s3_key_prefix: None,
            sns_topic_name: None,
            include_global_service_events: true,
            is_multi_region_trail: true,
            log_file_validation_enabled: true,
            cloud_watch_logs_log_group_arn: None,
            cloud_watch_logs_role_arn: None,
            kms_key_id: None,
            is_organization_trail: false,
            event_selectors: None,
            advanced_event_selectors: None,
            insight_selectors: Vec::new(),
            tags: Vec::new(),
            is_logging: true,
            start_logging_time_ms: None,
            stop_logging_time_ms: None,
            logging_started_at: None,
            logging_stopped_at: None,
            created_ms: 0,
        }
    }

    #[test]
    fn only_regions_cloudtrail_has_are_delivered() {
        let trail = trail("t");
        let record = serde_json::json!({"eventName": "ListTrails", "readOnly": true, "eventCategory": "Management",
            "managementEvent": true, "eventSource": "cloudtrail.amazonaws.com"});
        for region in opentrail_model::regions::CLOUDTRAIL_REGIONS {
            assert_eq!(trail_selects(&trail, "123456789012", region, &record), Some(LogKind::Events), "{region}");
        }
        for fake in ["us-east-9", "sagov-westsouth-1r", "xx-north-1"] {
            assert_eq!(trail_selects(&trail, "123456789012", fake, &record), None, "{fake}");
        }
    }

    fn insight_selector(insight_type: &str) -> InsightSelector {
        InsightSelector { insight_type: Some(insight_type.into()), event_categories: None }
    }

    #[test]
    fn insights_records_are_chosen_by_insights_selectors_alone() {
        let insight = serde_json::json!({"eventVersion": "1.07", "eventTime": "2019-10-15T21:13:00Z",
            "awsRegion": "us-east-1", "eventID": "EXAMPLE-9b6f-45f8-bc6b-9b41c052ebc7",
            "eventType": "AwsCloudTrailInsight", "recipientAccountId": "123456789012",
            "sharedEventID": "EXAMPLE8-02b2-4e93-9aab-08ed47ea5fd3",
            "insightDetails": {"state": "Start", "eventSource": "autoscaling.amazonaws.com",
                "eventName": "CompleteLifecycleAction", "insightType": "ApiCallRateInsight",
                "insightContext": {"statistics": {"baseline": {"average": 0.0000882145},
                    "insight": {"average": 0.6}, "insightDuration": 5, "baselineDuration": 11336}}},
            "eventCategory": "Insight"});
        let event = serde_json::json!({"eventName": "CreateTrail", "readOnly": false, "eventCategory": "Management",
            "managementEvent": true, "eventSource": "cloudtrail.amazonaws.com"});
        let (account, home) = ("123456789012", "us-east-1");

        let mut plain = trail("plain");
        plain.is_multi_region_trail = false;
        assert_eq!(trail_selects(&plain, account, home, &insight), None, "no Insights selectors");
        assert_eq!(trail_selects(&plain, account, home, &event), Some(LogKind::Events));

        let mut calls = plain.clone();
        calls.insight_selectors = vec![insight_selector("ApiCallRateInsight")];
        assert_eq!(trail_selects(&calls, account, home, &insight), Some(LogKind::Insights));
        assert_eq!(trail_selects(&calls, account, home, &event), Some(LogKind::Events));
        assert_eq!(trail_selects(&calls, "210987654321", home, &insight), None, "another account's");
        assert_eq!(trail_selects(&calls, account, "eu-west-1", &insight), None, "another Region's");
        let mut everywhere = calls.clone();
        everywhere.is_multi_region_trail = true;
        assert_eq!(trail_selects(&everywhere, account, "eu-west-1", &insight), Some(LogKind::Insights));
        assert_eq!(trail_selects(&everywhere, account, "us-east-9", &insight), None, "not a CloudTrail Region");

        // Event selectors neither let Insights through nor keep them out.
        let mut no_events = calls.clone();
        no_events.event_selectors = Some(vec![EventSelector {
            read_write_type: Some("ReadOnly".into()),
            include_management_events: Some(false),
            data_resources: None,
            exclude_management_event_sources: None,
        }]);
        assert_eq!(trail_selects(&no_events, account, home, &event), None);
        assert_eq!(trail_selects(&no_events, account, home, &insight), Some(LogKind::Insights));

        let mut errors = plain.clone();
        errors.insight_selectors = vec![insight_selector("ApiErrorRateInsight")];
        assert_eq!(trail_selects(&errors, account, home, &insight), None, "another Insights type");
        let mut error_insight = insight.clone();
        error_insight["insightDetails"]["insightType"] = "ApiErrorRateInsight".into();
        error_insight["insightDetails"]["errorCode"] = "ThrottlingException".into();
        assert_eq!(trail_selects(&errors, account, home, &error_insight), Some(LogKind::Insights));
        assert_eq!(trail_selects(&calls, account, home, &error_insight), None);

        // An Insights record is known by its type as well as its category, and one without a
        // type is nobody's.
        let mut typed_only = insight.clone();
        typed_only.as_object_mut().unwrap().remove("eventCategory");
        assert_eq!(trail_selects(&calls, account, home, &typed_only), Some(LogKind::Insights));
        assert_eq!(trail_selects(&plain, account, home, &typed_only), None);
        let mut untyped = insight.clone();
        untyped["insightDetails"].as_object_mut().unwrap().remove("insightType");
        assert_eq!(trail_selects(&calls, account, home, &untyped), None);
    }

    #[test]
    fn events_files_keep_their_names_in_plans_and_insights_files_have_their_own() {
        assert_eq!(file_name_in_plan("us-east-1", LogKind::Events), "us-east-1");
        assert_eq!(file_name_in_plan("us-east-1", LogKind::Insights), "CloudTrail-Insight/us-east-1");
        // A plan stored before Insights files existed names its renamed files by Region.
        let stored = r#"{"from":1,"to":9,"delivered_ms":5,"renamed":{"eu-west-1":2}}"#;
        let plan: BatchPlan = serde_json::from_str(stored).unwrap();
        assert_eq!(plan.renamed.get(&file_name_in_plan("eu-west-1", LogKind::Events)), Some(&2));
    }

    #[test]
    fn each_trail_that_still_delivers_is_a_cursor_of_its_account() {
        let store = SqliteStore::in_memory().unwrap();
        assert_eq!(trail_cursors(&store).unwrap(), Vec::new());
        let (mut logging, mut stopped, mut fresh, idle) =
            (trail("logging"), trail("stopped"), trail("fresh"), trail("idle"));
        logging.logging_started_at = Some(100);
        stopped.is_logging = false;
        fresh.logging_started_at = Some(70);
        let mut never_started = idle.clone();
        never_started.is_logging = false;
        let account = logging.account.clone();
        let changes: Vec<TrailChange> = [&logging, &stopped, &fresh, &never_started]
            .into_iter()
            .map(|t| TrailChange::Put(Box::new(t.clone())))
            .collect();
        store.apply_trail_changes(&account, 0, &changes).unwrap();
        let mut logging_state = TrailDeliveryState::new_session(100, 0, DeliveryStatus::default());
        logging_state.cursor = 500;
        logging_state.status.latest_delivery_error = Some("NoSuchBucket".into());
        let mut stopped_state = TrailDeliveryState::new_session(10, 0, DeliveryStatus::default());
        stopped_state.cursor = 50;
        stopped_state.session_closed = true;
        let save = |trail: &Trail, state: &TrailDeliveryState| {
            store
                .save_consumer_state(&consumer_name(&trail.arn()), Some(&serde_json::to_string(state).unwrap()))
                .unwrap()
        };
        save(&logging, &logging_state);
        save(&stopped, &stopped_state);
        let positions = |store: &SqliteStore| -> Vec<(String, Position, Option<String>)> {
            let mut cursors: Vec<_> = trail_cursors(store)
                .unwrap()
                .into_iter()
                .map(|c| {
                    assert_eq!(c.account.as_deref(), Some(account.as_str()));
                    (c.part.unwrap(), c.next, c.error)
                })
                .collect();
            cursors.sort();
            cursors
        };
        // The stopped trail whose session is closed needs nothing; the fresh one needs the
        // journal from where its logging began, before its first round wrote any state.
        assert_eq!(positions(&store), vec![(fresh.arn(), 70, None), (logging.arn(), 500, Some("NoSuchBucket".into()))]);
        stopped_state.session_closed = false;
        save(&stopped, &stopped_state);
        assert_eq!(positions(&store)[2], (stopped.arn(), 50, None));
    }
}
