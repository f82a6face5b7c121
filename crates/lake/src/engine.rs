//! Runs bridged statements on DataFusion over the lake's tables and turns the answer into
//! CloudTrail Lake's shape: every value a string (timestamps `YYYY-MM-DD HH:MM:SS.mmm`, maps
//! and structs as Trino prints them), plus the scan statistics `DescribeQuery` reports.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use datafusion::arrow::array::{Array, AsArray, MapArray, StructArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::sql::parser::Statement as DFStatement;
use opentrail_model::lake::{QueryStatistics, StoreCategory};
use url::Url;

use crate::limits::QueryLimits;
use crate::schema::{canonical_name, schema_for};
use crate::sql::BridgedQuery;
use crate::stop::{StopSignal, stoppable};
use crate::tables::{LAKE_URL, LakeTables, ParquetLake};
use crate::{LakeError, functions};

/// A query's answer: column names and rows of optional strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOutput {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub statistics: QueryStatistics,
}

pub struct QueryEngine {
    tables: Arc<ParquetLake>,
    target_partitions: usize,
    limits: QueryLimits,
    /// Shared by every query: its caches keep Parquet footers between queries (files are never
    /// rewritten in place, so a cached footer stays true).
    runtime: Arc<RuntimeEnv>,
}

/// A planned query: planning errors (unknown columns, type errors) surface at `StartQuery`.
pub struct PlannedQuery {
    context: SessionContext,
    limits: QueryLimits,
    plan: datafusion::logical_expr::LogicalPlan,
    column_names: Option<Vec<String>>,
    /// CancelQuery and the timeout, checked inside long operators (see `stop`).
    stop: Option<StopSignal>,
}

impl PlannedQuery {
    /// Lets `signal` end the query's work from outside its task.
    pub fn stopped_by(mut self, signal: StopSignal) -> Self {
        self.stop = Some(signal);
        self
    }
}

impl QueryEngine {
    pub fn new(tables: Arc<ParquetLake>) -> Self {
        Self::with_limits(tables, QueryLimits::default())
    }

    pub fn with_limits(tables: Arc<ParquetLake>, limits: QueryLimits) -> Self {
        let target_partitions = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = Arc::new(RuntimeEnv::default());
        runtime.register_object_store(&Url::parse(LAKE_URL).expect("constant URL"), tables.object_store());
        Self { tables, target_partitions, limits, runtime }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// A session of its own per query: the shared caches and object stores, but a memory pool
    /// of `memory_bytes` so that one query's joins, sorts and aggregations fail with
    /// `ResourcesExhausted` instead of taking the process's memory. Spilling is off: a spill
    /// would trade the memory bound for an unbounded use of the disk.
    fn context(&self, limits: &QueryLimits) -> Result<SessionContext, DataFusionError> {
        let mut config = SessionConfig::new().with_target_partitions(self.target_partitions);
        config.options_mut().sql_parser.enable_ident_normalization = true;
        config.options_mut().execution.parquet.pushdown_filters = true;
        let pool = TrackConsumersPool::new(
            GreedyMemoryPool::new(limits.memory_bytes),
            NonZeroUsize::new(3).expect("non-zero"),
        );
        let runtime = RuntimeEnvBuilder::from_runtime_env(&self.runtime)
            .with_memory_pool(Arc::new(pool))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .build_arc()?;
        let context = SessionContext::new_with_config_rt(config, runtime);
        functions::register(&context);
        Ok(context)
    }

    /// Plans a bridged statement over the given stores (ID and category each).
    pub async fn plan(
        &self,
        query: &BridgedQuery,
        stores: &[(String, StoreCategory)],
    ) -> Result<PlannedQuery, DataFusionError> {
        self.plan_limited(query, stores, &self.limits).await
    }

    /// [`Self::plan`] with limits of the caller's choosing.
    pub async fn plan_limited(
        &self,
        query: &BridgedQuery,
        stores: &[(String, StoreCategory)],
        limits: &QueryLimits,
    ) -> Result<PlannedQuery, DataFusionError> {
        let context = self.context(limits)?;
        for (id, category) in stores {
            let table = self.tables.clone().table(id, schema_for(*category));
            context.register_table(id.as_str(), table)?;
        }
        let statement = DFStatement::Statement(Box::new(query.statement.clone()));
        let plan = context.state().statement_to_plan(statement).await?;
        Ok(PlannedQuery { context, limits: limits.clone(), plan, column_names: query.column_names.clone(), stop: None })
    }

    /// Runs a planned query to completion, reading its answer batch by batch so that the
    /// result caps stop it as soon as they are passed (dropping the stream stops every
    /// partition's work).
    pub async fn execute(&self, planned: PlannedQuery) -> Result<QueryOutput, LakeError> {
        let started = Instant::now();
        // The scans list their files while the physical plan is made and read them until the
        // end: nothing listed may be deleted before then.
        let _lease = self.tables.read_lease();
        let frame = planned.context.execute_logical_plan(planned.plan).await?;
        let mut physical = frame.create_physical_plan().await?;
        if let Some(signal) = &planned.stop {
            physical = stoppable(physical, signal)?;
        }
        let mut stream = execute_stream(physical.clone(), planned.context.task_ctx())?;
        let schema = physical.schema();
        let columns = match planned.column_names {
            Some(names) if names.len() == schema.fields().len() => names,
            _ => schema.fields().iter().map(|field| canonical_name(field.name()).to_string()).collect(),
        };
        let mut rows = Vec::new();
        let mut bytes = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            for row in 0..batch.num_rows() {
                let values: Vec<Option<String>> = batch
                    .columns()
                    .iter()
                    .map(|column| format_value(column.as_ref(), row))
                    .collect::<Result<_, _>>()?;
                // What a row costs once stored: its text plus a cell's bookkeeping.
                bytes += values.iter().map(|v| v.as_ref().map_or(0, String::len) as u64 + 24).sum::<u64>();
                rows.push(values);
                let limits = &planned.limits;
                if rows.len() as u64 > limits.max_result_rows || bytes > limits.max_result_bytes {
                    return Err(LakeError::ResultsTooLarge(limits.results_message()));
                }
            }
        }
        drop(stream);
        let mut statistics = scan_statistics(physical.as_ref());
        statistics.results_count = rows.len() as u64;
        statistics.execution_time_ms = started.elapsed().as_millis() as u64;
        Ok(QueryOutput { columns, rows, statistics })
    }
}

