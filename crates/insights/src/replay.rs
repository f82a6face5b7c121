//! The replay harness: weeks of traffic built from real CloudTrail records, with daily and
//! weekly seasonality, quiet nights, and injected bursts and drops. The acceptance tests, the
//! tuning example (`examples/tune.rs`) and the benchmark all build their traffic here.
//!
//! The real records (`../shared/data/real-events`) are a pool of shapes, not a time series:
//! each management call becomes a template whose times, IDs and Region are rewritten. Templates
//! get a rate: a few "automation" write APIs call steadily (some around the clock, some with
//! office hours), the rest share a low background rate with the day's rhythm. Counts per
//! minute are Poisson draws from a seeded generator, so a run is reproducible.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use opentrail_model::{AccountId, EventRecord, Region};

use crate::consumer::observe;
use crate::detector::{Detector, InsightEvent, InsightType, Minute};
use crate::params::InsightParams;
use crate::record::minute_time;

/// One call shape from the real records.
#[derive(Debug, Clone)]
pub struct Template {
    pub record: Map<String, Value>,
    pub write: bool,
    pub error_code: Option<String>,
}

impl Template {
    pub fn event_source(&self) -> &str {
        self.record.get("eventSource").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn event_name(&self) -> &str {
        self.record.get("eventName").and_then(Value::as_str).unwrap_or_default()
    }
}

/// The management calls of the real records, in file order.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    pub templates: Vec<Template>,
}

impl Pool {
    /// Every `*.jsonl` file of `dir` (one record per line). An empty pool if `dir` is missing.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Self::default()) };
        let mut files: Vec<_> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        let mut records = Vec::new();
        for file in files {
            for line in std::fs::read_to_string(&file)?.lines() {
                if let Ok(record) = serde_json::from_str::<Value>(line) {
                    records.push(record);
                }
            }
        }
        Ok(Self::from_records(records))
    }

    pub fn from_records(records: impl IntoIterator<Item = Value>) -> Self {
        let templates = records
            .into_iter()
            .filter_map(|record| {
                let Value::Object(record) = record else { return None };
                let management = record
                    .get("eventCategory")
                    .and_then(Value::as_str)
                    .map_or(record.get("managementEvent") != Some(&Value::Bool(false)), |c| c == "Management");
                let named = record.get("eventSource").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
                    && record.get("eventName").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
                if !management
                    || !named
                    || record.get("eventType").and_then(Value::as_str) == Some("AwsCloudTrailInsight")
                {
                    return None;
                }
                let write = matches!(record.get("readOnly"), Some(Value::Bool(false)))
                    || record.get("readOnly").and_then(Value::as_str) == Some("false");
                let error_code =
                    record.get("errorCode").and_then(Value::as_str).filter(|code| !code.is_empty()).map(str::to_owned);
                Some(Template { record, write, error_code })
            })
            .collect();
        Self { templates }
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Indexes of write templates without an error, one per (source, name), in pool order.
    pub fn distinct_writes(&self) -> Vec<usize> {
        let mut seen = std::collections::HashSet::new();
        (0..self.templates.len())
            .filter(|&i| {
                let t = &self.templates[i];
                t.write
                    && t.error_code.is_none()
                    && seen.insert((t.event_source().to_owned(), t.event_name().to_owned()))
            })
            .collect()
    }
}

/// The day's rhythm: a factor of the peak rate by hour (UTC) and weekday.
pub fn seasonality(minute: Minute) -> f64 {
    let hour = minute.div_euclid(60).rem_euclid(24);
    // 1970-01-01 was a Thursday: day 0 is Thursday, so days 2 and 3 are the weekend.
    let weekend = matches!(minute.div_euclid(1440).rem_euclid(7), 2 | 3);
    let daily = match hour {
        0..=5 => 0.1,
        6..=7 => 0.5,
        8..=17 => 1.0,
        18..=21 => 0.5,
        _ => 0.2,
    };
    if weekend { daily * 0.3 } else { daily }
}

