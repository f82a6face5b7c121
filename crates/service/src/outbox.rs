//! A change and the record of the call that made it, durable together (the transactional
//! outbox, service side).
//!
//! A call that changes control-plane state (trails, selectors, logging, tags, event data stores,
//! channels, resource policies, imports) does not write its change and then its record: its
//! operation writes the change through a [`CallRecorder`], which builds the call's CloudTrail
//! record from the outcome the operation decided and hands it to the control store's
//! `apply_*_changes_recorded`, so the change and an outbox row holding the encoded record
//! commit in one transaction. After the operation returns, [`OpenTrail::publish`] appends that
//! very record (same bytes, same `eventID`) to the journal, waits until it is durable, removes
//! the row, and only then is the call answered. At start-up, before serving,
//! [`OpenTrail::drain_outbox`] delivers the rows a crash left (see `opentrail_control::outbox`:
//! a record already in the journal is not appended twice).
//!
//! Why the record is built when the operation writes, not by the service afterwards: the write
//! is where the operation's decision is final (its retry loop on `Conflict` stays as it is, and
//! a retried decision builds a new record), and it keeps the store's transactions short and
//! closed: nothing holds the store's connection while the operation goes on with other work.
//! The price is a rule for operations: what they answer is the output they wrote the change
//! with. [`OpenTrail::finish_recorded`] checks it.
//!
//! Calls that change nothing (reads, failures) keep appending their record directly.
//!
//! Invariants: a change committed by a call has that call's record in the outbox or in the
//! journal (or both, until the row is removed); a call commits at most one recorded change.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentrail_control::crash::{self, AFTER_CONTROL_COMMIT, AFTER_JOURNAL_APPEND};
use opentrail_control::outbox::{self, Drained, RecordLog};
use opentrail_control::{ControlStore, LakeChange, OutboxId, OutboxRecord, StoreError, TrailChange};
use opentrail_journal::{Journal, JournalError, Position};
use opentrail_model::AccountId;
use serde_json::Value;

use crate::{CallInfo, CallOutcome, OpenError, OpenTrail, Resource, ServiceError, build_record};

/// How long a recorded call keeps retrying an append the journal refused as overloaded. Its
/// change is committed already: giving up leaves the record to the next start-up's drain, so
/// Event History would miss it until then.
const OVERLOADED_RETRY_FOR: Duration = Duration::from_secs(10);
const OVERLOADED_BACKOFF: Duration = Duration::from_millis(50);
/// How much of the journal one read of the start-up drain's search covers.
const DRAIN_SCAN_BYTES: usize = 4 * 1024 * 1024;

/// What an operation writes its change with so that the call's record commits with it. One per
/// call; lent to the operation (`&CallRecorder`) and taken back by the service afterwards.
pub(crate) struct CallRecorder {
    info: CallInfo,
    operation: String,
    input: Option<Value>,
    journal: Arc<dyn Journal>,
    committed: Mutex<Option<Committed>>,
}

/// A change's record, committed with it and on its way to the journal.
#[derive(Debug)]
pub(crate) struct Committed {
    id: OutboxId,
    event_id: String,
    payload: Vec<u8>,
    /// The output the record's `responseElements` were built from: the call's answer.
    output: Value,
}

impl CallRecorder {
    pub(crate) fn new(info: &CallInfo, operation: &str, input: Option<&Value>, journal: Arc<dyn Journal>) -> Self {
        Self {
            info: info.clone(),
            operation: operation.to_owned(),
            input: input.cloned(),
            journal,
            committed: Mutex::new(None),
        }
    }

    /// Applies trail changes as `ControlStore::apply_trail_changes` does, with the record of
    /// this call answering `output` about `resources` in the same transaction.
    pub(crate) fn apply_trail_changes(
        &self,
        store: &dyn ControlStore,
        account: &AccountId,
        expected_version: i64,
        changes: &[TrailChange],
        output: &Value,
        resources: &[Resource],
    ) -> Result<(), StoreError> {
        self.commit(output, resources, |record| {
            store.apply_trail_changes_recorded(account, expected_version, changes, record)
        })
    }

    /// Applies Lake changes as `ControlStore::apply_lake_changes` does, with the record of this
    /// call answering `output` about `resources` in the same transaction.
    pub(crate) fn apply_lake_changes(
        &self,
        store: &dyn ControlStore,
        account: &AccountId,
        expected_version: i64,
        changes: &[LakeChange],
        output: &Value,
        resources: &[Resource],
    ) -> Result<(), StoreError> {
        self.commit(output, resources, |record| {
            store.apply_lake_changes_recorded(account, expected_version, changes, record)
        })
    }

