//! Accounts and credentials: who may call, and which account each access key acts for.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use std::time::Duration;

use opentrail_buckets::RemoteBucketConfig;
use opentrail_delivery::{DeliverySettings, NotificationTarget, parse_duration};
use opentrail_model::regions::is_cloudtrail_region;
use opentrail_model::{AccountId, Principal, PrincipalKind, Region};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A secret that never prints.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub access_keys: Vec<AccessKeyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: String,
    /// Keys of the account's root user.
    #[serde(default)]
    pub root_access_keys: Vec<AccessKeyConfig>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

/// The TOML config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_region")]
    pub default_region: String,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// Buckets on S3-compatible endpoints that trails may deliver to.
    #[serde(default)]
    pub remote_buckets: Vec<RemoteBucketConfig>,
    /// Webhooks that trails name in `SnsTopicName`.
    #[serde(default)]
    pub notification_targets: Vec<NotificationTarget>,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub lake: LakeConfig,
    /// Region names accepted besides CloudTrail's own (private deployments that name their
    /// sites); a call signed for any other Region is refused.
    #[serde(default)]
    pub extra_regions: Vec<String>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub buckets: BucketsConfig,
    /// The Insights detector's parameters (`[insights]`; see the `opentrail-insights` crate).
    #[serde(default)]
    pub insights: opentrail_insights::InsightParams,
}

/// The local bucket store (`[buckets]`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketsConfig {
    /// Lets a bucket's owner overwrite or delete the log and digest files trails delivered
    /// (AWS lets the owner; OpenTrail refuses by default so delivered files stay as written).
    #[serde(default)]
    pub allow_overwriting_delivered_files: bool,
}

/// HTTP connection limits (durations such as `500ms`, `10s`, `1m`); unset fields keep the
/// server's defaults (10s, 60s and 4096).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// How long a client may take to send a request's header (also the longest a keep-alive
    /// connection may idle between requests).
    pub header_read_timeout: Option<String>,
    /// How long a request may go without any byte read or written.
    pub idle_timeout: Option<String>,
    /// The most connections open at once.
    pub max_connections: Option<usize>,
}

/// [`LimitsConfig`] with its durations parsed; `None` keeps the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
}

impl LimitsConfig {
    pub fn parse(&self) -> Result<Limits, ConfigError> {
        let duration = |name: &str, value: &Option<String>| match value {
            None => Ok(None),
            Some(text) => parse_duration(text).map(Some).ok_or_else(|| {
                ConfigError::Invalid(format!("limits.{name} {text:?} is not a duration such as 500ms, 10s or 1m"))
            }),
        };
        if self.max_connections == Some(0) {
            return Err(ConfigError::Invalid("limits.max_connections must be at least 1".into()));
        }
        Ok(Limits {
            header_read_timeout: duration("header_read_timeout", &self.header_read_timeout)?,
            idle_timeout: duration("idle_timeout", &self.idle_timeout)?,
            max_connections: self.max_connections,
        })
    }
}

/// Where event data stores keep their Parquet files: the data directory by default, or a bucket
/// of `remote_buckets` (an S3-compatible store other engines can read too).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    pub bucket: Option<String>,
    /// Key prefix of the tables inside that bucket (default `opentrail-lake`).
    pub prefix: Option<String>,
}

/// The lake's tables in a remote bucket, checked against the configured buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeBucket {
    pub bucket: String,
    pub prefix: String,
}

/// Delivery timing: durations such as `1s`, `5m`, `1h`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How often log files are written (default `5m`).
    pub delivery_interval: Option<String>,
    /// How long a digest covers (default `1h`).
    pub digest_interval: Option<String>,
}

/// Everything the service is configured with besides credentials: buckets, webhooks, delivery
/// timing, where the lake lives.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    pub remote_buckets: Vec<RemoteBucketConfig>,
    pub notification_targets: Vec<NotificationTarget>,
    pub settings: DeliverySettings,
    /// `None`: the data directory's `lake/tables`.
    pub lake_bucket: Option<LakeBucket>,
    /// The local bucket store's operator choices (`[buckets]`).
    pub bucket_store: opentrail_buckets::StoreOptions,
    /// The Insights detector's parameters (`[insights]`).
    pub insights: opentrail_insights::InsightParams,
}

