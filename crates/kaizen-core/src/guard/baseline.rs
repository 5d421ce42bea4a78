//! `baseline`: no apply before the validator's baseline window is there.
//!
//! The validator compares the prediction's window before the apply with the window after it;
//! if the "before" is mostly empty (kaizen started a minute ago, the source was down), no verdict
//! can be reached and a good change would be reverted for want of data. So a candidate waits
//! until the `within` before *now* (where the baseline would be, were it applied now) holds at
//! most [`BaselineCoverage::max_gap_fraction`] gaps at the signal's own [`Cadence`] — the same
//! window, count and cadence the validator will use.
//!
//! Unlike the chain's guards this one reads samples, so it is not a [`super::Guard`]: the engine
//! asks it after the chain passed. It fails closed: no samples means waiting.

use super::{Decision, GuardVerdict};
use crate::intervention::Candidate;
use crate::signal::Sample;
use crate::validate::{Cadence, expected_samples};
use chrono::{DateTime, Utc};

/// The guard's name in the ledger.
pub const NAME: &str = "baseline";

/// Refuses to apply while the baseline window is not covered by samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineCoverage {
    /// Largest share of missing samples in the baseline window (default 0.25, the validator's).
    pub max_gap_fraction: f64,
    /// Fewest samples the validator judges a side on (default the honest validator's): one
    /// missing sample in a 6-sample baseline is within the gap share but leaves it unjudgeable,
    /// and an extension never adds baseline samples, so the candidate waits instead.
    pub min_samples: usize,
}

impl Default for BaselineCoverage {
    fn default() -> Self {
        Self {
            max_gap_fraction: 0.25,
            min_samples: crate::validate::MIN_SAMPLES_PER_SIDE,
        }
    }
}

/// What [`BaselineCoverage::check`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Coverage {
    /// The baseline is there (`Pass`), or can never be (`Block`): a verdict for the chain.
    Decided(GuardVerdict),
    /// Not yet: the candidate waits (not recorded as an intervention) and is proposed again.
    Waiting {
        /// Samples in the baseline window now.
        have: usize,
        /// Samples the window should hold at the cadence.
        expected: usize,
        /// Fewest samples that cover it.
        need: usize,
        /// "waiting for baseline: 2 of 30 samples (…)".
        text: String,
    },
}

