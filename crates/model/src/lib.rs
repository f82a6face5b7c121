//! The CloudTrail domain model: identifiers, ARNs, trail state, event selectors and the
//! CloudTrail record as JSON.
//!
//! This crate owns the rules that define what is valid (trail names, selector limits) and what a
//! selector chooses. It is pure: no I/O, no clock except where a caller passes a time in, no
//! knowledge of HTTP or storage. Every other crate depends on it and it depends on none of ours.

pub mod arn;
pub mod identity;
pub mod lake;
pub mod record;
pub mod regions;
pub mod selectors;
pub mod trail;

pub use arn::{AccountId, Arn, ArnError, Region};
pub use identity::{Principal, PrincipalKind};
pub use record::EventRecord;
pub use selectors::{AdvancedEventSelector, EventSelector, InsightSelector, SelectorError};
pub use trail::{Tag, Trail, TrailNameError};
