//! What kaizen sees now, read from the ledger: one typed snapshot for `kaizen status`, the
//! embedding host's `Handle::status()` and `/health`, so they cannot disagree.

use crate::config::Mode;
use crate::engine::EngineSettings;
use crate::intervention::{InterventionId, Status};
use crate::ledger::{Ledger, LedgerError, Repeated};
use crate::pause::Pauses;
use crate::propose::Freeze;
use crate::span::Span;
use crate::validate::{Cadence, CadenceSource};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::Path;

/// A signal as last sampled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalStatus {
    /// Its name.
    pub signal: String,
    /// Its unit.
    pub unit: String,
    /// The latest sample's value (none yet: `None`).
    pub value: Option<f64>,
    /// When it was taken.
    pub at: Option<DateTime<Utc>>,
    /// Whether that value is past the signal's alert threshold.
    pub alerting: bool,
    /// The cadence gaps are counted against (e.g. `1m`).
    pub cadence: Span,
    /// Where that cadence came from (the data, the config, the fallback).
    pub cadence_source: CadenceSource,
    /// A configured cadence the data contradicts, said in words.
    pub cadence_warning: Option<String>,
}

/// An applied change waiting for its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Awaiting {
    /// The intervention.
    pub id: InterventionId,
    /// Its area.
    pub area: String,
    /// Its title.
    pub title: String,
    /// When its validation is due.
    pub due_at: Option<DateTime<Utc>>,
    /// The open escalation holding it, if any (a refused revert): it waits for a human
    /// (`kaizen resolve`), not for its validation.
    pub held_by: Option<String>,
}

/// What kaizen sees at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusSnapshot {
    /// The instant (the engine clock's).
    pub at: DateTime<Utc>,
    /// Autonomous, shadow or manual.
    pub mode: Mode,
    /// The target repository.
    pub repo: String,
    /// Every configured signal, in name order.
    pub signals: Vec<SignalStatus>,
    /// Applied changes awaiting validation.
    pub awaiting_validation: Vec<Awaiting>,
    /// Areas frozen after consecutive rollbacks.
    pub frozen: Vec<Freeze>,
    /// Applies left in the rolling 24 h budget.
    pub budget_left: u32,
    /// The daily budget.
    pub daily_budget: u32,
    /// Interventions parked in the backlog (they need a canary).
    pub backlog: usize,
    /// Escalations recorded in the last 24 h.
    pub escalations_24h: usize,
    /// Repeats of parked changes counted (not recorded anew) in the last 24 h.
    pub suppressed_repeats_24h: u64,
    /// The parked changes those repeats were counted on, most recently seen first.
    pub repeated: Vec<Repeated>,
    /// Pauses in force (nothing is applied where one is).
    pub paused: Pauses,
    /// Firing rules held back now (dedup, freeze, backlog, budget, pause, baseline), by name:
    /// "grow-cache: alerting, suppressed: dedup until 14:05".
    pub suppressed: Vec<SuppressedRule>,
    /// Escalations still open (a refused revert, …): each waits for a human (`kaizen resolve`)
    /// or for kaizen to see the problem gone; oldest first.
    pub escalations_open: Vec<crate::escalation::Escalation>,
    /// Each proposer's calibrated confidence from its finalized history, and whether autonomous
    /// mode now asks a human before applying its changes (see [`crate::calibrate`]).
    pub autonomy: Vec<crate::calibrate::Calibration>,
    /// Lesson files that failed to load and are skipped (filled by whoever loads the lessons:
    /// the snapshot itself reads only the ledger and the state dir).
    pub invalid_lessons: Vec<InvalidLesson>,
    /// Pushing to the remote (`None`: no remote configured): what waits for a push and
    /// failures since the last success.
    pub publish: Option<crate::publish::PublishStatus>,
}

/// A firing rule held back, with whether its signal is alerting now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuppressedRule {
    /// What held it, until when, since when, how often.
    #[serde(flatten)]
    pub suppression: crate::suppression::Suppression,
    /// Whether the signal its prediction is on is past its alert threshold now.
    pub alerting: bool,
}

/// A lesson file the loop skips, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InvalidLesson {
    /// The file.
    pub file: String,
    /// What is wrong with it.
    pub error: String,
}

impl StatusSnapshot {
    /// This snapshot brought up to `now` after an observe tick that recorded `samples` and no
    /// event: each sampled signal's value, time and alert state. What only decisions change
    /// (interventions, freezes, budget, escalations, repeats) stays as of the last
    /// [`StatusSnapshot::compute`], and so do cadences (medians of many spacings) and pauses —
    /// the runtime computes afresh after every step that recorded an event, every cycle and
    /// every `status()` asked while idle, so this costs the per-minute tick microseconds
    /// instead of a read of every signal's last day.
    pub fn observed(
        &mut self,
        samples: &[crate::signal::Sample],
        settings: &EngineSettings,
        now: DateTime<Utc>,
    ) {
        // The latest of this tick's samples of each signal.
        let mut latest: std::collections::BTreeMap<&str, &crate::signal::Sample> =
            std::collections::BTreeMap::new();
        for x in samples {
            let e = latest.entry(x.signal.as_str()).or_insert(x);
            if x.at > e.at {
                *e = x;
            }
        }
        for s in &mut self.signals {
            if let Some(x) = latest.get(s.signal.as_str())
                && s.at.is_none_or(|at| x.at >= at)
            {
                s.value = Some(x.value);
                s.at = Some(x.at);
                s.alerting = settings
                    .signals
                    .get(&s.signal)
                    .is_some_and(|sc| sc.signal.is_alerting(x.value));
            }
        }
        self.at = now;
    }

