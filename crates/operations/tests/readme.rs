//! README.md's operation table (in "## The API") lists exactly the registry's operations, each
//! once, as implemented or unsupported as the registry declares it.

use std::collections::HashMap;

use opentrail_operations::Operation;

const UNSUPPORTED_STATUS: &str = "Answer `UnsupportedOperationException`";

/// Operation name -> implemented, from the table's rows.
fn readme_table() -> HashMap<String, bool> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("\n## The API\n").nth(1).expect("README.md has a \"## The API\" section");
    let section = section.split("\n## ").next().unwrap();
    let mut rows = section.lines().skip_while(|line| !line.starts_with("| Operations | Status |")).skip(2);
    let mut table = HashMap::new();
    for row in rows.by_ref().take_while(|line| line.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').splitn(2, '|').map(str::trim).collect();
        let [names, status] = cells[..] else { panic!("a row of two cells: {row}") };
        let implemented = if status.starts_with("Implemented") {
            true
        } else if status.starts_with(UNSUPPORTED_STATUS) {
            false
        } else {
            panic!("a status starts with \"Implemented\" or \"{UNSUPPORTED_STATUS}\": {row}")
        };
        for name in names.split(',').map(str::trim) {
            assert!(table.insert(name.to_string(), implemented).is_none(), "{name} is listed twice");
        }
    }
    assert!(!table.is_empty(), "the operation table was not found");
    table
}

#[test]
fn readme_operation_table_matches_the_registry() {
    let mut table = readme_table();
    for operation in Operation::ALL {
        match table.remove(operation.name()) {
            Some(implemented) => assert_eq!(
                implemented,
                operation.is_implemented(),
                "README.md says {} is {}",
                operation.name(),
                if implemented { "implemented" } else { "unsupported" }
            ),
            None => panic!("README.md's operation table does not list {}", operation.name()),
        }
    }
    assert!(table.is_empty(), "README.md lists operations the registry does not have: {:?}", table.keys());
}
