//! Escalations with a life cycle: a problem kaizen cannot fix by itself (a revert it was refused)
//! is a typed record — opened once, re-notified on a back-off (1 h, 2 h, 4 h … capped at 24 h,
//! never every cycle), and closed when a human resolves it (`kaizen resolve`) or when kaizen sees
//! the problem gone (the change undone in git).

use crate::intervention::{InterventionId, Status};
use crate::span::Span;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The first reminder comes this long after an escalation is opened; each later one waits twice
/// as long as the one before, up to [`RENOTIFY_CAP`].
pub const RENOTIFY_FIRST: Span = Span::hours(1);

/// The longest wait between two reminders of one open escalation.
pub const RENOTIFY_CAP: Span = Span::hours(24);

/// How an escalation was closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Closed {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (a user name, or `kaizen` when it closed it itself).
    pub by: String,
    /// Why.
    pub why: String,
}

/// An open escalation not raised again for this long has lapsed: the condition is no longer
/// seen (every open condition is raised again at least at each reminder, ≤ 24 h apart).
pub const LAPSED_AFTER: Span = Span::hours(25);

/// One escalation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Escalation {
    /// What is escalated (stable, e.g. `revert_refused K-000003`).
    pub key: String,
    /// The intervention concerned.
    pub intervention: Option<InterventionId>,
    /// The latest account of the problem.
    pub detail: String,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// When a human was last told (opening counts).
    pub notified_at: DateTime<Utc>,
    /// How often a human was told (opening counts as the first).
    pub notifications: u32,
    /// When the next reminder is due while it stays open.
    pub next_reminder_at: DateTime<Utc>,
    /// How it was closed; `None` while open.
    pub closed: Option<Closed>,
}

/// The wait before reminder number `notifications` (1 after the opening notice: 1 h; then 2 h,
/// 4 h, … capped at [`RENOTIFY_CAP`]).
pub fn renotify_after(notifications: u32) -> Span {
    let doublings = notifications.saturating_sub(1).min(16);
    RENOTIFY_FIRST
        .saturating_mul(1_u64 << doublings)
        .min(RENOTIFY_CAP)
}

impl Escalation {
    /// Whether a reminder is due at `now`.
    pub fn reminder_due(&self, now: DateTime<Utc>) -> bool {
        self.closed.is_none() && now >= self.next_reminder_at
    }
}

/// How a human says an intervention ended (`kaizen resolve --reverted | --kept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HumanEnd {
    /// The human undid the change (by hand, or by reverting its commit).
    Reverted,
    /// The human keeps the change.
    Kept,
}

impl HumanEnd {
    /// `reverted` or `kept`.
    pub fn as_str(self) -> &'static str {
        match self {
            HumanEnd::Reverted => "reverted",
            HumanEnd::Kept => "kept",
        }
    }

    /// The status the intervention ends in.
    pub fn status(self) -> Status {
        match self {
            HumanEnd::Reverted => Status::Reverted,
            HumanEnd::Kept => Status::Kept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_back_off_from_one_hour_to_a_day() {
        let hours: Vec<u64> = (1..=8)
            .map(|n| renotify_after(n).seconds() / 3600)
            .collect();
        assert_eq!(hours, [1, 2, 4, 8, 16, 24, 24, 24]);
        assert_eq!(renotify_after(0), Span::hours(1));
        assert_eq!(renotify_after(u32::MAX), RENOTIFY_CAP);
    }
}
