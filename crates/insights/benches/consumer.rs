//! Events per second through the Insights consumer, on traffic replayed from the real records:
//! two weeks built from `../shared/data/real-events` (with a burst and an AccessDenied burst)
//! are appended to a local journal, then the consumer reads them from the start until caught up,
//! committing as it does in the server. Also the detector alone (no journal, no commits).
//!
//! `cargo bench -p opentrail-insights --bench consumer`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentrail_consumer::Progress;
use opentrail_insights::consumer::observe;
use opentrail_insights::replay::{Injection, Pool, Traffic, generate};
use opentrail_insights::{
    Detector, InsightParams, InsightStore, InsightType, InsightsConsumer, SelectionSource, Selections,
};
use opentrail_journal::{Journal, LocalJournal, LocalJournalOptions};
use opentrail_model::{AccountId, EventRecord, Region};

const ACCOUNT: &str = "111111111111";
const REGION: &str = "eu-west-1";
const MONDAY: i64 = 29_892_960;
const DAY: i64 = 1440;

struct Everything;

impl SelectionSource for Everything {
    fn selections(&self) -> Result<Selections, Box<dyn std::error::Error + Send + Sync>> {
        let mut selections = Selections::default();
        for insight_type in InsightType::ALL {
            selections.allow(ACCOUNT, None, insight_type);
        }
        Ok(selections)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real-events");
    let pool = Pool::load(&dir).unwrap();
    if pool.is_empty() {
        println!("skipped: {} not found", dir.display());
        return;
    }
    let mut traffic = Traffic::steady(&pool, ACCOUNT, REGION, MONDAY, MONDAY + 14 * DAY, 16);
    traffic.background_per_minute = 60.0;
    let at = MONDAY + 8 * DAY + 10 * 60;
    let burst = |template, start, error_code: Option<&str>| Injection::Burst {
        template,
        start,
        minutes: 10,
        per_minute: 200,
        error_code: error_code.map(str::to_owned),
        user_arn: "arn:aws:iam::111111111111:user/mallory".into(),
    };
    traffic.injections = vec![burst(pool.distinct_writes()[20], at, None), burst(0, at + 120, Some("AccessDenied"))];
    let (account, region) = (AccountId::parse(ACCOUNT).unwrap(), Region::parse(REGION).unwrap());
    let mut payloads = Vec::new();
    generate(&pool, &traffic, |record| {
        payloads.push(EventRecord::new(account.clone(), region.clone(), record).unwrap().encode());
    });
    let events = payloads.len();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    println!(
        "replayed traffic: {events} events ({} MiB), {} templates from {}",
        bytes >> 20,
        pool.templates.len(),
        dir.display()
    );

    // The detector alone.
    let gate = |_: &str, _: &str, _: InsightType| true;
    let mut detector = Detector::new(InsightParams::default());
    let started = Instant::now();
    let mut raised = 0;
    for payload in &payloads {
        observe(&mut detector, payload, &gate);
        raised += detector.take_output().0.len();
    }
    let elapsed = started.elapsed();
    println!(
        "detector alone: {:.0} events/s ({events} events in {:.2} s, {raised} Starts and Ends, {} series)",
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        detector.series_count()
    );

    // The consumer over a journal, as the server runs it.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let data = tempfile::tempdir().unwrap();
    let options = LocalJournalOptions { scrub: false, ..Default::default() };
    let journal = Arc::new(LocalJournal::open(data.path().join("journal"), options).unwrap());
    runtime.block_on(async {
        for chunk in payloads.chunks(10_000) {
            journal.append(chunk.to_vec()).await.unwrap();
        }
    });
    drop(payloads);
    let store = Arc::new(InsightStore::open(&data.path().join("insights.sqlite")).unwrap());
    let consumer = Arc::new(InsightsConsumer::new(
        journal.clone(),
        store,
        Arc::new(Everything),
        InsightParams::default(),
        Arc::new(|| 0),
    ));
    let mut rounds = Vec::new();
    let started = Instant::now();
    runtime.block_on(async {
        loop {
            let round = Instant::now();
            let progress = consumer.round().await.unwrap();
            rounds.push(round.elapsed());
            if progress == Progress::Idle {
                break;
            }
        }
    });
    let elapsed = started.elapsed();
    rounds.sort();
    println!(
        "insights consumer: {:.0} events/s ({events} events in {:.2} s; {} rounds of up to 8 MiB, round p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms)",
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        rounds.len(),
        percentile(&rounds, 0.5).as_secs_f64() * 1e3,
        percentile(&rounds, 0.99).as_secs_f64() * 1e3,
        rounds.last().unwrap().as_secs_f64() * 1e3,
    );
}