    fn commit(
        &self,
        output: &Value,
        resources: &[Resource],
        write: impl FnOnce(&OutboxRecord) -> Result<OutboxId, StoreError>,
    ) -> Result<(), StoreError> {
        let mut committed = self.committed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // CloudTrail writes one event per call: a second recorded change would need a second
        // record of the same call (or lose its own).
        assert!(committed.is_none(), "{} committed a second recorded change in one call", self.operation);
        let outcome: CallOutcome = Ok(output.clone());
        let record = build_record(&self.info, &self.operation, self.input.as_ref(), &outcome, resources);
        let event_id = record.event_id().expect("build_record gives every record an eventID").to_owned();
        // Read before the write: the record is appended after the commit, so it lands at or
        // past this position (where a drain looks for it).
        let journal_floor = self.journal.committed_end();
        let outbox = OutboxRecord { event_id, payload: record.encode(), journal_floor };
        let id = write(&outbox)?;
        crash::crash_point(AFTER_CONTROL_COMMIT);
        *committed = Some(Committed { id, event_id: outbox.event_id, payload: outbox.payload, output: output.clone() });
        Ok(())
    }

    /// The recorded change this call committed, if it committed one (taken once the operation
    /// has returned).
    pub(crate) fn take_committed(&self) -> Option<Committed> {
        self.committed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// Appends one encoded record, retrying while the journal is overloaded (a refused append was
/// not queued, so retrying cannot write it twice).
pub(crate) async fn append_committed(journal: &dyn Journal, payload: &[u8]) -> Result<Position, JournalError> {
    let deadline = tokio::time::Instant::now() + OVERLOADED_RETRY_FOR;
    loop {
        match journal.append(vec![payload.to_vec()]).await {
            Ok(positions) => {
                assert_eq!(positions.len(), 1, "one record appended, one position");
                return Ok(positions[0]);
            }
            Err(JournalError::Overloaded) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(OVERLOADED_BACKOFF).await;
            }
            Err(error) => return Err(error),
        }
    }
}

impl OpenTrail {
    /// Makes a committed change's record durable in the journal, then forgets its outbox row.
    /// An error means the record is not known to be durable: the call answers
    /// `InternalFailure` and the next start-up's drain delivers the record.
    pub(crate) async fn publish(&self, committed: &Committed) -> Result<Position, JournalError> {
        let position = append_committed(self.journal.as_ref(), &committed.payload).await?;
        crash::crash_point(AFTER_JOURNAL_APPEND);
        let (store, id) = (self.store.clone(), committed.id);
        let removed = tokio::task::spawn_blocking(move || store.remove_pending_records(&[id])).await;
        // The record is durable, so the call succeeds either way; a row left behind is only
        // found in the journal and removed by the next drain.
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, event_id = committed.event_id, "cannot remove a delivered record's outbox row")
            }
            Err(error) => {
                tracing::warn!(%error, event_id = committed.event_id, "cannot remove a delivered record's outbox row")
            }
        }
        Ok(position)
    }

    /// Finishes a call whose operation committed a recorded change: publishes the record and
    /// answers what the record says was answered. The operation's own outcome must be that
    /// answer; if it is not (a bug), the record and the change are what happened, so the
    /// client is told the same.
    pub(crate) async fn finish_recorded(
        &self,
        operation: &str,
        outcome: CallOutcome,
        committed: Committed,
    ) -> Result<CallOutcome, ServiceError> {
        // Not ThrottlingException on an overloaded journal (as a call that changed nothing
        // gets): the change is made, and an SDK's retry would make it again.
        self.publish(&committed).await.map_err(ServiceError::internal)?;
        let agrees = matches!(&outcome, Ok(output) if *output == committed.output);
        if !agrees {
            tracing::error!(operation, event_id = committed.event_id, "an operation answered other than it recorded");
        }
        // Checked once the record is durable, so that even a failed check leaves it delivered.
        debug_assert!(agrees, "{operation} answered other than the change it recorded: {outcome:?}");
        Ok(Ok(committed.output))
    }

    /// Delivers to the journal the records of changes that committed before a crash but may not
    /// have reached it, once each. Call before serving (nothing else may be appending recorded
    /// calls' records meanwhile).
    pub async fn drain_outbox(&self) -> Result<Drained, OpenError> {
        let (store, journal) = (self.store.clone(), self.journal.clone());
        let plan = tokio::task::spawn_blocking(move || {
            outbox::plan_drain(store.as_ref(), &mut JournalLog { journal: journal.as_ref() })
        })
        .await
        .map_err(|error| OpenError::Usage(format!("the outbox drain failed: {error}")))?
        .map_err(|error| match error {
            outbox::DrainError::Store(error) => OpenError::Store(error),
            outbox::DrainError::Journal(error) => OpenError::Journal(error),
        })?;
        if !plan.missing.is_empty() {
            self.journal.append(plan.missing.clone()).await?;
        }
        let store = self.store.clone();
        let drained = tokio::task::spawn_blocking(move || plan.finish(store.as_ref()))
            .await
            .map_err(|error| OpenError::Usage(format!("the outbox drain failed: {error}")))??;
        if drained != Drained::default() {
            tracing::warn!(
                appended = drained.appended,
                already_in_journal = drained.already_in_journal,
                "delivered the records of changes committed before a crash"
            );
        }
        Ok(drained)
    }
}

