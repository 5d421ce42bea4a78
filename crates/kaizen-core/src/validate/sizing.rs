//! Window sizing: how many samples a window needs to see a predicted effect, given the signal's
//! noise and autocorrelation — checked at proposal time so a prediction that no window could
//! confirm is recorded as "unvalidatable as predicted" instead of decided by a coin flip later.

use super::honest::HonestValidator;
use super::stats::{ar1_width_factor, local_noise, median, normal_quantile, rho_upper};
use super::{Look, ValidationRequest, predicted_magnitude, use_log};
use crate::config::Scale;
use crate::intervention::{ExpectedChange, Prediction};
use crate::signal::{Sample, Signal};
use crate::span::Span;
use serde::{Deserialize, Serialize};

/// Asymptotic relative efficiency of Mann–Whitney against the t-test under normal noise (3/π).
const MW_EFFICIENCY: f64 = 3.0 / std::f64::consts::PI;

/// Samples per side needed to detect a shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizingReport {
    /// Samples needed on each side (baseline and post).
    pub needed: usize,
    /// The signal's local robust standard deviation (same units as the history given).
    pub sigma: f64,
    /// Local lag-1 autocorrelation of the history.
    pub rho: f64,
    /// Variance inflation the validator's widths carry: `(1 + ρ) / (1 − ρ) · 1.1²`.
    pub inflation: f64,
    /// The magnitude to detect, in standard deviations.
    pub effect_sd: f64,
    /// The default validator's own interval half-width on the improvement side (working scale)
    /// over placebo windows of the recent history, when they could be judged (median over up to
    /// [`PLACEBO_LOOKS`] of them): the width a verdict on this window will really have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placebo_half_width: Option<f64>,
    /// How many placebo windows that median is over.
    #[serde(default)]
    pub placebo_looks: usize,
}

/// Placebo windows judged for the validator's width (the latest ending now, each earlier one a
/// `within` further back): one window's width varies with the spread inside it and with an
/// excursion it happens to hold, the median of several much less.
pub const PLACEBO_LOOKS: usize = 6;

/// Fewer judged placebo windows than this leave the need to the formula alone.
const MIN_PLACEBO_LOOKS: usize = 3;

/// The validator's widths are not a textbook test's: the interval it validates on is widened for
/// autocorrelation (`ar1_width_factor` × 1.1 without placebo calibration), so the formula's
/// variance carries the same 1.1².
const WIDTH_SLACK: f64 = 1.1;

/// Fewer values than this estimate ρ too poorly to trust one below [`THIN_RHO`] (the
/// validator's thin-history prior, `validate::honest`).
const THIN_VALUES: usize = 40;
const THIN_RHO: f64 = 0.5;

/// Noise is estimated inside blocks of this many consecutive samples (see
/// [`local_noise`](super::stats::local_noise)): long enough for a stable lag-1 autocorrelation,
/// short enough that a step, a leak ramp or a daily cycle barely moves the values inside one.
pub const NOISE_BLOCK: usize = 60;

/// Samples per side a one-sided Mann–Whitney comparison needs to detect a shift of `magnitude`
/// (same units as `history`) at level `alpha` with probability `power`:
/// `n = 2 (z₁₋α + z_power)² σ² · (1+ρ)/(1−ρ) · 1.1² / (M² · 3/π)`, with ρ as the validator
/// takes it (the estimate plus half its standard error, at least 0.5 below 40 values).
///
/// `history` holds the signal's recent values on the working scale (e.g. logs), oldest first.
/// σ and ρ are *local* (within blocks of [`NOISE_BLOCK`] samples), so level shifts in the history
/// (a step, a leak ramp, a daily cycle) are not mistaken for noise.
/// `None` with fewer than 8 values, no spread, or a non-positive magnitude.
pub fn required_samples(
    history: &[f64],
    magnitude: f64,
    alpha: f64,
    power: f64,
) -> Option<SizingReport> {
    if history.len() < 8 || !(magnitude.is_finite() && magnitude > 0.0) {
        return None;
    }
    let (sigma, rho) = local_noise(history, NOISE_BLOCK)?;
    // The autocorrelation the validator will assume: the estimate plus its uncertainty, and
    // never below the thin-history prior when the history is short.
    let rho = rho_upper(rho, history.len());
    let rho = if history.len() < THIN_VALUES {
        rho.max(THIN_RHO)
    } else {
        rho
    };
    let inflation = (ar1_width_factor(rho) * WIDTH_SLACK).powi(2);
    let z =
        normal_quantile(1.0 - alpha.clamp(1e-9, 0.5)) + normal_quantile(power.clamp(0.5, 0.9999));
    let effect_sd = magnitude / sigma;
    let n = 2.0 * z * z * inflation / (effect_sd * effect_sd * MW_EFFICIENCY);
    let needed = if n.is_finite() {
        n.ceil().max(3.0) as usize
    } else {
        usize::MAX
    };
    Some(SizingReport {
        needed,
        sigma,
        rho: rho.max(0.0),
        inflation,
        effect_sd,
        placebo_half_width: None,
        placebo_looks: 0,
    })
}

