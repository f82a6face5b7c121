//! Rule-level unit tests: each modifier, value form and condition form on small inline rules.

use serde_json::{Value, json};

use crate::{Level, Placeholders, Rule, RuleError};

/// A CloudTrail rule with this `detection` body (indented by 4 spaces in the YAML).
fn rule(detection: &str) -> Result<Rule, RuleError> {
    let body: String = detection.lines().map(|line| format!("    {line}\n")).collect();
    let yaml = format!(
        "title: Test\nid: t-1\nauthor: Tester\nlevel: high\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n{body}"
    );
    Rule::parse(&yaml, "inline")
}

fn compiled(detection: &str) -> Rule {
    match rule(detection) {
        Ok(rule) => rule,
        Err(error) => panic!("rule refused: {error}\n{detection}"),
    }
}

fn fires(detection: &str, record: Value) -> bool {
    compiled(detection).matches(&record)
}

fn refusal(detection: &str) -> String {
    match rule(detection) {
        Ok(_) => panic!("rule loaded but should be refused:\n{detection}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn metadata_is_kept() {
    let yaml = "title: T\nid: abc\nstatus: test\ndescription: |\n    Two\n    lines\nreferences:\n    - https://x\nauthor: A, B\n\
                tags:\n    - attack.t1\n    - attack.t2\nlevel: medium\nlogsource:\n    product: aws\n    service: cloudtrail\n\
                detection:\n    s:\n        eventName: X\n    condition: s\n";
    let rule = Rule::parse(yaml, "here.yml").expect("loads");
    assert_eq!(rule.title, "T");
    assert_eq!(rule.id.as_deref(), Some("abc"));
    assert_eq!(rule.level, Some(Level::Medium));
    assert_eq!(rule.author.as_deref(), Some("A, B"));
    assert_eq!(rule.status.as_deref(), Some("test"));
    assert_eq!(rule.description.as_deref(), Some("Two\nlines"));
    assert_eq!(rule.references, vec!["https://x"]);
    assert_eq!(rule.tags, vec!["attack.t1", "attack.t2"]);
    assert_eq!(rule.origin, "here.yml");
}

#[test]
fn a_map_is_and_a_list_of_values_is_or_a_list_of_maps_is_or() {
    let and = "s:\n    eventName: A\n    eventSource: b\ncondition: s";
    assert!(fires(and, json!({"eventName": "A", "eventSource": "B"})));
    assert!(!fires(and, json!({"eventName": "A", "eventSource": "c"})));
    let or = "s:\n    eventName:\n        - A\n        - B\ncondition: s";
    assert!(fires(or, json!({"eventName": "b"})));
    assert!(!fires(or, json!({"eventName": "c"})));
    let maps = "s:\n    - eventName: A\n    - eventSource: b\ncondition: s";
    assert!(fires(maps, json!({"eventSource": "b"})));
    assert!(fires(maps, json!({"eventName": "a"})));
    assert!(!fires(maps, json!({"eventName": "b"})));
}

#[test]
fn null_matches_a_missing_or_null_field_only() {
    let null = "s:\n    errorCode: null\ncondition: s";
    assert!(fires(null, json!({"eventName": "X"})));
    assert!(fires(null, json!({"errorCode": null})));
    assert!(!fires(null, json!({"errorCode": "AccessDenied"})));
    assert!(!fires(null, json!({"errorCode": ""})));
}

#[test]
fn star_means_some_non_null_value() {
    for detection in ["s:\n    f: '*'\ncondition: s", "s:\n    f|contains: '*'\ncondition: s"] {
        assert!(fires(detection, json!({"f": "x"})));
        assert!(fires(detection, json!({"f": ""})));
        assert!(fires(detection, json!({"f": 0})));
        assert!(fires(detection, json!({"f": ["arn:1"]})));
        assert!(fires(detection, json!({"f": {"k": "v"}})));
        assert!(!fires(detection, json!({"f": []})));
        assert!(!fires(detection, json!({"f": null})));
        assert!(!fires(detection, json!({"g": "x"})));
    }
}

#[test]
fn strings_compare_with_booleans_and_numbers_through_their_text() {
    let enable = "s:\n    requestParameters.enable: 'false'\ncondition: s";
    assert!(fires(enable, json!({"requestParameters": {"enable": false}})));
    assert!(fires(enable, json!({"requestParameters": {"enable": "False"}})));
    assert!(!fires(enable, json!({"requestParameters": {"enable": true}})));
    let yaml_bool = "s:\n    publiclyAccessible: true\ncondition: s";
    assert!(fires(yaml_bool, json!({"publiclyAccessible": true})));
    assert!(fires(yaml_bool, json!({"publiclyAccessible": "true"})));
    let number = "s:\n    port: 443\ncondition: s";
    assert!(fires(number, json!({"port": 443})));
    assert!(fires(number, json!({"port": 443.0})));
    assert!(fires(number, json!({"port": "443"})));
    assert!(!fires(number, json!({"port": 4430})));
    assert!(fires("s:\n    port: '44*'\ncondition: s", json!({"port": 443})));
}

#[test]
fn dotted_paths_descend_into_lists() {
    let command = "s:\n    requestParameters.containerDefinitions.command|contains: '$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'\ncondition: s";
    let record = json!({"requestParameters": {"containerDefinitions": [
        {"command": ["sh", "-c"]},
        {"command": ["sh", "-c", "curl 169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]}
    ]}});
    assert!(fires(command, record));
    assert!(!fires(command, json!({"requestParameters": {"containerDefinitions": [{"command": ["sh"]}]}})));
}

#[test]
fn contains_on_an_object_searches_nested_values_and_the_serialized_json() {
    let suspended = "s:\n    requestParameters|contains: 'Suspended'\ncondition: s";
    let versioning =
        json!({"requestParameters": {"bucketName": "b", "VersioningConfiguration": {"Status": "Suspended"}}});
    assert!(fires(suspended, versioning.clone()));
    assert!(!fires(suspended, json!({"requestParameters": {"VersioningConfiguration": {"Status": "Enabled"}}})));
    // A key/value pair only exists in the serialized JSON.
    assert!(fires("s:\n    requestParameters|contains: '\"Status\":\"Suspended\"'\ncondition: s", versioning));
    // Quotes inside a nested string (a policy document) match as they are.
    let policy =
        "s:\n    requestParameters|contains|all:\n        - '\"s3:GetObject\"'\n        - '\"Allow\"'\ncondition: s";
    let record =
        json!({"requestParameters": {"policyDocument": "{\"Effect\":\"Allow\",\"Action\":[\"s3:GetObject\"]}"}});
    assert!(fires(policy, record));
    let only_one =
        json!({"requestParameters": {"policyDocument": "{\"Effect\":\"Deny\",\"Action\":[\"s3:GetObject\"]}"}});
    assert!(!fires(policy, only_one));
}

#[test]
fn anchoring_modifiers() {
    assert!(fires(
        "s:\n    eventName|startswith: 'UpdateFunctionConfiguration'\ncondition: s",
        json!({"eventName": "UpdateFunctionConfiguration20150331v2"})
    ));
    assert!(fires("s:\n    userAgent|endswith: 'Browser'\ncondition: s", json!({"userAgent": "S3 browser"})));
    assert!(!fires("s:\n    userAgent|endswith: 'Browser'\ncondition: s", json!({"userAgent": "S3 browser 1"})));
    assert!(fires("s:\n    userAgent|contains: 'TruffleHog'\ncondition: s", json!({"userAgent": "trufflehog/3.63.0"})));
    assert!(refusal("s:\n    f|contains|startswith: x\ncondition: s").contains("conflicting"));
}

#[test]
fn all_modifier_requires_every_value() {
    let all = "s:\n    f|contains|all:\n        - a\n        - b\ncondition: s";
    assert!(fires(all, json!({"f": "xaxbx"})));
    assert!(!fires(all, json!({"f": "xax"})));
    // On a list, different elements may supply different values.
    assert!(fires(all, json!({"f": ["a", "b"]})));
}

#[test]
fn cased_modifier() {
    let cased = "s:\n    f|cased: Success\ncondition: s";
    assert!(fires(cased, json!({"f": "Success"})));
    assert!(!fires(cased, json!({"f": "success"})));
    assert!(fires("s:\n    f|contains|cased: Succ\ncondition: s", json!({"f": "xSuccess"})));
    assert!(!fires("s:\n    f|contains|cased: succ\ncondition: s", json!({"f": "xSuccess"})));
}

#[test]
fn regular_expressions_and_their_flags() {
    let imds = "s:\n    userIdentity.arn|re: '.+:assumed-role/aws:.+'\ncondition: s";
    assert!(fires(imds, json!({"userIdentity": {"arn": "arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1"}})));
    assert!(!fires(imds, json!({"userIdentity": {"arn": "arn:aws:sts::1:assumed-role/AWS:ec2-instance/i-1"}})));
    assert!(fires("s:\n    f|re: 'ab'\ncondition: s", json!({"f": "xxabxx"})), "unanchored search");
    assert!(!fires("s:\n    f|re: '^ab$'\ncondition: s", json!({"f": "xxabxx"})));
    assert!(fires("s:\n    f|re|i: '^AB$'\ncondition: s", json!({"f": "ab"})));
    assert!(fires("s:\n    f|re|m: '^b$'\ncondition: s", json!({"f": "a\nb"})));
    assert!(!fires("s:\n    f|re: '^b$'\ncondition: s", json!({"f": "a\nb"})));
    assert!(fires("s:\n    f|re|s: 'a.b'\ncondition: s", json!({"f": "a\nb"})));
    assert!(!fires("s:\n    f|re: 'a.b'\ncondition: s", json!({"f": "a\nb"})));
    assert!(refusal("s:\n    f|re: '(unclosed'\ncondition: s").contains("bad regular expression"));
    assert!(refusal("s:\n    f|re: '\\w{1000}{1000}'\ncondition: s").contains("bad regular expression"), "size limit");
    assert!(refusal("s:\n    f|i: 'x'\ncondition: s").contains("without `|re`"));
}

#[test]
fn cidr_modifier() {
    let cidr = "s:\n    sourceIPAddress|cidr:\n        - 10.0.0.0/8\n        - '2001:db8::/32'\ncondition: s";
    assert!(fires(cidr, json!({"sourceIPAddress": "10.1.2.3"})));
    assert!(fires(cidr, json!({"sourceIPAddress": "2001:db8::5"})));
    assert!(!fires(cidr, json!({"sourceIPAddress": "192.0.2.1"})));
    assert!(!fires(cidr, json!({"sourceIPAddress": "AWS Internal"})));
    assert!(refusal("s:\n    f|cidr: 10.0.0.0/40\ncondition: s").contains("not a network"));
}

#[test]
fn exists_modifier() {
    let exists = "s:\n    errorCode|exists: true\ncondition: s";
    assert!(fires(exists, json!({"errorCode": "X"})));
    assert!(!fires(exists, json!({"errorCode": null})));
    assert!(!fires(exists, json!({})));
    assert!(fires("s:\n    errorCode|exists: false\ncondition: s", json!({})));
    assert!(refusal("s:\n    errorCode|exists: yes please\ncondition: s").contains("true or false"));
}

#[test]
fn numeric_comparisons() {
    let record = json!({"n": 5, "s": "7"});
    assert!(fires("s:\n    n|lt: 6\ncondition: s", record.clone()));
    assert!(!fires("s:\n    n|lt: 5\ncondition: s", record.clone()));
    assert!(fires("s:\n    n|lte: 5\ncondition: s", record.clone()));
    assert!(fires("s:\n    n|gt: 4.5\ncondition: s", record.clone()));
    assert!(fires("s:\n    n|gte: 5\ncondition: s", record.clone()));
    assert!(fires("s:\n    s|gt: 6\ncondition: s", record.clone()));
    assert!(!fires("s:\n    missing|gt: 0\ncondition: s", record));
    assert!(refusal("s:\n    n|gt: five\ncondition: s").contains("need a number"));
}

#[test]
fn fieldref_compares_two_fields_of_the_record() {
    let same = "s:\n    userIdentity.userName|fieldref: requestParameters.userName\ncondition: s";
    assert!(fires(same, json!({"userIdentity": {"userName": "Alice"}, "requestParameters": {"userName": "alice"}})));
    assert!(!fires(same, json!({"userIdentity": {"userName": "alice"}, "requestParameters": {"userName": "bob"}})));
    assert!(!fires(same, json!({"userIdentity": {"userName": "alice"}})), "a missing other field never matches");
    let suffix = "s:\n    userIdentity.arn|fieldref|endswith: requestParameters.userName\ncondition: s";
    assert!(fires(
        suffix,
        json!({"userIdentity": {"arn": "arn:aws:iam::1:user/alice"}, "requestParameters": {"userName": "alice"}})
    ));
    // The other field's `*` is literal, not a wildcard.
    assert!(!fires(same, json!({"userIdentity": {"userName": "alice"}, "requestParameters": {"userName": "*"}})));
}

#[test]
fn a_field_name_without_fieldref_is_literal_text() {
    let backdoor = "s:\n    userIdentity.arn|contains: responseElements.accessKey.userName\ncondition: s";
    let record = json!({"userIdentity": {"arn": "arn:aws:iam::1:user/alice"}, "responseElements": {"accessKey": {"userName": "alice"}}});
    assert!(!fires(backdoor, record));
    assert!(fires(backdoor, json!({"userIdentity": {"arn": "x responseElements.accessKey.userName x"}})));
}

#[test]
fn expand_needs_placeholder_values() {
    let detection = "selection:\n    eventName: ConsoleLogin\nfilter_country:\n    src_country|expand: '%Legitimate_Countries%'\n\
                     filter_ip:\n    src_ip|expand|cidr: '%Legitimate_IP_Ranges%'\ncondition: selection and not 1 of filter_*";
    assert_eq!(refusal(detection), "needs placeholder values: %Legitimate_Countries%, %Legitimate_IP_Ranges%");
    let body: String = detection.lines().map(|line| format!("    {line}\n")).collect();
    let yaml = format!("title: T\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n{body}");
    let mut placeholders = Placeholders::new();
    placeholders
        .insert("Legitimate_Countries", vec!["FR".into(), "DE".into()])
        .insert("%Legitimate_IP_Ranges%", vec!["10.0.0.0/8".into()]);
    let rule = Rule::parse_with(&yaml, "inline", &placeholders).expect("loads once configured");
    assert!(rule.matches(&json!({"eventName": "ConsoleLogin", "src_country": "US", "src_ip": "192.0.2.1"})));
    assert!(!rule.matches(&json!({"eventName": "ConsoleLogin", "src_country": "de", "src_ip": "192.0.2.1"})));
    assert!(!rule.matches(&json!({"eventName": "ConsoleLogin", "src_country": "US", "src_ip": "10.9.9.9"})));
}

#[test]
fn condition_forms() {
    let detection = "a:\n    x: 1\nb:\n    y: 1\nc:\n    z: 1\n_h:\n    w: 1\n";
    let check = |condition: &str, record: Value| fires(&format!("{detection}condition: {condition}"), record);
    assert!(check("a or b and c", json!({"x": 1})));
    assert!(!check("(a or b) and c", json!({"x": 1})));
    assert!(check("not a", json!({})));
    assert!(check("all of them", json!({"x": 1, "y": 1, "z": 1})));
    assert!(check("1 of them", json!({"z": 1})));
    assert!(!check("1 of them", json!({"w": 1})));
    assert!(check("_h", json!({"w": 1})));
    assert!(check("all of ?", json!({"x": 1, "y": 1, "z": 1})));
    // A list of conditions is their OR.
    let list = format!("{detection}condition:\n    - a\n    - b");
    assert!(fires(&list, json!({"y": 1})));
    assert!(!fires(&list, json!({"z": 1})));
}

#[test]
fn refusals() {
    assert!(refusal("s:\n    f: x\ncondition: s | count() > 5").starts_with("not supported: aggregation"));
    assert!(refusal("s:\n    f: x\nt:\n    g: y\ncondition: s near t").contains("near"));
    assert!(refusal("s:\n    f: x\ncondition: s\ntimeframe: 5m").contains("timeframe"));
    assert!(refusal("s:\n    - evil\n    - words\ncondition: s").contains("keyword"));
    assert_eq!(refusal("s:\n    f|frobnicate|twiddle: x\ncondition: s"), "unknown modifiers: frobnicate, twiddle");
    assert!(refusal("s:\n    f|windash: x\ncondition: s").contains("windash"));
    assert!(refusal("s:\n    f|base64offset|contains: x\ncondition: s").contains("base64offset"));
    assert!(refusal("s:\n    f|utf16le: x\ncondition: s").contains("utf16le"));
    assert!(refusal("s:\n    f: x\ncondition: t").contains("not a search identifier"));
    assert!(refusal("s:\n    f: []\ncondition: s").contains("empty list"));
    assert!(refusal("s:\n    f:\n        nested: map\ncondition: s").contains("map or list"));
    assert!(refusal("s:\n    f: x\n").contains("no `condition`"));
    let deep = format!("s:\n    f: x\ncondition: {}s{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(refusal(&deep).contains("nested deeper"));
}

#[test]
fn rules_for_other_log_sources_are_refused() {
    let windows = "title: T\nlogsource:\n    product: windows\n    service: security\ndetection:\n    s:\n        f: x\n    condition: s\n";
    let error = Rule::parse(windows, "w").expect_err("refused");
    assert!(matches!(error, RuleError::NotCloudTrail { .. }));
    assert!(error.to_string().contains("not a CloudTrail rule"));
    let none = "title: T\ndetection:\n    s:\n        f: x\n    condition: s\n";
    assert!(matches!(Rule::parse(none, "n"), Err(RuleError::NotCloudTrail { .. })));
    let correlation = "title: T\ncorrelation:\n    type: event_count\n";
    assert!(Rule::parse(correlation, "c").expect_err("refused").to_string().contains("correlation"));
    assert!(matches!(Rule::parse("title: [unclosed", "y"), Err(RuleError::Yaml(_))));
    let bad_level = "title: T\nlevel: apocalyptic\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    s:\n        f: x\n    condition: s\n";
    assert!(Rule::parse(bad_level, "l").expect_err("refused").to_string().contains("apocalyptic"));
}

#[test]
fn matching_never_panics_on_odd_records() {
    let rule = compiled(
        "s:\n    a.b.c|contains: x\nt:\n    a|re: x\nu:\n    a|cidr: 10.0.0.0/8\nv:\n    a|gt: 1\nw:\n    a|fieldref: b\ncondition: 1 of them",
    );
    for record in [
        json!(null),
        json!([]),
        json!("a"),
        json!(1),
        json!({"a": [[[]]]}),
        json!({"a": {"b": 1}}),
        json!({"a": [null, {"b": {"c": [1, "x"]}}]}),
    ] {
        let _ = rule.matches(&record);
    }
    assert!(rule.matches(&json!({"a": [null, {"b": {"c": [1, "x"]}}]})));
}
