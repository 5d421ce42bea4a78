//! The one event stream: every decision of every stage as a typed [`EngineEvent`].
//!
//! [`Ledger::append`](crate::ledger::Ledger::append) is the only way an event is written. The
//! cycle report ([`CycleReport`](crate::engine::CycleReport)), the CLI's printed lines, the
//! tracing log (fields `intervention`, `stage`, `kind`, `verdict`; every line starts with
//! `kaizen intervention=K-… stage=…` or `kaizen stage=…`), notifications and the runtime's
//! `subscribe()` stream are views of it: each is computed from the typed event, never parsed
//! back out of prose.
//!
//! Stability: the `kind` tag of each variant is part of the ledger format and of `kaizen events
//! --kind`; it never changes once released. New decisions get new variants (the enum is
//! `#[non_exhaustive]`).

use crate::guard::GuardVerdict;
use crate::intervention::{InterventionId, Status};
use crate::validate::{Look, Verdict};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The stage of the loop an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// Sampling sources.
    Observe,
    /// Gathering candidates.
    Propose,
    /// The guard chain.
    Guard,
    /// A canary trial.
    Canary,
    /// Committing a change.
    Apply,
    /// Judging a change.
    Validate,
    /// Undoing a change.
    Revert,
    /// Lessons.
    Learn,
    /// Finishing what a crash interrupted.
    Reconcile,
    /// The invariant checker.
    Check,
    /// Delivering notifications.
    Notify,
    /// The emergency stop.
    Pause,
    /// The meta-review.
    Review,
    /// A diagnosis.
    Diagnose,
    /// Pushing to the remote and review branches (GitOps).
    Publish,
    /// A hook command.
    Hook,
    /// A human's request (approval, resolve).
    Operator,
    /// What humans did in the repository, noticed by the loop.
    Humans,
    /// The runtime itself (reloads).
    Runtime,
    /// The retention pass (see [`crate::retention`]).
    Retain,
    /// A stage recorded before typed events (old ledgers); see [`EngineEvent::Legacy`].
    Other,
}

