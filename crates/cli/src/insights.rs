//! `opentrail insights list|show`: CloudTrail Insights from the command line, against a running
//! OpenTrail (or CloudTrail itself), signed the way the aws CLI signs. `list` pairs the Start and
//! End Insights events of Event History into one line per insight; `show` prints one insight, its
//! metric series (ListInsightsMetricData) as a text chart, and its attributions.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::client::Connection;
use crate::times::{format_time, parse_time};

/// Event History keeps this many days, so `show` looks no further back.
const HISTORY_DAYS: i64 = 90;
/// The metric series starts this long before the insight and ends this long after it.
const MINUTES_BEFORE: i64 = 60;
const MINUTES_AFTER: i64 = 30;
/// The chart: bar width in characters, and at most this many rows (minutes are bucketed).
const CHART_WIDTH: usize = 50;
const CHART_ROWS: usize = 60;

#[derive(clap::Args)]
pub struct InsightsArgs {
    #[command(subcommand)]
    command: InsightsCommand,
}

#[derive(clap::Args)]
struct ConnectionArgs {
    /// Where the server is (default: AWS_ENDPOINT_URL_CLOUDTRAIL, AWS_ENDPOINT_URL, or
    /// http://127.0.0.1:4590).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Region whose Insights to read (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1).
    #[arg(long)]
    region: Option<String>,
}

#[derive(clap::Subcommand)]
enum InsightsCommand {
    /// One line per insight (Start and End events paired by sharedEventID), newest first.
    List {
        /// From when: a time ago (30m, 2h, 7d), RFC 3339 or epoch seconds.
        #[arg(long, default_value = "7d")]
        since: String,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// One insight: its facts, its metric series as a chart, and its attributions.
    Show {
        /// The insight's ID (its sharedEventID, as `list` prints it) or the eventID of its Start
        /// or End event.
        id: String,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

pub fn run(args: InsightsArgs) -> Result<()> {
    let outcome = match args.command {
        InsightsCommand::List { since, connection } => {
            let connection = Connection::from_env(connection.endpoint_url, connection.region)?;
            list(&connection, &since)
        }
        InsightsCommand::Show { id, connection } => {
            let connection = Connection::from_env(connection.endpoint_url, connection.region)?;
            show(&connection, &id)
        }
    };
    // A reader that goes away (`opentrail insights list | head`) ends the command quietly.
    match outcome {
        Err(error) if is_broken_pipe(&error) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

// ---------------------------------------------------------------------------------------------
// Insights records and their pairing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Start,
    End,
}

/// `insightContext.statistics`: averages per minute, durations in minutes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statistics {
    pub baseline_average: Option<f64>,
    pub insight_average: Option<f64>,
    pub insight_duration: Option<f64>,
    pub baseline_duration: Option<f64>,
}

/// One `insightContext.attributions` entry: the top values of one attribute, with their
/// averages per minute during the insight and during the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub attribute: String,
    pub insight: Vec<(String, f64)>,
    pub baseline: Vec<(String, f64)>,
}

/// One Insights event (a Start or an End).
#[derive(Debug, Clone, PartialEq)]
pub struct InsightRecord {
    pub event_id: String,
    pub shared_event_id: String,
    pub time: DateTime<Utc>,
    pub state: State,
    pub event_source: String,
    pub event_name: String,
    pub insight_type: String,
    pub error_code: Option<String>,
    pub statistics: Statistics,
    pub attributions: Vec<Attribution>,
}

fn required<'a>(value: &'a Value, name: &str) -> Result<&'a str> {
    value.as_str().filter(|text| !text.is_empty()).with_context(|| format!("the record has no {name}"))
}

/// A time as CloudTrail writes one (RFC 3339) or as AWS JSON 1.1 sends one (epoch seconds).
fn read_time(value: &Value) -> Option<DateTime<Utc>> {
    let from_seconds = |seconds: f64| {
        if seconds.is_finite() { DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64) } else { None }
    };
    match value {
        Value::Number(number) => number.as_f64().and_then(from_seconds),
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .map(|time| time.with_timezone(&Utc))
            .ok()
            .or_else(|| text.parse::<f64>().ok().and_then(from_seconds)),
        _ => None,
    }
}

fn read_values(list: &Value) -> Vec<(String, f64)> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let value = match &entry["value"] {
                Value::String(text) => text.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            Some((value, entry["average"].as_f64()?))
        })
        .collect()
}

