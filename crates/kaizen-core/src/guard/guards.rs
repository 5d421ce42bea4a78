//! The built-in guards, the default chain, and the ledger summaries proposers read
//! ([`active_freezes`], [`budget_left`]).
//!
//! Each guard lives in its own module next to this one and is re-exported here:
//!
//! | name             | type               | blocks when                                                    |
//! | ---------------- | ------------------ | -------------------------------------------------------------- |
//! | `well_formed`    | [`WellFormed`]     | confidence outside 0..=1, no edits, > 50 edits, empty title/area |
//! | `blocked_paths`  | [`BlockedPaths`]   | a path leaves the repo (`..`, absolute, symlink) or matches a blocked glob |
//! | `blocked_kinds`  | [`BlockedKinds`]   | the candidate's or an edit's kind is listed                    |
//! | `rollback`       | [`RollbackPlan`]   | no usable rollback plan (`none`, `tbd`, ...)                   |
//! | `freeze`         | [`AreaFreeze`]     | the area's last N finalized interventions were all reverted, recently |
//! | `dedup`          | [`Dedup`]          | same area + overlapping target as a live or recent intervention |
//! | `daily_budget`   | [`DailyBudget`]    | the rolling-24h apply budget is used up                         |
//! | `max_concurrent` | [`MaxConcurrent`]  | too many interventions await validation                        |
//! | `canary`         | [`CanaryRequired`] | (backlog) risk needs a canary the area lacks                   |
//! | `envelope`       | [`EnvelopeGuard`]  | outside the declared tunables (bounds, step, invariant, strict) — only in the chain when tunables are declared |

use super::freeze::ids_oldest_first;
use super::{Guard, GuardPolicy, LedgerView};
use crate::intervention::InterventionId;
use crate::propose::Freeze;
use chrono::{DateTime, Utc};

pub use super::budget::DailyBudget;
pub use super::canary::CanaryRequired;
pub use super::concurrent::MaxConcurrent;
pub use super::dedup::Dedup;
pub use super::envelope::EnvelopeGuard;
pub use super::freeze::AreaFreeze;
pub use super::kinds::BlockedKinds;
pub use super::paths::{BlockedPaths, PathProblem, normalize_repo_path};
pub use super::rollback::RollbackPlan;
pub use super::well_formed::{MAX_EDITS, WellFormed};

/// Every built-in guard, in a fixed order: checks of the candidate alone first (shape, paths,
/// kinds, rollback plan), then history (freeze, dedup), then capacity (budget, concurrency), then
/// the canary requirement (the only guard that answers `Backlog`).
///
/// All of them always run (see [`run_chain`](super::run_chain)), so the order only decides how
/// verdicts are listed.
pub fn default_chain() -> Vec<Box<dyn Guard>> {
    vec![
        Box::new(WellFormed),
        Box::new(BlockedPaths),
        Box::new(BlockedKinds),
        Box::new(RollbackPlan),
        Box::new(AreaFreeze),
        Box::new(Dedup),
        Box::new(DailyBudget),
        Box::new(MaxConcurrent),
        Box::new(CanaryRequired),
    ]
}

/// [`default_chain`] plus the `envelope` guard when tunables are declared.
pub fn chain_for(
    envelope: Option<&std::sync::Arc<crate::tunables::Envelope>>,
) -> Vec<Box<dyn Guard>> {
    let mut chain = default_chain();
    if let Some(env) = envelope {
        chain.push(Box::new(EnvelopeGuard::new(env.clone())));
    }
    chain
}

/// Every area frozen at `now`, sorted by area name: the same rule the `freeze` guard enforces,
/// for every area that appears in `view`.
///
/// Each [`Freeze::reason`] reads like "3 consecutive rollbacks: K-000004, K-000005, K-000006"
/// (ids oldest first).
pub fn active_freezes(view: &LedgerView, policy: &GuardPolicy, now: DateTime<Utc>) -> Vec<Freeze> {
    let mut areas: Vec<&str> = view
        .interventions
        .iter()
        .map(|iv| iv.candidate.area.as_str())
        .chain(view.finalized.iter().map(|f| f.area.as_str()))
        .collect();
    areas.sort_unstable();
    areas.dedup();
    areas
        .into_iter()
        .filter_map(|area| {
            let state = super::freeze::area_state(view, policy, area, now);
            state.frozen_until.map(|until| Freeze {
                area: area.to_string(),
                until,
                reason: format!(
                    "{} consecutive rollbacks: {}",
                    state.last.len(),
                    ids_oldest_first(&state.last)
                ),
            })
        })
        .collect()
}

