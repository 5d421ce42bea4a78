//! Small, dependency-free statistics used by the validators, window sizing and calibration.
//!
//! Everything here works on plain `f64` slices, ignores nothing silently (callers filter
//! non-finite values first) and allocates only where noted.

use std::cmp::Ordering;

/// The median of `values` (reorders the slice). `None` when empty.
pub fn median_mut(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (left, m, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let hi = *m;
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lo + hi) / 2.0)
}

/// The median of `values` (copies). `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    median_mut(&mut v)
}

/// The `q`-quantile (0..=1) of already **sorted** values, linear interpolation. `None` when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let q = q.clamp(0.0, 1.0);
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let w = pos - lo as f64;
    Some(sorted[lo] * (1.0 - w) + sorted[hi] * w)
}

/// The arithmetic mean. `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// A robust standard deviation: 1.4826 × the median absolute deviation. `None` when empty.
pub fn mad_sigma(values: &[f64]) -> Option<f64> {
    let m = median(values)?;
    let mut dev: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    median_mut(&mut dev).map(|d| 1.4826 * d)
}

/// The sample standard deviation. `None` with fewer than two values.
pub fn std_dev(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// Lag-1 autocorrelation of a series (oldest first). `None` with fewer than 4 values or no spread.
pub fn lag1_autocorrelation(values: &[f64]) -> Option<f64> {
    if values.len() < 4 {
        return None;
    }
    let m = mean(values)?;
    let den: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    if den <= 0.0 {
        return None;
    }
    let num: f64 = values.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum();
    Some((num / den).clamp(-1.0, 1.0))
}

/// How many standard errors above its estimate [`rho_upper`] places the autocorrelation.
pub const RHO_MARGIN_SE: f64 = 0.5;

/// Kendall's small-sample bias of the lag-1 autocorrelation of `n` values around their own mean,
/// added back: `r + (1 + 3r) / n` (negative `r` counts as 0 in the correction), capped at 0.95.
pub fn rho_bias_corrected(r: f64, n: usize) -> f64 {
    let r = if r.is_finite() {
        r.clamp(-0.95, 0.95)
    } else {
        0.0
    };
    (r + (1.0 + 3.0 * r.max(0.0)) / n.max(1) as f64).clamp(-0.95, 0.95)
}

/// A cautious autocorrelation for interval widths: the (bias-corrected) estimate `rho` from `n`
/// values plus [`RHO_MARGIN_SE`] of its standard error `sqrt((1 − ρ²) / n)`, capped at 0.95.
/// An estimate from a few dozen values is off by ±0.1 and more (and random gaps bias it low, as
/// a pair across a gap is two steps apart); an underestimate narrows every interval built on it,
/// which is what let 5.6–6.2% of no-op changes validate at a 1-minute cadence with an hour of
/// history or none (issue 8's envelope grid). Fail closed: err towards the wider interval.
pub fn rho_upper(rho: f64, n: usize) -> f64 {
    let r = if rho.is_finite() {
        rho.clamp(-0.95, 0.95)
    } else {
        0.0
    };
    let se = ((1.0 - r * r) / n.max(1) as f64).sqrt();
    (r + RHO_MARGIN_SE * se).min(0.95)
}

/// The variance inflation of a mean of an AR(1) series with lag-1 autocorrelation `rho`
/// (negative values count as 0, capped at 0.95): `sqrt((1 + ρ) / (1 − ρ))`, a factor on widths.
pub fn ar1_width_factor(rho: f64) -> f64 {
    let r = if rho.is_finite() {
        rho.clamp(0.0, 0.95)
    } else {
        0.0
    };
    ((1.0 + r) / (1.0 - r)).sqrt()
}

/// Local noise of a series (oldest first): `(sigma, rho)` estimated inside consecutive blocks of
/// `block` samples and combined by medians, so level shifts, ramps and slow cycles (which move
/// whole blocks, not the values inside one) do not count as noise. `sigma` is the median of the
/// blocks' robust standard deviations, corrected for the variance a block mean absorbs under
/// AR(1) noise; `rho` is the lag-1 autocorrelation pooled over the blocks (each around its own
/// mean) plus the small-sample bias `(1 + 3ρ) / block` (Kendall), capped at 0.95. `None` with fewer than 8 values or no spread.
pub fn local_noise(values: &[f64], block: usize) -> Option<(f64, f64)> {
    if values.len() < 8 {
        return None;
    }
    let b = block.clamp(8, values.len());
    let mut sig = Vec::new();
    let (mut num, mut den) = (0.0, 0.0);
    let mut start = 0;
    while start < values.len() {
        let mut end = (start + b).min(values.len());
        // Fold a short tail into the previous block's neighbour rather than judging it alone.
        if values.len() - end < b / 2 {
            end = values.len();
        }
        let blk = &values[start..end];
        if let Some(s) = mad_sigma(blk)
            .filter(|s| *s > 0.0)
            .or_else(|| std_dev(blk).filter(|s| *s > 0.0))
        {
            sig.push(s);
            if let Some(m) = mean(blk) {
                den += blk.iter().map(|v| (v - m) * (v - m)).sum::<f64>();
                num += blk.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum::<f64>();
            }
        }
        start = end;
    }
    let r = if den > 0.0 { num / den } else { 0.0 };
    let r = (r + (1.0 + 3.0 * r.max(0.0)) / b as f64).clamp(-0.95, 0.95);
    let s = median(&sig)?;
    // A block's spread is measured around its own mean: E[s²] ≈ σ² (1 − Var(mean)/σ²).
    let absorbed = window_mean_sd(1.0, r, b).powi(2);
    let s = s / (1.0 - absorbed).max(0.25).sqrt();
    (s > 0.0 && s.is_finite()).then_some((s, r))
}

/// The standard deviation of the mean of `n` consecutive samples of stationary AR(1) noise with
/// marginal standard deviation `sigma` and lag-1 autocorrelation `rho` (exact for finite `n`):
/// `σ/√n · sqrt(1 + 2 Σₖ₌₁ⁿ⁻¹ (1 − k/n) ρᵏ)`. Negative `rho` counts as 0.
pub fn window_mean_sd(sigma: f64, rho: f64, n: usize) -> f64 {
    let n = n.max(1);
    let r = if rho.is_finite() {
        rho.clamp(0.0, 0.99)
    } else {
        0.0
    };
    let mut acc = 1.0;
    let mut rk = 1.0;
    for k in 1..n {
        rk *= r;
        if rk < 1e-12 {
            break;
        }
        acc += 2.0 * (1.0 - k as f64 / n as f64) * rk;
    }
    sigma * (acc / n as f64).sqrt()
}

/// The standard deviation of `mean(post) − mean(base)` for stationary AR(1) noise (marginal sd
/// `sigma`, lag-1 autocorrelation `rho`), with `nb` baseline samples, a gap of `settle` samples
/// and `na` post samples: `sqrt(Var b̄ + Var ā − 2 Cov(b̄, ā))`, exact.
pub fn ar1_diff_sd(sigma: f64, rho: f64, nb: usize, settle: usize, na: usize) -> f64 {
    let (nb, na) = (nb.max(1), na.max(1));
    let r = if rho.is_finite() {
        rho.clamp(0.0, 0.99)
    } else {
        0.0
    };
    let vb = window_mean_sd(1.0, r, nb).powi(2);
    let va = window_mean_sd(1.0, r, na).powi(2);
    let geo = |n: usize| {
        if r >= 1.0 - 1e-12 {
            n as f64
        } else {
            (1.0 - r.powi(n as i32)) / (1.0 - r)
        }
    };
    // Σᵢ Σⱼ ρ^(nb − i + settle + j) over i < nb, j < na.
    let cov = r * geo(nb) * r.powi(settle as i32) * geo(na) / (nb * na) as f64;
    sigma * (vb + va - 2.0 * cov).max(0.0).sqrt()
}

/// The standard normal CDF Φ(x) (Abramowitz–Stegun 7.1.26 via erfc; |error| < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    // Numerical Recipes erfcc: fractional error < 1.2e-7 everywhere.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The standard normal quantile Φ⁻¹(p) (Acklam's algorithm, relative error < 1.2e-9).
/// Returns ±∞ at 0 and 1, NaN outside.
pub fn normal_quantile(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) || p.is_nan() {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let lo = 0.024_25;
    if p < lo {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - lo {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// A one-sided Mann–Whitney test that `post` is stochastically greater than `base`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U for `post`: the number of (post, base) pairs with post > base, ties counting ½.
    pub u: f64,
    /// The tie-corrected normal score of `U` (with continuity correction).
    pub z: f64,
    /// One-sided p-value for "post greater than base".
    pub p_greater: f64,
    /// One-sided p-value for "post less than base".
    pub p_less: f64,
}

/// Mann–Whitney U of `post` against `base` with mid-ranks for ties and the normal approximation.
/// `None` when either side is empty.
pub fn mann_whitney(base: &[f64], post: &[f64]) -> Option<MannWhitney> {
    let (m, n) = (base.len(), post.len());
    if m == 0 || n == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = base
        .iter()
        .map(|&v| (v, false))
        .chain(post.iter().map(|&v| (v, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = all.len();
    let mut rank_sum_post = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < total {
        let mut j = i + 1;
        while j < total && all[j].0.total_cmp(&all[i].0) == Ordering::Equal {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        for item in &all[i..j] {
            if item.1 {
                rank_sum_post += avg_rank;
            }
        }
        i = j;
    }
    let (mf, nf) = (m as f64, n as f64);
    let u = rank_sum_post - nf * (nf + 1.0) / 2.0;
    let mu = mf * nf / 2.0;
    let big_n = mf + nf;
    let var = mf * nf / 12.0 * ((big_n + 1.0) - tie_term / (big_n * (big_n - 1.0)).max(1.0));
    if var <= 0.0 {
        return Some(MannWhitney {
            u,
            z: 0.0,
            p_greater: 1.0,
            p_less: 1.0,
        });
    }
    let sd = var.sqrt();
    let z_greater = (u - mu - 0.5) / sd;
    let z_less = (mu - u - 0.5) / sd;
    Some(MannWhitney {
        u,
        z: (u - mu) / sd,
        p_greater: 1.0 - normal_cdf(z_greater),
        p_less: 1.0 - normal_cdf(z_less),
    })
}

/// The 1-based order index `k` of the pairwise differences giving a one-sided Mann–Whitney
/// bound at level `alpha` for samples of sizes `m` and `n` (normal approximation, at least 1).
pub fn mw_bound_index(m: usize, n: usize, alpha: f64) -> usize {
    let (mf, nf) = (m as f64, n as f64);
    let z = normal_quantile(1.0 - alpha.clamp(1e-12, 0.5));
    let k = (mf * nf / 2.0 - z * (mf * nf * (mf + nf + 1.0) / 12.0).sqrt()).floor();
    if k < 1.0 { 1 } else { k as usize }
}

/// A Hodges–Lehmann shift with its one-sided Mann–Whitney bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftInterval {
    /// Median of all pairwise differences `post − base`.
    pub estimate: f64,
    /// Lower bound: the effect exceeds this with confidence `1 − alpha`.
    pub lower: f64,
    /// Upper bound: the effect is below this with confidence `1 − alpha`.
    pub upper: f64,
}

/// Hodges–Lehmann shift of `post` over `base` and its one-sided Mann–Whitney bounds at `alpha`
/// each (so `[lower, upper]` is a `1 − 2·alpha` interval). `buf` is scratch space, reused across
/// calls to avoid allocation. `None` when either side is empty.
pub fn hodges_lehmann(
    base: &[f64],
    post: &[f64],
    alpha: f64,
    buf: &mut Vec<i64>,
) -> Option<ShiftInterval> {
    let (m, n) = (base.len(), post.len());
    if m == 0 || n == 0 {
        return None;
    }
    // The differences are selected as the integer keys of `f64::total_cmp`'s order: the same
    // order (so the same values are selected, bit for bit), compared natively instead of
    // through a closure that re-derives both keys at every comparison — the placebo
    // calibration selects from thousands of such sets per verdict and per window sizing.
    buf.clear();
    buf.reserve(m * n);
    for &p in post {
        for &b in base {
            buf.push(total_key(p - b));
        }
    }
    let total = buf.len();
    let k = mw_bound_index(m, n, alpha).min(total);
    let mid = total / 2;
    let (left, mval, right) = buf.select_nth_unstable(mid);
    let hi_mid = from_total_key(*mval);
    let estimate = if total % 2 == 1 {
        hi_mid
    } else {
        let lo_mid = left
            .iter()
            .map(|&x| from_total_key(x))
            .fold(f64::NEG_INFINITY, f64::max);
        (lo_mid + hi_mid) / 2.0
    };
    // k-th smallest (1-based) and k-th largest.
    let lower = if k - 1 < mid {
        from_total_key(*left.select_nth_unstable(k - 1).1)
    } else {
        hi_mid
    };
    let upper_idx = total - k; // 0-based index of the k-th largest
    let upper = if upper_idx > mid {
        from_total_key(*right.select_nth_unstable(upper_idx - mid - 1).1)
    } else {
        hi_mid
    };
    Some(ShiftInterval {
        estimate,
        lower: lower.min(estimate),
        upper: upper.max(estimate),
    })
}

/// The integer whose order is [`f64::total_cmp`]'s (the transformation `total_cmp` applies to
/// both sides of every comparison).
fn total_key(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The inverse of [`total_key`] (the transformation is its own inverse: it keeps the sign bit).
fn from_total_key(k: i64) -> f64 {
    f64::from_bits((k ^ ((((k >> 63) as u64) >> 1) as i64)) as u64)
}

/// The Wilson score interval for `successes` out of `n` at normal quantile `z` (1.96 ≈ 95%).
/// `(0, 1)` when `n` is 0.
pub fn wilson_interval(successes: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let nf = n as f64;
    let p = successes as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    /// The integer keys order values exactly as `f64::total_cmp` does and give them back bit
    /// for bit (signed zeros, infinities, NaNs of either sign, subnormals), and the selection
    /// on them picks what a selection under `total_cmp` picks.
    #[test]
    fn total_keys_keep_total_cmp_order_and_bits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut xs = vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::MIN_POSITIVE / 4.0,
            -f64::MIN_POSITIVE / 4.0,
            f64::MAX,
            f64::MIN,
            1.0,
            -1.0,
        ];
        for _ in 0..2000 {
            xs.push(match rng.random_range(0..3) {
                0 => f64::from_bits(rng.random()),
                1 => rng.random_range(-5..5) as f64,
                _ => rng.random_range(-1e3..1e3),
            });
        }
        for &a in &xs {
            assert_eq!(from_total_key(total_key(a)).to_bits(), a.to_bits());
            for &b in xs.iter().step_by(7) {
                assert_eq!(total_key(a).cmp(&total_key(b)), a.total_cmp(&b), "{a} {b}");
            }
        }
        // Whole intervals against the selection under `total_cmp` it replaced.
        let reference = |base: &[f64], post: &[f64], alpha: f64| {
            let mut d: Vec<f64> = post
                .iter()
                .flat_map(|p| base.iter().map(move |b| p - b))
                .collect();
            d.sort_by(f64::total_cmp);
            let total = d.len();
            let k = mw_bound_index(base.len(), post.len(), alpha).min(total);
            let mid = total / 2;
            let estimate = if total % 2 == 1 {
                d[mid]
            } else {
                (d[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max) + d[mid]) / 2.0
            };
            let lower = if k - 1 < mid { d[k - 1] } else { d[mid] };
            let upper = if total - k > mid {
                d[total - k]
            } else {
                d[mid]
            };
            (estimate, lower.min(estimate), upper.max(estimate))
        };
        let mut buf = Vec::new();
        for round in 0..500 {
            let (m, n) = (rng.random_range(1..30), rng.random_range(1..30));
            let draw = |rng: &mut rand_chacha::ChaCha8Rng| match rng.random_range(0..4) {
                0 => rng.random_range(-3..3) as f64,
                1 => -0.0,
                _ => rng.random_range(-10.0..10.0),
            };
            let base: Vec<f64> = (0..m).map(|_| draw(&mut rng)).collect();
            let post: Vec<f64> = (0..n).map(|_| draw(&mut rng)).collect();
            let alpha = [0.05, 0.1, 0.025, 0.4][round % 4];
            let s = hodges_lehmann(&base, &post, alpha, &mut buf).unwrap();
            let (e, l, u) = reference(&base, &post, alpha);
            assert_eq!(
                (s.estimate.to_bits(), s.lower.to_bits(), s.upper.to_bits()),
                (e.to_bits(), l.to_bits(), u.to_bits()),
                "round {round}: {base:?} {post:?}"
            );
        }
    }

    use super::*;

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(quantile_sorted(&[0.0, 10.0], 0.25), Some(2.5));
        // MAD of 1..=5 is 1 → 1.4826.
        assert!((mad_sigma(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap() - 1.4826).abs() < 1e-12);
    }

    #[test]
    fn normal_functions() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.644_853_6) - 0.95).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.05) + 1.644_854).abs() < 1e-5);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-5);
    }

    #[test]
    fn mann_whitney_hand_computed() {
        // post all above base: U = m·n = 9.
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(r.u, 9.0);
        // z = (9 − 4.5 − 0.5)/sqrt(9·7/12) = 4/2.2913 = 1.7457 → p ≈ 0.0404.
        assert!((r.p_greater - 0.0404).abs() < 1e-3, "{}", r.p_greater);
        assert!(r.p_less > 0.95);
        // Ties: one tie counts ½.
        let r = mann_whitney(&[1.0, 2.0], &[2.0, 3.0]).unwrap();
        assert_eq!(r.u, 3.5);
    }

    #[test]
    fn hodges_lehmann_hand_computed() {
        // Diffs post−base for base {0,1}, post {2,4}: {2,1,4,3} → median 2.5.
        let mut buf = Vec::new();
        let s = hodges_lehmann(&[0.0, 1.0], &[2.0, 4.0], 0.05, &mut buf).unwrap();
        assert_eq!(s.estimate, 2.5);
        assert_eq!(s.lower, 1.0);
        assert_eq!(s.upper, 4.0);
        // A pure shift of 10 with identical shapes: estimate exactly 10.
        let base: Vec<f64> = (0..20).map(f64::from).collect();
        let post: Vec<f64> = base.iter().map(|v| v + 10.0).collect();
        let s = hodges_lehmann(&base, &post, 0.05, &mut buf).unwrap();
        assert_eq!(s.estimate, 10.0);
        assert!(s.lower < 10.0 && s.upper > 10.0 && s.lower > 0.0);
        // k for 12 vs 12 at 5%: 72 − 1.645·sqrt(144·25/12) = 72 − 28.49 → 43.
        assert_eq!(mw_bound_index(12, 12, 0.05), 43);
    }

    #[test]
    fn autocorrelation_and_wilson() {
        let alt: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert!(lag1_autocorrelation(&alt).unwrap() < -0.9);
        // Kendall's bias added back: 0.45 from 60 values → 0.45 + 2.35/60.
        assert!((rho_bias_corrected(0.45, 60) - (0.45 + 2.35 / 60.0)).abs() < 1e-12);
        // Half a standard error on top: 0.5 + 0.5·sqrt(0.75/60) at 60 values, ≈ +0.01 at 2,000;
        // capped, and never a NaN whatever it is given.
        assert!((rho_upper(0.5, 60) - (0.5 + 0.5 * (0.75_f64 / 60.0).sqrt())).abs() < 1e-12);
        assert!(rho_upper(0.5, 2000) - 0.5 < 0.01);
        assert_eq!(rho_upper(0.99, 10), 0.95);
        assert!(rho_upper(f64::NAN, 0).is_finite() && rho_bias_corrected(f64::NAN, 0).is_finite());
        assert!((ar1_width_factor(0.8) - 3.0).abs() < 1e-12);
        assert_eq!(ar1_width_factor(-0.5), 1.0);
        // Wilson 5/10 at z=1.96: centre 0.5, half = 1.96·sqrt(0.025+0.00960)/1.38416 = 0.2634.
        let (lo, hi) = wilson_interval(5, 10, 1.96);
        assert!(
            (lo - 0.2366).abs() < 1e-3 && (hi - 0.7634).abs() < 1e-3,
            "{lo} {hi}"
        );
    }
}
