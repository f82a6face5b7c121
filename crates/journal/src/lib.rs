//! The journal: OpenTrail's single source of truth, an append-only, checksummed, segmented log
//! of opaque records.
//!
//! Producers call [`Journal::append`]; the returned future resolves only once every record of
//! the batch is on disk (`fdatasync`). One writer thread drains all waiting appends into one
//! write and one sync (group commit), so concurrency raises throughput instead of lowering it.
//! The queue in front of the writer is bounded in bytes: when it is full an append waits a short
//! while for room and then fails with [`JournalError::Overloaded`], so a burst the disk cannot
//! absorb costs callers a retry instead of costing the server its memory.
//!
//! A record's [`Position`] is its global byte offset: the segment whose base is the largest not
//! above it holds it, at `position - base` past the segment header. Positions never change and
//! are the consumers' durable cursors and the history index's pointers.
//!
//! Invariants:
//! - Readers only ever see records below the committed end, i.e. records already synced; the
//!   committed end never moves back.
//! - Positions are assigned in increasing order and never reused: after recovery cuts a torn
//!   tail, the next segment starts past every cut byte, and the cut bytes read as an empty gap.
//! - Every frame lies wholly inside its segment (`base + len <= next base`).
//! - Recovery cuts only a torn tail: bad bytes at the end of the active segment with no intact
//!   frame after them. A bad frame with intact frames after it (in any segment) is damage: the
//!   exact damaged bytes are recorded as a [`DamagedRange`] (persisted, logged at every start,
//!   readable through [`Journal::damage`]) and readers step over them; nothing intact is lost.
//! - Damage is found by the same scan everywhere: at open (active segment), by a background
//!   scrub (sealed segments), and by any reader that meets a bad frame.
//! - Retention removes whole segments only, and never the active one.

mod local;
mod segment;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

pub use local::{CheckReport, LocalJournal, LocalJournalOptions, SegmentCheck, check_journal};
pub use segment::segment_file_name;
use tokio::sync::watch;

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
    #[error("the journal's append queue is full; retry later")]
    Overloaded,
    #[error("the record at position {position} lies in a damaged journal range")]
    Damaged { position: Position },
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
pub type AppendReceipt = Pin<Box<dyn Future<Output = Result<Vec<Position>, JournalError>> + Send>>;

/// Bytes of the journal that hold no intact frame and that readers step over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    /// The base position of the segment holding the range.
    pub segment: Position,
    /// The first damaged position (global byte offset).
    pub position: Position,
    /// How many bytes are skipped.
    pub length: u64,
}

impl DamagedRange {
    pub fn end(&self) -> Position {
        self.position + self.length
    }
}

/// What an operator needs to know about journal damage at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DamageSummary {
    pub ranges: usize,
    pub bytes: u64,
    /// Whether every sealed segment has been verified since the journal was opened.
    pub fully_verified: bool,
}

/// The journal seam: local segment files now, a replicated log (NATS JetStream) later.
pub trait Journal: Send + Sync + 'static {
    /// Queues a batch; the receipt resolves after the whole batch is durable, or with
    /// [`JournalError::Overloaded`] when the queue stays full.
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

    /// The known damaged ranges, in position order.
    fn damage(&self) -> Vec<DamagedRange> {
        Vec::new()
    }

    /// Counts of [`Journal::damage`].
    fn damage_summary(&self) -> DamageSummary {
        let ranges = self.damage();
        DamageSummary { ranges: ranges.len(), bytes: ranges.iter().map(|r| r.length).sum(), fully_verified: true }
    }
}
