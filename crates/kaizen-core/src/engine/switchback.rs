//! Switchback confirmation: an applied change is switched off and on in randomised blocks (one
//! commit per flip, `Kaizen-Switchback: K-…/block k`) and judged by a permutation test over the
//! block assignment ([`crate::validate::switchback`]), which stays valid under autocorrelation,
//! trends and daily cycles where a before/after comparison cannot tell.
//!
//! Entered after the apply settles when the area's design is `switchback`, or instead of the
//! revert when the last before/after look of a low-risk, reversible change was inconclusive for
//! reasons of the model (never for missing data). The guards run again before the first flip; a
//! refusal is recorded and the before/after judgement stands. The intervention stays `applied`
//! throughout (one intervention against the budget, however many flips), and its deadline is the
//! schedule's end.
//!
//! Crash safety: each flip's pending marker is written before its commit and cleared with the
//! commit's sha in one transaction; reconcile finds an interrupted flip by its trailer. The end
//! (verdict, switchback finished, the intervention validated or reverted) is resumable: a
//! switchback that ended while its intervention is still `applied` is completed next cycle.

use super::{CycleReport, Engine, EngineError, HISTORY, short};
use crate::apply::Flip;
use crate::clock::Clock;
use crate::config::Design;
use crate::event::{EngineEvent, Stage};
use crate::guard::{self, Decision};
use crate::intervention::{Intervention, InterventionId, Outcome, Risk, Status};
use crate::ledger::{Switchback, SwitchbackPlan, SwitchbackState, SwitchbackTrigger};
use crate::signal::Sample;
use crate::span::Span;
use crate::validate::switchback::{self as layer1, Block, BlockPlan};
use crate::validate::{Cadence, Figures, Look, Verdict};
use chrono::{DateTime, Utc};

/// The longest schedule a switchback may have; a signal whose memory asks for more (blocks
/// longer than its correlation time, which a strong daily cycle makes hours) is judged
/// before/after (the refusal recorded): a change is not held in limbo for days.
pub const MAX_SWITCHBACK: Span = Span::days(2);

/// One-sided significance level of the switchback's permutation test (the honest validator's).
pub const SWITCHBACK_ALPHA: f64 = 0.05;

/// A plan ready to start, or why not.
type Prepared = Result<(SwitchbackPlan, Vec<Block>), String>;

impl Engine {
    /// Whether `id`'s judgement belongs to its switchback (running, or ended and being completed):
    /// the before/after looks leave it alone. A refused switchback leaves it to them.
    pub(super) fn switchback_owns(&self, id: InterventionId) -> Result<bool, EngineError> {
        Ok(self
            .ledger
            .switchback(id)?
            .is_some_and(|s| s.state != SwitchbackState::Refused))
    }

    /// Whether the last look's inconclusive `verdict` of `iv` is confirmed by a switchback: the
    /// setting is on, the change is low risk with a rollback, the figures (not missing samples)
    /// could not tell, and it has not been tried.
    pub(super) fn switchback_on_inconclusive(
        &self,
        iv: &Intervention,
        verdict: &Verdict,
    ) -> Result<bool, EngineError> {
        Ok(self.settings.validate.switchback_on_inconclusive
            && verdict.outcome == Outcome::Inconclusive
            && !verdict.figures.missing_data
            && iv.candidate.risk == Risk::Low
            && iv.candidate.rollback.is_some()
            && self.ledger.switchback(iv.id)?.is_none())
    }

