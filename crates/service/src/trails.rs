//! Trail operations: create, read, update, delete, logging status, selectors, Insights
//! selectors and tags. All state changes go through [`TrailOps::mutate`], which applies them
//! atomically against the version of the account's trails they were decided on, together with
//! the call's record (see `outbox`).

use chrono::Utc;
use opentrail_control::{AccountTrails, ControlStore, StoreError, TrailBucket, TrailChange};
use opentrail_model::selectors::{self, SelectorTarget};
use opentrail_model::trail::validate_trail_name;
use opentrail_model::{Arn, EventSelector, Region, Tag, Trail};
use opentrail_operations::inputs::{
    CreateTrailInput, DescribeTrailsInput, ListPublicKeysInput, ListTagsInput, ListTrailsInput, NameInput,
    PutEventSelectorsInput, PutInsightSelectorsInput, Settings, TagsInput, TrailNameInput, UpdateTrailInput,
};
use serde_json::{Map, Value, json};

use crate::delivery::{DeliveryContext, RemoteBucketChecks};
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::outbox::CallRecorder;
use crate::{Caller, Resource, epoch_seconds, iso_time, paging};

/// Trails per Region (multi-Region trails count in every Region).
pub const MAX_TRAILS_PER_REGION: usize = 5;
pub const MAX_TAGS_PER_RESOURCE: usize = 50;
const LIST_TRAILS_PAGE_SIZE: usize = 25;
const TRAIL_RESOURCE_TYPE: &str = "AWS::CloudTrail::Trail";

pub struct TrailOps<'a> {
    pub store: &'a dyn ControlStore,
    pub caller: &'a Caller,
    /// Resources the call touched, for the call's CloudTrail record.
    pub resources: &'a mut Vec<Resource>,
    pub delivery: &'a DeliveryContext,
    /// What the remote buckets the input names answered (asked before this blocking part ran).
    pub remote_buckets: &'a RemoteBucketChecks,
    /// Writes a change together with the call's record (see `outbox`).
    pub recorder: &'a CallRecorder,
}

fn err(code: ErrorCode, message: impl Into<String>) -> ServiceError {
    ServiceError::new(code, message)
}

fn trail_not_found(name: &str, caller: &Caller) -> ServiceError {
    err(ErrorCode::TrailNotFound, format!("Unknown trail: {name} for the user: {}", caller.principal.account))
}

fn store_error(error: StoreError) -> ServiceError {
    ServiceError::internal(error)
}

/// The Trail structure of GetTrail and DescribeTrails.
pub fn trail_structure(trail: &Trail) -> Value {
    let mut out = trail_settings(trail);
    out.insert("HomeRegion".into(), json!(trail.home_region.as_str()));
    out.insert("HasCustomEventSelectors".into(), json!(trail.has_custom_event_selectors()));
    out.insert("HasInsightSelectors".into(), json!(trail.has_insight_selectors()));
    Value::Object(out)
}

/// The fields CreateTrail and UpdateTrail answer with.
fn trail_settings(trail: &Trail) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            out.insert(key.into(), value);
        }
    };
    put("Name", json!(trail.name));
    put("S3BucketName", json!(trail.s3_bucket_name));
    put("S3KeyPrefix", json!(trail.s3_key_prefix));
    if let Some(topic) = &trail.sns_topic_name {
        put("SnsTopicName", json!(topic));
        put("SnsTopicARN", json!(sns_topic_arn(trail, topic)));
    }
    put("IncludeGlobalServiceEvents", json!(trail.include_global_service_events));
    put("IsMultiRegionTrail", json!(trail.is_multi_region_trail));
    put("TrailARN", json!(trail.arn()));
    put("LogFileValidationEnabled", json!(trail.log_file_validation_enabled));
    put("CloudWatchLogsLogGroupArn", json!(trail.cloud_watch_logs_log_group_arn));
    put("CloudWatchLogsRoleArn", json!(trail.cloud_watch_logs_role_arn));
    put("KmsKeyId", json!(trail.kms_key_id));
    put("IsOrganizationTrail", json!(trail.is_organization_trail));
    out
}

fn sns_topic_arn(trail: &Trail, topic: &str) -> String {
    if topic.starts_with("arn:") {
        topic.to_owned()
    } else {
        format!("arn:aws:sns:{}:{}:{topic}", trail.home_region, trail.account)
    }
}

