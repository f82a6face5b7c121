//! The master key that seals the digest signing keys at rest.
//!
//! Private keys are stored sealed with ChaCha20-Poly1305 under a 256-bit master key that never
//! enters the control store: it comes from `OPENTRAIL_MASTER_KEY` (base64 of 32 bytes), from a
//! key file named by `OPENTRAIL_MASTER_KEY_FILE`, or from `master.key` in the data directory,
//! generated (mode 0600) on first start. A sealed key names the key it belongs to as associated
//! data, so a sealed blob cannot be moved onto another key's row.
//!
//! The master key is never logged: it has no `Display`, and its `Debug` prints `***`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The master key itself, base64 of 32 bytes.
pub const MASTER_KEY_ENV: &str = "OPENTRAIL_MASTER_KEY";
/// A file holding the master key (base64 of 32 bytes, one line).
pub const MASTER_KEY_FILE_ENV: &str = "OPENTRAIL_MASTER_KEY_FILE";
/// The key file used when neither variable is set, inside the data directory.
pub const DEFAULT_MASTER_KEY_FILE: &str = "master.key";

/// What a sealed value starts with (a PKCS#1 DER key starts with 0x30, so the two never mix).
const SEALED_MAGIC: &[u8; 4] = b"otk1";
const NONCE_LEN: usize = 12;
const AAD_PREFIX: &[u8] = b"opentrail-signing-key|";

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be base64 of exactly 32 bytes ({0})")]
    Malformed(&'static str),
    #[error("cannot read the master key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the master key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "the master key does not open the sealed signing key {fingerprint}: start with the master key the keys were \
         sealed with (OPENTRAIL_MASTER_KEY, OPENTRAIL_MASTER_KEY_FILE or the data directory's master.key)"
    )]
    WrongKey { fingerprint: String },
    #[error("the signing keys are sealed but no master key was given and {0} does not exist")]
    Missing(PathBuf),
}

/// Where the master key came from (printed at start; never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    Environment,
    File(PathBuf),
    /// `master.key` in the data directory, created by this start.
    Generated(PathBuf),
}

impl fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => write!(f, "the {MASTER_KEY_ENV} variable"),
            Self::File(path) => write!(f, "the key file {}", path.display()),
            Self::Generated(path) => write!(f, "the new key file {}", path.display()),
        }
    }
}

#[derive(Clone)]
pub struct MasterKey(Key);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// Whether stored private-key bytes are sealed (else they are plain PKCS#1 DER from before).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(SEALED_MAGIC)
}

