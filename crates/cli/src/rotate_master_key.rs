//! `opentrail rotate-master-key`: re-seals every digest signing key of a stopped server's data
//! directory under a new master key, in one transaction.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use opentrail_delivery::master_key::{DEFAULT_MASTER_KEY_FILE, MasterKey, MasterKeySource};

/// Re-seal the digest signing keys of a stopped server under a new master key.
#[derive(clap::Args, Debug)]
pub struct RotateMasterKeyArgs {
    /// The data directory of the (stopped) server.
    #[arg(long, default_value = "./opentrail-data")]
    pub data_dir: PathBuf,
    /// The new master key: a file holding base64 of 32 bytes, created with a fresh key (mode
    /// 0600) if it does not exist.
    #[arg(long)]
    pub new_key_file: PathBuf,
    /// The current master key file (default: OPENTRAIL_MASTER_KEY, else the file
    /// OPENTRAIL_MASTER_KEY_FILE names, else <data-dir>/master.key).
    #[arg(long)]
    pub old_key_file: Option<PathBuf>,
}

pub fn run(args: RotateMasterKeyArgs) -> Result<()> {
    let journal_lock = args.data_dir.join("journal").join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal_lock)
        .with_context(|| format!("{} is not the data directory of an OpenTrail server", args.data_dir.display()))?;
    // The server holds this lock while it runs; it would go on sealing with the old key.
    if lock.try_lock().is_err() {
        bail!("the server using {} is running: stop it before rotating the master key", args.data_dir.display());
    }
    let (old, source) = match &args.old_key_file {
        Some(path) => (MasterKey::read_file(path)?, MasterKeySource::File(path.clone())),
        None => MasterKey::resolve(&args.data_dir, true)?,
    };
    let new = if args.new_key_file.exists() {
        MasterKey::read_file(&args.new_key_file)?
    } else {
        let key = MasterKey::generate();
        key.write_new_file(&args.new_key_file)?;
        println!("wrote a new master key to {}", args.new_key_file.display());
        key
    };
    if new.to_base64() == old.to_base64() {
        bail!("the new master key is the current one");
    }
    let count = opentrail_delivery::keys::reseal_store_file(&args.data_dir.join("control.sqlite"), &old, &new)?;
    println!("re-sealed {count} digest signing keys under the new master key");
    let default_file = args.data_dir.join(DEFAULT_MASTER_KEY_FILE);
    if source == MasterKeySource::File(default_file.clone()) {
        // The server finds its key here by default: it must find the new one next time.
        new.replace_file(&default_file)?;
        println!("{} now holds the new master key", default_file.display());
    } else {
        println!(
            "start the server with OPENTRAIL_MASTER_KEY_FILE={} (or the key in OPENTRAIL_MASTER_KEY)",
            args.new_key_file.display()
        );
    }
    drop(lock);
    Ok(())
}
