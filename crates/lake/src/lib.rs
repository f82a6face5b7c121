//! CloudTrail Lake on open files: event data stores as Hive-partitioned Parquet tables, written
//! from the journal by a durable consumer and by imports, and queried with CloudTrail Lake's
//! Trino-flavoured SQL through a dialect bridge onto DataFusion.
//!
//! - [`schema`]: the column schemas and record-to-row conversion.
//! - [`tables`]: the table seam ([`tables::LakeTables`]) and its Parquet implementation.
//! - [`writer`]: the journal consumer that fills stores exactly once.
//! - [`sql`]: the dialect bridge; [`functions`]: Trino functions; [`engine`]: execution.
//! - [`queries`]: the query lifecycle; [`limits`]: what one query may cost.

pub mod engine;
pub mod functions;
pub mod import;
pub mod limits;
pub mod pruning;
pub mod queries;
pub mod schema;
/// The dialect bridge is its own crate (no DataFusion), which the lake_sql fuzz target builds
/// in seconds; `opentrail_lake::sql` paths keep working.
pub use opentrail_lake_sql as sql;
mod stop;
pub mod tables;
pub mod writer;

pub use engine::{QueryEngine, QueryOutput};
pub use limits::QueryLimits;
pub use queries::{QueryResults, QueryService, StartQueryError};
pub use tables::{LakeTables, ParquetLake, ReadLease};
pub use writer::{CONSUMER_NAME, LakeWriter};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("Arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("Parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("object store: {0}")]
    ObjectStore(#[from] datafusion::object_store::Error),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("control store: {0}")]
    Store(#[from] opentrail_control::StoreError),
    #[error("journal: {0}")]
    Journal(#[from] opentrail_journal::JournalError),
    #[error("stored Lake state could not be decoded: {0}")]
    Decode(#[from] serde_json::Error),
    /// The answer passed the result caps (the message names them).
    #[error("{0}")]
    ResultsTooLarge(String),
    #[error("Lake query limits: {0}")]
    Limits(String),
    #[error("I/O on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}
