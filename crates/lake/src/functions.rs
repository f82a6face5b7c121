//! Trino functions that CloudTrail Lake queries use and DataFusion lacks or spells differently,
//! as DataFusion scalar functions with Trino's semantics: `element_at` on maps returns the
//! value (DataFusion's returns a one-element list), JSON path functions, Trino's date
//! arithmetic and field functions, and `contains` on arrays.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDateTime, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Int64Array, Int64Builder, ListArray, MapArray,
    StringBuilder, TimestampMillisecondBuilder, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::common::{Result, exec_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use serde_json::Value;

type Invoke = fn(&[ArrayRef], usize) -> Result<ArrayRef>;
type ReturnType = fn(&[DataType]) -> Result<DataType>;

/// A scalar function given by its name, argument count and two plain functions. Functions are
/// equal when their names are (a name is registered once).
#[derive(Debug)]
struct TrinoFunction {
    name: &'static str,
    signature: Signature,
    return_type: ReturnType,
    invoke: Invoke,
}

impl PartialEq for TrinoFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TrinoFunction {}

impl std::hash::Hash for TrinoFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for TrinoFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        (self.return_type)(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args.args.iter().all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = if all_scalar { 1 } else { args.number_rows };
        let result = (self.invoke)(&arrays, rows)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&result, 0)?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

fn function(name: &'static str, arity: usize, return_type: ReturnType, invoke: Invoke) -> ScalarUDF {
    let signature = Signature::any(arity, Volatility::Immutable);
    ScalarUDF::new_from_impl(TrinoFunction { name, signature, return_type, invoke })
}

fn utf8(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Utf8)
}

fn int64(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Int64)
}

fn boolean(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Boolean)
}

fn timestamp(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Timestamp(TimeUnit::Millisecond, None))
}

fn date(_: &[DataType]) -> Result<DataType> {
    Ok(DataType::Date32)
}

/// Any array as text values (null where the value is null).
fn strings(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let text = cast(array, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    Ok((0..text.len()).map(|i| text.is_valid(i).then(|| text.value(i).to_string())).collect())
}

fn integers(array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let numbers = cast(array, &DataType::Int64)?;
    let numbers = numbers.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    Ok((0..numbers.len()).map(|i| numbers.is_valid(i).then(|| numbers.value(i))).collect())
}

/// Any timestamp (of any unit or zone) or time text as epoch milliseconds.
fn times(array: &ArrayRef) -> Result<Vec<Option<NaiveDateTime>>> {
    let millis = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            return Ok(strings(array)?
                .into_iter()
                .map(|text| {
                    text.and_then(|t| crate::schema::parse_time_ms(&t)).and_then(DateTime::from_timestamp_millis)
                })
                .map(|time| time.map(|t| t.naive_utc()))
                .collect());
        }
        _ => cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
    };
    let millis = millis.as_primitive::<TimestampMillisecondType>();
    Ok((0..millis.len())
        .map(|i| {
            millis
                .is_valid(i)
                .then(|| DateTime::from_timestamp_millis(millis.value(i)))
                .flatten()
                .map(|t| t.naive_utc())
        })
        .collect())
}

/// Row `row` of an argument that may be a one-row constant.
fn at<T: Clone>(values: &[Option<T>], row: usize) -> Option<T> {
    values.get(if values.len() == 1 { 0 } else { row }).cloned().flatten()
}

fn element_at_type(args: &[DataType]) -> Result<DataType> {
    match args.first() {
        Some(DataType::Map(entries, _)) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => Ok(fields[1].data_type().clone()),
            other => exec_err!("element_at: unexpected map entries {other}"),
        },
        Some(DataType::List(item)) | Some(DataType::LargeList(item)) => Ok(item.data_type().clone()),
        Some(DataType::Null) => Ok(DataType::Null),
        other => exec_err!("element_at expects a map or an array, not {other:?}"),
    }
}

