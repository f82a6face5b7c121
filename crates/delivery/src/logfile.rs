//! Log files: `{"Records":[...]}`, gzipped as one member with nothing after it.

use std::io::Write;

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// A log file ready to store, with what its digest entry needs.
#[derive(Debug, Clone)]
pub struct LogFile {
    pub gzipped: Vec<u8>,
    /// Lower-case hex SHA-256 of the uncompressed bytes.
    pub sha256_hex: String,
    pub newest_event_time: Option<DateTime<Utc>>,
    pub oldest_event_time: Option<DateTime<Utc>>,
    pub record_count: usize,
}

/// Builds a log file from records given as their exact JSON bytes. Deterministic: the same
/// records give the same bytes (the gzip header carries no time), so a retried write after a
/// crash stores an identical file.
pub fn build_log_file<'a>(records: impl IntoIterator<Item = (&'a [u8], Option<DateTime<Utc>>)>) -> LogFile {
    let mut json = Vec::with_capacity(64 * 1024);
    json.extend_from_slice(b"{\"Records\":[");
    let (mut newest, mut oldest, mut count) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>, 0);
    for (record, time) in records {
        if count > 0 {
            json.push(b',');
        }
        json.extend_from_slice(record);
        count += 1;
        if let Some(time) = time {
            newest = Some(newest.map_or(time, |n| n.max(time)));
            oldest = Some(oldest.map_or(time, |o| o.min(time)));
        }
    }
    json.extend_from_slice(b"]}");
    LogFile {
        gzipped: gzip(&json),
        sha256_hex: hex::encode(Sha256::digest(&json)),
        newest_event_time: newest,
        oldest_event_time: oldest,
        record_count: count,
    }
}

/// One gzip member, no name, no time: deterministic output.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 6 + 64), Compression::default());
    encoder.write_all(bytes).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn records_are_wrapped_hashed_and_dated() {
        let early: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let late: DateTime<Utc> = "2026-01-01T00:05:00Z".parse().unwrap();
        let file = build_log_file([(&b"{\"a\":1}"[..], Some(late)), (&b"{\"b\":2}"[..], Some(early))]);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&file.gzipped[..]).read_to_string(&mut text).unwrap();
        assert_eq!(text, r#"{"Records":[{"a":1},{"b":2}]}"#);
        assert_eq!(file.sha256_hex, hex::encode(Sha256::digest(text.as_bytes())));
        assert_eq!((file.newest_event_time, file.oldest_event_time, file.record_count), (Some(late), Some(early), 2));
        let again = build_log_file([(&b"{\"a\":1}"[..], Some(late)), (&b"{\"b\":2}"[..], Some(early))]);
        assert_eq!(again.gzipped, file.gzipped, "deterministic bytes");
    }
}
