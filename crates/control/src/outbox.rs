//! Draining the outbox: delivering to the journal the records of changes that committed while
//! their records' appends did not (or did, but their rows were not removed yet).
//!
//! A recorded change puts its call's record in the `outbox` table in the change's transaction;
//! the service then appends the record to the journal, waits until it is durable, and removes
//! the row. A crash can fall between any two of those steps, so at start-up, before serving,
//! every row left is drained: a record already in the journal (the crash fell between the
//! append and the removal) is only removed, any other is appended first. The search starts at
//! the journal's committed end noted when the change was decided, which is where the record
//! would be if it was appended at all, and compares whole payloads: a record is in the journal
//! exactly when its encoded bytes are (they hold its `eventID`, a fresh UUID).
//!
//! Invariants: a drain appends every pending record that is not yet in the journal, exactly
//! once; a row is removed only after its record is durable; draining again changes nothing.

use std::collections::HashMap;

use crate::{ControlStore, OutboxId, PendingRecord, StoreError};

/// The journal as a drain reads it. Appending is the caller's: the journal's append is async,
/// and this module's work is blocking (the store and the scan), so a drain is planned here,
/// appended by the caller, and finished here.
pub trait RecordLog {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Calls `each` with the payload of every committed record at or after position `from`,
    /// in journal order (records before the journal's start are gone and are not visited).
    fn scan_from(&mut self, from: u64, each: &mut dyn FnMut(&[u8])) -> Result<(), Self::Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot deliver pending records to the journal: {0}")]
    Journal(#[source] E),
}

/// What a drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Records appended to the journal now.
    pub appended: usize,
    /// Records found in the journal already, whose rows were only removed.
    pub already_in_journal: usize,
}

/// Which of `pending` are in the journal already: one scan from the lowest floor among them.
pub fn find_delivered<L: RecordLog>(pending: &[PendingRecord], log: &mut L) -> Result<Vec<bool>, L::Error> {
    let mut delivered = vec![false; pending.len()];
    let Some(from) = pending.iter().map(|row| row.record.journal_floor).min() else {
        return Ok(delivered);
    };
    let mut wanted: HashMap<&[u8], Vec<usize>> = HashMap::with_capacity(pending.len());
    for (index, row) in pending.iter().enumerate() {
        wanted.entry(row.record.payload.as_slice()).or_default().push(index);
    }
    log.scan_from(from, &mut |payload| {
        if let Some(indexes) = wanted.get(payload) {
            for index in indexes {
                delivered[*index] = true;
            }
        }
    })?;
    Ok(delivered)
}

/// A drain to carry out: append `missing` durably (in this order: commit order, as the calls
/// would have appended them), then [`DrainPlan::finish`].
#[derive(Debug)]
pub struct DrainPlan {
    pub missing: Vec<Vec<u8>>,
    pub drained: Drained,
    rows: Vec<OutboxId>,
}

/// Plans the delivery of every pending outbox record to the journal once. Run it before
/// anything else appends the records of recorded calls (at start-up, before serving): a record
/// whose append is still in flight elsewhere would be found missing and appended a second time.
pub fn plan_drain<L: RecordLog>(store: &dyn ControlStore, log: &mut L) -> Result<DrainPlan, DrainError<L::Error>> {
    let pending = store.pending_records()?;
    let delivered = find_delivered(&pending, log).map_err(DrainError::Journal)?;
    let missing: Vec<Vec<u8>> = pending
        .iter()
        .zip(&delivered)
        .filter(|(_, delivered)| !**delivered)
        .map(|(row, _)| row.record.payload.clone())
        .collect();
    let drained = Drained { appended: missing.len(), already_in_journal: pending.len() - missing.len() };
    Ok(DrainPlan { missing, drained, rows: pending.iter().map(|row| row.id).collect() })
}

impl DrainPlan {
    /// Removes the drained rows. Call only once every record in `missing` is durable.
    pub fn finish(self, store: &dyn ControlStore) -> Result<Drained, StoreError> {
        if !self.rows.is_empty() {
            store.remove_pending_records(&self.rows)?;
        }
        Ok(self.drained)
    }
}

#[cfg(test)]
mod tests {
    use opentrail_model::{AccountId, Trail};

    use super::*;
    use crate::{LakeChange, LakeDocument, LakeKind, OutboxRecord, SqliteStore, TrailChange};

    /// A journal in memory: `(position, payload)`, positions as byte offsets.
    #[derive(Default)]
    struct MemoryLog {
        records: Vec<(u64, Vec<u8>)>,
        end: u64,
        fail_appends: bool,
        scans: usize,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the journal refused the append")]
    struct Refused;