/// S3's bucket naming rules, the ones the bucket store itself enforces.
fn validate_bucket_name(name: &str) -> ServiceResult<()> {
    if opentrail_buckets::valid_bucket_name(name) {
        Ok(())
    } else {
        Err(err(ErrorCode::InvalidS3BucketName, format!("Bucket name is not valid: {name}")))
    }
}

/// The longest `S3KeyPrefix` CloudTrail takes.
pub const MAX_S3_KEY_PREFIX_CHARS: usize = 200;

/// `S3KeyPrefix` as CloudTrail takes it: at most 200 characters, and a plain folder path inside
/// the bucket: no leading `/`, no empty, `.` or `..` segment (keys are data, but a prefix that
/// reads as a path could still name another place to anything that treats keys as paths), no
/// control characters. One trailing `/` is allowed (the files go under it either way). The
/// empty string means no prefix.
fn validate_s3_key_prefix(prefix: &str) -> ServiceResult<()> {
    let invalid = |why: &str| err(ErrorCode::InvalidS3Prefix, format!("Invalid S3 key prefix {prefix:?}: {why}."));
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.chars().count() > MAX_S3_KEY_PREFIX_CHARS {
        return Err(err(
            ErrorCode::InvalidS3Prefix,
            format!("S3 key prefix must be at most {MAX_S3_KEY_PREFIX_CHARS} characters."),
        ));
    }
    if prefix.chars().any(char::is_control) {
        return Err(invalid("it must not contain control characters"));
    }
    if prefix.starts_with('/') {
        return Err(invalid("it must not start with /"));
    }
    let folders = prefix.strip_suffix('/').unwrap_or(prefix);
    if folders.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return Err(invalid("its segments must not be empty, . or .."));
    }
    Ok(())
}

/// The change that binds `trail` to the bucket of its name as it is now, for a local bucket
/// (which must exist and be the caller's); remote buckets are the operator's configuration and
/// need none. Delivery writes only while the bucket is still this one.
fn bind_bucket(
    store: &dyn ControlStore,
    delivery: &DeliveryContext,
    caller: &Caller,
    trail: &Trail,
) -> ServiceResult<Option<TrailChange>> {
    let name = &trail.s3_bucket_name;
    if delivery.destinations.is_remote(name) {
        return Ok(None);
    }
    delivery.check_local_bucket(store, &caller.principal.account, name)?;
    let bucket = store
        .bucket(name)
        .map_err(store_error)?
        .ok_or_else(|| err(ErrorCode::S3BucketDoesNotExist, format!("S3 bucket {name} does not exist.")))?;
    Ok(Some(TrailChange::BindBucket(TrailBucket {
        trail_arn: trail.arn(),
        bucket: bucket.name,
        owner: bucket.account,
        created_ms: bucket.created_ms,
    })))
}

fn validate_settings(settings: &Settings, caller: &Caller) -> ServiceResult<Settings> {
    if let Some(prefix) = &settings.s3_key_prefix {
        validate_s3_key_prefix(prefix)?;
    }
    if let Some(topic) = &settings.sns_topic_name
        && (topic.len() > 256 || topic.contains(char::is_whitespace))
    {
        return Err(err(ErrorCode::InvalidSnsTopicName, format!("SNS topic name is not valid: {topic}")));
    }
    let group = settings.cloud_watch_logs_log_group_arn.clone().filter(|s| !s.is_empty());
    let role = settings.cloud_watch_logs_role_arn.clone().filter(|s| !s.is_empty());
    if let Some(group) = &group
        && !Arn::parse(group).is_ok_and(|arn| arn.service == "logs" && arn.resource.starts_with("log-group:"))
    {
        return Err(err(ErrorCode::InvalidCloudWatchLogsLogGroupArn, format!("Invalid log group ARN: {group}")));
    }
    if let Some(role) = &role
        && !Arn::parse(role).is_ok_and(|arn| arn.service == "iam" && arn.resource.starts_with("role/"))
    {
        return Err(err(ErrorCode::InvalidCloudWatchLogsRoleArn, format!("Invalid role ARN: {role}")));
    }
    if group.is_some() != role.is_some() {
        return Err(err(
            ErrorCode::InvalidParameterCombination,
            "CloudWatchLogsLogGroupArn and CloudWatchLogsRoleArn must be given together.",
        ));
    }
    let kms_key_id = match settings.kms_key_id.as_deref() {
        None => None,
        Some("") => Some(String::new()),
        Some(key) if key.starts_with("arn:") => {
            if !Arn::parse(key).is_ok_and(|arn| arn.service == "kms") {
                return Err(err(ErrorCode::InvalidKmsKeyId, format!("Invalid KMS key: {key}")));
            }
            Some(key.to_owned())
        }
        Some(key) if key.starts_with("alias/") || !key.contains(['/', ':']) => Some(format!(
            "arn:aws:kms:{}:{}:{}",
            caller.region,
            caller.principal.account,
            if key.starts_with("alias/") { key.to_owned() } else { format!("key/{key}") }
        )),
        Some(key) => return Err(err(ErrorCode::InvalidKmsKeyId, format!("Invalid KMS key: {key}"))),
    };
    Ok(Settings {
        s3_key_prefix: settings.s3_key_prefix.clone(),
        sns_topic_name: settings.sns_topic_name.clone(),
        cloud_watch_logs_log_group_arn: settings.cloud_watch_logs_log_group_arn.clone(),
        cloud_watch_logs_role_arn: settings.cloud_watch_logs_role_arn.clone(),
        kms_key_id,
    })
}

