//! Journal damage through the real server: a flipped byte in the active or a sealed segment, a
//! zeroed 4 KiB page, the last frame cut at several offsets. After each restart every intact
//! acknowledged call is in Event History exactly once, the damage is reported (start-up log,
//! the `DAMAGE` list, `opentrail journal check`), positions are not reused after a cut, and a
//! delivering trail puts every intact record in its log files exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_cloudtrail::operation::RequestId;
use common::*;

/// `count` ListTrails calls from 8 concurrent clients; their request IDs.
async fn make_calls(server: &TestServer, count: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let ct = client(server, ROOT_A, "us-east-1");
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..count / 8 {
                    let output = ct.list_trails().send().await.unwrap();
                    ids.push(output.request_id().unwrap().to_owned());
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}

/// Polls Event History until every one of `expected` is there (or 60 s pass); returns what
/// it found, counted by request ID.
async fn history_once_indexed(server: &TestServer, expected: &HashSet<String>) -> HashMap<String, usize> {
    let ct = client(server, ROOT_A, "us-east-1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = history_request_ids(&ct).await;
        if expected.iter().all(|id| found.contains_key(id)) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every intact call found exactly once; the lost ones not at all.
fn assert_found_exactly(found: &HashMap<String, usize>, intact: &HashSet<String>, lost: &HashSet<String>) {
    let missing: Vec<_> = intact.iter().filter(|id| !found.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} intact acknowledged calls are missing, e.g. {:?}", missing.len(), missing.first());
    let twice: Vec<_> = found.iter().filter(|(id, n)| intact.contains(*id) && **n != 1).collect();
    assert!(twice.is_empty(), "found more than once: {twice:?}");
    for id in lost {
        assert!(!found.contains_key(id), "a damaged record was returned: {id}");
    }
}

/// The frames holding the given calls' records, in journal order.
fn frames_of(data_dir: &Path, ids: &HashSet<String>) -> Vec<DiskFrame> {
    journal_frames(data_dir)
        .into_iter()
        .filter(|f| record_field(&f.payload, "requestID").is_some_and(|id| ids.contains(&id)))
        .collect()
}

fn request_id(frame: &DiskFrame) -> String {
    record_field(&frame.payload, "requestID").unwrap()
}

/// `opentrail journal check` on the stopped server's data directory: (exit code, stdout).
fn journal_check(server: &TestServer) -> (i32, String) {
    let data_dir = server.server_data_dir();
    let output = opentrail(&["journal", "check", "--data-dir", data_dir.to_str().unwrap()]);
    (output.status.code().unwrap(), String::from_utf8(output.stdout).unwrap())
}

/// The damage reported at start-up names the segment, offset and length.
fn assert_logged(log: &Path, segment: &Path, offset: u64) {
    let text = std::fs::read_to_string(log).unwrap();
    let name = segment.file_name().unwrap().to_str().unwrap();
    let reported = text
        .lines()
        .any(|l| l.contains("journal damage") && l.contains(name) && l.contains(&format!("offset={offset}")));
    assert!(reported, "no damage report for {name} at offset {offset} in the log:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_in_the_active_segment_costs_one_record_and_is_reported() {
    let mut server = TestServer::start();
    let ids: HashSet<String> = make_calls(&server, 200).await.into_iter().collect();
    history_once_indexed(&server, &ids).await;
    server.kill();

    let frames = frames_of(&server.server_data_dir(), &ids);
    let victim = frames[frames.len() / 2].clone();
    flip_byte(&victim.segment, victim.file_offset() + victim.len / 2);
    let log = server.data_dir.path().join("restart.log");
    server.restart_logging_to(&log);

    let lost: HashSet<String> = [request_id(&victim)].into();
    let intact: HashSet<String> = ids.difference(&lost).cloned().collect();
    // The index already points at the damaged record: the lookup skips it, nothing else.
    let found = history_once_indexed(&server, &intact).await;
    assert_found_exactly(&found, &intact, &lost);
    assert_logged(&log, &victim.segment, victim.position - victim.base);
    server.kill();

    let (code, report) = journal_check(&server);
    assert_eq!(code, 1, "{report}");
    let offset = victim.position - victim.base;
    assert!(report.contains(&format!("offset {offset} length {}", victim.len)), "{report}");
    let recorded = std::fs::read_to_string(server.server_data_dir().join("journal/DAMAGE")).unwrap();
    assert!(recorded.contains(&format!("{} {} {}", victim.base, victim.position, victim.len)), "{recorded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_in_a_sealed_segment_costs_one_record_and_is_reported() {
    let mut server = TestServer::start_with("", &[("OPENTRAIL_JOURNAL_SEGMENT_BYTES", "65536")]);
    let ids: HashSet<String> = make_calls(&server, 400).await.into_iter().collect();
    history_once_indexed(&server, &ids).await;
    server.kill();

    let segments = journal_segments(&server.server_data_dir());
    assert!(segments.len() >= 4, "small segments roll: {segments:?}");
    let frames = frames_of(&server.server_data_dir(), &ids);
    let in_second: Vec<_> = frames.iter().filter(|f| f.base == segments[1].0).collect();
    let victim = in_second[in_second.len() / 2].clone();
    flip_byte(&victim.segment, victim.file_offset() + 9);
    let log = server.data_dir.path().join("restart.log");
    server.restart_logging_to(&log);

    let lost: HashSet<String> = [request_id(&victim)].into();
    let intact: HashSet<String> = ids.difference(&lost).cloned().collect();
    let found = history_once_indexed(&server, &intact).await;
    assert_found_exactly(&found, &intact, &lost);
    // Found by the lookup or the background scrub, whichever came first, and reported then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap().contains("journal damage found") {
        assert!(Instant::now() < deadline, "the damage was never reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_logged(&log, &victim.segment, victim.position - victim.base);
    server.kill();
    let (code, report) = journal_check(&server);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains(&format!("offset {} length {}", victim.position - victim.base, victim.len)), "{report}");

    // Reported at every start from then on, before anything reads the segment again.
    let log = server.data_dir.path().join("again.log");
    server.restart_logging_to(&log);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap().contains("damaged ranges") {
        assert!(Instant::now() < deadline, "the damage was not reported at start-up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_logged(&log, &victim.segment, victim.position - victim.base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zeroed_page_costs_only_the_records_on_it_and_the_index_rebuilds_around_it() {
    let mut server = TestServer::start();
    let ids: HashSet<String> = make_calls(&server, 400).await.into_iter().collect();
    history_once_indexed(&server, &ids).await;
    server.kill();

    let frames = frames_of(&server.server_data_dir(), &ids);
    let segment = frames[0].segment.clone();
    let page_start = (frames[frames.len() / 2].file_offset() / 4096) * 4096;
    let page_end = page_start + 4096;
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
        file.write_all_at(&[0u8; 4096], page_start).unwrap();
    }
    let lost: HashSet<String> = frames
        .iter()
        .filter(|f| f.segment == segment && f.file_offset() < page_end && f.file_offset() + f.len > page_start)
        .map(request_id)
        .collect();
    assert!(!lost.is_empty());
    // Event History rebuilt from the journal: the indexer reads across the damaged range.
    std::fs::remove_file(server.server_data_dir().join("history.redb")).unwrap();
    let log = server.data_dir.path().join("restart.log");
    server.restart_logging_to(&log);

    let intact: HashSet<String> = ids.difference(&lost).cloned().collect();
    let found = history_once_indexed(&server, &intact).await;
    assert_found_exactly(&found, &intact, &lost);
    assert!(std::fs::read_to_string(&log).unwrap().contains("journal damage"));
    println!("zeroed page: {} of {} records lost, all others found once", lost.len(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_frame_cut_at_several_offsets_loses_only_it_and_positions_are_not_reused() {
    let mut server = TestServer::start();
    let mut lost = HashSet::new();
    // The request IDs of each round of calls, and where the journal's bytes ended when the
    // round's last frame was cut.
    let mut rounds: Vec<HashSet<String>> = Vec::new();
    let mut cut_ends: Vec<u64> = Vec::new();
    // Cut inside the frame header, at its end, inside the payload, one byte short.
    for keep in [1u64, 7, 8, 9, 100, u64::MAX] {
        rounds.push(make_calls(&server, 24).await.into_iter().collect());
        server.kill();
        let last = journal_frames(&server.server_data_dir()).last().unwrap().clone();
        let keep = keep.min(last.len - 1);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last.segment)
            .unwrap()
            .set_len(last.file_offset() + keep)
            .unwrap();
        lost.extend(record_field(&last.payload, "requestID"));
        cut_ends.push(last.position + last.len);
        server.restart();
    }
    rounds.push(make_calls(&server, 24).await.into_iter().collect());
    let intact: HashSet<String> = rounds.iter().flatten().filter(|id| !lost.contains(*id)).cloned().collect();
    let found = history_once_indexed(&server, &intact).await;
    assert_found_exactly(&found, &intact, &lost);
    server.kill();

    // Every record written after a cut lies past every byte that was cut.
    let round_of: HashMap<&String, usize> =
        rounds.iter().enumerate().flat_map(|(round, ids)| ids.iter().map(move |id| (id, round))).collect();
    let frames = journal_frames(&server.server_data_dir());
    let mut checked = 0;
    for frame in &frames {
        let Some(id) = record_field(&frame.payload, "requestID") else { continue };
        let Some(&round) = round_of.get(&id) else { continue };
        if round > 0 {
            let cut_end = cut_ends[round - 1];
            assert!(frame.position >= cut_end, "round {round} wrote at {} below the cut end {cut_end}", frame.position);
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} records checked");
    let (code, report) = journal_check(&server);
    assert_eq!(code, 0, "a torn tail is not damage: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivering_trail_puts_every_intact_record_in_its_logs_exactly_once() {
    let mut server =
        TestServer::start_custom(Launch { env: &[("OPENTRAIL_DELIVERY_INTERVAL", "2s")], ..Default::default() });
    let ct = client(&server, ROOT_A, "us-east-1");
    ct.create_trail().name("delivered").s3_bucket_name("test-bucket").send().await.unwrap();
    ct.start_logging().name("delivered").send().await.unwrap();
    let ids: HashSet<String> = make_calls(&server, 160).await.into_iter().collect();
    server.kill();

    let frames = frames_of(&server.server_data_dir(), &ids);
    let victim = frames[frames.len() / 2].clone();
    flip_byte(&victim.segment, victim.file_offset() + victim.len / 2);
    server.restart();
    let victim_id = request_id(&victim);
    let intact: HashSet<String> = ids.iter().filter(|id| **id != victim_id).cloned().collect();

    let s3 = s3_client(&server.endpoint, ROOT_A);
    let deadline = Instant::now() + Duration::from_secs(90);
    let delivered = loop {
        let (_, records) = log_records(&s3, "test-bucket").await;
        let mut delivered: HashMap<String, usize> = HashMap::new();
        for record in &records {
            if let Some(id) = record["requestID"].as_str() {
                *delivered.entry(id.to_owned()).or_default() += 1;
            }
        }
        if intact.iter().all(|id| delivered.contains_key(id)) {
            break delivered;
        }
        assert!(Instant::now() < deadline, "delivery did not catch up");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let twice: Vec<_> = delivered.iter().filter(|(id, n)| ids.contains(*id) && **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}
