//! SigV4 verification. The `Authorization` header is parsed here; the canonical request and the
//! signature are computed by the `aws-sigv4` crate (the SDKs' own signer), over exactly the
//! headers the client says it signed, and compared in constant time.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use chrono::{DateTime, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};

/// How far a request's `X-Amz-Date` may be from the server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    #[error("{0}")]
    BadSignature(String),
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

fn incomplete(message: impl Into<String>) -> AuthError {
    AuthError::Incomplete(message.into())
}

/// Parses an `Authorization` header value. Never panics, whatever the input.
pub fn parse_authorization(value: &str) -> Result<AuthorizationHeader<'_>, AuthError> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!("Unsupported AWS 'algorithm': '{algorithm}'")));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((key, value)) = part.split_once('=') else {
            return Err(incomplete(format!("Authorization header component '{part}' is not a key=value pair")));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => return Err(incomplete(format!("Unknown Authorization header component '{other}'"))),
        };
        if slot.replace(value).is_some() {
            return Err(incomplete(format!("Authorization header has '{key}' twice")));
        }
    }
    fn require<'v>(slot: Option<&'v str>, name: &str) -> Result<&'v str, AuthError> {
        slot.filter(|v| !v.is_empty())
            .ok_or_else(|| incomplete(format!("Authorization header requires '{name}' parameter.")))
    }
    let credential = require(credential, "Credential")?;
    let signed_headers = require(signed_headers, "SignedHeaders")?;
    let signature = require(signature, "Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(format!("Credential '{credential}' must have five '/'-separated parts")));
    };
    if terminator != "aws4_request" {
        return Err(AuthError::BadSignature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        )));
    }
    if access_key_id.is_empty() || region.is_empty() || service.is_empty() {
        return Err(incomplete(format!("Credential '{credential}' has an empty part")));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!("Credential date '{date}' is not YYYYMMDD")));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal characters."));
    }
    let signed_headers: Vec<&str> = signed_headers.split(';').collect();
    if signed_headers.iter().any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase())) {
        return Err(incomplete("SignedHeaders must be lower-case names separated by ';'."));
    }
    Ok(AuthorizationHeader { access_key_id, date, region, service, signed_headers, signature })
}

pub fn parse_amz_date(value: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").ok().map(|t| t.and_utc())
}

/// A request as the verifier sees it.
pub struct RequestToVerify<'a> {
    pub method: &'a str,
    /// Path and query exactly as received.
    pub path_and_query: &'a str,
    /// Every header, names in any case; repeated names appear repeatedly.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

impl RequestToVerify<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Verifies a signed request against the secret of its access key.
pub fn verify(
    request: &RequestToVerify<'_>,
    authorization: &AuthorizationHeader<'_>,
    secret: &str,
    now: SystemTime,
) -> Result<(), AuthError> {
    let amz_date = request
        .header("x-amz-date")
        .ok_or_else(|| incomplete("Authorization header requires existence of a 'X-Amz-Date' header."))?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| incomplete(format!("Invalid X-Amz-Date '{amz_date}'")))?;
    if !amz_date.starts_with(authorization.date) {
        return Err(AuthError::BadSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            authorization.date,
            &amz_date[..amz_date.len().min(8)]
        )));
    }
    check_clock_skew(signed_at, now)?;
    if request.header("host").is_none() {
        return Err(incomplete("The request has no Host header."));
    }
    // Only origin-form targets are signed; aws-sigv4 panics on a target without a path.
    if !request.path_and_query.starts_with('/') {
        return Err(incomplete("The request target must start with '/'."));
    }
    if !authorization.signed_headers.contains(&"host") {
        return Err(AuthError::BadSignature("The Host header must be signed.".into()));
    }
    let is_s3 = authorization.service == "s3";
    if let Some(claimed) = request.header("x-amz-content-sha256") {
        let unsigned = is_s3 && claimed == "UNSIGNED-PAYLOAD";
        if !unsigned && !claimed.eq_ignore_ascii_case(&hex::encode(Sha256::digest(request.body))) {
            return Err(AuthError::BadSignature(
                "The provided 'x-amz-content-sha256' header does not match what was computed.".into(),
            ));
        }
    }

    // Exactly the headers the client signed (plus Host, which the signer always includes).
    let headers = request.headers.iter().copied().filter(|(name, _)| {
        let name = name.to_ascii_lowercase();
        name == "host" || authorization.signed_headers.contains(&name.as_str())
    });
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    settings.signature_location = SignatureLocation::Headers;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    if is_s3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    } else {
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
    }
    let body = match request.header("x-amz-content-sha256") {
        Some("UNSIGNED-PAYLOAD") if is_s3 => SignableBody::UnsignedPayload,
        _ => SignableBody::Bytes(request.body),
    };
    let identity = Credentials::new(authorization.access_key_id, secret, None, None, "opentrail").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(authorization.region)
        .name(authorization.service)
        .time(signed_at.into())
        .settings(settings)
        .build()
        .map_err(|e| incomplete(e.to_string()))?
        .into();
    let signable = SignableRequest::new(request.method, request.path_and_query, headers, body)
        .map_err(|e| incomplete(format!("The request cannot be canonicalised: {e}")))?;
    let expected =
        sign(signable, &params).map_err(|e| incomplete(format!("The request cannot be canonicalised: {e}")))?;
    if constant_time_eq(expected.signature().as_bytes(), authorization.signature.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        ))
    }
}

