//! Propose and guard: gather candidates, run the guard chain, record each candidate with its
//! verdicts, and hand passing ones to apply (or park them in shadow/manual mode).

use super::resolve::Resolution;
use super::{CycleReport, Engine, EngineError};
use crate::clock::Clock;
use crate::config::Mode;
use crate::event::{EngineEvent, Stage};
use crate::guard::baseline::Coverage;
use crate::guard::{self, Decision, GuardContext, GuardPolicy, GuardVerdict, LedgerView};
use crate::intervention::{Candidate, Intervention, InterventionId, Status};
use crate::lesson::LessonStatus;
use crate::limits::VIEW_FINALIZED_PER_AREA;
use crate::propose::{Proposals, ProposeContext, Rejected, SignalsRead};
use crate::span::Span;
use crate::validate::Cadence;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// How many interventions a proposer is shown (newest first).
const PROPOSER_HISTORY: usize = 50;

impl Engine {
    /// What a proposer may look at, built from the ledger now (every signal's recent samples).
    pub fn propose_context(&self) -> Result<ProposeContext, EngineError> {
        self.propose_context_reading(&SignalsRead::All, true)
    }

    /// [`Engine::propose_context`] with the recent samples of the signals `read` names only.
    /// With `history` false, the interventions proposers are shown are not read (none is).
    fn propose_context_reading(
        &self,
        read: &SignalsRead,
        history: bool,
    ) -> Result<ProposeContext, EngineError> {
        let now = self.clock.now();
        let from = self.settings.recent_window.before(now);
        let mut recent = BTreeMap::new();
        for name in self.settings.signals.keys().filter(|n| read.reads(n)) {
            recent.insert(name.clone(), self.samples(name, from, now)?);
        }
        let view = self.guard_view(now)?;
        let interventions = if history {
            self.proposer_history(&view)?
        } else {
            Vec::new()
        };
        Ok(ProposeContext {
            now,
            signals: self
                .settings
                .signals
                .values()
                .map(|s| s.signal.clone())
                .collect(),
            recent,
            lessons: self
                .lessons
                .iter()
                .filter(|l| l.status == LessonStatus::Active)
                .cloned()
                .collect(),
            interventions,
            freezes: guard::active_freezes(&view, &self.settings.policy, now),
            budget_left: guard::budget_left(&view, &self.settings.policy, now),
        })
    }

    /// The ledger view the guards judge against at `now`: recent and live interventions, and
    /// each area's last `freeze_after_rollbacks` counted finalized ones.
    pub(super) fn guard_view(&self, now: DateTime<Utc>) -> Result<LedgerView, EngineError> {
        Ok(self.ledger.view(
            now,
            self.view_lookback(),
            self.settings.policy.freeze_after_rollbacks.max(1),
        )?)
    }

    /// The interventions a proposer sees, newest first, at most [`PROPOSER_HISTORY`]: those of
    /// `view` and each area's newest finalized ones (up to [`VIEW_FINALIZED_PER_AREA`] an area,
    /// whatever their age) — whole rows are read only for the few shown.
    fn proposer_history(&self, view: &LedgerView) -> Result<Vec<Intervention>, EngineError> {
        let mut ids: Vec<InterventionId> = view
            .interventions
            .iter()
            .map(|iv| iv.id)
            .chain(
                self.ledger
                    .finalized_facts(VIEW_FINALIZED_PER_AREA)?
                    .into_iter()
                    .map(|f| f.id),
            )
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        ids.truncate(PROPOSER_HISTORY);
        ids.into_iter()
            .map(
                |id| match view.interventions.iter().find(|iv| iv.id == id) {
                    Some(iv) => Ok(iv.clone()),
                    None => Ok(self.ledger.get(id)?),
                },
            )
            .collect()
    }

    pub(super) fn view_lookback(&self) -> chrono::Duration {
        let p = &self.settings.policy;
        let longest = [p.dedup_window, p.freeze_for, Span::hours(24)]
            .into_iter()
            .max()
            .unwrap_or(Span::hours(24));
        longest.saturating_add(Span::hours(1)).to_chrono()
    }

