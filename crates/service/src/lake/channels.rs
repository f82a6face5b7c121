//! Channels: where `PutAuditEvents` sends events from outside AWS.

use chrono::Utc;
use opentrail_control::{LakeChange, LakeKind};
use opentrail_operations::inputs::{ChannelInput, CreateChannelInput, ListInput, UpdateChannelInput};
use serde_json::{Value, json};

use super::*;
use crate::error::{ErrorCode, ServiceError, ServiceResult};

pub(super) fn channel_shape(channel: &Channel) -> Value {
    json!({
        "ChannelArn": channel.arn(),
        "Name": channel.name,
        "Source": channel.source,
        "Destinations": channel.destinations,
    })
}

impl LakeOps<'_> {
    pub(super) fn check_destinations(
        stores: &[EventDataStore],
        destinations: &[ChannelDestination],
    ) -> ServiceResult<Vec<ChannelDestination>> {
        if destinations.is_empty() || destinations.len() > 200 {
            return Err(err(ErrorCode::InvalidParameter, "A channel needs 1 to 200 destinations."));
        }
        let mut resolved = Vec::with_capacity(destinations.len());
        for destination in destinations {
            if destination.destination_type != "EVENT_DATA_STORE" {
                return Err(err(
                    ErrorCode::InvalidParameter,
                    format!(
                        "Destination type {} is not supported; use EVENT_DATA_STORE.",
                        destination.destination_type
                    ),
                ));
            }
            let store = Self::find_store(stores, &destination.location)?;
            if store.status == StoreStatus::PendingDeletion {
                return Err(err(
                    ErrorCode::InactiveEventDataStore,
                    format!("Event data store {} is pending deletion.", store.arn()),
                ));
            }
            if store.category() != StoreCategory::ActivityAuditLog
                || store.multi_region_enabled
                || store.organization_enabled
            {
                return Err(err(
                    ErrorCode::InvalidEventDataStoreCategory,
                    "A channel's destinations must be single-Region event data stores for ActivityAuditLog events.",
                ));
            }
            resolved.push(ChannelDestination { destination_type: "EVENT_DATA_STORE".into(), location: store.arn() });
        }
        Ok(resolved)
    }

    pub(super) fn note_channel(resources: &mut Vec<Resource>, channel: &Channel) {
        resources.push(Resource { arn: channel.arn(), resource_type: CHANNEL_RESOURCE_TYPE.into() });
    }

    pub fn create_channel(&mut self, input: CreateChannelInput) -> ServiceResult<Value> {
        Self::check_name(&input.name)?;
        if input.source != "Custom" {
            return Err(err(
                ErrorCode::InvalidSource,
                format!("Source {} is not valid; OpenTrail channels take the source Custom.", input.source),
            ));
        }
        let tags = input.tags.clone().unwrap_or_default();
        validate_tags(&tags)?;
        let caller = self.caller.clone();
        let now = Utc::now().timestamp_millis();
        self.mutate(|state, resources| {
            if state.channels.iter().any(|c| c.name == input.name) {
                return Err(err(
                    ErrorCode::ChannelAlreadyExists,
                    format!("A channel named {} already exists.", input.name),
                ));
            }
            if state.channels.len() >= MAX_CHANNELS {
                return Err(err(
                    ErrorCode::ChannelMaxLimitExceeded,
                    format!("An account can have at most {MAX_CHANNELS} channels."),
                ));
            }
            let destinations = Self::check_destinations(&state.stores, &input.destinations)?;
            let channel = Channel {
                id: uuid::Uuid::new_v4().to_string(),
                account: caller.principal.account.clone(),
                region: caller.region.clone(),
                name: input.name.clone(),
                source: input.source.clone(),
                destinations,
                tags: tags.clone(),
                resource_policy: None,
                created_ms: now,
            };
            Self::note_channel(resources, &channel);
            let mut output = channel_shape(&channel);
            output["Tags"] = json!(channel.tags);
            Ok((vec![put_channel(&channel)?], output))
        })
    }

    pub fn get_channel(&mut self, input: ChannelInput) -> ServiceResult<Value> {
        let state = self.load()?;
        let channel = Self::find_channel(&state.channels, &input.channel)?;
        let mut output = channel_shape(channel);
        let key = crate::audit_events::ingestion_state_key(&channel.arn());
        let status = self.store.consumer_state(&key).map_err(ServiceError::internal)?;
        output["IngestionStatus"] =
            status.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_else(|| json!({}));
        Ok(output)
    }

    pub fn list_channels(&mut self, input: ListInput) -> ServiceResult<Value> {
        let limit = max_results(input.max_results, 1000)?;
        let after = input.next_token.as_deref().map(decode_text_token).transpose()?;
        let mut channels = self.load()?.channels;
        channels.sort_by_key(Channel::arn);
        let remaining: Vec<&Channel> =
            channels.iter().filter(|c| after.as_ref().is_none_or(|after| &c.arn() > after)).collect();
        let page = &remaining[..remaining.len().min(limit)];
        let mut output = json!({"Channels": page.iter().map(|c| json!({"ChannelArn": c.arn(), "Name": c.name})).collect::<Vec<_>>()});
        if remaining.len() > page.len()
            && let Some(last) = page.last()
        {
            output["NextToken"] = json!(encode_text_token(&last.arn()));
        }
        Ok(output)
    }

    pub fn update_channel(&mut self, input: UpdateChannelInput) -> ServiceResult<Value> {
        if let Some(name) = &input.name {
            Self::check_name(name)?;
        }
        self.mutate(|state, resources| {
            let mut channel = Self::find_channel(&state.channels, &input.channel)?.clone();
            if let Some(name) = &input.name {
                if state.channels.iter().any(|c| &c.name == name && c.id != channel.id) {
                    return Err(err(
                        ErrorCode::ChannelAlreadyExists,
                        format!("A channel named {name} already exists."),
                    ));
                }
                channel.name = name.clone();
            }
            if let Some(destinations) = &input.destinations {
                channel.destinations = Self::check_destinations(&state.stores, destinations)?;
            }
            Self::note_channel(resources, &channel);
            Ok((vec![put_channel(&channel)?], channel_shape(&channel)))
        })
    }

    pub fn delete_channel(&mut self, input: ChannelInput) -> ServiceResult<Value> {
        self.mutate(|state, resources| {
            let channel = Self::find_channel(&state.channels, &input.channel)?;
            Self::note_channel(resources, channel);
            Ok((vec![LakeChange::Delete { kind: LakeKind::Channel, id: channel.id.clone() }], json!({})))
        })
    }
}