    /// Reads the snapshot at `now` from `ledger` (and the pause files in `state_dir`, if any).
    pub fn compute(
        ledger: &Ledger,
        settings: &EngineSettings,
        state_dir: Option<&Path>,
        now: DateTime<Utc>,
    ) -> Result<StatusSnapshot, LedgerError> {
        Self::compute_with(ledger, settings, state_dir, now, |signal, n| {
            ledger.newest_points(signal, n)
        })
    }

    /// [`StatusSnapshot::compute`] with each signal's newest samples from `newest_points`,
    /// which must answer as [`Ledger::newest_points`] does (the engine answers from what it
    /// keeps between steps).
    pub(crate) fn compute_with(
        ledger: &Ledger,
        settings: &EngineSettings,
        state_dir: Option<&Path>,
        now: DateTime<Utc>,
        mut newest_points: impl FnMut(&str, usize) -> Result<Vec<(DateTime<Utc>, f64)>, LedgerError>,
    ) -> Result<StatusSnapshot, LedgerError> {
        let mut signals = Vec::new();
        let spacings = crate::validate::cadence::RECENT_SPACINGS + 1;
        for (name, sc) in &settings.signals {
            // The newest samples, the latest last: when it is not after `now` (always, but in a
            // replay of a ledger from the future), the cadence's samples are among them.
            let mut newest = newest_points(name, spacings)?;
            let latest = newest.last().copied();
            // The day up to the newest sample (not up to now): a signal that stopped being
            // sampled still has the cadence its data shows, not the fallback. The cadence is a
            // median of the last spacings: read those, not the whole day.
            let until = latest.map_or(now, |(at, _)| at.min(now));
            let day = until - chrono::Duration::hours(24);
            let recent = match latest {
                None => Vec::new(),
                Some((at, _)) if at <= now => {
                    newest.retain(|(at, _)| *at >= day);
                    newest
                }
                Some(_) => ledger
                    .last_samples(name, day, until, spacings)?
                    .into_iter()
                    .map(|s| (s.at, s.value))
                    .collect(),
            };
            let cadence = Cadence::resolve_points(&recent, settings.validate.sample_every);
            signals.push(SignalStatus {
                cadence: cadence.every,
                cadence_source: cadence.source,
                cadence_warning: cadence.disagreement(name),
                signal: name.clone(),
                unit: sc.signal.unit.clone(),
                value: latest.map(|(_, v)| v),
                at: latest.map(|(at, _)| at),
                alerting: latest.is_some_and(|(_, v)| sc.signal.is_alerting(v)),
            });
        }
        let policy = &settings.policy;
        let view = ledger.view(
            now,
            chrono::Duration::hours(25),
            policy.freeze_after_rollbacks.max(1),
        )?;
        let escalations_open = ledger.open_escalations(now)?;
        let awaiting_validation = ledger
            .with_status(Status::Applied)?
            .into_iter()
            .map(|iv| Awaiting {
                held_by: escalations_open
                    .iter()
                    .find(|e| e.intervention == Some(iv.id))
                    .map(|e| e.detail.clone()),
                id: iv.id,
                area: iv.candidate.area,
                title: iv.candidate.title,
                due_at: iv.due_at,
            })
            .collect();
        let escalations_24h =
            ledger.kind_count_between("escalation", now - chrono::Duration::hours(24), now)?;
        let repeated = ledger.repeated_since(now - chrono::Duration::hours(24))?;
        Ok(StatusSnapshot {
            suppressed_repeats_24h: repeated.iter().map(|r| r.repeats).sum(),
            repeated,
            at: now,
            mode: settings.mode,
            repo: settings.repo_root.display().to_string(),
            awaiting_validation,
            frozen: crate::guard::active_freezes(&view, policy, now),
            budget_left: crate::guard::budget_left(&view, policy, now),
            daily_budget: policy.daily_budget,
            backlog: ledger.count_with_status(Status::Backlog)?,
            escalations_24h,
            paused: state_dir.map(crate::pause::read).unwrap_or_default(),
            invalid_lessons: Vec::new(),
            publish: crate::engine::publish_status(ledger, settings)?,
            autonomy: crate::calibrate::Calibration::of_records(
                &ledger.proposer_records()?,
                settings.confidence_threshold,
            ),
            escalations_open,
            suppressed: ledger
                .suppressions_since(crate::suppression::FRESH_FOR.before(now))?
                .into_iter()
                .map(|suppression| SuppressedRule {
                    alerting: signals
                        .iter()
                        .any(|s| s.signal == suppression.signal && s.alerting),
                    suppression,
                })
                .collect(),
            signals,
        })
    }
}
