//! Insights on event data stores: `PutInsightSelectors` and `GetInsightSelectors` given
//! `EventDataStore` (the source) and `InsightsDestination` instead of a trail.
//!
//! The source is a store of CloudTrail management events; its Insights events go to the
//! destination, a store whose selectors choose `eventCategory` `Insight`. The selectors and the
//! destination's ARN are kept on the source's document, changed through `LakeOps::mutate`
//! like every other store setting. Calls that name a trail go to `trails` (dispatch routes on
//! `TrailName`).

use chrono::Utc;
use opentrail_model::InsightSelector;
use opentrail_model::selectors::validate_insight_selectors;
use opentrail_operations::inputs::{PutInsightSelectorsInput, TrailNameInput};
use serde_json::{Value, json};

use super::*;
use crate::error::{ErrorCode, ServiceResult};

fn invalid_selectors(message: impl Into<String>) -> ServiceError {
    err(ErrorCode::InvalidInsightSelectors, message)
}

/// The answer of both operations for a source store.
fn insight_shape(source: &EventDataStore) -> Value {
    let mut shape = json!({
        "EventDataStoreArn": source.arn(),
        "InsightSelectors": source.insight_selectors,
    });
    if let Some(destination) = &source.insights_destination {
        shape["InsightsDestination"] = json!(destination);
    }
    shape
}

/// Whether `source`'s selectors log the events `selectors` count: management events, and
/// write management events for `ApiCallRateInsight`. Also checked when a source's selectors
/// change (UpdateEventDataStore), as CloudTrail does.
pub(super) fn check_insight_source(source: &EventDataStore, selectors: &[InsightSelector]) -> ServiceResult<()> {
    if !source.logs_management_events(false) {
        return Err(invalid_selectors(format!(
            "The source event data store {} must log management events to enable Insights.",
            source.arn()
        )));
    }
    let call_rate = selectors.iter().any(|s| s.insight_type.as_deref() == Some("ApiCallRateInsight"));
    if call_rate && !source.logs_management_events(true) {
        return Err(invalid_selectors(format!(
            "ApiCallRateInsight needs the source event data store {} to log write management events.",
            source.arn()
        )));
    }
    Ok(())
}

fn check_active(store: &EventDataStore) -> ServiceResult<()> {
    if store.status == StoreStatus::PendingDeletion {
        return Err(err(
            ErrorCode::InactiveEventDataStore,
            format!("Event data store {} is pending deletion.", store.arn()),
        ));
    }
    Ok(())
}

