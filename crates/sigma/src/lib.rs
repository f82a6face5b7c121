//! Sigma rules (SigmaHQ's detection format) for CloudTrail records, evaluated natively: no
//! conversion to a query language, one record at a time, as a journal consumer needs.
//!
//! [`RuleSet::load_dir`] reads a folder of rule files, compiles each rule once (field paths
//! split, string literals lower-cased and classified as exact / prefix / suffix / substring /
//! glob, regular expressions built with a size limit, `1 of X*` resolved to indices) and refuses
//! the files it cannot evaluate faithfully, each with a reason ([`RuleError`]). [`Rule::matches`]
//! then never fails and never panics on any JSON value.
//!
//! # Semantics
//!
//! As the Sigma specification (v2) defines them:
//! - A search identifier that is a map is the AND of its entries; a list of maps is the OR of the
//!   maps. A list of values is an OR, or an AND with `|all` (each value may hold on a different
//!   element of a list field).
//! - Strings match the whole field value, case-insensitively (`|cased` makes them exact), with
//!   `*` (any run, also empty) and `?` (one character) as wildcards; `\*`, `\?` and `\\` are the
//!   literal characters and a backslash before anything else is a plain backslash.
//!   `contains`, `startswith` and `endswith` only add `*` around the value.
//!   Case-insensitivity is lower-casing (ASCII fast path), not full Unicode case folding.
//! - `|re` searches anywhere in the text (as the Sigma backends do: anchor with `^...$` to match the
//!   whole value), case-sensitive unless `|i`; `|m` and `|s` are the multi-line and dot-all flags.
//! - `|cidr` (IPv4 and IPv6), `|exists: true/false`, `|lt`/`lte`/`gt`/`gte` (numbers, or strings
//!   that parse as numbers), `|fieldref` (with optional contains/startswith/endswith: the other
//!   field's value is a literal, its `*` are not wildcards; a missing other field never matches),
//!   `|expand` (`%name%` placeholders from [`Placeholders`]).
//! - Conditions: `and`, `or`, `not`, parentheses, `1 of`/`all of` a name pattern or `them`
//!   (which leaves out identifiers starting with `_`, as pySigma does), precedence
//!   `not` > `and` > `or`; a list of conditions is their OR. Nesting deeper than 64 levels is
//!   refused (the parser and evaluator recurse per level), so a hostile rule cannot overflow the
//!   stack.
//!
//! # Decisions on the points the specification leaves open
//!
//! - **Dotted field names** descend into objects, and into lists at every step: a list field is
//!   its elements (`requestParameters.containerDefinitions.command` reaches every command string
//!   of every container). A value matches when it holds for any element.
//! - **Absent values**: `field: null` holds when the field has no value: missing, JSON null, or an
//!   empty list (so `errorCode: null` is "the call succeeded"). `|exists` is its exact opposite,
//!   and `*` alone (or `|contains: '*'`) holds when the field has some non-null value, on a list
//!   when some element has one. Keeping the three consistent means a rule author never has to
//!   care whether CloudTrail omitted a field or wrote it as null.
//! - **Types**: a rule's string is compared with a JSON boolean or number through its JSON text,
//!   so `requestParameters.enable: 'false'` matches `false`: CloudTrail writes booleans where the
//!   published rules wrote strings, and a strict comparison would silently never fire. A rule's
//!   number equals a JSON number numerically and a string by its text; a rule's boolean is the
//!   string `true`/`false`.
//! - **Strings against objects** (`requestParameters|contains: 'Suspended'`): an object or list
//!   offers every nested scalar's text and then its compact serialized JSON. The nested strings
//!   make a value with quotes such as `'"s3:GetObject"'` match inside a policy-document string
//!   (where serialized JSON would have escaped the quotes); the serialized JSON lets a rule match
//!   a key/value pair such as `'"Status":"Suspended"'`. The JSON is only built when no nested
//!   value matched, i.e. rarely.
//! - **A field path of a value that is not fieldref** is literal text: in
//!   `userIdentity.arn|contains: responseElements.accessKey.userName` the value is the string
//!   `responseElements.accessKey.userName`, as the specification says (so that rule's filter
//!   never holds and it fires on every CreateAccessKey).
//! - **Keyword (field-less) searches** are refused: no CloudTrail rule uses them, and "any string
//!   anywhere in the record" is both slow and vague on structured records; a rule names fields.
//! - **Refused**: rules whose logsource is not product `aws` / service `cloudtrail`; correlation
//!   rules, `timeframe`, aggregation (`| count() ...`) and `near`; `windash`, `base64`,
//!   `base64offset` and the `utf16*`/`wide` modifiers (Windows and encoded-payload searches, not
//!   implemented); unknown modifiers (named); `|expand` placeholders without configured values
//!   ("needs placeholder values: %Legitimate_Countries%, ..."); unknown `level`s.
//! - The rule's `author` is part of [`Rule`]: the Detection Rule License 1.1 of the SigmaHQ rules
//!   requires every message based on a match to show it.

mod condition;
mod field;
mod pattern;
mod rule;
mod ruleset;

pub use rule::{Level, Placeholders, Rule, RuleError};
pub use ruleset::{Refusal, RuleSet};

#[cfg(test)]
mod tests;
