//! Switchback confirmation: the change is switched off and on in randomised blocks and judged by
//! a randomisation (permutation) test over the block assignment.
//!
//! A before/after comparison must model what the signal would have done without the change
//! (trend, daily cycle, autocorrelation, regression after a spike); when it cannot, it ends
//! inconclusive. A switchback needs no such model: the on/off assignment of the blocks was drawn
//! at random (from a seed derived from the intervention id, so it is reproducible), and under the
//! null hypothesis "the change does nothing" every other balanced assignment was as likely to be
//! drawn and would have produced the same block values. The p-value is the share of those
//! assignments whose statistic is at least as extreme, in the predicted direction, as the one
//! observed. That holds whatever the noise does, because the noise is not permuted: only the
//! labels are. Blocks longer than the signal's correlation time and a washout after each flip keep
//! the power up (neighbouring blocks nearly independent, no carry-over from the previous state).
//!
//! Pieces:
//! - [`correlation_time`] / [`correlation_span`]: the lag where the autocorrelation of the
//!   detrended history first drops below 1/e.
//! - [`BlockPlan`] / [`schedule`]: block and washout lengths, and the seeded balanced assignment.
//! - [`permutation_test`]: exact enumeration of the balanced assignments when there are at most
//!   [`EXACT_LIMIT`], else [`MONTE_CARLO_DRAWS`] seeded draws with the +1 correction; the
//!   statistic is mean(on) − mean(off) of the per-block values, and the interval comes from
//!   inverting the test under a constant-shift model.
//! - [`judge`]: per-block medians on the working scale, the test, and a [`Verdict`].

use super::stats::median_mut;
use super::{Figures, Verdict, predicted_magnitude, to_reported, use_log};
use crate::config::Scale;
use crate::intervention::{ExpectedChange, Outcome};
use crate::signal::Sample;
use crate::span::Span;
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Enumerate every balanced assignment when there are at most this many (C(16, 8) = 12 870).
pub const EXACT_LIMIT: u64 = 20_000;

/// Seeded Monte Carlo draws when enumeration would be larger.
pub const MONTE_CARLO_DRAWS: usize = 9_999;

/// The most blocks a schedule may have (assignments are 64-bit masks).
pub const MAX_BLOCKS: usize = 64;

/// Default number of blocks: C(12, 6) = 924 assignments, so the smallest attainable one-sided
/// p-value is 1/924 and a 95% interval has finite ends.
pub const DEFAULT_BLOCKS: usize = 12;

/// Fewest samples a block's measured part must hold to count.
pub const MIN_BLOCK_SAMPLES: usize = 3;

/// The autocorrelation threshold that defines the correlation time.
pub const CORRELATION_THRESHOLD: f64 = 1.0 / std::f64::consts::E;

/// Why a switchback could not be planned or tested.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SwitchbackError {
    /// Values and assignment differ in length.
    #[error("{values} block values but {labels} assignment labels")]
    LengthMismatch {
        /// Block values given.
        values: usize,
        /// Labels given.
        labels: usize,
    },
    /// More blocks than a mask holds.
    #[error("{0} blocks; at most {MAX_BLOCKS} are supported")]
    TooManyBlocks(usize),
    /// One arm has fewer than two blocks: no assignment but the observed one to compare with.
    #[error("{on} blocks on and {off} off: each needs at least two")]
    TooFewBlocks {
        /// Blocks on.
        on: usize,
        /// Blocks off.
        off: usize,
    },
    /// A block value is NaN or infinite.
    #[error("block {0} has a non-finite value")]
    NonFinite(usize),
}

/// The deterministic seed of an intervention's schedule: FNV-1a of its id (`K-000042`).
pub fn seed_for(intervention_id: &str) -> u64 {
    intervention_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// The correlation time of an evenly sampled series, in samples: the first lag at which the
/// autocorrelation of the series (after removing its least-squares line, so a trend does not
/// read as memory) drops below 1/e. Lags are searched up to a quarter of the series; if the
/// autocorrelation never drops that far, that cap is returned (the signal remembers at least
/// that long). `None` for fewer than 8 values or a constant series.
pub fn correlation_time(values: &[f64]) -> Option<usize> {
    let n = values.len();
    if n < 8 || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let nf = n as f64;
    let xm = (nf - 1.0) / 2.0;
    let ym = values.iter().sum::<f64>() / nf;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in values.iter().enumerate() {
        let dx = i as f64 - xm;
        sxy += dx * (y - ym);
        sxx += dx * dx;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let resid: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, y)| y - ym - slope * (i as f64 - xm))
        .collect();
    let var: f64 = resid.iter().map(|r| r * r).sum();
    if var <= 0.0 || !var.is_finite() {
        return None;
    }
    let cap = (n / 4).max(1);
    for lag in 1..=cap {
        let c: f64 = resid[lag..]
            .iter()
            .zip(&resid[..n - lag])
            .map(|(a, b)| a * b)
            .sum();
        if c / var < CORRELATION_THRESHOLD {
            return Some(lag);
        }
    }
    Some(cap)
}

