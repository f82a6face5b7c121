//! Crash points: a test hook that kills the process at a named point of a durable write path,
//! so the integration tests can crash a real server exactly between two durable steps (where a
//! SIGKILL from outside lands only by luck).
//!
//! The hook is off unless `OPENTRAIL_CRASH_POINT` is set when the process first reaches a crash
//! point: `<point>` kills the process the first time `<point>` is reached, `<point>@<n>` the
//! n-th time (so calls before it complete normally). Nothing but the tests sets it; with the
//! variable unset a crash point costs one relaxed atomic load after the first call.
//!
//! It lives here, in the lowest crate on the path, because one of the points is inside a
//! control-store transaction; the service names the others.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms a crash point (test hook).
pub const CRASH_POINT_VARIABLE: &str = "OPENTRAIL_CRASH_POINT";

/// Inside the transaction of a recorded change, after the change and its outbox row are
/// written and before the commit: afterwards neither may exist.
pub const BEFORE_CONTROL_COMMIT: &str = "before-control-commit";
/// After a recorded change committed, before its record is appended to the journal:
/// afterwards the change must exist and the start-up drain must deliver its record.
pub const AFTER_CONTROL_COMMIT: &str = "after-control-commit";
/// After the record is durable in the journal, before its outbox row is removed: afterwards
/// the drain must find the record in the journal and not append it again.
pub const AFTER_JOURNAL_APPEND: &str = "after-journal-append";

/// Every point, for parsing the variable.
const POINTS: [&str; 3] = [BEFORE_CONTROL_COMMIT, AFTER_CONTROL_COMMIT, AFTER_JOURNAL_APPEND];

/// The armed point and on which arrival it fires.
#[derive(Debug, PartialEq, Eq)]
struct Armed {
    point: &'static str,
    on_arrival: u64,
}

fn parse(value: &str) -> Option<Armed> {
    let (name, count) = match value.split_once('@') {
        Some((name, count)) => (name, count.parse().ok().filter(|n| *n > 0)?),
        None => (value, 1),
    };
    let point = POINTS.into_iter().find(|point| *point == name)?;
    Some(Armed { point, on_arrival: count })
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(CRASH_POINT_VARIABLE).ok()?;
            let armed = parse(&value);
            // A typo must not make a crash test pass by never crashing.
            assert!(armed.is_some(), "{CRASH_POINT_VARIABLE}={value:?} names no crash point (one of {POINTS:?})");
            armed
        })
        .as_ref()
}

/// Kills this process with SIGKILL (no destructor, flush or unwinding runs: the same as being
/// killed from outside) if `point` is the armed crash point and this is the arrival it fires
/// on. A test hook; does nothing unless `OPENTRAIL_CRASH_POINT` is set.
pub fn crash_point(point: &'static str) {
    debug_assert!(POINTS.contains(&point), "unknown crash point {point}");
    let Some(armed) = armed() else { return };
    if armed.point != point {
        return;
    }
    static ARRIVALS: AtomicU64 = AtomicU64::new(0);
    if ARRIVALS.fetch_add(1, Ordering::SeqCst) + 1 == armed.on_arrival {
        eprintln!("crash point {point} reached: killing the process ({CRASH_POINT_VARIABLE})");
        // SAFETY: getpid and kill have no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // SIGKILL cannot be caught; if delivery were delayed, nothing after this point may run.
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_a_point_and_an_arrival() {
        assert_eq!(parse("after-control-commit"), Some(Armed { point: AFTER_CONTROL_COMMIT, on_arrival: 1 }));
        assert_eq!(parse("after-journal-append@3"), Some(Armed { point: AFTER_JOURNAL_APPEND, on_arrival: 3 }));
        for bad in ["", "after-commit", "before-control-commit@0", "before-control-commit@x", "@2"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