    /// The switchback step of a cycle: completes what ended, advances what runs, and starts the
    /// switchbacks of settled changes in `design: switchback` areas.
    pub(super) fn switchback_step(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let now = self.clock.now();
        let pending: std::collections::BTreeSet<InterventionId> = self
            .ledger
            .pending()?
            .into_iter()
            .map(|(iv, _)| iv.id)
            .collect();
        for iv in self.ledger.with_status(Status::Applied)? {
            if pending.contains(&iv.id) {
                continue;
            }
            match self.ledger.switchback(iv.id)? {
                Some(sb) if sb.blocks.iter().any(|b| b.pending) => {
                    // A flip reconcile could not settle (it escalated): nothing moves until then.
                }
                Some(sb) if sb.state == SwitchbackState::Running => {
                    self.advance(&iv, &sb, report)?
                }
                Some(sb) if sb.state == SwitchbackState::Refused => {}
                Some(sb) => self.complete(&iv, &sb, report)?,
                None => {
                    let settled = iv
                        .applied_at
                        .is_some_and(|a| now >= self.settings.validate.settle.after(a));
                    if settled
                        && self.settings.validate.design_for(&iv.candidate.area)
                            == Design::Switchback
                    {
                        let prepared = self.prepare(&iv, SwitchbackTrigger::Design)?;
                        self.start(&iv, prepared, report)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The plan of `iv`'s switchback, or why it cannot start: the emergency stop, the guard
    /// chain (run again, the intervention itself left out of the view), the change's commit, and
    /// a plan from the pre-apply history's correlation time at the signal's cadence.
    pub(super) fn prepare(
        &self,
        iv: &Intervention,
        trigger: SwitchbackTrigger,
    ) -> Result<Prepared, EngineError> {
        let now = self.clock.now();
        if let Some(paused) = self.pauses().blocking(&iv.candidate.area) {
            return Ok(Err(paused.to_string()));
        }
        let view = self.guard_view(now)?.excluding(iv.id);
        let verdicts = self.guard_with(&iv.candidate, now, &view);
        let (decision, reason) = guard::overall(&verdicts);
        if decision != Decision::Pass {
            return Ok(Err(format!("the guards refuse the first flip: {reason}")));
        }
        let (Some(applied), Some(_)) = (iv.applied_at, iv.commit.as_ref()) else {
            return Ok(Err("no commit recorded for the change".into()));
        };
        let Some(sig) = self.settings.signals.get(&iv.candidate.prediction.signal) else {
            return Ok(Err(format!(
                "signal {:?} is no longer configured",
                iv.candidate.prediction.signal
            )));
        };
        let history = self.samples(&sig.signal.name, HISTORY.before(applied), applied)?;
        let cadence = Cadence::resolve(&history, self.settings.validate.sample_every).every;
        let Some(correlation) = layer1::correlation_span(&history, cadence) else {
            return Ok(Err(format!(
                "cannot measure the correlation time of {} from {} samples before the apply",
                sig.signal.name,
                history.len()
            )));
        };
        let plan = BlockPlan::new(
            self.settings.validate.switchback_blocks,
            correlation,
            cadence,
            self.settings.validate.settle,
        );
        if plan.total() > MAX_SWITCHBACK {
            return Ok(Err(format!(
                "{} blocks of {} (correlation time {correlation}) would take {}, more than {MAX_SWITCHBACK}",
                plan.blocks,
                plan.block,
                plan.total()
            )));
        }
        let seed = layer1::seed_for(&iv.id.to_string());
        let schedule = layer1::schedule(seed, now, &plan);
        Ok(Ok((
            SwitchbackPlan {
                plan,
                correlation,
                cadence,
                seed,
                trigger,
            },
            schedule,
        )))
    }

    /// Starts `iv`'s switchback from `prepared` (flipping off at once if the first block is
    /// off), or records why it cannot: `true` when started.
    pub(super) fn start(
        &mut self,
        iv: &Intervention,
        prepared: Prepared,
        report: &mut CycleReport,
    ) -> Result<bool, EngineError> {
        let now = self.clock.now();
        let (plan, schedule) = match prepared {
            Ok(p) => p,
            Err(reason) => {
                let event = EngineEvent::SwitchbackRefused {
                    intervention: iv.id,
                    reason: reason.clone(),
                };
                self.ledger.refuse_switchback(iv.id, &reason, now, &event)?;
                report.push(event);
                return Ok(false);
            }
        };
        let event = EngineEvent::SwitchbackStarted {
            intervention: iv.id,
            trigger: plan.trigger,
            blocks: plan.plan.blocks,
            block: plan.plan.block,
            washout: plan.plan.washout,
            correlation: plan.correlation,
            assignment: schedule
                .iter()
                .map(|b| if b.on { '1' } else { '0' })
                .collect(),
            ends: schedule.last().map_or(now, |b| b.end),
        };
        self.ledger
            .start_switchback(iv.id, &plan, &schedule, now, &event)?;
        report.push(event);
        let iv = self.ledger.get(iv.id)?;
        if let Some(sb) = self.ledger.switchback(iv.id)? {
            self.advance(&iv, &sb, report)?;
        }
        Ok(true)
    }

    /// One cycle of a running switchback: stop on a human's commit to its files, finish after
    /// the last block, else flip to the block in force if the state differs.
    fn advance(
        &mut self,
        iv: &Intervention,
        sb: &Switchback,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        if let Some(who) = self.foreign_commit(iv, sb)? {
            let reason = format!(
                "{who} changed its files mid-switchback; stopped (its work is never overwritten)"
            );
            return self.stop(iv, sb, &reason, report);
        }
        let Some(last) = sb.planned().last() else {
            return self.stop(iv, sb, "the switchback has no blocks", report);
        };
        if now >= last.ends_at {
            return self.finish(iv, sb, report);
        }
        let Some(block) = sb
            .planned()
            .find(|b| b.starts_at <= now && now < b.ends_at)
            .cloned()
        else {
            return Ok(());
        };
        if block.on != sb.current_on()
            && block.flip_commit.is_none()
            && let Err(why) = self.flip(iv, sb, block.index, block.on, report)?
        {
            return self.stop(iv, sb, &why, report);
        }
        Ok(())
    }

    /// Who, if anyone but kaizen, committed to `iv`'s files since kaizen's last commit for it
    /// (the apply, or the last flip).
    fn foreign_commit(
        &self,
        iv: &Intervention,
        sb: &Switchback,
    ) -> Result<Option<String>, EngineError> {
        let Some(since) = sb
            .blocks
            .iter()
            .filter(|b| b.flip_commit.is_some())
            .max_by_key(|b| b.flipped_at)
            .and_then(|b| b.flip_commit.clone())
            .or_else(|| iv.commit.clone())
        else {
            return Ok(None);
        };
        let branch = self.ledger.branch(iv.id)?;
        let mut files: Vec<&str> = iv.candidate.change.iter().map(|e| e.file()).collect();
        files.dedup();
        for file in files {
            match self.applier.last_change(file, &since, branch.as_deref()) {
                Ok(Some(c)) if c.by_kaizen.is_none() => {
                    return Ok(Some(format!(
                        "human commit {} ({}: {})",
                        short(&c.sha),
                        c.author,
                        c.summary
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(
                        "kaizen intervention={} stage=validate cannot trace {file}: {e}",
                        iv.id
                    );
                }
            }
        }
        Ok(None)
    }

    /// Makes the flip of `block` to `on`: pending marker, commit, recorded with its event, then
    /// the apply/revert hook (a flip is an apply or a revert where the change takes effect).
    /// `Ok(Err(why))`: not made (nothing changed).
    fn flip(
        &mut self,
        iv: &Intervention,
        sb: &Switchback,
        block: usize,
        on: bool,
        report: &mut CycleReport,
    ) -> Result<Result<(), String>, EngineError> {
        let now = self.clock.now();
        let id = iv.id;
        let Some(apply) = iv.commit.as_deref() else {
            return Ok(Err("no commit recorded for the change".into()));
        };
        let Some(undoes) = sb.undoes(on, apply) else {
            return Ok(Err("no flip off to undo".into()));
        };
        let n = sb.plan.as_ref().map_or(0, |p| p.plan.blocks);
        let marker = if block > n {
            Flip::end_marker(id)
        } else {
            Flip::block_marker(id, block)
        };
        let state = if on { "on" } else { "off" };
        let flip = Flip {
            marker,
            on,
            undoes,
            title: iv.candidate.title.clone(),
            reason: if block > n {
                format!(
                    "Switchback confirmation of {id} ended validated: the change is switched back on and stays."
                )
            } else {
                format!(
                    "Switchback confirmation of {id}: block {block} of {n} switches the change {state}. The blocks' on/off assignment was drawn at random; a permutation test over it decides."
                )
            },
        };
        let branch = self.ledger.branch(id)?;
        self.ledger.begin_flip(id, block, on, now)?;
        crate::failpoint::hit("switchback.after_pending");
        self.applier.set_audit_head(self.ledger.audit_head()?);
        match self.applier.flip(id, branch.as_deref(), &flip) {
            Ok(c) => {
                crate::failpoint::hit("switchback.after_commit");
                let event = EngineEvent::SwitchbackFlip {
                    intervention: id,
                    stage: Stage::Validate,
                    block,
                    on,
                    commit: c.sha.clone(),
                };
                self.ledger.record_flip(id, block, &c.sha, now, &event)?;
                report.push(event);
                let hook = if on {
                    crate::hooks::HookEvent::Apply
                } else {
                    crate::hooks::HookEvent::Revert
                };
                if let Some(outcome) = self
                    .hooks
                    .as_ref()
                    .and_then(|h| h.run(hook, id, &iv.candidate, &c.sha))
                {
                    let ok = outcome.ok;
                    let output = outcome.output.clone();
                    self.emit(
                        report,
                        EngineEvent::HookRan {
                            intervention: id,
                            event: hook.as_str().into(),
                            commit: c.sha.clone(),
                            ok,
                            output: outcome.output,
                        },
                    )?;
                    if !ok {
                        return Ok(Err(format!(
                            "the {} hook failed after flip {}: {output}",
                            hook.as_str(),
                            short(&c.sha)
                        )));
                    }
                }
                Ok(Ok(()))
            }
            Err(e) => {
                self.ledger.clear_flip(id, block)?;
                Ok(Err(format!("flip {state} of block {block} refused: {e}")))
            }
        }
    }

    /// The blocks as they were actually run: a block's measurement starts a washout after the
    /// last state change before its end (a late flip shortens it), and a block whose state was
    /// never set (the engine was down through it) measures nothing.
    fn as_run(iv: &Intervention, sb: &Switchback) -> Vec<Block> {
        let washout = sb
            .plan
            .as_ref()
            .map_or(Span::from_secs(0), |p| p.plan.washout);
        let mut changes: Vec<(DateTime<Utc>, bool)> = Vec::new();
        if let Some(a) = iv.applied_at {
            changes.push((a, true));
        }
        for b in &sb.blocks {
            if let (Some(at), Some(_)) = (b.flipped_at, &b.flip_commit) {
                changes.push((at, b.on));
            }
        }
        changes.sort_by_key(|c| c.0);
        sb.planned()
            .map(|b| {
                let mut block = b.block();
                match changes.iter().rev().find(|(at, _)| *at < b.ends_at) {
                    Some((at, on)) if *on == b.on => {
                        block.measure_from = block.measure_from.max(washout.after(*at));
                    }
                    _ => block.measure_from = block.end,
                }
                block
            })
            .collect()
    }

    /// Decides `iv`'s switchback after its last block and ends it.
    fn finish(
        &mut self,
        iv: &Intervention,
        sb: &Switchback,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let id = iv.id;
        let (Some(plan), Some(sig)) = (
            sb.plan.as_ref(),
            self.settings.signals.get(&iv.candidate.prediction.signal),
        ) else {
            return self.stop(
                iv,
                sb,
                "its plan or its signal is gone; cannot judge",
                report,
            );
        };
        let blocks = Self::as_run(iv, sb);
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            return self.stop(iv, sb, "the switchback has no blocks", report);
        };
        let samples = self.samples(&sig.signal.name, first.start, last.end)?;
        let mut verdict = layer1::judge(
            &sig.signal.name,
            &samples,
            &blocks,
            iv.candidate.prediction.change,
            sig.scale,
            SWITCHBACK_ALPHA,
            plan.seed,
        );
        verdict.figures.cadence = Some(plan.cadence);
        let values: Vec<(usize, Option<f64>, usize)> = blocks
            .iter()
            .map(|b| {
                let (value, n) = block_median(&samples, b);
                (b.index, value, n)
            })
            .collect();
        let measured = values
            .iter()
            .filter(|(_, _, n)| *n >= layer1::MIN_BLOCK_SAMPLES)
            .count();
        verdict.summary = format!(
            "{} (switchback permutation test over {measured} of {} blocks)",
            verdict.summary, plan.plan.blocks
        );
        self.ledger.record_verdict(id, &verdict)?;
        self.emit(
            report,
            EngineEvent::Verdict {
                intervention: id,
                look: Look::Switchback,
                verdict: verdict.clone(),
            },
        )?;
        let event = EngineEvent::SwitchbackFinished {
            intervention: id,
            outcome: verdict.outcome,
            measured,
            blocks: plan.plan.blocks,
            summary: verdict.summary.clone(),
        };
        self.ledger
            .end_switchback(id, SwitchbackState::Finished, "", &values, now, &event)?;
        report.push(event);
        crate::failpoint::hit("switchback.after_finish");
        let sb = self.ledger.switchback(id)?.unwrap_or_else(|| sb.clone());
        self.complete(iv, &sb, report)
    }

    /// Stops `iv`'s switchback before its end: an inconclusive verdict saying why (nothing is
    /// learned from it), escalated, and the change left off (fail closed).
    fn stop(
        &mut self,
        iv: &Intervention,
        sb: &Switchback,
        reason: &str,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let id = iv.id;
        let why = format!("cannot judge: switchback stopped: {reason}");
        let verdict = Verdict {
            outcome: Outcome::Inconclusive,
            summary: why.clone(),
            figures: Figures {
                method: "switchback_permutation".into(),
                cannot_judge: Some(why.clone()),
                ..Figures::default()
            },
        };
        self.ledger.record_verdict(id, &verdict)?;
        let event = EngineEvent::SwitchbackStopped {
            intervention: id,
            reason: reason.to_string(),
        };
        self.ledger
            .end_switchback(id, SwitchbackState::Stopped, reason, &[], now, &event)?;
        report.push(event);
        self.escalate(
            report,
            Some(id),
            Stage::Validate,
            format!("switchback_stopped {id}"),
            format!("switchback stopped: {reason}; the change is being left off"),
        )?;
        let sb = self.ledger.switchback(id)?.unwrap_or_else(|| sb.clone());
        self.complete(iv, &sb, report)
    }

    /// Ends the intervention of a switchback that ended (resumable: run again after a crash):
    /// validated → the change left on (flipped back on if the last block was off); otherwise the
    /// change left off — reverted by a revert commit when on, or recorded reverted by the last
    /// flip off when already off.
    fn complete(
        &mut self,
        iv: &Intervention,
        sb: &Switchback,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let id = iv.id;
        let Some(verdict) = self.ledger.verdict(id)? else {
            return Ok(());
        };
        let n = sb.plan.as_ref().map_or(0, |p| p.plan.blocks);
        if verdict.outcome == Outcome::Validated && sb.state == SwitchbackState::Finished {
            if !sb.current_on()
                && let Err(why) = self.flip(iv, sb, n + 1, true, report)?
            {
                // Validated, but it cannot be switched back on: it stays off, a human decides.
                let reason = format!(
                    "validated by switchback, but switching it back on was refused ({why}); left off"
                );
                self.escalate_once(
                    report,
                    Some(id),
                    Stage::Validate,
                    format!("switchback_end {id}"),
                    reason.clone(),
                )?;
                self.end_off(iv, sb, &reason, report)?;
                return Ok(());
            }
            let event = self.ledger.transition(
                id,
                Status::Validated,
                now,
                Stage::Validate,
                &crate::human::once(&format!("validated: {}", verdict.summary)),
            )?;
            report.push(event);
            return Ok(());
        }
        let reason = crate::human::once(&format!("{}: {}", verdict.outcome, verdict.summary));
        let reverted = self.end_off(iv, sb, &reason, report)?;
        if reverted
            && sb.state == SwitchbackState::Finished
            && let Some(why) = verdict.figures.cannot_judge.clone()
        {
            self.escalate(
                report,
                Some(id),
                Stage::Validate,
                format!("cannot_judge {id}"),
                format!("{why}; reverted"),
            )?;
        }
        if reverted {
            self.escalate_failed_fix(iv, &reason, report)?;
        }
        Ok(())
    }

    /// Leaves `iv`'s change off and ends it reverted: `true` when it ended.
    fn end_off(
        &mut self,
        iv: &Intervention,
        sb: &Switchback,
        reason: &str,
        report: &mut CycleReport,
    ) -> Result<bool, EngineError> {
        if sb.current_on() {
            return self.revert_with(iv, reason, report);
        }
        let Some(off) = sb
            .blocks
            .iter()
            .rev()
            .find(|b| !b.on && b.flip_commit.is_some())
            .and_then(|b| b.flip_commit.clone())
        else {
            return self.revert_with(iv, reason, report);
        };
        let text = format!(
            "{reason}; the change is off since switchback commit {}",
            short(&off)
        );
        let event =
            self.ledger
                .mark_reverted(iv.id, &off, self.clock.now(), Stage::Validate, &text)?;
        report.push(event);
        Ok(true)
    }

    /// Finishes the switchback flips a crash interrupted: the flip commit found by its trailer is
    /// recorded; none found, the marker is cleared (the next cycle flips again).
    pub(super) fn reconcile_flips(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let now = self.clock.now();
        for (id, block, on) in self.ledger.pending_flips()? {
            let n = self
                .ledger
                .switchback(id)?
                .and_then(|s| s.plan)
                .map_or(0, |p| p.plan.blocks);
            let marker = if block > n {
                Flip::end_marker(id)
            } else {
                Flip::block_marker(id, block)
            };
            let branch = self.ledger.branch(id)?;
            match self.applier.find_flip(id, &marker, branch.as_deref()) {
                Ok(Some(sha)) => {
                    if let Err(e) = self.applier.sync_worktree(id, &sha) {
                        self.escalate(
                            report,
                            Some(id),
                            Stage::Reconcile,
                            format!("sync_failed {id}"),
                            format!(
                                "switchback flip {sha} found but the working tree could not be synced: {e}"
                            ),
                        )?;
                    }
                    let event = EngineEvent::SwitchbackFlip {
                        intervention: id,
                        stage: Stage::Reconcile,
                        block,
                        on,
                        commit: sha.clone(),
                    };
                    self.ledger.record_flip(id, block, &sha, now, &event)?;
                    report.push(event);
                }
                Ok(None) => {
                    tracing::info!(
                        "kaizen intervention={id} stage=reconcile switchback flip of block {block} was interrupted before its commit; it is made again"
                    );
                    self.ledger.clear_flip(id, block)?;
                }
                Err(e) => {
                    self.escalate(
                        report,
                        Some(id),
                        Stage::Reconcile,
                        format!("reconcile_unreadable {id}"),
                        format!(
                            "cannot inspect the repository to reconcile an interrupted switchback flip: {e}"
                        ),
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// The median of `b`'s measured samples (signal units) and how many there are.
fn block_median(samples: &[Sample], b: &Block) -> (Option<f64>, usize) {
    let mut v: Vec<f64> = samples
        .iter()
        .filter(|s| s.at >= b.measure_from && s.at < b.end && s.value.is_finite())
        .map(|s| s.value)
        .collect();
    let n = v.len();
    if n == 0 {
        return (None, 0);
    }
    v.sort_by(f64::total_cmp);
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (Some(m), n)
}
