//! Finding `../shared/data` (the workspace's sibling folder of real data), as crates/cli's tests do.

use std::path::PathBuf;

/// `<workspace>/../shared/data`, or None (after printing the SKIPPED line) when it is absent.
pub fn shared_data() -> Option<PathBuf> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if folder.join("sigma-rules").is_dir() && folder.join("real-events").is_dir() {
        Some(folder)
    } else {
        println!("SKIPPED: ../shared/data not found");
        None
    }
}

/// Every record of `real-events/*.jsonl`, as (`file:line`, record), files in name order.
pub fn real_records(data: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("real-events"))
        .expect("real-events is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        let name = file.file_name().expect("file name").to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).expect("readable");
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}:{}: {e}", index + 1));
            records.push((format!("{name}:{}", index + 1), record));
        }
    }
    records
}
