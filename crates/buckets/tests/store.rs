//! The local bucket store: keys are data (never paths), listing as S3 lists, write-once
//! delivered files, checks before publishing, crash leftovers swept, and migration from the old
//! `s3s-fs` layout.

use std::convert::Infallible;
use std::path::Path;

use bytes::Bytes;
use opentrail_buckets::{BucketError, ListQuery, LocalBuckets, NewObject, Replace, StoreOptions, Written};
use proptest::prelude::*;

fn body(bytes: &[u8]) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + use<> {
    futures::stream::iter([Ok(Bytes::copy_from_slice(bytes))])
}

fn ok(_: &Written) -> Result<(), BucketError> {
    Ok(())
}

async fn put(store: &LocalBuckets, bucket: &str, key: &str, data: &[u8]) -> Result<(), BucketError> {
    store.put_object(bucket, key, body(data), NewObject::default(), Replace::Client, ok).await.map(|_| ())
}

async fn get(store: &LocalBuckets, bucket: &str, key: &str) -> Option<Vec<u8>> {
    store.read_object(bucket, key).await.unwrap().map(|(_, body)| body)
}

async fn keys(store: &LocalBuckets, bucket: &str) -> Vec<String> {
    let query = ListQuery { max_keys: 1000, ..ListQuery::default() };
    store.list_objects(bucket, query).await.unwrap().objects.into_iter().map(|o| o.key).collect()
}

async fn two_buckets(root: &Path) -> LocalBuckets {
    let store = LocalBuckets::open(root).unwrap();
    store.create_bucket("mine", Some("111111111111")).await.unwrap();
    store.create_bucket("theirs", Some("222222222222")).await.unwrap();
    store
}

/// Everything under `folder` except the store's own layout (what a path-joining store would
/// create when a key escapes).
fn stray_files(folder: &Path, store: &LocalBuckets) -> Vec<std::path::PathBuf> {
    let mut stray = store.foreign_entries();
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        if entry.path() != store.root() {
            stray.push(entry.path());
        }
    }
    stray
}

#[tokio::test]
async fn path_like_keys_are_ordinary_distinct_keys() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("buckets");
    let store = two_buckets(&root).await;
    put(&store, "theirs", "secret", b"their data").await.unwrap();
    let tricky = [
        "a",
        "a/b",
        "a//b",
        "a/./b",
        "./a",
        "../theirs/secret",
        "../../etc/passwd",
        "/etc/passwd",
        "a%2Fb",
        "..",
        ".",
        "/",
        "//",
        "a/",
        "../.tmp.0.internal.part/",
        "nul\0byte",
    ];
    for (n, key) in tricky.iter().enumerate() {
        put(&store, "mine", key, format!("{n}").as_bytes()).await.unwrap();
    }
    for (n, key) in tricky.iter().enumerate() {
        assert_eq!(get(&store, "mine", key).await.unwrap(), format!("{n}").as_bytes(), "{key:?}");
    }
    let mut expected: Vec<String> = tricky.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(keys(&store, "mine").await, expected, "byte-wise order, every key distinct");
    assert_eq!(get(&store, "theirs", "secret").await.unwrap(), b"their data");
    assert_eq!(keys(&store, "theirs").await, ["secret"]);
    assert!(stray_files(folder.path(), &store).is_empty(), "{:?}", stray_files(folder.path(), &store));
    for key in tricky {
        assert!(store.delete_object("mine", key).await.unwrap());
    }
    assert_eq!(store.file_count(), 1, "only their object's file is left");
    store.delete_bucket("mine").await.unwrap();
    assert!(!store.bucket_exists("mine"));
    drop(store);
    // The key that stopped s3s-fs from starting is just a key.
    let reopened = LocalBuckets::open(&root).unwrap();
    assert_eq!(get(&reopened, "theirs", "secret").await.unwrap(), b"their data");
}

#[tokio::test]
async fn keys_up_to_1024_bytes_and_long_metadata() {
    let folder = tempfile::tempdir().unwrap();
    let store = two_buckets(folder.path()).await;
    let long = "é".repeat(512);
    assert_eq!(long.len(), 1024);
    let metadata = vec![("signature".to_owned(), "f".repeat(4096))];
    let attributes = NewObject { metadata: metadata.clone(), ..NewObject::default() };
    store.put_object("mine", &long, body(b"x"), attributes, Replace::Client, ok).await.unwrap();
    let (info, data) = store.read_object("mine", &long).await.unwrap().unwrap();
    assert_eq!((info.metadata, data), (metadata, b"x".to_vec()));
    let too_long = format!("{long}a");
    assert!(matches!(put(&store, "mine", &too_long, b"x").await, Err(BucketError::InvalidKey(_))));
    assert!(matches!(put(&store, "mine", "", b"x").await, Err(BucketError::InvalidKey(_))));
}

