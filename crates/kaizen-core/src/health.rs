//! kaizen's own health: the `/health` snapshot and the `/metrics` counters, computed here from
//! the ledger (and, in a runtime, how its last steps went) so `kaizen health`, `/health` and
//! `/metrics` cannot disagree. Serving them over HTTP is the adapters' business.
//!
//! # Invariants
//! - Pure reads: computing health never writes the ledger or the state dir.
//! - A signal whose source is failing is `stale` with the source's last error, never shown as
//!   if its old value were current.
//! - Counters only grow (they are counts of ledger rows); no label carries an intervention id.

use crate::intervention::InterventionId;
use crate::ledger::{Ledger, LedgerError, SAMPLE_ERROR};
use crate::pause::Pauses;
use crate::runtime::StepRecord;
use crate::status::StatusSnapshot;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A latest sample older than this many of its signal's cadences counts as stale even when no
/// error was recorded (a source that silently stopped).
pub const STALE_CADENCES: u64 = 3;

/// The shortest age at which a sample counts as stale, whatever the cadence.
pub const STALE_AT_LEAST: chrono::Duration = chrono::Duration::minutes(5);

/// What kaizen is doing, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Observing, validating and applying as configured.
    Running,
    /// Globally paused: nothing is applied (observation, validation and reverts go on).
    Paused,
    /// Running, but something needs a human: a stale source, a failed step, an open
    /// escalation or invariant violation, a skipped lesson file, a loop that stopped moving.
    Degraded,
}

impl RunState {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Degraded => "degraded",
        }
    }
}

/// How the last run of one stage (or runtime step) went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageHealth {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// `ok` or `failed`.
    pub result: StageResult,
    /// One line: what it did or the error.
    pub detail: String,
}

/// The outcome of a stage's last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageResult {
    /// It did its work.
    Ok,
    /// It failed (the detail says how).
    Failed,
}

/// Why a signal's latest value should not be trusted as current.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stale {
    /// In words.
    pub reason: String,
    /// The source's last recorded error, if any.
    pub last_error: Option<String>,
    /// When that error was recorded.
    pub last_error_at: Option<DateTime<Utc>>,
}

/// A signal as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalHealth {
    /// The latest value (`None`: never sampled).
    pub value: Option<f64>,
    /// Its unit.
    pub unit: String,
    /// When it was sampled.
    pub at: Option<DateTime<Utc>>,
    /// Whether that value is past the alert threshold.
    pub alerting: bool,
    /// Set when the value is not current (the source is failing or has gone quiet).
    pub stale: Option<Stale>,
}

/// The `/health` snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// The instant (the engine clock's).
    pub at: DateTime<Utc>,
    /// Running, paused or degraded.
    pub status: RunState,
    /// Why it is paused or degraded (empty when running normally).
    pub why: Vec<String>,
    /// Per stage (and, in a runtime, per step: `observe`, `cycle`, `learn`): the last run.
    pub last_cycle: BTreeMap<String, StageHealth>,
    /// Every configured signal.
    pub signals: BTreeMap<String, SignalHealth>,
    /// Applied changes awaiting their verdict.
    pub open_interventions: usize,
    /// Areas frozen after consecutive rollbacks.
    pub frozen_areas: Vec<String>,
    /// Recoveries in the last 24 h: interrupted operations reconciled and kaizen leftovers
    /// repaired.
    pub recoveries_24h: u64,
    /// Failures in the last 24 h: recorded errors of sources, proposers and notifiers (and,
    /// in a runtime, failed steps since it started).
    pub failures_24h: u64,
    /// Invariant violations found by the last check and not repaired.
    pub invariant_violations_open: u64,
    /// Escalations still open (each waits for a human's `kaizen resolve` or for kaizen to see
    /// the problem gone).
    pub escalations_open: usize,
    /// The open escalations themselves, oldest first (key, detail, reminders).
    pub escalations: Vec<crate::escalation::Escalation>,
    /// Firing rules held back now (dedup, freeze, backlog, budget, pause, baseline).
    pub suppressed: Vec<crate::status::SuppressedRule>,
    /// Pauses in force.
    pub paused: Pauses,
    /// The interventions behind `escalations_open`.
    pub escalated: Vec<InterventionId>,
    /// Reasons found outside the fields (skipped lesson files, a stalled loop).
    #[serde(skip)]
    notes: Vec<String>,
    /// Each source's last failure as of the last full compute (for [`Health::observed`]).
    #[serde(skip)]
    failures: BTreeMap<String, crate::ledger::SourceFailure>,
}