    impl MemoryLog {
        fn push(&mut self, payload: Vec<u8>) {
            self.records.push((self.end, payload.clone()));
            self.end += payload.len() as u64 + 8;
        }

        fn count(&self, payload: &[u8]) -> usize {
            self.records.iter().filter(|(_, p)| p == payload).count()
        }
    }

    impl RecordLog for MemoryLog {
        type Error = Refused;

        fn scan_from(&mut self, from: u64, each: &mut dyn FnMut(&[u8])) -> Result<(), Refused> {
            self.scans += 1;
            self.records.iter().filter(|(position, _)| *position >= from).for_each(|(_, payload)| each(payload));
            Ok(())
        }
    }

    impl MemoryLog {
        fn append_durably(&mut self, payloads: Vec<Vec<u8>>) -> Result<(), Refused> {
            if self.fail_appends {
                return Err(Refused);
            }
            payloads.into_iter().for_each(|payload| self.push(payload));
            Ok(())
        }
    }

    /// A whole drain as the service runs it: plan, append, finish.
    fn drain(store: &dyn ControlStore, log: &mut MemoryLog) -> Result<Drained, DrainError<Refused>> {
        let plan = plan_drain(store, log)?;
        if !plan.missing.is_empty() {
            log.append_durably(plan.missing.clone()).map_err(DrainError::Journal)?;
        }
        Ok(plan.finish(store)?)
    }

    fn account() -> AccountId {
        AccountId::parse("123456789012").unwrap()
    }

    fn trail(name: &str) -> Trail {
        crate::tests::trail(name)
    }

    fn record(event_id: &str, floor: u64) -> OutboxRecord {
        OutboxRecord {
            event_id: event_id.into(),
            payload: format!("{{\"eventID\":\"{event_id}\"}}").into_bytes(),
            journal_floor: floor,
        }
    }

    #[test]
    fn a_recorded_change_commits_with_its_record() {
        let store = SqliteStore::in_memory().unwrap();
        let id = store
            .apply_trail_changes_recorded(&account(), 0, &[TrailChange::Put(Box::new(trail("a")))], &record("e1", 7))
            .unwrap();
        assert_eq!(store.load_trails(&account()).unwrap().trails.len(), 1);
        assert_eq!(store.pending_records().unwrap(), vec![PendingRecord { id, record: record("e1", 7) }]);

        let document = LakeDocument { kind: LakeKind::Channel, id: "c".into(), document: "{}".into() };
        let lake_id =
            store.apply_lake_changes_recorded(&account(), 0, &[LakeChange::Put(document)], &record("e2", 9)).unwrap();
        assert!(lake_id > id, "keys follow commit order");
        let pending = store.pending_records().unwrap();
        assert_eq!(pending.iter().map(|row| row.id).collect::<Vec<_>>(), [id, lake_id]);
        store.remove_pending_records(&[id]).unwrap();
        assert_eq!(store.pending_records().unwrap().len(), 1);
        store.remove_pending_records(&[id, lake_id]).unwrap();
        assert!(store.pending_records().unwrap().is_empty());
    }

    #[test]
    fn a_failed_recorded_change_leaves_neither_change_nor_record() {
        let store = SqliteStore::in_memory().unwrap();
        store.apply_trail_changes(&account(), 0, &[TrailChange::Put(Box::new(trail("a")))]).unwrap();
        let stale = store.apply_trail_changes_recorded(
            &account(),
            0,
            &[TrailChange::Put(Box::new(trail("b")))],
            &record("e", 0),
        );
        assert!(matches!(stale, Err(StoreError::Conflict)));
        let document = LakeDocument { kind: LakeKind::Channel, id: "c".into(), document: "{}".into() };
        let stale = store.apply_lake_changes_recorded(&account(), 3, &[LakeChange::Put(document)], &record("f", 0));
        assert!(matches!(stale, Err(StoreError::Conflict)));
        assert!(store.pending_records().unwrap().is_empty());
        let trails = store.load_trails(&account()).unwrap();
        assert_eq!((trails.version, trails.trails.len()), (1, 1));
        assert!(store.load_lake(&account()).unwrap().documents.is_empty());

        // A change that fails inside the transaction (here a statement refused by a trigger)
        // takes its record with it.
        store
            .lock()
            .execute_batch("CREATE TRIGGER refuse BEFORE INSERT ON trails BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .unwrap();
        let refused = store.apply_trail_changes_recorded(
            &account(),
            1,
            &[TrailChange::Put(Box::new(trail("c")))],
            &record("g", 0),
        );
        assert!(matches!(refused, Err(StoreError::Database(_))));
        assert!(store.pending_records().unwrap().is_empty());
        assert_eq!(store.load_trails(&account()).unwrap().version, 1);
    }

    #[test]
    fn records_survive_a_reopen_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sqlite");
        let id = {
            let store = SqliteStore::open(&path).unwrap();
            let id = store
                .apply_trail_changes_recorded(&account(), 0, &[TrailChange::Put(Box::new(trail("a")))], &record("e", 1))
                .unwrap();
            store.remove_pending_records(&[]).unwrap();
            id
        };
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.pending_records().unwrap(), vec![PendingRecord { id, record: record("e", 1) }]);
        store.remove_pending_records(&[id]).unwrap();
        // An unsynced removal is still a committed one for the next reader.
        drop(store);
        assert!(SqliteStore::open(&path).unwrap().pending_records().unwrap().is_empty());
    }

