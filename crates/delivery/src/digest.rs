//! Digest files: the hourly, signed, chained list of the log files a trail delivered.

use md5::Md5;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";
pub const HASH_ALGORITHM: &str = "SHA-256";

/// One log file as a digest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestLogFile {
    pub s3_bucket: String,
    pub s3_object: String,
    pub hash_value: String,
    pub hash_algorithm: String,
    pub newest_event_time: Option<String>,
    pub oldest_event_time: Option<String>,
}

/// The digest document, fields in CloudTrail's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestDocument {
    pub aws_account_id: String,
    pub digest_start_time: String,
    pub digest_end_time: String,
    #[serde(rename = "digestS3Bucket")]
    pub digest_s3_bucket: String,
    #[serde(rename = "digestS3Object")]
    pub digest_s3_object: String,
    pub digest_public_key_fingerprint: String,
    pub digest_signature_algorithm: String,
    pub newest_event_time: Option<String>,
    pub oldest_event_time: Option<String>,
    #[serde(rename = "previousDigestS3Bucket")]
    pub previous_digest_s3_bucket: Option<String>,
    #[serde(rename = "previousDigestS3Object")]
    pub previous_digest_s3_object: Option<String>,
    pub previous_digest_hash_value: Option<String>,
    pub previous_digest_hash_algorithm: Option<String>,
    pub previous_digest_signature: Option<String>,
    pub log_files: Vec<DigestLogFile>,
}

/// A signed digest, ready to store: gzip `body`, with `signature` as object metadata.
#[derive(Debug, Clone)]
pub struct SignedDigest {
    pub uncompressed: Vec<u8>,
    pub gzipped: Vec<u8>,
    /// Lower-case hex SHA-256 of `uncompressed`: the next digest's `previousDigestHashValue`.
    pub sha256_hex: String,
    /// Lower-case hex signature: the object's `signature` metadata and the next digest's
    /// `previousDigestSignature`.
    pub signature_hex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("the signing key cannot be decoded: {0}")]
    BadKey(String),
}

/// Newest and oldest of a set of optional times, as the digest writes them.
pub fn time_bounds<'a>(
    times: impl IntoIterator<Item = (&'a Option<String>, &'a Option<String>)>,
) -> (Option<String>, Option<String>) {
    let (mut newest, mut oldest): (Option<&String>, Option<&String>) = (None, None);
    for (file_newest, file_oldest) in times {
        // The format is fixed-width UTC, so text order is time order.
        if let Some(time) = file_newest {
            newest = Some(newest.map_or(time, |n| n.max(time)));
        }
        if let Some(time) = file_oldest {
            oldest = Some(oldest.map_or(time, |o| o.min(time)));
        }
    }
    (newest.cloned(), oldest.cloned())
}

/// The string CloudTrail signs: end time, `bucket/key`, hash of the uncompressed digest, and
/// the previous signature (or `null`), joined by newlines.
pub fn signing_string(document: &DigestDocument, uncompressed_sha256_hex: &str) -> String {
    format!(
        "{}\n{}/{}\n{}\n{}",
        document.digest_end_time,
        document.digest_s3_bucket,
        document.digest_s3_object,
        uncompressed_sha256_hex,
        document.previous_digest_signature.as_deref().unwrap_or("null")
    )
}

/// Serialises, hashes, signs (RSASSA-PKCS1-v1_5 with SHA-256, deterministic) and gzips.
pub fn sign_digest(document: &DigestDocument, private_key_der: &[u8]) -> Result<SignedDigest, SigningError> {
    let uncompressed = serde_json::to_vec(document).expect("a digest always serialises");
    let sha256_hex = hex::encode(Sha256::digest(&uncompressed));
    let signature_hex = sign_string(private_key_der, &signing_string(document, &sha256_hex))?;
    Ok(SignedDigest { gzipped: crate::logfile::gzip(&uncompressed), uncompressed, sha256_hex, signature_hex })
}

/// Signs a string (RSASSA-PKCS1-v1_5 with SHA-256) with a PKCS#1 DER private key; hex.
pub fn sign_string(private_key_der: &[u8], text: &str) -> Result<String, SigningError> {
    let key = RsaPrivateKey::from_pkcs1_der(private_key_der).map_err(|e| SigningError::BadKey(e.to_string()))?;
    let signature = SigningKey::<Sha256>::new(key).sign(text.as_bytes());
    Ok(hex::encode(signature.to_bytes()))
}

