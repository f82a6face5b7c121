//! Trail delivery end to end: the audited S3 endpoint driven by aws-sdk-s3, log files and
//! digests checked by the aws CLI's `validate-logs` and by `opentrail validate-logs`, delivery to
//! an external S3 server (`s3s-fs`) through an outage, and delivery under SIGKILL.

mod common;

use std::collections::HashSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::*;
use serde_json::Value;

const FAST: [(&str, &str); 2] = [("OPENTRAIL_DELIVERY_INTERVAL", "1s"), ("OPENTRAIL_DIGEST_INTERVAL", "2s")];
const BUCKET: &str = "trail-logs";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn now_text(offset_seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_seconds)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Runs the aws CLI (or `opentrail`) against the server, as account A.
fn run(program: &str, server: &TestServer, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ROOT_A.0)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_A.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_S3", &server.endpoint)
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"))
}

async fn create_logging_trail(server: &TestServer, validation: bool) -> String {
    let cloudtrail = client(server, ROOT_A, "us-east-1");
    let trail = cloudtrail
        .create_trail()
        .name("delivered")
        .s3_bucket_name(BUCKET)
        .enable_log_file_validation(validation)
        .send()
        .await
        .unwrap();
    cloudtrail.start_logging().name("delivered").send().await.unwrap();
    trail.trail_arn().unwrap().to_owned()
}

/// Waits until `check` holds, polling.
async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, timeout: Duration, mut check: F) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_and_wait_for_final_digest(server: &TestServer, s3: &aws_sdk_s3::Client) {
    let cloudtrail = client(server, ROOT_A, "us-east-1");
    cloudtrail.stop_logging().name("delivered").send().await.unwrap();
    let stopped = chrono::Utc::now().timestamp();
    wait_until("the final digest", Duration::from_secs(30), async || {
        let (keys, _) = log_records(s3, BUCKET).await;
        keys.iter().filter(|k| k.contains("CloudTrail-Digest")).any(|k| {
            let stamp = &k[k.len() - 24..k.len() - 8];
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").unwrap().and_utc().timestamp() > stopped
        })
    })
    .await;
}

/// `validate-logs --endpoint-url ... --trail-arn ... --start-time ... [--end-time ...]`, the
/// same for the aws CLI (after `cloudtrail`) and for `opentrail`.
fn validate_arguments(server: &TestServer, arn: &str, start: &str, end: Option<&str>) -> Vec<String> {
    let mut arguments: Vec<String> =
        ["validate-logs", "--endpoint-url", &server.endpoint, "--trail-arn", arn, "--start-time", start]
            .map(str::to_owned)
            .to_vec();
    if let Some(end) = end {
        arguments.extend(["--end-time".to_owned(), end.to_owned()]);
    }
    arguments
}

fn digest_keys(keys: &[String]) -> Vec<String> {
    let mut digests: Vec<String> = keys.iter().filter(|k| k.contains("CloudTrail-Digest/")).cloned().collect();
    digests.sort();
    digests
}