#[tokio::test]
async fn a_failed_check_publishes_nothing() {
    let folder = tempfile::tempdir().unwrap();
    let store = two_buckets(folder.path()).await;
    put(&store, "mine", "k", b"original").await.unwrap();
    let refused = store
        .put_object("mine", "k", body(b"changed"), NewObject::default(), Replace::Client, |_| {
            Err(BucketError::BadDigest("no".into()))
        })
        .await;
    assert!(matches!(refused, Err(BucketError::BadDigest(_))));
    assert_eq!(get(&store, "mine", "k").await.unwrap(), b"original");
    assert_eq!(store.file_count(), 1, "the refused body's file is gone");
}

#[tokio::test]
async fn objects_cannot_be_planted_in_missing_buckets() {
    let folder = tempfile::tempdir().unwrap();
    let store = two_buckets(folder.path()).await;
    assert!(matches!(put(&store, "nobody", "k", b"x").await, Err(BucketError::NoSuchBucket(_))));
    let planted = store.put_new("nobody", "k", Bytes::from_static(b"x"), &vec![]).await;
    assert!(matches!(planted, Err(BucketError::NoSuchBucket(_))), "{planted:?}");
    assert_eq!(store.file_count(), 0);
}

#[tokio::test]
async fn delivered_files_are_write_once_unless_the_operator_allows() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("b");
    {
        let store = two_buckets(&root).await;
        let metadata = vec![("signature".to_owned(), "abc".to_owned())];
        store.put_new("mine", "AWSLogs/d.json.gz", Bytes::from_static(b"digest"), &metadata).await.unwrap();
        let overwrite = put(&store, "mine", "AWSLogs/d.json.gz", b"forged").await;
        assert!(matches!(overwrite, Err(BucketError::WriteOnce(_))), "{overwrite:?}");
        let delete = store.delete_object("mine", "AWSLogs/d.json.gz").await;
        assert!(matches!(delete, Err(BucketError::WriteOnce(_))), "{delete:?}");
        let copy = store.copy_object(("mine", "AWSLogs/d.json.gz"), ("mine", "AWSLogs/d.json.gz"), None, None).await;
        assert!(matches!(copy, Err(BucketError::WriteOnce(_))), "{copy:?}");
        let upload = store.create_upload("mine", "AWSLogs/d.json.gz", NewObject::default()).await;
        assert!(matches!(upload, Err(BucketError::WriteOnce(_))), "{upload:?}");
        assert_eq!(get(&store, "mine", "AWSLogs/d.json.gz").await.unwrap(), b"digest");
    }
    let options = StoreOptions { allow_overwriting_delivered_files: true };
    let store = LocalBuckets::open_with(&root, options).unwrap();
    put(&store, "mine", "AWSLogs/d.json.gz", b"forged").await.unwrap();
    assert_eq!(get(&store, "mine", "AWSLogs/d.json.gz").await.unwrap(), b"forged");
}

#[tokio::test]
async fn listing_follows_s3() {
    let folder = tempfile::tempdir().unwrap();
    let store = two_buckets(folder.path()).await;
    for key in ["a", "a/b", "a/c/d", "a/c/e", "ab", "b/x", "c", "é"] {
        put(&store, "mine", key, b"").await.unwrap();
    }
    let list = |prefix: &str, delimiter: Option<&str>, after: Option<&str>, max_keys| ListQuery {
        prefix: prefix.into(),
        delimiter: delimiter.map(str::to_owned),
        after: after.map(str::to_owned),
        max_keys,
    };
    let page = store.list_objects("mine", list("", Some("/"), None, 1000)).await.unwrap();
    let names: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(names, ["a", "ab", "c", "é"]);
    assert_eq!(page.common_prefixes, ["a/", "b/"]);
    assert!(!page.truncated);
    let page = store.list_objects("mine", list("a/", Some("/"), None, 1000)).await.unwrap();
    assert_eq!(page.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["a/b"]);
    assert_eq!(page.common_prefixes, ["a/c/"]);
    // Pages of two, each continuing after the previous page's last entry.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_objects("mine", list("", Some("/"), after.as_deref(), 2)).await.unwrap();
        assert!(page.objects.len() + page.common_prefixes.len() <= 2);
        seen.extend(page.objects.iter().map(|o| o.key.clone()));
        seen.extend(page.common_prefixes.iter().cloned());
        if !page.truncated {
            break;
        }
        after = page.last;
    }
    seen.sort();
    assert_eq!(seen, ["a", "a/", "ab", "b/", "c", "é"]);
    let page = store.list_objects("mine", list("", None, Some("a/c/d"), 1000)).await.unwrap();
    assert_eq!(page.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["a/c/e", "ab", "b/x", "c", "é"]);
}

