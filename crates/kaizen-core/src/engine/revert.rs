//! Revert: undo an intervention's commit (automatic on a failed prediction, or a human's
//! request); a refusal opens one escalation, told again only on its back-off (1 h, 2 h, 4 h …
//! 24 h) until a human resolves it (`kaizen resolve`) or kaizen sees the change undone.

use super::{CycleReport, Engine, EngineError, short};
use crate::apply::ApplyError;
use crate::clock::Clock;
use crate::event::Stage;
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
        self.applier.set_audit_head(self.ledger.audit_head()?);
        match self
            .applier
            .revert_on(id, &commit, branch.as_deref(), reason)
        {
            Ok(c) => {
                crate::failpoint::hit("revert.after_commit");
                self.note_own_commit(&c);
                let event = self
                    .ledger
                    .mark_reverted(id, &c.sha, now, Stage::Revert, reason)?;
                report.push(event);
                // A revert refused earlier went through after all: its escalation is over.
                for e in self.ledger.close_escalations(
                    id,
                    Stage::Revert,
                    "kaizen",
                    &format!("reverted by commit {}", short(&c.sha)),
                    now,
                )? {
                    report.push(e);
                }
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
                // The revert is retried every cycle; the escalation is one open record, told
                // again only on its back-off (1 h, 2 h, 4 h … 24 h), never every cycle.
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
        let now = self.clock.now();
        self.recover_repository(&mut report)?;
        if !self.revert_with(&iv, &reason, &mut report)? {
            // What to do, not only what failed: the escalation stays open until the human fixes
            // it and says so (or kaizen sees the change undone in git).
            let open = match self
                .ledger
                .open_escalation(&format!("revert_refused {id}"), now)?
            {
                Some(e) => Some(e),
                None => self
                    .ledger
                    .open_escalation(&format!("no_commit {id}"), now)?,
            };
            let why = match open {
                Some(esc) => format!(
                    "cannot revert it: {}. Escalation open since {}. Either clear the obstacle \
                     (commit or stash the edits in its files) and run `kaizen revert {id}` again, \
                     or fix it by hand and close it with `kaizen resolve {id} --reverted --why \"…\"` \
                     (or `--kept` to keep the change)",
                    esc.detail,
                    esc.opened_at.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                None => "the revert was not made".into(),
            };
            return Err(EngineError::Refused { id, message: why });
        }
        self.publish_step(&mut report, true)?;
        Ok(report)
    }
}
