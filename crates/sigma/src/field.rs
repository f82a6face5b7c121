//! Field paths into a record and the compiled matchers of one field entry.

use std::cmp::Ordering;
use std::net::IpAddr;

use regex::Regex;
use serde_json::Value;

use crate::pattern::{Anchor, StrPattern};

/// Records parsed by serde_json are at most 128 levels deep; a hand-built value could be deeper,
/// so the walks below stop here instead of recursing without bound.
const MAX_RECORD_DEPTH: usize = 128;

/// A dotted field name, split once at load.
#[derive(Debug, Clone)]
pub(crate) struct FieldPath {
    segments: Vec<String>,
}

impl FieldPath {
    pub(crate) fn parse(name: &str) -> FieldPath {
        FieldPath { segments: name.split('.').map(str::to_owned).collect() }
    }

    /// Calls `visit` on every value the path reaches, descending into lists at every step (and
    /// flattening a list at the end into its elements), until `visit` returns true.
    pub(crate) fn any_value(&self, record: &Value, visit: &mut dyn FnMut(&Value) -> bool) -> bool {
        walk(record, &self.segments, visit, 0)
    }

    /// Whether the path reaches at least one value that is not JSON null.
    pub(crate) fn has_value(&self, record: &Value) -> bool {
        self.any_value(record, &mut |value| !value.is_null())
    }
}

fn walk(value: &Value, segments: &[String], visit: &mut dyn FnMut(&Value) -> bool, depth: usize) -> bool {
    if depth > MAX_RECORD_DEPTH {
        return false;
    }
    match value {
        Value::Array(items) => items.iter().any(|item| walk(item, segments, visit, depth + 1)),
        _ => match segments.split_first() {
            None => visit(value),
            Some((first, rest)) => match value {
                Value::Object(map) => map.get(first).is_some_and(|child| walk(child, rest, visit, depth + 1)),
                _ => false,
            },
        },
    }
}

/// The texts a value offers to string comparison: a string itself, a boolean or number as its
/// JSON text; an object or list every nested scalar's text and then its compact JSON. Stops
/// when `visit` returns true.
pub(crate) fn any_text(value: &Value, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => visit(text),
        Value::Bool(flag) => visit(if *flag { "true" } else { "false" }),
        Value::Number(number) => visit(&number.to_string()),
        Value::Array(_) | Value::Object(_) => {
            nested_texts(value, visit, 0) || serde_json::to_string(value).is_ok_and(|json| visit(&json))
        }
    }
}

fn nested_texts(value: &Value, visit: &mut dyn FnMut(&str) -> bool, depth: usize) -> bool {
    if depth > MAX_RECORD_DEPTH {
        return false;
    }
    match value {
        Value::Array(items) => items.iter().any(|item| nested_texts(item, visit, depth + 1)),
        Value::Object(map) => map.values().any(|item| nested_texts(item, visit, depth + 1)),
        Value::Null => false,
        scalar => any_text(scalar, visit),
    }
}

/// `lt`, `lte`, `gt`, `gte`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// An IPv4 or IPv6 network for `|cidr`.
#[derive(Debug, Clone)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?),
            None => {
                let address = text.parse::<IpAddr>().ok()?;
                (address, if address.is_ipv4() { 32 } else { 128 })
            }
        };
        let limit = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= limit).then_some(Cidr { network: address, prefix })
    }

    pub(crate) fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// One compiled value of a field entry.
#[derive(Debug, Clone)]
pub(crate) enum ValueMatcher {
    /// `null`: the field has no value (missing, JSON null, or an empty list).
    Null,
    /// `|exists: true|false`.
    Exists(bool),
    /// A string (or boolean) value, with its wildcards and anchoring.
    Text(StrPattern),
    /// A number: numerically equal to a JSON number, or equal to its text in a string.
    Number(f64, StrPattern),
    Regex(Regex),
    Cidr(Cidr),
    Compare(Comparison, f64),
    /// `|fieldref`: compared with the value(s) of another field of the same record.
    FieldRef {
        other: FieldPath,
        anchor: Anchor,
        cased: bool,
    },
}

