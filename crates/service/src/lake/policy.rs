//! Resource policies, which OpenTrail keeps for channels (who may call `PutAuditEvents`).

use opentrail_operations::inputs::ResourcePolicyInput;
use serde_json::{Value, json};

use super::*;
use crate::error::{ErrorCode, ServiceResult};

impl LakeOps<'_> {
    /// Resource policies exist for channels (who may call PutAuditEvents).
    pub(super) fn policy_channel<'s>(state: &'s LakeState, arn: &str) -> ServiceResult<&'s Channel> {
        if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
            return Err(err(ErrorCode::ResourceArnNotValid, format!("The resource ARN {arn} is not valid.")));
        }
        if arn.contains(":eventdatastore/") || arn.contains(":dashboard/") {
            return Err(err(
                ErrorCode::ResourceTypeNotSupported,
                "OpenTrail keeps resource policies for channels only; event data stores are not shared across accounts.",
            ));
        }
        if !arn.contains(":channel/") {
            return Err(err(ErrorCode::ResourceTypeNotSupported, "Resource policies can be attached to channels."));
        }
        state
            .channels
            .iter()
            .find(|c| c.arn() == arn)
            .ok_or_else(|| err(ErrorCode::ResourceNotFound, format!("The resource {arn} was not found.")))
    }

    pub fn put_resource_policy(&mut self, input: ResourcePolicyInput) -> ServiceResult<Value> {
        let Some(policy) = input.resource_policy.clone() else {
            return Err(err(ErrorCode::InvalidParameter, "ResourcePolicy is required."));
        };
        validate_channel_policy(&policy, &input.resource_arn)?;
        self.mutate(|state, resources| {
            let mut channel = Self::policy_channel(state, &input.resource_arn)?.clone();
            channel.resource_policy = Some(policy.clone());
            Self::note_channel(resources, &channel);
            Ok((vec![put_channel(&channel)?], json!({"ResourceArn": channel.arn(), "ResourcePolicy": policy})))
        })
    }

    pub fn get_resource_policy(&mut self, input: ResourcePolicyInput) -> ServiceResult<Value> {
        let state = self.load()?;
        let channel = Self::policy_channel(&state, &input.resource_arn)?;
        match &channel.resource_policy {
            Some(policy) => Ok(json!({"ResourceArn": channel.arn(), "ResourcePolicy": policy})),
            None => Err(err(ErrorCode::ResourcePolicyNotFound, "The channel has no resource policy.")),
        }
    }

    pub fn delete_resource_policy(&mut self, input: ResourcePolicyInput) -> ServiceResult<Value> {
        self.mutate(|state, resources| {
            let mut channel = Self::policy_channel(state, &input.resource_arn)?.clone();
            if channel.resource_policy.is_none() {
                return Err(err(ErrorCode::ResourcePolicyNotFound, "The channel has no resource policy."));
            }
            channel.resource_policy = None;
            Self::note_channel(resources, &channel);
            Ok((vec![put_channel(&channel)?], json!({})))
        })
    }
}

/// CloudTrail's rules for a channel's resource policy: JSON, 1-20 statements, each allowing only
/// `cloudtrail-data:PutAuditEvents` on the channel to 1-50 principals.
pub(super) fn validate_channel_policy(policy: &str, channel_arn: &str) -> ServiceResult<()> {
    let invalid =
        |why: &str| err(ErrorCode::ResourcePolicyNotValid, format!("The resource policy is not valid: {why}"));
    if policy.is_empty() || policy.chars().count() > 8192 {
        return Err(invalid("it must be 1 to 8192 characters long."));
    }
    let document: Value = serde_json::from_str(policy).map_err(|_| invalid("it is not JSON."))?;
    let statements = match document.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => return Err(invalid("it has no Statement.")),
    };
    if statements.is_empty() || statements.len() > 20 {
        return Err(invalid("it must have 1 to 20 statements."));
    }
    let as_list = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    };
    for statement in &statements {
        let actions = as_list(statement.get("Action"));
        if actions.is_empty() || actions.iter().any(|a| a != "cloudtrail-data:PutAuditEvents") {
            return Err(invalid("the only action allowed is cloudtrail-data:PutAuditEvents."));
        }
        let resources = as_list(statement.get("Resource"));
        if !resources.is_empty() && resources.iter().any(|r| r != channel_arn) {
            return Err(invalid("the Resource must be the channel's ARN."));
        }
        let principals = match statement.get("Principal") {
            Some(Value::Object(map)) => map.values().flat_map(|v| as_list(Some(v))).count(),
            Some(Value::String(_)) => 1,
            _ => 0,
        };
        if principals == 0 || principals > 50 {
            return Err(invalid("each statement needs 1 to 50 principals."));
        }
    }
    Ok(())
}