/// The journal as the drain scans it, from a blocking thread.
struct JournalLog<'a> {
    journal: &'a dyn Journal,
}

impl RecordLog for JournalLog<'_> {
    type Error = JournalError;

    fn scan_from(&mut self, from: u64, each: &mut dyn FnMut(&[u8])) -> Result<(), JournalError> {
        let end = self.journal.committed_end();
        let mut position = from;
        while position < end {
            let batch = self.journal.read_from(position, DRAIN_SCAN_BYTES)?;
            batch.entries.iter().for_each(|entry| each(&entry.payload));
            // A read that neither returns records nor moves on has reached the end.
            if batch.next <= position {
                break;
            }
            position = batch.next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentrail_model::EventRecord;
    use serde_json::json;

    use super::*;
    use crate::Credentials;

    fn journal_payloads(service: &OpenTrail) -> Vec<Vec<u8>> {
        let batch = service.journal.read_from(0, usize::MAX / 2).unwrap();
        batch.entries.into_iter().map(|entry| entry.payload).collect()
    }

    fn open(dir: &std::path::Path) -> Arc<OpenTrail> {
        OpenTrail::open(dir, Credentials::from_config(&crate::Config::development()).unwrap()).unwrap()
    }

    fn put_channel(recorder: &CallRecorder, service: &OpenTrail, version: i64) -> Result<(), StoreError> {
        let document = opentrail_control::LakeDocument {
            kind: opentrail_control::LakeKind::Channel,
            id: "c".into(),
            document: "{}".into(),
        };
        recorder.apply_lake_changes(
            service.store.as_ref(),
            &crate::test_call_info().caller.principal.account,
            version,
            &[LakeChange::Put(document)],
            &json!({"ChannelArn": "arn:c"}),
            &[Resource { arn: "arn:c".into(), resource_type: "AWS::CloudTrail::Channel".into() }],
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recorded_change_publishes_the_record_it_committed_with() {
        let dir = tempfile::tempdir().unwrap();
        let service = open(dir.path());
        let input = json!({"Name": "c"});
        let recorder =
            CallRecorder::new(&crate::test_call_info(), "CreateChannel", Some(&input), service.journal.clone());
        // A conflict commits nothing and leaves the recorder free for the retry.
        assert!(matches!(put_channel(&recorder, &service, 5), Err(StoreError::Conflict)));
        put_channel(&recorder, &service, 0).unwrap();
        let committed = recorder.take_committed().expect("committed");
        assert_eq!(service.store.pending_records().unwrap().len(), 1);

        let answer = service.finish_recorded("CreateChannel", Ok(json!({"ChannelArn": "arn:c"})), committed).await;
        assert_eq!(answer.unwrap().unwrap(), json!({"ChannelArn": "arn:c"}));
        assert!(service.store.pending_records().unwrap().is_empty(), "the row goes once the record is durable");
        let payloads = journal_payloads(&service);
        assert_eq!(payloads.len(), 1);
        let record = EventRecord::decode(&payloads[0]).unwrap();
        assert_eq!(record.record["eventName"], "CreateChannel");
        assert_eq!(record.record["responseElements"], json!({"channelArn": "arn:c"}));
        assert_eq!(record.record["requestParameters"], json!({"name": "c"}));
        assert_eq!(record.record["resources"][0]["ARN"], "arn:c");
        assert_eq!(service.drain_outbox().await.unwrap(), Drained::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_drain_delivers_what_a_crash_left_once() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = {
            let service = open(dir.path());
            // Two committed changes whose calls "crashed": the first after its append, the
            // second before it.
            let recorder = CallRecorder::new(&crate::test_call_info(), "CreateChannel", None, service.journal.clone());
            put_channel(&recorder, &service, 0).unwrap();
            let first = recorder.take_committed().unwrap();
            append_committed(service.journal.as_ref(), &first.payload).await.unwrap();
            let recorder = CallRecorder::new(&crate::test_call_info(), "UpdateChannel", None, service.journal.clone());
            put_channel(&recorder, &service, 1).unwrap();
            let second = recorder.take_committed().unwrap();
            (first.payload, second.payload)
        };
        let service = open(dir.path());
        assert_eq!(service.store.pending_records().unwrap().len(), 2);
        assert_eq!(service.drain_outbox().await.unwrap(), Drained { appended: 1, already_in_journal: 1 });
        assert_eq!(journal_payloads(&service), [first, second]);
        assert!(service.store.pending_records().unwrap().is_empty());
        assert_eq!(service.drain_outbox().await.unwrap(), Drained::default());
    }
}
