//! Issue 9's delivery, file and secret findings against the real binary: digests signed and
//! validated by the aws CLI for long names, long prefixes and every Region CloudTrail has;
//! `S3KeyPrefix` validated; a trail bound to its bucket's owner and creation; planted objects
//! reported; the data directory private; signing keys sealed at rest and the master key rotated.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use common::*;
use opentrail_model::regions::CLOUDTRAIL_REGIONS;

const FAST: [(&str, &str); 2] = [("OPENTRAIL_DELIVERY_INTERVAL", "1s"), ("OPENTRAIL_DIGEST_INTERVAL", "2s")];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn now_text(offset_seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_seconds)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `aws cloudtrail validate-logs` as account A, in `region`, over `[start, now + 1 s]`.
fn aws_validate(server: &TestServer, arn: &str, start: &str, region: &str) -> Output {
    Command::new("aws")
        .args(["cloudtrail", "validate-logs", "--endpoint-url", &server.endpoint, "--region", region])
        .args(["--trail-arn", arn, "--start-time", start, "--end-time", &now_text(1)])
        .env("AWS_ACCESS_KEY_ID", ROOT_A.0)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_A.1)
        .env("AWS_DEFAULT_REGION", region)
        .env("AWS_REGION", region)
        .env("AWS_ENDPOINT_URL_S3", &server.endpoint)
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("the aws CLI runs")
}

/// Asserts validate-logs passed with every digest valid, and returns how many it checked.
fn assert_all_valid(output: &Output) -> usize {
    let text = text(output);
    assert!(output.status.success(), "aws validate-logs failed: {text}");
    let line = text.lines().find(|l| l.contains("digest files valid")).unwrap_or_else(|| panic!("{text}"));
    let counts = line.split_whitespace().next().unwrap();
    let (valid, total) = counts.split_once('/').unwrap();
    assert_eq!(valid, total, "{text}");
    assert!(!text.contains("INVALID"), "{text}");
    total.parse().unwrap()
}

async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, timeout: Duration, mut check: F) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn digest_keys(keys: &[String]) -> Vec<String> {
    let mut digests: Vec<String> = keys.iter().filter(|k| k.contains("CloudTrail-Digest/")).cloned().collect();
    digests.sort();
    digests
}

/// The `YYYYMMDDTHHMMSSZ` end time a digest key carries, as epoch seconds.
fn digest_time(key: &str) -> i64 {
    let stamp = &key[key.len() - 24..key.len() - 8];
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").unwrap().and_utc().timestamp()
}

/// Stops logging and waits for the digests that close every chain (`regions` of them).
async fn stop_and_wait_for_final_digests(server: &TestServer, s3: &aws_sdk_s3::Client, bucket: &str, trail: &str) {
    client(server, ROOT_A, "us-east-1").stop_logging().name(trail).send().await.unwrap();
    let stopped = chrono::Utc::now().timestamp();
    wait_until("the final digest", Duration::from_secs(30), async || {
        digest_keys(&log_records(s3, bucket).await.0).iter().any(|k| digest_time(k) > stopped)
    })
    .await;
}

/// A validating trail in us-east-1 delivering to `bucket` under `prefix`, with a few digests
/// and the final one written; returns its ARN and the validation start time.
async fn delivered_trail(
    server: &TestServer,
    bucket: &str,
    prefix: Option<&str>,
    trail: &str,
    digests: usize,
) -> (String, String) {
    let s3 = s3_client(&server.endpoint, ROOT_A);
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let start = now_text(-1);
    let cloudtrail = client(server, ROOT_A, "us-east-1");
    let created = cloudtrail
        .create_trail()
        .name(trail)
        .s3_bucket_name(bucket)
        .set_s3_key_prefix(prefix.map(str::to_owned))
        .enable_log_file_validation(true)
        .send()
        .await
        .unwrap();
    assert_eq!(created.s3_key_prefix(), prefix);
    cloudtrail.start_logging().name(trail).send().await.unwrap();
    wait_until("digests", Duration::from_secs(40), async || {
        cloudtrail.describe_trails().send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        digest_keys(&log_records(&s3, bucket).await.0).len() >= digests
    })
    .await;
    stop_and_wait_for_final_digests(server, &s3, bucket, trail).await;
    (created.trail_arn().unwrap().to_owned(), start)
}