/// The correlation time of recorded samples (oldest first) as a span: [`correlation_time`] of
/// the values, times the cadence they are sampled at.
pub fn correlation_span(samples: &[Sample], cadence: Span) -> Option<Span> {
    let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
    let lags = correlation_time(&values)?;
    Some(cadence.saturating_mul(lags as u64))
}

/// Block lengths and count of a switchback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPlan {
    /// How many blocks (half on, half off).
    pub blocks: usize,
    /// Each block's length, washout included.
    pub block: Span,
    /// The start of each block that is not measured (after a flip the old state may linger).
    pub washout: Span,
}

impl BlockPlan {
    /// A plan for a signal with correlation time `correlation`, sampled every `cadence`, with
    /// the change taking `settle` to show: the washout is the longer of settle and the
    /// correlation time; the measured part is the longer of the correlation time and
    /// [`MIN_BLOCK_SAMPLES`] + 1 samples, so every block is longer than the signal's memory.
    pub fn new(blocks: usize, correlation: Span, cadence: Span, settle: Span) -> Self {
        let washout = Span::from_secs(settle.seconds().max(correlation.seconds()));
        let min_measure = cadence.saturating_mul(MIN_BLOCK_SAMPLES as u64 + 1);
        let measure = Span::from_secs(correlation.seconds().max(min_measure.seconds()));
        Self {
            blocks,
            block: washout.saturating_add(measure),
            washout,
        }
    }

    /// The whole schedule's length.
    pub fn total(&self) -> Span {
        self.block.saturating_mul(self.blocks as u64)
    }
}

/// One block of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// 1-based position (the `block k` of the commit trailer).
    pub index: usize,
    /// Whether the change is applied during this block.
    pub on: bool,
    /// When the block starts (the flip, if the state changes here).
    pub start: DateTime<Utc>,
    /// When measurement starts (after the washout).
    pub measure_from: DateTime<Utc>,
    /// When the block ends (exclusive).
    pub end: DateTime<Utc>,
}

/// The randomised schedule for `plan` starting at `start`: `plan.blocks / 2` blocks on, drawn
/// uniformly among all balanced assignments with a generator seeded by `seed` (see
/// [`seed_for`]). The same seed, start and plan give the same schedule.
pub fn schedule(seed: u64, start: DateTime<Utc>, plan: &BlockPlan) -> Vec<Block> {
    let n = plan.blocks.min(MAX_BLOCKS);
    let on = random_subset(&mut ChaCha8Rng::seed_from_u64(seed), n, n / 2);
    let mut at = start;
    (0..n)
        .map(|i| {
            let end = plan.block.after(at);
            let b = Block {
                index: i + 1,
                on: on & (1u64 << i) != 0,
                start: at,
                measure_from: plan.washout.after(at),
                end,
            };
            at = end;
            b
        })
        .collect()
}

/// A uniformly random `k`-subset of `0..n` as a bit mask (partial Fisher–Yates).
fn random_subset(rng: &mut ChaCha8Rng, n: usize, k: usize) -> u64 {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut mask = 0u64;
    for i in 0..k.min(n) {
        let j = rng.random_range(i..n);
        idx.swap(i, j);
        mask |= 1u64 << idx[i];
    }
    mask
}

/// Which way the change is predicted to move the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tail {
    /// Predicted to fall: extreme means mean(on) − mean(off) at most the observed.
    Lower,
    /// Predicted to rise: extreme means at least the observed.
    Upper,
}

impl Tail {
    /// The tail of a prediction's direction (−1 falls, otherwise rises).
    pub fn of(direction: f64) -> Self {
        if direction < 0.0 {
            Tail::Lower
        } else {
            Tail::Upper
        }
    }

    fn opposite(self) -> Self {
        match self {
            Tail::Lower => Tail::Upper,
            Tail::Upper => Tail::Lower,
        }
    }
}

/// The result of a randomisation test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermutationTest {
    /// mean(on) − mean(off) of the block values.
    pub statistic: f64,
    /// One-sided p-value in the predicted direction.
    pub p_value: f64,
    /// One-sided p-value in the opposite direction (evidence of a regression).
    pub p_opposite: f64,
    /// Whether every assignment was enumerated (else seeded Monte Carlo).
    pub exact: bool,
    /// Assignments enumerated, or Monte Carlo draws.
    pub assignments: u64,
    /// Lower end of the shift interval (`None`: unbounded with this few blocks).
    pub lower: Option<f64>,
    /// Upper end of the shift interval.
    pub upper: Option<f64>,
    /// Two-sided level of the interval.
    pub level: f64,
}

/// Reference assignments with, for each, the statistic at zero shift and its slope in the
/// shift: under "on adds δ", the statistic of assignment `a` on the shifted-back data is
/// `d_a − δ·c_a`, with `c_a` = (share of `a`'s on blocks truly on) − (share of its off blocks
/// truly on); `c_a` = 1 for the observed assignment and ≤ 1 for every other.
struct Reference {
    stat: Vec<f64>,
    slope: Vec<f64>,
    observed: f64,
    exact: bool,
    eps: f64,
}

