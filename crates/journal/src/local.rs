//! The journal on local segment files, with a group-commit writer thread.
//!
//! Damage handling: every scan of frames (recovery of the active segment at open, the
//! background scrub of sealed segments, a reader that meets a bad frame, `check_journal`) is
//! [`segment::scan`]. Known damaged ranges live in `DAMAGE` in the journal directory, rewritten
//! atomically whenever a range is found, so they are reported at every start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, oneshot, watch};

use crate::segment::{self, Decoded, FRAME_OVERHEAD, HEADER, HEADER_LEN, Tail};
use crate::{
    AppendReceipt, DamageSummary, DamagedRange, Entry, Journal, JournalError, MAX_RECORD_BYTES, Position, ReadBatch,
};

const DAMAGE_FILE: &str = "DAMAGE";

#[derive(Debug, Clone)]
pub struct LocalJournalOptions {
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// The most bytes one group commit gathers before it writes and syncs.
    pub max_batch_bytes: usize,
    /// The most record bytes queued for the writer; beyond it appends wait for room.
    pub queue_bytes: usize,
    /// How long an append waits for room in a full queue before failing `Overloaded`.
    pub queue_wait: Duration,
    /// Verify sealed segments in a background thread after open.
    pub scrub: bool,
}

impl Default for LocalJournalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            max_batch_bytes: 8 * 1024 * 1024,
            queue_bytes: 64 * 1024 * 1024,
            queue_wait: Duration::from_secs(1),
            scrub: true,
        }
    }
}

impl LocalJournalOptions {
    /// The defaults, with the queue bound from `OPENTRAIL_JOURNAL_QUEUE_BYTES`, the wait for
    /// room from `OPENTRAIL_JOURNAL_QUEUE_WAIT_MS` and the segment size from
    /// `OPENTRAIL_JOURNAL_SEGMENT_BYTES` when they are set (a value that does not parse is
    /// reported and the default kept).
    pub fn from_env() -> Self {
        let mut options = Self::default();
        let read = |name: &str| {
            let value = std::env::var(name).ok()?;
            match value.parse::<u64>() {
                Ok(number) => Some(number),
                Err(_) => {
                    tracing::error!(variable = name, value, "not a number of bytes/milliseconds; using the default");
                    None
                }
            }
        };
        if let Some(bytes) = read("OPENTRAIL_JOURNAL_QUEUE_BYTES") {
            options.queue_bytes = bytes.max(1) as usize;
        }
        if let Some(ms) = read("OPENTRAIL_JOURNAL_QUEUE_WAIT_MS") {
            options.queue_wait = Duration::from_millis(ms);
        }
        if let Some(bytes) = read("OPENTRAIL_JOURNAL_SEGMENT_BYTES") {
            options.segment_bytes = bytes.max(1);
        }
        options
    }
}

struct AppendRequest {
    records: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<Position>, JournalError>>,
    /// Queue room held until the records are written: memory is bounded by what is queued.
    _room: OwnedSemaphorePermit,
}

/// One stored segment. `end` is where its frame bytes end: for a sealed segment the data it
/// holds (a segment cut after a torn tail ends before the next base: the rest is an empty gap),
/// for the active segment `Position::MAX` (the committed end applies).
#[derive(Debug, Clone, Copy)]
struct SegmentMeta {
    base: Position,
    end: Position,
}

/// Where a position's segment lies: readable bytes are `[base, end)`, the next segment (or the
/// committed end) starts at `next`.
#[derive(Debug, Clone, Copy)]
struct Located {
    base: Position,
    end: Position,
    next: Position,
}

#[derive(Default)]
struct DamageState {
    ranges: BTreeMap<Position, DamagedRange>,
    /// Positions a rescan found no damage at: a caller's bad position, not worth a rescan again.
    not_damaged: HashSet<Position>,
}

/// State shared by the writer thread, the scrub thread and readers.
struct Shared {
    dir: PathBuf,
    /// The stored segments, ascending by base; the last one is the active segment.
    segments: RwLock<Vec<SegmentMeta>>,
    read_handles: Mutex<HashMap<Position, Arc<File>>>,
    committed: watch::Sender<Position>,
    stopped: AtomicBool,
    damage: Mutex<DamageState>,
    /// One scan at a time: a reader and the scrub meeting the same damage do the work once.
    scanning: Mutex<()>,
    scrub_done: AtomicBool,
    closing: AtomicBool,
    /// Held for the journal's lifetime: one process owns a journal directory.
    _lock: File,
}

pub struct LocalJournal {
    shared: Arc<Shared>,
    requests: Arc<Mutex<Option<mpsc::Sender<AppendRequest>>>>,
    queue: Arc<Semaphore>,
    queue_bytes: u32,
    queue_wait: Duration,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    scrubber: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    fs::create_dir_all(dir).map_err(JournalError::io(dir))?;
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(JournalError::io(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(JournalError::Locked(dir.to_path_buf()));
    }
    Ok(lock)
}

impl LocalJournal {
    /// Opens (or creates) the journal in `dir`, recovering from any crash first. Only the
    /// active segment is read now; sealed segments are verified in the background.
    pub fn open(dir: impl Into<PathBuf>, options: LocalJournalOptions) -> Result<Self, JournalError> {
        let dir = dir.into();
        let lock = lock_dir(&dir)?;

        let mut bases = list_segments(&dir)?;
        if bases.is_empty() {
            create_segment(&dir, 0)?;
            bases.push(0);
        }
        let mut segments = sealed_metas(&dir, &bases)?;
        let mut ranges = load_damage(&dir, &bases);
        let active_base = *bases.last().expect("at least one segment");
        let active_path = segment::segment_path(&dir, active_base);
        let mut active =
            OpenOptions::new().read(true).write(true).open(&active_path).map_err(JournalError::io(&active_path))?;
        // More than one group commit writes: a device that loses acknowledged bytes loses at most
        // that much past the cut, which consumers may have read.
        let torn_gap = 2 * options.max_batch_bytes as u64 + MAX_RECORD_BYTES as u64 + FRAME_OVERHEAD;
        let recovered = recover_active_segment(&active, &active_path, torn_gap)?;
        let mut changed = false;
        for (offset, length) in &recovered.damaged {
            changed |= merge_range(
                &mut ranges,
                DamagedRange { segment: active_base, position: active_base + offset, length: *length },
            );
        }
        let (mut base, mut end) = (active_base, active_base + recovered.frames_end);
        if let Some(cut_through) = recovered.cut_through {
            // Positions past the cut may have been seen (a damaged last frame looks like a torn
            // one, and a device may lose acknowledged bytes): the next segment starts past the
            // old file end and past the most one group commit can write, and the cut is a gap.
            segments.push(SegmentMeta { base: active_base, end });
            base = active_base + cut_through;
            // The next segment exists (durably) before the cut: a crash in between leaves the
            // torn bytes in a sealed segment, reported as damage, and positions past them.
            let next = create_segment(&dir, base)?;
            active.set_len(HEADER_LEN + end - active_base).map_err(JournalError::io(&active_path))?;
            active.sync_all().map_err(JournalError::io(&active_path))?;
            active = next;
            end = base;
        }
        segments.push(SegmentMeta { base, end: Position::MAX });
        if changed {
            persist_damage(&dir, &ranges)?;
        }
        report_damage_at_start(&dir, &ranges);

        let (committed, _) = watch::channel(end);
        let shared = Arc::new(Shared {
            dir,
            segments: RwLock::new(segments),
            read_handles: Mutex::new(HashMap::new()),
            committed,
            stopped: AtomicBool::new(false),
            damage: Mutex::new(DamageState { ranges, not_damaged: HashSet::new() }),
            scanning: Mutex::new(()),
            scrub_done: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            _lock: lock,
        });
        let queue_bytes = options.queue_bytes.clamp(1, u32::MAX as usize) as u32;
        let queue_wait = options.queue_wait;
        let scrub = options.scrub;
        let (sender, receiver) = mpsc::channel();
        let writer = Writer { shared: shared.clone(), options, file: active, base, end };
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(JournalError::io(&active_path))?;
        let scrubber = if scrub {
            let shared = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("journal-scrub".into())
                    .spawn(move || shared.scrub())
                    .map_err(JournalError::io(&active_path))?,
            )
        } else {
            None
        };
        Ok(Self {
            shared,
            requests: Arc::new(Mutex::new(Some(sender))),
            queue: Arc::new(Semaphore::new(queue_bytes as usize)),
            queue_bytes,
            queue_wait,
            writer: Mutex::new(Some(handle)),
            scrubber: Mutex::new(scrubber),
        })
    }