/// Whether a prediction's window can supply the samples it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSizing {
    /// The sizing, when it could be computed.
    pub report: Option<SizingReport>,
    /// Samples the window gives (`within / sample_every`).
    pub available: usize,
    /// Whether `available ≥ needed` (false when the need could not be computed).
    pub sufficient: bool,
    /// One line for the ledger, e.g. "unvalidatable as predicted: needs 64 samples, window gives 30".
    pub message: String,
}

/// Checks, at proposal time, whether `prediction`'s window (`within` at one sample per
/// `sample_every`) can detect its predicted change on `signal`, given its recent `history`
/// (values of that signal, oldest first; the latest day or so is enough), at 5% one-sided level
/// and 80% power.
pub fn size_window(
    prediction: &Prediction,
    signal: &Signal,
    scale: Scale,
    history: &[Sample],
    sample_every: Span,
) -> WindowSizing {
    let available = usize::try_from(prediction.within.seconds() / sample_every.seconds().max(1))
        .unwrap_or(usize::MAX);
    let values: Vec<f64> = history
        .iter()
        .filter(|s| s.signal == signal.name || s.signal.is_empty())
        .map(|s| s.value)
        .filter(|v| v.is_finite())
        .collect();
    let (log, _) = use_log(scale, &values);
    let work: Vec<f64> = values
        .iter()
        .map(|v| if log { v.ln() } else { *v })
        .collect();
    let recent = &values[values.len().saturating_sub(available.max(8))..];
    let base = median(recent).unwrap_or(0.0);
    let magnitude = match prediction.change {
        ExpectedChange::Below(t) | ExpectedChange::Above(t) => {
            if log && t > 0.0 && base > 0.0 {
                Some((t.ln() - base.ln()).abs())
            } else if log {
                None
            } else {
                Some((t - base).abs())
            }
        }
        change => predicted_magnitude(change, log, base),
    };
    let report = magnitude.and_then(|m| {
        let mut r = required_samples(&work, m, 0.05, 0.8)?;
        // The validator's own width at this window, on placebo windows of the history, rather
        // than the formula's: it carries what the formula cannot (placebo-calibrated conformal
        // widths, seasonal residuals after a week of history, excursion corrections, gaps as
        // they occur). Validated means the lower bound clears zero; with the estimate's sd at
        // most half-width / z₀.₉₅, 80% power at the first look needs
        // M ≥ half-width · (1 + z₀.₈ / z₀.₉₅), and a half-width shrinks as 1/√n. With too few
        // windows to judge, the formula stands.
        let widths = placebo_half_widths(prediction, signal, scale, history, sample_every);
        if let Some(hw) = median(&widths).filter(|_| widths.len() >= MIN_PLACEBO_LOOKS) {
            let k = 1.0 + normal_quantile(0.8) / normal_quantile(0.95);
            let n = available as f64 * (k * hw / m).powi(2);
            let from_width = if n.is_finite() {
                n.ceil().max(3.0) as usize
            } else {
                usize::MAX
            };
            r.needed = from_width;
            r.placebo_half_width = Some(hw);
            r.placebo_looks = widths.len();
        }
        Some(r)
    });
    let (sufficient, message) = match &report {
        Some(r) if r.needed <= available => (
            true,
            format!(
                "validatable: needs {} samples, window gives {available}",
                r.needed
            ),
        ),
        Some(r) => (
            false,
            format!(
                "unvalidatable as predicted: needs {} samples, window gives {available}",
                r.needed
            ),
        ),
        None => (
            false,
            format!(
                "window size unknown: too little history of {} to estimate its noise ({} samples)",
                signal.name,
                values.len()
            ),
        ),
    };
    WindowSizing {
        report,
        available,
        sufficient,
        message,
    }
}

