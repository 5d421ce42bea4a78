//! Validate: final looks for interventions that are due, interim looks (regression only) at
//! evenly spaced points before; failures go to revert.

use super::{CycleReport, Engine, EngineError, HISTORY};
use crate::clock::Clock;
use crate::config::SignalConfig;
use crate::event::{EngineEvent, Stage};
use crate::intervention::{Intervention, InterventionId, Outcome, Status};
use crate::ledger::SwitchbackTrigger;
use crate::signal::Sample;
use crate::validate::{Cadence, GuardrailSeries, Look, ValidationRequest, Verdict};

impl Engine {
    /// Judges every applied intervention: final looks for those due, interim looks (regression
    /// only) for the rest past their settle time. Failures are reverted.
    pub fn validate_due(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        // Switchbacks first: their flips are due at fixed times, and a change that enters one
        // this cycle is not judged before/after below.
        self.switchback_step(report)?;
        let now = self.clock.now();
        let due: Vec<Intervention> = self.ledger.due(now)?;
        let due_ids: Vec<InterventionId> = due.iter().map(|i| i.id).collect();
        for iv in due {
            if self.switchback_owns(iv.id)? {
                continue;
            }
            // Judged already, its revert refused and escalated: only the revert is retried
            // (silent until the escalation's back-off), not the verdict recorded every cycle.
            if self
                .ledger
                .has_open_escalation(&format!("revert_refused {}", iv.id))?
                && let Some(v) = self.ledger.verdict(iv.id)?
            {
                let reason = format!("{}: {}", v.outcome, v.summary);
                self.revert_with(&iv, &reason, report)?;
                continue;
            }
            let ext = self.ledger.extensions(iv.id)?;
            let look = if ext >= self.settings.validate.max_extensions {
                Look::LastExtension
            } else {
                Look::Final
            };
            self.judge(&iv, look, report)?;
        }
        // Interim looks (regression only) at the evenly spaced points the validator's
        // significance level is split across — not every cycle, which would inflate it.
        let looks = i64::from(self.validator.interim_looks());
        for iv in self.ledger.with_status(Status::Applied)? {
            let (Some(applied), Some(due)) = (iv.applied_at, iv.due_at) else {
                continue;
            };
            let start = self.settings.validate.settle.after(applied);
            if looks == 0 || due_ids.contains(&iv.id) || now < start || now >= due {
                continue;
            }
            // Half of a switchback's blocks are off: a before/after look would be meaningless.
            if self.switchback_owns(iv.id)? {
                continue;
            }
            let step = (due - start) / i32::try_from(looks).unwrap_or(i32::MAX);
            let k = if step > chrono::Duration::zero() {
                (now - start).num_seconds() / step.num_seconds().max(1)
            } else {
                0
            };
            if k < 1 || k >= looks {
                continue;
            }
            let (Ok(k), Ok(of)) = (u32::try_from(k), u32::try_from(looks - 1)) else {
                continue;
            };
            if k <= self.ledger.interim_looks(iv.id)? {
                continue;
            }
            let event = EngineEvent::InterimLook {
                intervention: iv.id,
                look: k,
                of,
            };
            self.ledger.take_interim_look(iv.id, k, now, &event)?;
            report.push(event);
            self.judge(&iv, Look::Interim, report)?;
        }
        Ok(())
    }

