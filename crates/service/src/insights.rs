//! Insights in the composition root: which trails and event data stores want insights (the
//! consumer's [`SelectionSource`]), and the two read operations, `ListInsightsData` (the
//! Insights events, from Event History) and `ListInsightsMetricData` (the series the consumer
//! keeps).

use std::sync::Arc;

use chrono::Utc;
use opentrail_control::{ControlStore, LakeKind};
use opentrail_insights::{InsightStore, InsightType, SelectionSource, Selections, SeriesKey, SeriesQuery};
use opentrail_model::InsightSelector;
use opentrail_model::lake::{EventDataStore, StoreStatus};
use opentrail_operations::inputs::{
    InsightsDimension, ListInsightsDataInput, ListInsightsMetricDataInput, LookupAttributeInput, LookupEventsInput,
};
use serde_json::{Value, json};

use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::{CallOutcome, Caller, OpenTrail};

/// The trails and event data stores of the control store, as the Insights consumer's gate.
pub(crate) struct ControlSelections {
    pub store: Arc<dyn ControlStore>,
}

fn selected_types(selectors: &[InsightSelector]) -> impl Iterator<Item = InsightType> + '_ {
    selectors.iter().filter_map(|selector| selector.insight_type.as_deref().and_then(InsightType::parse))
}

impl SelectionSource for ControlSelections {
    fn selections(&self) -> Result<Selections, Box<dyn std::error::Error + Send + Sync>> {
        let mut selections = Selections::default();
        for trail in self.store.all_trails()? {
            let region = (!trail.is_multi_region_trail).then_some(trail.home_region.as_str());
            for insight_type in selected_types(&trail.insight_selectors) {
                selections.allow(trail.account.as_str(), region, insight_type);
            }
        }
        for document in self.store.all_lake_documents(LakeKind::EventDataStore)? {
            let store: EventDataStore = serde_json::from_str(&document)?;
            if store.status == StoreStatus::PendingDeletion || store.insights_destination.is_none() {
                continue;
            }
            let region = (!store.multi_region_enabled).then_some(store.region.as_str());
            for insight_type in selected_types(&store.insight_selectors) {
                selections.allow(store.account.as_str(), region, insight_type);
            }
        }
        Ok(selections)
    }
}

fn invalid_token() -> ServiceError {
    ServiceError::new(ErrorCode::InvalidNextToken, "The NextToken is not valid for this request.")
}

/// The trail a metric or data request names, which must have insight selectors.
fn insight_trail(store: &dyn ControlStore, caller: &Caller, name_or_arn: &str) -> ServiceResult<String> {
    let trails = store.load_trails(&caller.principal.account).map_err(ServiceError::internal)?;
    let trail = crate::trails::resolve(caller, &trails.trails, name_or_arn)?;
    if !trail.has_insight_selectors() {
        return Err(ServiceError::new(
            ErrorCode::InsightNotEnabled,
            format!(
                "Trail {} does not have Insights enabled. Edit the trail settings to enable Insights.",
                trail.arn()
            ),
        ));
    }
    Ok(trail.arn())
}

/// One page of a series, with zeros in the periods without calls when asked: the buckets of
/// `[start, end)` aligned to `period`, from `from` on, at most `max_results`.
fn series_page(
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    period: i64,
    from: i64,
    fill_with_zeros: bool,
    max_results: usize,
) -> (Vec<i64>, Vec<f64>, Option<i64>) {
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    let first = start - start.rem_euclid(period);
    let mut next = None;
    if fill_with_zeros {
        let mut points = points.iter().peekable();
        let mut bucket = first.max(from);
        while bucket < end {
            if timestamps.len() == max_results {
                next = Some(bucket);
                break;
            }
            while points.next_if(|(at, _)| *at < bucket).is_some() {}
            let value = points.next_if(|(at, _)| *at == bucket).map_or(0.0, |(_, value)| *value);
            timestamps.push(bucket);
            values.push(value);
            bucket += period;
        }
    } else {
        for (at, value) in points.iter().filter(|(at, _)| *at >= first.max(from) && *at < end) {
            if timestamps.len() == max_results {
                next = Some(*at);
                break;
            }
            timestamps.push(*at);
            values.push(*value);
        }
    }
    (timestamps, values, next)
}

impl OpenTrail {
    /// The Insights consumer's store (metric series).
    pub fn insight_store(&self) -> &Arc<InsightStore> {
        &self.insight_store
    }

