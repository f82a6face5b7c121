//! A change and the record of the call that made it are durable together, or neither is: the
//! server is killed (SIGKILL, by the `OPENTRAIL_CRASH_POINT` test hook, see
//! `opentrail_control::crash`) exactly between committing a change and appending its record,
//! twenty times, and also inside the commit and between the append and the outbox row's removal,
//! interleaved with calls that complete. After each restart every applied change (answered or
//! not) has exactly one record in Event History, the answered ones the very record their call
//! produced, and no record describes a change that is absent.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudtrail::operation::RequestId;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey, Tag};
use common::*;
use rand::Rng;

const BEFORE_COMMIT: &str = "before-control-commit";
const AFTER_COMMIT: &str = "after-control-commit";
const AFTER_APPEND: &str = "after-journal-append";

/// Twenty crashes between the two durable steps, and five at each of the other points.
fn crash_points() -> Vec<&'static str> {
    let mut points = vec![AFTER_COMMIT; 20];
    for index in 0..5 {
        points.insert(index * 5 + 1, BEFORE_COMMIT);
        points.insert(index * 5 + 3, AFTER_APPEND);
    }
    points
}

/// One recorded write of a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    /// Deletes the trail an earlier cycle left (which keeps the account under the trail quota:
    /// a cycle starts with at most one trail).
    DeleteTrail(String),
    CreateTrail,
    AddTags,
    UpdateEventDataStore,
    StartLogging,
}

impl Write {
    fn event_name(&self) -> &'static str {
        match self {
            Self::CreateTrail => "CreateTrail",
            Self::AddTags => "AddTags",
            Self::UpdateEventDataStore => "UpdateEventDataStore",
            Self::StartLogging => "StartLogging",
            Self::DeleteTrail(_) => "DeleteTrail",
        }
    }
}

/// What the test expects the server to hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct State {
    /// Trail name -> (tagged, logging).
    trails: BTreeMap<String, (bool, bool)>,
    store_name: String,
}

fn trail_name(cycle: usize) -> String {
    format!("trail-{cycle}")
}

fn trail_arn(name: &str) -> String {
    format!("arn:aws:cloudtrail:us-east-1:{ACCOUNT_A}:trail/{name}")
}

/// A recorded change: its event name and the name it acts on (unique across the test).
type ChangeKey = (String, String);

fn change_key(write: &Write, cycle: usize) -> ChangeKey {
    let subject = match write {
        Write::UpdateEventDataStore => format!("store-{cycle}"),
        Write::DeleteTrail(name) => name.clone(),
        _ => trail_name(cycle),
    };
    (write.event_name().to_owned(), subject)
}

/// Applies `write` of `cycle` to the expected state.
fn apply(state: &mut State, write: &Write, cycle: usize) {
    let name = trail_name(cycle);
    match write {
        Write::CreateTrail => {
            state.trails.insert(name, (false, false));
        }
        Write::AddTags => state.trails.get_mut(&name).expect("created first").0 = true,
        Write::StartLogging => state.trails.get_mut(&name).expect("created first").1 = true,
        Write::UpdateEventDataStore => state.store_name = format!("store-{cycle}"),
        Write::DeleteTrail(name) => {
            state.trails.remove(name);
        }
    }
}

/// Sends `write`; `Some(request ID)` if the server answered, `None` if it died first.
async fn send(ct: &aws_sdk_cloudtrail::Client, store_arn: &str, write: &Write, cycle: usize) -> Option<String> {
    let name = trail_name(cycle);
    macro_rules! answered {
        ($call:expr) => {
            match $call.await {
                Ok(output) => Some(output.request_id().expect("answers carry a request ID").to_owned()),
                // A refused call was answered: a bug in this test or the server.
                Err(error) if error.raw_response().is_some() => panic!("{write:?} of cycle {cycle} failed: {error:?}"),
                Err(_) => None,
            }
        };
    }
    match write {
        Write::CreateTrail => answered!(ct.create_trail().name(&name).s3_bucket_name("test-bucket").send()),
        Write::AddTags => answered!(
            ct.add_tags()
                .resource_id(trail_arn(&name))
                .tags_list(Tag::builder().key("cycle").value(cycle.to_string()).build().unwrap())
                .send()
        ),
        Write::UpdateEventDataStore => {
            answered!(ct.update_event_data_store().event_data_store(store_arn).name(format!("store-{cycle}")).send())
        }
        Write::StartLogging => answered!(ct.start_logging().name(&name).send()),
        Write::DeleteTrail(name) => answered!(ct.delete_trail().name(name).send()),
    }
}

/// The state the server holds now, read through the API.
async fn observed_state(ct: &aws_sdk_cloudtrail::Client, store_arn: &str) -> State {
    let mut state = State::default();
    let trails = ct.list_trails().send().await.unwrap();
    for trail in trails.trails() {
        let name = trail.name().unwrap().to_owned();
        let tags = ct.list_tags().resource_id_list(trail_arn(&name)).send().await.unwrap();
        let tagged = tags.resource_tag_list().iter().any(|entry| entry.tags_list().iter().any(|t| t.key() == "cycle"));
        let logging = ct.get_trail_status().name(&name).send().await.unwrap().is_logging().unwrap();
        state.trails.insert(name, (tagged, logging));
    }
    let store = ct.get_event_data_store().event_data_store(store_arn).send().await.unwrap();
    state.store_name = store.name().unwrap().to_owned();
    state
}