impl InsightRecord {
    /// Reads an Insights record (the JSON CloudTrail writes).
    pub fn from_json(record: &Value) -> Result<Self> {
        let details = &record["insightDetails"];
        if !details.is_object() {
            bail!("the record has no insightDetails");
        }
        let state = match required(&details["state"], "insightDetails.state")? {
            "Start" => State::Start,
            "End" => State::End,
            other => bail!("unknown insightDetails.state {other:?}"),
        };
        let time = read_time(&record["eventTime"]).context("the record has no readable eventTime")?;
        let statistics = &details["insightContext"]["statistics"];
        let attributions = details["insightContext"]["attributions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                Some(Attribution {
                    attribute: entry["attribute"].as_str()?.to_owned(),
                    insight: read_values(&entry["insight"]),
                    baseline: read_values(&entry["baseline"]),
                })
            })
            .collect();
        Ok(Self {
            event_id: required(&record["eventID"], "eventID")?.to_owned(),
            shared_event_id: required(&record["sharedEventID"], "sharedEventID")?.to_owned(),
            time,
            state,
            event_source: required(&details["eventSource"], "insightDetails.eventSource")?.to_owned(),
            event_name: required(&details["eventName"], "insightDetails.eventName")?.to_owned(),
            insight_type: required(&details["insightType"], "insightDetails.insightType")?.to_owned(),
            error_code: details["errorCode"].as_str().filter(|code| !code.is_empty()).map(str::to_owned),
            statistics: Statistics {
                baseline_average: statistics["baseline"]["average"].as_f64(),
                insight_average: statistics["insight"]["average"].as_f64(),
                insight_duration: statistics["insightDuration"].as_f64(),
                baseline_duration: statistics["baselineDuration"].as_f64(),
            },
            attributions,
        })
    }

    /// Reads the `CloudTrailEvent` of one `Event` of a LookupEvents answer.
    pub fn from_event(event: &Value) -> Result<Self> {
        let text = event["CloudTrailEvent"].as_str().context("the event has no CloudTrailEvent")?;
        let record: Value = serde_json::from_str(text).context("the CloudTrailEvent is not JSON")?;
        Self::from_json(&record)
    }
}

/// One insight: its Start and (once it is over) its End event.
#[derive(Debug, Clone, PartialEq)]
pub struct Insight {
    /// The sharedEventID of its events.
    pub id: String,
    pub insight_type: String,
    pub event_source: String,
    pub event_name: String,
    pub error_code: Option<String>,
    /// `None` when the Start event was not among the records (before the period looked at).
    pub started: Option<DateTime<Utc>>,
    pub start_event_id: Option<String>,
    /// `None` while the insight is open.
    pub ended: Option<DateTime<Utc>>,
    pub end_event_id: Option<String>,
    /// The End's statistics where it has them (they are final), else the Start's.
    pub statistics: Statistics,
    pub attributions: Vec<Attribution>,
}

impl Insight {
    /// Its length in minutes, and whether it is still going (then the length so far).
    pub fn duration_minutes(&self, now: DateTime<Utc>) -> Option<(f64, bool)> {
        let minutes = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_seconds() as f64 / 60.0;
        match (self.started, self.ended) {
            (started, Some(ended)) => {
                self.statistics.insight_duration.or_else(|| started.map(|s| minutes(s, ended))).map(|m| (m, false))
            }
            (Some(started), None) => Some((minutes(started, now), true)),
            (None, None) => None,
        }
    }

    /// When it started: the Start's time, else the End's time less the insight's duration.
    pub fn window_start(&self) -> Option<DateTime<Utc>> {
        self.started.or_else(|| {
            let minutes = self.statistics.insight_duration?;
            Some(self.ended? - Duration::seconds((minutes * 60.0).round() as i64))
        })
    }

    pub fn is_error_rate(&self) -> bool {
        self.insight_type == "ApiErrorRateInsight"
    }
}