/// Checks a hex signature over a signing string with a PKCS#1 DER public key.
pub fn verify_signature(public_key_der: &[u8], signing_string: &str, signature_hex: &str) -> Result<(), String> {
    let key = RsaPublicKey::from_pkcs1_der(public_key_der).map_err(|e| format!("Unable to load PKCS #1 key: {e}"))?;
    let bytes = hex::decode(signature_hex).map_err(|_| "signature is not hex".to_owned())?;
    let signature = Signature::try_from(bytes.as_slice()).map_err(|_| "signature has a bad length".to_owned())?;
    VerifyingKey::<Sha256>::new(key).verify(signing_string.as_bytes(), &signature).map_err(|_| "mismatch".to_owned())
}

/// A public key's fingerprint as CloudTrail gives it: lower-case hex MD5 of the PKCS#1 DER.
pub fn fingerprint(public_key_der: &[u8]) -> String {
    hex::encode(Md5::digest(public_key_der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_key_pair;

    fn document(previous_signature: Option<String>) -> DigestDocument {
        DigestDocument {
            aws_account_id: "111122223333".into(),
            digest_start_time: "2015-08-17T14:01:31Z".into(),
            digest_end_time: "2015-08-17T15:01:31Z".into(),
            digest_s3_bucket: "bucket".into(),
            digest_s3_object: "AWSLogs/x.json.gz".into(),
            digest_public_key_fingerprint: "fp".into(),
            digest_signature_algorithm: SIGNATURE_ALGORITHM.into(),
            newest_event_time: None,
            oldest_event_time: None,
            previous_digest_s3_bucket: None,
            previous_digest_s3_object: None,
            previous_digest_hash_value: None,
            previous_digest_hash_algorithm: None,
            previous_digest_signature: previous_signature,
            log_files: Vec::new(),
        }
    }

    #[test]
    fn signing_string_follows_the_spec() {
        let doc = document(None);
        assert_eq!(signing_string(&doc, "abc"), "2015-08-17T15:01:31Z\nbucket/AWSLogs/x.json.gz\nabc\nnull");
        assert!(signing_string(&document(Some("ff".into())), "abc").ends_with("\nabc\nff"));
    }

    #[test]
    fn empty_digests_have_null_fields_in_order() {
        let text = serde_json::to_string(&document(None)).unwrap();
        assert!(text.starts_with(r#"{"awsAccountId":"111122223333","digestStartTime":"#), "{text}");
        assert!(text.contains(r#""digestS3Bucket":"bucket","digestS3Object":"#));
        assert!(text.contains(r#""newestEventTime":null,"oldestEventTime":null,"previousDigestS3Bucket":null"#));
        assert!(text.ends_with(r#""previousDigestSignature":null,"logFiles":[]}"#));
    }

    #[test]
    fn signatures_verify_and_detect_changes() {
        let pair = generate_key_pair().unwrap();
        let doc = document(None);
        let signed = sign_digest(&doc, &pair.private_der).unwrap();
        assert_eq!(signed.signature_hex.len(), 512);
        assert_eq!(sign_digest(&doc, &pair.private_der).unwrap().signature_hex, signed.signature_hex, "deterministic");
        let string = signing_string(&doc, &signed.sha256_hex);
        verify_signature(&pair.public_der, &string, &signed.signature_hex).unwrap();
        assert!(verify_signature(&pair.public_der, &string.replace("15:01", "15:02"), &signed.signature_hex).is_err());
        assert_eq!(fingerprint(&pair.public_der).len(), 32);
        // PKCS#1 RSAPublicKey, as the aws CLI's loader requires.
        assert!(base64_prefix(&pair.public_der).starts_with("MIIBCgKCAQEA"));
    }

    fn base64_prefix(der: &[u8]) -> String {
        use std::fmt::Write;
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in der[..9].chunks(3) {
            let n = (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32;
            for shift in [18, 12, 6, 0] {
                let _ = write!(out, "{}", ALPHABET[(n >> shift & 63) as usize] as char);
            }
        }
        out
    }
}