/// Something unusual in the traffic.
#[derive(Debug, Clone)]
pub enum Injection {
    /// `per_minute` extra calls of a template for `minutes` from `start`, by one principal;
    /// with `error_code`, the calls fail with it.
    Burst {
        template: usize,
        start: Minute,
        minutes: i64,
        per_minute: u32,
        error_code: Option<String>,
        user_arn: String,
    },
    /// A template's steady rate stops for `minutes` from `start`.
    Drop { template: usize, start: Minute, minutes: i64 },
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub account: String,
    pub region: String,
    pub from: Minute,
    pub to: Minute,
    pub seed: u64,
    /// Calls per minute at peak shared by all templates.
    pub background_per_minute: f64,
    /// Templates with a steady rate of their own: (template, calls per minute, follows the
    /// day's rhythm).
    pub steady: Vec<(usize, f64, bool)>,
    pub injections: Vec<Injection>,
}

impl Traffic {
    /// Steady traffic over `[from, to)`: the background, plus the first `automation` distinct
    /// write templates calling 4 to 7 times a minute (every other one around the clock).
    pub fn steady(pool: &Pool, account: &str, region: &str, from: Minute, to: Minute, automation: usize) -> Self {
        let steady = pool
            .distinct_writes()
            .into_iter()
            .take(automation)
            .enumerate()
            .map(|(i, template)| (template, 4.0 + (i % 4) as f64, i % 2 == 1))
            .collect();
        Self {
            account: account.into(),
            region: region.into(),
            from,
            to,
            seed: 7,
            background_per_minute: 20.0,
            steady,
            injections: Vec::new(),
        }
    }
}

/// A Poisson draw (Knuth's method; the rates here are small, and large ones are split).
fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        let half = mean / 2.0;
        return poisson(rng, half) + poisson(rng, mean - half);
    }
    let limit = (-mean).exp();
    let (mut count, mut product) = (0, rng.random::<f64>());
    while product > limit {
        count += 1;
        product *= rng.random::<f64>();
    }
    count
}

/// Builds the traffic minute by minute, in time order, calling `emit` with each record.
pub fn generate(pool: &Pool, traffic: &Traffic, mut emit: impl FnMut(Value)) {
    assert!(!pool.is_empty(), "a replay needs templates");
    let mut rng = StdRng::seed_from_u64(traffic.seed);
    let mut serial: u64 = 0;
    let make = |template: &Template, minute: Minute, second: u32, serial: u64| {
        let mut record = template.record.clone();
        record.insert("eventTime".into(), json!(minute_time(minute).replace(":00Z", &format!(":{second:02}Z"))));
        record.insert("awsRegion".into(), json!(traffic.region));
        record.insert("recipientAccountId".into(), json!(traffic.account));
        record.insert("eventID".into(), json!(format!("{:08x}-0000-4000-8000-{:012x}", traffic.seed as u32, serial)));
        record
    };
    for minute in traffic.from..traffic.to {
        let season = seasonality(minute);
        let mut calls: Vec<(usize, Option<&Injection>)> = Vec::new();
        // One Poisson draw for all templates, each call of it a uniform template: the same
        // as a draw per template (Poisson splitting), a thousand times cheaper.
        for _ in 0..poisson(&mut rng, traffic.background_per_minute * season) {
            calls.push((rng.random_range(0..pool.templates.len()), None));
        }
        for &(template, rate, rhythmic) in &traffic.steady {
            let dropped = traffic.injections.iter().any(|injection| {
                matches!(injection, Injection::Drop { template: t, start, minutes }
                    if *t == template && (*start..*start + *minutes).contains(&minute))
            });
            if !dropped {
                let mean = if rhythmic { rate * season.max(0.5) } else { rate };
                for _ in 0..poisson(&mut rng, mean) {
                    calls.push((template, None));
                }
            }
        }
        for injection in &traffic.injections {
            if let Injection::Burst { template, start, minutes, per_minute, .. } = injection
                && (*start..*start + *minutes).contains(&minute)
            {
                calls.extend(std::iter::repeat_n((*template, Some(injection)), *per_minute as usize));
            }
        }
        let mut timed: Vec<(u32, usize, Option<&Injection>)> =
            calls.into_iter().map(|(template, injection)| (rng.random_range(0..60), template, injection)).collect();
        timed.sort_by_key(|(second, ..)| *second);
        for (second, template, injection) in timed {
            serial += 1;
            let mut record = make(&pool.templates[template], minute, second, serial);
            if let Some(Injection::Burst { error_code, user_arn, .. }) = injection {
                record.insert(
                    "userIdentity".into(),
                    json!({"type": "IAMUser", "arn": user_arn, "accountId": traffic.account}),
                );
                record.insert("userAgent".into(), json!("replay-burst/1.0"));
                match error_code {
                    Some(code) => {
                        record.insert("errorCode".into(), json!(code));
                        record.insert("errorMessage".into(), json!("replayed failure"));
                    }
                    None => {
                        record.remove("errorCode");
                        record.remove("errorMessage");
                    }
                }
            }
            emit(Value::Object(record));
        }
    }
}

