//! `opentrail import PATH --event-data-store ID`: imports a folder of CloudTrail log files (a
//! copied trail bucket, an organization trail's, or any pile of `.json.gz`) into an event data
//! store of a data directory, with a progress bar and a summary.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::times::parse_time;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The folder of log files (digests and other files in it are skipped).
    pub path: PathBuf,
    /// The event data store (ID or ARN).
    #[arg(long)]
    pub event_data_store: String,
    #[arg(long, default_value = "./opentrail-data")]
    pub data_dir: PathBuf,
    /// The server's config file, when its lake lives in a remote bucket (`[lake] bucket`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only events from this time on (RFC 3339, epoch seconds, or a time ago such as 30d).
    #[arg(long)]
    pub start_time: Option<String>,
    /// Only events up to this time.
    #[arg(long)]
    pub end_time: Option<String>,
}

pub async fn run(args: ImportArgs) -> Result<()> {
    let now = Utc::now();
    let start = args.start_time.as_deref().map(|t| parse_time(t, now)).transpose()?.map(|t| t.timestamp_millis());
    let end = args.end_time.as_deref().map(|t| parse_time(t, now)).transpose()?.map(|t| t.timestamp_millis());
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} files, {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let on_plan = |files: u64| bar.set_length(files);
    let on_progress = |import: &opentrail_model::lake::Import| {
        bar.set_position(import.statistics.files_completed);
        bar.set_message(format!("{} events", import.statistics.events_completed));
    };
    let options = match &args.config {
        Some(path) => opentrail_service::Config::load(path)?.service_options()?,
        None => opentrail_service::ServiceOptions::default(),
    };
    let started = std::time::Instant::now();
    let import = opentrail_service::import_local_folder(
        &args.data_dir,
        &options,
        &args.path,
        &args.event_data_store,
        (start, end),
        &on_plan,
        &on_progress,
    )
    .await
    .with_context(|| format!("cannot import {}", args.path.display()))?;
    bar.finish_and_clear();
    let statistics = &import.statistics;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "import {} {}: {} files, {} events ({:.0} events/s), {} of {} prefixes, {} failed entries",
        import.id,
        import.status.as_str(),
        statistics.files_completed,
        statistics.events_completed,
        statistics.events_completed as f64 / seconds.max(1e-9),
        statistics.prefixes_completed,
        statistics.prefixes_found,
        statistics.failed_entries,
    );
    for failure in import.failures.iter().take(20) {
        println!("  {}: {} ({})", failure.location, failure.error_message, failure.error_type);
    }
    Ok(())
}
