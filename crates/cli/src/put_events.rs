//! `opentrail put-events`: real CloudTrail records into the journal, through the same durable
//! append path the API uses.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opentrail_history::HistoryIndex;
use opentrail_model::record::LookupAttribute;
use opentrail_model::regions::is_cloudtrail_region;
use opentrail_model::{AccountId, EventRecord, Region};
use opentrail_service::EventLog;
use serde_json::Value;

use crate::record_file::read_records;

const BATCH: usize = 1000;

pub async fn run(file: &Path, data_dir: &Path, account: Option<&str>, region: &str) -> Result<()> {
    let records: Vec<Value> = read_records(file)?.into_iter().map(|(_, record)| record).collect();
    let override_account = account.map(AccountId::parse).transpose().context("--account must be 12 digits")?;
    let fallback_region = Region::parse(region).context("--region is not a Region name")?;

    // Validate everything before writing anything.
    let mut events = Vec::with_capacity(records.len());
    for (number, record) in records.into_iter().enumerate() {
        let text = |pointer: &str| record.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        let account = match &override_account {
            Some(account) => account.clone(),
            None => {
                let id = text("/recipientAccountId").or_else(|| text("/userIdentity/accountId")).unwrap_or_default();
                AccountId::parse(&id)
                    .with_context(|| format!("record {}: no 12-digit account ID; pass --account", number + 1))?
            }
        };
        // Only Regions CloudTrail has can be looked up (the API refuses any other), so a record
        // from an anonymised or placeholder Region is filed under the fallback; its fields stay.
        let region = text("/awsRegion")
            .and_then(|r| Region::parse(&r))
            .filter(|r| is_cloudtrail_region(r.as_str()))
            .unwrap_or_else(|| fallback_region.clone());
        let event = EventRecord::new(account, region, record).with_context(|| format!("record {}", number + 1))?;
        events.push(event);
    }

    // Only the journal and the history index: no control store, delivery or Lake runtime.
    let log = EventLog::open(data_dir)
        .with_context(|| format!("cannot open {} (is a server using it?)", data_dir.display()))?;
    let history = log.history().clone();
    while history.catch_up_once(4 << 20)? > 0 {}

    // Keep each eventID that is present and unique; give the others a new one.
    let mut seen = HashSet::new();
    let mut renamed = 0;
    for event in &mut events {
        let keep = match event.event_id() {
            Some(id) => seen.insert(id.to_owned()) && !history_has_event(&history, event, id)?,
            None => false,
        };
        if !keep {
            let id = uuid::Uuid::new_v4().to_string();
            seen.insert(id.clone());
            event.record.insert("eventID".into(), Value::String(id));
            renamed += 1;
        }
    }
    let progress_every = (events.len() / 10).max(BATCH);
    for (index, chunk) in events.chunks(BATCH).enumerate() {
        log.append_records(chunk).await.context("the journal refused the records")?;
        if (index + 1) * BATCH % progress_every < BATCH {
            eprintln!("appended {} of {}", ((index + 1) * BATCH).min(events.len()), events.len());
        }
    }
    let end = log.journal().committed_end();
    while history.catch_up_once(4 << 20)? > 0 {}
    if !history.wait_for(end, Duration::from_secs(5)).await {
        bail!("the history index did not catch up with the journal");
    }
    println!("appended {} records ({renamed} given new event IDs)", events.len());
    Ok(())
}

fn history_has_event(history: &HistoryIndex, event: &EventRecord, id: &str) -> Result<bool> {
    let query = opentrail_history::LookupQuery {
        account: event.account.clone(),
        region: event.region.clone(),
        attributes: vec![(LookupAttribute::EventId, id.to_owned())],
        start: chrono::DateTime::UNIX_EPOCH,
        end: chrono::DateTime::<chrono::Utc>::MAX_UTC,
        insights: false,
        max_results: 1,
        parameters_fingerprint: 0,
        after: None,
    };
    Ok(!history.lookup(&query)?.events.is_empty())
}
