//! Reconcile: finish the git operations a crash interrupted, so ledger and repository agree.

use super::{CycleReport, Engine, EngineError, short};
use crate::clock::Clock;
use crate::config::Mode;
use crate::intervention::Status;
use crate::ledger::Pending;

impl Engine {
    /// Finishes git operations a crash interrupted, so ledger and repository agree.
    pub fn reconcile(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let now = self.clock.now();
        for (iv, op) in self.ledger.pending()? {
            let id = iv.id;
            match op {
                Pending::Apply => match self.applier.find_applied(id) {
                    Ok(Some(sha)) => {
                        if let Err(e) = self.applier.sync_worktree(id, &sha) {
                            self.escalate(report, Some(id), "reconcile", format!("commit {sha} found but the working tree could not be synced: {e}"))?;
                        }
                        let due = now
                            + self.settings.validate.settle.to_chrono()
                            + iv.candidate.prediction.within.to_chrono();
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
                Pending::Revert => match self.applier.find_reverted(id) {
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
}