    /// Stops the writer after it has finished every queued append, and the scrub.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.requests.lock().expect("lock").take();
        if let Some(handle) = self.writer.lock().expect("lock").take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.scrubber.lock().expect("lock").take() {
            let _ = handle.join();
        }
    }

    /// Verifies every sealed segment now (the scrub's work, synchronously). Returns the
    /// damaged ranges known afterwards.
    pub fn verify_all(&self) -> Result<Vec<DamagedRange>, JournalError> {
        let bases: Vec<Position> = self.shared.segments.read().expect("lock").iter().map(|s| s.base).collect();
        for base in bases {
            self.shared.verify_segment(base)?;
        }
        Ok(self.damage())
    }
}

impl Shared {
    fn read_handle(&self, base: Position) -> Result<Arc<File>, JournalError> {
        let mut handles = self.read_handles.lock().expect("lock");
        if let Some(file) = handles.get(&base) {
            return Ok(file.clone());
        }
        let path = segment::segment_path(&self.dir, base);
        let file = Arc::new(File::open(&path).map_err(JournalError::io(&path))?);
        handles.insert(base, file.clone());
        Ok(file)
    }

    fn locate(&self, position: Position, committed: Position) -> Option<Located> {
        let segments = self.segments.read().expect("lock");
        let index = segments.partition_point(|s| s.base <= position).checked_sub(1)?;
        let located = match segments.get(index + 1) {
            Some(next) => {
                Located { base: segments[index].base, end: segments[index].end.min(next.base), next: next.base }
            }
            None => Located { base: segments[index].base, end: committed, next: committed },
        };
        debug_assert!(located.base <= located.end && located.end <= located.next, "segment bounds are ordered");
        Some(located)
    }

    /// The damaged range holding `position`, if one does.
    fn damaged_at(&self, position: Position) -> Option<DamagedRange> {
        let damage = self.damage.lock().expect("lock");
        let (_, range) = damage.ranges.range(..=position).next_back()?;
        (position < range.end()).then(|| range.clone())
    }

    /// The first damaged position after `position` (reads must stop there).
    fn next_damage_after(&self, position: Position) -> Position {
        let damage = self.damage.lock().expect("lock");
        damage.ranges.range(position + 1..).next().map_or(Position::MAX, |(start, _)| *start)
    }

    /// Scans a whole segment (the active one up to the committed end) and records any damage.
    fn verify_segment(&self, base: Position) -> Result<(), JournalError> {
        let _one_scan = self.scanning.lock().expect("lock");
        let committed = *self.committed.borrow();
        let Some(located) = self.locate(base, committed) else { return Ok(()) };
        if located.base != base {
            return Ok(()); // Dropped by retention meanwhile.
        }
        let file = self.read_handle(base)?;
        let path = segment::segment_path(&self.dir, base);
        if !segment::header_ok(&file) {
            tracing::warn!(segment = %path.display(), "journal segment header is damaged (records are unaffected)");
        }
        let limit = (located.end - base).min(segment::data_len(&file, &path)?);
        let scan = segment::scan(&file, &path, limit, Tail::Damaged)?;
        let found = scan.damaged.iter().map(|&(offset, length)| DamagedRange {
            segment: base,
            position: base + offset,
            length,
        });
        self.record_damage(found.collect())
    }

    fn record_damage(&self, found: Vec<DamagedRange>) -> Result<(), JournalError> {
        let mut damage = self.damage.lock().expect("lock");
        let mut changed = false;
        for range in found {
            if merge_range(&mut damage.ranges, range.clone()) {
                changed = true;
                tracing::warn!(
                    segment = %segment::segment_path(&self.dir, range.segment).display(),
                    offset = range.position - range.segment,
                    length = range.length,
                    position = range.position,
                    "journal damage found: these bytes hold no intact record and are skipped"
                );
            }
        }
        if changed {
            persist_damage(&self.dir, &damage.ranges)?;
        }
        Ok(())
    }

    /// A reader met a bad frame at `position`: find the damage with the same scan as
    /// everywhere else. Returns the range holding `position`, or `None` if `position` is not
    /// damaged (then it is not where a frame starts).
    fn bad_frame_at(&self, located: Located, position: Position) -> Result<Option<DamagedRange>, JournalError> {
        if let Some(range) = self.damaged_at(position) {
            return Ok(Some(range));
        }
        if self.damage.lock().expect("lock").not_damaged.contains(&position) {
            return Ok(None);
        }
        self.verify_segment(located.base)?;
        let range = self.damaged_at(position);
        if range.is_none() {
            let mut damage = self.damage.lock().expect("lock");
            if damage.not_damaged.len() > 10_000 {
                damage.not_damaged.clear();
            }
            damage.not_damaged.insert(position);
        }
        Ok(range)
    }

