//! The detector proper: per-minute counters per (Region, key), a 7-day baseline kept
//! incrementally at hourly resolution, and the open/close state of each key's insight. Pure:
//! time is the minutes of the records it is fed (and whatever the caller advances it to), so a
//! replay with a fake clock is the same computation as live traffic. The crate's `//!` essay
//! explains the rules; this file is their arithmetic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::params::InsightParams;

/// Minutes since the Unix epoch.
pub type Minute = i64;

/// Attribution lists hold at most this many values (AWS: 5).
const TOP_VALUES: usize = 5;
/// Distinct values an attribute keeps counts for, per minute and per baseline; more are not
/// counted (a flood of distinct user agents cannot grow the state without bound).
const VALUES_KEPT: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum InsightType {
    ApiCallRateInsight,
    ApiErrorRateInsight,
}

impl InsightType {
    pub const ALL: [InsightType; 2] = [Self::ApiCallRateInsight, Self::ApiErrorRateInsight];

    pub fn name(self) -> &'static str {
        match self {
            Self::ApiCallRateInsight => "ApiCallRateInsight",
            Self::ApiErrorRateInsight => "ApiErrorRateInsight",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// What one series counts: calls of an API (write calls for the call rate; calls failing with
/// `error_code` for the error rate).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub insight_type: InsightType,
    pub event_source: String,
    pub event_name: String,
    pub error_code: Option<String>,
}

/// One management call as the detector sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub minute: Minute,
    pub event_source: &'a str,
    pub event_name: &'a str,
    pub write: bool,
    pub error_code: Option<&'a str>,
    pub user_arn: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// The attributes an insight is attributed to, in AWS's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    UserIdentityArn = 0,
    UserAgent = 1,
    ErrorCode = 2,
}

impl Attribute {
    pub const ALL: [Attribute; 3] = [Self::UserIdentityArn, Self::UserAgent, Self::ErrorCode];

    pub fn name(self) -> &'static str {
        match self {
            Self::UserIdentityArn => "userIdentityArn",
            Self::UserAgent => "userAgent",
            Self::ErrorCode => "errorCode",
        }
    }
}

/// Whether insights of a type are wanted for an account's Region now (a trail or event data
/// store there selects them). Counting goes on regardless, so a baseline exists the moment a
/// selector is added.
pub trait Gate {
    fn enabled(&self, account: &str, region: &str, insight_type: InsightType) -> bool;
}

impl<F: Fn(&str, &str, InsightType) -> bool> Gate for F {
    fn enabled(&self, account: &str, region: &str, insight_type: InsightType) -> bool {
        self(account, region, insight_type)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InsightState {
    Start,
    End,
}

impl InsightState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "Start",
            Self::End => "End",
        }
    }
}

/// Values of one attribute with their average calls per minute, highest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub attribute: &'static str,
    pub insight: Vec<(String, f64)>,
    pub baseline: Vec<(String, f64)>,
}

/// A Start or an End, ready to become an Insights record ([`crate::record`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InsightEvent {
    pub account: String,
    pub region: String,
    pub key: SeriesKey,
    pub state: InsightState,
    pub shared_event_id: String,
    pub event_id: String,
    /// The record's `eventTime`: the insight's first minute (Start) or its first calm minute
    /// (End).
    pub minute: Minute,
    pub baseline_average: f64,
    pub insight_average: f64,
    pub insight_duration: u32,
    pub baseline_duration: u32,
    pub attributions: Vec<Attribution>,
}

/// One closed minute's count, for the metric series `ListInsightsMetricData` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub account: String,
    pub region: String,
    pub key: SeriesKey,
    pub minute: Minute,
    pub count: u32,
}

/// Bounded counts of attribute values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Tally {
    /// (attribute, value, count)
    values: Vec<(u8, String, f64)>,
}

