//! Digest signing keys: one RSA-2048 key pair per Region at a time, rotated every 30 days,
//! kept in the control store so every key that ever signed a digest can still be listed.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use opentrail_control::{ControlStore, SigningKey, StoreError};
use rsa::RsaPrivateKey;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};

use crate::digest::fingerprint;

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
}

/// The signing keys of all Regions.
pub struct SigningKeys {
    store: Arc<dyn ControlStore>,
    /// Serialises key creation so two callers never mint two keys for one Region.
    creating: Mutex<()>,
}

impl SigningKeys {
    pub fn new(store: Arc<dyn ControlStore>) -> Self {
        Self { store, creating: Mutex::new(()) }
    }

    /// The key that signs in `region` at `now`, created (and stored) if there is none.
    /// Blocking: key generation takes a moment.
    pub fn current(&self, region: &str, now: DateTime<Utc>) -> Result<SigningKey, KeyError> {
        let now_ms = now.timestamp_millis();
        let _guard = self.creating.lock().expect("key lock");
        let keys = self.store.signing_keys(region)?;
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
        self.store.add_signing_key(&key)?;
        tracing::info!(region, fingerprint = key.fingerprint, "new digest signing key");
        Ok(key)
    }

    /// The key with this fingerprint, in `region`.
    pub fn by_fingerprint(&self, region: &str, fingerprint: &str) -> Result<Option<SigningKey>, KeyError> {
        Ok(self.store.signing_keys(region)?.into_iter().find(|k| k.fingerprint == fingerprint))
    }

    /// Every key of `region` whose validity overlaps `[start, end]`, as ListPublicKeys lists
    /// them.
    pub fn overlapping(&self, region: &str, start_ms: i64, end_ms: i64) -> Result<Vec<SigningKey>, KeyError> {
        let keys = self.store.signing_keys(region)?;
        Ok(keys.into_iter().filter(|k| k.valid_from_ms <= end_ms && start_ms < k.valid_to_ms).collect())
    }
}

#[cfg(test)]
mod tests {
    use opentrail_control::SqliteStore;

    use super::*;

    #[test]
    fn keys_are_reused_then_rotated() {
        let keys = SigningKeys::new(Arc::new(SqliteStore::in_memory().unwrap()));
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
}
