//! Nothing acknowledged is ever lost: concurrent writers through the API, the server killed
//! with SIGKILL at random moments, restarted, twenty times; afterwards every call that got an
//! answer is in Event History exactly once.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_cloudtrail::operation::RequestId;
use common::*;
use rand::Rng;

const CYCLES: usize = 20;
const WRITERS: usize = 4;

/// Calls until stopped or the server dies; returns the request IDs of every answered call.
async fn writer(ct: aws_sdk_cloudtrail::Client, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut turn = 0u64;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let request_id = if turn.is_multiple_of(2) {
            match ct.list_trails().send().await {
                Ok(output) => output.request_id().map(str::to_owned),
                Err(_) => break,
            }
        } else {
            // A failing call is answered (TrailNotFoundException) and recorded too.
            match ct.get_trail_status().name("missing-trail").send().await {
                Ok(_) => panic!("the trail does not exist"),
                Err(error) => match error.raw_response() {
                    Some(raw) if raw.status().as_u16() == 400 => {
                        raw.headers().get("x-amzn-requestid").map(str::to_owned)
                    }
                    _ => break,
                },
            }
        };
        acknowledged.push(request_id.expect("every answer carries a request ID"));
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_calls_survive_sigkill() {
    let mut server = TestServer::start();
    let mut acknowledged = Vec::new();
    let mut rng = rand::rng();
    for _ in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> =
            (0..WRITERS).map(|_| tokio::spawn(writer(client(&server, ROOT_A, "us-east-1"), stop.clone()))).collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(30..250))).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for handle in writers {
            acknowledged.extend(handle.await.unwrap());
        }
        server.restart();
    }
    assert!(acknowledged.len() > CYCLES * 10, "the writers made too few calls: {}", acknowledged.len());

    // Every recorded ListTrails / GetTrailStatus call, counted by request ID.
    let ct = client(&server, ROOT_A, "us-east-1");
    let mut recorded: HashMap<String, usize> = HashMap::new();
    let mut token = None;
    loop {
        let page = ct.lookup_events().max_results(50).set_next_token(token).send().await.unwrap();
        for event in page.events() {
            let record: serde_json::Value = serde_json::from_str(event.cloud_trail_event().unwrap()).unwrap();
            if matches!(record["eventName"].as_str(), Some("ListTrails" | "GetTrailStatus")) {
                *recorded.entry(record["requestID"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let missing: Vec<_> = acknowledged.iter().filter(|id| !recorded.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} acknowledged calls were lost, e.g. {:?}", missing.len(), missing.first());
    let duplicated: Vec<_> = recorded.iter().filter(|(_, count)| **count > 1).collect();
    assert!(duplicated.is_empty(), "events recorded twice: {duplicated:?}");
    println!(
        "{CYCLES} SIGKILL cycles: {} acknowledged calls, all found exactly once ({} recorded in all)",
        acknowledged.len(),
        recorded.len()
    );
}
