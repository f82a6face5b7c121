//! The vocabulary of OpenTrail's API, with nothing that stores or runs anything: the registry
//! of CloudTrail's operations ([`Operation`], [`Request`]), their typed inputs, the decoding of
//! a request ([`decode_request`]), the errors a caller can see ([`ErrorCode`], [`ServiceError`]),
//! and the CloudTrail record of a call ([`build_record`]).
//!
//! Light on purpose (the model, serde, chrono, uuid, tracing): the request decoder's fuzz target
//! builds this crate alone. The service runs what is declared here.

mod decode;
pub mod error;
pub mod inputs;
mod record;
mod registry;

pub use decode::{decode_input, operation_from_target, parse_body};
pub use error::{ErrorCode, ServiceError, ServiceResult};
pub use record::{CallInfo, CallOutcome, Caller, Resource, build_record};
pub use registry::{Access, Area, Operation, Request, decode_request, unknown_operation};
