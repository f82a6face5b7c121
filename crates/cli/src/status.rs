//! `opentrail status`: the journal consumers of a running OpenTrail (state, restarts, lag),
//! as `GET /opentrail/status` shows them to the caller's account, signed like the aws CLI.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use crate::client::Connection;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Where the server is (default: AWS_ENDPOINT_URL_CLOUDTRAIL, AWS_ENDPOINT_URL, or
    /// http://127.0.0.1:4590).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Region to sign for (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1).
    #[arg(long)]
    region: Option<String>,
    /// Print the status document as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let connection = Connection::from_env(args.endpoint_url, args.region)?;
    let status = connection.get("/opentrail/status")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
    } else {
        write_table(&mut out, &status)?;
    }
    out.flush()?;
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// One line per cursor: a consumer with one cursor is one line, trail delivery one per trail
/// (a consumer with none, such as delivery before any trail logs, still gets its line).
fn write_table(out: &mut impl Write, status: &Value) -> std::io::Result<()> {
    let journal = &status["Journal"];
    writeln!(
        out,
        "journal: start {}, committed end {}, damaged ranges {} ({} bytes)",
        text(&journal["Start"]),
        text(&journal["CommittedEnd"]),
        text(&journal["DamagedRanges"]),
        text(&journal["DamagedBytes"]),
    )?;
    writeln!(
        out,
        "{:<16}  {:<9}  {:>8}  {:>10}  {:>12}  {:>10}  {:<9}  PART",
        "CONSUMER", "STATE", "RESTARTS", "RECORDS", "BYTES", "OLDEST(s)", "CAUGHT-UP"
    )?;
    for consumer in status["Consumers"].as_array().into_iter().flatten() {
        let name = text(&consumer["Name"]);
        let state = text(&consumer["State"]);
        let restarts = text(&consumer["Restarts"]);
        let cursors = consumer["Cursors"].as_array().cloned().unwrap_or_default();
        if cursors.is_empty() {
            let caught_up = if consumer["CursorsReadable"] == false { "unknown" } else { "yes" };
            writeln!(
                out,
                "{name:<16}  {state:<9}  {restarts:>8}  {:>10}  {:>12}  {:>10}  {caught_up:<9}  -",
                "-", "-", "-"
            )?;
        }
        for cursor in &cursors {
            let records = match cursor["RecordsBehindExact"].as_bool() {
                Some(false) => format!(">={}", text(&cursor["RecordsBehind"])),
                _ => text(&cursor["RecordsBehind"]),
            };
            let caught_up = if cursor["CaughtUp"] == true { "yes" } else { "no" };
            let mut part = text(&cursor["Part"]);
            if let Some(error) = cursor["LastError"].as_str() {
                part = format!("{part} (last error: {error})");
            }
            writeln!(
                out,
                "{name:<16}  {state:<9}  {restarts:>8}  {records:>10}  {:>12}  {:>10}  {caught_up:<9}  {part}",
                text(&cursor["BytesBehind"]),
                text(&cursor["OldestUnconsumedAgeSeconds"]),
            )?;
        }
        if let Some(at) = consumer["LastErrorTime"].as_str() {
            writeln!(
                out,
                "  {name} last failed at {at} ({} in a row; details in the server log)",
                text(&consumer["FailuresInARow"])
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_line_per_cursor_and_one_for_a_consumer_without_any() {
        let status = json!({
            "Journal": {"Start": 0, "CommittedEnd": 900, "DamagedRanges": 0, "DamagedBytes": 0},
            "Consumers": [
                {"Name": "event-history", "State": "idle", "Restarts": 0, "CursorsReadable": true,
                 "Cursors": [{"Position": 900, "RecordsBehind": 0, "RecordsBehindExact": true, "BytesBehind": 0,
                              "OldestUnconsumedAgeSeconds": null, "CaughtUp": true}]},
                {"Name": "trail-delivery", "State": "retrying", "Restarts": 3, "FailuresInARow": 3,
                 "LastErrorTime": "2026-01-01T00:00:00Z", "CursorsReadable": true,
                 "Cursors": [{"Part": "arn:aws:cloudtrail:us-east-1:111111111111:trail/t", "RecordsBehind": 7,
                              "RecordsBehindExact": false, "BytesBehind": 800, "OldestUnconsumedAgeSeconds": 12,
                              "CaughtUp": false, "LastError": "NoSuchBucket"}]},
                {"Name": "lake-writer", "State": "idle", "Restarts": 0, "CursorsReadable": false}
            ]
        });
        let mut out = Vec::new();
        write_table(&mut out, &status).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("committed end 900"), "{text}");
        assert!(lines[2].starts_with("event-history") && lines[2].contains("yes"), "{text}");
        let trail = lines[3];
        assert!(trail.starts_with("trail-delivery") && trail.contains(">=7") && trail.contains("800"), "{text}");
        assert!(trail.contains("trail/t (last error: NoSuchBucket)") && trail.contains(" no "), "{text}");
        assert!(lines[4].contains("last failed at 2026-01-01T00:00:00Z (3 in a row"), "{text}");
        assert!(lines[5].starts_with("lake-writer") && lines[5].contains("unknown"), "{text}");
    }
}
