//! Inputs of the CloudTrail Lake operations.

use opentrail_model::lake::ChannelDestination;
use opentrail_model::{AdvancedEventSelector, Tag};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEventDataStoreInput {
    pub name: String,
    pub advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
    pub multi_region_enabled: Option<bool>,
    pub organization_enabled: Option<bool>,
    pub retention_period: Option<i64>,
    pub termination_protection_enabled: Option<bool>,
    pub tags_list: Option<Vec<Tag>>,
    pub kms_key_id: Option<String>,
    pub start_ingestion: Option<bool>,
    pub billing_mode: Option<String>,
}

/// An event data store by ARN or ID (Get, Delete, Restore, Start/StopEventDataStoreIngestion).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreInput {
    pub event_data_store: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateEventDataStoreInput {
    pub event_data_store: String,
    pub name: Option<String>,
    pub advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
    pub multi_region_enabled: Option<bool>,
    pub organization_enabled: Option<bool>,
    pub retention_period: Option<i64>,
    pub termination_protection_enabled: Option<bool>,
    pub kms_key_id: Option<String>,
    pub billing_mode: Option<String>,
}

/// A page of a list (ListEventDataStores, ListChannels).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInput {
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartQueryInput {
    pub query_statement: Option<String>,
    pub query_alias: Option<String>,
    pub query_parameters: Option<Vec<String>>,
    pub delivery_s3_uri: Option<String>,
    pub event_data_store_owner_account_id: Option<String>,
}

/// A query by ID (DescribeQuery, CancelQuery).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryIdInput {
    pub query_id: Option<String>,
    pub query_alias: Option<String>,
    pub event_data_store_owner_account_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetQueryResultsInput {
    pub query_id: String,
    pub next_token: Option<String>,
    pub max_query_results: Option<i64>,
    pub event_data_store_owner_account_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListQueriesInput {
    pub event_data_store: String,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub query_status: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateChannelInput {
    pub name: String,
    pub source: String,
    pub destinations: Vec<ChannelDestination>,
    pub tags: Option<Vec<Tag>>,
}

/// A channel by ARN or ID (GetChannel, DeleteChannel).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelInput {
    pub channel: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateChannelInput {
    pub channel: String,
    pub destinations: Option<Vec<ChannelDestination>>,
    pub name: Option<String>,
}

/// Put, Get and DeleteResourcePolicy (only Put sends a policy).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourcePolicyInput {
    pub resource_arn: String,
    pub resource_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3ImportSource {
    pub s3_location_uri: String,
    pub s3_bucket_region: String,
    pub s3_bucket_access_role_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportSourceInput {
    pub s3: S3ImportSource,
}

/// A new import (Destinations and ImportSource), or a retry of one (ImportId).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartImportInput {
    pub destinations: Option<Vec<String>>,
    pub import_source: Option<ImportSourceInput>,
    pub start_event_time: Option<f64>,
    pub end_event_time: Option<f64>,
    pub import_id: Option<String>,
}

/// An import by ID (GetImport, StopImport, and ListImportFailures with its paging).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportIdInput {
    pub import_id: String,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListImportsInput {
    pub max_results: Option<i64>,
    pub destination: Option<String>,
    pub import_status: Option<String>,
    pub next_token: Option<String>,
}
