//! The engine: one cycle of observe → validate what is due (revert failures) → propose → guard →
//! apply, every decision recorded in the ledger.
//!
//! The engine is a library first: the CLI is one user; a host service embeds it the same way.
//! Stages are trait objects handed in by the builder and exchange plain data.

use crate::apply::{Applier, ApplyError};
use crate::canary::{Canary, CanaryResult};
use crate::clock::Clock;
use crate::config::{Config, Mode, SignalConfig, ValidateConfig};
use crate::guard::{self, Decision, Guard, GuardContext, GuardPolicy, GuardVerdict, LedgerView};
use crate::intervention::{Candidate, Intervention, InterventionId, Outcome, Status};
use crate::learn::{DistillInput, Distiller, LessonChange};
use crate::ledger::{Ledger, LedgerError, Pending};
use crate::lesson::{Lesson, LessonStatus};
use crate::observe::Source;
use crate::propose::{Proposals, ProposeContext, Proposer, Rejected};
use crate::signal::Sample;
use crate::span::Span;
use crate::validate::{GuardrailSeries, Look, ValidationRequest, Validator, Verdict};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// How long before the same refusal is escalated again.
pub const ESCALATE_AGAIN: Span = Span::hours(6);

/// How far back validation looks for history (seasonality needs 7 days before the baseline).
pub const HISTORY: Span = Span::days(9);

/// An engine operation failed (the ledger is unusable, or a requested intervention is wrong).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A request that makes no sense for this intervention.
    #[error("{id}: {message}")]
    Refused {
        /// The intervention.
        id: InterventionId,
        /// Why.
        message: String,
    },
    /// A git operation failed.
    #[error("{id}: {source}")]
    Apply {
        /// The intervention.
        id: InterventionId,
        /// The applier's error.
        source: ApplyError,
    },
    /// The learn step failed (lesson files unreadable, commit refused, distiller error).
    #[error("learn: {0}")]
    Learn(String),
    /// The engine was built without a required part.
    #[error("engine not configured: {0}")]
    Incomplete(&'static str),
}

/// What the engine needs to know from the configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Autonomous, shadow or manual.
    pub mode: Mode,
    /// The target repository root.
    pub repo_root: PathBuf,
    /// Signals by name.
    pub signals: BTreeMap<String, SignalConfig>,
    /// Guard policy.
    pub policy: GuardPolicy,
    /// Validation settings.
    pub validate: ValidateConfig,
    /// How much recent history proposers see.
    pub recent_window: Span,
}

impl EngineSettings {
    /// Settings from a loaded config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            mode: config.mode,
            repo_root: config.repo.clone(),
            signals: config.signals.clone(),
            policy: config.guards.clone(),
            validate: config.validate.clone(),
            recent_window: Span::hours(24),
        }
    }
}

/// One line of a cycle's account, in the order things happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportLine {
    /// The intervention concerned, if any.
    pub id: Option<InterventionId>,
    /// The stage.
    pub stage: &'static str,
    /// What happened.
    pub text: String,
}

/// What one cycle did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CycleReport {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Every decision, in order.
    pub lines: Vec<ReportLine>,
    /// Samples recorded.
    pub samples: usize,
    /// Interventions applied this cycle.
    pub applied: Vec<InterventionId>,
    /// Interventions validated this cycle.
    pub validated: Vec<InterventionId>,
    /// Interventions reverted this cycle.
    pub reverted: Vec<InterventionId>,
    /// Interventions blocked this cycle.
    pub blocked: Vec<InterventionId>,
    /// Interventions put in the backlog this cycle.
    pub backlog: Vec<InterventionId>,
    /// Interventions whose window was extended.
    pub extended: Vec<InterventionId>,
    /// Interventions left `proposed` (shadow/manual mode).
    pub proposed: Vec<InterventionId>,
    /// Candidates not recorded because they repeat a live or recent identical intervention.
    pub suppressed: usize,
    /// Problems that need a human (a revert that could not be made, ...).
    pub escalations: Vec<String>,
}

