//! Digest signing keys: one RSA-2048 key pair per Region at a time, rotated every 30 days,
//! kept in the control store so every key that ever signed a digest can still be listed.
//!
//! Private halves are stored sealed under the [`MasterKey`]; everything this module hands out
//! holds the opened (plain PKCS#1 DER) private key, and nothing else ever sees the sealed form.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use opentrail_control::{ControlStore, SigningKey, StoreError};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};

use crate::digest::fingerprint;
use crate::master_key::{MasterKey, MasterKeyError, is_sealed};

/// How long a key signs before the next one takes over (AWS's documented keys span 30 days).
pub const KEY_VALIDITY_DAYS: i64 = 30;

pub struct KeyPair {
    pub public_der: Vec<u8>,
    pub private_der: Vec<u8>,
}

pub fn generate_key_pair() -> Result<KeyPair, rsa::Error> {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let private_der = private.to_pkcs1_der()?.as_bytes().to_vec();
    let public_der = private.to_public_key().to_pkcs1_der().map_err(|_| rsa::Error::Internal)?.into_vec();
    Ok(KeyPair { public_der, private_der })
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot generate a signing key: {0}")]
    Generate(#[from] rsa::Error),
    #[error(transparent)]
    Sealing(#[from] MasterKeyError),
    #[error("{0} does not exist: not the data directory of an OpenTrail server")]
    NoStore(std::path::PathBuf),
}

/// Whether any stored private key is sealed (then a new master key could not open them).
pub fn any_sealed(store: &dyn ControlStore) -> Result<bool, KeyError> {
    Ok(store.all_signing_keys()?.iter().any(|key| is_sealed(&key.private_der)))
}

/// [`reseal_all`] on the control store file at `path` (`control.sqlite` of a stopped server).
pub fn reseal_store_file(path: &std::path::Path, old: &MasterKey, new: &MasterKey) -> Result<usize, KeyError> {
    if !path.is_file() {
        return Err(KeyError::NoStore(path.to_owned()));
    }
    let store = opentrail_control::SqliteStore::open(path)?;
    reseal_all(&store, old, new)
}

/// Re-seals every stored private key from `old` to `new` in one transaction; returns how many.
/// Keys stored unsealed are sealed under `new` on the way. Fails, changing nothing, if `old`
/// does not open them all.
pub fn reseal_all(store: &dyn ControlStore, old: &MasterKey, new: &MasterKey) -> Result<usize, KeyError> {
    let mut replacements = Vec::new();
    for key in store.all_signing_keys()? {
        let plain =
            if is_sealed(&key.private_der) { old.open(&key.fingerprint, &key.private_der)? } else { key.private_der };
        replacements.push((key.fingerprint.clone(), new.seal(&key.fingerprint, &plain)));
    }
    store.replace_private_keys(&replacements)?;
    Ok(replacements.len())
}

/// The signing keys of all Regions.
pub struct SigningKeys {
    store: Arc<dyn ControlStore>,
    master: MasterKey,
    /// Serialises key creation so two callers never mint two keys for one Region.
    creating: Mutex<()>,
}

impl SigningKeys {
    pub fn new(store: Arc<dyn ControlStore>, master: MasterKey) -> Self {
        Self { store, master, creating: Mutex::new(()) }
    }

    /// Seals the private keys stored unsealed (from before sealing existed) and checks that
    /// the master key opens all the others, so a wrong master key stops the start instead of
    /// the first digest. Returns how many keys it sealed.
    pub fn seal_stored_keys(&self) -> Result<usize, KeyError> {
        let mut replacements = Vec::new();
        for key in self.store.all_signing_keys()? {
            if is_sealed(&key.private_der) {
                self.master.open(&key.fingerprint, &key.private_der)?;
            } else {
                replacements.push((key.fingerprint.clone(), self.master.seal(&key.fingerprint, &key.private_der)));
            }
        }
        if !replacements.is_empty() {
            self.store.replace_private_keys(&replacements)?;
            tracing::info!(keys = replacements.len(), "sealed the digest signing keys stored in plaintext");
        }
        Ok(replacements.len())
    }

    /// A Region's keys as stored, opened.
    fn opened(&self, region: &str) -> Result<Vec<SigningKey>, KeyError> {
        self.store
            .signing_keys(region)?
            .into_iter()
            .map(|mut key| {
                if is_sealed(&key.private_der) {
                    key.private_der = self.master.open(&key.fingerprint, &key.private_der)?;
                }
                Ok(key)
            })
            .collect()
    }

    /// The key that signs in `region` at `now`, created (and stored) if there is none.
    /// Blocking: key generation takes a moment.
    pub fn current(&self, region: &str, now: DateTime<Utc>) -> Result<SigningKey, KeyError> {
        let now_ms = now.timestamp_millis();
        let _guard = self.creating.lock().expect("key lock");
        let keys = self.opened(region)?;
        if let Some(key) = keys.iter().rev().find(|k| k.valid_from_ms <= now_ms && now_ms < k.valid_to_ms) {
            return Ok(key.clone());
        }
        let pair = generate_key_pair()?;
        let key = SigningKey {
            region: region.to_owned(),
            fingerprint: fingerprint(&pair.public_der),
            public_der: pair.public_der,
            private_der: pair.private_der,
            valid_from_ms: now_ms,
            valid_to_ms: (now + Duration::days(KEY_VALIDITY_DAYS)).timestamp_millis(),
        };
        let sealed = SigningKey { private_der: self.master.seal(&key.fingerprint, &key.private_der), ..key.clone() };
        self.store.add_signing_key(&sealed)?;
        tracing::info!(region, fingerprint = key.fingerprint, "new digest signing key");
        Ok(key)
    }

    /// The key with this fingerprint, in `region`.
    pub fn by_fingerprint(&self, region: &str, fingerprint: &str) -> Result<Option<SigningKey>, KeyError> {
        Ok(self.opened(region)?.into_iter().find(|k| k.fingerprint == fingerprint))
    }

    /// Every key of `region` whose validity overlaps `[start, end]`, as ListPublicKeys lists
    /// them.
    pub fn overlapping(&self, region: &str, start_ms: i64, end_ms: i64) -> Result<Vec<SigningKey>, KeyError> {
        let keys = self.opened(region)?;
        Ok(keys.into_iter().filter(|k| k.valid_from_ms <= end_ms && start_ms < k.valid_to_ms).collect())
    }
}

#[cfg(test)]
mod tests {
    use opentrail_control::SqliteStore;

    use super::*;

    #[test]
    fn keys_are_reused_then_rotated() {
        let keys = SigningKeys::new(Arc::new(SqliteStore::in_memory().unwrap()), MasterKey::generate());
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let first = keys.current("us-east-1", now).unwrap();
        assert_eq!(keys.current("us-east-1", now + Duration::days(29)).unwrap(), first);
        let second = keys.current("us-east-1", now + Duration::days(31)).unwrap();
        assert_ne!(second.fingerprint, first.fingerprint);
        let both = keys.overlapping("us-east-1", now.timestamp_millis(), (now + Duration::days(40)).timestamp_millis());
        assert_eq!(both.unwrap().len(), 2);
        let later = keys.overlapping("us-east-1", (now + Duration::days(35)).timestamp_millis(), i64::MAX).unwrap();
        assert_eq!(later, vec![second]);
        assert!(keys.overlapping("eu-west-1", 0, i64::MAX).unwrap().is_empty());
    }

    fn plain_key(region: &str, from_ms: i64) -> SigningKey {
        let pair = generate_key_pair().unwrap();
        SigningKey {
            region: region.into(),
            fingerprint: fingerprint(&pair.public_der),
            public_der: pair.public_der,
            private_der: pair.private_der,
            valid_from_ms: from_ms,
            valid_to_ms: from_ms + 1000,
        }
    }

    #[test]
    fn keys_are_stored_sealed_and_handed_out_open() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        let keys = SigningKeys::new(store.clone(), MasterKey::generate());
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let key = keys.current("us-east-1", now).unwrap();
        assert!(<RsaPrivateKey as rsa::pkcs1::DecodeRsaPrivateKey>::from_pkcs1_der(&key.private_der).is_ok(), "opened");
        let stored = store.signing_keys("us-east-1").unwrap();
        assert!(is_sealed(&stored[0].private_der));
        assert!(!stored[0].private_der.windows(64).any(|w| key.private_der.windows(64).any(|p| p == w)));
        assert_eq!(keys.by_fingerprint("us-east-1", &key.fingerprint).unwrap(), Some(key));
        assert!(any_sealed(store.as_ref()).unwrap());
        let stranger = SigningKeys::new(store, MasterKey::generate());
        assert!(matches!(stranger.seal_stored_keys(), Err(KeyError::Sealing(MasterKeyError::WrongKey { .. }))));
    }

    #[test]
    fn plaintext_keys_from_before_are_sealed_at_start_and_rotation_reseals_all() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        let (east, west) = (plain_key("us-east-1", 0), plain_key("eu-west-1", 0));
        store.add_signing_key(&east).unwrap();
        store.add_signing_key(&west).unwrap();
        assert!(!any_sealed(store.as_ref()).unwrap());
        let old = MasterKey::generate();
        let keys = SigningKeys::new(store.clone(), old.clone());
        assert_eq!(keys.seal_stored_keys().unwrap(), 2);
        assert_eq!(keys.seal_stored_keys().unwrap(), 0, "once");
        assert!(store.all_signing_keys().unwrap().iter().all(|k| is_sealed(&k.private_der)));
        assert_eq!(keys.by_fingerprint("us-east-1", &east.fingerprint).unwrap(), Some(east.clone()));

        let new = MasterKey::generate();
        let wrong = MasterKey::generate();
        assert!(reseal_all(store.as_ref(), &wrong, &new).is_err());
        assert_eq!(SigningKeys::new(store.clone(), old.clone()).seal_stored_keys().unwrap(), 0, "unchanged");
        assert_eq!(reseal_all(store.as_ref(), &old, &new).unwrap(), 2);
        assert!(SigningKeys::new(store.clone(), old).seal_stored_keys().is_err(), "the old key opens nothing");
        let rotated = SigningKeys::new(store, new);
        assert_eq!(rotated.by_fingerprint("eu-west-1", &west.fingerprint).unwrap(), Some(west));
        assert_eq!(rotated.by_fingerprint("us-east-1", &east.fingerprint).unwrap(), Some(east));
    }
}