impl Config {
    pub fn service_options(&self) -> Result<ServiceOptions, ConfigError> {
        let defaults = DeliverySettings::default();
        let parse = |name: &str, value: &Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => parse_duration(text)
                .ok_or_else(|| ConfigError::Invalid(format!("{name} {text:?} is not a duration such as 1s, 5m or 1h"))),
        };
        let delivery = parse("delivery_interval", &self.delivery.delivery_interval, defaults.delivery_interval)?;
        let digest = parse("digest_interval", &self.delivery.digest_interval, defaults.digest_interval)?;
        let lake_bucket = match &self.lake.bucket {
            None => None,
            Some(bucket) if self.remote_buckets.iter().any(|remote| &remote.bucket == bucket) => Some(LakeBucket {
                bucket: bucket.clone(),
                prefix: self.lake.prefix.clone().unwrap_or_else(|| "opentrail-lake".into()),
            }),
            Some(bucket) => {
                return Err(ConfigError::Invalid(format!("lake bucket {bucket:?} is not one of remote_buckets")));
            }
        };
        self.insights.validate().map_err(|error| ConfigError::Invalid(error.to_string()))?;
        Ok(ServiceOptions {
            remote_buckets: self.remote_buckets.clone(),
            notification_targets: self.notification_targets.clone(),
            settings: DeliverySettings::with_intervals(delivery, digest),
            lake_bucket,
            bucket_store: opentrail_buckets::StoreOptions {
                allow_overwriting_delivered_files: self.buckets.allow_overwriting_delivered_files,
            },
            insights: self.insights.clone(),
        })
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: display.clone(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: display, message: e.to_string() })
    }

    /// One account with one root key, as the environment variables define it.
    pub fn single_root(account_id: &str, access_key_id: &str, secret: Secret) -> Self {
        Self {
            default_region: default_region(),
            accounts: vec![AccountConfig {
                id: account_id.into(),
                root_access_keys: vec![AccessKeyConfig {
                    access_key_id: access_key_id.into(),
                    secret_access_key: secret,
                }],
                users: Vec::new(),
            }],
            remote_buckets: Vec::new(),
            notification_targets: Vec::new(),
            delivery: DeliveryConfig::default(),
            lake: LakeConfig::default(),
            extra_regions: Vec::new(),
            limits: LimitsConfig::default(),
            buckets: BucketsConfig::default(),
            insights: Default::default(),
        }
    }

    /// The development default: account `000000000000`, key `test`, secret `test`.
    pub fn development() -> Self {
        Self::single_root("000000000000", "test", Secret::new("test"))
    }
}

/// Access keys resolved to principals.
#[derive(Debug, Clone)]
pub struct Credentials {
    by_access_key: HashMap<String, (Principal, Secret)>,
    pub default_region: Region,
    /// The config's `extra_regions`.
    extra_regions: Vec<Region>,
}