#[test]
fn aws_cli_validates_delivered_files_and_both_validators_catch_tampering() {
    if !aws_cli_available() {
        return;
    }
    // Delivered files are write-once for clients unless the operator allows changes; this test
    // tampers through the S3 endpoint, as a bucket owner could on AWS, so it allows them.
    let server = TestServer::start_with("[buckets]\nallow_overwriting_delivered_files = true\n", &FAST);
    let runtime = runtime();
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let made = run("aws", &server, &["s3", "mb", &format!("s3://{BUCKET}")]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let start = now_text(-1);
    let arn = runtime.block_on(create_logging_trail(&server, true));
    let cloudtrail = client(&server, ROOT_A, "us-east-1");
    runtime.block_on(async {
        for _ in 0..5 {
            cloudtrail.describe_trails().send().await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        wait_until("eight digests", Duration::from_secs(60), async || {
            digest_keys(&log_records(&s3, BUCKET).await.0).len() >= 8
        })
        .await;
        stop_and_wait_for_final_digest(&server, &s3).await;
    });
    let (keys, records) = runtime.block_on(log_records(&s3, BUCKET));
    let log_key = regex_like_log_key();
    let logs: Vec<&String> = keys.iter().filter(|k| k.contains("/CloudTrail/")).collect();
    assert!(logs.iter().all(|k| log_key(k)), "{logs:?}");
    assert_eq!(records.iter().filter(|r| r["eventName"] == "DescribeTrails").count(), 5);
    let copied = server.data_dir.path().join("copied.json.gz");
    assert!(
        run("aws", &server, &["s3", "cp", &format!("s3://{BUCKET}/{}", logs[0]), copied.to_str().unwrap()])
            .status
            .success()
    );

    let end = now_text(1);
    let arguments = validate_arguments(&server, &arn, &start, Some(&end));
    let aws_validate = |server: &TestServer| {
        let mut args = vec!["cloudtrail"];
        args.extend(arguments.iter().map(String::as_str));
        args.push("--verbose");
        run("aws", server, &args)
    };
    let our_validate = |server: &TestServer| {
        run(env!("CARGO_BIN_EXE_opentrail"), server, &arguments.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let text = |output: &Output| {
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    };
    let theirs = aws_validate(&server);
    assert!(theirs.status.success(), "aws validate-logs: {}", text(&theirs));
    let digest_count = digest_keys(&keys).len();
    assert!(text(&theirs).contains(&format!("{digest_count}/{digest_count} digest files valid")), "{}", text(&theirs));
    let ours = our_validate(&server);
    assert!(ours.status.success(), "opentrail validate-logs: {}", text(&ours));
    assert!(text(&ours).contains(&format!("{digest_count}/{digest_count} digest files valid")), "{}", text(&ours));

    // One changed byte in a log file.
    runtime.block_on(async {
        let key = logs[logs.len() / 2];
        let body = s3.get_object().bucket(BUCKET).key(key.as_str()).send().await.unwrap().body.collect().await.unwrap();
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body.into_bytes()[..]), &mut plain).unwrap();
        let changed = plain.replacen("\"eventVersion\":\"1.11\"", "\"eventVersion\":\"1.12\"", 1);
        assert_ne!(changed, plain);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, changed.as_bytes()).unwrap();
        let bytes = encoder.finish().unwrap();
        s3.put_object().bucket(BUCKET).key(key.as_str()).body(ByteStream::from(bytes)).send().await.unwrap();
    });
    for output in [aws_validate(&server), our_validate(&server)] {
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        assert!(text(&output).contains("INVALID: hash value doesn't match"), "{}", text(&output));
    }

    // A deleted log file.
    runtime.block_on(async {
        s3.delete_object().bucket(BUCKET).key(logs[0].as_str()).send().await.unwrap();
    });
    for output in [aws_validate(&server), our_validate(&server)] {
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        assert!(text(&output).contains(&format!("{}\tINVALID: not found", logs[0])), "{}", text(&output));
    }

    // A deleted digest, then two consecutive ones.
    let digests = digest_keys(&keys);
    runtime.block_on(async {
        for index in [2, 5, 6] {
            s3.delete_object().bucket(BUCKET).key(digests[index].as_str()).send().await.unwrap();
        }
    });
    let theirs = aws_validate(&server);
    let ours = our_validate(&server);
    for output in [&theirs, &ours] {
        assert_eq!(output.status.code(), Some(1));
        assert!(text(output).contains(&format!("{}\tINVALID: not found", digests[2])), "{}", text(output));
    }
    assert!(!text(&theirs).contains("more digest files are missing"));
    assert!(text(&ours).contains("more digest files are missing"), "{}", text(&ours));
}

/// `^AWSLogs/\d{12}/CloudTrail/[a-z0-9-]+/\d{4}/\d{2}/\d{2}/\d{12}_CloudTrail_[a-z0-9-]+_\d{8}T\d{4}Z_[A-Za-z0-9]{16}\.json\.gz$`
fn regex_like_log_key() -> impl Fn(&str) -> bool {
    |key: &str| {
        let parts: Vec<&str> = key.split('/').collect();
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if parts.len() != 8 || parts[0] != "AWSLogs" || !digits(parts[1], 12) || parts[2] != "CloudTrail" {
            return false;
        }
        let Some(name) = parts[7].strip_suffix(".json.gz") else { return false };
        let fields: Vec<&str> = name.split('_').collect();
        fields.len() == 5
            && fields[0] == parts[1]
            && fields[1] == "CloudTrail"
            && fields[2] == parts[3]
            && fields[3].len() == 14
            && fields[3].ends_with('Z')
            && fields[3][..8] == format!("{}{}{}", parts[4], parts[5], parts[6])
            && fields[4].len() == 16
            && fields[4].bytes().all(|b| b.is_ascii_alphanumeric())
    }
}

#[test]
fn s3_endpoint_serves_the_sdk_and_records_data_events() {
    let server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let other = s3_client(&server.endpoint, ROOT_B);
    runtime.block_on(async {
        s3.create_bucket().bucket(BUCKET).send().await.unwrap();
        s3.create_bucket().bucket("data-bucket").send().await.unwrap();
        let taken = other.create_bucket().bucket("data-bucket").send().await.unwrap_err();
        assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&taken), Some("BucketAlreadyExists"));
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        cloudtrail.create_trail().name("delivered").s3_bucket_name(BUCKET).send().await.unwrap();
        let data = aws_sdk_cloudtrail::types::AdvancedEventSelector::builder()
            .name("S3 data events")
            .field_selectors(
                aws_sdk_cloudtrail::types::AdvancedFieldSelector::builder()
                    .field("eventCategory")
                    .equals("Data")
                    .build()
                    .unwrap(),
            )
            .field_selectors(
                aws_sdk_cloudtrail::types::AdvancedFieldSelector::builder()
                    .field("resources.type")
                    .equals("AWS::S3::Object")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        cloudtrail.put_event_selectors().trail_name("delivered").advanced_event_selectors(data).send().await.unwrap();
        cloudtrail.start_logging().name("delivered").send().await.unwrap();

        let put = s3
            .put_object()
            .bucket("data-bucket")
            .key("reports/q1.txt")
            .metadata("team", "audit")
            .body(ByteStream::from_static(b"0123456789"))
            .send()
            .await
            .unwrap();
        assert!(put.e_tag().is_some());
        let head = s3.head_object().bucket("data-bucket").key("reports/q1.txt").send().await.unwrap();
        assert_eq!(head.metadata().unwrap()["team"], "audit");
        assert_eq!(head.content_length(), Some(10));
        let range =
            s3.get_object().bucket("data-bucket").key("reports/q1.txt").range("bytes=2-5").send().await.unwrap();
        assert_eq!(&range.body.collect().await.unwrap().into_bytes()[..], b"2345");
        s3.copy_object()
            .bucket("data-bucket")
            .key("copy.txt")
            .copy_source("data-bucket/reports/q1.txt")
            .send()
            .await
            .unwrap();
        let upload = s3.create_multipart_upload().bucket("data-bucket").key("big.bin").send().await.unwrap();
        let id = upload.upload_id().unwrap();
        let mut parts = Vec::new();
        for (number, size) in [(1, 5 * 1024 * 1024), (2, 1000)] {
            let part = s3
                .upload_part()
                .bucket("data-bucket")
                .key("big.bin")
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(vec![b'x'; size]))
                .send()
                .await
                .unwrap();
            parts.push(CompletedPart::builder().part_number(number).e_tag(part.e_tag().unwrap()).build());
        }
        s3.complete_multipart_upload()
            .bucket("data-bucket")
            .key("big.bin")
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .unwrap();
        let listed = s3.list_objects_v2().bucket("data-bucket").send().await.unwrap();
        let names: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(names, ["big.bin", "copy.txt", "reports/q1.txt"]);
        let denied = other.get_object().bucket("data-bucket").key("copy.txt").send().await.unwrap_err();
        assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&denied), Some("AccessDenied"));
        let buckets = other.list_buckets().send().await.unwrap();
        assert!(buckets.buckets().is_empty(), "account B sees none of A's buckets");
        s3.delete_object().bucket("data-bucket").key("copy.txt").send().await.unwrap();
        let not_empty = s3.delete_bucket().bucket("data-bucket").send().await.unwrap_err();
        assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&not_empty), Some("BucketNotEmpty"));

        wait_until("the data events' log file", Duration::from_secs(30), async || {
            log_records(&s3, BUCKET).await.1.iter().any(|r| r["eventName"] == "DeleteObject")
        })
        .await;
        let (keys, records) = log_records(&s3, BUCKET).await;
        let put_record = records.iter().find(|r| r["eventName"] == "PutObject").expect("PutObject is delivered");
        assert_eq!(put_record["eventCategory"], "Data");
        assert_eq!(put_record["managementEvent"], false);
        assert_eq!(put_record["eventSource"], "s3.amazonaws.com");
        assert_eq!(put_record["requestParameters"]["bucketName"], "data-bucket");
        assert_eq!(put_record["requestParameters"]["key"], "reports/q1.txt");
        assert_eq!(put_record["additionalEventData"]["bytesTransferredIn"], 10);
        assert_eq!(put_record["resources"][0]["ARN"], "arn:aws:s3:::data-bucket/reports/q1.txt");
        assert_eq!(put_record["resources"][1]["type"], "AWS::S3::Bucket");
        let get_record = records.iter().find(|r| r["eventName"] == "GetObject").unwrap();
        assert_eq!(get_record["additionalEventData"]["bytesTransferredOut"], 4);
        assert!(records.iter().all(|r| r["eventCategory"] == "Data"), "the selectors chose data events only");
        // Account B's denied read is B's event, not in A's trail; delivery's own writes are not
        // recorded at all (the log reads above are, being calls).
        assert!(records.iter().all(|r| r["recipientAccountId"] == ACCOUNT_A));
        assert!(
            !records.iter().any(|r| r["eventName"] == "PutObject" && r["requestParameters"]["bucketName"] == BUCKET)
        );
        assert!(keys.iter().any(|k| k.contains("/CloudTrail/us-east-1/")));
    });
}