pub(crate) fn validate_tags(tags: &[Tag]) -> ServiceResult<()> {
    let mut keys = std::collections::HashSet::new();
    for tag in tags {
        if tag.key.is_empty() || tag.key.chars().count() > 128 || tag.key.starts_with("aws:") {
            return Err(err(ErrorCode::InvalidTagParameter, format!("Invalid tag key: {}", tag.key)));
        }
        if tag.value.as_ref().is_some_and(|v| v.chars().count() > 256) {
            return Err(err(ErrorCode::InvalidTagParameter, format!("Tag value for key {} is too long.", tag.key)));
        }
        if !keys.insert(tag.key.as_str()) {
            return Err(err(ErrorCode::InvalidTagParameter, format!("Duplicate tag key: {}", tag.key)));
        }
    }
    Ok(())
}

fn organization_not_in_use() -> ServiceError {
    err(
        ErrorCode::OrganizationsNotInUse,
        "This account is not part of an organization; OpenTrail does not run organization trails.",
    )
}

/// How many trails are visible in `region`, leaving out the trail with ARN `except`.
fn trails_in_region(trails: &[Trail], region: &Region, except: Option<&str>) -> usize {
    trails.iter().filter(|t| t.is_visible_in(region) && Some(t.arn().as_str()) != except).count()
}

/// Checks that adding (or widening) `candidate` keeps names unique and quotas honoured.
fn check_name_and_quota(trails: &[Trail], candidate: &Trail, replacing: Option<&str>) -> ServiceResult<()> {
    let others: Vec<&Trail> = trails.iter().filter(|t| Some(t.arn().as_str()) != replacing).collect();
    let clash = others.iter().any(|t| {
        t.name == candidate.name
            && (t.home_region == candidate.home_region || t.is_multi_region_trail || candidate.is_multi_region_trail)
    });
    if clash {
        return Err(err(
            ErrorCode::TrailAlreadyExists,
            format!("Trail {} already exists for customer: {}", candidate.name, candidate.account),
        ));
    }
    let mut regions: Vec<&Region> = vec![&candidate.home_region];
    if candidate.is_multi_region_trail {
        regions.extend(others.iter().map(|t| &t.home_region));
    }
    for region in regions {
        if trails_in_region(trails, region, replacing) >= MAX_TRAILS_PER_REGION {
            return Err(err(
                ErrorCode::MaximumNumberOfTrailsExceeded,
                format!("User: {} already has {MAX_TRAILS_PER_REGION} trails in {region}.", candidate.account),
            ));
        }
    }
    Ok(())
}

fn parse_trail_arn(text: &str) -> ServiceResult<(Region, String, String)> {
    let (region, account, name) = Arn::parse_trail(text)
        .map_err(|_| err(ErrorCode::CloudTrailArnInvalid, format!("Invalid trail ARN: {text}")))?;
    Ok((region, account.to_string(), name))
}

/// Finds a trail by name (homed in, or shadowed into, the caller's Region) or by ARN.
pub(crate) fn resolve<'t>(caller: &Caller, trails: &'t [Trail], name_or_arn: &str) -> ServiceResult<&'t Trail> {
    if name_or_arn.starts_with("arn:") {
        let (region, account, name) = parse_trail_arn(name_or_arn)?;
        return trails
            .iter()
            .find(|t| account == caller.principal.account.as_str() && t.home_region == region && t.name == name)
            .ok_or_else(|| trail_not_found(name_or_arn, caller));
    }
    validate_trail_name(name_or_arn).map_err(|e| err(ErrorCode::InvalidTrailName, e.0))?;
    trails
        .iter()
        .filter(|t| t.name == name_or_arn && t.is_visible_in(&caller.region))
        .min_by_key(|t| t.home_region != caller.region)
        .ok_or_else(|| trail_not_found(name_or_arn, caller))
}

