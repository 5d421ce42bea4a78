//! Stage 5, validate: after the window, did the prediction hold?
//!
//! The [`Validator`] trait is the seam; the engine supplies a [`ValidationRequest`] of plain data
//! (the target series with history before the apply, guardrail series) and stores the returned
//! [`Verdict`] with all its figures.
//!
//! Two validators ship:
//! - [`HonestValidator`] (the default, `method: honest`): log/ratio scale, same-time-of-day
//!   residuals, regression-to-the-mean checks, a Hodges–Lehmann shift whose interval is
//!   calibrated by placebo splits of the signal's own history, guardrails, interim looks that can
//!   only find regressions. See `docs/validation-benchmark.md` for its measured error rates.
//! - [`SimpleValidator`] (`method: simple`): medians and a one-sided Mann–Whitney test.
//!
//! Plus [`sizing`] (samples needed to see a predicted effect, checked at proposal time) and
//! [`calibration`] (Brier score, reliability, coverage and bias of stated predictions).

pub mod benchmark;
pub mod cadence;
pub mod calibration;
mod honest;

/// The honest validator's default fewest samples per side; the baseline guard asks for as many
/// before an apply, so a window it lets through can be judged.
pub const MIN_SAMPLES_PER_SIDE: usize = 6;
mod simple;
pub mod sizing;
pub mod stats;
pub mod switchback;

pub use cadence::{Cadence, CadenceSource};
pub use honest::HonestValidator;
pub use simple::SimpleValidator;
pub use sizing::{SizingReport, WindowSizing, required_samples, size_window};

use crate::config::Scale;
use crate::intervention::{ExpectedChange, Outcome, Prediction};
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
    /// The window was already extended to its maximum: the last confirmatory look. An
    /// inconclusive verdict is final here (and marked as decided by the data).
    LastExtension,
    /// The decision of a switchback (off and on in randomised blocks, a permutation test).
    Switchback,
}

/// A guardrail series: a signal that must not regress when the target area changes.
#[derive(Debug, Clone)]
pub struct GuardrailSeries<'a> {
    /// The guardrail signal.
    pub signal: &'a Signal,
    /// Its samples, oldest first, covering history before the apply through `now`.
    pub samples: &'a [Sample],
    /// How effects on it are measured (the guardrail's `SignalConfig::scale`).
    pub scale: Scale,
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
    /// The signal's sampling interval, to count gaps: its [`Cadence`] (from the recorded data,
    /// or `validate.sample_every` where that agrees with the data).
    pub sample_every: Span,
    /// How effects on the target are measured (the target's `SignalConfig::scale`).
    pub scale: Scale,
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
    /// Missing samples in the baseline window.
    #[serde(default)]
    pub gaps_before: usize,
    /// Samples the baseline window should hold at the cadence used.
    #[serde(default)]
    pub expected_before: usize,
    /// Samples the post window should hold at the cadence used.
    #[serde(default)]
    pub expected_after: usize,
    /// The sampling interval gaps were counted against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cadence: Option<Span>,
    /// Set when the data, not the change, decided the verdict (gaps, a source outage, too few
    /// samples, an interval that cannot tell): why ("cannot judge: latency_ms source missing 80%
    /// of samples"). Such a verdict ends `inconclusive`, does not count toward an area freeze and
    /// teaches the distiller nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cannot_judge: Option<String>,
    /// Set with `cannot_judge` when samples themselves were missing (gaps, an outage, too few in
    /// the window), as opposed to figures that could not tell: the engine confirms only the
    /// latter by a switchback (more of the same missing data would not decide anything).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing_data: bool,
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
    /// For a validated relative or absolute prediction: the interval's bound nearer to no
    /// change, as a share of the predicted magnitude (1.0: certain the prediction was met in
    /// full; 0.5: certain of half of it). The distiller writes a prefer lesson from a single
    /// validation only when this is at least one half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certain_share: Option<f64>,
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
    /// How many evenly spaced interim looks (regression only) its significance level is split
    /// across; the engine takes at most this many before the final look. 0: none.
    fn interim_looks(&self) -> u32 {
        0
    }
}