/// A webhook that answers 200 and keeps each request's headers and body.
fn start_webhook() -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            let mut body = vec![0; length];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .unwrap();
            if sender.send((head, String::from_utf8(body).unwrap())).is_err() {
                return;
            }
        }
    });
    (url, receiver)
}

#[test]
fn delivered_files_are_announced_to_the_trails_webhook() {
    let (url, received) = start_webhook();
    let config = format!("[[notification_targets]]\nname = \"ops\"\nurl = \"{url}\"\nsecret = \"hook-secret\"\n");
    let server = TestServer::start_with(&config, &FAST);
    let runtime = runtime();
    let s3 = s3_client(&server.endpoint, ROOT_A);
    runtime.block_on(async {
        s3.create_bucket().bucket(BUCKET).send().await.unwrap();
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        let unknown =
            cloudtrail.create_trail().name("delivered").s3_bucket_name(BUCKET).sns_topic_name("nobody").send().await;
        assert_eq!(error_code(unknown.unwrap_err()), "InsufficientSnsTopicPolicyException");
        let created =
            cloudtrail.create_trail().name("delivered").s3_bucket_name(BUCKET).sns_topic_name("ops").send().await;
        assert_eq!(created.unwrap().sns_topic_arn(), Some("arn:aws:sns:us-east-1:111111111111:ops"));
        cloudtrail.start_logging().name("delivered").send().await.unwrap();
    });
    let (head, body) = received.recv_timeout(Duration::from_secs(30)).expect("a notification arrives");
    let mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"hook-secret").unwrap();
    let mut mac = mac;
    hmac::Mac::update(&mut mac, body.as_bytes());
    let expected = format!("x-opentrail-signature: sha256={}", hex::encode(hmac::Mac::finalize(mac).into_bytes()));
    assert!(head.lines().any(|line| line.trim() == expected), "{head}");
    let notification: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(notification["Type"], "Notification");
    assert_eq!(notification["TopicArn"], "arn:aws:sns:us-east-1:111111111111:ops");
    let message: Value = serde_json::from_str(notification["Message"].as_str().unwrap()).unwrap();
    assert_eq!(message["s3Bucket"], BUCKET);
    let keys = message["s3ObjectKey"].as_array().unwrap();
    assert!(!keys.is_empty());
    runtime.block_on(async {
        for key in keys {
            s3.head_object().bucket(BUCKET).key(key.as_str().unwrap()).send().await.expect("the announced file exists");
        }
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        wait_until("the notification time in GetTrailStatus", Duration::from_secs(10), async || {
            let status = cloudtrail.get_trail_status().name("delivered").send().await.unwrap();
            status.latest_notification_time().is_some() && status.latest_notification_error().is_none()
        })
        .await;
    });
}