impl Reference {
    /// p-value of `tail` at shift `delta` (the observed assignment is among the references
    /// when exact; the +1 correction counts it when drawn).
    fn p(&self, tail: Tail, delta: f64) -> f64 {
        let obs = self.observed - delta;
        let count = self
            .stat
            .iter()
            .zip(&self.slope)
            .filter(|(d, c)| {
                let v = *d - delta * *c;
                match tail {
                    Tail::Lower => v <= obs + self.eps,
                    Tail::Upper => v >= obs - self.eps,
                }
            })
            .count();
        if self.exact {
            count as f64 / self.stat.len().max(1) as f64
        } else {
            (count as f64 + 1.0) / (self.stat.len() as f64 + 1.0)
        }
    }

    /// The smallest attainable p-value.
    fn floor(&self) -> f64 {
        if self.exact {
            1.0 / self.stat.len().max(1) as f64
        } else {
            1.0 / (self.stat.len() as f64 + 1.0)
        }
    }
}

/// C(n, k), or `None` beyond `u64`.
fn binomial(n: usize, k: usize) -> Option<u64> {
    let k = k.min(n - k.min(n));
    let mut c: u128 = 1;
    for i in 0..k {
        c = c.checked_mul((n - i) as u128)? / (i as u128 + 1);
    }
    u64::try_from(c).ok()
}

/// Randomisation test of `values` (one per block) under the realised assignment `on`, one-sided
/// in `tail`, with a two-sided `level` interval for a constant shift. The reference set is every
/// assignment with as many blocks on as observed: enumerated when at most [`EXACT_LIMIT`], else
/// [`MONTE_CARLO_DRAWS`] draws from a generator seeded by `seed`.
///
/// Blocks dropped for missing data may be left out by the caller: conditional on which blocks
/// are present (missingness unrelated to the assignment) the on-count among them is fixed and
/// every subset of that size was equally likely, so the test stays exact.
pub fn permutation_test(
    values: &[f64],
    on: &[bool],
    tail: Tail,
    level: f64,
    seed: u64,
) -> Result<PermutationTest, SwitchbackError> {
    let n = values.len();
    if on.len() != n {
        return Err(SwitchbackError::LengthMismatch {
            values: n,
            labels: on.len(),
        });
    }
    if n > MAX_BLOCKS {
        return Err(SwitchbackError::TooManyBlocks(n));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(SwitchbackError::NonFinite(i + 1));
    }
    let k = on.iter().filter(|b| **b).count();
    if k < 2 || n - k < 2 {
        return Err(SwitchbackError::TooFewBlocks { on: k, off: n - k });
    }
    let observed_mask = on
        .iter()
        .enumerate()
        .filter(|(_, b)| **b)
        .fold(0u64, |m, (i, _)| m | (1u64 << i));
    let total: f64 = values.iter().sum();
    let (kf, mf) = (k as f64, (n - k) as f64);
    let stat_of = |mask: u64| {
        let s_on: f64 = (0..n)
            .filter(|i| mask & (1u64 << i) != 0)
            .map(|i| values[i])
            .sum();
        let both = (mask & observed_mask).count_ones() as f64;
        let d = s_on / kf - (total - s_on) / mf;
        let c = both / kf - (kf - both) / mf;
        (d, c)
    };
    let count = binomial(n, k).filter(|c| *c <= EXACT_LIMIT);
    let masks: Vec<u64> = match count {
        Some(c) => enumerate_subsets(k, c),
        None => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..MONTE_CARLO_DRAWS)
                .map(|_| random_subset(&mut rng, n, k))
                .collect()
        }
    };
    let (stat, slope): (Vec<f64>, Vec<f64>) = masks.iter().map(|m| stat_of(*m)).unzip();
    let (observed, _) = stat_of(observed_mask);
    let spread = values
        .iter()
        .fold(0.0_f64, |a, v| a.max(v.abs()))
        .max(1e-300);
    let reference = Reference {
        stat,
        slope,
        observed,
        exact: count.is_some(),
        eps: spread * 1e-12,
    };
    let alpha = (1.0 - level).clamp(0.0, 1.0) / 2.0;
    let range = values.iter().fold(f64::NEG_INFINITY, |a, v| a.max(*v))
        - values.iter().fold(f64::INFINITY, |a, v| a.min(*v));
    let (lower, upper) = if reference.floor() > alpha {
        (None, None)
    } else {
        (
            invert(&reference, Tail::Upper, alpha, observed, range),
            invert(&reference, Tail::Lower, alpha, observed, range),
        )
    };
    Ok(PermutationTest {
        statistic: observed,
        p_value: reference.p(tail, 0.0),
        p_opposite: reference.p(tail.opposite(), 0.0),
        exact: reference.exact,
        assignments: reference.stat.len() as u64,
        lower,
        upper,
        level,
    })
}

