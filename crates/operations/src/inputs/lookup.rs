//! `LookupEvents`: its input, and the checks of it that need no state.

use chrono::{DateTime, Utc};
use opentrail_model::record::LookupAttribute;
use serde::Deserialize;

use crate::error::{ErrorCode, ServiceError, ServiceResult};

pub const MAX_LOOKUP_RESULTS: i64 = 50;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupAttributeInput {
    pub attribute_key: String,
    pub attribute_value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEventsInput {
    pub lookup_attributes: Option<Vec<LookupAttributeInput>>,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub event_category: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// What a valid `LookupEvents` input asks for (the page token is the history index's to read).
#[derive(Debug, Clone, PartialEq)]
pub struct LookupCriteria {
    pub attributes: Vec<(LookupAttribute, String)>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub insights: bool,
    pub max_results: usize,
}

fn from_epoch(seconds: f64) -> ServiceResult<DateTime<Utc>> {
    if !seconds.is_finite() {
        return Err(ServiceError::new(ErrorCode::InvalidTimeRange, "Times must be finite numbers."));
    }
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
        .ok_or_else(|| ServiceError::new(ErrorCode::InvalidTimeRange, "Time is out of range."))
}

impl LookupEventsInput {
    /// Several attributes are accepted and ANDed (AWS allows only one); each must be a known
    /// key with a 1-2000 character value.
    pub fn criteria(&self, now: DateTime<Utc>) -> ServiceResult<LookupCriteria> {
        let mut attributes = Vec::new();
        for attribute in self.lookup_attributes.iter().flatten() {
            let key = LookupAttribute::parse(&attribute.attribute_key).ok_or_else(|| {
                ServiceError::new(
                    ErrorCode::InvalidLookupAttributes,
                    format!("Unknown lookup attribute key: {}", attribute.attribute_key),
                )
            })?;
            let length = attribute.attribute_value.chars().count();
            if !(1..=2000).contains(&length) {
                return Err(ServiceError::new(
                    ErrorCode::InvalidLookupAttributes,
                    "An AttributeValue must be between 1 and 2000 characters long.",
                ));
            }
            attributes.push((key, attribute.attribute_value.clone()));
        }
        let max_results = self.max_results.unwrap_or(MAX_LOOKUP_RESULTS);
        if !(1..=MAX_LOOKUP_RESULTS).contains(&max_results) {
            return Err(ServiceError::new(
                ErrorCode::InvalidMaxResults,
                format!("MaxResults must be between 1 and {MAX_LOOKUP_RESULTS}."),
            ));
        }
        let insights = match self.event_category.as_deref() {
            None => false,
            Some("insight") => true,
            Some(other) => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidEventCategory,
                    format!("Unknown EventCategory {other}; the only category is insight."),
                ));
            }
        };
        let start = match self.start_time {
            Some(seconds) => from_epoch(seconds)?,
            // CloudTrail's default: from the oldest available event (retention keeps 90 days).
            None => DateTime::UNIX_EPOCH,
        };
        let end = match self.end_time {
            Some(seconds) => from_epoch(seconds)?,
            None => now,
        };
        if start > end {
            return Err(ServiceError::new(ErrorCode::InvalidTimeRange, "StartTime must not be later than EndTime."));
        }
        Ok(LookupCriteria { attributes, start, end, insights, max_results: max_results as usize })
    }
}