#[tokio::test]
async fn multipart_uploads_belong_to_their_key() {
    let folder = tempfile::tempdir().unwrap();
    let store = two_buckets(folder.path()).await;
    put(&store, "theirs", "target", b"theirs").await.unwrap();
    let id = store.create_upload("mine", "../theirs/target", NewObject::default()).await.unwrap();
    let one = store.upload_part(&id, 1, body(b"hello "), ok).await.unwrap();
    let two = store.upload_part(&id, 2, body(b"world"), ok).await.unwrap();
    let wrong = store.complete_upload(("theirs", "target"), &id, &[(1, None), (2, None)]).await;
    assert!(matches!(wrong, Err(BucketError::NoSuchUpload(_))), "{wrong:?}");
    assert_eq!(store.list_parts(&id).await.unwrap().len(), 2);
    let info = store
        .complete_upload(("mine", "../theirs/target"), &id, &[(1, Some(one.etag)), (2, Some(two.etag))])
        .await
        .unwrap();
    assert!(info.etag.ends_with("-2"));
    assert_eq!(get(&store, "mine", "../theirs/target").await.unwrap(), b"hello world");
    assert_eq!(get(&store, "theirs", "target").await.unwrap(), b"theirs");
    assert!(store.upload(&id).await.unwrap().is_none());
    assert_eq!(store.file_count(), 2, "the parts' files are gone");
}

#[tokio::test]
async fn orphans_left_by_a_crash_are_swept_at_open() {
    let folder = tempfile::tempdir().unwrap();
    let store = two_buckets(folder.path()).await;
    put(&store, "mine", "kept", b"kept").await.unwrap();
    drop(store);
    let orphan = folder.path().join("objects").join("0123456789abcdef0123456789abcdef");
    std::fs::write(&orphan, b"an interrupted write").unwrap();
    let store = LocalBuckets::open(folder.path()).unwrap();
    assert!(!orphan.exists());
    assert_eq!(get(&store, "mine", "kept").await.unwrap(), b"kept");
}

#[tokio::test]
async fn an_old_s3s_fs_folder_is_migrated_once() {
    use base64::Engine as _;
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("buckets");
    let encode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    std::fs::create_dir_all(root.join("trail-logs/AWSLogs/111111111111/CloudTrail-Digest")).unwrap();
    std::fs::create_dir_all(root.join("data/reports")).unwrap();
    std::fs::create_dir_all(root.join("empty-bucket")).unwrap();
    let digest = "AWSLogs/111111111111/CloudTrail-Digest/d.json.gz";
    std::fs::write(root.join("trail-logs").join(digest), b"digest").unwrap();
    std::fs::write(root.join("data/reports/q1.txt"), b"report").unwrap();
    // The new sidecar format, and the old one (just the metadata map).
    std::fs::write(
        root.join(format!(".bucket-{}.object-{}.metadata.json", encode("trail-logs"), encode(digest))),
        r#"{"user_metadata":{"signature":"abc","signature-algorithm":"SHA256withRSA"}}"#,
    )
    .unwrap();
    std::fs::write(
        root.join(format!(".bucket-{}.object-{}.metadata.json", encode("data"), encode("reports/q1.txt"))),
        r#"{"team":"audit"}"#,
    )
    .unwrap();
    std::fs::write(root.join(".tmp.3.internal.part"), b"junk").unwrap();

    let store = LocalBuckets::open(&root).unwrap();
    let (info, data) = store.read_object("trail-logs", digest).await.unwrap().unwrap();
    assert_eq!(data, b"digest");
    assert_eq!(info.metadata.iter().find(|(k, _)| k == "signature").unwrap().1, "abc");
    assert!(info.write_once, "delivered files stay write-once");
    assert_eq!(format!("{:x}", md5::Md5::digest(b"digest")), info.etag);
    let (info, data) = store.read_object("data", "reports/q1.txt").await.unwrap().unwrap();
    assert_eq!((data, info.metadata), (b"report".to_vec(), vec![("team".to_owned(), "audit".to_owned())]));
    assert!(store.bucket_exists("empty-bucket"));
    let aside = folder.path().join("buckets.s3s-fs-old");
    assert!(aside.join("data/reports/q1.txt").exists(), "the old folder is kept aside");
    drop(store);
    // Idempotent: opening again imports nothing twice.
    let store = LocalBuckets::open(&root).unwrap();
    assert_eq!(keys(&store, "data").await, ["reports/q1.txt"]);
    assert!(!folder.path().join("buckets.s3s-fs-old.1").exists());
}

