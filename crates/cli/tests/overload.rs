//! Back-pressure through the real server: far more concurrent writers than the disk serves,
//! with a small journal queue. The excess calls are answered `ThrottlingException` at once
//! instead of piling up; every acknowledged event is durable (found in the journal after a
//! SIGKILL); the server's peak memory stays under a stated bound.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::*;

const CLIENTS: usize = 256;
const CALLS_PER_CLIENT: usize = 2;
const EVENTS_PER_CALL: usize = 20;
/// Each event carries this much request-parameter text, so a call is about 200 KB.
const EVENT_PADDING: usize = 10_000;
/// The journal queue bound the server runs with here (the default is 64 MiB): room for one
/// call's records, so a call that arrives while another is being written and synced waits.
const QUEUE_BYTES: &str = "262144";
/// How long such a call waits for room before it is throttled (the default is 1 s).
const QUEUE_WAIT_MS: &str = "1";
/// The peak resident set size the server must stay under.
const PEAK_RSS_BOUND_KIB: u64 = 768 * 1024;

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn audit_events_body(client: usize, call: usize) -> (Vec<u8>, Vec<String>) {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let padding = "x".repeat(EVENT_PADDING);
    let mut uids = Vec::new();
    let events: Vec<serde_json::Value> = (0..EVENTS_PER_CALL)
        .map(|i| {
            let uid = format!("overload-{client}-{call}-{i}");
            uids.push(uid.clone());
            let data = serde_json::json!({
                "version": "1.0", "userIdentity": {"type": "CustomUser", "principalId": "alice"},
                "eventSource": "app.example.com", "eventName": "OpenDoor", "eventTime": now,
                "UID": uid, "recipientAccountId": ACCOUNT_A, "requestParameters": {"padding": padding},
            });
            serde_json::json!({"id": format!("e{i}"), "eventData": data.to_string()})
        })
        .collect();
    (serde_json::to_vec(&serde_json::json!({ "auditEvents": events })).unwrap(), uids)
}

#[test]
fn excess_writers_are_throttled_memory_stays_bounded_and_acknowledged_events_are_durable() {
    if !aws_cli_available() {
        eprintln!("skipped: the aws CLI is needed to create the channel");
        return;
    }
    let mut server = TestServer::start_custom(Launch {
        env: &[("OPENTRAIL_JOURNAL_QUEUE_BYTES", QUEUE_BYTES), ("OPENTRAIL_JOURNAL_QUEUE_WAIT_MS", QUEUE_WAIT_MS)],
        ..Default::default()
    });
    let (_, channel_arn) = outside_events_channel(&server);
    let path = format!("/PutAuditEvents?channelArn={}", percent_encode(&channel_arn));
    let baseline_kib = server_peak_rss_kib(&server);

    // Bodies built before the burst, so the clients spend the two cores on sending, not JSON.
    let bodies: Vec<Vec<(Vec<u8>, Vec<String>)>> = (0..CLIENTS)
        .map(|client| (0..CALLS_PER_CLIENT).map(|call| audit_events_body(client, call)).collect())
        .collect();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let throttled = Arc::new(Mutex::new(0usize));
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for calls in bodies {
            let (server, path, acknowledged, throttled) = (&server, &path, acknowledged.clone(), throttled.clone());
            scope.spawn(move || {
                for (body, uids) in calls {
                    let signing = Signing { service: "cloudtrail-data", ..Signing::now() };
                    let response = signed_post(server, path, &body, signing);
                    match response.status {
                        200 => {
                            let successful = response.body["successful"].as_array().unwrap();
                            assert_eq!(successful.len(), EVENTS_PER_CALL, "{}", response.body);
                            acknowledged.lock().unwrap().extend(uids);
                        }
                        400 if response.error_type() == "ThrottlingException" => *throttled.lock().unwrap() += 1,
                        status => panic!("unexpected answer {status}: {}", response.body),
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let peak_kib = server_peak_rss_kib(&server);
    let acknowledged = acknowledged.lock().unwrap().clone();
    let throttled = *throttled.lock().unwrap();
    let calls = CLIENTS * CALLS_PER_CLIENT;
    println!(
        "{calls} calls of ~{} KB from {CLIENTS} clients in {elapsed:?}: {} acknowledged, {throttled} throttled; \
         server peak RSS {} MiB (baseline {} MiB, bound {} MiB)",
        EVENTS_PER_CALL * EVENT_PADDING / 1000,
        acknowledged.len() / EVENTS_PER_CALL,
        peak_kib / 1024,
        baseline_kib / 1024,
        PEAK_RSS_BOUND_KIB / 1024
    );
    assert!(throttled > 0, "the burst should overflow a {QUEUE_BYTES}-byte queue");
    assert!(!acknowledged.is_empty(), "some calls should get through");
    assert!(peak_kib < PEAK_RSS_BOUND_KIB, "peak RSS {peak_kib} KiB over the bound");

    // Durable: after a SIGKILL every acknowledged event is in the journal.
    server.kill();
    let on_disk: HashSet<String> =
        journal_frames(&server.server_data_dir()).iter().filter_map(|f| record_field(&f.payload, "UID")).collect();
    let missing: Vec<_> = acknowledged.iter().filter(|uid| !on_disk.contains(*uid)).collect();
    assert!(missing.is_empty(), "{} acknowledged events are not durable, e.g. {:?}", missing.len(), missing.first());
}
