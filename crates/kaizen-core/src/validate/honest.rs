//! The default validator: honest about autocorrelation, daily cycles, spikes and gaps.
//!
//! How one look is judged (all on a working scale where "up" is the predicted direction):
//! 1. Values go to the log scale when positive (effects are ratios), per [`Scale`].
//! 2. With ≥ 7 days of history before the baseline, each value becomes a residual against the
//!    mean of the same time of day (± 15 minutes) on the previous 7 days (seasonality).
//! 3. Baseline = the window of the post window's length just before the apply; post = from the
//!    end of the settle time to the window end (or now, on an interim look).
//! 4. Effect = Hodges–Lehmann shift; interval = one-sided Mann–Whitney bounds whose widths are
//!    multiplied by factors calibrated on ≈150 placebo before/after splits of the signal's own
//!    pre-apply history (conformal order statistic), or — with too little history — by the AR(1)
//!    width factor `sqrt((1+ρ)/(1−ρ))` estimated from the data.
//!    Without placebo calibration the half-widths are also floored by the AR(1) model's sd of a
//!    difference of window means (local noise, [`local_noise`]) and by the shifts over the few
//!    non-overlapping placebo splits the history holds (≥ 5, Student-t quantile).
//! 5. Regression to the mean: the baseline is an excursion when its mean is ≥ `excursion_z`
//!    spreads of window means from the history's typical window; the spread is the MAD of the
//!    (overlapping) window means, floored by the sd a window mean has under the local AR(1) noise
//!    (overlapping means are correlated: with a few hours of history their MAD badly
//!    underestimates it). Then the interval comes from what happened after the ≥ 19 most similar
//!    excursions in the history (how far the signal "recovered" by itself). With fewer: if the
//!    excursion has persisted without recovering for ≥ 19× the stretch from the apply to the end
//!    of the window ([`HonestValidator::persistence_alpha`]), the calibrated interval stands
//!    (minus any drift back); otherwise the bound the excursion flatters is moved by a *full*
//!    return to the usual level, so only a change beyond complete self-recovery counts.
//!    Window extensions are further confirmatory looks: the k-th spends α/2ᵏ.
//! 6. Decide: regressed (interval below zero and the estimate beyond a tolerance, or a guardrail
//!    regressed) › validated (interval wholly above zero) › no effect (the predicted magnitude is
//!    ruled out) › inconclusive. Interim looks only detect regressions, at `alpha / interim_looks`.

use super::sizing::NOISE_BLOCK;
use super::stats::{
    ar1_diff_sd, ar1_width_factor, hodges_lehmann, lag1_autocorrelation, local_noise, mad_sigma,
    mean, median, normal_quantile, rho_bias_corrected, rho_upper, std_dev, window_mean_sd,
};
use super::{
    Figures, Look, ValidationRequest, Validator, Verdict, count_gaps, expected_samples,
    predicted_magnitude, to_reported, use_log,
};
use crate::config::Scale;
use crate::intervention::{ExpectedChange, Outcome};
use crate::signal::Sample;
use crate::span::Span;
use chrono::{DateTime, Utc};

const DAY: i64 = 86_400;
/// Conformal order statistics need at least this many (effectively independent) placebo splits
/// for a one-sided 5% bound: ⌈(N + 1)·0.95⌉ ≤ N ⇔ N ≥ 19.
const MIN_CALIBRATION: usize = 19;

/// Fewer pre-apply samples than this cannot estimate the lag-1 autocorrelation.
const MIN_RHO_SAMPLES: usize = 20;

/// Fewer pre-apply samples (history + baseline) than this estimate the autocorrelation too
/// poorly to trust one below [`THIN_HISTORY_RHO`] (short series underestimate it).
const THIN_SAMPLES: usize = 40;

/// The autocorrelation assumed when the pre-apply series is too short to estimate it (a change
/// applied within the first hour or two of sampling): moderate, as service metrics sampled
/// every few minutes usually are. Assuming none made 7–11% of no-op changes validate at the
/// 5-minute operating point with no history before the baseline (the envelope grid, issue 8);
/// fail closed: wider intervals, never a verdict the data cannot carry.
const THIN_HISTORY_RHO: f64 = 0.5;

/// The default validator. Deterministic (placebo splits are evenly spaced, no randomness) and
/// cheap enough to run on every look (≈1–3 ms at n = 48 with 8 days of minute samples, release).
#[derive(Debug, Clone, PartialEq)]
pub struct HonestValidator {
    /// One-sided level of each interval bound (default 0.05, so intervals are 90%).
    pub alpha: f64,
    /// Placebo before/after splits used to calibrate interval widths (default 150).
    pub placebo_splits: usize,
    /// Fewest samples per side (default 6).
    pub min_samples: usize,
    /// Largest fraction of missing samples in either window before the look is inconclusive
    /// (default 0.25).
    pub max_gap_fraction: f64,
    /// How many interim looks the regression level is split across (default 10: each interim
    /// look tests at `alpha / 10`).
    pub interim_looks: u32,
    /// A target regression must exceed this fraction of the predicted magnitude (default 0.25).
    pub regress_tolerance: f64,
    /// A guardrail regression must exceed this many robust standard deviations (default 0.1).
    pub guardrail_tolerance: f64,
    /// A baseline whose mean is this many robust standard deviations of window means away from
    /// the history's typical window is an excursion (default 1.5).
    pub excursion_z: f64,
    /// Level of the persistence rule (default 0.05): a baseline excursion with too few similar
    /// ones in the history may still be validated when it has persisted, without recovering, for
    /// at least `(1 − p)/p` times the stretch from the apply to the end of the post window
    /// (19× at 0.05). Reasoning (Gott's "delta t" argument, equivalently Laplace's rule of
    /// succession with a uniform prior on the per-window self-recovery hazard): a state that has
    /// lasted `D` ends within the next `r` with probability ≈ `r / (D + r)`, so `D ≥ r (1 − p)/p`
    /// bounds the chance that it ends by itself during the post window by `p`.
    pub persistence_alpha: f64,
    /// Share of the predicted magnitude the interval must rule out for `no_effect` (default 1:
    /// the prediction itself). The distiller asks for more before it learns "avoid" (half the
    /// prediction ruled out), since a change that delivered exactly its prediction has its upper
    /// bound below the prediction α of the time.
    pub no_effect_share: f64,
    /// Consecutive samples a threshold prediction must hold for at the end of the window
    /// (default 5).
    pub threshold_consecutive: usize,
    /// Highest self-recovery rate (after similar failures) at which a threshold prediction may
    /// still be validated (default 0.1).
    pub max_self_recovery: f64,
    /// Days of same-time-of-day history used for seasonal residuals (default 7).
    pub seasonal_days: usize,
    /// Half-width of the same-time-of-day neighbourhood (default 15 minutes).
    pub seasonal_half_window: Span,
    /// Memo of recent calibrations (the expensive part), keyed by the exact inputs.
    pub cache: CalibrationCache,
}

const CACHE_ENTRIES: usize = 8;

/// A small memo of placebo calibrations keyed by their exact inputs (history, baseline, sizes).
/// Interim looks, guardrails and repeated checks of one intervention reuse it; results are the
/// same with or without it. Clones start empty; all caches compare equal.
#[derive(Default)]
pub struct CalibrationCache(std::sync::Mutex<Vec<(CalKey, Calibration)>>);

impl std::fmt::Debug for CalibrationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CalibrationCache")
    }
}

