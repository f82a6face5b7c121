//! Account IDs, Regions and ARNs. Account and Region are part of every storage key, so they are
//! validated once here and carried as types afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArnError {
    #[error("not an ARN: {0}")]
    Malformed(String),
    #[error("invalid account ID in ARN: {0}")]
    InvalidAccount(String),
}

/// A 12-digit AWS account ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(ArnError::InvalidAccount(text.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = ArnError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AccountId> for String {
    fn from(value: AccountId) -> Self {
        value.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An AWS Region name such as `us-east-1`: lower-case letters, digits and dashes, 1-32 long,
/// starting with a letter. This checks the shape only, because records from elsewhere (imports,
/// `put-events`) keep the Region they name; which Regions a caller may sign for is
/// [`crate::regions`]' list (plus configured extras), enforced when a request is authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    pub fn parse(text: &str) -> Option<Self> {
        let valid = (1..=32).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !text.ends_with('-');
        valid.then(|| Self(text.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Region {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or(value)
    }
}

impl From<Region> for String {
    fn from(value: Region) -> Self {
        value.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `arn:<partition>:<service>:<region>:<account>:<resource>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    pub resource: String,
}

impl Arn {
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        let mut parts = text.splitn(6, ':');
        let malformed = || ArnError::Malformed(text.to_owned());
        if parts.next() != Some("arn") {
            return Err(malformed());
        }
        let partition = parts.next().ok_or_else(malformed)?;
        let service = parts.next().ok_or_else(malformed)?;
        let region = parts.next().ok_or_else(malformed)?;
        let account = parts.next().ok_or_else(malformed)?;
        let resource = parts.next().ok_or_else(malformed)?;
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return Err(malformed());
        }
        Ok(Self {
            partition: partition.to_owned(),
            service: service.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            resource: resource.to_owned(),
        })
    }

    /// The trail ARN form: `arn:aws:cloudtrail:<region>:<account>:trail/<name>`.
    pub fn trail(region: &Region, account: &AccountId, name: &str) -> String {
        format!("arn:aws:cloudtrail:{region}:{account}:trail/{name}")
    }

    /// Splits a trail ARN into (region, account, name), checking every part.
    pub fn parse_trail(text: &str) -> Result<(Region, AccountId, String), ArnError> {
        let arn = Self::parse(text)?;
        let malformed = || ArnError::Malformed(text.to_owned());
        if arn.service != "cloudtrail" {
            return Err(malformed());
        }
        let name = arn.resource.strip_prefix("trail/").ok_or_else(malformed)?;
        let region = Region::parse(&arn.region).ok_or_else(malformed)?;
        let account = AccountId::parse(&arn.account)?;
        if name.is_empty() {
            return Err(malformed());
        }
        Ok((region, account, name.to_owned()))
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "arn:{}:{}:{}:{}:{}", self.partition, self.service, self.region, self.account, self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trail_arn_round_trips() {
        let region = Region::parse("eu-west-3").unwrap();
        let account = AccountId::parse("123456789012").unwrap();
        let arn = Arn::trail(&region, &account, "t1");
        assert_eq!(arn, "arn:aws:cloudtrail:eu-west-3:123456789012:trail/t1");
        assert_eq!(Arn::parse_trail(&arn).unwrap(), (region, account, "t1".to_owned()));
    }

    #[test]
    fn short_account_in_trail_arn_is_rejected() {
        assert!(Arn::parse_trail("arn:aws:cloudtrail:us-east-1:123:trail/x").is_err());
        assert!(Arn::parse_trail("arn:aws:s3:::bucket").is_err());
        assert!(Arn::parse_trail("nonsense").is_err());
    }

    #[test]
    fn region_shapes() {
        assert!(Region::parse("us-east-1").is_some());
        assert!(Region::parse("US-EAST-1").is_none());
        assert!(Region::parse("").is_none());
        assert!(Region::parse("us-east-").is_none());
    }
}
