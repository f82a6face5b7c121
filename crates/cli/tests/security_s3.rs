//! Issue 9's S3 findings, one regression test each, against the real binary with aws-sdk-s3:
//! keys are data (never paths), nothing crosses tenants, delivered files are write-once, and a
//! cross-account call is recorded in both accounts.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use common::*;
use serde_json::Value;

const FAST: [(&str, &str); 2] = [("OPENTRAIL_DELIVERY_INTERVAL", "1s"), ("OPENTRAIL_DIGEST_INTERVAL", "2s")];
const A_DATA: &str = "a-data";
const B_DATA: &str = "b-data";
const A_LOGS: &str = "a-logs";
const B_LOGS: &str = "b-logs";
const SECRET: &[u8] = b"account A's secret";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// Two accounts, each with a data bucket and a trail that delivers its S3 data events to its
/// own log bucket every second; A's data bucket holds `secret`.
struct World {
    server: TestServer,
    a: aws_sdk_s3::Client,
    b: aws_sdk_s3::Client,
}

async fn world_with(extra: &str) -> World {
    let server = TestServer::start_with(extra, &FAST);
    let a = s3_client(&server.endpoint, ROOT_A);
    let b = s3_client(&server.endpoint, ROOT_B);
    for (s3, key, data, logs) in [(&a, ROOT_A, A_DATA, A_LOGS), (&b, ROOT_B, B_DATA, B_LOGS)] {
        s3.create_bucket().bucket(data).send().await.unwrap();
        s3.create_bucket().bucket(logs).send().await.unwrap();
        let cloudtrail = client(&server, key, "us-east-1");
        cloudtrail.create_trail().name("data").s3_bucket_name(logs).send().await.unwrap();
        let selector = |resource: &str| {
            let field = |name: &str, value: &str| {
                aws_sdk_cloudtrail::types::AdvancedFieldSelector::builder().field(name).equals(value).build().unwrap()
            };
            aws_sdk_cloudtrail::types::AdvancedEventSelector::builder()
                .name(format!("S3 data events on {resource}"))
                .field_selectors(field("eventCategory", "Data"))
                .field_selectors(field("resources.type", resource))
                .build()
                .unwrap()
        };
        cloudtrail
            .put_event_selectors()
            .trail_name("data")
            .advanced_event_selectors(selector("AWS::S3::Object"))
            .advanced_event_selectors(selector("AWS::S3::Bucket"))
            .send()
            .await
            .unwrap();
        cloudtrail.start_logging().name("data").send().await.unwrap();
    }
    a.put_object().bucket(A_DATA).key("secret").body(ByteStream::from_static(SECRET)).send().await.unwrap();
    World { server, a, b }
}

async fn world() -> World {
    world_with("").await
}

fn code<E: ProvideErrorMetadata>(error: E) -> String {
    error.code().unwrap_or("<no code>").to_owned()
}

async fn body(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(output) => Some(output.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(error) => {
            assert_eq!(code(error), "NoSuchKey");
            None
        }
    }
}

async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
}

impl World {
    /// A's secret is intact and A's data bucket holds nothing else.
    async fn a_is_unchanged(&self) {
        assert_eq!(body(&self.a, A_DATA, "secret").await.as_deref(), Some(SECRET));
        assert_eq!(keys(&self.a, A_DATA).await, ["secret"]);
    }