impl Clone for CalibrationCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for CalibrationCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq)]
struct CalKey {
    hist: Vec<f64>,
    base: Vec<f64>,
    sizes: (usize, usize, usize),
    alpha: u64,
    knobs: (usize, u64, u64),
}

/// Width factors and regression-to-the-mean adjustments for one history and baseline.
#[derive(Debug, Clone)]
struct Calibration {
    f_lo: f64,
    f_hi: f64,
    placebo: bool,
    validate_ok: bool,
    regress_ok: bool,
    /// Upper quantile of placebo shifts after similar (worse) excursions.
    recovery_hi: Option<f64>,
    /// Upper quantile of negated placebo shifts after similar (better) excursions.
    recovery_lo: Option<f64>,
    /// Typical self-recovery shift after similar excursions.
    recovery_shift: Option<f64>,
    /// The excursion (if any) made the baseline look worse than usual.
    excursion_bad: bool,
    /// Local noise of the pre-apply history: (marginal robust sd, lag-1 autocorrelation).
    noise: Option<(f64, f64)>,
    /// The autocorrelation interval widths assume: `noise`'s plus the estimate's uncertainty
    /// ([`rho_upper`]). Only widths take it: the excursion test's spread of window means wants
    /// the estimate itself (a cautious ρ there would hide excursions, not widen anything).
    width_rho: Option<f64>,
    /// Without placebo calibration: a floor on both half-widths from the root mean square of
    /// the shifts over the few non-overlapping placebo splits the history does hold (≥ 5), times
    /// a Student-t quantile for that many splits (0 when fewer).
    placebo_floor: f64,
    /// When the history cannot say how often a baseline excursion recovers by itself: the shift a
    /// *full* return to the usual level would produce (plus one-sided uncertainty of that level),
    /// on the working scale, positive. The bound on the side the excursion flatters is moved by
    /// it, so a change is only credited with what exceeds a complete self-recovery.
    /// `(lower side, upper side)`: a worse-than-usual baseline moves the lower bound down, a
    /// better-than-usual one the upper bound up.
    full_recovery: (f64, f64),
    /// Expected drift back toward the usual level between the baseline and the post window
    /// after a persistent excursion (working scale, subtracted from the shift).
    drift: f64,
    notes: Vec<String>,
}

impl Default for HonestValidator {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            placebo_splits: 150,
            min_samples: super::MIN_SAMPLES_PER_SIDE,
            max_gap_fraction: 0.25,
            interim_looks: 10,
            regress_tolerance: 0.25,
            guardrail_tolerance: 0.1,
            excursion_z: 1.5,
            persistence_alpha: 0.05,
            no_effect_share: 1.0,
            threshold_consecutive: 5,
            max_self_recovery: 0.1,
            seasonal_days: 7,
            seasonal_half_window: Span::minutes(15),
            cache: CalibrationCache::default(),
        }
    }
}

/// The windows of one look.
#[derive(Debug, Clone, Copy)]
struct Windows {
    baseline_start: DateTime<Utc>,
    applied_at: DateTime<Utc>,
    post_from: DateTime<Utc>,
    post_to: DateTime<Utc>,
    settle: Span,
    every: Span,
}

impl Windows {
    /// The windows a request judges. The baseline is the prediction's window before the apply,
    /// whatever the look: an extension lengthens the post window only, never moving the baseline
    /// back into time that may hold no samples.
    fn of(req: &ValidationRequest<'_>) -> Self {
        let post_from = req.settle.after(req.applied_at);
        let base_len = if req.prediction.within.seconds() > 0 {
            req.prediction.within.to_chrono()
        } else {
            req.window_end - post_from
        };
        Windows {
            baseline_start: req
                .applied_at
                .checked_sub_signed(base_len)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            applied_at: req.applied_at,
            post_from,
            post_to: req.window_end.min(req.now),
            settle: req.settle,
            every: req.sample_every,
        }
    }
}

/// What the analysis of one series found (working scale: up = good).
#[derive(Debug, Clone)]
struct Analysis {
    log: bool,
    n_before: usize,
    n_after: usize,
    gaps_before: usize,
    gaps_after: usize,
    expected_before: usize,
    expected_after: usize,
    base_median: Option<f64>,
    post_median: Option<f64>,
    /// Raw values of the windows in signal units (for threshold predictions).
    raw_base: Vec<f64>,
    raw_post: Vec<f64>,
    /// Working-scale baseline (for tolerances).
    base_work: Vec<f64>,
    estimate: f64,
    lower: f64,
    upper: f64,
    /// Upper bound at the interim level.
    upper_interim: f64,
    validate_ok: bool,
    regress_ok: bool,
    placebo: bool,
    notes: Vec<String>,
}

impl HonestValidator {
    fn gappy(&self, a: &Analysis) -> bool {
        let too_many = |gaps: usize, expected: usize| {
            expected > 0 && gaps as f64 > self.max_gap_fraction * expected as f64
        };
        too_many(a.gaps_before, a.expected_before) || too_many(a.gaps_after, a.expected_after)
    }

