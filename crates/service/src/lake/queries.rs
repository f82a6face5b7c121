//! Lake queries: start, describe, results, list, cancel. Queries run on the query service's
//! own runtime; starting one is async (planning happens there).

use chrono::Utc;
use serde_json::{Value, json};

use std::sync::Arc;

use opentrail_operations::inputs::{GetQueryResultsInput, ListQueriesInput, QueryIdInput, StartQueryInput};

use super::*;
use crate::dispatch::Handled;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::outbox::CallRecorder;
use crate::query_delivery::{DeliveryUriError, check_delivery_uri};
use crate::{CallOutcome, OpenTrail};

pub(super) fn query_status_filter(text: Option<&str>) -> ServiceResult<Option<QueryStatus>> {
    match text {
        None => Ok(None),
        Some(text) => QueryStatus::parse(text)
            .map(Some)
            .ok_or_else(|| err(ErrorCode::InvalidQueryStatus, format!("Query status {text} is not valid."))),
    }
}

impl LakeOps<'_> {
    pub(super) fn check_owner(&self, owner: Option<&str>) -> ServiceResult<()> {
        match owner {
            Some(owner) if owner != self.caller.principal.account.as_str() => Err(err(
                ErrorCode::EventDataStoreNotFound,
                format!("No event data store of account {owner} is shared with this account."),
            )),
            _ => Ok(()),
        }
    }

    /// StartQuery's checks, in their order, and the caller's stores the statement may name:
    /// the blocking half of [`OpenTrail::start_query`].
    pub fn prepare_query(&mut self, input: StartQueryInput) -> ServiceResult<QueryToStart> {
        self.check_owner(input.event_data_store_owner_account_id.as_deref())?;
        if input.query_alias.is_some() || input.query_parameters.is_some() {
            return Err(err(
                ErrorCode::InvalidParameter,
                "QueryAlias and QueryParameters run dashboard queries, which OpenTrail does not have; send QueryStatement.",
            ));
        }
        let Some(statement) = input.query_statement.clone() else {
            return Err(err(ErrorCode::InvalidParameter, "QueryStatement is required."));
        };
        if statement.chars().count() > 10_000 {
            return Err(err(
                ErrorCode::InvalidQueryStatement,
                "A query statement can be at most 10000 characters long.",
            ));
        }
        if let Some(uri) = &input.delivery_s3_uri {
            let bucket = match check_delivery_uri(uri) {
                Ok((bucket, _)) => bucket,
                Err(DeliveryUriError::Bucket(message)) => return Err(err(ErrorCode::InvalidS3BucketName, message)),
                Err(DeliveryUriError::Prefix(message)) => return Err(err(ErrorCode::InvalidS3Prefix, message)),
            };
            if uri.len() > 1024 {
                return Err(err(ErrorCode::InvalidS3Prefix, "DeliveryS3Uri can be at most 1024 characters long."));
            }
            self.delivery.check_bucket(self.store, &self.caller.principal.account, &bucket, self.remote_buckets)?;
        }
        let stores = self.load()?.stores;
        Ok(QueryToStart { statement, delivery_s3_uri: input.delivery_s3_uri, stores })
    }

    pub(super) fn find_query(&self, id: &str) -> ServiceResult<Query> {
        let not_found = || err(ErrorCode::QueryIdNotFound, format!("The query ID {id} was not found."));
        if id.len() != 36 || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(not_found());
        }
        let query = self.queries.get(&self.caller.principal.account, id).map_err(ServiceError::internal)?;
        query.filter(|q| q.region == self.caller.region).ok_or_else(not_found)
    }

    pub fn describe_query(&mut self, input: QueryIdInput) -> ServiceResult<Value> {
        self.check_owner(input.event_data_store_owner_account_id.as_deref())?;
        let Some(id) = input.query_id.as_deref() else {
            let message = match input.query_alias {
                Some(_) => "QueryAlias names dashboard queries, which OpenTrail does not have; send QueryId.",
                None => "QueryId is required.",
            };
            return Err(err(ErrorCode::InvalidParameter, message));
        };
        let query = self.find_query(id)?;
        let statistics = &query.statistics;
        let mut output = json!({
            "QueryId": query.id,
            "QueryString": query.statement,
            "QueryStatus": query.status.as_str(),
            "QueryStatistics": {
                "EventsMatched": statistics.events_matched,
                "EventsScanned": statistics.events_scanned,
                "BytesScanned": statistics.bytes_scanned,
                "ExecutionTimeInMillis": statistics.execution_time_ms,
                "CreationTime": epoch_seconds(query.created_ms),
            },
            "EventDataStoreOwnerAccountId": query.account.as_str(),
        });
        if let Some(message) = &query.error_message {
            output["ErrorMessage"] = json!(message);
        }
        if let Some(uri) = &query.delivery_s3_uri {
            output["DeliveryS3Uri"] = json!(uri);
            output["DeliveryStatus"] = json!(query.delivery_status.as_deref().unwrap_or("PENDING"));
        }
        Ok(output)
    }

    pub fn get_query_results(&mut self, input: GetQueryResultsInput) -> ServiceResult<Value> {
        self.check_owner(input.event_data_store_owner_account_id.as_deref())?;
        let limit = match input.max_query_results {
            None => 1000,
            Some(n) if (1..=1000).contains(&n) => n as usize,
            Some(_) => return Err(err(ErrorCode::InvalidMaxResults, "MaxQueryResults must be between 1 and 1000.")),
        };
        let query = self.find_query(&input.query_id)?;
        let offset = match input.next_token.as_deref() {
            None => 0,
            Some(token) => decode_text_token(token)?
                .strip_prefix(&format!("{}:", query.id))
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| err(ErrorCode::InvalidNextToken, "The NextToken is not valid."))?,
        };
        let mut output = json!({
            "QueryStatus": query.status.as_str(),
            "QueryStatistics": {
                "ResultsCount": 0,
                "TotalResultsCount": query.statistics.results_count,
                "BytesScanned": query.statistics.bytes_scanned,
            },
            "QueryResultRows": [],
        });
        if let Some(message) = &query.error_message {
            output["ErrorMessage"] = json!(message);
        }
        if query.status != QueryStatus::Finished {
            return Ok(output);
        }
        // Only this page's rows are read: the results file has an index of where each row starts.
        let results = self
            .queries
            .results_page(&query.id, offset as u64, limit)
            .map_err(ServiceError::internal)?
            .unwrap_or_default();
        let page: Vec<Value> = results
            .rows
            .iter()
            .map(|row| {
                let cells: Vec<Value> = results
                    .columns
                    .iter()
                    .zip(row)
                    .filter_map(|(column, value)| value.as_ref().map(|value| json!({ column.as_str(): value })))
                    .collect();
                Value::Array(cells)
            })
            .collect();
        output["QueryStatistics"]["ResultsCount"] = json!(page.len());
        if ((offset + page.len()) as u64) < results.total {
            output["NextToken"] = json!(encode_text_token(&format!("{}:{}", query.id, offset + page.len())));
        }
        output["QueryResultRows"] = Value::Array(page);
        Ok(output)
    }

    pub fn list_queries(&mut self, input: ListQueriesInput) -> ServiceResult<Value> {
        let limit = max_results(input.max_results, 1000)?;
        let status = query_status_filter(input.query_status.as_deref())?;
        let state = self.load()?;
        let store = Self::find_store(&state.stores, &input.event_data_store)?;
        if store.status == StoreStatus::PendingDeletion {
            return Err(err(
                ErrorCode::InactiveEventDataStore,
                format!("Event data store {} is pending deletion.", store.arn()),
            ));
        }
        let window_start = Utc::now().timestamp_millis() - QUERY_RESULT_DAYS * 86_400_000;
        let bounded = |name: &str, time: Option<f64>| {
            time.map(|t| {
                time_in_range(t)
                    .ok_or_else(|| err(ErrorCode::InvalidDateRange, format!("{name} {}", time_range_message(t))))
            })
            .transpose()
        };
        let start_ms = bounded("StartTime", input.start_time)?;
        let end_ms = bounded("EndTime", input.end_time)?;
        if let (Some(start), Some(end)) = (start_ms, end_ms)
            && start > end
        {
            return Err(err(ErrorCode::InvalidDateRange, "StartTime must be before EndTime."));
        }
        let after = input.next_token.as_deref().map(decode_text_token).transpose()?;
        let queries = self
            .queries
            .list(&self.caller.principal.account, start_ms.unwrap_or(window_start).max(window_start))
            .map_err(ServiceError::internal)?;
        let matching: Vec<&Query> = queries
            .iter()
            .filter(|q| q.store_ids.contains(&store.id))
            .filter(|q| end_ms.is_none_or(|end| q.created_ms <= end))
            .filter(|q| status.is_none_or(|s| q.status == s))
            .collect();
        let start_index = match &after {
            Some(last) => matching
                .iter()
                .position(|q| &q.id == last)
                .map(|i| i + 1)
                .ok_or_else(|| err(ErrorCode::InvalidNextToken, "The NextToken is not valid."))?,
            None => 0,
        };
        let page: Vec<&&Query> = matching.iter().skip(start_index).take(limit).collect();
        let mut output = json!({
            "Queries": page.iter().map(|q| json!({
                "QueryId": q.id, "QueryStatus": q.status.as_str(), "CreationTime": epoch_seconds(q.created_ms)
            })).collect::<Vec<_>>()
        });
        if start_index + page.len() < matching.len()
            && let Some(last) = page.last()
        {
            output["NextToken"] = json!(encode_text_token(&last.id));
        }
        Ok(output)
    }

    pub fn cancel_query(&mut self, input: QueryIdInput) -> ServiceResult<Value> {
        self.check_owner(input.event_data_store_owner_account_id.as_deref())?;
        let Some(id) = input.query_id.as_deref() else {
            return Err(err(ErrorCode::InvalidParameter, "QueryId is required."));
        };
        let query = self.find_query(id)?;
        let cancelled =
            self.queries.cancel(&self.caller.principal.account, &query.id).map_err(ServiceError::internal)?;
        match cancelled {
            Some(query) => Ok(json!({
                "QueryId": query.id,
                "QueryStatus": query.status.as_str(),
                "EventDataStoreOwnerAccountId": query.account.as_str(),
            })),
            None => Err(err(
                ErrorCode::InactiveQuery,
                format!("The query {} is {} and cannot be cancelled.", query.id, query.status.as_str()),
            )),
        }
    }
}