impl CycleReport {
    fn line(&mut self, id: Option<InterventionId>, stage: &'static str, text: impl Into<String>) {
        let text = text.into();
        match id {
            Some(id) => tracing::info!("kaizen intervention={id} stage={stage} {text}"),
            None => tracing::info!("kaizen stage={stage} {text}"),
        }
        self.lines.push(ReportLine { id, stage, text });
    }
}

/// Computes, at proposal time, whether the prediction's window can supply enough samples
/// (stored with the intervention as JSON; `None` = no opinion).
pub type SizingFn =
    dyn Fn(&Candidate, &SignalConfig, &[Sample], Span) -> Option<serde_json::Value> + Send + Sync;

/// The default proposal-time sizing check: can the prediction's window detect the predicted
/// change given the signal's recent noise? ("unvalidatable as predicted: needs 64 samples,
/// window gives 30").
pub fn window_sizing() -> Box<SizingFn> {
    Box::new(|candidate, sig, history, sample_every| {
        let sizing = crate::validate::sizing::size_window(
            &candidate.prediction,
            &sig.signal,
            sig.scale,
            history,
            sample_every,
        );
        let mut v = serde_json::to_value(&sizing).ok()?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "note".into(),
                serde_json::Value::String(sizing.message.clone()),
            );
        }
        Some(v)
    })
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    settings: EngineSettings,
    clock: Option<Arc<dyn Clock>>,
    ledger: Option<Ledger>,
    sources: Vec<Box<dyn Source>>,
    proposers: Vec<Box<dyn Proposer>>,
    guards: Option<Vec<Box<dyn Guard>>>,
    applier: Option<Box<dyn Applier>>,
    validator: Option<Box<dyn Validator>>,
    canaries: Vec<Box<dyn Canary>>,
    lessons: Vec<Lesson>,
    sizing: Option<Box<SizingFn>>,
    notifiers: Vec<Box<dyn crate::notify::Notifier>>,
}

impl EngineBuilder {
    /// Adds notifiers (told of applies, validations, reverts and escalations after each cycle).
    pub fn notifiers(
        mut self,
        notifiers: impl IntoIterator<Item = Box<dyn crate::notify::Notifier>>,
    ) -> Self {
        self.notifiers.extend(notifiers);
        self
    }
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// The ledger (required).
    pub fn ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = Some(ledger);
        self
    }
    /// Adds a source.
    pub fn source(mut self, source: Box<dyn Source>) -> Self {
        self.sources.push(source);
        self
    }
    /// Adds sources.
    pub fn sources(mut self, sources: impl IntoIterator<Item = Box<dyn Source>>) -> Self {
        self.sources.extend(sources);
        self
    }
    /// Adds a proposer.
    pub fn proposer(mut self, proposer: Box<dyn Proposer>) -> Self {
        self.proposers.push(proposer);
        self
    }
    /// Replaces the guard chain (default: [`guard::default_chain`]).
    pub fn guards(mut self, guards: Vec<Box<dyn Guard>>) -> Self {
        self.guards = Some(guards);
        self
    }
    /// The applier (required).
    pub fn applier(mut self, applier: Box<dyn Applier>) -> Self {
        self.applier = Some(applier);
        self
    }
    /// The validator (required).
    pub fn validator(mut self, validator: Box<dyn Validator>) -> Self {
        self.validator = Some(validator);
        self
    }
    /// Adds canaries.
    pub fn canaries(mut self, canaries: impl IntoIterator<Item = Box<dyn Canary>>) -> Self {
        self.canaries.extend(canaries);
        self
    }
    /// The lessons offered to proposers.
    pub fn lessons(mut self, lessons: Vec<Lesson>) -> Self {
        self.lessons = lessons;
        self
    }
    /// The proposal-time window sizing check.
    pub fn sizing(mut self, sizing: Box<SizingFn>) -> Self {
        self.sizing = Some(sizing);
        self
    }
    /// Builds the engine.
    pub fn build(self) -> Result<Engine, EngineError> {
        let mut policy = self.settings.policy.clone();
        // Only areas with a canary that can actually run count as having one.
        policy.canary_areas = self.canaries.iter().map(|c| c.area().to_string()).collect();
        Ok(Engine {
            settings: EngineSettings {
                policy,
                ..self.settings
            },
            clock: self
                .clock
                .unwrap_or_else(|| Arc::new(crate::clock::SystemClock)),
            ledger: self.ledger.ok_or(EngineError::Incomplete("a ledger"))?,
            sources: self.sources,
            proposers: self.proposers,
            guards: self.guards.unwrap_or_else(guard::default_chain),
            applier: self.applier.ok_or(EngineError::Incomplete("an applier"))?,
            validator: self
                .validator
                .ok_or(EngineError::Incomplete("a validator"))?,
            canaries: self.canaries,
            lessons: self.lessons,
            sizing: self.sizing,
            notifiers: self.notifiers,
        })
    }
}