    pub(super) fn judge(
        &mut self,
        iv: &Intervention,
        look: Look,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let id = iv.id;
        let verdict = self.verdict_for(iv, look)?;
        let Some(verdict) = verdict else {
            return Ok(());
        };
        if look == Look::Interim {
            if verdict.outcome == Outcome::Regressed {
                self.ledger.record_verdict(id, &verdict)?;
                self.emit_verdict(id, look, &verdict, report)?;
                let reason = format!("regressed (interim look): {}", verdict.summary);
                self.revert_with(iv, &reason, report)?;
                self.escalate_failed_fix(iv, &reason, report)?;
            }
            return Ok(());
        }
        // A low-risk, reversible change the last look could not tell about (the figures, not
        // missing samples): confirmed by a switchback instead of reverted, if it may start.
        if look == Look::LastExtension && self.switchback_on_inconclusive(iv, &verdict)? {
            let prepared = self.prepare(iv, SwitchbackTrigger::Inconclusive)?;
            if prepared.is_ok() {
                self.ledger.record_verdict(id, &verdict)?;
                self.emit_verdict(id, look, &verdict, report)?;
                self.start(iv, prepared, report)?;
                return Ok(());
            }
            // Refused (recorded): judged as before.
            self.start(iv, prepared, report)?;
        }
        match (verdict.outcome, look) {
            (Outcome::Validated, _) => {
                self.ledger.record_verdict(id, &verdict)?;
                crate::failpoint::hit("validate.after_verdict");
                self.emit_verdict(id, look, &verdict, report)?;
                let event = self.ledger.transition(
                    id,
                    Status::Validated,
                    now,
                    Stage::Validate,
                    // The summary often starts with the outcome already: say it once.
                    &crate::human::once(&format!("validated: {}", verdict.summary)),
                )?;
                report.push(event);
            }
            (Outcome::Inconclusive, Look::Final) => {
                let due = iv
                    .candidate
                    .prediction
                    .within
                    .after(iv.due_at.unwrap_or(now).max(now));
                let n = self.ledger.extend(id, due)?;
                crate::failpoint::hit("validate.after_extend");
                self.emit_verdict(id, look, &verdict, report)?;
                self.emit(
                    report,
                    EngineEvent::Extended {
                        intervention: id,
                        due,
                        extension: n,
                        max: self.settings.validate.max_extensions,
                        summary: verdict.summary.clone(),
                    },
                )?;
            }
            (outcome, _) => {
                self.ledger.record_verdict(id, &verdict)?;
                crate::failpoint::hit("validate.before_revert");
                let reason = match outcome {
                    Outcome::Inconclusive => format!(
                        "still inconclusive after {} extensions, reverted (fail closed: back to the known state; not counted toward a freeze, nothing learned): {}",
                        self.settings.validate.max_extensions, verdict.summary
                    ),
                    _ => crate::human::once(&format!("{outcome}: {}", verdict.summary)),
                };
                self.emit_verdict(id, look, &verdict, report)?;
                let reverted = self.revert_with(iv, &reason, report)?;
                // Missing data decided it, not the change: a human should know the loop is blind.
                if reverted && let Some(why) = verdict.figures.cannot_judge.clone() {
                    self.escalate(
                        report,
                        Some(id),
                        Stage::Validate,
                        format!("cannot_judge {id}"),
                        format!("{why}; reverted"),
                    )?;
                }
                self.escalate_failed_fix(iv, &reason, report)?;
            }
        }
        Ok(())
    }

    /// A fix that failed validation is escalated to whom its rule names (`escalate:`), so a
    /// human hears that self-healing did not heal.
    pub(super) fn escalate_failed_fix(
        &mut self,
        iv: &Intervention,
        reason: &str,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let whom = &iv.candidate.origin.escalate;
        if whom.is_empty() {
            return Ok(());
        }
        let text = format!(
            "fix {} ({}) failed: {reason}; escalate to {}",
            iv.candidate.origin,
            iv.candidate.title,
            whom.join(", ")
        );
        self.escalate(
            report,
            Some(iv.id),
            Stage::Validate,
            format!("failed_fix {}", iv.id),
            text,
        )
    }

    fn emit_verdict(
        &mut self,
        id: InterventionId,
        look: Look,
        verdict: &Verdict,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        self.emit(
            report,
            EngineEvent::Verdict {
                intervention: id,
                look,
                verdict: verdict.clone(),
            },
        )
    }

    pub(super) fn verdict_for(
        &self,
        iv: &Intervention,
        look: Look,
    ) -> Result<Option<Verdict>, EngineError> {
        let now = self.clock.now();
        let (Some(applied_at), Some(due_at)) = (iv.applied_at, iv.due_at) else {
            return Ok(None);
        };
        let Some(sig) = self.settings.signals.get(&iv.candidate.prediction.signal) else {
            return Ok(Some(Verdict {
                outcome: Outcome::Inconclusive,
                summary: format!(
                    "signal {:?} is no longer configured; cannot validate",
                    iv.candidate.prediction.signal
                ),
                figures: Default::default(),
            }));
        };
        let from = HISTORY.before(applied_at);
        let samples = self.samples(&sig.signal.name, from, now)?;
        let mut guard_samples: Vec<(&SignalConfig, Vec<Sample>)> = Vec::new();
        for g in self.settings.signals.values() {
            if g.signal.name != sig.signal.name
                && g.guardrail_for.iter().any(|a| a == &iv.candidate.area)
            {
                guard_samples.push((g, self.samples(&g.signal.name, from, now)?));
            }
        }
        let req = ValidationRequest {
            prediction: &iv.candidate.prediction,
            signal: &sig.signal,
            scale: sig.scale,
            applied_at,
            settle: self.settings.validate.settle,
            window_end: if look == Look::Interim { now } else { due_at },
            now,
            samples: &samples,
            guardrails: guard_samples
                .iter()
                .map(|(g, s)| GuardrailSeries {
                    signal: &g.signal,
                    scale: g.scale,
                    samples: s,
                })
                .collect(),
            look,
            sample_every: Cadence::resolve(&samples, self.settings.validate.sample_every).every,
        };
        Ok(Some(self.validator.validate(&req)))
    }
}
