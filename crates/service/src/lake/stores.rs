//! Event data stores: create, read, list, update, delete (pending deletion), restore, and
//! ingestion windows.

use chrono::Utc;
use opentrail_operations::inputs::{CreateEventDataStoreInput, ListInput, StoreInput, UpdateEventDataStoreInput};
use serde_json::{Value, json};

use super::*;
use crate::error::{ErrorCode, ServiceResult};

pub(super) fn store_shape(store: &EventDataStore, with_tags: bool, with_federation: bool) -> Value {
    let mut shape = json!({
        "EventDataStoreArn": store.arn(),
        "Name": store.name,
        "Status": store.status.as_str(),
        "AdvancedEventSelectors": store.advanced_event_selectors,
        "MultiRegionEnabled": store.multi_region_enabled,
        "OrganizationEnabled": store.organization_enabled,
        "RetentionPeriod": store.retention_period_days,
        "TerminationProtectionEnabled": store.termination_protection_enabled,
        "CreatedTimestamp": epoch_seconds(store.created_ms),
        "UpdatedTimestamp": epoch_seconds(store.updated_ms),
        "BillingMode": store.billing_mode,
    });
    if let Some(key) = &store.kms_key_id {
        shape["KmsKeyId"] = json!(key);
    }
    if with_tags {
        shape["TagsList"] = json!(store.tags);
    }
    if with_federation {
        shape["FederationStatus"] = json!("DISABLED");
    }
    shape
}

