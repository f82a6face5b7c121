//! Shared fixtures for the integration tests: a real `opentrail serve` process on a free
//! loopback port, clients for it (the official AWS SDK, and raw signed HTTP for protocol
//! edge cases), and the accounts they use.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudtrail::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

pub const ACCOUNT_A: &str = "111111111111";
pub const ACCOUNT_B: &str = "222222222222";
pub const ROOT_A: (&str, &str) = ("AKIAROOTA0000000000A", "secret-root-a");
pub const ALICE_A: (&str, &str) = ("AKIAALICE00000000000", "secret-alice-a");
pub const ROOT_B: (&str, &str) = ("AKIAROOTB0000000000B", "secret-root-b");

pub const CONFIG: &str = r#"
default_region = "us-east-1"

[[accounts]]
id = "111111111111"
root_access_keys = [{ access_key_id = "AKIAROOTA0000000000A", secret_access_key = "secret-root-a" }]

[[accounts.users]]
name = "alice"
access_keys = [{ access_key_id = "AKIAALICE00000000000", secret_access_key = "secret-alice-a" }]

[[accounts]]
id = "222222222222"
root_access_keys = [{ access_key_id = "AKIAROOTB0000000000B", secret_access_key = "secret-root-b" }]
"#;

/// A running `opentrail serve` with its own data directory.
pub struct TestServer {
    pub data_dir: tempfile::TempDir,
    /// `None`: no config file and no credential variables (the development default).
    config_path: Option<PathBuf>,
    child: Option<Child>,
    pub endpoint: String,
    /// Extra environment variables for the server process.
    env: Vec<(String, String)>,
}

impl TestServer {
    pub fn start() -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let config_path = data_dir.path().join("opentrail.toml");
        std::fs::write(&config_path, CONFIG).unwrap();
        let mut server =
            Self { data_dir, config_path: Some(config_path), child: None, endpoint: String::new(), env: Vec::new() };
        server.launch();
        server.create_buckets(ROOT_A);
        server
    }

    /// Buckets the trail tests name, owned by `key`'s account (a thread of its own, so this
    /// works from sync and async tests alike).
    fn create_buckets(&self, key: (&'static str, &'static str)) {
        let endpoint = self.endpoint.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let s3 = s3_client(&endpoint, key);
                for bucket in ["test-bucket", "bucket", "bucket-1"] {
                    s3.create_bucket().bucket(bucket).send().await.unwrap();
                }
            });
        })
        .join()
        .unwrap();
    }

    /// The test accounts plus `extra` TOML, with extra environment variables (such as the
    /// delivery intervals).
    pub fn start_with(extra: &str, env: &[(&str, &str)]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let config_path = data_dir.path().join("opentrail.toml");
        std::fs::write(&config_path, format!("{CONFIG}\n{extra}")).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut server = Self { data_dir, config_path: Some(config_path), child: None, endpoint: String::new(), env };
        server.launch();
        server
    }

    /// The README's quick start: no config, no credential variables.
    pub fn start_development() -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut server = Self { data_dir, config_path: None, child: None, endpoint: String::new(), env: Vec::new() };
        server.launch();
        server.create_buckets(("test", "test"));
        server
    }

    /// The data directory the server uses (the journal and indexes live here).
    pub fn server_data_dir(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    fn launch(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_opentrail"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(self.server_data_dir());
        if let Some(config) = &self.config_path {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env_remove("OPENTRAIL_ACCESS_KEY_ID")
            .env_remove("OPENTRAIL_SECRET_ACCESS_KEY")
            .env_remove("OPENTRAIL_ACCOUNT_ID")
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the opentrail binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("the server prints its endpoint").unwrap();
        let endpoint = line.rsplit(' ').next().unwrap().to_owned();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "unexpected first line: {line}");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.endpoint = endpoint;
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client(server: &TestServer, key: (&str, &str), region: &str) -> aws_sdk_cloudtrail::Client {
    aws_sdk_cloudtrail::Client::from_conf(client_config(server, key, region).build())
}

/// A client whose clock reads `now`: its signatures carry that time.
pub fn client_with_clock(server: &TestServer, key: (&str, &str), now: SystemTime) -> aws_sdk_cloudtrail::Client {
    let config =
        client_config(server, key, "us-east-1").time_source(aws_smithy_async::time::StaticTimeSource::new(now));
    aws_sdk_cloudtrail::Client::from_conf(config.build())
}

fn client_config(server: &TestServer, key: (&str, &str), region: &str) -> aws_sdk_cloudtrail::config::Builder {
    aws_sdk_cloudtrail::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(key.0, key.1, None, None, "tests"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(20)).build())
}

/// An S3 client for the server's S3 endpoint (path-style, as for any self-hosted S3).
pub fn s3_client(endpoint: &str, key: (&str, &str)) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(key.0, key.1, None, None, "tests"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Every object key of a bucket, and the gunzipped `Records` of each CloudTrail log file.
pub async fn log_records(s3: &aws_sdk_s3::Client, bucket: &str) -> (Vec<String>, Vec<serde_json::Value>) {
    let mut keys = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        keys.extend(page.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_owned)));
    }
    let mut records = Vec::new();
    for key in keys.iter().filter(|k| k.contains("/CloudTrail/")) {
        let body = s3.get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await.unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body.into_bytes()[..]).read_to_string(&mut text).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        records.extend(file["Records"].as_array().unwrap().iter().cloned());
    }
    (keys, records)
}