/// The counters and gauges behind `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Interventions ever applied.
    pub applied: u64,
    /// Interventions validated.
    pub validated: u64,
    /// Reverted interventions by the verdict outcome they carried.
    pub reverted_by_outcome: BTreeMap<String, u64>,
    /// Guard refusals by guard.
    pub guard_refusals: BTreeMap<String, u64>,
    /// Sampling gaps by signal (source).
    pub sample_gaps: BTreeMap<String, u64>,
    /// Escalations recorded.
    pub escalations: u64,
}

/// Stages whose last event is shown in `last_cycle`.
const STAGES: [&str; 8] = [
    "observe", "propose", "guard", "apply", "validate", "revert", "learn", "check",
];

/// Whether an event kind records a failure (a source, proposer or notifier error).
fn is_failure(kind: &str) -> bool {
    kind.ends_with("_error")
}

impl Health {
    /// Computes the snapshot from `status` (already read at `status.at`) and `ledger`.
    pub fn compute(status: &StatusSnapshot, ledger: &Ledger) -> Result<Health, LedgerError> {
        let now = status.at;
        let day = now - chrono::Duration::hours(24);
        let failures = ledger.last_source_failures()?;
        let mut signals = BTreeMap::new();
        for s in &status.signals {
            signals.insert(
                s.signal.clone(),
                signal_health(s, failures.get(&s.signal), now),
            );
        }
        let mut last_cycle = BTreeMap::new();
        for (stage, e) in ledger.last_event_per_stage()? {
            if !STAGES.contains(&stage.as_str()) {
                continue;
            }
            last_cycle.insert(
                stage,
                StageHealth {
                    at: e.at,
                    result: if is_failure(&e.kind) {
                        StageResult::Failed
                    } else {
                        StageResult::Ok
                    },
                    detail: format!("{}: {}", e.kind, e.detail),
                },
            );
        }
        let counts = ledger.event_counts(Some(day))?;
        let failures_24h = counts
            .iter()
            .filter(|(k, _)| is_failure(k))
            .map(|(_, n)| n)
            .sum();
        let recoveries_24h = ledger.stage_event_count("reconcile", day)?
            + counts.get("repaired").copied().unwrap_or(0);
        let mut escalated: Vec<InterventionId> = status
            .escalations_open
            .iter()
            .filter_map(|e| e.intervention)
            .collect();
        escalated.sort();
        escalated.dedup();
        let mut health = Health {
            at: now,
            status: RunState::Running,
            why: Vec::new(),
            last_cycle,
            signals,
            open_interventions: status.awaiting_validation.len(),
            frozen_areas: status.frozen.iter().map(|f| f.area.clone()).collect(),
            recoveries_24h,
            failures_24h,
            invariant_violations_open: ledger.invariant_violations_open()?,
            escalations_open: status.escalations_open.len(),
            escalations: status.escalations_open.clone(),
            suppressed: status.suppressed.clone(),
            escalated,
            paused: status.paused.clone(),
            notes: Vec::new(),
            failures,
        };
        for l in &status.invalid_lessons {
            health
                .notes
                .push(format!("lesson file {} skipped: {}", l.file, l.error));
        }
        health.settle();
        Ok(health)
    }

    /// This snapshot brought up to `status` after [`StatusSnapshot::observed`] (an observe tick
    /// that recorded samples and no event): each signal's value, time, alert state and
    /// staleness, by the same rule as [`Health::compute`]. No event means no new source
    /// failure, stage event or escalation, so the rest stands.
    pub fn observed(&mut self, status: &StatusSnapshot) {
        for s in &status.signals {
            let health = signal_health(s, self.failures.get(&s.signal), status.at);
            // In place when known (every tick, for every signal: no key copied each time).
            match self.signals.get_mut(&s.signal) {
                Some(known) => *known = health,
                None => {
                    self.signals.insert(s.signal.clone(), health);
                }
            }
        }
        self.at = status.at;
        self.settle();
    }

