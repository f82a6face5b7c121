//! Every error a caller can see: an AWS error type, a message, and an HTTP status.

use std::fmt;

macro_rules! error_codes {
    ($($name:ident => $wire:literal, $status:literal;)*) => {
        /// AWS error types, spelled as they travel in `__type`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($name),* }

        impl ErrorCode {
            pub fn aws_type(self) -> &'static str {
                match self { $(Self::$name => $wire),* }
            }
            pub fn http_status(self) -> u16 {
                match self { $(Self::$name => $status),* }
            }
        }
    };
}

error_codes! {
    // The protocol's own errors (not in the CloudTrail model, shared by AWS JSON services).
    Serialization => "SerializationException", 400;
    Validation => "ValidationException", 400;
    UnknownOperation => "UnknownOperationException", 400;
    MissingAuthenticationToken => "MissingAuthenticationTokenException", 403;
    IncompleteSignature => "IncompleteSignatureException", 400;
    InvalidSignature => "InvalidSignatureException", 400;
    UnrecognizedClient => "UnrecognizedClientException", 400;
    RequestEntityTooLarge => "RequestEntityTooLargeException", 413;
    InternalFailure => "InternalFailure", 500;
    // CloudTrail answers a request rate it cannot serve with this (HTTP 400).
    Throttling => "ThrottlingException", 400;
    // CloudTrail's modelled exceptions.
    CloudTrailArnInvalid => "CloudTrailARNInvalidException", 400;
    InsightNotEnabled => "InsightNotEnabledException", 400;
    InvalidCloudWatchLogsLogGroupArn => "InvalidCloudWatchLogsLogGroupArnException", 400;
    InvalidCloudWatchLogsRoleArn => "InvalidCloudWatchLogsRoleArnException", 400;
    InvalidEventCategory => "InvalidEventCategoryException", 400;
    InvalidEventSelectors => "InvalidEventSelectorsException", 400;
    InvalidHomeRegion => "InvalidHomeRegionException", 400;
    InvalidInsightSelectors => "InvalidInsightSelectorsException", 400;
    InvalidKmsKeyId => "InvalidKmsKeyIdException", 400;
    InvalidLookupAttributes => "InvalidLookupAttributesException", 400;
    InvalidMaxResults => "InvalidMaxResultsException", 400;
    InvalidNextToken => "InvalidNextTokenException", 400;
    InvalidParameter => "InvalidParameterException", 400;
    InvalidParameterCombination => "InvalidParameterCombinationException", 400;
    InvalidS3BucketName => "InvalidS3BucketNameException", 400;
    InvalidS3Prefix => "InvalidS3PrefixException", 400;
    InvalidSnsTopicName => "InvalidSnsTopicNameException", 400;
    InvalidTagParameter => "InvalidTagParameterException", 400;
    InvalidTimeRange => "InvalidTimeRangeException", 400;
    InvalidToken => "InvalidTokenException", 400;
    S3BucketDoesNotExist => "S3BucketDoesNotExistException", 400;
    InsufficientS3BucketPolicy => "InsufficientS3BucketPolicyException", 400;
    InsufficientSnsTopicPolicy => "InsufficientSnsTopicPolicyException", 400;
    InvalidTrailName => "InvalidTrailNameException", 400;
    MaximumNumberOfTrailsExceeded => "MaximumNumberOfTrailsExceededException", 400;
    OrganizationsNotInUse => "OrganizationsNotInUseException", 400;
    ResourceNotFound => "ResourceNotFoundException", 400;
    ResourceTypeNotSupported => "ResourceTypeNotSupportedException", 400;
    TagsLimitExceeded => "TagsLimitExceededException", 400;
    TrailAlreadyExists => "TrailAlreadyExistsException", 400;
    TrailNotFound => "TrailNotFoundException", 400;
    UnsupportedOperation => "UnsupportedOperationException", 400;
    // CloudTrail Lake.
    EventDataStoreAlreadyExists => "EventDataStoreAlreadyExistsException", 400;
    EventDataStoreMaxLimitExceeded => "EventDataStoreMaxLimitExceededException", 400;
    EventDataStoreNotFound => "EventDataStoreNotFoundException", 400;
    EventDataStoreArnInvalid => "EventDataStoreARNInvalidException", 400;
    EventDataStoreTerminationProtected => "EventDataStoreTerminationProtectedException", 400;
    InactiveEventDataStore => "InactiveEventDataStoreException", 400;
    InvalidEventDataStoreStatus => "InvalidEventDataStoreStatusException", 400;
    InvalidEventDataStoreCategory => "InvalidEventDataStoreCategoryException", 400;
    ChannelExistsForEds => "ChannelExistsForEDSException", 400;
    InvalidQueryStatement => "InvalidQueryStatementException", 400;
    MaxConcurrentQueries => "MaxConcurrentQueriesException", 400;
    QueryIdNotFound => "QueryIdNotFoundException", 400;
    InactiveQuery => "InactiveQueryException", 400;
    InvalidDateRange => "InvalidDateRangeException", 400;
    InvalidQueryStatus => "InvalidQueryStatusException", 400;
    ChannelNotFound => "ChannelNotFoundException", 400;
    ChannelAlreadyExists => "ChannelAlreadyExistsException", 400;
    ChannelArnInvalid => "ChannelARNInvalidException", 400;
    ChannelMaxLimitExceeded => "ChannelMaxLimitExceededException", 400;
    InvalidSource => "InvalidSourceException", 400;
    ResourceArnNotValid => "ResourceARNNotValidException", 400;
    ResourcePolicyNotFound => "ResourcePolicyNotFoundException", 400;
    ResourcePolicyNotValid => "ResourcePolicyNotValidException", 400;
    AccountHasOngoingImport => "AccountHasOngoingImportException", 400;
    InvalidImportSource => "InvalidImportSourceException", 400;
    ImportNotFound => "ImportNotFoundException", 400;
    // cloudtrail-data (its exception names carry no "Exception" suffix).
    ChannelInsufficientPermission => "ChannelInsufficientPermission", 400;
    ChannelNotFoundData => "ChannelNotFound", 400;
    InvalidChannelArn => "InvalidChannelARN", 400;
    DuplicatedAuditEventId => "DuplicatedAuditEventId", 400;
}

/// An error answered to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn internal(error: impl fmt::Display) -> Self {
        tracing::error!(%error, "internal failure");
        Self::new(ErrorCode::InternalFailure, "The request processing has failed because of an unknown error.")
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.aws_type(), self.message)
    }
}

impl std::error::Error for ServiceError {}

pub type ServiceResult<T> = Result<T, ServiceError>;