/// A query StartQuery's checks let through.
pub struct QueryToStart {
    statement: String,
    delivery_s3_uri: Option<String>,
    stores: Vec<EventDataStore>,
}

impl OpenTrail {
    /// StartQuery: the checks and the account's stores on a blocking thread, then the start on
    /// the query service (async: the statement is planned on its runtime). A remote delivery
    /// bucket is asked first, as that is a request.
    pub(crate) async fn start_query(
        self: &Arc<Self>,
        caller: &Caller,
        recorder: &Arc<CallRecorder>,
        input: StartQueryInput,
    ) -> Handled {
        let bucket = input.delivery_s3_uri.as_deref().and_then(|uri| check_delivery_uri(uri).ok()).map(|(b, _)| b);
        let remote_buckets = self.delivery.check_remote_buckets(bucket.as_deref()).await;
        let (prepared, mut resources) =
            self.run_lake(caller, recorder, remote_buckets, move |ops| ops.prepare_query(input)).await;
        let outcome = match prepared {
            Ok(query) => self.start_prepared_query(caller, query, &mut resources).await,
            Err(error) => Err(error),
        };
        (outcome, resources)
    }

    async fn start_prepared_query(
        &self,
        caller: &Caller,
        prepared: QueryToStart,
        resources: &mut Vec<Resource>,
    ) -> CallOutcome {
        let account = &caller.principal.account;
        let started = self
            .queries
            .start(account, &caller.region, &prepared.statement, prepared.delivery_s3_uri.clone(), &prepared.stores)
            .await;
        let query = started.map_err(|error| match error {
            StartQueryError::InvalidStatement(message) => err(ErrorCode::InvalidQueryStatement, message),
            StartQueryError::StoreNotFound(message) => err(ErrorCode::EventDataStoreNotFound, message),
            StartQueryError::InactiveStore(message) => err(ErrorCode::InactiveEventDataStore, message),
            StartQueryError::TooManyQueries => err(ErrorCode::MaxConcurrentQueries, error.to_string()),
            StartQueryError::Internal(inner) => ServiceError::internal(inner),
        })?;
        for id in &query.store_ids {
            if let Some(store) = prepared.stores.iter().find(|s| &s.id == id) {
                LakeOps::note_store(resources, store);
            }
        }
        if let Some(uri) = &query.delivery_s3_uri {
            crate::query_delivery::spawn(
                self.queries.clone(),
                self.delivery.clone(),
                query.account.clone(),
                query.region.clone(),
                query.id.clone(),
                uri.clone(),
            );
        }
        Ok(json!({"QueryId": query.id, "EventDataStoreOwnerAccountId": account.as_str()}))
    }
}
