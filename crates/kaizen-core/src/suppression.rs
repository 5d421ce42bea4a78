//! Visible suppression: a rule that fires but is held back — a duplicate of its own recent
//! change (dedup), its area frozen, parked in the backlog, the daily budget spent, kaizen paused,
//! its baseline not yet there, its change already in place — is recorded by what held it and until when, so `kaizen status`
//! and `/health` can say "grow-cache: alerting, suppressed: dedup until 14:05" instead of the
//! loop going quiet at debug level.

use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;

/// A suppression last seen longer ago than this is over (the rule stopped firing, or was let
/// through): it is no longer shown. Comfortably above any sensible cycle cadence.
pub const FRESH_FOR: Span = Span::minutes(30);

/// What held a firing rule back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SuppressedBy {
    /// The same change is live or was made within the dedup window.
    Dedup,
    /// Its area is frozen after consecutive rollbacks.
    Freeze,
    /// It waits in the backlog (it needs a canary the area lacks).
    Backlog,
    /// The daily apply budget is spent.
    Budget,
    /// kaizen (or its area) is paused.
    Pause,
    /// The validator's baseline is not yet covered by samples.
    Baseline,
    /// The repository already holds the change (e.g. a live intervention made it).
    AlreadyApplied,
}

impl SuppressedBy {
    /// The stable name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressedBy::Dedup => "dedup",
            SuppressedBy::Freeze => "freeze",
            SuppressedBy::Backlog => "backlog",
            SuppressedBy::Budget => "budget",
            SuppressedBy::Pause => "pause",
            SuppressedBy::Baseline => "baseline",
            SuppressedBy::AlreadyApplied => "already_applied",
        }
    }

    /// The reason a stored name stands for.
    pub fn parse(s: &str) -> Option<SuppressedBy> {
        Some(match s {
            "dedup" => SuppressedBy::Dedup,
            "freeze" => SuppressedBy::Freeze,
            "backlog" => SuppressedBy::Backlog,
            "budget" => SuppressedBy::Budget,
            "pause" => SuppressedBy::Pause,
            "baseline" => SuppressedBy::Baseline,
            "already_applied" => SuppressedBy::AlreadyApplied,
            _ => return None,
        })
    }
}

impl fmt::Display for SuppressedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One firing rule (or proposer's change) held back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suppression {
    /// The rule, if the change came from one.
    pub rule: Option<String>,
    /// The proposer.
    pub proposer: String,
    /// The area.
    pub area: String,
    /// The change's title.
    pub title: String,
    /// The signal its prediction is on.
    pub signal: String,
    /// What held it back.
    pub by: SuppressedBy,
    /// Until when, where that is known (a dedup window's end, a freeze's end, when budget frees up).
    pub until: Option<DateTime<Utc>>,
    /// For a human (the guard's reason, the pause's why).
    pub detail: String,
    /// When it was first held back (since it was last let through).
    pub since: DateTime<Utc>,
    /// When it was last held back.
    pub last_seen: DateTime<Utc>,
    /// How often it was held back since `since`.
    pub count: u64,
}

impl Suppression {
    /// `grow-cache` (or the title when no rule made it).
    pub fn name(&self) -> &str {
        self.rule.as_deref().unwrap_or(&self.title)
    }
}
