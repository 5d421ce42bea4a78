//! Calibration of stated predictions: does "80% confident, −20%" come true 80% of the time and
//! by about 20%? Plain records in, plain numbers out, for the meta-review (compare rolling
//! 4-week windows; a week of ~20 predictions is noisy).

use super::stats::{median_mut, wilson_interval};
use crate::intervention::Outcome;
use serde::{Deserialize, Serialize};

/// One judged prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// Stated probability (0..1) that the prediction holds.
    pub confidence: f64,
    /// Predicted change, relative (e.g. −0.20 for "falls 20%").
    pub predicted: f64,
    /// The validator's estimate on the same scale, if it made one.
    pub realised: Option<f64>,
    /// Lower end of the validator's interval.
    pub lower: Option<f64>,
    /// Upper end of the validator's interval.
    pub upper: Option<f64>,
    /// What validation concluded.
    pub outcome: Outcome,
}

impl CalibrationRecord {
    /// 1 for validated, 0 for no effect / regressed, `None` for inconclusive (not scored).
    pub fn hit(&self) -> Option<f64> {
        match self.outcome {
            Outcome::Validated => Some(1.0),
            Outcome::NoEffect | Outcome::Regressed => Some(0.0),
            Outcome::Inconclusive => None,
        }
    }
}

/// Mean squared difference between stated confidence and what happened (validated = 1,
/// no effect / regressed = 0; inconclusive records are skipped). 0 is perfect, 0.25 is what
/// always saying 50% scores. `None` when nothing was decided.
pub fn brier_score(records: &[CalibrationRecord]) -> Option<f64> {
    let scored: Vec<f64> = records
        .iter()
        .filter_map(|r| r.hit().map(|h| (r.confidence.clamp(0.0, 1.0) - h).powi(2)))
        .collect();
    (!scored.is_empty()).then(|| scored.iter().sum::<f64>() / scored.len() as f64)
}

/// One reliability bin: predictions whose stated confidence fell in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of the confidence bin.
    pub from: f64,
    /// Upper edge (the last bin includes 1.0).
    pub to: f64,
    /// Decided predictions in the bin.
    pub n: usize,
    /// Of which validated.
    pub validated: usize,
    /// Mean stated confidence in the bin (`None` when empty).
    pub mean_confidence: Option<f64>,
    /// Observed validation rate (`None` when empty).
    pub observed: Option<f64>,
    /// 95% Wilson interval of the observed rate.
    pub wilson: (f64, f64),
}

/// Reliability table: `bins` equal-width confidence bins (≈5 is sensible) with the observed
/// validation rate and its 95% Wilson interval. Inconclusive records are skipped.
pub fn reliability(records: &[CalibrationRecord], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    (0..bins)
        .map(|b| {
            let from = b as f64 / bins as f64;
            let to = (b + 1) as f64 / bins as f64;
            let members: Vec<(f64, f64)> = records
                .iter()
                .filter_map(|r| r.hit().map(|h| (r.confidence.clamp(0.0, 1.0), h)))
                .filter(|(c, _)| *c >= from && (*c < to || (b + 1 == bins && *c <= 1.0)))
                .collect();
            let n = members.len();
            let validated = members.iter().filter(|(_, h)| *h > 0.5).count();
            let mean_confidence =
                (n > 0).then(|| members.iter().map(|m| m.0).sum::<f64>() / n as f64);
            ReliabilityBin {
                from,
                to,
                n,
                validated,
                mean_confidence,
                observed: (n > 0).then(|| validated as f64 / n as f64),
                wilson: wilson_interval(validated, n, 1.959_964),
            }
        })
        .collect()
}

/// Share of records with an interval whose interval contains the predicted change: how often
/// the prediction was consistent with what was measured. `None` when no record has an interval.
pub fn interval_coverage(records: &[CalibrationRecord]) -> Option<f64> {
    let with: Vec<bool> = records
        .iter()
        .filter_map(|r| match (r.lower, r.upper) {
            (Some(l), Some(u)) => Some(l <= r.predicted && r.predicted <= u),
            _ => None,
        })
        .collect();
    (!with.is_empty()).then(|| with.iter().filter(|c| **c).count() as f64 / with.len() as f64)
}

