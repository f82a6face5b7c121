//! `opentrail sigma test RULES FILE`: Sigma rules offline. Loads a folder of rules (or one rule
//! file), reads a file of CloudTrail records and prints every (record, rule) match, with the
//! rule's author as the Detection Rule License requires of messages based on a match.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use opentrail_sigma::{Rule, RuleSet};
use serde_json::{Value, json};

use crate::record_file::read_records;

#[derive(clap::Args)]
pub struct SigmaArgs {
    #[command(subcommand)]
    command: SigmaCommand,
}

#[derive(clap::Subcommand)]
enum SigmaCommand {
    /// Print which records of a file the rules match (no server). Refused rule files are listed
    /// on stderr with the reason; the exit status is 0 whether or not anything matched.
    Test {
        /// A folder of Sigma rules (searched recursively for *.yml / *.yaml) or one rule file.
        rules: PathBuf,
        /// A CloudTrail log file ({"Records": [...]}) or JSON lines, gzipped or not.
        file: PathBuf,
        /// One JSON object per match instead of a line of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: SigmaArgs) -> Result<()> {
    match args.command {
        SigmaCommand::Test { rules, file, json } => test(&rules, &file, json),
    }
}

fn test(rules_path: &Path, file: &Path, as_json: bool) -> Result<()> {
    let (rules, refusals) =
        RuleSet::load_dir(rules_path).with_context(|| format!("cannot read the rules at {}", rules_path.display()))?;
    for refusal in &refusals {
        eprintln!("refused {}: {}", refusal.path.display(), refusal.reason);
    }
    let records = read_records(file)?;
    let mut out = std::io::stdout().lock();
    let mut matches = 0usize;
    for (number, record) in &records {
        for rule in rules.matching(record) {
            matches += 1;
            if as_json {
                writeln!(out, "{}", match_json(*number, record, rule))?;
            } else {
                writeln!(out, "{}", match_line(*number, record, rule))?;
            }
        }
    }
    out.flush()?;
    eprintln!("{} rules loaded, {} refused; {} records; {matches} matches", rules.len(), refusals.len(), records.len());
    Ok(())
}

fn text_field<'a>(record: &'a Value, name: &str) -> &'a str {
    record.get(name).and_then(Value::as_str).unwrap_or("-")
}

/// `NUMBER  EVENT-TIME  EVENT-NAME  TITLE  [LEVEL]  author: AUTHOR  id: ID`, tab-separated.
fn match_line(number: usize, record: &Value, rule: &Rule) -> String {
    format!(
        "{number}\t{}\t{}\t{}\t[{}]\tauthor: {}\tid: {}",
        text_field(record, "eventTime"),
        text_field(record, "eventName"),
        rule.title,
        rule.level.map_or("-", |level| level.as_str()),
        rule.author.as_deref().unwrap_or("-"),
        rule.id.as_deref().unwrap_or("-"),
    )
}

fn match_json(number: usize, record: &Value, rule: &Rule) -> Value {
    json!({
        "record": number,
        "eventTime": record.get("eventTime"),
        "eventName": record.get("eventName"),
        "eventID": record.get("eventID"),
        "title": rule.title,
        "level": rule.level.map(|level| level.as_str()),
        "author": rule.author,
        "id": rule.id,
        "rule_file": rule.origin,
    })
}