/// Pairs Start and End events by sharedEventID into insights, newest first (by start, or by
/// end for an insight whose Start is missing). A repeated event is counted once.
pub fn pair(records: Vec<InsightRecord>) -> Vec<Insight> {
    let mut pairs: Vec<(String, Option<InsightRecord>, Option<InsightRecord>)> = Vec::new();
    for record in records {
        let index = match pairs.iter().position(|(id, _, _)| *id == record.shared_event_id) {
            Some(index) => index,
            None => {
                pairs.push((record.shared_event_id.clone(), None, None));
                pairs.len() - 1
            }
        };
        let slot = match record.state {
            State::Start => &mut pairs[index].1,
            State::End => &mut pairs[index].2,
        };
        if slot.is_none() {
            *slot = Some(record);
        }
    }
    let mut insights: Vec<Insight> = pairs
        .into_iter()
        .filter_map(|(id, start, end)| {
            let identity = start.as_ref().or(end.as_ref())?.clone();
            let pick = |field: fn(&Statistics) -> Option<f64>| {
                end.as_ref()
                    .and_then(|e| field(&e.statistics))
                    .or_else(|| start.as_ref().and_then(|s| field(&s.statistics)))
            };
            let statistics = Statistics {
                baseline_average: pick(|s| s.baseline_average),
                insight_average: pick(|s| s.insight_average),
                insight_duration: end.as_ref().and_then(|e| e.statistics.insight_duration),
                baseline_duration: pick(|s| s.baseline_duration),
            };
            let attributions = match (&start, &end) {
                (_, Some(end)) if !end.attributions.is_empty() => end.attributions.clone(),
                (Some(start), _) => start.attributions.clone(),
                _ => Vec::new(),
            };
            Some(Insight {
                id,
                insight_type: identity.insight_type,
                event_source: identity.event_source,
                event_name: identity.event_name,
                error_code: identity.error_code,
                started: start.as_ref().map(|s| s.time),
                start_event_id: start.as_ref().map(|s| s.event_id.clone()),
                ended: end.as_ref().map(|e| e.time),
                end_event_id: end.as_ref().map(|e| e.event_id.clone()),
                statistics,
                attributions,
            })
        })
        .collect();
    insights.sort_by(|a, b| {
        let when = |insight: &Insight| insight.started.or(insight.ended);
        when(b).cmp(&when(a)).then_with(|| a.id.cmp(&b.id))
    });
    insights
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// `45m`, `2h05m`, `3d04h`.
pub fn format_minutes(minutes: f64) -> String {
    let minutes = if minutes.is_finite() { minutes.max(0.0).round() as i64 } else { 0 };
    match minutes {
        0..60 => format!("{minutes}m"),
        60..1440 => format!("{}h{:02}m", minutes / 60, minutes % 60),
        _ => format!("{}d{:02}h", minutes / 1440, minutes % 1440 / 60),
    }
}

fn average(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn time_or(time: Option<DateTime<Utc>>, missing: &str) -> String {
    time.map_or_else(|| missing.to_owned(), format_time)
}

/// The `list` table: one line per insight, columns as wide as their widest cell.
pub fn render_list(insights: &[Insight], now: DateTime<Utc>) -> String {
    const HEADERS: [&str; 10] =
        ["ID", "TYPE", "SOURCE", "NAME", "ERROR", "STARTED", "ENDED", "DURATION", "BASELINE/MIN", "INSIGHT/MIN"];
    // Columns from DURATION on are numbers: right-aligned.
    const FIRST_NUMBER: usize = 7;
    let rows: Vec<[String; 10]> = insights
        .iter()
        .map(|insight| {
            let duration = match insight.duration_minutes(now) {
                Some((minutes, false)) => format_minutes(minutes),
                Some((minutes, true)) => format!("{}+", format_minutes(minutes)),
                None => "-".to_owned(),
            };
            [
                insight.id.clone(),
                insight.insight_type.clone(),
                insight.event_source.clone(),
                insight.event_name.clone(),
                insight.error_code.clone().unwrap_or_else(|| "-".into()),
                time_or(insight.started, "-"),
                time_or(insight.ended, "open"),
                duration,
                average(insight.statistics.baseline_average),
                average(insight.statistics.insight_average),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| if i >= FIRST_NUMBER { format!("{cell:>w$}") } else { format!("{cell:<w$}") })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(&HEADERS.map(str::to_owned)));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row));
    }
    let open = insights.iter().filter(|i| i.ended.is_none() && i.started.is_some()).count();
    let noun = if insights.len() == 1 { "insight" } else { "insights" };
    let _ = writeln!(out, "{} {noun} ({open} open)", insights.len());
    out
}

/// What the chart marks besides the series.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartMarks {
    /// The insight's window; `end: None` while it is open.
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    /// The baseline average per minute, drawn as `|`.
    pub baseline: Option<f64>,
}

/// Minutes per chart row: the smallest round size that fits `span_minutes` in `max_rows` rows.
pub fn bucket_minutes(span_minutes: i64, max_rows: usize) -> i64 {
    let max_rows = max_rows.max(1) as i64;
    let fits = |size: i64| (span_minutes + size - 1) / size <= max_rows;
    [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440].into_iter().find(|size| fits(*size)).unwrap_or_else(|| {
        let days = (span_minutes + max_rows * 1440 - 1) / (max_rows * 1440);
        days.max(1) * 1440
    })
}

