//! The operation registry: every operation of CloudTrail's API model, declared once.
//!
//! Everything that names operations is derived from the table at the bottom: the names a call
//! may carry, the typed [`Request`] a body decodes into, the `readOnly` of a call's record, and
//! which part of the service runs it. The service dispatches with an exhaustive `match` on
//! [`Request`], so an operation added here does not compile until it has a handler.

use serde_json::Value;

use crate::decode::decode_input;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::inputs::*;

/// What a call's CloudTrail record says in `readOnly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The part of the service that runs an implemented operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Trails, their selectors, tags and logging status, and the digest keys (`ListPublicKeys`):
    /// the control store and delivery.
    Trails,
    /// `LookupEvents`: the history index.
    EventHistory,
    /// CloudTrail Lake: event data stores, queries, channels, resource policies, imports.
    Lake,
    /// Insights: the events and metric series the Insights consumer keeps.
    Insights,
}

macro_rules! operations {
    (
        implemented { $($name:ident($input:ty), $access:ident, $area:ident;)* }
        unsupported { $($missing:ident, $missing_access:ident;)* }
    ) => {
        /// Every operation of CloudTrail's API model (2013-11-01), implemented or not.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $($name,)*
            $($missing,)*
        }

        impl Operation {
            /// All of them, implemented first, in the registry's order.
            pub const ALL: &'static [Operation] = &[$(Self::$name,)* $(Self::$missing,)*];

            /// The name as it travels in `X-Amz-Target` and in a record's `eventName`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                    $(Self::$missing => stringify!($missing),)*
                }
            }

            /// The operation of that name, if CloudTrail has one.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $(stringify!($name) => Some(Self::$name),)*
                    $(stringify!($missing) => Some(Self::$missing),)*
                    _ => None,
                }
            }

            pub fn access(self) -> Access {
                match self {
                    $(Self::$name => Access::$access,)*
                    $(Self::$missing => Access::$missing_access,)*
                }
            }

            /// Where it runs; `None` for an operation OpenTrail answers with
            /// `UnsupportedOperationException`.
            pub fn area(self) -> Option<Area> {
                match self {
                    $(Self::$name => Some(Area::$area),)*
                    $(Self::$missing => None,)*
                }
            }
        }

        /// A call of an implemented operation, with its typed input.
        #[derive(Debug)]
        pub enum Request {
            $($name($input),)*
        }

        impl Request {
            pub fn operation(&self) -> Operation {
                match self {
                    $(Self::$name(_) => Operation::$name,)*
                }
            }

            /// The typed input of `operation`, or `None` if OpenTrail does not implement it.
            fn decode_known(operation: Operation, input: Value) -> Option<ServiceResult<Self>> {
                match operation {
                    $(Operation::$name => Some(decode_input(input).map(Self::$name)),)*
                    $(Operation::$missing => None,)*
                }
            }
        }
    };
}

operations! {
    implemented {
        // Trails.
        CreateTrail(CreateTrailInput), Write, Trails;
        UpdateTrail(UpdateTrailInput), Write, Trails;
        DeleteTrail(NameInput), Write, Trails;
        GetTrail(NameInput), Read, Trails;
        DescribeTrails(DescribeTrailsInput), Read, Trails;
        ListTrails(ListTrailsInput), Read, Trails;
        GetTrailStatus(NameInput), Read, Trails;
        StartLogging(NameInput), Write, Trails;
        StopLogging(NameInput), Write, Trails;
        PutEventSelectors(PutEventSelectorsInput), Write, Trails;
        GetEventSelectors(TrailNameInput), Read, Trails;
        PutInsightSelectors(PutInsightSelectorsInput), Write, Trails;
        GetInsightSelectors(TrailNameInput), Read, Trails;
        AddTags(TagsInput), Write, Trails;
        RemoveTags(TagsInput), Write, Trails;
        ListTags(ListTagsInput), Read, Trails;
        ListPublicKeys(ListPublicKeysInput), Read, Trails;
        // Event History.
        LookupEvents(LookupEventsInput), Read, EventHistory;
        // Lake: event data stores.
        CreateEventDataStore(CreateEventDataStoreInput), Write, Lake;
        GetEventDataStore(StoreInput), Read, Lake;
        ListEventDataStores(ListInput), Read, Lake;
        UpdateEventDataStore(UpdateEventDataStoreInput), Write, Lake;
        DeleteEventDataStore(StoreInput), Write, Lake;
        RestoreEventDataStore(StoreInput), Write, Lake;
        StartEventDataStoreIngestion(StoreInput), Write, Lake;
        StopEventDataStoreIngestion(StoreInput), Write, Lake;
        // Lake: queries.
        StartQuery(StartQueryInput), Write, Lake;
        DescribeQuery(QueryIdInput), Read, Lake;
        GetQueryResults(GetQueryResultsInput), Read, Lake;
        ListQueries(ListQueriesInput), Read, Lake;
        CancelQuery(QueryIdInput), Write, Lake;
        // Lake: channels and their resource policies.
        CreateChannel(CreateChannelInput), Write, Lake;
        GetChannel(ChannelInput), Read, Lake;
        ListChannels(ListInput), Read, Lake;
        UpdateChannel(UpdateChannelInput), Write, Lake;
        DeleteChannel(ChannelInput), Write, Lake;
        PutResourcePolicy(ResourcePolicyInput), Write, Lake;
        GetResourcePolicy(ResourcePolicyInput), Read, Lake;
        DeleteResourcePolicy(ResourcePolicyInput), Write, Lake;
        // Lake: imports.
        StartImport(StartImportInput), Write, Lake;
        GetImport(ImportIdInput), Read, Lake;
        ListImports(ListImportsInput), Read, Lake;
        StopImport(ImportIdInput), Write, Lake;
        ListImportFailures(ImportIdInput), Read, Lake;
        // Insights.
        ListInsightsData(ListInsightsDataInput), Read, Insights;
        ListInsightsMetricData(ListInsightsMetricDataInput), Read, Insights;
    }
    unsupported {
        GenerateQuery, Write;
        SearchSampleQueries, Write;
        CreateDashboard, Write;
        GetDashboard, Read;
        ListDashboards, Read;
        UpdateDashboard, Write;
        DeleteDashboard, Write;
        StartDashboardRefresh, Write;
        RegisterOrganizationDelegatedAdmin, Write;
        DeregisterOrganizationDelegatedAdmin, Write;
        EnableFederation, Write;
        DisableFederation, Write;
        PutEventConfiguration, Write;
        GetEventConfiguration, Read;
    }
}