/// Trino's `element_at(map, key)` (the value or null) and `element_at(array, index)` (1-based,
/// negative counts from the end, null when out of range).
fn element_at(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let container = &args[0];
    let mut indices: Vec<Option<u32>> = Vec::with_capacity(rows);
    let values: ArrayRef = match container.data_type() {
        DataType::Map(..) => {
            let map = container.as_any().downcast_ref::<MapArray>().expect("map type");
            let keys = strings(map.keys())?;
            let wanted = strings(&args[1])?;
            let offsets = map.value_offsets();
            for row in 0..rows {
                let source = if container.len() == 1 { 0 } else { row };
                let found = match (map.is_valid(source), at(&wanted, row)) {
                    (true, Some(key)) => (offsets[source] as usize..offsets[source + 1] as usize)
                        .find(|&i| keys[i].as_deref() == Some(key.as_str()))
                        .map(|i| i as u32),
                    _ => None,
                };
                indices.push(found);
            }
            map.values().clone()
        }
        DataType::List(_) => {
            let list = container.as_any().downcast_ref::<ListArray>().expect("list type");
            let wanted = integers(&args[1])?;
            let offsets = list.value_offsets();
            for row in 0..rows {
                let source = if container.len() == 1 { 0 } else { row };
                let (start, end) = (offsets[source] as i64, offsets[source + 1] as i64);
                let found = match (list.is_valid(source), at(&wanted, row)) {
                    (true, Some(index)) if index > 0 && start + index - 1 < end => Some((start + index - 1) as u32),
                    (true, Some(index)) if index < 0 && end + index >= start => Some((end + index) as u32),
                    _ => None,
                };
                indices.push(found);
            }
            list.values().clone()
        }
        DataType::Null => return Ok(datafusion::arrow::array::new_null_array(&DataType::Null, rows)),
        other => return exec_err!("element_at expects a map or an array, not {other}"),
    };
    Ok(take(&values, &UInt32Array::from(indices), None)?)
}

/// A JSONPath of the kind Trino's JSON functions take: `$`, `.name`, `["name"]`, `[index]`.
fn json_path(value: &Value, path: &str) -> Option<Value> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut current = value;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            current = current.get(&after[..end])?;
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = after[..end].trim();
            current = match inner.parse::<usize>() {
                Ok(index) => current.get(index)?,
                Err(_) => current.get(inner.trim_matches(|c| c == '"' || c == '\''))?,
            };
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(current.clone())
}

fn parse_json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