    /// Analyses one series; `None` when a window has fewer than `min_samples`.
    fn analyse(
        &self,
        samples: &[Sample],
        scale: Scale,
        dir: f64,
        w: &Windows,
        alpha: f64,
    ) -> Result<Analysis, (usize, usize, usize)> {
        let mut pts: Vec<(i64, f64)> = samples
            .iter()
            .filter(|s| s.at < w.post_to && s.value.is_finite())
            .map(|s| (s.at.timestamp(), s.value))
            .collect();
        if !pts.windows(2).all(|p| p[0].0 <= p[1].0) {
            pts.sort_by_key(|p| p.0);
        }
        // With seasonal residuals, only the last `seasonal_days + 1` days before the baseline
        // matter (the reference days plus one day of placebo room per reference).
        let days = self.seasonal_days as i64;
        let bs = w.baseline_start.timestamp();
        if pts.first().is_some_and(|f| bs - f.0 > (days + 1) * DAY) {
            let cut = pts.partition_point(|p| p.0 < bs - (days + 1) * DAY);
            pts.drain(..cut);
        }
        let t: Vec<i64> = pts.iter().map(|p| p.0).collect();
        let raw: Vec<f64> = pts.iter().map(|p| p.1).collect();
        let ts = |d: DateTime<Utc>| d.timestamp();
        let idx = |d: i64| t.partition_point(|x| *x < d);
        let (b_lo, apply_idx, p_lo, p_hi) = (
            idx(ts(w.baseline_start)),
            idx(ts(w.applied_at)),
            idx(ts(w.post_from)),
            t.len(),
        );
        let n_before = apply_idx - b_lo;
        let n_after = p_hi - p_lo;
        let gaps_after = count_gaps(n_after, w.post_from, w.post_to, w.every);
        let min_samples = self.min_samples.max(3);
        if n_before < min_samples || n_after < min_samples {
            return Err((n_before, n_after, gaps_after));
        }
        let mut notes = Vec::new();
        let (log, note) = use_log(scale, &raw);
        notes.extend(note);
        if log {
            notes.push("log scale (effects are ratios)".into());
        }
        let x: Vec<f64> = raw
            .iter()
            .map(|v| dir * if log { v.ln() } else { *v })
            .collect();

        // Seasonal residuals where ≥ 7 days of history precede the baseline.
        let every = if w.every.seconds() > 0 {
            w.every.seconds() as i64
        } else {
            median_step(&t).max(1)
        };
        let history_secs = t.first().map_or(0, |f| ts(w.baseline_start) - f);
        let seasonal = history_secs + every >= self.seasonal_days as i64 * DAY;
        let work: Vec<f64> = if seasonal {
            notes.push(format!(
                "residuals against the same time of day over the previous {} days",
                self.seasonal_days
            ));
            self.residuals(&t, &x, every, b_lo, apply_idx, ts(w.baseline_start))
        } else {
            x.clone()
        };
        let base: Vec<f64> = work[b_lo..apply_idx]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let post: Vec<f64> = work[p_lo..p_hi]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if base.len() < min_samples || post.len() < min_samples {
            return Err((base.len(), post.len(), gaps_after));
        }
        let hist: Vec<f64> = work[..b_lo]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();

        let mut buf = Vec::new();
        let Some(hl) = hodges_lehmann(&base, &post, alpha, &mut buf) else {
            return Err((base.len(), post.len(), gaps_after));
        };
        let hw_lo = hl.estimate - hl.lower;
        let hw_hi = hl.upper - hl.estimate;
        let settle_n = (w.settle.seconds() as i64 / every).max(0) as usize;
        let split = Split {
            nb: base.len(),
            na: post.len(),
            settle: settle_n,
        };

        let cal = self.calibrated(&hist, &base, split, alpha, &mut buf);
        notes.extend(cal.notes.iter().cloned());
        // Without placebo calibration, the Mann–Whitney widths see only the spread *inside* the
        // windows, which strong autocorrelation shrinks (a window mean absorbs part of it): never
        // narrower than the AR(1) model's sd of a difference of window means, from the local
        // noise of the pre-apply history (at the cautious autocorrelation widths take).
        let floor = match (cal.placebo, cal.noise, cal.width_rho) {
            (false, Some((sd, _)), Some(rho)) => {
                normal_quantile(1.0 - alpha)
                    * ar1_diff_sd(sd, rho, base.len(), settle_n, post.len())
            }
            _ => 0.0,
        }
        .max(cal.placebo_floor);
        // A zero half-width (ties) stays zero even under an unbounded factor.
        let widen = |f: f64, hw: f64| if hw > 0.0 { (f * hw).max(floor) } else { 0.0 };
        let mut lower = hl.estimate - widen(cal.f_lo, hw_lo);
        let mut upper = hl.estimate + widen(cal.f_hi, hw_hi);
        let z_ratio = normal_quantile(1.0 - alpha / self.interim_looks.max(1) as f64)
            / normal_quantile(1.0 - alpha);
        let mut upper_interim = hl.estimate + widen(cal.f_hi, hw_hi) * z_ratio;
        let mut estimate = hl.estimate;
        // After an excursion the interval comes from what followed similar excursions; on the
        // side the excursion flatters, never narrower than the calibrated Mann–Whitney bound.
        if let (Some(q_hi), Some(q_lo)) = (cal.recovery_hi, cal.recovery_lo) {
            let (l_c, u_c) = (hl.estimate - q_hi, hl.estimate - q_lo);
            let interim_extra = widen(cal.f_hi, hw_hi) * (z_ratio - 1.0).max(0.0);
            if cal.excursion_bad {
                lower = lower.min(l_c);
                upper = u_c.max(lower);
            } else {
                upper = upper.max(u_c);
                lower = l_c.min(upper);
            }
            upper_interim = upper + interim_extra;
        }
        if let Some(shift) = cal.recovery_shift {
            // Not `clamp`: it panics on NaN bounds.
            estimate = (hl.estimate - shift).max(lower).min(upper);
        }
        let (full_lo, full_hi) = cal.full_recovery;
        if full_lo > 0.0 || full_hi > 0.0 {
            lower -= full_lo;
            upper += full_hi;
            upper_interim += full_hi;
            estimate = estimate.max(lower).min(upper);
        }
        if cal.drift != 0.0 {
            estimate -= cal.drift;
            lower -= cal.drift;
            upper -= cal.drift;
            upper_interim -= cal.drift;
        }
        let (validate_ok, regress_ok, placebo) = (cal.validate_ok, cal.regress_ok, cal.placebo);

        let (b_from, b_to) = (w.baseline_start, w.applied_at);
        let raw_base = raw[b_lo..apply_idx].to_vec();
        let raw_post = raw[p_lo..p_hi].to_vec();
        Ok(Analysis {
            log,
            n_before,
            n_after,
            gaps_before: count_gaps(n_before, b_from, b_to, w.every),
            gaps_after,
            expected_before: expected_samples(b_from, b_to, w.every),
            expected_after: expected_samples(w.post_from, w.post_to, w.every),
            base_median: median(&raw_base),
            post_median: median(&raw_post),
            raw_base,
            raw_post,
            base_work: base,
            estimate,
            lower,
            upper,
            upper_interim,
            validate_ok,
            regress_ok,
            placebo,
            notes,
        })
    }