/// Median of `ln(realised / predicted)`: 0 is unbiased, −0.69 means effects came out at half
/// the predicted size. A realised effect of the opposite sign (or zero) counts as a ratio of
/// 0.01 (ln ≈ −4.6) rather than being dropped. `None` without realised estimates.
pub fn bias(records: &[CalibrationRecord]) -> Option<f64> {
    let mut logs: Vec<f64> = records
        .iter()
        .filter(|r| r.predicted != 0.0 && r.predicted.is_finite())
        .filter_map(|r| {
            r.realised
                .filter(|x| x.is_finite())
                .map(|x| (x / r.predicted).max(0.01).ln())
        })
        .collect();
    median_mut(&mut logs)
}

/// All calibration figures at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSummary {
    /// Records given.
    pub n: usize,
    /// Records with a decided outcome.
    pub decided: usize,
    /// See [`brier_score`].
    pub brier: Option<f64>,
    /// See [`reliability`] (5 bins).
    pub reliability: Vec<ReliabilityBin>,
    /// See [`interval_coverage`].
    pub coverage: Option<f64>,
    /// See [`bias`].
    pub bias: Option<f64>,
}

/// Brier score, 5 reliability bins, interval coverage and bias of `records`.
pub fn summarize(records: &[CalibrationRecord]) -> CalibrationSummary {
    CalibrationSummary {
        n: records.len(),
        decided: records.iter().filter(|r| r.hit().is_some()).count(),
        brier: brier_score(records),
        reliability: reliability(records, 5),
        coverage: interval_coverage(records),
        bias: bias(records),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(
        confidence: f64,
        predicted: f64,
        realised: f64,
        lu: (f64, f64),
        outcome: Outcome,
    ) -> CalibrationRecord {
        CalibrationRecord {
            confidence,
            predicted,
            realised: Some(realised),
            lower: Some(lu.0),
            upper: Some(lu.1),
            outcome,
        }
    }

    fn sample() -> Vec<CalibrationRecord> {
        vec![
            rec(0.9, -0.20, -0.20, (-0.30, -0.10), Outcome::Validated),
            rec(0.8, -0.20, -0.10, (-0.15, -0.05), Outcome::Validated),
            rec(0.7, -0.10, 0.02, (-0.03, 0.07), Outcome::NoEffect),
            rec(0.3, 0.10, 0.05, (0.00, 0.12), Outcome::Regressed),
            rec(0.6, -0.50, -0.40, (-0.90, 0.20), Outcome::Inconclusive),
        ]
    }

    #[test]
    fn brier_by_hand() {
        // (0.1² + 0.2² + 0.7² + 0.3²) / 4 = (0.01 + 0.04 + 0.49 + 0.09) / 4 = 0.1575.
        let b = brier_score(&sample()).unwrap();
        assert!((b - 0.1575).abs() < 1e-12, "{b}");
        assert_eq!(brier_score(&[]), None);
    }

    #[test]
    fn reliability_by_hand() {
        let bins = reliability(&sample(), 5);
        assert_eq!(bins.len(), 5);
        // [0.2,0.4): the 0.3 record, not validated. [0.6,0.8): 0.7 → not validated.
        // [0.8,1.0]: 0.9 and 0.8, both validated → 2/2, Wilson (0.342, 1).
        assert_eq!((bins[1].n, bins[1].validated), (1, 0));
        assert_eq!((bins[3].n, bins[3].validated), (1, 0));
        assert_eq!((bins[4].n, bins[4].validated), (2, 2));
        assert!((bins[4].mean_confidence.unwrap() - 0.85).abs() < 1e-12);
        assert!(
            (bins[4].wilson.0 - 0.342).abs() < 1e-3,
            "{:?}",
            bins[4].wilson
        );
        assert_eq!(bins[4].wilson.1, 1.0);
        assert_eq!(bins[0].observed, None);
    }

    #[test]
    fn coverage_and_bias_by_hand() {
        // Predicted inside: rec 1 yes, rec 2 no (−0.20 < −0.15), rec 3 no, rec 4 yes, rec 5 yes → 3/5.
        assert!((interval_coverage(&sample()).unwrap() - 0.6).abs() < 1e-12);
        // ratios: 1, 0.5, 0.01 (opposite sign), 0.5, 0.8 → sorted logs: ln .01, ln .5, ln .5, ln .8, 0
        // median = ln 0.5.
        assert!((bias(&sample()).unwrap() - 0.5f64.ln()).abs() < 1e-12);
        let s = summarize(&sample());
        assert_eq!((s.n, s.decided), (5, 4));
    }
}