    /// The background scrub: every sealed segment once, oldest first, pausing between
    /// segments so foreground reads and appends keep the disk.
    fn scrub(&self) {
        let sealed: Vec<Position> = {
            let segments = self.segments.read().expect("lock");
            segments[..segments.len() - 1].iter().map(|s| s.base).collect()
        };
        for base in sealed {
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            if let Err(error) = self.verify_segment(base) {
                tracing::error!(%error, "journal scrub could not read a segment");
            }
            for _ in 0..10 {
                if self.closing.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.scrub_done.store(true, Ordering::Release);
        let damage = self.damage.lock().expect("lock");
        tracing::info!(damaged_ranges = damage.ranges.len(), "journal scrub verified every sealed segment");
    }
}

impl Drop for LocalJournal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Hands a batch to the writer thread; the receiver resolves once it is durable.
fn enqueue(
    requests: &Mutex<Option<mpsc::Sender<AppendRequest>>>,
    records: Vec<Vec<u8>>,
    room: OwnedSemaphorePermit,
) -> oneshot::Receiver<Result<Vec<Position>, JournalError>> {
    let (reply, receipt) = oneshot::channel();
    let request = AppendRequest { records, reply, _room: room };
    let requests = requests.lock().expect("lock");
    match requests.as_ref() {
        Some(sender) => {
            if let Err(mpsc::SendError(request)) = sender.send(request) {
                let _ = request.reply.send(Err(JournalError::Stopped));
            }
        }
        None => {
            let _ = request.reply.send(Err(JournalError::Stopped));
        }
    }
    receipt
}

async fn durable(
    receipt: oneshot::Receiver<Result<Vec<Position>, JournalError>>,
) -> Result<Vec<Position>, JournalError> {
    receipt.await.unwrap_or(Err(JournalError::Stopped))
}

impl Journal for LocalJournal {
    fn append(&self, records: Vec<Vec<u8>>) -> AppendReceipt {
        if let Some(too_large) = records.iter().find(|r| r.len() > MAX_RECORD_BYTES) {
            return Box::pin(std::future::ready(Err(JournalError::RecordTooLarge(too_large.len()))));
        }
        if self.shared.stopped.load(Ordering::Acquire) {
            return Box::pin(std::future::ready(Err(JournalError::Stopped)));
        }
        // A batch larger than the whole queue takes all of it rather than waiting forever.
        let bytes: usize = records.iter().map(|r| r.len() + FRAME_OVERHEAD as usize).sum();
        let room = bytes.min(self.queue_bytes as usize) as u32;
        match self.queue.clone().try_acquire_many_owned(room) {
            // The common case queues right now, so appends keep their call order.
            Ok(permit) => Box::pin(durable(enqueue(&self.requests, records, permit))),
            Err(TryAcquireError::Closed) => Box::pin(std::future::ready(Err(JournalError::Stopped))),
            Err(TryAcquireError::NoPermits) => {
                // The wait is counted from the call, however late the future is first polled.
                let deadline = tokio::time::Instant::now() + self.queue_wait;
                let (queue, requests) = (self.queue.clone(), self.requests.clone());
                Box::pin(async move {
                    let permit = match tokio::time::timeout_at(deadline, queue.acquire_many_owned(room)).await {
                        Ok(Ok(permit)) => permit,
                        Ok(Err(_closed)) => return Err(JournalError::Stopped),
                        Err(_elapsed) => return Err(JournalError::Overloaded),
                    };
                    durable(enqueue(&requests, records, permit)).await
                })
            }
        }
    }

    fn read_from(&self, from: Position, max_bytes: usize) -> Result<ReadBatch, JournalError> {
        let shared = &self.shared;
        let committed = self.committed_end();
        let max_bytes = max_bytes.max(FRAME_OVERHEAD as usize) as u64;
        let mut position = from.max(self.start());
        loop {
            let empty = ReadBatch { entries: Vec::new(), next: position };
            if position >= committed {
                return Ok(empty);
            }
            let Some(located) = shared.locate(position, committed) else { return Ok(empty) };
            if position >= located.end {
                // At the seam between segments, or in the gap a cut torn tail left.
                position = located.next;
                continue;
            }
            if let Some(range) = shared.damaged_at(position) {
                position = range.end();
                continue;
            }
            // Never read into a known damaged range: stop where it starts.
            let stop = located.end.min(shared.next_damage_after(position));
            let file = shared.read_handle(located.base)?;
            let path = segment::segment_path(&shared.dir, located.base);
            let mut want = (stop - position).min(max_bytes);
            let mut entries = Vec::new();
            let consumed = loop {
                let mut buf = vec![0u8; want as usize];
                file.read_exact_at(&mut buf, HEADER_LEN + position - located.base).map_err(JournalError::io(&path))?;
                let mut consumed = 0usize;
                let bad = loop {
                    match segment::decode_frame(&buf[consumed..]) {
                        Decoded::Frame { payload, len } => {
                            entries.push(Entry { position: position + consumed as u64, payload: payload.to_vec() });
                            consumed += len as usize;
                        }
                        Decoded::Incomplete { needed } => {
                            let frame_end = position + consumed as u64 + needed;
                            break (consumed == 0 && frame_end > stop).then_some("frame runs past the segment's end");
                        }
                        Decoded::Corrupt(why) => break Some(why),
                    }
                };
                if consumed > 0 || bad.is_some() {
                    break (consumed, bad);
                }
                // One frame larger than max_bytes: read exactly that frame.
                let Decoded::Incomplete { needed } = segment::decode_frame(&buf) else { unreachable!() };
                want = needed;
            };
            match consumed {
                (0, Some(why)) => match shared.bad_frame_at(located, position)? {
                    Some(range) => position = range.end(),
                    // Not damage: the caller's position is not where a frame starts.
                    None => return Err(JournalError::Corrupt { position, why }),
                },
                (consumed, _) => {
                    let next = position + consumed as u64;
                    debug_assert!(next <= located.end, "frames lie within their segment");
                    debug_assert!(entries.windows(2).all(|w| w[0].position < w[1].position));
                    return Ok(ReadBatch { entries, next });
                }
            }
        }
    }

    fn read_at(&self, position: Position) -> Result<Vec<u8>, JournalError> {
        let shared = &self.shared;
        let committed = self.committed_end();
        if position >= committed || position < self.start() {
            return Err(JournalError::NoSuchPosition(position));
        }
        let located = shared.locate(position, committed).ok_or(JournalError::NoSuchPosition(position))?;
        if position >= located.end {
            return Err(JournalError::NoSuchPosition(position));
        }
        if shared.damaged_at(position).is_some() {
            return Err(JournalError::Damaged { position });
        }
        let file = shared.read_handle(located.base)?;
        let path = segment::segment_path(&shared.dir, located.base);
        if position + FRAME_OVERHEAD <= located.end {
            let mut head = [0u8; FRAME_OVERHEAD as usize];
            file.read_exact_at(&mut head, HEADER_LEN + position - located.base).map_err(JournalError::io(&path))?;
            let len = u64::from(u32::from_le_bytes(head[0..4].try_into().expect("four bytes")));
            if len as usize <= MAX_RECORD_BYTES && position + FRAME_OVERHEAD + len <= located.end {
                let mut frame = vec![0u8; (FRAME_OVERHEAD + len) as usize];
                file.read_exact_at(&mut frame, HEADER_LEN + position - located.base)
                    .map_err(JournalError::io(&path))?;
                if let Decoded::Frame { payload, .. } = segment::decode_frame(&frame) {
                    return Ok(payload.to_vec());
                }
            }
        }
        match shared.bad_frame_at(located, position)? {
            Some(_) => Err(JournalError::Damaged { position }),
            None => Err(JournalError::NoSuchPosition(position)),
        }
    }

    fn start(&self) -> Position {
        self.shared.segments.read().expect("lock").first().map_or(0, |s| s.base)
    }

    fn committed_end(&self) -> Position {
        *self.shared.committed.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.shared.committed.subscribe()
    }

    fn drop_segments_before(&self, keep_from: Position, older_than: SystemTime) -> Result<usize, JournalError> {
        let mut segments = self.shared.segments.write().expect("lock");
        let mut removed = 0;
        while segments.len() > 1 {
            let (base, end) = (segments[0].base, segments[1].base);
            let path = segment::segment_path(&self.shared.dir, base);
            let modified = fs::metadata(&path).and_then(|m| m.modified()).map_err(JournalError::io(&path))?;
            if end > keep_from || modified >= older_than {
                break;
            }
            fs::remove_file(&path).map_err(JournalError::io(&path))?;
            self.shared.read_handles.lock().expect("lock").remove(&base);
            segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.shared.dir)?;
            tracing::info!(removed, "journal retention dropped segments");
            let start = segments[0].base;
            let mut damage = self.shared.damage.lock().expect("lock");
            let before = damage.ranges.len();
            damage.ranges.retain(|_, range| range.segment >= start);
            if damage.ranges.len() != before {
                persist_damage(&self.shared.dir, &damage.ranges)?;
            }
        }
        Ok(removed)
    }

    fn damage(&self) -> Vec<DamagedRange> {
        self.shared.damage.lock().expect("lock").ranges.values().cloned().collect()
    }

    fn damage_summary(&self) -> DamageSummary {
        let ranges = self.damage();
        DamageSummary {
            ranges: ranges.len(),
            bytes: ranges.iter().map(|r| r.length).sum(),
            fully_verified: self.shared.scrub_done.load(Ordering::Acquire),
        }
    }
}

/// The writer thread: owns the active segment and performs every write and sync.
struct Writer {
    shared: Arc<Shared>,
    options: LocalJournalOptions,
    file: File,
    base: Position,
    end: Position,
}

impl Writer {
    fn run(mut self, requests: mpsc::Receiver<AppendRequest>) {
        let mut buffer = Vec::with_capacity(self.options.max_batch_bytes);
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            let mut bytes: usize = batch[0].records.iter().map(Vec::len).sum();
            while bytes < self.options.max_batch_bytes {
                match requests.try_recv() {
                    Ok(request) => {
                        bytes += request.records.iter().map(Vec::len).sum::<usize>();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            if let Err(error) = self.commit(&mut batch, &mut buffer) {
                tracing::error!(%error, "journal write failed; the journal stops accepting appends");
                self.shared.stopped.store(true, Ordering::Release);
                for request in batch {
                    let _ = request.reply.send(Err(JournalError::Stopped));
                }
                for request in requests.try_iter() {
                    let _ = request.reply.send(Err(JournalError::Stopped));
                }
                return;
            }
        }
    }

    /// Writes and syncs one group, then answers every request in it.
    fn commit(&mut self, batch: &mut Vec<AppendRequest>, buffer: &mut Vec<u8>) -> Result<(), JournalError> {
        if self.end - self.base >= self.options.segment_bytes {
            self.roll()?;
        }
        buffer.clear();
        let mut positions = Vec::with_capacity(batch.len());
        for request in batch.iter() {
            let mut request_positions = Vec::with_capacity(request.records.len());
            for record in &request.records {
                request_positions.push(self.end + buffer.len() as u64);
                segment::encode_frame(record, buffer);
            }
            positions.push(request_positions);
        }
        let path = segment::segment_path(&self.shared.dir, self.base);
        self.file.write_all_at(buffer, HEADER_LEN + self.end - self.base).map_err(JournalError::io(&path))?;
        self.file.sync_data().map_err(JournalError::io(&path))?;
        let previous = *self.shared.committed.borrow();
        debug_assert!(previous <= self.end, "the committed end never moves back");
        debug_assert!(positions.iter().flatten().all(|&p| p >= previous), "positions are never reused");
        self.end += buffer.len() as u64;
        self.shared.committed.send_replace(self.end);
        for (request, positions) in batch.drain(..).zip(positions) {
            let _ = request.reply.send(Ok(positions));
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), JournalError> {
        let file = create_segment(&self.shared.dir, self.end)?;
        let mut segments = self.shared.segments.write().expect("lock");
        let active = segments.last_mut().expect("an active segment");
        debug_assert_eq!(active.base, self.base, "the writer owns the last segment");
        active.end = self.end;
        segments.push(SegmentMeta { base: self.end, end: Position::MAX });
        self.file = file;
        self.base = self.end;
        Ok(())
    }
}

fn list_segments(dir: &Path) -> Result<Vec<Position>, JournalError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(JournalError::io(dir))? {
        let entry = entry.map_err(JournalError::io(dir))?;
        if let Some(base) = entry.file_name().to_str().and_then(segment::parse_segment_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Metadata of every segment but the last (from file sizes: no frame is read).
fn sealed_metas(dir: &Path, bases: &[Position]) -> Result<Vec<SegmentMeta>, JournalError> {
    let mut metas = Vec::with_capacity(bases.len());
    for pair in bases.windows(2) {
        let path = segment::segment_path(dir, pair[0]);
        let size = fs::metadata(&path).map_err(JournalError::io(&path))?.len();
        let data = size.saturating_sub(HEADER_LEN);
        if pair[0] + data > pair[1] {
            tracing::warn!(segment = %path.display(), "journal segment is longer than its span; the excess is ignored");
        }
        metas.push(SegmentMeta { base: pair[0], end: (pair[0] + data).min(pair[1]) });
    }
    Ok(metas)
}

/// Creates a segment durably: header written and synced, directory entry synced.
fn create_segment(dir: &Path, base: Position) -> Result<File, JournalError> {
    let path = segment::segment_path(dir, base);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(JournalError::io(&path))?;
    file.write_all_at(HEADER, 0).map_err(JournalError::io(&path))?;
    file.sync_all().map_err(JournalError::io(&path))?;
    sync_dir(dir)?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(JournalError::io(dir))
}

/// What recovery of the active segment found.
struct Recovered {
    /// Where its intact frames end (data offset).
    frames_end: u64,
    /// Damaged `(offset, length)` ranges with intact frames after them.
    damaged: Vec<(u64, u64)>,
    /// A torn tail was cut: where the next segment starts (data offset), past every byte
    /// the file had and `torn_gap` past the cut.
    cut_through: Option<u64>,
}

/// Validates the active segment: records damage, cuts a torn tail (and nothing else).
fn recover_active_segment(file: &File, path: &Path, torn_gap: u64) -> Result<Recovered, JournalError> {
    let size = file.metadata().map_err(JournalError::io(path))?.len();
    if size < HEADER_LEN || (size == HEADER_LEN && !segment::header_ok(file)) {
        // A crash while the segment was being created: it holds no records yet.
        file.set_len(0).map_err(JournalError::io(path))?;
        file.write_all_at(HEADER, 0).map_err(JournalError::io(path))?;
        file.sync_all().map_err(JournalError::io(path))?;
        return Ok(Recovered { frames_end: 0, damaged: Vec::new(), cut_through: None });
    }
    if !segment::header_ok(file) {
        tracing::warn!(segment = %path.display(), "journal segment header is damaged (records are unaffected)");
    }
    let data = size - HEADER_LEN;
    let scan = segment::scan(file, path, data, Tail::Torn)?;
    let Some(torn_from) = scan.torn_from else {
        return Ok(Recovered { frames_end: data, damaged: scan.damaged, cut_through: None });
    };
    tracing::warn!(
        segment = %path.display(),
        offset = torn_from,
        torn_bytes = data - torn_from,
        "journal recovery cuts a torn tail (an append that never completed); appends continue in a new segment"
    );
    Ok(Recovered { frames_end: torn_from, damaged: scan.damaged, cut_through: Some(data.max(torn_from + torn_gap)) })
}

/// Adds a range, merged with any it overlaps or touches in the same segment. Returns whether
/// anything new was learnt.
fn merge_range(ranges: &mut BTreeMap<Position, DamagedRange>, mut range: DamagedRange) -> bool {
    debug_assert!(range.position >= range.segment && range.length > 0, "a range lies in its segment");
    let touching: Vec<Position> = ranges
        .values()
        .filter(|r| r.segment == range.segment && r.position <= range.end() && range.position <= r.end())
        .map(|r| r.position)
        .collect();
    if touching.len() == 1 {
        let existing = &ranges[&touching[0]];
        if existing.position <= range.position && range.end() <= existing.end() {
            return false;
        }
    }
    for start in touching {
        let existing = ranges.remove(&start).expect("listed");
        let end = existing.end().max(range.end());
        range.position = range.position.min(existing.position);
        range.length = end - range.position;
    }
    ranges.insert(range.position, range);
    true
}

/// Reads `DAMAGE`: one range a line, `segment position length`. Ranges of segments that are
/// gone (retention) are forgotten; a line that does not parse is reported and skipped.
fn load_damage(dir: &Path, bases: &[Position]) -> BTreeMap<Position, DamagedRange> {
    let path = dir.join(DAMAGE_FILE);
    let mut ranges = BTreeMap::new();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return ranges,
        Err(error) => {
            tracing::error!(file = %path.display(), %error, "cannot read the journal's damage list");
            return ranges;
        }
    };
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let fields: Vec<Option<u64>> = line.split_whitespace().map(|f| f.parse().ok()).collect();
        match fields[..] {
            [Some(segment), Some(position), Some(length)] if length > 0 && position >= segment => {
                if bases.binary_search(&segment).is_ok() {
                    merge_range(&mut ranges, DamagedRange { segment, position, length });
                }
            }
            _ => {
                tracing::error!(file = %path.display(), line, "skipping a malformed line of the journal's damage list")
            }
        }
    }
    ranges
}

/// Rewrites `DAMAGE` atomically: temporary file, fsync, rename, directory fsync.
fn persist_damage(dir: &Path, ranges: &BTreeMap<Position, DamagedRange>) -> Result<(), JournalError> {
    let mut text = String::from("# journal damaged ranges, skipped by readers: segment position length\n");
    for range in ranges.values() {
        text.push_str(&format!("{} {} {}\n", range.segment, range.position, range.length));
    }
    let temporary = dir.join(format!("{DAMAGE_FILE}.tmp"));
    let file = File::create(&temporary).map_err(JournalError::io(&temporary))?;
    file.write_all_at(text.as_bytes(), 0).map_err(JournalError::io(&temporary))?;
    file.sync_all().map_err(JournalError::io(&temporary))?;
    let path = dir.join(DAMAGE_FILE);
    fs::rename(&temporary, &path).map_err(JournalError::io(&path))?;
    sync_dir(dir)
}

fn report_damage_at_start(dir: &Path, ranges: &BTreeMap<Position, DamagedRange>) {
    if ranges.is_empty() {
        return;
    }
    for range in ranges.values() {
        tracing::warn!(
            segment = %segment::segment_path(dir, range.segment).display(),
            offset = range.position - range.segment,
            length = range.length,
            position = range.position,
            "journal damage: these bytes hold no intact record and are skipped"
        );
    }
    tracing::warn!(
        damaged_ranges = ranges.len(),
        damaged_bytes = ranges.values().map(|r| r.length).sum::<u64>(),
        "the journal has damaged ranges (see `opentrail journal check`)"
    );
}

/// What an offline check found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCheck {
    pub base: Position,
    pub frames: u64,
    pub header_ok: bool,
    pub damaged: Vec<DamagedRange>,
    /// Bytes of a torn tail at the end of the active segment (cut at the next start).
    pub torn_bytes: u64,
}

/// The offline check of a whole journal directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub segments: Vec<SegmentCheck>,
    /// The ranges recorded in `DAMAGE` (found earlier by the server).
    pub recorded: Vec<DamagedRange>,
}

impl CheckReport {
    /// Whether anything is damaged (a torn tail is not damage: it is an unfinished append).
    pub fn damaged(&self) -> bool {
        !self.recorded.is_empty() || self.segments.iter().any(|s| !s.header_ok || !s.damaged.is_empty())
    }
}

/// Scans every segment of the journal in `dir` without changing anything. Takes the journal's
/// lock, so it refuses to run while a server owns the journal.
pub fn check_journal(dir: &Path) -> Result<CheckReport, JournalError> {
    if !dir.is_dir() {
        return Err(JournalError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no journal here"),
        });
    }
    let _lock = lock_dir(dir)?;
    let bases = list_segments(dir)?;
    let mut report = CheckReport { recorded: load_damage(dir, &bases).into_values().collect(), ..Default::default() };
    for (index, &base) in bases.iter().enumerate() {
        let path = segment::segment_path(dir, base);
        let file = File::open(&path).map_err(JournalError::io(&path))?;
        let data = segment::data_len(&file, &path)?;
        let (limit, tail) = match bases.get(index + 1) {
            Some(&next) => (data.min(next - base), Tail::Damaged),
            None => (data, Tail::Torn),
        };
        let scan = segment::scan(&file, &path, limit, tail)?;
        report.segments.push(SegmentCheck {
            base,
            frames: scan.frames,
            header_ok: data == 0 || segment::header_ok(&file),
            damaged: scan
                .damaged
                .iter()
                .map(|&(offset, length)| DamagedRange { segment: base, position: base + offset, length })
                .collect(),
            torn_bytes: scan.torn_from.map_or(0, |from| limit - from),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn small_segments() -> LocalJournalOptions {
        LocalJournalOptions { segment_bytes: 256, max_batch_bytes: 1024, ..LocalJournalOptions::default() }
    }

    async fn append_all(journal: &LocalJournal, records: &[&str]) -> Vec<Position> {
        let batch = records.iter().map(|r| r.as_bytes().to_vec()).collect();
        journal.append(batch).await.unwrap()
    }

    fn read_everything(journal: &LocalJournal) -> Vec<Entry> {
        let mut all = Vec::new();
        let mut next = journal.start();
        loop {
            let batch = journal.read_from(next, 100).unwrap();
            if batch.entries.is_empty() {
                return all;
            }
            next = batch.next;
            all.extend(batch.entries);
        }
    }

    #[tokio::test]
    async fn appends_are_read_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::open(dir.path(), small_segments()).unwrap();
        let mut expected = Vec::new();
        for i in 0..50 {
            let record = format!("record number {i} with some padding to fill segments");
            let position = append_all(&journal, &[&record]).await[0];
            expected.push((position, record));
        }
        assert!(list_segments(dir.path()).unwrap().len() > 3, "segments should roll");
        let read = read_everything(&journal);
        assert_eq!(read.len(), 50);
        for (entry, (position, record)) in read.iter().zip(&expected) {
            assert_eq!(entry.position, *position);
            assert_eq!(entry.payload, record.as_bytes());
            assert_eq!(journal.read_at(*position).unwrap(), record.as_bytes());
        }
    }

    #[tokio::test]
    async fn reopen_keeps_everything_and_continues_positions() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let journal = LocalJournal::open(dir.path(), small_segments()).unwrap();
            append_all(&journal, &["a", "b", "c"]).await
        };
        let journal = LocalJournal::open(dir.path(), small_segments()).unwrap();
        let next = append_all(&journal, &["d"]).await;
        assert!(next[0] > first[2]);
        let payloads: Vec<_> = read_everything(&journal).into_iter().map(|e| e.payload).collect();
        assert_eq!(payloads, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_journal() {
        let dir = tempfile::tempdir().unwrap();
        let _journal = LocalJournal::open(dir.path(), small_segments()).unwrap();
        assert!(matches!(LocalJournal::open(dir.path(), small_segments()), Err(JournalError::Locked(_))));
    }

    /// Every way a crash can cut or garble the tail: recovery keeps exactly the whole frames.
    #[tokio::test]
    async fn torn_tails_are_truncated_and_nothing_before_them_is_lost() {
        for cut in 1..20u64 {
            let dir = tempfile::tempdir().unwrap();
            {
                let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
                append_all(&journal, &["first", "second", "third-record"]).await;
            }
            let path = segment::segment_path(dir.path(), 0);
            let size = fs::metadata(&path).unwrap().len();
            OpenOptions::new().write(true).open(&path).unwrap().set_len(size - cut).unwrap();
            let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
            let payloads: Vec<_> = read_everything(&journal).into_iter().map(|e| e.payload).collect();
            assert_eq!(payloads, vec![b"first".to_vec(), b"second".to_vec()], "cut {cut}");
            // New appends continue right after the last whole frame.
            append_all(&journal, &["fourth"]).await;
            assert_eq!(read_everything(&journal).len(), 3);
        }
    }

    #[tokio::test]
    async fn garbage_after_the_last_frame_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
            append_all(&journal, &["one", "two"]).await;
        }
        let path = segment::segment_path(dir.path(), 0);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[7, 0, 0, 0, 1, 2, 3, 4, b'x', b'y', b'z', b'w', b'v', b'u', b't']).unwrap();
        drop(file);
        let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
        assert_eq!(read_everything(&journal).len(), 2);
    }