/// The loop.
pub struct Engine {
    settings: EngineSettings,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    sources: Vec<Box<dyn Source>>,
    proposers: Vec<Box<dyn Proposer>>,
    guards: Vec<Box<dyn Guard>>,
    applier: Box<dyn Applier>,
    validator: Box<dyn Validator>,
    canaries: Vec<Box<dyn Canary>>,
    lessons: Vec<Lesson>,
    sizing: Option<Box<SizingFn>>,
    notifiers: Vec<Box<dyn crate::notify::Notifier>>,
}

impl Engine {
    /// Starts building an engine with `settings`.
    pub fn builder(settings: EngineSettings) -> EngineBuilder {
        EngineBuilder {
            settings,
            clock: None,
            ledger: None,
            sources: Vec::new(),
            proposers: Vec::new(),
            guards: None,
            applier: None,
            validator: None,
            canaries: Vec::new(),
            lessons: Vec::new(),
            sizing: None,
            notifiers: Vec::new(),
        }
    }

    /// The ledger (read access for reports and the CLI).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ledger, mutable (hosts recording their own samples or events).
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The settings in force.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The clock's now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Replaces the lessons offered to proposers.
    pub fn set_lessons(&mut self, lessons: Vec<Lesson>) {
        self.lessons = lessons;
    }

    /// The applier (for lesson commits and the like).
    pub fn applier(&self) -> &dyn Applier {
        self.applier.as_ref()
    }

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
                        self.ledger.set_pending(id, None)?;
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

    fn escalate(
        &mut self,
        report: &mut CycleReport,
        id: Option<InterventionId>,
        stage: &'static str,
        text: String,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        match id {
            Some(id) => {
                tracing::error!("kaizen intervention={id} stage={stage} escalation: {text}")
            }
            None => tracing::error!("kaizen stage={stage} escalation: {text}"),
        }
        self.ledger
            .record_event(now, id, stage, "escalation", &text, None)?;
        report.escalations.push(match id {
            Some(id) => format!("{id}: {text}"),
            None => text.clone(),
        });
        report.lines.push(ReportLine {
            id,
            stage,
            text: format!("ESCALATION: {text}"),
        });
        Ok(())
    }