/// The default validator's improvement-side half-widths on up to [`PLACEBO_LOOKS`] placebo
/// windows of `history` shaped like the prediction's (a baseline of `within`, no settle, a post
/// window of `within`), the latest ending at the newest sample and each earlier one a `within`
/// further back; windows it cannot judge (too few samples, too many gaps) are left out.
fn placebo_half_widths(
    prediction: &Prediction,
    signal: &Signal,
    scale: Scale,
    history: &[Sample],
    sample_every: Span,
) -> Vec<f64> {
    let mine: Vec<Sample> = history
        .iter()
        .filter(|s| s.signal == signal.name || s.signal.is_empty())
        .cloned()
        .collect();
    let (Some(first), Some(last)) = (mine.first(), mine.last()) else {
        return Vec::new();
    };
    let within = prediction.within.to_chrono();
    if prediction.within.seconds() == 0 {
        return Vec::new();
    }
    let validator = HonestValidator::default();
    let mut out = Vec::new();
    // Just past the newest sample, so it falls inside the latest placebo post window.
    let mut end = last.at + chrono::Duration::seconds(1);
    for _ in 0..PLACEBO_LOOKS {
        let Some(applied) = end.checked_sub_signed(within) else {
            break;
        };
        if applied
            .checked_sub_signed(within)
            .is_none_or(|b| b < first.at)
        {
            break;
        }
        let req = ValidationRequest {
            prediction,
            signal,
            applied_at: applied,
            settle: Span::from_secs(0),
            window_end: end,
            now: end,
            samples: &mine,
            guardrails: Vec::new(),
            look: Look::Final,
            sample_every,
            scale,
        };
        if let Some(hw) = validator.improvement_half_width(&req) {
            out.push(hw);
        }
        end = applied;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::signal::Better;
    use crate::validate::stats::mad_sigma;
    use chrono::{TimeZone, Utc};

    fn noise(n: usize) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        (0..n)
            .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal) * 0.2)
            .collect()
    }

    #[test]
    fn matches_textbook_sizes() {
        let h = noise(2000);
        let sd = mad_sigma(&h).unwrap();
        // 1σ at 5% / 80%: 2·(1.645+0.842)²/0.955 ≈ 13 per side, times the validator's 1.1² and
        // the cautious ρ it assumes (the bias-corrected estimate plus half its standard error,
        // ≈ 0.03–0.06 for independent noise) ≈ 16–19; 0.5σ ≈ 4× that (the local, per-block
        // estimates of σ and ρ are a little noisier than whole-series ones: ±10%).
        let r = required_samples(&h, sd, 0.05, 0.8).unwrap();
        assert!((15..=20).contains(&r.needed), "{r:?}");
        let r = required_samples(&h, 0.5 * sd, 0.05, 0.8).unwrap();
        assert!((60..=80).contains(&r.needed), "{r:?}");
        assert!(r.rho.abs() < 0.08, "{r:?}");
    }

    #[test]
    fn autocorrelation_raises_the_need() {
        let mut x = 0.0;
        let h: Vec<f64> = noise(3000)
            .into_iter()
            .map(|e| {
                x = 0.8 * x + e;
                x
            })
            .collect();
        let sd = mad_sigma(&h).unwrap();
        let r = required_samples(&h, sd, 0.05, 0.8).unwrap();
        assert!(r.rho > 0.6 && r.needed > 60, "{r:?}");
    }

    #[test]
    fn says_when_the_window_is_too_short() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let hist: Vec<Sample> = noise(600)
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                Sample::new(
                    "lat",
                    t0 + chrono::Duration::minutes(i as i64),
                    100.0 * (1.0 + 0.1 * e),
                )
            })
            .collect();
        let sig = Signal {
            name: "lat".into(),
            unit: "ms".into(),
            better: Better::Lower,
            alert_above: None,
            alert_below: None,
        };
        let small = Prediction {
            signal: "lat".into(),
            change: ExpectedChange::Relative(-0.01),
            within: Span::minutes(30),
        };
        let w = size_window(&small, &sig, Scale::Auto, &hist, Span::minutes(1));
        assert!(!w.sufficient);
        assert!(
            w.message.starts_with("unvalidatable as predicted: needs "),
            "{}",
            w.message
        );
        assert!(w.message.ends_with("window gives 30"), "{}", w.message);
        let big = Prediction {
            change: ExpectedChange::Relative(-0.3),
            ..small
        };
        let w = size_window(&big, &sig, Scale::Auto, &hist, Span::minutes(1));
        assert!(w.sufficient, "{}", w.message);
    }

    /// Eight days of minute samples with 2% noise, a slow leak ramp and a step ×2.5 halfway: the
    /// noise is 2%, not the spread of the levels, so a −60% prediction (≈ 45 noise sd) needs a
    /// handful of samples.
    #[test]
    fn level_shifts_are_not_noise() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let n = 8 * 1440;
        let e = noise(n);
        let hist: Vec<Sample> = (0..n)
            .map(|i| {
                let ramp = 0.3 * (i % 2880) as f64 / 2880.0;
                let step = if i >= n / 2 { 0.9 } else { 0.0 };
                let v = 200.0 * (ramp + step + 0.1 * e[i]).exp();
                Sample::new("rss", t0 + chrono::Duration::minutes(i as i64), v)
            })
            .collect();
        let sig = Signal {
            name: "rss".into(),
            unit: "MB".into(),
            better: Better::Lower,
            alert_above: None,
            alert_below: None,
        };
        let p = Prediction {
            signal: "rss".into(),
            change: ExpectedChange::Relative(-0.6),
            within: Span::minutes(24),
        };
        let w = size_window(&p, &sig, Scale::Auto, &hist, Span::minutes(1));
        let r = w.report.clone().unwrap();
        assert!((r.sigma - 0.02).abs() < 0.004, "{r:?}");
        assert!(r.rho < 0.2, "{r:?}");
        assert!(r.effect_sd > 35.0, "{r:?}");
        assert!(w.sufficient && r.needed <= 5, "{}", w.message);
        // The whole-history spread would have said otherwise.
        let logs: Vec<f64> = hist.iter().map(|s| s.value.ln()).collect();
        assert!(mad_sigma(&logs).unwrap() > 10.0 * r.sigma);
    }
}
