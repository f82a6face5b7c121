use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use opentrail_journal::{LocalJournal, LocalJournalOptions};

use super::*;
use crate::{Idle, RoundFuture, blocking};

/// A consumer as a real one is written: it reads from its cursor, "works", and moves the
/// cursor (held in memory here; the registry only sees what `cursors` reports). It can be told
/// to fail or panic for its next rounds, or to be unable to report its cursor.
struct Counting(Arc<Inner>);

struct Inner {
    name: &'static str,
    journal: Arc<dyn Journal>,
    cursor: AtomicU64,
    /// Records consumed, so a test can tell that every record was seen exactly once.
    consumed: AtomicU64,
    errors_left: AtomicU32,
    panics_left: AtomicU32,
    cursors_unreadable: AtomicBool,
}

impl std::ops::Deref for Counting {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Counting {
    fn new(name: &'static str, journal: Arc<dyn Journal>) -> Arc<Self> {
        Arc::new(Self(Arc::new(Inner {
            name,
            journal,
            cursor: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            errors_left: AtomicU32::new(0),
            panics_left: AtomicU32::new(0),
            cursors_unreadable: AtomicBool::new(false),
        })))
    }
}

impl Inner {
    /// One record per round, so a catch-up takes several rounds.
    fn step(&self) -> Result<Progress, ConsumerError> {
        if self.panics_left.load(Ordering::SeqCst) > 0 {
            self.panics_left.fetch_sub(1, Ordering::SeqCst);
            panic!("{} was told to panic", self.name);
        }
        if self.errors_left.load(Ordering::SeqCst) > 0 {
            self.errors_left.fetch_sub(1, Ordering::SeqCst);
            return Err(ConsumerError::new(std::io::Error::other("the disk is full")));
        }
        let batch = self.journal.read_from(self.cursor.load(Ordering::SeqCst), 1)?;
        self.consumed.fetch_add(batch.entries.len() as u64, Ordering::SeqCst);
        self.cursor.store(batch.next, Ordering::SeqCst);
        Ok(if batch.next < self.journal.committed_end() { Progress::More } else { Progress::Idle })
    }
}

impl Consumer for Counting {
    fn name(&self) -> &str {
        self.name
    }

    fn round(self: Arc<Self>) -> RoundFuture {
        let inner = self.0.clone();
        // Through `blocking`, as a consumer doing file I/O does: its panics count too.
        Box::pin(async move { blocking(move || inner.step()).await? })
    }

    fn cursors(&self) -> Result<Vec<Cursor>, ConsumerError> {
        if self.cursors_unreadable.load(Ordering::SeqCst) {
            return Err(ConsumerError::new(std::io::Error::other("the cursor store is unreadable")));
        }
        Ok(vec![Cursor::at(self.cursor.load(Ordering::SeqCst))])
    }

    fn idle(&self) -> Idle {
        Idle { wake_on_append: true, at_most: Duration::from_millis(200) }
    }
}

/// A record's "time" is its first eight bytes, big-endian seconds since the epoch.
fn record_time() -> RecordTime {
    Arc::new(|payload: &[u8]| {
        let seconds = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
    })
}

fn record(seconds_ago: u64, size: usize) -> Vec<u8> {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let mut payload = (now - seconds_ago).to_be_bytes().to_vec();
    payload.resize(size, b'x');
    payload
}

async fn journal(dir: &tempfile::TempDir, segment_bytes: u64) -> Arc<LocalJournal> {
    let options = LocalJournalOptions { segment_bytes, ..LocalJournalOptions::default() };
    Arc::new(LocalJournal::open(dir.path().join("journal"), options).unwrap())
}

async fn append(journal: &LocalJournal, records: Vec<Vec<u8>>) {
    journal.append(records).await.unwrap();
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_of<'a>(status: &'a Status, name: &str) -> &'a ConsumerStatus {
    status.consumers.iter().find(|c| c.name == name).unwrap()
}