impl Verdict {
    /// Whether the data, not the change, decided this verdict (see [`Figures::cannot_judge`]).
    pub fn data_decided(&self) -> bool {
        self.figures.cannot_judge.is_some()
    }
}

/// "cannot judge: latency_ms source missing 80% of samples (…)": the reason a window with
/// missing data decides nothing. Names the worse window's share of missing samples.
pub fn missing_reason(
    signal: &str,
    (n_before, expected_before): (usize, usize),
    (n_after, expected_after): (usize, usize),
) -> String {
    let gb = expected_before.saturating_sub(n_before);
    let ga = expected_after.saturating_sub(n_after);
    let share = |g: usize, e: usize| if e == 0 { 0.0 } else { g as f64 / e as f64 };
    let worst = share(gb, expected_before).max(share(ga, expected_after));
    format!(
        "cannot judge: {signal} source missing {:.0}% of samples ({gb} of {expected_before} baseline, {ga} of {expected_after} post missing)",
        worst * 100.0
    )
}

/// Samples of `series` with `from <= at < to`.
pub fn window(series: &[Sample], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<f64> {
    series
        .iter()
        .filter(|s| s.at >= from && s.at < to && s.value.is_finite())
        .map(|s| s.value)
        .collect()
}

/// Expected sample count in `[from, to)` at one sample per `every` (0 when `every` is 0 or the
/// range is empty).
pub fn expected_samples(from: DateTime<Utc>, to: DateTime<Utc>, every: Span) -> usize {
    let secs = (to - from).num_seconds();
    if secs <= 0 || every.seconds() == 0 {
        return 0;
    }
    usize::try_from(secs as u64 / every.seconds()).unwrap_or(usize::MAX)
}

/// Missing samples in `[from, to)`: expected count minus observed count (never negative).
pub fn count_gaps(observed: usize, from: DateTime<Utc>, to: DateTime<Utc>, every: Span) -> usize {
    expected_samples(from, to, every).saturating_sub(observed)
}

/// Whether effects are measured on the log scale for these values: `Log` and `Auto` need every
/// value positive (a forced `Log` with non-positive values falls back to linear with a note).
pub(crate) fn use_log(scale: Scale, values: &[f64]) -> (bool, Option<String>) {
    let positive = !values.is_empty() && values.iter().all(|v| *v > 0.0);
    match scale {
        Scale::Linear => (false, None),
        Scale::Auto => (positive, None),
        Scale::Log if positive => (true, None),
        Scale::Log => (
            false,
            Some("scale log requested but some values are not positive; used linear".into()),
        ),
    }
}

/// The predicted magnitude of `change` as a positive distance on the working scale (log ratio
/// when `log`, else signal units), given the baseline median `base`. `None` for threshold
/// predictions or when it cannot be expressed (e.g. a relative change of a zero baseline).
pub(crate) fn predicted_magnitude(change: ExpectedChange, log: bool, base: f64) -> Option<f64> {
    let m = match (change, log) {
        (ExpectedChange::Relative(r), true) => (1.0 + r).max(1e-6).ln().abs(),
        (ExpectedChange::Relative(r), false) => (r * base).abs(),
        (ExpectedChange::Absolute(a), true) if base > 0.0 => {
            ((base + a).max(base * 1e-3) / base).ln().abs()
        }
        (ExpectedChange::Absolute(_), true) => return None,
        (ExpectedChange::Absolute(a), false) => a.abs(),
        (ExpectedChange::Below(_) | ExpectedChange::Above(_), _) => return None,
    };
    (m.is_finite() && m > 0.0).then_some(m)
}

/// Converts a shift on the working scale back to what [`Figures`] stores: a relative change on
/// the log scale (`exp(x) − 1`), else signal units.
pub(crate) fn to_reported(x: f64, log: bool) -> f64 {
    if log { x.exp() - 1.0 } else { x }
}

#[cfg(test)]
mod tests;
