//! The engine: one cycle of observe → validate what is due (revert failures) → propose → guard →
//! apply, every decision recorded in the ledger.
//!
//! The engine is a library first: the CLI is one user; a host service embeds it the same way.
//! Stages are trait objects handed in by the builder and exchange plain data.
//!
//! One file per step of the loop, all `impl Engine` blocks over the one shared context defined
//! here (the [`Engine`]: settings, clock, ledger and the stage objects) plus the report helpers:
//!
//! | file | step |
//! | --- | --- |
//! | `reconcile.rs` | finish git operations a crash interrupted |
//! | `observe.rs` | sample every source |
//! | `propose.rs` | gather candidates, run the guard chain, record, refuse or hand to apply |
//! | `apply.rs` | canary, commit, manual approval |
//! | `validate.rs` | final and interim looks |
//! | `switchback.rs` | switchback confirmation: flips, their reconciliation, the verdict |
//! | `revert.rs` | automatic and manual reverts, escalation of refusals |
//! | `humans.rs` | what humans did: `kaizen resolve`, changes undone or changed in git |
//! | `learn.rs` | lessons from finalized interventions |
//! | `pause.rs` | the emergency stop (pause / resume), recorded |

mod apply;
mod autonomy;
mod check;
mod humans;
mod learn;
mod newest;
mod observe;
mod pause;
mod periodic;
mod propose;
mod publish;
mod recent;
mod reconcile;
mod resolve;
mod retain;
mod revert;
mod review_branch;
mod suppress;
mod switchback;
mod validate;

pub use check::{CHECK_EVERY_CYCLES, CHECK_INTERVAL, CheckReport, Violation};
pub use humans::KeyState;
pub use learn::LearnReport;
pub use pause::{pause_recorded, resume_recorded};
pub use periodic::{META_REVIEW, WrittenReview};
pub use publish::publish_status;
pub use resolve::Resolution;
pub use switchback::{MAX_SWITCHBACK, SWITCHBACK_ALPHA};