    /// Asks every proposer for candidates and returns them with what was not a candidate
    /// (rejected output, a failing proposer — the events a cycle would record), recording nothing: `kaizen propose` runs this on a
    /// read-only ledger while `kaizen run` holds the lock.
    pub async fn collect_proposals(
        &self,
    ) -> Result<(Vec<(String, Candidate)>, Vec<EngineEvent>), EngineError> {
        let read = self
            .proposers
            .iter()
            .fold(SignalsRead::Only(Default::default()), |acc, p| {
                acc.union(p.signals_read())
            });
        let history = self.proposers.iter().any(|p| p.reads_history());
        let ctx = self.propose_context_reading(&read, history)?;
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for proposer in &self.proposers {
            let name = proposer.name().to_string();
            match proposer.propose(&ctx).await {
                Ok(Proposals {
                    candidates,
                    rejected,
                }) => {
                    for Rejected { reason, excerpt } in rejected {
                        notes.push(EngineEvent::ProposalRejected {
                            proposer: name.clone(),
                            reason,
                            excerpt,
                        });
                    }
                    out.extend(candidates.into_iter().map(|c| (name.clone(), c)));
                }
                Err(e) => notes.push(EngineEvent::ProposerFailed {
                    proposer: name,
                    message: e.to_string(),
                }),
            }
        }
        Ok((out, notes))
    }

    /// Asks every proposer for candidates (recording rejected output and proposer failures);
    /// applies nothing.
    pub async fn gather_proposals(
        &mut self,
        report: &mut CycleReport,
    ) -> Result<Vec<(String, Candidate)>, EngineError> {
        let (out, notes) = self.collect_proposals().await?;
        for event in notes {
            self.emit(report, event)?;
        }
        Ok(out)
    }

    /// Runs the guards on a candidate, records it with their verdicts and (in autonomous mode)
    /// applies it. Returns `None` for a repeat — the same proposer's same change refused only for
    /// being parked (a duplicate of its own live or recent instance, its area frozen, waiting in
    /// the backlog): the repeat is counted on the earlier row, no new row is written — and for a
    /// candidate waiting for its baseline (recorded once as an event).
    pub async fn consider(
        &mut self,
        candidate: Candidate,
        proposer: &str,
        report: &mut CycleReport,
    ) -> Result<Option<InterventionId>, EngineError> {
        let now = self.clock.now();
        let (candidate, unresolved) = match self.resolve(candidate) {
            Resolution::Ready(c) => (c, None),
            Resolution::AlreadyApplied(c) => {
                self.already_applied(&c, proposer, report)?;
                return Ok(None);
            }
            Resolution::Unresolvable(c, why) => (c, Some(why)),
        };
        let view = self.guard_view(now)?;
        let mut verdicts = self.guard_with(&candidate, now, &view);
        if let Some(why) = unresolved {
            verdicts.push(GuardVerdict {
                guard: "resolve".into(),
                decision: Decision::Block,
                reason: why,
            });
        }
        if let Some(earlier) =
            Self::repeat_of(&candidate, &verdicts, &view, &self.settings.policy, now)
        {
            let n = self.ledger.note_repeat(earlier, now)?;
            self.note_parked(&candidate, proposer, earlier, &verdicts, &view)?;
            tracing::debug!(
                "kaizen intervention={earlier} stage=propose repeat {n} counted, not recorded anew: {}",
                candidate.title
            );
            report.suppressed += 1;
            return Ok(None);
        }
        if let Some(paused) = self.pauses().blocking(&candidate.area) {
            // Not recorded as an intervention: when the pause lifts, the next cycle proposes
            // it afresh if the trigger still holds, guarded against the world as it is then.
            report.suppressed += 1;
            self.emit(
                report,
                EngineEvent::ApplySkipped {
                    pause: paused.to_string(),
                    area: candidate.area.clone(),
                    proposer: proposer.to_string(),
                    rule: candidate.origin.rule.clone(),
                    title: candidate.title.clone(),
                },
            )?;
            self.note_suppressed(
                &candidate,
                proposer,
                crate::suppression::SuppressedBy::Pause,
                None,
                paused.to_string(),
            )?;
            return Ok(None);
        }
        // Every guard passed: no apply before the baseline the validator will use is there.
        if guard::overall(&verdicts).0 == Decision::Pass {
            match self.baseline_coverage(&candidate, now)? {
                Coverage::Decided(v) => verdicts.push(v),
                Coverage::Waiting {
                    have,
                    expected,
                    need,
                    text,
                } => {
                    self.note_suppressed(
                        &candidate,
                        proposer,
                        crate::suppression::SuppressedBy::Baseline,
                        None,
                        text.clone(),
                    )?;
                    self.wait_for_baseline(
                        &candidate,
                        &view,
                        (have, expected, need),
                        text,
                        report,
                    )?;
                    return Ok(None);
                }
            }
        }
        let why = if candidate.origin.trigger.is_empty() {
            format!("proposed by {proposer}")
        } else {
            format!("trigger: {}", candidate.origin.trigger)
        };
        // Window sizing at proposal time: say now if the window cannot supply the samples.
        let (sizing, cadence_note) = self.size_for(&candidate, now)?;
        let sizing_note = sizing
            .as_ref()
            .and_then(|a| a.get("note"))
            .and_then(|n| n.as_str())
            .map(str::to_string);
        let proposal = crate::ledger::Proposal {
            reason: &why,
            sizing: sizing.as_ref(),
            verdicts: &verdicts,
        };
        let (id, events) = self
            .ledger
            .record_proposal(&candidate, now, &proposal, |id| {
                let mismatch = cadence_note.map(|note| EngineEvent::CadenceMismatch {
                    intervention: id,
                    note,
                });
                let sized = sizing_note.map(|note| EngineEvent::WindowSized {
                    intervention: id,
                    note,
                });
                mismatch.into_iter().chain(sized).collect()
            })?;
        for event in events {
            report.push(event);
        }
        crate::failpoint::hit("guard.after_verdicts");
        self.note_recorded(&candidate, proposer, &verdicts, &view)?;
        let (decision, reason) = guard::overall(&verdicts);
        match decision {
            Decision::Block | Decision::Backlog => self.refuse(id, decision, &reason, report)?,
            Decision::Pass => match self.settings.mode_for(&candidate.area) {
                Mode::Autonomous => {
                    let calibration = self.calibration_of(&candidate)?;
                    if calibration.needs_approval {
                        self.await_approval(id, &calibration, report)?;
                    } else {
                        self.apply_now(id, &candidate, report).await?
                    }
                }
                Mode::Shadow => {
                    self.emit(report, EngineEvent::ShadowWouldApply { intervention: id })?
                }
                Mode::Review => self.open_review(id, &candidate, report).await?,
                Mode::Manual => {
                    self.emit(report, EngineEvent::AwaitingApproval { intervention: id })?
                }
            },
        }
        Ok(Some(id))
    }