impl Tally {
    fn add(&mut self, attribute: Attribute, value: &str, count: f64) {
        let attribute = attribute as u8;
        if let Some(entry) = self.values.iter_mut().find(|(a, v, _)| *a == attribute && v == value) {
            entry.2 += count;
            return;
        }
        let kept = self.values.iter().filter(|(a, ..)| *a == attribute).count();
        if kept < VALUES_KEPT {
            self.values.push((attribute, value.to_owned(), count));
            return;
        }
        // Full: a value heavier than the lightest kept one takes its place.
        let lightest = self
            .values
            .iter_mut()
            .filter(|(a, ..)| *a == attribute)
            .min_by(|x, y| x.2.total_cmp(&y.2))
            .expect("a full attribute has values");
        if lightest.2 < count {
            *lightest = (attribute, value.to_owned(), count);
        }
    }

    fn merge(&mut self, other: &Tally) {
        for (attribute, value, count) in &other.values {
            self.add(Attribute::ALL[*attribute as usize], value, *count);
        }
    }

    fn scale(&mut self, factor: f64) {
        for entry in &mut self.values {
            entry.2 *= factor;
        }
        self.values.retain(|entry| entry.2 > 1e-9);
    }

    /// The top values of an attribute as averages over `minutes`.
    fn top(&self, attribute: Attribute, minutes: f64) -> Vec<(String, f64)> {
        let mut values: Vec<(String, f64)> = self
            .values
            .iter()
            .filter(|(a, ..)| *a == attribute as u8)
            .map(|(_, value, count)| (value.clone(), count / minutes))
            .collect();
        values.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        values.truncate(TOP_VALUES);
        values
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct MinuteTally {
    count: u32,
    attrs: Tally,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct HourTally {
    hour: i64,
    count: u64,
    /// Sum of the squared per-minute counts, for the baseline's variance.
    sum_squares: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Shape {
    Burst,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Open {
    shared_event_id: String,
    shape: Shape,
    start: Minute,
    baseline_average: f64,
    end_level: f64,
    /// Calls and attributions from `start` through the last closed minute.
    count: u64,
    attrs: Tally,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Series {
    key: SeriesKey,
    /// Minutes not closed yet.
    pending: BTreeMap<Minute, MinuteTally>,
    /// The last closed minutes, newest last.
    recent: VecDeque<MinuteTally>,
    /// Closed minutes of the hour in progress.
    hour: HourTally,
    /// Completed hours inside the baseline window that had calls, oldest first.
    hours: VecDeque<HourTally>,
    base_count: u64,
    base_sum_squares: u64,
    /// The expected rate for the hour in progress: the same hour of the baseline's days.
    seasonal: f64,
    /// Attribute values over the baseline, decayed with the baseline's length as time constant.
    baseline_attrs: Tally,
    baseline_attrs_at: Minute,
    open: Option<Open>,
    /// No new insight before this minute (the cool-down after an end).
    quiet_until: Minute,
}

impl Series {
    /// A series seen for the first time (or again after it was forgotten as idle) had no calls
    /// in the minutes before: its recent minutes start as zeros, so a burst of a new API or a
    /// new error code is judged at once.
    fn new(key: SeriesKey, minute: Minute, params: &InsightParams) -> Self {
        Self {
            key,
            pending: BTreeMap::new(),
            recent: std::iter::repeat_with(MinuteTally::default).take(params.recent_minutes()).collect(),
            hour: HourTally { hour: minute.div_euclid(60), ..Default::default() },
            hours: VecDeque::new(),
            base_count: 0,
            base_sum_squares: 0,
            seasonal: 0.0,
            baseline_attrs: Tally::default(),
            baseline_attrs_at: minute,
            open: None,
            quiet_until: Minute::MIN,
        }
    }

    /// Nothing to remember: no calls in the baseline or the recent minutes, nothing open.
    fn is_idle(&self) -> bool {
        self.open.is_none()
            && self.pending.is_empty()
            && self.base_count == 0
            && self.hour.count == 0
            && self.recent.iter().all(|minute| minute.count == 0)
    }

    fn sum_last(&self, minutes: usize) -> u64 {
        self.recent.iter().rev().take(minutes).map(|minute| u64::from(minute.count)).sum()
    }

    fn attrs_last(&self, minutes: usize) -> Tally {
        let mut tally = Tally::default();
        for minute in self.recent.iter().rev().take(minutes) {
            tally.merge(&minute.attrs);
        }
        tally
    }

    fn baseline_attributions(&self, now: Minute, params: &InsightParams) -> Tally {
        let mut tally = self.baseline_attrs.clone();
        tally.scale(decay(now - self.baseline_attrs_at, params));
        tally
    }

    /// Moves minute `minute` from pending into the closed counters.
    fn close(&mut self, minute: Minute, params: &InsightParams) -> MinuteTally {
        let tally = self.pending.remove(&minute).unwrap_or_default();
        let hour = minute.div_euclid(60);
        if hour != self.hour.hour {
            self.roll_hour(hour, params);
        }
        let count = u64::from(tally.count);
        self.hour.count += count;
        self.hour.sum_squares += count * count;
        if tally.count > 0 {
            self.baseline_attrs.scale(decay(minute - self.baseline_attrs_at, params));
            self.baseline_attrs_at = minute;
            self.baseline_attrs.merge(&tally.attrs);
        }
        self.recent.push_back(tally.clone());
        while self.recent.len() > params.recent_minutes() {
            self.recent.pop_front();
        }
        tally
    }

    /// Completes the hour in progress and starts `hour`: the baseline gains the completed hour
    /// and loses hours that fell out of its window; the seasonal rate is recomputed.
    fn roll_hour(&mut self, hour: i64, params: &InsightParams) {
        let done = std::mem::replace(&mut self.hour, HourTally { hour, ..Default::default() });
        if done.count > 0 {
            self.base_count += done.count;
            self.base_sum_squares += done.sum_squares;
            self.hours.push_back(done);
        }
        let baseline_hours = i64::from(params.baseline_minutes / 60);
        while let Some(oldest) = self.hours.front()
            && oldest.hour < hour - baseline_hours
        {
            self.base_count -= oldest.count;
            self.base_sum_squares -= oldest.sum_squares;
            self.hours.pop_front();
        }
        let days = (baseline_hours as f64 / 24.0).max(1.0);
        let same_hour: u64 =
            self.hours.iter().filter(|tally| (hour - tally.hour).rem_euclid(24) == 0).map(|tally| tally.count).sum();
        self.seasonal = same_hour as f64 / (days * 60.0);
    }
}

/// The factor a decayed count keeps after `elapsed` minutes.
fn decay(elapsed: Minute, params: &InsightParams) -> f64 {
    (-(elapsed.max(0) as f64) / f64::from(params.baseline_minutes)).exp()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Region {
    /// The first minute observed: no baseline until `baseline_minutes` later.
    first: Minute,
    /// Every minute below this is closed.
    closed: Minute,
    /// The latest minute a call was seen in.
    latest: Minute,
    series: HashMap<String, Series>,
}

/// The detector's whole state, serialisable as one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    #[serde(skip)]
    params: InsightParams,
    /// account -> Region -> state
    accounts: HashMap<String, HashMap<String, Region>>,
    /// Calls that came after their minute had closed (counted in the metric series only).
    pub late_calls: u64,
    #[serde(skip)]
    events: Vec<InsightEvent>,
    #[serde(skip)]
    points: Vec<Point>,
    #[serde(skip)]
    key_buffer: String,
}

impl Detector {
    pub fn new(params: InsightParams) -> Self {
        Self {
            params,
            accounts: HashMap::new(),
            late_calls: 0,
            events: Vec::new(),
            points: Vec::new(),
            key_buffer: String::new(),
        }
    }

    /// A detector from a snapshot ([`Detector::snapshot`]) with today's parameters.
    pub fn restore(snapshot: &[u8], params: InsightParams) -> Result<Self, serde_json::Error> {
        let mut detector: Detector = serde_json::from_slice(snapshot)?;
        detector.params = params;
        Ok(detector)
    }

    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the detector's state always serialises")
    }

    pub fn params(&self) -> &InsightParams {
        &self.params
    }

    /// The Starts and Ends raised and the minutes closed since the last call.
    pub fn take_output(&mut self) -> (Vec<InsightEvent>, Vec<Point>) {
        (std::mem::take(&mut self.events), std::mem::take(&mut self.points))
    }

    /// How many series are kept (status, benchmarks).
    pub fn series_count(&self) -> usize {
        self.accounts.values().flat_map(HashMap::values).map(|region| region.series.len()).sum()
    }

    /// Counts one call, closing the minutes its time shows to be over.
    pub fn observe(&mut self, account: &str, region_name: &str, call: &Call<'_>, gate: &dyn Gate) {
        // A successful read counts in no series, and it does not move the clock either: reads
        // of a Region (lookups, the console) go on while an import or replay of older records
        // is still arriving there.
        if !call.write && call.error_code.is_none() {
            return;
        }
        let lateness = i64::from(self.params.lateness_minutes);
        let regions = match self.accounts.get_mut(account) {
            Some(regions) => regions,
            None => self.accounts.entry(account.to_owned()).or_default(),
        };
        let region = match regions.get_mut(region_name) {
            Some(region) => region,
            None => regions.entry(region_name.to_owned()).or_insert_with(|| Region {
                first: call.minute,
                closed: call.minute,
                latest: call.minute,
                series: HashMap::new(),
            }),
        };
        if call.minute < region.closed {
            self.late_calls += 1;
            for key in keys_of(call) {
                self.points.push(Point {
                    account: account.to_owned(),
                    region: region_name.to_owned(),
                    key: key.into_key(call),
                    minute: call.minute,
                    count: 1,
                });
            }
            return;
        }
        region.latest = region.latest.max(call.minute);
        for kind in keys_of(call) {
            let buffer = &mut self.key_buffer;
            buffer.clear();
            let _ = write!(buffer, "{}\u{1f}{}\u{1f}{}", kind as u8, call.event_source, call.event_name);
            if kind == KeyKind::Error {
                buffer.push('\u{1f}');
                buffer.push_str(call.error_code.unwrap_or_default());
            }
            let series = match region.series.get_mut(buffer.as_str()) {
                Some(series) => series,
                None => region
                    .series
                    .entry(buffer.clone())
                    .or_insert_with(|| Series::new(kind.into_key(call), call.minute, &self.params)),
            };
            let tally = series.pending.entry(call.minute).or_default();
            tally.count += 1;
            if let Some(arn) = call.user_arn {
                tally.attrs.add(Attribute::UserIdentityArn, arn, 1.0);
            }
            if let Some(agent) = call.user_agent {
                tally.attrs.add(Attribute::UserAgent, agent, 1.0);
            }
            tally.attrs.add(Attribute::ErrorCode, call.error_code.unwrap_or("null"), 1.0);
        }
        let until = call.minute - lateness;
        if until > region.closed {
            close_until(&self.params, account, region_name, region, until, gate, &mut self.events, &mut self.points);
        }
    }

    /// Closes, in every Region whose latest call is at most `live_within` minutes before `now`,
    /// the minutes before `now - lateness`: live traffic that stops still ends its insights and
    /// drops still show, while a Region fed only old records (an import, a replay) keeps its
    /// own clock.
    pub fn advance_live(&mut self, now: Minute, live_within: i64, gate: &dyn Gate) {
        let until = now - i64::from(self.params.lateness_minutes);
        for (account, regions) in &mut self.accounts {
            for (name, region) in regions.iter_mut() {
                if region.latest >= now - live_within && until > region.closed {
                    close_until(&self.params, account, name, region, until, gate, &mut self.events, &mut self.points);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Call = 0,
    Error = 1,
}

impl KeyKind {
    fn into_key(self, call: &Call<'_>) -> SeriesKey {
        SeriesKey {
            insight_type: match self {
                Self::Call => InsightType::ApiCallRateInsight,
                Self::Error => InsightType::ApiErrorRateInsight,
            },
            event_source: call.event_source.to_owned(),
            event_name: call.event_name.to_owned(),
            error_code: (self == Self::Error).then(|| call.error_code.unwrap_or_default().to_owned()),
        }
    }
}

/// The series a call counts in: write calls in the call rate, failed calls in the error rate.
fn keys_of(call: &Call<'_>) -> impl Iterator<Item = KeyKind> {
    [(call.write, KeyKind::Call), (call.error_code.is_some(), KeyKind::Error)]
        .into_iter()
        .filter_map(|(counts, kind)| counts.then_some(kind))
}

/// Closes every minute of `region` below `until`. A gap longer than the baseline is skipped in
/// one step: nothing in it is left to count or compare.
#[allow(clippy::too_many_arguments)]
fn close_until(
    params: &InsightParams,
    account: &str,
    region_name: &str,
    region: &mut Region,
    until: Minute,
    gate: &dyn Gate,
    events: &mut Vec<InsightEvent>,
    points: &mut Vec<Point>,
) {
    let skip_to = until - i64::from(params.baseline_minutes) - params.recent_minutes() as i64 - 60;
    if region.closed < skip_to && region.series.values().all(|series| series.pending.keys().all(|m| *m >= skip_to)) {
        region.closed = skip_to;
    }
    while region.closed < until {
        let minute = region.closed;
        let have_baseline = minute.div_euclid(60) * 60 - region.first >= i64::from(params.baseline_minutes);
        for series in region.series.values_mut() {
            let closed = series.close(minute, params);
            if closed.count > 0 {
                points.push(Point {
                    account: account.to_owned(),
                    region: region_name.to_owned(),
                    key: series.key.clone(),
                    minute,
                    count: closed.count,
                });
            }
            if let Some(event) = evaluate(params, account, region_name, series, minute, &closed, have_baseline, gate) {
                events.push(event);
            }
        }
        region.series.retain(|_, series| !series.is_idle());
        region.closed = minute + 1;
    }
}

/// Decides, with minute `minute` just closed, whether the series' insight starts or ends.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    params: &InsightParams,
    account: &str,
    region: &str,
    series: &mut Series,
    minute: Minute,
    closed: &MinuteTally,
    have_baseline: bool,
    gate: &dyn Gate,
) -> Option<InsightEvent> {
    let baseline_minutes = f64::from(params.baseline_minutes);
    let mean = series.base_count as f64 / baseline_minutes;
    let variance = (series.base_sum_squares as f64 / baseline_minutes - mean * mean).max(0.0);
    let expected = mean.max(series.seasonal);
    let window = params.window_minutes as usize;
    let start_level = params
        .min_rate
        .max(params.spike_factor * expected)
        .max(expected + params.spike_sigmas * variance.sqrt() / (window as f64).sqrt());
    let event = |series: &Series, state, start: Minute, at: Minute, average: f64, duration: u32, attrs: &Tally| {
        let shared_event_id = series.open.as_ref().map_or_else(
            || event_uuid(&[account, region, &format!("{:?}", series.key), &start.to_string()]),
            |open| open.shared_event_id.clone(),
        );
        let baseline_average = series.open.as_ref().map_or(mean, |open| open.baseline_average);
        let baseline_attrs = series.baseline_attributions(at, params);
        InsightEvent {
            account: account.to_owned(),
            region: region.to_owned(),
            key: series.key.clone(),
            state,
            event_id: event_uuid(&[&shared_event_id, state.name()]),
            shared_event_id,
            minute: at,
            baseline_average,
            insight_average: average,
            insight_duration: duration,
            baseline_duration: params.baseline_minutes,
            attributions: Attribute::ALL
                .into_iter()
                .map(|attribute| Attribution {
                    attribute: attribute.name(),
                    insight: attrs.top(attribute, f64::from(duration.max(1))),
                    baseline: baseline_attrs.top(attribute, baseline_minutes),
                })
                .collect(),
        }
    };

    let cooldown = params.cooldown_minutes as usize;
    let calm = series.sum_last(cooldown);
    if let Some(open) = &mut series.open {
        open.count += u64::from(closed.count);
        open.attrs.merge(&closed.attrs);
        let calm_rate = calm as f64 / cooldown as f64;
        let ended = match open.shape {
            Shape::Burst => calm_rate < open.end_level,
            Shape::Drop => calm_rate >= open.end_level,
        };
        if !ended {
            return None;
        }
        let end = minute + 1 - cooldown as Minute;
        let duration = (end - open.start).max(1) as u32;
        let average = open.count.saturating_sub(calm) as f64 / f64::from(duration);
        let (start, attrs) = (open.start, open.attrs.clone());
        let end_event = event(series, InsightState::End, start, end.max(start + 1), average, duration, &attrs);
        series.open = None;
        series.quiet_until = minute + 1 + cooldown as Minute;
        return Some(end_event);
    }

    if !have_baseline || minute < series.quiet_until || series.recent.len() < params.recent_minutes() {
        return None;
    }
    let burst_rate = series.sum_last(window) as f64 / window as f64;
    let drop_window = params.drop_window_minutes as usize;
    let drop_rate = series.sum_last(drop_window) as f64 / drop_window as f64;
    let (shape, minutes, rate, end_level) = if burst_rate >= start_level {
        (Shape::Burst, window, burst_rate, expected + params.end_level * (start_level - expected))
    } else if series.key.insight_type == InsightType::ApiCallRateInsight
        && expected >= params.drop_min_rate
        && drop_rate <= params.drop_fraction * expected
    {
        (Shape::Drop, drop_window, drop_rate, params.end_level * expected)
    } else {
        return None;
    };
    if !gate.enabled(account, region, series.key.insight_type) {
        return None;
    }
    // The onset: the trailing run of unusual minutes in the window (the whole window when the
    // rate crossed the threshold without single minutes doing so).
    let unusual = |count: u32| match shape {
        Shape::Burst => f64::from(count) > end_level,
        Shape::Drop => f64::from(count) <= end_level,
    };
    let run = series.recent.iter().rev().take(minutes).take_while(|tally| unusual(tally.count)).count();
    let minutes = if run == 0 { minutes } else { run };
    let rate = if run == 0 { rate } else { series.sum_last(minutes) as f64 / minutes as f64 };
    let start = minute + 1 - minutes as Minute;
    let attrs = series.attrs_last(minutes);
    let start_event = event(series, InsightState::Start, start, start, rate, minutes as u32, &attrs);
    series.open = Some(Open {
        shared_event_id: start_event.shared_event_id.clone(),
        shape,
        start,
        baseline_average: mean,
        end_level,
        count: series.sum_last(minutes),
        attrs,
    });
    Some(start_event)
}

/// A UUID-shaped ID derived from its parts: a Start or End raised again after a crash gets the
/// ID it had, so the journal can be searched for it and it is never raised twice.
fn event_uuid(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0x1f]);
    }
    let bytes = hash.finalize();
    let hex: String = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn always(_: &str, _: &str, _: InsightType) -> bool {
        true
    }

    fn call(minute: Minute, name: &'static str, error: Option<&'static str>) -> Call<'static> {
        Call {
            minute,
            event_source: "ec2.amazonaws.com",
            event_name: name,
            write: error.is_none(),
            error_code: error,
            user_arn: Some("arn:aws:iam::111111111111:user/alice"),
            user_agent: Some("aws-cli/2"),
        }
    }

    /// `per_minute` calls of RunInstances every minute of `[from, to)`.
    fn steady(detector: &mut Detector, from: Minute, to: Minute, per_minute: u32, gate: &dyn Gate) {
        for minute in from..to {
            for _ in 0..per_minute {
                detector.observe("111111111111", "us-east-1", &call(minute, "RunInstances", None), gate);
            }
        }
    }

    const WEEK: Minute = 7 * 24 * 60;

    #[test]
    fn a_burst_opens_once_and_closes_with_the_shapes_the_records_need() {
        let mut detector = Detector::new(InsightParams::default());
        steady(&mut detector, 0, WEEK + 120, 3, &always);
        assert!(detector.take_output().0.is_empty(), "steady traffic raises nothing");
        steady(&mut detector, WEEK + 120, WEEK + 130, 60, &always);
        steady(&mut detector, WEEK + 130, WEEK + 160, 3, &always);
        let (events, points) = detector.take_output();
        let states: Vec<_> = events.iter().map(|event| event.state).collect();
        assert_eq!(states, [InsightState::Start, InsightState::End], "{events:#?}");
        let (start, end) = (&events[0], &events[1]);
        assert_eq!(start.shared_event_id, end.shared_event_id);
        assert_ne!(start.event_id, end.event_id);
        assert!((start.baseline_average - 3.0).abs() < 0.1, "{}", start.baseline_average);
        assert_eq!((start.minute, start.insight_duration), (WEEK + 120, 1), "the onset is the first unusual minute");
        assert_eq!(start.insight_average, 60.0);
        assert_eq!(end.minute, WEEK + 130);
        assert_eq!(end.insight_duration as Minute, end.minute - start.minute);
        assert!((end.insight_average - 60.0).abs() < 10.0, "{}", end.insight_average);
        let arns = &start.attributions[0];
        assert_eq!(arns.attribute, "userIdentityArn");
        assert_eq!(arns.insight[0].0, "arn:aws:iam::111111111111:user/alice");
        assert_eq!(start.attributions[2].insight[0].0, "null");
        assert!(!points.is_empty());
    }

    #[test]
    fn no_insight_without_a_baseline_nor_when_no_selector_asks() {
        let mut detector = Detector::new(InsightParams::default());
        steady(&mut detector, 0, 600, 3, &always);
        steady(&mut detector, 600, 620, 100, &always);
        assert!(detector.take_output().0.is_empty(), "a burst on the first day is no insight");
        let never = |_: &str, _: &str, _: InsightType| false;
        let mut detector = Detector::new(InsightParams::default());
        steady(&mut detector, 0, WEEK + 120, 3, &never);
        steady(&mut detector, WEEK + 120, WEEK + 130, 60, &never);
        assert!(detector.take_output().0.is_empty());
    }

    #[test]
    fn a_drop_of_a_steady_rate_raises_a_call_rate_insight() {
        let mut detector = Detector::new(InsightParams::default());
        let gate = &always;
        for minute in 0..WEEK + 200 {
            let name = if minute < WEEK + 120 { 10 } else { 0 };
            for _ in 0..name {
                detector.observe("111111111111", "us-east-1", &call(minute, "PutObject", None), gate);
            }
            // Other traffic keeps the clock going.
            detector.observe("111111111111", "us-east-1", &call(minute, "RunInstances", None), gate);
        }
        let events = detector.take_output().0;
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].key.event_name, "PutObject");
        assert_eq!(events[0].state, InsightState::Start);
        assert!(events[0].insight_average < 1.0);
    }

    #[test]
    fn a_snapshot_restores_the_same_state_and_an_open_insight_ends_once() {
        let mut detector = Detector::new(InsightParams::default());
        steady(&mut detector, 0, WEEK + 120, 3, &always);
        steady(&mut detector, WEEK + 120, WEEK + 126, 60, &always);
        assert_eq!(detector.take_output().0.len(), 1);
        let mut restored = Detector::restore(&detector.snapshot(), InsightParams::default()).unwrap();
        assert_eq!(restored.series_count(), detector.series_count());
        steady(&mut restored, WEEK + 126, WEEK + 160, 3, &always);
        let events = restored.take_output().0;
        assert_eq!(events.iter().map(|e| e.state).collect::<Vec<_>>(), [InsightState::End]);
    }

    #[test]
    fn errors_count_per_code_and_late_calls_only_in_the_metric_series() {
        let mut detector = Detector::new(InsightParams::default());
        steady(&mut detector, 0, WEEK + 120, 2, &always);
        for minute in WEEK + 120..WEEK + 130 {
            for _ in 0..40 {
                detector.observe(
                    "111111111111",
                    "us-east-1",
                    &call(minute, "RunInstances", Some("AccessDenied")),
                    &always,
                );
            }
            steady(&mut detector, minute, minute + 1, 2, &always);
        }
        steady(&mut detector, WEEK + 130, WEEK + 150, 2, &always);
        let events = detector.take_output().0;
        let error_events: Vec<_> =
            events.iter().filter(|e| e.key.insight_type == InsightType::ApiErrorRateInsight).collect();
        assert_eq!(error_events.len(), 2, "{events:#?}");
        assert_eq!(error_events[0].key.error_code.as_deref(), Some("AccessDenied"));
        assert_eq!(error_events[0].attributions[2].insight[0].0, "AccessDenied");
        assert!(events.iter().all(|e| e.key.insight_type == InsightType::ApiErrorRateInsight), "{events:#?}");
        detector.observe("111111111111", "us-east-1", &call(5, "RunInstances", None), &always);
        assert_eq!(detector.late_calls, 1);
        assert_eq!(detector.take_output().1.len(), 1);
    }

    #[test]
    fn ids_are_derived_and_uuid_shaped() {
        let id = event_uuid(&["a", "b"]);
        assert_eq!(id, event_uuid(&["a", "b"]));
        assert_ne!(id, event_uuid(&["ab"]));
        assert_eq!(id.len(), 36);
        assert_eq!(id.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
    }
}
