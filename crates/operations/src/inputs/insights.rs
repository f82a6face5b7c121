//! `ListInsightsData` and `ListInsightsMetricData`: inputs and the checks that need no state.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{ErrorCode, ServiceError, ServiceResult};

pub const MAX_INSIGHTS_DATA_RESULTS: i64 = 50;
pub const MAX_METRIC_DATA_RESULTS: i64 = 21_600;
/// The periods CloudTrail keeps Insights metrics at.
pub const METRIC_PERIODS: [i64; 3] = [60, 300, 3600];
pub const INSIGHT_TYPES: [&str; 2] = ["ApiCallRateInsight", "ApiErrorRateInsight"];

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorCode::InvalidParameter, message)
}

fn seconds(value: Option<f64>, name: &str) -> ServiceResult<Option<i64>> {
    match value {
        None => Ok(None),
        Some(seconds) if seconds.is_finite() && seconds.abs() < 1e12 => Ok(Some(seconds.floor() as i64)),
        Some(_) => Err(invalid(format!("{name} is not a valid time."))),
    }
}

fn time_range(start: Option<i64>, end: Option<i64>) -> ServiceResult<()> {
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        return Err(invalid("StartTime must not be later than EndTime."));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInsightsDataInput {
    pub insight_source: String,
    pub data_type: String,
    pub dimensions: Option<BTreeMap<String, String>>,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// The one dimension a `ListInsightsData` call filters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsightsDimension {
    EventId,
    EventName,
    EventSource,
}

/// A valid `ListInsightsData` request.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightsDataCriteria {
    pub dimension: Option<(InsightsDimension, String)>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub max_results: usize,
}

