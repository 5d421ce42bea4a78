//! Apply: canary trial, then one commit per intervention with a pending marker around it.

use super::{CycleReport, Engine, EngineError, short};
use crate::canary::CanaryResult;
use crate::clock::Clock;
use crate::guard::baseline::Coverage;
use crate::guard::{self, Decision};
use crate::intervention::{Candidate, InterventionId, Status};

impl Engine {
    pub(super) async fn apply_now(
        &mut self,
        id: InterventionId,
        candidate: &Candidate,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        if candidate.risk >= self.settings.policy.canary_required_from {
            let Some(canary) = self.canaries.iter().find(|c| c.area() == candidate.area) else {
                // The canary guard should have put this in the backlog; never apply without one.
                self.ledger.transition(
                    id,
                    Status::Backlog,
                    now,
                    "apply",
                    "no canary for this area (fail closed)",
                )?;
                report.backlog.push(id);
                return Ok(());
            };
            match canary.trial(id, candidate).await {
                CanaryResult::Pass(msg) => {
                    self.ledger
                        .record_event(now, Some(id), "canary", "pass", &msg, None)?;
                    report.line(Some(id), "canary", format!("passed: {msg}"));
                }
                CanaryResult::Fail(msg) => {
                    self.ledger
                        .record_event(now, Some(id), "canary", "fail", &msg, None)?;
                    self.ledger.transition(
                        id,
                        Status::Blocked,
                        now,
                        "canary",
                        &format!("canary failed: {msg}"),
                    )?;
                    report.blocked.push(id);
                    report.line(Some(id), "canary", format!("failed, blocked: {msg}"));
                    return Ok(());
                }
            }
        }
        // The branch is recorded with the pending marker, before the commit: reconciliation
        // and every later revert go to where the commit is, whatever is checked out then.
        let branch = self.applier.current_branch().ok().flatten();
        self.ledger.begin_apply(id, branch.as_deref())?;
        crate::failpoint::hit("apply.after_pending");
        match self.applier.apply(id, candidate) {
            Ok(commit) => {
                crate::failpoint::hit("apply.after_commit");
                if let Some(b) = commit
                    .branch
                    .as_deref()
                    .filter(|b| Some(*b) != branch.as_deref())
                {
                    self.ledger.set_branch(id, b)?;
                }
                let due = self
                    .settings
                    .validate
                    .settle
                    .saturating_add(candidate.prediction.within)
                    .after(now);
                self.ledger.mark_applied(
                    id,
                    &commit.sha,
                    now,
                    due,
                    &format!("committed {}", short(&commit.sha)),
                )?;
                report.applied.push(id);
                report.line(
                    Some(id),
                    "apply",
                    format!(
                        "applied as commit {}; validation due {}",
                        short(&commit.sha),
                        due.format("%Y-%m-%dT%H:%M:%SZ")
                    ),
                );
            }
            Err(e) => {
                self.ledger.transition(
                    id,
                    Status::Blocked,
                    now,
                    "apply",
                    &format!("not applied: {e}"),
                )?;
                report.blocked.push(id);
                report.line(Some(id), "apply", format!("not applied: {e}"));
            }
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
        self.recover_repository(&mut report)?;
        let now = self.clock.now();
        // Guarded again: leave the intervention itself out, so it is not its own duplicate.
        let view = self.ledger.view(now, self.view_lookback())?.excluding(id);
        let mut verdicts = self.guard_with(&iv.candidate, now, &view);
        if guard::overall(&verdicts).0 == Decision::Pass {
            match self.baseline_coverage(&iv.candidate, now)? {
                Coverage::Decided(v) => verdicts.push(v),
                Coverage::Waiting { text, .. } => {
                    return Err(EngineError::Refused { id, message: text });
                }
            }
        }
        self.ledger.record_guard_verdicts(id, now, &verdicts)?;
        let (decision, reason) = guard::overall(&verdicts);
        match decision {
            Decision::Pass => self.apply_now(id, &iv.candidate, &mut report).await?,
            Decision::Block | Decision::Backlog => {
                self.refuse(id, decision, &reason, &mut report)?
            }
        }
        Ok(report)
    }
}