/// How many more interventions the daily budget allows at `now` (0 when it is used up).
///
/// Counts every intervention applied in the rolling 24 h before `now`, whatever became of it
/// since (validated and reverted ones used their slot too).
pub fn budget_left(view: &LedgerView, policy: &GuardPolicy, now: DateTime<Utc>) -> u32 {
    let used = super::budget::applied_in_last_24h(view, now).len();
    policy
        .daily_budget
        .saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
}

impl LedgerView {
    /// The same view without intervention `id`.
    ///
    /// Guards must not see the candidate they judge: when re-guarding an intervention that is
    /// already recorded (a `proposed` one a human applies, a `backlog` one whose area gained a
    /// canary), pass `view.excluding(id)`, or `dedup` would find it a duplicate of itself.
    pub fn excluding(&self, id: InterventionId) -> LedgerView {
        LedgerView {
            interventions: self
                .interventions
                .iter()
                .filter(|iv| iv.id != id)
                .cloned()
                .collect(),
            finalized: self
                .finalized
                .iter()
                .filter(|f| f.id != id)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Decision, GuardContext, GuardError, GuardVerdict, overall, run_chain};
    use super::*;
    use crate::intervention::{Candidate, Risk, Status};
    use chrono::Duration;

    #[test]
    fn default_chain_has_every_guard_once_in_fixed_order() {
        let names: Vec<&str> = default_chain().iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [
                "well_formed",
                "blocked_paths",
                "blocked_kinds",
                "rollback",
                "freeze",
                "dedup",
                "daily_budget",
                "max_concurrent",
                "canary"
            ]
        );
    }