/// The change a successful write record describes, if it is one of this test's writes.
fn described_change(record: &serde_json::Value) -> Option<ChangeKey> {
    let parameters = &record["requestParameters"];
    let subject = match record["eventName"].as_str()? {
        "CreateTrail" | "StartLogging" | "DeleteTrail" | "UpdateEventDataStore" | "CreateEventDataStore" => {
            parameters["name"].as_str()?
        }
        "AddTags" => parameters["resourceId"].as_str()?.rsplit('/').next()?,
        _ => return None,
    };
    Some((record["eventName"].as_str()?.to_owned(), subject.to_owned()))
}

/// Every successful write record in account A's Event History, by the change it describes.
async fn recorded_changes(ct: &aws_sdk_cloudtrail::Client) -> BTreeMap<ChangeKey, Vec<serde_json::Value>> {
    let writes = LookupAttribute::builder()
        .attribute_key(LookupAttributeKey::ReadOnly)
        .attribute_value("false")
        .build()
        .unwrap();
    let mut recorded: BTreeMap<ChangeKey, Vec<serde_json::Value>> = BTreeMap::new();
    let mut event_ids = BTreeSet::new();
    let mut token = None;
    loop {
        let page = ct
            .lookup_events()
            .lookup_attributes(writes.clone())
            .max_results(50)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        for event in page.events() {
            let record: serde_json::Value = serde_json::from_str(event.cloud_trail_event().unwrap()).unwrap();
            assert!(event_ids.insert(record["eventID"].as_str().unwrap().to_owned()), "one event twice: {record}");
            if record.get("errorCode").is_some() {
                continue;
            }
            if let Some(key) = described_change(&record) {
                recorded.entry(key).or_default().push(record);
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return recorded;
        }
    }
}

/// Checks the server against the expected state and Event History against the applied changes.
async fn check(
    ct: &aws_sdk_cloudtrail::Client,
    store_arn: &str,
    expected: &State,
    applied: &BTreeMap<ChangeKey, Option<String>>,
    after: &str,
) {
    let observed = observed_state(ct, store_arn).await;
    assert_eq!(&observed, expected, "{after}: the state after the restart");
    let recorded = recorded_changes(ct).await;
    for (key, records) in &recorded {
        assert!(applied.contains_key(key), "{after}: a record of a change that is absent: {records:?}");
        assert_eq!(records.len(), 1, "{after}: {key:?} recorded {} times", records.len());
    }
    for (key, request_id) in applied {
        let Some(records) = recorded.get(key) else { panic!("{after}: the applied change {key:?} has no record") };
        if let Some(request_id) = request_id {
            // The record in Event History is the one the answered call produced.
            assert_eq!(records[0]["requestID"], request_id.as_str(), "{after}: {key:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applied_change_has_its_record_and_no_record_a_missing_change() {
    let mut server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let store = ct.create_event_data_store().name("store-initial").send().await.unwrap();
    let store_arn = store.event_data_store_arn().unwrap().to_owned();

    let mut rng = rand::rng();
    let mut expected = State { store_name: "store-initial".into(), ..State::default() };
    // Every change applied so far, with the request ID of its answer if it got one.
    let mut applied: BTreeMap<ChangeKey, Option<String>> = BTreeMap::new();
    applied.insert(("CreateEventDataStore".into(), "store-initial".into()), store.request_id().map(str::to_owned));
    let points = crash_points();
    let mut crashes = 0;
    let mut after = "the set-up".to_owned();
    for (cycle, point) in points.iter().copied().enumerate() {
        let mut writes: Vec<Write> = expected.trails.keys().cloned().map(Write::DeleteTrail).collect();
        assert!(writes.len() <= 1, "a cycle starts with at most one trail");
        writes.extend([Write::CreateTrail, Write::AddTags, Write::UpdateEventDataStore, Write::StartLogging]);
        // The n-th recorded write of this process crashes; those before it complete. Reads
        // never reach a crash point, so this server first checks what the last one left.
        let crash_on = rng.random_range(1..=writes.len());
        server.restart_with_env(&[("OPENTRAIL_CRASH_POINT", &format!("{point}@{crash_on}"))]);
        let ct = client(&server, ROOT_A, "us-east-1");
        check(&ct, &store_arn, &expected, &applied, &after).await;
        for (index, write) in writes.iter().enumerate() {
            let key = change_key(write, cycle);
            match send(&ct, &store_arn, write, cycle).await {
                Some(request_id) => {
                    assert!(index + 1 < crash_on, "{write:?} of cycle {cycle} passed the armed crash point {point}");
                    apply(&mut expected, write, cycle);
                    applied.insert(key, Some(request_id));
                }
                None => {
                    assert_eq!(index + 1, crash_on, "cycle {cycle}: the server died at {write:?}, not at the crash");
                    crashes += 1;
                    // Killed inside the commit: nothing happened. Killed after it: the change
                    // happened, unanswered.
                    if point != BEFORE_COMMIT {
                        apply(&mut expected, write, cycle);
                        applied.insert(key, None);
                    }
                    break;
                }
            }
        }
        after = format!("cycle {cycle} (killed {point} of write {crash_on})");
    }
    server.restart_with_env(&[]);
    check(&client(&server, ROOT_A, "us-east-1"), &store_arn, &expected, &applied, &after).await;
    assert_eq!(crashes, points.len(), "every cycle ended in its crash");
    println!("{crashes} crash cycles, {} changes applied, each recorded once", applied.len());
}
