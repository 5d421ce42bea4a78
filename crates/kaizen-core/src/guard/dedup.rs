//! `dedup`: do not propose the same change to the same thing twice at once (one live
//! intervention per target key, whatever its area).

use super::paths::normalize_repo_path;
use super::text::{human, ts, verdict};
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::edit::Edit;
use crate::intervention::{Candidate, Intervention, Status};

/// Blocks a candidate with an overlapping change target as an intervention that is currently
/// `applied` (in any area), or, in the same area, was applied within
/// [`dedup_window`](super::GuardPolicy::dedup_window) (whatever became of it), is `backlog`
/// and was created within it, or is `proposed` (awaiting approval, however long ago).
///
/// Targets overlap when they are the same file (compared after lexical normalisation) and either
/// one writes the whole file or their keys are equal or nested (`cache` and `cache.size_mb`).
/// Windows are half-open: something exactly `dedup_window` old no longer counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dedup;

/// The file and (for `config_set`) key an edit targets.
fn parts(e: &Edit) -> (String, Option<&str>) {
    let file = normalize_repo_path(e.file()).unwrap_or_else(|_| e.file().trim().to_string());
    match e {
        Edit::ConfigSet { key, .. } => (file, Some(key.as_str())),
        Edit::FileWrite { .. } => (file, None),
    }
}

fn nested(a: &str, b: &str) -> bool {
    a == b
        || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('.'))
        || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('.'))
}

/// Whether two edits touch the same thing.
pub(crate) fn overlaps(a: &Edit, b: &Edit) -> bool {
    let (fa, ka) = parts(a);
    let (fb, kb) = parts(b);
    fa == fb
        && match (ka, kb) {
            (Some(ka), Some(kb)) => nested(ka, kb),
            _ => true,
        }
}

impl Guard for Dedup {
    fn name(&self) -> &'static str {
        "dedup"
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let window = ctx.policy.dedup_window;
        let since = window.before(ctx.now);
        let mut dups = Vec::new();
        for other in &ctx.view.interventions {
            // Within an area, live or recent; across areas, live (applied, awaiting
            // validation): two areas changing one key at once confound both validations, and
            // the later revert of one would be a no-op.
            let same_area = other.candidate.area == candidate.area;
            let why = if same_area {
                live_reason(other, since, ctx.now)
            } else if other.status == Status::Applied {
                live_reason(other, since, ctx.now)
                    .map(|w| format!("area `{}`, {w}", other.candidate.area))
            } else {
                None
            };
            let Some(why) = why else {
                continue;
            };
            let mut shared: Vec<String> = Vec::new();
            for mine in &candidate.change {
                for theirs in &other.candidate.change {
                    if overlaps(mine, theirs) {
                        let (m, t) = (mine.target(), theirs.target());
                        shared.push(if m == t { m } else { format!("{m} vs {t}") });
                    }
                }
            }
            if shared.is_empty() {
                continue;
            }
            shared.sort();
            shared.dedup();
            dups.push(format!("{} ({why}) on {}", other.id, shared.join(", ")));
        }
        let area = &candidate.area;
        if dups.is_empty() {
            Ok(verdict(
                self.name(),
                Decision::Pass,
                format!(
                    "no live or recent (within {window}) intervention in area `{area}` touches {}",
                    candidate.targets().join(", ")
                ),
            ))
        } else {
            Ok(verdict(
                self.name(),
                Decision::Block,
                format!(
                    "duplicate in area `{area}` (dedup window {window}): {}",
                    dups.join("; ")
                ),
            ))
        }
    }
}

