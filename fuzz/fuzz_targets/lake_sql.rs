//! The Lake's SQL dialect bridge: any text a caller sends to StartQuery is parsed, checked to be
//! one read-only SELECT, and has its tables resolved, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentrail_lake_sql::bridge;

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let _ = bridge(&sql, |name| name.starts_with('0').then(|| name.to_string()));
});