impl LakeOps<'_> {
    pub(super) fn check_retention(billing_mode: &str, retention: i64) -> ServiceResult<u32> {
        let (low, high) = retention_bounds(billing_mode);
        if retention < i64::from(low) || retention > i64::from(high) {
            return Err(err(
                ErrorCode::InvalidParameter,
                format!("RetentionPeriod must be between {low} and {high} days for {billing_mode}."),
            ));
        }
        Ok(retention as u32)
    }

    pub(super) fn check_billing_mode(mode: &str) -> ServiceResult<()> {
        if mode == EXTENDABLE_RETENTION_PRICING || mode == FIXED_RETENTION_PRICING {
            Ok(())
        } else {
            Err(err(ErrorCode::InvalidParameter, format!("BillingMode {mode} is not valid.")))
        }
    }

    pub(super) fn check_selectors(selectors: &[AdvancedEventSelector]) -> ServiceResult<()> {
        validate_advanced(selectors, SelectorTarget::EventDataStore)
            .map_err(|error| err(ErrorCode::InvalidEventSelectors, error.0))?;
        let categories: std::collections::HashSet<StoreCategory> =
            selectors.iter().map(|s| category_of(std::slice::from_ref(s))).collect();
        if categories.len() > 1 {
            return Err(err(
                ErrorCode::InvalidEventSelectors,
                "All selectors of an event data store must select one category family (CloudTrail events, Insights, ActivityAuditLog, ...).",
            ));
        }
        Ok(())
    }

    pub(super) fn check_name(name: &str) -> ServiceResult<()> {
        if valid_store_name(name) {
            Ok(())
        } else {
            Err(err(
                ErrorCode::InvalidParameter,
                "Name must be 3 to 128 characters of letters, digits, periods, underscores and dashes.",
            ))
        }
    }

    pub(super) fn organization(enabled: Option<bool>) -> ServiceResult<()> {
        if enabled == Some(true) {
            return Err(err(
                ErrorCode::OrganizationsNotInUse,
                "This account is not part of an organization; OpenTrail does not run organization event data stores.",
            ));
        }
        Ok(())
    }

    pub fn create_event_data_store(&mut self, input: CreateEventDataStoreInput) -> ServiceResult<Value> {
        Self::check_name(&input.name)?;
        Self::organization(input.organization_enabled)?;
        let billing_mode = input.billing_mode.clone().unwrap_or_else(|| EXTENDABLE_RETENTION_PRICING.into());
        Self::check_billing_mode(&billing_mode)?;
        let default_retention = if billing_mode == FIXED_RETENTION_PRICING { 2557 } else { 366 };
        let retention = Self::check_retention(&billing_mode, input.retention_period.unwrap_or(default_retention))?;
        let selectors = input.advanced_event_selectors.clone().unwrap_or_else(default_store_selectors);
        Self::check_selectors(&selectors)?;
        let tags = input.tags_list.clone().unwrap_or_default();
        validate_tags(&tags)?;
        if tags.len() > 50 {
            return Err(err(ErrorCode::TagsLimitExceeded, "A resource can have at most 50 tags."));
        }
        let now = Utc::now().timestamp_millis();
        let start_ingestion = input.start_ingestion.unwrap_or(true);
        let position = self.journal.committed_end();
        let caller = self.caller.clone();
        self.mutate(|state, resources| {
            if state.stores.iter().any(|s| s.name == input.name) {
                return Err(err(
                    ErrorCode::EventDataStoreAlreadyExists,
                    format!("An event data store named {} already exists.", input.name),
                ));
            }
            if state.stores.len() >= MAX_EVENT_DATA_STORES {
                return Err(err(
                    ErrorCode::EventDataStoreMaxLimitExceeded,
                    format!("An account can have at most {MAX_EVENT_DATA_STORES} event data stores per Region."),
                ));
            }
            let store = EventDataStore {
                id: uuid::Uuid::new_v4().to_string(),
                account: caller.principal.account.clone(),
                region: caller.region.clone(),
                name: input.name.clone(),
                status: if start_ingestion { StoreStatus::Enabled } else { StoreStatus::StoppedIngestion },
                advanced_event_selectors: selectors.clone(),
                multi_region_enabled: input.multi_region_enabled.unwrap_or(true),
                organization_enabled: false,
                retention_period_days: retention,
                termination_protection_enabled: input.termination_protection_enabled.unwrap_or(true),
                billing_mode: billing_mode.clone(),
                kms_key_id: input.kms_key_id.clone(),
                tags: tags.clone(),
                created_ms: now,
                updated_ms: now,
                deleted_ms: None,
                ingestion: if start_ingestion {
                    vec![IngestionWindow { from: position, to: None }]
                } else {
                    Vec::new()
                },
                insight_selectors: Vec::new(),
                insights_destination: None,
            };
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], store_shape(&store, true, false)))
        })
    }

    pub fn get_event_data_store(&mut self, input: StoreInput) -> ServiceResult<Value> {
        let state = self.load()?;
        let store = Self::find_store(&state.stores, &input.event_data_store)?;
        Ok(store_shape(store, false, true))
    }

    pub fn list_event_data_stores(&mut self, input: ListInput) -> ServiceResult<Value> {
        let limit = max_results(input.max_results, 1000)?;
        let after = input.next_token.as_deref().map(decode_text_token).transpose()?;
        let mut stores = self.load()?.stores;
        stores.sort_by_key(EventDataStore::arn);
        let page: Vec<&EventDataStore> =
            stores.iter().filter(|s| after.as_ref().is_none_or(|after| &s.arn() > after)).take(limit).collect();
        let mut output = json!({
            "EventDataStores": page.iter().map(|s| json!({"EventDataStoreArn": s.arn(), "Name": s.name})).collect::<Vec<_>>()
        });
        if page.len() == limit
            && let Some(last) = page.last()
            && stores.iter().any(|s| s.arn() > last.arn())
        {
            output["NextToken"] = json!(encode_text_token(&last.arn()));
        }
        Ok(output)
    }

    pub fn update_event_data_store(&mut self, input: UpdateEventDataStoreInput) -> ServiceResult<Value> {
        let nothing = input.name.is_none()
            && input.advanced_event_selectors.is_none()
            && input.multi_region_enabled.is_none()
            && input.organization_enabled.is_none()
            && input.retention_period.is_none()
            && input.termination_protection_enabled.is_none()
            && input.kms_key_id.is_none()
            && input.billing_mode.is_none();
        if nothing {
            return Err(err(
                ErrorCode::InvalidParameter,
                "At least one parameter other than EventDataStore must be given.",
            ));
        }
        if let Some(name) = &input.name {
            Self::check_name(name)?;
        }
        Self::organization(input.organization_enabled)?;
        if let Some(selectors) = &input.advanced_event_selectors {
            Self::check_selectors(selectors)?;
        }
        if let Some(mode) = &input.billing_mode {
            Self::check_billing_mode(mode)?;
        }
        let now = Utc::now().timestamp_millis();
        let reference = input.event_data_store.clone();
        self.mutate(|state, resources| {
            let mut store = Self::find_store(&state.stores, &reference)?.clone();
            if store.status == StoreStatus::PendingDeletion {
                return Err(err(ErrorCode::InactiveEventDataStore, format!("Event data store {} is pending deletion.", store.arn())));
            }
            if state.imports.iter().any(|i| i.store_id == store.id && i.status.is_active()) {
                return Err(err(ErrorCode::InvalidParameter, "The event data store has an import in progress."));
            }
            if let Some(name) = &input.name
                && state.stores.iter().any(|s| &s.name == name && s.id != store.id)
            {
                return Err(err(ErrorCode::EventDataStoreAlreadyExists, format!("An event data store named {name} already exists.")));
            }
            if let Some(selectors) = &input.advanced_event_selectors
                && category_of(selectors) != store.category()
            {
                return Err(err(
                    ErrorCode::InvalidEventSelectors,
                    "An event data store's category cannot change: events from outside AWS and CloudTrail events live in different stores.",
                ));
            }
            // A source of Insights must go on logging the management events its Insights count.
            if let Some(selectors) = &input.advanced_event_selectors
                && !store.insight_selectors.is_empty()
            {
                let mut updated = store.clone();
                updated.advanced_event_selectors = selectors.clone();
                super::insights::check_insight_source(&updated, &store.insight_selectors)?;
            }
            if let Some(mode) = &input.billing_mode {
                if store.billing_mode == EXTENDABLE_RETENTION_PRICING && mode == FIXED_RETENTION_PRICING {
                    return Err(err(ErrorCode::InvalidParameter, "EXTENDABLE_RETENTION_PRICING cannot be changed to FIXED_RETENTION_PRICING."));
                }
                store.billing_mode = mode.clone();
            }
            if let Some(key) = &input.kms_key_id
                && store.kms_key_id.as_ref().is_some_and(|current| current != key)
            {
                return Err(err(ErrorCode::InvalidParameter, "An event data store's KMS key cannot be changed once set."));
            }
            let retention = input.retention_period.unwrap_or(i64::from(store.retention_period_days));
            store.retention_period_days = Self::check_retention(&store.billing_mode, retention)?;
            if let Some(name) = &input.name {
                store.name = name.clone();
            }
            if let Some(selectors) = &input.advanced_event_selectors {
                store.advanced_event_selectors = selectors.clone();
            }
            if let Some(multi) = input.multi_region_enabled {
                store.multi_region_enabled = multi;
            }
            if let Some(protection) = input.termination_protection_enabled {
                store.termination_protection_enabled = protection;
            }
            if input.kms_key_id.is_some() {
                store.kms_key_id = input.kms_key_id.clone();
            }
            store.updated_ms = now;
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], store_shape(&store, false, true)))
        })
    }

    pub fn delete_event_data_store(&mut self, input: StoreInput) -> ServiceResult<Value> {
        let now = Utc::now().timestamp_millis();
        let position = self.journal.committed_end();
        self.mutate(|state, resources| {
            let mut store = Self::find_store(&state.stores, &input.event_data_store)?.clone();
            if store.status == StoreStatus::PendingDeletion {
                return Err(err(ErrorCode::InactiveEventDataStore, format!("Event data store {} is already pending deletion.", store.arn())));
            }
            if store.termination_protection_enabled {
                return Err(err(
                    ErrorCode::EventDataStoreTerminationProtected,
                    "The event data store has termination protection enabled; disable it with UpdateEventDataStore first.",
                ));
            }
            let arn = store.arn();
            if state.channels.iter().any(|c| c.destinations.iter().any(|d| d.location == arn || d.location == store.id)) {
                return Err(err(ErrorCode::ChannelExistsForEds, "A channel still sends events to this event data store; delete or update the channel first."));
            }
            if state.imports.iter().any(|i| i.store_id == store.id && i.status.is_active()) {
                return Err(err(ErrorCode::InvalidParameter, "The event data store has an import in progress."));
            }
            close_ingestion(&mut store, position);
            store.status = StoreStatus::PendingDeletion;
            store.deleted_ms = Some(now);
            store.updated_ms = now;
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], json!({})))
        })
    }

    pub fn restore_event_data_store(&mut self, input: StoreInput) -> ServiceResult<Value> {
        let now = Utc::now().timestamp_millis();
        let position = self.journal.committed_end();
        self.mutate(|state, resources| {
            let mut store = Self::find_store(&state.stores, &input.event_data_store)?.clone();
            if store.status != StoreStatus::PendingDeletion {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreStatus,
                    "Only an event data store pending deletion can be restored.",
                ));
            }
            let live = state.stores.iter().filter(|s| s.status != StoreStatus::PendingDeletion).count();
            if live >= MAX_EVENT_DATA_STORES {
                return Err(err(
                    ErrorCode::EventDataStoreMaxLimitExceeded,
                    "Restoring would exceed the event data store quota.",
                ));
            }
            store.status = StoreStatus::Enabled;
            store.deleted_ms = None;
            store.updated_ms = now;
            store.ingestion.push(IngestionWindow { from: position, to: None });
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], store_shape(&store, false, false)))
        })
    }

    pub fn set_ingestion(&mut self, input: StoreInput, start: bool) -> ServiceResult<Value> {
        let now = Utc::now().timestamp_millis();
        let position = self.journal.committed_end();
        self.mutate(|state, resources| {
            let mut store = Self::find_store(&state.stores, &input.event_data_store)?.clone();
            // CloudTrail starts and stops ingestion on stores of Management, Data,
            // NetworkActivity or ConfigurationItem events only: an Insights store receives what
            // its source's Insights produce, and is controlled through the source.
            if !matches!(store.category(), StoreCategory::CloudTrailEvents) {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreCategory,
                    "Ingestion can only be started or stopped on stores of CloudTrail events; Insights events follow the source store's Insights selectors.",
                ));
            }
            let expected = if start { StoreStatus::StoppedIngestion } else { StoreStatus::Enabled };
            if store.status != expected {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreStatus,
                    format!(
                        "The event data store's status is {}; this needs {}.",
                        store.status.as_str(),
                        expected.as_str()
                    ),
                ));
            }
            if start {
                store.ingestion.push(IngestionWindow { from: position, to: None });
                store.status = StoreStatus::Enabled;
            } else {
                close_ingestion(&mut store, position);
                store.status = StoreStatus::StoppedIngestion;
            }
            store.updated_ms = now;
            Self::note_store(resources, &store);
            Ok((vec![put_store(&store)?], json!({})))
        })
    }
}

/// Ends a store's open ingestion window at `position`.
pub(super) fn close_ingestion(store: &mut EventDataStore, position: u64) {
    if let Some(window) = store.ingestion.last_mut()
        && window.to.is_none()
    {
        window.to = Some(position);
    }
}