    /// Waits until both accounts' trails delivered a record of B's `event_name` on A's data
    /// bucket refused with AccessDenied, and checks they are the two copies AWS writes.
    async fn recorded_in_both_accounts(&self, event_name: &str) {
        let matches = |record: &Value| {
            record["eventName"] == event_name
                && record["errorCode"] == "AccessDenied"
                && record["requestParameters"]["bucketName"] == A_DATA
        };
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let (_, theirs) = log_records(&self.b, B_LOGS).await;
            let (_, ours) = log_records(&self.a, A_LOGS).await;
            let caller_copy = theirs.iter().find(|r| matches(r));
            let owner_copy = ours.iter().find(|r| matches(r));
            if let (Some(caller_copy), Some(owner_copy)) = (caller_copy, owner_copy) {
                assert_eq!(caller_copy["recipientAccountId"], ACCOUNT_B);
                assert_eq!(owner_copy["recipientAccountId"], ACCOUNT_A);
                assert!(caller_copy["sharedEventID"].is_string(), "{caller_copy}");
                assert_eq!(caller_copy["sharedEventID"], owner_copy["sharedEventID"]);
                assert_ne!(caller_copy["eventID"], owner_copy["eventID"]);
                assert_eq!(owner_copy["userIdentity"]["accountId"], ACCOUNT_B);
                assert_eq!(owner_copy["userIdentity"]["type"], "AWSAccount");
                assert_eq!(caller_copy["userIdentity"]["accountId"], ACCOUNT_B);
                let bucket =
                    owner_copy["resources"].as_array().unwrap().iter().find(|r| r["type"] == "AWS::S3::Bucket");
                assert_eq!(bucket.unwrap()["accountId"], ACCOUNT_A, "the bucket is named with its owner");
                return;
            }
            assert!(Instant::now() < deadline, "{event_name} was not delivered to both accounts");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

#[test]
fn dot_dot_key_cannot_read_another_accounts_object() {
    runtime().block_on(async {
        let world = world().await;
        let escape = "../a-data/secret";
        // In B's own bucket the key is just a key: there is no such object, and writing it
        // creates B's object, never A's.
        assert_eq!(body(&world.b, B_DATA, escape).await, None);
        world.b.put_object().bucket(B_DATA).key(escape).body(ByteStream::from_static(b"B")).send().await.unwrap();
        assert_eq!(body(&world.b, B_DATA, escape).await.as_deref(), Some(&b"B"[..]));
        world.b.delete_object().bucket(B_DATA).key(escape).send().await.unwrap();
        for key in ["/a-data/secret", "../../buckets/a-data/secret", "..%2Fa-data%2Fsecret"] {
            assert_eq!(body(&world.b, B_DATA, key).await, None, "{key}");
        }
        world.a_is_unchanged().await;
        // Naming A's bucket outright is refused, and recorded in both accounts.
        let denied = world.b.get_object().bucket(A_DATA).key("secret").send().await.unwrap_err();
        assert_eq!(code(denied), "AccessDenied");
        let denied = world.b.put_object().bucket(A_DATA).key("secret").body(ByteStream::from_static(b"x")).send().await;
        assert_eq!(code(denied.unwrap_err()), "AccessDenied");
        let denied = world.b.delete_object().bucket(A_DATA).key("secret").send().await.unwrap_err();
        assert_eq!(code(denied), "AccessDenied");
        world.a_is_unchanged().await;
        world.recorded_in_both_accounts("GetObject").await;
        world.recorded_in_both_accounts("PutObject").await;
        world.recorded_in_both_accounts("DeleteObject").await;
    });
}

#[test]
fn key_cannot_stop_the_server_from_starting() {
    let mut server = TestServer::start();
    let runtime = runtime();
    let s3 = s3_client(&server.endpoint, ROOT_A);
    let keys = ["../.tmp.0.internal.part/", "../.tmp.1.internal.part/x", "../../journal/LOCK", "../index.sqlite"];
    runtime.block_on(async {
        for key in keys {
            s3.put_object().bucket("bucket").key(key).body(ByteStream::from_static(b"k")).send().await.unwrap();
        }
    });
    server.restart();
    let s3 = s3_client(&server.endpoint, ROOT_A);
    runtime.block_on(async {
        for key in keys {
            assert_eq!(body(&s3, "bucket", key).await.as_deref(), Some(&b"k"[..]), "{key}");
        }
    });
}

#[test]
fn copy_source_with_dot_dot_is_refused() {
    runtime().block_on(async {
        let world = world().await;
        // The source key is data inside B's bucket: there is no such object.
        let copied =
            world.b.copy_object().bucket(B_DATA).key("stolen").copy_source("b-data/../a-data/secret").send().await;
        assert_eq!(code(copied.unwrap_err()), "NoSuchKey");
        // Copying out of A's bucket, or into it, is refused.
        let copied = world.b.copy_object().bucket(B_DATA).key("stolen").copy_source("a-data/secret").send().await;
        assert_eq!(code(copied.unwrap_err()), "AccessDenied");
        world.b.put_object().bucket(B_DATA).key("mine").body(ByteStream::from_static(b"B")).send().await.unwrap();
        let copied = world.b.copy_object().bucket(A_DATA).key("secret").copy_source("b-data/mine").send().await;
        assert_eq!(code(copied.unwrap_err()), "AccessDenied");
        assert_eq!(keys(&world.b, B_DATA).await, ["mine"]);
        world.a_is_unchanged().await;
        world.recorded_in_both_accounts("CopyObject").await;
    });
}

#[test]
fn delete_objects_cannot_reach_another_bucket() {
    runtime().block_on(async {
        let world = world().await;
        let entries = ["../a-data/secret", "/a-data/secret", "secret"]
            .map(|key| ObjectIdentifier::builder().key(key).build().unwrap())
            .to_vec();
        let delete = Delete::builder().set_objects(Some(entries.clone())).build().unwrap();
        world.b.delete_objects().bucket(B_DATA).delete(delete.clone()).send().await.unwrap();
        world.a_is_unchanged().await;
        let denied = world.b.delete_objects().bucket(A_DATA).delete(delete).send().await.unwrap_err();
        assert_eq!(code(denied), "AccessDenied");
        world.a_is_unchanged().await;
        world.recorded_in_both_accounts("DeleteObjects").await;
    });
}

#[test]
fn multipart_complete_cannot_land_in_another_bucket() {
    runtime().block_on(async {
        let world = world().await;
        let key = "../a-data/secret";
        let upload = world.b.create_multipart_upload().bucket(B_DATA).key(key).send().await.unwrap();
        let id = upload.upload_id().unwrap();
        let part = world
            .b
            .upload_part()
            .bucket(B_DATA)
            .key(key)
            .upload_id(id)
            .part_number(1)
            .body(ByteStream::from_static(b"forged"))
            .send()
            .await
            .unwrap();
        let parts = CompletedMultipartUpload::builder()
            .parts(CompletedPart::builder().part_number(1).e_tag(part.e_tag().unwrap()).build())
            .build();
        // B's upload completed on A's bucket: refused before anything is looked at.
        let denied = world
            .b
            .complete_multipart_upload()
            .bucket(A_DATA)
            .key("secret")
            .upload_id(id)
            .multipart_upload(parts.clone())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(denied), "AccessDenied");
        // Completed on another of B's keys: not this upload.
        let wrong = world
            .b
            .complete_multipart_upload()
            .bucket(B_DATA)
            .key("secret")
            .upload_id(id)
            .multipart_upload(parts.clone())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(wrong), "NoSuchUpload");
        world
            .b
            .complete_multipart_upload()
            .bucket(B_DATA)
            .key(key)
            .upload_id(id)
            .multipart_upload(parts)
            .send()
            .await
            .unwrap();
        assert_eq!(body(&world.b, B_DATA, key).await.as_deref(), Some(&b"forged"[..]));
        world.a_is_unchanged().await;
        world.recorded_in_both_accounts("CompleteMultipartUpload").await;
    });
}

