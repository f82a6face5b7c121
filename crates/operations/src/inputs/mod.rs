//! The typed input of every implemented operation, as the body decodes into it. Members keep
//! the API's names (in snake case); checks that need only the input live next to it.

mod audit_events;
mod insights;
mod lake;
mod lookup;
mod trails;

pub use audit_events::*;
pub use insights::*;
pub use lake::*;
pub use lookup::*;
pub use trails::*;
