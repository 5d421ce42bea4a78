//! How often a signal is really sampled: a fact of its recorded data, not of a config default.
//!
//! Gaps are counted, windows sized and baselines checked against one [`Cadence`]: the median
//! spacing of the signal's recorded samples (robust to an outage, which is one long spacing, and
//! to a few random misses), with `validate.sample_every` as an optional override. An override
//! that disagrees with the data by more than [`DISAGREEMENT`]× is reported and not used: a wrong
//! setting would otherwise turn every window into "too many gaps" and reject every change on the
//! strength of samples that were never meant to exist.

use crate::signal::Sample;
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Cadence assumed when neither the data (fewer than two samples) nor the config says anything.
pub const FALLBACK: Span = Span::minutes(1);

/// Factor beyond which the configured cadence and the data's are said to disagree.
pub const DISAGREEMENT: f64 = 2.0;

/// Spacings looked at (the most recent ones): enough for a median that ignores an outage and
/// random misses, few enough that a changed schedule (cron moved from 1 to 5 minutes) is followed
/// within a couple of hours rather than after days of history.
pub const RECENT_SPACINGS: usize = 32;

/// Where the cadence in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CadenceSource {
    /// The median spacing of the recorded samples.
    Data,
    /// `validate.sample_every`, consistent with the data (or no data to check it against).
    Configured,
    /// Neither: [`FALLBACK`].
    Fallback,
}

/// The sampling interval gaps are counted against, and how it was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cadence {
    /// The interval in use.
    pub every: Span,
    /// Where it came from.
    pub source: CadenceSource,
    /// The median spacing of the recorded samples, if there were at least two.
    pub data: Option<Span>,
    /// `validate.sample_every`, if set.
    pub configured: Option<Span>,
}

impl Cadence {
    /// Decides the cadence for `samples` (any order) given the optional override.
    pub fn resolve(samples: &[Sample], configured: Option<Span>) -> Self {
        Self::from_data(data_cadence(samples), configured)
    }

    /// [`Cadence::resolve`] for (time, value) points (read without a signal name each).
    pub fn resolve_points(points: &[(DateTime<Utc>, f64)], configured: Option<Span>) -> Self {
        Self::from_data(cadence_of(points.iter().copied()), configured)
    }

    fn from_data(data: Option<Span>, configured: Option<Span>) -> Self {
        let configured = configured.filter(|c| c.seconds() > 0);
        let (every, source) = match (data, configured) {
            (Some(d), Some(c)) if ratio(d, c) > DISAGREEMENT => (d, CadenceSource::Data),
            (_, Some(c)) => (c, CadenceSource::Configured),
            (Some(d), None) => (d, CadenceSource::Data),
            (None, None) => (FALLBACK, CadenceSource::Fallback),
        };
        Self {
            every,
            source,
            data,
            configured,
        }
    }

    /// "validate.sample_every is 1m but latency_ms is sampled every 5m (…)", when the override
    /// and the data disagree by more than [`DISAGREEMENT`]×.
    pub fn disagreement(&self, signal: &str) -> Option<String> {
        let (d, c) = (self.data?, self.configured?);
        (ratio(d, c) > DISAGREEMENT).then(|| {
            format!(
                "validate.sample_every is {c} but {signal} is sampled every {d} (median spacing of its samples); gaps are counted against {d}"
            )
        })
    }

    /// A short description for figures and `kaizen show`: "5m (from the data)".
    pub fn describe(&self) -> String {
        let from = match self.source {
            CadenceSource::Data => "from the data",
            CadenceSource::Configured => "validate.sample_every",
            CadenceSource::Fallback => "default; too few samples to tell",
        };
        format!("{} ({from})", self.every)
    }
}

fn ratio(a: Span, b: Span) -> f64 {
    let (a, b) = (a.seconds().max(1) as f64, b.seconds().max(1) as f64);
    a.max(b) / a.min(b)
}