#[test]
fn list_parts_checks_the_upload_owner() {
    runtime().block_on(async {
        let world = world().await;
        let upload = world.a.create_multipart_upload().bucket(A_DATA).key("big").send().await.unwrap();
        let id = upload.upload_id().unwrap();
        world
            .a
            .upload_part()
            .bucket(A_DATA)
            .key("big")
            .upload_id(id)
            .part_number(1)
            .body(ByteStream::from_static(b"part"))
            .send()
            .await
            .unwrap();
        assert_eq!(world.a.list_parts().bucket(A_DATA).key("big").upload_id(id).send().await.unwrap().parts().len(), 1);
        let denied = world.b.list_parts().bucket(A_DATA).key("big").upload_id(id).send().await.unwrap_err();
        assert_eq!(code(denied), "AccessDenied");
        // A's upload ID through B's own bucket is no upload of B's.
        let other = world.b.list_parts().bucket(B_DATA).key("big").upload_id(id).send().await.unwrap_err();
        assert_eq!(code(other), "NoSuchUpload");
        let abort = world.b.abort_multipart_upload().bucket(B_DATA).key("big").upload_id(id).send().await;
        assert_eq!(code(abort.unwrap_err()), "NoSuchUpload");
        assert_eq!(world.a.list_parts().bucket(A_DATA).key("big").upload_id(id).send().await.unwrap().parts().len(), 1);
        world.recorded_in_both_accounts("ListParts").await;
    });
}

