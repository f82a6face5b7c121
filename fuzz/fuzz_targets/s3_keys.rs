//! The local bucket store's key handling: arbitrary bucket and key bytes through PUT, GET, LIST,
//! COPY, multipart and DELETE. Keys are data: nothing may appear outside the store's own files,
//! another bucket's object never changes, and every round trip holds.
//! Input: bucket byte, then keys separated by 0xFF (no UTF-8 string holds that byte).
#![no_main]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use opentrail_buckets::{BucketError, ListQuery, LocalBuckets, NewObject, Replace, Written};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    folder: tempfile::TempDir,
    store: LocalBuckets,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Keys, not durability, are under test: on a disk the store's fsyncs (several per key) took
    // two thirds of every run; on tmpfs they cost nothing, so the same seconds try three times
    // the inputs.
    let shm = Path::new("/dev/shm");
    let folder = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let store = LocalBuckets::open(&folder.path().join("buckets")).unwrap();
    runtime.block_on(async {
        store.create_bucket("mine", None).await.unwrap();
        store.create_bucket("theirs", None).await.unwrap();
        put(&store, "theirs", "secret", b"theirs").await.unwrap();
    });
    Fixture { runtime, folder, store }
});

fn ok(_: &Written) -> Result<(), BucketError> {
    Ok(())
}

async fn put(store: &LocalBuckets, bucket: &str, key: &str, body: &[u8]) -> Result<(), BucketError> {
    let chunks = futures::stream::iter([Ok::<_, Infallible>(Bytes::copy_from_slice(body))]);
    store.put_object(bucket, key, chunks, NewObject::default(), Replace::Client, ok).await.map(|_| ())
}

async fn get(store: &LocalBuckets, bucket: &str, key: &str) -> Option<Vec<u8>> {
    store.read_object(bucket, key).await.unwrap().map(|(_, body)| body)
}

fn outside_entries(fixture: &Fixture) -> Vec<PathBuf> {
    let mut found = fixture.store.foreign_entries();
    for entry in std::fs::read_dir(fixture.folder.path()).unwrap().flatten() {
        if entry.path() != fixture.store.root() {
            found.push(entry.path());
        }
    }
    found
}

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let store = &fixture.store;
    let Some((&selector, rest)) = data.split_first() else { return };
    let keys: Vec<String> = rest
        .split(|&b| b == 0xFF)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .filter(|key| !key.is_empty() && key.len() <= 1024)
        .take(4)
        .collect();
    fixture.runtime.block_on(async {
        // An arbitrary bucket name: a valid one nobody created is NoSuchBucket, never a folder.
        let odd_bucket = String::from_utf8_lossy(rest.split(|&b| b == 0xFF).next().unwrap_or_default()).into_owned();
        if odd_bucket != "mine" && odd_bucket != "theirs" {
            let planted = put(store, &odd_bucket, "k", b"x").await;
            assert!(planted.is_err(), "{odd_bucket:?}: {planted:?}");
            assert!(!store.bucket_exists(&odd_bucket));
        }
        for key in &keys {
            put(store, "mine", key, key.as_bytes()).await.unwrap();
            assert_eq!(get(store, "mine", key).await.as_deref(), Some(key.as_bytes()));
            let listed =
                store.list_objects("mine", ListQuery { prefix: key.clone(), max_keys: 1, ..ListQuery::default() });
            let page = listed.await.unwrap();
            assert_eq!(page.objects.first().map(|o| o.key.as_str()), Some(key.as_str()));
            if selector & 1 == 1 {
                let copy = store.copy_object(("mine", key), ("mine", key), None, None).await.unwrap();
                assert_eq!(copy.size, key.len() as u64);
            }
            if selector & 2 == 2 {
                let id = store.create_upload("mine", key, NewObject::default()).await.unwrap();
                let chunks = futures::stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"part"))]);
                store.upload_part(&id, 1, chunks, ok).await.unwrap();
                store.complete_upload(("mine", key), &id, &[(1, None)]).await.unwrap();
                assert_eq!(get(store, "mine", key).await.as_deref(), Some(&b"part"[..]));
            }
        }
        assert_eq!(get(store, "theirs", "secret").await.as_deref(), Some(&b"theirs"[..]));
        assert!(outside_entries(fixture).is_empty(), "{:?}", outside_entries(fixture));
        for key in &keys {
            store.delete_object("mine", key).await.unwrap();
            assert_eq!(get(store, "mine", key).await, None);
        }
        let left = store.list_objects("theirs", ListQuery { max_keys: 10, ..ListQuery::default() }).await.unwrap();
        assert_eq!(left.objects.len(), 1);
    });
});
