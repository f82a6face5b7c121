//! Files of CloudTrail records as the offline commands read them: a CloudTrail log file
//! (`{"Records": [...]}`) or JSON lines, gzipped or not.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// The records of a CloudTrail log file (numbered by index in `Records`, from 1) or of JSON
/// lines (numbered by line, blank lines skipped), gunzipped if the file is gzip.
pub fn read_records(path: &Path) -> Result<Vec<(usize, Value)>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .with_context(|| format!("{}: invalid gzip data", path.display()))?;
        text
    } else {
        String::from_utf8(raw).with_context(|| format!("{} is not UTF-8 text", path.display()))?
    };
    if let Ok(Value::Object(mut document)) = serde_json::from_str::<Value>(&text)
        && let Some(Value::Array(records)) = document.remove("Records")
    {
        return Ok(records.into_iter().enumerate().map(|(index, record)| (index + 1, record)).collect());
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let record = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not valid JSON", path.display(), index + 1))?;
            Ok((index + 1, record))
        })
        .collect()
}