#[test]
fn long_keys_and_long_metadata_round_trip() {
    let server = TestServer::start();
    runtime().block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        for key in ["k".repeat(1024), format!("AWSLogs/{}", "é".repeat(300)), "x".repeat(171)] {
            let value = "v".repeat(1500);
            s3.put_object()
                .bucket("bucket")
                .key(&key)
                .metadata("signature", &value)
                .body(ByteStream::from_static(b"long"))
                .send()
                .await
                .unwrap();
            let head = s3.head_object().bucket("bucket").key(&key).send().await.unwrap();
            assert_eq!(head.metadata().unwrap()["signature"], value);
            assert_eq!(body(&s3, "bucket", &key).await.as_deref(), Some(&b"long"[..]));
        }
        let too_long = s3.put_object().bucket("bucket").key("k".repeat(1025)).body(ByteStream::from_static(b"x"));
        assert_eq!(code(too_long.send().await.unwrap_err()), "KeyTooLongError");
    });
}

#[test]
fn bad_digest_leaves_the_object_unchanged() {
    let server = TestServer::start();
    runtime().block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        s3.put_object().bucket("bucket").key("k").body(ByteStream::from_static(b"original")).send().await.unwrap();
        // The MD5 of something else.
        let wrong = "XUFAKrxLKna5cZ2REBfFkg==";
        let refused = s3
            .put_object()
            .bucket("bucket")
            .key("k")
            .content_md5(wrong)
            .body(ByteStream::from_static(b"replacement"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(refused), "BadDigest");
        assert_eq!(body(&s3, "bucket", "k").await.as_deref(), Some(&b"original"[..]));
        let refused = s3
            .put_object()
            .bucket("bucket")
            .key("new")
            .content_md5(wrong)
            .body(ByteStream::from_static(b"replacement"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(refused), "BadDigest");
        assert_eq!(body(&s3, "bucket", "new").await, None);
    });
}

#[test]
fn emptied_bucket_can_be_deleted() {
    let server = TestServer::start();
    runtime().block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        s3.create_bucket().bucket("scratch").send().await.unwrap();
        for key in ["a/b/c", "a/b/d", "x"] {
            s3.put_object().bucket("scratch").key(key).body(ByteStream::from_static(b"1")).send().await.unwrap();
        }
        let refused = s3.delete_bucket().bucket("scratch").send().await.unwrap_err();
        assert_eq!(code(refused), "BucketNotEmpty");
        for key in ["a/b/c", "a/b/d", "x"] {
            s3.delete_object().bucket("scratch").key(key).send().await.unwrap();
        }
        s3.delete_bucket().bucket("scratch").send().await.unwrap();
        let gone = s3.head_bucket().bucket("scratch").send().await.unwrap_err();
        assert_eq!(gone.raw_response().map(|r| r.status().as_u16()), Some(404));
        // The name is free again, for anyone.
        let b = s3_client(&server.endpoint, ROOT_B);
        b.create_bucket().bucket("scratch").send().await.unwrap();
    });
}

