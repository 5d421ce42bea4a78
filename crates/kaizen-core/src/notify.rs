//! Notifications: tell a human what kaizen did and, above all, what needs them (escalations).

use crate::event::EngineEvent;
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
    /// The periodic meta-review was written (the text names its file).
    Review,
}

impl NotificationKind {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Escalation => "escalation",
            NotificationKind::Applied => "applied",
            NotificationKind::Validated => "validated",
            NotificationKind::Reverted => "reverted",
            NotificationKind::Review => "review",
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

/// The notification `event` calls for, if any: applies and reverts (whichever stage made or
/// found them — reconciled ones too), validations and escalations.
pub fn kind_for(event: &EngineEvent) -> Option<NotificationKind> {
    match event {
        EngineEvent::Applied { .. } => Some(NotificationKind::Applied),
        EngineEvent::Validated { .. } => Some(NotificationKind::Validated),
        EngineEvent::Reverted { .. } => Some(NotificationKind::Reverted),
        // A reminder of an open escalation is told again (on its back-off, never every cycle).
        EngineEvent::Escalation { .. }
        | EngineEvent::EscalationReminder { .. }
        | EngineEvent::InvariantViolation { .. } => Some(NotificationKind::Escalation),
        _ => None,
    }
}

/// The notifications `events` call for, in order ([`kind_for`]).
pub fn from_events(events: &[EngineEvent], at: DateTime<Utc>) -> Vec<Notification> {
    events
        .iter()
        .filter_map(|e| {
            let kind = kind_for(e)?;
            let text = match e {
                EngineEvent::Escalation { text, .. } => text.clone(),
                other => other.to_string(),
            };
            Some(Notification {
                kind,
                intervention: e.intervention(),
                text,
                at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stage;
    use crate::intervention::{InterventionId, Status};

    #[test]
    fn reconciled_applies_and_reverts_are_notified() {
        let id = InterventionId(1);
        let at = Utc::now();
        let events = [
            EngineEvent::Applied {
                intervention: id,
                stage: Stage::Reconcile,
                commit: "abc".into(),
                due: at,
                reason: "r".into(),
            },
            EngineEvent::InterimLook {
                intervention: id,
                look: 1,
                of: 3,
            },
            EngineEvent::Reverted {
                intervention: id,
                stage: Stage::Reconcile,
                from: Status::Applied,
                commit: Some("def".into()),
                reason: "r".into(),
            },
        ];
        let kinds: Vec<NotificationKind> =
            from_events(&events, at).iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [NotificationKind::Applied, NotificationKind::Reverted]
        );
    }
}