/// Every `k`-subset of `0..n` as masks in increasing order (Gosper's hack), `count` of them;
/// stops after the last so the step past it (which could overflow at n = 64) is never taken.
fn enumerate_subsets(k: usize, count: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut m: u64 = (1u64 << k) - 1;
    for left in (0..count).rev() {
        out.push(m);
        if left == 0 || m == 0 {
            break;
        }
        let c = m & m.wrapping_neg();
        let r = m.wrapping_add(c);
        m = (((r ^ m) >> 2) / c) | r;
    }
    out
}

/// One end of the interval: for `Tail::Upper` the smallest shift δ whose upper-tail p-value
/// exceeds `alpha` (the lower end); for `Tail::Lower` the largest δ whose lower-tail p-value
/// exceeds it (the upper end). The p-value is monotone in δ, so bisection finds it.
fn invert(r: &Reference, tail: Tail, alpha: f64, observed: f64, range: f64) -> Option<f64> {
    let accepted = |d: f64| r.p(tail, d) > alpha;
    if !accepted(observed) {
        return None;
    }
    let dir = match tail {
        Tail::Upper => -1.0,
        Tail::Lower => 1.0,
    };
    let mut step = range.max(observed.abs()).max(1e-9);
    let mut out = observed + dir * step;
    let mut tries = 0;
    while accepted(out) {
        step *= 2.0;
        out = observed + dir * step;
        tries += 1;
        if tries > 60 {
            return None;
        }
    }
    let (mut inside, mut outside) = (observed, out);
    for _ in 0..80 {
        let mid = 0.5 * (inside + outside);
        if accepted(mid) {
            inside = mid;
        } else {
            outside = mid;
        }
    }
    Some(inside)
}

/// A block's measured value: the median of its samples in `[measure_from, end)` on the working
/// scale, or `None` with fewer than [`MIN_BLOCK_SAMPLES`].
pub fn block_value(samples: &[Sample], b: &Block, log: bool) -> Option<f64> {
    let mut v: Vec<f64> = samples
        .iter()
        .filter(|s| s.at >= b.measure_from && s.at < b.end && s.value.is_finite())
        .map(|s| if log { s.value.ln() } else { s.value })
        .filter(|v| v.is_finite())
        .collect();
    if v.len() < MIN_BLOCK_SAMPLES {
        return None;
    }
    median_mut(&mut v)
}

/// Decides a switchback: per-block medians of the target (on the log scale where `scale` allows,
/// so effects are ratios), the randomisation test one-sided in the predicted direction at
/// `alpha`, and a verdict: regressed (the opposite tail at `alpha`) › validated (predicted tail
/// at `alpha`) › no effect (the interval's end on the predicted side falls short of the
/// predicted magnitude) › inconclusive. Blocks without enough samples are left out; too few
/// blocks left ends inconclusive with [`Figures::cannot_judge`] set.
pub fn judge(
    signal: &str,
    samples: &[Sample],
    blocks: &[Block],
    change: ExpectedChange,
    scale: Scale,
    alpha: f64,
    seed: u64,
) -> Verdict {
    let in_blocks: Vec<f64> = samples
        .iter()
        .filter(|s| {
            blocks
                .iter()
                .any(|b| s.at >= b.measure_from && s.at < b.end)
        })
        .map(|s| s.value)
        .collect();
    let (log, note) = use_log(scale, &in_blocks);
    let mut figures = Figures {
        method: "switchback_permutation".into(),
        level: Some(1.0 - alpha),
        notes: note.into_iter().collect(),
        ..Figures::default()
    };
    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut missing = Vec::new();
    for b in blocks {
        match block_value(samples, b, log) {
            Some(v) => {
                values.push(v);
                labels.push(b.on);
            }
            None => missing.push(b.index),
        }
    }
    figures.n_after = labels.iter().filter(|b| **b).count();
    figures.n_before = labels.len() - figures.n_after;
    if !missing.is_empty() {
        figures.notes.push(format!(
            "blocks without {MIN_BLOCK_SAMPLES} samples left out: {missing:?}"
        ));
    }
    let tail = Tail::of(change.direction());
    let test = match permutation_test(&values, &labels, tail, 1.0 - 2.0 * alpha, seed) {
        Ok(t) => t,
        Err(e) => {
            let reason = format!(
                "cannot judge: {signal} switchback has too few measured blocks ({e}; {} of {} blocks missing samples)",
                missing.len(),
                blocks.len()
            );
            figures.cannot_judge = Some(reason.clone());
            figures.missing_data = true;
            return Verdict {
                outcome: Outcome::Inconclusive,
                summary: reason,
                figures,
            };
        }
    };
    let mean_of = |on: bool| {
        let v: Vec<f64> = values
            .iter()
            .zip(&labels)
            .filter(|(_, l)| **l == on)
            .map(|(v, _)| *v)
            .collect();
        let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
        if log { m.exp() } else { m }
    };
    figures.baseline = Some(mean_of(false));
    figures.post = Some(mean_of(true));
    figures.estimate = Some(to_reported(test.statistic, log));
    figures.lower = test.lower.map(|x| to_reported(x, log));
    figures.upper = test.upper.map(|x| to_reported(x, log));
    figures.level = Some(test.level);
    figures.notes.push(format!(
        "randomisation test over {} {} block assignments: p = {:.4} ({} predicted), {:.4} (opposite)",
        test.assignments,
        if test.exact { "enumerated" } else { "drawn" },
        test.p_value,
        match tail {
            Tail::Lower => "fall",
            Tail::Upper => "rise",
        },
        test.p_opposite
    ));
    let base = mean_of(false);
    let magnitude = predicted_magnitude(change, log, base);
    let toward = |x: f64| match tail {
        Tail::Lower => -x,
        Tail::Upper => x,
    };
    let (outcome, summary) = if test.p_opposite <= alpha {
        (
            Outcome::Regressed,
            format!(
                "regressed: {signal} moved against the prediction in the switchback (p = {:.4})",
                test.p_opposite
            ),
        )
    } else if test.p_value <= alpha {
        figures.magnitude_met = magnitude.map(|m| toward(test.statistic) >= m);
        // How much of the prediction the interval is certain of: its end nearest no change, as
        // a share of the predicted magnitude (what the distiller asks of a single validation
        // before it writes a prefer lesson). Without an interval, nothing is certain.
        let near_end = match tail {
            Tail::Lower => test.upper,
            Tail::Upper => test.lower,
        };
        figures.certain_share = Some(match (magnitude, near_end) {
            (Some(m), Some(end)) if m.is_finite() && m > 0.0 => toward(end) / m,
            _ => 0.0,
        });
        (
            Outcome::Validated,
            format!(
                "validated: {signal} {} by switchback (p = {:.4} over {} blocks)",
                describe(test.statistic, log),
                test.p_value,
                values.len()
            ),
        )
    } else {
        let far_end = match tail {
            Tail::Lower => test.lower,
            Tail::Upper => test.upper,
        };
        match (magnitude, far_end) {
            (Some(m), Some(end)) if toward(end) < m => (
                Outcome::NoEffect,
                format!(
                    "no effect: the switchback rules out the predicted change of {signal} (p = {:.4})",
                    test.p_value
                ),
            ),
            _ => (
                Outcome::Inconclusive,
                format!(
                    "inconclusive: the switchback could not tell (p = {:.4} over {} blocks)",
                    test.p_value,
                    values.len()
                ),
            ),
        }
    };
    Verdict {
        outcome,
        summary,
        figures,
    }
}

