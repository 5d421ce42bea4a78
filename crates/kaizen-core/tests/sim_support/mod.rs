//! Shared parts of the simulator tests: a plain median validator and a minimal freeze guard
//! (stand-ins until the statistical validator and the real guards are on main).
#![allow(dead_code)]

use kaizen_core::guard::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use kaizen_core::intervention::{Candidate, ExpectedChange, Outcome, Status};
use kaizen_core::validate::{Figures, Look, ValidationRequest, Validator, Verdict, window};

/// Compares the median after the settle time with the median of an equally long window before the
/// apply. Good enough for clear-cut scenario effects; not a statistical judge.
pub struct MedianValidator;

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn rel_change(
    samples: &[kaizen_core::Sample],
    req: &ValidationRequest<'_>,
) -> Option<(f64, usize, usize)> {
    let post_from = req.applied_at + req.settle.to_chrono();
    let len = req.window_end - post_from;
    let before = window(samples, req.applied_at - len, req.applied_at);
    let after = window(
        samples,
        post_from,
        req.window_end.min(req.now + chrono::Duration::seconds(1)),
    );
    let (nb, na) = (before.len(), after.len());
    let (b, a) = (median(before)?, median(after)?);
    if na < 3 || nb < 3 || b == 0.0 {
        return None;
    }
    Some((a / b - 1.0, nb, na))
}

impl Validator for MedianValidator {
    fn name(&self) -> &str {
        "test-median"
    }

    fn validate(&self, req: &ValidationRequest<'_>) -> Verdict {
        let verdict = |outcome, summary: String, nb, na, est| Verdict {
            outcome,
            summary,
            figures: Figures {
                method: "test_median".into(),
                n_before: nb,
                n_after: na,
                estimate: est,
                ..Default::default()
            },
        };
        for g in &req.guardrails {
            if let Some((r, _, _)) = rel_change(g.samples, req)
                && r * g.signal.better.sign() < -0.5
            {
                return verdict(
                    Outcome::Regressed,
                    format!("guardrail {} moved {:+.0}%", g.signal.name, r * 100.0),
                    0,
                    0,
                    Some(r),
                );
            }
        }
        let Some((r, nb, na)) = rel_change(req.samples, req) else {
            return verdict(Outcome::Inconclusive, "too few samples".into(), 0, 0, None);
        };
        let good = r * req.signal.better.sign();
        let magnitude = match req.prediction.change {
            ExpectedChange::Relative(m) => m.abs(),
            _ => 0.1,
        };
        let outcome = if good < -0.5 * magnitude {
            Outcome::Regressed
        } else if req.look == Look::Interim {
            Outcome::Inconclusive
        } else if good >= 0.5 * magnitude {
            Outcome::Validated
        } else if good.abs() < 0.25 * magnitude || req.look == Look::LastExtension {
            Outcome::NoEffect
        } else {
            Outcome::Inconclusive
        };
        verdict(
            outcome,
            format!(
                "{} moved {:+.1}% (median after vs before)",
                req.signal.name,
                r * 100.0
            ),
            nb,
            na,
            Some(r),
        )
    }
}

/// Blocks an area after `freeze_after_rollbacks` consecutive reverts within `freeze_for`.
pub struct TestFreezeGuard;

impl Guard for TestFreezeGuard {
    fn name(&self) -> &'static str {
        "freeze"
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let mut done: Vec<_> = ctx
            .view
            .interventions
            .iter()
            .filter(|iv| {
                iv.candidate.area == candidate.area
                    && matches!(iv.status, Status::Validated | Status::Reverted)
            })
            .collect();
        done.sort_by_key(|iv| std::cmp::Reverse(iv.finalized_at));
        let n = ctx.policy.freeze_after_rollbacks as usize;
        let last: Vec<_> = done.iter().take(n).collect();
        let frozen = last.len() == n
            && last.iter().all(|iv| iv.status == Status::Reverted)
            && last
                .first()
                .and_then(|iv| iv.finalized_at)
                .is_some_and(|t| ctx.now < t + ctx.policy.freeze_for.to_chrono());
        Ok(GuardVerdict {
            guard: "freeze".into(),
            decision: if frozen {
                Decision::Block
            } else {
                Decision::Pass
            },
            reason: if frozen {
                format!(
                    "area {} frozen after {n} consecutive rollbacks",
                    candidate.area
                )
            } else {
                "not frozen".into()
            },
        })
    }
}

/// Blocks a candidate while another intervention in its area is applied (one at a time).
pub struct TestOneAtATime;

impl Guard for TestOneAtATime {
    fn name(&self) -> &'static str {
        "max_concurrent"
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let busy = ctx
            .view
            .interventions
            .iter()
            .any(|iv| iv.status == Status::Applied && iv.candidate.area == candidate.area);
        Ok(GuardVerdict {
            guard: "max_concurrent".into(),
            decision: if busy {
                Decision::Block
            } else {
                Decision::Pass
            },
            reason: if busy {
                "an intervention in this area is still being validated".into()
            } else {
                "ok".into()
            },
        })
    }
}

/// The stand-in guard chain.
pub fn test_guards() -> Vec<Box<dyn Guard>> {
    vec![Box::new(TestOneAtATime), Box::new(TestFreezeGuard)]
}
