//! The CloudTrail API driven by the official AWS SDK for Rust against a real server process.

mod common;

use aws_sdk_cloudtrail::primitives::DateTime;
use aws_sdk_cloudtrail::types::{
    AdvancedEventSelector, AdvancedFieldSelector, EventCategory, EventSelector, InsightSelector, InsightType,
    LookupAttribute, LookupAttributeKey, ReadWriteType, Tag,
};
use common::*;

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build().unwrap()
}

fn attribute(key: LookupAttributeKey, value: &str) -> LookupAttribute {
    LookupAttribute::builder().attribute_key(key).attribute_value(value).build().unwrap()
}

fn field(name: &str, equals: &[&str]) -> AdvancedFieldSelector {
    let mut builder = AdvancedFieldSelector::builder().field(name);
    for value in equals {
        builder = builder.equals(*value);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn trail_lifecycle() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");

    let created = ct.create_trail().name("trail1").s3_bucket_name("bucket-1").send().await.unwrap();
    let arn = created.trail_arn().unwrap().to_owned();
    assert_eq!(arn, "arn:aws:cloudtrail:us-east-1:111111111111:trail/trail1");
    assert_eq!(created.include_global_service_events(), Some(true));
    assert_eq!(created.is_multi_region_trail(), Some(false));
    assert_eq!(created.log_file_validation_enabled(), Some(false));

    let duplicate = ct.create_trail().name("trail1").s3_bucket_name("bucket-1").send().await.unwrap_err();
    assert_eq!(error_code(duplicate), "TrailAlreadyExistsException");

    let by_name = ct.get_trail().name("trail1").send().await.unwrap();
    let by_arn = ct.get_trail().name(&arn).send().await.unwrap();
    assert_eq!(by_name.trail(), by_arn.trail());
    let trail = by_name.trail().unwrap();
    assert_eq!(trail.home_region(), Some("us-east-1"));
    assert_eq!(trail.has_custom_event_selectors(), Some(false));
    assert_eq!(trail.has_insight_selectors(), Some(false));

    let all = ct.describe_trails().send().await.unwrap();
    assert_eq!(all.trail_list().len(), 1);
    let unknown = ct.describe_trails().trail_name_list("nope-trail").send().await.unwrap();
    assert!(unknown.trail_list().is_empty());

    let status = ct.get_trail_status().name("trail1").send().await.unwrap();
    assert_eq!(status.is_logging(), Some(false));
    ct.start_logging().name(&arn).send().await.unwrap();
    let status = ct.get_trail_status().name("trail1").send().await.unwrap();
    assert_eq!(status.is_logging(), Some(true));
    assert!(status.start_logging_time().is_some());
    ct.stop_logging().name("trail1").send().await.unwrap();
    let status = ct.get_trail_status().name("trail1").send().await.unwrap();
    assert_eq!(status.is_logging(), Some(false));
    assert!(status.stop_logging_time().is_some());

    let updated = ct
        .update_trail()
        .name("trail1")
        .s3_key_prefix("audit")
        .enable_log_file_validation(true)
        .kms_key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
        .send()
        .await
        .unwrap();
    assert_eq!(updated.s3_key_prefix(), Some("audit"));
    assert_eq!(updated.log_file_validation_enabled(), Some(true));
    assert_eq!(
        updated.kms_key_id(),
        Some("arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    );

    ct.delete_trail().name("trail1").send().await.unwrap();
    let gone = ct.get_trail().name("trail1").send().await.unwrap_err();
    let message = aws_sdk_cloudtrail::error::ProvideErrorMetadata::message(&gone).unwrap_or_default().to_owned();
    assert_eq!(message, "Unknown trail: trail1 for the user: 111111111111");
    assert_eq!(error_code(gone), "TrailNotFoundException");
    let missing = ct.get_trail_status().name("trail1").send().await.unwrap_err();
    assert_eq!(error_code(missing), "TrailNotFoundException");
    let missing = ct.start_logging().name("trail1").send().await.unwrap_err();
    assert_eq!(error_code(missing), "TrailNotFoundException");
    let missing = ct.delete_trail().name("trail1").send().await.unwrap_err();
    assert_eq!(error_code(missing), "TrailNotFoundException");
}

#[tokio::test]
async fn invalid_names_arns_and_parameters() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    for name in ["ab", "-abc", "abc-", "a--b", "a-_b", "192.168.5.4", &"x".repeat(129)] {
        let error = ct.create_trail().name(name).s3_bucket_name("bucket").send().await.unwrap_err();
        assert_eq!(error_code(error), "InvalidTrailNameException", "name {name}");
    }
    let error = ct.get_trail().name("arn:aws:cloudtrail:us-east-1:123:trail/x").send().await.unwrap_err();
    assert_eq!(error_code(error), "CloudTrailARNInvalidException");
    let error = ct.create_trail().name("good-name").s3_bucket_name("Bad_Bucket").send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidS3BucketNameException");
    let error = ct
        .create_trail()
        .name("good-name")
        .s3_bucket_name("test-bucket")
        .s3_key_prefix("p".repeat(201))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(error), "InvalidS3PrefixException");
    let error = ct
        .create_trail()
        .name("good-name")
        .s3_bucket_name("test-bucket")
        .is_organization_trail(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(error), "OrganizationsNotInUseException");
    // Nothing above created a trail.
    assert!(ct.describe_trails().send().await.unwrap().trail_list().is_empty());
}

#[tokio::test]
async fn trail_quota_per_region() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    for i in 0..5 {
        ct.create_trail().name(format!("trail{i}")).s3_bucket_name("test-bucket").send().await.unwrap();
    }
    let error = ct.create_trail().name("trail5").s3_bucket_name("test-bucket").send().await.unwrap_err();
    assert_eq!(error_code(error), "MaximumNumberOfTrailsExceededException");
    // Another Region has its own quota.
    let west = client(&server, ROOT_A, "us-west-2");
    west.create_trail().name("trail5").s3_bucket_name("test-bucket").send().await.unwrap();
    // A multi-Region trail would count in us-east-1 too, which is full.
    let error = west
        .create_trail()
        .name("everywhere")
        .s3_bucket_name("test-bucket")
        .is_multi_region_trail(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(error), "MaximumNumberOfTrailsExceededException");
}

