//! One Sigma rule: its metadata, and its detection compiled for evaluation.

use std::collections::HashMap;
use std::fmt;

use regex::RegexBuilder;
use serde_json::Value;
use serde_norway::Value as Yaml;

use crate::condition::{self, Expr};
use crate::field::{Cidr, Comparison, FieldPath, ValueMatcher};
use crate::pattern::{Anchor, StrPattern};

/// Compiled regular expressions may use at most this much memory each (the `regex` crate's own
/// default is 10 MiB; a rule needing more is almost surely a mistake or an attack on the loader).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a rule file was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("not YAML: {0}")]
    Yaml(String),
    #[error("not a CloudTrail rule: logsource is product {product:?}, service {service:?} (wanted aws / cloudtrail)")]
    NotCloudTrail { product: Option<String>, service: Option<String> },
    #[error("needs placeholder values: {}", .0.join(", "))]
    NeedsPlaceholders(Vec<String>),
    #[error("unknown modifiers: {}", .0.join(", "))]
    UnknownModifiers(Vec<String>),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("invalid rule: {0}")]
    Invalid(String),
}

/// The rule's `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Values for the `%name%` placeholders of `|expand` entries (the operator's configuration).
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    values: HashMap<String, Vec<String>>,
}

impl Placeholders {
    pub fn new() -> Placeholders {
        Placeholders::default()
    }

    /// Sets the values of a placeholder; `name` may be written with or without its `%`s.
    pub fn insert(&mut self, name: &str, values: Vec<String>) -> &mut Placeholders {
        self.values.insert(name.trim_matches('%').to_owned(), values);
        self
    }

    fn get(&self, name: &str) -> Option<&[String]> {
        self.values.get(name).map(Vec::as_slice)
    }
}

/// One field entry of a search: `field|modifiers: value(s)`.
#[derive(Debug, Clone)]
struct FieldTest {
    path: FieldPath,
    values: Vec<ValueMatcher>,
    /// `|all`: every value must hold (possibly on different list elements).
    all: bool,
}

impl FieldTest {
    fn holds(&self, record: &Value) -> bool {
        if self.all {
            self.values.iter().all(|value| value.holds(&self.path, record))
        } else {
            self.values.iter().any(|value| value.holds(&self.path, record))
        }
    }
}

/// A search identifier: an OR of maps, each map the AND of its entries.
#[derive(Debug, Clone)]
struct Search {
    alternatives: Vec<Vec<FieldTest>>,
}

impl Search {
    fn holds(&self, record: &Value) -> bool {
        self.alternatives.iter().any(|tests| tests.iter().all(|test| test.holds(record)))
    }
}

#[derive(Debug, Clone)]
struct Detection {
    searches: Vec<Search>,
    condition: Expr,
}

/// A loaded Sigma rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub title: String,
    pub id: Option<String>,
    pub level: Option<Level>,
    /// Shown with every finding: the Detection Rule License requires it.
    pub author: Option<String>,
    pub status: Option<String>,
    pub description: Option<String>,
    pub references: Vec<String>,
    pub tags: Vec<String>,
    /// Where the rule came from (its file path, or what the caller passed to [`Rule::parse`]).
    pub origin: String,
    detection: Detection,
}

impl Rule {
    /// Parses and compiles a rule; `origin` is kept for messages (usually the file path).
    pub fn parse(yaml: &str, origin: &str) -> Result<Rule, RuleError> {
        Rule::parse_with(yaml, origin, &Placeholders::new())
    }

    /// As [`Rule::parse`], with values for `|expand` placeholders.
    pub fn parse_with(yaml: &str, origin: &str, placeholders: &Placeholders) -> Result<Rule, RuleError> {
        let document: Yaml = serde_norway::from_str(yaml).map_err(|error| RuleError::Yaml(error.to_string()))?;
        let Yaml::Mapping(top) = &document else {
            return Err(RuleError::Invalid("the document is not a map".to_owned()));
        };
        if top.contains_key("correlation") {
            return Err(RuleError::Unsupported("correlation rules".to_owned()));
        }
        if top.get("action").is_some() {
            return Err(RuleError::Unsupported("rule collections (`action:`)".to_owned()));
        }
        check_logsource(top.get("logsource"))?;
        let title = text(top.get("title")).ok_or_else(|| RuleError::Invalid("no `title`".to_owned()))?;
        let level = match text(top.get("level")) {
            None => None,
            Some(level) => Some(parse_level(&level)?),
        };
        let detection = match top.get("detection") {
            Some(Yaml::Mapping(detection)) => compile_detection(detection, placeholders)?,
            _ => return Err(RuleError::Invalid("no `detection` map".to_owned())),
        };
        Ok(Rule {
            title,
            id: text(top.get("id")),
            level,
            author: text(top.get("author")),
            status: text(top.get("status")),
            description: text(top.get("description")),
            references: texts(top.get("references")),
            tags: texts(top.get("tags")),
            origin: origin.to_owned(),
            detection,
        })
    }

