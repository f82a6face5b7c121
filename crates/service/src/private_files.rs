//! The data directory is private to the server's user: directories `0700`, files `0600`.
//!
//! It holds the control store (with the sealed signing keys and every account's trails), the
//! journal (every account's events) and the buckets, so nothing in it is for other local users.
//! New files get these modes from the process umask ([`restrict_new_files`]); files from before
//! (or from a tool run with another umask) are fixed by [`make_private`] at start.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

pub const DIRECTORY_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Sets the process umask to `077`, so every file and directory created from here on is
/// private, whichever library creates it (SQLite, redb, the journal, Parquet, the bucket store).
pub fn restrict_new_files() {
    // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `root` (mode 0700) if it is missing, then gives every directory under it 0700 and
/// every regular file 0600. Symbolic links are left alone and not followed. Returns how many
/// modes it changed.
pub fn make_private(root: &Path) -> io::Result<usize> {
    std::fs::DirBuilder::new().recursive(true).mode(DIRECTORY_MODE).create(root)?;
    let mut changed = 0;
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            // Removed while we walk (a journal segment retired, a temporary file renamed).
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let wanted = if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
            DIRECTORY_MODE
        } else if metadata.is_file() {
            FILE_MODE
        } else {
            continue;
        };
        if metadata.permissions().mode() & 0o7777 != wanted {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn existing_trees_become_private_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, "x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("buckets/b")).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(root.join("control.sqlite"), "db").unwrap();
        std::fs::set_permissions(root.join("control.sqlite"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(root.join("buckets/b/object"), "o").unwrap();
        std::fs::set_permissions(root.join("buckets/b/object"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();

        assert!(make_private(&root).unwrap() >= 3);
        for path in [root.clone(), root.join("buckets"), root.join("buckets/b")] {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
        }
        for path in [root.join("control.sqlite"), root.join("buckets/b/object")] {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
        assert_eq!(mode(&outside), 0o644, "a link's target is not ours to change");
        assert_eq!(make_private(&root).unwrap(), 0, "nothing left to fix");
        let fresh = dir.path().join("fresh/data");
        make_private(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }
}