fn aad(fingerprint: &str) -> Vec<u8> {
    [AAD_PREFIX, fingerprint.as_bytes()].concat()
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(ChaCha20Poly1305::generate_key(&mut OsRng))
    }

    pub fn from_base64(text: &str) -> Result<Self, MasterKeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| MasterKeyError::Malformed("not base64"))?;
        if bytes.len() != 32 {
            return Err(MasterKeyError::Malformed("wrong length"));
        }
        Ok(Self(*Key::from_slice(&bytes)))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.as_slice())
    }

    pub fn read_file(path: &Path) -> Result<Self, MasterKeyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| MasterKeyError::Read { path: path.to_owned(), source })?;
        Self::from_base64(&text)
    }

    /// Writes the key to a new file, mode 0600, durably. Never replaces an existing file.
    pub fn write_new_file(&self, path: &Path) -> Result<(), MasterKeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let write_error = |source| MasterKeyError::Write { path: path.to_owned(), source };
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(write_error)?;
        file.write_all(format!("{}\n", self.to_base64()).as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        sync_parent(path).map_err(write_error)
    }

    /// Replaces the key file at `path` with this key atomically (a new file renamed over it).
    pub fn replace_file(&self, path: &Path) -> Result<(), MasterKeyError> {
        let staged = path.with_extension("key.new");
        // A leftover from an interrupted rotation holds no key anyone relies on.
        let _ = std::fs::remove_file(&staged);
        self.write_new_file(&staged)?;
        let write_error = |source| MasterKeyError::Write { path: path.to_owned(), source };
        std::fs::rename(&staged, path).map_err(write_error)?;
        sync_parent(path).map_err(write_error)
    }

    /// The master key for a data directory: `OPENTRAIL_MASTER_KEY`, else the file
    /// `OPENTRAIL_MASTER_KEY_FILE` names, else `<data_dir>/master.key`, which is generated when
    /// it is missing, unless keys are already sealed (a new key could not open them).
    pub fn resolve(data_dir: &Path, keys_are_sealed: bool) -> Result<(Self, MasterKeySource), MasterKeyError> {
        if let Some(text) = std::env::var_os(MASTER_KEY_ENV) {
            let text = text.into_string().map_err(|_| MasterKeyError::Malformed("not base64"))?;
            return Ok((Self::from_base64(&text)?, MasterKeySource::Environment));
        }
        if let Some(path) = std::env::var_os(MASTER_KEY_FILE_ENV) {
            let path = PathBuf::from(path);
            return Ok((Self::read_file(&path)?, MasterKeySource::File(path)));
        }
        let path = data_dir.join(DEFAULT_MASTER_KEY_FILE);
        if path.exists() {
            return Ok((Self::read_file(&path)?, MasterKeySource::File(path)));
        }
        if keys_are_sealed {
            return Err(MasterKeyError::Missing(path));
        }
        let key = Self::generate();
        key.write_new_file(&path)?;
        Ok((key, MasterKeySource::Generated(path)))
    }

    /// Seals a private key for the signing key with this fingerprint.
    pub fn seal(&self, fingerprint: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = ChaCha20Poly1305::new(&self.0)
            .encrypt(&nonce, Payload { msg: plaintext, aad: &aad(fingerprint) })
            .expect("ChaCha20-Poly1305 seals any message shorter than 256 GiB");
        [SEALED_MAGIC.as_slice(), nonce.as_slice(), &sealed].concat()
    }

    /// Opens what [`Self::seal`] sealed for this fingerprint; fails on any other key, any other
    /// fingerprint, and any change to the bytes.
    pub fn open(&self, fingerprint: &str, sealed: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        let wrong = || MasterKeyError::WrongKey { fingerprint: fingerprint.to_owned() };
        let body = sealed.strip_prefix(SEALED_MAGIC).filter(|b| b.len() > NONCE_LEN).ok_or_else(wrong)?;
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        ChaCha20Poly1305::new(&self.0)
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad(fingerprint) })
            .map_err(|_| wrong())
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => std::fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_key_and_fingerprint() {
        let key = MasterKey::generate();
        let sealed = key.seal("abc", b"private der");
        assert!(is_sealed(&sealed) && !is_sealed(&[0x30, 0x82]));
        assert!(!sealed.windows(11).any(|w| w == b"private der"));
        assert_eq!(key.open("abc", &sealed).unwrap(), b"private der");
        assert_ne!(key.seal("abc", b"private der"), sealed, "a fresh nonce each time");
        assert!(matches!(key.open("abd", &sealed), Err(MasterKeyError::WrongKey { .. })));
        assert!(MasterKey::generate().open("abc", &sealed).is_err());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(key.open("abc", &flipped).is_err());
        assert!(key.open("abc", b"otk1").is_err());
    }

    #[test]
    fn key_files_round_trip_private_and_never_print_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::generate();
        key.write_new_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(key.write_new_file(&path).is_err(), "never replaced by accident");
        let read = MasterKey::read_file(&path).unwrap();
        assert_eq!(read.to_base64(), key.to_base64());
        assert_eq!(format!("{read:?}"), "MasterKey(***)");
        let other = MasterKey::generate();
        other.replace_file(&path).unwrap();
        assert_eq!(MasterKey::read_file(&path).unwrap().to_base64(), other.to_base64());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err() && MasterKey::from_base64("%%%").is_err());
    }
}
