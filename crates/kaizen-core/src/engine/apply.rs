//! Apply: canary trial, then one commit per intervention with a pending marker around it.

use super::{CycleReport, Engine, EngineError, short};
use crate::canary::CanaryResult;
use crate::clock::Clock;
use crate::event::{EngineEvent, Stage};
use crate::guard::baseline::Coverage;
use crate::guard::{self, Decision};
use crate::intervention::{Candidate, InterventionId, Status};

impl Engine {
    /// Runs the area's canary when the candidate's risk requires one: `false` when it is
    /// blocked or parked (recorded), `true` to go on.
    pub(super) async fn canary_gate(
        &mut self,
        id: InterventionId,
        candidate: &Candidate,
        report: &mut CycleReport,
    ) -> Result<bool, EngineError> {
        let now = self.clock.now();
        let always = self
            .canaries
            .iter()
            .any(|c| c.area() == candidate.area && c.always());
        if always || candidate.risk >= self.settings.policy.canary_required_from {
            let Some(canary) = self.canaries.iter().find(|c| c.area() == candidate.area) else {
                // The canary guard should have put this in the backlog; never apply without one.
                let event = self.ledger.transition(
                    id,
                    Status::Backlog,
                    now,
                    Stage::Apply,
                    "no canary for this area (fail closed)",
                )?;
                report.push(event);
                return Ok(false);
            };
            let (result, figures) = canary.trial_with_figures(id, candidate).await;
            match result {
                CanaryResult::Pass(message) => self.emit(
                    report,
                    EngineEvent::CanaryPassed {
                        intervention: id,
                        message,
                        figures,
                    },
                )?,
                CanaryResult::Fail(message) => {
                    let reason = format!("canary failed: {message}");
                    self.emit(
                        report,
                        EngineEvent::CanaryFailed {
                            intervention: id,
                            message,
                            figures,
                        },
                    )?;
                    let event =
                        self.ledger
                            .transition(id, Status::Blocked, now, Stage::Canary, &reason)?;
                    report.push(event);
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The canary paragraph of a commit message: each trial's verdict and, for a counterfactual
    /// canary, its before/after figures (empty when no canary ran).
    pub(super) fn canary_notes(&self, id: InterventionId) -> Result<String, EngineError> {
        let mut s = String::new();
        for e in self.ledger.events_for(id)? {
            let (verdict, message, figures) = match &e.event {
                EngineEvent::CanaryPassed {
                    message, figures, ..
                } => ("passed", message, figures),
                EngineEvent::CanaryFailed {
                    message, figures, ..
                } => ("failed", message, figures),
                _ => continue,
            };
            if s.is_empty() {
                s.push_str("Canary:\n");
            }
            s.push_str(&format!("- {verdict}: {message}\n"));
            if let Some(f) = figures {
                s.push_str(&crate::canary::figures_lines(f));
            }
        }
        Ok(s)
    }

    pub(super) async fn apply_now(
        &mut self,
        id: InterventionId,
        candidate: &Candidate,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        if !self.canary_gate(id, candidate, report).await? {
            return Ok(());
        }
        let now = self.clock.now();
        // The branch is recorded with the pending marker, before the commit: reconciliation
        // and every later revert go to where the commit is, whatever is checked out then.
        let branch = self.applier.current_branch().ok().flatten();
        self.ledger.begin_apply(id, branch.as_deref())?;
        crate::failpoint::hit("apply.after_pending");
        self.applier.set_audit_head(self.ledger.audit_head()?);
        let notes = self.canary_notes(id)?;
        match self.applier.apply_with_notes(id, candidate, &notes) {
            Ok(commit) => {
                crate::failpoint::hit("apply.after_commit");
                self.note_own_commit(&commit);
                if let Some(b) = commit
                    .branch
                    .as_deref()
                    .filter(|b| Some(*b) != branch.as_deref())
                {
                    self.ledger.set_branch(id, b)?;
                }
                if self.publishing() {
                    // In effect only once on the remote: the clock starts at the push.
                    let event = self.ledger.mark_applied_unpublished(
                        id,
                        &commit.sha,
                        now,
                        Stage::Apply,
                        &format!(
                            "committed {}; validation starts once it is pushed",
                            short(&commit.sha)
                        ),
                    )?;
                    report.push(event);
                    return self.after_apply_hook(id, &commit.sha, report);
                }
                let due = self
                    .settings
                    .validate
                    .settle
                    .saturating_add(candidate.prediction.within)
                    .after(now);
                let event = self.ledger.mark_applied(
                    id,
                    &commit.sha,
                    now,
                    due,
                    Stage::Apply,
                    &format!("committed {}", short(&commit.sha)),
                )?;
                report.push(event);
                self.after_apply_hook(id, &commit.sha, report)?;
            }
            Err(e) => {
                let event = self.ledger.transition(
                    id,
                    Status::Blocked,
                    now,
                    Stage::Apply,
                    &format!("not applied: {e}"),
                )?;
                report.push(event);
            }
        }
        Ok(())
    }

    /// Runs the `on_apply` hook after `id`'s commit; a failing hook reverts it at once, recorded
    /// with the hook's output.
    fn after_apply_hook(
        &mut self,
        id: InterventionId,
        commit: &str,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let iv = self.ledger.get(id)?;
        let Some(outcome) = self
            .hooks
            .as_ref()
            .and_then(|h| h.run(crate::hooks::HookEvent::Apply, id, &iv.candidate, commit))
        else {
            return Ok(());
        };
        let ok = outcome.ok;
        let text = format!("on_apply hook failed: {}", outcome.output);
        self.emit(
            report,
            EngineEvent::HookRan {
                intervention: id,
                event: "apply".into(),
                commit: commit.to_string(),
                ok,
                output: outcome.output,
            },
        )?;
        if !ok {
            // The change is not safely in effect: undo it now, not at validation.
            self.revert_with(&iv, &text, report)?;
        }
        Ok(())
    }

    /// Applies a `proposed` intervention on a human's say-so (manual mode), re-running the guards.
    pub async fn approve(&mut self, id: InterventionId) -> Result<CycleReport, EngineError> {
        let mut report = CycleReport {
            at: self.clock.now(),
            ..Default::default()
        };
        let iv = self.ledger.get(id)?;
        if iv.status != Status::Proposed {
            return Err(EngineError::Refused {
                id,
                message: format!(
                    "is {}, only proposed interventions can be applied",
                    iv.status
                ),
            });
        }
        if let Some(paused) = self.pauses().blocking(&iv.candidate.area) {
            return Err(EngineError::Refused {
                id,
                message: format!("not applied, {paused} (`kaizen resume` first)"),
            });
        }
        self.emit(&mut report, EngineEvent::Approved { intervention: id })?;
        self.recover_repository(&mut report)?;
        let now = self.clock.now();
        // Guarded again: leave the intervention itself out, so it is not its own duplicate.
        let view = self.guard_view(now)?.excluding(id);
        let mut verdicts = self.guard_with(&iv.candidate, now, &view);
        if guard::overall(&verdicts).0 == Decision::Pass {
            match self.baseline_coverage(&iv.candidate, now)? {
                Coverage::Decided(v) => verdicts.push(v),
                Coverage::Waiting { text, .. } => {
                    return Err(EngineError::Refused { id, message: text });
                }
            }
        }
        let event = self.ledger.record_guard_verdicts(id, now, &verdicts)?;
        report.push(event);
        let (decision, reason) = guard::overall(&verdicts);
        match decision {
            Decision::Pass => self.apply_now(id, &iv.candidate, &mut report).await?,
            Decision::Block | Decision::Backlog => {
                self.refuse(id, decision, &reason, &mut report)?
            }
        }
        self.publish_step(&mut report, true)?;
        Ok(report)
    }
}