    /// The window-sizing assessment of `candidate` at `now`, and a note when the configured
    /// cadence disagrees with the signal's data (none without a sizing check or a configured
    /// signal for its prediction).
    fn size_for(
        &self,
        candidate: &Candidate,
        now: DateTime<Utc>,
    ) -> Result<(Option<serde_json::Value>, Option<String>), EngineError> {
        let (Some(sizing), Some(sig)) = (
            &self.sizing,
            self.settings.signals.get(&candidate.prediction.signal),
        ) else {
            return Ok((None, None));
        };
        let history = self.samples(&sig.signal.name, Span::days(8).before(now), now)?;
        // Sized at the signal's own cadence; a configured one the data contradicts is said.
        let cadence = Cadence::resolve(&history, self.settings.validate.sample_every);
        let mismatch = cadence.disagreement(&sig.signal.name);
        Ok((sizing(candidate, sig, &history, cadence.every), mismatch))
    }

    /// The earlier intervention `candidate` merely repeats (same proposer, rule, area and
    /// targets), if the guards refused it only for being parked — its area frozen, a backlog
    /// prerequisite, a duplicate of itself, the daily budget or the concurrency limit used up:
    /// - frozen: the identical one already `blocked` since this freeze began (the first repeat
    ///   in a freeze gets its own row saying so; later ones are counted on it);
    /// - otherwise: an identical one still live (`applied`, `backlog`, `proposed`) or created
    ///   within the dedup window.
    pub(super) fn repeat_of(
        candidate: &Candidate,
        verdicts: &[GuardVerdict],
        view: &LedgerView,
        policy: &GuardPolicy,
        now: DateTime<Utc>,
    ) -> Option<InterventionId> {
        let refusing: Vec<&GuardVerdict> = verdicts
            .iter()
            .filter(|v| v.decision != Decision::Pass)
            .collect();
        let parked = |v: &&GuardVerdict| {
            // Budget and concurrency refuse the moment, not the change: a rule that keeps
            // firing while they are used up would otherwise write a row every cycle.
            v.decision == Decision::Backlog
                || matches!(
                    v.guard.as_str(),
                    "dedup" | "freeze" | "daily_budget" | "max_concurrent"
                )
        };
        if refusing.is_empty() || !refusing.iter().all(parked) {
            return None;
        }
        let key = candidate.repeat_key();
        let mut same = view
            .interventions
            .iter()
            .filter(|iv| iv.candidate.repeat_key() == key);
        if refusing.iter().any(|v| v.guard == "freeze") {
            let since = guard::active_freezes(view, policy, now)
                .into_iter()
                .find(|f| f.area == candidate.area)
                .map(|f| policy.freeze_for.before(f.until))?;
            return same
                .find(|iv| iv.status == Status::Blocked && iv.created_at >= since)
                .map(|iv| iv.id);
        }
        let window = policy.dedup_window.to_chrono();
        same.find(|iv| {
            let live = matches!(
                iv.status,
                Status::Applied | Status::Backlog | Status::Proposed
            );
            live || now - iv.created_at < window
        })
        .map(|iv| iv.id)
    }

