//! The first validator: medians and a one-sided Mann–Whitney test on the raw windows.
//!
//! Kept for comparison and for signals without history. It does not correct for
//! autocorrelation, daily cycles or regression to the mean; prefer [`super::HonestValidator`].

use super::stats::{hodges_lehmann, mann_whitney, median};
use super::{Figures, Look, ValidationRequest, Validator, Verdict, count_gaps, window};
use crate::intervention::{ExpectedChange, Outcome};

/// Before/after medians with a one-sided Mann–Whitney test.
///
/// Baseline = samples in `[applied_at − within, applied_at)`, post = `[applied_at + settle,
/// window_end)`. Fewer than `min_samples` a side → inconclusive. Validated when the shift in the
/// predicted direction is significant at `alpha` *and* the median moved at least
/// `min_fraction` of the predicted change (for thresholds: the post median is past it);
/// regressed when significant in the other direction; otherwise no effect.
#[derive(Debug, Clone, PartialEq)]
pub struct SimpleValidator {
    /// One-sided significance level (default 0.05).
    pub alpha: f64,
    /// Fewest samples per side (default 3).
    pub min_samples: usize,
    /// Fraction of the predicted change the median shift must reach (default 0.5).
    pub min_fraction: f64,
}

impl Default for SimpleValidator {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            min_samples: 3,
            min_fraction: 0.5,
        }
    }
}

impl Validator for SimpleValidator {
    fn name(&self) -> &str {
        "simple"
    }

    fn validate(&self, req: &ValidationRequest<'_>) -> Verdict {
        let base_from = req.prediction.within.before(req.applied_at);
        let post_from = req.settle.after(req.applied_at);
        let post_to = req.window_end.min(req.now);
        let base = window(req.samples, base_from, req.applied_at);
        let post = window(req.samples, post_from, post_to);
        let mut fig = Figures {
            method: "median_mann_whitney".into(),
            n_before: base.len(),
            n_after: post.len(),
            gaps: count_gaps(post.len(), post_from, post_to, req.sample_every),
            baseline: median(&base),
            post: median(&post),
            level: Some(1.0 - 2.0 * self.alpha),
            ..Figures::default()
        };
        fig.cadence = Some(req.sample_every);
        fig.expected_before = super::expected_samples(base_from, req.applied_at, req.sample_every);
        fig.expected_after = super::expected_samples(post_from, post_to, req.sample_every);
        fig.gaps_before = fig.expected_before.saturating_sub(base.len());
        if base.len() < self.min_samples || post.len() < self.min_samples {
            fig.missing_data = true;
            fig.cannot_judge = Some(super::missing_reason(
                &req.signal.name,
                (base.len(), fig.expected_before),
                (post.len(), fig.expected_after),
            ));
            let summary = format!(
                "inconclusive: {} baseline and {} post samples (need {} each)",
                base.len(),
                post.len(),
                self.min_samples
            );
            return finish(req.look, Outcome::Inconclusive, summary, fig);
        }
        let (Some(b_med), Some(p_med), Some(mw)) =
            (fig.baseline, fig.post, mann_whitney(&base, &post))
        else {
            return finish(
                req.look,
                Outcome::Inconclusive,
                "inconclusive: no data".into(),
                fig,
            );
        };
        let change = req.prediction.change;
        let dir = change.direction();
        let (p_good, p_bad) = if dir > 0.0 {
            (mw.p_greater, mw.p_less)
        } else {
            (mw.p_less, mw.p_greater)
        };
        let relative = b_med > 0.0 && base.iter().chain(&post).all(|v| *v > 0.0);
        let report = |d: f64| if relative { d / b_med } else { d };
        let mut buf = Vec::new();
        if let Some(hl) = hodges_lehmann(&base, &post, self.alpha, &mut buf) {
            fig.estimate = Some(report(p_med - b_med));
            fig.lower = Some(report(hl.lower));
            fig.upper = Some(report(hl.upper));
        }
        fig.notes.push(format!(
            "one-sided Mann-Whitney p={p_good:.4} (predicted direction), p={p_bad:.4} (other)"
        ));
        let good_shift = dir * (p_med - b_med);
        let (far_enough, met) = match change {
            ExpectedChange::Relative(r) => {
                let want = (r * b_med).abs();
                (good_shift >= self.min_fraction * want, good_shift >= want)
            }
            ExpectedChange::Absolute(a) => (
                good_shift >= self.min_fraction * a.abs(),
                good_shift >= a.abs(),
            ),
            ExpectedChange::Below(t) => (p_med < t, p_med < t),
            ExpectedChange::Above(t) => (p_med > t, p_med > t),
        };
        let (outcome, summary) = if p_bad < self.alpha {
            (
                Outcome::Regressed,
                format!(
                    "regressed: median {b_med:.4} → {p_med:.4}, against the prediction ({p_bad:.4})"
                ),
            )
        } else if req.look == Look::Interim {
            (Outcome::Inconclusive, "interim look: no regression".into())
        } else if p_good < self.alpha && far_enough {
            fig.magnitude_met = Some(met);
            (
                Outcome::Validated,
                format!("validated: median {b_med:.4} → {p_med:.4} (p={p_good:.4})"),
            )
        } else {
            (
                Outcome::NoEffect,
                format!("no effect: median {b_med:.4} → {p_med:.4} (p={p_good:.4})"),
            )
        };
        finish(req.look, outcome, summary, fig)
    }
}

fn finish(look: Look, outcome: Outcome, summary: String, figures: Figures) -> Verdict {
    let outcome = match (look, outcome) {
        (Look::Interim, Outcome::Regressed) => Outcome::Regressed,
        (Look::Interim, _) => Outcome::Inconclusive,
        // Missing data decides nothing: only a window that had its samples becomes no_effect.
        (Look::LastExtension, Outcome::Inconclusive) if figures.cannot_judge.is_none() => {
            Outcome::NoEffect
        }
        (_, o) => o,
    };
    Verdict {
        outcome,
        summary,
        figures,
    }
}