/// Why `other` still counts for dedup at `now`, or `None`.
fn live_reason(
    other: &Intervention,
    since: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    if other.status == Status::Applied {
        return Some(match other.applied_at {
            Some(t) => format!("applied at {}, awaiting validation", ts(t)),
            None => "applied, awaiting validation".to_string(),
        });
    }
    if other.status == Status::Proposed {
        // Waiting for a human's `kaizen apply` (manual mode, or a proposer below the
        // confidence threshold) for as long as it takes: the same change proposed again is the
        // same question, not a new one (an interrupted cycle's leftovers are reconciled to
        // `blocked` before any guard runs).
        return Some(format!(
            "proposed since {}, {} ago, awaiting approval",
            ts(other.created_at),
            human(now - other.created_at)
        ));
    }
    if let Some(t) = other.applied_at.filter(|t| *t > since) {
        return Some(format!(
            "{}, applied {} ago at {}",
            other.status,
            human(now - t),
            ts(t)
        ));
    }
    if matches!(other.status, Status::Backlog | Status::Proposed) && other.created_at > since {
        return Some(format!(
            "{} since {}, {} ago",
            other.status,
            ts(other.created_at),
            human(now - other.created_at)
        ));
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{GuardPolicy, LedgerView};
    use super::*;
    use chrono::{DateTime, Duration, Utc};

    fn run(c: &Candidate, ivs: Vec<Intervention>, now: DateTime<Utc>) -> GuardVerdict {
        let view = LedgerView {
            interventions: ivs,
            ..Default::default()
        };
        let policy = GuardPolicy::default(); // dedup window 2h
        Dedup.check(c, &ctx_at(&view, &policy, now)).unwrap()
    }

    #[test]
    fn blocks_same_target_while_applied_even_long_ago() {
        let now = t0();
        let v = run(
            &cand("cache"),
            vec![applied(7, "cache", now - Duration::days(3))],
            now,
        );
        assert_eq!(v.decision, Decision::Block);
        assert_eq!(
            v.reason,
            "duplicate in area `cache` (dedup window 2h): K-000007 (applied at 2026-11-02T12:00:00Z, \
             awaiting validation) on config/app.yaml#cache.size_mb"
        );
    }

    #[test]
    fn issue9_8_blocks_a_key_live_in_another_area_but_not_its_history() {
        let now = t0();
        let v = run(&cand("memory"), vec![applied(7, "cache", now)], now);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason.contains("K-000007 (area `cache`, applied at"),
            "{}",
            v.reason
        );
        // Finalized or parked in another area: that area's business, not a live change.
        let done = finalized(7, "cache", Status::Reverted, now);
        assert_eq!(
            run(&cand("memory"), vec![done], now).decision,
            Decision::Pass
        );
        let parked = Intervention {
            created_at: now,
            ..iv(8, "cache", Status::Backlog)
        };
        assert_eq!(
            run(&cand("memory"), vec![parked], now).decision,
            Decision::Pass
        );
    }

    #[test]
    fn passes_other_target_or_a_finished_other_area() {
        let now = t0();
        let v = run(
            &cand("cache"),
            vec![finalized(7, "api", Status::Validated, now)],
            now,
        );
        assert_eq!(v.decision, Decision::Pass);
        assert_eq!(
            v.reason,
            "no live or recent (within 2h) intervention in area `cache` touches config/app.yaml#cache.size_mb"
        );
        let other = cand_with("cache", vec![set("config/app.yaml", "cache.ttl_s")]);
        assert_eq!(
            run(&other, vec![applied(7, "cache", now)], now).decision,
            Decision::Pass
        );
        // A key that only shares a prefix string is not nested.
        let other = cand_with("cache", vec![set("config/app.yaml", "cache.size_mb_max")]);
        assert_eq!(
            run(&other, vec![applied(7, "cache", now)], now).decision,
            Decision::Pass
        );
    }

    #[test]
    fn nested_keys_whole_file_writes_and_spelled_paths_overlap() {
        let now = t0();
        let parent = cand_with("cache", vec![set("./config/app.yaml", "cache")]);
        let v = run(&parent, vec![applied(7, "cache", now)], now);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason
                .contains("./config/app.yaml#cache vs config/app.yaml#cache.size_mb"),
            "{}",
            v.reason
        );
        let whole = cand_with("cache", vec![write("config/app.yaml")]);
        assert_eq!(
            run(&whole, vec![applied(7, "cache", now)], now).decision,
            Decision::Block
        );
    }

    #[test]
    fn finalized_counts_only_within_window_of_apply() {
        let now = t0();
        let recent = Intervention {
            applied_at: Some(now - Duration::minutes(119)),
            finalized_at: Some(now - Duration::minutes(5)),
            ..iv(3, "cache", Status::Reverted)
        };
        let v = run(&cand("cache"), vec![recent.clone()], now);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason
                .contains("K-000003 (reverted, applied 119m ago at 2026-11-05T10:01:00Z)"),
            "{}",
            v.reason
        );
        // Exactly at the window edge: no longer a duplicate.
        let edge = Intervention {
            applied_at: Some(now - Duration::hours(2)),
            ..recent
        };
        assert_eq!(
            run(&cand("cache"), vec![edge], now).decision,
            Decision::Pass
        );
    }

    #[test]
    fn backlog_counts_within_window_of_creation_proposed_until_decided() {
        let now = t0();
        let fresh = Intervention {
            created_at: now - Duration::minutes(30),
            ..iv(4, "cache", Status::Backlog)
        };
        let v = run(&cand("cache"), vec![fresh.clone()], now);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason
                .contains("K-000004 (backlog since 2026-11-05T11:30:00Z, 30m ago)"),
            "{}",
            v.reason
        );
        let edge = Intervention {
            created_at: now - Duration::hours(2),
            ..fresh
        };
        assert_eq!(
            run(&cand("cache"), vec![edge], now).decision,
            Decision::Pass
        );
        // A proposal awaiting approval is the same question however long it has waited.
        let waiting = Intervention {
            created_at: now - Duration::hours(30),
            ..iv(6, "cache", Status::Proposed)
        };
        let v = run(&cand("cache"), vec![waiting], now);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason.contains(
                "K-000006 (proposed since 2026-11-04T06:00:00Z, 30h ago, awaiting approval)"
            ),
            "{}",
            v.reason
        );
        // Blocked ones never count.
        let blocked = Intervention {
            created_at: now - Duration::minutes(1),
            ..iv(5, "cache", Status::Blocked)
        };
        assert_eq!(
            run(&cand("cache"), vec![blocked], now).decision,
            Decision::Pass
        );
    }
}