    /// Folds a runtime's view in: its last steps (newer than the ledger's stage events, and
    /// failed ones count as failures) and, with `stalled_after`, a loop that has not finished
    /// a cycle for that long is degraded. `now` is when the snapshot is served.
    pub fn with_runtime(
        mut self,
        steps: &BTreeMap<&'static str, StepRecord>,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
        stalled_after: Option<chrono::Duration>,
    ) -> Health {
        for (name, step) in steps {
            let newer = self
                .last_cycle
                .get(*name)
                .is_none_or(|known| step.at >= known.at);
            if newer {
                self.last_cycle.insert(
                    (*name).to_string(),
                    StageHealth {
                        at: step.at,
                        result: if step.ok {
                            StageResult::Ok
                        } else {
                            StageResult::Failed
                        },
                        detail: step.detail.clone(),
                    },
                );
            }
            if !step.ok && now - step.at <= chrono::Duration::hours(24) {
                self.failures_24h = self.failures_24h.saturating_add(1);
            }
        }
        if let Some(limit) = stalled_after {
            let last = steps.get("cycle").map_or(started, |s| s.at);
            if now - last > limit {
                self.notes.push(format!(
                    "no cycle has finished since {} (the loop may be stuck)",
                    rfc(last)
                ));
            }
        }
        self.at = now;
        self.settle();
        self
    }