/// Events scanned and matched and bytes read, from the scans' metrics: a scan's output rows are
/// the events scanned; those that pass a filter right above it are the events matched.
fn scan_statistics(plan: &dyn ExecutionPlan) -> QueryStatistics {
    fn walk(plan: &dyn ExecutionPlan, statistics: &mut QueryStatistics) {
        let is_scan = |p: &dyn ExecutionPlan| p.name() == "DataSourceExec";
        if is_scan(plan) {
            let metrics = plan.metrics().unwrap_or_default();
            let rows = metrics.output_rows().unwrap_or_default() as u64;
            statistics.events_scanned += rows;
            statistics.events_matched += rows;
            statistics.bytes_scanned += metrics.sum_by_name("bytes_scanned").map_or(0, |v| v.as_usize() as u64);
            return;
        }
        if plan.name() == "FilterExec"
            && let [child] = plan.children().as_slice()
            && is_scan(child.as_ref())
        {
            let before = statistics.events_matched;
            walk(child.as_ref(), statistics);
            let scanned_here = statistics.events_matched - before;
            let passed = plan.metrics().and_then(|m| m.output_rows()).unwrap_or(scanned_here as usize) as u64;
            statistics.events_matched = before + passed.min(scanned_here);
            return;
        }
        for child in plan.children() {
            walk(child.as_ref(), statistics);
        }
    }
    let mut statistics = QueryStatistics::default();
    walk(plan, &mut statistics);
    statistics
}

/// One value as CloudTrail Lake prints it; `None` for SQL NULL.
pub fn format_value(array: &dyn Array, row: usize) -> Result<Option<String>, LakeError> {
    if array.is_null(row) {
        return Ok(None);
    }
    let text = match array.data_type() {
        DataType::Timestamp(..) => {
            let millis = datafusion::arrow::compute::cast(
                &array.slice(row, 1),
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )?;
            let millis = millis.as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().value(0);
            chrono::DateTime::from_timestamp_millis(millis)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_default()
        }
        DataType::Struct(fields) => {
            let structure = array.as_any().downcast_ref::<StructArray>().expect("struct type");
            let mut parts = Vec::with_capacity(fields.len());
            for (field, column) in fields.iter().zip(structure.columns()) {
                let value = format_value(column.as_ref(), row)?.unwrap_or_else(|| "null".into());
                parts.push(format!("{}={value}", field.name()));
            }
            format!("{{{}}}", parts.join(", "))
        }
        DataType::Map(..) => {
            let map = array.as_any().downcast_ref::<MapArray>().expect("map type");
            let entries = map.value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut parts = Vec::with_capacity(entries.len());
            for index in 0..entries.len() {
                let key = format_value(keys.as_ref(), index)?.unwrap_or_default();
                let value = format_value(values.as_ref(), index)?.unwrap_or_else(|| "null".into());
                parts.push(format!("{key}={value}"));
            }
            format!("{{{}}}", parts.join(", "))
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            let mut parts = Vec::with_capacity(list.len());
            for index in 0..list.len() {
                parts.push(format_value(list.as_ref(), index)?.unwrap_or_else(|| "null".into()));
            }
            format!("[{}]", parts.join(", "))
        }
        _ => ArrayFormatter::try_new(array, &FormatOptions::default())?.value(row).to_string(),
    };
    Ok(Some(text))
}
