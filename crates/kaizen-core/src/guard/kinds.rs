//! `blocked_kinds`: intervention and edit kinds that are never applied.

use super::text::verdict;
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::intervention::Candidate;

/// Blocks a candidate whose kind, or any of whose edits' kind (`config_set`, `file_write`), is in
/// [`GuardPolicy::blocked_kinds`](super::GuardPolicy::blocked_kinds). Kinds compare trimmed and
/// ASCII-case-insensitively.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockedKinds;

impl Guard for BlockedKinds {
    fn name(&self) -> &'static str {
        "blocked_kinds"
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let blocked = &ctx.policy.blocked_kinds;
        let is_blocked = |kind: &str| {
            blocked
                .iter()
                .any(|b| b.trim().eq_ignore_ascii_case(kind.trim()))
        };
        let mut hits = Vec::new();
        if is_blocked(&candidate.kind) {
            hits.push(format!("candidate kind `{}`", candidate.kind));
        }
        for (i, edit) in candidate.change.iter().enumerate() {
            if is_blocked(edit.kind()) {
                hits.push(format!("edit {} `{}` ({})", i + 1, edit.kind(), edit));
            }
        }
        let mut kinds: Vec<&str> = candidate.change.iter().map(|e| e.kind()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        if hits.is_empty() {
            let listed = if blocked.is_empty() {
                "none configured".to_string()
            } else {
                blocked.join(", ")
            };
            Ok(verdict(
                self.name(),
                Decision::Pass,
                format!(
                    "kind `{}` and edit kinds [{}] are not blocked (blocked_kinds: {listed})",
                    candidate.kind,
                    kinds.join(", ")
                ),
            ))
        } else {
            Ok(verdict(
                self.name(),
                Decision::Block,
                format!(
                    "{} in guards.blocked_kinds [{}]",
                    hits.join("; "),
                    blocked.join(", ")
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

    fn run(c: &Candidate, blocked: &[&str]) -> GuardVerdict {
        let view = LedgerView::default();
        let policy = GuardPolicy {
            blocked_kinds: blocked.iter().map(|s| s.to_string()).collect(),
            ..GuardPolicy::default()
        };
        BlockedKinds
            .check(c, &ctx_at(&view, &policy, t0()))
            .unwrap()
    }

    #[test]
    fn passes_when_nothing_matches() {
        let v = run(&cand("cache"), &["file_write", "restart"]);
        assert_eq!(v.decision, Decision::Pass, "{}", v.reason);
        assert!(v.reason.contains("config_set"), "{}", v.reason);
        let v = run(&cand("cache"), &[]);
        assert_eq!(v.decision, Decision::Pass);
        assert!(v.reason.contains("none configured"));
    }

    #[test]
    fn blocks_the_candidate_kind() {
        let c = Candidate {
            kind: "restart_service".into(),
            ..cand("cache")
        };
        let v = run(&c, &["Restart_Service"]);
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason.contains("candidate kind `restart_service`"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn blocks_an_edit_kind() {
        let c = cand_with(
            "cache",
            vec![set("config/app.yaml", "a"), write("scripts/run.sh")],
        );
        let v = run(&c, &["file_write"]);
        assert_eq!(v.decision, Decision::Block);
        assert!(v.reason.contains("edit 2 `file_write`"), "{}", v.reason);
        assert!(v.reason.contains("scripts/run.sh"), "{}", v.reason);
    }
}
