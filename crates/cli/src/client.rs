//! A signed CloudTrail API client for the CLI, configured the way the aws CLI is: endpoint,
//! Region and credentials from the standard AWS environment variables unless given.

use std::io::Read;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::Value;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub struct Connection {
    endpoint: String,
    region: String,
    credentials: Credentials,
}

impl Connection {
    /// Endpoint default: `AWS_ENDPOINT_URL_CLOUDTRAIL`, `AWS_ENDPOINT_URL`, or the local server;
    /// Region default: `AWS_REGION`, `AWS_DEFAULT_REGION`, or us-east-1.
    pub fn from_env(endpoint_url: Option<String>, region: Option<String>) -> Result<Self> {
        let endpoint = endpoint_url
            .or_else(|| env("AWS_ENDPOINT_URL_CLOUDTRAIL"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| "http://127.0.0.1:4590".into());
        let region = region
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) else {
            bail!("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for the development server: test / test)");
        };
        let credentials = Credentials::new(key, secret, env("AWS_SESSION_TOKEN"), None, "environment");
        Ok(Self { endpoint, region, credentials })
    }

    /// One signed call of a CloudTrail operation; an AWS error becomes `Err("Type: message")`.
    pub fn call(&self, operation: &str, body: &Value) -> Result<Value> {
        let target = format!("CloudTrail_20131101.{operation}");
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        self.signed("POST", "/", &headers, body.to_string().as_bytes())
    }

    /// A signed `GET` of one of OpenTrail's own paths (`/opentrail/status`), answering JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.signed("GET", path, &[], b"")
    }

    /// Sends a request signed for service `cloudtrail`; a non-2xx answer becomes
    /// `Err("Type: message")`.
    fn signed(&self, method: &str, path: &str, extra_headers: &[(&str, &str)], body: &[u8]) -> Result<Value> {
        let endpoint = &self.endpoint;
        let uri: http::Uri = endpoint.parse().with_context(|| format!("invalid endpoint URL {endpoint}"))?;
        let host = uri.authority().context("the endpoint URL has no host")?.to_string();
        let mut headers = vec![("host", host.as_str())];
        headers.extend_from_slice(extra_headers);
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("cloudtrail")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let url = format!("{}{path}", endpoint.trim_end_matches('/'));
        let signable = SignableRequest::new(method, &url, headers.iter().copied(), SignableBody::Bytes(body))?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = http::Request::builder().method(method).uri(&url);
        // `host` is set by the client from the URL.
        for (name, value) in headers.iter().skip(1) {
            request = request.header(*name, *value);
        }
        for header in instructions.into_parts().0 {
            request = request.header(header.name(), header.value());
        }
        // A GET carries no body at all (not even an empty one, which ureq would refuse).
        let sent = if body.is_empty() { agent.run(request.body(())?) } else { agent.run(request.body(body.to_vec())?) };
        let mut response = sent.with_context(|| format!("cannot reach {endpoint}"))?;
        let status = response.status();
        let mut text = String::new();
        response.body_mut().as_reader().read_to_string(&mut text)?;
        let answer: Value =
            serde_json::from_str(&text).with_context(|| format!("unexpected answer ({status}): {text}"))?;
        if !status.is_success() {
            let kind = answer["__type"].as_str().unwrap_or("error");
            let kind = kind.rsplit('#').next().unwrap_or(kind);
            bail!("{kind}: {}", answer["message"].as_str().or(answer["Message"].as_str()).unwrap_or_default());
        }
        Ok(answer)
    }
}
