//! `opentrail sigma test`: the built binary on a rule and a JSON-lines file written here.

use std::path::Path;
use std::process::{Command, Output};

const RULE: &str = "title: Console Login Without MFA
id: test-0001
status: test
author: Jane Doe (@jane)
level: medium
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        eventName: ConsoleLogin
        additionalEventData.MFAUsed: 'NO'
    condition: selection
";

const NOT_CLOUDTRAIL: &str = "title: Windows
logsource:
    product: windows
detection:
    selection:
        EventID: 4624
    condition: selection
";

const RECORDS: &str = r#"{"eventTime":"2024-01-15T10:30:00Z","eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"No"},"eventID":"e1"}
{"eventTime":"2024-01-15T10:31:00Z","eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"Yes"},"eventID":"e2"}

{"eventTime":"2024-01-15T10:32:00Z","eventName":"ConsoleLogin","additionalEventData":{"MFAUsed":"no"},"eventID":"e4"}
"#;

fn sigma_test(rules: &Path, file: &Path, json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opentrail"));
    command.args(["sigma", "test"]).arg(rules).arg(file);
    if json {
        command.arg("--json");
    }
    command.output().expect("the binary runs")
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
    std::fs::write(dir.path().join("rules/login.yml"), RULE).expect("write rule");
    std::fs::write(dir.path().join("rules/windows.yml"), NOT_CLOUDTRAIL).expect("write rule");
    std::fs::write(dir.path().join("events.jsonl"), RECORDS).expect("write records");
    dir
}

#[test]
fn prints_one_line_per_match_with_the_author_and_lists_refused_rules() {
    let dir = setup();
    let output = sigma_test(&dir.path().join("rules"), &dir.path().join("events.jsonl"), false);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            "1\t2024-01-15T10:30:00Z\tConsoleLogin\tConsole Login Without MFA\t[medium]\tauthor: Jane Doe (@jane)\tid: test-0001",
            "4\t2024-01-15T10:32:00Z\tConsoleLogin\tConsole Login Without MFA\t[medium]\tauthor: Jane Doe (@jane)\tid: test-0001",
        ]
    );
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(stderr.contains("windows.yml: not a CloudTrail rule"), "{stderr}");
    assert!(stderr.contains("1 rules loaded, 1 refused; 3 records; 2 matches"), "{stderr}");
}

#[test]
fn json_output_and_a_single_rule_file_and_a_cloudtrail_log_file() {
    let dir = setup();
    let log = serde_json::json!({"Records": [
        {"eventTime": "2024-01-15T11:00:00Z", "eventName": "ConsoleLogin", "additionalEventData": {"MFAUsed": "Yes"}},
        {"eventTime": "2024-01-15T11:01:00Z", "eventName": "ConsoleLogin", "additionalEventData": {"MFAUsed": "NO"}, "eventID": "x"}
    ]});
    std::fs::write(dir.path().join("log.json"), log.to_string()).expect("write log");
    let output = sigma_test(&dir.path().join("rules/login.yml"), &dir.path().join("log.json"), true);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|line| serde_json::from_str(line).expect("a JSON object per line")).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["record"], 2);
    assert_eq!(lines[0]["eventTime"], "2024-01-15T11:01:00Z");
    assert_eq!(lines[0]["eventName"], "ConsoleLogin");
    assert_eq!(lines[0]["title"], "Console Login Without MFA");
    assert_eq!(lines[0]["level"], "medium");
    assert_eq!(lines[0]["author"], "Jane Doe (@jane)");
    assert_eq!(lines[0]["id"], "test-0001");
}

#[test]
fn an_unreadable_file_is_an_error_and_no_match_is_success() {
    let dir = setup();
    let missing = sigma_test(&dir.path().join("rules"), &dir.path().join("missing.jsonl"), false);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    std::fs::write(dir.path().join("other.jsonl"), "{\"eventName\":\"GetObject\"}\n").expect("write");
    let none = sigma_test(&dir.path().join("rules"), &dir.path().join("other.jsonl"), false);
    assert!(none.status.success());
    assert!(none.stdout.is_empty());
    std::fs::write(dir.path().join("bad.jsonl"), "{\"eventName\":\"x\"}\nnot json\n").expect("write");
    let bad = sigma_test(&dir.path().join("rules"), &dir.path().join("bad.jsonl"), false);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 2: not valid JSON"));
}