    /// Whether the baseline `candidate` would be judged against, were it applied now, is covered
    /// by samples at the signal's cadence.
    pub(super) fn baseline_coverage(
        &self,
        candidate: &Candidate,
        now: DateTime<Utc>,
    ) -> Result<Coverage, EngineError> {
        let Some(sig) = self.settings.signals.get(&candidate.prediction.signal) else {
            // The prediction check blocks it already; nothing to wait for.
            return Ok(Coverage::Decided(GuardVerdict {
                guard: guard::baseline::NAME.into(),
                decision: Decision::Block,
                reason: format!(
                    "no baseline: {:?} is not a configured signal",
                    candidate.prediction.signal
                ),
            }));
        };
        let history = self.samples(&sig.signal.name, Span::days(8).before(now), now)?;
        let cadence = Cadence::resolve(&history, self.settings.validate.sample_every);
        Ok(guard::baseline::BaselineCoverage::default().check(candidate, &history, &cadence, now))
    }

    /// Records once that `candidate` waits for its baseline (not as an intervention: nothing was
    /// decided about the change itself); later repeats while it waits are only counted in the
    /// report. Waiting again after a later intervention of the same change is recorded again.
    fn wait_for_baseline(
        &mut self,
        candidate: &Candidate,
        view: &LedgerView,
        (have, expected, need): (usize, usize, usize),
        text: String,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let key = candidate.repeat_key();
        let mut since = now - chrono::Duration::hours(24);
        if let Some(last) = view
            .interventions
            .iter()
            .filter(|iv| iv.candidate.repeat_key() == key)
            .map(|iv| iv.created_at)
            .max()
        {
            since = since.max(last);
        }
        let recorded = self.ledger.events_between(since, now)?.iter().any(
            |e| matches!(&e.event, EngineEvent::WaitingForBaseline { key: k, .. } if *k == key),
        );
        report.suppressed += 1;
        if recorded {
            tracing::debug!("kaizen stage=guard still {text}: {}", candidate.title);
            return Ok(());
        }
        self.emit(
            report,
            EngineEvent::WaitingForBaseline {
                key,
                title: candidate.title.clone(),
                area: candidate.area.clone(),
                signal: candidate.prediction.signal.clone(),
                have,
                expected,
                need,
                text,
            },
        )
    }

    /// What the guards would say about `candidate` now (nothing is recorded).
    pub fn dry_guards(&self, candidate: &Candidate) -> Result<Vec<GuardVerdict>, EngineError> {
        self.run_guards(candidate, self.clock.now())
    }

    pub(super) fn run_guards(
        &self,
        candidate: &Candidate,
        now: DateTime<Utc>,
    ) -> Result<Vec<GuardVerdict>, EngineError> {
        let view = self.guard_view(now)?;
        Ok(self.guard_with(candidate, now, &view))
    }

    /// Runs the guard chain (ending with the prediction guard) on `candidate` against `view`.
    pub(super) fn guard_with(
        &self,
        candidate: &Candidate,
        now: DateTime<Utc>,
        view: &LedgerView,
    ) -> Vec<GuardVerdict> {
        let ctx = GuardContext {
            view,
            policy: &self.settings.policy,
            now,
            repo_root: &self.settings.repo_root,
        };
        // The chain ends with the prediction guard (the builder puts it there).
        guard::run_chain(&self.guards, candidate, &ctx)
    }

    /// Records a guard refusal: `blocked`, or `backlog` (never applied as is).
    pub(super) fn refuse(
        &mut self,
        id: InterventionId,
        decision: Decision,
        reason: &str,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let to = if decision == Decision::Backlog {
            Status::Backlog
        } else {
            Status::Blocked
        };
        let event = self.ledger.transition(id, to, now, Stage::Guard, reason)?;
        report.push(event);
        Ok(())
    }
}