    /// Width factors and regression-to-the-mean adjustments for one history + baseline, from
    /// the cache when the same inputs were seen (interim looks, guardrails, repeated checks).
    fn calibrated(
        &self,
        hist: &[f64],
        base: &[f64],
        split: Split,
        alpha: f64,
        buf: &mut Vec<i64>,
    ) -> Calibration {
        let key = CalKey {
            hist: hist.to_vec(),
            base: base.to_vec(),
            sizes: (split.nb, split.na, split.settle),
            alpha: alpha.to_bits(),
            knobs: (
                self.placebo_splits,
                self.excursion_z.to_bits(),
                self.persistence_alpha.to_bits(),
            ),
        };
        if let Ok(cache) = self.cache.0.lock()
            && let Some((_, v)) = cache.iter().find(|(k, _)| *k == key)
        {
            return v.clone();
        }
        let v = self.calibrate(hist, base, split, alpha, buf);
        if let Ok(mut cache) = self.cache.0.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.remove(0);
            }
            cache.push((key, v.clone()));
        }
        v
    }

    fn calibrate(
        &self,
        hist: &[f64],
        base: &[f64],
        split: Split,
        alpha: f64,
        buf: &mut Vec<i64>,
    ) -> Calibration {
        let mut notes = Vec::new();
        let span = split.span();
        // A pre-apply series this short underestimates ρ: never assume less than the prior.
        let thin = hist.len().saturating_add(base.len()) < THIN_SAMPLES;
        let floor_thin = |r: f64| if thin { r.max(THIN_HISTORY_RHO) } else { r };
        let (noise, noise_n) = if hist.len() >= MIN_RHO_SAMPLES {
            (local_noise(hist, NOISE_BLOCK.max(2 * split.nb)), hist.len())
        } else {
            let mut pre = hist.to_vec();
            pre.extend_from_slice(base);
            (local_noise(&pre, NOISE_BLOCK.max(2 * split.nb)), pre.len())
        };
        let noise = noise.map(|(sd, r)| (sd, floor_thin(r)));
        // `local_noise` already corrects the small-sample bias; add the estimate's uncertainty.
        let width_rho = noise.map(|(_, r)| floor_thin(rho_upper(r, noise_n)));
        // Placebo splits overlap and neighbouring windows are correlated: count one effectively
        // independent split per two spans of history (conservative conformal order statistic).
        let n_eff = hist.len() / (2 * span.max(1));
        let (f_lo, f_hi, placebo) = if n_eff >= MIN_CALIBRATION && hist.len() > span {
            let p = self.placebo_splits.min(hist.len() - span + 1).max(2);
            let mut t_lo = Vec::with_capacity(p);
            let mut t_hi = Vec::with_capacity(p);
            let room = hist.len() - span;
            for j in 0..p {
                let start = j * room / (p - 1);
                if let Some(s) = split.at(hist, start, alpha, buf) {
                    t_lo.push(s.estimate / (s.estimate - s.lower).max(1e-12));
                    t_hi.push(-s.estimate / (s.upper - s.estimate).max(1e-12));
                }
            }
            let q = conformal_level(n_eff.min(t_lo.len()), alpha);
            let c_lo = upper_order_stat(&mut t_lo, q).unwrap_or(f64::INFINITY);
            let c_hi = upper_order_stat(&mut t_hi, q).unwrap_or(f64::INFINITY);
            notes.push(format!(
                "interval widths calibrated on {} placebo splits of the history (factors {:.2} good side, {:.2} bad side)",
                t_lo.len(),
                c_lo.max(1.0),
                c_hi.max(1.0)
            ));
            (c_lo.max(1.0), c_hi.max(1.0), true)
        } else {
            let mut pre: Vec<f64> = hist.to_vec();
            pre.extend_from_slice(base);
            // Below MIN_RHO_SAMPLES the series is thin as well, so the prior applies.
            let rho = floor_thin(if pre.len() >= MIN_RHO_SAMPLES {
                let r = lag1_autocorrelation(&pre).unwrap_or(0.0);
                rho_upper(rho_bias_corrected(r, pre.len()), pre.len())
            } else {
                0.0
            });
            // Short series underestimate ρ; add a little on top of the AR(1) factor.
            let f = ar1_width_factor(rho) * 1.1;
            notes.push(format!(
                "too little history for placebo calibration; widths inflated ×{f:.2} for autocorrelation ρ={rho:.2}"
            ));
            (f, f, false)
        };
        // Too few splits for a conformal bound, but a handful of non-overlapping ones still show
        // how far the signal moves by itself between two such windows (slow wander, cycles,
        // spikes), which the AR(1) factor does not see.
        let mut placebo_floor = 0.0;
        if !placebo {
            let shifts: Vec<f64> = (0..hist.len() / span.max(1))
                .filter_map(|j| split.at(hist, j * span, alpha, buf))
                .map(|s| s.estimate)
                .collect();
            if shifts.len() >= 5 {
                let rms = (shifts.iter().map(|d| d * d).sum::<f64>() / shifts.len() as f64).sqrt();
                placebo_floor = t_quantile(1.0 - alpha, shifts.len()) * rms;
                notes.push(format!(
                    "half-widths at least {placebo_floor:.3}: the shifts over {} non-overlapping placebo splits of the history",
                    shifts.len()
                ));
            }
        }
        let mut cal = Calibration {
            f_lo,
            f_hi,
            placebo,
            validate_ok: true,
            regress_ok: true,
            recovery_hi: None,
            recovery_lo: None,
            recovery_shift: None,
            excursion_bad: false,
            noise,
            width_rho,
            placebo_floor,
            full_recovery: (0.0, 0.0),
            drift: 0.0,
            notes,
        };

        // Regression to the mean.
        let nb = split.nb;
        if !cal.placebo {
            // Little history: the spread of window means is unreliable (cycles, few windows), so
            // compare the baseline with the stretch just before it instead.
            let prev = &hist[hist.len().saturating_sub(2 * span)..];
            if prev.len() >= LOCAL_MIN_BEFORE {
                let sd = mad_sigma(prev)
                    .filter(|v| *v > 0.0)
                    .or_else(|| std_dev(prev))
                    .unwrap_or(0.0);
                let f = ar1_width_factor(lag1_autocorrelation(prev).unwrap_or(0.0));
                let se = sd * f * (1.0 / nb as f64 + 1.0 / prev.len() as f64).sqrt();
                let e_local = (mean(prev).unwrap_or(0.0) - mean(base).unwrap_or(0.0)) / se;
                if se > 0.0 && e_local.abs() >= self.excursion_z {
                    let kind = if e_local > 0.0 { "worse" } else { "better" };
                    let full = (e_local.abs() + normal_quantile(1.0 - alpha)) * se;
                    if e_local > 0.0 {
                        cal.full_recovery.0 = full;
                    } else {
                        cal.full_recovery.1 = full;
                    }
                    cal.notes.push(format!(
                        "baseline {kind} than the stretch before it by {:.1} standard errors and too little history to tell how often it recovers by itself: only a change beyond a full return to that level ({full:.3}) counts",
                        e_local.abs()
                    ));
                }
            }
        }
        if hist.len() < 3 * nb + span {
            let prev_len = hist.len().min(2 * span);
            if prev_len >= LOCAL_MIN_BEFORE {
                // The local check above has weighed the baseline against the stretch before it
                // (crediting only what goes beyond a full return when it was an excursion).
                cal.notes.push(
                    "little history: the baseline was judged against the stretch just before it, not against similar past excursions".into(),
                );
            } else if let Some(z) = recovering_within(base) {
                // No history before the baseline: the only evidence of a passing spike is the
                // baseline itself already moving back; then nothing can be credited to the change.
                cal.validate_ok = false;
                cal.notes.push(format!(
                    "no history before the baseline, and the baseline was already improving by itself ({z:.1} standard errors between its halves): cannot rule out regression to the mean"
                ));
            } else {
                cal.notes.push(
                    "no history before the baseline: it cannot be shown to be an excursion (steady throughout); judged on the interval alone".into(),
                );
            }
            return cal;
        }
        let mut pre = vec![0.0; hist.len() + 1];
        for (i, v) in hist.iter().enumerate() {
            pre[i + 1] = pre[i] + v;
        }
        let means: Vec<f64> = (0..=hist.len() - nb)
            .map(|i| (pre[i + nb] - pre[i]) / nb as f64)
            .collect();
        // Typical level and spread of window means (a strided subsample keeps this cheap).
        let stride = (means.len() / 2000).max(1);
        let thin: Vec<f64> = means.iter().step_by(stride).copied().collect();
        let centre = median(&thin).unwrap_or(0.0);
        let mad_spread = mad_sigma(&thin)
            .filter(|s| *s > 0.0)
            .or_else(|| std_dev(&thin))
            .unwrap_or(0.0);
        // Overlapping window means are strongly correlated: with a few hours of history their
        // MAD reflects only a handful of independent windows and badly underestimates the sd of
        // one window mean. Floor it by the sd a window mean has under the local AR(1) noise,
        // plus the uncertainty of the centre itself (≈ one independent window per nb samples,
        // a median: ×1.25 in sd).
        let model_spread = cal.noise.map_or(0.0, |(sd, rho)| {
            window_mean_sd(sd, rho, nb) * (1.0 + 1.57 * nb as f64 / hist.len() as f64).sqrt()
        });
        let spread = mad_spread.max(model_spread);
        let b_mean = mean(base).unwrap_or(centre);
        if spread <= 0.0 {
            return cal;
        }
        // Positive = the baseline is worse than usual (its recovery would look like success).
        let e_real = (centre - b_mean) / spread;
        let bad = e_real >= self.excursion_z;
        let good = e_real <= -self.excursion_z;
        if !(bad || good) {
            return cal;
        }
        let kind = if bad { "worse" } else { "better" };
        cal.excursion_bad = bad;
        let mut d = split.similar_excursions(hist, &means, centre, spread, e_real, alpha, buf);
        if d.len() >= MIN_CALIBRATION {
            let q = conformal_level(d.len(), alpha);
            let shift = median(&d).unwrap_or(0.0);
            // Both bounds from what followed similar excursions: Δ − effect is distributed like
            // those placebo shifts (conformal order statistics on each side).
            let mut neg: Vec<f64> = d.iter().map(|v| -v).collect();
            cal.recovery_hi = upper_order_stat(&mut d, q);
            cal.recovery_lo = upper_order_stat(&mut neg, q).map(|v| -v);
            cal.recovery_shift = Some(shift);
            cal.notes.push(format!(
                "baseline {kind} than usual by {:.1} sd of window means: adjusted for what followed {} similar excursions in the history (typical self-recovery {shift:+.3})",
                e_real.abs(),
                d.len(),
            ));
        } else if let Some((windows, drift)) =
            self.persistent(hist, base, &means, centre, spread, e_real, split)
        {
            cal.drift = drift;
            cal.notes.push(format!(
                "baseline {kind} than usual by {:.1} sd of window means with only {} similar excursions in the history, but it has persisted without recovering for the last {windows} windows (≥ {:.0}× the stretch from the apply to the end of the window): the chance it ends by itself during the window is ≤ {:.0}%; drift back toward the usual level discounted: {drift:+.3}",
                e_real.abs(),
                d.len(),
                (1.0 - self.persistence_alpha) / self.persistence_alpha,
                self.persistence_alpha * 100.0
            ));
        } else {
            // Worst case: it returns all the way to the usual level (the centre, itself uncertain
            // by about one window mean per nb samples of history, a median).
            let se_centre = spread * (1.57 * nb as f64 / hist.len() as f64).sqrt();
            let full = e_real.abs() * spread + normal_quantile(1.0 - alpha) * se_centre;
            let side = if bad {
                &mut cal.full_recovery.0
            } else {
                &mut cal.full_recovery.1
            };
            *side = side.max(full);
            cal.notes.push(format!(
                "baseline {kind} than usual by {:.1} sd of window means and the history holds only {} similar excursions: cannot tell how often it recovers by itself, so only a change beyond a full return to the usual level ({full:.3}) counts",
                e_real.abs(),
                d.len()
            ));
        }
        cal
    }

    /// The persistence rule: `Some((windows, drift))` when the last `windows` non-overlapping
    /// windows before the apply (the baseline included) all sit at least `excursion_z` spreads
    /// away from `centre` on the baseline's side and together cover at least
    /// `(settle + na)·(1 − p)/p` samples (see [`HonestValidator::persistence_alpha`]). `drift`
    /// is the least-squares trend of those window means back toward the centre, projected from
    /// the baseline's middle to the post window's middle (0 when they are not recovering), on
    /// the working scale with the sign of a spurious shift.
    #[allow(clippy::too_many_arguments)]
    fn persistent(
        &self,
        hist: &[f64],
        base: &[f64],
        means: &[f64],
        centre: f64,
        spread: f64,
        e_real: f64,
        split: Split,
    ) -> Option<(usize, f64)> {
        let p = self.persistence_alpha;
        if !(p > 0.0 && p < 1.0) || spread <= 0.0 {
            return None;
        }
        let nb = split.nb.max(1);
        let reach = (split.settle + split.na) as f64;
        let need = ((reach * (1.0 - p) / p) / nb as f64).ceil().max(2.0) as usize;
        if hist.len() < (need - 1) * nb {
            return None;
        }
        let side = e_real.signum();
        // Window means, newest (the baseline) first, as excursions on the baseline's side.
        let mut e = Vec::with_capacity(need);
        e.push(side * (centre - mean(base)?) / spread);
        for k in 1..need {
            let m = *means.get(hist.len() - k * nb)?;
            e.push(side * (centre - m) / spread);
        }
        if e.iter().any(|v| *v < self.excursion_z) {
            return None;
        }
        // Trend per window (oldest first); recovery = the excursion shrinking.
        let n = e.len() as f64;
        let xbar = (n - 1.0) / 2.0;
        let ybar = e.iter().sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (i, v) in e.iter().rev().enumerate() {
            let dx = i as f64 - xbar;
            sxy += dx * (v - ybar);
            sxx += dx * dx;
        }
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let recovery = (-slope).max(0.0) * spread;
        let ahead = (nb as f64 / 2.0 + split.settle as f64 + split.na as f64 / 2.0) / nb as f64;
        Some((need, side * recovery * ahead))
    }

    /// Seasonal residuals of `x`: for the baseline and post (index ≥ `b_lo`), against the
    /// previous days (data before the apply only); for the history (index < `b_lo`), against the
    /// nearest other days inside the history (for placebo calibration). NaN where fewer than
    /// four reference days exist.
    fn residuals(
        &self,
        t: &[i64],
        x: &[f64],
        every: i64,
        b_lo: usize,
        apply_idx: usize,
        baseline_start: i64,
    ) -> Vec<f64> {
        let half = self.seasonal_half_window.seconds() as i64;
        if let Some(r) = self.residuals_regular(t, x, every, b_lo, apply_idx) {
            return r;
        }
        // Sliding ±half mean over pre-apply samples (two pointers).
        let pre_t = &t[..apply_idx];
        let mut sm = vec![f64::NAN; apply_idx];
        let (mut lo, mut hi, mut sum) = (0usize, 0usize, 0.0f64);
        for i in 0..apply_idx {
            while hi < apply_idx && pre_t[hi] <= pre_t[i] + half {
                sum += x[hi];
                hi += 1;
            }
            while pre_t[lo] < pre_t[i] - half {
                sum -= x[lo];
                lo += 1;
            }
            sm[i] = sum / (hi - lo) as f64;
        }
        let first = t.first().copied().unwrap_or(0);
        let per_day = (DAY / every.max(1)) as isize;
        let want = self.seasonal_days.max(1);
        let reference = |i: usize, offsets: &[i64], limit: i64| -> f64 {
            let mut acc = 0.0;
            let mut got = 0usize;
            for &k in offsets {
                let target = t[i] + k * DAY;
                if target - half < first || target + half >= limit {
                    continue;
                }
                let guess = (i as isize + k as isize * per_day)
                    .clamp(0, apply_idx.max(1) as isize - 1) as usize;
                let j = locate(pre_t, guess, target);
                if (pre_t[j] - target).abs() <= every.max(half / 2) {
                    acc += sm[j];
                    got += 1;
                    if got == want {
                        break;
                    }
                }
            }
            if got >= 4.min(want) {
                acc / got as f64
            } else {
                f64::NAN
            }
        };
        let back: Vec<i64> = (1..=2 * want as i64).map(|k| -k).collect();
        let both: Vec<i64> = (1..=2 * want as i64).flat_map(|k| [-k, k]).collect();
        let apply_t = t.get(apply_idx).copied().unwrap_or(i64::MAX);
        let apply_limit = pre_t.last().map_or(apply_t, |l| l + 1);
        (0..t.len())
            .map(|i| {
                let r = if i < b_lo {
                    reference(i, &both, baseline_start)
                } else {
                    reference(i, &back, apply_limit)
                };
                x[i] - r
            })
            .collect()
    }

    /// The fast path of [`Self::residuals`] for regularly spaced samples (index arithmetic):
    /// history residuals use the leave-one-out mean of the same time of day over the other days
    /// of the history; baseline and post residuals use the previous days. `None` when the
    /// pre-apply samples are not regular.
    fn residuals_regular(
        &self,
        t: &[i64],
        x: &[f64],
        every: i64,
        b_lo: usize,
        apply_idx: usize,
    ) -> Option<Vec<f64>> {
        if every <= 0 || DAY % every != 0 || apply_idx < 2 {
            return None;
        }
        let t0 = t[0];
        if !t[..apply_idx]
            .iter()
            .enumerate()
            .all(|(i, ti)| *ti == t0 + i as i64 * every)
        {
            return None;
        }
        let per_day = (DAY / every) as usize;
        let h = (self.seasonal_half_window.seconds() as i64 / every) as usize;
        let mut pre = vec![0.0; apply_idx + 1];
        for i in 0..apply_idx {
            pre[i + 1] = pre[i] + x[i];
        }
        // sm[j]: mean of x[j-h..=j+h] when the whole neighbourhood lies in [0, limit).
        let sm = |j: usize, limit: usize| -> Option<f64> {
            (j >= h && j + h < limit).then(|| (pre[j + h + 1] - pre[j - h]) / (2 * h + 1) as f64)
        };
        let want = self.seasonal_days.max(1);
        let need = 4.min(want);
        let mut out = vec![f64::NAN; t.len()];
        // History: leave-one-out over the other days of the history.
        let mut col_sum = vec![0.0; per_day];
        let mut col_cnt = vec![0usize; per_day];
        for j in 0..b_lo {
            if let Some(v) = sm(j, b_lo) {
                col_sum[j % per_day] += v;
                col_cnt[j % per_day] += 1;
            }
        }
        for i in 0..b_lo {
            let p = i % per_day;
            let (sum, cnt) = match sm(i, b_lo) {
                Some(v) => (col_sum[p] - v, col_cnt[p].saturating_sub(1)),
                None => (col_sum[p], col_cnt[p]),
            };
            if cnt >= need {
                out[i] = x[i] - sum / cnt as f64;
            }
        }
        // Baseline and post: the previous days, data before the apply only.
        for i in b_lo..t.len() {
            let (mut acc, mut got) = (0.0, 0usize);
            let steps = ((t[i] - t0) / every).max(0) as usize;
            for k in 1..=2 * want {
                let Some(j) = steps.checked_sub(k * per_day) else {
                    break;
                };
                if let Some(v) = sm(j, apply_idx) {
                    acc += v;
                    got += 1;
                    if got == want {
                        break;
                    }
                }
            }
            if got >= need {
                out[i] = x[i] - acc / got as f64;
            }
        }
        Some(out)
    }

    /// The half-width of this validator's interval on the improvement side, on its working scale
    /// (log for ratio-scaled signals), for the windows `req` describes, judged as a first final
    /// look (level `alpha`, no extension): what proposal-time sizing needs to promise power with
    /// the widths this validator will really use (placebo calibration, seasonal residuals,
    /// autocorrelation floors) rather than a textbook formula. `None` when the windows hold too
    /// few samples or too many gaps to be judged.
    pub fn improvement_half_width(&self, req: &ValidationRequest<'_>) -> Option<f64> {
        let w = Windows::of(req);
        let dir = req.prediction.change.direction();
        let a = self
            .analyse(req.samples, req.scale, dir, &w, self.alpha)
            .ok()?;
        if self.gappy(&a) {
            return None;
        }
        let hw = a.estimate - a.lower;
        (hw.is_finite() && hw > 0.0).then_some(hw)
    }

    fn judge(&self, req: &ValidationRequest<'_>) -> Verdict {
        let w = Windows::of(req);
        let length = req.window_end - w.post_from;
        let change = req.prediction.change;
        let dir = change.direction();
        let interim = req.look == Look::Interim;
        // Each extension of the window is another confirmatory look at mostly the same data:
        // spend α/2ᵏ on the k-th extension (k from the window's length in units of `within`), so
        // the looks together stay below 2α even if they were independent (and near α, as they
        // overlap heavily).
        let within = req.prediction.within.seconds().max(1) as f64;
        let ext = if interim {
            0
        } else {
            ((length.num_seconds() as f64 / within).round() as i32 - 1).clamp(0, 30)
        };
        let alpha = self.alpha / 2f64.powi(ext);
        let mut fig = Figures {
            method: "hodges_lehmann_placebo".into(),
            level: Some(1.0 - 2.0 * alpha),
            cadence: Some(w.every),
            expected_before: expected_samples(w.baseline_start, w.applied_at, w.every),
            expected_after: expected_samples(w.post_from, w.post_to, w.every),
            ..Figures::default()
        };
        if ext > 0 {
            fig.notes.push(format!(
                "extension {ext} of the window: confirmatory level α/{} = {alpha:.4} per side",
                1u64 << ext
            ));
        }
        if dir != req.signal.better.sign() {
            fig.notes.push(format!(
                "the prediction moves {} the way the signal calls worse; judged against the prediction",
                req.signal.name
            ));
        }
        let a = match self.analyse(req.samples, req.scale, dir, &w, alpha) {
            Ok(a) => a,
            Err((nb, na, gaps)) => {
                fig.n_before = nb;
                fig.n_after = na;
                fig.gaps = gaps;
                fig.gaps_before = fig.expected_before.saturating_sub(nb);
                let missing = fig.gaps > 0 || fig.gaps_before > 0;
                fig.missing_data = true;
                fig.cannot_judge = Some(if missing {
                    super::missing_reason(
                        &req.signal.name,
                        (nb, fig.expected_before),
                        (na, fig.expected_after),
                    )
                } else {
                    format!(
                        "cannot judge: the window holds {nb} baseline and {na} post samples of {} at its {} cadence (need {} each)",
                        req.signal.name, w.every, self.min_samples
                    )
                });
                let s = format!(
                    "inconclusive: {nb} baseline and {na} post samples (need {} each)",
                    self.min_samples
                );
                return finish(req.look, Outcome::Inconclusive, s, fig);
            }
        };
        if !a.placebo {
            fig.method = "hodges_lehmann_ar1".into();
        }
        fig.n_before = a.n_before;
        fig.n_after = a.n_after;
        fig.gaps = a.gaps_after;
        fig.gaps_before = a.gaps_before;
        fig.expected_before = a.expected_before;
        fig.expected_after = a.expected_after;
        fig.baseline = a.base_median;
        fig.post = a.post_median;
        let (lo, hi) = (
            to_reported(dir * a.lower, a.log),
            to_reported(dir * a.upper, a.log),
        );
        fig.estimate = Some(to_reported(dir * a.estimate, a.log));
        fig.lower = Some(lo.min(hi));
        fig.upper = Some(lo.max(hi));
        fig.notes.extend(a.notes.iter().cloned());
        let gappy = self.gappy(&a);
        if gappy {
            fig.notes.push(format!(
                "too many gaps: {} of {} baseline and {} of {} post samples missing (cadence {})",
                a.gaps_before, a.expected_before, a.gaps_after, a.expected_after, w.every
            ));
        }

        // Predicted magnitude on the working scale.
        let base_med = a.base_median.unwrap_or(0.0);
        let threshold = match change {
            ExpectedChange::Below(t) | ExpectedChange::Above(t) => Some(t),
            _ => None,
        };
        let magnitude = match threshold {
            Some(t) => {
                let tw = if a.log { t.max(1e-12).ln() } else { t };
                let bw = if a.log {
                    base_med.max(1e-12).ln()
                } else {
                    base_med
                };
                (tw - bw).abs().max(1e-9)
            }
            None => predicted_magnitude(change, a.log, base_med).unwrap_or(f64::INFINITY),
        };
        let tol = self.regress_tolerance
            * if magnitude.is_finite() {
                magnitude
            } else {
                0.0
            };
        let up = if interim { a.upper_interim } else { a.upper };
        let target_regressed = a.regress_ok && up < 0.0 && a.estimate < -tol;

        // Guardrails (Bonferroni across them).
        let mut guard_hit = Vec::new();
        let g_alpha = self.alpha / req.guardrails.len().max(1) as f64;
        for g in &req.guardrails {
            // Each guardrail's gaps are counted against its own cadence.
            let gw = Windows {
                every: super::cadence::data_cadence(g.samples).unwrap_or(w.every),
                ..w
            };
            match self.analyse(g.samples, g.scale, g.signal.better.sign(), &gw, g_alpha) {
                Ok(ga) => {
                    let sd = mad_sigma(&ga.base_work).unwrap_or(0.0);
                    let gup = if interim { ga.upper_interim } else { ga.upper };
                    let hit = ga.regress_ok
                        && !self.gappy(&ga)
                        && gup < 0.0
                        && ga.estimate < -self.guardrail_tolerance * sd;
                    let est = to_reported(g.signal.better.sign() * ga.estimate, ga.log);
                    fig.notes.push(format!(
                        "guardrail {}: {} (estimate {est:+.4}, {} vs {} samples)",
                        g.signal.name,
                        if hit { "regressed" } else { "ok" },
                        ga.n_before,
                        ga.n_after
                    ));
                    if hit {
                        guard_hit.push(g.signal.name.clone());
                    }
                }
                Err((nb, na, _)) => fig.notes.push(format!(
                    "guardrail {}: not judged ({nb} baseline, {na} post samples)",
                    g.signal.name
                )),
            }
        }
        let est_txt = fig.estimate.map_or(String::new(), |e| {
            format!(
                "{} {e:+.4} [{:+.4}, {:+.4}]",
                if a.log { "relative change" } else { "change" },
                fig.lower.unwrap_or(f64::NAN),
                fig.upper.unwrap_or(f64::NAN)
            )
        });
        if target_regressed {
            return finish(
                req.look,
                Outcome::Regressed,
                format!(
                    "regressed: {} moved against the prediction, {est_txt}",
                    req.signal.name
                ),
                fig,
            );
        }
        if !guard_hit.is_empty() {
            return finish(
                req.look,
                Outcome::Regressed,
                format!(
                    "regressed: guardrail {} got worse ({est_txt} on the target)",
                    guard_hit.join(", ")
                ),
                fig,
            );
        }
        if interim {
            return finish(
                req.look,
                Outcome::Inconclusive,
                "interim look: no regression".into(),
                fig,
            );
        }
        if gappy {
            fig.missing_data = true;
            fig.cannot_judge = Some(super::missing_reason(
                &req.signal.name,
                (a.n_before, a.expected_before),
                (a.n_after, a.expected_after),
            ));
            return finish(
                req.look,
                Outcome::Inconclusive,
                "inconclusive: too many gaps".into(),
                fig,
            );
        }
        if let Some(t) = threshold {
            return self.judge_threshold(req, &a, t, dir, fig, &w);
        }
        if a.validate_ok && a.lower > 0.0 {
            let met = a.estimate >= magnitude;
            fig.magnitude_met = Some(met);
            fig.certain_share =
                (magnitude.is_finite() && magnitude > 0.0).then(|| a.lower / magnitude);
            let s = format!(
                "validated: {est_txt}; predicted {} {}",
                req.prediction.change,
                if met { "met" } else { "undershot" }
            );
            return finish(req.look, Outcome::Validated, s, fig);
        }
        if a.upper < self.no_effect_share * magnitude {
            let s = format!(
                "no effect: the predicted {} is ruled out, {est_txt}",
                req.prediction.change
            );
            return finish(req.look, Outcome::NoEffect, s, fig);
        }
        let s = if a.lower > 0.0 {
            format!("inconclusive: improved ({est_txt}) but possibly regression to the mean")
        } else {
            format!("inconclusive: {est_txt}")
        };
        finish(req.look, Outcome::Inconclusive, s, fig)
    }

    fn judge_threshold(
        &self,
        req: &ValidationRequest<'_>,
        a: &Analysis,
        threshold: f64,
        dir: f64,
        mut fig: Figures,
        w: &Windows,
    ) -> Verdict {
        let holds = |v: f64| {
            if dir < 0.0 {
                v < threshold
            } else {
                v > threshold
            }
        };
        let share =
            |vs: &[f64]| vs.iter().filter(|v| holds(**v)).count() as f64 / vs.len().max(1) as f64;
        let cond = req.prediction.change;
        if share(&a.raw_base) >= 0.5 {
            let s = format!("no effect: {cond} already held in the baseline; nothing to attribute");
            return finish(req.look, Outcome::NoEffect, s, fig);
        }
        let k = self.threshold_consecutive.max(1);
        if a.raw_post.len() < k {
            let s = format!(
                "inconclusive: {} post samples, need {k} in a row",
                a.raw_post.len()
            );
            return finish(req.look, Outcome::Inconclusive, s, fig);
        }
        let tail = &a.raw_post[a.raw_post.len() - k..];
        let ok = tail.iter().filter(|v| holds(**v)).count();
        if ok == 0 {
            let s = format!("no effect: {cond} did not hold at the end of the window");
            return finish(req.look, Outcome::NoEffect, s, fig);
        }
        if ok < k {
            let s = format!("inconclusive: {cond} held for {ok} of the last {k} samples");
            return finish(req.look, Outcome::Inconclusive, s, fig);
        }
        // How often does it recover by itself that fast after a failing window like the baseline?
        let hist: Vec<f64> = req
            .samples
            .iter()
            .filter(|s| s.at < w.baseline_start && s.value.is_finite())
            .map(|s| s.value)
            .collect();
        let nb = a.raw_base.len().max(1);
        let reach = (w.post_to - w.applied_at).num_seconds().max(0) as u64
            / req.sample_every.seconds().max(1);
        let reach = usize::try_from(reach).unwrap_or(usize::MAX).max(k);
        let (mut episodes, mut recovered) = (0usize, 0usize);
        let mut i = 0;
        while i + nb + reach <= hist.len() {
            if share(&hist[i..i + nb]) < 0.5 {
                episodes += 1;
                let after = &hist[i + nb..i + nb + reach];
                let mut run = 0;
                if after.iter().any(|v| {
                    run = if holds(*v) { run + 1 } else { 0 };
                    run >= k
                }) {
                    recovered += 1;
                }
            }
            i += nb;
        }
        let persistent = hist.len() >= 2 * nb && share(&hist[hist.len() - 2 * nb..]) < 0.5;
        if episodes >= 5 {
            let rate = recovered as f64 / episodes as f64;
            fig.notes.push(format!(
                "after {episodes} similar failing windows in the history it recovered by itself {recovered} times"
            ));
            if rate > self.max_self_recovery {
                let s = format!(
                    "inconclusive: {cond} held, but the signal recovers by itself that fast {:.0}% of the time",
                    rate * 100.0
                );
                return finish(req.look, Outcome::Inconclusive, s, fig);
            }
        } else if !persistent {
            let s = format!(
                "inconclusive: {cond} held, but the failure was a short excursion and the history holds too few similar ones ({episodes}) to tell whether it recovers by itself"
            );
            return finish(req.look, Outcome::Inconclusive, s, fig);
        } else {
            fig.notes.push(
                "the failure had persisted for at least twice the window before the apply".into(),
            );
        }
        fig.magnitude_met = Some(true);
        let s = format!("validated: {cond} held for the last {k} samples");
        finish(req.look, Outcome::Validated, s, fig)
    }
}