    /// Samples every source once and records the samples (failures are recorded as gaps).
    pub async fn observe(&mut self, report: &mut CycleReport) -> Result<usize, EngineError> {
        let now = self.clock.now();
        let mut all = Vec::new();
        for source in &self.sources {
            match source.observe(now).await {
                Ok(samples) => {
                    for s in samples {
                        if s.value.is_finite() {
                            all.push(s);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "kaizen stage=observe source={} error: {}",
                        source.name(),
                        e.message
                    );
                    self.ledger.record_event(
                        now,
                        None,
                        "observe",
                        "sample_error",
                        &e.to_string(),
                        None,
                    )?;
                    report.lines.push(ReportLine {
                        id: None,
                        stage: "observe",
                        text: format!("gap: {e}"),
                    });
                }
            }
        }
        self.ledger.record_samples(&all)?;
        report.samples += all.len();
        Ok(all.len())
    }

    /// Runs one full cycle: reconcile → observe → validate due → propose → guard → apply.
    pub async fn cycle(&mut self) -> Result<CycleReport, EngineError> {
        let mut report = CycleReport {
            at: self.clock.now(),
            ..Default::default()
        };
        self.reconcile(&mut report)?;
        self.observe(&mut report).await?;
        self.validate_due(&mut report)?;
        let proposals = self.gather_proposals(&mut report).await?;
        for (proposer, candidate) in proposals {
            self.consider(candidate, &proposer, &mut report).await?;
        }
        self.notify(&report).await?;
        Ok(report)
    }

    /// Sends a report's notifications to every notifier that wants them. Delivery failures are
    /// recorded as events and never stop the loop.
    pub async fn notify(&mut self, report: &CycleReport) -> Result<(), EngineError> {
        if self.notifiers.is_empty() {
            return Ok(());
        }
        let mut failures = Vec::new();
        for n in crate::notify::from_report(report) {
            for notifier in self.notifiers.iter().filter(|x| x.wants(n.kind)) {
                if let Err(e) = notifier.notify(&n).await {
                    failures.push((n.intervention, e.to_string()));
                }
            }
        }
        let now = self.clock.now();
        for (id, message) in failures {
            tracing::warn!("kaizen stage=notify {message}");
            self.ledger
                .record_event(now, id, "notify", "notify_error", &message, None)?;
        }
        Ok(())
    }

    /// What a proposer may look at, built from the ledger now.
    pub fn propose_context(&self) -> Result<ProposeContext, EngineError> {
        let now = self.clock.now();
        let from = now - self.settings.recent_window.to_chrono();
        let mut recent = BTreeMap::new();
        for name in self.settings.signals.keys() {
            recent.insert(name.clone(), self.ledger.samples(name, from, now)?);
        }
        let view = self.ledger.view(now, self.view_lookback())?;
        let mut interventions = view.interventions.clone();
        interventions.truncate(50);
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

    fn view_lookback(&self) -> chrono::Duration {
        let p = &self.settings.policy;
        let longest = [p.dedup_window, p.freeze_for, Span::hours(24)]
            .into_iter()
            .max()
            .unwrap_or(Span::hours(24));
        longest.to_chrono() + chrono::Duration::hours(1)
    }

    /// Asks every proposer for candidates (recording rejected output and proposer failures);
    /// applies nothing.
    pub async fn gather_proposals(
        &mut self,
        report: &mut CycleReport,
    ) -> Result<Vec<(String, Candidate)>, EngineError> {
        let ctx = self.propose_context()?;
        let now = ctx.now;
        let mut out = Vec::new();
        let mut events: Vec<(String, String, Option<serde_json::Value>)> = Vec::new();
        for proposer in &self.proposers {
            let name = proposer.name().to_string();
            match proposer.propose(&ctx).await {
                Ok(Proposals {
                    candidates,
                    rejected,
                }) => {
                    for Rejected { reason, excerpt } in rejected {
                        events.push((
                            "proposal_rejected".into(),
                            format!("{name}: rejected: {reason}"),
                            Some(serde_json::json!({ "proposer": name, "reason": reason, "excerpt": excerpt })),
                        ));
                    }
                    out.extend(candidates.into_iter().map(|c| (name.clone(), c)));
                }
                Err(e) => events.push(("proposer_error".into(), e.to_string(), None)),
            }
        }
        for (kind, detail, data) in events {
            tracing::warn!("kaizen stage=propose {kind}: {detail}");
            self.ledger
                .record_event(now, None, "propose", &kind, &detail, data.as_ref())?;
            report.lines.push(ReportLine {
                id: None,
                stage: "propose",
                text: detail,
            });
        }
        Ok(out)
    }

    /// Runs the guards on a candidate, records it with their verdicts and (in autonomous mode)
    /// applies it. Returns `None` for a repeat: the same proposer's same change, blocked only as
    /// a duplicate of its own live or recent instance (a rule that keeps firing while its change
    /// is applied or parked) — the earlier record stands and no new row is written.
    pub async fn consider(
        &mut self,
        candidate: Candidate,
        proposer: &str,
        report: &mut CycleReport,
    ) -> Result<Option<InterventionId>, EngineError> {
        let now = self.clock.now();
        let view = self.ledger.view(now, self.view_lookback())?;
        let verdicts = self.guard_with(&candidate, now, &view);
        if let Some(earlier) = Self::repeat_of(
            &candidate,
            &verdicts,
            &view,
            self.settings.policy.dedup_window,
            now,
        ) {
            tracing::debug!(
                "kaizen stage=propose repeat of {earlier} suppressed: {}",
                candidate.title
            );
            report.suppressed += 1;
            return Ok(None);
        }
        let why = if candidate.origin.trigger.is_empty() {
            format!("proposed by {proposer}")
        } else {
            format!("trigger: {}", candidate.origin.trigger)
        };
        let id = self.ledger.insert_proposed(&candidate, now, &why)?;
        report.line(
            Some(id),
            "propose",
            format!(
                "{} [{}] ({}; predicts {})",
                candidate.title, candidate.area, why, candidate.prediction
            ),
        );

        // Window sizing at proposal time: say now if the window cannot supply the samples.
        if let (Some(sizing), Some(sig)) = (
            &self.sizing,
            self.settings.signals.get(&candidate.prediction.signal),
        ) {
            let history =
                self.ledger
                    .samples(&sig.signal.name, now - Span::days(8).to_chrono(), now)?;
            if let Some(assessment) = sizing(
                &candidate,
                sig,
                &history,
                self.settings.validate.sample_every,
            ) {
                if let Some(note) = assessment.get("note").and_then(|n| n.as_str()) {
                    report.line(Some(id), "propose", format!("window sizing: {note}"));
                }
                self.ledger.record_sizing(id, &assessment)?;
            }
        }

        self.ledger.record_guard_verdicts(id, now, &verdicts)?;
        for v in verdicts.iter().filter(|v| v.decision != Decision::Pass) {
            tracing::info!(
                "kaizen intervention={id} stage=guard guard={} decision={} reason={}",
                v.guard,
                v.decision,
                v.reason
            );
        }
        let (decision, reason) = guard::overall(&verdicts);
        match decision {
            Decision::Block | Decision::Backlog => self.refuse(id, decision, &reason, report)?,
            Decision::Pass => match self.settings.mode {
                Mode::Autonomous => self.apply_now(id, &candidate, report).await?,
                Mode::Shadow => {
                    self.ledger.record_event(
                        now,
                        Some(id),
                        "apply",
                        "shadow",
                        "shadow mode: all guards passed; would apply",
                        None,
                    )?;
                    report.proposed.push(id);
                    report.line(
                        Some(id),
                        "apply",
                        "shadow mode: would apply (not committed)",
                    );
                }
                Mode::Manual => {
                    self.ledger.record_event(
                        now,
                        Some(id),
                        "apply",
                        "awaiting_approval",
                        &format!("manual mode: all guards passed; apply with `kaizen apply {id}`"),
                        None,
                    )?;
                    report.proposed.push(id);
                    report.line(
                        Some(id),
                        "apply",
                        format!("manual mode: awaiting `kaizen apply {id}`"),
                    );
                }
            },
        }
        Ok(Some(id))
    }

    /// The earlier intervention `candidate` merely repeats, if the guards blocked it only as a
    /// duplicate and an identical one (same proposer, rule, area and targets) is live or recent.
    fn repeat_of(
        candidate: &Candidate,
        verdicts: &[GuardVerdict],
        view: &LedgerView,
        dedup_window: Span,
        now: DateTime<Utc>,
    ) -> Option<InterventionId> {
        let blocking: Vec<&GuardVerdict> = verdicts
            .iter()
            .filter(|v| v.decision == Decision::Block)
            .collect();
        if blocking.is_empty() || blocking.iter().any(|v| v.guard != "dedup") {
            return None;
        }
        let window = dedup_window.to_chrono();
        let targets = candidate.targets();
        view.interventions
            .iter()
            .find(|iv| {
                let c = &iv.candidate;
                let live = matches!(
                    iv.status,
                    Status::Applied | Status::Backlog | Status::Proposed
                );
                (live || now - iv.created_at < window)
                    && c.area == candidate.area
                    && c.origin.proposer == candidate.origin.proposer
                    && c.origin.rule == candidate.origin.rule
                    && c.targets() == targets
            })
            .map(|iv| iv.id)
    }

    /// What the guards would say about `candidate` now (nothing is recorded).
    pub fn dry_guards(&self, candidate: &Candidate) -> Result<Vec<GuardVerdict>, EngineError> {
        self.run_guards(candidate, self.clock.now())
    }

    fn run_guards(
        &self,
        candidate: &Candidate,
        now: DateTime<Utc>,
    ) -> Result<Vec<GuardVerdict>, EngineError> {
        let view = self.ledger.view(now, self.view_lookback())?;
        Ok(self.guard_with(candidate, now, &view))
    }

    /// Runs the guard chain (and the prediction check) on `candidate` against `view`.
    fn guard_with(
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
        let mut verdicts = guard::run_chain(&self.guards, candidate, &ctx);
        // The prediction must be on a configured signal, or it can never be validated.
        let known = self
            .settings
            .signals
            .contains_key(&candidate.prediction.signal);
        verdicts.push(GuardVerdict {
            guard: "prediction".into(),
            decision: if known {
                Decision::Pass
            } else {
                Decision::Block
            },
            reason: if known {
                format!("predicts {} on a configured signal", candidate.prediction)
            } else {
                format!(
                    "prediction on unknown signal {:?}: it could never be validated",
                    candidate.prediction.signal
                )
            },
        });
        verdicts
    }

    async fn apply_now(
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
        self.ledger.set_pending(id, Some(Pending::Apply))?;
        match self.applier.apply(id, candidate) {
            Ok(commit) => {
                let due = now
                    + self.settings.validate.settle.to_chrono()
                    + candidate.prediction.within.to_chrono();
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
                self.ledger.set_pending(id, None)?;
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
        let now = self.clock.now();
        // Guarded again: leave the intervention itself out, so it is not its own duplicate.
        let view = self.ledger.view(now, self.view_lookback())?.excluding(id);
        let verdicts = self.guard_with(&iv.candidate, now, &view);
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

    /// Records a guard refusal: `blocked`, or `backlog` (never applied as is).
    fn refuse(
        &mut self,
        id: InterventionId,
        decision: Decision,
        reason: &str,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        if decision == Decision::Backlog {
            self.ledger
                .transition(id, Status::Backlog, now, "guard", reason)?;
            report.backlog.push(id);
            report.line(
                Some(id),
                "guard",
                format!("backlog (never applied as is): {reason}"),
            );
        } else {
            self.ledger
                .transition(id, Status::Blocked, now, "guard", reason)?;
            report.blocked.push(id);
            report.line(Some(id), "guard", format!("blocked: {reason}"));
        }
        Ok(())
    }

    /// Judges every applied intervention: final looks for those due, interim looks (regression
    /// only) for the rest past their settle time. Failures are reverted.
    pub fn validate_due(&mut self, report: &mut CycleReport) -> Result<(), EngineError> {
        let now = self.clock.now();
        let due: Vec<Intervention> = self.ledger.due(now)?;
        let due_ids: Vec<InterventionId> = due.iter().map(|i| i.id).collect();
        for iv in due {
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
            let start = applied + self.settings.validate.settle.to_chrono();
            if looks == 0 || due_ids.contains(&iv.id) || now < start || now >= due {
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
            let taken = self
                .ledger
                .events_for(iv.id)?
                .iter()
                .filter(|e| e.kind == "interim_look")
                .filter_map(|e| {
                    e.data
                        .as_ref()
                        .and_then(|d| d.get("look"))
                        .and_then(|v| v.as_i64())
                })
                .max()
                .unwrap_or(0);
            if k <= taken {
                continue;
            }
            self.ledger.record_event(
                now,
                Some(iv.id),
                "validate",
                "interim_look",
                &format!("interim look {k} of {}", looks - 1),
                Some(&serde_json::json!({ "look": k })),
            )?;
            self.judge(&iv, Look::Interim, report)?;
        }
        Ok(())
    }

    fn judge(
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
                report.line(
                    Some(id),
                    "validate",
                    format!("interim look: regressed — {}", verdict.summary),
                );
                self.revert_with(
                    iv,
                    &format!("regressed (interim look): {}", verdict.summary),
                    report,
                )?;
            }
            return Ok(());
        }
        match (verdict.outcome, look) {
            (Outcome::Validated, _) => {
                self.ledger.record_verdict(id, &verdict)?;
                self.ledger.transition(
                    id,
                    Status::Validated,
                    now,
                    "validate",
                    &format!("validated: {}", verdict.summary),
                )?;
                report.validated.push(id);
                report.line(
                    Some(id),
                    "validate",
                    format!("validated: {}", verdict.summary),
                );
            }
            (Outcome::Inconclusive, Look::Final) => {
                let due =
                    iv.due_at.unwrap_or(now).max(now) + iv.candidate.prediction.within.to_chrono();
                let n = self.ledger.extend(id, due)?;
                self.ledger.record_event(
                    now,
                    Some(id),
                    "validate",
                    "extended",
                    &format!(
                        "inconclusive ({}); window extended to {} (extension {n} of {})",
                        verdict.summary,
                        due.format("%Y-%m-%dT%H:%M:%SZ"),
                        self.settings.validate.max_extensions
                    ),
                    serde_json::to_value(&verdict).ok().as_ref(),
                )?;
                report.extended.push(id);
                report.line(
                    Some(id),
                    "validate",
                    format!(
                        "inconclusive, window extended to {} ({})",
                        due.format("%Y-%m-%dT%H:%M:%SZ"),
                        verdict.summary
                    ),
                );
            }
            (outcome, _) => {
                self.ledger.record_verdict(id, &verdict)?;
                let reason = match outcome {
                    Outcome::Inconclusive => format!(
                        "still inconclusive after {} extensions, reverted (a change that cannot be shown to help is not kept): {}",
                        self.settings.validate.max_extensions, verdict.summary
                    ),
                    _ => format!("{outcome}: {}", verdict.summary),
                };
                report.line(Some(id), "validate", reason.clone());
                self.revert_with(iv, &reason, report)?;
            }
        }
        Ok(())
    }

    fn verdict_for(&self, iv: &Intervention, look: Look) -> Result<Option<Verdict>, EngineError> {
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
        let from = applied_at - HISTORY.to_chrono();
        let samples = self.ledger.samples(&sig.signal.name, from, now)?;
        let mut guard_samples: Vec<(&SignalConfig, Vec<Sample>)> = Vec::new();
        for g in self.settings.signals.values() {
            if g.signal.name != sig.signal.name
                && g.guardrail_for.iter().any(|a| a == &iv.candidate.area)
            {
                guard_samples.push((g, self.ledger.samples(&g.signal.name, from, now)?));
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
            sample_every: self.settings.validate.sample_every,
        };
        Ok(Some(self.validator.validate(&req)))
    }

    fn revert_with(
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

/// What one learn run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LearnReport {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// One line per lesson change (`created L-…`, `updated L-… v3`, `retired L-…: why`).
    pub changes: Vec<String>,
    /// The commit holding the lesson files, if anything changed.
    pub commit: Option<String>,
    /// Lesson files that could not be loaded (reported, left alone).
    pub load_errors: Vec<String>,
}

impl Engine {
    /// Distils finalized interventions into lessons in `lessons_dir` (inside the repository),
    /// retires lessons whose `retired_when` holds now, commits the lesson files as one commit
    /// (not an intervention, not counted against the budget), indexes them in the ledger, and
    /// offers the active ones to proposers from now on.
    pub fn learn(
        &mut self,
        distiller: &dyn Distiller,
        lessons_dir: &std::path::Path,
    ) -> Result<LearnReport, EngineError> {
        let (changes, load_errors) = self.plan_learn(distiller, lessons_dir)?;
        self.commit_learn(changes, load_errors, distiller.name(), lessons_dir)
    }

    /// The first half of [`Engine::learn`]: the lesson changes the distiller proposes now (and the
    /// lesson files that could not be loaded), without writing anything — so a host may refine
    /// them (e.g. an LLM rewording `because`) before [`Engine::commit_learn`].
    pub fn plan_learn(
        &mut self,
        distiller: &dyn Distiller,
        lessons_dir: &std::path::Path,
    ) -> Result<(Vec<LessonChange>, Vec<String>), EngineError> {
        let now = self.clock.now();
        let (lessons, errors) = crate::lesson::store::load(lessons_dir)
            .map_err(|e| EngineError::Learn(e.to_string()))?;
        let load_errors = errors.iter().map(|e| e.to_string()).collect();
        let finalized = self.ledger.finalized()?;
        let mut verdicts = BTreeMap::new();
        for iv in &finalized {
            if let Some(v) = self.ledger.verdict(iv.id)? {
                verdicts.insert(
                    iv.id.to_string(),
                    serde_json::to_value(&v).unwrap_or_default(),
                );
            }
        }
        let mut recent = BTreeMap::new();
        for name in self.settings.signals.keys() {
            recent.insert(
                name.clone(),
                self.ledger
                    .samples(name, now - Span::days(8).to_chrono(), now)?,
            );
        }
        let input = DistillInput {
            now,
            finalized: &finalized,
            verdicts: &verdicts,
            lessons: &lessons,
            recent: &recent,
        };
        let changes = distiller
            .distill(&input)
            .map_err(|e| EngineError::Learn(e.to_string()))?;
        Ok((changes, load_errors))
    }

    /// The second half of [`Engine::learn`]: commits `changes` as one commit, records and indexes
    /// them, and offers the active lessons to proposers.
    pub fn commit_learn(
        &mut self,
        changes: Vec<LessonChange>,
        load_errors: Vec<String>,
        distiller_name: &str,
        lessons_dir: &std::path::Path,
    ) -> Result<LearnReport, EngineError> {
        let now = self.clock.now();
        let mut report = LearnReport {
            at: now,
            load_errors,
            ..Default::default()
        };
        let rel =
            crate::config::relative_to(lessons_dir, &self.settings.repo_root).ok_or_else(|| {
                EngineError::Learn(format!(
                    "lessons dir {} is not inside the repository {}",
                    lessons_dir.display(),
                    self.settings.repo_root.display()
                ))
            })?;
        if !changes.is_empty() {
            let writes = crate::lesson::store::change_writes(&rel, &changes);
            let message = crate::lesson::store::commit_message(distiller_name, &changes);
            match self.applier.commit_files(&writes, &message) {
                Ok(commit) => report.commit = commit.map(|c| c.sha),
                Err(e) => {
                    self.ledger.record_event(
                        now,
                        None,
                        "learn",
                        "commit_refused",
                        &format!("lesson changes not committed: {e}"),
                        None,
                    )?;
                    return Err(EngineError::Learn(format!(
                        "lesson changes not committed: {e}"
                    )));
                }
            }
        }
        for change in &changes {
            let l = change.lesson();
            let line = match change {
                LessonChange::Create(_) => {
                    format!("created {} (v{}): prefer {}", l.id, l.version, l.prefer)
                }
                LessonChange::Update(_) => format!(
                    "updated {} to v{} ({} evidence)",
                    l.id,
                    l.version,
                    l.evidence.len()
                ),
                LessonChange::Retire(_) => format!(
                    "retired {}: {}",
                    l.id,
                    l.retired_reason.clone().unwrap_or_default()
                ),
            };
            tracing::info!("kaizen stage=learn lesson={} {line}", l.id);
            self.ledger.record_event(
                now,
                None,
                "learn",
                "lesson",
                &line,
                serde_json::to_value(l).ok().as_ref(),
            )?;
            report.changes.push(line);
        }
        // Index every lesson now on disk (hand-written ones too), then offer the active ones.
        let (lessons, _) = crate::lesson::store::load(lessons_dir)
            .map_err(|e| EngineError::Learn(e.to_string()))?;
        for l in &lessons {
            let row = crate::ledger::LessonRow {
                id: l.id.clone(),
                version: l.version,
                status: match l.status {
                    LessonStatus::Active => "active".into(),
                    LessonStatus::Retired => "retired".into(),
                },
                area: l.scope.area.clone(),
                file: format!("{rel}/{}", crate::lesson::store::file_name(&l.id)),
            };
            self.ledger
                .index_lesson(&row, now, &serde_json::to_value(l).unwrap_or_default())?;
        }
        self.lessons = lessons;
        Ok(report)
    }
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}
