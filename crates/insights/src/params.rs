//! The detector's parameters: one table of names, defaults and meanings (the `[insights]`
//! section of the server's configuration file). The defaults were chosen with the replay
//! harness (`cargo run -p opentrail-insights --example tune --release`); the README shows its
//! table.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InsightParams {
    /// The baseline's length in minutes (AWS: the 7 days before an insight). No insight is
    /// raised before a Region has been observed this long.
    pub baseline_minutes: u32,
    /// A burst is judged on the mean rate of this many closed minutes.
    pub window_minutes: u32,
    /// A burst needs a window rate of at least this many times the expected rate.
    pub spike_factor: f64,
    /// ... and at least this many standard deviations (of a window mean) above it.
    pub spike_sigmas: f64,
    /// ... and at least this many calls per minute: below it nothing is unusual.
    pub min_rate: f64,
    /// A drop is judged on the mean rate of this many closed minutes.
    pub drop_window_minutes: u32,
    /// A drop is a window rate at most this fraction of the expected rate ...
    pub drop_fraction: f64,
    /// ... where the expected rate is at least this many calls per minute (quiet hours and
    /// sparse APIs cannot drop).
    pub drop_min_rate: f64,
    /// An insight ends when the mean of this many closed minutes is back on the usual side of
    /// its end level; a key raises no new insight for as long again after an end.
    pub cooldown_minutes: u32,
    /// Where between the expected rate (0) and the start threshold (1) a burst's end level
    /// lies; for a drop, the fraction of the expected rate that ends it.
    pub end_level: f64,
    /// Minutes a minute stays open for records that arrive out of order, after a later minute
    /// has been seen.
    pub lateness_minutes: u32,
}

impl Default for InsightParams {
    fn default() -> Self {
        Self {
            baseline_minutes: 7 * 24 * 60,
            window_minutes: 5,
            spike_factor: 3.0,
            spike_sigmas: 6.0,
            min_rate: 5.0,
            drop_window_minutes: 15,
            drop_fraction: 0.1,
            drop_min_rate: 3.0,
            cooldown_minutes: 5,
            end_level: 0.5,
            lateness_minutes: 1,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid insights parameter {name}: {why}")]
pub struct ParamError {
    pub name: &'static str,
    pub why: &'static str,
}

impl InsightParams {
    /// Checks the ranges the detector relies on (windows fit in the minutes it keeps).
    pub fn validate(&self) -> Result<(), ParamError> {
        let fail = |name, why| Err(ParamError { name, why });
        if self.baseline_minutes < 60 || !self.baseline_minutes.is_multiple_of(60) {
            return fail("baseline_minutes", "must be whole hours, at least 60");
        }
        for (name, minutes) in [
            ("window_minutes", self.window_minutes),
            ("drop_window_minutes", self.drop_window_minutes),
            ("cooldown_minutes", self.cooldown_minutes),
        ] {
            if !(1..=60).contains(&minutes) {
                return fail(name, "must be 1 to 60 minutes");
            }
        }
        if self.lateness_minutes > 10 {
            return fail("lateness_minutes", "must be at most 10");
        }
        // Ranges rather than comparisons, so NaN fails every check.
        if !(1.0..=f64::MAX).contains(&self.spike_factor) || self.spike_factor == 1.0 {
            return fail("spike_factor", "must be above 1");
        }
        if !(0.0..=f64::MAX).contains(&self.spike_sigmas) {
            return fail("spike_sigmas", "must be zero or more");
        }
        // A zero minimum would make silence a burst.
        for (name, value) in [("min_rate", self.min_rate), ("drop_min_rate", self.drop_min_rate)] {
            if !(f64::MIN_POSITIVE..=f64::MAX).contains(&value) {
                return fail(name, "must be above zero");
            }
        }
        for (name, value) in [("drop_fraction", self.drop_fraction), ("end_level", self.end_level)] {
            if !(0.0..1.0).contains(&value) || value == 0.0 {
                return fail(name, "must be between 0 and 1");
            }
        }
        Ok(())
    }

    /// How many closed minutes a series keeps at one-minute resolution.
    pub(crate) fn recent_minutes(&self) -> usize {
        self.window_minutes.max(self.drop_window_minutes).max(self.cooldown_minutes) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(InsightParams::default().validate(), Ok(()));
        let bad = InsightParams { window_minutes: 0, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().name, "window_minutes");
        let bad = InsightParams { baseline_minutes: 90, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().name, "baseline_minutes");
        let bad = InsightParams { spike_factor: f64::NAN, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().name, "spike_factor");
        let bad = InsightParams { end_level: 1.0, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().name, "end_level");
        let bad = InsightParams { baseline_minutes: 90, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().name, "baseline_minutes");
        let parsed: InsightParams = serde_json::from_str(r#"{"spike_factor": 5.0}"#).unwrap();
        assert_eq!(parsed.spike_factor, 5.0);
        assert_eq!(parsed.window_minutes, 5);
        assert!(serde_json::from_str::<InsightParams>(r#"{"nope": 1}"#).is_err());
    }
}