fn check_clock_skew(signed_at: DateTime<Utc>, now: SystemTime) -> Result<(), AuthError> {
    let now: DateTime<Utc> = now.into();
    let skew = chrono::Duration::from_std(MAX_CLOCK_SKEW).expect("fits");
    let format = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    if signed_at < now - skew {
        return Err(AuthError::BadSignature(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            format(signed_at),
            format(now - skew),
            format(now)
        )));
    }
    if signed_at > now + skew {
        return Err(AuthError::BadSignature(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            format(signed_at),
            format(now + skew),
            format(now)
        )));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    #[test]
    fn parses_a_well_formed_header() {
        let parsed = parse_authorization(HEADER).unwrap();
        assert_eq!(parsed.access_key_id, "AKIDEXAMPLE");
        assert_eq!(parsed.region, "us-east-1");
        assert_eq!(parsed.service, "service");
        assert_eq!(parsed.signed_headers, vec!["host", "x-amz-date"]);
    }

    #[test]
    fn malformed_headers_are_incomplete_not_panics() {
        for bad in [
            "",
            "AWS4-HMAC-SHA256",
            "Basic dXNlcjpwYXNz",
            "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/svc/aws4_request, SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/svc/aws4_request, SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/svc/aws4_request, SignedHeaders=Host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            "AWS4-HMAC-SHA256 Credential=x, Credential=y",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
        let wrong_terminator = HEADER.replace("aws4_request", "aws5_request");
        assert!(matches!(parse_authorization(&wrong_terminator), Err(AuthError::BadSignature(_))));
    }

    /// Found by the sigv4_header fuzz target: a target without a leading '/' reached a panic
    /// inside aws-sigv4's query canonicalisation.
    #[test]
    fn a_target_without_a_path_is_refused_not_a_panic() {
        let header = parse_authorization(HEADER).unwrap();
        let request = RequestToVerify {
            method: "POST",
            path_and_query: "ae1d763fbf31",
            headers: vec![("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")],
            body: b"",
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert!(matches!(verify(&request, &header, "secret", now), Err(AuthError::Incomplete(_))));
    }

    #[test]
    fn clock_skew_limits() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |offset: i64| DateTime::<Utc>::from(now) + chrono::Duration::seconds(offset);
        assert!(check_clock_skew(at(-14 * 60), now).is_ok());
        assert!(check_clock_skew(at(14 * 60), now).is_ok());
        let expired = check_clock_skew(at(-16 * 60), now).unwrap_err();
        assert!(expired.to_string().starts_with("Signature expired"));
        assert!(check_clock_skew(at(16 * 60), now).is_err());
    }
}
