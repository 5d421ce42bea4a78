//! `daily_budget`: at most N interventions applied in any rolling 24 hours.

use super::text::{id_list, ts, verdict};
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict, LedgerView};
use crate::intervention::{Candidate, Intervention};
use chrono::{DateTime, Duration, Utc};

/// Interventions applied in the rolling 24 h before `now` — `applied_at` in (now − 24h, now] —
/// whatever their status since, oldest first.
///
/// An `applied_at` after `now` (the clock went backwards) counts too: fail closed.
pub(crate) fn applied_in_last_24h(view: &LedgerView, now: DateTime<Utc>) -> Vec<&Intervention> {
    let from = now - Duration::hours(24);
    let mut hits: Vec<&Intervention> = view
        .interventions
        .iter()
        .filter(|iv| iv.applied_at.is_some_and(|t| t > from))
        .collect();
    hits.sort_by_key(|iv| (iv.applied_at, iv.id));
    hits
}

/// Blocks when [`daily_budget`](super::GuardPolicy::daily_budget) interventions or more were
/// applied in the rolling 24 h before now (validated and reverted ones included); the reason
/// names them and when the next slot frees.
#[derive(Debug, Clone, Copy, Default)]
pub struct DailyBudget;

impl Guard for DailyBudget {
    fn name(&self) -> &'static str {
        "daily_budget"
    }

    fn check(
        &self,
        _candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let budget = ctx.policy.daily_budget as usize;
        let used = applied_in_last_24h(ctx.view, ctx.now);
        let n = used.len();
        if n < budget {
            let which = if used.is_empty() {
                String::new()
            } else {
                format!(" ({})", id_list(used.iter().copied()))
            };
            return Ok(verdict(
                self.name(),
                Decision::Pass,
                format!(
                    "{n} of daily budget {budget} applied in the last 24h{which}; {} left",
                    budget - n
                ),
            ));
        }
        // The slot frees when the count drops below the budget: when the (n − budget + 1)-th
        // oldest leaves the window, 24h after it was applied.
        let next = used
            .get(n - budget)
            .and_then(|iv| iv.applied_at)
            .map(|t| format!("; next slot at {}", ts(t + Duration::hours(24))))
            .unwrap_or_default();
        Ok(verdict(
            self.name(),
            Decision::Block,
            format!(
                "daily budget {budget} used: {} applied in the last 24h{next}",
                id_list(used.iter().copied())
            ),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::GuardPolicy;
    use super::super::testutil::*;
    use super::*;
    use crate::intervention::Status;

    fn run(ivs: Vec<Intervention>, budget: u32, now: DateTime<Utc>) -> GuardVerdict {
        let view = LedgerView {
            interventions: ivs,
            ..Default::default()
        };
        let policy = GuardPolicy {
            daily_budget: budget,
            ..GuardPolicy::default()
        };
        DailyBudget
            .check(&cand("cache"), &ctx_at(&view, &policy, now))
            .unwrap()
    }

    #[test]
    fn passes_below_budget() {
        let now = t0();
        let ivs = vec![
            applied(1, "a", now - Duration::hours(1)),
            applied(2, "b", now - Duration::hours(2)),
        ];
        let v = run(ivs, 3, now);
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(
            v.reason,
            "2 of daily budget 3 applied in the last 24h (K-000002, K-000001); 1 left"
        );
        let v = run(vec![], 5, now);
        assert_eq!(
            v.reason,
            "0 of daily budget 5 applied in the last 24h; 5 left"
        );
    }

    #[test]
    fn blocks_exactly_at_budget_counting_any_applied_status() {
        let now = t0();
        let ivs = vec![
            applied(3, "a", now - Duration::hours(1)),
            finalized(2, "a", Status::Reverted, now - Duration::hours(2)), // applied 3h ago
            finalized(1, "b", Status::Validated, now - Duration::hours(4)), // applied 5h ago
            // Never applied, or applied too long ago: not counted.
            iv(7, "a", Status::Blocked),
            iv(8, "a", Status::Backlog),
            finalized(9, "a", Status::Validated, now - Duration::hours(30)),
        ];
        let v = run(ivs.clone(), 3, now);
        assert_eq!(v.decision, Decision::Block);
        assert_eq!(
            v.reason,
            "daily budget 3 used: K-000001, K-000002, K-000003 applied in the last 24h; \
             next slot at 2026-11-06T07:00:00Z"
        );
        // One more slot and it passes.
        assert_eq!(run(ivs, 4, now).decision, Decision::Pass);
    }

    #[test]
    fn rolling_window_edges() {
        let now = t0();
        // Applied exactly 24h ago: out of the window (now−24h, now].
        let edge = vec![applied(1, "a", now - Duration::hours(24))];
        assert_eq!(run(edge, 1, now).decision, Decision::Pass);
        // One second inside: counted; frees one second later.
        let inside = vec![applied(
            1,
            "a",
            now - Duration::hours(24) + Duration::seconds(1),
        )];
        let v = run(inside.clone(), 1, now);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason.ends_with("next slot at 2026-11-05T12:00:01Z"),
            "{}",
            v.reason
        );
        assert_eq!(
            run(inside, 1, now + Duration::seconds(1)).decision,
            Decision::Pass
        );
    }

    #[test]
    fn over_budget_next_slot_waits_for_enough_to_expire() {
        let now = t0();
        let ivs: Vec<_> = (1..=4)
            .map(|i| applied(i, "a", now - Duration::hours(10 - i)))
            .collect();
        // 4 used of 2: three must leave to get below the budget; the third oldest (K-3, applied
        // 7h ago) leaves at +17h.
        let v = run(ivs.clone(), 2, now);
        assert!(
            v.reason.ends_with("next slot at 2026-11-06T05:00:00Z"),
            "{}",
            v.reason
        );
        assert_eq!(
            run(
                ivs.clone(),
                2,
                now + Duration::hours(17) - Duration::seconds(1)
            )
            .decision,
            Decision::Block
        );
        assert_eq!(
            run(ivs, 2, now + Duration::hours(17)).decision,
            Decision::Pass
        );
    }

    #[test]
    fn future_applied_at_counts() {
        let now = t0();
        let v = run(vec![applied(1, "a", now + Duration::minutes(5))], 1, now);
        assert_eq!(v.decision, Decision::Block);
    }
}