#[tokio::test]
async fn a_migration_interrupted_between_renames_is_finished() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("buckets");
    {
        let staging = LocalBuckets::open(&folder.path().join("buckets.migrating")).unwrap();
        staging.create_bucket("data", None).await.unwrap();
        put(&staging, "data", "k", b"v").await.unwrap();
    }
    // The crash: the old folder renamed aside, the new one not yet in place.
    let store = LocalBuckets::open(&root).unwrap();
    assert_eq!(get(&store, "data", "k").await.unwrap(), b"v");
    assert!(!folder.path().join("buckets.migrating").exists());
}

use md5::Digest as _;

fn key_strategy() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just("%2F".to_owned()),
        Just("\0".to_owned()),
        Just("mine".to_owned()),
        Just("theirs".to_owned()),
        Just("/etc/passwd".to_owned()),
        Just(".tmp.0.internal.part".to_owned()),
        "[a-zé😀]{1,4}".prop_map(|s| s),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop_oneof![
        4 => proptest::collection::vec(pieces, 1..8).prop_map(|parts| parts.concat()),
        1 => "[a-z]".prop_map(|s| s.repeat(1024)),
        1 => Just("é".repeat(512)),
    ]
    .prop_filter("S3 keys are 1 to 1,024 bytes", |k| !k.is_empty() && k.len() <= 1024)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any keys round-trip through PUT, GET, LIST, COPY, multipart and DELETE, and never touch
    /// another bucket or create anything outside the store's own files.
    #[test]
    fn random_keys_round_trip_and_stay_in_their_bucket(keys in proptest::collection::vec(key_strategy(), 1..6)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let folder = tempfile::tempdir().unwrap();
            let root = folder.path().join("buckets");
            let store = two_buckets(&root).await;
            put(&store, "theirs", "secret", b"their data").await.unwrap();
            let mut distinct: Vec<String> = keys.clone();
            distinct.sort();
            distinct.dedup();
            for key in &distinct {
                put(&store, "mine", key, key.as_bytes()).await.unwrap();
            }
            for key in &distinct {
                assert_eq!(get(&store, "mine", key).await.unwrap(), key.as_bytes());
            }
            assert_eq!(self::keys(&store, "mine").await, distinct);
            for key in &distinct {
                let copy = store.copy_object(("mine", key), ("mine", key), None, None).await.unwrap();
                assert_eq!(copy.key, *key);
                let id = store.create_upload("mine", key, NewObject::default()).await.unwrap();
                store.upload_part(&id, 1, body(b"multi"), ok).await.unwrap();
                store.complete_upload(("mine", key), &id, &[(1, None)]).await.unwrap();
                assert_eq!(get(&store, "mine", key).await.unwrap(), b"multi");
            }
            assert_eq!(self::keys(&store, "theirs").await, ["secret"]);
            assert_eq!(get(&store, "theirs", "secret").await.unwrap(), b"their data");
            assert!(stray_files(folder.path(), &store).is_empty(), "{:?}", stray_files(folder.path(), &store));
            for key in &distinct {
                assert!(store.delete_object("mine", key).await.unwrap());
            }
            assert!(self::keys(&store, "mine").await.is_empty());
            assert_eq!(store.file_count(), 1);
            store.delete_bucket("mine").await.unwrap();
            assert_eq!(get(&store, "theirs", "secret").await.unwrap(), b"their data");
        });
    }
}
