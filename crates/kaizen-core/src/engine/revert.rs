//! Revert: undo an intervention's commit (automatic on a failed prediction, or a human's
//! request); a refusal escalates once per [`ESCALATE_AGAIN`].

use super::{CycleReport, Engine, EngineError, short};
use crate::apply::ApplyError;
use crate::clock::Clock;
use crate::event::{EngineEvent, Stage};
use crate::intervention::{Intervention, InterventionId, Status};
use crate::ledger::Pending;

impl Engine {
    pub(super) fn revert_with(
        &mut self,
        iv: &Intervention,
        reason: &str,
        report: &mut CycleReport,
    ) -> Result<bool, EngineError> {
        let now = self.clock.now();
        let id = iv.id;
        let Some(commit) = iv.commit.clone() else {
            self.escalate(
                report,
                Some(id),
                Stage::Revert,
                format!("no_commit {id}"),
                "no commit recorded; cannot revert".into(),
            )?;
            return Ok(false);
        };
        let branch = self.ledger.branch(id)?;
        self.ledger.set_pending(id, Some(Pending::Revert))?;
        crate::failpoint::hit("revert.after_pending");
        match self
            .applier
            .revert_on(id, &commit, branch.as_deref(), reason)
        {
            Ok(c) => {
                crate::failpoint::hit("revert.after_commit");
                let event = self
                    .ledger
                    .mark_reverted(id, &c.sha, now, Stage::Revert, reason)?;
                report.push(event);
                self.after_revert_hook(iv, &c.sha, report)?;
                Ok(true)
            }
            Err(ApplyError::NoOp) => {
                // Nothing to undo: a later change already took this one's effect away (e.g.
                // another area set the key back). The intervention ends here, recorded, instead
                // of staying `applied` forever.
                let text = format!(
                    "{reason}; the revert of {} is a no-op (its change is no longer in effect), \
                     so it ends reverted without a revert commit",
                    short(&commit)
                );
                let event =
                    self.ledger
                        .mark_reverted_without_commit(id, now, Stage::Revert, &text)?;
                report.push(event);
                Ok(true)
            }
            Err(e) => {
                self.ledger.set_pending(id, None)?;
                let text = format!(
                    "revert of {} refused: {e}; left applied, needs a human",
                    short(&commit)
                );
                // The revert is retried every cycle; the same refusal is escalated again only
                // after ESCALATE_AGAIN, so a human gets one alarm, not one per cycle.
                self.escalate_once(
                    report,
                    Some(id),
                    Stage::Revert,
                    format!("revert_refused {id}"),
                    text,
                )?;
                Ok(false)
            }
        }
    }

    /// Runs the `on_revert` hook after a revert commit; a failure is escalated with its output.
    fn after_revert_hook(
        &mut self,
        iv: &Intervention,
        commit: &str,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let Some(outcome) = self.hooks.as_ref().and_then(|h| {
            h.run(
                crate::hooks::HookEvent::Revert,
                iv.id,
                &iv.candidate,
                commit,
            )
        }) else {
            return Ok(());
        };
        let ok = outcome.ok;
        let text = format!("on_revert hook failed: {}", outcome.output);
        self.emit(
            report,
            crate::event::EngineEvent::HookRan {
                intervention: iv.id,
                event: "revert".into(),
                commit: commit.to_string(),
                ok,
                output: outcome.output,
            },
        )?;
        if !ok {
            self.escalate(
                report,
                Some(iv.id),
                Stage::Hook,
                format!("hook_failed {}", iv.id),
                text,
            )?;
        }
        Ok(())
    }

    /// Reverts an applied or validated intervention on a human's say-so.
    pub fn revert(&mut self, id: InterventionId, reason: &str) -> Result<CycleReport, EngineError> {
        let mut report = CycleReport {
            at: self.clock.now(),
            ..Default::default()
        };
        let iv = self.ledger.get(id)?;
        if !matches!(iv.status, Status::Applied | Status::Validated) {
            return Err(EngineError::Refused {
                id,
                message: format!(
                    "is {}, only applied or validated interventions can be reverted",
                    iv.status
                ),
            });
        }
        let reason = format!("manual revert: {reason}");
        self.recover_repository(&mut report)?;
        if !self.revert_with(&iv, &reason, &mut report)? {
            // Why, from the typed event that said so (an escalation, or its repeat).
            let why = report
                .events
                .iter()
                .rev()
                .find_map(|e| match e {
                    EngineEvent::Escalation { text, .. }
                    | EngineEvent::EscalationRepeated { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "the revert was not made".into());
            return Err(EngineError::Refused { id, message: why });
        }
        self.publish_step(&mut report, true)?;
        Ok(report)
    }
}