fn json_text_function(args: &[ArrayRef], rows: usize, scalar_only: bool) -> Result<ArrayRef> {
    let documents = strings(&args[0])?;
    let paths = strings(&args[1])?;
    let mut out = StringBuilder::new();
    for row in 0..rows {
        let found = at(&documents, row)
            .and_then(|doc| parse_json(&doc))
            .zip(at(&paths, row))
            .and_then(|(doc, path)| json_path(&doc, &path));
        match found {
            Some(Value::String(s)) if scalar_only => out.append_value(s),
            Some(Value::Object(_) | Value::Array(_) | Value::Null) if scalar_only => out.append_null(),
            Some(other) if scalar_only => out.append_value(other.to_string()),
            Some(value) => out.append_value(value.to_string()),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn json_extract_scalar(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    json_text_function(args, rows, true)
}

fn json_extract(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    json_text_function(args, rows, false)
}

/// `json_parse` and `json_format`: validated, compact JSON text.
fn json_normalize(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let documents = strings(&args[0])?;
    let mut out = StringBuilder::new();
    for row in 0..rows {
        match at(&documents, row).and_then(|doc| parse_json(&doc)) {
            Some(value) => out.append_value(value.to_string()),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn json_array_length(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let documents = strings(&args[0])?;
    let mut out = Int64Builder::new();
    for row in 0..rows {
        match at(&documents, row).and_then(|doc| parse_json(&doc)) {
            Some(Value::Array(items)) => out.append_value(items.len() as i64),
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn json_array_get(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let documents = strings(&args[0])?;
    let indices = integers(&args[1])?;
    let mut out = StringBuilder::new();
    for row in 0..rows {
        let item = match (at(&documents, row).and_then(|doc| parse_json(&doc)), at(&indices, row)) {
            (Some(Value::Array(items)), Some(index)) => {
                let position = if index < 0 { items.len() as i64 + index } else { index };
                usize::try_from(position).ok().and_then(|p| items.get(p).cloned())
            }
            _ => None,
        };
        match item {
            Some(value) => out.append_value(value.to_string()),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn json_array_contains(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let documents = strings(&args[0])?;
    let wanted = strings(&args[1])?;
    let mut out = BooleanBuilder::new();
    for row in 0..rows {
        match (at(&documents, row).and_then(|doc| parse_json(&doc)), at(&wanted, row)) {
            (Some(Value::Array(items)), Some(wanted)) => out.append_value(items.iter().any(|item| match item {
                Value::String(s) => *s == wanted,
                other => serde_json::from_str::<Value>(&wanted).is_ok_and(|w| w == *other),
            })),
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn is_json_scalar(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let documents = strings(&args[0])?;
    let mut out = BooleanBuilder::new();
    for row in 0..rows {
        match at(&documents, row).and_then(|doc| parse_json(&doc)) {
            Some(value) => out.append_value(!matches!(value, Value::Array(_) | Value::Object(_))),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Whole `unit`s from `from` to `to`, as Trino's `date_diff` counts them.
fn units_between(unit: &str, from: NaiveDateTime, to: NaiveDateTime) -> Option<i64> {
    let millis = (to - from).num_milliseconds();
    let months = || {
        let mut months = (to.year() as i64 - from.year() as i64) * 12 + to.month() as i64 - from.month() as i64;
        let to_rest = (to.day(), to.time());
        let from_rest = (from.day(), from.time());
        if months > 0 && to_rest < from_rest {
            months -= 1;
        } else if months < 0 && to_rest > from_rest {
            months += 1;
        }
        months
    };
    Some(match unit.to_ascii_lowercase().as_str() {
        "millisecond" => millis,
        "second" => millis / 1000,
        "minute" => millis / 60_000,
        "hour" => millis / 3_600_000,
        "day" => millis / 86_400_000,
        "week" => millis / (7 * 86_400_000),
        "month" => months(),
        "quarter" => months() / 3,
        "year" => months() / 12,
        _ => return None,
    })
}

fn date_diff(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let units = strings(&args[0])?;
    let (from, to) = (times(&args[1])?, times(&args[2])?);
    let mut out = Int64Builder::new();
    for row in 0..rows {
        let value = match (at(&units, row), at(&from, row), at(&to, row)) {
            (Some(unit), Some(from), Some(to)) => match units_between(&unit, from, to) {
                Some(value) => Some(value),
                None => return exec_err!("date_diff: unknown unit '{unit}'"),
            },
            _ => None,
        };
        out.append_option(value);
    }
    Ok(Arc::new(out.finish()))
}

fn add_units(unit: &str, amount: i64, time: NaiveDateTime) -> Option<NaiveDateTime> {
    let months = |count: i64| {
        let magnitude = Months::new(u32::try_from(count.unsigned_abs()).ok()?);
        if count >= 0 { time.checked_add_months(magnitude) } else { time.checked_sub_months(magnitude) }
    };
    match unit.to_ascii_lowercase().as_str() {
        "millisecond" => time.checked_add_signed(Duration::milliseconds(amount)),
        "second" => time.checked_add_signed(Duration::try_seconds(amount)?),
        "minute" => time.checked_add_signed(Duration::try_minutes(amount)?),
        "hour" => time.checked_add_signed(Duration::try_hours(amount)?),
        "day" => time.checked_add_signed(Duration::try_days(amount)?),
        "week" => time.checked_add_signed(Duration::try_weeks(amount)?),
        "month" => months(amount),
        "quarter" => months(amount.checked_mul(3)?),
        "year" => months(amount.checked_mul(12)?),
        _ => None,
    }
}

fn date_add(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let units = strings(&args[0])?;
    let amounts = integers(&args[1])?;
    let base = times(&args[2])?;
    let mut out = TimestampMillisecondBuilder::new();
    for row in 0..rows {
        match (at(&units, row), at(&amounts, row), at(&base, row)) {
            (Some(unit), Some(amount), Some(time)) => match add_units(&unit, amount, time) {
                Some(result) => out.append_value(result.and_utc().timestamp_millis()),
                None => return exec_err!("date_add: unknown unit '{unit}' or result out of range"),
            },
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn from_iso8601_timestamp(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let parsed = times(&args[0])?;
    let mut out = TimestampMillisecondBuilder::new();
    for row in 0..rows {
        out.append_option(at(&parsed, row).map(|t| t.and_utc().timestamp_millis()));
    }
    Ok(Arc::new(out.finish()))
}

fn to_iso8601(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let parsed = times(&args[0])?;
    let mut out = StringBuilder::new();
    for row in 0..rows {
        out.append_option(at(&parsed, row).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()));
    }
    Ok(Arc::new(out.finish()))
}

/// MySQL-style format specifiers (Trino's `date_format`) in chrono's terms.
fn chrono_format(mysql: &str) -> String {
    let mut out = String::new();
    let mut chars = mysql.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            if c == '%' {
                out.push_str("%%");
            } else {
                out.push(c);
            }
            continue;
        }
        let spec = match chars.next() {
            Some('a') => "%a",
            Some('b') => "%b",
            Some('c') => "%-m",
            Some('d') => "%d",
            Some('e') => "%-d",
            Some('f') => "%6f",
            Some('H') => "%H",
            Some('h') | Some('I') => "%I",
            Some('i') => "%M",
            Some('j') => "%j",
            Some('k') => "%-H",
            Some('l') => "%-I",
            Some('M') => "%B",
            Some('m') => "%m",
            Some('p') => "%p",
            Some('r') => "%I:%M:%S %p",
            Some('S') | Some('s') => "%S",
            Some('T') => "%H:%M:%S",
            Some('v') => "%V",
            Some('W') => "%A",
            Some('x') => "%G",
            Some('Y') => "%Y",
            Some('y') => "%y",
            Some('%') => "%%",
            Some(other) => {
                out.push(other);
                continue;
            }
            None => break,
        };
        out.push_str(spec);
    }
    out
}

fn date_format(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let parsed = times(&args[0])?;
    let formats = strings(&args[1])?;
    let mut out = StringBuilder::new();
    for row in 0..rows {
        out.append_option(
            at(&parsed, row).zip(at(&formats, row)).map(|(t, f)| t.format(&chrono_format(&f)).to_string()),
        );
    }
    Ok(Arc::new(out.finish()))
}

fn to_date(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let parsed = times(&args[0])?;
    let mut out = Date32Builder::new();
    for row in 0..rows {
        out.append_option(at(&parsed, row).map(|t| (t.and_utc().timestamp().div_euclid(86_400)) as i32));
    }
    Ok(Arc::new(out.finish()))
}

/// Trino's `contains(array, element)`; on text, DataFusion's substring test.
fn contains(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let mut out = BooleanBuilder::new();
    match args[0].data_type() {
        DataType::List(_) => {
            let list = args[0].as_any().downcast_ref::<ListArray>().expect("list type");
            let wanted = strings(&args[1])?;
            for row in 0..rows {
                let source = if list.len() == 1 { 0 } else { row };
                match (list.is_valid(source), at(&wanted, row)) {
                    (true, Some(wanted)) => {
                        let items = strings(&list.value(source))?;
                        out.append_value(items.iter().any(|item| item.as_deref() == Some(wanted.as_str())));
                    }
                    _ => out.append_null(),
                }
            }
        }
        _ => {
            let (texts, wanted) = (strings(&args[0])?, strings(&args[1])?);
            for row in 0..rows {
                out.append_option(at(&texts, row).zip(at(&wanted, row)).map(|(t, w)| t.contains(&w)));
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Trino's `regexp_replace(text, pattern[, replacement])`: every match replaced (by nothing
/// without a replacement), `$1` for groups.
fn regexp_replace(args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let texts = strings(&args[0])?;
    let patterns = strings(&args[1])?;
    let replacements = match args.get(2) {
        Some(array) => strings(array)?,
        None => vec![Some(String::new())],
    };
    let mut compiled: Option<(String, regex::Regex)> = None;
    let mut out = StringBuilder::new();
    for row in 0..rows {
        let (Some(text), Some(pattern), Some(replacement)) =
            (at(&texts, row), at(&patterns, row), at(&replacements, row))
        else {
            out.append_null();
            continue;
        };
        if compiled.as_ref().is_none_or(|(source, _)| *source != pattern) {
            let regex = regex::Regex::new(&pattern)
                .map_err(|e| datafusion::error::DataFusionError::Execution(format!("regexp_replace: {e}")))?;
            compiled = Some((pattern.clone(), regex));
        }
        let (_, regex) = compiled.as_ref().expect("compiled above");
        out.append_value(regex.replace_all(&text, replacement.as_str()));
    }
    Ok(Arc::new(out.finish()))
}

/// Trino's date field functions (`day_of_week`, `hour`, ...).
fn field_function(name: &'static str, field: fn(NaiveDateTime) -> i64) -> ScalarUDF {
    #[derive(Debug)]
    struct DateField {
        name: &'static str,
        signature: Signature,
        field: fn(NaiveDateTime) -> i64,
    }
    impl PartialEq for DateField {
        fn eq(&self, other: &Self) -> bool {
            self.name == other.name
        }
    }
    impl Eq for DateField {}
    impl std::hash::Hash for DateField {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.name.hash(state);
        }
    }
    impl ScalarUDFImpl for DateField {
        fn name(&self) -> &str {
            self.name
        }
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn return_type(&self, _: &[DataType]) -> Result<DataType> {
            Ok(DataType::Int64)
        }
        fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
            let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
            let arrays = ColumnarValue::values_to_arrays(&args.args)?;
            let values: Int64Array = times(&arrays[0])?.into_iter().map(|t| t.map(self.field)).collect();
            if scalar {
                return Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&values, 0)?));
            }
            Ok(ColumnarValue::Array(Arc::new(values)))
        }
    }
    ScalarUDF::new_from_impl(DateField { name, signature: Signature::any(1, Volatility::Immutable), field })
}

/// Registers the Trino functions, replacing DataFusion's where the names clash.
pub fn register(context: &SessionContext) {
    let functions = [
        function("element_at", 2, element_at_type, element_at),
        function("json_extract_scalar", 2, utf8, json_extract_scalar),
        function("json_extract", 2, utf8, json_extract),
        function("json_parse", 1, utf8, json_normalize),
        function("json_format", 1, utf8, json_normalize),
        function("json_array_length", 1, int64, json_array_length),
        function("json_array_get", 2, utf8, json_array_get),
        function("json_array_contains", 2, boolean, json_array_contains),
        function("is_json_scalar", 1, boolean, is_json_scalar),
        function("date_diff", 3, int64, date_diff),
        function("date_add", 3, timestamp, date_add),
        function("from_iso8601_timestamp", 1, timestamp, from_iso8601_timestamp),
        function("to_iso8601", 1, utf8, to_iso8601),
        function("date_format", 2, utf8, date_format),
        function("date", 1, date, to_date),
        function("contains", 2, boolean, contains),
    ];
    let variadic = [ScalarUDF::new_from_impl(TrinoFunction {
        name: "regexp_replace",
        signature: Signature::one_of(
            vec![datafusion::logical_expr::TypeSignature::Any(2), datafusion::logical_expr::TypeSignature::Any(3)],
            Volatility::Immutable,
        ),
        return_type: utf8,
        invoke: regexp_replace,
    })];
    for udf in functions.into_iter().chain(variadic) {
        context.register_udf(udf);
    }
    type Field = fn(NaiveDateTime) -> i64;
    let fields: [(&[&'static str], Field); 13] = [
        (&["year"], |t| t.year() as i64),
        (&["quarter"], |t| (t.month0() / 3 + 1) as i64),
        (&["month"], |t| t.month() as i64),
        (&["week", "week_of_year"], |t| t.iso_week().week() as i64),
        (&["day", "day_of_month"], |t| t.day() as i64),
        (&["day_of_week", "dow"], |t| t.weekday().number_from_monday() as i64),
        (&["day_of_year", "doy"], |t| t.ordinal() as i64),
        (&["year_of_week", "yow"], |t| t.iso_week().year() as i64),
        (&["hour"], |t| t.hour() as i64),
        (&["minute"], |t| t.minute() as i64),
        (&["second"], |t| t.second() as i64),
        (&["millisecond"], |t| (t.nanosecond() / 1_000_000) as i64),
        (&["to_unixtime"], |t| t.and_utc().timestamp()),
    ];
    for (names, field) in fields {
        for name in names {
            context.register_udf(field_function(name, field));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn time(text: &str) -> NaiveDateTime {
        DateTime::from_timestamp_millis(crate::schema::parse_time_ms(text).unwrap()).unwrap().naive_utc()
    }

    #[test]
    fn json_paths() {
        let doc = json!({"a": {"b": [10, {"c": "x"}]}, "k.y": 1});
        assert_eq!(json_path(&doc, "$.a.b[0]"), Some(json!(10)));
        assert_eq!(json_path(&doc, "$.a.b[1].c"), Some(json!("x")));
        assert_eq!(json_path(&doc, "$[\"k.y\"]"), Some(json!(1)));
        assert_eq!(json_path(&doc, "$.missing"), None);
        assert_eq!(json_path(&doc, "a"), None);
    }

    #[test]
    fn date_arithmetic_follows_trino() {
        assert_eq!(units_between("day", time("2023-01-01 00:00:00"), time("2023-01-03 12:00:00")), Some(2));
        assert_eq!(units_between("month", time("2023-01-31 00:00:00"), time("2023-02-28 00:00:00")), Some(0));
        assert_eq!(units_between("month", time("2023-01-15 00:00:00"), time("2023-03-15 00:00:00")), Some(2));
        assert_eq!(units_between("hour", time("2023-01-02 00:00:00"), time("2023-01-01 00:00:00")), Some(-24));
        assert_eq!(add_units("month", 1, time("2023-01-31 00:00:00")), Some(time("2023-02-28 00:00:00")));
        assert_eq!(add_units("day", -1, time("2023-01-01 00:00:00")), Some(time("2022-12-31 00:00:00")));
        assert_eq!(add_units("fortnight", 1, time("2023-01-01 00:00:00")), None);
        assert_eq!(chrono_format("%Y-%m-%d %H:%i:%s"), "%Y-%m-%d %H:%M:%S");
    }
}
