//! Throughput of the evaluator: every loadable rule of `../shared/data/sigma-rules` on every
//! record of `../shared/data/real-events`, repeated to about a million rule evaluations.
//! Prints records/s and rule evaluations/s; asserts nothing about timing. Skips without the data.

use std::path::PathBuf;
use std::time::Instant;

use opentrail_sigma::RuleSet;

const TARGET_EVALUATIONS: usize = 1_000_000;

fn main() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !data.join("sigma-rules").is_dir() || !data.join("real-events").is_dir() {
        println!("SKIPPED: ../shared/data not found");
        return;
    }
    let (rules, refusals) = match RuleSet::load_dir(&data.join("sigma-rules")) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("cannot read the rules: {error}");
            return;
        }
    };
    let mut records = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("real-events"))
        .map(|entries| entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect())
        .unwrap_or_default();
    files.sort();
    for file in files.iter().filter(|path| path.extension().is_some_and(|ext| ext == "jsonl")) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        records.extend(text.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()));
    }
    if rules.is_empty() || records.is_empty() {
        println!("SKIPPED: no rules or no records");
        return;
    }
    let rounds = TARGET_EVALUATIONS.div_ceil(rules.len() * records.len()).max(1);
    let started = Instant::now();
    let mut findings = 0usize;
    for _ in 0..rounds {
        for record in &records {
            findings += rules.matching(std::hint::black_box(record)).count();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let evaluated = rounds * records.len();
    println!(
        "{} rules ({} refused), {} records x {rounds} rounds: {evaluated} records in {seconds:.3} s = {:.0} records/s, \
         {:.0} rule evaluations/s, {findings} findings",
        rules.len(),
        refusals.len(),
        records.len(),
        evaluated as f64 / seconds,
        (evaluated * rules.len()) as f64 / seconds,
    );
}
