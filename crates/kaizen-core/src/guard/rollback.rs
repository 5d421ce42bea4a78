//! `rollback`: every intervention needs a way back.

use super::text::verdict;
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::intervention::Candidate;

/// Rollback texts that are not a plan (compared trimmed, case-insensitively, trailing `.`/`!` ignored).
pub const NON_PLANS: &[&str] = &["none", "n/a", "na", "tbd", "todo", "-", "?"];

/// Blocks a candidate without a usable rollback plan: missing, blank, or a placeholder from
/// [`NON_PLANS`]. `revert` (revert the apply commit) or any concrete description passes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RollbackPlan;

impl Guard for RollbackPlan {
    fn name(&self) -> &'static str {
        "rollback"
    }

    fn check(
        &self,
        candidate: &Candidate,
        _ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let block = |reason: String| Ok(verdict(self.name(), Decision::Block, reason));
        let Some(raw) = candidate.rollback.as_deref() else {
            return block("no rollback plan (write `revert` to revert the apply commit, or describe the undo)".into());
        };
        let plan = raw.trim();
        if plan.is_empty() {
            return block("rollback plan is empty (write `revert` or describe the undo)".into());
        }
        let bare = plan
            .trim_end_matches(['.', '!'])
            .trim()
            .to_ascii_lowercase();
        if NON_PLANS.contains(&bare.as_str()) || bare.is_empty() {
            return block(format!(
                "rollback plan {plan:?} is a placeholder, not a plan (write `revert` or describe the undo)"
            ));
        }
        let reason = if bare == "revert" {
            "rollback: revert the apply commit".to_string()
        } else {
            let shown: String = plan.chars().take(120).collect();
            let more = if plan.chars().count() > 120 {
                "…"
            } else {
                ""
            };
            format!("rollback plan: {shown}{more}")
        };
        Ok(verdict(self.name(), Decision::Pass, reason))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{GuardPolicy, LedgerView};
    use super::*;

    fn run(rollback: Option<&str>) -> GuardVerdict {
        let view = LedgerView::default();
        let policy = GuardPolicy::default();
        let c = Candidate {
            rollback: rollback.map(str::to_string),
            ..cand("cache")
        };
        RollbackPlan
            .check(&c, &ctx_at(&view, &policy, t0()))
            .unwrap()
    }

    #[test]
    fn blocks_missing_empty_and_placeholders() {
        assert!(run(None).reason.contains("no rollback plan"));
        for bad in [
            None,
            Some(""),
            Some("   "),
            Some("none"),
            Some("N/A"),
            Some("na"),
            Some("TBD"),
            Some("todo"),
            Some("-"),
            Some("?"),
            Some("None."),
            Some(" tbd! "),
        ] {
            assert_eq!(run(bad).decision, Decision::Block, "{bad:?}");
        }
        assert!(run(Some("TBD")).reason.contains("\"TBD\""));
    }

    #[test]
    fn passes_revert_and_concrete_plans() {
        let v = run(Some("revert"));
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(v.reason, "rollback: revert the apply commit");
        let v = run(Some("Revert"));
        assert_eq!(v.decision, Decision::Pass);
        let v = run(Some("set cache.size_mb back to 64"));
        assert_eq!(v.decision, Decision::Pass);
        assert!(v.reason.contains("set cache.size_mb back to 64"));
        // A word that merely contains a placeholder is a plan.
        assert_eq!(run(Some("none needed: flag off")).decision, Decision::Pass);
    }
}
