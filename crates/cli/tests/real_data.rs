//! The real-data tier: every record in `../shared/data/real-events/*.jsonl` goes in through
//! `put-events` and is found again by LookupEvents. Skipped (and says so) where the folder is
//! not there; CI has it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use common::*;
use opentrail_model::regions::is_cloudtrail_region;

fn real_event_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real-events");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
    files.sort();
    files
}

#[tokio::test]
async fn real_events_are_found_by_lookup() {
    let files = real_event_files();
    if files.is_empty() {
        println!("skipped: ../shared/data/real-events not found (the real-data tier runs where it exists)");
        return;
    }
    let mut server = TestServer::start();
    server.kill();
    let mut expected = Vec::new();
    for file in &files {
        let output = Command::new(env!("CARGO_BIN_EXE_opentrail"))
            .arg("put-events")
            .arg(file)
            .args(["--account", ACCOUNT_A, "--data-dir"])
            .arg(server.server_data_dir())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
        for line in std::fs::read_to_string(file).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let management =
                record["eventCategory"].as_str().map_or(record["managementEvent"] != false, |c| c == "Management");
            if management && let Some(name) = record["eventName"].as_str() {
                // put-events files a record whose awsRegion is not one of CloudTrail's Regions
                // (Stratus Red Team's anonymised ones, the published `<region-code>` placeholder,
                // none at all) under its --region, us-east-1.
                let region = record["awsRegion"]
                    .as_str()
                    .filter(|region| is_cloudtrail_region(region))
                    .unwrap_or("us-east-1")
                    .to_owned();
                expected.push((region, name.to_owned()));
            }
        }
    }
    server.restart();
    let mut checked = 0;
    for (region, name) in expected.iter().take(200) {
        let ct = client(&server, ROOT_A, region);
        let found = ct
            .lookup_events()
            .lookup_attributes(
                LookupAttribute::builder()
                    .attribute_key(LookupAttributeKey::EventName)
                    .attribute_value(name)
                    .build()
                    .unwrap(),
            )
            .max_results(1)
            .send()
            .await
            .unwrap();
        assert_eq!(found.events().len(), 1, "{name} in {region}");
        checked += 1;
    }
    println!("real-data tier: {} files, {} management records, {checked} looked up", files.len(), expected.len());
}