/// Every digest carries its signature metadata, and the trail reports no error.
async fn assert_digests_signed(server: &TestServer, bucket: &str, trail: &str, prefix: &str) {
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let digests = digest_keys(&log_records(&s3, bucket).await.0);
    assert!(!digests.is_empty());
    for key in &digests {
        assert!(key.starts_with(prefix), "{key}");
        let head = s3.head_object().bucket(bucket).key(key).send().await.unwrap();
        let metadata = head.metadata().cloned().unwrap_or_default();
        assert_eq!(metadata.get("signature-algorithm").map(String::as_str), Some("SHA256withRSA"), "{key}");
        assert_eq!(metadata.get("signature").map(String::len), Some(512), "{key}");
    }
    let status = client(server, ROOT_A, "us-east-1").get_trail_status().name(trail).send().await.unwrap();
    assert_eq!(status.latest_digest_delivery_error(), None);
    assert_eq!(status.latest_delivery_error(), None);
}

#[test]
fn finding_5_digests_are_signed_and_validate_with_the_console_default_bucket_name_in_us_east_1() {
    if !aws_cli_available() {
        return;
    }
    let server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    // The console's default: aws-cloudtrail-logs-<account>-<8 hex>, trail management-events.
    let bucket = format!("aws-cloudtrail-logs-{ACCOUNT_A}-5e1f0c2a");
    let (arn, start) = runtime.block_on(delivered_trail(&server, &bucket, None, "management-events", 3));
    runtime.block_on(assert_digests_signed(&server, &bucket, "management-events", "AWSLogs/"));
    assert!(assert_all_valid(&aws_validate(&server, &arn, &start, "us-east-1")) >= 3);
}

#[test]
fn finding_5_digests_are_signed_and_validate_with_a_200_character_prefix() {
    if !aws_cli_available() {
        return;
    }
    let server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    let prefix = format!("audit/organisation-wide/{}/{}", "a".repeat(80), "b".repeat(95));
    assert_eq!(prefix.chars().count(), 200);
    let (arn, start) = runtime.block_on(delivered_trail(&server, "my-trail-bucket", Some(&prefix), "trail1", 3));
    runtime.block_on(assert_digests_signed(&server, "my-trail-bucket", "trail1", &format!("{prefix}/AWSLogs/")));
    assert!(assert_all_valid(&aws_validate(&server, &arn, &start, "us-east-1")) >= 3);
}

