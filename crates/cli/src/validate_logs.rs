//! `opentrail validate-logs`: the aws CLI's `cloudtrail validate-logs`, with its options and its
//! report, reaching OpenTrail or AWS the way the aws CLI does (`--endpoint-url` for CloudTrail,
//! `AWS_ENDPOINT_URL_S3` for S3, credentials and Region from the standard environment and
//! profiles). The checks themselves are `opentrail_delivery::validate`.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudtrail::primitives::DateTime as AwsDateTime;
use aws_smithy_http_client::tls;
use base64::Engine;
use chrono::{Duration, Utc};
use opentrail_delivery::validate::{FileKind, Finding, ObjectSource, SourceError, ValidationTarget, validate};

use crate::times::{format_time, parse_time};

/// Check a trail's log files against its signed digests, like `aws cloudtrail validate-logs`
/// (same options and report); also catches consecutive deleted digests and log files no digest
/// lists. Exits 1 if anything is invalid.
#[derive(clap::Args)]
pub struct ValidateArgs {
    #[arg(long)]
    pub trail_arn: String,
    /// RFC 3339, epoch seconds, or a time ago (2h).
    #[arg(long)]
    pub start_time: String,
    /// Default: now.
    #[arg(long)]
    pub end_time: Option<String>,
    /// Read digests from this bucket instead of the trail's.
    #[arg(long)]
    pub s3_bucket: Option<String>,
    #[arg(long)]
    pub s3_prefix: Option<String>,
    /// The account whose files to check (organization trails).
    #[arg(long)]
    pub account_id: Option<String>,
    /// Also list valid files.
    #[arg(long)]
    pub verbose: bool,
    /// CloudTrail endpoint (S3 follows AWS_ENDPOINT_URL_S3, as with the aws CLI).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
}

async fn sdk_config(region: Option<String>) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client);
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// Reads digests and log files through an S3 client.
struct S3Source(aws_sdk_s3::Client);

