//! Suppression made visible: when `consider` holds a firing rule back, what held it and until
//! when is recorded (see [`crate::suppression`]); when the change is let through, it is forgotten.

use super::{Engine, EngineError};
use crate::clock::Clock;
use crate::guard::{self, Decision, GuardVerdict, LedgerView};
use crate::intervention::{Candidate, InterventionId, Status};
use crate::suppression::{SuppressedBy, Suppression};
use chrono::{DateTime, Utc};

impl Engine {
    /// Records that `candidate` (from `proposer`) was held back `by` something until `until`.
    pub(super) fn note_suppressed(
        &mut self,
        candidate: &Candidate,
        proposer: &str,
        by: SuppressedBy,
        until: Option<DateTime<Utc>>,
        detail: String,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let s = Suppression {
            rule: candidate.origin.rule.clone(),
            proposer: proposer.to_string(),
            area: candidate.area.clone(),
            title: candidate.title.clone(),
            signal: candidate.prediction.signal.clone(),
            by,
            until,
            detail,
            since: now,
            last_seen: now,
            count: 1,
        };
        tracing::info!(
            "kaizen stage=propose suppressed={by} rule={} {}{}",
            s.name(),
            s.detail,
            until
                .map(|u| format!(" until {}", u.format("%Y-%m-%dT%H:%M:%SZ")))
                .unwrap_or_default()
        );
        self.ledger.note_suppressed(&candidate.repeat_key(), &s)?;
        Ok(())
    }

    /// A repeat of parked `earlier` held back by its refusing `verdicts`: which of dedup, freeze
    /// or backlog, and until when.
    pub(super) fn note_parked(
        &mut self,
        candidate: &Candidate,
        proposer: &str,
        earlier: InterventionId,
        verdicts: &[GuardVerdict],
        view: &LedgerView,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let policy = &self.settings.policy;
        let refusing: Vec<&GuardVerdict> = verdicts
            .iter()
            .filter(|v| v.decision != Decision::Pass)
            .collect();
        let detail = refusing
            .iter()
            .map(|v| v.reason.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let (by, until) = if refusing.iter().any(|v| v.guard == "freeze") {
            let until = guard::active_freezes(view, policy, now)
                .into_iter()
                .find(|f| f.area == candidate.area)
                .map(|f| f.until);
            (SuppressedBy::Freeze, until)
        } else if refusing.iter().all(|v| v.decision == Decision::Backlog) {
            (SuppressedBy::Backlog, None)
        } else {
            let until = view
                .interventions
                .iter()
                .find(|iv| iv.id == earlier)
                .map(|iv| match iv.status {
                    // Live: held back at least while it awaits its verdict.
                    Status::Applied => iv.due_at.unwrap_or(now),
                    _ => policy.dedup_window.after(iv.created_at),
                });
            (SuppressedBy::Dedup, until)
        };
        self.note_suppressed(candidate, proposer, by, until, detail)
    }

    /// After `candidate` was recorded with `verdicts`: a budget refusal is a suppression (until
    /// the oldest apply in the rolling 24 h ages out); anything else ends its suppression.
    pub(super) fn note_recorded(
        &mut self,
        candidate: &Candidate,
        proposer: &str,
        verdicts: &[GuardVerdict],
        view: &LedgerView,
    ) -> Result<(), EngineError> {
        let now = self.clock.now();
        let budget = verdicts
            .iter()
            .find(|v| v.guard == "daily_budget" && v.decision != Decision::Pass);
        match budget {
            Some(v) => {
                let from = now - chrono::Duration::hours(24);
                let until = view
                    .interventions
                    .iter()
                    .filter_map(|iv| iv.applied_at)
                    .filter(|t| *t > from)
                    .min()
                    .map(|t| crate::span::Span::hours(24).after(t));
                self.note_suppressed(
                    candidate,
                    proposer,
                    SuppressedBy::Budget,
                    until,
                    v.reason.clone(),
                )
            }
            None => Ok(self.ledger.clear_suppressed(&candidate.repeat_key())?),
        }
    }
}
