//! Foundation benchmarks: durable ingest through the journal, history indexing, and
//! LookupEvents latency over a large history.
//!
//! `cargo bench -p opentrail-service --bench foundation` (set OPENTRAIL_BENCH_EVENTS to change
//! the history size; default 1,000,000). Records are real-sized: replayed from
//! `../shared/data/real-events/*.jsonl` when that folder exists, otherwise generated in the
//! shape of CloudTrail management events (~1.3 KB each).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use opentrail_model::{AccountId, EventRecord, Principal, PrincipalKind, Region};
use opentrail_service::{Caller, Config, Credentials, OpenTrail};
use rand::Rng;
use serde_json::{Value, json};

const BATCH: usize = 100;
const WRITERS: usize = 8;
const ACCOUNT: &str = "123456789012";
const EVENT_NAMES: [&str; 12] = [
    "GetObject",
    "PutObject",
    "AssumeRole",
    "DescribeInstances",
    "CreateBucket",
    "ListBuckets",
    "GetCallerIdentity",
    "ConsoleLogin",
    "RunInstances",
    "CreateUser",
    "Decrypt",
    "PutBucketPolicy",
];

fn templates() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real-events");
    let mut records = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                records.extend(text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()));
            }
        }
    }
    if records.is_empty() {
        println!("(../shared/data/real-events not found: using generated CloudTrail-shaped records)");
        records = (0..EVENT_NAMES.len()).map(generated).collect();
    } else {
        println!("replaying {} real records from {}", records.len(), dir.display());
    }
    records
}

fn generated(i: usize) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole", "principalId": "AROAEXAMPLEROLEID:session",
            "arn": "arn:aws:sts::123456789012:assumed-role/DeployRole/session",
            "accountId": ACCOUNT, "accessKeyId": "ASIAEXAMPLEKEY000000",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEROLEID",
                    "arn": "arn:aws:iam::123456789012:role/DeployRole", "accountId": ACCOUNT, "userName": "DeployRole"},
                "webIdFederationData": {},
                "attributes": {"creationDate": "2024-05-01T10:00:00Z", "mfaAuthenticated": "false"}
            }
        },
        "eventTime": "2024-05-01T10:00:00Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": EVENT_NAMES[i % EVENT_NAMES.len()],
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2023 prompt/off command/s3api.put-object",
        "requestParameters": {"bucketName": "example-bucket", "Host": "example-bucket.s3.us-east-1.amazonaws.com",
            "key": "deployments/2024/05/01/artifact.tar.gz", "x-amz-server-side-encryption": "aws:kms"},
        "responseElements": {"x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
        "additionalEventData": {"SignatureVersion": "SigV4", "CipherSuite": "TLS_AES_128_GCM_SHA256",
            "bytesTransferredIn": 104857, "AuthenticationMethod": "AuthHeader", "x-amz-id-2": "Example+ID2/abcdefghijklmnop="},
        "requestID": "EXAMPLE123456789",
        "eventID": "00000000-0000-0000-0000-000000000000",
        "readOnly": !i.is_multiple_of(3),
        "resources": [{"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::example-bucket", "accountId": ACCOUNT}],
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": "example-bucket.s3.us-east-1.amazonaws.com"}
    })
}