#[test]
fn a_and_a_slash_b_coexist() {
    let server = TestServer::start();
    runtime().block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        let all = ["a", "a/b", "a//b", "a/./b", "a/b/", "a%2Fb"];
        for key in all {
            s3.put_object()
                .bucket("bucket")
                .key(key)
                .body(ByteStream::from(key.as_bytes().to_vec()))
                .send()
                .await
                .unwrap();
        }
        for key in all {
            assert_eq!(body(&s3, "bucket", key).await.as_deref(), Some(key.as_bytes()), "{key}");
        }
        let mut expected: Vec<String> = all.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(keys(&s3, "bucket").await, expected);
        let rolled = s3.list_objects_v2().bucket("bucket").delimiter("/").send().await.unwrap();
        let prefixes: Vec<&str> = rolled.common_prefixes().iter().filter_map(|p| p.prefix()).collect();
        assert_eq!(prefixes, ["a/"]);
        let objects: Vec<&str> = rolled.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(objects, ["a", "a%2Fb"]);
        // Pages of one walk every entry exactly once.
        let mut seen = Vec::new();
        let mut pages = s3.list_objects_v2().bucket("bucket").max_keys(1).into_paginator().send();
        while let Some(page) = pages.next().await {
            seen.extend(page.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        assert_eq!(seen, expected);
    });
}

#[test]
fn keys_resolving_to_the_bucket_root_answer_without_panicking() {
    let server = TestServer::start();
    runtime().block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        for key in [".", "..", "./", "../", "a/..", "../../.."] {
            s3.put_object()
                .bucket("bucket")
                .key(key)
                .body(ByteStream::from(key.as_bytes().to_vec()))
                .send()
                .await
                .unwrap();
            assert_eq!(body(&s3, "bucket", key).await.as_deref(), Some(key.as_bytes()), "{key}");
            s3.delete_object().bucket("bucket").key(key).send().await.unwrap();
        }
        assert!(keys(&s3, "bucket").await.is_empty());
    });
}

#[test]
fn objects_cannot_be_planted_in_bucket_names_nobody_owns() {
    let server = TestServer::start();
    runtime().block_on(async {
        let b = s3_client(&server.endpoint, ROOT_B);
        let planted = b.put_object().bucket("future-bucket").key("k").body(ByteStream::from_static(b"x")).send().await;
        assert_eq!(code(planted.unwrap_err()), "NoSuchBucket");
        let upload = b.create_multipart_upload().bucket("future-bucket").key("k").send().await;
        assert_eq!(code(upload.unwrap_err()), "NoSuchBucket");
        let a = s3_client(&server.endpoint, ROOT_A);
        a.create_bucket().bucket("future-bucket").send().await.unwrap();
        assert!(keys(&a, "future-bucket").await.is_empty());
    });
}

