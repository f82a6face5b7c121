//! The CloudTrail service: operations on trails and Event History, and the recording of every
//! call as a CloudTrail management event.
//!
//! [`OpenTrail`] owns the journal, the history index, the control-plane store, delivery and the
//! Lake (built in `open`). The API layer hands it authenticated calls ([`CallInfo`] plus
//! operation name and body); it decodes the body into a typed [`Request`] (the registry and the
//! inputs are in `opentrail-operations`), runs it (`dispatch`: one exhaustive `match`), and
//! appends the call's own CloudTrail record to the journal. The answer is returned only after
//! that record is durable.
//!
//! Invariants:
//! - A call's response exists only once its audit record is durable (or the call fails with
//!   `InternalFailure`).
//! - A change a call commits to the control store commits with that call's record (`outbox`):
//!   the record is in the journal, or waits in the outbox for the start-up drain.
//! - Every operation acts on the caller's account only: the account comes from the verified
//!   access key, never from the request body.

mod audit_events;
pub mod config;
mod consumers;
mod delivery;
mod dispatch;
pub mod error;
mod insights;
mod lake;
mod lookup;
mod open;
mod outbox;
mod paging;
pub mod private_files;
mod query_delivery;
mod trails;

use std::sync::Arc;

use opentrail_buckets::LocalBuckets;
use opentrail_control::ControlStore;
use opentrail_delivery::DeliveryWorker;
use opentrail_history::HistoryIndex;
use opentrail_journal::{Journal, JournalError, Position};
use opentrail_lake::{LakeWriter, ParquetLake, QueryService};
use opentrail_model::EventRecord;
use opentrail_model::record::format_event_time;
use opentrail_operations::Request;

pub use crate::config::{Config, Credentials, LakeBucket, Secret, ServiceOptions};
use crate::delivery::DeliveryContext;
pub use crate::error::{ErrorCode, ServiceError, ServiceResult};
pub use crate::lake::import_local_folder;
pub use crate::open::{EventLog, OpenError};
use crate::outbox::CallRecorder;
pub use opentrail_model::record::EVENT_VERSION;
pub use opentrail_operations::{
    Area, CallInfo, CallOutcome, Caller, Operation, Resource, build_record, decode_input, decode_request,
    operation_from_target, parse_body,
};

pub struct OpenTrail {
    journal: Arc<dyn Journal>,
    history: Arc<HistoryIndex>,
    store: Arc<dyn ControlStore>,
    buckets: Arc<LocalBuckets>,
    delivery: Arc<DeliveryContext>,
    worker: Arc<DeliveryWorker>,
    lake_writer: Arc<LakeWriter>,
    lake_tables: Arc<ParquetLake>,
    queries: Arc<QueryService>,
    /// The Insights consumer's store: cursor, snapshot, metric series.
    insight_store: Arc<opentrail_insights::InsightStore>,
    /// Every journal consumer (see `consumers::register`), supervised and retained for.
    consumers: Arc<opentrail_consumer::Consumers>,
    pub credentials: Credentials,
}

fn epoch_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The ISO form some status fields use (`2026-01-01T00:00:00Z`).
fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(format_event_time).unwrap_or_default()
}

impl OpenTrail {
    /// The control-plane store (bucket ownership for the S3 endpoint).
    pub fn store(&self) -> &Arc<dyn ControlStore> {
        &self.store
    }

    /// The local bucket store the S3 endpoint serves.
    pub fn buckets(&self) -> &Arc<LocalBuckets> {
        &self.buckets
    }

    /// The trail delivery worker (its `deliver_round` runs one pass, for tests and benches).
    pub fn delivery_worker(&self) -> &Arc<DeliveryWorker> {
        &self.worker
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    pub fn history(&self) -> &Arc<HistoryIndex> {
        &self.history
    }

    /// The journal consumer that fills event data stores (its `round` runs one pass).
    pub fn lake_writer(&self) -> &Arc<LakeWriter> {
        &self.lake_writer
    }

    /// Lake queries (the CLI waits on them).
    pub fn queries(&self) -> &Arc<QueryService> {
        &self.queries
    }

    /// Appends records durably; resolves once they are on disk.
    pub async fn append_records(&self, records: &[EventRecord]) -> Result<Vec<Position>, JournalError> {
        let encoded = records.iter().map(EventRecord::encode).collect();
        self.journal.append(encoded).await
    }

    /// Runs one authenticated call and records it. The error case of the outer `Result` means
    /// the record could not be made durable: answer `InternalFailure`.
    pub async fn handle_call(
        self: &Arc<Self>,
        info: CallInfo,
        operation: &str,
        body: &[u8],
    ) -> Result<CallOutcome, ServiceError> {
        let parsed = parse_body(body);
        // An operation that changes state writes its change through the recorder, which commits
        // this call's record with it (see `outbox`).
        let recorder = Arc::new(CallRecorder::new(&info, operation, parsed.as_ref().ok(), self.journal.clone()));
        let (outcome, resources) = match &parsed {
            Ok(input) => match Request::decode(operation, input.clone()) {
                Ok(request) => self.dispatch(&info.caller, &recorder, request).await,
                Err(error) => (Err(error), Vec::new()),
            },
            Err(error) => (Err(error.clone()), Vec::new()),
        };
        if let Some(committed) = recorder.take_committed() {
            return self.finish_recorded(operation, outcome, committed).await;
        }
        let record = build_record(&info, operation, parsed.as_ref().ok(), &outcome, &resources);
        // A write that succeeded outside the outbox (StartQuery, CancelQuery) has done its work:
        // its record waits for room in an overloaded journal instead of being refused, so the
        // client's retry does not do the work twice.
        let done = outcome.is_ok() && Operation::from_name(operation).is_some_and(|op| !op.read_only());
        let appended = if done {
            outbox::append_committed(self.journal.as_ref(), &record.encode()).await.map(drop)
        } else {
            self.append_records(&[record]).await.map(drop)
        };
        match appended {
            Ok(()) => Ok(outcome),
            Err(error) => Err(crate::error::append_failed(error)),
        }
    }
}

/// The call every unit test of the service makes: account 123456789012's root in us-east-1.
#[cfg(test)]
pub(crate) fn test_call_info() -> CallInfo {
    use opentrail_model::{AccountId, Principal, PrincipalKind, Region};
    CallInfo {
        caller: Caller {
            principal: Principal {
                account: AccountId::parse("123456789012").unwrap(),
                access_key_id: "AKIAEXAMPLE".into(),
                kind: PrincipalKind::Root,
            },
            region: Region::parse("us-east-1").unwrap(),
        },
        source_ip: "127.0.0.1".into(),
        user_agent: None,
        request_id: "req-1".into(),
    }
}