/// A template record made unique: new ID, time, user and key, filed under the bench account.
fn replay(template: &Value, n: usize, time: DateTime<Utc>) -> EventRecord {
    let mut record = template.clone();
    record["eventID"] = json!(format!("{:08x}-0000-4000-8000-{:012x}", n, n));
    record["eventTime"] = json!(time.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    record["managementEvent"] = json!(true);
    record["eventCategory"] = json!("Management");
    if let Some(identity) = record.get_mut("userIdentity").and_then(Value::as_object_mut) {
        identity.insert("type".into(), json!("IAMUser"));
        identity.insert("userName".into(), json!(format!("user-{}", n % 1000)));
        identity.insert("accessKeyId".into(), json!(format!("AKIA{:016}", n % 5000)));
    }
    EventRecord::new(AccountId::parse(ACCOUNT).unwrap(), Region::parse("us-east-1").unwrap(), record).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let total: usize = std::env::var("OPENTRAIL_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = OpenTrail::open(dir.path(), Credentials::from_config(&Config::development()).unwrap()).unwrap();
    let templates = Arc::new(templates());
    let start_time = Utc::now() - chrono::Duration::days(30);

    // 1. Durable ingest: WRITERS concurrent producers, batches of 100 encoded records, each
    //    batch acknowledged after its group commit's fdatasync. Records are encoded before the
    //    clock starts (a million parsed JSON maps would not fit in memory).
    let mut per_writer: Vec<Vec<Vec<Vec<u8>>>> = (0..WRITERS).map(|_| Vec::new()).collect();
    let mut encoded_bytes = 0usize;
    for (index, first) in (0..total).step_by(BATCH).enumerate() {
        let batch: Vec<Vec<u8>> = (first..(first + BATCH).min(total))
            .map(|n| {
                let time = start_time + chrono::Duration::seconds((n / 4) as i64);
                replay(&templates[n % templates.len()], n, time).encode()
            })
            .collect();
        encoded_bytes += batch.iter().map(Vec::len).sum::<usize>();
        per_writer[index % WRITERS].push(batch);
    }
    let (elapsed, mut latencies) = runtime.block_on(async {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for batches in per_writer {
            let service = service.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for records in batches {
                    let sent = Instant::now();
                    service.journal().append(records).await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        (started.elapsed(), all)
    });
    latencies.sort();
    println!("\n== durable ingest (journal, fdatasync per group commit) ==");
    println!("events: {total}, writers: {WRITERS}, batch: {BATCH}, avg record: {} bytes", encoded_bytes / total);
    println!(
        "throughput: {:.0} events/s ({:.1} MB/s) in {:.2} s",
        total as f64 / elapsed.as_secs_f64(),
        encoded_bytes as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_secs_f64()
    );
    println!("batch ack latency: p50 {}, p99 {}", ms(percentile(&latencies, 0.5)), ms(percentile(&latencies, 0.99)));

    // 2. Indexing the whole history.
    let history = service.history().clone();
    let started = Instant::now();
    while history.catch_up_once(8 << 20).unwrap() > 0 {}
    let elapsed = started.elapsed();
    println!("\n== Event History indexing ==");
    println!(
        "indexed {total} events in {:.2} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );

    // 3. LookupEvents over the full history.
    let caller = Caller {
        principal: Principal {
            account: AccountId::parse(ACCOUNT).unwrap(),
            access_key_id: "AKIABENCH".into(),
            kind: PrincipalKind::Root,
        },
        region: Region::parse("us-east-1").unwrap(),
    };
    let mut rng = rand::rng();
    println!("\n== LookupEvents over {total} stored events (50 results a page unless noted) ==");
    type MakeInput = Box<dyn Fn(&mut rand::rngs::ThreadRng) -> Value>;
    let kinds: [(&str, MakeInput); 6] = [
        ("no attribute (newest 50)", Box::new(|_| json!({}))),
        (
            "EventName (common value)",
            Box::new(
                |r| json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": EVENT_NAMES[r.random_range(0..EVENT_NAMES.len())]}]}),
            ),
        ),
        (
            "Username (1 in 1000)",
            Box::new(
                |r| json!({"LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": format!("user-{}", r.random_range(0..1000))}]}),
            ),
        ),
        (
            "AccessKeyId (1 in 5000)",
            Box::new(
                |r| json!({"LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": format!("AKIA{:016}", r.random_range(0..5000))}]}),
            ),
        ),
        (
            "EventId (exact)",
            Box::new(move |r| {
                let n = r.random_range(0..total);
                json!({"LookupAttributes": [{"AttributeKey": "EventId", "AttributeValue": format!("{:08x}-0000-4000-8000-{:012x}", n, n)}]})
            }),
        ),
        (
            "time window + ReadOnly",
            Box::new(move |r| {
                let t = (start_time.timestamp() + r.random_range(0..(total / 4) as i64)) as f64;
                json!({"StartTime": t, "EndTime": t + 3600.0, "LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "false"}]})
            }),
        ),
    ];
    let mut everything = Vec::new();
    for (name, make) in &kinds {
        let mut samples = Vec::new();
        let mut returned = 0;
        for _ in 0..2000 {
            let input = make(&mut rng);
            let started = Instant::now();
            let output = runtime.block_on(service.lookup_events(&caller, input)).unwrap();
            samples.push(started.elapsed());
            returned += output["Events"].as_array().map_or(0, Vec::len);
        }
        samples.sort();
        println!(
            "{name:<28} median {}  p99 {}  ({:.1} events/page)",
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.99)),
            returned as f64 / samples.len() as f64
        );
        everything.extend(samples);
    }
    everything.sort();
    println!(
        "{:<28} median {}  p99 {}",
        "all lookups",
        ms(percentile(&everything, 0.5)),
        ms(percentile(&everything, 0.99))
    );
}