/// The median positive spacing between consecutive distinct sample times (the most recent
/// [`RECENT_SPACINGS`] spacings), rounded to whole seconds; `None` with fewer than two distinct
/// times.
pub fn data_cadence(samples: &[Sample]) -> Option<Span> {
    cadence_of(samples.iter().map(|s| (s.at, s.value)))
}

/// [`data_cadence`] of (time, value) points.
fn cadence_of(points: impl Iterator<Item = (DateTime<Utc>, f64)>) -> Option<Span> {
    let mut t: Vec<i64> = points
        .filter(|(_, v)| v.is_finite())
        .map(|(at, _)| at.timestamp())
        .collect();
    if !t.windows(2).all(|w| w[0] <= w[1]) {
        t.sort_unstable();
    }
    t.dedup();
    let start = t.len().saturating_sub(RECENT_SPACINGS + 1);
    let mut d: Vec<i64> = t[start..]
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .filter(|x| *x > 0)
        .collect();
    if d.is_empty() {
        return None;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable(mid);
    u64::try_from(*m).ok().map(Span::from_secs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn series(minutes: &[i64]) -> Vec<Sample> {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        minutes
            .iter()
            .map(|m| Sample {
                signal: "latency_ms".into(),
                at: t0 + Duration::minutes(*m),
                value: 1.0,
            })
            .collect()
    }

    #[test]
    fn five_minute_samples_have_a_five_minute_cadence() {
        let s = series(&(0..24).map(|i| i * 5).collect::<Vec<_>>());
        let c = Cadence::resolve(&s, None);
        assert_eq!(c.every, Span::minutes(5));
        assert_eq!(c.source, CadenceSource::Data);
        assert_eq!(c.disagreement("latency_ms"), None);
    }

    #[test]
    fn an_outage_and_random_misses_do_not_move_the_median() {
        // 1-minute samples, every 7th missing, and a 10-minute outage.
        let m: Vec<i64> = (0..60)
            .filter(|i| i % 7 != 3 && !(30..40).contains(i))
            .collect();
        assert_eq!(data_cadence(&series(&m)), Some(Span::minutes(1)));
    }

    #[test]
    fn a_wrong_override_is_reported_and_not_used() {
        let s = series(&(0..24).map(|i| i * 5).collect::<Vec<_>>());
        let c = Cadence::resolve(&s, Some(Span::minutes(1)));
        assert_eq!(c.every, Span::minutes(5));
        let said = c.disagreement("latency_ms").unwrap();
        assert!(said.contains("sample_every is 1m"), "{said}");
        assert!(said.contains("every 5m"), "{said}");
    }

    #[test]
    fn a_matching_override_is_used() {
        let s = series(&[0, 5, 10, 16, 20]);
        let c = Cadence::resolve(&s, Some(Span::minutes(4)));
        assert_eq!(c.every, Span::minutes(4));
        assert_eq!(c.source, CadenceSource::Configured);
    }

    #[test]
    fn without_data_the_override_or_the_fallback() {
        assert_eq!(
            Cadence::resolve(&series(&[0]), Some(Span::minutes(5))).every,
            Span::minutes(5)
        );
        let c = Cadence::resolve(&[], None);
        assert_eq!((c.every, c.source), (FALLBACK, CadenceSource::Fallback));
    }

    #[test]
    fn a_changed_schedule_is_followed_from_the_recent_samples() {
        // Two hours every minute, then three hours every 5 minutes.
        let mut m: Vec<i64> = (0..120).collect();
        m.extend((0..36).map(|i| 120 + 5 * i));
        assert_eq!(data_cadence(&series(&m)), Some(Span::minutes(5)));
    }

    #[test]
    fn duplicate_and_unsorted_times_are_handled() {
        let s = series(&[10, 0, 5, 5, 15]);
        assert_eq!(data_cadence(&s), Some(Span::minutes(5)));
    }
}