    #[tokio::test]
    async fn a_half_created_segment_is_reinitialised() {
        let dir = tempfile::tempdir().unwrap();
        let positions = {
            let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
            append_all(&journal, &["one", "two"]).await
        };
        let end = positions[1] + FRAME_OVERHEAD + 3;
        File::create(segment::segment_path(dir.path(), end)).unwrap();
        let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
        append_all(&journal, &["three"]).await;
        let payloads: Vec<_> = read_everything(&journal).into_iter().map(|e| e.payload).collect();
        assert_eq!(payloads.len(), 3);
    }

    #[tokio::test]
    async fn concurrent_appends_are_all_durable_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(LocalJournal::open(dir.path(), small_segments()).unwrap());
        let mut tasks = Vec::new();
        for writer in 0..8 {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                let mut positions = Vec::new();
                for i in 0..25 {
                    let batch = vec![format!("w{writer}-{i}-a").into_bytes(), format!("w{writer}-{i}-b").into_bytes()];
                    positions.extend(journal.append(batch).await.unwrap());
                }
                positions
            }));
        }
        let mut positions = Vec::new();
        for task in tasks {
            positions.extend(task.await.unwrap());
        }
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), 400);
        assert_eq!(read_everything(&journal).len(), 400);
    }

    #[tokio::test]
    async fn oversize_records_are_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
        let result = journal.append(vec![vec![0; MAX_RECORD_BYTES + 1]]).await;
        assert!(matches!(result, Err(JournalError::RecordTooLarge(_))));
        assert_eq!(journal.committed_end(), 0);
    }

    #[tokio::test]
    async fn large_records_are_read_whole_even_with_a_small_read_size() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
        let big = vec![42u8; 100_000];
        append_all(&journal, &["small"]).await;
        journal.append(vec![big.clone()]).await.unwrap();
        let first = journal.read_from(0, 16).unwrap();
        assert_eq!(first.entries.len(), 1);
        let second = journal.read_from(first.next, 16).unwrap();
        assert_eq!(second.entries[0].payload, big);
    }

    #[tokio::test]
    async fn retention_drops_only_old_sealed_segments_below_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::open(dir.path(), small_segments()).unwrap();
        let mut positions = Vec::new();
        for i in 0..40 {
            positions.extend(append_all(&journal, &[&format!("retained record {i} padding padding")]).await);
        }
        let before = list_segments(dir.path()).unwrap().len();
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        // Nothing is old enough in the past: nothing goes.
        assert_eq!(journal.drop_segments_before(positions[20], SystemTime::UNIX_EPOCH).unwrap(), 0);
        let removed = journal.drop_segments_before(positions[20], future).unwrap();
        assert!(removed > 0 && removed < before);
        assert!(journal.start() <= positions[20]);
        let remaining = read_everything(&journal);
        assert!(remaining.iter().any(|e| e.position == positions[20]));
        assert_eq!(remaining.last().unwrap().position, positions[39]);
        // Reading from a dropped position continues at the new start.
        assert_eq!(journal.read_from(0, 64).unwrap().entries[0].position, journal.start());
    }

    fn no_scrub() -> LocalJournalOptions {
        LocalJournalOptions { scrub: false, ..LocalJournalOptions::default() }
    }

    /// XORs one byte of a segment's frame bytes.
    fn flip(dir: &Path, base: Position, offset: u64) {
        let file = OpenOptions::new().read(true).write(true).open(segment::segment_path(dir, base)).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, HEADER_LEN + offset).unwrap();
        file.write_all_at(&[byte[0] ^ 0x5A], HEADER_LEN + offset).unwrap();
    }

    fn records(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{{\"record\":{i},\"padding\":\"{}\"}}", "p".repeat(i % 37))).collect()
    }

    /// Appends `records` one call each; returns their positions.
    async fn append_each(journal: &LocalJournal, records: &[String]) -> Vec<Position> {
        let mut positions = Vec::new();
        for record in records {
            positions.extend(append_all(journal, &[record]).await);
        }
        positions
    }

    fn payload_set(entries: &[Entry]) -> Vec<(Position, Vec<u8>)> {
        entries.iter().map(|e| (e.position, e.payload.clone())).collect()
    }

    #[tokio::test]
    async fn a_flipped_byte_in_the_active_segment_costs_exactly_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let all = records(100);
        let positions = {
            let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
            append_each(&journal, &all).await
        };
        let victim = 50;
        flip(dir.path(), 0, positions[victim] + FRAME_OVERHEAD + 3);
        let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
        // Found at open, before anything reads it.
        let frame_len = positions[victim + 1] - positions[victim];
        assert_eq!(journal.damage(), vec![DamagedRange { segment: 0, position: positions[victim], length: frame_len }]);
        let expected: Vec<_> = positions
            .iter()
            .zip(&all)
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, (p, r))| (*p, r.as_bytes().to_vec()))
            .collect();
        assert_eq!(payload_set(&read_everything(&journal)), expected);
        assert!(matches!(journal.read_at(positions[victim]), Err(JournalError::Damaged { .. })));
        assert_eq!(journal.read_at(positions[victim + 1]).unwrap(), all[victim + 1].as_bytes());
        // Appends continue after the last (intact) frame: nothing was cut.
        let next = append_all(&journal, &["after"]).await[0];
        assert_eq!(next, *positions.last().unwrap() + FRAME_OVERHEAD + all.last().unwrap().len() as u64);
        // The damage is reported again at the next start, from the damage file.
        drop(journal);
        let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
        assert_eq!(journal.damage_summary().ranges, 1);
        assert_eq!(read_everything(&journal).len(), 100);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_a_sealed_segment_is_found_by_a_reader_and_by_the_scrub() {
        let options = LocalJournalOptions { segment_bytes: 2048, ..no_scrub() };
        let all = records(200);
        for found_by_scrub in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let positions = {
                let journal = LocalJournal::open(dir.path(), options.clone()).unwrap();
                append_each(&journal, &all).await
            };
            let bases = list_segments(dir.path()).unwrap();
            assert!(bases.len() > 3);
            // A record in the middle of the second segment.
            let victim = positions.iter().position(|&p| p > bases[1] + 1000).unwrap();
            flip(dir.path(), bases[1], positions[victim] - bases[1] + FRAME_OVERHEAD + 1);
            let scrub = LocalJournalOptions { scrub: found_by_scrub, ..options.clone() };
            let journal = LocalJournal::open(dir.path(), scrub).unwrap();
            // Opening did not read sealed segments.
            assert!(found_by_scrub || journal.damage().is_empty());
            if found_by_scrub {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while !journal.damage_summary().fully_verified {
                    assert!(std::time::Instant::now() < deadline, "the scrub finishes");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                assert_eq!(journal.damage().len(), 1);
            }
            let read = read_everything(&journal);
            assert_eq!(read.len(), 199, "every intact record is read");
            assert!(read.iter().all(|e| e.position != positions[victim]));
            let damage = journal.damage();
            assert_eq!(damage.len(), 1);
            assert_eq!((damage[0].segment, damage[0].position), (bases[1], positions[victim]));
            assert_eq!(damage[0].end(), positions[victim + 1]);
            drop(journal);
            let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
            assert_eq!(journal.damage(), damage, "persisted");
        }
    }

    #[tokio::test]
    async fn a_zeroed_page_costs_only_the_records_it_touches() {
        let dir = tempfile::tempdir().unwrap();
        let all = records(400);
        let positions = {
            let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
            append_each(&journal, &all).await
        };
        let page = 4096u64 * 2;
        let file = OpenOptions::new().write(true).open(segment::segment_path(dir.path(), 0)).unwrap();
        file.write_all_at(&[0u8; 4096], page).unwrap();
        let (page_start, page_end) = (page - HEADER_LEN, page - HEADER_LEN + 4096);
        let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
        let ends: Vec<Position> = positions.iter().skip(1).copied().chain([journal.committed_end()]).collect();
        let intact: Vec<_> = positions
            .iter()
            .zip(&ends)
            .zip(&all)
            .filter(|((start, end), _)| **end <= page_start || **start >= page_end)
            .map(|((start, _), record)| (*start, record.as_bytes().to_vec()))
            .collect();
        assert!(intact.len() < all.len() && intact.len() > all.len() - 100);
        assert_eq!(payload_set(&read_everything(&journal)), intact);
        let damage = journal.damage();
        assert_eq!(damage.len(), 1);
        let lost = all.len() - intact.len();
        let first_lost = positions.iter().zip(&ends).position(|(_, end)| *end > page_start).unwrap();
        assert_eq!(damage[0].position, positions[first_lost]);
        assert_eq!(damage[0].end(), positions[first_lost + lost]);
    }

    /// The last frame cut at every byte: a torn tail. Nothing before it is lost, nothing is
    /// reported as damage, and the cut positions are never handed out again.
    #[tokio::test]
    async fn the_last_frame_cut_at_every_offset_is_a_torn_tail_and_positions_are_not_reused() {
        let all = records(20);
        let last_len = FRAME_OVERHEAD + all[19].len() as u64;
        for keep in 0..last_len {
            let dir = tempfile::tempdir().unwrap();
            let positions = {
                let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
                append_each(&journal, &all).await
            };
            let path = segment::segment_path(dir.path(), 0);
            OpenOptions::new().write(true).open(&path).unwrap().set_len(HEADER_LEN + positions[19] + keep).unwrap();
            let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
            let read = read_everything(&journal);
            assert_eq!(read.len(), 19, "keep {keep}");
            assert!(journal.damage().is_empty(), "a torn tail is not damage");
            let next = append_all(&journal, &["after the cut"]).await[0];
            // The whole lost frame may have been read by a consumer before the crash.
            assert!(keep == 0 && next == positions[19] || next >= positions[19] + last_len, "keep {keep}");
            assert!(matches!(journal.read_at(positions[19]), Err(JournalError::NoSuchPosition(_))) || keep == 0);
            let read = read_everything(&journal);
            assert_eq!(read.len(), 20);
            assert_eq!(read.last().unwrap().position, next);
            // A cursor in the gap continues at the new record.
            if keep > 0 {
                assert_eq!(journal.read_from(positions[19], 1 << 20).unwrap().entries[0].position, next);
            }
            drop(journal);
            let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
            assert_eq!(read_everything(&journal).len(), 20, "keep {keep}: reopening keeps the gap");
            assert!(journal.verify_all().unwrap().is_empty(), "keep {keep}");
        }
    }

    /// A flipped byte in the last frame looks like a torn tail: it is cut, and because a
    /// consumer may have seen it, the next record takes a position past every cut byte.
    #[tokio::test]
    async fn a_damaged_last_frame_is_cut_and_its_position_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (positions, end) = {
            let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
            let positions = append_each(&journal, &records(5)).await;
            (positions, journal.committed_end())
        };
        flip(dir.path(), 0, positions[4] + FRAME_OVERHEAD);
        let journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
        assert_eq!(read_everything(&journal).len(), 4);
        let next = append_all(&journal, &["new"]).await[0];
        assert!(next >= end + MAX_RECORD_BYTES as u64, "the next segment starts well past the old end");
        assert!(matches!(journal.read_at(positions[4]), Err(JournalError::NoSuchPosition(_))));
    }

    #[tokio::test]
    async fn check_journal_reports_damage_and_torn_tails_without_changing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let options = LocalJournalOptions { segment_bytes: 4096, ..no_scrub() };
        let positions = {
            let journal = LocalJournal::open(dir.path(), options).unwrap();
            append_each(&journal, &records(100)).await
        };
        assert!(!check_journal(dir.path()).unwrap().damaged());
        let bases = list_segments(dir.path()).unwrap();
        flip(dir.path(), bases[0], positions[3] + FRAME_OVERHEAD);
        let last = segment::segment_path(dir.path(), *bases.last().unwrap());
        let size = fs::metadata(&last).unwrap().len();
        OpenOptions::new().write(true).open(&last).unwrap().set_len(size - 3).unwrap();
        let report = check_journal(dir.path()).unwrap();
        assert!(report.damaged());
        assert_eq!(report.segments[0].damaged.len(), 1);
        assert_eq!(report.segments[0].damaged[0].position, positions[3]);
        assert!(report.segments.last().unwrap().torn_bytes > 0);
        assert_eq!(report.segments.iter().map(|s| s.frames).sum::<u64>(), 98);
        assert_eq!(fs::metadata(&last).unwrap().len(), size - 3, "the check changes nothing");
        let _journal = LocalJournal::open(dir.path(), no_scrub()).unwrap();
        assert!(matches!(check_journal(dir.path()), Err(JournalError::Locked(_))));
    }

    #[tokio::test]
    async fn a_full_queue_waits_for_room_then_fails_overloaded() {
        let dir = tempfile::tempdir().unwrap();
        let record = vec![7u8; 1 << 20];
        // Room for one record: everything queued behind it waits, and here never long enough.
        let options = LocalJournalOptions {
            queue_bytes: record.len() + FRAME_OVERHEAD as usize,
            queue_wait: std::time::Duration::ZERO,
            ..no_scrub()
        };
        let journal = LocalJournal::open(dir.path(), options).unwrap();
        // Polled at once, as callers awaiting them would (the first one keeps the writer busy).
        let receipts: Vec<_> = (0..20).map(|_| tokio::spawn(journal.append(vec![record.clone()]))).collect();
        let mut durable = Vec::new();
        let mut overloaded = 0;
        for receipt in receipts {
            match receipt.await.unwrap() {
                Ok(positions) => durable.extend(positions),
                Err(JournalError::Overloaded) => overloaded += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert!(overloaded > 0 && !durable.is_empty(), "{overloaded} overloaded");
        for position in &durable {
            assert_eq!(journal.read_at(*position).unwrap(), record);
        }
        drop(journal);

        // With time to wait, the same burst is absorbed.
        let dir = tempfile::tempdir().unwrap();
        let options = LocalJournalOptions {
            queue_bytes: record.len() + FRAME_OVERHEAD as usize,
            queue_wait: std::time::Duration::from_secs(30),
            ..no_scrub()
        };
        let journal = LocalJournal::open(dir.path(), options).unwrap();
        let receipts: Vec<_> = (0..20).map(|_| journal.append(vec![record.clone()])).collect();
        for receipt in receipts {
            receipt.await.unwrap();
        }
        assert_eq!(read_everything(&journal).len(), 20);
    }
}
