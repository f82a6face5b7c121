//! The data-driven cases of `tests/cases/semantics.yml` (see the file's header for the format).

use opentrail_sigma::Rule;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Case {
    name: String,
    detection: String,
    #[serde(default)]
    fires: Vec<Value>,
    #[serde(default)]
    quiet: Vec<Value>,
    refused: Option<String>,
}

#[test]
fn semantics_cases() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases/semantics.yml");
    let text = std::fs::read_to_string(path).expect("the cases file is readable");
    let cases: Vec<Case> = serde_norway::from_str(&text).expect("the cases file parses");
    assert!(cases.len() >= 9);
    for case in cases {
        let body: String = case.detection.lines().map(|line| format!("    {line}\n")).collect();
        let yaml = format!(
            "title: {}\nauthor: Cases\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n{body}",
            case.name
        );
        match (Rule::parse(&yaml, &case.name), &case.refused) {
            (Err(error), Some(expected)) => {
                assert!(error.to_string().contains(expected.as_str()), "{}: refused with {error}", case.name);
            }
            (Ok(_), Some(_)) => panic!("{}: loaded but should be refused", case.name),
            (Err(error), None) => panic!("{}: refused: {error}", case.name),
            (Ok(rule), None) => {
                assert!(!case.fires.is_empty() || !case.quiet.is_empty(), "{}: no records", case.name);
                for record in &case.fires {
                    assert!(rule.matches(record), "{}: should fire on {record}", case.name);
                }
                for record in &case.quiet {
                    assert!(!rule.matches(record), "{}: should not fire on {record}", case.name);
                }
            }
        }
    }
}