#[tokio::test]
async fn multi_region_trails_have_shadows() {
    let server = TestServer::start();
    let east = client(&server, ROOT_A, "us-east-1");
    let west = client(&server, ROOT_A, "eu-west-1");
    let created = east
        .create_trail()
        .name("org-wide")
        .s3_bucket_name("test-bucket")
        .is_multi_region_trail(true)
        .send()
        .await
        .unwrap();
    let arn = created.trail_arn().unwrap();

    let shadows = west.describe_trails().send().await.unwrap();
    assert_eq!(shadows.trail_list().len(), 1);
    assert_eq!(shadows.trail_list()[0].home_region(), Some("us-east-1"));
    assert_eq!(shadows.trail_list()[0].trail_arn(), Some(arn));
    let without = west.describe_trails().include_shadow_trails(false).send().await.unwrap();
    assert!(without.trail_list().is_empty());

    // Reading works from anywhere; changing only at home.
    west.get_trail_status().name("org-wide").send().await.unwrap();
    let error = west.start_logging().name(arn).send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidHomeRegionException");
    let error = west.delete_trail().name("org-wide").send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidHomeRegionException");
    // The name is taken in every Region.
    let error = west.create_trail().name("org-wide").s3_bucket_name("test-bucket").send().await.unwrap_err();
    assert_eq!(error_code(error), "TrailAlreadyExistsException");

    // A single-Region trail is reachable from another Region by ARN only.
    let single = east.create_trail().name("local").s3_bucket_name("test-bucket").send().await.unwrap();
    let error = west.get_trail().name("local").send().await.unwrap_err();
    assert_eq!(error_code(error), "TrailNotFoundException");
    west.get_trail().name(single.trail_arn().unwrap()).send().await.unwrap();
    let by_arn = west.describe_trails().trail_name_list(single.trail_arn().unwrap()).send().await.unwrap();
    assert_eq!(by_arn.trail_list().len(), 1);
}