    pub(crate) async fn list_insights_metric_data(
        &self,
        caller: &Caller,
        input: ListInsightsMetricDataInput,
    ) -> CallOutcome {
        let criteria = input.criteria()?;
        let now = Utc::now().timestamp();
        let period = i64::from(criteria.period);
        let kept = opentrail_insights::retention_seconds(criteria.period).expect("the input allows kept periods only");
        let end = criteria.end.unwrap_or(now);
        // Points older than their period's retention are gone; a range before it is empty.
        let start = criteria.start.unwrap_or(end - 90 * 86_400).max(now - kept);
        let from = match &input.next_token {
            Some(token) => {
                let at: i64 = token.strip_prefix("t").and_then(|at| at.parse().ok()).ok_or_else(invalid_token)?;
                if at < start - period || at >= end || at.rem_euclid(period) != 0 {
                    return Err(invalid_token());
                }
                at
            }
            None => i64::MIN,
        };
        let store = self.store.clone();
        let insight_store = self.insight_store.clone();
        let caller = caller.clone();
        let insight_type = InsightType::parse(&input.insight_type).expect("the input allows known types only");
        tokio::task::spawn_blocking(move || {
            let trail_arn = match &input.trail_name {
                Some(name) => Some(insight_trail(store.as_ref(), &caller, name)?),
                None => None,
            };
            let key = SeriesKey {
                insight_type,
                event_source: input.event_source.clone(),
                event_name: input.event_name.clone(),
                error_code: criteria.error_code.clone(),
            };
            let points = if start < end {
                insight_store
                    .series(&SeriesQuery {
                        account: caller.principal.account.as_str(),
                        region: caller.region.as_str(),
                        key: &key,
                        period: criteria.period,
                        start: start - start.rem_euclid(period),
                        end,
                    })
                    .map_err(ServiceError::internal)?
            } else {
                Vec::new()
            };
            let (timestamps, values, next) =
                series_page(&points, start, end, period, from, criteria.fill_with_zeros, criteria.max_results);
            let mut output = json!({
                "EventSource": input.event_source,
                "EventName": input.event_name,
                "InsightType": input.insight_type,
                "Timestamps": timestamps,
                "Values": values,
            });
            if let Some(arn) = trail_arn {
                output["TrailARN"] = json!(arn);
            }
            if let Some(code) = criteria.error_code {
                output["ErrorCode"] = json!(code);
            }
            if let Some(next) = next {
                output["NextToken"] = json!(format!("t{next}"));
            }
            Ok(output)
        })
        .await
        .map_err(ServiceError::internal)?
    }

    /// `ListInsightsData`: the Insights events of the source trail's account and Region, from
    /// Event History, filtered by one dimension.
    pub(crate) async fn list_insights_data(&self, caller: &Caller, input: ListInsightsDataInput) -> CallOutcome {
        let criteria = input.criteria()?;
        let store = self.store.clone();
        let checked = caller.clone();
        let source = input.insight_source.clone();
        tokio::task::spawn_blocking(move || insight_trail(store.as_ref(), &checked, &source))
            .await
            .map_err(ServiceError::internal)??;
        let lookup_attributes = criteria.dimension.map(|(dimension, value)| {
            let key = match dimension {
                InsightsDimension::EventId => "EventId",
                InsightsDimension::EventName => "EventName",
                InsightsDimension::EventSource => "EventSource",
            };
            vec![LookupAttributeInput { attribute_key: key.into(), attribute_value: value }]
        });
        let lookup = LookupEventsInput {
            lookup_attributes,
            start_time: criteria.start.map(|seconds| seconds as f64),
            end_time: criteria.end.map(|seconds| seconds as f64),
            event_category: Some("insight".into()),
            max_results: Some(criteria.max_results as i64),
            next_token: input.next_token,
        };
        let page: Value = self.lookup(caller, lookup).await?;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_page_fills_zeros_or_keeps_only_points_and_pages_on() {
        let points = [(120, 2.0), (300, 5.0)];
        let (timestamps, values, next) = series_page(&points, 70, 360, 60, i64::MIN, true, 10);
        assert_eq!(timestamps, [60, 120, 180, 240, 300]);
        assert_eq!(values, [0.0, 2.0, 0.0, 0.0, 5.0]);
        assert_eq!(next, None);
        let (timestamps, _, next) = series_page(&points, 70, 360, 60, i64::MIN, true, 2);
        assert_eq!((timestamps, next), (vec![60, 120], Some(180)));
        let (timestamps, values, _) = series_page(&points, 70, 360, 60, 180, true, 10);
        assert_eq!((timestamps, values), (vec![180, 240, 300], vec![0.0, 0.0, 5.0]));
        let (timestamps, values, next) = series_page(&points, 0, 360, 60, i64::MIN, false, 1);
        assert_eq!((timestamps, values, next), (vec![120], vec![2.0], Some(300)));
    }
}