impl Validator for HonestValidator {
    fn name(&self) -> &str {
        "honest"
    }

    fn interim_looks(&self) -> u32 {
        self.interim_looks
    }

    fn validate(&self, req: &ValidationRequest<'_>) -> Verdict {
        let v = self.judge(req);
        tracing::debug!(
            "kaizen stage=validate validator=honest signal={} look={:?} outcome={} {}",
            req.signal.name,
            req.look,
            v.outcome,
            v.summary
        );
        v
    }
}

/// Sizes of one before/after split in samples.
#[derive(Debug, Clone, Copy)]
struct Split {
    nb: usize,
    na: usize,
    settle: usize,
}

impl Split {
    fn span(self) -> usize {
        self.nb + self.settle + self.na
    }

    /// The placebo split starting at `start` of `hist`.
    fn at(
        self,
        hist: &[f64],
        start: usize,
        alpha: f64,
        buf: &mut Vec<i64>,
    ) -> Option<super::stats::ShiftInterval> {
        let end = start + self.span();
        if end > hist.len() {
            return None;
        }
        let base = &hist[start..start + self.nb];
        let post = &hist[end - self.na..end];
        hodges_lehmann(base, post, alpha, buf)
    }

    /// Placebo shifts after the most similar non-overlapping excursions in `hist` (same side,
    /// at least 0.8 of `e_real`), each scaled up by `e_real / e` when smaller than the real one.
    #[allow(clippy::too_many_arguments)]
    fn similar_excursions(
        self,
        hist: &[f64],
        means: &[f64],
        centre: f64,
        spread: f64,
        e_real: f64,
        alpha: f64,
        buf: &mut Vec<i64>,
    ) -> Vec<f64> {
        let span = self.span();
        if hist.len() < span {
            return Vec::new();
        }
        let last = hist.len() - span;
        let mut cand: Vec<(f64, usize)> = means[..=last.min(means.len() - 1)]
            .iter()
            .enumerate()
            .map(|(i, m)| ((centre - m) / spread, i))
            .filter(|(e, _)| {
                if e_real > 0.0 {
                    *e >= 0.8 * e_real
                } else {
                    *e <= 0.8 * e_real
                }
            })
            .collect();
        cand.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()).then(a.1.cmp(&b.1)));
        let mut taken: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for (e, i) in cand {
            if taken.iter().any(|j| i.abs_diff(*j) < span.div_ceil(2)) {
                continue;
            }
            taken.push(i);
            if let Some(s) = self.at(hist, i, alpha, buf) {
                out.push(s.estimate * (e_real / e).max(1.0));
            }
            if out.len() >= 100 {
                break;
            }
        }
        out
    }
}