#[test]
fn finding_5_and_7_digests_are_signed_and_validate_in_every_cloudtrail_region() {
    if !aws_cli_available() {
        return;
    }
    let server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    let (bucket, trail) = ("my-trail-bucket", "trail1");
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let start = now_text(-1);
    let arn = runtime.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        let created = cloudtrail
            .create_trail()
            .name(trail)
            .s3_bucket_name(bucket)
            .is_multi_region_trail(true)
            .enable_log_file_validation(true)
            .send()
            .await
            .unwrap();
        cloudtrail.start_logging().name(trail).send().await.unwrap();
        // One event in every Region: each opens that Region's log files and digest chain.
        for region in CLOUDTRAIL_REGIONS {
            client(&server, ROOT_A, region).list_trails().send().await.unwrap();
        }
        wait_until("a digest with files in every Region", Duration::from_secs(40), async || {
            let digests = digest_keys(&log_records(&s3, bucket).await.0);
            CLOUDTRAIL_REGIONS.iter().all(|region| digests.iter().any(|k| k.contains(&format!("-Digest/{region}/"))))
        })
        .await;
        stop_and_wait_for_final_digests(&server, &s3, bucket, trail).await;
        created.trail_arn().unwrap().to_owned()
    });
    let digests = runtime.block_on(async { digest_keys(&log_records(&s3, bucket).await.0) });
    let folders: std::collections::BTreeSet<&str> = digests.iter().map(|k| k.split('/').nth(3).unwrap()).collect();
    assert_eq!(folders, CLOUDTRAIL_REGIONS.iter().copied().collect(), "a chain for exactly CloudTrail's Regions");
    // validate-logs checks one source Region per run; four runs at a time.
    for regions in CLOUDTRAIL_REGIONS.chunks(4) {
        std::thread::scope(|scope| {
            let runs: Vec<_> = regions
                .iter()
                .map(|region| (region, scope.spawn(|| aws_validate(&server, &arn, &start, region))))
                .collect();
            for (region, run) in runs {
                let output = run.join().unwrap();
                assert!(assert_all_valid(&output) >= 1, "{region}: {}", text(&output));
            }
        });
    }
}

#[test]
fn finding_6_s3_key_prefix_with_dot_dot_is_refused() {
    let server = TestServer::start();
    let runtime = runtime();
    runtime.block_on(async {
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        let too_long = "p".repeat(201);
        for bad in ["..", "../222222222222-bucket", "logs/../../x", "a/./b", ".", "a//b", "/abs", "a\u{1}b", &too_long]
        {
            let error = cloudtrail
                .create_trail()
                .name("prefixed")
                .s3_bucket_name("test-bucket")
                .s3_key_prefix(bad)
                .send()
                .await
                .expect_err(bad);
            assert_eq!(error_code(error), "InvalidS3PrefixException", "{bad:?}");
        }
        assert!(cloudtrail.get_trail().name("prefixed").send().await.is_err(), "nothing was created");
        cloudtrail
            .create_trail()
            .name("prefixed")
            .s3_bucket_name("test-bucket")
            .s3_key_prefix("logs")
            .send()
            .await
            .unwrap();
        let error =
            cloudtrail.update_trail().name("prefixed").s3_key_prefix("logs/../../other").send().await.unwrap_err();
        assert_eq!(error_code(error), "InvalidS3PrefixException");
        let trail = cloudtrail.get_trail().name("prefixed").send().await.unwrap();
        assert_eq!(trail.trail().unwrap().s3_key_prefix(), Some("logs"), "unchanged");
        let longest = "p".repeat(200);
        let updated = cloudtrail.update_trail().name("prefixed").s3_key_prefix(&longest).send().await.unwrap();
        assert_eq!(updated.s3_key_prefix(), Some(longest.as_str()));
    });
}

