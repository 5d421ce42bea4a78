//! Notifications: tell a human what kaizen did and, above all, what needs them (escalations).

use crate::engine::CycleReport;
use crate::intervention::InterventionId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Something needs a human (a refused revert, a failed reconciliation).
    Escalation,
    /// A change was committed.
    Applied,
    /// A change was validated and kept.
    Validated,
    /// A change was reverted.
    Reverted,
}

impl NotificationKind {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Escalation => "escalation",
            NotificationKind::Applied => "applied",
            NotificationKind::Validated => "validated",
            NotificationKind::Reverted => "reverted",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// What it is about.
    pub kind: NotificationKind,
    /// The intervention, if any.
    pub intervention: Option<InterventionId>,
    /// For a human.
    pub text: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A notifier could not deliver (recorded; the loop goes on).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("notifier `{notifier}`: {message}")]
pub struct NotifyError {
    /// Its name.
    pub notifier: String,
    /// What failed.
    pub message: String,
}

/// Delivers notifications somewhere (a webhook, a command).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// A name for the ledger.
    fn name(&self) -> &str;
    /// Whether it wants this kind.
    fn wants(&self, kind: NotificationKind) -> bool;
    /// Delivers one notification.
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError>;
}

/// The notifications a cycle's report calls for, in order.
pub fn from_report(report: &CycleReport) -> Vec<Notification> {
    let mut out = Vec::new();
    for line in &report.lines {
        let kind = match line.id {
            Some(id) if report.applied.contains(&id) && line.stage == "apply" => {
                Some(NotificationKind::Applied)
            }
            Some(id) if report.validated.contains(&id) && line.stage == "validate" => {
                Some(NotificationKind::Validated)
            }
            Some(id) if report.reverted.contains(&id) && line.stage == "revert" => {
                Some(NotificationKind::Reverted)
            }
            _ if line.text.starts_with("ESCALATION: ") => Some(NotificationKind::Escalation),
            _ => None,
        };
        if let Some(kind) = kind {
            out.push(Notification {
                kind,
                intervention: line.id,
                text: line.text.trim_start_matches("ESCALATION: ").to_string(),
                at: report.at,
            });
        }
    }
    out
}