#[tokio::test]
async fn list_trails_pages_through_every_region() {
    let server = TestServer::start();
    let regions = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1"];
    let mut expected = Vec::new();
    for region in regions {
        let ct = client(&server, ROOT_A, region);
        for i in 0..5 {
            let out =
                ct.create_trail().name(format!("t-{region}-{i}")).s3_bucket_name("test-bucket").send().await.unwrap();
            expected.push(out.trail_arn().unwrap().to_owned());
        }
    }
    let ct = client(&server, ROOT_A, "us-east-1");
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = ct.list_trails().set_next_token(token).send().await.unwrap();
        pages += 1;
        for info in page.trails() {
            assert!(info.home_region().is_some());
            seen.push(info.trail_arn().unwrap().to_owned());
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert!(pages >= 2, "30 trails must take more than one page");
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    let error = ct.list_trails().next_token("not-a-token").send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidNextTokenException");
}

#[tokio::test]
async fn event_selectors() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    ct.create_trail().name("sel").s3_bucket_name("test-bucket").send().await.unwrap();

    let default = ct.get_event_selectors().trail_name("sel").send().await.unwrap();
    assert_eq!(default.event_selectors().len(), 1);
    let selector = &default.event_selectors()[0];
    assert_eq!(selector.read_write_type(), Some(&ReadWriteType::All));
    assert_eq!(selector.include_management_events(), Some(true));
    assert!(selector.data_resources().is_empty());
    assert!(default.advanced_event_selectors().is_empty());

    let six = vec![EventSelector::builder().read_write_type(ReadWriteType::ReadOnly).build(); 6];
    let error = ct.put_event_selectors().trail_name("sel").set_event_selectors(Some(six)).send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidEventSelectorsException");

    let no_category =
        AdvancedEventSelector::builder().field_selectors(field("eventName", &["GetObject"])).build().unwrap();
    let error =
        ct.put_event_selectors().trail_name("sel").advanced_event_selectors(no_category).send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidEventSelectorsException");

    let s3_reads = AdvancedEventSelector::builder()
        .name("S3 reads")
        .field_selectors(field("eventCategory", &["Data"]))
        .field_selectors(field("resources.type", &["AWS::S3::Object"]))
        .field_selectors(field("readOnly", &["true"]))
        .build()
        .unwrap();
    let put =
        ct.put_event_selectors().trail_name("sel").advanced_event_selectors(s3_reads.clone()).send().await.unwrap();
    assert_eq!(put.advanced_event_selectors(), std::slice::from_ref(&s3_reads));
    let got = ct.get_event_selectors().trail_name("sel").send().await.unwrap();
    assert!(got.event_selectors().is_empty());
    assert_eq!(got.advanced_event_selectors(), std::slice::from_ref(&s3_reads));
    let trail = ct.get_trail().name("sel").send().await.unwrap();
    assert_eq!(trail.trail().unwrap().has_custom_event_selectors(), Some(true));

    // Basic selectors replace advanced ones again.
    let basic =
        EventSelector::builder().read_write_type(ReadWriteType::WriteOnly).include_management_events(true).build();
    ct.put_event_selectors().trail_name("sel").event_selectors(basic).send().await.unwrap();
    let got = ct.get_event_selectors().trail_name("sel").send().await.unwrap();
    assert!(got.advanced_event_selectors().is_empty());
    assert_eq!(got.event_selectors()[0].read_write_type(), Some(&ReadWriteType::WriteOnly));

    let error = ct.get_event_selectors().trail_name("missing").send().await.unwrap_err();
    assert_eq!(error_code(error), "TrailNotFoundException");
}

#[tokio::test]
async fn insight_selectors() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    ct.create_trail().name("ins").s3_bucket_name("test-bucket").send().await.unwrap();
    let error = ct.get_insight_selectors().trail_name("ins").send().await.unwrap_err();
    assert_eq!(error_code(error), "InsightNotEnabledException");

    let selector = InsightSelector::builder().insight_type(InsightType::ApiCallRateInsight).build();
    ct.put_insight_selectors().trail_name("ins").insight_selectors(selector).send().await.unwrap();
    let got = ct.get_insight_selectors().trail_name("ins").send().await.unwrap();
    assert_eq!(got.insight_selectors()[0].insight_type(), Some(&InsightType::ApiCallRateInsight));
    let trail = ct.get_trail().name("ins").send().await.unwrap();
    assert_eq!(trail.trail().unwrap().has_insight_selectors(), Some(true));

    let bad = InsightSelector::builder().insight_type(InsightType::from("Nonsense")).build();
    let error = ct.put_insight_selectors().trail_name("ins").insight_selectors(bad).send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidInsightSelectorsException");

    ct.put_insight_selectors().trail_name("ins").set_insight_selectors(Some(Vec::new())).send().await.unwrap();
    let error = ct.get_insight_selectors().trail_name("ins").send().await.unwrap_err();
    assert_eq!(error_code(error), "InsightNotEnabledException");
}

