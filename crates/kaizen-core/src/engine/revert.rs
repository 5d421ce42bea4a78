//! Revert: undo an intervention's commit (automatic on a failed prediction, or a human's
//! request); a refusal escalates once per [`ESCALATE_AGAIN`].

use super::{CycleReport, ESCALATE_AGAIN, Engine, EngineError, short};
use crate::clock::Clock;
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
                "revert",
                "no commit recorded; cannot revert".into(),
            )?;
            return Ok(false);
        };
        self.ledger.set_pending(id, Some(Pending::Revert))?;
        match self.applier.revert(id, &commit, reason) {
            Ok(c) => {
                self.ledger
                    .mark_reverted(id, &c.sha, now, "revert", reason)?;
                report.reverted.push(id);
                report.line(
                    Some(id),
                    "revert",
                    format!("reverted by commit {}", short(&c.sha)),
                );
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
                let again = now - ESCALATE_AGAIN.to_chrono();
                let recent = self
                    .ledger
                    .events_for(id)?
                    .into_iter()
                    .any(|ev| ev.kind == "escalation" && ev.detail == text && ev.at > again);
                if recent {
                    report.line(
                        Some(id),
                        "revert",
                        format!("still refused (already escalated): {e}"),
                    );
                } else {
                    self.escalate(report, Some(id), "revert", text)?;
                }
                Ok(false)
            }
        }
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
        if !self.revert_with(&iv, &reason, &mut report)? {
            let why = report
                .escalations
                .last()
                .cloned()
                .or_else(|| report.lines.last().map(|l| l.text.clone()))
                .unwrap_or_default();
            return Err(EngineError::Refused { id, message: why });
        }
        Ok(report)
    }
}