#[tokio::test]
async fn a_registered_consumer_is_driven_to_the_end_and_reports_its_lag() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir, 64 * 1024 * 1024).await;
    append(&journal, (0..5).map(|i| record(60 * (10 - i), 100)).collect()).await;
    let counting = Counting::new("counting", journal.clone());
    let consumers = Consumers::new(journal.clone()).with_record_time(record_time()).register(counting.clone());

    let before = consumers.status();
    let lag = &status_of(&before, "counting").cursors.as_ref().unwrap()[0];
    assert_eq!((lag.records_behind, lag.records_exact, lag.caught_up), (5, true, false));
    assert_eq!(lag.bytes_behind, journal.committed_end());
    let age = lag.oldest_unconsumed_age.unwrap();
    assert!(age >= Duration::from_secs(599) && age < Duration::from_secs(700), "the first record's age: {age:?}");
    assert_eq!(status_of(&before, "counting").health.state, State::Starting);

    consumers.spawn();
    wait_until("the consumer is caught up", || consumers.status().consumers[0].caught_up()).await;
    // Appends after it went idle wake it (its idle wait is long next to this test's patience).
    append(&journal, vec![record(1, 10)]).await;
    wait_until("the new record is consumed", || counting.consumed.load(Ordering::SeqCst) == 6).await;
    let after = consumers.status();
    let status = status_of(&after, "counting");
    let lag = &status.cursors.as_ref().unwrap()[0];
    assert_eq!((lag.records_behind, lag.bytes_behind, lag.oldest_unconsumed_age), (0, 0, None));
    assert_eq!(status.health.restarts, 0);
    assert!(status.health.last_success_at.is_some());
    consumers.stop();
    wait_until("the supervisor is stopped", || consumers.health("counting").unwrap().state == State::Stopped).await;
}

#[tokio::test]
async fn consumers_at_different_positions_each_count_what_is_behind_them() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir, 64 * 1024 * 1024).await;
    append(&journal, (0..10).map(|i| record(100 - i, 50)).collect()).await;
    let (far, near, done) = (
        Counting::new("far", journal.clone()),
        Counting::new("near", journal.clone()),
        Counting::new("done", journal.clone()),
    );
    let consumers = Consumers::new(journal.clone())
        .with_record_time(record_time())
        .register(far.clone())
        .register(near.clone())
        .register(done.clone());
    far.step().unwrap();
    for _ in 0..7 {
        near.step().unwrap();
    }
    while done.step().unwrap() == Progress::More {}
    let status = consumers.status();
    let lag = |name: &str| status_of(&status, name).cursors.as_ref().unwrap()[0].clone();
    let (far, near, done) = (lag("far"), lag("near"), lag("done"));
    assert_eq!((far.records_behind, near.records_behind, done.records_behind), (9, 3, 0));
    assert!(far.records_exact && near.records_exact && done.records_exact);
    assert_eq!(far.bytes_behind, journal.committed_end() - far.cursor.next);
    // The first unconsumed record of each: the second (99 s old) and the eighth (93 s old).
    let age = |lag: &CursorLag| lag.oldest_unconsumed_age.unwrap().as_secs();
    assert!((99..=101).contains(&age(&far)) && (93..=95).contains(&age(&near)), "{far:?} {near:?}");
    assert_eq!((done.caught_up, done.oldest_unconsumed_age), (true, None));
}

