//! Dispatch: one exhaustive `match` on the decoded [`Request`]. There is no catch-all arm, so an
//! operation the registry (`opentrail-operations`) declares implemented does not compile until
//! it has a handler here.
//!
//! The control store is SQLite, so the trail and Lake handlers are blocking code: they run on
//! a blocking thread with everything they need handed to them. What needs the network (asking a
//! remote bucket whether it exists) or another runtime (starting a query) is done by async code
//! before or after that, never waited for from the blocking side.

use std::sync::Arc;

use opentrail_operations::Request;

use crate::delivery::RemoteBucketChecks;
use crate::error::{ServiceError, ServiceResult};
use crate::lake::LakeOps;
use crate::outbox::CallRecorder;
use crate::trails::TrailOps;
use crate::{CallOutcome, Caller, OpenTrail, Resource};

/// A call's answer and the resources it acted on (for its record).
pub(crate) type Handled = (CallOutcome, Vec<Resource>);

fn no_remote_buckets() -> RemoteBucketChecks {
    RemoteBucketChecks::default()
}

impl OpenTrail {
    /// Runs `request`; a handler that changes state writes through `recorder` (see `outbox`).
    pub(crate) async fn dispatch(
        self: &Arc<Self>,
        caller: &Caller,
        recorder: &Arc<CallRecorder>,
        request: Request,
    ) -> Handled {
        use Request as R;
        let none = no_remote_buckets;
        match request {
            R::CreateTrail(input) => {
                let remote = self.delivery.check_remote_buckets([input.s3_bucket_name.as_str()]).await;
                self.run_trails(caller, recorder, remote, move |ops| ops.create_trail(input)).await
            }
            R::UpdateTrail(input) => {
                let remote = self.delivery.check_remote_buckets(input.s3_bucket_name.as_deref()).await;
                self.run_trails(caller, recorder, remote, move |ops| ops.update_trail(input)).await
            }
            R::DeleteTrail(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.delete_trail(input)).await
            }
            R::GetTrail(input) => self.run_trails(caller, recorder, none(), move |ops| ops.get_trail(input)).await,
            R::DescribeTrails(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.describe_trails(input)).await
            }
            R::ListTrails(input) => self.run_trails(caller, recorder, none(), move |ops| ops.list_trails(input)).await,
            R::GetTrailStatus(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.get_trail_status(input)).await
            }
            R::StartLogging(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.set_logging(input, true)).await
            }
            R::StopLogging(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.set_logging(input, false)).await
            }
            R::PutEventSelectors(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.put_event_selectors(input)).await
            }
            R::GetEventSelectors(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.get_event_selectors(input)).await
            }
            // Without TrailName the call names an event data store (Insights on a Lake source).
            R::PutInsightSelectors(input) if input.trail_name.is_none() => {
                self.run_lake(caller, recorder, none(), move |ops| ops.put_insight_selectors(input)).await
            }
            R::PutInsightSelectors(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.put_insight_selectors(input)).await
            }
            R::GetInsightSelectors(input) if input.trail_name.is_none() => {
                self.run_lake(caller, recorder, none(), move |ops| ops.get_insight_selectors(input)).await
            }
            R::GetInsightSelectors(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.get_insight_selectors(input)).await
            }
            R::AddTags(input) => self.run_trails(caller, recorder, none(), move |ops| ops.add_tags(input)).await,
            R::RemoveTags(input) => self.run_trails(caller, recorder, none(), move |ops| ops.remove_tags(input)).await,
            R::ListTags(input) => self.run_trails(caller, recorder, none(), move |ops| ops.list_tags(input)).await,
            R::ListPublicKeys(input) => {
                self.run_trails(caller, recorder, none(), move |ops| ops.list_public_keys(input)).await
            }
            R::LookupEvents(input) => (self.lookup(caller, input).await, Vec::new()),
            R::CreateEventDataStore(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.create_event_data_store(input)).await
            }
            R::GetEventDataStore(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.get_event_data_store(input)).await
            }
            R::ListEventDataStores(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.list_event_data_stores(input)).await
            }
            R::UpdateEventDataStore(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.update_event_data_store(input)).await
            }
            R::DeleteEventDataStore(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.delete_event_data_store(input)).await
            }
            R::RestoreEventDataStore(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.restore_event_data_store(input)).await
            }
            R::StartEventDataStoreIngestion(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.set_ingestion(input, true)).await
            }
            R::StopEventDataStoreIngestion(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.set_ingestion(input, false)).await
            }
            R::StartQuery(input) => self.start_query(caller, recorder, input).await,
            R::DescribeQuery(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.describe_query(input)).await
            }
            R::GetQueryResults(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.get_query_results(input)).await
            }
            R::ListQueries(input) => self.run_lake(caller, recorder, none(), move |ops| ops.list_queries(input)).await,
            R::CancelQuery(input) => self.run_lake(caller, recorder, none(), move |ops| ops.cancel_query(input)).await,
            R::CreateChannel(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.create_channel(input)).await
            }
            R::GetChannel(input) => self.run_lake(caller, recorder, none(), move |ops| ops.get_channel(input)).await,
            R::ListChannels(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.list_channels(input)).await
            }
            R::UpdateChannel(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.update_channel(input)).await
            }
            R::DeleteChannel(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.delete_channel(input)).await
            }
            R::PutResourcePolicy(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.put_resource_policy(input)).await
            }
            R::GetResourcePolicy(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.get_resource_policy(input)).await
            }
            R::DeleteResourcePolicy(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.delete_resource_policy(input)).await
            }
            R::StartImport(input) => self.run_lake(caller, recorder, none(), move |ops| ops.start_import(input)).await,
            R::GetImport(input) => self.run_lake(caller, recorder, none(), move |ops| ops.get_import(input)).await,
            R::ListImports(input) => self.run_lake(caller, recorder, none(), move |ops| ops.list_imports(input)).await,
            R::StopImport(input) => self.run_lake(caller, recorder, none(), move |ops| ops.stop_import(input)).await,
            R::ListImportFailures(input) => {
                self.run_lake(caller, recorder, none(), move |ops| ops.list_import_failures(input)).await
            }
            R::ListInsightsData(input) => (self.list_insights_data(caller, input).await, Vec::new()),
            R::ListInsightsMetricData(input) => (self.list_insights_metric_data(caller, input).await, Vec::new()),
        }
    }

    /// Runs a trail handler on a blocking thread.
    async fn run_trails(
        self: &Arc<Self>,
        caller: &Caller,
        recorder: &Arc<CallRecorder>,
        remote_buckets: RemoteBucketChecks,
        handler: impl FnOnce(&mut TrailOps<'_>) -> CallOutcome + Send + 'static,
    ) -> Handled {
        let this = self.clone();
        let caller = caller.clone();
        let recorder = recorder.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut resources = Vec::new();
            let mut ops = TrailOps {
                store: this.store.as_ref(),
                caller: &caller,
                resources: &mut resources,
                delivery: &this.delivery,
                remote_buckets: &remote_buckets,
                recorder: &recorder,
            };
            let outcome = handler(&mut ops);
            (outcome, resources)
        })
        .await;
        joined.unwrap_or_else(|error| (Err(ServiceError::internal(error)), Vec::new()))
    }

    /// Runs a Lake handler (or the blocking half of one) on a blocking thread.
    pub(crate) async fn run_lake<T: Send + 'static>(
        self: &Arc<Self>,
        caller: &Caller,
        recorder: &Arc<CallRecorder>,
        remote_buckets: RemoteBucketChecks,
        handler: impl FnOnce(&mut LakeOps<'_>) -> ServiceResult<T> + Send + 'static,
    ) -> (ServiceResult<T>, Vec<Resource>) {
        let this = self.clone();
        let caller = caller.clone();
        let recorder = recorder.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut resources = Vec::new();
            let mut ops = LakeOps {
                shared_store: &this.store,
                delivery: &this.delivery,
                tables: &this.lake_tables,
                store: this.store.as_ref(),
                journal: this.journal.as_ref(),
                queries: &this.queries,
                caller: &caller,
                resources: &mut resources,
                remote_buckets: &remote_buckets,
                recorder: &recorder,
            };
            let outcome = handler(&mut ops);
            (outcome, resources)
        })
        .await;
        joined.unwrap_or_else(|error| (Err(ServiceError::internal(error)), Vec::new()))
    }
}