/// The AWS error type of a failed SDK call.
pub fn error_code<E: aws_sdk_cloudtrail::error::ProvideErrorMetadata>(error: E) -> String {
    error.code().unwrap_or("<no code>").to_owned()
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl RawResponse {
    pub fn error_type(&self) -> &str {
        self.body["__type"].as_str().unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// How a raw request is signed.
pub struct Signing<'a> {
    pub key: (&'a str, &'a str),
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

impl Signing<'_> {
    pub fn now() -> Signing<'static> {
        Signing { key: ROOT_A, region: "us-east-1", service: "cloudtrail", time: SystemTime::now() }
    }
}

/// The headers of `POST /` with the given target and body, signed with `signing` (or not).
pub fn signed_headers(
    server: &TestServer,
    target: Option<&str>,
    body: &[u8],
    signing: Option<Signing<'_>>,
) -> Vec<(String, String)> {
    let host = server.endpoint.trim_start_matches("http://").to_owned();
    let mut headers: Vec<(String, String)> =
        vec![("host".into(), host), ("content-type".into(), "application/x-amz-json-1.1".into())];
    if let Some(target) = target {
        headers.push(("x-amz-target".into(), target.into()));
    }
    if let Some(signing) = signing {
        sign_headers("POST", &format!("{}/", server.endpoint), &mut headers, body, signing);
    }
    headers
}

/// Sends `POST /` with the given target and body, signed with `signing` (or unsigned).
pub fn raw_call(server: &TestServer, target: Option<&str>, body: &[u8], signing: Option<Signing<'_>>) -> RawResponse {
    send(server, &signed_headers(server, target, body, signing), body)
}

/// Sends `POST /` with exactly these headers and this body.
pub fn send(server: &TestServer, headers: &[(String, String)], body: &[u8]) -> RawResponse {
    post_raw(&format!("{}/", server.endpoint), headers, body)
}

/// Sends `POST url` with these headers (but `host`, which the client sets) and this body.
fn post_raw(url: &str, headers: &[(String, String)], body: &[u8]) -> RawResponse {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.post(url);
    for (name, value) in headers.iter().filter(|(name, _)| name != "host") {
        request = request.header(name, value);
    }
    raw_response(request.send(body).expect("the server answers"))
}

/// The status, headers and body (JSON if it parses, else text) of a response.
fn raw_response(mut response: ureq::http::Response<ureq::Body>) -> RawResponse {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let mut text = String::new();
    response.body_mut().as_reader().read_to_string(&mut text).unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    RawResponse { status, headers, body }
}

/// `s3s-fs`, an S3-compatible server nobody here wrote (installed by the test script).
pub fn s3s_fs_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CARGO_HOME").map(|home| PathBuf::from(home).join("bin/s3s-fs")),
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/s3s-fs")),
    ];
    let found = candidates.into_iter().flatten().find(|path| path.exists());
    if found.is_none() {
        assert!(std::env::var_os("OPENTRAIL_REQUIRE_S3S_FS").is_none(), "s3s-fs is required but not installed");
        eprintln!("SKIPPED: s3s-fs is not installed (cargo install s3s-fs --version 0.14.1 --features binary)");
    }
    found
}

