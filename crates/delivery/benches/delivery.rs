//! Log-file writing throughput: CloudTrail-shaped records selected, batched into
//! `{"Records":[...]}` and gzipped, and a digest signed, as the delivery worker does.
//! Run: `cargo bench -p opentrail-delivery --bench delivery`.

use std::time::Instant;

use opentrail_delivery::digest::{DigestDocument, SIGNATURE_ALGORITHM, sign_digest};
use opentrail_delivery::keys::generate_key_pair;
use opentrail_delivery::logfile::build_log_file;

fn record(i: usize) -> Vec<u8> {
    format!(
        r#"{{"eventVersion":"1.11","userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLE{i:08}","arn":"arn:aws:iam::111122223333:user/user{u}","accountId":"111122223333","accessKeyId":"AKIAEXAMPLE{u:08}","userName":"user{u}"}},"eventTime":"2026-11-25T10:{m:02}:{s:02}Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"10.0.{a}.{b}","userAgent":"aws-cli/2.15.0 Python/3.11.6 Linux/6.1","requestParameters":{{"bucketName":"data-{u}","Host":"data-{u}.s3.amazonaws.com","key":"reports/{i}.csv"}},"responseElements":null,"additionalEventData":{{"SignatureVersion":"SigV4","bytesTransferredIn":0,"bytesTransferredOut":{i}}},"requestID":"{i:016X}","eventID":"00000000-0000-4000-8000-{i:012}","readOnly":true,"resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::data-{u}/reports/{i}.csv"}}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"111122223333","eventCategory":"Data"}}"#,
        u = i % 50,
        m = (i / 60) % 60,
        s = i % 60,
        a = i % 256,
        b = (i / 256) % 256,
    )
    .into_bytes()
}

fn main() {
    let total = 1_000_000;
    let per_file = 10_000;
    let records: Vec<Vec<u8>> = (0..total).map(record).collect();
    let raw_bytes: usize = records.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut gzipped = 0;
    let mut latencies = Vec::new();
    for chunk in records.chunks(per_file) {
        let file_started = Instant::now();
        let file = build_log_file(chunk.iter().map(|r| (r.as_slice(), None)));
        latencies.push(file_started.elapsed());
        gzipped += file.gzipped.len();
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "log files: {total} events ({:.0} MB raw) in {} files of {per_file}: {:.0} events/s, {:.0} MB/s raw, \
         gzip ratio {:.1}x, per-file p50 {:.1} ms, p99 {:.1} ms",
        raw_bytes as f64 / 1e6,
        total / per_file,
        total as f64 / elapsed.as_secs_f64(),
        raw_bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        raw_bytes as f64 / gzipped as f64,
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies[latencies.len() * 99 / 100].as_secs_f64() * 1e3,
    );

    let pair = generate_key_pair().expect("key");
    let document = DigestDocument {
        aws_account_id: "111122223333".into(),
        digest_start_time: "2026-11-25T10:00:00Z".into(),
        digest_end_time: "2026-11-25T11:00:00Z".into(),
        digest_s3_bucket: "bucket".into(),
        digest_s3_object: "AWSLogs/x.json.gz".into(),
        digest_public_key_fingerprint: "fp".into(),
        digest_signature_algorithm: SIGNATURE_ALGORITHM.into(),
        newest_event_time: None,
        oldest_event_time: None,
        previous_digest_s3_bucket: None,
        previous_digest_s3_object: None,
        previous_digest_hash_value: None,
        previous_digest_hash_algorithm: None,
        previous_digest_signature: None,
        log_files: Vec::new(),
    };
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        sign_digest(&document, &pair.private_der).expect("sign");
    }
    println!("digests: {:.2} ms per signed digest", started.elapsed().as_secs_f64() * 1e3 / rounds as f64);
}
