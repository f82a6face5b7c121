//! `opentrail lookup`: Event History from the command line, against a running OpenTrail (or
//! CloudTrail itself), signed the way the aws CLI signs: credentials and Region from the
//! standard AWS environment variables.

use std::io::{Read, Write};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::times::parse_time;

pub struct LookupArgs {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub attributes: Vec<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub max_items: usize,
    pub json_lines: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A command-line time as the epoch seconds LookupEvents takes.
fn epoch_seconds(text: &str, now: DateTime<Utc>) -> Result<f64> {
    Ok(parse_time(text, now)?.timestamp_millis() as f64 / 1000.0)
}

fn request_body(args: &LookupArgs, next_token: Option<&str>) -> Result<Value> {
    let now = Utc::now();
    let mut attributes = Vec::new();
    for attribute in &args.attributes {
        let (key, value) = attribute.split_once('=').with_context(|| format!("'{attribute}' is not KEY=VALUE"))?;
        attributes.push(json!({"AttributeKey": key, "AttributeValue": value}));
    }
    let mut body = json!({ "MaxResults": 50 });
    if !attributes.is_empty() {
        body["LookupAttributes"] = json!(attributes);
    }
    if let Some(start) = &args.start_time {
        body["StartTime"] = json!(epoch_seconds(start, now)?);
    }
    if let Some(end) = &args.end_time {
        body["EndTime"] = json!(epoch_seconds(end, now)?);
    }
    if let Some(token) = next_token {
        body["NextToken"] = json!(token);
    }
    Ok(body)
}

/// One signed `LookupEvents` call.
fn call(endpoint: &str, region: &str, credentials: &Credentials, body: &Value) -> Result<Value> {
    let body = body.to_string();
    let uri: http::Uri = endpoint.parse().with_context(|| format!("invalid endpoint URL {endpoint}"))?;
    let host = uri.authority().context("the endpoint URL has no host")?.to_string();
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "CloudTrail_20131101.LookupEvents"),
    ];
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("cloudtrail")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let signable = SignableRequest::new("POST", &url, headers.iter().copied(), SignableBody::Bytes(body.as_bytes()))?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.post(&url);
    for (name, value) in headers.iter().skip(1) {
        request = request.header(*name, *value);
    }
    for header in instructions.into_parts().0 {
        request = request.header(header.name(), header.value());
    }
    let mut response = request.send(body.as_bytes()).with_context(|| format!("cannot reach {endpoint}"))?;
    let status = response.status();
    let mut text = String::new();
    response.body_mut().as_reader().read_to_string(&mut text)?;
    let answer: Value = serde_json::from_str(&text).with_context(|| format!("unexpected answer ({status}): {text}"))?;
    if !status.is_success() {
        let kind = answer["__type"].as_str().unwrap_or("error");
        let kind = kind.rsplit('#').next().unwrap_or(kind);
        bail!("{kind}: {}", answer["message"].as_str().or(answer["Message"].as_str()).unwrap_or_default());
    }
    Ok(answer)
}

pub fn run(args: LookupArgs) -> Result<()> {
    let endpoint = args
        .endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_CLOUDTRAIL"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| "http://127.0.0.1:4590".into());
    let region = args
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) else {
        bail!("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for the development server: test / test)");
    };
    let credentials = Credentials::new(key, secret, env("AWS_SESSION_TOKEN"), None, "environment");

    let mut out = std::io::stdout().lock();
    if !args.json_lines {
        writeln!(out, "{:<20}  {:<28}  {:<20}  {:<24}  {:<16}  ERROR", "TIME", "EVENT", "USER", "SOURCE", "IP")?;
    }
    let mut printed = 0;
    let mut next_token: Option<String> = None;
    while printed < args.max_items {
        let page = call(&endpoint, &region, &credentials, &request_body(&args, next_token.as_deref())?)?;
        for event in page["Events"].as_array().into_iter().flatten() {
            if printed == args.max_items {
                break;
            }
            let record: Value =
                event["CloudTrailEvent"].as_str().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
            if args.json_lines {
                writeln!(out, "{record}")?;
            } else {
                let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
                writeln!(
                    out,
                    "{:<20}  {:<28}  {:<20}  {:<24}  {:<16}  {}",
                    text(&record["eventTime"]),
                    text(&event["EventName"]),
                    text(&event["Username"]),
                    text(&record["eventSource"]),
                    text(&record["sourceIPAddress"]),
                    record["errorCode"].as_str().unwrap_or("")
                )?;
            }
            printed += 1;
        }
        next_token = page["NextToken"].as_str().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    if !args.json_lines {
        writeln!(out, "{printed} events")?;
    }
    Ok(())
}
