//! Reconcile: finish the git operations a crash interrupted, so ledger and repository agree.

use super::{CycleReport, ESCALATE_AGAIN, Engine, EngineError, short};
use crate::clock::Clock;
use crate::config::Mode;
use crate::intervention::{InterventionId, Status};
use crate::ledger::Pending;

impl Engine {
    /// Finishes git operations a crash interrupted, so ledger and repository agree.
    pub fn reconcile(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let now = self.clock.now();
        self.recover_repository(report)?;
        self.continue_ids(report)?;
        for (iv, op) in self.ledger.pending()? {
            let id = iv.id;
            let branch = self.ledger.branch(id)?;
            match op {
                Pending::Apply => match self.applier.find_applied_on(id, branch.as_deref()) {
                    Ok(Some(sha)) => {
                        if let Err(e) = self.applier.sync_worktree(id, &sha) {
                            self.escalate(report, Some(id), "reconcile", format!("commit {sha} found but the working tree could not be synced: {e}"))?;
                        }
                        let due = self
                            .settings
                            .validate
                            .settle
                            .saturating_add(iv.candidate.prediction.within)
                            .after(now);
                        self.ledger.mark_applied(
                            id,
                            &sha,
                            now,
                            due,
                            &format!(
                                "reconciled after an interruption: commit {} found",
                                short(&sha)
                            ),
                        )?;
                        report.applied.push(id);
                        report.line(
                            Some(id),
                            "reconcile",
                            format!(
                                "apply had completed before the interruption: commit {}",
                                short(&sha)
                            ),
                        );
                    }
                    Ok(None) => {
                        self.ledger.transition(
                            id,
                            Status::Blocked,
                            now,
                            "reconcile",
                            "apply interrupted before its commit was made; nothing applied",
                        )?;
                        report.blocked.push(id);
                        report.line(
                            Some(id),
                            "reconcile",
                            "apply interrupted before commit; marked blocked, nothing applied",
                        );
                    }
                    Err(e) => {
                        self.escalate(report, Some(id), "reconcile", format!("cannot inspect the repository to reconcile an interrupted apply: {e}"))?;
                    }
                },
                // Only a revert naming this very apply commit counts (an older namesake's
                // revert, from before a lost state dir, does not).
                Pending::Revert => match iv
                    .commit
                    .as_deref()
                    .map(|c| self.applier.find_revert_of(id, c, branch.as_deref()))
                    .unwrap_or(Ok(None))
                {
                    Ok(Some(sha)) => {
                        if let Some(c) = &iv.commit
                            && let Err(e) = self.applier.sync_worktree(id, c)
                        {
                            self.escalate(report, Some(id), "reconcile", format!("revert {sha} found but the working tree could not be synced: {e}"))?;
                        }
                        self.ledger.mark_reverted(
                            id,
                            &sha,
                            now,
                            "reconcile",
                            &format!(
                                "reconciled after an interruption: revert commit {} found",
                                short(&sha)
                            ),
                        )?;
                        report.reverted.push(id);
                        report.line(
                            Some(id),
                            "reconcile",
                            format!(
                                "revert had completed before the interruption: commit {}",
                                short(&sha)
                            ),
                        );
                    }
                    Ok(None) => {
                        self.ledger.set_pending(id, None)?;
                        self.ledger.record_event(
                            now,
                            Some(id),
                            "reconcile",
                            "revert_interrupted",
                            "revert interrupted before its commit; it will be decided again",
                            None,
                        )?;
                        report.line(
                            Some(id),
                            "reconcile",
                            "revert interrupted before commit; will be decided again",
                        );
                    }
                    Err(e) => {
                        self.escalate(report, Some(id), "reconcile", format!("cannot inspect the repository to reconcile an interrupted revert: {e}"))?;
                    }
                },
            }
        }
        if self.settings.mode == Mode::Autonomous {
            // A `proposed` row with no pending git operation in autonomous mode was interrupted
            // before its guards ran (or left by a previous mode). It was never applied.
            for iv in self.ledger.with_status(Status::Proposed)? {
                self.ledger.transition(
                    iv.id,
                    Status::Blocked,
                    now,
                    "reconcile",
                    "left proposed by an interrupted cycle (or an earlier mode); never applied",
                )?;
                report.blocked.push(iv.id);
                report.line(
                    Some(iv.id),
                    "reconcile",
                    "left proposed by an interrupted cycle; marked blocked, never applied",
                );
            }
        }
        Ok(())
    }

    /// Repairs what a killed kaizen left in the repository (its own stale lock, temp files, a
    /// working tree behind its commit) before any git operation; whatever is not unambiguously
    /// kaizen's is escalated, never removed.
    pub(super) fn recover_repository(
        &mut self,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let findings = match self.applier.recover(true) {
            Ok(f) => f,
            Err(e) => {
                return self.escalate(
                    report,
                    None,
                    "reconcile",
                    format!("cannot inspect the repository for leftovers of a crash: {e}"),
                );
            }
        };
        for f in findings {
            let text = format!("{} {}: {}", f.kind, f.path, f.detail);
            if f.repaired {
                self.ledger.record_event(
                    now,
                    None,
                    "reconcile",
                    "repaired",
                    &text,
                    serde_json::to_value(&f).ok().as_ref(),
                )?;
                report.line(None, "reconcile", format!("repaired: {text}"));
            } else {
                self.escalate_once(report, None, "reconcile", text)?;
            }
        }
        Ok(())
    }

    /// Keeps intervention ids unique per repository: with a lost or fresh state dir the ledger
    /// continues after the highest id the history names. Checked once per engine.
    fn continue_ids(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        if self.ids_checked {
            return Ok(());
        }
        match self.applier.highest_intervention_id() {
            Ok(Some(highest)) => {
                if self.ledger.reserve_ids_through(highest)? {
                    let text = format!(
                        "the repository's history names {highest}, beyond this ledger's ids \
                         (a lost or new state dir): new ids continue after it"
                    );
                    self.ledger.record_event(
                        self.clock.now(),
                        None,
                        "reconcile",
                        "ids_continued",
                        &text,
                        None,
                    )?;
                    report.line(None, "reconcile", text);
                }
            }
            Ok(None) => {}
            Err(e) => {
                return self.escalate(
                    report,
                    None,
                    "reconcile",
                    format!("cannot read the repository's history for intervention ids: {e}"),
                );
            }
        }
        self.ids_checked = true;
        Ok(())
    }

    /// Escalates `text` unless the same escalation was recorded within [`ESCALATE_AGAIN`] (a
    /// condition seen every cycle gives a human one alarm, not one per cycle).
    pub(super) fn escalate_once(
        &mut self,
        report: &mut CycleReport,
        id: Option<InterventionId>,
        stage: &'static str,
        text: String,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let recent = self
            .ledger
            .events_between(ESCALATE_AGAIN.before(now), now)?
            .into_iter()
            .any(|ev| ev.kind == "escalation" && ev.intervention == id && ev.detail == text);
        if recent {
            report.line(id, stage, format!("still: {text} (already escalated)"));
            return Ok(());
        }
        self.escalate(report, id, stage, text)
    }
}
