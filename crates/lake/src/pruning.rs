//! Partition pruning: which day folders can hold rows that a query's `eventtime` predicates
//! accept. Each filter DataFusion pushes into a scan is an AND-ed conjunct; the bounds of those
//! that compare `eventtime` with a constant narrow the range, everything else leaves it open.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

use crate::schema::{day_of, parse_time_ms};

/// An inclusive range of day partitions (`YYYY-MM-DD`); `None` is unbounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayRange {
    pub first: Option<String>,
    pub last: Option<String>,
}

impl DayRange {
    pub fn all() -> Self {
        Self::default()
    }

    pub fn contains(&self, day: &str) -> bool {
        self.first.as_deref().is_none_or(|first| day >= first) && self.last.as_deref().is_none_or(|last| day <= last)
    }

    fn raise_first(&mut self, day: String) {
        if self.first.as_ref().is_none_or(|first| &day > first) {
            self.first = Some(day);
        }
    }

    fn lower_last(&mut self, day: String) {
        if self.last.as_ref().is_none_or(|last| &day < last) {
            self.last = Some(day);
        }
    }
}

fn is_event_time(expr: &Expr) -> bool {
    match expr {
        Expr::Column(column) => column.name.eq_ignore_ascii_case("eventtime"),
        Expr::Cast(cast) => is_event_time(&cast.expr),
        Expr::TryCast(cast) => is_event_time(&cast.expr),
        _ => false,
    }
}

/// A constant time in epoch milliseconds.
fn constant_ms(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(value, _) => match value {
            ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1000),
            ScalarValue::TimestampMillisecond(Some(v), _) => Some(*v),
            ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v.div_euclid(1000)),
            ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000_000)),
            ScalarValue::Date32(Some(days)) => Some(i64::from(*days) * 86_400_000),
            ScalarValue::Utf8(Some(text)) | ScalarValue::LargeUtf8(Some(text)) | ScalarValue::Utf8View(Some(text)) => {
                parse_time_ms(text)
            }
            _ => None,
        },
        Expr::Cast(cast) => constant_ms(&cast.expr),
        Expr::TryCast(cast) => constant_ms(&cast.expr),
        _ => None,
    }
}

fn narrow(range: &mut DayRange, filter: &Expr) {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            narrow(range, left);
            narrow(range, right);
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, time) = if is_event_time(left) {
                (*op, constant_ms(right))
            } else if is_event_time(right) {
                match op.swap() {
                    Some(swapped) => (swapped, constant_ms(left)),
                    None => return,
                }
            } else {
                return;
            };
            let Some(time) = time else { return };
            match op {
                Operator::Gt | Operator::GtEq => range.raise_first(day_of(time)),
                Operator::Lt => range.lower_last(day_of(time - 1)),
                Operator::LtEq => range.lower_last(day_of(time)),
                Operator::Eq => {
                    range.raise_first(day_of(time));
                    range.lower_last(day_of(time));
                }
                _ => {}
            }
        }
        Expr::Between(Between { expr, negated: false, low, high }) if is_event_time(expr) => {
            if let Some(low) = constant_ms(low) {
                range.raise_first(day_of(low));
            }
            if let Some(high) = constant_ms(high) {
                range.lower_last(day_of(high));
            }
        }
        _ => {}
    }
}

/// The days a scan with these (AND-ed) filters needs.
pub fn day_range(filters: &[Expr]) -> DayRange {
    let mut range = DayRange::all();
    for filter in filters {
        narrow(&mut range, filter);
    }
    range
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn ts(text: &str) -> Expr {
        lit(ScalarValue::TimestampMillisecond(parse_time_ms(text), None))
    }

    #[test]
    fn time_bounds_narrow_the_days() {
        let filters = [col("eventtime").gt(lit("2023-01-22 00:00:00")), col("eventtime").lt(ts("2023-01-24 00:00:00"))];
        let range = day_range(&filters);
        assert_eq!(range.first.as_deref(), Some("2023-01-22"));
        assert_eq!(range.last.as_deref(), Some("2023-01-23"), "midnight itself is excluded by <");
        assert!(range.contains("2023-01-23") && !range.contains("2023-01-24") && !range.contains("2023-01-21"));
    }

    #[test]
    fn reversed_operands_between_and_other_columns() {
        let filters = [
            ts("2023-02-01 12:00:00").gt_eq(col("eventtime")),
            col("eventtime").between(lit("2023-01-01 00:00:00"), lit("2023-03-01 00:00:00")),
            col("eventname").eq(lit("x")),
        ];
        let range = day_range(&filters);
        assert_eq!((range.first.as_deref(), range.last.as_deref()), (Some("2023-01-01"), Some("2023-02-01")));
        assert_eq!(day_range(&[col("eventname").gt(lit("a"))]), DayRange::all());
    }

    #[test]
    fn or_is_not_narrowed() {
        let filter = col("eventtime").gt(lit("2023-01-22 00:00:00")).or(col("eventname").eq(lit("x")));
        assert_eq!(day_range(&[filter]), DayRange::all());
    }
}