#[test]
fn delivered_files_are_write_once_for_clients() {
    runtime().block_on(async {
        let world = world().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let delivered = loop {
            let (keys, _) = log_records(&world.a, A_LOGS).await;
            if let Some(key) = keys.into_iter().find(|k| k.contains("/CloudTrail/")) {
                break key;
            }
            assert!(Instant::now() < deadline, "no log file was delivered");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let original = body(&world.a, A_LOGS, &delivered).await.unwrap();
        let overwrite =
            world.a.put_object().bucket(A_LOGS).key(&delivered).body(ByteStream::from_static(b"forged")).send().await;
        let error = overwrite.unwrap_err();
        assert_eq!(error.code(), Some("AccessDenied"));
        assert!(error.message().unwrap_or_default().contains("delivered"), "{:?}", error.message());
        let delete = world.a.delete_object().bucket(A_LOGS).key(&delivered).send().await;
        assert_eq!(code(delete.unwrap_err()), "AccessDenied");
        let entry = ObjectIdentifier::builder().key(&delivered).build().unwrap();
        let delete = Delete::builder().objects(entry).build().unwrap();
        let batch = world.a.delete_objects().bucket(A_LOGS).delete(delete).send().await.unwrap();
        assert_eq!(batch.errors().len(), 1);
        assert_eq!(batch.errors()[0].code(), Some("AccessDenied"));
        world.a.put_object().bucket(A_DATA).key("x").body(ByteStream::from_static(b"x")).send().await.unwrap();
        let copy = world.a.copy_object().bucket(A_LOGS).key(&delivered).copy_source("a-data/x").send().await;
        assert_eq!(code(copy.unwrap_err()), "AccessDenied");
        assert_eq!(body(&world.a, A_LOGS, &delivered).await.unwrap(), original);
        drop(world.server);
    });
}

#[test]
fn the_operator_can_allow_overwriting_delivered_files() {
    runtime().block_on(async {
        let world = world_with("[buckets]\nallow_overwriting_delivered_files = true\n").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let delivered = loop {
            let (keys, _) = log_records(&world.a, A_LOGS).await;
            if let Some(key) = keys.into_iter().find(|k| k.contains("/CloudTrail/")) {
                break key;
            }
            assert!(Instant::now() < deadline, "no log file was delivered");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        world.a.delete_object().bucket(A_LOGS).key(&delivered).send().await.unwrap();
        assert_eq!(body(&world.a, A_LOGS, &delivered).await, None);
    });
}

#[test]
fn random_path_like_keys_round_trip_through_the_endpoint() {
    let server = TestServer::start();
    runtime().block_on(async {
        let s3 = s3_client(&server.endpoint, ROOT_A);
        let b = s3_client(&server.endpoint, ROOT_B);
        b.create_bucket().bucket(B_DATA).send().await.unwrap();
        b.put_object().bucket(B_DATA).key("secret").body(ByteStream::from_static(b"B")).send().await.unwrap();
        // (A key of spaces alone is one the SDK refuses to send, so spaces come with a letter.)
        let pieces = ["..", ".", "/", "//", "%2F", "b-data", "secret", "é", "😀", "a b", "+", "?", "#", "&", "~"];
        // A deterministic pseudo-random walk over the pieces (no extra dependency).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut all = Vec::new();
        for _ in 0..40 {
            let mut key = String::new();
            for _ in 0..(1 + state % 6) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                key.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            all.push(key);
        }
        all.sort();
        all.dedup();
        for key in &all {
            s3.put_object()
                .bucket("bucket")
                .key(key)
                .body(ByteStream::from(key.as_bytes().to_vec()))
                .send()
                .await
                .unwrap();
            let copy = format!("copy/{key}");
            let source = format!("bucket/{}", urlencoding(key));
            s3.copy_object().bucket("bucket").key(&copy).copy_source(source).send().await.unwrap();
            assert_eq!(body(&s3, "bucket", &copy).await.as_deref(), Some(key.as_bytes()), "{key}");
            s3.delete_object().bucket("bucket").key(&copy).send().await.unwrap();
        }
        for key in &all {
            assert_eq!(body(&s3, "bucket", key).await.as_deref(), Some(key.as_bytes()), "{key}");
        }
        assert_eq!(keys(&s3, "bucket").await, all);
        assert_eq!(body(&b, B_DATA, "secret").await.as_deref(), Some(&b"B"[..]));
        assert_eq!(keys(&b, B_DATA).await, ["secret"]);
    });
}

/// Percent-encodes a copy source key (everything but unreserved characters and `/`).
fn urlencoding(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