#[test]
fn delivers_to_an_external_s3_server_through_an_outage() {
    let Some(binary) = s3s_fs_binary() else { return };
    let folder = tempfile::tempdir().unwrap();
    let mut external = ExternalS3::start(binary, folder.path());
    let config = format!(
        "[[remote_buckets]]\nbucket = \"{BUCKET}\"\nendpoint_url = \"{}\"\naccess_key_id = \"ext-key\"\nsecret_access_key = \"ext-secret\"\n",
        external.endpoint()
    );
    let server = TestServer::start_with(&config, &FAST);
    let runtime = runtime();
    let outside = s3_client(&external.endpoint(), ("ext-key", "ext-secret"));
    runtime.block_on(async {
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        let missing = cloudtrail.create_trail().name("delivered").s3_bucket_name(BUCKET).send().await.unwrap_err();
        assert_eq!(error_code(missing), "S3BucketDoesNotExistException");
        outside.create_bucket().bucket(BUCKET).send().await.unwrap();
        create_logging_trail(&server, true).await;
        for _ in 0..3 {
            cloudtrail.describe_trails().send().await.unwrap();
        }
        wait_until("files on the external server", Duration::from_secs(30), async || {
            log_records(&outside, BUCKET).await.1.iter().filter(|r| r["eventName"] == "DescribeTrails").count() == 3
        })
        .await;

        external.stop();
        for _ in 0..4 {
            cloudtrail.describe_trails().send().await.unwrap();
        }
        wait_until("the delivery error in GetTrailStatus", Duration::from_secs(30), async || {
            let status = cloudtrail.get_trail_status().name("delivered").send().await.unwrap();
            status.latest_delivery_error().is_some() && status.latest_delivery_attempt_succeeded() == Some("false")
        })
        .await;

        external.launch();
        wait_until("delivery to resume", Duration::from_secs(90), async || {
            log_records(&outside, BUCKET).await.1.iter().filter(|r| r["eventName"] == "DescribeTrails").count() >= 7
        })
        .await;
        let (keys, records) = log_records(&outside, BUCKET).await;
        let ids: Vec<&str> = records.iter().map(|r| r["eventID"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), ids.iter().collect::<HashSet<_>>().len(), "no event is delivered twice");
        assert_eq!(records.iter().filter(|r| r["eventName"] == "DescribeTrails").count(), 7);
        assert!(keys.iter().any(|k| k.contains("CloudTrail-Digest/")), "digests reach the external server");
        let status = cloudtrail.get_trail_status().name("delivered").send().await.unwrap();
        assert_eq!(status.latest_delivery_error(), None);
    });
}