#[test]
fn finding_6_a_bucket_deleted_and_recreated_by_another_account_is_a_delivery_error() {
    // Account A must be able to empty its bucket of delivered files to delete it.
    let server = TestServer::start_with("[buckets]\nallow_overwriting_delivered_files = true\n", &FAST);
    let runtime = runtime();
    let bucket = "contested-name";
    runtime.block_on(async {
        let (s3_a, s3_b) = (s3_client(&server.endpoint, ROOT_A), s3_client(&server.endpoint, ROOT_B));
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        s3_a.create_bucket().bucket(bucket).send().await.unwrap();
        cloudtrail.create_trail().name("bound").s3_bucket_name(bucket).send().await.unwrap();
        cloudtrail.start_logging().name("bound").send().await.unwrap();
        wait_until("a log file", Duration::from_secs(20), async || !log_records(&s3_a, bucket).await.0.is_empty())
            .await;

        // Account A empties and deletes its bucket (delivery may add a file meanwhile).
        wait_until("the bucket deleted", Duration::from_secs(20), async || {
            for key in log_records(&s3_a, bucket).await.0 {
                s3_a.delete_object().bucket(bucket).key(key).send().await.unwrap();
            }
            s3_a.delete_bucket().bucket(bucket).send().await.is_ok()
        })
        .await;
        let status_error = async || {
            let status = cloudtrail.get_trail_status().name("bound").send().await.unwrap();
            status.latest_delivery_error().map(str::to_owned)
        };
        wait_until("NoSuchBucket", Duration::from_secs(20), async || {
            status_error().await.as_deref() == Some("NoSuchBucket")
        })
        .await;

        // Account B takes the name.
        s3_b.create_bucket().bucket(bucket).send().await.unwrap();
        wait_until("AccessDenied", Duration::from_secs(20), async || {
            status_error().await.as_deref() == Some("AccessDenied")
        })
        .await;
        // A's events keep coming (every GetTrailStatus is one) and several rounds pass.
        for _ in 0..10 {
            assert_eq!(status_error().await.as_deref(), Some("AccessDenied"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let listed = s3_b.list_objects_v2().bucket(bucket).send().await.unwrap();
        assert_eq!(listed.key_count(), Some(0), "account B's bucket got {:?}", listed.contents());
        let status = cloudtrail.get_trail_status().name("bound").send().await.unwrap();
        assert_eq!(status.latest_delivery_attempt_succeeded(), Some("false"));
        // Nor can A point the trail at B's bucket again.
        let error = cloudtrail.update_trail().name("bound").s3_bucket_name(bucket).send().await.unwrap_err();
        assert_eq!(error_code(error), "InsufficientS3BucketPolicyException");

        // B gives the name up and A creates it again: still not the trail's bucket until the
        // trail is updated, then delivery resumes and the error clears.
        s3_b.delete_bucket().bucket(bucket).send().await.unwrap();
        s3_a.create_bucket().bucket(bucket).send().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(status_error().await.as_deref(), Some("AccessDenied"));
        assert!(log_records(&s3_a, bucket).await.0.is_empty());
        cloudtrail.update_trail().name("bound").s3_bucket_name(bucket).send().await.unwrap();
        wait_until("delivery again", Duration::from_secs(20), async || {
            status_error().await.is_none() && !log_records(&s3_a, bucket).await.0.is_empty()
        })
        .await;
    });
}

#[test]
fn finding_6_an_object_planted_at_the_next_digest_key_is_a_reported_error() {
    if !aws_cli_available() {
        return;
    }
    let server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    let (bucket, trail) = ("planted-bucket", "planted");
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let start = now_text(-1);
    let (arn, planted) = runtime.block_on(async {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        let created = cloudtrail
            .create_trail()
            .name(trail)
            .s3_bucket_name(bucket)
            .enable_log_file_validation(true)
            .send()
            .await
            .unwrap();
        cloudtrail.start_logging().name(trail).send().await.unwrap();
        // Digests end on a 2-second grid: take the keys of the next few ends first.
        let now = chrono::Utc::now().timestamp();
        let mut planted = Vec::new();
        for end in (1..=4).map(|n| now - now % 2 + 4 + 2 * n) {
            let end = chrono::DateTime::from_timestamp(end, 0).unwrap();
            let key = format!(
                "AWSLogs/{ACCOUNT_A}/CloudTrail-Digest/us-east-1/{}/{ACCOUNT_A}_CloudTrail-Digest_us-east-1_{trail}_us-east-1_{}.json.gz",
                end.format("%Y/%m/%d"),
                end.format("%Y%m%dT%H%M%SZ")
            );
            s3.put_object().bucket(bucket).key(&key).body(ByteStream::from_static(b"planted")).send().await.unwrap();
            planted.push(key);
        }
        let mut seen = None;
        wait_until("the planted key reported", Duration::from_secs(30), async || {
            let status = cloudtrail.get_trail_status().name(trail).send().await.unwrap();
            seen = status.latest_digest_delivery_error().map(str::to_owned);
            seen.as_deref().is_some_and(|error| planted.iter().any(|key| error.contains(key.as_str())))
        })
        .await;
        assert!(seen.unwrap().starts_with("ObjectAlreadyExists"));
        // The chain goes on past the planted keys.
        let last_planted = digest_time(planted.last().unwrap());
        wait_until("digests after the planted keys", Duration::from_secs(30), async || {
            digest_keys(&log_records(&s3, bucket).await.0).iter().any(|k| digest_time(k) > last_planted + 2)
        })
        .await;
        stop_and_wait_for_final_digests(&server, &s3, bucket, trail).await;
        (created.trail_arn().unwrap().to_owned(), planted)
    });
    runtime.block_on(async {
        for key in &planted {
            let body = s3.get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await.unwrap();
            assert_eq!(&body.into_bytes()[..], b"planted", "left as it was: {key}");
        }
        let digests = digest_keys(&log_records(&s3, bucket).await.0);
        let moved = planted.iter().filter(|key| {
            let next = digest_time(key) + 1;
            digests.iter().any(|k| digest_time(k) == next)
        });
        assert!(moved.count() >= 1, "a digest moved to the second after a planted key: {digests:?}");
    });
    // Every real digest is in one unbroken, signed chain.
    assert!(assert_all_valid(&aws_validate(&server, &arn, &start, "us-east-1")) >= 3);
}

/// Every directory under `root` is 0700 and every file 0600; returns how many files.
fn assert_private(root: &Path) -> usize {
    let mode = |path: &Path| std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(root), 0o700, "{}", root.display());
    let mut files = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if metadata.is_dir() {
            files += assert_private(&path);
        } else if metadata.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            files += 1;
        }
    }
    files
}

