//! Stopping a query's work, not only its answer. Tokio aborts a query's task only between
//! polls, and one poll of a nested-loop join probes a whole batch against every buffered row
//! without yielding while its filter matches nothing. So the join's filter is wrapped in an
//! expression that checks the query's [`StopSignal`] each time it is evaluated (once per chunk of
//! at most a batch of rows): CancelQuery and the timeout end the work within one chunk.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use datafusion::arrow::datatypes::{FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::NestedLoopJoinExec;
use datafusion::physical_plan::joins::utils::JoinFilter;

/// Raised by CancelQuery; passed once the query's time is up.
#[derive(Debug, Clone)]
pub struct StopSignal {
    raised: Arc<AtomicBool>,
    deadline: Instant,
}

impl StopSignal {
    pub fn new(deadline: Instant) -> Self {
        Self { raised: Arc::new(AtomicBool::new(false)), deadline }
    }

    pub fn raise(&self) {
        self.raised.store(true, Ordering::Relaxed);
    }

    pub fn timed_out(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn check(&self) -> Result<()> {
        match self.raised.load(Ordering::Relaxed) || self.timed_out() {
            true => Err(DataFusionError::Execution("the query was stopped".into())),
            false => Ok(()),
        }
    }
}

/// `plan` with every nested-loop join's filter checking `signal`.
pub fn stoppable(plan: Arc<dyn ExecutionPlan>, signal: &StopSignal) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(join) = node.downcast_ref::<NestedLoopJoinExec>() else { return Ok(Transformed::no(node)) };
        let Some(filter) = join.filter() else { return Ok(Transformed::no(node)) };
        let checked = JoinFilter::new(
            Arc::new(StopCheck { inner: filter.expression().clone(), signal: signal.clone() }),
            filter.column_indices().to_vec(),
            filter.schema().clone(),
        );
        let projection = join.projection().as_ref().map(|columns| columns.to_vec());
        let rebuilt = NestedLoopJoinExec::try_new(
            join.left().clone(),
            join.right().clone(),
            Some(checked),
            join.join_type(),
            projection,
        )?;
        Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>))
    })
    .map(|transformed| transformed.data)
}

/// An expression that is `inner`, evaluated only while the query may go on.
#[derive(Debug)]
struct StopCheck {
    inner: Arc<dyn PhysicalExpr>,
    signal: StopSignal,
}

impl PartialEq for StopCheck {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_ref() == other.inner.as_ref()
    }
}

impl Eq for StopCheck {}

impl Hash for StopCheck {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl fmt::Display for StopCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl PhysicalExpr for StopCheck {
    fn data_type(&self, input_schema: &Schema) -> Result<datafusion::arrow::datatypes::DataType> {
        self.inner.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.inner.nullable(input_schema)
    }

    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        self.signal.check()?;
        self.inner.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        let [inner] =
            <[_; 1]>::try_from(children).map_err(|_| DataFusionError::Internal("a stop check has one child".into()))?;
        Ok(Arc::new(Self { inner, signal: self.signal.clone() }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}