/// Runs the traffic through a detector the way the consumer does (journal envelope, the fast
/// record view), with every type selected. Returns each Start and End with the minute of the
/// record whose arrival raised it: the detection time.
pub fn detect(pool: &Pool, traffic: &Traffic, params: InsightParams) -> Vec<(InsightEvent, Minute)> {
    let mut detector = Detector::new(params);
    let gate = |_: &str, _: &str, _: InsightType| true;
    let account = AccountId::parse(&traffic.account).expect("a 12-digit account");
    let region = Region::parse(&traffic.region).expect("a Region name");
    let mut raised = Vec::new();
    generate(pool, traffic, |record| {
        let minute = record["eventTime"]
            .as_str()
            .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
            .map_or(0, |time| time.timestamp().div_euclid(60));
        let payload = EventRecord::new(account.clone(), region.clone(), record).expect("a valid record").encode();
        observe(&mut detector, &payload, &gate);
        let (events, _) = detector.take_output();
        raised.extend(events.into_iter().map(|event| (event, minute)));
    });
    raised
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool::from_records([
            json!({"eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "readOnly": false,
                   "eventTime": "2020-01-01T00:00:00Z", "userIdentity": {"arn": "arn:aws:iam::1:user/a"}}),
            json!({"eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "readOnly": true,
                   "eventTime": "2020-01-01T00:00:00Z"}),
            json!({"eventSource": "s3.amazonaws.com", "eventName": "GetObject", "managementEvent": false,
                   "eventTime": "2020-01-01T00:00:00Z"}),
        ])
    }

    #[test]
    fn traffic_is_reproducible_in_time_order_with_rewritten_fields() {
        let pool = pool();
        assert_eq!(pool.templates.len(), 2, "data events are not templates");
        assert_eq!(pool.distinct_writes(), [0]);
        let mut traffic = Traffic::steady(&pool, "111111111111", "eu-west-1", 1000, 1100, 1);
        traffic.injections.push(Injection::Burst {
            template: 0,
            start: 1050,
            minutes: 2,
            per_minute: 50,
            error_code: Some("AccessDenied".into()),
            user_arn: "arn:aws:iam::111111111111:user/mallory".into(),
        });
        let mut first = Vec::new();
        generate(&pool, &traffic, |record| first.push(record));
        let mut second = Vec::new();
        generate(&pool, &traffic, |record| second.push(record));
        assert_eq!(first, second);
        let times: Vec<&str> = first.iter().map(|r| r["eventTime"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(first.iter().all(|r| r["awsRegion"] == "eu-west-1"));
        let denied = first.iter().filter(|r| r["errorCode"] == "AccessDenied").count();
        assert_eq!(denied, 100);
        assert!(first.len() > 300, "{}", first.len());
    }

    #[test]
    fn nights_and_weekends_are_quieter() {
        let thursday_noon = 12 * 60;
        assert_eq!(seasonality(thursday_noon), 1.0);
        assert!(seasonality(3 * 60) < 0.2);
        assert!(seasonality(2 * 1440 + 12 * 60) < 0.5, "Saturday");
    }
}