#[tokio::test]
async fn retention_never_drops_a_segment_a_registered_consumer_needs() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: 40 records of 1000 bytes make a dozen of them.
    let journal = journal(&dir, 4 * 1024).await;
    for _ in 0..40 {
        append(&journal, vec![record(0, 1000)]).await;
    }
    let (ahead, behind) = (Counting::new("ahead", journal.clone()), Counting::new("behind", journal.clone()));
    let consumers = Consumers::new(journal.clone()).register(ahead.clone()).register(behind.clone());
    let later = SystemTime::now() + Duration::from_secs(3600);
    for _ in 0..30 {
        ahead.step().unwrap();
    }
    for _ in 0..12 {
        behind.step().unwrap();
    }
    let needed = behind.cursor.load(Ordering::SeqCst);

    // The consumer behind is the one that counts: its next record stays readable.
    let report = consumers.apply_retention(later).unwrap();
    assert_eq!(report.keep_from, needed);
    assert!(report.dropped_segments > 0, "segments below both cursors go");
    assert!(journal.start() <= needed);
    journal.read_at(needed).unwrap();

    // A consumer that cannot report its cursor keeps the whole journal.
    while behind.step().unwrap() == Progress::More {}
    ahead.cursors_unreadable.store(true, Ordering::SeqCst);
    let start = journal.start();
    match consumers.apply_retention(later) {
        Err(RetentionError::Blocked { consumer, .. }) => assert_eq!(consumer, "ahead"),
        other => panic!("retention went ahead without a consumer's cursor: {other:?}"),
    }
    assert_eq!(journal.start(), start);

    // Once it reports again, retention moves up to it (never past the active segment).
    ahead.cursors_unreadable.store(false, Ordering::SeqCst);
    let report = consumers.apply_retention(later).unwrap();
    assert_eq!(report.keep_from, ahead.cursor.load(Ordering::SeqCst));
    assert!(journal.start() > start && journal.start() <= report.keep_from);
    journal.read_at(report.keep_from).unwrap();
}

#[tokio::test]
async fn a_panicking_consumer_is_restarted_with_backoff_and_its_status_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir, 64 * 1024 * 1024).await;
    append(&journal, (0..3).map(|_| record(0, 10)).collect()).await;
    let counting = Counting::new("panicky", journal.clone());
    counting.panics_left.store(3, Ordering::SeqCst);
    let consumers = Consumers::new(journal.clone()).register(counting.clone());
    let started = Instant::now();
    consumers.spawn();
    wait_until("it is caught up", || consumers.status().consumers[0].caught_up()).await;
    // Three retries wait at least half of each step: 50 + 100 + 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(350), "restarted without backoff: {:?}", started.elapsed());
    let health = consumers.health("panicky").unwrap();
    assert_eq!(health.restarts, 3);
    assert_eq!(health.failures_in_a_row, 0, "reset after the first successful round");
    assert!(health.last_error.as_deref().unwrap().contains("panicky was told to panic"), "{health:?}");
    assert!(health.last_error_at.is_some());
    assert_eq!(counting.consumed.load(Ordering::SeqCst), 3, "every record once, after the restarts");
    consumers.stop();
}

#[tokio::test]
async fn an_erroring_consumer_is_retried_and_shows_its_error_while_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir, 64 * 1024 * 1024).await;
    append(&journal, vec![record(0, 10)]).await;
    let counting = Counting::new("failing", journal.clone());
    // Fails for a good while: about 100 ms doubling, so a dozen failures take minutes.
    counting.errors_left.store(12, Ordering::SeqCst);
    let consumers = Consumers::new(journal.clone()).register(counting.clone());
    consumers.spawn();
    wait_until("it has failed twice", || consumers.health("failing").unwrap().restarts >= 2).await;
    let status = consumers.status();
    let failing = status_of(&status, "failing");
    assert_eq!(failing.health.state, State::Retrying);
    assert!(failing.health.failures_in_a_row >= 2);
    assert_eq!(failing.health.last_error.as_deref(), Some("the disk is full"));
    assert!(!failing.caught_up(), "a failing consumer is not caught up");
    assert_eq!(failing.cursors.as_ref().unwrap()[0].records_behind, 1);

    // Told to stop failing, it recovers on its next retry.
    counting.errors_left.store(0, Ordering::SeqCst);
    wait_until("it recovered", || consumers.status().consumers[0].caught_up()).await;
    assert_eq!(consumers.health("failing").unwrap().failures_in_a_row, 0);
    consumers.stop();
}

#[test]
#[should_panic(expected = "two journal consumers are named twice")]
fn names_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let journal = runtime.block_on(journal(&dir, 1 << 20));
    let _ = Consumers::new(journal.clone())
        .register(Counting::new("twice", journal.clone()))
        .register(Counting::new("twice", journal.clone()));
}
