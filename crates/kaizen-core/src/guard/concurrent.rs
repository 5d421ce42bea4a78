//! `max_concurrent`: at most N interventions awaiting validation at once.

use super::text::{ts, verdict};
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::intervention::{Candidate, Intervention, Status};

/// Blocks when [`max_concurrent`](super::GuardPolicy::max_concurrent) interventions or more are
/// `applied` (committed, not yet validated or reverted): their effects would be confounded.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxConcurrent;

impl Guard for MaxConcurrent {
    fn name(&self) -> &'static str {
        "max_concurrent"
    }

    fn check(
        &self,
        _candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let max = ctx.policy.max_concurrent as usize;
        let mut open: Vec<&Intervention> = ctx
            .view
            .interventions
            .iter()
            .filter(|iv| iv.status == Status::Applied)
            .collect();
        open.sort_by_key(|iv| iv.id);
        let n = open.len();
        let list = open
            .iter()
            .map(|iv| match iv.due_at {
                Some(due) => format!("{} (area `{}`, due {})", iv.id, iv.candidate.area, ts(due)),
                None => format!("{} (area `{}`)", iv.id, iv.candidate.area),
            })
            .collect::<Vec<_>>()
            .join(", ");
        if n < max {
            let which = if open.is_empty() {
                String::new()
            } else {
                format!(": {list}")
            };
            Ok(verdict(
                self.name(),
                Decision::Pass,
                format!("{n} of max {max} interventions awaiting validation{which}"),
            ))
        } else {
            Ok(verdict(
                self.name(),
                Decision::Block,
                format!(
                    "{n} of max {max} interventions already applied and awaiting validation: {list}"
                ),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{GuardPolicy, LedgerView};
    use super::*;
    use chrono::Duration;

    fn run(ivs: Vec<Intervention>, max: u32) -> GuardVerdict {
        let view = LedgerView {
            interventions: ivs,
            ..Default::default()
        };
        let policy = GuardPolicy {
            max_concurrent: max,
            ..GuardPolicy::default()
        };
        MaxConcurrent
            .check(&cand("cache"), &ctx_at(&view, &policy, t0()))
            .unwrap()
    }

    #[test]
    fn passes_below_max_ignoring_finalized() {
        let now = t0();
        let ivs = vec![
            applied(1, "cache", now - Duration::hours(1)),
            finalized(2, "cache", Status::Validated, now),
            finalized(3, "api", Status::Reverted, now),
            iv(4, "api", Status::Proposed),
        ];
        let v = run(ivs, 2);
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(
            v.reason,
            "1 of max 2 interventions awaiting validation: K-000001 (area `cache`, due 2026-11-05T12:00:00Z)"
        );
    }

    #[test]
    fn blocks_at_max() {
        let now = t0();
        let ivs = vec![
            applied(2, "api", now),
            applied(1, "cache", now - Duration::hours(1)),
        ];
        let v = run(ivs, 2);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason
                .starts_with("2 of max 2 interventions already applied"),
            "{}",
            v.reason
        );
        assert!(v.reason.contains("K-000001 (area `cache`"), "{}", v.reason);
        assert!(v.reason.contains("K-000002 (area `api`"), "{}", v.reason);
    }
}
