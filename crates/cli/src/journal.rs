//! `opentrail journal check|repair`: offline verification of a data directory's journal.
//!
//! Both take the journal's lock, so they refuse to run while a server owns the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use opentrail_journal::{
    CheckReport, DamagedRange, LocalJournal, LocalJournalOptions, check_journal, segment_file_name,
};

#[derive(clap::Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(clap::Subcommand)]
enum JournalCommand {
    /// Scan every segment and print damaged ranges and counts; exit 1 if anything is damaged.
    /// Changes nothing.
    Check {
        #[arg(long, default_value = "./opentrail-data")]
        data_dir: PathBuf,
    },
    /// Do now what the server does at start and in the background: cut a torn tail and record
    /// every damaged range so readers step over it. Never removes an intact record.
    Repair {
        #[arg(long, default_value = "./opentrail-data")]
        data_dir: PathBuf,
    },
}

/// Runs the subcommand; `Ok(false)` means damage was found (exit status 1).
pub fn run(args: JournalArgs) -> Result<bool> {
    match args.command {
        JournalCommand::Check { data_dir } => check(&data_dir.join("journal")),
        JournalCommand::Repair { data_dir } => repair(&data_dir.join("journal")),
    }
}

fn write_range(out: &mut impl Write, range: &DamagedRange) -> std::io::Result<()> {
    writeln!(
        out,
        "  damaged: segment {} offset {} length {} (positions {}..{})",
        segment_file_name(range.segment),
        range.position - range.segment,
        range.length,
        range.position,
        range.end()
    )
}

fn check(dir: &Path) -> Result<bool> {
    let report: CheckReport =
        check_journal(dir).with_context(|| format!("cannot check the journal in {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    let (mut records, mut ranges, mut bytes) = (0u64, 0usize, 0u64);
    for segment in &report.segments {
        records += segment.frames;
        writeln!(out, "{}: {} records", segment_file_name(segment.base), segment.frames)?;
        if !segment.header_ok {
            writeln!(out, "  damaged: segment header (records are unaffected)")?;
        }
        for range in &segment.damaged {
            write_range(&mut out, range)?;
            ranges += 1;
            bytes += range.length;
        }
        if segment.torn_bytes > 0 {
            writeln!(out, "  torn tail: {} bytes (an unfinished append; cut at the next start)", segment.torn_bytes)?;
        }
    }
    if !report.recorded.is_empty() {
        writeln!(out, "recorded earlier by the server ({} ranges):", report.recorded.len())?;
        for range in &report.recorded {
            write_range(&mut out, range)?;
        }
    }
    writeln!(
        out,
        "{} segments, {records} intact records, {ranges} damaged ranges ({bytes} bytes), {} recorded ranges",
        report.segments.len(),
        report.recorded.len()
    )?;
    out.flush()?;
    Ok(!report.damaged())
}

fn repair(dir: &Path) -> Result<bool> {
    if !dir.is_dir() {
        anyhow::bail!("no journal in {}", dir.display());
    }
    let options = LocalJournalOptions { scrub: false, ..LocalJournalOptions::default() };
    let journal =
        LocalJournal::open(dir, options).with_context(|| format!("cannot open the journal in {}", dir.display()))?;
    let damage = journal.verify_all().context("cannot verify the journal")?;
    journal.close();
    let mut out = std::io::stdout().lock();
    for range in &damage {
        write_range(&mut out, range)?;
    }
    writeln!(
        out,
        "{} damaged ranges ({} bytes) recorded; readers step over them, every intact record is kept",
        damage.len(),
        damage.iter().map(|r| r.length).sum::<u64>()
    )?;
    out.flush()?;
    Ok(true)
}