#[tokio::test]
async fn tags() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    let created = ct
        .create_trail()
        .name("tagged")
        .s3_bucket_name("test-bucket")
        .tags_list(tag("team", "sec"))
        .send()
        .await
        .unwrap();
    let arn = created.trail_arn().unwrap();
    ct.add_tags().resource_id(arn).tags_list(tag("env", "prod")).tags_list(tag("team", "audit")).send().await.unwrap();
    let listed = ct.list_tags().resource_id_list(arn).send().await.unwrap();
    let entry = &listed.resource_tag_list()[0];
    assert_eq!(entry.resource_id(), Some(arn));
    let mut pairs: Vec<(String, String)> =
        entry.tags_list().iter().map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned())).collect();
    pairs.sort();
    assert_eq!(pairs, vec![("env".into(), "prod".into()), ("team".into(), "audit".into())]);

    let too_many: Vec<Tag> = (0..49).map(|i| tag(&format!("k{i}"), "v")).collect();
    let error = ct.add_tags().resource_id(arn).set_tags_list(Some(too_many)).send().await.unwrap_err();
    assert_eq!(error_code(error), "TagsLimitExceededException");

    ct.remove_tags().resource_id(arn).tags_list(Tag::builder().key("env").build().unwrap()).send().await.unwrap();
    let listed = ct.list_tags().resource_id_list(arn).send().await.unwrap();
    assert_eq!(listed.resource_tag_list()[0].tags_list().len(), 1);

    let unknown = "arn:aws:cloudtrail:us-east-1:111111111111:trail/nope";
    let error = ct.add_tags().resource_id(unknown).tags_list(tag("a", "b")).send().await.unwrap_err();
    assert_eq!(error_code(error), "ResourceNotFoundException");
    let error = ct.list_tags().resource_id_list("not-an-arn").send().await.unwrap_err();
    assert_eq!(error_code(error), "CloudTrailARNInvalidException");
    let error = ct.add_tags().resource_id(arn).tags_list(tag("aws:reserved", "x")).send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidTagParameterException");
}

#[tokio::test]
async fn lookup_events_finds_every_recorded_call() {
    let server = TestServer::start();
    let root = client(&server, ROOT_A, "us-east-1");
    let alice = client(&server, ALICE_A, "us-east-1");
    let created = alice.create_trail().name("looked-up").s3_bucket_name("test-bucket").send().await.unwrap();
    let arn = created.trail_arn().unwrap().to_owned();
    root.get_trail_status().name("looked-up").send().await.unwrap();
    let failed = root.get_trail().name("no-such-trail").send().await.unwrap_err();
    assert_eq!(error_code(failed), "TrailNotFoundException");

    let found = root
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::EventName, "CreateTrail"))
        .send()
        .await
        .unwrap();
    assert_eq!(found.events().len(), 1);
    let event = &found.events()[0];
    assert_eq!(event.username(), Some("alice"));
    assert_eq!(event.access_key_id(), Some(ALICE_A.0));
    assert_eq!(event.read_only(), Some("false"));
    assert_eq!(event.event_source(), Some("cloudtrail.amazonaws.com"));
    assert_eq!(event.resources()[0].resource_name(), Some(arn.as_str()));
    let record: serde_json::Value = serde_json::from_str(event.cloud_trail_event().unwrap()).unwrap();
    assert_eq!(record["eventID"], event.event_id().unwrap());
    assert_eq!(record["userIdentity"]["type"], "IAMUser");
    assert_eq!(record["userIdentity"]["arn"], "arn:aws:iam::111111111111:user/alice");
    assert_eq!(record["userIdentity"]["accountId"], ACCOUNT_A);
    assert_eq!(record["requestParameters"]["name"], "looked-up");
    assert_eq!(record["responseElements"]["trailARN"], arn.as_str());
    assert_eq!(record["awsRegion"], "us-east-1");
    assert_eq!(record["recipientAccountId"], ACCOUNT_A);
    assert_eq!(record["eventCategory"], "Management");
    assert_eq!(record["sourceIPAddress"], "127.0.0.1");
    assert!(record["userAgent"].as_str().unwrap().contains("aws-sdk-rust"));

    // Every attribute finds what it should.
    let event_id = event.event_id().unwrap();
    for (key, value, expected_name) in [
        (LookupAttributeKey::EventId, event_id, "CreateTrail"),
        (LookupAttributeKey::Username, "alice", "CreateTrail"),
        (LookupAttributeKey::AccessKeyId, ALICE_A.0, "CreateTrail"),
        (LookupAttributeKey::ResourceName, "looked-up", "CreateTrail"),
    ] {
        let page = root.lookup_events().lookup_attributes(attribute(key.clone(), value)).send().await.unwrap();
        let names: Vec<_> = page.events().iter().map(|e| e.event_name().unwrap()).collect();
        assert!(names.contains(&expected_name), "{key:?}={value} gave {names:?}");
    }
    let failed_calls = root
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::EventName, "GetTrail"))
        .send()
        .await
        .unwrap();
    let record: serde_json::Value =
        serde_json::from_str(failed_calls.events()[0].cloud_trail_event().unwrap()).unwrap();
    assert_eq!(record["errorCode"], "TrailNotFoundException");
    let read_only =
        root.lookup_events().lookup_attributes(attribute(LookupAttributeKey::ReadOnly, "true")).send().await.unwrap();
    assert!(read_only.events().iter().all(|e| e.read_only() == Some("true")));
    assert!(read_only.events().len() >= 2);
    let by_type = root
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::ResourceType, "AWS::CloudTrail::Trail"))
        .send()
        .await
        .unwrap();
    assert!(by_type.events().len() >= 2);
    let by_source = root
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::EventSource, "cloudtrail.amazonaws.com"))
        .send()
        .await
        .unwrap();
    assert!(by_source.events().len() >= 4);

    // Several attributes are ANDed.
    let both = root
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::Username, "root"))
        .lookup_attributes(attribute(LookupAttributeKey::EventName, "CreateTrail"))
        .send()
        .await
        .unwrap();
    assert!(both.events().is_empty());
}