    #[test]
    fn a_drain_appends_what_is_missing_once_and_is_idempotent() {
        let store = SqliteStore::in_memory().unwrap();
        let mut log = MemoryLog::default();
        log.push(b"unrelated".to_vec());
        // Three committed changes: the first record reached the journal before the crash (its
        // row was not removed yet), the other two did not.
        let floor = log.end;
        let first = record("e1", floor);
        store.apply_trail_changes_recorded(&account(), 0, &[TrailChange::Put(Box::new(trail("a")))], &first).unwrap();
        log.push(first.payload.clone());
        let second = record("e2", log.end);
        store.apply_trail_changes_recorded(&account(), 1, &[TrailChange::Put(Box::new(trail("b")))], &second).unwrap();
        let third = record("e3", log.end);
        store.apply_trail_changes_recorded(&account(), 2, &[TrailChange::Put(Box::new(trail("c")))], &third).unwrap();

        let drained = drain(&store, &mut log).unwrap();
        assert_eq!(drained, Drained { appended: 2, already_in_journal: 1 });
        assert_eq!(log.scans, 1, "one scan covers every pending row");
        for record in [&first, &second, &third] {
            assert_eq!(log.count(&record.payload), 1, "{} is in the journal once", record.event_id);
        }
        let tail: Vec<&[u8]> = log.records[2..].iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(tail, [second.payload.as_slice(), third.payload.as_slice()], "in commit order");
        assert!(store.pending_records().unwrap().is_empty());

        let records_before = log.records.len();
        assert_eq!(drain(&store, &mut log).unwrap(), Drained::default());
        assert_eq!(log.records.len(), records_before, "draining again appends nothing");
    }

    #[test]
    fn a_drain_that_crashed_before_removing_rows_does_not_append_again() {
        let store = SqliteStore::in_memory().unwrap();
        let mut log = MemoryLog::default();
        let pending = record("e1", 0);
        store.apply_trail_changes_recorded(&account(), 0, &[TrailChange::Put(Box::new(trail("a")))], &pending).unwrap();
        // The first drain appended, then "crashed" before removing the row.
        let rows = store.pending_records().unwrap();
        let delivered = find_delivered(&rows, &mut log).unwrap();
        assert_eq!(delivered, [false]);
        log.append_durably(vec![pending.payload.clone()]).unwrap();
        // The next drain finds it.
        assert_eq!(drain(&store, &mut log).unwrap(), Drained { appended: 0, already_in_journal: 1 });
        assert_eq!(log.count(&pending.payload), 1);
    }

    #[test]
    fn a_refused_append_keeps_the_rows() {
        let store = SqliteStore::in_memory().unwrap();
        let mut log = MemoryLog { fail_appends: true, ..MemoryLog::default() };
        let pending = record("e1", 0);
        store.apply_trail_changes_recorded(&account(), 0, &[TrailChange::Put(Box::new(trail("a")))], &pending).unwrap();
        assert!(matches!(drain(&store, &mut log), Err(DrainError::Journal(Refused))));
        assert_eq!(store.pending_records().unwrap().len(), 1, "kept for the next drain");
        log.fail_appends = false;
        assert_eq!(drain(&store, &mut log).unwrap(), Drained { appended: 1, already_in_journal: 0 });
    }

    #[test]
    fn records_before_the_floor_are_not_searched() {
        let mut log = MemoryLog::default();
        let early = record("e1", 0);
        log.push(early.payload.clone());
        let row = PendingRecord { id: OutboxId(1), record: OutboxRecord { journal_floor: log.end, ..early } };
        // Only a record appended after its change committed can be that change's record.
        assert_eq!(find_delivered(&[row], &mut log).unwrap(), [false]);
    }
}
