//! `opentrail`: the server and its command-line tools.

mod client;
mod import;
mod lookup;
mod put_events;
mod query;
mod times;
mod validate_logs;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use opentrail_service::{Config, Credentials, OpenTrail, Secret};
use tracing_subscriber::EnvFilter;

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
        /// Region for records without awsRegion.
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
    ValidateLogs(validate_logs::ValidateArgs),
    /// Run a CloudTrail Lake SQL query on a running OpenTrail and print the rows.
    Query(query::QueryArgs),
    /// Import a folder of CloudTrail log files into an event data store of a data directory.
    Import(import::ImportArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
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
    Ok(config)
}

async fn serve(listen: SocketAddr, data_dir: PathBuf, config: Option<PathBuf>) -> Result<()> {
    let config = load_config(config.as_ref(), &listen)?;
    let credentials = Credentials::from_config(&config)?;
    let options = config.service_options()?;
    tracing::info!(
        delivery_interval = ?options.settings.delivery_interval,
        digest_interval = ?options.settings.digest_interval,
        "trail delivery"
    );
    let service = OpenTrail::open_with(&data_dir, credentials, options)
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    service.spawn_background_tasks();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(data_dir = %data_dir.display(), "OpenTrail is ready");
    println!("OpenTrail listening on http://{address}");
    opentrail_api::serve(listener, service, shutdown_signal()).await?;
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