/// The Student-t quantile at `p` with `df` degrees of freedom (Cornish–Fisher expansion around
/// the normal quantile; within 1% for df ≥ 5 at the levels used here).
fn t_quantile(p: f64, df: usize) -> f64 {
    let z = normal_quantile(p);
    let v = df.max(1) as f64;
    z + (z.powi(3) + z) / (4.0 * v)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
}

/// The quantile level of the conformal order statistic ⌈(n+1)(1−α)⌉ / n (∞ when n is too small).
fn conformal_level(n: usize, alpha: f64) -> f64 {
    if n == 0 {
        return f64::INFINITY;
    }
    ((n as f64 + 1.0) * (1.0 - alpha)).ceil() / n as f64
}

/// The order statistic at quantile level `q` (upper), `None` when `q > 1` or empty.
fn upper_order_stat(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() || q > 1.0 {
        return None;
    }
    let k = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    Some(*values.select_nth_unstable_by(k, f64::total_cmp).1)
}

/// The nearest index in `t` to `target`, starting from `guess` (regular sampling: exact).
fn locate(t: &[i64], guess: usize, target: i64) -> usize {
    let n = t.len();
    if n == 0 {
        return 0;
    }
    let mut j = guess.min(n - 1);
    for _ in 0..8 {
        if j + 1 < n && t[j + 1] <= target {
            j += 1;
        } else {
            break;
        }
    }
    for _ in 0..8 {
        if j > 0 && t[j] > target {
            j -= 1;
        } else {
            break;
        }
    }
    let ok = (t[j] <= target || j == 0) && (j + 1 >= n || t[j + 1] > target);
    if !ok {
        j = t.partition_point(|x| *x <= target).saturating_sub(1);
    }
    if j + 1 < n && (t[j + 1] - target).abs() < (t[j] - target).abs() {
        j + 1
    } else {
        j
    }
}

