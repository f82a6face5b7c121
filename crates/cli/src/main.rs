//! `opentrail`: the server and its command-line tools.

mod client;
mod import;
mod insights;
mod journal;
mod lookup;
mod put_events;
mod query;
mod record_file;
mod rotate_master_key;
mod sigma;
mod status;
mod times;
mod validate_logs;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use opentrail_service::{Config, Credentials, OpenTrail, Secret};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

#[derive(Parser)]
#[command(name = "opentrail", version, about = "A self-hosted, CloudTrail-compatible audit trail")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: CloudTrail's API on one port, data in one folder.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4590")]
        listen: SocketAddr,
        /// Folder for the journal, the indexes and the control-plane state.
        #[arg(long, default_value = "./opentrail-data")]
        data_dir: PathBuf,
        /// TOML file defining accounts, users and access keys.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Look up Event History in a running OpenTrail (or CloudTrail): credentials and Region
    /// from the standard AWS environment variables, as the aws CLI takes them.
    Lookup {
        /// Where the server is (default: AWS_ENDPOINT_URL_CLOUDTRAIL, AWS_ENDPOINT_URL, or
        /// http://127.0.0.1:4590).
        #[arg(long)]
        endpoint_url: Option<String>,
        /// Region (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1).
        #[arg(long)]
        region: Option<String>,
        /// A lookup attribute as KEY=VALUE (EventName, Username, AccessKeyId, EventId, ReadOnly,
        /// ResourceType, ResourceName, EventSource); repeat to AND several.
        #[arg(long = "attribute", value_name = "KEY=VALUE")]
        attributes: Vec<String>,
        /// From when: RFC 3339, epoch seconds, or a time ago (30m, 2h, 7d).
        #[arg(long)]
        start_time: Option<String>,
        /// Until when (same forms).
        #[arg(long)]
        end_time: Option<String>,
        /// The most events to print.
        #[arg(long, default_value_t = 50)]
        max_items: usize,
        /// Print each event's full CloudTrail record as one JSON line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Append CloudTrail records (JSON lines, or a log file's {"Records":[...]}, optionally
    /// gzipped) to the journal of a stopped server, so Event History can be tried on real events.
    PutEvents {
        /// The file to read.
        file: PathBuf,
        #[arg(long, default_value = "./opentrail-data")]
        data_dir: PathBuf,
        /// File every record under this account instead of its recipientAccountId.
        #[arg(long)]
        account: Option<String>,
        /// Region for records whose awsRegion is missing or not one of CloudTrail's Regions.
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
    ValidateLogs(validate_logs::ValidateArgs),
    /// Run a CloudTrail Lake SQL query on a running OpenTrail and print the rows.
    Query(query::QueryArgs),
    /// Import a folder of CloudTrail log files into an event data store of a data directory.
    Import(import::ImportArgs),
    RotateMasterKey(rotate_master_key::RotateMasterKeyArgs),
    /// Show the journal consumers of a running OpenTrail (Event History, each logging trail's
    /// delivery, the Lake writer): state, restarts and how far behind the journal each is.
    Status(status::StatusArgs),
    /// Verify (`check`) or repair the journal of a stopped server's data directory.
    Journal(journal::JournalArgs),
    /// CloudTrail Insights of a running OpenTrail: `list` the insights, `show` one with its
    /// metric series as a chart and its attributions.
    Insights(insights::InsightsArgs),
    /// Sigma rules offline: `test` prints which records of a file the rules match (no server).
    Sigma(sigma::SigmaArgs),
}

/// Crates that log requests, headers, presigned query strings or computed signatures below
/// `info` (s3s prints whole requests at debug, aws-sigv4 the signing inputs at trace, the SDK
/// runtime its requests at trace): capped at `info` whatever `RUST_LOG` says, because a log is
/// no place for credentials.
const CAPPED_TARGETS: &[&str] = &[
    "s3s",
    "s3s_fs",
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_http",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
    "ureq",
    "ureq_proto",
    "rustls",
];

fn init_logging() {
    use std::io::IsTerminal;
    let requested = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second filter layer: an event must pass both, so no RUST_LOG directive (however
    // specific its target) can lift these crates above the cap.
    let caps = CAPPED_TARGETS.iter().fold(Targets::new().with_default(LevelFilter::TRACE), |caps, target| {
        caps.with_target(*target, LevelFilter::INFO)
    });
    // Colour codes only for a terminal: piped into a file or a log collector they are noise.
    let output =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry().with(requested).with(caps).with(output).init();
}

fn main() -> Result<()> {
    opentrail_service::private_files::restrict_new_files();
    init_logging();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve { listen, data_dir, config } => runtime.block_on(serve(listen, data_dir, config)),
        Command::Lookup { endpoint_url, region, attributes, start_time, end_time, max_items, json } => {
            lookup::run(lookup::LookupArgs {
                endpoint_url,
                region,
                attributes,
                start_time,
                end_time,
                max_items,
                json_lines: json,
            })
        }
        Command::PutEvents { file, data_dir, account, region } => {
            runtime.block_on(put_events::run(&file, &data_dir, account.as_deref(), &region))
        }
        Command::Query(args) => query::run(args),
        Command::Import(args) => runtime.block_on(import::run(args)),
        Command::RotateMasterKey(args) => rotate_master_key::run(args),
        Command::Status(args) => status::run(args),
        Command::Insights(args) => insights::run(args),
        Command::Sigma(args) => sigma::run(args),
        Command::Journal(args) => {
            if !journal::run(args)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::ValidateLogs(args) => {
            if !runtime.block_on(validate_logs::run(args))? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// The configuration from the config file, else credentials from the environment, else (on
/// loopback only) the development account. Delivery intervals may come from
/// `OPENTRAIL_DELIVERY_INTERVAL` and `OPENTRAIL_DIGEST_INTERVAL`, which win over the file.
fn load_config(config: Option<&PathBuf>, listen: &SocketAddr) -> Result<Config> {
    let mut config = match config {
        Some(path) => Config::load(path)?,
        None => {
            let variable = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            match (variable("OPENTRAIL_ACCESS_KEY_ID"), variable("OPENTRAIL_SECRET_ACCESS_KEY")) {
                (Some(key), Some(secret)) => {
                    let account = variable("OPENTRAIL_ACCOUNT_ID").unwrap_or_else(|| "000000000000".into());
                    Config::single_root(&account, &key, Secret::new(secret))
                }
                (None, None) if listen.ip().is_loopback() => {
                    tracing::warn!(
                        "no credentials configured: using the development account 000000000000 with access key \
                         'test' and secret 'test' (loopback only)"
                    );
                    Config::development()
                }
                (None, None) => bail!(
                    "refusing to listen on {listen} without credentials: pass --config or set \
                     OPENTRAIL_ACCESS_KEY_ID and OPENTRAIL_SECRET_ACCESS_KEY"
                ),
                _ => bail!("set both OPENTRAIL_ACCESS_KEY_ID and OPENTRAIL_SECRET_ACCESS_KEY, or neither"),
            }
        }
    };
    if let Ok(interval) = std::env::var("OPENTRAIL_DELIVERY_INTERVAL") {
        config.delivery.delivery_interval = Some(interval);
    }
    if let Ok(interval) = std::env::var("OPENTRAIL_DIGEST_INTERVAL") {
        config.delivery.digest_interval = Some(interval);
    }
    if let Ok(timeout) = std::env::var("OPENTRAIL_HEADER_READ_TIMEOUT") {
        config.limits.header_read_timeout = Some(timeout);
    }
    if let Ok(timeout) = std::env::var("OPENTRAIL_IDLE_TIMEOUT") {
        config.limits.idle_timeout = Some(timeout);
    }
    if let Ok(max) = std::env::var("OPENTRAIL_MAX_CONNECTIONS") {
        let max = max.parse().with_context(|| format!("OPENTRAIL_MAX_CONNECTIONS {max:?} is not a number"))?;
        config.limits.max_connections = Some(max);
    }
    Ok(config)
}

/// The listener's limits: the config's `[limits]` (or their variables) over the defaults.
fn http_limits(config: &Config) -> Result<opentrail_api::HttpLimits> {
    let configured = config.limits.parse()?;
    let defaults = opentrail_api::HttpLimits::default();
    Ok(opentrail_api::HttpLimits {
        header_read_timeout: configured.header_read_timeout.unwrap_or(defaults.header_read_timeout),
        idle_timeout: configured.idle_timeout.unwrap_or(defaults.idle_timeout),
        max_connections: configured.max_connections.unwrap_or(defaults.max_connections),
    })
}

async fn serve(listen: SocketAddr, data_dir: PathBuf, config: Option<PathBuf>) -> Result<()> {
    let config = load_config(config.as_ref(), &listen)?;
    let credentials = Credentials::from_config(&config)?;
    let limits = http_limits(&config)?;
    let options = config.service_options()?;
    tracing::info!(
        delivery_interval = ?options.settings.delivery_interval,
        digest_interval = ?options.settings.digest_interval,
        "trail delivery"
    );
    let service = OpenTrail::open_with(&data_dir, credentials, options)
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    // Before anything is served: the records of changes committed just before a crash.
    service.drain_outbox().await.context("cannot deliver the records of changes committed before a crash")?;
    service.spawn_background_tasks();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(data_dir = %data_dir.display(), "OpenTrail is ready");
    println!("OpenTrail listening on http://{address}");
    opentrail_api::serve(listener, service, limits, shutdown_signal()).await?;
    tracing::info!("OpenTrail stopped");
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
