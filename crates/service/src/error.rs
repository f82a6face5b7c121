//! The errors a caller can see. They are declared in `opentrail-operations` (the request
//! decoder needs them and must build without the service); this path keeps
//! `opentrail_service::error::*` working. Add an error code in `crates/operations/src/error.rs`.

pub use opentrail_operations::error::{ErrorCode, ServiceError, ServiceResult};

/// A call whose record could not be appended: a full journal queue is the caller's signal to
/// slow down (`ThrottlingException`, retried by the SDKs); anything else is `InternalFailure`.
pub fn append_failed(error: opentrail_journal::JournalError) -> ServiceError {
    match error {
        opentrail_journal::JournalError::Overloaded => {
            ServiceError::new(ErrorCode::Throttling, "Rate exceeded: the journal's append queue is full.")
        }
        other => ServiceError::internal(other),
    }
}