impl ValueMatcher {
    /// Whether this value holds for the field `path` of `record`.
    pub(crate) fn holds(&self, path: &FieldPath, record: &Value) -> bool {
        match self {
            ValueMatcher::Null => !path.has_value(record),
            ValueMatcher::Exists(wanted) => path.has_value(record) == *wanted,
            ValueMatcher::Text(pattern) => {
                path.any_value(record, &mut |value| any_text(value, &mut |t| pattern.matches(t)))
            }
            ValueMatcher::Number(number, pattern) => path.any_value(record, &mut |value| match value {
                Value::Number(found) => found.as_f64() == Some(*number),
                other => any_text(other, &mut |t| pattern.matches(t)),
            }),
            ValueMatcher::Regex(regex) => {
                path.any_value(record, &mut |value| any_text(value, &mut |t| regex.is_match(t)))
            }
            ValueMatcher::Cidr(cidr) => path.any_value(record, &mut |value| {
                value
                    .as_str()
                    .and_then(|text| text.parse::<IpAddr>().ok())
                    .is_some_and(|address| cidr.contains(address))
            }),
            ValueMatcher::Compare(comparison, bound) => path.any_value(record, &mut |value| {
                let number = match value {
                    Value::Number(number) => number.as_f64(),
                    Value::String(text) => text.trim().parse::<f64>().ok(),
                    _ => None,
                };
                number.and_then(|n| n.partial_cmp(bound)).is_some_and(|ordering| match comparison {
                    Comparison::Less => ordering == Ordering::Less,
                    Comparison::LessOrEqual => ordering != Ordering::Greater,
                    Comparison::Greater => ordering == Ordering::Greater,
                    Comparison::GreaterOrEqual => ordering != Ordering::Less,
                })
            }),
            ValueMatcher::FieldRef { other, anchor, cased } => other.any_value(record, &mut |reference| {
                let Some(wanted) = scalar_text(reference) else { return false };
                // The other field's value is only known now; it is a plain literal (its `*` are
                // not wildcards), so escape it before compiling.
                let pattern = StrPattern::new(&escape_wildcards(&wanted), *anchor, *cased);
                path.any_value(record, &mut |value| scalar_text(value).is_some_and(|text| pattern.matches(&text)))
            }),
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn escape_wildcards(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts_of(value: &Value) -> Vec<String> {
        let mut seen = Vec::new();
        any_text(value, &mut |t| {
            seen.push(t.to_owned());
            false
        });
        seen
    }

    #[test]
    fn paths_descend_into_objects_and_lists() {
        let record = json!({"a": {"b": [{"c": ["x", "y"]}, {"c": "z"}, {"d": 1}]}});
        let mut seen = Vec::new();
        FieldPath::parse("a.b.c").any_value(&record, &mut |v| {
            seen.push(v.clone());
            false
        });
        assert_eq!(seen, vec![json!("x"), json!("y"), json!("z")]);
        assert!(!FieldPath::parse("a.missing").has_value(&record));
        assert!(!FieldPath::parse("a.b.c.deeper").has_value(&record));
        assert!(!FieldPath::parse("x").has_value(&json!({"x": null})));
        assert!(!FieldPath::parse("x").has_value(&json!({"x": []})));
        assert!(FieldPath::parse("x").has_value(&json!({"x": ""})));
    }

    #[test]
    fn texts_of_scalars_and_objects() {
        assert_eq!(texts_of(&json!(false)), vec!["false"]);
        assert_eq!(texts_of(&json!(12)), vec!["12"]);
        assert!(texts_of(&json!(null)).is_empty());
        assert_eq!(texts_of(&json!({"k": "v", "n": [true]})), vec!["v", "true", r#"{"k":"v","n":[true]}"#]);
    }

    #[test]
    fn cidr_networks() {
        let net = Cidr::parse("10.0.0.0/8").expect("valid");
        assert!(net.contains("10.200.1.1".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0").expect("valid").contains("8.8.8.8".parse().expect("ip")));
        let v6 = Cidr::parse("2001:db8::/32").expect("valid");
        assert!(v6.contains("2001:db8::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert!(Cidr::parse("192.0.2.7").expect("host").contains("192.0.2.7".parse().expect("ip")));
    }
}