/// A separate S3-compatible server process (`s3s-fs`) on a free port, keys `ext-key`/`ext-secret`.
pub struct ExternalS3 {
    binary: PathBuf,
    folder: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl ExternalS3 {
    pub fn start(binary: PathBuf, folder: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::fs::create_dir_all(folder).unwrap();
        let mut external = Self { binary, folder: folder.to_owned(), port, child: None };
        external.launch();
        external
    }

    pub fn launch(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--access-key", "ext-key"])
            .args(["--secret-key", "ext-secret"])
            .arg(&self.folder)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ExternalS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU time (user and system, all threads) the server process has used so far, read from
/// `/proc/<pid>/stat` (Linux; clock ticks are USER_HZ, 100 per second).
pub fn server_cpu_time(server: &TestServer) -> Duration {
    let pid = server.child.as_ref().expect("the server is running").id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis start at field 3 (state); utime and stime
    // are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// How [`TestServer::start_custom`] starts the server, beyond the test accounts.
#[derive(Default)]
pub struct Launch<'a> {
    /// Top-level TOML keys, put before [`CONFIG`] (after it they would land in its last table).
    pub root_config: &'a str,
    /// TOML tables appended to [`CONFIG`].
    pub extra_config: &'a str,
    /// Extra environment variables; `RUST_LOG` here replaces the default `warn`.
    pub env: &'a [(&'a str, &'a str)],
    /// Where the server's stderr goes (a file, so a test can read the log); inherited if unset.
    pub stderr_to: Option<PathBuf>,
    /// Soft and hard open-file limit of the server process (`ulimit -n`).
    pub open_files: Option<u32>,
}

impl TestServer {
    /// A server started as `launch` says, with the buckets of [`TestServer::start`]. Its
    /// `restart` starts it the ordinary way.
    pub fn start_custom(launch: Launch<'_>) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let config_path = data_dir.path().join("opentrail.toml");
        std::fs::write(&config_path, format!("{}\n{CONFIG}\n{}", launch.root_config, launch.extra_config)).unwrap();
        let binary = env!("CARGO_BIN_EXE_opentrail");
        let mut command = match launch.open_files {
            // The shell lowers the limit and then becomes the server.
            Some(limit) => {
                let mut command = Command::new("sh");
                command.arg("-c").arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\"")).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir.path().join("data"));
        command.arg("--config").arg(&config_path);
        command
            .env_remove("OPENTRAIL_ACCESS_KEY_ID")
            .env_remove("OPENTRAIL_SECRET_ACCESS_KEY")
            .env_remove("OPENTRAIL_ACCOUNT_ID")
            .env("RUST_LOG", "warn")
            .envs(launch.env.iter().copied())
            .stdout(Stdio::piped());
        match &launch.stderr_to {
            Some(path) => command.stderr(std::fs::File::create(path).unwrap()),
            None => command.stderr(Stdio::inherit()),
        };
        let mut child = command.spawn().expect("the opentrail binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the server prints its endpoint").unwrap();
        let endpoint = line.rsplit(' ').next().unwrap().to_owned();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "unexpected first line: {line}");
        std::thread::spawn(move || for _ in lines {});
        let env = launch.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let server = Self { data_dir, config_path: Some(config_path), child: Some(child), endpoint, env };
        server.create_buckets(ROOT_A);
        server
    }
}

/// Whether the aws CLI is here; a test that needs it says it skipped when it is not, unless the
/// test command requires it (`OPENTRAIL_REQUIRE_AWS_CLI`).
pub fn aws_cli_available() -> bool {
    let found = Command::new("aws").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("OPENTRAIL_REQUIRE_AWS_CLI").is_none(), "the aws CLI is required but missing");
        eprintln!("SKIPPED: the aws CLI is not installed");
    }
    found
}

