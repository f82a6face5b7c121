//! Event History: the index behind `LookupEvents`.
//!
//! A durable journal consumer that files every management event (and every Insights event)
//! under its account and Region in an embedded key-value store (redb), by time and by each
//! lookup attribute. Keys are `(hash of scope and attribute value, reversed event time,
//! reversed journal position)`, so a range scan yields events newest first and a lookup never
//! scans the journal: it walks one index range and reads only the records it returns,
//! re-checking each against the query.
//!
//! Invariants:
//! - The consumer cursor is committed in the same transaction as the index entries it covers,
//!   so a crash never loses or double-counts an event; re-indexing is idempotent anyway
//!   because keys are derived from journal positions.
//! - Scopes start with account and Region: one account's lookups cannot reach another's keys.
//! - The index can always be rebuilt from the journal: deleting it is safe.

mod index;
mod token;

pub use index::{CONSUMER_NAME, FoundEvent, HistoryError, HistoryIndex, LookupPage, LookupQuery, fingerprint};
pub use token::PageToken;