impl BaselineCoverage {
    /// Checks the baseline `candidate`'s prediction would be judged against if applied at `now`,
    /// from the predicted signal's `samples` (any range that includes the window) and `cadence`.
    pub fn check(
        &self,
        candidate: &Candidate,
        samples: &[Sample],
        cadence: &Cadence,
        now: DateTime<Utc>,
    ) -> Coverage {
        let within = candidate.prediction.within;
        let every = cadence.every;
        let from = within.before(now);
        let expected = expected_samples(from, now, every);
        if expected == 0 {
            return Coverage::Decided(GuardVerdict {
                guard: NAME.into(),
                decision: Decision::Block,
                reason: format!(
                    "the prediction's window ({within}) is shorter than {}'s cadence ({every}): no baseline can be judged",
                    candidate.prediction.signal
                ),
            });
        }
        let have = samples
            .iter()
            .filter(|s| s.at >= from && s.at < now && s.value.is_finite())
            .count();
        let frac = if self.max_gap_fraction.is_finite() {
            self.max_gap_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // Gaps allowed: ⌊frac · expected⌋, the validator's rule (`gaps > frac · expected` fails).
        let allowed = (frac * expected as f64).floor() as usize;
        // A window shorter than the validator's minimum cannot reach it by waiting; sizing
        // says so at proposal time, and the gap share alone decides here.
        let need = expected
            .saturating_sub(allowed)
            .max(self.min_samples.min(expected))
            .max(1);
        let window = format!(
            "{} over the {within} before now, cadence {}",
            candidate.prediction.signal,
            cadence.describe()
        );
        if have >= need {
            Coverage::Decided(GuardVerdict {
                guard: NAME.into(),
                decision: Decision::Pass,
                reason: format!("baseline covered: {have} of {expected} samples ({window})"),
            })
        } else {
            Coverage::Waiting {
                have,
                expected,
                need,
                text: format!(
                    "waiting for baseline: {have} of {expected} samples (needs {need}; {window})"
                ),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testutil::cand;
    use super::*;
    use crate::span::Span;
    use chrono::{Duration, TimeZone};

    fn samples(t0: DateTime<Utc>, minutes: impl IntoIterator<Item = i64>) -> Vec<Sample> {
        minutes
            .into_iter()
            .map(|m| Sample {
                signal: "latency_ms".into(),
                at: t0 + Duration::minutes(m),
                value: 250.0,
            })
            .collect()
    }

    #[test]
    fn waits_until_the_window_is_three_quarters_covered() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let c = cand("cache");
        let g = BaselineCoverage::default();
        let s = samples(t0, 0..=1);
        let cad = Cadence::resolve(&s, None);
        match g.check(&c, &s, &cad, t0 + Duration::minutes(1)) {
            Coverage::Waiting {
                have,
                expected,
                need,
                text,
            } => {
                assert_eq!((have, expected, need), (1, 30, 23));
                assert!(
                    text.starts_with("waiting for baseline: 1 of 30 samples"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        // 22 samples: still waiting; 23: covered.
        let s = samples(t0, 0..=22);
        let cad = Cadence::resolve(&s, None);
        assert!(matches!(
            g.check(&c, &s, &cad, t0 + Duration::minutes(22)),
            Coverage::Waiting { have: 22, .. }
        ));
        match g.check(&c, &s, &cad, t0 + Duration::minutes(23)) {
            Coverage::Decided(v) => assert_eq!(v.decision, Decision::Pass, "{v:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_missing_sample_of_a_six_sample_baseline_waits() {
        // 5-minute samples, a 30m prediction: 6 expected. The gap share allows one missing,
        // but the validator judges a side on 6 at least, so 5 of 6 waits (until the gap has
        // slid out of the window) rather than be applied into a certain "cannot judge".
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let c = cand("cache");
        let s = samples(t0, (0..12).filter(|i| *i != 9).map(|i| i * 5));
        let cad = Cadence::resolve(&s, None);
        match BaselineCoverage::default().check(&c, &s, &cad, t0 + Duration::minutes(60)) {
            Coverage::Waiting { have, need, .. } => assert_eq!((have, need), (5, 6)),
            other => panic!("{other:?}"),
        }
        let s = samples(t0, (0..16).filter(|i| *i != 9).map(|i| i * 5));
        match BaselineCoverage::default().check(&c, &s, &cad, t0 + Duration::minutes(80)) {
            Coverage::Decided(v) => assert_eq!(v.decision, Decision::Pass, "{v:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn counts_against_the_signals_own_cadence() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let c = cand("cache");
        // Every 5 minutes for an hour: 6 of 6 at 5m (at 1m it would be 6 of 30).
        let s = samples(t0, (0..12).map(|i| i * 5));
        let cad = Cadence::resolve(&s, Some(Span::minutes(1)));
        match BaselineCoverage::default().check(&c, &s, &cad, t0 + Duration::minutes(60)) {
            Coverage::Decided(v) => {
                assert_eq!(v.decision, Decision::Pass, "{v:?}");
                assert!(v.reason.contains("6 of 6"), "{v:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_samples_waits_and_a_window_shorter_than_the_cadence_blocks() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        let c = cand("cache");
        let g = BaselineCoverage::default();
        assert!(matches!(
            g.check(&c, &[], &Cadence::resolve(&[], None), t0),
            Coverage::Waiting { have: 0, .. }
        ));
        let cad = Cadence::resolve(&[], Some(Span::hours(1)));
        match g.check(&c, &[], &cad, t0) {
            Coverage::Decided(v) => assert_eq!(v.decision, Decision::Block),
            other => panic!("{other:?}"),
        }
    }
}
