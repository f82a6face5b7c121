//! The acceptance replay, with the records' own times as the clock: a steady week built from
//! the real records in `../shared/data/real-events`, then a burst of write calls and a burst of
//! AccessDenied errors (exactly two insights, opened and closed), the steady week alone (none),
//! and a steady rate that stops (one). Skipped, and says so, where the data is not there.

use opentrail_insights::replay::{Injection, Pool, Traffic, detect};
use opentrail_insights::{InsightEvent, InsightParams, InsightState, InsightType, Minute};

const ACCOUNT: &str = "111111111111";
const REGION: &str = "eu-west-1";
const DAY: Minute = 1440;
const ATTACKER: &str = "arn:aws:iam::111111111111:user/mallory";

fn pool() -> Option<Pool> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real-events");
    let pool = Pool::load(&dir).unwrap();
    if pool.is_empty() {
        println!("skipped: {} not found (the real-data tier runs where it exists)", dir.display());
        return None;
    }
    Some(pool)
}

/// Monday 2026-11-02 00:00 UTC, in minutes.
fn monday() -> Minute {
    chrono::DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap().timestamp() / 60
}

fn replay(pool: &Pool, traffic: &Traffic) -> Vec<InsightEvent> {
    detect(pool, traffic, InsightParams::default()).into_iter().map(|(event, _)| event).collect()
}

fn summary(events: &[InsightEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} at +{}",
                e.state.name(),
                e.key.insight_type.name(),
                e.key.event_name,
                e.insight_average,
                e.minute - monday()
            )
        })
        .collect()
}

#[test]
fn a_steady_week_raises_nothing() {
    let Some(pool) = pool() else { return };
    let traffic = Traffic::steady(&pool, ACCOUNT, REGION, monday(), monday() + 9 * DAY, 8);
    let events = replay(&pool, &traffic);
    assert!(events.is_empty(), "false positives: {:#?}", summary(&events));
}

#[test]
fn a_write_burst_and_an_access_denied_burst_open_and_close_exactly_two_insights() {
    let Some(pool) = pool() else { return };
    let start = monday();
    let mut traffic = Traffic::steady(&pool, ACCOUNT, REGION, start, start + 7 * DAY + 14 * 60, 8);
    let writes = pool.distinct_writes();
    let burst_template = writes[20];
    let read = (0..pool.templates.len())
        .find(|&i| !pool.templates[i].write && pool.templates[i].error_code.is_none())
        .expect("the pool has a read call");
    let (burst_at, denied_at) = (start + 7 * DAY + 10 * 60, start + 7 * DAY + 12 * 60);
    traffic.injections = vec![
        Injection::Burst {
            template: burst_template,
            start: burst_at,
            minutes: 10,
            per_minute: 40,
            error_code: None,
            user_arn: ATTACKER.into(),
        },
        Injection::Burst {
            template: read,
            start: denied_at,
            minutes: 10,
            per_minute: 40,
            error_code: Some("AccessDenied".into()),
            user_arn: ATTACKER.into(),
        },
    ];
    let events = replay(&pool, &traffic);
    let states: Vec<_> = events.iter().map(|e| (e.state, e.key.insight_type)).collect();
    use InsightState::*;
    use InsightType::*;
    assert_eq!(
        states,
        [
            (Start, ApiCallRateInsight),
            (End, ApiCallRateInsight),
            (Start, ApiErrorRateInsight),
            (End, ApiErrorRateInsight)
        ],
        "{:#?}",
        summary(&events)
    );
    let (write_start, write_end, error_start, error_end) = (&events[0], &events[1], &events[2], &events[3]);
    assert_eq!(write_start.key.event_name, pool.templates[burst_template].event_name());
    assert_eq!(write_start.minute, burst_at, "the Start is the burst's first minute");
    assert!(write_end.minute >= burst_at + 10 && write_end.minute <= burst_at + 12, "{}", write_end.minute - burst_at);
    assert_eq!(write_start.shared_event_id, write_end.shared_event_id);
    assert!(write_end.insight_average > 30.0, "{}", write_end.insight_average);
    assert_eq!(write_start.attributions[0].attribute, "userIdentityArn");
    assert_eq!(write_start.attributions[0].insight[0].0, ATTACKER);
    assert_eq!(write_start.attributions[1].insight[0].0, "replay-burst/1.0");
    assert_eq!(write_start.attributions[2].insight[0].0, "null");
    assert_eq!(error_start.key.error_code.as_deref(), Some("AccessDenied"));
    assert_eq!(error_start.key.event_name, pool.templates[read].event_name());
    assert_eq!(error_start.attributions[2].insight[0].0, "AccessDenied");
    assert_eq!(error_start.attributions[0].insight[0].0, ATTACKER);
    assert!(error_end.minute >= denied_at + 10 && error_end.minute <= denied_at + 12);
    assert!(events.iter().all(|e| e.baseline_duration >= 10_080));
}

#[test]
fn a_steady_rate_that_stops_raises_one_insight() {
    let Some(pool) = pool() else { return };
    let start = monday();
    let mut traffic = Traffic::steady(&pool, ACCOUNT, REGION, start, start + 7 * DAY + 16 * 60, 8);
    // The first automation template calls around the clock.
    let (template, rate, rhythmic) = traffic.steady[0];
    assert!(!rhythmic && rate >= 4.0);
    let stop = start + 7 * DAY + 14 * 60;
    traffic.injections = vec![Injection::Drop { template, start: stop, minutes: 60 }];
    let events = replay(&pool, &traffic);
    assert_eq!(events.len(), 2, "{:#?}", summary(&events));
    let (drop_start, drop_end) = (&events[0], &events[1]);
    assert_eq!((drop_start.state, drop_end.state), (InsightState::Start, InsightState::End));
    assert_eq!(drop_start.key.insight_type, InsightType::ApiCallRateInsight);
    assert_eq!(drop_start.key.event_name, pool.templates[template].event_name());
    assert!(drop_start.insight_average < drop_start.baseline_average / 5.0);
    assert!(drop_start.minute >= stop && drop_start.minute <= stop + 15, "{}", drop_start.minute - stop);
    assert!(drop_end.minute >= stop + 60 && drop_end.minute <= stop + 66, "{}", drop_end.minute - stop);
}
