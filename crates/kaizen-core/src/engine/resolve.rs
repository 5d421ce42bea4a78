//! Resolve: before the guards see a candidate, its `config_set` values are made concrete against
//! the branch tip (`*1.5` on 128 → 192, never clamped) and what each replaces is recorded, so
//! the guards, the commit and `kaizen show` all speak of the same old → new. A change the
//! repository already holds is `already_applied`: recorded as an event, never a commit, never
//! an intervention (so it spends no budget).

use super::{CycleReport, Engine, EngineError};
use crate::clock::Clock;
use crate::edit::{Edit, resolve_all};
use crate::event::EngineEvent;
use crate::guard::guards::BlockedPaths;
use crate::guard::{Decision, Guard, GuardContext, LedgerView};
use crate::intervention::Candidate;

/// What resolving a candidate found.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Concrete values, `origin.resolved` filled in.
    Ready(Candidate),
    /// Every edit sets a value the repository already holds.
    AlreadyApplied(Candidate),
    /// The change cannot be computed (a relative value on a missing or non-numeric key, an
    /// unreadable file); the candidate is returned as proposed, with the reason. It is blocked.
    Unresolvable(Candidate, String),
}

impl Engine {
    /// Resolves `candidate` against the repository as the applier sees it.
    pub fn resolve(&self, candidate: Candidate) -> Resolution {
        if !candidate
            .change
            .iter()
            .any(|e| matches!(e, Edit::ConfigSet { .. }))
        {
            return Resolution::Ready(candidate);
        }
        // Never read a blocked path (a secret's value would land in the ledger): such a
        // candidate goes to the guards as proposed, and `blocked_paths` refuses it.
        let view = LedgerView::default();
        let ctx = GuardContext {
            view: &view,
            policy: &self.settings.policy,
            now: self.clock.now(),
            repo_root: &self.settings.repo_root,
        };
        match BlockedPaths.check(&candidate, &ctx) {
            Ok(v) if v.decision == Decision::Pass => {}
            _ => return Resolution::Ready(candidate),
        }
        let read = |file: &str| self.applier.read_file(file).map_err(|e| e.to_string());
        match resolve_all(&candidate.change, read) {
            Err(e) => {
                Resolution::Unresolvable(candidate, format!("cannot resolve the change: {e}"))
            }
            Ok((edits, resolved)) => {
                let all_set = edits.iter().all(|e| matches!(e, Edit::ConfigSet { .. }));
                let unchanged = resolved.iter().all(|r| r.old.as_ref() == Some(&r.new));
                let mut c = candidate;
                c.change = edits;
                c.origin.resolved = resolved;
                if all_set && unchanged {
                    Resolution::AlreadyApplied(c)
                } else {
                    Resolution::Ready(c)
                }
            }
        }
    }

    /// Records that `candidate`'s change is already in place: one `already_applied` event (not
    /// repeated within the dedup window for the same change), no intervention, no commit.
    pub(super) fn already_applied(
        &mut self,
        candidate: &Candidate,
        proposer: &str,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let event = EngineEvent::AlreadyApplied {
            proposer: proposer.to_string(),
            rule: candidate.origin.rule.clone(),
            title: candidate.title.clone(),
            area: candidate.area.clone(),
            change: candidate.change_lines(),
        };
        self.note_suppressed(
            candidate,
            proposer,
            crate::suppression::SuppressedBy::AlreadyApplied,
            None,
            format!(
                "the repository already holds {}",
                candidate.change_lines().join("; ")
            ),
        )?;
        let since = self.settings.policy.dedup_window.before(now);
        let repeat = self
            .ledger
            .events_between(since, now)?
            .iter()
            .any(|e| e.event == event);
        if repeat {
            report.suppressed += 1;
            return Ok(());
        }
        self.emit(report, event)
    }
}