#[tokio::test]
async fn lookup_events_pages_newest_first_exactly_once() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    for _ in 0..12 {
        ct.list_trails().send().await.unwrap();
    }
    let mut token = None;
    let mut ids = Vec::new();
    let mut times = Vec::new();
    loop {
        let page = ct
            .lookup_events()
            .lookup_attributes(attribute(LookupAttributeKey::EventName, "ListTrails"))
            .max_results(5)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        assert!(page.events().len() <= 5);
        for event in page.events() {
            ids.push(event.event_id().unwrap().to_owned());
            times.push(event.event_time().unwrap().secs());
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
        // Writes in between do not disturb the pages already started.
        ct.list_trails().send().await.unwrap();
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no event twice");
    assert_eq!(ids.len(), 12, "exactly the calls made before the first page");
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
}

#[tokio::test]
async fn lookup_events_rejects_bad_requests() {
    let server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    for max in [0, 51] {
        let error = ct.lookup_events().max_results(max).send().await.unwrap_err();
        assert_eq!(error_code(error), "InvalidMaxResultsException");
    }
    let error = ct
        .lookup_events()
        .start_time(DateTime::from_secs(2_000_000_000))
        .end_time(DateTime::from_secs(1_000_000_000))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(error), "InvalidTimeRangeException");
    let error = ct.lookup_events().next_token("garbage").send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidNextTokenException");
    let error = ct.lookup_events().event_category(EventCategory::from("foo")).send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidEventCategoryException");
    let error = ct
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::from("Colour"), "blue"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(error), "InvalidLookupAttributesException");

    // A token only continues the query it came from.
    for _ in 0..3 {
        ct.list_trails().send().await.unwrap();
    }
    let page = ct.lookup_events().max_results(1).send().await.unwrap();
    let token = page.next_token().unwrap();
    let error = ct
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::EventName, "ListTrails"))
        .next_token(token)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(error), "InvalidNextTokenException");
    // Explicit time bounds are inclusive and filter.
    let none = ct.lookup_events().end_time(DateTime::from_secs(1_000_000_000)).send().await.unwrap();
    assert!(none.events().is_empty());
}

