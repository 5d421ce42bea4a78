//! `freeze`: an area whose last N finalized interventions were all rolled back rests for a while.

use super::text::{human, ts, verdict};
use super::{
    Decision, Finalized, Guard, GuardContext, GuardError, GuardPolicy, GuardVerdict, LedgerView,
};
use crate::intervention::{Candidate, Status};
use chrono::{DateTime, Utc};

/// What the freeze rule sees for one area.
pub(crate) struct AreaState {
    /// The last `freeze_after_rollbacks` finalized interventions of the area it counts, newest
    /// first.
    pub last: Vec<Finalized>,
    /// The consecutive-rollback streak's freeze end, if the streak is complete (even if it lapsed).
    pub streak_until: Option<DateTime<Utc>>,
    /// `streak_until`, if it is still in the future.
    pub frozen_until: Option<DateTime<Utc>>,
}

/// `K-000001, K-000002, …` of facts given newest first, listed oldest first.
pub(crate) fn ids_oldest_first(newest_first: &[Finalized]) -> String {
    newest_first
        .iter()
        .rev()
        .map(|f| f.id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies the freeze rule to `area` at `now`, from the view's finalized facts and its whole
/// rows (either may hold an intervention; each counts once). `freeze_after_rollbacks` of 0 is
/// read as 1 (the strictest rule; the config refuses 0 anyway).
pub(crate) fn area_state(
    view: &LedgerView,
    policy: &GuardPolicy,
    area: &str,
    now: DateTime<Utc>,
) -> AreaState {
    let n = policy.freeze_after_rollbacks.max(1) as usize;
    let mut done: Vec<Finalized> = view
        .finalized
        .iter()
        .filter(|f| f.area == area)
        .cloned()
        .chain(
            view.interventions
                .iter()
                .filter(|iv| iv.candidate.area == area)
                .filter_map(Finalized::of),
        )
        .filter(|f| !f.judged_by_missing_data())
        .collect();
    done.sort_by_key(|f| std::cmp::Reverse((f.at, f.id)));
    done.dedup_by_key(|f| f.id);
    done.truncate(n);
    let streak_until = (done.len() == n && done.iter().all(|f| f.status == Status::Reverted))
        .then(|| {
            done.first()
                .map(|newest| policy.freeze_for.after(newest.at))
        })
        .flatten();
    AreaState {
        frozen_until: streak_until.filter(|until| now < *until),
        last: done,
        streak_until,
    }
}

/// Blocks candidates in an area whose last [`freeze_after_rollbacks`](GuardPolicy::freeze_after_rollbacks)
/// finalized interventions (validated or reverted, newest by `finalized_at`) were all reverted —
/// by validation or by hand — while the newest of those reverts is less than
/// [`freeze_for`](GuardPolicy::freeze_for) old. One validated intervention breaks the streak.
/// Reverts whose final verdict was `inconclusive` (the data, not the change, decided) are left
/// out.
#[derive(Debug, Clone, Copy, Default)]
pub struct AreaFreeze;

impl Guard for AreaFreeze {
    fn name(&self) -> &'static str {
        "freeze"
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let area = &candidate.area;
        let state = area_state(ctx.view, ctx.policy, area, ctx.now);
        let n = state.last.len();
        if let Some(until) = state.frozen_until {
            return Ok(verdict(
                self.name(),
                Decision::Block,
                format!(
                    "area `{area}` frozen until {} after {n} consecutive rollbacks ({}); {} left",
                    ts(until),
                    ids_oldest_first(&state.last),
                    human(until - ctx.now)
                ),
            ));
        }
        let reason = if let Some(ended) = state.streak_until {
            format!(
                "area `{area}` not frozen: the freeze after {n} consecutive rollbacks ({}) ended at {}",
                ids_oldest_first(&state.last),
                ts(ended)
            )
        } else if n == 0 {
            format!("area `{area}` not frozen: no finalized interventions")
        } else {
            let reverted = state
                .last
                .iter()
                .filter(|f| f.status == Status::Reverted)
                .count();
            format!(
                "area `{area}` not frozen: last {n} finalized: {reverted} reverted, {} validated \
                 (freeze needs {} consecutive rollbacks)",
                n - reverted,
                ctx.policy.freeze_after_rollbacks.max(1)
            )
        };
        Ok(verdict(self.name(), Decision::Pass, reason))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::intervention::Intervention;
    use chrono::Duration;

    fn run(ivs: Vec<Intervention>, now: DateTime<Utc>) -> GuardVerdict {
        let view = LedgerView {
            interventions: ivs,
            ..Default::default()
        };
        let policy = GuardPolicy::default(); // 3 rollbacks → 24h
        AreaFreeze
            .check(&cand("cache"), &ctx_at(&view, &policy, now))
            .unwrap()
    }

    fn h(x: i64) -> Duration {
        Duration::hours(x)
    }

    /// K-1..K-3 reverted in `cache` at t0−3h, t0−2h, t0−1h.
    fn three_reverts() -> Vec<Intervention> {
        (1..=3)
            .map(|i| finalized(i, "cache", Status::Reverted, t0() - h(4 - i)))
            .collect()
    }

    #[test]
    fn three_consecutive_rollbacks_freeze_the_area() {
        let v = run(three_reverts(), t0());
        assert_eq!(v.decision, Decision::Block);
        assert_eq!(
            v.reason,
            "area `cache` frozen until 2026-11-06T11:00:00Z after 3 consecutive rollbacks \
             (K-000001, K-000002, K-000003); 23h left"
        );
    }

    #[test]
    fn other_areas_are_not_frozen() {
        let ivs: Vec<_> = (1..=3)
            .map(|i| finalized(i, "api", Status::Reverted, t0() - h(i)))
            .collect();
        let v = run(ivs, t0());
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(
            v.reason,
            "area `cache` not frozen: no finalized interventions"
        );
    }

    #[test]
    fn freeze_expires_exactly_at_freeze_for() {
        let newest = t0() - h(1);
        let just_before = newest + h(24) - Duration::seconds(1);
        assert_eq!(run(three_reverts(), just_before).decision, Decision::Block);
        let v = run(three_reverts(), newest + h(24));
        assert_eq!(v.decision, Decision::Pass);
        assert!(
            v.reason.contains("ended at 2026-11-06T11:00:00Z"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn a_validated_in_between_breaks_the_streak() {
        let now = t0();
        let ivs = vec![
            finalized(1, "cache", Status::Reverted, now - h(3)),
            finalized(2, "cache", Status::Validated, now - h(2)),
            finalized(3, "cache", Status::Reverted, now - h(1)),
            finalized(0, "cache", Status::Reverted, now - h(9)), // older than the last 3
        ];
        let v = run(ivs, now);
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(
            v.reason,
            "area `cache` not frozen: last 3 finalized: 2 reverted, 1 validated \
             (freeze needs 3 consecutive rollbacks)"
        );
    }

    #[test]
    fn a_validated_after_three_reverts_unfreezes() {
        let mut ivs = three_reverts();
        ivs.push(finalized(
            4,
            "cache",
            Status::Validated,
            t0() - Duration::minutes(10),
        ));
        assert_eq!(run(ivs, t0()).decision, Decision::Pass);
    }

    #[test]
    fn fewer_rollbacks_than_the_threshold_do_not_freeze() {
        let ivs = three_reverts().into_iter().skip(1).collect();
        let v = run(ivs, t0());
        assert_eq!(v.decision, Decision::Pass);
        assert!(
            v.reason.contains("last 2 finalized: 2 reverted"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn order_is_by_finalized_at_not_id_and_manual_reverts_count() {
        let now = t0();
        // K-9 was validated long ago though its id is highest; a validated-then-manually-reverted
        // intervention (status reverted, finalized at the revert) counts as a rollback.
        let mut manual = finalized(5, "cache", Status::Reverted, now - h(1));
        manual.outcome = Some(crate::intervention::Outcome::Validated);
        let ivs = vec![
            finalized(9, "cache", Status::Validated, now - h(48)),
            finalized(3, "cache", Status::Reverted, now - h(3)),
            finalized(4, "cache", Status::Reverted, now - h(2)),
            manual,
            applied(10, "cache", now), // still applied: not finalized, not counted
        ];
        let v = run(ivs, now);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason.contains("(K-000003, K-000004, K-000005)"),
            "{}",
            v.reason
        );
    }
}