    #[test]
    fn clean_candidate_passes_the_whole_chain_in_a_real_repo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(
            dir.path().join("config/app.yaml"),
            "cache:\n  size_mb: 64\n",
        )
        .unwrap();
        let view = LedgerView::default();
        let policy = GuardPolicy::default();
        let ctx = GuardContext {
            view: &view,
            policy: &policy,
            now: t0(),
            repo_root: dir.path(),
        };
        let verdicts = run_chain(&default_chain(), &cand("cache"), &ctx);
        assert_eq!(verdicts.len(), 9);
        for v in &verdicts {
            assert_eq!(v.decision, Decision::Pass, "{v:?}");
            assert!(!v.reason.is_empty());
        }
        assert_eq!(overall(&verdicts).0, Decision::Pass);
    }

    #[test]
    fn chain_reports_every_verdict_and_backlogs_risky_change_without_canary() {
        let dir = tempfile::tempdir().unwrap();
        let view = LedgerView::default();
        let policy = GuardPolicy::default();
        let ctx = GuardContext {
            view: &view,
            policy: &policy,
            now: t0(),
            repo_root: dir.path(),
        };
        let c = Candidate {
            risk: Risk::High,
            ..cand("db")
        };
        let verdicts = run_chain(&default_chain(), &c, &ctx);
        let (d, reason) = overall(&verdicts);
        assert_eq!(d, Decision::Backlog);
        assert!(reason.starts_with("canary: "), "{reason}");
    }

    struct Broken;
    impl Guard for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn check(&self, _: &Candidate, _: &GuardContext<'_>) -> Result<GuardVerdict, GuardError> {
            Err(GuardError {
                guard: "broken".into(),
                message: "ledger view unreadable".into(),
            })
        }
    }

    #[test]
    fn a_guard_error_becomes_a_block() {
        let view = LedgerView::default();
        let policy = GuardPolicy::default();
        let ctx = ctx_at(&view, &policy, t0());
        let chain: Vec<Box<dyn Guard>> = vec![Box::new(RollbackPlan), Box::new(Broken)];
        let verdicts = run_chain(&chain, &cand("cache"), &ctx);
        assert_eq!(verdicts[0].decision, Decision::Pass);
        assert_eq!(verdicts[1].decision, Decision::Block);
        assert_eq!(verdicts[1].guard, "broken");
        assert!(verdicts[1].reason.contains("fail closed"));
        assert!(verdicts[1].reason.contains("ledger view unreadable"));
        assert_eq!(overall(&verdicts).0, Decision::Block);
    }

    #[test]
    fn a_bad_glob_in_the_chain_blocks_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let view = LedgerView::default();
        let policy = GuardPolicy {
            blocked_paths: vec!["config/[".into()],
            ..GuardPolicy::default()
        };
        let ctx = GuardContext {
            view: &view,
            policy: &policy,
            now: t0(),
            repo_root: dir.path(),
        };
        let verdicts = run_chain(&default_chain(), &cand("cache"), &ctx);
        let v = verdicts
            .iter()
            .find(|v| v.guard == "blocked_paths")
            .unwrap();
        assert_eq!(v.decision, Decision::Block);
        assert!(v.reason.contains("config/["), "{}", v.reason);
    }

    #[test]
    fn budget_left_counts_down_and_recovers() {
        let policy = GuardPolicy::default(); // budget 5
        let now = t0();
        let view = LedgerView {
            interventions: (1..=3)
                .map(|i| applied(i, "cache", now - Duration::hours(i * 5)))
                .collect(),

            ..Default::default()
        };
        assert_eq!(budget_left(&view, &policy, now), 2);
        // K-3 was applied 15h ago: it leaves the window 9h later.
        assert_eq!(budget_left(&view, &policy, now + Duration::hours(9)), 3);
        assert_eq!(budget_left(&view, &policy, now + Duration::hours(30)), 5);
        let full = LedgerView {
            interventions: (1..=7)
                .map(|i| applied(i, "cache", now - Duration::minutes(i)))
                .collect(),

            ..Default::default()
        };
        assert_eq!(budget_left(&full, &policy, now), 0);
    }

    #[test]
    fn active_freezes_lists_frozen_areas_only() {
        let now = t0();
        let policy = GuardPolicy::default(); // 3 rollbacks, 24h
        let mut ivs = Vec::new();
        for i in 1..=3 {
            ivs.push(finalized(
                i,
                "cache",
                Status::Reverted,
                now - Duration::hours(4 - i),
            ));
        }
        ivs.push(finalized(
            4,
            "api",
            Status::Reverted,
            now - Duration::hours(1),
        ));
        ivs.push(finalized(
            5,
            "api",
            Status::Reverted,
            now - Duration::hours(2),
        ));
        ivs.push(finalized(
            6,
            "api",
            Status::Validated,
            now - Duration::hours(3),
        ));
        ivs.push(finalized(
            7,
            "api",
            Status::Reverted,
            now - Duration::hours(4),
        ));
        let view = LedgerView {
            interventions: ivs,
            ..Default::default()
        };
        let freezes = active_freezes(&view, &policy, now);
        assert_eq!(freezes.len(), 1, "{freezes:?}");
        assert_eq!(freezes[0].area, "cache");
        assert_eq!(
            freezes[0].until,
            now - Duration::hours(1) + Duration::hours(24)
        );
        assert_eq!(
            freezes[0].reason,
            "3 consecutive rollbacks: K-000001, K-000002, K-000003"
        );
        // The newest rollback (K-3) was 1h ago: the freeze ends 23h from now.
        assert_eq!(
            active_freezes(&view, &policy, now + Duration::hours(22)).len(),
            1
        );
        assert!(active_freezes(&view, &policy, now + Duration::hours(23)).is_empty());
    }

    #[test]
    fn excluding_drops_only_that_id() {
        let view = LedgerView {
            interventions: vec![
                iv(1, "cache", Status::Proposed),
                iv(2, "cache", Status::Applied),
            ],

            ..Default::default()
        };
        let v = view.excluding(InterventionId(1));
        assert_eq!(v.interventions.len(), 1);
        assert_eq!(v.interventions[0].id, InterventionId(2));
    }
}
