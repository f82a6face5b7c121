//! What one query may cost, so that no statement can stop the server for every tenant:
//!
//! - expression depth, checked on the parsed statement before planning (the planner and
//!   optimizer recurse once per level; a statement is at most 10,000 characters, which bounds
//!   its size);
//! - memory, a DataFusion pool of its own per query (joins, sorts, aggregations), without
//!   spilling to disk;
//! - the answer, in rows and bytes, counted while it is produced;
//! - time (the timeout) and the threads' stacks, which the query runtime sizes so that any
//!   statement within the depth limit plans and runs.
//!
//! Each limit has a default and an environment variable that overrides it (read once, when the
//! server starts).

use std::time::Duration;

// The depth limit and the stack it needs belong to the dialect bridge, which checks the depth
// (a crate of its own, so the lake_sql fuzz target builds without DataFusion).
pub use opentrail_lake_sql::{MAX_EXPRESSION_DEPTH, QUERY_STACK_BYTES};

pub const DEFAULT_MEMORY_BYTES: usize = 512 * 1024 * 1024;
pub const DEFAULT_MAX_RESULT_ROWS: u64 = 1_000_000;
pub const DEFAULT_MAX_RESULT_BYTES: u64 = 256 * 1024 * 1024;
/// CloudTrail Lake's own limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

pub const MEMORY_ENV: &str = "OPENTRAIL_LAKE_QUERY_MEMORY_MB";
pub const RESULT_ROWS_ENV: &str = "OPENTRAIL_LAKE_MAX_RESULT_ROWS";
pub const RESULT_BYTES_ENV: &str = "OPENTRAIL_LAKE_MAX_RESULT_MB";
pub const TIMEOUT_ENV: &str = "OPENTRAIL_LAKE_QUERY_TIMEOUT_SECONDS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// The memory pool of one query.
    pub memory_bytes: usize,
    pub max_result_rows: u64,
    /// The answer's text, plus a little per value.
    pub max_result_bytes: u64,
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_result_rows: DEFAULT_MAX_RESULT_ROWS,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} must be a positive whole number, not {value:?}")]
pub struct LimitsError {
    pub variable: &'static str,
    pub value: String,
}

impl QueryLimits {
    /// The defaults, each overridden by its environment variable when that is set.
    pub fn from_env() -> Result<Self, LimitsError> {
        Self::from_lookup(|name| std::env::var(name).ok(), Self::default())
    }

    /// `base`, each limit overridden by what `lookup` gives for its variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, base: Self) -> Result<Self, LimitsError> {
        let number = |variable: &'static str| -> Result<Option<u64>, LimitsError> {
            match lookup(variable) {
                None => Ok(None),
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(LimitsError { variable, value }),
                },
            }
        };
        let mut limits = base;
        if let Some(mb) = number(MEMORY_ENV)? {
            limits.memory_bytes = usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        }
        if let Some(rows) = number(RESULT_ROWS_ENV)? {
            limits.max_result_rows = rows;
        }
        if let Some(mb) = number(RESULT_BYTES_ENV)? {
            limits.max_result_bytes = mb.saturating_mul(1024 * 1024);
        }
        if let Some(seconds) = number(TIMEOUT_ENV)? {
            limits.timeout = Duration::from_secs(seconds);
        }
        Ok(limits)
    }

    pub fn memory_message(&self) -> String {
        format!(
            "The query needs more than {} MB of memory, the limit for one query. Narrow it: bound eventTime, \
             select fewer columns, filter before joining, or aggregate.",
            self.memory_bytes / (1024 * 1024)
        )
    }

    pub fn results_message(&self) -> String {
        format!(
            "The query's results exceed the limit of {} rows or {} MB. Add a LIMIT, aggregate, or narrow the \
             query.",
            self.max_result_rows,
            self.max_result_bytes / (1024 * 1024)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_each_default_and_refuses_nonsense() {
        let lookup = |name: &str| match name {
            MEMORY_ENV => Some("64".into()),
            RESULT_ROWS_ENV => Some("10".into()),
            TIMEOUT_ENV => Some(" 5 ".into()),
            _ => None,
        };
        let limits = QueryLimits::from_lookup(lookup, QueryLimits::default()).unwrap();
        assert_eq!(limits.memory_bytes, 64 * 1024 * 1024);
        assert_eq!(limits.max_result_rows, 10);
        assert_eq!(limits.max_result_bytes, DEFAULT_MAX_RESULT_BYTES);
        assert_eq!(limits.timeout, Duration::from_secs(5));
        assert_eq!(QueryLimits::from_lookup(|_| None, QueryLimits::default()).unwrap(), QueryLimits::default());
        for bad in ["0", "-1", "lots", ""] {
            let lookup = |name: &str| (name == RESULT_BYTES_ENV).then(|| bad.to_string());
            let error = QueryLimits::from_lookup(lookup, QueryLimits::default());
            assert_eq!(error.unwrap_err().variable, RESULT_BYTES_ENV, "{bad:?}");
        }
    }
}