#[test]
fn every_selected_event_lands_in_exactly_one_file_across_sigkills() {
    let mut server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let start = now_text(-1);
    let arn = runtime.block_on(async {
        s3.create_bucket().bucket(BUCKET).send().await.unwrap();
        create_logging_trail(&server, true).await
    });
    let mut acknowledged = 0;
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    for cycle in 0..20 {
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        runtime.block_on(async {
            for _ in 0..8 {
                if cloudtrail.describe_trails().send().await.is_ok() {
                    acknowledged += 1;
                }
            }
        });
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        std::thread::sleep(Duration::from_millis(200 + rng_state % 2300));
        server.kill();
        server.restart();
        eprintln!("cycle {cycle}: {acknowledged} acknowledged so far");
    }
    let s3 = s3_client(&server.endpoint, ROOT_A);
    runtime.block_on(stop_and_wait_for_final_digest(&server, &s3));
    let (_, records) = runtime.block_on(log_records(&s3, BUCKET));
    let described: Vec<&Value> = records.iter().filter(|r| r["eventName"] == "DescribeTrails").collect();
    let ids: HashSet<&str> = records.iter().map(|r| r["eventID"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), records.len(), "no event is in two log files");
    assert_eq!(described.len(), acknowledged, "every acknowledged call is delivered");
    let arguments = validate_arguments(&server, &arn, &start, None);
    let output =
        run(env!("CARGO_BIN_EXE_opentrail"), &server, &arguments.iter().map(String::as_str).collect::<Vec<_>>());
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the digest chain validates end to end: {text}");
    eprintln!("{acknowledged} acknowledged calls over 20 SIGKILLs, each in exactly one log file\n{text}");
}
