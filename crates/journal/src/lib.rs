//! The journal: OpenTrail's single source of truth, an append-only, checksummed, segmented log
//! of opaque records.
//!
//! Producers call [`Journal::append`]; the returned receiver resolves only once every record of
//! the batch is on disk (`fdatasync`). One writer thread drains all waiting appends into one
//! write and one sync (group commit), so concurrency raises throughput instead of lowering it.
//!
//! A record's [`Position`] is its global byte offset: the segment whose base is the largest not
//! above it holds it, at `position - base` past the segment header. Positions never change and
//! are the consumers' durable cursors and the history index's pointers.
//!
//! Invariants:
//! - Readers only ever see records below the committed end, i.e. records already synced.
//! - Recovery truncates a torn tail of the last segment and nothing else; a frame that fails
//!   its checksum anywhere before the tail is reported, never silently skipped.
//! - Retention removes whole segments only, and never the active one.

mod local;
mod segment;

use std::path::PathBuf;

pub use local::{LocalJournal, LocalJournalOptions};
use tokio::sync::{oneshot, watch};

/// A record's global byte offset in the journal.
pub type Position = u64;

/// The largest record the journal accepts (CloudTrail's own limit is 256 KB per event).
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("record of {0} bytes exceeds the journal's limit of {MAX_RECORD_BYTES} bytes")]
    RecordTooLarge(usize),
    #[error("corrupt journal frame at position {position}: {why}")]
    Corrupt { position: Position, why: &'static str },
    #[error("no record starts at position {0}")]
    NoSuchPosition(Position),
    #[error("the journal in {0} is locked by another process (is a server running?)")]
    Locked(PathBuf),
    #[error("the journal has stopped after an earlier write failure; restart to recover")]
    Stopped,
}

impl JournalError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// One record read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub position: Position,
    pub payload: Vec<u8>,
}

/// What one read returned, and where the next read continues.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub entries: Vec<Entry>,
    pub next: Position,
}

/// Resolves with the positions of an appended batch once it is durable.
pub type AppendReceipt = oneshot::Receiver<Result<Vec<Position>, JournalError>>;

/// The journal seam: local segment files now, a replicated log (NATS JetStream) later.
pub trait Journal: Send + Sync + 'static {
    /// Queues a batch; the receipt resolves after the whole batch is durable.
    fn append(&self, records: Vec<Vec<u8>>) -> AppendReceipt;

    /// Reads committed records starting at `from` (a position returned earlier, or the start),
    /// up to about `max_bytes`. Blocking file I/O: call from a blocking context.
    fn read_from(&self, from: Position, max_bytes: usize) -> Result<ReadBatch, JournalError>;

    /// Reads the one record that starts at `position`. Blocking file I/O.
    fn read_at(&self, position: Position) -> Result<Vec<u8>, JournalError>;

    /// The first position that is still stored (after retention).
    fn start(&self) -> Position;

    /// The end of the durable records: everything below it is committed.
    fn committed_end(&self) -> Position;

    /// Watches the committed end; wakes consumers when new records are durable.
    fn subscribe(&self) -> watch::Receiver<Position>;

    /// Deletes whole segments that end at or before `keep_from` and whose last write is older
    /// than `older_than`. Returns how many segments were removed.
    fn drop_segments_before(
        &self,
        keep_from: Position,
        older_than: std::time::SystemTime,
    ) -> Result<usize, JournalError>;
}