fn median_step(t: &[i64]) -> i64 {
    let d: Vec<f64> = t.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    median(&d).unwrap_or(60.0) as i64
}

/// The verdict of one look. On the last extension an inconclusive window stays `inconclusive`:
/// "no effect" is said only when the figures rule the predicted magnitude out; a window that
/// still cannot tell was decided by the data (too few samples, too noisy, a baseline excursion it
/// cannot attribute), not by the change, and is marked so ([`Figures::cannot_judge`]).
fn finish(look: Look, outcome: Outcome, summary: String, mut figures: Figures) -> Verdict {
    let outcome = match (look, outcome) {
        (Look::Interim, Outcome::Regressed) => Outcome::Regressed,
        (Look::Interim, _) => Outcome::Inconclusive,
        (_, o) => o,
    };
    let summary = if look == Look::LastExtension && outcome == Outcome::Inconclusive {
        if figures.cannot_judge.is_none() {
            figures.cannot_judge = Some(format!(
                "cannot judge: after every extension the figures neither show the change helped nor rule the prediction out ({summary})"
            ));
        }
        format!("inconclusive (window already extended to its maximum): {summary}")
    } else {
        summary
    };
    Verdict {
        outcome,
        summary,
        figures,
    }
}

/// Samples before the baseline needed to compare it with "the stretch just before it" when the
/// history is too short for anything better (fewer: the baseline is judged on its own trend).
const LOCAL_MIN_BEFORE: usize = 8;

/// How many standard errors the second half of `base` (oriented working scale: higher is better)
/// is better than its first half, when that reaches 2 — a baseline already recovering by itself.
/// Too short a baseline to tell counts as recovering (fail closed).
fn recovering_within(base: &[f64]) -> Option<f64> {
    let half = base.len() / 2;
    if half < 3 {
        return Some(f64::INFINITY);
    }
    let (first, second) = base.split_at(half);
    let sd = mad_sigma(base)
        .filter(|v| *v > 0.0)
        .or_else(|| std_dev(base))
        .unwrap_or(0.0);
    if sd <= 0.0 {
        return None;
    }
    let f = ar1_width_factor(lag1_autocorrelation(base).unwrap_or(0.0));
    let se = sd * f * (1.0 / first.len() as f64 + 1.0 / second.len() as f64).sqrt();
    let z = (mean(second).unwrap_or(0.0) - mean(first).unwrap_or(0.0)) / se;
    (z >= 2.0).then_some(z)
}