/// Like [`Self::resolve`], for changes: only allowed in the trail's home Region.
fn resolve_for_change<'t>(caller: &Caller, trails: &'t [Trail], name_or_arn: &str) -> ServiceResult<&'t Trail> {
    let trail = resolve(caller, trails, name_or_arn)?;
    if trail.home_region != caller.region {
        return Err(err(
            ErrorCode::InvalidHomeRegion,
            format!(
                "This operation must be called from the trail's home Region ({}); it was called in {}.",
                trail.home_region, caller.region
            ),
        ));
    }
    Ok(trail)
}

/// Resolves a tagging `ResourceId` to a trail of the caller's account.
fn tagged_trail<'t>(caller: &Caller, trails: &'t [Trail], resource_id: &str) -> ServiceResult<&'t Trail> {
    let arn = Arn::parse(resource_id)
        .map_err(|_| err(ErrorCode::CloudTrailArnInvalid, format!("Invalid resource ARN: {resource_id}")))?;
    if arn.service != "cloudtrail" {
        return Err(err(ErrorCode::CloudTrailArnInvalid, format!("Invalid resource ARN: {resource_id}")));
    }
    if !arn.resource.starts_with("trail/") {
        let kind = arn.resource.split('/').next().unwrap_or_default();
        return Err(err(
            ErrorCode::ResourceTypeNotSupported,
            format!("Tagging {kind} resources is not available in this OpenTrail version."),
        ));
    }
    let (region, account, name) = parse_trail_arn(resource_id)?;
    trails
        .iter()
        .find(|t| account == caller.principal.account.as_str() && t.home_region == region && t.name == name)
        .ok_or_else(|| err(ErrorCode::ResourceNotFound, format!("Resource not found: {resource_id}")))
}