/// "fell 18.0%" / "rose 3.20".
fn describe(x: f64, log: bool) -> String {
    let r = to_reported(x, log);
    let verb = if r < 0.0 { "fell" } else { "rose" };
    if log {
        format!("{verb} {:.1}%", r.abs() * 100.0)
    } else {
        format!("{verb} {:.3}", r.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn four_blocks_two_on_most_extreme_is_one_sixth() {
        let values = [1.0, 5.0, 2.0, 6.0];
        let on = [true, false, true, false];
        let t =
            permutation_test(&values, &on, Tail::Lower, 0.9, 1).unwrap_or_else(|e| panic!("{e}"));
        assert!(t.exact);
        assert_eq!(t.assignments, 6);
        assert!((t.p_value - 1.0 / 6.0).abs() < 1e-12, "{}", t.p_value);
        assert!((t.p_opposite - 1.0).abs() < 1e-12);
        assert!((t.statistic - (-4.0)).abs() < 1e-12);
    }

    #[test]
    fn six_blocks_exact_p_counts_ties_and_ranks() {
        // Values 0..6; on = {0, 1, 3}: on-sum 4. Subsets of 3 with sum ≤ 4: {0,1,2}=3, {0,1,3}=4
        // → 2 of C(6,3) = 20.
        let values = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let on = [true, true, false, true, false, false];
        let t =
            permutation_test(&values, &on, Tail::Lower, 0.9, 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.assignments, 20);
        assert!((t.p_value - 2.0 / 20.0).abs() < 1e-12, "{}", t.p_value);
        // Opposite: subsets with sum ≥ 4: all but {0,1,2} → 19/20.
        assert!((t.p_opposite - 19.0 / 20.0).abs() < 1e-12);
        // Predicted rise on the same data: the upper tail.
        let u =
            permutation_test(&values, &on, Tail::Upper, 0.9, 1).unwrap_or_else(|e| panic!("{e}"));
        assert!((u.p_value - 19.0 / 20.0).abs() < 1e-12);
    }

    #[test]
    fn sixty_four_blocks_two_on_enumerates_without_overflow() {
        let mut on = [false; 64];
        on[0] = true;
        on[1] = true;
        let values: Vec<f64> = (0..64).map(f64::from).collect();
        let t =
            permutation_test(&values, &on, Tail::Lower, 0.9, 1).unwrap_or_else(|e| panic!("{e}"));
        assert!(t.exact);
        assert_eq!(t.assignments, 2016);
        assert!((t.p_value - 1.0 / 2016.0).abs() < 1e-12);
    }

    #[test]
    fn all_equal_values_give_p_one() {
        let t = permutation_test(
            &[3.0; 6],
            &[true, false, true, false, true, false],
            Tail::Lower,
            0.9,
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!((t.p_value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn monte_carlo_beyond_the_exact_limit_is_seeded_and_corrected() {
        // 20 blocks, 10 on: C(20, 10) = 184 756 > EXACT_LIMIT.
        let on: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
        let values: Vec<f64> = on.iter().map(|b| if *b { 0.0 } else { 1.0 }).collect();
        let a =
            permutation_test(&values, &on, Tail::Lower, 0.95, 7).unwrap_or_else(|e| panic!("{e}"));
        let b =
            permutation_test(&values, &on, Tail::Lower, 0.95, 7).unwrap_or_else(|e| panic!("{e}"));
        assert!(!a.exact);
        assert_eq!(a.assignments, MONTE_CARLO_DRAWS as u64);
        assert_eq!(a, b);
        // The most extreme assignment is drawn with probability 1/184756 per draw: p is (almost
        // surely) the +1 floor.
        assert!(a.p_value >= 1.0 / (MONTE_CARLO_DRAWS as f64 + 1.0));
        assert!(a.p_value < 0.001);
    }

    #[test]
    fn interval_covers_a_known_shift_and_is_unbounded_with_too_few_blocks() {
        // Noise-free shift of −2 plus a trend the assignment does not follow.
        let on = [
            true, false, false, true, true, false, true, false, false, true, false, true,
        ];
        let values: Vec<f64> = on
            .iter()
            .enumerate()
            .map(|(i, b)| 10.0 + 0.1 * i as f64 + if *b { -2.0 } else { 0.0 })
            .collect();
        let t =
            permutation_test(&values, &on, Tail::Lower, 0.95, 1).unwrap_or_else(|e| panic!("{e}"));
        let (lo, hi) = (t.lower.unwrap_or(f64::NAN), t.upper.unwrap_or(f64::NAN));
        assert!(lo <= -2.0 && -2.0 <= hi, "[{lo}, {hi}]");
        assert!(lo <= t.statistic && t.statistic <= hi);
        assert!(t.p_value < 0.01);
        let few = permutation_test(
            &[1.0, 5.0, 2.0, 6.0],
            &[true, false, true, false],
            Tail::Lower,
            0.95,
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((few.lower, few.upper), (None, None));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert!(matches!(
            permutation_test(&[1.0, 2.0], &[true], Tail::Lower, 0.95, 1),
            Err(SwitchbackError::LengthMismatch { .. })
        ));
        assert!(matches!(
            permutation_test(
                &[1.0, 2.0, 3.0],
                &[true, false, false],
                Tail::Lower,
                0.95,
                1
            ),
            Err(SwitchbackError::TooFewBlocks { on: 1, off: 2 })
        ));
        assert!(matches!(
            permutation_test(
                &[1.0, f64::NAN, 3.0, 4.0],
                &[true, false, true, false],
                Tail::Lower,
                0.95,
                1
            ),
            Err(SwitchbackError::NonFinite(2))
        ));
        assert!(matches!(
            permutation_test(&[0.0; 65], &[true; 65], Tail::Lower, 0.95, 1),
            Err(SwitchbackError::TooManyBlocks(65))
        ));
    }

    #[test]
    fn schedule_is_balanced_deterministic_and_contiguous() {
        let plan = BlockPlan::new(12, Span::minutes(25), Span::minutes(5), Span::minutes(10));
        assert_eq!(plan.washout, Span::minutes(25));
        assert_eq!(plan.block, Span::minutes(50));
        let seed = seed_for("K-000042");
        let a = schedule(seed, t0(), &plan);
        assert_eq!(a, schedule(seed, t0(), &plan));
        assert_eq!(a.len(), 12);
        assert_eq!(a.iter().filter(|b| b.on).count(), 6);
        assert_eq!(a[0].start, t0());
        for w in a.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(a[11].end, plan.total().after(t0()));
        assert!(
            a.iter()
                .all(|b| b.measure_from == plan.washout.after(b.start))
        );
        let other: Vec<bool> = schedule(seed_for("K-000043"), t0(), &plan)
            .iter()
            .map(|b| b.on)
            .collect();
        let mine: Vec<bool> = a.iter().map(|b| b.on).collect();
        // Different ids draw (almost surely) different assignments; these two do.
        assert_ne!(mine, other);
    }

    #[test]
    fn correlation_time_of_an_ar1_is_near_its_theory() {
        // AR(1) with ρ = 0.8: ρ^L < 1/e at L = 5 (0.8^4 = 0.41, 0.8^5 = 0.33).
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut x = 0.0;
        let values: Vec<f64> = (0..4000)
            .map(|i| {
                x = 0.8 * x + (rng.random::<f64>() - 0.5);
                x + 0.001 * i as f64
            })
            .collect();
        let l = correlation_time(&values).unwrap_or(0);
        assert!((4..=6).contains(&l), "{l}");
        let white: Vec<f64> = (0..1000).map(|_| rng.random::<f64>()).collect();
        assert_eq!(correlation_time(&white), Some(1));
        assert_eq!(correlation_time(&[1.0; 20]), None);
        assert_eq!(correlation_time(&[1.0, 2.0]), None);
    }

    fn ar_series(effect: f64, blocks: &[Block], seed: u64) -> Vec<Sample> {
        // AR(0.8) noise, a daily cycle and a trend, 5-minute samples; the change multiplies the
        // level by (1 + effect) while on.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = 0.0;
        let end = blocks.last().map_or(t0(), |b| b.end);
        let mut out = Vec::new();
        let mut at = t0();
        let mut i = 0.0;
        while at < end {
            x = 0.8 * x + 0.05 * (rng.random::<f64>() - 0.5);
            let day = (at.timestamp() as f64 / 86_400.0 * std::f64::consts::TAU).sin();
            let on = blocks.iter().any(|b| b.on && at >= b.start && at < b.end);
            let level = 300.0 * (1.0 + 0.2 * day) * (1.0 + 0.0005 * i) * x.exp();
            out.push(Sample {
                signal: "latency_ms".into(),
                at,
                value: if on { level * (1.0 + effect) } else { level },
            });
            at += chrono::Duration::minutes(5);
            i += 1.0;
        }
        out
    }

    #[test]
    fn judge_validates_a_real_effect_and_not_a_null_one() {
        let plan = BlockPlan::new(12, Span::minutes(25), Span::minutes(5), Span::minutes(10));
        let seed = seed_for("K-000007");
        let blocks = schedule(seed, t0(), &plan);
        let change = ExpectedChange::Relative(-0.2);
        let real = judge(
            "latency_ms",
            &ar_series(-0.3, &blocks, 11),
            &blocks,
            change,
            Scale::Auto,
            0.05,
            seed,
        );
        assert_eq!(real.outcome, Outcome::Validated, "{}", real.summary);
        let est = real.figures.estimate.unwrap_or(0.0);
        assert!((-0.4..-0.2).contains(&est), "{est}");
        assert_eq!(real.figures.method, "switchback_permutation");
        // How much of the −20% the interval is certain of: its end nearest no change, as a share
        // of ln(0.8) (the distiller's test for a prefer lesson from one validation).
        let share = real.figures.certain_share.unwrap_or(f64::NAN);
        let upper = real.figures.upper.unwrap_or(f64::NAN);
        let expected = (1.0 + upper).ln() / 0.8f64.ln();
        assert!((share - expected).abs() < 1e-9, "{share} vs {expected}");
        assert!(share > 0.0, "{share}");
        let null = judge(
            "latency_ms",
            &ar_series(0.0, &blocks, 11),
            &blocks,
            change,
            Scale::Auto,
            0.05,
            seed,
        );
        assert_ne!(null.outcome, Outcome::Validated, "{}", null.summary);
        let worse = judge(
            "latency_ms",
            &ar_series(0.3, &blocks, 11),
            &blocks,
            change,
            Scale::Auto,
            0.05,
            seed,
        );
        assert_eq!(worse.outcome, Outcome::Regressed, "{}", worse.summary);
    }

    #[test]
    fn judge_without_samples_cannot_judge() {
        let plan = BlockPlan::new(8, Span::minutes(25), Span::minutes(5), Span::minutes(10));
        let blocks = schedule(1, t0(), &plan);
        let v = judge(
            "latency_ms",
            &[],
            &blocks,
            ExpectedChange::Relative(-0.2),
            Scale::Auto,
            0.05,
            1,
        );
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(v.data_decided());
    }

    /// AR(0.8) on the log scale, a daily cycle, an upward trend from the trigger on and a spike
    /// just before it, sampled every 5 minutes from two days before `trigger`; the change adds
    /// `effect` (log) while `on(at)`.
    fn hard_series(
        seed: u64,
        trigger: DateTime<Utc>,
        end: DateTime<Utc>,
        effect: f64,
        on: &dyn Fn(DateTime<Utc>) -> bool,
    ) -> Vec<Sample> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let phase = rng.random::<f64>() * std::f64::consts::TAU;
        let sd = 0.08;
        let shock = sd * (1.0 - 0.64_f64).sqrt() * 3f64.sqrt();
        let mut e = 0.0;
        let mut at = trigger - chrono::Duration::days(2);
        let mut out = Vec::new();
        while at < end {
            e = 0.8 * e + shock * (2.0 * rng.random::<f64>() - 1.0);
            let day = (at.timestamp() as f64 / 86_400.0 * std::f64::consts::TAU + phase).sin();
            let hours = (at - trigger).num_minutes() as f64 / 60.0;
            let trend = if hours > 0.0 { 0.015 * hours } else { 0.0 };
            let spike = if (-1.0..0.0).contains(&hours) {
                0.3
            } else {
                0.0
            };
            let x = e + 0.2 * day + trend + spike + if on(at) { effect } else { 0.0 };
            out.push(Sample {
                signal: "latency_ms".into(),
                at,
                value: 300.0 * x.exp(),
            });
            at += chrono::Duration::minutes(5);
        }
        out
    }

    /// The hard cell (AR 0.8, daily cycle, trend, spike before the trigger): the before/after
    /// validator over the same span seldom decides; the switchback validates a real −20% and
    /// keeps its false-validation rate at the nominal level.
    #[test]
    fn switchback_decides_where_before_after_cannot() {
        use crate::intervention::Prediction;
        use crate::signal::{Better, Signal};
        use crate::validate::{HonestValidator, Look, ValidationRequest, Validator};
        // `KAIZEN_SB_RUNS` measures more runs (e.g. 1000 in release, `--nocapture` for the figures).
        let runs: u64 = std::env::var("KAIZEN_SB_RUNS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        let trigger = t0() + chrono::Duration::hours(9);
        let plan = BlockPlan::new(12, Span::minutes(25), Span::minutes(5), Span::minutes(10));
        let end = plan.total().after(trigger);
        let change = ExpectedChange::Relative(-0.2);
        let sig = Signal {
            name: "latency_ms".into(),
            unit: "ms".into(),
            better: Better::Lower,
            alert_above: None,
            alert_below: None,
        };
        let pred = Prediction {
            signal: "latency_ms".into(),
            change,
            within: Span::from_secs(plan.total().seconds() - 600),
        };
        let honest = HonestValidator::default();
        let (mut ba, mut sb) = ([0usize; 2], [0usize; 2]);
        // The switchback's one-sided p-values per arm, to compare the designs at the same
        // false-validation rate (the before/after validator's decisions have no threshold to tune).
        let mut sb_p: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for r in 0..runs {
            for (arm, effect) in [(0, 0.0), (1, (0.8_f64).ln())] {
                let always = |at: DateTime<Utc>| at >= trigger;
                let samples = hard_series(r, trigger, end, effect, &always);
                let v = honest.validate(&ValidationRequest {
                    prediction: &pred,
                    signal: &sig,
                    applied_at: trigger,
                    settle: Span::minutes(10),
                    window_end: end,
                    now: end,
                    samples: &samples,
                    guardrails: vec![],
                    look: Look::LastExtension,
                    sample_every: Span::minutes(5),
                    scale: Scale::Auto,
                });
                ba[arm] += usize::from(v.outcome == Outcome::Validated);
                let seed = seed_for(&format!("K-{r:06}"));
                let blocks = schedule(seed, trigger, &plan);
                let on =
                    |at: DateTime<Utc>| blocks.iter().any(|b| b.on && at >= b.start && at < b.end);
                let samples = hard_series(r, trigger, end, effect, &on);
                let v = judge(
                    "latency_ms",
                    &samples,
                    &blocks,
                    change,
                    Scale::Auto,
                    0.05,
                    seed,
                );
                sb[arm] += usize::from(v.outcome == Outcome::Validated);
                let measured: Vec<&Block> = blocks
                    .iter()
                    .filter(|b| block_value(&samples, b, true).is_some())
                    .collect();
                let values: Vec<f64> = measured
                    .iter()
                    .filter_map(|b| block_value(&samples, b, true))
                    .collect();
                let labels: Vec<bool> = measured.iter().map(|b| b.on).collect();
                sb_p[arm].push(
                    permutation_test(&values, &labels, Tail::Lower, 0.9, seed)
                        .map_or(1.0, |t| t.p_value),
                );
            }
        }
        // Power at the largest p-value threshold whose false-validation rate is at most `rate`.
        let power_at = |rate: f64| {
            let mut nulls = sb_p[0].clone();
            nulls.sort_by(f64::total_cmp);
            let allowed = (rate * runs as f64).floor() as usize;
            let threshold = nulls.get(allowed).copied().unwrap_or(f64::INFINITY);
            let fv = sb_p[0].iter().filter(|p| **p < threshold).count();
            let power = sb_p[1].iter().filter(|p| **p < threshold).count();
            (fv, power)
        };
        let (fv_ba, pow_ba) = power_at(ba[0] as f64 / runs as f64);
        let (fv_5, pow_5) = power_at(0.05);
        eprintln!(
            "at equal false validation: switchback {pow_ba}/{runs} at -20% with {fv_ba}/{runs} at 0 (before/after's rate); {pow_5}/{runs} with {fv_5}/{runs} (rate <= 0.05)"
        );
        eprintln!(
            "hard cell, {runs} runs: before/after validated {}/{runs} at 0, {}/{runs} at -20%; switchback {}/{runs} at 0, {}/{runs} at -20%",
            ba[0], ba[1], sb[0], sb[1]
        );
        // At a true rate of 0.05: ≤ 8 of 60 with probability > 0.99 (≤ 5% + 3 sd for more runs).
        let bound = if runs <= 60 {
            8.0
        } else {
            0.05 * runs as f64 + 3.0 * (0.0475 * runs as f64).sqrt()
        };
        assert!(
            sb[0] as f64 <= bound,
            "switchback false validations {}",
            sb[0]
        );
        assert!(
            sb[1] as f64 >= 0.8 * runs as f64,
            "switchback power {}",
            sb[1]
        );
        assert!(
            sb[1] > ba[1],
            "before/after {} vs switchback {}",
            ba[1],
            sb[1]
        );
    }
}
