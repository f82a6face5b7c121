//! The journal on local segment files, with a group-commit writer thread.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::SystemTime;

use tokio::sync::{oneshot, watch};

use crate::segment::{self, Decoded, FRAME_OVERHEAD, HEADER, HEADER_LEN};
use crate::{AppendReceipt, Entry, Journal, JournalError, MAX_RECORD_BYTES, Position, ReadBatch};

#[derive(Debug, Clone)]
pub struct LocalJournalOptions {
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// The most bytes one group commit gathers before it writes and syncs.
    pub max_batch_bytes: usize,
}

impl Default for LocalJournalOptions {
    fn default() -> Self {
        Self { segment_bytes: 64 * 1024 * 1024, max_batch_bytes: 8 * 1024 * 1024 }
    }
}

struct AppendRequest {
    records: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<Position>, JournalError>>,
}

/// State shared by the writer thread and readers.
struct Shared {
    dir: PathBuf,
    /// Bases of the stored segments, ascending; the last one is the active segment.
    segments: RwLock<Vec<Position>>,
    read_handles: Mutex<HashMap<Position, Arc<File>>>,
    committed: watch::Sender<Position>,
    stopped: AtomicBool,
    /// Held for the journal's lifetime: one process owns a journal directory.
    _lock: File,
}