/// A StartImport source in OpenTrail's own bucket store.
pub fn s3_source(uri: &str) -> aws_sdk_cloudtrail::types::ImportSource {
    aws_sdk_cloudtrail::types::ImportSource::builder()
        .s3(aws_sdk_cloudtrail::types::S3ImportSource::builder()
            .s3_location_uri(uri)
            .s3_bucket_region("us-east-1")
            .s3_bucket_access_role_arn("arn:aws:iam::111111111111:role/import")
            .build()
            .unwrap())
        .build()
}

/// The aws CLI as account A's root against `server`, answering JSON (it must succeed).
pub fn aws(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new("aws")
        .args(args)
        .args(["--endpoint-url", &server.endpoint, "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", ROOT_A.0)
        .env("AWS_SECRET_ACCESS_KEY", ROOT_A.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("aws runs");
    assert!(output.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// With the aws CLI: an event data store for outside events (ActivityAuditLog) and a `Custom`
/// channel into it; returns their ARNs.
pub fn outside_events_channel(server: &TestServer) -> (String, String) {
    let selectors =
        r#"[{"Name":"activity","FieldSelectors":[{"Field":"eventCategory","Equals":["ActivityAuditLog"]}]}]"#;
    let store = aws(
        server,
        &[
            "cloudtrail",
            "create-event-data-store",
            "--name",
            "outside",
            "--no-multi-region-enabled",
            "--advanced-event-selectors",
            selectors,
        ],
    );
    let store_arn = store["EventDataStoreArn"].as_str().unwrap().to_string();
    let destinations = format!(r#"[{{"Type":"EVENT_DATA_STORE","Location":"{store_arn}"}}]"#);
    let channel = aws(
        server,
        &["cloudtrail", "create-channel", "--name", "app", "--source", "Custom", "--destinations", &destinations],
    );
    (store_arn, channel["ChannelArn"].as_str().unwrap().to_string())
}

/// Sends `GET path` signed with `signing` (or unsigned), as OpenTrail's own read-only endpoints
/// (`/opentrail/status`) take it.
pub fn signed_get(server: &TestServer, path: &str, signing: Option<Signing<'_>>) -> RawResponse {
    let host = server.endpoint.trim_start_matches("http://").to_owned();
    let mut headers: Vec<(String, String)> = vec![("host".into(), host)];
    let url = format!("{}{path}", server.endpoint);
    if let Some(signing) = signing {
        sign_headers("GET", &url, &mut headers, b"", signing);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.get(&url);
    for (name, value) in headers.iter().filter(|(name, _)| name != "host") {
        request = request.header(name, value);
    }
    raw_response(request.call().expect("the server answers"))
}

/// Adds SigV4's headers for this request to `headers`.
fn sign_headers(method: &str, url: &str, headers: &mut Vec<(String, String)>, body: &[u8], signing: Signing<'_>) {
    let identity = Credentials::new(signing.key.0, signing.key.1, None, None, "tests").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(signing.region)
        .name(signing.service)
        .time(signing.time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    for header in instructions.into_parts().0 {
        headers.push((header.name().to_owned(), header.value().to_owned()));
    }
}

impl TestServer {
    /// Restarts the server with these extra environment variables instead of the earlier ones
    /// (such as a crash point for the next run, or none).
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.restart();
    }
}

// Journal files on disk, for the damage and overload tests.

/// One frame of a journal segment as found on disk.
#[derive(Debug, Clone)]
pub struct DiskFrame {
    pub segment: PathBuf,
    /// The segment's base position.
    pub base: u64,
    /// The frame's global position.
    pub position: u64,
    /// The whole frame's length (8 header bytes and the payload).
    pub len: u64,
    pub payload: Vec<u8>,
}

impl DiskFrame {
    /// Where the frame starts in its segment file (past the 8-byte segment header).
    pub fn file_offset(&self) -> u64 {
        8 + self.position - self.base
    }
}

/// The journal segment files of a server's data directory, ascending by base.
pub fn journal_segments(data_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(data_dir.join("journal"))
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let base = path.file_name()?.to_str()?.strip_suffix(".seg")?.parse().ok()?;
            Some((base, path))
        })
        .collect();
    segments.sort();
    segments
}

/// Every frame of every segment, by the length fields alone (read an undamaged journal).
pub fn journal_frames(data_dir: &Path) -> Vec<DiskFrame> {
    let mut frames = Vec::new();
    for (base, path) in journal_segments(data_dir) {
        let bytes = std::fs::read(&path).unwrap();
        let mut offset = 8usize;
        while offset + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            if offset + 8 + len > bytes.len() {
                break;
            }
            frames.push(DiskFrame {
                segment: path.clone(),
                base,
                position: base + offset as u64 - 8,
                len: 8 + len as u64,
                payload: bytes[offset + 8..offset + 8 + len].to_vec(),
            });
            offset += 8 + len;
        }
    }
    frames
}

/// The text value of `"field":"..."` in a journal record, found by text.
pub fn record_field(payload: &[u8], field: &str) -> Option<String> {
    let text = String::from_utf8_lossy(payload);
    let marker = format!("\"{field}\":\"");
    let start = text.find(&marker)? + marker.len();
    let end = start + text[start..].find('"')?;
    Some(text[start..end].to_owned())
}

/// XORs one byte of a file.
pub fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
}

/// Every event Event History returns to `ct` (all pages), counted by request ID.
pub async fn history_request_ids(ct: &aws_sdk_cloudtrail::Client) -> std::collections::HashMap<String, usize> {
    let mut found = std::collections::HashMap::new();
    let mut token = None;
    loop {
        let page = ct.lookup_events().max_results(50).set_next_token(token).send().await.unwrap();
        for event in page.events() {
            let record: serde_json::Value = serde_json::from_str(event.cloud_trail_event().unwrap()).unwrap();
            if let Some(id) = record["requestID"].as_str() {
                *found.entry(id.to_owned()).or_default() += 1;
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return found;
        }
    }
}

/// The server process's peak resident set size (`VmHWM` in `/proc/<pid>/status`), in KiB.
pub fn server_peak_rss_kib(server: &TestServer) -> u64 {
    let pid = server.child.as_ref().expect("the server is running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs the `opentrail` binary (not a server) with `args`.
pub fn opentrail(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_opentrail")).args(args).env("RUST_LOG", "warn").output().unwrap()
}

/// Sends `POST path_and_query` with `body`, signed with `signing` for its service.
pub fn signed_post(server: &TestServer, path_and_query: &str, body: &[u8], signing: Signing<'_>) -> RawResponse {
    let host = server.endpoint.trim_start_matches("http://").to_owned();
    let mut headers: Vec<(String, String)> =
        vec![("host".into(), host), ("content-type".into(), "application/json".into())];
    let url = format!("{}{path_and_query}", server.endpoint);
    sign_headers("POST", &url, &mut headers, body, signing);
    post_raw(&url, &headers, body)
}

impl TestServer {
    /// Kills the server and starts it again on the same data directory (same config and
    /// environment), its stderr going to `log` so a test can read what it reported.
    pub fn restart_logging_to(&mut self, log: &Path) {
        self.kill();
        let mut command = Command::new(env!("CARGO_BIN_EXE_opentrail"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(self.server_data_dir());
        if let Some(config) = &self.config_path {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .env_remove("OPENTRAIL_ACCESS_KEY_ID")
            .env_remove("OPENTRAIL_SECRET_ACCESS_KEY")
            .env_remove("OPENTRAIL_ACCOUNT_ID")
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("the opentrail binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the server prints its endpoint").unwrap();
        let endpoint = line.rsplit(' ').next().unwrap().to_owned();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "unexpected first line: {line}");
        std::thread::spawn(move || for _ in lines {});
        self.endpoint = endpoint;
        self.child = Some(child);
    }
}