#[async_trait]
impl ObjectSource for S3Source {
    async fn list(&self, bucket: &str, prefix: &str, marker: &str) -> Result<Vec<String>, SourceError> {
        let mut keys = Vec::new();
        let mut marker = marker.to_owned();
        loop {
            let page =
                self.0.list_objects().bucket(bucket).prefix(prefix).marker(&marker).send().await.map_err(|e| {
                    SourceError(format!(
                        "cannot list s3://{bucket}/{prefix}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ))
                })?;
            let contents = page.contents();
            keys.extend(contents.iter().filter_map(|object| object.key().map(str::to_owned)));
            match (page.is_truncated(), keys.last()) {
                (Some(true), Some(last)) => marker = page.next_marker().unwrap_or(last).to_owned(),
                _ => return Ok(keys),
            }
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, HashMap<String, String>)>, SourceError> {
        match self.0.get_object().bucket(bucket).key(key).send().await {
            Ok(output) => {
                let metadata = output.metadata().cloned().unwrap_or_default();
                let body = output.body.collect().await.map_err(|e| SourceError(e.to_string()))?;
                Ok(Some((body.into_bytes().to_vec(), metadata)))
            }
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(error) => Err(SourceError(format!(
                "cannot read s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&error)
            ))),
        }
    }
}

/// Runs the validation and prints the aws CLI's report; returns whether everything was valid.
pub async fn run(args: ValidateArgs) -> Result<bool> {
    let arn_parts: Vec<&str> = args.trail_arn.splitn(6, ':').collect();
    let (home_region, arn_account, trail_name) = match arn_parts.as_slice() {
        ["arn", _, "cloudtrail", region, account, resource]
            if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && resource.starts_with("trail/") =>
        {
            (region.to_string(), account.to_string(), resource.rsplit('/').next().unwrap_or_default().to_owned())
        }
        _ => bail!("Invalid trail ARN provided: {}", args.trail_arn),
    };
    let now = Utc::now();
    let start = parse_time(&args.start_time, now)?;
    let end = match &args.end_time {
        Some(text) => parse_time(text, now)?,
        None => now,
    };
    if start > end {
        bail!("Invalid time range specified: start-time must occur before end-time");
    }
    let config = sdk_config(args.region.clone()).await;
    let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
    let mut cloudtrail_config = aws_sdk_cloudtrail::config::Builder::from(&config);
    if let Some(url) = &args.endpoint_url {
        cloudtrail_config = cloudtrail_config.endpoint_url(url);
    }
    let cloudtrail = aws_sdk_cloudtrail::Client::from_conf(cloudtrail_config.build());
    // Self-hosted S3 endpoints want path-style addressing; AWS itself does not need it.
    let custom_s3 = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"].iter().any(|name| std::env::var_os(name).is_some());
    let s3 =
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(custom_s3).build());

    let (bucket, prefix) = match &args.s3_bucket {
        Some(bucket) => (bucket.clone(), args.s3_prefix.clone()),
        None => {
            let trails = cloudtrail.describe_trails().send().await.context("DescribeTrails failed")?;
            let trail = trails
                .trail_list()
                .iter()
                .find(|t| t.trail_arn() == Some(args.trail_arn.as_str()))
                .with_context(|| format!("A trail could not be found for {}", args.trail_arn))?;
            (
                trail.s3_bucket_name().context("the trail has no bucket")?.to_owned(),
                args.s3_prefix.clone().or_else(|| trail.s3_key_prefix().map(str::to_owned)),
            )
        }
    };
    let keys = cloudtrail
        .list_public_keys()
        .start_time(AwsDateTime::from_secs(start.timestamp()))
        .end_time(AwsDateTime::from_secs((end + Duration::hours(2)).timestamp()))
        .send()
        .await
        .context("ListPublicKeys failed")?;
    let mut public_keys = HashMap::new();
    for key in keys.public_key_list() {
        if let (Some(fingerprint), Some(value)) = (key.fingerprint(), key.value()) {
            // The SDK hands over the raw bytes; the aws CLI sees them as base64 and decodes.
            let raw = value.as_ref();
            let der = base64::engine::general_purpose::STANDARD.decode(raw).unwrap_or_else(|_| raw.to_vec());
            public_keys.insert(fingerprint.to_owned(), der);
        }
    }
    if public_keys.is_empty() {
        bail!("No public keys found between {} and {}", format_time(start), format_time(end));
    }
    let target = ValidationTarget {
        bucket,
        prefix,
        account: args.account_id.clone().unwrap_or(arn_account),
        trail_name,
        home_region,
        region,
        start,
        end,
    };
    println!(
        "Validating log files for trail {} between {} and {}\n",
        args.trail_arn,
        format_time(start),
        format_time(end)
    );
    let report = validate(&S3Source(s3), &public_keys, &target).await?;
    for finding in &report.findings {
        let label = |kind: &FileKind| if *kind == FileKind::Digest { "Digest file" } else { "Log file" };
        match finding {
            Finding::Valid { kind, url } if args.verbose => println!("{}\t{url}\tvalid", label(kind)),
            Finding::Valid { .. } => {}
            Finding::Invalid { kind, url, reason } => eprintln!("{}\t{url}\tINVALID: {reason}", label(kind)),
            Finding::Gap { from, to } => {
                eprintln!("No log files were delivered by CloudTrail between {from} and {to}")
            }
        }
    }
    println!("\nResults requested for {} to {}", format_time(start), format_time(end));
    match &report.found_range {
        None if report.digests_listed == 0 => println!("No digests found"),
        None => println!("No valid digests found in range"),
        Some((from, to)) => println!("Results found for {from} to {to}:"),
    }
    let line = |noun: &str, (valid, invalid): (usize, usize)| {
        let total = valid + invalid;
        if invalid > 0 {
            println!("{valid}/{total} {noun} files valid, {invalid}/{total} {noun} files INVALID");
        } else {
            println!("{valid}/{total} {noun} files valid");
        }
    };
    println!();
    line("digest", report.count(FileKind::Digest));
    line("log", report.count(FileKind::Log));
    Ok(report.is_valid())
}