fn loosen(root: &Path) {
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            loosen(&path);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn finding_6_data_directory_is_0700_and_its_files_0600() {
    let mut server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    let data = server.server_data_dir();
    runtime.block_on(delivered_trail(&server, "private-bucket", None, "private", 1));
    let names = |data: &Path| {
        let mut names: Vec<String> =
            std::fs::read_dir(data).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    for expected in ["control.sqlite", "control.sqlite-wal", "history.redb", "journal", "buckets", "master.key"] {
        assert!(names(&data).iter().any(|n| n == expected), "{expected} in {:?}", names(&data));
    }
    let files = assert_private(&data);
    assert!(files >= 8, "{files} files checked");

    // Files an older version (or another umask) left readable are fixed at the next start.
    server.kill();
    loosen(&data);
    std::fs::write(data.join("left-behind.txt"), "x").unwrap();
    std::fs::set_permissions(data.join("left-behind.txt"), std::fs::Permissions::from_mode(0o666)).unwrap();
    server.restart();
    assert!(assert_private(&data) > files, "left-behind.txt and everything else fixed");
    runtime.block_on(async {
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        cloudtrail.start_logging().name("private").send().await.unwrap();
        let s3 = s3_client(&server.endpoint, ROOT_A);
        let before = log_records(&s3, "private-bucket").await.0.len();
        wait_until("more files", Duration::from_secs(20), async || {
            log_records(&s3, "private-bucket").await.0.len() > before
        })
        .await;
    });
    assert!(assert_private(&data) > files + 1);
}

/// A PKCS#1 RSA-2048 private key starts `SEQUENCE { INTEGER 0, INTEGER <257-byte modulus> ...`.
const PRIVATE_KEY_MARK: [u8; 8] = [0x02, 0x01, 0x00, 0x02, 0x82, 0x01, 0x01, 0x00];

fn control_store_bytes(data: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(data.join("control.sqlite")).unwrap();
    bytes.extend(std::fs::read(data.join("control.sqlite-wal")).unwrap_or_default());
    bytes
}

#[test]
fn finding_6_signing_keys_are_not_stored_in_plaintext() {
    let server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    runtime.block_on(delivered_trail(&server, "sealed-bucket", None, "sealed", 2));
    let public = runtime.block_on(async {
        let keys = client(&server, ROOT_A, "us-east-1").list_public_keys().send().await.unwrap();
        keys.public_key_list()[0].value().unwrap().as_ref().to_vec()
    });
    let stored = control_store_bytes(&server.server_data_dir());
    // The public key is stored as it is (so this is the right file), the private one is not.
    assert!(stored.windows(public.len()).any(|w| w == public.as_slice()));
    let modulus = &public[public.len() - 5 - 257..public.len() - 5];
    assert!(stored.windows(modulus.len()).any(|w| w == modulus));
    assert!(!stored.windows(PRIVATE_KEY_MARK.len()).any(|w| w == PRIVATE_KEY_MARK), "a private key in plaintext");
}

#[test]
fn master_key_rotation_keeps_validate_logs_passing() {
    if !aws_cli_available() {
        return;
    }
    let mut server = TestServer::start_with("", &FAST);
    let runtime = runtime();
    let data = server.server_data_dir();
    let (bucket, trail) = ("rotated-bucket", "rotated");
    let (arn, start) = runtime.block_on(delivered_trail(&server, bucket, None, trail, 2));
    let rotate = |new_key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_opentrail"))
            .args(["rotate-master-key", "--data-dir"])
            .arg(&data)
            .arg("--new-key-file")
            .arg(new_key)
            .env_remove("OPENTRAIL_MASTER_KEY")
            .env_remove("OPENTRAIL_MASTER_KEY_FILE")
            .output()
            .unwrap()
    };
    let new_key = server.data_dir.path().join("new-master.key");
    let refused = rotate(&new_key);
    assert!(!refused.status.success() && text(&refused).contains("running"), "{}", text(&refused));

    server.kill();
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let sealed_before = control_store_bytes(&data);
    let rotated = rotate(&new_key);
    assert!(rotated.status.success(), "{}", text(&rotated));
    assert!(text(&rotated).contains("re-sealed 1 digest signing keys"), "{}", text(&rotated));
    assert_eq!(std::fs::metadata(&new_key).unwrap().permissions().mode() & 0o777, 0o600);
    let new_text = std::fs::read_to_string(&new_key).unwrap();
    assert_eq!(std::fs::read_to_string(data.join("master.key")).unwrap(), new_text, "the default key file follows");
    assert_ne!(new_text, old_key);
    assert!(!text(&rotated).contains(new_text.trim()) && !text(&rotated).contains(old_key.trim()), "never printed");
    assert_ne!(control_store_bytes(&data), sealed_before);

    // The old key opens nothing now: the server refuses to start with it.
    let with_old_key = Command::new(env!("CARGO_BIN_EXE_opentrail"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(server.data_dir.path().join("opentrail.toml"))
        .env("OPENTRAIL_MASTER_KEY", old_key.trim())
        .output()
        .unwrap();
    assert!(!with_old_key.status.success());
    assert!(text(&with_old_key).contains("master key"), "{}", text(&with_old_key));
    assert!(!text(&with_old_key).contains(old_key.trim()), "the key is never logged");

    // With the new key the same signing keys go on: the chain spans the rotation.
    server.restart();
    runtime.block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        let cloudtrail = client(&server, ROOT_A, "us-east-1");
        let before = digest_keys(&log_records(&s3, bucket).await.0).len();
        cloudtrail.start_logging().name(trail).send().await.unwrap();
        wait_until("digests after the rotation", Duration::from_secs(30), async || {
            cloudtrail.describe_trails().send().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            digest_keys(&log_records(&s3, bucket).await.0).len() >= before + 2
        })
        .await;
        stop_and_wait_for_final_digests(&server, &s3, bucket, trail).await;
    });
    assert!(assert_all_valid(&aws_validate(&server, &arn, &start, "us-east-1")) >= 4);
}