impl LakeOps<'_> {
    pub fn put_insight_selectors(&mut self, input: PutInsightSelectorsInput) -> ServiceResult<Value> {
        if input.trail_name.is_some() {
            return Err(err(
                ErrorCode::InvalidParameterCombination,
                "Give TrailName, or EventDataStore and InsightsDestination, not both.",
            ));
        }
        let Some(source_reference) = input.event_data_store.clone() else {
            return Err(err(ErrorCode::InvalidParameter, "TrailName or EventDataStore is required."));
        };
        validate_insight_selectors(&input.insight_selectors).map_err(|e| invalid_selectors(e.0))?;
        let selectors = input.insight_selectors.clone();
        // An empty list turns Insights off, which needs no destination.
        if !selectors.is_empty() && input.insights_destination.is_none() {
            return Err(err(
                ErrorCode::InvalidParameterCombination,
                "To enable Insights on an event data store, give both EventDataStore and InsightsDestination.",
            ));
        }
        let outside_management = selectors
            .iter()
            .flat_map(|s| s.event_categories.iter().flatten())
            .find(|category| category.as_str() != "Management");
        if let Some(category) = outside_management {
            return Err(invalid_selectors(format!(
                "Event data stores support Insights on management events only; {category} is not supported."
            )));
        }
        let now = Utc::now().timestamp_millis();
        self.mutate(|state, resources| {
            let mut source = Self::find_store(&state.stores, &source_reference)?.clone();
            check_active(&source)?;
            let destination = match &input.insights_destination {
                Some(reference) => {
                    let destination = Self::find_store(&state.stores, reference)?;
                    check_active(destination)?;
                    if destination.category() != StoreCategory::Insight {
                        return Err(invalid_selectors(format!(
                            "The destination event data store {} must log Insights events (eventCategory Insight).",
                            destination.arn()
                        )));
                    }
                    Self::note_store(resources, destination);
                    Some(destination.arn())
                }
                None => None,
            };
            if !selectors.is_empty() {
                check_insight_source(&source, &selectors)?;
            }
            source.insight_selectors = selectors.clone();
            source.insights_destination = if selectors.is_empty() { None } else { destination };
            source.updated_ms = now;
            Self::note_store(resources, &source);
            Ok((vec![put_store(&source)?], insight_shape(&source)))
        })
    }

    pub fn get_insight_selectors(&mut self, input: TrailNameInput) -> ServiceResult<Value> {
        if input.trail_name.is_some() {
            return Err(err(ErrorCode::InvalidParameterCombination, "Give TrailName or EventDataStore, not both."));
        }
        let Some(reference) = input.event_data_store.as_deref() else {
            return Err(err(ErrorCode::InvalidParameter, "TrailName or EventDataStore is required."));
        };
        let state = self.load()?;
        let source = Self::find_store(&state.stores, reference)?;
        Self::note_store(self.resources, source);
        if source.insight_selectors.is_empty() {
            return Err(err(
                ErrorCode::InsightNotEnabled,
                format!(
                    "Event data store {} does not have Insights enabled. Edit the event data store settings to enable Insights, and then try the operation again.",
                    source.arn()
                ),
            ));
        }
        Ok(insight_shape(source))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Credentials, OpenTrail};

    struct Service {
        _dir: tempfile::TempDir,
        service: std::sync::Arc<OpenTrail>,
    }

    impl Service {
        fn open() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let service =
                OpenTrail::open(dir.path(), Credentials::from_config(&crate::Config::development()).unwrap()).unwrap();
            Self { _dir: dir, service }
        }

        /// The call's answer, or its error code.
        async fn call(&self, operation: &str, input: serde_json::Value) -> Result<serde_json::Value, String> {
            let body = serde_json::to_vec(&input).unwrap();
            let outcome = self.service.handle_call(crate::test_call_info(), operation, &body).await.unwrap();
            outcome.map_err(|error| error.code.aws_type().to_string())
        }

        async fn create_store(&self, name: &str, categories: &[&str], read_only: Option<&str>) -> String {
            let mut fields = vec![serde_json::json!({"Field": "eventCategory", "Equals": categories})];
            if let Some(read_only) = read_only {
                fields.push(serde_json::json!({"Field": "readOnly", "Equals": [read_only]}));
            }
            let input = serde_json::json!({"Name": name, "AdvancedEventSelectors": [{"FieldSelectors": fields}]});
            let created = self.call("CreateEventDataStore", input).await.unwrap();
            created["EventDataStoreArn"].as_str().unwrap().to_string()
        }
    }

    fn call_rate() -> serde_json::Value {
        serde_json::json!([{"InsightType": "ApiCallRateInsight"}])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn insights_on_an_event_data_store_go_to_an_insight_store() {
        let s = Service::open();
        let source = s.create_store("source", &["Management"], None).await;
        let destination = s.create_store("insights", &["Insight"], None).await;
        let source_id = source.rsplit('/').next().unwrap().to_string();

        let missing = serde_json::json!({"EventDataStore": source});
        assert_eq!(s.call("GetInsightSelectors", missing.clone()).await.unwrap_err(), "InsightNotEnabledException");

        let put = serde_json::json!({"EventDataStore": source_id, "InsightsDestination": destination,
                                     "InsightSelectors": call_rate()});
        let answer = s.call("PutInsightSelectors", put).await.unwrap();
        let expected = serde_json::json!({"EventDataStoreArn": source, "InsightsDestination": destination,
                                          "InsightSelectors": call_rate()});
        assert_eq!(answer, expected);
        assert_eq!(s.call("GetInsightSelectors", missing.clone()).await.unwrap(), expected);

        // An empty list turns Insights off (no destination needed).
        let off = serde_json::json!({"EventDataStore": source, "InsightSelectors": []});
        let answer = s.call("PutInsightSelectors", off).await.unwrap();
        assert_eq!(answer, serde_json::json!({"EventDataStoreArn": source, "InsightSelectors": []}));
        assert_eq!(s.call("GetInsightSelectors", missing).await.unwrap_err(), "InsightNotEnabledException");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sources_destinations_and_parameters_are_checked() {
        let s = Service::open();
        let source = s.create_store("source", &["Management"], None).await;
        let reads = s.create_store("reads", &["Management"], Some("true")).await;
        let destination = s.create_store("insights", &["Insight"], None).await;
        let put = |source: &str, destination: Option<&str>, selectors: serde_json::Value| {
            let mut input = serde_json::json!({"EventDataStore": source, "InsightSelectors": selectors});
            if let Some(destination) = destination {
                input["InsightsDestination"] = serde_json::json!(destination);
            }
            input
        };
        let error_rate = serde_json::json!([{"InsightType": "ApiErrorRateInsight"}]);
        let cases = [
            // The destination must log Insights events, the source management events.
            (put(&source, Some(&source), call_rate()), "InvalidInsightSelectorsException"),
            (put(&destination, Some(&destination), call_rate()), "InvalidInsightSelectorsException"),
            // The call rate counts write calls, which a read-only source does not log.
            (put(&reads, Some(&destination), call_rate()), "InvalidInsightSelectorsException"),
            (put(&source, None, call_rate()), "InvalidParameterCombinationException"),
            (
                put(
                    &source,
                    Some(&destination),
                    serde_json::json!([{"InsightType": "ApiCallRateInsight", "EventCategories": ["Data"]}]),
                ),
                "InvalidInsightSelectorsException",
            ),
            (
                put(
                    &source,
                    Some(
                        "arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/00000000-0000-4000-8000-000000000000",
                    ),
                    call_rate(),
                ),
                "EventDataStoreNotFoundException",
            ),
            (
                put(
                    "arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/00000000-0000-4000-8000-000000000000",
                    Some(&destination),
                    call_rate(),
                ),
                "EventDataStoreNotFoundException",
            ),
            (
                serde_json::json!({"TrailName": "t", "EventDataStore": source, "InsightsDestination": destination,
                                   "InsightSelectors": call_rate()}),
                "InvalidParameterCombinationException",
            ),
            (serde_json::json!({"InsightSelectors": call_rate()}), "InvalidParameterException"),
        ];
        for (input, code) in cases {
            assert_eq!(s.call("PutInsightSelectors", input.clone()).await.unwrap_err(), code, "{input}");
        }
        // The error rate counts failed calls of either kind: a read-only source will do.
        s.call("PutInsightSelectors", put(&reads, Some(&destination), error_rate)).await.unwrap();
        // A source's selectors cannot then stop logging what its Insights count.
        let data_only = serde_json::json!({"EventDataStore": reads, "AdvancedEventSelectors": [{"FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}]}]});
        assert_eq!(s.call("UpdateEventDataStore", data_only).await.unwrap_err(), "InvalidInsightSelectorsException");
        let both = serde_json::json!({"TrailName": "t", "EventDataStore": source});
        assert_eq!(s.call("GetInsightSelectors", both).await.unwrap_err(), "InvalidParameterCombinationException");
        // An Insights store takes no ingestion commands, as in CloudTrail.
        let stop = serde_json::json!({"EventDataStore": destination});
        assert_eq!(
            s.call("StopEventDataStoreIngestion", stop).await.unwrap_err(),
            "InvalidEventDataStoreCategoryException"
        );
    }
}