impl ListInsightsDataInput {
    pub fn criteria(&self) -> ServiceResult<InsightsDataCriteria> {
        if self.data_type != "InsightsEvents" {
            return Err(invalid(format!("Unknown DataType {}; the only type is InsightsEvents.", self.data_type)));
        }
        let dimension = match self.dimensions.as_ref() {
            None => None,
            Some(dimensions) if dimensions.len() == 1 => {
                let (key, value) = dimensions.iter().next().expect("one entry");
                let dimension = match key.as_str() {
                    "EventId" => InsightsDimension::EventId,
                    "EventName" => InsightsDimension::EventName,
                    "EventSource" => InsightsDimension::EventSource,
                    other => return Err(invalid(format!("Unknown dimension {other}."))),
                };
                if !(1..=2000).contains(&value.chars().count()) {
                    return Err(invalid("A dimension value must be 1 to 2000 characters long."));
                }
                Some((dimension, value.clone()))
            }
            Some(_) => return Err(invalid("Dimensions takes exactly one of EventId, EventName, EventSource.")),
        };
        let max_results = self.max_results.unwrap_or(MAX_INSIGHTS_DATA_RESULTS);
        if !(1..=MAX_INSIGHTS_DATA_RESULTS).contains(&max_results) {
            return Err(invalid(format!("MaxResults must be between 1 and {MAX_INSIGHTS_DATA_RESULTS}.")));
        }
        let (start, end) = (seconds(self.start_time, "StartTime")?, seconds(self.end_time, "EndTime")?);
        time_range(start, end)?;
        Ok(InsightsDataCriteria { dimension, start, end, max_results: max_results as usize })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInsightsMetricDataInput {
    pub trail_name: Option<String>,
    pub event_source: String,
    pub event_name: String,
    pub insight_type: String,
    pub error_code: Option<String>,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub period: Option<i64>,
    pub data_type: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// A valid `ListInsightsMetricData` request (times in seconds; defaults are the caller's).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDataCriteria {
    pub error_code: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub period: u32,
    pub fill_with_zeros: bool,
    pub max_results: usize,
}

fn valid_event_source(source: &str) -> bool {
    source.strip_suffix(".amazonaws.com").is_some_and(|service| {
        !service.is_empty()
            && service.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    })
}

impl ListInsightsMetricDataInput {
    pub fn criteria(&self) -> ServiceResult<MetricDataCriteria> {
        if !valid_event_source(&self.event_source) {
            return Err(invalid("EventSource must match ^[a-z0-9_-]+\\.amazonaws\\.com$."));
        }
        if !(1..=128).contains(&self.event_name.len()) {
            return Err(invalid("EventName must be 1 to 128 characters long."));
        }
        if !INSIGHT_TYPES.contains(&self.insight_type.as_str()) {
            return Err(invalid(format!("Unknown InsightType {}.", self.insight_type)));
        }
        let error_code = match (self.insight_type.as_str(), self.error_code.as_deref()) {
            ("ApiErrorRateInsight", None | Some("")) => {
                return Err(invalid("ErrorCode is required for the ApiErrorRateInsight type."));
            }
            ("ApiErrorRateInsight", Some(code)) if code.len() > 128 => {
                return Err(invalid("ErrorCode must be at most 128 characters long."));
            }
            ("ApiErrorRateInsight", Some(code)) => Some(code.to_owned()),
            _ => None,
        };
        let period = self.period.unwrap_or(3600);
        if !METRIC_PERIODS.contains(&period) {
            return Err(invalid("Period must be 60, 300 or 3600."));
        }
        let fill_with_zeros = match self.data_type.as_deref() {
            None | Some("FillWithZeros") => true,
            Some("NonZeroData") => false,
            Some(other) => return Err(invalid(format!("Unknown DataType {other}: use FillWithZeros or NonZeroData."))),
        };
        let max_results = self.max_results.unwrap_or(MAX_METRIC_DATA_RESULTS);
        if !(1..=MAX_METRIC_DATA_RESULTS).contains(&max_results) {
            return Err(invalid(format!("MaxResults must be between 1 and {MAX_METRIC_DATA_RESULTS}.")));
        }
        if self.next_token.as_ref().is_some_and(|token| !(1..=5000).contains(&token.len())) {
            return Err(ServiceError::new(ErrorCode::InvalidNextToken, "The NextToken is not valid for this request."));
        }
        let (start, end) = (seconds(self.start_time, "StartTime")?, seconds(self.end_time, "EndTime")?);
        time_range(start, end)?;
        Ok(MetricDataCriteria {
            error_code,
            start,
            end,
            period: period as u32,
            fill_with_zeros,
            max_results: max_results as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::decode_input;

    fn metric(body: serde_json::Value) -> ServiceResult<MetricDataCriteria> {
        decode_input::<ListInsightsMetricDataInput>(body)?.criteria()
    }

    #[test]
    fn metric_data_inputs_are_checked_as_cloudtrail_documents_them() {
        let base = json!({"EventSource": "ec2.amazonaws.com", "EventName": "RunInstances", "InsightType": "ApiCallRateInsight"});
        let criteria = metric(base.clone()).unwrap();
        assert_eq!((criteria.period, criteria.fill_with_zeros, criteria.max_results), (3600, true, 21_600));
        let with = |key: &str, value: serde_json::Value| {
            let mut body = base.clone();
            body[key] = value;
            metric(body)
        };
        assert_eq!(with("Period", json!(120)).unwrap_err().code, ErrorCode::InvalidParameter);
        assert_eq!(with("Period", json!(60)).unwrap().period, 60);
        assert!(!with("DataType", json!("NonZeroData")).unwrap().fill_with_zeros);
        assert_eq!(with("DataType", json!("Zeros")).unwrap_err().code, ErrorCode::InvalidParameter);
        assert_eq!(with("EventSource", json!("EC2.amazonaws.com")).unwrap_err().code, ErrorCode::InvalidParameter);
        assert_eq!(with("InsightType", json!("ApiErrorRateInsight")).unwrap_err().code, ErrorCode::InvalidParameter);
        let mut errors = base.clone();
        errors["InsightType"] = json!("ApiErrorRateInsight");
        errors["ErrorCode"] = json!("AccessDenied");
        assert_eq!(metric(errors).unwrap().error_code.as_deref(), Some("AccessDenied"));
        assert_eq!(with("MaxResults", json!(21_601)).unwrap_err().code, ErrorCode::InvalidParameter);
        let mut backwards = base.clone();
        backwards["StartTime"] = json!(200);
        backwards["EndTime"] = json!(100);
        assert_eq!(metric(backwards).unwrap_err().code, ErrorCode::InvalidParameter);
        assert_eq!(metric(json!({"EventSource": "ec2.amazonaws.com"})).unwrap_err().code, ErrorCode::Validation);
    }

    #[test]
    fn insights_data_takes_one_dimension() {
        let data = |body| decode_input::<ListInsightsDataInput>(body).and_then(|input| input.criteria());
        let arn = "arn:aws:cloudtrail:us-east-1:111111111111:trail/t";
        let ok = data(
            json!({"InsightSource": arn, "DataType": "InsightsEvents", "Dimensions": {"EventName": "RunInstances"}}),
        );
        assert_eq!(ok.unwrap().dimension, Some((InsightsDimension::EventName, "RunInstances".into())));
        let two = data(
            json!({"InsightSource": arn, "DataType": "InsightsEvents", "Dimensions": {"EventName": "a", "EventId": "b"}}),
        );
        assert_eq!(two.unwrap_err().code, ErrorCode::InvalidParameter);
        let bad_type = data(json!({"InsightSource": arn, "DataType": "Events"}));
        assert_eq!(bad_type.unwrap_err().code, ErrorCode::InvalidParameter);
        assert_eq!(
            data(json!({"InsightSource": arn, "DataType": "InsightsEvents", "MaxResults": 51})).unwrap_err().code,
            ErrorCode::InvalidParameter
        );
    }
}