    /// Derives `status` and `why` from the fields and notes (idempotent).
    fn settle(&mut self) {
        let mut why = Vec::new();
        for (name, s) in &self.signals {
            if let Some(st) = &s.stale {
                let err = st
                    .last_error
                    .as_deref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                why.push(format!("signal {name} is stale: {}{err}", st.reason));
            }
        }
        for (name, stage) in &self.last_cycle {
            // A source's gap is said once, on its stale signal.
            if stage.result == StageResult::Failed && !stage.detail.starts_with(SAMPLE_ERROR) {
                why.push(format!(
                    "{name} failed at {}: {}",
                    rfc(stage.at),
                    stage.detail
                ));
            }
        }
        if self.escalations_open > 0 {
            why.push(format!(
                "{} escalation(s) open: {}",
                self.escalations_open,
                self.escalated
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.invariant_violations_open > 0 {
            why.push(format!(
                "{} invariant violation(s) open (see `kaizen check`)",
                self.invariant_violations_open
            ));
        }
        why.extend(self.notes.iter().cloned());
        let degraded = !why.is_empty();
        if let Some(p) = &self.paused.global {
            why.insert(0, format!("paused: {}", p.why));
        }
        for (area, p) in &self.paused.areas {
            why.push(format!("area {area} paused: {}", p.why));
        }
        // An operator's global pause is what kaizen is doing; problems are still listed.
        self.status = if self.paused.global.is_some() {
            RunState::Paused
        } else if degraded {
            RunState::Degraded
        } else {
            RunState::Running
        };
        self.why = why;
    }
}

/// One signal's health: its latest value, stale when its source failed since that sample or
/// it has been quiet for [`STALE_CADENCES`] cadences (at least [`STALE_AT_LEAST`]).
fn signal_health(
    s: &crate::status::SignalStatus,
    failure: Option<&crate::ledger::SourceFailure>,
    now: DateTime<Utc>,
) -> SignalHealth {
    let cadence = chrono::Duration::seconds(
        i64::try_from(s.cadence.seconds().saturating_mul(STALE_CADENCES))
            .unwrap_or(i64::MAX / 1000),
    )
    .max(STALE_AT_LEAST);
    let failing = failure.filter(|f| s.at.is_none_or(|at| f.at >= at));
    let quiet = s.at.is_some_and(|at| now - at > cadence);
    // Never sampled and never failed is not stale: there is simply no value yet.
    let stale = if failing.is_some() || quiet {
        let reason = match (failing, s.at) {
            (Some(_), Some(at)) => {
                format!("source failing since the last sample at {}", rfc(at))
            }
            (Some(_), None) => "source failing; never sampled".to_string(),
            (None, at) => format!("no sample since {}", at.map(rfc).unwrap_or_default()),
        };
        Some(Stale {
            reason,
            last_error: failure.map(|f| f.error.clone()),
            last_error_at: failure.map(|f| f.at),
        })
    } else {
        None
    };
    SignalHealth {
        value: s.value,
        unit: s.unit.clone(),
        at: s.at,
        alerting: s.alerting,
        stale,
    }
}

impl Counters {
    /// Reads the counters from `ledger`.
    pub fn compute(ledger: &Ledger) -> Result<Counters, LedgerError> {
        let totals = ledger.intervention_totals()?;
        Ok(Counters {
            applied: totals.applied,
            validated: totals.validated,
            reverted_by_outcome: totals.reverted_by_outcome,
            guard_refusals: ledger.guard_refusals()?,
            sample_gaps: ledger.sample_gaps_by_source()?,
            escalations: ledger.kind_count("escalation")?,
        })
    }
}

/// Build metadata for `kaizen_build_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The crate version.
    pub version: &'static str,
}

impl Default for BuildInfo {
    fn default() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// A label value escaped for the Prometheus text format (`\`, `"` and newlines).
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn value(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        let v = if v.is_finite() {
            format!("{v}")
        } else if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
        let _ = writeln!(self.0, "{name}{labels} {v}");
    }
    fn counter(&mut self, name: &str, help: &str, label_name: &str, by: &BTreeMap<String, u64>) {
        self.family(name, "counter", help);
        for (k, n) in by {
            self.value(name, &[(label_name, k)], *n as f64);
        }
    }
}

/// An instant as operators read it in logs (`2026-01-01T00:00:00Z`).
fn rfc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The Prometheus text exposition (format 0.0.4) of `health` and `counters`: `kaizen_` prefix,
/// base units, `_total` counters, labels only of bounded sets (guards, signals, outcomes,
/// stages, areas from the config) — never an intervention id.
pub fn prometheus(health: &Health, counters: &Counters, build: &BuildInfo) -> String {
    let mut t = Text(String::new());
    t.family("kaizen_build_info", "gauge", "kaizen's version (always 1).");
    t.value("kaizen_build_info", &[("version", build.version)], 1.0);

    t.family(
        "kaizen_interventions_applied_total",
        "counter",
        "Interventions committed to the target repository.",
    );
    t.value(
        "kaizen_interventions_applied_total",
        &[],
        counters.applied as f64,
    );
    t.family(
        "kaizen_interventions_validated_total",
        "counter",
        "Interventions whose prediction held at the final look.",
    );
    t.value(
        "kaizen_interventions_validated_total",
        &[],
        counters.validated as f64,
    );
    t.counter(
        "kaizen_interventions_reverted_total",
        "Interventions reverted, by the verdict outcome they carried (none: before any verdict).",
        "outcome",
        &counters.reverted_by_outcome,
    );
    t.counter(
        "kaizen_guard_refusals_total",
        "Candidates a guard blocked or sent to the backlog, by guard.",
        "guard",
        &counters.guard_refusals,
    );
    t.counter(
        "kaizen_sample_gaps_total",
        "Samples not taken because the source failed (a gap, never a value), by signal.",
        "signal",
        &counters.sample_gaps,
    );
    t.family(
        "kaizen_escalations_total",
        "counter",
        "Escalations to a human.",
    );
    t.value("kaizen_escalations_total", &[], counters.escalations as f64);

    t.family(
        "kaizen_open_interventions",
        "gauge",
        "Applied interventions awaiting their verdict.",
    );
    t.value(
        "kaizen_open_interventions",
        &[],
        health.open_interventions as f64,
    );
    t.family(
        "kaizen_frozen_areas",
        "gauge",
        "Areas frozen after consecutive rollbacks.",
    );
    t.value("kaizen_frozen_areas", &[], health.frozen_areas.len() as f64);
    t.family(
        "kaizen_paused",
        "gauge",
        "1 while everything is paused (nothing applied), else 0.",
    );
    let paused = if health.paused.global.is_some() {
        1.0
    } else {
        0.0
    };
    t.value("kaizen_paused", &[], paused);
    t.family("kaizen_paused_areas", "gauge", "Areas paused one by one.");
    t.value("kaizen_paused_areas", &[], health.paused.areas.len() as f64);
    t.family(
        "kaizen_escalations_open",
        "gauge",
        "Escalations still waiting for a human.",
    );
    t.value(
        "kaizen_escalations_open",
        &[],
        health.escalations_open as f64,
    );
    t.family(
        "kaizen_invariant_violations_open",
        "gauge",
        "Invariant violations found by the last check and not repaired.",
    );
    t.value(
        "kaizen_invariant_violations_open",
        &[],
        health.invariant_violations_open as f64,
    );
    t.family(
        "kaizen_degraded",
        "gauge",
        "1 while kaizen reports itself degraded (see /health `why`), else 0.",
    );
    let degraded = if health.status == RunState::Degraded {
        1.0
    } else {
        0.0
    };
    t.value("kaizen_degraded", &[], degraded);
    t.family(
        "kaizen_last_cycle_timestamp_seconds",
        "gauge",
        "When each stage or runtime step last finished (Unix time).",
    );
    for (stage, s) in &health.last_cycle {
        t.value(
            "kaizen_last_cycle_timestamp_seconds",
            &[("stage", stage)],
            seconds(s.at),
        );
    }
    t.family(
        "kaizen_signal_value",
        "gauge",
        "Each signal's latest sampled value (in the signal's own unit).",
    );
    for (name, s) in &health.signals {
        if let Some(v) = s.value {
            t.value("kaizen_signal_value", &[("signal", name)], v);
        }
    }
    t.family(
        "kaizen_signal_stale",
        "gauge",
        "1 while a signal's latest value is not current (its source failing or quiet).",
    );
    for (name, s) in &health.signals {
        let stale = if s.stale.is_some() { 1.0 } else { 0.0 };
        t.value("kaizen_signal_stale", &[("signal", name)], stale);
    }
    t.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pause::Pause;

    fn health() -> Health {
        Health {
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            status: RunState::Running,
            why: vec![],
            last_cycle: BTreeMap::new(),
            signals: BTreeMap::new(),
            open_interventions: 0,
            frozen_areas: vec![],
            recoveries_24h: 0,
            failures_24h: 0,
            invariant_violations_open: 0,
            escalations_open: 0,
            escalations: Vec::new(),
            suppressed: Vec::new(),
            paused: Pauses::default(),
            escalated: vec![],
            notes: vec![],
            failures: BTreeMap::new(),
        }
    }

    #[test]
    fn paused_wins_but_problems_are_still_listed() {
        let mut h = health();
        h.invariant_violations_open = 1;
        h.settle();
        assert_eq!(h.status, RunState::Degraded);
        h.paused.global = Some(Pause {
            why: "incident 42".into(),
            since: None,
        });
        h.settle();
        assert_eq!(h.status, RunState::Paused);
        assert_eq!(h.why[0], "paused: incident 42");
        assert!(h.why.iter().any(|w| w.contains("invariant")), "{:?}", h.why);
        // Settling again repeats nothing.
        h.settle();
        assert_eq!(h.why.len(), 2, "{:?}", h.why);
    }

    #[test]
    fn a_stalled_loop_and_a_failed_step_degrade() {
        let h = health();
        let t0 = h.at;
        let mut steps = BTreeMap::new();
        steps.insert(
            "observe",
            StepRecord {
                at: t0,
                ok: false,
                detail: "ledger locked".into(),
            },
        );
        let h = h.with_runtime(
            &steps,
            t0,
            t0 + chrono::Duration::minutes(20),
            Some(chrono::Duration::minutes(11)),
        );
        assert_eq!(h.status, RunState::Degraded);
        assert_eq!(h.failures_24h, 1);
        assert!(h.why.iter().any(|w| w.contains("stuck")), "{:?}", h.why);
        assert_eq!(h.last_cycle["observe"].result, StageResult::Failed);
    }

    #[test]
    fn prometheus_text_escapes_labels_and_never_names_interventions() {
        let mut h = health();
        h.escalated = vec![InterventionId(7)];
        h.escalations_open = 1;
        h.signals.insert(
            "p\"99".into(),
            SignalHealth {
                value: Some(12.5),
                unit: "ms".into(),
                at: None,
                alerting: false,
                stale: None,
            },
        );
        let mut c = Counters::default();
        c.guard_refusals.insert("budget".into(), 3);
        let text = prometheus(&h, &c, &BuildInfo::default());
        assert!(
            text.contains("kaizen_signal_value{signal=\"p\\\"99\"} 12.5"),
            "{text}"
        );
        assert!(text.contains("kaizen_guard_refusals_total{guard=\"budget\"} 3"));
        assert!(!text.contains("K-0"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("kaizen_"), "{line}");
        }
    }
}