impl TrailOps<'_> {
    /// Runs `decide` on fresh state and applies its changes atomically, retrying on conflict,
    /// together with the call's record (which says the call answered `decide`'s output: the
    /// operation answers exactly that).
    fn mutate(
        &mut self,
        mut decide: impl FnMut(&AccountTrails, &mut Vec<Resource>) -> ServiceResult<(Vec<TrailChange>, Value)>,
    ) -> ServiceResult<Value> {
        let account = &self.caller.principal.account;
        for _ in 0..16 {
            let state = self.store.load_trails(account).map_err(store_error)?;
            let mut resources = Vec::new();
            let (changes, output) = decide(&state, &mut resources)?;
            let touched: Vec<Resource> = self.resources.iter().chain(&resources).cloned().collect();
            match self.recorder.apply_trail_changes(self.store, account, state.version, &changes, &output, &touched) {
                Ok(()) => {
                    self.resources.extend(resources);
                    return Ok(output);
                }
                Err(StoreError::Conflict) => continue,
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(ServiceError::internal("too many concurrent changes to one account's trails"))
    }

    fn load(&self) -> ServiceResult<Vec<Trail>> {
        Ok(self.store.load_trails(&self.caller.principal.account).map_err(store_error)?.trails)
    }

    fn note(resources: &mut Vec<Resource>, trail: &Trail) {
        resources.push(Resource { arn: trail.arn(), resource_type: TRAIL_RESOURCE_TYPE.into() });
    }

    /// The bucket must exist and be the caller's; a notification topic must be configured.
    fn check_destinations(&self, bucket: Option<&str>, settings: &Settings) -> ServiceResult<()> {
        if let Some(bucket) = bucket {
            self.delivery.check_bucket(self.store, &self.caller.principal.account, bucket, self.remote_buckets)?;
        }
        match settings.sns_topic_name.as_deref() {
            Some(topic) if !topic.is_empty() => self.delivery.check_topic(topic),
            _ => Ok(()),
        }
    }

    pub fn list_public_keys(&mut self, input: ListPublicKeysInput) -> ServiceResult<Value> {
        self.delivery.list_public_keys(&self.caller.region, input)
    }

    pub fn create_trail(&mut self, input: CreateTrailInput) -> ServiceResult<Value> {
        validate_trail_name(&input.name).map_err(|e| err(ErrorCode::InvalidTrailName, e.0))?;
        validate_bucket_name(&input.s3_bucket_name)?;
        if input.is_organization_trail == Some(true) {
            return Err(organization_not_in_use());
        }
        let settings = validate_settings(&input.settings, self.caller)?;
        self.check_destinations(Some(&input.s3_bucket_name), &settings)?;
        let tags = input.tags_list.clone().unwrap_or_default();
        validate_tags(&tags)?;
        if tags.len() > MAX_TAGS_PER_RESOURCE {
            return Err(err(
                ErrorCode::TagsLimitExceeded,
                format!("A resource can have at most {MAX_TAGS_PER_RESOURCE} tags."),
            ));
        }
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        let trail = Trail {
            name: input.name.clone(),
            account: self.caller.principal.account.clone(),
            home_region: self.caller.region.clone(),
            s3_bucket_name: input.s3_bucket_name.clone(),
            s3_key_prefix: non_empty(settings.s3_key_prefix),
            sns_topic_name: non_empty(settings.sns_topic_name),
            include_global_service_events: input.include_global_service_events.unwrap_or(true),
            is_multi_region_trail: input.is_multi_region_trail.unwrap_or(false),
            log_file_validation_enabled: input.enable_log_file_validation.unwrap_or(false),
            cloud_watch_logs_log_group_arn: non_empty(settings.cloud_watch_logs_log_group_arn),
            cloud_watch_logs_role_arn: non_empty(settings.cloud_watch_logs_role_arn),
            kms_key_id: non_empty(settings.kms_key_id),
            is_organization_trail: false,
            event_selectors: None,
            advanced_event_selectors: None,
            insight_selectors: Vec::new(),
            tags,
            is_logging: false,
            start_logging_time_ms: None,
            stop_logging_time_ms: None,
            logging_started_at: None,
            logging_stopped_at: None,
            created_ms: Utc::now().timestamp_millis(),
        };
        if trail.is_multi_region_trail && !trail.include_global_service_events {
            return Err(err(
                ErrorCode::InvalidParameterCombination,
                "A multi-Region trail must include global service events.",
            ));
        }
        let (store, delivery, caller) = (self.store, self.delivery, self.caller);
        self.mutate(|state, resources| {
            check_name_and_quota(&state.trails, &trail, None)?;
            Self::note(resources, &trail);
            let mut changes = vec![TrailChange::Put(Box::new(trail.clone()))];
            changes.extend(bind_bucket(store, delivery, caller, &trail)?);
            Ok((changes, Value::Object(trail_settings(&trail))))
        })
    }

    pub fn update_trail(&mut self, input: UpdateTrailInput) -> ServiceResult<Value> {
        if let Some(bucket) = &input.s3_bucket_name {
            validate_bucket_name(bucket)?;
        }
        if input.is_organization_trail == Some(true) {
            return Err(organization_not_in_use());
        }
        let settings = validate_settings(&input.settings, self.caller)?;
        self.check_destinations(input.s3_bucket_name.as_deref(), &settings)?;
        let (store, delivery, caller) = (self.store, self.delivery, self.caller);
        let decide = |state: &AccountTrails, resources: &mut Vec<Resource>| {
            let current = resolve_for_change(caller, &state.trails, &input.name)?;
            let mut trail = current.clone();
            let set = |field: &mut Option<String>, value: &Option<String>| {
                if let Some(value) = value {
                    *field = (!value.is_empty()).then(|| value.clone());
                }
            };
            if let Some(bucket) = &input.s3_bucket_name {
                trail.s3_bucket_name = bucket.clone();
            }
            set(&mut trail.s3_key_prefix, &settings.s3_key_prefix);
            set(&mut trail.sns_topic_name, &settings.sns_topic_name);
            set(&mut trail.cloud_watch_logs_log_group_arn, &settings.cloud_watch_logs_log_group_arn);
            set(&mut trail.cloud_watch_logs_role_arn, &settings.cloud_watch_logs_role_arn);
            set(&mut trail.kms_key_id, &settings.kms_key_id);
            if let Some(flag) = input.include_global_service_events {
                trail.include_global_service_events = flag;
            }
            if let Some(flag) = input.is_multi_region_trail {
                trail.is_multi_region_trail = flag;
            }
            if let Some(flag) = input.enable_log_file_validation {
                trail.log_file_validation_enabled = flag;
            }
            if trail.is_multi_region_trail && !trail.include_global_service_events {
                return Err(err(
                    ErrorCode::InvalidParameterCombination,
                    "A multi-Region trail must include global service events.",
                ));
            }
            if trail.cloud_watch_logs_log_group_arn.is_some() != trail.cloud_watch_logs_role_arn.is_some() {
                return Err(err(
                    ErrorCode::InvalidParameterCombination,
                    "CloudWatchLogsLogGroupArn and CloudWatchLogsRoleArn must be set together.",
                ));
            }
            if trail.is_multi_region_trail && !current.is_multi_region_trail {
                check_name_and_quota(&state.trails, &trail, Some(&current.arn()))?;
            }
            Self::note(resources, &trail);
            let output = Value::Object(trail_settings(&trail));
            // Updating a trail binds it to its bucket as it is now: after the bucket was deleted
            // and created again by its owner, this is how the trail delivers to it again.
            let binding = bind_bucket(store, delivery, caller, &trail)?;
            let mut changes = vec![TrailChange::Put(Box::new(trail))];
            changes.extend(binding);
            Ok((changes, output))
        };
        self.mutate(decide)
    }

    pub fn delete_trail(&mut self, input: NameInput) -> ServiceResult<Value> {
        let caller = self.caller;
        self.mutate(|state, resources| {
            let trail = resolve_for_change(caller, &state.trails, &input.name)?;
            Self::note(resources, trail);
            Ok((vec![TrailChange::Delete { arn: trail.arn() }], json!({})))
        })
    }

    pub fn get_trail(&mut self, input: NameInput) -> ServiceResult<Value> {
        let trails = self.load()?;
        let trail = resolve(self.caller, &trails, &input.name)?;
        Self::note(self.resources, trail);
        Ok(json!({ "Trail": trail_structure(trail) }))
    }

    pub fn describe_trails(&mut self, input: DescribeTrailsInput) -> ServiceResult<Value> {
        let trails = self.load()?;
        let include_shadows = input.include_shadow_trails.unwrap_or(true);
        let region = &self.caller.region;
        let visible = |t: &&Trail| &t.home_region == region || (include_shadows && t.is_multi_region_trail);
        let names = input.trail_name_list.unwrap_or_default();
        let chosen: Vec<&Trail> = if names.is_empty() {
            trails.iter().filter(visible).collect()
        } else {
            let mut chosen: Vec<&Trail> = Vec::new();
            for name in &names {
                let found = if name.starts_with("arn:") {
                    let (arn_region, account, short) = parse_trail_arn(name)?;
                    trails
                        .iter()
                        .find(|t| account == t.account.as_str() && t.home_region == arn_region && t.name == short)
                } else {
                    validate_trail_name(name).map_err(|e| err(ErrorCode::InvalidTrailName, e.0))?;
                    trails.iter().filter(visible).find(|t| &t.name == name)
                };
                // Unknown names are left out, as CloudTrail does.
                if let Some(trail) = found
                    && !chosen.iter().any(|c| c.arn() == trail.arn())
                {
                    chosen.push(trail);
                }
            }
            chosen
        };
        Ok(json!({ "trailList": chosen.into_iter().map(trail_structure).collect::<Vec<_>>() }))
    }

    pub fn list_trails(&mut self, input: ListTrailsInput) -> ServiceResult<Value> {
        let trails = self.load()?;
        let after = match &input.next_token {
            Some(token) => Some(paging::decode_text_token(token)?),
            None => None,
        };
        let mut remaining = trails.iter().filter(|t| after.as_ref().is_none_or(|after| &t.arn() > after));
        let page: Vec<&Trail> = remaining.by_ref().take(LIST_TRAILS_PAGE_SIZE).collect();
        let mut out = json!({
            "Trails": page.iter().map(|t| json!({
                "TrailARN": t.arn(), "Name": t.name, "HomeRegion": t.home_region.as_str()
            })).collect::<Vec<_>>()
        });
        if remaining.next().is_some() {
            out["NextToken"] = json!(paging::encode_text_token(&page.last().expect("a full page").arn()));
        }
        Ok(out)
    }

    pub fn get_trail_status(&mut self, input: NameInput) -> ServiceResult<Value> {
        let trails = self.load()?;
        let trail = resolve(self.caller, &trails, &input.name)?;
        Self::note(self.resources, trail);
        let mut out = Map::new();
        out.insert("IsLogging".into(), json!(trail.is_logging));
        if let Some(ms) = trail.start_logging_time_ms {
            out.insert("StartLoggingTime".into(), json!(epoch_seconds(ms)));
            out.insert("TimeLoggingStarted".into(), json!(iso_time(ms)));
        }
        if let Some(ms) = trail.stop_logging_time_ms {
            out.insert("StopLoggingTime".into(), json!(epoch_seconds(ms)));
            out.insert("TimeLoggingStopped".into(), json!(iso_time(ms)));
        }
        self.delivery.add_status_fields(self.store, trail, &mut out)?;
        Ok(Value::Object(out))
    }

    pub fn set_logging(&mut self, input: NameInput, logging: bool) -> ServiceResult<Value> {
        let caller = self.caller;
        // Delivery covers the journal from here on (this call's own record included), or up to
        // here when logging stops.
        let journal_position = self.delivery.journal.committed_end();
        self.mutate(|state, resources| {
            let mut trail = resolve_for_change(caller, &state.trails, &input.name)?.clone();
            let now = Utc::now().timestamp_millis();
            if logging && !trail.is_logging {
                trail.start_logging_time_ms = Some(now);
                trail.logging_started_at = Some(journal_position);
            } else if !logging && trail.is_logging {
                trail.stop_logging_time_ms = Some(now);
                trail.logging_stopped_at = Some(journal_position);
            }
            trail.is_logging = logging;
            Self::note(resources, &trail);
            Ok((vec![TrailChange::Put(Box::new(trail))], json!({})))
        })
    }

    pub fn put_event_selectors(&mut self, input: PutEventSelectorsInput) -> ServiceResult<Value> {
        let invalid = |message: String| err(ErrorCode::InvalidEventSelectors, message);
        match (&input.event_selectors, &input.advanced_event_selectors) {
            (Some(_), Some(_)) => {
                return Err(invalid("Specify either EventSelectors or AdvancedEventSelectors, not both.".into()));
            }
            (None, None) => return Err(invalid("Specify EventSelectors or AdvancedEventSelectors.".into())),
            (Some(basic), None) => selectors::validate_basic(basic).map_err(|e| invalid(e.0))?,
            (None, Some(advanced)) => {
                selectors::validate_advanced(advanced, SelectorTarget::Trail).map_err(|e| invalid(e.0))?
            }
        }
        let basic =
            input.event_selectors.map(|list| list.into_iter().map(EventSelector::normalized).collect::<Vec<_>>());
        let advanced = input.advanced_event_selectors;
        let caller = self.caller;
        self.mutate(|state, resources| {
            let mut trail = resolve_for_change(caller, &state.trails, &input.trail_name)?.clone();
            trail.event_selectors = basic.clone();
            trail.advanced_event_selectors = advanced.clone();
            Self::note(resources, &trail);
            let output = event_selectors_output(&trail);
            Ok((vec![TrailChange::Put(Box::new(trail))], output))
        })
    }

    pub fn get_event_selectors(&mut self, input: TrailNameInput) -> ServiceResult<Value> {
        let name = self.trail_name_only(&input)?;
        let trails = self.load()?;
        let trail = resolve(self.caller, &trails, name)?;
        Self::note(self.resources, trail);
        Ok(event_selectors_output(trail))
    }

    fn trail_name_only<'i>(&self, input: &'i TrailNameInput) -> ServiceResult<&'i str> {
        if input.event_data_store.is_some() {
            return Err(err(
                ErrorCode::UnsupportedOperation,
                "Event data stores are not available in this OpenTrail version; pass TrailName.",
            ));
        }
        input.trail_name.as_deref().ok_or_else(|| err(ErrorCode::InvalidParameter, "TrailName is required."))
    }

    /// Insights on a trail. A call without TrailName names an event data store and is the Lake
    /// operations' (dispatch routes it there); one with both is refused here.
    pub fn put_insight_selectors(&mut self, input: PutInsightSelectorsInput) -> ServiceResult<Value> {
        if input.event_data_store.is_some() || input.insights_destination.is_some() {
            return Err(err(
                ErrorCode::InvalidParameterCombination,
                "Give TrailName, or EventDataStore and InsightsDestination, not both.",
            ));
        }
        let name = input
            .trail_name
            .clone()
            .ok_or_else(|| err(ErrorCode::InvalidParameter, "TrailName or EventDataStore is required."))?;
        selectors::validate_insight_selectors(&input.insight_selectors)
            .map_err(|e| err(ErrorCode::InvalidInsightSelectors, e.0))?;
        let caller = self.caller;
        self.mutate(|state, resources| {
            let mut trail = resolve_for_change(caller, &state.trails, &name)?.clone();
            trail.insight_selectors = input.insight_selectors.clone();
            Self::note(resources, &trail);
            let output = json!({ "TrailARN": trail.arn(), "InsightSelectors": trail.insight_selectors });
            Ok((vec![TrailChange::Put(Box::new(trail))], output))
        })
    }

    pub fn get_insight_selectors(&mut self, input: TrailNameInput) -> ServiceResult<Value> {
        if input.trail_name.is_some() && input.event_data_store.is_some() {
            return Err(err(ErrorCode::InvalidParameterCombination, "Give TrailName or EventDataStore, not both."));
        }
        let name = self.trail_name_only(&input)?;
        let trails = self.load()?;
        let trail = resolve(self.caller, &trails, name)?;
        Self::note(self.resources, trail);
        if !trail.has_insight_selectors() {
            return Err(err(
                ErrorCode::InsightNotEnabled,
                format!(
                    "Trail {} does not have Insights enabled. Edit the trail settings to enable Insights, and then try the operation again.",
                    trail.arn()
                ),
            ));
        }
        Ok(json!({ "TrailARN": trail.arn(), "InsightSelectors": trail.insight_selectors }))
    }

    pub fn add_tags(&mut self, input: TagsInput) -> ServiceResult<Value> {
        validate_tags(&input.tags_list)?;
        let caller = self.caller;
        self.mutate(|state, resources| {
            let mut trail = tagged_trail(caller, &state.trails, &input.resource_id)?.clone();
            for tag in &input.tags_list {
                match trail.tags.iter_mut().find(|t| t.key == tag.key) {
                    Some(existing) => existing.value = tag.value.clone(),
                    None => trail.tags.push(tag.clone()),
                }
            }
            if trail.tags.len() > MAX_TAGS_PER_RESOURCE {
                return Err(err(
                    ErrorCode::TagsLimitExceeded,
                    format!("A resource can have at most {MAX_TAGS_PER_RESOURCE} tags."),
                ));
            }
            Self::note(resources, &trail);
            Ok((vec![TrailChange::Put(Box::new(trail))], json!({})))
        })
    }

    pub fn remove_tags(&mut self, input: TagsInput) -> ServiceResult<Value> {
        let caller = self.caller;
        self.mutate(|state, resources| {
            let mut trail = tagged_trail(caller, &state.trails, &input.resource_id)?.clone();
            trail.tags.retain(|tag| !input.tags_list.iter().any(|removed| removed.key == tag.key));
            Self::note(resources, &trail);
            Ok((vec![TrailChange::Put(Box::new(trail))], json!({})))
        })
    }

    pub fn list_tags(&mut self, input: ListTagsInput) -> ServiceResult<Value> {
        if input.resource_id_list.is_empty() || input.resource_id_list.len() > 20 {
            return Err(err(ErrorCode::InvalidParameter, "ResourceIdList must hold between 1 and 20 ARNs."));
        }
        let trails = self.load()?;
        let mut list = Vec::new();
        for resource_id in &input.resource_id_list {
            let trail = tagged_trail(self.caller, &trails, resource_id)?;
            list.push(json!({ "ResourceId": resource_id, "TagsList": trail.tags }));
        }
        Ok(json!({ "ResourceTagList": list }))
    }
}

fn event_selectors_output(trail: &Trail) -> Value {
    match &trail.advanced_event_selectors {
        Some(advanced) => json!({ "TrailARN": trail.arn(), "AdvancedEventSelectors": advanced }),
        None => json!({ "TrailARN": trail.arn(), "EventSelectors": trail.effective_event_selectors() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_key_prefixes_are_plain_folder_paths_of_at_most_200_characters() {
        let longest = "p".repeat(MAX_S3_KEY_PREFIX_CHARS);
        let longest_multibyte = "é".repeat(MAX_S3_KEY_PREFIX_CHARS);
        for good in ["", "logs", "logs/", "a/b/c", "team.audit/2026", "..a/b..", &longest, &longest_multibyte] {
            assert!(validate_s3_key_prefix(good).is_ok(), "{good:?}");
        }
        let too_long = "p".repeat(MAX_S3_KEY_PREFIX_CHARS + 1);
        for bad in
            ["..", "../other", "a/../b", "a/..", ".", "./a", "a/./b", "a//b", "/a", "//", "a\u{0}b", "a\nb", &too_long]
        {
            let error = validate_s3_key_prefix(bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidS3Prefix, "{bad:?}");
        }
    }
}
