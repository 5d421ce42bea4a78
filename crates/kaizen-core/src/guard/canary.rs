//! `canary`: risky changes wait in the backlog until their area has a canary.

use super::text::verdict;
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::intervention::Candidate;

/// Answers [`Decision::Backlog`] (worth doing, never applied as is) when the candidate's risk is
/// at least [`canary_required_from`](super::GuardPolicy::canary_required_from) and its area is not
/// in [`canary_areas`](super::GuardPolicy::canary_areas). Otherwise passes, saying whether a canary
/// will run.
#[derive(Debug, Clone, Copy, Default)]
pub struct CanaryRequired;

impl Guard for CanaryRequired {
    fn name(&self) -> &'static str {
        "canary"
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let p = ctx.policy;
        let area = &candidate.area;
        let risk = candidate.risk;
        let has_canary = p.canary_areas.iter().any(|a| a == area);
        if risk < p.canary_required_from {
            let extra = if has_canary {
                format!("; area `{area}` has one and it will run before apply")
            } else {
                String::new()
            };
            return Ok(verdict(
                self.name(),
                Decision::Pass,
                format!(
                    "risk {risk} < {}: no canary required{extra}",
                    p.canary_required_from
                ),
            ));
        }
        if has_canary {
            return Ok(verdict(
                self.name(),
                Decision::Pass,
                format!(
                    "risk {risk} ≥ {}: the canary of area `{area}` will run before apply",
                    p.canary_required_from
                ),
            ));
        }
        let configured = if p.canary_areas.is_empty() {
            "none configured".to_string()
        } else {
            format!("configured for: {}", p.canary_areas.join(", "))
        };
        Ok(verdict(
            self.name(),
            Decision::Backlog,
            format!(
                "risk {risk} ≥ {} requires a canary, but area `{area}` has none ({configured}); \
                 kept in backlog, not applied until a canary is configured",
                p.canary_required_from
            ),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{GuardPolicy, LedgerView};
    use super::*;
    use crate::intervention::Risk;

    fn run(area: &str, risk: Risk, canaries: &[&str]) -> GuardVerdict {
        let view = LedgerView::default();
        let policy = GuardPolicy {
            canary_areas: canaries.iter().map(|s| s.to_string()).collect(),
            ..GuardPolicy::default() // canary from medium
        };
        let c = Candidate { risk, ..cand(area) };
        CanaryRequired
            .check(&c, &ctx_at(&view, &policy, t0()))
            .unwrap()
    }

    #[test]
    fn low_risk_passes_without_canary() {
        let v = run("db", Risk::Low, &[]);
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(v.reason, "risk low < medium: no canary required");
        let v = run("cache", Risk::Low, &["cache"]);
        assert!(v.reason.contains("will run"), "{}", v.reason);
    }

    #[test]
    fn risky_change_with_canary_passes_and_says_so() {
        let v = run("cache", Risk::Medium, &["cache"]);
        assert_eq!(v.decision, Decision::Pass);
        assert!(
            v.reason.contains("canary of area `cache` will run"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn risky_change_without_canary_goes_to_backlog() {
        let v = run("db", Risk::Medium, &["cache", "api"]);
        assert_eq!(v.decision, Decision::Backlog);
        assert!(v.reason.contains("risk medium ≥ medium"), "{}", v.reason);
        assert!(v.reason.contains("area `db`"), "{}", v.reason);
        assert!(v.reason.contains("cache, api"), "{}", v.reason);
        let v = run("db", Risk::High, &[]);
        assert_eq!(v.decision, Decision::Backlog);
        assert!(v.reason.contains("none configured"));
    }
}