    /// Whether the rule fires on this CloudTrail record.
    pub fn matches(&self, record: &Value) -> bool {
        let searches = &self.detection.searches;
        self.detection.condition.eval(&|index| searches.get(index).is_some_and(|search| search.holds(record)))
    }
}

fn text(value: Option<&Yaml>) -> Option<String> {
    match value? {
        Yaml::String(text) => Some(text.trim_end().to_owned()),
        Yaml::Number(number) => Some(number.to_string()),
        Yaml::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn texts(value: Option<&Yaml>) -> Vec<String> {
    match value {
        Some(Yaml::Sequence(items)) => items.iter().filter_map(|item| text(Some(item))).collect(),
        other => text(other).into_iter().collect(),
    }
}

fn parse_level(level: &str) -> Result<Level, RuleError> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "informational" => Level::Informational,
        "low" => Level::Low,
        "medium" => Level::Medium,
        "high" => Level::High,
        "critical" => Level::Critical,
        other => return Err(RuleError::Invalid(format!("unknown level {other:?}"))),
    })
}

fn check_logsource(logsource: Option<&Yaml>) -> Result<(), RuleError> {
    let (product, service) = match logsource {
        Some(Yaml::Mapping(map)) => (text(map.get("product")), text(map.get("service"))),
        _ => (None, None),
    };
    let is = |value: &Option<String>, wanted: &str| value.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(wanted));
    if is(&product, "aws") && is(&service, "cloudtrail") {
        Ok(())
    } else {
        Err(RuleError::NotCloudTrail { product, service })
    }
}

