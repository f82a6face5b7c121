//! The tuning harness: for each parameter set, the insights raised by weeks of steady traffic
//! built from the real records (false positives) and the minutes from each injected burst or
//! drop to the record whose arrival raised its Start (detection time).
//!
//! `cargo run --release -p opentrail-insights --example tune [-- <real-events folder>]`

use std::path::PathBuf;

use opentrail_insights::replay::{Injection, Pool, Traffic, detect};
use opentrail_insights::{InsightParams, InsightState, Minute};

const ACCOUNT: &str = "111111111111";
const REGION: &str = "eu-west-1";
const DAY: Minute = 1440;

/// Monday 2026-11-02 00:00 UTC.
const MONDAY: Minute = 29_892_960;

struct Case {
    name: &'static str,
    injection: fn(&Pool, &Traffic, Minute) -> Injection,
}

fn burst(template: usize, at: Minute, per_minute: u32, error_code: Option<&str>) -> Injection {
    Injection::Burst {
        template,
        start: at,
        minutes: 10,
        per_minute,
        error_code: error_code.map(str::to_owned),
        user_arn: "arn:aws:iam::111111111111:user/mallory".into(),
    }
}

fn read_template(pool: &Pool) -> usize {
    (0..pool.templates.len()).find(|&i| !pool.templates[i].write && pool.templates[i].error_code.is_none()).unwrap()
}

const CASES: [Case; 6] = [
    Case {
        name: "write burst 40/min (rare API)",
        injection: |pool, _, at| burst(pool.distinct_writes()[20], at, 40, None),
    },
    Case {
        name: "write burst 10/min (rare API)",
        injection: |pool, _, at| burst(pool.distinct_writes()[20], at, 10, None),
    },
    Case {
        name: "write burst x3 (steady API)",
        injection: |_, traffic, at| burst(traffic.steady[0].0, at, (traffic.steady[0].1 * 2.0) as u32, None),
    },
    Case {
        name: "AccessDenied 40/min",
        injection: |pool, _, at| burst(read_template(pool), at, 40, Some("AccessDenied")),
    },
    Case {
        name: "AccessDenied 8/min",
        injection: |pool, _, at| burst(read_template(pool), at, 8, Some("AccessDenied")),
    },
    Case {
        name: "steady API stops 60 min",
        injection: |_, traffic, at| Injection::Drop { template: traffic.steady[0].0, start: at, minutes: 60 },
    },
];

fn parameter_sets() -> Vec<(String, InsightParams)> {
    let base = InsightParams::default();
    let mut sets = vec![("defaults".to_owned(), base.clone())];
    for (factor, sigmas, min_rate) in
        [(3.0, 4.0, 3.0), (3.0, 6.0, 5.0), (4.0, 6.0, 2.0), (4.0, 8.0, 5.0), (6.0, 6.0, 5.0)]
    {
        let params = InsightParams { spike_factor: factor, spike_sigmas: sigmas, min_rate, ..base.clone() };
        sets.push((format!("factor {factor} sigmas {sigmas} min {min_rate}"), params));
    }
    for (fraction, min) in [(0.2, 3.0), (0.1, 1.0)] {
        let params = InsightParams { drop_fraction: fraction, drop_min_rate: min, ..base.clone() };
        sets.push((format!("drop fraction {fraction} min {min}"), params));
    }
    sets
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real-events"));
    let pool = Pool::load(&dir).expect("the real-events folder reads");
    assert!(!pool.is_empty(), "no records in {}", dir.display());
    println!("pool: {} management calls from {}", pool.templates.len(), dir.display());
    print!("| parameters | false positives (3 steady weeks, 3 seeds) |");
    for case in &CASES {
        print!(" {} |", case.name);
    }
    println!();
    println!("|---|---|{}", "---|".repeat(CASES.len()));
    for (name, params) in parameter_sets() {
        let mut false_positives = 0;
        for seed in [1, 2, 3] {
            let mut traffic = Traffic::steady(&pool, ACCOUNT, REGION, MONDAY, MONDAY + 28 * DAY, 8);
            traffic.seed = seed;
            false_positives +=
                detect(&pool, &traffic, params.clone()).iter().filter(|(e, _)| e.state == InsightState::Start).count();
        }
        print!("| {name} | {false_positives} |");
        for case in &CASES {
            let mut traffic = Traffic::steady(&pool, ACCOUNT, REGION, MONDAY, MONDAY + 7 * DAY + 14 * 60, 8);
            // Tuesday 10:00, office hours.
            let at = MONDAY + 7 * DAY + 10 * 60;
            traffic.injections = vec![(case.injection)(&pool, &traffic, at)];
            let raised = detect(&pool, &traffic, params.clone());
            let detected = raised
                .iter()
                .filter(|(event, _)| event.state == InsightState::Start && event.minute >= at - 5)
                .map(|(_, minute)| minute - at)
                .min();
            let others = raised.iter().filter(|(e, _)| e.state == InsightState::Start).count();
            match detected {
                Some(minutes) if others == 1 => print!(" {minutes} min |"),
                Some(minutes) => print!(" {minutes} min (+{} other) |", others - 1),
                None => print!(" missed |"),
            }
        }
        println!();
    }
}
