//! `opentrail lookup`: Event History from the command line, against a running OpenTrail (or
//! CloudTrail itself), signed the way the aws CLI signs: credentials and Region from the
//! standard AWS environment variables.

use std::io::Write;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::client::Connection;
use crate::times::parse_time;

pub struct LookupArgs {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub attributes: Vec<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub max_items: usize,
    pub json_lines: bool,
}

/// A command-line time as the epoch seconds LookupEvents takes.
fn epoch_seconds(text: &str, now: DateTime<Utc>) -> Result<f64> {
    Ok(parse_time(text, now)?.timestamp_millis() as f64 / 1000.0)
}

fn request_body(args: &LookupArgs, next_token: Option<&str>) -> Result<Value> {
    let now = Utc::now();
    let mut attributes = Vec::new();
    for attribute in &args.attributes {
        let (key, value) = attribute.split_once('=').with_context(|| format!("'{attribute}' is not KEY=VALUE"))?;
        attributes.push(json!({"AttributeKey": key, "AttributeValue": value}));
    }
    let mut body = json!({ "MaxResults": 50 });
    if !attributes.is_empty() {
        body["LookupAttributes"] = json!(attributes);
    }
    if let Some(start) = &args.start_time {
        body["StartTime"] = json!(epoch_seconds(start, now)?);
    }
    if let Some(end) = &args.end_time {
        body["EndTime"] = json!(epoch_seconds(end, now)?);
    }
    if let Some(token) = next_token {
        body["NextToken"] = json!(token);
    }
    Ok(body)
}

/// Prints the events; a reader that goes away (`opentrail lookup | head`) ends the command
/// quietly and successfully, as ripgrep and other filters do, instead of an error.
pub fn run(args: LookupArgs) -> Result<()> {
    match print_events(args) {
        Err(error) if is_broken_pipe(&error) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn print_events(args: LookupArgs) -> Result<()> {
    let connection = Connection::from_env(args.endpoint_url.clone(), args.region.clone())?;

    let mut out = std::io::stdout().lock();
    if !args.json_lines {
        writeln!(out, "{:<20}  {:<28}  {:<20}  {:<24}  {:<16}  ERROR", "TIME", "EVENT", "USER", "SOURCE", "IP")?;
    }
    let mut printed = 0;
    let mut next_token: Option<String> = None;
    while printed < args.max_items {
        let page = connection.call("LookupEvents", &request_body(&args, next_token.as_deref())?)?;
        for event in page["Events"].as_array().into_iter().flatten() {
            if printed == args.max_items {
                break;
            }
            let record: Value =
                event["CloudTrailEvent"].as_str().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
            if args.json_lines {
                writeln!(out, "{record}")?;
            } else {
                let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
                writeln!(
                    out,
                    "{:<20}  {:<28}  {:<20}  {:<24}  {:<16}  {}",
                    text(&record["eventTime"]),
                    text(&event["EventName"]),
                    text(&event["Username"]),
                    text(&record["eventSource"]),
                    text(&record["sourceIPAddress"]),
                    record["errorCode"].as_str().unwrap_or("")
                )?;
            }
            printed += 1;
        }
        next_token = page["NextToken"].as_str().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    if !args.json_lines {
        writeln!(out, "{printed} events")?;
    }
    out.flush()?;
    Ok(())
}