fn compile_detection(detection: &serde_norway::Mapping, placeholders: &Placeholders) -> Result<Detection, RuleError> {
    let mut names = Vec::new();
    let mut searches = Vec::new();
    let mut missing_placeholders = Vec::new();
    let mut conditions = Vec::new();
    for (key, value) in detection {
        let Yaml::String(name) = key else {
            return Err(RuleError::Invalid("a detection key is not a string".to_owned()));
        };
        match name.as_str() {
            "condition" => {
                conditions = match value {
                    Yaml::String(condition) => vec![condition.clone()],
                    Yaml::Sequence(list) => list
                        .iter()
                        .map(|item| match item {
                            Yaml::String(condition) => Ok(condition.clone()),
                            _ => Err(RuleError::Invalid("a condition is not a string".to_owned())),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(RuleError::Invalid("the condition is not a string".to_owned())),
                }
            }
            "timeframe" => return Err(RuleError::Unsupported("`timeframe` (time windows)".to_owned())),
            _ => {
                let search = compile_search(name, value, placeholders, &mut missing_placeholders)?;
                names.push(name.clone());
                searches.push(search);
            }
        }
    }
    if !missing_placeholders.is_empty() {
        return Err(RuleError::NeedsPlaceholders(missing_placeholders));
    }
    if conditions.is_empty() {
        return Err(RuleError::Invalid("no `condition`".to_owned()));
    }
    let mut parsed = Vec::new();
    for condition in &conditions {
        parsed.push(condition::parse(condition, &names).map_err(|reason| {
            if reason.contains("aggregation") || reason.contains("near") {
                RuleError::Unsupported(reason)
            } else {
                RuleError::Invalid(reason)
            }
        })?);
    }
    let condition = if parsed.len() == 1 { parsed.remove(0) } else { Expr::Or(parsed) };
    Ok(Detection { searches, condition })
}

fn compile_search(
    name: &str,
    value: &Yaml,
    placeholders: &Placeholders,
    missing: &mut Vec<String>,
) -> Result<Search, RuleError> {
    let maps: Vec<&serde_norway::Mapping> = match value {
        Yaml::Mapping(map) => vec![map],
        Yaml::Sequence(items) if !items.is_empty() && items.iter().all(|item| matches!(item, Yaml::Mapping(_))) => {
            items.iter().filter_map(|item| if let Yaml::Mapping(map) = item { Some(map) } else { None }).collect()
        }
        Yaml::Sequence(_) | Yaml::String(_) | Yaml::Number(_) => {
            return Err(RuleError::Unsupported(format!(
                "keyword (field-less) search `{name}`: CloudTrail records are structured, name the field"
            )));
        }
        _ => return Err(RuleError::Invalid(format!("search `{name}` is neither a map nor a list of maps"))),
    };
    let mut alternatives = Vec::new();
    for map in maps {
        let mut tests = Vec::new();
        for (key, values) in map {
            let Yaml::String(key) = key else {
                return Err(RuleError::Invalid(format!("a field name in `{name}` is not a string")));
            };
            tests.push(compile_field(key, values, placeholders, missing)?);
        }
        alternatives.push(tests);
    }
    Ok(Search { alternatives })
}

/// The modifiers of one field entry, checked for consistency.
#[derive(Default)]
struct Modifiers {
    anchor: Option<Anchor>,
    all: bool,
    cased: bool,
    expand: bool,
    fieldref: bool,
    regex: Option<String>,
    cidr: bool,
    exists: bool,
    comparison: Option<Comparison>,
}

fn parse_modifiers(field: &str, names: &[&str]) -> Result<Modifiers, RuleError> {
    let mut modifiers = Modifiers::default();
    let mut unknown = Vec::new();
    let conflict = || RuleError::Invalid(format!("conflicting modifiers on `{field}`"));
    for &name in names {
        match name {
            "contains" | "startswith" | "endswith" => {
                if modifiers.anchor.is_some() {
                    return Err(conflict());
                }
                modifiers.anchor = Some(match name {
                    "contains" => Anchor::Contains,
                    "startswith" => Anchor::StartsWith,
                    _ => Anchor::EndsWith,
                });
            }
            "all" => modifiers.all = true,
            "cased" => modifiers.cased = true,
            "expand" => modifiers.expand = true,
            "fieldref" => modifiers.fieldref = true,
            "re" => modifiers.regex = Some(String::new()),
            "i" | "m" | "s" => match &mut modifiers.regex {
                Some(flags) => flags.push_str(name),
                None => return Err(RuleError::Invalid(format!("`|{name}` without `|re` on `{field}`"))),
            },
            "cidr" => modifiers.cidr = true,
            "exists" => modifiers.exists = true,
            "lt" | "lte" | "gt" | "gte" => {
                if modifiers.comparison.is_some() {
                    return Err(conflict());
                }
                modifiers.comparison = Some(match name {
                    "lt" => Comparison::Less,
                    "lte" => Comparison::LessOrEqual,
                    "gt" => Comparison::Greater,
                    _ => Comparison::GreaterOrEqual,
                });
            }
            "windash" => {
                return Err(RuleError::Unsupported(
                    "modifier `windash` (Windows command-line dashes; meaningless for CloudTrail)".to_owned(),
                ));
            }
            "base64" | "base64offset" | "utf16le" | "utf16be" | "utf16" | "wide" => {
                return Err(RuleError::Unsupported(format!(
                    "modifier `{name}` (encoded-payload search; not implemented, no CloudTrail rule uses it)"
                )));
            }
            other => unknown.push(other.to_owned()),
        }
    }
    if !unknown.is_empty() {
        return Err(RuleError::UnknownModifiers(unknown));
    }
    // A modifier that replaces string comparison cannot be combined with another one, nor with
    // anchoring (except fieldref, whose other field's value is anchored).
    let replacing = [
        modifiers.regex.is_some(),
        modifiers.cidr,
        modifiers.exists,
        modifiers.comparison.is_some(),
        modifiers.fieldref,
    ]
    .iter()
    .filter(|&&on| on)
    .count();
    if replacing > 1 || (replacing == 1 && !modifiers.fieldref && modifiers.anchor.is_some()) {
        return Err(conflict());
    }
    if modifiers.expand && replacing == 1 && !modifiers.cidr {
        return Err(conflict());
    }
    Ok(modifiers)
}

fn compile_field(
    key: &str,
    values: &Yaml,
    placeholders: &Placeholders,
    missing: &mut Vec<String>,
) -> Result<FieldTest, RuleError> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let modifier_names: Vec<&str> = parts.collect();
    let modifiers = parse_modifiers(field, &modifier_names)?;
    if field.is_empty() {
        return Err(RuleError::Unsupported(format!(
            "keyword (field-less) search `{key}`: CloudTrail records are structured, name the field"
        )));
    }
    let raw: Vec<&Yaml> = match values {
        Yaml::Sequence(items) => items.iter().collect(),
        single => vec![single],
    };
    if raw.is_empty() {
        return Err(RuleError::Invalid(format!("`{key}` has an empty list of values")));
    }
    let mut compiled = Vec::new();
    for value in raw {
        if modifiers.expand {
            let Yaml::String(template) = value else {
                return Err(RuleError::Invalid(format!("`{key}`: `|expand` needs a string value")));
            };
            match expand(template, placeholders) {
                Ok(expanded) => {
                    for text in expanded {
                        compiled.push(compile_value(key, &Yaml::String(text), &modifiers)?);
                    }
                }
                Err(names) => {
                    for name in names {
                        if !missing.contains(&name) {
                            missing.push(name);
                        }
                    }
                }
            }
        } else {
            compiled.push(compile_value(key, value, &modifiers)?);
        }
    }
    Ok(FieldTest { path: FieldPath::parse(field), values: compiled, all: modifiers.all })
}

/// Replaces every `%name%` of `template` by each of its configured values (all combinations when
/// there are several placeholders), or returns the names (with `%`) that have no values.
fn expand(template: &str, placeholders: &Placeholders) -> Result<Vec<String>, Vec<String>> {
    let mut results = vec![String::new()];
    let mut missing = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(length) = after.find('%') else { break };
        let name = &after[..length];
        let literal = &rest[..start];
        for result in &mut results {
            result.push_str(literal);
        }
        match placeholders.get(name) {
            Some(values) => {
                results = results
                    .iter()
                    .flat_map(|prefix| values.iter().map(move |value| format!("{prefix}{value}")))
                    .collect();
            }
            None => missing.push(format!("%{name}%")),
        }
        rest = &after[length + 1..];
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    for result in &mut results {
        result.push_str(rest);
    }
    Ok(results)
}

fn compile_value(key: &str, value: &Yaml, modifiers: &Modifiers) -> Result<ValueMatcher, RuleError> {
    let anchor = modifiers.anchor.unwrap_or(Anchor::Whole);
    let invalid = |what: &str| RuleError::Invalid(format!("`{key}`: {what}"));
    if modifiers.exists {
        return match value {
            Yaml::Bool(wanted) => Ok(ValueMatcher::Exists(*wanted)),
            _ => Err(invalid("`|exists` needs true or false")),
        };
    }
    if let Some(comparison) = modifiers.comparison {
        return match value {
            Yaml::Number(number) => number
                .as_f64()
                .map(|bound| ValueMatcher::Compare(comparison, bound))
                .ok_or_else(|| invalid("bad number")),
            _ => Err(invalid("`|lt`/`|lte`/`|gt`/`|gte` need a number")),
        };
    }
    let literal = match value {
        Yaml::Null => return Ok(ValueMatcher::Null),
        Yaml::String(text) => text.clone(),
        Yaml::Bool(flag) => flag.to_string(),
        Yaml::Number(number) => {
            if modifiers.regex.is_some() || modifiers.cidr || modifiers.fieldref {
                return Err(invalid("this modifier needs a string value"));
            }
            let pattern = StrPattern::new(&number.to_string(), anchor, modifiers.cased);
            // A whole-value number also equals JSON numbers numerically (443 and 443.0).
            return Ok(match (number.as_f64(), anchor) {
                (Some(exact), Anchor::Whole) => ValueMatcher::Number(exact, pattern),
                _ => ValueMatcher::Text(pattern),
            });
        }
        _ => return Err(invalid("a value is a map or list")),
    };
    if let Some(flags) = &modifiers.regex {
        let regex = RegexBuilder::new(&literal)
            .case_insensitive(flags.contains('i'))
            .multi_line(flags.contains('m'))
            .dot_matches_new_line(flags.contains('s'))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|error| invalid(&format!("bad regular expression: {error}")))?;
        return Ok(ValueMatcher::Regex(regex));
    }
    if modifiers.cidr {
        return Cidr::parse(&literal)
            .map(ValueMatcher::Cidr)
            .ok_or_else(|| invalid(&format!("{literal:?} is not a network")));
    }
    if modifiers.fieldref {
        return Ok(ValueMatcher::FieldRef { other: FieldPath::parse(&literal), anchor, cased: modifiers.cased });
    }
    Ok(ValueMatcher::Text(StrPattern::new(&literal, anchor, modifiers.cased)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_substitutes_every_combination() {
        let mut placeholders = Placeholders::new();
        placeholders.insert("%A%", vec!["1".into(), "2".into()]).insert("B", vec!["x".into()]);
        assert_eq!(expand("pre-%A%-%B%!", &placeholders), Ok(vec!["pre-1-x!".to_owned(), "pre-2-x!".to_owned()]));
        assert_eq!(expand("no placeholder", &placeholders), Ok(vec!["no placeholder".to_owned()]));
        assert_eq!(expand("50%", &placeholders), Ok(vec!["50%".to_owned()]));
        assert_eq!(expand("%A%%C%%D%", &placeholders), Err(vec!["%C%".to_owned(), "%D%".to_owned()]));
    }
}
