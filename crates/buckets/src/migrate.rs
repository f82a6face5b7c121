//! Migration from the old layout (the `s3s-fs` crate's: an object is a file at
//! `<root>/<bucket>/<key>`, its attributes a JSON sidecar at
//! `<root>/.bucket-<b64(bucket)>.object-<b64(key)>.metadata.json`) into the store.
//!
//! Crash-safe and idempotent: everything is imported into a fresh store beside the old folder
//! (`<root>.migrating`), which is complete before anything is renamed; then the old folder is
//! renamed aside (`<root>.s3s-fs-old`, kept for the operator) and the new one into place. An
//! interrupted import is discarded and redone; a crash between the two renames is finished at
//! the next open (no `<root>`, a complete `<root>.migrating`).

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::local::{INDEX_FILE, LocalBuckets, StoreOptions};
use crate::{BucketError, Metadata, valid_bucket_name};

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> BucketError + '_ {
    move |source| BucketError::Io { path: path.to_owned(), source }
}

fn sibling(root: &Path, suffix: &str) -> PathBuf {
    let mut name = root.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "buckets".into());
    name.push(suffix);
    root.with_file_name(name)
}

fn sync_parent(root: &Path) -> Result<(), BucketError> {
    let parent = root.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(io_at(parent))
}

/// Whether `root` holds a bucket store in the old layout.
fn is_old_layout(root: &Path) -> Result<bool, BucketError> {
    if !root.is_dir() || root.join(INDEX_FILE).exists() {
        return Ok(false);
    }
    let mut entries = std::fs::read_dir(root).map_err(io_at(root))?;
    Ok(entries.next().is_some())
}

/// Runs before the store opens: finishes an interrupted migration or migrates an old folder.
pub(crate) fn finish_or_migrate(root: &Path) -> Result<(), BucketError> {
    let staging = sibling(root, ".migrating");
    if !root.exists() && staging.join(INDEX_FILE).exists() {
        std::fs::rename(&staging, root).map_err(io_at(root))?;
        sync_parent(root)?;
        tracing::info!(root = %root.display(), "finished moving the migrated bucket store into place");
        return Ok(());
    }
    if !is_old_layout(root)? {
        return Ok(());
    }
    if staging.exists() {
        // An import a crash interrupted: start again from the untouched old folder.
        std::fs::remove_dir_all(&staging).map_err(io_at(&staging))?;
    }
    let (buckets, objects) = {
        let store = LocalBuckets::open_layout(&staging, StoreOptions::default())?;
        let counts = import(root, &store)?;
        store.sync_all_blocking()?;
        counts
    };
    let mut aside = sibling(root, ".s3s-fs-old");
    let mut n = 1;
    while aside.exists() {
        aside = sibling(root, &format!(".s3s-fs-old.{n}"));
        n += 1;
    }
    std::fs::rename(root, &aside).map_err(io_at(root))?;
    std::fs::rename(&staging, root).map_err(io_at(root))?;
    sync_parent(root)?;
    tracing::info!(
        buckets,
        objects,
        old = %aside.display(),
        "migrated the bucket store from the s3s-fs layout (the old folder is kept beside it; remove it once satisfied)"
    );
    Ok(())
}

/// The attributes sidecar, in either of the two formats `s3s-fs` wrote.
#[derive(serde::Deserialize, Default)]
struct Attributes {
    user_metadata: Option<std::collections::BTreeMap<String, String>>,
    content_type: Option<String>,
}

fn sidecar(root: &Path, bucket: &str, key: &str) -> (Option<String>, Metadata) {
    let encode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let path = root.join(format!(".bucket-{}.object-{}.metadata.json", encode(bucket), encode(key)));
    let Ok(bytes) = std::fs::read(path) else { return (None, Vec::new()) };
    let attributes = serde_json::from_slice::<Attributes>(&bytes)
        .ok()
        .filter(|a| a.user_metadata.is_some() || a.content_type.is_some())
        .or_else(|| {
            serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&bytes)
                .ok()
                .map(|m| Attributes { user_metadata: Some(m), content_type: None })
        })
        .unwrap_or_default();
    (attributes.content_type, attributes.user_metadata.unwrap_or_default().into_iter().collect())
}

fn import(root: &Path, store: &LocalBuckets) -> Result<(usize, usize), BucketError> {
    let (mut buckets, mut objects) = (0, 0);
    for entry in std::fs::read_dir(root).map_err(io_at(root))? {
        let entry = entry.map_err(io_at(root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only real folders with bucket names; sidecars and temporary files start with a dot.
        if !entry.file_type().map_err(io_at(root))?.is_dir() || !valid_bucket_name(&name) {
            continue;
        }
        store.import_bucket_blocking(&name)?;
        buckets += 1;
        let mut pending = vec![(entry.path(), String::new())];
        while let Some((folder, prefix)) = pending.pop() {
            for child in std::fs::read_dir(&folder).map_err(io_at(&folder))? {
                let child = child.map_err(io_at(&folder))?;
                let kind = child.file_type().map_err(io_at(&folder))?;
                let Some(part) = child.file_name().to_str().map(str::to_owned) else {
                    tracing::warn!(path = %child.path().display(), "skipped a file whose name is not UTF-8");
                    continue;
                };
                let key = format!("{prefix}{part}");
                if kind.is_dir() {
                    pending.push((child.path(), format!("{key}/")));
                } else if kind.is_file() {
                    let (content_type, metadata) = sidecar(root, &name, &key);
                    store.import_object_blocking(&name, &key, &child.path(), content_type, metadata)?;
                    objects += 1;
                }
                // Symbolic links are not objects s3s-fs wrote; leave them behind.
            }
        }
    }
    Ok((buckets, objects))
}