impl Credentials {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut extra_regions = Vec::new();
        for name in &config.extra_regions {
            let region = Region::parse(name)
                .ok_or_else(|| ConfigError::Invalid(format!("extra_regions: {name:?} is not a Region name")))?;
            extra_regions.push(region);
        }
        let default_region = Region::parse(&config.default_region).ok_or_else(|| {
            ConfigError::Invalid(format!("default_region {} is not a Region name", config.default_region))
        })?;
        if !is_cloudtrail_region(default_region.as_str()) && !extra_regions.contains(&default_region) {
            return Err(ConfigError::Invalid(format!(
                "default_region {default_region} is not a Region CloudTrail has; add it to extra_regions to use it"
            )));
        }
        let mut by_access_key = HashMap::new();
        for account in &config.accounts {
            let account_id = AccountId::parse(&account.id)
                .map_err(|_| ConfigError::Invalid(format!("account ID {} must be 12 digits", account.id)))?;
            let mut keys: Vec<(&AccessKeyConfig, PrincipalKind)> =
                account.root_access_keys.iter().map(|key| (key, PrincipalKind::Root)).collect();
            for user in &account.users {
                let user_id = stable_user_id(&account_id, &user.name);
                for key in &user.access_keys {
                    keys.push((key, PrincipalKind::User { name: user.name.clone(), user_id: user_id.clone() }));
                }
            }
            for (key, kind) in keys {
                if key.access_key_id.is_empty() || key.secret_access_key.expose().is_empty() {
                    return Err(ConfigError::Invalid("access keys and secrets must not be empty".into()));
                }
                let principal =
                    Principal { account: account_id.clone(), access_key_id: key.access_key_id.clone(), kind };
                if by_access_key.insert(key.access_key_id.clone(), (principal, key.secret_access_key.clone())).is_some()
                {
                    return Err(ConfigError::Invalid(format!("access key {} is defined twice", key.access_key_id)));
                }
            }
        }
        if by_access_key.is_empty() {
            return Err(ConfigError::Invalid("no access keys are configured".into()));
        }
        Ok(Self { by_access_key, default_region, extra_regions })
    }

    /// Whether calls signed for `region` are served: CloudTrail's Regions and the extra ones.
    pub fn serves_region(&self, region: &str) -> bool {
        is_cloudtrail_region(region) || self.extra_regions.iter().any(|extra| extra.as_str() == region)
    }

    pub fn lookup(&self, access_key_id: &str) -> Option<&(Principal, Secret)> {
        self.by_access_key.get(access_key_id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &AccountId> {
        self.by_access_key.values().map(|(principal, _)| &principal.account)
    }
}

/// IAM user IDs look like `AIDA` + 17 upper-case characters; derive one that stays the same
/// across restarts.
fn stable_user_id(account: &AccountId, name: &str) -> String {
    let digest = Sha256::digest(format!("{account}:{name}").as_bytes());
    format!("AIDA{}", &hex::encode_upper(digest)[..17])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_accounts_users_and_keys() {
        let config: Config = toml::from_str(
            r#"
            default_region = "eu-west-1"
            [[accounts]]
            id = "111111111111"
            root_access_keys = [{ access_key_id = "AKIAROOT", secret_access_key = "s1" }]
            [[accounts.users]]
            name = "alice"
            access_keys = [{ access_key_id = "AKIAALICE", secret_access_key = "s2" }]
            "#,
        )
        .unwrap();
        let credentials = Credentials::from_config(&config).unwrap();
        assert_eq!(credentials.default_region.as_str(), "eu-west-1");
        let (alice, secret) = credentials.lookup("AKIAALICE").unwrap();
        assert_eq!(secret.expose(), "s2");
        assert!(matches!(&alice.kind, PrincipalKind::User { name, user_id } if name == "alice" && user_id.len() == 21));
        assert_eq!(credentials.lookup("AKIAROOT").unwrap().0.kind, PrincipalKind::Root);
    }

    #[test]
    fn rejects_bad_accounts_and_duplicate_keys() {
        let bad_account = Config::single_root("123", "k", Secret::new("s"));
        assert!(Credentials::from_config(&bad_account).is_err());
        let mut twice = Config::development();
        twice.accounts.push(twice.accounts[0].clone());
        assert!(Credentials::from_config(&twice).is_err());
    }

    #[test]
    fn delivery_settings_and_destinations() {
        let config: Config = toml::from_str(
            r#"
            [delivery]
            delivery_interval = "2s"
            digest_interval = "1m"
            [[remote_buckets]]
            bucket = "corp-logs"
            endpoint_url = "http://127.0.0.1:9000"
            access_key_id = "k"
            secret_access_key = "remote-secret"
            [[notification_targets]]
            name = "ops"
            url = "http://127.0.0.1:8080/hook"
            secret = "hook-secret"
            "#,
        )
        .unwrap();
        let options = config.service_options().unwrap();
        assert_eq!(options.settings.delivery_interval, Duration::from_secs(2));
        assert_eq!(options.settings.digest_interval, Duration::from_secs(60));
        assert_eq!(options.remote_buckets[0].region, "us-east-1");
        let printed = format!("{config:?}");
        assert!(!printed.contains("remote-secret") && !printed.contains("hook-secret"), "{printed}");
        assert_eq!(options.lake_bucket, None);
        let mut lake = config.clone();
        lake.lake.bucket = Some("corp-logs".into());
        let expected = LakeBucket { bucket: "corp-logs".into(), prefix: "opentrail-lake".into() };
        assert_eq!(lake.service_options().unwrap().lake_bucket, Some(expected));
        lake.lake.bucket = Some("not-configured".into());
        assert!(lake.service_options().is_err());
        let mut bad = config;
        bad.delivery.digest_interval = Some("soon".into());
        assert!(bad.service_options().is_err());
    }

    #[test]
    fn regions_and_limits() {
        let config: Config = toml::from_str(
            r#"
            default_region = "lab-north-1"
            extra_regions = ["lab-north-1"]
            [[accounts]]
            id = "111111111111"
            root_access_keys = [{ access_key_id = "AKIAROOT", secret_access_key = "s1" }]
            [limits]
            header_read_timeout = "500ms"
            max_connections = 64
            "#,
        )
        .unwrap();
        let credentials = Credentials::from_config(&config).unwrap();
        assert!(credentials.serves_region("lab-north-1") && credentials.serves_region("eu-west-1"));
        assert!(!credentials.serves_region("lab-south-1") && !credentials.serves_region("us-east-9"));
        let limits = config.limits.parse().unwrap();
        assert_eq!(limits.header_read_timeout, Some(Duration::from_millis(500)));
        assert_eq!((limits.idle_timeout, limits.max_connections), (None, Some(64)));

        let mut made_up = config.clone();
        made_up.extra_regions.clear();
        assert!(Credentials::from_config(&made_up).is_err(), "a made-up default_region needs extra_regions");
        let mut bad = config;
        bad.limits.idle_timeout = Some("forever".into());
        assert!(bad.limits.parse().is_err());
        bad.limits = LimitsConfig { max_connections: Some(0), ..LimitsConfig::default() };
        assert!(bad.limits.parse().is_err());
    }

    #[test]
    fn secrets_never_print() {
        let config = Config::single_root("000000000000", "AKIAEXAMPLE", Secret::new("s3cr3t-value"));
        let credentials = Credentials::from_config(&config).unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t-value"));
        assert!(!format!("{credentials:?}").contains("s3cr3t-value"));
    }
}
