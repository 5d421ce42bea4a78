//! Stage 5, validate: after the window, did the prediction hold?
//!
//! The [`Validator`] trait is the seam; the engine supplies a [`ValidationRequest`] of plain data
//! (the target series with history before the apply, guardrail series) and stores the returned
//! [`Verdict`] with all its figures.

use crate::intervention::{Outcome, Prediction};
use crate::signal::{Sample, Signal};
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which look at the data this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Look {
    /// Before the window ends: may only detect regression.
    Interim,
    /// The window has ended: the confirmatory decision.
    Final,
    /// The window was already extended to its maximum: inconclusive becomes no_effect.
    LastExtension,
}

/// A guardrail series: a signal that must not regress when the target area changes.
#[derive(Debug, Clone)]
pub struct GuardrailSeries<'a> {
    /// The guardrail signal.
    pub signal: &'a Signal,
    /// Its samples, oldest first, covering history before the apply through `now`.
    pub samples: &'a [Sample],
}

/// Everything a validator may look at.
#[derive(Debug, Clone)]
pub struct ValidationRequest<'a> {
    /// The prediction to check.
    pub prediction: &'a Prediction,
    /// The predicted signal.
    pub signal: &'a Signal,
    /// When the change was applied.
    pub applied_at: DateTime<Utc>,
    /// Settle time after the apply before post samples count.
    pub settle: Span,
    /// The window end for this look (`applied_at + settle + within`, extended if so).
    pub window_end: DateTime<Utc>,
    /// The engine clock's now.
    pub now: DateTime<Utc>,
    /// Target samples, oldest first, from as far before the apply as the ledger keeps (≥ 8 days
    /// when available) through `now`.
    pub samples: &'a [Sample],
    /// Guardrail signals for the intervention's area.
    pub guardrails: Vec<GuardrailSeries<'a>>,
    /// Which look this is.
    pub look: Look,
    /// The nominal sampling interval, to count gaps.
    pub sample_every: Span,
}

/// The numbers behind a verdict, stored for `kaizen show`, audits and the meta-review.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Figures {
    /// The method (`before_after_median`, `hodges_lehmann_placebo`, ...).
    pub method: String,
    /// Samples in the baseline window.
    pub n_before: usize,
    /// Samples in the post window.
    pub n_after: usize,
    /// Missing samples (gaps) in the post window.
    pub gaps: usize,
    /// Baseline median (signal units).
    pub baseline: Option<f64>,
    /// Post-window median (signal units).
    pub post: Option<f64>,
    /// Estimated effect, as a relative change (e.g. −0.18 = fell 18%) where the scale is a ratio,
    /// else in signal units.
    pub estimate: Option<f64>,
    /// Lower end of the effect interval (same scale as `estimate`).
    pub lower: Option<f64>,
    /// Upper end of the effect interval.
    pub upper: Option<f64>,
    /// Confidence level of the interval (e.g. 0.95).
    pub level: Option<f64>,
    /// Whether the predicted magnitude was met (for validated verdicts).
    pub magnitude_met: Option<bool>,
    /// Free-form notes: seasonality used, excursion adjustments, guardrail results.
    pub notes: Vec<String>,
}

/// A validator's conclusion for one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The outcome. On an interim look, anything but `Regressed` means "keep waiting".
    pub outcome: Outcome,
    /// One sentence for a human.
    pub summary: String,
    /// The numbers.
    pub figures: Figures,
}

/// Decides whether a prediction held.
///
/// Invariants: never `Validated` on too little data or too many gaps; an interim look only ever
/// returns `Regressed` or `Inconclusive`; deterministic for the same request.
pub trait Validator: Send + Sync {
    /// A name for the ledger.
    fn name(&self) -> &str;
    /// Judges one look.
    fn validate(&self, req: &ValidationRequest<'_>) -> Verdict;
}

/// Samples of `series` with `from <= at < to`.
pub fn window(series: &[Sample], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<f64> {
    series
        .iter()
        .filter(|s| s.at >= from && s.at < to && s.value.is_finite())
        .map(|s| s.value)
        .collect()
}