use crate::apply::{Applier, ApplyError};
use crate::canary::Canary;
use crate::clock::Clock;
use crate::config::{Config, Mode, SignalConfig, ValidateConfig};
use crate::event::{EngineEvent, Stage};
use crate::guard::{self, Guard, GuardPolicy};
use crate::intervention::{Candidate, InterventionId};
use crate::ledger::{Ledger, LedgerError};
use crate::lesson::Lesson;
use crate::observe::Source;
use crate::propose::Proposer;
use crate::signal::Sample;
use crate::span::Span;
use crate::validate::Validator;
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
/// Every variant keeps the error it wraps as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The lesson files could not be read.
    #[error("learn: {0}")]
    Lessons(#[from] crate::lesson::LessonError),
    /// The distiller failed.
    #[error("learn: {0}")]
    Distill(#[from] crate::learn::DistillError),
    /// Lesson changes could not be committed (nothing was recorded as committed).
    #[error("learn: lesson changes not committed: {source}")]
    LessonCommit {
        /// The applier's error.
        source: ApplyError,
    },
    /// The lessons dir is not inside the repository, so lessons cannot be committed there.
    #[error("learn: lessons dir {} is not inside the repository {}", dir.display(), repo.display())]
    LessonsOutsideRepo {
        /// The lessons dir.
        dir: PathBuf,
        /// The repository root.
        repo: PathBuf,
    },
    /// A host's own step (its learner, …) failed.
    #[error("{what}: {source}")]
    Host {
        /// Which step.
        what: &'static str,
        /// Its error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A pause file could not be read or written.
    #[error(transparent)]
    Pause(#[from] crate::pause::PauseError),
    /// The engine was built without a required part.
    #[error("engine not configured: {0}")]
    Incomplete(&'static str),
    /// A file kaizen writes for people (the periodic meta-review) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What the engine needs to know from the configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Autonomous, shadow or manual.
    pub mode: Mode,
    /// Per-area modes over `mode`.
    pub modes: BTreeMap<String, Mode>,
    /// The remote kaizen publishes to, if any (`git:`).
    pub git: Option<crate::publish::GitConfig>,
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
    /// Autonomous mode asks for approval below this calibrated confidence (see
    /// [`crate::calibrate`]).
    pub confidence_threshold: f64,
    /// How long samples are kept (see [`crate::retention`]).
    pub retention: crate::retention::RetentionConfig,
}

impl EngineSettings {
    /// The mode in force for `area`: its entry in `modes`, else the global `mode`.
    pub fn mode_for(&self, area: &str) -> Mode {
        self.modes.get(area).copied().unwrap_or(self.mode)
    }

    /// Settings from a loaded config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            mode: config.mode,
            modes: config.modes.clone(),
            git: config.git.clone(),
            repo_root: config.repo.clone(),
            signals: config.signals.clone(),
            policy: config.guards.clone(),
            validate: config.validate.clone(),
            recent_window: Span::hours(24),
            confidence_threshold: config.confidence_threshold,
            retention: config.retention,
        }
    }
}

/// One line of a cycle's account, in the order things happened (a view of one event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportLine {
    /// The intervention concerned, if any.
    pub id: Option<InterventionId>,
    /// The stage.
    pub stage: &'static str,
    /// What happened.
    pub text: String,
}

/// What one cycle did: the events it recorded, in order, and views of them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CycleReport {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Every event recorded, in order (the source of every other field but `samples` and
    /// `suppressed`).
    pub events: Vec<EngineEvent>,
    /// Every decision, in order, as a human reads it.
    pub lines: Vec<ReportLine>,
    /// Samples recorded.
    pub samples: usize,
    /// Interventions applied this cycle (reconciled applies included).
    pub applied: Vec<InterventionId>,
    /// Interventions validated this cycle.
    pub validated: Vec<InterventionId>,
    /// Interventions reverted this cycle (reconciled reverts included).
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
    /// Adds a recorded event: logged (structured fields), and reflected in the lines and lists.
    pub fn push(&mut self, event: EngineEvent) {
        event.trace();
        let id = event.intervention();
        let list = match &event {
            EngineEvent::Applied { .. } => Some(&mut self.applied),
            EngineEvent::Validated { .. } => Some(&mut self.validated),
            EngineEvent::Reverted { .. } => Some(&mut self.reverted),
            EngineEvent::Blocked { .. } => Some(&mut self.blocked),
            EngineEvent::Backlogged { .. } => Some(&mut self.backlog),
            EngineEvent::Extended { .. } => Some(&mut self.extended),
            EngineEvent::ShadowWouldApply { .. }
            | EngineEvent::AwaitingApproval { .. }
            | EngineEvent::NeedsApproval { .. } => Some(&mut self.proposed),
            _ => None,
        };
        if let (Some(list), Some(id)) = (list, id) {
            list.push(id);
        }
        match &event {
            EngineEvent::Escalation { text, .. } | EngineEvent::EscalationReminder { text, .. } => {
                self.escalations.push(match id {
                    Some(id) => format!("{id}: {text}"),
                    None => text.clone(),
                })
            }
            EngineEvent::InvariantViolation { .. } => self
                .escalations
                .push(format!("invariant violated: {event}")),
            _ => {}
        }
        // An escalation stands out in the printed account.
        let text = match &event {
            EngineEvent::Escalation { .. } => format!("ESCALATION: {event}"),
            _ => event.to_string(),
        };
        self.lines.push(ReportLine {
            id,
            stage: event.stage().as_str(),
            text,
        });
        self.events.push(event);
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
    state_dir: Option<PathBuf>,
    publisher: Option<Box<dyn crate::publish::Publisher>>,
    review: Option<Box<dyn crate::publish::ReviewDesk>>,
    hooks: Option<Box<dyn crate::hooks::Hooks>>,
}

impl EngineBuilder {
    /// The `on_apply` / `on_revert` hooks.
    pub fn hooks(mut self, hooks: Box<dyn crate::hooks::Hooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }
    /// Where review mode opens its branches (without one, review-mode candidates are blocked).
    pub fn review_desk(mut self, desk: Box<dyn crate::publish::ReviewDesk>) -> Self {
        self.review = Some(desk);
        self
    }
    /// The publisher pushing kaizen's commits to the remote (settings' `git:` gives its
    /// back-off; without one, a change is in effect once committed).
    pub fn publisher(mut self, publisher: Box<dyn crate::publish::Publisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }
    /// The state dir: where the state lock is taken by a runtime and where pause files are read
    /// (without one, the engine never pauses and a runtime takes no lock).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }
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
        policy.signals = self.settings.signals.keys().cloned().collect();
        // The prediction check runs last in every chain, the default or a host's own: a change
        // whose prediction cannot be judged is never applied.
        let mut guards = self.guards.unwrap_or_else(guard::default_chain);
        if !guards.iter().any(|g| g.name() == guard::prediction::NAME) {
            guards.push(Box::new(guard::prediction::PredictionOnKnownSignal));
        }
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
            guards,
            applier: self.applier.ok_or(EngineError::Incomplete("an applier"))?,
            validator: self
                .validator
                .ok_or(EngineError::Incomplete("a validator"))?,
            canaries: self.canaries,
            lessons: self.lessons,
            sizing: self.sizing,
            notifiers: self.notifiers,
            ids_checked: false,
            cycles_since_check: 0,
            newest: std::sync::Mutex::new(newest::NewestPoints::default()),
            recent: std::sync::Mutex::new(recent::RecentSamples::default()),
            kept_resolutions: std::sync::Mutex::new(resolve::KeptResolutions::default()),
            state_dir: self.state_dir,
            publisher: self.publisher,
            review: self.review,
            hooks: self.hooks,
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
    /// Whether id continuity with the repository's history was checked (once per engine).
    ids_checked: bool,
    /// Cycles since the last invariant check (0: none yet).
    cycles_since_check: u32,
    /// Each signal's newest samples, for the status after every step (see [`newest`]).
    newest: std::sync::Mutex<newest::NewestPoints>,
    /// The read signals' recent samples, for the stages' reads (see [`recent`]).
    recent: std::sync::Mutex<recent::RecentSamples>,
    /// Recent changes resolved against the tip, by the ids of the files read (see
    /// [`resolve::KeptResolutions`]).
    kept_resolutions: std::sync::Mutex<resolve::KeptResolutions>,
    state_dir: Option<PathBuf>,
    publisher: Option<Box<dyn crate::publish::Publisher>>,
    review: Option<Box<dyn crate::publish::ReviewDesk>>,
    hooks: Option<Box<dyn crate::hooks::Hooks>>,
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
            state_dir: None,
            publisher: None,
            review: None,
            hooks: None,
        }
    }

    /// The state dir, if the engine was given one.
    pub fn state_dir(&self) -> Option<&std::path::Path> {
        self.state_dir.as_deref()
    }

    /// The pauses in force now (none without a state dir).
    pub fn pauses(&self) -> crate::pause::Pauses {
        self.state_dir
            .as_deref()
            .map(crate::pause::read)
            .unwrap_or_default()
    }

    /// What kaizen sees now, from the ledger.
    pub fn status(&self) -> Result<crate::status::StatusSnapshot, EngineError> {
        // Each signal's newest samples from what the engine keeps (see [`newest`]); a poisoned
        // lock (a panic mid-update) is read afresh.
        let mut guard = self.newest.lock();
        let mut scratch = newest::NewestPoints::default();
        let kept = match guard.as_mut() {
            Ok(kept) => &mut **kept,
            Err(_) => &mut scratch,
        };
        Ok(crate::status::StatusSnapshot::compute_with(
            &self.ledger,
            &self.settings,
            self.state_dir.as_deref(),
            self.clock.now(),
            |signal, n| kept.read(&self.ledger, signal, n),
        )?)
    }

    /// Records `samples` in the ledger and folds them into the newest points and the recent
    /// samples kept.
    fn record_samples_kept(&mut self, samples: &[Sample]) -> Result<(), LedgerError> {
        self.ledger.record_samples(samples)?;
        match self.newest.get_mut() {
            Ok(kept) => kept.recorded(samples),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
        match self.recent.get_mut() {
            Ok(kept) => kept.recorded(samples),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
        Ok(())
    }

    /// Forgets the newest points and recent samples kept (samples were deleted, or may have
    /// been).
    fn forget_newest(&mut self) {
        match self.newest.get_mut() {
            Ok(kept) => kept.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
        match self.recent.get_mut() {
            Ok(kept) => kept.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
    }

    /// The samples of `signal` with `from <= at <= to`, oldest first, as [`Ledger::samples`]
    /// reads them, from what the engine keeps (see [`recent`]); a poisoned lock (a panic
    /// mid-update) reads the ledger.
    fn samples(
        &self,
        signal: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Sample>, LedgerError> {
        match self.recent.lock() {
            Ok(mut kept) => kept.read(&self.ledger, signal, from, to),
            Err(_) => self.ledger.samples(signal, from, to),
        }
    }

    /// The ledger (read access for reports and the CLI).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Records a host's own samples (history it has from before, a metric it measures itself).
    /// Hosts get no other write access to the ledger: decisions go through the stages.
    pub fn record_samples(&mut self, samples: &[Sample]) -> Result<(), EngineError> {
        self.record_samples_kept(samples)?;
        Ok(())
    }

    /// Records a host's own event (a diagnosis, a review) in the event stream.
    pub fn record(&mut self, event: &EngineEvent) -> Result<(), EngineError> {
        event.trace();
        self.ledger.append(self.clock.now(), event)?;
        Ok(())
    }

    /// The settings in force.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The engine's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The clock's now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Replaces the lessons offered to proposers.
    pub fn set_lessons(&mut self, lessons: Vec<Lesson>) {
        self.lessons = lessons;
    }

    /// Records `event` and adds it to `report`.
    pub(super) fn emit(
        &mut self,
        report: &mut CycleReport,
        event: EngineEvent,
    ) -> Result<(), EngineError> {
        self.ledger.append(self.clock.now(), &event)?;
        report.push(event);
        Ok(())
    }

    /// Escalates `text` to a human. `key` names the condition (stable, never the text): it is
    /// recorded in the ledger's `escalations` table with the event.
    pub(super) fn escalate(
        &mut self,
        report: &mut CycleReport,
        id: Option<InterventionId>,
        stage: Stage,
        key: String,
        text: String,
    ) -> Result<(), EngineError> {
        let event = EngineEvent::Escalation {
            intervention: id,
            stage,
            key,
            text,
        };
        let EngineEvent::Escalation { key, .. } = &event else {
            return Ok(());
        };
        self.ledger.append_raised(self.clock.now(), key, &event)?;
        report.push(event);
        Ok(())
    }

    /// Escalates `text` under `key` unless `key` is already open: then it is told again only
    /// when its back-off has passed (1 h, 2 h, 4 h … capped at 24 h after the last telling; see
    /// [`crate::escalation`]) as an [`EngineEvent::EscalationReminder`], and otherwise nothing
    /// is recorded — a condition seen every cycle gives a human one alarm, not one per cycle.
    pub(super) fn escalate_once(
        &mut self,
        report: &mut CycleReport,
        id: Option<InterventionId>,
        stage: Stage,
        key: String,
        text: String,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        match self.ledger.open_escalation(&key, now)? {
            None => self.escalate(report, id, stage, key, text),
            Some(open) if open.reminder_due(now) => {
                let text = format!(
                    "still needs a human (escalated {}, reminder {}; next after {}): {text}",
                    open.opened_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    open.notifications,
                    crate::escalation::renotify_after(open.notifications.saturating_add(1))
                );
                let event = EngineEvent::EscalationReminder {
                    intervention: id,
                    stage,
                    key: key.clone(),
                    text,
                    reminder: open.notifications,
                };
                self.ledger.append_raised(now, &key, &event)?;
                report.push(event);
                Ok(())
            }
            Some(open) => {
                tracing::debug!(
                    "kaizen stage={stage} escalation {key} open since {} (next reminder {}): {text}",
                    open.opened_at,
                    open.next_reminder_at
                );
                Ok(())
            }
        }
    }

    /// Runs one full cycle: reconcile → observe → validate due → propose → guard → apply.
    pub async fn cycle(&mut self) -> Result<CycleReport, EngineError> {
        let mut report = CycleReport {
            at: self.clock.now(),
            ..Default::default()
        };
        self.reconcile(&mut report)?;
        self.check_in_cycle(&mut report)?;
        self.carry_out_resolves(&mut report)?;
        self.notice_humans(&mut report)?;
        self.observe(&mut report).await?;
        self.validate_due(&mut report)?;
        self.review_step(&mut report)?;
        self.retain(&mut report)?;
        let proposals = self.gather_proposals(&mut report).await?;
        for (proposer, candidate) in proposals {
            self.consider(candidate, &proposer, &mut report).await?;
        }
        self.publish_step(&mut report, false)?;
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
        for n in crate::notify::from_events(&report.events, report.at) {
            for notifier in self.notifiers.iter().filter(|x| x.wants(n.kind)) {
                crate::failpoint::hit("notify.before_send");
                if let Err(e) = notifier.notify(&n).await {
                    failures.push((n.intervention, e.to_string()));
                }
            }
        }
        let now = self.clock.now();
        for (id, message) in failures {
            let event = EngineEvent::NotifyFailed {
                intervention: id,
                message,
            };
            event.trace();
            self.ledger.append(now, &event)?;
        }
        Ok(())
    }
}

pub(super) fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}