#[tokio::test]
async fn accounts_are_isolated() {
    let server = TestServer::start();
    let a = client(&server, ROOT_A, "us-east-1");
    let b = client(&server, ROOT_B, "us-east-1");
    let created = a.create_trail().name("private").s3_bucket_name("test-bucket").send().await.unwrap();
    let arn = created.trail_arn().unwrap();

    assert!(b.describe_trails().send().await.unwrap().trail_list().is_empty());
    assert!(b.list_trails().send().await.unwrap().trails().is_empty());
    let error = b.get_trail().name(arn).send().await.unwrap_err();
    assert_eq!(error_code(error), "TrailNotFoundException");
    let error = b.get_trail().name("private").send().await.unwrap_err();
    assert_eq!(error_code(error), "TrailNotFoundException");
    let error = b.delete_trail().name(arn).send().await.unwrap_err();
    assert_eq!(error_code(error), "TrailNotFoundException");
    let error = b.list_tags().resource_id_list(arn).send().await.unwrap_err();
    assert_eq!(error_code(error), "ResourceNotFoundException");
    // B cannot deliver to A's bucket, but may reuse the trail name: names are per account.
    let error = b.create_trail().name("private").s3_bucket_name("test-bucket").send().await.unwrap_err();
    assert_eq!(error_code(error), "InsufficientS3BucketPolicyException");
    s3_client(&server.endpoint, ROOT_B).create_bucket().bucket("b-logs").send().await.unwrap();
    b.create_trail().name("private").s3_bucket_name("b-logs").send().await.unwrap();

    let a_events = a.lookup_events().send().await.unwrap();
    assert!(!a_events.events().is_empty());
    let b_events = b.lookup_events().send().await.unwrap();
    for event in b_events.events() {
        let record: serde_json::Value = serde_json::from_str(event.cloud_trail_event().unwrap()).unwrap();
        assert_eq!(record["recipientAccountId"], ACCOUNT_B);
    }
    let a_event_id = a_events.events()[0].event_id().unwrap();
    let probe =
        b.lookup_events().lookup_attributes(attribute(LookupAttributeKey::EventId, a_event_id)).send().await.unwrap();
    assert!(probe.events().is_empty());
    // A still sees its trail untouched.
    assert_eq!(a.describe_trails().send().await.unwrap().trail_list().len(), 1);
}

#[tokio::test]
async fn authentication_failures() {
    let server = TestServer::start();
    let unknown = client(&server, ("AKIAUNKNOWN000000000", "whatever"), "us-east-1");
    let error = unknown.list_trails().send().await.unwrap_err();
    assert_eq!(error_code(error), "UnrecognizedClientException");
    let wrong_secret = client(&server, (ROOT_A.0, "not-the-secret"), "us-east-1");
    let error = wrong_secret.create_trail().name("x-trail").s3_bucket_name("test-bucket").send().await.unwrap_err();
    assert_eq!(error_code(error), "InvalidSignatureException");
    let twenty_minutes_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(20 * 60);
    let stale = client_with_clock(&server, ROOT_A, twenty_minutes_ago);
    let error = stale.create_trail().name("x-trail").s3_bucket_name("test-bucket").send().await.unwrap_err();
    let message = aws_sdk_cloudtrail::error::ProvideErrorMetadata::message(&error).unwrap_or_default().to_owned();
    assert_eq!(error_code(error), "InvalidSignatureException");
    assert!(message.starts_with("Signature expired"), "{message}");

    // Nothing was created or recorded by the failed calls.
    let ct = client(&server, ROOT_A, "us-east-1");
    assert!(ct.describe_trails().send().await.unwrap().trail_list().is_empty());
    let created = ct
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::EventName, "CreateTrail"))
        .send()
        .await
        .unwrap();
    assert!(created.events().is_empty());
}

#[tokio::test]
async fn state_and_events_survive_a_kill() {
    let mut server = TestServer::start();
    let ct = client(&server, ROOT_A, "us-east-1");
    ct.create_trail().name("durable").s3_bucket_name("test-bucket").send().await.unwrap();
    ct.start_logging().name("durable").send().await.unwrap();
    server.restart();
    let ct = client(&server, ROOT_A, "us-east-1");
    let status = ct.get_trail_status().name("durable").send().await.unwrap();
    assert_eq!(status.is_logging(), Some(true));
    let events = ct
        .lookup_events()
        .lookup_attributes(attribute(LookupAttributeKey::ResourceName, "durable"))
        .send()
        .await
        .unwrap();
    let names: Vec<_> = events.events().iter().map(|e| e.event_name().unwrap()).collect();
    assert!(names.contains(&"CreateTrail") && names.contains(&"StartLogging"), "{names:?}");
}