impl Stage {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Observe => "observe",
            Stage::Propose => "propose",
            Stage::Guard => "guard",
            Stage::Canary => "canary",
            Stage::Apply => "apply",
            Stage::Validate => "validate",
            Stage::Revert => "revert",
            Stage::Learn => "learn",
            Stage::Reconcile => "reconcile",
            Stage::Check => "check",
            Stage::Notify => "notify",
            Stage::Pause => "pause",
            Stage::Review => "review",
            Stage::Diagnose => "diagnose",
            Stage::Publish => "publish",
            Stage::Hook => "hook",
            Stage::Operator => "operator",
            Stage::Humans => "humans",
            Stage::Runtime => "runtime",
            Stage::Retain => "retain",
            Stage::Other => "other",
        }
    }

    /// The stage named `s` ([`Stage::Other`] for a name this kaizen does not know).
    pub fn parse(s: &str) -> Stage {
        [
            Stage::Observe,
            Stage::Propose,
            Stage::Guard,
            Stage::Canary,
            Stage::Apply,
            Stage::Validate,
            Stage::Revert,
            Stage::Learn,
            Stage::Reconcile,
            Stage::Check,
            Stage::Notify,
            Stage::Pause,
            Stage::Review,
            Stage::Diagnose,
            Stage::Operator,
            Stage::Humans,
            Stage::Runtime,
            Stage::Publish,
            Stage::Hook,
            Stage::Retain,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
        .unwrap_or(Stage::Other)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decision of the loop. Serialized with a stable `kind` tag (the ledger's `kind` column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineEvent {
    // ----- observe --------------------------------------------------------------------------
    /// A source could not be sampled: a gap, never a value.
    #[serde(rename = "sample_error")]
    SampleGap {
        /// The source.
        source: String,
        /// What went wrong.
        message: String,
    },

    // ----- propose --------------------------------------------------------------------------
    /// A proposer's output was refused before it became a candidate.
    ProposalRejected {
        /// The proposer.
        proposer: String,
        /// Why.
        reason: String,
        /// A bounded excerpt of what it said.
        excerpt: String,
    },
    /// A proposer failed.
    #[serde(rename = "proposer_error")]
    ProposerFailed {
        /// The proposer.
        proposer: String,
        /// What went wrong.
        message: String,
    },
    /// A candidate whose change is already in place (no intervention, no commit).
    AlreadyApplied {
        /// The proposer.
        proposer: String,
        /// The rule, if any.
        rule: Option<String>,
        /// The candidate's title.
        title: String,
        /// Its area.
        area: String,
        /// The change, one line per edit.
        change: Vec<String>,
    },
    /// A candidate recorded as an intervention.
    Proposed {
        /// The new intervention.
        intervention: InterventionId,
        /// Its title.
        title: String,
        /// Its area.
        area: String,
        /// The proposer (`rules`, `llm`, ...).
        proposer: String,
        /// The rule, if any.
        rule: Option<String>,
        /// What triggered it (empty when the proposer gave none).
        trigger: String,
        /// The prediction, for a human.
        prediction: String,
        /// Why it was proposed (`trigger: …` or `proposed by …`).
        reason: String,
    },
    /// The signal's observed cadence disagrees with the configured one.
    CadenceMismatch {
        /// The intervention.
        intervention: InterventionId,
        /// What disagrees.
        note: String,
    },
    /// The proposal-time window sizing assessment.
    WindowSized {
        /// The intervention.
        intervention: InterventionId,
        /// For a human.
        note: String,
    },

    // ----- guard ----------------------------------------------------------------------------
    /// Every guard's verdict on an intervention (also stored per guard for `kaizen show`).
    GuardVerdicts {
        /// The intervention.
        intervention: InterventionId,
        /// Each guard's verdict, in chain order.
        verdicts: Vec<GuardVerdict>,
    },
    /// A candidate that passed the guards waits for the baseline its validation needs (not an
    /// intervention: nothing was decided about the change itself).
    WaitingForBaseline {
        /// The candidate's repeat key (same proposer, rule, area, targets).
        key: String,
        /// Its title.
        title: String,
        /// Its area.
        area: String,
        /// The predicted signal.
        signal: String,
        /// Samples there are.
        have: usize,
        /// Samples the cadence would give.
        expected: usize,
        /// Samples needed.
        need: usize,
        /// For a human.
        text: String,
    },
    /// An intervention refused for good (a guard, a failed canary or apply, reconciliation).
    Blocked {
        /// The intervention.
        intervention: InterventionId,
        /// Who blocked it.
        stage: Stage,
        /// The status it left.
        from: Status,
        /// Why.
        reason: String,
    },
    /// An intervention parked in the backlog (never applied as is).
    #[serde(rename = "backlog")]
    Backlogged {
        /// The intervention.
        intervention: InterventionId,
        /// Who parked it.
        stage: Stage,
        /// The status it left.
        from: Status,
        /// Why.
        reason: String,
    },

    // ----- canary / apply -------------------------------------------------------------------
    /// A canary trial passed.
    CanaryPassed {
        /// The intervention.
        intervention: InterventionId,
        /// What the canary said.
        message: String,
        /// The figures it measured (a counterfactual canary's before/after), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        figures: Option<serde_json::Value>,
    },
    /// A canary trial failed (a [`EngineEvent::Blocked`] follows).
    CanaryFailed {
        /// The intervention.
        intervention: InterventionId,
        /// What the canary said.
        message: String,
        /// The figures it measured, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        figures: Option<serde_json::Value>,
    },
    /// A change committed (by the apply stage, or found committed by reconciliation).
    Applied {
        /// The intervention.
        intervention: InterventionId,
        /// `apply`, or `reconcile` for an apply a crash interrupted after its commit.
        stage: Stage,
        /// The commit.
        commit: String,
        /// When validation is due.
        due: DateTime<Utc>,
        /// Why (for the status history).
        reason: String,
    },
    /// A candidate not applied because its area (or everything) is paused.
    ApplySkipped {
        /// The pause, for a human.
        pause: String,
        /// The candidate's area.
        area: String,
        /// The proposer.
        proposer: String,
        /// The rule, if any.
        rule: Option<String>,
        /// The candidate's title.
        title: String,
    },
    /// Shadow mode: every guard passed; it would have been applied.
    #[serde(rename = "shadow")]
    ShadowWouldApply {
        /// The intervention.
        intervention: InterventionId,
    },
    /// Manual mode: every guard passed; it waits for `kaizen apply`.
    AwaitingApproval {
        /// The intervention.
        intervention: InterventionId,
    },
    /// Autonomous mode: every guard passed, but its proposer's calibrated confidence fell
    /// below `confidence_threshold` (see [`crate::calibrate`]); it waits for `kaizen apply`.
    NeedsApproval {
        /// The intervention.
        intervention: InterventionId,
        /// The calibration that fell short.
        calibration: crate::calibrate::Calibration,
    },
    /// A human approved a proposed intervention (the guards run again before it is applied).
    Approved {
        /// The intervention.
        intervention: InterventionId,
    },

    // ----- validate -------------------------------------------------------------------------
    /// An interim look (regression only) at one of the evenly spaced points.
    InterimLook {
        /// The intervention.
        intervention: InterventionId,
        /// Which look (1-based).
        look: u32,
        /// Of how many.
        of: u32,
    },
    /// What a look concluded, with its figures.
    Verdict {
        /// The intervention.
        intervention: InterventionId,
        /// Which look.
        look: Look,
        /// The verdict and its figures.
        verdict: Verdict,
    },
    /// An inconclusive window extended.
    Extended {
        /// The intervention.
        intervention: InterventionId,
        /// The new deadline.
        due: DateTime<Utc>,
        /// Which extension this is.
        extension: u32,
        /// How many are allowed.
        max: u32,
        /// The inconclusive verdict's summary.
        summary: String,
    },
    /// A switchback started: the change is switched off and on in randomised blocks.
    SwitchbackStarted {
        /// The intervention.
        intervention: InterventionId,
        /// Why (the area's design, or an inconclusive before/after).
        trigger: crate::ledger::SwitchbackTrigger,
        /// How many blocks.
        blocks: usize,
        /// Each block's length, washout included.
        block: crate::span::Span,
        /// The unmeasured start of each block.
        washout: crate::span::Span,
        /// The signal's correlation time the blocks exceed.
        correlation: crate::span::Span,
        /// The drawn assignment, one letter per block (`1` on, `0` off).
        assignment: String,
        /// When the last block ends.
        ends: DateTime<Utc>,
    },
    /// A switchback could not start (a guard refused, no plan): judged as before.
    SwitchbackRefused {
        /// The intervention.
        intervention: InterventionId,
        /// Why.
        reason: String,
    },
    /// One switchback flip, committed (`stage`: validate, or reconcile after a crash).
    SwitchbackFlip {
        /// The intervention.
        intervention: InterventionId,
        /// `validate`, or `reconcile` for a flip a crash interrupted after its commit.
        stage: Stage,
        /// The block it starts (1-based; one past the last: the end flip).
        block: usize,
        /// The state after it.
        on: bool,
        /// The flip commit.
        commit: String,
    },
    /// A switchback decided (its verdict follows the usual path).
    SwitchbackFinished {
        /// The intervention.
        intervention: InterventionId,
        /// The outcome of the permutation test.
        outcome: crate::intervention::Outcome,
        /// Blocks with enough samples to count, of how many.
        measured: usize,
        /// Of how many blocks.
        blocks: usize,
        /// The verdict's summary.
        summary: String,
    },
    /// A switchback stopped before its end (a human's edit, a refused flip, a failing hook).
    SwitchbackStopped {
        /// The intervention.
        intervention: InterventionId,
        /// Why.
        reason: String,
    },
    /// A change validated and kept.
    Validated {
        /// The intervention.
        intervention: InterventionId,
        /// The status it left.
        from: Status,
        /// Why.
        reason: String,
    },

    // ----- revert ---------------------------------------------------------------------------
    /// A change reverted (by a commit; `commit: None` when the revert was a no-op).
    Reverted {
        /// The intervention.
        intervention: InterventionId,
        /// `revert`, or `reconcile` for a revert a crash interrupted after its commit.
        stage: Stage,
        /// The status it left.
        from: Status,
        /// The revert commit, if one was made.
        commit: Option<String>,
        /// Why.
        reason: String,
    },
    /// A revert interrupted before its commit: it will be decided again.
    RevertInterrupted {
        /// The intervention.
        intervention: InterventionId,
    },
    /// Something needs a human. `key` names what is escalated (stable, never the text), so the
    /// same condition is escalated again only after a while.
    Escalation {
        /// The intervention, if any.
        intervention: Option<InterventionId>,
        /// Where.
        stage: Stage,
        /// What is escalated (e.g. `revert_refused K-000003`, `repo stale_git_lock .git/index.lock`).
        key: String,
        /// For a human.
        text: String,
    },
    /// An escalation still open, not escalated again yet.
    EscalationRepeated {
        /// The intervention, if any.
        intervention: Option<InterventionId>,
        /// Where.
        stage: Stage,
        /// The escalation's key.
        key: String,
        /// For a human.
        text: String,
    },

    /// An open escalation told again after its back-off (1 h, 2 h, 4 h … capped at 24 h).
    EscalationReminder {
        /// The intervention, if any.
        intervention: Option<InterventionId>,
        /// Where.
        stage: Stage,
        /// The escalation's key.
        key: String,
        /// For a human.
        text: String,
        /// Which reminder (1: the first after the opening notice).
        reminder: u32,
    },
    /// An escalation closed: a human resolved it, or kaizen saw the problem gone.
    EscalationClosed {
        /// The intervention, if any.
        intervention: Option<InterventionId>,
        /// Where.
        stage: Stage,
        /// The escalation's key.
        key: String,
        /// Who closed it (a user, or `kaizen`).
        by: String,
        /// Why.
        why: String,
    },

    // ----- humans ---------------------------------------------------------------------------
    /// A change a human closed and kept (`kaizen resolve --kept`): validation ended by hand.
    Kept {
        /// The intervention.
        intervention: InterventionId,
        /// Where.
        stage: Stage,
        /// The status it left.
        from: Status,
        /// Why.
        reason: String,
    },
    /// A change ended because a later commit undid, changed or deleted what it set: counted
    /// neither as validated nor as a rollback.
    Superseded {
        /// The intervention.
        intervention: InterventionId,
        /// Where.
        stage: Stage,
        /// The status it left.
        from: Status,
        /// Why.
        reason: String,
    },
    /// The commit after kaizen's that undid, changed or deleted an intervention's target.
    HumanCommit {
        /// The intervention.
        intervention: InterventionId,
        /// The commit.
        commit: String,
        /// Its author.
        author: String,
        /// Its subject line.
        summary: String,
        /// What it did to the target.
        how: String,
        /// The intervention the commit names, when it was kaizen's own.
        by_intervention: Option<InterventionId>,
    },
    /// A human ended an intervention (`kaizen resolve`).
    Resolved {
        /// The intervention.
        intervention: InterventionId,
        /// Who.
        by: String,
        /// Why.
        why: String,
        /// `reverted` or `kept`.
        ends: String,
    },
    /// A human asked to end an intervention while `kaizen run` held the lock; the loop carries
    /// it out at its next cycle.
    ResolveRequested {
        /// The intervention.
        intervention: InterventionId,
        /// Who.
        by: String,
        /// Why.
        why: String,
        /// `reverted` or `kept`.
        ends: String,
    },
    /// A human's resolve was refused (git contradicts it, or the intervention is not live).
    ResolveRefused {
        /// The intervention.
        intervention: InterventionId,
        /// Who asked.
        by: String,
        /// Why it was refused.
        message: String,
    },

    // ----- reconcile / check ----------------------------------------------------------------
    /// Something kaizen left behind was repaired.
    Repaired {
        /// Who repaired it.
        stage: Stage,
        /// The finding's kind.
        finding: String,
        /// The file or subject.
        subject: String,
        /// For a human.
        detail: String,
    },
    /// A lost or new state dir: ids continue after the highest one the history names.
    IdsContinued {
        /// The highest id in the history.
        highest: InterventionId,
    },
    /// An invariant does not hold.
    InvariantViolation {
        /// The intervention, if the subject is one.
        intervention: Option<InterventionId>,
        /// The violation's kind.
        violation: String,
        /// Its subject.
        subject: String,
        /// For a human.
        detail: String,
    },

    // ----- learn ----------------------------------------------------------------------------
    /// A lesson created.
    LessonCreated {
        /// The lesson.
        lesson: String,
        /// Its version.
        version: u32,
        /// What it prefers.
        prefer: String,
    },
    /// A lesson strengthened (a new version with more evidence).
    #[serde(rename = "lesson_updated")]
    LessonStrengthened {
        /// The lesson.
        lesson: String,
        /// Its new version.
        version: u32,
        /// Evidence it now holds.
        evidence: usize,
    },
    /// A lesson retired.
    LessonRetired {
        /// The lesson.
        lesson: String,
        /// Why.
        reason: String,
    },
    /// A lesson change refused (it would not load back).
    LessonRefused {
        /// The lesson.
        lesson: String,
        /// The bad field.
        field: String,
        /// Why.
        why: String,
    },
    /// Lesson changes not committed.
    #[serde(rename = "commit_refused")]
    LessonCommitRefused {
        /// The applier's error.
        message: String,
    },
    /// A lesson file that could not be loaded (skipped).
    LessonInvalid {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },

    // ----- operator -------------------------------------------------------------------------
    /// The loop (or one area) paused.
    #[serde(rename = "pause")]
    Paused {
        /// The area (`None`: everything).
        area: Option<String>,
        /// Why.
        why: String,
    },
    /// A pause lifted.
    #[serde(rename = "resume")]
    Resumed {
        /// The area (`None`: everything).
        area: Option<String>,
    },
    /// A notifier could not deliver.
    #[serde(rename = "notify_error")]
    NotifyFailed {
        /// The intervention notified about, if any.
        intervention: Option<InterventionId>,
        /// What failed.
        message: String,
    },
    /// A meta-review was made.
    MetaReview {
        /// The period reviewed (for a human).
        period: String,
        /// How many next moves it suggests.
        next_moves: usize,
        /// The review itself.
        review: serde_json::Value,
    },
    /// A diagnosis was made.
    Diagnosis {
        /// For a human.
        summary: String,
        /// The diagnosis itself.
        diagnosis: serde_json::Value,
    },
    /// A diagnosis failed.
    #[serde(rename = "diagnose_error")]
    DiagnoseFailed {
        /// What failed.
        message: String,
    },

    // ----- runtime and its health -------------------------------------------------------------
    /// A reload (SIGHUP) took effect: config, rules and lessons were read again.
    #[serde(rename = "config_reloaded")]
    ConfigReloaded {
        /// What was reloaded (the config file).
        what: String,
    },
    /// A reload was refused: a file is bad; the previous config stays in force.
    ReloadFailed {
        /// Why (file, line and field for a bad config).
        error: String,
    },
    /// The number of open invariant violations changed (what `/health` reports until the next
    /// change).
    InvariantsChecked {
        /// Violations found and not repaired.
        open: u64,
    },

    // ----- publish (GitOps: the remote and review branches) ------------------------------------
    /// The branch was pushed to the remote (after replaying kaizen's commits on a moved remote,
    /// if `replayed` says so).
    Pushed {
        /// The remote.
        remote: String,
        /// The remote branch's tip now.
        tip: String,
        /// The commits that were not on the remote before.
        commits: Vec<String>,
        /// kaizen's commits recreated on the remote's new tip first.
        replayed: Vec<crate::publish::Replayed>,
    },
    /// A push (or the fetch before a replay) failed and is retried with back-off.
    PushFailed {
        /// The remote.
        remote: String,
        /// git's words.
        message: String,
        /// Failures in a row, this one included.
        failures: u32,
        /// When the next try is due.
        next_attempt_at: DateTime<Utc>,
        /// Applied interventions waiting for the push (validation not started).
        awaiting_push: Vec<InterventionId>,
    },
    /// The remote moved and kaizen's commits cannot be replayed on it: nothing was rewritten or
    /// force-pushed; a human must merge (retried with back-off too).
    PushDiverged {
        /// The remote.
        remote: String,
        /// What stands in the way.
        message: String,
        /// Failures in a row, this one included.
        failures: u32,
        /// When the next try is due.
        next_attempt_at: DateTime<Utc>,
        /// Applied interventions waiting for the push (validation not started).
        awaiting_push: Vec<InterventionId>,
    },
    /// An applied change reached the remote: its validation clock starts now.
    ValidationStarted {
        /// The intervention.
        intervention: InterventionId,
        /// The remote.
        remote: String,
        /// Its commit.
        commit: String,
        /// When validation is due.
        due: DateTime<Utc>,
    },
    /// A review branch was opened (status `awaiting_review`).
    AwaitingReview {
        /// The intervention.
        intervention: InterventionId,
        /// Its status before.
        from: Status,
        /// The branch's commit.
        commit: String,
        /// Why (for the status history).
        reason: String,
    },
    /// A review branch reached the target branch: a human merged it (an `applied` follows).
    ReviewMerged {
        /// The intervention.
        intervention: InterventionId,
        /// The review branch.
        branch: String,
        /// kaizen's commit on the branch.
        review_commit: String,
        /// The target's commit holding the change.
        commit: String,
    },
    /// A stale review branch rebased onto the moved target.
    ReviewRebased {
        /// The intervention.
        intervention: InterventionId,
        /// The review branch.
        branch: String,
        /// Its commit before.
        old: String,
        /// Its commit now.
        new: String,
    },
    /// A review branch is stale and kaizen cannot rebase it (conflict, or a human's commits).
    ReviewStale {
        /// The intervention.
        intervention: InterventionId,
        /// The review branch.
        branch: String,
        /// Why, for a human.
        reason: String,
    },
    /// A hook command ran (`on_apply` / `on_revert`).
    HookRan {
        /// The intervention.
        intervention: InterventionId,
        /// `apply` or `revert`.
        event: String,
        /// The commit it ran after.
        commit: String,
        /// Whether it exited 0 in time.
        ok: bool,
        /// Its exit status and output (excerpted).
        output: String,
    },
    /// A review branch deleted without a merge (status `rejected`).
    Rejected {
        /// The intervention.
        intervention: InterventionId,
        /// Its status before.
        from: Status,
        /// Why (the reviewer's last commit, if it said).
        reason: String,
    },

    // ----- retain ---------------------------------------------------------------------------
    /// A retention pass folded raw samples older than its cutoff into hourly aggregates
    /// and/or dropped hourly aggregates past theirs (see [`crate::retention`]).
    Retention {
        /// Raw samples folded (and deleted).
        folded: u64,
        /// Hourly aggregates deleted.
        aggregates_removed: u64,
        /// The raw cutoff used.
        raw_cutoff: Option<DateTime<Utc>>,
        /// The live intervention that held the cutoff back, if one did.
        held_by: Option<InterventionId>,
    },

    /// An event recorded by a kaizen before typed events (or of a kind this kaizen does not
    /// know): kept as it was stored.
    Legacy {
        /// The stored stage.
        stage: String,
        /// The stored kind.
        legacy_kind: String,
        /// The stored text.
        detail: String,
        /// The stored data, if any.
        data: Option<serde_json::Value>,
    },
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

fn stamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl EngineEvent {
    /// The event recording `candidate` as intervention `id`.
    pub fn proposed(
        id: InterventionId,
        candidate: &crate::intervention::Candidate,
        reason: &str,
    ) -> EngineEvent {
        EngineEvent::Proposed {
            intervention: id,
            title: candidate.title.clone(),
            area: candidate.area.clone(),
            proposer: candidate.origin.proposer.clone(),
            rule: candidate.origin.rule.clone(),
            trigger: candidate.origin.trigger.clone(),
            prediction: candidate.prediction.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The event of a status change of `id` from `from` to `to` (`commit`: the apply or revert
    /// commit; `due`: when validation is due, for an apply).
    pub fn status_change(
        id: InterventionId,
        stage: Stage,
        from: Status,
        to: Status,
        reason: &str,
        commit: Option<&str>,
        due: Option<DateTime<Utc>>,
    ) -> EngineEvent {
        let reason = reason.to_string();
        match to {
            Status::Applied => EngineEvent::Applied {
                intervention: id,
                stage,
                commit: commit.unwrap_or_default().to_string(),
                due: due.unwrap_or_default(),
                reason,
            },
            Status::Validated => EngineEvent::Validated {
                intervention: id,
                from,
                reason,
            },
            Status::Reverted => EngineEvent::Reverted {
                intervention: id,
                stage,
                from,
                commit: commit.map(str::to_string),
                reason,
            },
            Status::Backlog => EngineEvent::Backlogged {
                intervention: id,
                stage,
                from,
                reason,
            },
            Status::Kept => EngineEvent::Kept {
                intervention: id,
                stage,
                from,
                reason,
            },
            Status::Superseded => EngineEvent::Superseded {
                intervention: id,
                stage,
                from,
                reason,
            },
            Status::AwaitingReview => EngineEvent::AwaitingReview {
                intervention: id,
                from,
                commit: commit.unwrap_or_default().to_string(),
                reason,
            },
            Status::Rejected => EngineEvent::Rejected {
                intervention: id,
                from,
                reason,
            },
            // `proposed` is only ever entered by a new row ([`EngineEvent::proposed`]).
            Status::Blocked | Status::Proposed => EngineEvent::Blocked {
                intervention: id,
                stage,
                from,
                reason,
            },
        }
    }

    /// The stable kind name (the `kind` tag; for [`EngineEvent::Legacy`], the stored kind).
    pub fn kind(&self) -> &str {
        use EngineEvent::*;
        match self {
            SampleGap { .. } => "sample_error",
            ProposalRejected { .. } => "proposal_rejected",
            ProposerFailed { .. } => "proposer_error",
            AlreadyApplied { .. } => "already_applied",
            Proposed { .. } => "proposed",
            CadenceMismatch { .. } => "cadence_mismatch",
            WindowSized { .. } => "window_sized",
            GuardVerdicts { .. } => "guard_verdicts",
            WaitingForBaseline { .. } => "waiting_for_baseline",
            Blocked { .. } => "blocked",
            Backlogged { .. } => "backlog",
            CanaryPassed { .. } => "canary_passed",
            CanaryFailed { .. } => "canary_failed",
            Applied { .. } => "applied",
            ApplySkipped { .. } => "apply_skipped",
            ShadowWouldApply { .. } => "shadow",
            AwaitingApproval { .. } => "awaiting_approval",
            NeedsApproval { .. } => "needs_approval",
            Approved { .. } => "approved",
            InterimLook { .. } => "interim_look",
            Verdict { .. } => "verdict",
            Extended { .. } => "extended",
            SwitchbackStarted { .. } => "switchback_started",
            SwitchbackRefused { .. } => "switchback_refused",
            SwitchbackFlip { .. } => "switchback_flip",
            SwitchbackFinished { .. } => "switchback_finished",
            SwitchbackStopped { .. } => "switchback_stopped",
            Validated { .. } => "validated",
            Reverted { .. } => "reverted",
            RevertInterrupted { .. } => "revert_interrupted",
            Escalation { .. } => "escalation",
            EscalationRepeated { .. } => "escalation_repeated",
            EscalationReminder { .. } => "escalation_reminder",
            EscalationClosed { .. } => "escalation_closed",
            Kept { .. } => "kept",
            Superseded { .. } => "superseded",
            HumanCommit { .. } => "human_commit",
            Resolved { .. } => "resolved",
            ResolveRequested { .. } => "resolve_requested",
            ResolveRefused { .. } => "resolve_refused",
            Repaired { .. } => "repaired",
            IdsContinued { .. } => "ids_continued",
            InvariantViolation { .. } => "invariant_violation",
            LessonCreated { .. } => "lesson_created",
            LessonStrengthened { .. } => "lesson_updated",
            LessonRetired { .. } => "lesson_retired",
            LessonRefused { .. } => "lesson_refused",
            LessonCommitRefused { .. } => "commit_refused",
            LessonInvalid { .. } => "lesson_invalid",
            Paused { .. } => "pause",
            Resumed { .. } => "resume",
            NotifyFailed { .. } => "notify_error",
            MetaReview { .. } => "meta_review",
            Diagnosis { .. } => "diagnosis",
            Retention { .. } => "retention",
            DiagnoseFailed { .. } => "diagnose_error",
            ConfigReloaded { .. } => "config_reloaded",
            ReloadFailed { .. } => "reload_failed",
            InvariantsChecked { .. } => "invariants_checked",
            Pushed { .. } => "pushed",
            PushFailed { .. } => "push_failed",
            PushDiverged { .. } => "push_diverged",
            ValidationStarted { .. } => "validation_started",
            AwaitingReview { .. } => "awaiting_review",
            ReviewMerged { .. } => "review_merged",
            ReviewRebased { .. } => "review_rebased",
            ReviewStale { .. } => "review_stale",
            Rejected { .. } => "rejected",
            HookRan { ok: true, .. } => "hook_ok",
            HookRan { ok: false, .. } => "hook_failed",
            Legacy { legacy_kind, .. } => legacy_kind,
        }
    }

    /// The stage it comes from.
    pub fn stage(&self) -> Stage {
        use EngineEvent::*;
        match self {
            SampleGap { .. } => Stage::Observe,
            ProposalRejected { .. }
            | ProposerFailed { .. }
            | AlreadyApplied { .. }
            | Proposed { .. }
            | CadenceMismatch { .. }
            | WindowSized { .. } => Stage::Propose,
            GuardVerdicts { .. } | WaitingForBaseline { .. } => Stage::Guard,
            Blocked { stage, .. }
            | Backlogged { stage, .. }
            | Applied { stage, .. }
            | Reverted { stage, .. }
            | Escalation { stage, .. }
            | EscalationRepeated { stage, .. }
            | EscalationReminder { stage, .. }
            | EscalationClosed { stage, .. }
            | Kept { stage, .. }
            | Superseded { stage, .. }
            | Repaired { stage, .. } => *stage,
            HumanCommit { .. } => Stage::Humans,
            Resolved { .. } | ResolveRequested { .. } | ResolveRefused { .. } => Stage::Operator,
            CanaryPassed { .. } | CanaryFailed { .. } => Stage::Canary,
            ApplySkipped { .. }
            | ShadowWouldApply { .. }
            | AwaitingApproval { .. }
            | NeedsApproval { .. } => Stage::Apply,
            Approved { .. } => Stage::Operator,
            InterimLook { .. }
            | Verdict { .. }
            | Extended { .. }
            | Validated { .. }
            | SwitchbackStarted { .. }
            | SwitchbackRefused { .. }
            | SwitchbackFinished { .. }
            | SwitchbackStopped { .. } => Stage::Validate,
            SwitchbackFlip { stage, .. } => *stage,
            RevertInterrupted { .. } | IdsContinued { .. } => Stage::Reconcile,
            InvariantViolation { .. } => Stage::Check,
            LessonCreated { .. }
            | LessonStrengthened { .. }
            | LessonRetired { .. }
            | LessonRefused { .. }
            | LessonCommitRefused { .. }
            | LessonInvalid { .. } => Stage::Learn,
            Paused { .. } | Resumed { .. } => Stage::Pause,
            NotifyFailed { .. } => Stage::Notify,
            MetaReview { .. } => Stage::Review,
            Diagnosis { .. } | DiagnoseFailed { .. } => Stage::Diagnose,
            ConfigReloaded { .. } | ReloadFailed { .. } => Stage::Runtime,
            InvariantsChecked { .. } => Stage::Check,
            Pushed { .. }
            | PushFailed { .. }
            | PushDiverged { .. }
            | ValidationStarted { .. }
            | AwaitingReview { .. }
            | ReviewMerged { .. }
            | ReviewRebased { .. }
            | ReviewStale { .. }
            | Rejected { .. } => Stage::Publish,
            HookRan { .. } => Stage::Hook,
            Retention { .. } => Stage::Retain,
            Legacy { stage, .. } => Stage::parse(stage),
        }
    }

    /// The stage name as stored (for [`EngineEvent::Legacy`], the stored one).
    pub fn stage_name(&self) -> &str {
        match self {
            EngineEvent::Legacy { stage, .. } => stage,
            other => other.stage().as_str(),
        }
    }

    /// The intervention it concerns, if any.
    pub fn intervention(&self) -> Option<InterventionId> {
        use EngineEvent::*;
        match self {
            Proposed { intervention, .. }
            | CadenceMismatch { intervention, .. }
            | WindowSized { intervention, .. }
            | GuardVerdicts { intervention, .. }
            | Blocked { intervention, .. }
            | Backlogged { intervention, .. }
            | CanaryPassed { intervention, .. }
            | CanaryFailed { intervention, .. }
            | Applied { intervention, .. }
            | ShadowWouldApply { intervention }
            | AwaitingApproval { intervention }
            | NeedsApproval { intervention, .. }
            | Approved { intervention }
            | InterimLook { intervention, .. }
            | Verdict { intervention, .. }
            | Extended { intervention, .. }
            | SwitchbackStarted { intervention, .. }
            | SwitchbackRefused { intervention, .. }
            | SwitchbackFlip { intervention, .. }
            | SwitchbackFinished { intervention, .. }
            | SwitchbackStopped { intervention, .. }
            | Validated { intervention, .. }
            | Reverted { intervention, .. }
            | RevertInterrupted { intervention }
            | Kept { intervention, .. }
            | Superseded { intervention, .. }
            | HumanCommit { intervention, .. }
            | Resolved { intervention, .. }
            | ResolveRequested { intervention, .. }
            | ResolveRefused { intervention, .. }
            | ValidationStarted { intervention, .. }
            | AwaitingReview { intervention, .. }
            | ReviewMerged { intervention, .. }
            | ReviewRebased { intervention, .. }
            | ReviewStale { intervention, .. }
            | Rejected { intervention, .. }
            | HookRan { intervention, .. } => Some(*intervention),
            Escalation { intervention, .. }
            | EscalationRepeated { intervention, .. }
            | EscalationReminder { intervention, .. }
            | EscalationClosed { intervention, .. }
            | InvariantViolation { intervention, .. }
            | NotifyFailed { intervention, .. } => *intervention,
            IdsContinued { .. }
            | ConfigReloaded { .. }
            | ReloadFailed { .. }
            | InvariantsChecked { .. }
            | Retention { .. }
            | SampleGap { .. }
            | ProposalRejected { .. }
            | ProposerFailed { .. }
            | AlreadyApplied { .. }
            | WaitingForBaseline { .. }
            | ApplySkipped { .. }
            | Repaired { .. }
            | LessonCreated { .. }
            | LessonStrengthened { .. }
            | LessonRetired { .. }
            | LessonRefused { .. }
            | LessonCommitRefused { .. }
            | LessonInvalid { .. }
            | Paused { .. }
            | Resumed { .. }
            | MetaReview { .. }
            | Diagnosis { .. }
            | DiagnoseFailed { .. }
            | Pushed { .. }
            | PushFailed { .. }
            | PushDiverged { .. }
            | Legacy { .. } => None,
        }
    }

    /// The status the intervention moved to, for a status change.
    pub fn status_to(&self) -> Option<Status> {
        use EngineEvent::*;
        match self {
            Proposed { .. } => Some(Status::Proposed),
            Blocked { .. } => Some(Status::Blocked),
            Backlogged { .. } => Some(Status::Backlog),
            Applied { .. } => Some(Status::Applied),
            Validated { .. } => Some(Status::Validated),
            Reverted { .. } => Some(Status::Reverted),
            Kept { .. } => Some(Status::Kept),
            Superseded { .. } => Some(Status::Superseded),
            AwaitingReview { .. } => Some(Status::AwaitingReview),
            Rejected { .. } => Some(Status::Rejected),
            _ => None,
        }
    }

    /// For a status change, `from → to: reason` (`proposed: reason` for a new intervention): the
    /// status history `kaizen show` prints.
    pub fn transition_text(&self) -> Option<String> {
        use EngineEvent::*;
        let to = self.status_to()?;
        match self {
            Proposed { reason, .. } => Some(format!("{to}: {reason}")),
            Blocked { from, reason, .. }
            | Backlogged { from, reason, .. }
            | Validated { from, reason, .. }
            | Reverted { from, reason, .. }
            | Kept { from, reason, .. }
            | Superseded { from, reason, .. }
            | AwaitingReview { from, reason, .. }
            | Rejected { from, reason, .. } => Some(format!("{from} → {to}: {reason}")),
            Applied { reason, .. } => Some(format!("{} → {to}: {reason}", Status::Proposed)),
            _ => None,
        }
    }

    /// The verdict's outcome, for events that carry one (a tracing field).
    pub fn verdict(&self) -> Option<&'static str> {
        match self {
            EngineEvent::Verdict { verdict, .. } => Some(verdict.outcome.as_str()),
            EngineEvent::Validated { .. } => Some("validated"),
            EngineEvent::Extended { .. } => Some("inconclusive"),
            EngineEvent::SwitchbackFinished { outcome, .. } => Some(outcome.as_str()),
            _ => None,
        }
    }

    /// How loud it is in the log.
    pub fn level(&self) -> tracing::Level {
        use EngineEvent::*;
        match self {
            Escalation { .. } | EscalationReminder { .. } => tracing::Level::ERROR,
            SampleGap { .. }
            | ProposalRejected { .. }
            | ProposerFailed { .. }
            | InvariantViolation { .. }
            | LessonRefused { .. }
            | LessonCommitRefused { .. }
            | LessonInvalid { .. }
            | Paused { .. }
            | Resumed { .. }
            | NotifyFailed { .. }
            | DiagnoseFailed { .. }
            | ReloadFailed { .. }
            | EscalationRepeated { .. }
            | ResolveRefused { .. }
            | PushFailed { .. }
            | PushDiverged { .. }
            | ReviewStale { .. }
            | SwitchbackRefused { .. }
            | SwitchbackStopped { .. }
            | HookRan { ok: false, .. } => tracing::Level::WARN,
            _ => tracing::Level::INFO,
        }
    }

    /// Logs it with structured fields. Each line reads `kaizen intervention=K-… stage=… kind=…
    /// detail=…` (`kaizen stage=…` without an intervention), so `grep 'kaizen intervention='`
    /// counts every action on an intervention.
    pub fn trace(&self) {
        let intervention = self.intervention().map(tracing::field::display);
        let stage = tracing::field::display(self.stage_name());
        let kind = tracing::field::display(self.kind());
        let verdict = self.verdict().map(tracing::field::display);
        let detail = tracing::field::display(self);
        macro_rules! at {
            ($m:ident) => {
                tracing::$m!(intervention, stage, kind, verdict, detail, "kaizen")
            };
        }
        match self.level() {
            tracing::Level::ERROR => at!(error),
            tracing::Level::WARN => at!(warn),
            _ => at!(info),
        }
    }
}

impl fmt::Display for EngineEvent {
    /// The line a human reads (the cycle report, `kaizen events`, notifications).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EngineEvent::*;
        match self {
            SampleGap { source, message } => write!(f, "gap: source `{source}`: {message}"),
            ProposalRejected {
                proposer, reason, ..
            } => write!(f, "{proposer}: rejected: {reason}"),
            ProposerFailed { proposer, message } => write!(f, "proposer {proposer}: {message}"),
            AlreadyApplied {
                proposer,
                rule,
                title,
                area,
                change,
            } => write!(
                f,
                "already_applied: {title} [{area}] from {proposer}{}: {}",
                rule.as_deref()
                    .map(|r| format!(" (rule {r})"))
                    .unwrap_or_default(),
                change.join("; ")
            ),
            Proposed {
                title,
                area,
                prediction,
                reason,
                ..
            } => write!(f, "{title} [{area}] ({reason}; predicts {prediction})"),
            CadenceMismatch { note, .. } => write!(f, "cadence: {note}"),
            WindowSized { note, .. } => write!(f, "window sizing: {note}"),
            GuardVerdicts { verdicts, .. } => {
                let refusing: Vec<String> = verdicts
                    .iter()
                    .filter(|v| v.decision != crate::guard::Decision::Pass)
                    .map(|v| format!("{} {}", v.guard, v.decision))
                    .collect();
                if refusing.is_empty() {
                    write!(f, "guards: all {} passed", verdicts.len())
                } else {
                    write!(
                        f,
                        "guards: {} of {} refused ({})",
                        refusing.len(),
                        verdicts.len(),
                        refusing.join(", ")
                    )
                }
            }
            WaitingForBaseline {
                title, area, text, ..
            } => write!(f, "{title} [{area}]: {text}"),
            Blocked { reason, .. } => write!(f, "blocked: {reason}"),
            Backlogged { reason, .. } => write!(f, "backlog (never applied as is): {reason}"),
            CanaryPassed { message, .. } => write!(f, "canary passed: {message}"),
            CanaryFailed { message, .. } => write!(f, "canary failed: {message}"),
            Applied {
                stage, commit, due, ..
            } => {
                if *stage == Stage::Reconcile {
                    write!(
                        f,
                        "apply had completed before the interruption: commit {}; validation due {}",
                        short(commit),
                        stamp(due)
                    )
                } else if *due == DateTime::<Utc>::default() {
                    // No deadline yet: a remote is configured and the commit is not on it.
                    write!(
                        f,
                        "applied as commit {}; validation starts once it is pushed",
                        short(commit)
                    )
                } else {
                    write!(
                        f,
                        "applied as commit {}; validation due {}",
                        short(commit),
                        stamp(due)
                    )
                }
            }
            ApplySkipped {
                pause, title, area, ..
            } => write!(f, "not applied, {pause}: {title} [{area}]"),
            ShadowWouldApply { .. } => f.write_str("shadow mode: would apply (not committed)"),
            AwaitingApproval { intervention } => {
                write!(f, "manual mode: awaiting `kaizen apply {intervention}`")
            }
            NeedsApproval {
                intervention,
                calibration,
            } => write!(f, "{calibration}; apply with `kaizen apply {intervention}`"),
            Approved { .. } => f.write_str("approved by an operator; guards run again"),
            InterimLook { look, of, .. } => write!(f, "interim look {look} of {of}"),
            Verdict { look, verdict, .. } => {
                let look = match look {
                    Look::Interim => "interim look",
                    Look::Final => "final look",
                    Look::LastExtension => "last look",
                    Look::Switchback => "switchback",
                };
                let v = &verdict.figures;
                if v.method.is_empty() {
                    return write!(f, "{look}: {} — {}", verdict.outcome, verdict.summary);
                }
                // The summary is said by the line that acts on the verdict (validated,
                // extended, reverted); this one gives the evidence it was decided on.
                write!(
                    f,
                    "{look}: {} by {} on {} baseline and {} post samples",
                    verdict.outcome, v.method, v.n_before, v.n_after
                )?;
                let missing = v.gaps.saturating_add(v.gaps_before);
                match v.cadence {
                    Some(c) => write!(f, " (cadence {c}, {missing} missing)")?,
                    None => write!(f, " ({missing} missing)")?,
                }
                if let Some(why) = &v.cannot_judge {
                    write!(f, "; {why}")?;
                }
                Ok(())
            }
            SwitchbackStarted {
                trigger,
                blocks,
                block,
                washout,
                correlation,
                assignment,
                ends,
                ..
            } => write!(
                f,
                "switchback started ({trigger}): {blocks} blocks of {block} (washout {washout}, correlation time {correlation}), assignment {assignment}, ends {}",
                stamp(ends)
            ),
            SwitchbackRefused { reason, .. } => {
                write!(f, "switchback not started: {reason}")
            }
            SwitchbackFlip {
                block,
                on,
                commit,
                stage,
                ..
            } => {
                let state = if *on { "on" } else { "off" };
                match stage {
                    Stage::Reconcile => write!(
                        f,
                        "switchback flip {state} (block {block}) had completed before the interruption: commit {}",
                        short(commit)
                    ),
                    _ => write!(
                        f,
                        "switchback block {block}: switched {state} by commit {}",
                        short(commit)
                    ),
                }
            }
            SwitchbackFinished {
                outcome,
                measured,
                blocks,
                summary,
                ..
            } => write!(
                f,
                "switchback finished: {outcome} over {measured} of {blocks} blocks ({summary})"
            ),
            SwitchbackStopped { reason, .. } => write!(f, "switchback stopped: {reason}"),
            Extended {
                due,
                extension,
                max,
                summary,
                ..
            } => write!(
                f,
                "inconclusive, window extended to {} (extension {extension} of {max}; {summary})",
                stamp(due)
            ),
            Validated { reason, .. } => f.write_str(reason),
            Reverted {
                stage,
                commit,
                reason,
                ..
            } => match (commit, *stage) {
                (Some(c), Stage::Reconcile) => write!(
                    f,
                    "revert had completed before the interruption: commit {}",
                    short(c)
                ),
                (Some(c), _) => write!(f, "reverted by commit {} ({reason})", short(c)),
                (None, _) => f.write_str(reason),
            },
            RevertInterrupted { .. } => {
                f.write_str("revert interrupted before commit; will be decided again")
            }
            Escalation { text, .. } => f.write_str(text),
            EscalationRepeated { text, .. } => write!(f, "still: {text} (already escalated)"),
            EscalationReminder { text, .. } => f.write_str(text),
            EscalationClosed { key, by, why, .. } => {
                write!(f, "escalation `{key}` closed by {by}: {why}")
            }
            Kept { reason, .. } | Superseded { reason, .. } => f.write_str(reason),
            HumanCommit {
                commit,
                author,
                summary,
                how,
                ..
            } => write!(f, "{how}: commit {} by {author}: {summary}", short(commit)),
            Resolved { by, why, ends, .. } => write!(f, "resolved by {by} ({ends}): {why}"),
            ResolveRequested { by, why, ends, .. } => {
                write!(f, "{by} asks to end it {ends}: {why} (queued for the loop)")
            }
            ResolveRefused { by, message, .. } => write!(f, "resolve by {by} refused: {message}"),
            Repaired {
                finding,
                subject,
                detail,
                ..
            } => write!(f, "repaired: {finding} {subject}: {detail}"),
            IdsContinued { highest } => write!(
                f,
                "the repository's history names {highest}, beyond this ledger's ids \
                 (a lost or new state dir): new ids continue after it"
            ),
            InvariantViolation {
                violation,
                subject,
                detail,
                ..
            } => write!(f, "{violation} {subject}: {detail}"),
            LessonCreated {
                lesson,
                version,
                prefer,
            } => write!(f, "created {lesson} (v{version}): prefer {prefer}"),
            LessonStrengthened {
                lesson,
                version,
                evidence,
            } => write!(f, "updated {lesson} to v{version} ({evidence} evidence)"),
            LessonRetired { lesson, reason } => write!(f, "retired {lesson}: {reason}"),
            LessonRefused { lesson, field, why } => {
                write!(f, "lesson {lesson} not committed: {field}: {why}")
            }
            LessonCommitRefused { message } => {
                write!(f, "lesson changes not committed: {message}")
            }
            LessonInvalid { message, .. } => write!(f, "skipped lesson file: {message}"),
            Paused { area, why } => write!(f, "paused {}: {why}", scope(area)),
            Resumed { area } => write!(f, "resumed {}", scope(area)),
            NotifyFailed { message, .. } => f.write_str(message),
            MetaReview {
                period, next_moves, ..
            } => write!(
                f,
                "meta-review of the last {period}: {next_moves} next move(s)"
            ),
            Diagnosis { summary, .. } => f.write_str(summary),
            Retention {
                folded,
                aggregates_removed,
                raw_cutoff,
                held_by,
            } => {
                write!(f, "folded {folded} raw sample(s)")?;
                if let Some(c) = raw_cutoff {
                    write!(f, " before {}", c.to_rfc3339())?;
                }
                if let Some(id) = held_by {
                    write!(f, " (held back by {id}, still live)")?;
                }
                write!(
                    f,
                    " into hourly aggregates; removed {aggregates_removed} hourly aggregate(s)"
                )
            }
            DiagnoseFailed { message } => f.write_str(message),
            ConfigReloaded { what } => write!(f, "reloaded {what}"),
            ReloadFailed { error } => {
                write!(f, "reload refused, keeping the previous config: {error}")
            }
            InvariantsChecked { open } => write!(f, "{open} invariant violation(s) open"),
            Pushed {
                remote,
                tip,
                replayed,
                ..
            } => {
                if replayed.is_empty() {
                    write!(f, "pushed to `{remote}`: tip {}", short(tip))
                } else {
                    write!(
                        f,
                        "the remote had moved; replayed {} commit(s) of kaizen's on it ({}) and pushed to `{remote}`: tip {}",
                        replayed.len(),
                        replayed
                            .iter()
                            .map(|r| format!("{} → {}", short(&r.old), short(&r.new)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        short(tip)
                    )
                }
            }
            PushFailed {
                message,
                failures,
                next_attempt_at,
                ..
            }
            | PushDiverged {
                message,
                failures,
                next_attempt_at,
                ..
            } => write!(
                f,
                "not published ({failures} failure(s) in a row; next try at {}): {message}",
                stamp(next_attempt_at)
            ),
            ValidationStarted {
                remote,
                commit,
                due,
                ..
            } => write!(
                f,
                "commit {} is on `{remote}`: the change is in effect, validation due {}",
                short(commit),
                stamp(due)
            ),
            AwaitingReview { reason, .. } => f.write_str(reason),
            ReviewMerged { branch, commit, .. } => write!(
                f,
                "`{branch}` reached the target as commit {}: applied by a human",
                short(commit)
            ),
            ReviewRebased {
                branch, old, new, ..
            } => write!(
                f,
                "the target moved: `{branch}` rebased onto it ({} → {})",
                short(old),
                short(new)
            ),
            ReviewStale { reason, .. } => f.write_str(reason),
            Rejected { reason, .. } => f.write_str(reason),
            HookRan {
                event, ok, output, ..
            } => {
                if *ok {
                    write!(f, "on_{event} {output}")
                } else {
                    write!(f, "on_{event} hook failed: {output}")
                }
            }
            Legacy { detail, .. } => f.write_str(detail),
        }
    }
}

fn scope(area: &Option<String>) -> String {
    match area {
        Some(a) => format!("area `{a}`"),
        None => "everything".into(),
    }
}

/// An event as the ledger holds it: its position in the log, when, and what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    /// Its position in the log (1, 2, …; gaps only where rows were removed by hand).
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The intervention, if any.
    pub intervention: Option<InterventionId>,
    /// The stage name.
    pub stage: String,
    /// The kind name.
    pub kind: String,
    /// The line a human reads.
    pub detail: String,
    /// The typed event.
    pub event: EngineEvent,
}

impl RecordedEvent {
    /// For a status change, the status it moved to.
    pub fn status_to(&self) -> Option<Status> {
        self.event.status_to()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_serde_tags_and_round_trip() {
        let id = InterventionId(3);
        let t: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let all = vec![
            EngineEvent::SampleGap {
                source: "s".into(),
                message: "m".into(),
            },
            EngineEvent::Proposed {
                intervention: id,
                title: "t".into(),
                area: "a".into(),
                proposer: "rules".into(),
                rule: Some("r".into()),
                trigger: "x > 1".into(),
                prediction: "p".into(),
                reason: "trigger: x > 1".into(),
            },
            EngineEvent::Applied {
                intervention: id,
                stage: Stage::Reconcile,
                commit: "abcdef0123456789".into(),
                due: t,
                reason: "r".into(),
            },
            EngineEvent::Backlogged {
                intervention: id,
                stage: Stage::Guard,
                from: Status::Proposed,
                reason: "r".into(),
            },
            EngineEvent::Escalation {
                intervention: None,
                stage: Stage::Reconcile,
                key: "k".into(),
                text: "t".into(),
            },
            EngineEvent::LessonStrengthened {
                lesson: "L-1".into(),
                version: 2,
                evidence: 3,
            },
            EngineEvent::Paused {
                area: None,
                why: "w".into(),
            },
            EngineEvent::NeedsApproval {
                intervention: id,
                calibration: crate::calibrate::Calibration::new(
                    "rules:r",
                    0.6,
                    crate::calibrate::TrackRecord { hits: 0, n: 2 },
                    0.3,
                ),
            },
        ];
        for e in all {
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["kind"], e.kind(), "{v}");
            let back: EngineEvent = serde_json::from_value(v).unwrap();
            assert_eq!(back, e);
        }
    }

    // The verdict line gives the evidence; the summary is said once, by the line that acts on it.
    #[test]
    fn a_verdict_with_figures_prints_its_evidence_not_the_summary_again() {
        use crate::intervention::Outcome;
        use crate::span::Span;
        use crate::validate::{Figures, Verdict};
        let verdict = Verdict {
            outcome: Outcome::Validated,
            summary: "relative change -0.5 [-0.52, -0.48]; predicted -20% met".into(),
            figures: Figures {
                method: "hodges_lehmann_ar1".into(),
                n_before: 6,
                n_after: 5,
                gaps: 1,
                cadence: Some(Span::minutes(5)),
                ..Default::default()
            },
        };
        let e = EngineEvent::Verdict {
            intervention: InterventionId(1),
            look: Look::Final,
            verdict: verdict.clone(),
        };
        assert_eq!(
            e.to_string(),
            "final look: validated by hodges_lehmann_ar1 on 6 baseline and 5 post samples (cadence 5m, 1 missing)"
        );
        let bare = EngineEvent::Verdict {
            intervention: InterventionId(1),
            look: Look::Interim,
            verdict: Verdict {
                figures: Figures::default(),
                ..verdict
            },
        };
        assert!(bare.to_string().ends_with("predicted -20% met"), "{bare}");
    }
}