/// The series as a text chart: one row per bucket of minutes (time of the bucket's start, the
/// average per minute in it, a bar of `#` scaled to the largest average or the baseline), the
/// baseline average as a `|` in every bar, rows inside the insight marked `>`, and the rows
/// where it starts and ends annotated.
pub fn render_chart(points: &[(DateTime<Utc>, f64)], marks: &ChartMarks, width: usize, max_rows: usize) -> String {
    let mut out = String::new();
    let mut points = points.to_vec();
    points.sort_by_key(|(time, _)| *time);
    let (Some((first, _)), Some((last, _))) = (points.first(), points.last()) else {
        out.push_str("(no metric data)\n");
        return out;
    };
    let width = width.max(1);
    let span = (*last - *first).num_minutes() + 1;
    let size = bucket_minutes(span, max_rows);
    let key = |time: &DateTime<Utc>| time.timestamp().div_euclid(size * 60);
    let (first_key, last_key) = (key(first), key(last));
    let mut buckets: Vec<(DateTime<Utc>, f64, usize)> =
        (first_key..=last_key).filter_map(|k| Some((DateTime::from_timestamp(k * size * 60, 0)?, 0.0, 0))).collect();
    for (time, value) in &points {
        if let Some(bucket) = buckets.get_mut((key(time) - first_key) as usize) {
            bucket.1 += value;
            bucket.2 += 1;
        }
    }
    let rows: Vec<(DateTime<Utc>, f64)> = buckets
        .into_iter()
        .map(|(start, sum, count)| (start, if count == 0 { 0.0 } else { sum / count as f64 }))
        .collect();
    let largest = rows.iter().map(|(_, v)| *v).chain(marks.baseline).fold(0.0_f64, f64::max);
    let cells = |value: f64| {
        if largest > 0.0 && value.is_finite() {
            ((value / largest * width as f64).round() as usize).min(width)
        } else {
            0
        }
    };
    let value_width = rows.iter().map(|(_, v)| format!("{v:.2}").len()).chain(["AVG/MIN".len()]).max().unwrap_or(7);
    let _ = writeln!(
        out,
        "  {:<16}  {:>value_width$}  0{}{largest:.2}",
        "TIME (UTC)",
        "AVG/MIN",
        " ".repeat(width.saturating_sub(format!("{largest:.2}").len()))
    );
    let bucket = Duration::minutes(size);
    for (start, value) in &rows {
        let end = *start + bucket;
        let inside = *start <= marks.end.unwrap_or(DateTime::<Utc>::MAX_UTC) && end > marks.start;
        let mut bar: Vec<char> = vec![' '; width + 1];
        for cell in bar.iter_mut().take(cells(*value)) {
            *cell = '#';
        }
        if let Some(baseline) = marks.baseline {
            bar[cells(baseline)] = '|';
        }
        let mut notes = Vec::new();
        if (*start..end).contains(&marks.start) {
            notes.push("insight starts");
        }
        if let Some(ended) = marks.end
            && (*start..end).contains(&ended)
        {
            notes.push("insight ends");
        }
        let bar: String = bar.into_iter().collect();
        let mut line = format!(
            "{} {}  {:>value_width$}  {bar}",
            if inside { '>' } else { ' ' },
            start.format("%Y-%m-%d %H:%M"),
            format!("{value:.2}")
        );
        if notes.is_empty() {
            line.truncate(line.trim_end().len());
        } else {
            let _ = write!(line, "  <- {}", notes.join(", "));
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = write!(out, "'#' average per minute in each {}-minute row, scaled to {largest:.2}", size);
    if let Some(baseline) = marks.baseline {
        let _ = write!(out, "; '|' baseline average {baseline:.2}");
    }
    let _ = writeln!(out, "; '>' rows inside the insight");
    out
}

/// The attributions: per attribute, each value with its average per minute during the insight
/// and during the baseline (`-` where the value is not among that period's top values).
pub fn render_attributions(attributions: &[Attribution]) -> String {
    let mut out = String::new();
    if attributions.is_empty() {
        out.push_str("  (none)\n");
        return out;
    }
    for attribution in attributions {
        let _ = writeln!(out, "  {}", attribution.attribute);
        let mut values: Vec<&str> = attribution.insight.iter().map(|(v, _)| v.as_str()).collect();
        for (value, _) in &attribution.baseline {
            if !values.contains(&value.as_str()) {
                values.push(value);
            }
        }
        let find =
            |list: &[(String, f64)], value: &str| average(list.iter().find(|(v, _)| v == value).map(|(_, a)| *a));
        let w = values.iter().map(|v| v.chars().count()).chain(["VALUE".len()]).max().unwrap_or(5);
        let _ = writeln!(out, "    {:<w$}  {:>11}  {:>12}", "VALUE", "INSIGHT AVG", "BASELINE AVG");
        for value in values {
            let _ = writeln!(
                out,
                "    {value:<w$}  {:>11}  {:>12}",
                find(&attribution.insight, value),
                find(&attribution.baseline, value)
            );
        }
    }
    out
}

/// The facts `show` prints above the chart.
pub fn render_header(insight: &Insight, now: DateTime<Utc>) -> String {
    let unit = if insight.is_error_rate() { "errors" } else { "calls" };
    let with_event = |time: Option<DateTime<Utc>>, id: &Option<String>, missing: &str| match (time, id) {
        (Some(time), Some(id)) => format!("{} (event {id})", format_time(time)),
        _ => missing.to_owned(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "Insight   {}", insight.id);
    let _ = writeln!(out, "Type      {}", insight.insight_type);
    let _ = writeln!(out, "API       {} {}", insight.event_source, insight.event_name);
    if let Some(code) = &insight.error_code {
        let _ = writeln!(out, "Error     {code}");
    }
    let _ = writeln!(out, "Started   {}", with_event(insight.started, &insight.start_event_id, "- (no Start event)"));
    let _ = writeln!(out, "Ended     {}", with_event(insight.ended, &insight.end_event_id, "open"));
    let duration = match insight.duration_minutes(now) {
        Some((minutes, false)) => format_minutes(minutes),
        Some((minutes, true)) => format!("{} so far", format_minutes(minutes)),
        None => "-".to_owned(),
    };
    let _ = writeln!(out, "Duration  {duration}");
    let statistics = &insight.statistics;
    let over = statistics.baseline_duration.map(|m| format!(" over {}", format_minutes(m))).unwrap_or_default();
    let _ = writeln!(out, "Baseline  {} {unit}/min{over}", average(statistics.baseline_average));
    let _ = writeln!(out, "Insight   {} {unit}/min", average(statistics.insight_average));
    out
}

// ---------------------------------------------------------------------------------------------
// Talking to the server.

fn epoch(time: DateTime<Utc>) -> f64 {
    time.timestamp_millis() as f64 / 1000.0
}

/// Calls `operation` page after page (each body with the previous answer's NextToken) until
/// there is no NextToken or `page` says stop.
fn paginate(
    connection: &Connection,
    operation: &str,
    body: &Value,
    mut page: impl FnMut(&Value) -> Result<bool>,
) -> Result<()> {
    let mut token: Option<String> = None;
    loop {
        let mut body = body.clone();
        if let Some(token) = &token {
            body["NextToken"] = json!(token);
        }
        let answer = connection.call(operation, &body)?;
        if !page(&answer)? {
            return Ok(());
        }
        let next = answer["NextToken"].as_str().filter(|t| !t.is_empty()).map(str::to_owned);
        if next.is_some() && next == token {
            bail!("{operation} answered the same NextToken twice");
        }
        match next {
            Some(next) => token = Some(next),
            None => return Ok(()),
        }
    }
}

/// The Insights events LookupEvents finds for `body` (EventCategory is added), handed to
/// `visit` newest first until it answers false. Returns how many events were not readable
/// Insights records, and the first reason.
fn lookup_insights(
    connection: &Connection,
    mut body: Value,
    mut visit: impl FnMut(InsightRecord) -> bool,
) -> Result<(usize, Option<String>)> {
    body["EventCategory"] = json!("insight");
    body["MaxResults"] = json!(50);
    let (mut unreadable, mut reason) = (0, None);
    paginate(connection, "LookupEvents", &body, |page| {
        for event in page["Events"].as_array().into_iter().flatten() {
            match InsightRecord::from_event(event) {
                Ok(record) => {
                    if !visit(record) {
                        return Ok(false);
                    }
                }
                Err(error) => {
                    unreadable += 1;
                    reason.get_or_insert_with(|| format!("{error:#}"));
                }
            }
        }
        Ok(true)
    })?;
    Ok((unreadable, reason))
}

fn report_unreadable(unreadable: usize, reason: Option<String>) {
    if unreadable > 0 {
        eprintln!(
            "skipped {unreadable} Insights events that are not readable Insights records ({})",
            reason.unwrap_or_default()
        );
    }
}

fn list(connection: &Connection, since: &str) -> Result<()> {
    let now = Utc::now();
    let start = parse_time(since, now)?;
    let mut records = Vec::new();
    let (unreadable, reason) = lookup_insights(connection, json!({"StartTime": epoch(start)}), |record| {
        records.push(record);
        true
    })?;
    let insights = pair(records);
    let mut out = std::io::stdout().lock();
    out.write_all(render_list(&insights, now).as_bytes())?;
    out.flush()?;
    report_unreadable(unreadable, reason);
    Ok(())
}

/// The events of the insight `id` (its sharedEventID, or the eventID of one of its events).
fn find_insight(connection: &Connection, id: &str, now: DateTime<Utc>) -> Result<Insight> {
    if id.is_empty() {
        bail!("give the insight's ID (its sharedEventID or an eventID)");
    }
    let oldest = now - Duration::days(HISTORY_DAYS);
    let mut found = None;
    let by_event_id = json!({"LookupAttributes": [{"AttributeKey": "EventId", "AttributeValue": id}]});
    let (mut unreadable, mut reason) = lookup_insights(connection, by_event_id, |record| {
        found = Some(record);
        false
    })?;
    let mut records = Vec::new();
    let shared = match found {
        Some(record) => {
            // The other event is after a Start, or before an End.
            let window = match record.state {
                State::Start => json!({"StartTime": epoch(record.time - Duration::seconds(1))}),
                State::End => json!({"StartTime": epoch(oldest), "EndTime": epoch(record.time + Duration::seconds(1))}),
            };
            let shared = record.shared_event_id.clone();
            records.push(record);
            let (more, why) = lookup_insights(connection, window, |candidate| {
                if candidate.shared_event_id == shared && !records.iter().any(|r| r.state == candidate.state) {
                    records.push(candidate);
                }
                records.len() < 2
            })?;
            unreadable += more;
            reason = reason.or(why);
            shared
        }
        None => {
            // A sharedEventID is no lookup attribute: read the whole history of Insights events.
            let mut all = Vec::new();
            let (more, why) = lookup_insights(connection, json!({"StartTime": epoch(oldest)}), |record| {
                all.push(record);
                true
            })?;
            unreadable += more;
            reason = reason.or(why);
            let shared = if all.iter().any(|r| r.shared_event_id == id) {
                id.to_owned()
            } else if let Some(record) = all.iter().find(|r| r.event_id == id) {
                record.shared_event_id.clone()
            } else {
                report_unreadable(unreadable, reason);
                bail!("no Insights event with the ID {id} in the last {HISTORY_DAYS} days");
            };
            records = all.into_iter().filter(|r| r.shared_event_id == shared).collect();
            shared
        }
    };
    report_unreadable(unreadable, reason);
    pair(records).into_iter().find(|insight| insight.id == shared).context("the insight's events did not pair")
}

/// One page of ListInsightsMetricData: its points, and its NextToken.
pub fn metric_points(page: &Value) -> Result<Vec<(DateTime<Utc>, f64)>> {
    let timestamps = page["Timestamps"].as_array().map(Vec::as_slice).unwrap_or_default();
    let values = page["Values"].as_array().map(Vec::as_slice).unwrap_or_default();
    if timestamps.len() != values.len() {
        bail!("ListInsightsMetricData answered {} timestamps and {} values", timestamps.len(), values.len());
    }
    timestamps
        .iter()
        .zip(values)
        .map(|(time, value)| {
            let time = read_time(time).with_context(|| format!("ListInsightsMetricData answered the time {time}"))?;
            let value = value.as_f64().with_context(|| format!("ListInsightsMetricData answered the value {value}"))?;
            Ok((time, value))
        })
        .collect()
}

fn metric_series(
    connection: &Connection,
    insight: &Insight,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, f64)>> {
    let mut body = json!({
        "EventSource": insight.event_source,
        "EventName": insight.event_name,
        "InsightType": insight.insight_type,
        "StartTime": epoch(from),
        "EndTime": epoch(to),
        "Period": 60,
        "DataType": "FillWithZeros",
    });
    if insight.is_error_rate()
        && let Some(code) = &insight.error_code
    {
        body["ErrorCode"] = json!(code);
    }
    let mut points = Vec::new();
    paginate(connection, "ListInsightsMetricData", &body, |page| {
        points.extend(metric_points(page)?);
        Ok(true)
    })?;
    Ok(points)
}

fn show(connection: &Connection, id: &str) -> Result<()> {
    let now = Utc::now();
    let insight = find_insight(connection, id, now)?;
    let start = insight.window_start().context("the insight has no Start event and no duration to place it")?;
    let from = start - Duration::minutes(MINUTES_BEFORE);
    let to = (insight.ended.unwrap_or(now) + Duration::minutes(MINUTES_AFTER)).min(now);
    let points = metric_series(connection, &insight, from, to).context("cannot read the insight's metric data")?;
    let marks = ChartMarks { start, end: insight.ended, baseline: insight.statistics.baseline_average };
    let mut out = std::io::stdout().lock();
    write!(out, "{}", render_header(&insight, now))?;
    writeln!(out)?;
    writeln!(out, "Metric data {} .. {} (60-second periods)", format_time(from), format_time(to))?;
    write!(out, "{}", render_chart(&points, &marks, CHART_WIDTH, CHART_ROWS))?;
    writeln!(out)?;
    writeln!(out, "Attributions (average per minute)")?;
    write!(out, "{}", render_attributions(&insight.attributions))?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn record(shared: &str, event_id: &str, state: &str, time: &str, duration: Option<u64>) -> Value {
        let mut statistics =
            json!({"baseline": {"average": 1.5}, "insight": {"average": 12.25}, "baselineDuration": 10080});
        if let Some(minutes) = duration {
            statistics["insightDuration"] = json!(minutes);
            statistics["insight"]["average"] = json!(20.0);
        }
        json!({
            "eventVersion": "1.08", "eventTime": time, "eventID": event_id, "sharedEventID": shared,
            "eventType": "AwsCloudTrailInsight", "eventCategory": "Insight",
            "insightDetails": {
                "state": state, "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
                "insightType": "ApiCallRateInsight",
                "insightContext": {"statistics": statistics, "attributions": [
                    {"attribute": "userIdentityArn",
                     "insight": [{"value": "arn:aws:iam::111111111111:user/alice", "average": 11.0}],
                     "baseline": [{"value": "arn:aws:iam::111111111111:user/bob", "average": 1.0}]}
                ]}
            }
        })
    }

    fn parsed(value: Value) -> InsightRecord {
        InsightRecord::from_json(&value).unwrap()
    }

    #[test]
    fn records_are_read_and_bad_ones_refused() {
        let start = parsed(record("s1", "e1", "Start", "2026-11-25T10:00:00Z", None));
        assert_eq!(start.state, State::Start);
        assert_eq!(start.time, at("2026-11-25T10:00:00Z"));
        assert_eq!(start.statistics.baseline_average, Some(1.5));
        assert_eq!(start.statistics.insight_duration, None);
        assert_eq!(start.attributions[0].insight, vec![("arn:aws:iam::111111111111:user/alice".to_owned(), 11.0)]);
        let event = json!({"EventId": "e1", "CloudTrailEvent": record("s1", "e1", "End", "2026-11-25T10:30:00Z", Some(30)).to_string()});
        assert_eq!(InsightRecord::from_event(&event).unwrap().statistics.insight_duration, Some(30.0));

        let mut bad = record("s1", "e1", "Middle", "2026-11-25T10:00:00Z", None);
        assert!(InsightRecord::from_json(&bad).unwrap_err().to_string().contains("Middle"));
        bad["insightDetails"]["state"] = json!("Start");
        bad["sharedEventID"] = Value::Null;
        assert!(InsightRecord::from_json(&bad).unwrap_err().to_string().contains("sharedEventID"));
        assert!(InsightRecord::from_json(&json!({"eventName": "GetTrail"})).is_err());
        assert!(InsightRecord::from_event(&json!({"CloudTrailEvent": "{not json"})).is_err());
    }

    #[test]
    fn start_and_end_pair_by_shared_event_id_newest_first() {
        let records = vec![
            // Newest first, as LookupEvents answers.
            parsed(record("open", "e5", "Start", "2026-11-25T11:00:00Z", None)),
            parsed(record("done", "e4", "End", "2026-11-25T10:45:00Z", Some(45))),
            parsed(record("done", "e4", "End", "2026-11-25T10:45:00Z", Some(45))),
            parsed(record("done", "e3", "Start", "2026-11-25T10:00:00Z", None)),
            parsed(record("orphan", "e2", "End", "2026-11-24T09:00:00Z", Some(90))),
        ];
        let insights = pair(records);
        let ids: Vec<&str> = insights.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["open", "done", "orphan"]);
        let done = &insights[1];
        assert_eq!(done.started, Some(at("2026-11-25T10:00:00Z")));
        assert_eq!(done.ended, Some(at("2026-11-25T10:45:00Z")));
        assert_eq!((done.start_event_id.as_deref(), done.end_event_id.as_deref()), (Some("e3"), Some("e4")));
        // The End's statistics win: they are final.
        assert_eq!(done.statistics.insight_average, Some(20.0));
        let now = at("2026-11-25T11:20:00Z");
        assert_eq!(done.duration_minutes(now), Some((45.0, false)));
        assert_eq!(insights[0].duration_minutes(now), Some((20.0, true)));
        assert_eq!(insights[0].ended, None);
        let orphan = &insights[2];
        assert_eq!(orphan.started, None);
        assert_eq!(orphan.window_start(), Some(at("2026-11-24T07:30:00Z")));
    }

    #[test]
    fn the_list_is_a_fixed_width_table() {
        let records = vec![
            parsed(record("open", "e5", "Start", "2026-11-25T11:00:00Z", None)),
            parsed(record("done", "e4", "End", "2026-11-25T12:05:00Z", Some(125))),
            parsed(record("done", "e3", "Start", "2026-11-25T10:00:00Z", None)),
        ];
        let text = render_list(&pair(records), at("2026-11-25T12:30:00Z"));
        let expected = "\
ID    TYPE                SOURCE             NAME          ERROR  STARTED               ENDED                 DURATION  BASELINE/MIN  INSIGHT/MIN
open  ApiCallRateInsight  ec2.amazonaws.com  RunInstances  -      2026-11-25T11:00:00Z  open                    1h30m+          1.50        12.25
done  ApiCallRateInsight  ec2.amazonaws.com  RunInstances  -      2026-11-25T10:00:00Z  2026-11-25T12:05:00Z     2h05m          1.50        20.00
2 insights (1 open)
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn bucket_sizes_are_round_and_fit() {
        assert_eq!(bucket_minutes(30, 60), 1);
        assert_eq!(bucket_minutes(60, 60), 1);
        assert_eq!(bucket_minutes(61, 60), 2);
        assert_eq!(bucket_minutes(150, 60), 5);
        assert_eq!(bucket_minutes(600, 60), 10);
        assert_eq!(bucket_minutes(60 * 24 * 90, 60), 2 * 1440);
    }

    #[test]
    fn the_chart_draws_bars_the_baseline_and_the_window() {
        let base = at("2026-11-25T10:00:00Z");
        let values = [1.0, 1.0, 4.0, 8.0, 2.0, 0.0];
        let points: Vec<(DateTime<Utc>, f64)> =
            values.iter().enumerate().map(|(i, v)| (base + Duration::minutes(i as i64), *v)).collect();
        let marks = ChartMarks {
            start: at("2026-11-25T10:02:00Z"),
            end: Some(at("2026-11-25T10:03:30Z")),
            baseline: Some(2.0),
        };
        let chart = render_chart(&points, &marks, 8, 60);
        let expected = [
            "  TIME (UTC)        AVG/MIN  0    8.00",
            "  2026-11-25 10:00     1.00  # |",
            "  2026-11-25 10:01     1.00  # |",
            "> 2026-11-25 10:02     4.00  ##|#       <- insight starts",
            "> 2026-11-25 10:03     8.00  ##|#####   <- insight ends",
            "  2026-11-25 10:04     2.00  ##|",
            "  2026-11-25 10:05     0.00    |",
            "'#' average per minute in each 1-minute row, scaled to 8.00; '|' baseline average 2.00; '>' rows inside \
             the insight",
            "",
        ]
        .join("\n");
        assert_eq!(chart, expected, "\n{chart}");
    }

    #[test]
    fn the_chart_buckets_minutes_and_marks_an_open_window_to_the_end() {
        let base = at("2026-11-25T10:00:00Z");
        // 20 minutes into rows of at most 4: 5-minute buckets, each the average of its minutes.
        let points: Vec<(DateTime<Utc>, f64)> =
            (0..20).map(|i| (base + Duration::minutes(i), if i >= 10 { 6.0 } else { 0.0 })).collect();
        let marks = ChartMarks { start: at("2026-11-25T10:12:00Z"), end: None, baseline: None };
        let chart = render_chart(&points, &marks, 6, 4);
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines.len(), 6, "\n{chart}");
        assert_eq!(lines[1], "  2026-11-25 10:00     0.00");
        assert_eq!(lines[2], "  2026-11-25 10:05     0.00");
        assert_eq!(lines[3], "> 2026-11-25 10:10     6.00  ######   <- insight starts");
        assert_eq!(lines[4], "> 2026-11-25 10:15     6.00  ######");
        assert!(lines[5].starts_with("'#' average per minute in each 5-minute row, scaled to 6.00; '>'"), "{chart}");
        assert_eq!(render_chart(&[], &marks, 6, 4), "(no metric data)\n");
    }

    #[test]
    fn attributions_merge_insight_and_baseline_values() {
        let attributions = vec![Attribution {
            attribute: "userAgent".into(),
            insight: vec![("aws-cli/2".into(), 9.5), ("boto3".into(), 2.0)],
            baseline: vec![("boto3".into(), 1.25), ("console".into(), 0.5)],
        }];
        let expected = "  userAgent
    VALUE      INSIGHT AVG  BASELINE AVG
    aws-cli/2         9.50             -
    boto3             2.00          1.25
    console              -          0.50
";
        assert_eq!(render_attributions(&attributions), expected);
        assert_eq!(render_attributions(&[]), "  (none)\n");
    }

    #[test]
    fn metric_pages_are_read_strictly() {
        let page = json!({"Timestamps": [1795600800, 1795600860.0], "Values": [0.0, 3.5], "NextToken": "t"});
        let points = metric_points(&page).unwrap();
        assert_eq!(points, vec![(at("2026-11-25T10:00:00Z"), 0.0), (at("2026-11-25T10:01:00Z"), 3.5)]);
        assert!(metric_points(&json!({"Timestamps": [1795600800], "Values": []})).is_err());
        assert!(metric_points(&json!({"Timestamps": ["soon"], "Values": [1.0]})).is_err());
        assert!(metric_points(&json!({"Timestamps": [1795600800], "Values": ["x"]})).is_err());
        assert_eq!(metric_points(&json!({})).unwrap(), vec![]);
    }

    #[test]
    fn durations_read_as_minutes_hours_days() {
        assert_eq!(format_minutes(45.0), "45m");
        assert_eq!(format_minutes(125.0), "2h05m");
        assert_eq!(format_minutes(1440.0 * 3.0 + 240.0), "3d04h");
        assert_eq!(format_minutes(-3.0), "0m");
    }

    #[test]
    fn the_header_names_the_events_and_units() {
        let mut end = record("s1", "e2", "End", "2026-11-25T10:30:00Z", Some(30));
        end["insightDetails"]["insightType"] = json!("ApiErrorRateInsight");
        end["insightDetails"]["errorCode"] = json!("AccessDenied");
        let mut start = end.clone();
        start["insightDetails"]["state"] = json!("Start");
        start["eventID"] = json!("e1");
        start["eventTime"] = json!("2026-11-25T10:00:00Z");
        let insight = pair(vec![parsed(end), parsed(start)]).remove(0);
        let header = render_header(&insight, at("2026-11-25T12:00:00Z"));
        assert!(header.contains("Error     AccessDenied\n"), "{header}");
        assert!(header.contains("Started   2026-11-25T10:00:00Z (event e1)\n"), "{header}");
        assert!(header.contains("Ended     2026-11-25T10:30:00Z (event e2)\n"), "{header}");
        assert!(header.contains("Baseline  1.50 errors/min over 7d00h\n"), "{header}");
        assert!(header.contains("Duration  30m\n"), "{header}");
    }
}