pub struct LocalJournal {
    shared: Arc<Shared>,
    requests: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LocalJournal {
    /// Opens (or creates) the journal in `dir`, recovering from any crash first.
    pub fn open(dir: impl Into<PathBuf>, options: LocalJournalOptions) -> Result<Self, JournalError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(JournalError::io(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(JournalError::io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(JournalError::Locked(dir));
        }

        let mut bases = list_segments(&dir)?;
        if bases.is_empty() {
            create_segment(&dir, 0)?;
            bases.push(0);
        }
        let active_base = *bases.last().expect("at least one segment");
        let active_path = segment::segment_path(&dir, active_base);
        let active =
            OpenOptions::new().read(true).write(true).open(&active_path).map_err(JournalError::io(&active_path))?;
        let end = active_base + recover_active_segment(&active, &active_path)?;

        let (committed, _) = watch::channel(end);
        let shared = Arc::new(Shared {
            dir,
            segments: RwLock::new(bases),
            read_handles: Mutex::new(HashMap::new()),
            committed,
            stopped: AtomicBool::new(false),
            _lock: lock,
        });
        let (sender, receiver) = mpsc::channel();
        let writer = Writer { shared: shared.clone(), options, file: active, base: active_base, end };
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(JournalError::io(&active_path))?;
        Ok(Self { shared, requests: Mutex::new(Some(sender)), writer: Mutex::new(Some(handle)) })
    }

    /// Stops the writer after it has finished every queued append.
    pub fn close(&self) {
        self.requests.lock().expect("lock").take();
        if let Some(handle) = self.writer.lock().expect("lock").take() {
            let _ = handle.join();
        }
    }

    fn read_handle(&self, base: Position) -> Result<Arc<File>, JournalError> {
        let mut handles = self.shared.read_handles.lock().expect("lock");
        if let Some(file) = handles.get(&base) {
            return Ok(file.clone());
        }
        let path = segment::segment_path(&self.shared.dir, base);
        let file = Arc::new(File::open(&path).map_err(JournalError::io(&path))?);
        handles.insert(base, file.clone());
        Ok(file)
    }

    /// The segment holding `position` and where that segment's records end.
    fn locate(&self, position: Position, committed: Position) -> Option<(Position, Position)> {
        let segments = self.shared.segments.read().expect("lock");
        let index = segments.partition_point(|&base| base <= position).checked_sub(1)?;
        let end = segments.get(index + 1).copied().unwrap_or(committed);
        Some((segments[index], end))
    }
}

impl Drop for LocalJournal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Journal for LocalJournal {
    fn append(&self, records: Vec<Vec<u8>>) -> AppendReceipt {
        let (reply, receipt) = oneshot::channel();
        if let Some(too_large) = records.iter().find(|r| r.len() > MAX_RECORD_BYTES) {
            let _ = reply.send(Err(JournalError::RecordTooLarge(too_large.len())));
            return receipt;
        }
        if self.shared.stopped.load(Ordering::Acquire) {
            let _ = reply.send(Err(JournalError::Stopped));
            return receipt;
        }
        let requests = self.requests.lock().expect("lock");
        let request = AppendRequest { records, reply };
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

    fn read_from(&self, from: Position, max_bytes: usize) -> Result<ReadBatch, JournalError> {
        let committed = self.committed_end();
        let mut position = from.max(self.start());
        let mut batch = ReadBatch { entries: Vec::new(), next: position };
        if position >= committed {
            return Ok(batch);
        }
        let Some((mut base, mut segment_end)) = self.locate(position, committed) else {
            return Ok(batch);
        };
        if position >= segment_end {
            // At the seam between a sealed segment and the next one.
            (base, segment_end) = self.locate(segment_end, committed).ok_or(JournalError::NoSuchPosition(position))?;
            position = base;
        }
        let file = self.read_handle(base)?;
        let path = segment::segment_path(&self.shared.dir, base);
        let mut want = (segment_end - position).min(max_bytes.max(FRAME_OVERHEAD as usize) as u64) as usize;
        loop {
            let mut buf = vec![0u8; want];
            file.read_exact_at(&mut buf, HEADER_LEN + position - base).map_err(JournalError::io(&path))?;
            let mut consumed = 0usize;
            loop {
                match segment::decode_frame(&buf[consumed..]) {
                    Decoded::Frame { payload, len } => {
                        batch.entries.push(Entry { position: position + consumed as u64, payload: payload.to_vec() });
                        consumed += len as usize;
                    }
                    Decoded::Incomplete { needed } => {
                        if consumed == 0 {
                            // One frame larger than max_bytes: read exactly that frame.
                            if position + needed > segment_end {
                                return Err(JournalError::Corrupt { position, why: "frame runs past segment end" });
                            }
                            want = needed as usize;
                        }
                        break;
                    }
                    Decoded::Corrupt(why) => {
                        return Err(JournalError::Corrupt { position: position + consumed as u64, why });
                    }
                }
            }
            if consumed > 0 {
                batch.next = position + consumed as u64;
                return Ok(batch);
            }
        }
    }

    fn read_at(&self, position: Position) -> Result<Vec<u8>, JournalError> {
        let committed = self.committed_end();
        if position >= committed || position < self.start() {
            return Err(JournalError::NoSuchPosition(position));
        }
        let (base, segment_end) = self.locate(position, committed).ok_or(JournalError::NoSuchPosition(position))?;
        if position + FRAME_OVERHEAD > segment_end {
            return Err(JournalError::NoSuchPosition(position));
        }
        let file = self.read_handle(base)?;
        let path = segment::segment_path(&self.shared.dir, base);
        let mut head = [0u8; FRAME_OVERHEAD as usize];
        file.read_exact_at(&mut head, HEADER_LEN + position - base).map_err(JournalError::io(&path))?;
        let len = u32::from_le_bytes(head[0..4].try_into().expect("four bytes")) as u64;
        if len as usize > MAX_RECORD_BYTES || position + FRAME_OVERHEAD + len > segment_end {
            return Err(JournalError::NoSuchPosition(position));
        }
        let mut frame = vec![0u8; (FRAME_OVERHEAD + len) as usize];
        file.read_exact_at(&mut frame, HEADER_LEN + position - base).map_err(JournalError::io(&path))?;
        match segment::decode_frame(&frame) {
            Decoded::Frame { payload, .. } => Ok(payload.to_vec()),
            _ => Err(JournalError::NoSuchPosition(position)),
        }
    }

    fn start(&self) -> Position {
        self.shared.segments.read().expect("lock").first().copied().unwrap_or(0)
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
            let (base, end) = (segments[0], segments[1]);
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
        }
        Ok(removed)
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
        self.end += buffer.len() as u64;
        self.shared.committed.send_replace(self.end);
        for (request, positions) in batch.drain(..).zip(positions) {
            let _ = request.reply.send(Ok(positions));
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), JournalError> {
        let file = create_segment(&self.shared.dir, self.end)?;
        self.shared.segments.write().expect("lock").push(self.end);
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

/// Validates the active segment and cuts off a torn tail. Returns the valid frame bytes.
fn recover_active_segment(file: &File, path: &Path) -> Result<u64, JournalError> {
    let size = file.metadata().map_err(JournalError::io(path))?.len();
    let mut header = [0u8; HEADER_LEN as usize];
    let header_ok = size >= HEADER_LEN && file.read_exact_at(&mut header, 0).is_ok() && &header == HEADER;
    if !header_ok {
        if size > HEADER_LEN {
            return Err(JournalError::Corrupt { position: 0, why: "segment header is damaged" });
        }
        // A crash while the segment was being created: it holds no records yet.
        file.set_len(0).map_err(JournalError::io(path))?;
        file.write_all_at(HEADER, 0).map_err(JournalError::io(path))?;
        file.sync_all().map_err(JournalError::io(path))?;
        return Ok(0);
    }
    let valid = segment::scan_valid_prefix(file, path)?;
    if HEADER_LEN + valid < size {
        tracing::warn!(
            segment = %path.display(),
            torn_bytes = size - HEADER_LEN - valid,
            "journal recovery truncated a torn tail"
        );
        file.set_len(HEADER_LEN + valid).map_err(JournalError::io(path))?;
        file.sync_all().map_err(JournalError::io(path))?;
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn small_segments() -> LocalJournalOptions {
        LocalJournalOptions { segment_bytes: 256, max_batch_bytes: 1024 }
    }

    async fn append_all(journal: &LocalJournal, records: &[&str]) -> Vec<Position> {
        let batch = records.iter().map(|r| r.as_bytes().to_vec()).collect();
        journal.append(batch).await.unwrap().unwrap()
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
                    positions.extend(journal.append(batch).await.unwrap().unwrap());
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
        let result = journal.append(vec![vec![0; MAX_RECORD_BYTES + 1]]).await.unwrap();
        assert!(matches!(result, Err(JournalError::RecordTooLarge(_))));
        assert_eq!(journal.committed_end(), 0);
    }

    #[tokio::test]
    async fn large_records_are_read_whole_even_with_a_small_read_size() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::open(dir.path(), LocalJournalOptions::default()).unwrap();
        let big = vec![42u8; 100_000];
        append_all(&journal, &["small"]).await;
        journal.append(vec![big.clone()]).await.unwrap().unwrap();
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
}