impl Operation {
    pub fn read_only(self) -> bool {
        self.access() == Access::Read
    }

    pub fn is_implemented(self) -> bool {
        self.area().is_some()
    }
}

pub fn unknown_operation(operation: &str) -> ServiceError {
    ServiceError::new(ErrorCode::UnknownOperation, format!("Unknown operation {operation}."))
}

fn unsupported_operation(operation: Operation) -> ServiceError {
    ServiceError::new(
        ErrorCode::UnsupportedOperation,
        format!("OpenTrail does not support {} in this version.", operation.name()),
    )
}

impl Request {
    /// The typed input of `operation` from a parsed body. A name CloudTrail does not have is an
    /// `UnknownOperationException`, one OpenTrail does not implement an
    /// `UnsupportedOperationException`; both are answered before the body's members are read.
    pub fn decode(operation: &str, input: Value) -> ServiceResult<Self> {
        let known = Operation::from_name(operation).ok_or_else(|| unknown_operation(operation))?;
        Self::decode_known(known, input).unwrap_or_else(|| Err(unsupported_operation(known)))
    }

    /// The checks that need neither state nor caller (the rest happen when the operation runs).
    pub fn validate_without_state(&self) -> ServiceResult<()> {
        match self {
            Self::LookupEvents(input) => input.criteria(chrono::Utc::now()).map(drop),
            Self::ListInsightsData(input) => input.criteria().map(drop),
            Self::ListInsightsMetricData(input) => input.criteria().map(drop),
            _ => Ok(()),
        }
    }
}

/// Decodes and validates a request as far as the server does before it touches any state:
/// the body, the operation's name, its typed input. Pure; the fuzz target drives it.
pub fn decode_request(operation: &str, body: &[u8]) -> ServiceResult<Request> {
    let request = Request::decode(operation, crate::decode::parse_body(body)?)?;
    request.validate_without_state()?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;

    #[test]
    fn every_model_operation_is_classified_once() {
        assert_eq!(Operation::ALL.len(), 60);
        let names: HashSet<&str> = Operation::ALL.iter().map(|operation| operation.name()).collect();
        assert_eq!(names.len(), 60, "an operation is declared twice");
        for operation in Operation::ALL {
            assert_eq!(Operation::from_name(operation.name()), Some(*operation));
        }
        assert_eq!(Operation::ALL.iter().filter(|operation| operation.is_implemented()).count(), 46);
    }

    /// The declared `readOnly` values are the ones the records had when they were guessed from
    /// the name's verb.
    #[test]
    fn declared_access_matches_the_verb() {
        for operation in Operation::ALL {
            assert_eq!(operation.read_only(), crate::record::read_only_by_verb(operation.name()), "{operation:?}");
        }
    }

    #[test]
    fn unknown_and_unsupported_operations() {
        assert_eq!(decode_request("Nope", b"{}").unwrap_err().code, ErrorCode::UnknownOperation);
        let unsupported = decode_request("CreateDashboard", b"{}").unwrap_err();
        assert_eq!(unsupported.code, ErrorCode::UnsupportedOperation);
        assert_eq!(unsupported.message, "OpenTrail does not support CreateDashboard in this version.");
        // The body is read first: a broken body is a SerializationException whatever the name.
        assert_eq!(decode_request("Nope", b"{").unwrap_err().code, ErrorCode::Serialization);
    }

    #[test]
    fn requests_carry_their_typed_input() {
        let request = Request::decode("GetTrail", json!({"Name": "t1"})).unwrap();
        assert_eq!(request.operation(), Operation::GetTrail);
        assert!(matches!(request, Request::GetTrail(NameInput { name }) if name == "t1"));
        assert_eq!(decode_request("GetTrail", b"{}").unwrap_err().code, ErrorCode::Validation);
        let lookup = decode_request("LookupEvents", br#"{"MaxResults": 0}"#).unwrap_err();
        assert_eq!(lookup.code, ErrorCode::InvalidMaxResults);
    }
}
